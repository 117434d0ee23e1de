//! Suspend and resume of a tenant with every kind (database, cache, queue) through the real binary and the API
//! against real servers: while suspended its credentials are refused everywhere and its open sessions are ended;
//! resumed, they work again and its data (a row, a key, a queued message) is exactly what it was. Reconcile keeps a
//! suspended tenant's resources off, bad input changes nothing, a failed suspension is undone and audited, and the
//! console's forms end on the job's page.

use crate::for_each_engine;
use crate::harness::{eventually, Engine, Fleet, Server};
use crate::resources::{amqp_login_works, amqp_open, cache_login_works, resource_fleet, unique};
use serde_json::{json, Value};
use sqlx::Connection;
use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

for_each_engine!(suspend_then_resume_with_every_kind);

const REASON: &str = "invoice 2026-11 unpaid";
const MESSAGE: &[u8] = b"order 42 placed";
const QUEUE: &str = "orders";

async fn run(fleet: &Fleet, args: &[String]) -> crate::harness::Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fleet.run(&args).await
}

/// The tenant's three sets of credentials, from the secret store.
struct Credentials {
    database: String,
    cache: String,
    queue: String,
}

async fn credentials(fleet: &Fleet, slug: &str) -> Credentials {
    let secret = |kind: &'static str| async move {
        fleet
            .secret(&format!("tenant-{kind}-{slug}"))
            .await
            .unwrap_or_else(|| panic!("{slug}: no {kind} secret"))
    };
    Credentials {
        database: secret("db").await,
        cache: secret("cache").await,
        queue: secret("queue").await,
    }
}

/// Whether the tenant's database lets it in: a PostgreSQL login with its URL; for a SQLite file (which has no
/// login, and this suite may run as root, whom file modes do not stop), whether the file may be written.
async fn database_login_works(fleet: &Fleet, slug: &str, url: &str) -> bool {
    match fleet.engine {
        Engine::Postgres => sqlx::PgConnection::connect(url).await.is_ok(),
        Engine::Sqlite => {
            let mode = std::fs::metadata(fleet.sqlite_file(slug))
                .unwrap()
                .permissions()
                .mode();
            mode & 0o200 != 0
        }
    }
}

/// Writes a row into the tenant's database with its own credentials.
async fn write_row(fleet: &Fleet, url: &str) {
    const CREATE: &str = "CREATE TABLE suspension_probe (note TEXT NOT NULL)";
    const INSERT: &str = "INSERT INTO suspension_probe (note) VALUES ('kept')";
    match fleet.engine {
        Engine::Postgres => {
            let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(CREATE).execute(&mut connection).await.unwrap();
            sqlx::query(INSERT).execute(&mut connection).await.unwrap();
            connection.close().await.unwrap();
        }
        Engine::Sqlite => {
            let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query(CREATE).execute(&mut connection).await.unwrap();
            sqlx::query(INSERT).execute(&mut connection).await.unwrap();
            connection.close().await.unwrap();
        }
    }
}

async fn read_rows(fleet: &Fleet, url: &str) -> Vec<String> {
    const SELECT: &str = "SELECT note FROM suspension_probe";
    match fleet.engine {
        Engine::Postgres => {
            let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar(SELECT)
                .fetch_all(&mut connection)
                .await
                .unwrap()
        }
        Engine::Sqlite => {
            let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
            let rows = sqlx::query_scalar(SELECT)
                .fetch_all(&mut connection)
                .await
                .unwrap();
            connection.close().await.unwrap();
            rows
        }
    }
}

async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Publishes one persistent message to a durable queue of the tenant's vhost. The connection is closed
/// gracefully, which RabbitMQ answers only after it has routed what came before on it: the message is queued.
async fn publish(url: &str) {
    use amqprs::channel::{BasicPublishArguments, QueueDeclareArguments};
    use amqprs::BasicProperties;
    let connection = amqp_open(url).await.expect("the tenant's AMQP login");
    let channel = connection.open_channel(None).await.unwrap();
    channel
        .queue_declare(QueueDeclareArguments::durable_client_named(QUEUE))
        .await
        .unwrap();
    channel
        .basic_publish(
            BasicProperties::default().with_persistence(true).finish(),
            MESSAGE.to_vec(),
            BasicPublishArguments::new("", QUEUE),
        )
        .await
        .unwrap();
    channel.close().await.unwrap();
    connection.close().await.unwrap();
}

/// Takes the queued message (acknowledged automatically), if there is one.
async fn take_message(url: &str) -> Option<Vec<u8>> {
    use amqprs::channel::BasicGetArguments;
    let connection = amqp_open(url).await.expect("the tenant's AMQP login");
    let channel = connection.open_channel(None).await.unwrap();
    let message = channel
        .basic_get(BasicGetArguments::new(QUEUE).no_ack(true).finish())
        .await
        .unwrap()
        .map(|(_, _, content)| content);
    channel.close().await.unwrap();
    connection.close().await.unwrap();
    message
}

fn phase_names(job: &Value) -> Vec<&str> {
    job["phases"]
        .as_array()
        .unwrap_or_else(|| panic!("no phases in {job}"))
        .iter()
        .map(|phase| phase["name"].as_str().unwrap())
        .collect()
}

/// The tenant's status and each resource's status, as `tenants show` reports them.
async fn statuses(fleet: &Fleet, slug: &str) -> (String, Vec<(String, String)>) {
    let shown = fleet.json(&["tenants", "show", slug]).await;
    let resources = shown["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{shown}"))
        .iter()
        .map(|resource| {
            (
                resource["kind"].as_str().unwrap().to_owned(),
                resource["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let status = shown["tenant"]["status"]
        .as_str()
        .or_else(|| shown["status"].as_str())
        .unwrap_or_else(|| panic!("no status in {shown}"))
        .to_owned();
    (status, resources)
}

fn every_resource(status: &str) -> Vec<(String, String)> {
    ["database", "cache", "queue"]
        .iter()
        .map(|kind| (kind.to_string(), status.to_owned()))
        .collect()
}

/// The newest audit event of `event_type` about `slug`.
pub(crate) async fn last_audit(fleet: &Fleet, slug: &str, event_type: &str) -> Value {
    fleet
        .json(&["audit", "list", "--tenant", slug])
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["event_type"] == event_type)
        .max_by_key(|event| event["id"].as_i64().unwrap_or_default())
        .cloned()
        .unwrap_or_else(|| panic!("{slug}: no {event_type} audit event"))
}

async fn suspend_then_resume_with_every_kind(engine: Engine) {
    let (fleet, _own_redis) = resource_fleet(engine).await;
    let slug = unique("susp");
    fleet.provision_on_plan(&slug, "bundle").await.assert_ok();
    let credentials = credentials(&fleet, &slug).await;

    // Data in every resource: a row, a key, a queued message.
    write_row(&fleet, &credentials.database).await;
    let key = format!("tenant:{slug}:greeting");
    let mut cache = redis_connection(&credentials.cache).await;
    redis::cmd("SET")
        .arg(&key)
        .arg("hello")
        .query_async::<()>(&mut cache)
        .await
        .unwrap();
    publish(&credentials.queue).await;

    // Sessions the tenant holds open when it is suspended.
    let mut open_database = match engine {
        Engine::Postgres => Some(
            sqlx::PgConnection::connect(&credentials.database)
                .await
                .unwrap(),
        ),
        Engine::Sqlite => None,
    };
    let open_queue = amqp_open(&credentials.queue).await.unwrap();

    // Suspended: the job's phases are one per resource, the database first.
    let suspended = fleet
        .run(&["tenants", "suspend", &slug, "--reason", REASON, "--json"])
        .await;
    let job_ended = Instant::now();
    suspended.assert_ok();
    // Straight after the command returns, with no wait: every login is refused.
    assert!(
        !database_login_works(&fleet, &slug, &credentials.database).await,
        "the database still lets a suspended tenant in"
    );
    assert!(
        !cache_login_works(&credentials.cache).await,
        "the cache still lets a suspended tenant in"
    );
    assert!(
        !amqp_login_works(&credentials.queue).await,
        "the queue still lets a suspended tenant in"
    );
    let refused_after = job_ended.elapsed();
    // The CLI's JSON is the job's view with the one-time secrets (none here).
    let job = suspended.json()["job"].clone();
    assert_eq!(job["status"], "complete", "{job}");
    assert_eq!(job["kind"], "suspend", "{job}");
    assert_eq!(
        phase_names(&job),
        [
            "request_validated",
            "database_disabled",
            "cache_disabled",
            "queue_disabled",
            "complete"
        ]
    );

    // The sessions that were open are ended: the cache's and the database's at once, the queue's connection
    // closed by the server.
    let ping = redis::cmd("PING").query_async::<String>(&mut cache).await;
    assert!(ping.is_err(), "an open cache session survived: {ping:?}");
    if let Some(connection) = open_database.as_mut() {
        let query = sqlx::query("SELECT 1").execute(&mut *connection).await;
        assert!(query.is_err(), "an open database session survived");
    }
    eventually(
        10,
        || "the tenant's open AMQP connection was not closed".into(),
        || {
            let open = open_queue.is_open();
            async move { (!open).then_some(()) }
        },
    )
    .await;
    let closed_after = job_ended.elapsed();
    eprintln!(
        "suspend ({engine:?}): new logins refused {:?} after the job's end (checked at once); open sessions \
         ended within {closed_after:?}",
        refused_after
    );

    // The registry says so: the tenant suspended, each resource disabled, the reason in the job and the audit.
    assert_eq!(
        statuses(&fleet, &slug).await,
        ("suspended".to_owned(), every_resource("disabled"))
    );
    assert!(
        job["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|line| line["message"].as_str().unwrap().contains(REASON)),
        "the job's log gives the reason: {job}"
    );
    let audit = last_audit(&fleet, &slug, "TENANT_SUSPENDED").await;
    assert_eq!(audit["details"]["reason"], REASON, "{audit}");
    fleet.assert_doctor_clean().await;

    // Reconcile, for the fleet and for every active tenant, keeps a suspended tenant's resources off; the
    // tenant's own reconcile is refused (it is not active).
    fleet.run(&["reconcile"]).await.assert_ok();
    assert!(!cache_login_works(&credentials.cache).await);
    assert!(!amqp_login_works(&credentials.queue).await);
    assert!(!database_login_works(&fleet, &slug, &credentials.database).await);
    let own = fleet.run(&["reconcile", "--slug", &slug]).await;
    assert_eq!(own.error_code().as_deref(), Some("E_CONFLICT"), "{own:?}");

    // Suspended twice: refused, nothing changes.
    let again = fleet
        .run(&["tenants", "suspend", &slug, "--reason", REASON])
        .await;
    assert_eq!(
        again.error_code().as_deref(),
        Some("E_CONFLICT"),
        "{again:?}"
    );

    // Resumed: the database opens last, every resource is active, and each login works again.
    let resumed = fleet.run(&["tenants", "resume", &slug, "--json"]).await;
    resumed.assert_ok();
    // The CLI's JSON is the job's view with the one-time secrets (none here).
    let job = resumed.json()["job"].clone();
    assert_eq!(job["kind"], "resume", "{job}");
    assert_eq!(
        phase_names(&job),
        [
            "request_validated",
            "queue_enabled",
            "cache_enabled",
            "database_enabled",
            "complete"
        ]
    );
    assert!(database_login_works(&fleet, &slug, &credentials.database).await);
    assert!(cache_login_works(&credentials.cache).await);
    assert!(amqp_login_works(&credentials.queue).await);
    assert_eq!(
        statuses(&fleet, &slug).await,
        ("active".to_owned(), every_resource("active"))
    );
    last_audit(&fleet, &slug, "TENANT_RESUMED").await;
    fleet.assert_doctor_clean().await;

    // The data is what it was.
    assert_eq!(read_rows(&fleet, &credentials.database).await, ["kept"]);
    let mut cache = redis_connection(&credentials.cache).await;
    let value: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut cache)
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("hello"));
    assert_eq!(
        take_message(&credentials.queue).await.as_deref(),
        Some(MESSAGE)
    );

    // Resumed twice: refused.
    let again = fleet.run(&["tenants", "resume", &slug]).await;
    assert_eq!(
        again.error_code().as_deref(),
        Some("E_CONFLICT"),
        "{again:?}"
    );

    run(
        &fleet,
        &[
            "offboard-tenant".into(),
            "--slug".into(),
            slug.clone(),
            "--purge".into(),
        ],
    )
    .await
    .assert_ok();
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_a_failed_suspension_change_nothing() {
    let fleet = Fleet::new(Engine::Sqlite).await;
    fleet.provision("quiet-co", &[]).await.assert_ok();
    let jobs_before = fleet.jobs().await.len();
    let audit_before = fleet.audit_types("quiet-co").await;

    for (args, code) in [
        (
            vec!["tenants", "suspend", "no-such-co", "--reason", REASON],
            "E_NOT_FOUND",
        ),
        (vec!["tenants", "resume", "no-such-co"], "E_NOT_FOUND"),
        (vec!["tenants", "suspend", "quiet-co"], "E_INVALID_INPUT"),
        (
            vec!["tenants", "suspend", "quiet-co", "--reason", "  "],
            "E_INVALID_INPUT",
        ),
        (
            vec![
                "tenants",
                "suspend",
                "quiet-co",
                "--reason",
                &"x".repeat(501),
            ],
            "E_INVALID_INPUT",
        ),
        (
            vec!["tenants", "suspend", "Bad_Slug", "--reason", REASON],
            "E_INVALID_SLUG",
        ),
        (vec!["tenants", "resume", "quiet-co"], "E_CONFLICT"),
    ] {
        let refused = fleet.run(&args).await;
        assert_ne!(refused.status, 0, "{args:?}: {refused:?}");
        assert_eq!(
            refused.error_code().as_deref(),
            Some(code),
            "{args:?}: {refused:?}"
        );
    }
    assert_eq!(
        fleet.jobs().await.len(),
        jobs_before,
        "a refused request made a job"
    );
    assert_eq!(fleet.audit_types("quiet-co").await, audit_before);
    assert_eq!(statuses(&fleet, "quiet-co").await.0, "active");

    // A suspension that fails is undone: the tenant stays active with its database open, and the failure is
    // audited with its code and the reason (`TENANT_SUSPEND_FAILED` raises `job.failed`).
    let failed = fleet
        .run_env(
            &["tenants", "suspend", "quiet-co", "--reason", REASON],
            &[("TENANTRY_FAILPOINTS", "complete.after=error")],
        )
        .await;
    assert_eq!(
        failed.error_code().as_deref(),
        Some("E_FAILPOINT"),
        "{failed:?}"
    );
    assert_eq!(
        statuses(&fleet, "quiet-co").await,
        (
            "active".to_owned(),
            vec![("database".to_owned(), "active".to_owned())]
        )
    );
    let mode = std::fs::metadata(fleet.sqlite_file("quiet-co"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the undo opened the file again");
    let audit = last_audit(&fleet, "quiet-co", "TENANT_SUSPEND_FAILED").await;
    assert_eq!(audit["details"]["error_code"], "E_FAILPOINT", "{audit}");
    assert_eq!(audit["details"]["reason"], REASON, "{audit}");

    // `--no-wait` records the job for a worker; while it waits, the tenant has a live job and a second
    // suspension is refused with the job named.
    let recorded = fleet
        .run(&[
            "tenants",
            "suspend",
            "quiet-co",
            "--reason",
            REASON,
            "--no-wait",
            "--json",
        ])
        .await;
    recorded.assert_ok();
    let job_id = recorded.json()["job_id"].as_str().unwrap().to_owned();
    let busy = fleet
        .run(&["tenants", "suspend", "quiet-co", "--reason", REASON])
        .await;
    assert_eq!(busy.error_code().as_deref(), Some("E_CONFLICT"), "{busy:?}");
    assert!(busy.stderr.contains(&job_id), "{busy:?}");
    fleet.run(&["jobs", "resume", &job_id]).await.assert_ok();
    assert_eq!(statuses(&fleet, "quiet-co").await.0, "suspended");
    fleet.cleanup().await;
}

pub(crate) const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8";

pub(crate) async fn wait_for_job(server: &Server, token: &str, job_id: &str) -> Value {
    eventually(
        60,
        || format!("job {job_id} did not end"),
        || async {
            let job: Value = server
                .get(&format!("/platform/jobs/{job_id}"), token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            ["complete", "failed", "rolled_back"]
                .contains(&job["status"].as_str().unwrap_or_default())
                .then_some(job)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_the_console_suspend_and_resume_for_admins_only() {
    let fleet = Fleet::new(Engine::Sqlite).await;
    fleet.provision("api-co", &[]).await.assert_ok();
    let admin = fleet.token_for("admin@example.com", "PLATFORM_ADMIN").await;
    let support = fleet
        .token_for("support@example.com", "PLATFORM_SUPPORT")
        .await;
    let server = fleet.serve(&[]).await;
    let post = |path: &str, token: &str, body: Value| {
        server
            .post(&format!("/platform/tenants/{path}"), token)
            .json(&body)
            .send()
    };
    let problem = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (
            status,
            body["error_code"].as_str().unwrap_or_default().to_owned(),
        )
    };

    // Refused, and nothing recorded: no reason, an empty one, an unknown tenant, a role that may not.
    let jobs_before = fleet.jobs().await.len();
    for (path, token, body, expected) in [
        (
            "api-co/suspend",
            &admin,
            json!({}),
            (400, "E_INVALID_INPUT"),
        ),
        (
            "api-co/suspend",
            &admin,
            json!({ "reason": "" }),
            (422, "E_INVALID_INPUT"),
        ),
        (
            "no-such-co/suspend",
            &admin,
            json!({ "reason": REASON }),
            (404, "E_NOT_FOUND"),
        ),
        ("api-co/resume", &admin, json!({}), (409, "E_CONFLICT")),
        (
            "api-co/suspend",
            &support,
            json!({ "reason": REASON }),
            (403, "E_FORBIDDEN"),
        ),
    ] {
        let answer = problem(post(path, token, body.clone()).await.unwrap()).await;
        assert_eq!(
            answer,
            (expected.0, expected.1.to_owned()),
            "POST {path} {body}"
        );
    }
    assert_eq!(fleet.jobs().await.len(), jobs_before);

    // Suspended over the API: 202 with the job, which a worker of the server runs to the end.
    let accepted = post("api-co/suspend", &admin, json!({ "reason": REASON }))
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let accepted: Value = accepted.json().await.unwrap();
    let job = wait_for_job(&server, &admin, accepted["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "complete", "{job}");
    assert_eq!(job["kind"], "suspend", "{job}");
    let tenant: Value = server
        .get("/platform/tenants/api-co", &admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tenant["status"], "suspended", "{tenant}");
    let again = post("api-co/suspend", &admin, json!({ "reason": REASON }))
        .await
        .unwrap();
    assert_eq!(problem(again).await, (409, "E_CONFLICT".to_owned()));

    // The console: an admin's tenant page offers Resume (not Suspend) for the suspended tenant; the form
    // posts to the same path and ends on the job's page.
    let cookie = fleet
        .console_session(&server, "ops@example.com", "PLATFORM_ADMIN")
        .await;
    let page = |cookie: String| {
        let server = &server;
        async move {
            server
                .http
                .get(server.url("/platform/tenants/api-co"))
                .header("accept", BROWSER_ACCEPT)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let html = page(cookie.clone()).await;
    assert!(
        html.contains("action=\"/platform/tenants/api-co/resume\""),
        "{html}"
    );
    assert!(!html.contains("action=\"/platform/tenants/api-co/suspend\""));
    let (_, after) = html
        .split_once("<meta name=\"csrf-token\" content=\"")
        .unwrap();
    let csrf = after.split('"').next().unwrap().to_owned();
    let form_post = |path: &str, fields: Vec<(&'static str, String)>| {
        server
            .http
            .post(server.url(&format!("/platform/tenants/api-co/{path}")))
            .header("accept", BROWSER_ACCEPT)
            .header("cookie", &cookie)
            .form(&fields)
            .send()
    };
    let resumed = form_post("resume", vec![("csrf_token", csrf.clone())])
        .await
        .unwrap();
    assert_eq!(resumed.status(), 303);
    let location = resumed.headers()["location"].to_str().unwrap().to_owned();
    let job_id = location
        .strip_prefix("/platform/jobs/")
        .unwrap_or_else(|| panic!("not a job's page: {location}"));
    let job = wait_for_job(&server, &admin, job_id).await;
    assert_eq!(
        (&job["kind"], &job["status"]),
        (&json!("resume"), &json!("complete")),
        "{job}"
    );

    // Active again: the page offers Suspend with its reason field; a form without a reason is refused with
    // the code, and one with a reason ends on the job's page.
    let html = page(cookie.clone()).await;
    assert!(
        html.contains("action=\"/platform/tenants/api-co/suspend\""),
        "{html}"
    );
    assert!(html.contains("name=\"reason\""));
    let refused = form_post(
        "suspend",
        vec![("csrf_token", csrf.clone()), ("reason", String::new())],
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("E_INVALID_INPUT"));
    let suspended = form_post(
        "suspend",
        vec![("csrf_token", csrf), ("reason", REASON.to_owned())],
    )
    .await
    .unwrap();
    assert_eq!(suspended.status(), 303);
    let location = suspended.headers()["location"].to_str().unwrap().to_owned();
    let job = wait_for_job(
        &server,
        &admin,
        location.trim_start_matches("/platform/jobs/"),
    )
    .await;
    assert_eq!(job["status"], "complete", "{job}");
    let audit = last_audit(&fleet, "api-co", "TENANT_SUSPENDED").await;
    assert!(
        audit["actor"].as_str().unwrap().starts_with("user:"),
        "{audit}"
    );
    assert_eq!(audit["details"]["reason"], REASON, "{audit}");

    server.terminate().await;
    fleet.cleanup().await;
}
