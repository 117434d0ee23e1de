//! The `dns` kind through the real binary against the suite's own PowerDNS (`scripts/test-services`): a plan of
//! database and dns provisioned (its record answers real DNS queries, its TXT record carries the labels), a
//! second tenant that changes nothing of the first, records changed and deleted by hand named by doctor and
//! repaired by reconcile, offboarding that silences the name and a purge that removes it, and `powerdns` servers
//! refused with a clear code (a wrong API key, a zone the server lacks, something that is not PowerDNS).
//! Each test works in a zone of its own, so other tests and other installations on the server are never touched.

use crate::failures::assert_nothing_left;
use crate::harness::{passed, write_file, Engine, Fleet};
use crate::resources::unique;
use serde_json::{json, Value};
use std::time::Duration;

const DNS_PLANS: &str = r#"
[[plans]]
name = "starter"
connection_limit = 10
statement_timeout_ms = 30000

[[plans]]
name = "named"
connection_limit = 10
statement_timeout_ms = 30000
cost_center = "edge"
resources = ["database", "dns"]
"#;

/// The phases of a provisioning job for the named plan, in order: `dns_created` right after `database_created`.
const NAMED_PHASES: [&str; 12] = [
    "request_validated",
    "placement_resolved",
    "state_checked",
    "secret_set",
    "database_created",
    "dns_created",
    "migrations_applied",
    "master_registered",
    "admin_seeded",
    "settings_applied",
    "checks_passed",
    "complete",
];

pub(crate) fn api_url() -> String {
    std::env::var("TENANTRY_TEST_PDNS_API_URL")
        .expect("TENANTRY_TEST_PDNS_API_URL is set by scripts/test-services")
}

pub(crate) fn dns_port() -> String {
    std::env::var("TENANTRY_TEST_PDNS_DNS_PORT").unwrap_or_else(|_| "55353".into())
}

/// A record set as `(name, type, [(content, disabled)])`.
type RecordSet = (String, String, Vec<(String, bool)>);

/// PowerDNS's API with the suite's key, for what a person would do by hand, in a zone made for one test.
pub(crate) struct Zone {
    http: reqwest::Client,
    base: String,
    key: String,
    pub(crate) name: String,
}

impl Zone {
    pub(crate) async fn new() -> Zone {
        let url = url::Url::parse(&api_url()).unwrap();
        let zone = Zone {
            http: reqwest::Client::new(),
            base: format!(
                "http://{}:{}/api/v1/servers/localhost",
                url.host_str().unwrap(),
                url.port().unwrap()
            ),
            key: url.password().unwrap().to_owned(),
            name: format!("{}.test.", unique("zone")),
        };
        zone.send(
            reqwest::Method::POST,
            "/zones",
            Some(json!({ "name": zone.name, "kind": "Native", "nameservers": [format!("ns1.{}", zone.name)] })),
        )
        .await;
        zone
    }

    /// One API request; a 500 (PowerDNS on SQLite when two writers meet: "database is locked") is sent again.
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        for attempt in 1..=10u64 {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .header("X-API-Key", &self.key)
                .timeout(Duration::from_secs(10));
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await.expect("PowerDNS's API answers");
            let status = response.status();
            if status.is_server_error() && attempt < 10 {
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                continue;
            }
            assert!(status.is_success(), "{method} {path}: {status}");
            return response.json().await.unwrap_or(Value::Null);
        }
        unreachable!("the last attempt returns")
    }

    /// Changes the zone by hand: `changetype` REPLACE with `content`, or DELETE with none.
    async fn change(&self, name: &str, record_type: &str, content: Option<&str>) {
        let rrset = match content {
            Some(content) => {
                json!({ "name": name, "type": record_type, "ttl": 60, "changetype": "REPLACE",
                "records": [{ "content": content, "disabled": false }] })
            }
            None => json!({ "name": name, "type": record_type, "changetype": "DELETE" }),
        };
        self.send(
            reqwest::Method::PATCH,
            &format!("/zones/{}", self.name),
            Some(json!({ "rrsets": [rrset] })),
        )
        .await;
    }

    /// The record sets under `<slug>.` and `_tenantry.<slug>.`.
    pub(crate) async fn records_of(&self, slug: &str) -> Vec<RecordSet> {
        let zone = self
            .send(reqwest::Method::GET, &format!("/zones/{}", self.name), None)
            .await;
        let names = [
            format!("{slug}.{}", self.name),
            format!("_tenantry.{slug}.{}", self.name),
        ];
        let mut records: Vec<RecordSet> = zone["rrsets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|rrset| names.iter().any(|name| rrset["name"] == name.as_str()))
            .map(|rrset| {
                (
                    rrset["name"].as_str().unwrap().to_owned(),
                    rrset["type"].as_str().unwrap().to_owned(),
                    rrset["records"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|record| {
                            (
                                record["content"].as_str().unwrap().to_owned(),
                                record["disabled"].as_bool().unwrap(),
                            )
                        })
                        .collect(),
                )
            })
            .collect();
        records.sort();
        records
    }

    pub(crate) async fn delete(&self) {
        self.send(
            reqwest::Method::DELETE,
            &format!("/zones/{}", self.name),
            None,
        )
        .await;
    }
}

/// A fleet with the `named` plan and a `powerdns` server for `zone`.
async fn dns_fleet(zone: &Zone) -> Fleet {
    let fleet = Fleet::new(Engine::Sqlite).await;
    write_file(&fleet.scratch_dir.join("tenantry.toml"), DNS_PLANS);
    let port = dns_port();
    fleet
        .run_with_stdin(
            &[
                "servers",
                "add",
                "--name",
                "dns-a",
                "--engine",
                "powerdns",
                "--admin-url-stdin",
                "--capacity",
                "1000",
                "--zone",
                &zone.name,
                "--dns-target",
                "127.0.0.1",
                "--dns-port",
                &port,
            ],
            &api_url(),
        )
        .await
        .assert_ok();
    fleet
}

async fn provision_named(fleet: &Fleet, slug: &str) {
    provision_named_env(fleet, slug, &[]).await.assert_ok();
}

async fn provision_named_env(
    fleet: &Fleet,
    slug: &str,
    env: &[(&str, &str)],
) -> crate::harness::Run {
    let mut args = Fleet::provision_args(slug);
    args.extend(["--plan".into(), "named".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fleet.run_env(&args, env).await
}

/// Nothing of the tenant is left: no records in the zone, no `tenant-dns-` secret, nothing else.
async fn assert_named_gone(fleet: &Fleet, zone: &Zone, slug: &str) {
    assert_eq!(zone.records_of(slug).await, vec![], "{slug}: records left");
    assert_eq!(
        fleet.secret(&format!("tenant-dns-{slug}")).await,
        None,
        "{slug}: dns secret left"
    );
    assert_nothing_left(fleet, slug).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_tenant_answers_over_dns_keeps_apart_and_is_repaired_and_purged() {
    let zone = Zone::new().await;
    let fleet = dns_fleet(&zone).await;
    let (a, b) = (unique("dns-a"), unique("dns-b"));

    let mut args = Fleet::provision_args(&a);
    args.extend(["--plan".into(), "named".into(), "--json".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let job = fleet.run(&args).await.assert_ok().json();
    let phases: Vec<&str> = job["job"]["phases"]
        .as_array()
        .or_else(|| job["phases"].as_array())
        .unwrap_or_else(|| panic!("no phases in {job}"))
        .iter()
        .map(|phase| phase["name"].as_str().unwrap())
        .collect();
    assert_eq!(phases, NAMED_PHASES);

    // The record and its labels, as the API shows them; and a real DNS query answers (validate's checks).
    let records = zone.records_of(&a).await;
    let record_name = format!("{a}.{}", zone.name);
    assert!(records
        .iter()
        .any(|(name, kind, contents)| *name == record_name
            && kind == "A"
            && contents == &[("127.0.0.1".to_owned(), false)]));
    let mark = &records
        .iter()
        .find(|(_, kind, _)| kind == "TXT")
        .unwrap_or_else(|| panic!("{records:?}"))
        .2[0]
        .0;
    for label in [
        format!("\"tenant={a}\""),
        "\"plan=named\"".to_owned(),
        "\"cost_center=edge\"".to_owned(),
        "\"installation=".to_owned(),
    ] {
        assert!(mark.contains(&label), "{label} in {mark}");
    }
    let checks = fleet.validation(&a).await;
    assert!(passed(&checks, "dns_record_answers") && passed(&checks, "dns_labels"));
    let shown = fleet.json(&["tenants", "show", &a]).await;
    let kinds: Vec<&str> = shown["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{shown}"))
        .iter()
        .map(|resource| resource["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["database", "dns"]);
    // DESIGN: a dns resource has no secret.
    assert_eq!(shown["resources"][1]["secret_name"], Value::Null, "{shown}");
    assert_eq!(fleet.secret(&format!("tenant-dns-{a}")).await, None);
    let plans = fleet.run(&["plans", "--json"]).await;
    assert!(plans.assert_ok().stdout.contains("\"dns\""), "{plans:?}");
    fleet.assert_doctor_clean().await;

    // A second tenant changes nothing of the first's records.
    provision_named(&fleet, &b).await;
    assert_eq!(zone.records_of(&a).await, records, "B changed A's records");

    // By hand: A's record points elsewhere, B's record is deleted. Doctor names both with their fix.
    zone.change(&record_name, "A", Some("192.0.2.66")).await;
    zone.change(&format!("{b}.{}", zone.name), "A", None).await;
    let checks = fleet.validation(&a).await;
    assert!(
        !passed(&checks, "dns_record_answers"),
        "validate missed the repointed record"
    );
    let doctor = fleet.run(&["doctor", "--json"]).await;
    assert_eq!(doctor.status, 1, "{doctor:?}");
    let findings = doctor.json()["findings"].as_array().unwrap().clone();
    for slug in [&a, &b] {
        let fix = format!("tenantry reconcile --slug {slug} --kind dns");
        assert!(
            findings
                .iter()
                .any(|found| found["kind"] == "drift" && found["fix"] == fix.as_str()),
            "doctor does not name the drift of {slug}: {findings:?}"
        );
    }
    for slug in [&a, &b] {
        fleet
            .run(&["reconcile", "--slug", slug, "--kind", "dns"])
            .await
            .assert_ok();
    }
    assert_eq!(zone.records_of(&a).await, records, "A was not repaired");
    assert!(passed(&fleet.validation(&b).await, "dns_record_answers"));
    fleet.assert_doctor_clean().await;

    // Offboarded without purge: the name stops answering, the records stay (disabled).
    fleet
        .run(&["offboard-tenant", "--slug", &a])
        .await
        .assert_ok();
    assert!(zone
        .records_of(&a)
        .await
        .iter()
        .any(|(_, kind, contents)| kind == "A" && contents == &[("127.0.0.1".to_owned(), true)]));
    fleet.assert_doctor_clean().await;

    // Purged: nothing left under either name.
    for slug in [&a, &b] {
        fleet
            .run(&["offboard-tenant", "--slug", slug, "--purge"])
            .await
            .assert_ok();
        assert_eq!(zone.records_of(slug).await, vec![], "{slug} left records");
    }
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
    zone.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_powerdns_servers_are_refused_and_nothing_is_stored() {
    let zone = Zone::new().await;
    let fleet = Fleet::new(Engine::Sqlite).await;
    let port = dns_port();
    let mut wrong_key = url::Url::parse(&api_url()).unwrap();
    wrong_key.set_password(Some("hunter2wrongkey")).unwrap();
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let rabbitmq = std::env::var("TENANTRY_TEST_RABBITMQ_ADMIN_URL")
        .unwrap_or_else(|_| "http://guest:guest@127.0.0.1:15672".into());
    let not_powerdns = format!(
        "http://api:hunter2wrongkey@{}",
        url::Url::parse(&rabbitmq)
            .unwrap()
            .host_str()
            .map(|host| format!(
                "{host}:{}",
                url::Url::parse(&rabbitmq).unwrap().port().unwrap_or(15672)
            ))
            .unwrap()
    );
    let cases: Vec<(String, String, &str, &str)> = vec![
        (
            wrong_key.to_string(),
            zone.name.clone(),
            "E_ADMIN_CONN_UNRESOLVED",
            "API key was refused",
        ),
        (
            api_url(),
            "no-such-zone.test.".into(),
            "E_INVALID_INPUT",
            "has no zone no-such-zone.test.",
        ),
        (
            not_powerdns,
            zone.name.clone(),
            "E_ADMIN_CONN_UNRESOLVED",
            "",
        ),
        (
            format!("http://api:hunter2wrongkey@127.0.0.1:{closed_port}"),
            zone.name.clone(),
            "E_ADMIN_CONN_UNRESOLVED",
            "could not be reached",
        ),
        (
            api_url(),
            "not a zone".into(),
            "E_INVALID_INPUT",
            "is not a DNS name",
        ),
    ];
    for (admin_url, zone_name, code, words) in cases {
        let run = fleet
            .run_with_stdin(
                &[
                    "servers",
                    "add",
                    "--name",
                    "dns-bad",
                    "--engine",
                    "powerdns",
                    "--admin-url-stdin",
                    "--capacity",
                    "10",
                    "--zone",
                    &zone_name,
                    "--dns-target",
                    "127.0.0.1",
                    "--dns-port",
                    &port,
                ],
                &admin_url,
            )
            .await;
        assert_eq!(
            run.error_code().as_deref(),
            Some(code),
            "{zone_name}: {run:?}"
        );
        assert!(run.stderr.contains(words), "{run:?}");
        assert!(!run.stderr.contains("hunter2wrongkey"), "{run:?}");
    }
    // DNS settings on another engine, and a powerdns server without them.
    let run = fleet
        .run_with_stdin(
            &[
                "servers",
                "add",
                "--name",
                "dns-bad",
                "--engine",
                "redis",
                "--admin-url-stdin",
                "--capacity",
                "10",
                "--zone",
                &zone.name,
            ],
            "redis://127.0.0.1:6379",
        )
        .await;
    assert_eq!(
        run.error_code().as_deref(),
        Some("E_INVALID_INPUT"),
        "{run:?}"
    );
    let run = fleet
        .run_with_stdin(
            &[
                "servers",
                "add",
                "--name",
                "dns-bad",
                "--engine",
                "powerdns",
                "--admin-url-stdin",
                "--capacity",
                "10",
            ],
            &api_url(),
        )
        .await;
    assert_eq!(
        run.error_code().as_deref(),
        Some("E_INVALID_INPUT"),
        "{run:?}"
    );

    // Nothing was registered or stored.
    let servers = fleet.json(&["servers", "list"]).await;
    assert!(
        servers
            .as_array()
            .unwrap()
            .iter()
            .all(|server| server["name"] != "dns-bad"),
        "{servers}"
    );
    assert_eq!(fleet.secret("server-admin-dns-bad").await, None);
    fleet.cleanup().await;
    zone.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_at_every_phase_unwinds_the_records_and_a_crash_at_every_phase_resumes() {
    let zone = Zone::new().await;
    let fleet = dns_fleet(&zone).await;
    // An error before and after every phase, and inside dns_created once its secret is stored: nothing is left.
    let failpoints = NAMED_PHASES
        .iter()
        .flat_map(|phase| ["before", "after"].map(|boundary| format!("{phase}.{boundary}=error")))
        .chain(["dns_created.credentials_stored=error".to_owned()]);
    for failpoint in failpoints {
        let slug = unique("unwind");
        let run = provision_named_env(&fleet, &slug, &[("TENANTRY_FAILPOINTS", &failpoint)]).await;
        assert_eq!(
            run.error_code().as_deref(),
            Some("E_FAILPOINT"),
            "{failpoint}: {run:?}"
        );
        assert_named_gone(&fleet, &zone, &slug).await;
    }

    // A crash before and after every phase, then the same command again: the tenant is whole.
    let mut slugs = Vec::new();
    for phase in NAMED_PHASES {
        for boundary in ["before", "after"] {
            let slug = unique("crash");
            let failpoint = format!("{phase}.{boundary}=exit");
            let crashed =
                provision_named_env(&fleet, &slug, &[("TENANTRY_FAILPOINTS", &failpoint)]).await;
            assert_eq!(crashed.status, 137, "{failpoint}: {crashed:?}");
            provision_named(&fleet, &slug).await;
            assert!(
                passed(&fleet.validation(&slug).await, "dns_record_answers"),
                "{failpoint}"
            );
            slugs.push(slug);
        }
    }

    // Every step twice converges, and every undo twice leaves nothing.
    let twice = unique("twice");
    provision_named_env(&fleet, &twice, &[("TENANTRY_REPEAT_STEPS", "1")])
        .await
        .assert_ok();
    slugs.push(twice);
    let undo_twice = unique("undo-twice");
    let run = provision_named_env(
        &fleet,
        &undo_twice,
        &[
            ("TENANTRY_REPEAT_STEPS", "1"),
            ("TENANTRY_FAILPOINTS", "complete.after=error"),
        ],
    )
    .await;
    assert_eq!(run.error_code().as_deref(), Some("E_FAILPOINT"), "{run:?}");
    assert_named_gone(&fleet, &zone, &undo_twice).await;
    fleet.assert_doctor_clean().await;
    for slug in &slugs {
        fleet
            .run(&["offboard-tenant", "--slug", slug, "--purge"])
            .await
            .assert_ok();
        assert_named_gone(&fleet, &zone, slug).await;
    }
    fleet.cleanup().await;
    zone.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_adds_a_powerdns_server_from_its_zone_and_target() {
    let zone = Zone::new().await;
    let fleet = Fleet::new(Engine::Sqlite).await;
    let server = fleet.serve(&[]).await;
    let token = fleet.token_for("ops@example.com", "PLATFORM_ADMIN").await;
    let port: u16 = dns_port().parse().unwrap();
    // DNS settings on another engine are bad input, before anything is checked or stored.
    let response = server
        .post("/platform/servers", &token)
        .json(
            &json!({ "name": "dns-odd", "engine": "redis", "admin_url": "redis://127.0.0.1:6379",
            "capacity": 5, "zone": zone.name, "dns_target": "127.0.0.1" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error_code"],
        "E_INVALID_INPUT"
    );
    let response = server
        .post("/platform/servers", &token)
        .json(
            &json!({ "name": "dns-api", "engine": "powerdns", "admin_url": api_url(), "capacity": 5,
            "zone": zone.name, "dns_target": "2001:db8::10", "dns_port": port }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let added: Value = response.json().await.unwrap();
    assert_eq!(added["engine"], "powerdns");
    assert_eq!(
        added["public_url"],
        format!("dns://127.0.0.1:{port}/{}?target=2001:db8::10", zone.name)
    );
    // The API key went to the secret store, never into the answer.
    let key = url::Url::parse(&api_url())
        .unwrap()
        .password()
        .unwrap()
        .to_owned();
    assert!(!added.to_string().contains(&key));
    server.terminate().await;
    fleet.cleanup().await;
    zone.delete().await;
}
