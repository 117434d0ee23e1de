//! The `namespace` kind through the real binary against the FAKE Kubernetes API server (`fake-kube-apiserver`:
//! no real API server can run on this machine): a plan of database and namespace provisioned, its objects in
//! the fake, `tenants manifests` printing exactly what the fake holds, doctor naming an orphaned namespace, a
//! purge that waits for the namespace to be gone, suspension, drift repaired, an error and a crash at every phase,
//! and `kubernetes` servers refused with a clear code.

use crate::failures::assert_nothing_left;
use crate::harness::{passed, write_file, Engine, Fleet};
use crate::resources::unique;
use fake_kube_apiserver::{missing_fields, FakeApiServer};
use serde_json::{json, Value};

const TOKEN: &str = "fake-kube-token-hunter2";

const NAMESPACE_PLANS: &str = r#"
[[plans]]
name = "starter"
connection_limit = 10
statement_timeout_ms = 30000

[[plans]]
name = "clustered"
connection_limit = 10
statement_timeout_ms = 30000
cost_center = "platform"
resources = ["database", "namespace"]

[plans.quotas.namespace]
cpu_millis = 1500
memory_mib = 3072
pods = 9
"#;

async fn kube_fleet(fake: &FakeApiServer) -> Fleet {
    let fleet = Fleet::new(Engine::Sqlite).await;
    write_file(&fleet.scratch_dir.join("tenantry.toml"), NAMESPACE_PLANS);
    fleet
        .run_with_stdin(
            &[
                "servers",
                "add",
                "--name",
                "kube-a",
                "--engine",
                "kubernetes",
                "--admin-url-stdin",
                "--capacity",
                "1000",
            ],
            &fake.admin_url(),
        )
        .await
        .assert_ok();
    fleet
}

/// The object the fake holds for a printed manifest.
fn live_for(fake: &FakeApiServer, namespace: &str, manifest: &Value) -> Value {
    let name = manifest["metadata"]["name"].as_str().expect("a name");
    if manifest["kind"] == "Namespace" {
        return fake.namespace(name).expect("the namespace is in the fake");
    }
    let resource = match manifest["kind"].as_str().unwrap() {
        "ResourceQuota" => "resourcequotas",
        "LimitRange" => "limitranges",
        "NetworkPolicy" => "networkpolicies",
        "ServiceAccount" => "serviceaccounts",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        other => panic!("an unexpected kind {other}"),
    };
    fake.objects_in(namespace)
        .into_iter()
        .find(|(kind, object)| kind == resource && object["metadata"]["name"] == name)
        .map(|(_, object)| object)
        .unwrap_or_else(|| panic!("{resource}/{name} is not in the fake"))
}

/// The one object of `resource` in `namespace` as the fake holds it.
fn stored_object(fake: &FakeApiServer, namespace: &str, resource: &str) -> Value {
    fake.objects_in(namespace)
        .into_iter()
        .find(|(kind, _)| kind == resource)
        .unwrap_or_else(|| panic!("no {resource} in {namespace}"))
        .1
}

/// Every verb on every resource for the tenant's Role, as `kubectl patch --type merge` would do it.
async fn widen_role(fake: &FakeApiServer, namespace: &str) {
    let response = reqwest::Client::new()
        .patch(format!(
            "{}/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/tenant-app",
            fake.url
        ))
        .bearer_auth(&fake.token)
        .header("content-type", "application/merge-patch+json")
        .body(
            json!({ "rules": [{ "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"] }] })
                .to_string(),
        )
        .send()
        .await
        .expect("the fake answers");
    assert!(response.status().is_success(), "{}", response.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_tenant_is_applied_printed_orphaned_and_purged() {
    let fake = FakeApiServer::start(TOKEN).await;
    let fleet = kube_fleet(&fake).await;
    let slug = unique("kube");
    let namespace = format!("tenant-{slug}");

    let mut args = Fleet::provision_args(&slug);
    args.extend(["--plan".into(), "clustered".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fleet.run(&args).await;
    run.assert_ok();
    assert!(!run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN));

    // The objects, with the plan's quotas and the tenant's labels.
    let stored = fake.namespace(&namespace).expect("the namespace");
    let labels = &stored["metadata"]["labels"];
    assert_eq!(labels["tenantry.io/tenant"], slug.as_str());
    assert_eq!(labels["tenantry.io/plan"], "clustered");
    assert_eq!(labels["tenantry.io/cost_center"], "platform");
    let installation = labels["tenantry.io/installation"]
        .as_str()
        .expect("the installation's mark")
        .to_owned();
    let quota = fake
        .objects_in(&namespace)
        .into_iter()
        .find(|(resource, _)| resource == "resourcequotas")
        .expect("the quota")
        .1;
    assert_eq!(quota["spec"]["hard"]["pods"], "9");
    assert_eq!(quota["spec"]["hard"]["limits.cpu"], "1500m");
    assert_eq!(quota["spec"]["hard"]["limits.memory"], "3Gi");
    assert_eq!(fake.objects_in(&namespace).len(), 8);
    let checks = fleet.validation(&slug).await;
    for name in [
        "namespace_objects_present",
        "namespace_role_confined",
        "namespace_default_deny",
        "namespace_account_active",
        "namespace_neighbour_apart",
    ] {
        assert!(passed(&checks, name), "{name}: {checks:?}");
    }
    let shown = fleet.json(&["tenants", "show", &slug]).await;
    assert_eq!(shown["resources"][1]["kind"], "namespace", "{shown}");
    assert_eq!(shown["resources"][1]["secret_name"], Value::Null, "{shown}");
    fleet.assert_doctor_clean().await;

    // The printed manifests are what the fake holds, object by object, on every field tenantry sets.
    let printed = fleet.run(&["tenants", "manifests", &slug]).await;
    printed.assert_ok();
    assert!(
        printed.stdout.starts_with("# namespace on server kube-a\n"),
        "{printed:?}"
    );
    let mut kinds = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&printed.stdout) {
        let manifest: Value = serde::Deserialize::deserialize(document).expect("YAML");
        kinds.push(format!(
            "{}/{}",
            manifest["kind"].as_str().unwrap(),
            manifest["metadata"]["name"].as_str().unwrap()
        ));
        let live = live_for(&fake, &namespace, &manifest);
        assert_eq!(
            missing_fields(&manifest, &live),
            Vec::<String>::new(),
            "{manifest}"
        );
    }
    assert_eq!(
        kinds,
        [
            format!("Namespace/{namespace}"),
            "ResourceQuota/tenant-quota".to_owned(),
            "LimitRange/tenant-limits".to_owned(),
            "NetworkPolicy/default-deny".to_owned(),
            "NetworkPolicy/allow-same-namespace".to_owned(),
            "NetworkPolicy/allow-dns-egress".to_owned(),
            "ServiceAccount/tenant-app".to_owned(),
            "Role/tenant-app".to_owned(),
            "RoleBinding/tenant-app".to_owned(),
        ]
    );
    let as_json = fleet.json(&["tenants", "manifests", &slug]).await;
    assert_eq!(as_json[0]["kind"], "namespace", "{as_json}");
    assert!(as_json[0]["manifests"]
        .as_str()
        .unwrap()
        .contains("kind: RoleBinding"));

    // Suspended: no new pod and no role for the service account; resumed: both back.
    fleet
        .run(&["tenants", "suspend", &slug, "--reason", "unpaid invoice"])
        .await
        .assert_ok();
    assert_eq!(
        stored_object(&fake, &namespace, "resourcequotas")["spec"]["hard"]["pods"],
        "0"
    );
    assert_eq!(
        stored_object(&fake, &namespace, "rolebindings")["subjects"],
        json!([])
    );
    assert!(!passed(
        &fleet.validation(&slug).await,
        "namespace_account_active"
    ));
    fleet.run(&["tenants", "resume", &slug]).await.assert_ok();
    assert_eq!(
        stored_object(&fake, &namespace, "resourcequotas")["spec"]["hard"]["pods"],
        "9"
    );
    assert!(passed(
        &fleet.validation(&slug).await,
        "namespace_account_active"
    ));

    // The Role widened by hand: drift for doctor, repaired by reconcile.
    widen_role(&fake, &namespace).await;
    assert!(!passed(
        &fleet.validation(&slug).await,
        "namespace_role_confined"
    ));
    let doctor = fleet.run(&["doctor", "--json"]).await;
    assert_eq!(doctor.status, 1, "{doctor:?}");
    let fix = format!("tenantry reconcile --slug {slug} --kind namespace");
    assert!(
        doctor.json()["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|found| found["kind"] == "drift" && found["fix"] == fix.as_str()),
        "{doctor:?}"
    );
    fleet
        .run(&["reconcile", "--slug", &slug, "--kind", "namespace"])
        .await
        .assert_ok();
    assert!(passed(
        &fleet.validation(&slug).await,
        "namespace_role_confined"
    ));
    fleet.assert_doctor_clean().await;

    // A namespace with this installation's mark that no tenant has: doctor names it.
    let orphan = unique("kube-orphan");
    fake.put_namespace(
        &format!("tenant-{orphan}"),
        json!({ "tenantry.io/installation": installation }),
    );
    let doctor = fleet.run(&["doctor", "--json"]).await;
    assert_eq!(doctor.status, 1, "{doctor:?}");
    let findings = doctor.json()["findings"].as_array().unwrap().clone();
    let orphan_name = format!("tenant_{}", orphan.replace('-', "_"));
    assert!(
        findings.iter().any(|found| found["kind"] == "orphan"
            && found["subject"]
                .as_str()
                .is_some_and(|subject| subject.contains(&format!("namespace {orphan_name}")))),
        "doctor does not name the orphaned namespace: {findings:?}"
    );
    assert!(!doctor.stdout.contains(TOKEN) && !doctor.stderr.contains(TOKEN));
    // Doctor's fix for it works: the purge of a slug the registry never had finds the namespace and removes it.
    let fix = findings
        .iter()
        .find(|found| found["kind"] == "orphan")
        .and_then(|found| found["fix"].as_str())
        .expect("a fix")
        .to_owned();
    assert_eq!(
        fix,
        format!("tenantry offboard-tenant --slug {orphan} --purge")
    );
    fleet
        .run(&["offboard-tenant", "--slug", &orphan, "--purge"])
        .await
        .assert_ok();
    assert_eq!(fake.namespace(&format!("tenant-{orphan}")), None);
    fleet.assert_doctor_clean().await;
    // Offboarded with purge: the namespace and everything in it are gone when the command returns.
    fleet
        .run(&["offboard-tenant", "--slug", &slug, "--purge"])
        .await
        .assert_ok();
    assert_eq!(fake.namespace(&namespace), None);
    assert!(fake.objects_in(&namespace).is_empty());
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_kubernetes_servers_are_refused_and_nothing_is_stored() {
    let fake = FakeApiServer::start(TOKEN).await;
    let fleet = Fleet::new(Engine::Sqlite).await;
    let address = fake.url.trim_start_matches("http://").to_owned();
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let cases = [
        (
            format!("http://admin:wrong-hunter2@{address}"),
            "E_ADMIN_CONN_UNRESOLVED",
            "refused the bearer token",
        ),
        (
            format!("http://admin:{TOKEN}@127.0.0.1:{closed_port}"),
            "E_ADMIN_CONN_UNRESOLVED",
            "could not be reached",
        ),
        (
            format!("http://{address}"),
            "E_INVALID_INPUT",
            "has no bearer token",
        ),
        (
            format!("redis://admin:{TOKEN}@{address}"),
            "E_INVALID_INPUT",
            "https://admin:TOKEN@host:port",
        ),
    ];
    for (admin_url, code, words) in cases {
        let run = fleet
            .run_with_stdin(
                &[
                    "servers",
                    "add",
                    "--name",
                    "kube-bad",
                    "--engine",
                    "kubernetes",
                    "--admin-url-stdin",
                    "--capacity",
                    "10",
                ],
                &admin_url,
            )
            .await;
        assert_eq!(
            run.error_code().as_deref(),
            Some(code),
            "{admin_url}: {run:?}"
        );
        assert!(run.stderr.contains(words), "{run:?}");
        assert!(
            !run.stderr.contains(TOKEN) && !run.stderr.contains("wrong-hunter2"),
            "{run:?}"
        );
    }
    let servers = fleet.json(&["servers", "list"]).await;
    assert!(
        servers
            .as_array()
            .unwrap()
            .iter()
            .all(|server| server["name"] != "kube-bad"),
        "{servers}"
    );
    fleet.cleanup().await;
}

/// The phases of a provisioning job for the clustered plan: `namespace_created` right after `database_created`.
const CLUSTERED_PHASES: [&str; 12] = [
    "request_validated",
    "placement_resolved",
    "state_checked",
    "secret_set",
    "database_created",
    "namespace_created",
    "migrations_applied",
    "master_registered",
    "admin_seeded",
    "settings_applied",
    "checks_passed",
    "complete",
];

async fn provision_clustered(
    fleet: &Fleet,
    slug: &str,
    env: &[(&str, &str)],
) -> crate::harness::Run {
    let mut args = Fleet::provision_args(slug);
    args.extend(["--plan".into(), "clustered".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fleet.run_env(&args, env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_at_every_phase_unwinds_the_namespace_and_a_crash_at_every_phase_resumes() {
    let fake = FakeApiServer::start(TOKEN).await;
    let fleet = kube_fleet(&fake).await;
    let failpoints = CLUSTERED_PHASES
        .iter()
        .flat_map(|phase| ["before", "after"].map(|boundary| format!("{phase}.{boundary}=error")));
    for failpoint in failpoints {
        let slug = unique("unwind");
        let run = provision_clustered(&fleet, &slug, &[("TENANTRY_FAILPOINTS", &failpoint)]).await;
        assert_eq!(
            run.error_code().as_deref(),
            Some("E_FAILPOINT"),
            "{failpoint}: {run:?}"
        );
        // The undo waited for the namespace to be gone.
        assert_eq!(
            fake.namespace(&format!("tenant-{slug}")),
            None,
            "{failpoint}"
        );
        assert_nothing_left(&fleet, &slug).await;
    }
    let mut slugs = Vec::new();
    for phase in CLUSTERED_PHASES {
        for boundary in ["before", "after"] {
            let slug = unique("crash");
            let failpoint = format!("{phase}.{boundary}=exit");
            let crashed =
                provision_clustered(&fleet, &slug, &[("TENANTRY_FAILPOINTS", &failpoint)]).await;
            assert_eq!(crashed.status, 137, "{failpoint}: {crashed:?}");
            provision_clustered(&fleet, &slug, &[]).await.assert_ok();
            assert!(
                passed(&fleet.validation(&slug).await, "namespace_objects_present"),
                "{failpoint}"
            );
            slugs.push(slug);
        }
    }
    let twice = unique("twice");
    provision_clustered(&fleet, &twice, &[("TENANTRY_REPEAT_STEPS", "1")])
        .await
        .assert_ok();
    slugs.push(twice);
    fleet.assert_doctor_clean().await;
    for slug in &slugs {
        fleet
            .run(&["offboard-tenant", "--slug", slug, "--purge"])
            .await
            .assert_ok();
        assert_eq!(fake.namespace(&format!("tenant-{slug}")), None, "{slug}");
    }
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_quotas_that_are_not_positive_integers_are_refused_when_the_configuration_loads()
{
    let fleet = Fleet::new(Engine::Sqlite).await;
    for (quotas, words) in [
        (
            "pods = 0",
            "namespace quota pods must be a positive integer",
        ),
        ("cpu_millis = \"lots\"", "namespace quotas are not valid"),
        ("gpus = 1", "unknown field `gpus`"),
    ] {
        write_file(
            &fleet.scratch_dir.join("tenantry.toml"),
            &format!(
                "{NAMESPACE_PLANS}\n[[plans]]\nname = \"broken\"\nconnection_limit = 10\nstatement_timeout_ms = 30000\n\
                 resources = [\"database\", \"namespace\"]\n\n[plans.quotas.namespace]\n{quotas}\n"
            ),
        );
        let run = fleet.run(&["plans"]).await;
        assert_ne!(run.status, 0, "{quotas}: {run:?}");
        assert!(
            run.stderr.contains("plan \"broken\"") && run.stderr.contains(words),
            "{quotas}: {run:?}"
        );
    }
    write_file(&fleet.scratch_dir.join("tenantry.toml"), NAMESPACE_PLANS);
    fleet.cleanup().await;
}
