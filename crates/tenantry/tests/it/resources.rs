//! A tenant as a set of resources: a plan of database, cache and queue, provisioned, validated, offboarded and
//! purged through the real binary against real servers (the suite's own Redis, the machine's RabbitMQ); failures
//! and crashes at every phase of that plan; drift made by hand, named by doctor and repaired by reconcile; and
//! the bad input around kinds and servers.

use crate::failures::assert_nothing_left;
use crate::harness::{write_file, Engine, Fleet};
use tokio::sync::{Mutex, MutexGuard};

/// The tests here share the suite's own Redis, and one of them restarts it: they take turns.
pub(crate) static OWN_REDIS: Mutex<()> = Mutex::const_new(());

pub(crate) const RESOURCE_PLANS: &str = r#"
[[plans]]
name = "starter"
connection_limit = 10
statement_timeout_ms = 30000

[[plans]]
name = "bundle"
connection_limit = 10
statement_timeout_ms = 30000
resources = ["database", "cache", "queue"]

[plans.quotas.queue]
max_connections = 5
max_queues = 10
"#;

/// The phases of a provisioning job for the bundle plan, in order.
const BUNDLE_PHASES: [&str; 13] = [
    "request_validated",
    "placement_resolved",
    "state_checked",
    "secret_set",
    "database_created",
    "cache_created",
    "queue_created",
    "migrations_applied",
    "master_registered",
    "admin_seeded",
    "settings_applied",
    "checks_passed",
    "complete",
];

pub(crate) fn own_redis_url() -> String {
    std::env::var("TENANTRY_TEST_OWN_REDIS_URL")
        .expect("TENANTRY_TEST_OWN_REDIS_URL is set by scripts/test-services")
}

fn rabbitmq_admin_url() -> String {
    std::env::var("TENANTRY_TEST_RABBITMQ_ADMIN_URL")
        .unwrap_or_else(|_| "http://guest:guest@127.0.0.1:15672".into())
}

fn rabbitmq_amqp_url() -> String {
    std::env::var("TENANTRY_TEST_RABBITMQ_AMQP_URL")
        .unwrap_or_else(|_| "amqp://127.0.0.1:5672".into())
}

/// A slug no other run (or other installation on the machine's RabbitMQ) uses.
pub(crate) fn unique(prefix: &str) -> String {
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    format!("{prefix}-{}", &suffix[suffix.len() - 8..])
}

/// A fleet with the resource plans, a cache server (the suite's own Redis) and a queue server (RabbitMQ).
pub(crate) async fn resource_fleet(engine: Engine) -> (Fleet, MutexGuard<'static, ()>) {
    let guard = OWN_REDIS.lock().await;
    let fleet = Fleet::new(engine).await;
    write_file(&fleet.scratch_dir.join("tenantry.toml"), RESOURCE_PLANS);
    fleet
        .run_with_stdin(
            &[
                "servers",
                "add",
                "--name",
                "cache-a",
                "--engine",
                "redis",
                "--admin-url-stdin",
                "--capacity",
                "1000",
            ],
            &own_redis_url(),
        )
        .await
        .assert_ok();
    let public_url = rabbitmq_amqp_url();
    fleet
        .run_with_stdin(
            &[
                "servers",
                "add",
                "--name",
                "queue-a",
                "--engine",
                "rabbitmq",
                "--admin-url-stdin",
                "--capacity",
                "1000",
                "--public-url",
                &public_url,
            ],
            &rabbitmq_admin_url(),
        )
        .await
        .assert_ok();
    (fleet, guard)
}

async fn provision_bundle(fleet: &Fleet, slug: &str, env: &[(&str, &str)]) -> crate::harness::Run {
    let mut args = Fleet::provision_args(slug);
    args.extend(["--plan".into(), "bundle".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fleet.run_env(&args, env).await
}

pub(crate) fn resource_name(slug: &str) -> String {
    format!("tenant_{}", slug.replace('-', "_"))
}

/// An admin connection to the suite's own Redis.
pub(crate) async fn redis_admin() -> redis::aio::MultiplexedConnection {
    redis::Client::open(own_redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("the suite's own Redis")
}

pub(crate) async fn cache_user_exists(slug: &str) -> bool {
    let mut admin = redis_admin().await;
    let user: Option<redis::Value> = redis::cmd("ACL")
        .arg("GETUSER")
        .arg(resource_name(slug))
        .query_async(&mut admin)
        .await
        .unwrap();
    user.is_some()
}

/// Whether the tenant's own cache credentials log in (as the tenant, not as anyone else).
pub(crate) async fn cache_login_works(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    match client.get_multiplexed_async_connection().await {
        Ok(mut connection) => redis::cmd("ACL")
            .arg("WHOAMI")
            .query_async::<String>(&mut connection)
            .await
            .is_ok_and(|user| user.starts_with("tenant_")),
        Err(_) => false,
    }
}

fn management(path: &str) -> (String, String, String) {
    let parsed = url::Url::parse(&rabbitmq_admin_url()).unwrap();
    let base = format!(
        "http://{}:{}",
        parsed.host_str().unwrap(),
        parsed.port().unwrap()
    );
    (
        format!("{base}/api/{path}"),
        parsed.username().to_owned(),
        parsed.password().unwrap_or("").to_owned(),
    )
}

pub(crate) async fn vhost_exists(slug: &str) -> bool {
    let (url, user, password) = management(&format!("vhosts/{}", resource_name(slug)));
    let response = reqwest::Client::new()
        .get(url)
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap();
    response.status().is_success()
}

async fn delete_vhost_by_hand(slug: &str) {
    let (url, user, password) = management(&format!("vhosts/{}", resource_name(slug)));
    let response = reqwest::Client::new()
        .delete(url)
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{response:?}");
}

/// Whether an AMQP login with the tenant's queue URL opens its vhost.
pub(crate) async fn amqp_login_works(url: &str) -> bool {
    match amqp_open(url).await {
        Some(connection) => {
            let _ = connection.close().await;
            true
        }
        None => false,
    }
}

/// An AMQP connection to the tenant's vhost with its queue URL, if the server lets it in (within 10 s).
pub(crate) async fn amqp_open(url: &str) -> Option<amqprs::connection::Connection> {
    use amqprs::connection::{Connection, OpenConnectionArguments};
    let parsed = url::Url::parse(url).unwrap();
    let vhost = percent_decode(parsed.path().trim_start_matches('/'));
    let arguments = OpenConnectionArguments::new(
        parsed.host_str().unwrap(),
        parsed.port().unwrap_or(5672),
        &percent_decode(parsed.username()),
        &percent_decode(parsed.password().unwrap_or("")),
    )
    .virtual_host(&vhost)
    .finish();
    match tokio::time::timeout(
        std::time::Duration::from_secs(10),
        Connection::open(&arguments),
    )
    .await
    {
        Ok(Ok(connection)) => Some(connection),
        _ => None,
    }
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

/// Everything of a bundle tenant is gone: database, cache user, vhost, every secret, registry row.
async fn assert_bundle_gone(fleet: &Fleet, slug: &str) {
    assert!(
        !cache_user_exists(slug).await,
        "{slug}: cache user left behind"
    );
    assert!(!vhost_exists(slug).await, "{slug}: vhost left behind");
    for kind in ["cache", "queue"] {
        assert_eq!(
            fleet.secret(&format!("tenant-{kind}-{slug}")).await,
            None,
            "{slug}: {kind} secret left"
        );
    }
    assert_nothing_left(fleet, slug).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_tenant_gets_a_database_a_cache_and_a_queue_and_loses_them_on_offboard() {
    let (fleet, _guard) = resource_fleet(Engine::Sqlite).await;
    let slug = unique("bundle");
    let mut args = Fleet::provision_args(&slug);
    args.extend(["--plan".into(), "bundle".into(), "--json".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fleet.run(&args).await;
    run.assert_ok();
    let job = run.json();
    let names: Vec<&str> = job["job"]["phases"]
        .as_array()
        .or_else(|| job["phases"].as_array())
        .unwrap_or_else(|| panic!("no phases in {job}"))
        .iter()
        .map(|phase| phase["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BUNDLE_PHASES);

    // The registry lists three resources, each on its server, and the console's tenant page shows them.
    let shown = fleet.json(&["tenants", "show", &slug]).await;
    let kinds: Vec<&str> = shown["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{shown}"))
        .iter()
        .map(|resource| resource["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["database", "cache", "queue"]);

    // The validation suite ran each kind's checks with the tenant's own credentials.
    let report = fleet.json(&["validate", "--slug", &slug]).await;
    let checks: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| check["name"].as_str().unwrap())
        .collect();
    for expected in [
        "cache_login",
        "cache_outside_refused",
        "cache_neighbour_refused",
        "queue_login",
        "queue_neighbour_refused",
    ] {
        assert!(
            checks.contains(&expected),
            "{expected} missing from {checks:?}"
        );
    }
    let cache_url = fleet
        .secret(&format!("tenant-cache-{slug}"))
        .await
        .expect("cache secret");
    let queue_url = fleet
        .secret(&format!("tenant-queue-{slug}"))
        .await
        .expect("queue secret");
    assert!(cache_url.starts_with("redis://") && queue_url.starts_with("amqp://"));
    assert!(cache_login_works(&cache_url).await);
    assert!(amqp_login_works(&queue_url).await);
    fleet.assert_doctor_clean().await;

    // Offboarded without purge: all three refuse the tenant's credentials; the data stays.
    fleet
        .run(&["offboard-tenant", "--slug", &slug])
        .await
        .assert_ok();
    assert!(
        !cache_login_works(&cache_url).await,
        "the cache still lets an offboarded tenant in"
    );
    assert!(
        !amqp_login_works(&queue_url).await,
        "the queue still lets an offboarded tenant in"
    );
    assert!(
        cache_user_exists(&slug).await && vhost_exists(&slug).await,
        "offboarding without purge keeps the data"
    );
    fleet.assert_doctor_clean().await;

    // Purged: nothing left anywhere.
    fleet
        .run(&["offboard-tenant", "--slug", &slug, "--purge"])
        .await
        .assert_ok();
    assert_bundle_gone(&fleet, &slug).await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_at_every_phase_of_the_bundle_unwinds_every_resource() {
    let (fleet, _guard) = resource_fleet(Engine::Sqlite).await;
    for phase in BUNDLE_PHASES {
        for boundary in ["before", "after"] {
            let slug = unique("unwind");
            let failpoint = format!("{phase}.{boundary}=error");
            let run = provision_bundle(&fleet, &slug, &[("TENANTRY_FAILPOINTS", &failpoint)]).await;
            assert_eq!(
                run.error_code().as_deref(),
                Some("E_FAILPOINT"),
                "{failpoint}: {run:?}"
            );
            assert_bundle_gone(&fleet, &slug).await;
        }
    }
    // Inside a resource's phase: its credentials are stored, the resource not yet made.
    for kind in ["cache", "queue"] {
        let slug = unique("inside");
        let failpoint = format!("{kind}_created.credentials_stored=error");
        let run = provision_bundle(&fleet, &slug, &[("TENANTRY_FAILPOINTS", &failpoint)]).await;
        assert_eq!(
            run.error_code().as_deref(),
            Some("E_FAILPOINT"),
            "{failpoint}: {run:?}"
        );
        assert_bundle_gone(&fleet, &slug).await;
    }
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_every_phase_of_the_bundle_resumes_and_every_step_twice_converges() {
    let (fleet, _guard) = resource_fleet(Engine::Sqlite).await;
    let mut slugs = Vec::new();
    for phase in BUNDLE_PHASES {
        for boundary in ["before", "after"] {
            let slug = unique("crash");
            let failpoint = format!("{phase}.{boundary}=exit");
            let crashed =
                provision_bundle(&fleet, &slug, &[("TENANTRY_FAILPOINTS", &failpoint)]).await;
            assert_eq!(
                crashed.status, 137,
                "{failpoint} ends the process: {crashed:?}"
            );
            provision_bundle(&fleet, &slug, &[]).await.assert_ok();
            assert!(
                cache_user_exists(&slug).await && vhost_exists(&slug).await,
                "{failpoint}"
            );
            slugs.push(slug);
        }
    }
    let twice = unique("twice");
    provision_bundle(&fleet, &twice, &[("TENANTRY_REPEAT_STEPS", "1")])
        .await
        .assert_ok();
    let undo_twice = unique("undo-twice");
    let run = provision_bundle(
        &fleet,
        &undo_twice,
        &[
            ("TENANTRY_REPEAT_STEPS", "1"),
            ("TENANTRY_FAILPOINTS", "complete.after=error"),
        ],
    )
    .await;
    assert_eq!(run.error_code().as_deref(), Some("E_FAILPOINT"), "{run:?}");
    assert_bundle_gone(&fleet, &undo_twice).await;
    slugs.push(twice);
    fleet.assert_doctor_clean().await;
    for slug in &slugs {
        fleet
            .run(&["offboard-tenant", "--slug", slug, "--purge"])
            .await
            .assert_ok();
    }
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_made_by_hand_is_named_by_doctor_and_repaired_by_reconcile() {
    let (fleet, _guard) = resource_fleet(Engine::Sqlite).await;
    let (lost, gone, widened) = (unique("lost"), unique("gone"), unique("wide"));
    for slug in [&lost, &gone, &widened] {
        provision_bundle(&fleet, slug, &[]).await.assert_ok();
    }
    // Isolation between two real tenants: A's credentials reach neither B's keys nor B's vhost.
    let a_cache = fleet.secret(&format!("tenant-cache-{lost}")).await.unwrap();
    let mut a_session = redis::Client::open(a_cache.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let refused: redis::RedisResult<Option<String>> = redis::cmd("GET")
        .arg(format!("tenant:{gone}:secret"))
        .query_async(&mut a_session)
        .await;
    assert!(refused.is_err(), "A read B's key");
    let a_queue = fleet.secret(&format!("tenant-queue-{lost}")).await.unwrap();
    let into_b = format!(
        "{}/{}",
        a_queue.rsplit_once('/').unwrap().0,
        resource_name(&gone)
    );
    assert!(!amqp_login_works(&into_b).await, "A opened B's vhost");

    let mut admin = redis_admin().await;
    let _: () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(resource_name(&lost))
        .query_async(&mut admin)
        .await
        .unwrap();
    delete_vhost_by_hand(&gone).await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(resource_name(&widened))
        .arg("~*")
        .query_async(&mut admin)
        .await
        .unwrap();

    let doctor = fleet.run(&["doctor", "--json"]).await;
    assert_eq!(doctor.status, 1, "{doctor:?}");
    let findings = doctor.json()["findings"].as_array().unwrap().clone();
    for (slug, kind, finding) in [
        (&lost, "cache", "missing"),
        (&gone, "queue", "missing"),
        (&widened, "cache", "drift"),
    ] {
        let fix = format!("tenantry reconcile --slug {slug} --kind {kind}");
        assert!(
            findings
                .iter()
                .any(|found| found["kind"] == finding && found["fix"] == fix.as_str()),
            "doctor does not name the {finding} {kind} of {slug}: {findings:?}"
        );
    }
    // Each fix, as doctor says it.
    fleet
        .run(&["reconcile", "--slug", &lost, "--kind", "cache"])
        .await
        .assert_ok();
    fleet
        .run(&["reconcile", "--slug", &gone, "--kind", "queue"])
        .await
        .assert_ok();
    // The last through the API, as an admin (a read-only token is refused).
    let token = fleet.token_for("ops@example.com", "PLATFORM_ADMIN").await;
    let readonly = fleet.token_for("ro@example.com", "PLATFORM_READONLY").await;
    let server = fleet.serve(&[]).await;
    let path = format!("/platform/tenants/{widened}/reconcile");
    let refused = server
        .post(&path, &readonly)
        .json(&serde_json::json!({ "kind": "cache" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let accepted = server
        .post(&path, &token)
        .json(&serde_json::json!({ "kind": "cache" }))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let job_id = accepted.json::<serde_json::Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    crate::harness::eventually(
        30,
        || format!("reconcile job {job_id} completes"),
        || async {
            let job: serde_json::Value = server
                .get(&format!("/platform/jobs/{job_id}"), &token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (job["status"] == "complete").then_some(())
        },
    )
    .await;
    let resources: serde_json::Value = server
        .get(&format!("/platform/tenants/{widened}/resources"), &readonly)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resources.as_array().map(Vec::len), Some(3), "{resources}");
    server.terminate().await;
    fleet.assert_doctor_clean().await;
    assert!(
        cache_login_works(&a_cache).await,
        "the restored user takes the secret's password"
    );
    assert!(amqp_login_works(&fleet.secret(&format!("tenant-queue-{gone}")).await.unwrap()).await);
    assert!(fleet
        .audit_types(&lost)
        .await
        .contains(&"TENANT_RECONCILED".to_owned()));
    for slug in [&lost, &gone, &widened] {
        fleet
            .run(&["offboard-tenant", "--slug", slug, "--purge"])
            .await
            .assert_ok();
    }
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_every_user_and_one_reconcile_restores_them_all() {
    let (fleet, _guard) = resource_fleet(Engine::Sqlite).await;
    let slugs: Vec<String> = (0..3).map(|_| unique("restart")).collect();
    for slug in &slugs {
        provision_bundle(&fleet, slug, &[]).await.assert_ok();
    }
    let restart =
        std::env::var("TENANTRY_TEST_REDIS_RESTART").expect("set by scripts/test-services");
    let restarted = tokio::process::Command::new(&restart)
        .status()
        .await
        .unwrap();
    assert!(restarted.success());

    let doctor = fleet.run(&["doctor", "--json"]).await;
    assert_eq!(doctor.status, 1, "{doctor:?}");
    let findings = doctor.json()["findings"].as_array().unwrap().clone();
    for slug in &slugs {
        assert!(
            findings.iter().any(|found| found["kind"] == "missing"
                && found["subject"]
                    .as_str()
                    .unwrap()
                    .contains(&resource_name(slug))),
            "doctor does not name {slug}'s lost cache user: {findings:?}"
        );
    }
    fleet
        .run(&["reconcile", "--kind", "cache"])
        .await
        .assert_ok();
    fleet.assert_doctor_clean().await;
    for slug in &slugs {
        let url = fleet.secret(&format!("tenant-cache-{slug}")).await.unwrap();
        assert!(
            cache_login_works(&url).await,
            "{slug}'s user is back with its password"
        );
        fleet
            .run(&["offboard-tenant", "--slug", slug, "--purge"])
            .await
            .assert_ok();
    }
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_about_kinds_and_servers_changes_nothing() {
    let (fleet, _guard) = resource_fleet(Engine::Sqlite).await;
    // A server of another engine named as the database's server.
    let slug = unique("wrong");
    let mut args = Fleet::provision_args(&slug);
    args.extend([
        "--plan".into(),
        "bundle".into(),
        "--server".into(),
        "cache-a".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fleet.run(&args).await;
    assert_eq!(
        run.error_code().as_deref(),
        Some("E_INVALID_INPUT"),
        "{run:?}"
    );
    assert!(run.stderr.contains("hosts no tenant databases"), "{run:?}");
    assert_bundle_gone(&fleet, &slug).await;

    // Unreachable admin URLs are the admin connection's failure, malformed ones bad input; either way nothing is
    // registered and no password is echoed.
    for (engine, url, code) in [
        (
            "redis",
            "redis://admin:hunter2secret@127.0.0.1:1",
            "E_ADMIN_CONN_UNRESOLVED",
        ),
        (
            "rabbitmq",
            "http://guest:hunter2secret@127.0.0.1:1",
            "E_ADMIN_CONN_UNRESOLVED",
        ),
        (
            "redis",
            "rediss//admin:hunter2secret@127.0.0.1",
            "E_INVALID_INPUT",
        ),
        (
            "rabbitmq",
            "amqp://guest:hunter2secret@127.0.0.1:5672",
            "E_INVALID_INPUT",
        ),
    ] {
        let args = [
            "servers",
            "add",
            "--name",
            "nowhere",
            "--engine",
            engine,
            "--admin-url-stdin",
            "--capacity",
            "10",
        ];
        let run = fleet.run_with_stdin(&args, url).await;
        assert_eq!(
            run.error_code().as_deref(),
            Some(code),
            "{engine} {code}: {run:?}"
        );
        assert!(!run.stderr.contains("hunter2secret"), "{run:?}");
    }
    let servers = fleet.json(&["servers", "list"]).await;
    assert_eq!(servers.as_array().unwrap().len(), 3, "{servers}");

    // A reconcile of a kind nobody provides.
    let run = fleet.run(&["reconcile", "--kind", "warp-drive"]).await;
    assert_eq!(
        run.error_code().as_deref(),
        Some("E_INVALID_INPUT"),
        "{run:?}"
    );

    // A plan naming an unknown kind is refused when the configuration is read.
    write_file(
        &fleet.scratch_dir.join("tenantry.toml"),
        &format!("{RESOURCE_PLANS}\n[[plans]]\nname = \"odd\"\nconnection_limit = 1\nstatement_timeout_ms = 1\nresources = [\"database\", \"warp-drive\"]\n"),
    );
    let run = fleet.run(&["plans"]).await;
    assert_ne!(run.status, 0, "{run:?}");
    assert!(run.stderr.contains("warp-drive"), "{run:?}");
    fleet.cleanup().await;
}
