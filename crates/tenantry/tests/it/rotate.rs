//! Credential rotation through the real binary against the suite's own Redis, the machine's RabbitMQ and the
//! suite's password-checking PostgreSQL cluster: under load (a client per kind logging in anew every few
//! milliseconds, re-reading the secret when a login fails) twenty rotations cost zero failed queries, and after
//! each one the old credentials are refused; a PostgreSQL tenant alternates between its role and the role's
//! alternate login, and suspension, validation, doctor and the purge know both; `--kind` rotates one kind only;
//! bad input changes nothing.

use crate::harness::{passed, tenant_cluster_url, Engine, Fleet};
use crate::resources::{amqp_login_works, amqp_open, cache_login_works, resource_fleet, unique};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ROTATIONS: usize = 20;

/// One query with a fresh login, so every query tests the credentials: a key written in the tenant's prefix, or
/// a queue declared in its vhost.
async fn query(kind: &str, slug: &str, url: &str) -> bool {
    match kind {
        "database" => database_query(url).await,
        "cache" => {
            let Ok(client) = redis::Client::open(url) else {
                return false;
            };
            let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
                return false;
            };
            redis::cmd("SET")
                .arg(format!("tenant:{slug}:probe"))
                .arg("1")
                .query_async::<()>(&mut connection)
                .await
                .is_ok()
        }
        _ => {
            let Some(connection) = amqp_open(url).await else {
                return false;
            };
            let declared = match connection.open_channel(None).await {
                Ok(channel) => {
                    let declared = channel
                        .queue_declare(amqprs::channel::QueueDeclareArguments::new("probe"))
                        .await
                        .is_ok();
                    let _ = channel.close().await;
                    declared
                }
                Err(_) => false,
            };
            let _ = connection.close().await;
            declared
        }
    }
}

/// A fresh login to the tenant's PostgreSQL database and one query, as whichever role the URL names.
async fn database_query(url: &str) -> bool {
    use sqlx::Connection;
    let Ok(mut connection) = sqlx::PgConnection::connect(url).await else {
        return false;
    };
    let answered = sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&mut connection)
        .await
        .is_ok();
    let _ = connection.close().await;
    answered
}

/// The secret holding `kind`'s credentials for `slug` (the database's keeps its name from before resources).
fn secret_name(kind: &str, slug: &str) -> String {
    match kind {
        "database" => format!("tenant-db-{slug}"),
        _ => format!("tenant-{kind}-{slug}"),
    }
}

/// What a client saw: queries made, and those that failed even after re-reading the secret.
#[derive(Default)]
struct Tally {
    queries: AtomicU64,
    rereads: AtomicU64,
    failed: AtomicU64,
}

/// A client of one kind: queries every few milliseconds with the URL it holds; when one fails it re-reads the
/// secret, as the rotation's contract asks of clients, and tries once more. Only a failure after that counts.
fn spawn_client(
    fleet: Arc<Fleet>,
    slug: String,
    kind: &'static str,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let secret_name = secret_name(kind, &slug);
        let mut url = fleet.secret(&secret_name).await.unwrap();
        while !stop.load(Ordering::SeqCst) {
            tally.queries.fetch_add(1, Ordering::SeqCst);
            if !query(kind, &slug, &url).await {
                tally.rereads.fetch_add(1, Ordering::SeqCst);
                url = fleet.secret(&secret_name).await.unwrap();
                if !query(kind, &slug, &url).await {
                    tally.failed.fetch_add(1, Ordering::SeqCst);
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_under_load_fails_no_query_and_refuses_the_old_credentials() {
    let (fleet, _guard) = resource_fleet(Engine::Sqlite).await;
    let fleet = Arc::new(fleet);
    let slug = unique("rot");
    fleet.provision_on_plan(&slug, "bundle").await.assert_ok();

    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Vec<(&str, Arc<Tally>)> = vec![
        ("cache", Arc::new(Tally::default())),
        ("queue", Arc::new(Tally::default())),
    ];
    let clients: Vec<_> = tallies
        .iter()
        .map(|(kind, tally)| {
            spawn_client(
                fleet.clone(),
                slug.clone(),
                kind,
                stop.clone(),
                tally.clone(),
            )
        })
        .collect();

    for rotation in 0..ROTATIONS {
        let old_cache = fleet.secret(&format!("tenant-cache-{slug}")).await.unwrap();
        let old_queue = fleet.secret(&format!("tenant-queue-{slug}")).await.unwrap();
        let rotated = fleet
            .run(&[
                "tenants",
                "rotate-credentials",
                &slug,
                "--grace",
                "1s",
                "--json",
            ])
            .await;
        rotated.assert_ok();
        let new_cache = fleet.secret(&format!("tenant-cache-{slug}")).await.unwrap();
        let new_queue = fleet.secret(&format!("tenant-queue-{slug}")).await.unwrap();
        assert_ne!(old_cache, new_cache, "rotation {rotation}");
        assert_ne!(old_queue, new_queue, "rotation {rotation}");
        // Once the job is over (after the grace period), the old credentials are refused and the new ones work.
        assert!(
            !cache_login_works(&old_cache).await,
            "rotation {rotation}: old cache login"
        );
        assert!(
            !amqp_login_works(&old_queue).await,
            "rotation {rotation}: old queue login"
        );
        assert!(
            cache_login_works(&new_cache).await,
            "rotation {rotation}: new cache login"
        );
        assert!(
            amqp_login_works(&new_queue).await,
            "rotation {rotation}: new queue login"
        );
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    for (kind, tally) in &tallies {
        let queries = tally.queries.load(Ordering::SeqCst);
        let rereads = tally.rereads.load(Ordering::SeqCst);
        let failed = tally.failed.load(Ordering::SeqCst);
        eprintln!("{kind}: {queries} queries, {rereads} secret re-reads, {failed} failed");
        assert_eq!(
            failed, 0,
            "{kind}: failed queries across {ROTATIONS} rotations"
        );
        // The clients really ran through the rotations, and had to re-read the secret at each retirement.
        assert!(
            queries > ROTATIONS as u64 * 5,
            "{kind}: only {queries} queries"
        );
        assert!(
            rereads >= ROTATIONS as u64,
            "{kind}: only {rereads} re-reads"
        );
    }

    let rotated: Vec<String> = fleet
        .audit_types(&slug)
        .await
        .into_iter()
        .filter(|event| event == "CREDENTIALS_ROTATED")
        .collect();
    assert_eq!(rotated.len(), ROTATIONS);
    // No copy of old credentials is left behind, and nothing else is wrong.
    for kind in ["cache", "queue"] {
        assert_eq!(
            fleet
                .secret(&format!("tenant-{kind}-{slug}.previous"))
                .await,
            None
        );
    }
    fleet.assert_doctor_clean().await;
    fleet
        .run(&["offboard-tenant", "--slug", &slug, "--purge"])
        .await
        .assert_ok();
    Arc::into_inner(fleet).unwrap().cleanup().await;
}

/// The tenant's PostgreSQL logins (its role, and the alternate a rotation makes), each with whether it may log in.
async fn database_logins(slug: &str) -> Vec<(String, bool)> {
    use sqlx::Connection;
    let role = crate::resources::resource_name(slug);
    let mut admin = sqlx::PgConnection::connect(&tenant_cluster_url())
        .await
        .unwrap();
    let logins = sqlx::query_as(
        "SELECT rolname::text, rolcanlogin FROM pg_roles WHERE rolname IN ($1, $1 || '.b') ORDER BY 1",
    )
    .bind(&role)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    let _ = admin.close().await;
    logins
}

/// A PostgreSQL tenant database under load: a client logging in anew every few milliseconds sees no failed query
/// across twenty rotations (the secret alternates between the tenant role and its alternate login), and once each
/// job is over the old login is refused. What the alternate creates belongs to the tenant role; validation and
/// doctor accept it; a suspension locks both logins out and a resumption opens the secret's alone; the purge
/// leaves no role.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_database_rotates_under_load_and_suspend_and_purge_know_both_logins() {
    use sqlx::Connection;
    let fleet = Arc::new(Fleet::new(Engine::Postgres).await);
    let slug = unique("rdb");
    let role = crate::resources::resource_name(&slug);
    let alternate = format!("{role}.b");
    fleet.provision(&slug, &[]).await.assert_ok();
    // A neighbour, so that validation tries the alternate login against another tenant's database.
    let neighbour = unique("rdn");
    fleet.provision(&neighbour, &[]).await.assert_ok();
    let secret = secret_name("database", &slug);

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let client = spawn_client(
        fleet.clone(),
        slug.clone(),
        "database",
        stop.clone(),
        tally.clone(),
    );
    for rotation in 0..ROTATIONS {
        let old = fleet.secret(&secret).await.unwrap();
        let rotated = fleet
            .run(&[
                "tenants",
                "rotate-credentials",
                &slug,
                "--grace",
                "1s",
                "--json",
            ])
            .await;
        rotated.assert_ok();
        let new = fleet.secret(&secret).await.unwrap();
        assert_ne!(old, new, "rotation {rotation}");
        // The logins alternate: the odd rotations hand out the alternate, the even ones the tenant role.
        let login = url::Url::parse(&new).unwrap().username().to_owned();
        let expected = if rotation % 2 == 0 { &alternate } else { &role };
        assert_eq!(&login, expected, "rotation {rotation}");
        assert!(
            !database_query(&old).await,
            "rotation {rotation}: old login"
        );
        assert!(database_query(&new).await, "rotation {rotation}: new login");
    }
    stop.store(true, Ordering::SeqCst);
    client.await.unwrap();
    let queries = tally.queries.load(Ordering::SeqCst);
    let rereads = tally.rereads.load(Ordering::SeqCst);
    let failed = tally.failed.load(Ordering::SeqCst);
    eprintln!("database: {queries} queries, {rereads} secret re-reads, {failed} failed");
    assert_eq!(failed, 0, "failed queries across {ROTATIONS} rotations");
    assert!(queries > ROTATIONS as u64 * 5, "only {queries} queries");
    assert!(rereads >= ROTATIONS as u64, "only {rereads} re-reads");
    assert_eq!(fleet.secret(&format!("{secret}.previous")).await, None);

    // One more: the secret names the alternate, whose sessions act as the tenant role.
    let before = fleet.secret(&secret).await.unwrap();
    fleet
        .run(&["tenants", "rotate-credentials", &slug, "--grace", "0s"])
        .await
        .assert_ok();
    let current = fleet.secret(&secret).await.unwrap();
    assert_eq!(url::Url::parse(&current).unwrap().username(), alternate);
    let mut tenant = sqlx::PgConnection::connect(&current).await.unwrap();
    let (current_user, session_user): (String, String) =
        sqlx::query_as("SELECT current_user::text, session_user::text")
            .fetch_one(&mut tenant)
            .await
            .unwrap();
    assert_eq!(
        (current_user, session_user),
        (role.clone(), alternate.clone())
    );
    sqlx::query("CREATE TABLE rotated_probe (id int)")
        .execute(&mut tenant)
        .await
        .unwrap();
    let owner: String = sqlx::query_scalar(
        "SELECT tableowner::text FROM pg_tables WHERE tablename = 'rotated_probe'",
    )
    .fetch_one(&mut tenant)
    .await
    .unwrap();
    assert_eq!(
        owner, role,
        "what the alternate login creates is the tenant role's"
    );
    let _ = tenant.close().await;
    assert_eq!(
        database_logins(&slug).await,
        [(role.clone(), false), (alternate.clone(), true)]
    );
    let checks = fleet.validation(&slug).await;
    for check in [
        "secret_resolves",
        "tenant_login",
        "role_privileges",
        "isolation_other_tenants",
    ] {
        assert!(passed(&checks, check), "{check}: {checks:?}");
    }
    fleet.assert_doctor_clean().await;

    // Suspended: neither login works, and an open session of the current one is ended. Resumed: the secret's
    // login works again, and the retired one stays refused.
    let mut open_session = sqlx::PgConnection::connect(&current).await.unwrap();
    fleet
        .run(&["tenants", "suspend", &slug, "--reason", "test"])
        .await
        .assert_ok();
    assert_eq!(
        database_logins(&slug).await,
        [(role.clone(), false), (alternate.clone(), false)]
    );
    assert!(!database_query(&current).await);
    assert!(!database_query(&before).await);
    assert!(sqlx::query("SELECT 1")
        .execute(&mut open_session)
        .await
        .is_err());
    fleet.run(&["tenants", "resume", &slug]).await.assert_ok();
    assert!(database_query(&current).await);
    assert!(!database_query(&before).await);
    fleet.assert_doctor_clean().await;

    fleet
        .run(&["offboard-tenant", "--slug", &slug, "--purge"])
        .await
        .assert_ok();
    assert!(database_logins(&slug).await.is_empty());
    fleet
        .run(&["offboard-tenant", "--slug", &neighbour, "--purge"])
        .await
        .assert_ok();
    fleet.assert_doctor_clean().await;
    Arc::into_inner(fleet).unwrap().cleanup().await;
}

/// The tenant's three secrets' values.
async fn secrets(fleet: &Fleet, slug: &str) -> Vec<Option<String>> {
    let mut values = Vec::new();
    for kind in ["db", "cache", "queue"] {
        values.push(fleet.secret(&format!("tenant-{kind}-{slug}")).await);
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_kind_rotates_alone_and_bad_input_changes_nothing() {
    let (fleet, _guard) = resource_fleet(Engine::Sqlite).await;
    let slug = unique("rok");
    fleet.provision_on_plan(&slug, "bundle").await.assert_ok();
    let before = secrets(&fleet, &slug).await;
    let jobs_before = fleet.jobs().await.len();

    for (args, code) in [
        (vec!["--kind", "bucket"], "E_INVALID_INPUT"),
        (vec!["--grace", "-5s"], "E_INVALID_INPUT"),
        (vec!["--grace", "soon"], "E_INVALID_INPUT"),
        (vec!["--grace", "8days"], "E_INVALID_INPUT"),
        // A SQLite database has no login: nothing to rotate.
        (vec!["--kind", "database"], "E_INVALID_INPUT"),
    ] {
        let mut command = vec!["tenants", "rotate-credentials", slug.as_str()];
        command.extend(args.iter().copied());
        let refused = fleet.run(&command).await;
        assert_eq!(
            refused.error_code().as_deref(),
            Some(code),
            "{args:?}: {refused:?}"
        );
    }
    let unknown = fleet
        .run(&["tenants", "rotate-credentials", "no-such-tenant"])
        .await;
    assert_eq!(
        unknown.error_code().as_deref(),
        Some("E_NOT_FOUND"),
        "{unknown:?}"
    );
    let bad_slug = fleet
        .run(&["tenants", "rotate-credentials", "Bad_Slug"])
        .await;
    assert_eq!(
        bad_slug.error_code().as_deref(),
        Some("E_INVALID_SLUG"),
        "{bad_slug:?}"
    );

    fleet
        .run(&["tenants", "suspend", &slug, "--reason", "test"])
        .await
        .assert_ok();
    let suspended = fleet
        .run(&["tenants", "rotate-credentials", &slug, "--grace", "0s"])
        .await;
    assert_eq!(
        suspended.error_code().as_deref(),
        Some("E_CONFLICT"),
        "{suspended:?}"
    );
    fleet.run(&["tenants", "resume", &slug]).await.assert_ok();
    assert_eq!(
        secrets(&fleet, &slug).await,
        before,
        "bad input changed a secret"
    );
    // Only the suspension and the resumption made jobs.
    assert_eq!(fleet.jobs().await.len(), jobs_before + 2);

    // `--kind cache` rotates the cache alone; the job skips nothing it was not asked for.
    let rotated = fleet
        .run(&[
            "tenants",
            "rotate-credentials",
            &slug,
            "--kind",
            "cache",
            "--grace",
            "0s",
        ])
        .await;
    rotated.assert_ok();
    let after = secrets(&fleet, &slug).await;
    assert_eq!(after[0], before[0]);
    assert_ne!(after[1], before[1]);
    assert_eq!(after[2], before[2]);
    assert!(!cache_login_works(before[1].as_deref().unwrap()).await);
    assert!(cache_login_works(after[1].as_deref().unwrap()).await);

    // Every kind: the SQLite database is skipped, and the job's log says so.
    let rotated = fleet
        .run(&[
            "tenants",
            "rotate-credentials",
            &slug,
            "--grace",
            "0s",
            "--json",
        ])
        .await;
    rotated.assert_ok();
    let job = rotated.json()["job"].clone();
    let phases: Vec<&str> = job["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|phase| phase["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "request_validated",
            "cache_credentials_added",
            "queue_credentials_added",
            "grace_elapsed",
            "cache_old_credentials_retired",
            "queue_old_credentials_retired",
            "complete"
        ]
    );
    let logs = job["logs"].to_string();
    assert!(logs.contains("skipped database on sqlite"), "{logs}");
    assert!(
        !logs.contains("amqp://"),
        "a credential in the job's log: {logs}"
    );
    assert!(!job["state"].to_string().contains("://"), "{job}");
    fleet.assert_doctor_clean().await;
    fleet
        .run(&["offboard-tenant", "--slug", &slug, "--purge"])
        .await
        .assert_ok();
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_the_console_rotate_for_admins_only() {
    use crate::suspend::{last_audit, wait_for_job, BROWSER_ACCEPT};
    use serde_json::{json, Value};

    let (fleet, _guard) = resource_fleet(Engine::Sqlite).await;
    let slug = unique("roa");
    fleet.provision_on_plan(&slug, "bundle").await.assert_ok();
    let admin = fleet.token_for("admin@example.com", "PLATFORM_ADMIN").await;
    let support = fleet
        .token_for("support@example.com", "PLATFORM_SUPPORT")
        .await;
    let readonly = fleet
        .token_for("readonly@example.com", "PLATFORM_READONLY")
        .await;
    let server = fleet.serve(&[]).await;
    let path = format!("{slug}/rotate-credentials");
    let post = |path: String, token: String, body: Value| {
        let server = &server;
        async move {
            server
                .post(&format!("/platform/tenants/{path}"), &token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let problem = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (
            status,
            body["error_code"].as_str().unwrap_or_default().to_owned(),
        )
    };

    // Refused, and nothing recorded.
    let before = secrets(&fleet, &slug).await;
    let jobs_before = fleet.jobs().await.len();
    for (path, token, body, expected) in [
        (
            path.clone(),
            &admin,
            json!({ "grace_seconds": -1 }),
            (422, "E_INVALID_INPUT"),
        ),
        (
            path.clone(),
            &admin,
            json!({ "grace_seconds": 604801 }),
            (422, "E_INVALID_INPUT"),
        ),
        (
            path.clone(),
            &admin,
            json!({ "kind": "bucket" }),
            (422, "E_INVALID_INPUT"),
        ),
        (
            path.clone(),
            &admin,
            json!({ "purge": true }),
            (400, "E_INVALID_INPUT"),
        ),
        (
            "no-such-co/rotate-credentials".to_owned(),
            &admin,
            json!({}),
            (404, "E_NOT_FOUND"),
        ),
        (path.clone(), &support, json!({}), (403, "E_FORBIDDEN")),
        (path.clone(), &readonly, json!({}), (403, "E_FORBIDDEN")),
    ] {
        let answer = problem(post(path.clone(), token.clone(), body.clone()).await).await;
        assert_eq!(
            answer,
            (expected.0, expected.1.to_owned()),
            "POST {path} {body}"
        );
    }
    assert_eq!(fleet.jobs().await.len(), jobs_before);
    assert_eq!(secrets(&fleet, &slug).await, before);

    // An admin's rotation: 202, and a worker of the server runs the job through its grace period.
    let accepted = post(
        path.clone(),
        admin.clone(),
        json!({ "kind": "queue", "grace_seconds": 1 }),
    )
    .await;
    assert_eq!(accepted.status(), 202);
    let accepted: Value = accepted.json().await.unwrap();
    let job = wait_for_job(&server, &admin, accepted["job_id"].as_str().unwrap()).await;
    assert_eq!(
        (&job["kind"], &job["status"]),
        (&json!("rotate_credentials"), &json!("complete")),
        "{job}"
    );
    let after = secrets(&fleet, &slug).await;
    assert_eq!((&after[0], &after[1]), (&before[0], &before[1]));
    assert_ne!(after[2], before[2]);
    let audit = last_audit(&fleet, &slug, "CREDENTIALS_ROTATED").await;
    assert_eq!(
        audit["details"],
        json!({ "kinds": ["queue"], "grace_seconds": 1 })
    );

    // The console: the tenant page offers the form to an admin; posting it ends on the job's page.
    let cookie = fleet
        .console_session(&server, "ops@example.com", "PLATFORM_ADMIN")
        .await;
    let html = server
        .http
        .get(server.url(&format!("/platform/tenants/{slug}")))
        .header("accept", BROWSER_ACCEPT)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let action = format!("action=\"/platform/tenants/{slug}/rotate-credentials\"");
    assert!(html.contains(&action), "{html}");
    let (_, rest) = html
        .split_once("<meta name=\"csrf-token\" content=\"")
        .unwrap();
    let csrf = rest.split('"').next().unwrap().to_owned();
    let form_post = |grace: &str| {
        server
            .http
            .post(server.url(&format!("/platform/tenants/{slug}/rotate-credentials")))
            .header("accept", BROWSER_ACCEPT)
            .header("cookie", &cookie)
            .form(&[
                ("csrf_token", csrf.clone()),
                ("grace_seconds", grace.to_owned()),
            ])
            .send()
    };
    let refused = form_post("soon").await.unwrap();
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("E_INVALID_INPUT"));
    let rotated = form_post("0").await.unwrap();
    assert_eq!(rotated.status(), 303);
    let location = rotated.headers()["location"].to_str().unwrap().to_owned();
    let job = wait_for_job(
        &server,
        &admin,
        location.trim_start_matches("/platform/jobs/"),
    )
    .await;
    assert_eq!(job["status"], "complete", "{job}");
    assert!(
        last_audit(&fleet, &slug, "CREDENTIALS_ROTATED").await["actor"]
            .as_str()
            .unwrap()
            .starts_with("user:")
    );
    // A support user's page offers no rotation.
    let support_cookie = fleet
        .console_session(&server, "help@example.com", "PLATFORM_SUPPORT")
        .await;
    let html = server
        .http
        .get(server.url(&format!("/platform/tenants/{slug}")))
        .header("accept", BROWSER_ACCEPT)
        .header("cookie", &support_cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains(&action));

    server.terminate().await;
    fleet
        .run(&["offboard-tenant", "--slug", &slug, "--purge"])
        .await
        .assert_ok();
    fleet.cleanup().await;
}

/// A plan with `rotation_days` gets its tenants' credentials rotated by a `worker` by itself, once one is due:
/// the due tenant once, the tenant that is not due never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_rotates_what_the_plan_schedules() {
    use crate::harness::{eventually, write_file};
    use crate::resources::RESOURCE_PLANS;

    let (fleet, _guard) = resource_fleet(Engine::Sqlite).await;
    let scheduled = RESOURCE_PLANS.replace(
        "resources = [\"database\", \"cache\", \"queue\"]\n",
        "resources = [\"database\", \"cache\", \"queue\"]\nrotation_days = 30\nrotation_grace_seconds = 1\n",
    );
    assert_ne!(scheduled, RESOURCE_PLANS);
    write_file(&fleet.scratch_dir.join("tenantry.toml"), &scheduled);
    let due = unique("rsd");
    let fresh = unique("rsf");
    for slug in [&due, &fresh] {
        fleet.provision_on_plan(slug, "bundle").await.assert_ok();
    }
    // Made 31 days ago, as far as the registry knows.
    fleet
        .registry_sql(&format!(
            "UPDATE tenants SET created_at = created_at - 31 * 86400000 WHERE slug = '{due}'"
        ))
        .await;
    let before = secrets(&fleet, &due).await;
    let fresh_before = secrets(&fleet, &fresh).await;

    let mut worker = fleet.spawn(&["worker", "--workers", "1"], &[]);
    let job = eventually(
        60,
        || format!("no scheduled rotation completed: {}", worker.log()),
        || async {
            fleet.jobs().await.into_iter().find(|job| {
                job["kind"] == "rotate_credentials"
                    && job["tenant_slug"] == due.as_str()
                    && job["status"] == "complete"
            })
        },
    )
    .await;
    worker.signal("TERM");
    worker.wait(30).await;
    assert_eq!(job["status"], "complete", "{job}");
    let audit = crate::suspend::last_audit(&fleet, &due, "CREDENTIALS_ROTATED").await;
    assert_eq!(audit["actor"], "system:rotation-schedule", "{audit}");
    let after = secrets(&fleet, &due).await;
    assert_eq!(
        after[0], before[0],
        "the SQLite database has nothing to rotate"
    );
    assert_ne!(after[1], before[1]);
    assert_ne!(after[2], before[2]);
    assert!(cache_login_works(after[1].as_deref().unwrap()).await);
    assert!(!cache_login_works(before[1].as_deref().unwrap()).await);
    assert_eq!(secrets(&fleet, &fresh).await, fresh_before);
    let rotations: Vec<_> = fleet
        .jobs()
        .await
        .into_iter()
        .filter(|job| job["kind"] == "rotate_credentials")
        .collect();
    assert_eq!(rotations.len(), 1, "{rotations:?}");
    fleet.assert_doctor_clean().await;
    for slug in [&due, &fresh] {
        fleet
            .run(&["offboard-tenant", "--slug", slug, "--purge"])
            .await
            .assert_ok();
    }
    fleet.cleanup().await;
}

/// A rotation whose undo fails leaves the copy of the old credentials: the job ends `failed` with
/// `E_PARTIAL_STATE`, doctor names the copy as a leftover with its fix, and `jobs rollback` finishes the undo (the
/// old credentials back in the secret and working, the copy gone, doctor clean).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_undo_leaves_a_copy_that_doctor_names_and_rollback_clears() {
    let (fleet, _guard) = resource_fleet(Engine::Sqlite).await;
    let slug = unique("rou");
    fleet.provision_on_plan(&slug, "bundle").await.assert_ok();
    let before = secrets(&fleet, &slug).await;

    let failed = fleet
        .run_env(
            &[
                "tenants",
                "rotate-credentials",
                &slug,
                "--grace",
                "0s",
                "--json",
            ],
            &[(
                "TENANTRY_FAILPOINTS",
                "grace_elapsed.before=error,cache_credentials_added.undo=error",
            )],
        )
        .await;
    assert_eq!(
        failed.error_code().as_deref(),
        Some("E_PARTIAL_STATE"),
        "{failed:?}"
    );
    let job = fleet
        .jobs()
        .await
        .into_iter()
        .find(|job| job["kind"] == "rotate_credentials")
        .unwrap();
    assert_eq!(job["status"], "failed", "{job}");
    let copy = format!("tenant-cache-{slug}.previous");
    assert_eq!(fleet.secret(&copy).await, before[1]);

    let doctor = fleet.run(&["doctor"]).await;
    assert_eq!(doctor.status, 1, "{doctor:?}");
    assert!(
        doctor.stdout.contains(&format!("secret {copy}")),
        "{}",
        doctor.stdout
    );
    assert!(
        doctor.stdout.contains(&format!(
            "tenantry tenants rotate-credentials {slug} --kind cache"
        )),
        "{}",
        doctor.stdout
    );

    let job_id = job["job_id"].as_str().unwrap();
    let rolled_back = fleet.run(&["jobs", "rollback", job_id]).await;
    // A job that ends rolled back is not a success, for the CLI either.
    assert_eq!(rolled_back.status, 1, "{rolled_back:?}");
    assert_eq!(
        fleet.json(&["jobs", "show", job_id]).await["status"],
        "rolled_back"
    );
    assert_eq!(secrets(&fleet, &slug).await, before);
    assert_eq!(fleet.secret(&copy).await, None);
    assert!(cache_login_works(before[1].as_deref().unwrap()).await);
    assert!(amqp_login_works(before[2].as_deref().unwrap()).await);
    fleet.assert_doctor_clean().await;
    fleet
        .run(&["offboard-tenant", "--slug", &slug, "--purge"])
        .await
        .assert_ok();
    fleet.cleanup().await;
}

/// A worker stopped while a rotation waits out its grace period hands the job back; the next worker keeps the
/// recorded deadline (the wait is announced once, when the deadline is set) and finishes the rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_hands_the_wait_back_and_the_next_keeps_its_deadline() {
    use crate::harness::eventually;

    let (fleet, _guard) = resource_fleet(Engine::Sqlite).await;
    let slug = unique("roh");
    fleet.provision_on_plan(&slug, "bundle").await.assert_ok();
    let before = secrets(&fleet, &slug).await;
    let submitted = fleet
        .run(&[
            "tenants",
            "rotate-credentials",
            &slug,
            "--kind",
            "cache",
            "--grace",
            "3s",
            "--no-wait",
            "--json",
        ])
        .await;
    submitted.assert_ok();
    let job_id = submitted.json()["job_id"].as_str().unwrap().to_owned();
    let phase_status = |job: &serde_json::Value, name: &str| {
        job["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|phase| phase["name"] == name)
            .map(|phase| phase["status"].as_str().unwrap().to_owned())
            .unwrap()
    };

    let mut first = fleet.spawn(&["worker", "--workers", "1"], &[]);
    eventually(
        30,
        || format!("the rotation never started waiting: {}", first.log()),
        || async {
            let job = fleet.json(&["jobs", "show", &job_id]).await;
            (phase_status(&job, "grace_elapsed") == "running").then_some(())
        },
    )
    .await;
    // The new credentials are in the secret, and both work while the job waits.
    let during = secrets(&fleet, &slug).await;
    assert_ne!(during[1], before[1]);
    assert!(cache_login_works(before[1].as_deref().unwrap()).await);
    assert!(cache_login_works(during[1].as_deref().unwrap()).await);
    first.signal("TERM");
    assert!(first.wait(30).await.success(), "{}", first.log());
    let job = fleet.json(&["jobs", "show", &job_id]).await;
    assert_ne!(job["status"], "complete", "{job}");

    let mut second = fleet.spawn(&["worker", "--workers", "1"], &[]);
    let job = eventually(
        60,
        || {
            format!(
                "the handed-back rotation did not complete: {}",
                second.log()
            )
        },
        || async {
            let job = fleet.json(&["jobs", "show", &job_id]).await;
            (job["status"] == "complete").then_some(job)
        },
    )
    .await;
    second.signal("TERM");
    second.wait(30).await;
    let announced = job["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|line| line["message"].as_str().unwrap().starts_with("waiting 3 s"))
        .count();
    assert_eq!(announced, 1, "the deadline was set again: {job}");
    assert!(!cache_login_works(before[1].as_deref().unwrap()).await);
    assert!(cache_login_works(during[1].as_deref().unwrap()).await);
    fleet.assert_doctor_clean().await;
    fleet
        .run(&["offboard-tenant", "--slug", &slug, "--purge"])
        .await
        .assert_ok();
    fleet.cleanup().await;
}
