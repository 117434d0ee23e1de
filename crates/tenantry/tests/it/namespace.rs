//! The `namespace` kind through the real binary against the FAKE Kubernetes API server (`fake-kube-apiserver`:
//! no real API server can run on this machine): a plan of database and namespace provisioned, its objects in
//! the fake, `tenants manifests` printing exactly what the fake holds, doctor naming an orphaned namespace, a
//! purge that waits for the namespace to be gone, and `kubernetes` servers refused with a clear code.

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
