//! Crashes inside a phase, not only at its boundaries: a crash at each named point inside `database_created`
//! (PostgreSQL's template and warm-pool paths, SQLite's file) and inside its undo resumes to the end it would have
//! reached; and a worker stalled past its lease, racing the worker that took its job over, cannot turn the
//! takeover into a rollback.

use crate::failures::{assert_nothing_left, count_users};
use crate::for_each_engine;
use crate::harness::{eventually, tenant_cluster_url, Engine, Fleet, Process};
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};
use std::path::{Path, PathBuf};

for_each_engine!(
    crash_at_every_point_inside_database_created_resumes_to_complete,
    crash_inside_the_undo_of_database_created_resumes_the_rollback,
);

/// The points inside `database_created` on SQLite: the file made, marked, renamed into place.
const SQLITE_POINTS: [&str; 3] = ["file_made", "marked", "renamed"];
/// The points on PostgreSQL's template path, in the order a first tenant passes them (the template is built on
/// the way for the `template_*` points).
const TEMPLATE_POINTS: [&str; 8] = [
    "started",
    "looked_up",
    "role_created",
    "template_created",
    "template_migrated",
    "database_created",
    "opened",
    "settled",
];
/// The points on the warm-pool path.
const POOL_POINTS: [&str; 4] = ["started", "looked_up", "claiming", "claimed"];

/// Crashes the provisioning of `slug` at `failpoint`, resumes it with the same command, and checks the tenant is
/// whole: the job complete, the database there, the secret stored and its credentials working.
async fn crash_and_resume(fleet: &Fleet, slug: &str, failpoint: &str) {
    let crashed = fleet
        .provision(slug, &[("TENANTRY_FAILPOINTS", failpoint)])
        .await;
    assert_eq!(
        crashed.status, 137,
        "{failpoint} is on this path and ends the process: {crashed:?}"
    );
    let resumed = fleet.provision(slug, &[]).await;
    assert_eq!(
        resumed.status, 0,
        "{failpoint}: the resumed job completes: {resumed:?}"
    );
    assert!(resumed.stderr.contains("resuming job"), "{resumed:?}");
    let job = fleet.json(&["jobs", "list", "--tenant", slug]).await[0].clone();
    assert_eq!(job["status"], "complete", "{failpoint}");
    assert!(fleet.server_has(slug).await.0, "{failpoint}");
    let url = fleet
        .secret(&format!("tenant-db-{slug}"))
        .await
        .unwrap_or_else(|| panic!("{failpoint}: the secret is stored"));
    assert_eq!(count_users(fleet.engine, &url).await, 1, "{failpoint}");
}

async fn crash_at_every_point_inside_database_created_resumes_to_complete(engine: Engine) {
    let mut n_tenants = 0;
    match engine {
        Engine::Sqlite => {
            let fleet = Fleet::new(engine).await;
            for point in SQLITE_POINTS {
                let slug = format!("inside-{}", point.replace('_', "-"));
                crash_and_resume(&fleet, &slug, &format!("database_created.{point}=exit")).await;
                n_tenants += 1;
            }
            assert_eq!(fleet.n_tenant_databases().await, n_tenants);
            fleet.assert_doctor_clean().await;
            fleet.cleanup().await;
        }
        Engine::Postgres => {
            let fleet = Fleet::new(engine).await;
            for point in TEMPLATE_POINTS {
                if point.starts_with("template_") {
                    // No template: this job builds it, and the crash lands inside the build.
                    fleet
                        .run(&["pool", "prune", "--server", "pg", "--all"])
                        .await
                        .assert_ok();
                }
                let slug = format!("template-{}", point.replace('_', "-"));
                crash_and_resume(&fleet, &slug, &format!("database_created.{point}=exit")).await;
                n_tenants += 1;
            }
            fleet
                .run(&[
                    "pool",
                    "fill",
                    "--server",
                    "pg",
                    "--size",
                    &POOL_POINTS.len().to_string(),
                ])
                .await
                .assert_ok();
            for point in POOL_POINTS {
                let slug = format!("pool-{}", point.replace('_', "-"));
                crash_and_resume(&fleet, &slug, &format!("database_created.{point}=exit")).await;
                n_tenants += 1;
            }
            let pool = fleet.json(&["pool", "status", "--server", "pg"]).await[0].clone();
            assert_eq!(pool["n_ready"], 0, "each pool job claimed one: {pool}");
            assert_eq!(fleet.n_tenant_databases().await, n_tenants);
            fleet.assert_doctor_clean().await;
            fleet.cleanup().await;
        }
    }
}

async fn crash_inside_the_undo_of_database_created_resumes_the_rollback(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let crashed = fleet
        .provision(
            "undo-inside",
            &[(
                "TENANTRY_FAILPOINTS",
                "settings_applied.after=error,drop_database.database_dropped=exit",
            )],
        )
        .await;
    assert_eq!(crashed.status, 137, "{crashed:?}");
    let resumed = fleet.provision("undo-inside", &[]).await;
    assert_eq!(
        resumed.error_code().as_deref(),
        Some("E_FAILPOINT"),
        "the rollback resumed with its cause: {resumed:?}"
    );
    let job = fleet
        .json(&["jobs", "list", "--tenant", "undo-inside"])
        .await[0]
        .clone();
    assert_eq!(job["status"], "rolled_back", "{job}");
    assert_nothing_left(&fleet, "undo-inside").await;
    fleet.cleanup().await;
}

/// Where a `stall:` failpoint says it has been reached.
fn reached_marker(release: &Path) -> PathBuf {
    let mut marker = release.as_os_str().to_owned();
    marker.push(".reached");
    PathBuf::from(marker)
}

/// Waits until the worker stands at the stall whose release file is `release`.
async fn wait_for_stall(worker: &Process, release: &Path) {
    let marker = reached_marker(release);
    eventually(
        60,
        || {
            format!(
                "{} reached; worker log:\n{}",
                marker.display(),
                worker.log()
            )
        },
        || async { marker.exists().then_some(()) },
    )
    .await;
}

/// Waits until a session on the tenant cluster whose statement starts with `statement` waits for a lock.
async fn wait_for_lock_wait(statement: &str, workers: &[&Process]) {
    eventually(
        30,
        || {
            let logs: Vec<String> = workers.iter().map(|worker| worker.log()).collect();
            format!("a statement {statement}… waiting for a lock; logs:\n{}", logs.join("\n---\n"))
        },
        || async {
            let mut admin = PgConnection::connect(&tenant_cluster_url()).await.unwrap();
            let n_waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
            )
            .bind(format!("{statement}%"))
            .fetch_one(&mut admin)
            .await
            .unwrap();
            admin.close().await.unwrap();
            (n_waiting > 0).then_some(())
        },
    )
    .await;
}

/// The stalled-worker race of the hardening issue, reproduced every time: worker A takes the job and is stopped
/// inside `database_created` until its lease expires; worker B takes the job over. Then A wakes and claims a
/// warm-pool database for the tenant, while B, which found no pool database, creates the tenant's role: both
/// name `tenant_race`, A's claim is not committed yet, so PostgreSQL fails B's `CREATE ROLE` on its unique index
/// (23505) instead of saying the role exists. B must adopt what A made (it is this installation's) and complete;
/// A, whose phase then fails, must stop fenced without undoing anything. Before, B took the race for a fatal `E_ADMIN_CONN_UNRESOLVED`,
/// rolled back, and dropped the database A had claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_worker_racing_the_one_that_took_over_ends_complete() {
    let fleet = Fleet::new(Engine::Postgres).await;
    // The template exists (a first tenant built it); the pool is empty.
    fleet.provision("first", &[]).await.assert_ok();
    let release_a = fleet.scratch_dir.join("release-a");
    let release_b = fleet.scratch_dir.join("release-b");
    let lease = ("TENANTRY_LEASE_TTL_SECS", "1");
    let recorded = fleet
        .run(&[
            "provision-tenant",
            "--slug",
            "race",
            "--display-name",
            "Race",
            "--admin-email",
            "admin@race.example",
            "--no-wait",
            "--json",
        ])
        .await;
    recorded.assert_ok();
    let job_id = recorded.json()["job_id"].as_str().unwrap().to_owned();

    // A takes the job and stops at the start of `database_created`, before it looks at the server. Once its
    // claim is through, its phase fails: a worker whose lease was taken over must stop there, fenced, and undo
    // nothing (an undo would drop the database B adopted).
    let stall_a = format!(
        "database_created.started=stall:{},database_created.claimed=error",
        release_a.display()
    );
    let mut worker_a = fleet.spawn(
        &["worker", "--workers", "1"],
        &[lease, ("TENANTRY_FAILPOINTS", &stall_a)],
    );
    wait_for_stall(&worker_a, &release_a).await;
    worker_a.signal("STOP");

    // B takes the job over once A's lease has expired, looks (no role, no database, no pool database), and
    // stops before it creates anything.
    let stall_b = format!("database_created.looked_up=stall:{}", release_b.display());
    let mut worker_b = fleet.spawn(
        &["worker", "--workers", "1"],
        &[lease, ("TENANTRY_FAILPOINTS", &stall_b)],
    );
    wait_for_stall(&worker_b, &release_b).await;

    // A pool database appears, for A to find when it wakes. This test holds its role's comment in an open
    // transaction, so A's claim (one transaction: rename the database and the role, then set them up, then
    // comment on the role) stands uncommitted after its renames.
    fleet
        .run(&["pool", "fill", "--server", "pg", "--size", "1"])
        .await
        .assert_ok();
    let mut holder = PgConnection::connect(&tenant_cluster_url()).await.unwrap();
    let pool_role: String = sqlx::query_scalar(
        "SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'tenantry\\_pool\\_%'",
    )
    .fetch_one(&mut holder)
    .await
    .unwrap();
    holder.execute("BEGIN").await.unwrap();
    holder
        .execute(format!("COMMENT ON ROLE \"{pool_role}\" IS 'held by the test'").as_str())
        .await
        .unwrap();

    std::fs::write(&release_a, "").unwrap();
    worker_a.signal("CONT");
    wait_for_lock_wait("ALTER DATABASE", &[&worker_a, &worker_b]).await;
    std::fs::write(&release_b, "").unwrap();
    // B's CREATE ROLE waits for A's uncommitted rename of the pool role to `tenant_race`.
    wait_for_lock_wait("CREATE ROLE", &[&worker_a, &worker_b]).await;
    holder.execute("ROLLBACK").await.unwrap();
    holder.close().await.unwrap();

    let job: Value = eventually(
        60,
        || {
            format!(
                "job {job_id} ends; A:\n{}\nB:\n{}",
                worker_a.log(),
                worker_b.log()
            )
        },
        || async {
            let job = fleet.json(&["jobs", "show", &job_id]).await;
            let ended = matches!(
                job["status"].as_str(),
                Some("complete" | "rolled_back" | "failed" | "cancelled")
            );
            ended.then_some(job)
        },
    )
    .await;
    assert_eq!(
        job["status"],
        "complete",
        "{job}\nA:\n{}\nB:\n{}",
        worker_a.log(),
        worker_b.log()
    );
    worker_a.signal("TERM");
    worker_b.signal("TERM");
    let (a_ended, b_ended) = (worker_a.wait(30).await, worker_b.wait(30).await);
    assert!(
        a_ended.success() && b_ended.success(),
        "A:\n{}\nB:\n{}",
        worker_a.log(),
        worker_b.log()
    );
    assert!(
        worker_a.log().contains("taken over"),
        "A learnt it had lost the job:\n{}",
        worker_a.log()
    );

    assert_eq!(fleet.server_has("race").await, (true, true));
    assert_eq!(
        fleet.n_tenant_databases().await,
        2,
        "first and race, nothing else"
    );
    let url = fleet
        .secret("tenant-db-race")
        .await
        .expect("the secret is stored");
    assert_eq!(count_users(Engine::Postgres, &url).await, 1);
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}
