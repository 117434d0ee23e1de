//! Moving a tenant's database to another PostgreSQL server: from the suite's logical-replication cluster
//! (`TENANTRY_TEST_LOGICAL_URL`, `wal_level = logical`) to its password-checking cluster, with a writer running;
//! and the requests a move refuses, which change nothing.

use crate::harness::{tenant_cluster_url, Engine, Fleet};
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn logical_cluster_url() -> String {
    std::env::var("TENANTRY_TEST_LOGICAL_URL")
        .expect("TENANTRY_TEST_LOGICAL_URL is set by scripts/test-services")
}

fn resource_name(slug: &str) -> String {
    format!("tenant_{}", slug.replace('-', "_"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A PostgreSQL fleet whose servers are `pg` (the password-checking cluster) and `logical` (the
/// logical-replication cluster), with `slug` provisioned on `logical`.
async fn fleet_with_tenant_on_logical(slug: &str) -> Fleet {
    let fleet = Fleet::new(Engine::Postgres).await;
    let args = [
        "servers",
        "add",
        "--name",
        "logical",
        "--engine",
        "postgres",
        "--admin-url-stdin",
        "--capacity",
        "100",
    ];
    fleet
        .run_with_stdin(&args, &logical_cluster_url())
        .await
        .assert_ok();
    let mut provision = Fleet::provision_args(slug);
    provision.extend(["--server".into(), "logical".into()]);
    let provision: Vec<&str> = provision.iter().map(String::as_str).collect();
    fleet.run(&provision).await.assert_ok();
    fleet
}

/// Removes what a test left on the logical cluster (the harness wipes the other one).
async fn clean_logical(slug: &str) {
    let mut admin = PgConnection::connect(&logical_cluster_url()).await.unwrap();
    let name = resource_name(slug);
    let slots: Vec<String> = sqlx::query_scalar(
        "SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE 'tmove\\_%' AND slot_name LIKE $1",
    )
    .bind(format!("%{}", &name["tenant_".len()..]))
    .fetch_all(&mut admin)
    .await
    .unwrap();
    for slot in slots {
        let _ = sqlx::query("SELECT pg_drop_replication_slot($1)")
            .bind(slot)
            .execute(&mut admin)
            .await;
    }
    admin
        .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await
        .unwrap();
    let roles: Vec<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname = $1 OR (rolname LIKE 'tmove\\_%' AND rolname LIKE $2)")
            .bind(&name)
            .bind(format!("%{}", &name["tenant_".len()..]))
            .fetch_all(&mut admin)
            .await
            .unwrap();
    for role in roles {
        admin
            .execute(format!("DROP ROLE IF EXISTS \"{role}\"").as_str())
            .await
            .unwrap();
    }
}

/// Removes what the tests of slugs starting with `prefix` left on the logical cluster.
pub async fn clean_logical_prefix(prefix: &str) {
    let mut admin = PgConnection::connect(&logical_cluster_url()).await.unwrap();
    let pattern = format!("tenant\\_{}%", prefix.replace('-', "\\_"));
    let databases: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE $1")
            .bind(&pattern)
            .fetch_all(&mut admin)
            .await
            .unwrap();
    for database in databases {
        clean_logical(&database["tenant_".len()..].replace('_', "-")).await;
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    )
}

/// One write the writer tried: when it read the URL it used, when the attempt ended, and the row's id when the
/// server acknowledged it.
struct Attempt {
    url_read_at: i64,
    ended_at: i64,
    acknowledged: Option<i64>,
}

/// Inserts a row every few milliseconds over the tenant's own login, re-reading the secret after a failure, until
/// `stop`.
async fn writer(fleet: Arc<Fleet>, slug: String, stop: Arc<AtomicBool>) -> Vec<Attempt> {
    let secret = format!("tenant-db-{slug}");
    let mut attempts = Vec::new();
    let mut url_read_at = now_ms();
    let mut url = fleet.secret(&secret).await.unwrap();
    let mut connection: Option<PgConnection> = None;
    while !stop.load(Ordering::SeqCst) {
        if connection.is_none() {
            connection = PgConnection::connect(&url).await.ok();
        }
        let written = match connection.as_mut() {
            Some(connection) => sqlx::query_scalar::<_, i64>(
                "INSERT INTO move_probe (written_at) VALUES (now()) RETURNING id",
            )
            .fetch_one(connection)
            .await
            .ok(),
            None => None,
        };
        attempts.push(Attempt {
            url_read_at,
            ended_at: now_ms(),
            acknowledged: written,
        });
        if written.is_none() {
            connection = None;
            url_read_at = now_ms();
            url = fleet.secret(&secret).await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    attempts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_with_a_writer_running_loses_no_acknowledged_write_and_fails_only_inside_the_freeze()
{
    let slug = unique("mv");
    let fleet = Arc::new(fleet_with_tenant_on_logical(&slug).await);
    let url = fleet.secret(&format!("tenant-db-{slug}")).await.unwrap();
    assert!(url.contains(":55435/") || url.contains("55435"), "{url}");
    {
        let mut tenant = PgConnection::connect(&url).await.unwrap();
        tenant
            .execute(
                "CREATE TABLE move_probe (id bigserial PRIMARY KEY, written_at timestamptz NOT NULL);
                 INSERT INTO move_probe (written_at) SELECT now() FROM generate_series(1, 5000)",
            )
            .await
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn(writer(fleet.clone(), slug.clone(), stop.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let moved = fleet
        .run(&["tenants", "move", &slug, "--to-server", "pg", "--json"])
        .await;
    moved.assert_ok();
    // The writer goes on against the target for a moment, so writes after the cut-over are proven too.
    let job: Value = fleet.json(&["jobs", "list", "--tenant", &slug]).await;
    let job_id = job
        .as_array()
        .unwrap()
        .iter()
        .find(|job| job["kind"] == "move")
        .unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = fleet.json(&["jobs", "show", &job_id]).await;
    assert_eq!(shown["status"], "complete", "{shown}");
    // The freeze window as the job reports it, in its audit event.
    let audit = fleet.json(&["audit", "list", "--tenant", &slug]).await;
    let moved_event = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["event_type"] == "TENANT_MOVED")
        .unwrap_or_else(|| panic!("no TENANT_MOVED in {audit}"))
        .clone();
    let freeze_started = moved_event["details"]["freeze_started_ms"]
        .as_i64()
        .unwrap();
    let freeze_ended = moved_event["details"]["freeze_ended_ms"].as_i64().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let attempts = writing.await.unwrap();

    // Every failed write began inside the freeze window, with a URL read before the cut-over ended.
    let failed: Vec<&Attempt> = attempts
        .iter()
        .filter(|attempt| attempt.acknowledged.is_none())
        .collect();
    for attempt in &failed {
        assert!(
            attempt.ended_at >= freeze_started && attempt.url_read_at <= freeze_ended,
            "a write failed outside the freeze window [{freeze_started}, {freeze_ended}]: read {} ended {}",
            attempt.url_read_at,
            attempt.ended_at
        );
    }
    let acknowledged: Vec<i64> = attempts
        .iter()
        .filter_map(|attempt| attempt.acknowledged)
        .collect();
    assert!(
        acknowledged.iter().any(|id| *id > 5000),
        "the writer wrote nothing"
    );
    println!(
        "freeze window {} ms; {} writes acknowledged, {} failed",
        freeze_ended - freeze_started,
        acknowledged.len(),
        failed.len()
    );

    // The tenant is on the target: registry, secret, data (every acknowledged row, and the bulk), sequence.
    let tenant = fleet.json(&["tenants", "show", &slug]).await;
    assert_eq!(tenant["tenant"]["server_name"], "pg", "{tenant}");
    let url = fleet.secret(&format!("tenant-db-{slug}")).await.unwrap();
    assert!(url.contains(":55433/"), "{url}");
    let mut target = PgConnection::connect(&url).await.unwrap();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM move_probe")
        .fetch_all(&mut target)
        .await
        .unwrap();
    let ids: std::collections::BTreeSet<i64> = ids.into_iter().collect();
    for id in &acknowledged {
        assert!(
            ids.contains(id),
            "acknowledged row {id} is not on the target"
        );
    }
    assert!((1..=5000).all(|id| ids.contains(&id)));
    let next: i64 =
        sqlx::query_scalar("INSERT INTO move_probe (written_at) VALUES (now()) RETURNING id")
            .fetch_one(&mut target)
            .await
            .unwrap();
    assert!(next > *ids.iter().max().unwrap());
    drop(target);

    // The source is gone, and so is everything the move made there.
    let mut source = PgConnection::connect(&logical_cluster_url()).await.unwrap();
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM pg_database WHERE datname = $1)
              + (SELECT COUNT(*) FROM pg_replication_slots WHERE slot_name LIKE '%' || $2)
              + (SELECT COUNT(*) FROM pg_roles WHERE rolname = $1 OR (rolname LIKE 'tmove\\_%' AND rolname LIKE '%' || $2))",
    )
    .bind(resource_name(&slug))
    .bind(&resource_name(&slug)["tenant_".len()..])
    .fetch_one(&mut source)
    .await
    .unwrap();
    assert_eq!(left, 0, "the move left something on the source");
    let mut target_admin = PgConnection::connect(&tenant_cluster_url()).await.unwrap();
    let subscriptions: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM pg_subscription WHERE subname LIKE 'tmove\\_%'")
            .fetch_one(&mut target_admin)
            .await
            .unwrap();
    assert_eq!(subscriptions, 0);
    assert!(fleet
        .audit_types(&slug)
        .await
        .contains(&"TENANT_MOVED".to_owned()));
    fleet.assert_doctor_clean().await;

    clean_logical(&slug).await;
    Arc::try_unwrap(fleet).ok().unwrap().cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_that_cannot_be_done_is_refused_with_a_code_and_changes_nothing() {
    let slug = unique("mv-bad");
    let fleet = fleet_with_tenant_on_logical(&slug).await;
    let sqlite_dir = format!("sqlite://{}", fleet.data_path("other").display());
    fleet
        .run(&[
            "servers",
            "add",
            "--name",
            "files",
            "--engine",
            "sqlite",
            "--admin-url",
            &sqlite_dir,
            "--capacity",
            "10",
        ])
        .await
        .assert_ok();
    let before = fleet.json(&["tenants", "show", &slug]).await;
    let secret_before = fleet.secret(&format!("tenant-db-{slug}")).await;
    for (target, code) in [
        ("logical", "E_INVALID_INPUT"),
        ("files", "E_INVALID_INPUT"),
        ("nowhere", "E_DB_SERVER_NOT_FOUND"),
    ] {
        let run = fleet
            .run(&["tenants", "move", &slug, "--to-server", target])
            .await;
        assert_eq!(run.error_code().as_deref(), Some(code), "{target}: {run:?}");
    }
    let unknown = fleet
        .run(&["tenants", "move", "no-such-tenant", "--to-server", "pg"])
        .await;
    assert_eq!(unknown.error_code().as_deref(), Some("E_NOT_FOUND"));
    fleet
        .run(&["tenants", "suspend", &slug, "--reason", "unpaid"])
        .await
        .assert_ok();
    let suspended = fleet
        .run(&["tenants", "move", &slug, "--to-server", "pg"])
        .await;
    assert_eq!(
        suspended.error_code().as_deref(),
        Some("E_CONFLICT"),
        "{suspended:?}"
    );
    let after = fleet.json(&["tenants", "show", &slug]).await;
    assert_eq!(after["tenant"]["status"], "suspended", "{after}");
    assert_eq!(
        after["tenant"]["server_name"],
        before["tenant"]["server_name"]
    );
    assert_eq!(after["tenant"]["server_name"], "logical");
    assert_eq!(
        fleet.secret(&format!("tenant-db-{slug}")).await,
        secret_before
    );
    let moves = fleet
        .json(&["jobs", "list", "--tenant", &slug])
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|job| job["kind"] == "move")
        .count();
    assert_eq!(moves, 0, "a refused move recorded a job");
    clean_logical(&slug).await;
    fleet.cleanup().await;
}
