//! Fleet migrations through the real binary: a rollout's canary and waves over fifty PostgreSQL tenants and a
//! few SQLite ones, the failure budget and a failed canary, a crash at several points, two workers sharing one
//! rollout, pause, resume and abort, and a migration edited after it ran.
//!
//! Every test migration writes one `audit_log` row in the tenant database, so "no migration ran twice" is a
//! count per tenant, besides the rollout's own records.

use crate::harness::{eventually, tenant_cluster_url, with_database, write_file, Engine, Fleet};
use serde_json::Value;
use sqlx::{Connection, Row};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A copy of the example tenant schema the test can add migrations to; the fleet runs it.
fn own_migrations(fleet: &mut Fleet) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tenant-schema/migrations");
    let copy = fleet.scratch_dir.join("migrations");
    for engine in ["postgres", "sqlite"] {
        for entry in std::fs::read_dir(source.join(engine)).unwrap() {
            let entry = entry.unwrap();
            write_file(
                &copy.join(engine).join(entry.file_name()),
                &std::fs::read_to_string(entry.path()).unwrap(),
            );
        }
    }
    fleet.set_env("TENANTRY_TENANT_MIGRATIONS", copy.to_str().unwrap());
    copy
}

/// Adds migration `version` to both engines: a column and an index on a small table, and one audit row.
fn add_migration(migrations: &Path, version: i64) {
    let sql = format!(
        "ALTER TABLE organizations ADD COLUMN tier_{version} TEXT;\n\
         CREATE INDEX organizations_tier_{version} ON organizations (tier_{version});\n\
         INSERT INTO audit_log (actor, action) VALUES ('rollout', 'migration {version}');\n"
    );
    for engine in ["postgres", "sqlite"] {
        write_file(
            &migrations
                .join(engine)
                .join(format!("{version:04}_tier_{version}.sql")),
            &sql,
        );
    }
}

/// Where a tenant's database is, as the test reaches it.
#[derive(Clone)]
enum TenantDb {
    Postgres(String),
    Sqlite(PathBuf),
}

fn postgres_tenant(slug: &str) -> TenantDb {
    TenantDb::Postgres(with_database(
        &tenant_cluster_url(),
        &format!("tenant_{}", slug.replace('-', "_")),
    ))
}

/// Runs `query` (one row, `(i64, i64)`) in the tenant database.
async fn query_pair(db: &TenantDb, query: &str) -> (i64, i64) {
    match db {
        TenantDb::Postgres(url) => {
            let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
            let row = sqlx::query(query).fetch_one(&mut connection).await.unwrap();
            (row.get(0), row.get(1))
        }
        TenantDb::Sqlite(path) => {
            let url = format!("sqlite://{}", path.display());
            let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let row = sqlx::query(query).fetch_one(&mut connection).await.unwrap();
            (row.get(0), row.get(1))
        }
    }
}

/// The highest successful version the tenant records, and how many times migration `version` wrote its row.
async fn version_and_runs(db: &TenantDb, version: i64) -> (i64, i64) {
    query_pair(
        db,
        &format!(
            "SELECT (SELECT CAST(MAX(version) AS BIGINT) FROM _sqlx_migrations WHERE success),
                    (SELECT COUNT(*) FROM audit_log WHERE action = 'migration {version}')"
        ),
    )
    .await
}

async fn provision_all(fleet: &Fleet, slugs: &[String], server: &str) {
    for chunk in slugs.chunks(4) {
        let runs = futures_util::future::join_all(chunk.iter().map(|slug| async move {
            let mut args = Fleet::provision_args(slug);
            args.extend(["--server".to_owned(), server.to_owned()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            fleet.run(&args).await
        }))
        .await;
        for run in runs {
            run.assert_ok();
        }
    }
}

fn slugs(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|index| format!("{prefix}{index:02}")).collect()
}

/// The rollout's view with every tenant (its exit status says whether the rollout is well: not checked here).
async fn rollout(fleet: &Fleet, id: &str) -> Value {
    fleet.run(&["migrate", "status", id, "--json"]).await.json()
}

fn children_by_slug(view: &Value) -> BTreeMap<String, Value> {
    view["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|child| {
            (
                child["tenant_slug"].as_str().unwrap().to_owned(),
                child.clone(),
            )
        })
        .collect()
}

fn statuses(view: &Value) -> BTreeMap<String, String> {
    children_by_slug(view)
        .into_iter()
        .map(|(slug, child)| (slug, child["status"].as_str().unwrap().to_owned()))
        .collect()
}

/// The id of the newest rollout.
async fn newest_rollout(fleet: &Fleet) -> String {
    let list = fleet.json(&["migrate", "status"]).await;
    list[0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_and_two_waves_migrate_fifty_postgres_tenants_and_three_sqlite_ones() {
    let mut fleet = Fleet::new(Engine::Postgres).await;
    let migrations = own_migrations(&mut fleet);
    let files = format!("sqlite://{}", fleet.data_path("files").display());
    fleet
        .run(&[
            "servers",
            "add",
            "--name",
            "files",
            "--engine",
            "sqlite",
            "--capacity",
            "100",
            "--admin-url",
            &files,
        ])
        .await
        .assert_ok();
    let pg_slugs = slugs("pg", 50);
    let file_slugs = slugs("lite", 3);
    provision_all(&fleet, &pg_slugs, "pg").await;
    provision_all(&fleet, &file_slugs, "files").await;
    let mut tenants: BTreeMap<String, TenantDb> = pg_slugs
        .iter()
        .map(|slug| (slug.clone(), postgres_tenant(slug)))
        .collect();
    for slug in &file_slugs {
        let file = fleet.data_path(&format!("files/tenant_{slug}.db"));
        tenants.insert(slug.clone(), TenantDb::Sqlite(file));
    }

    // Nothing to apply: every tenant at latest, the plan exits 0.
    let plan = fleet.json(&["migrate", "plan"]).await;
    assert_eq!(plan["counts"]["latest"], 53, "{plan}");

    add_migration(&migrations, 3);
    let plan = fleet.json(&["migrate", "plan"]).await;
    assert_eq!(plan["counts"]["pending"], 53, "{plan}");
    assert_eq!(plan["tenants"][0]["pending"], serde_json::json!([3]));

    // A dry run records nothing.
    let dry = fleet
        .json(&[
            "migrate",
            "apply",
            "--dry-run",
            "--canary",
            "2",
            "--waves",
            "50%,100%",
        ])
        .await;
    assert_eq!(dry["dry_run"], true);
    assert!(fleet
        .json(&["migrate", "status"])
        .await
        .as_array()
        .unwrap()
        .is_empty());

    let applied = fleet
        .run(&[
            "migrate",
            "apply",
            "--canary",
            "2",
            "--waves",
            "50%,100%",
            "--concurrency",
            "6",
            "--per-server",
            "4",
            "--json",
        ])
        .await;
    applied.assert_ok();
    let view = applied.json();
    assert_eq!(view["status"], "complete", "{view}");
    let waves: Vec<(i64, i64)> = view["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|wave| {
            (
                wave["wave"].as_i64().unwrap(),
                wave["applied"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(waves, vec![(0, 2), (1, 26), (2, 25)], "{view}");
    for (slug, child) in children_by_slug(&view) {
        assert_eq!(child["status"], "applied", "{slug}: {child}");
        assert_eq!(child["versions_applied"], serde_json::json!([3]), "{slug}");
        assert_eq!(child["attempts"], 1, "{slug}");
        assert!(child["duration_ms"].as_i64().is_some(), "{slug}: {child}");
    }
    for (slug, db) in &tenants {
        assert_eq!(version_and_runs(db, 3).await, (3, 1), "{slug}");
    }

    // The template follows: a tenant provisioned now is at version 3 from the start.
    provision_all(&fleet, &["pg-late".to_owned()], "pg").await;
    assert_eq!(
        version_and_runs(&postgres_tenant("pg-late"), 3).await,
        (3, 1)
    );

    // Applying again finds nothing to do, and records nothing: a deploy may run it every time.
    let again = fleet.json(&["migrate", "apply", "--canary", "0"]).await;
    assert_eq!(again["rollout"], Value::Null, "{again}");
    assert_eq!(again["counts"]["latest"], 54, "{again}");
    assert_eq!(
        fleet
            .json(&["migrate", "status"])
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let plan = fleet.json(&["migrate", "plan"]).await;
    assert_eq!(plan["counts"]["latest"], 54, "{plan}");
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

/// Makes migration `version` fail in the tenant database of `slug` until it is fixed: a user whose e-mail is
/// not in lower case, which the migration's new constraint refuses.
async fn plant_bad_row(slug: &str) {
    let TenantDb::Postgres(url) = postgres_tenant(slug) else {
        unreachable!()
    };
    let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO users (email, password_hash) VALUES ('Shouting@Example.COM', 'x')")
        .execute(&mut connection)
        .await
        .unwrap();
}

async fn fix_bad_row(slug: &str) {
    let TenantDb::Postgres(url) = postgres_tenant(slug) else {
        unreachable!()
    };
    let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE users SET email = lower(email)")
        .execute(&mut connection)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_canary_stops_before_wave_one_and_the_failure_budget_stops_then_resume_completes()
{
    let mut fleet = Fleet::new(Engine::Postgres).await;
    let migrations = own_migrations(&mut fleet);
    let good = slugs("a", 9);
    let bad: Vec<String> = vec!["b01".into(), "b02".into(), "b03".into()];
    provision_all(&fleet, &good, "pg").await;
    provision_all(&fleet, &bad, "pg").await;
    for slug in &bad {
        plant_bad_row(slug).await;
    }
    write_file(
        &migrations.join("postgres/0003_lower_emails.sql"),
        "INSERT INTO audit_log (actor, action) VALUES ('rollout', 'migration 3');\n\
         ALTER TABLE users ADD CONSTRAINT users_email_lower CHECK (email = lower(email));\n",
    );
    write_file(
        &migrations.join("sqlite/0003_lower_emails.sql"),
        "INSERT INTO audit_log (actor, action) VALUES ('rollout', 'migration 3');\n",
    );

    // The canary is a bad tenant: it fails, and no tenant of wave 1 is touched.
    let canary = fleet
        .run(&["migrate", "apply", "--canary-tenants", "b01", "--json"])
        .await;
    assert_ne!(canary.status, 0, "{canary:?}");
    let first = newest_rollout(&fleet).await;
    let view = rollout(&fleet, &first).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["error_code"], "E_MIGRATIONS_FAILED");
    assert!(
        view["error_message"].as_str().unwrap().contains("canary"),
        "{view}"
    );
    let by_status = statuses(&view);
    assert_eq!(by_status["b01"], "failed");
    assert!(
        by_status
            .iter()
            .filter(|(slug, _)| *slug != "b01")
            .all(|(_, status)| status == "pending"),
        "{by_status:?}"
    );
    let b01 = &children_by_slug(&view)["b01"];
    assert!(
        b01["error"].as_str().unwrap().contains("users_email_lower"),
        "the tenant's own error: {b01}"
    );
    for slug in good.iter().chain(&bad) {
        // None half-migrated: the failed migration left no row, no version, no constraint.
        assert_eq!(
            version_and_runs(&postgres_tenant(slug), 3).await,
            (2, 0),
            "{slug}"
        );
    }
    // An operator gives this one up; an aborted rollout cannot be resumed.
    fleet.run(&["migrate", "abort", &first]).await.assert_ok();
    let resumed = fleet.run(&["migrate", "resume", &first]).await;
    assert_eq!(
        resumed.error_code().as_deref(),
        Some("E_CONFLICT"),
        "{resumed:?}"
    );

    // One at a time in slug order, a budget of two: a01…a09 apply, b01 and b02 fail, b03 is never started.
    let budget = fleet
        .run(&[
            "migrate",
            "apply",
            "--canary",
            "1",
            "--max-failures",
            "2",
            "--concurrency",
            "1",
            "--json",
        ])
        .await;
    assert_ne!(budget.status, 0, "{budget:?}");
    let second = newest_rollout(&fleet).await;
    assert_ne!(second, first);
    let view = rollout(&fleet, &second).await;
    assert_eq!(view["status"], "failed", "{view}");
    let by_status = statuses(&view);
    for slug in &good {
        assert_eq!(by_status[slug], "applied", "{slug}");
    }
    assert_eq!(by_status["b01"], "failed");
    assert_eq!(by_status["b02"], "failed");
    assert_eq!(by_status["b03"], "pending");
    for slug in &bad {
        assert_eq!(
            version_and_runs(&postgres_tenant(slug), 3).await,
            (2, 0),
            "{slug}"
        );
    }

    // Fixed, then resumed: the failed tenants are tried again and the rollout completes.
    for slug in &bad {
        fix_bad_row(slug).await;
    }
    fleet.run(&["migrate", "resume", &second]).await.assert_ok();
    let view = rollout(&fleet, &second).await;
    assert_eq!(view["status"], "complete", "{view}");
    assert!(
        statuses(&view).values().all(|status| status == "applied"),
        "{view}"
    );
    for slug in good.iter().chain(&bad) {
        assert_eq!(
            version_and_runs(&postgres_tenant(slug), 3).await,
            (3, 1),
            "{slug}"
        );
    }
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_several_points_resumes_and_migrates_no_tenant_twice() {
    let mut fleet = Fleet::new(Engine::Postgres).await;
    let migrations = own_migrations(&mut fleet);
    let tenants = slugs("c", 8);
    provision_all(&fleet, &tenants, "pg").await;
    let points = [
        "tenants_listed.after",
        "canary_migrated.before",
        // After a tenant's migrations committed and before the rollout recorded it: the worst moment.
        "rollout_tenant.after",
        "waves_migrated.after",
    ];
    for (index, point) in points.iter().enumerate() {
        let version = 3 + index as i64;
        add_migration(&migrations, version);
        let failpoint = format!("{point}=exit");
        let crashed = fleet
            .run_env(
                &[
                    "migrate",
                    "apply",
                    "--canary",
                    "1",
                    "--wave-size",
                    "3",
                    "--concurrency",
                    "2",
                ],
                &[("TENANTRY_FAILPOINTS", &failpoint)],
            )
            .await;
        assert_eq!(crashed.status, 137, "{point}: {crashed:?}");
        let id = newest_rollout(&fleet).await;
        // The process is gone: the next command takes the rollout over at once and finishes it.
        fleet.run(&["jobs", "resume", &id]).await.assert_ok();
        let view = rollout(&fleet, &id).await;
        assert_eq!(view["status"], "complete", "{point}: {view}");
        for (slug, child) in children_by_slug(&view) {
            assert_eq!(child["status"], "applied", "{point} {slug}: {child}");
            assert_eq!(
                child["versions_applied"],
                serde_json::json!([version]),
                "{point} {slug}"
            );
        }
        for slug in &tenants {
            assert_eq!(
                version_and_runs(&postgres_tenant(slug), version).await,
                (version, 1),
                "{point}: {slug} migrated once"
            );
        }
    }

    // A crash, then an abort: the resumed rollout claims no more, and the tenant the dead process held does not
    // hold it up; it ends cancelled with nothing running.
    add_migration(&migrations, 7);
    let crashed = fleet
        .run_env(
            &["migrate", "apply", "--canary", "1", "--concurrency", "2"],
            &[("TENANTRY_FAILPOINTS", "rollout_tenant.after=exit")],
        )
        .await;
    assert_eq!(crashed.status, 137, "{crashed:?}");
    let id = newest_rollout(&fleet).await;
    fleet.run(&["migrate", "abort", &id]).await.assert_ok();
    fleet.run(&["jobs", "resume", &id]).await;
    let view = rollout(&fleet, &id).await;
    assert_eq!(view["status"], "cancelled", "{view}");
    assert_eq!(view["counts"]["running"], 0, "{view}");
    // An aborted rollout never reached `pool_refreshed`: the last version's template is stale against the files,
    // which doctor says, with the fix.
    let doctor = fleet.run(&["doctor", "--json"]).await;
    assert_eq!(doctor.status, 1, "{doctor:?}");
    let findings = doctor.json()["findings"].as_array().unwrap().clone();
    assert!(
        findings.iter().all(|finding| finding["kind"] == "stale"
            && finding["fix"] == "tenantry pool prune --server pg"),
        "{findings:?}"
    );
    fleet
        .run(&["pool", "prune", "--server", "pg"])
        .await
        .assert_ok();
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_one_rollout_and_migrate_each_tenant_once() {
    let mut fleet = Fleet::new(Engine::Postgres).await;
    let migrations = own_migrations(&mut fleet);
    let tenants = slugs("w", 16);
    provision_all(&fleet, &tenants, "pg").await;
    add_migration(&migrations, 3);
    let mut workers = [
        fleet.spawn(&["worker", "--workers", "2"], &[]),
        fleet.spawn(&["worker", "--workers", "2"], &[]),
    ];
    let recorded = fleet
        .json(&[
            "migrate",
            "apply",
            "--no-wait",
            "--canary",
            "2",
            "--concurrency",
            "4",
        ])
        .await;
    let id = recorded["rollout"].as_str().unwrap().to_owned();
    let view = eventually(
        60,
        || format!("workers: {} / {}", workers[0].log(), workers[1].log()),
        || async {
            let view = rollout(&fleet, &id).await;
            (view["status"] == "complete").then_some(view)
        },
    )
    .await;
    for (slug, child) in children_by_slug(&view) {
        assert_eq!(child["status"], "applied", "{slug}: {child}");
        assert_eq!(child["attempts"], 1, "{slug} claimed once");
    }
    for slug in &tenants {
        assert_eq!(
            version_and_runs(&postgres_tenant(slug), 3).await,
            (3, 1),
            "{slug}"
        );
    }
    for worker in &mut workers {
        worker.signal("TERM");
        assert!(worker.wait(30).await.success());
    }
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_resume_continues_and_abort_leaves_every_tenant_at_a_recorded_version() {
    let mut fleet = Fleet::new(Engine::Postgres).await;
    let migrations = own_migrations(&mut fleet);
    let tenants = slugs("p", 6);
    provision_all(&fleet, &tenants, "pg").await;
    // Each tenant takes two seconds in this worker, so an operator can act while the rollout runs.
    let mut worker = fleet.spawn(
        &["worker", "--workers", "1"],
        &[("TENANTRY_FAILPOINTS", "rollout_tenant.before=delay")],
    );

    add_migration(&migrations, 3);
    let recorded = fleet
        .json(&[
            "migrate",
            "apply",
            "--no-wait",
            "--canary",
            "1",
            "--concurrency",
            "1",
        ])
        .await;
    let id = recorded["rollout"].as_str().unwrap().to_owned();
    eventually(
        30,
        || worker.log(),
        || async {
            let view = rollout(&fleet, &id).await;
            (view["counts"]["applied"].as_i64().unwrap_or(0) >= 1).then_some(())
        },
    )
    .await;
    fleet.run(&["migrate", "pause", &id]).await.assert_ok();
    // The tenant in hand finishes; then nothing moves while paused.
    let held = eventually(
        30,
        || worker.log(),
        || async {
            let view = rollout(&fleet, &id).await;
            let job = fleet.json(&["jobs", "show", &id]).await;
            let said_paused = job.to_string().contains("paused by an operator");
            (view["counts"]["running"] == 0 && said_paused).then_some(view)
        },
    )
    .await;
    assert_eq!(held["control"], "paused");
    assert_eq!(held["status"], "in_progress");
    let pending = held["counts"]["pending"].as_i64().unwrap();
    assert!(pending > 0, "{held}");
    let later = rollout(&fleet, &id).await;
    assert_eq!(
        later["counts"], held["counts"],
        "a paused rollout starts no tenant"
    );
    fleet.run(&["migrate", "resume", &id]).await.assert_ok();
    eventually(
        60,
        || worker.log(),
        || async { (rollout(&fleet, &id).await["status"] == "complete").then_some(()) },
    )
    .await;
    for slug in &tenants {
        assert_eq!(
            version_and_runs(&postgres_tenant(slug), 3).await,
            (3, 1),
            "{slug}"
        );
    }

    // Abort: tenants in hand finish, the rest stay at version 3, and the rollout ends cancelled.
    add_migration(&migrations, 4);
    let recorded = fleet
        .json(&[
            "migrate",
            "apply",
            "--no-wait",
            "--canary",
            "1",
            "--concurrency",
            "1",
        ])
        .await;
    let id = recorded["rollout"].as_str().unwrap().to_owned();
    eventually(
        30,
        || worker.log(),
        || async {
            let view = rollout(&fleet, &id).await;
            (view["counts"]["applied"].as_i64().unwrap_or(0) >= 1).then_some(())
        },
    )
    .await;
    fleet.run(&["migrate", "abort", &id]).await.assert_ok();
    let view = eventually(
        30,
        || worker.log(),
        || async {
            let view = rollout(&fleet, &id).await;
            (view["status"] == "cancelled").then_some(view)
        },
    )
    .await;
    assert_eq!(view["error_code"], "E_ROLLOUT_ABORTED");
    let by_slug = children_by_slug(&view);
    let mut n_applied = 0;
    for slug in &tenants {
        let (version, runs) = version_and_runs(&postgres_tenant(slug), 4).await;
        match by_slug[slug]["status"].as_str().unwrap() {
            "applied" => {
                n_applied += 1;
                assert_eq!((version, runs), (4, 1), "{slug}");
            }
            "pending" => assert_eq!((version, runs), (3, 0), "{slug}"),
            other => panic!("{slug} is {other} after an abort"),
        }
    }
    assert!((1..tenants.len()).contains(&n_applied), "{view}");
    let resumed = fleet.run(&["migrate", "resume", &id]).await;
    assert_eq!(
        resumed.error_code().as_deref(),
        Some("E_CONFLICT"),
        "{resumed:?}"
    );
    worker.signal("TERM");
    assert!(worker.wait(30).await.success());
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_migration_is_named_per_tenant_and_refused_until_the_operator_skips_it() {
    let mut fleet = Fleet::new(Engine::Sqlite).await;
    let migrations = own_migrations(&mut fleet);
    for slug in ["ed1", "ed2", "ed3"] {
        fleet.provision(slug, &[]).await.assert_ok();
    }
    // Someone changed what ed2 recorded for migration 2 (as if the file had been edited after it ran there).
    let ed2 = format!("sqlite://{}", fleet.sqlite_file("ed2").display());
    let mut connection = sqlx::SqliteConnection::connect(&ed2).await.unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET checksum = X'00' WHERE version = 2")
        .execute(&mut connection)
        .await
        .unwrap();
    drop(connection);

    let plan = fleet.run(&["migrate", "plan", "--json"]).await;
    assert_eq!(plan.status, 1, "a plan with drift exits 1: {plan:?}");
    let plan = plan.json();
    assert_eq!(plan["counts"]["edited"], 1, "{plan}");
    assert_eq!(plan["tenants"][1]["slug"], "ed2");
    assert_eq!(plan["tenants"][1]["edited"], serde_json::json!([2]));
    let doctor = fleet.run(&["doctor", "--json"]).await;
    assert_ne!(doctor.status, 0);
    assert!(
        doctor.stdout.contains("tenant ed2") && doctor.stdout.contains("edited after it ran"),
        "{}",
        doctor.stdout
    );
    let shown = fleet.json(&["tenants", "show", "ed2"]).await;
    assert_eq!(shown["schema"]["state"], "edited", "{shown}");

    add_migration(&migrations, 3);
    let refused = fleet.run(&["migrate", "apply"]).await;
    assert_eq!(
        refused.error_code().as_deref(),
        Some("E_MIGRATION_DRIFT"),
        "{refused:?}"
    );
    assert!(refused.stderr.contains("ed2"), "{refused:?}");
    assert!(fleet
        .json(&["migrate", "status"])
        .await
        .as_array()
        .unwrap()
        .is_empty());

    let view = fleet.json(&["migrate", "apply", "--skip-drifted"]).await;
    assert_eq!(view["status"], "complete", "{view}");
    let by_slug = children_by_slug(&view);
    assert_eq!(by_slug["ed1"]["status"], "applied");
    assert_eq!(by_slug["ed3"]["status"], "applied");
    assert_eq!(by_slug["ed2"]["status"], "skipped");
    assert!(
        by_slug["ed2"]["error"].as_str().unwrap().contains("edited"),
        "{view}"
    );
    let shown = fleet.json(&["tenants", "show", "ed1"]).await;
    assert_eq!(shown["schema"]["state"], "latest", "{shown}");
    assert_eq!(shown["schema"]["version"], 3, "{shown}");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rollout_options_are_refused_with_a_code_and_record_nothing() {
    let mut fleet = Fleet::new(Engine::Sqlite).await;
    let migrations = own_migrations(&mut fleet);
    fleet.provision("bad-input", &[]).await.assert_ok();
    add_migration(&migrations, 3);
    for (args, code) in [
        (vec!["--waves", "50%"], "E_INVALID_INPUT"),
        (vec!["--waves", "60%,40%,100%"], "E_INVALID_INPUT"),
        (vec!["--waves", "half"], "E_INVALID_INPUT"),
        (vec!["--concurrency", "0"], "E_INVALID_INPUT"),
        (vec!["--max-failures", "0"], "E_INVALID_INPUT"),
        (vec!["--wave-size", "0"], "E_INVALID_INPUT"),
        (vec!["--canary-tenants", "Not A Slug"], "E_INVALID_SLUG"),
        (vec!["--canary-tenants", "nobody"], "E_NOT_FOUND"),
    ] {
        let mut command = vec!["migrate", "apply"];
        command.extend(&args);
        let refused = fleet.run(&command).await;
        assert_eq!(
            refused.error_code().as_deref(),
            Some(code),
            "{args:?}: {refused:?}"
        );
    }
    for control in ["pause", "resume", "abort", "status"] {
        let refused = fleet.run(&["migrate", control, "no-such-rollout"]).await;
        assert_eq!(
            refused.error_code().as_deref(),
            Some("E_NOT_FOUND"),
            "{control}: {refused:?}"
        );
    }
    assert!(fleet
        .json(&["migrate", "status"])
        .await
        .as_array()
        .unwrap()
        .is_empty());
    assert!(fleet
        .jobs()
        .await
        .iter()
        .all(|job| job["kind"] != "rollout"));
    let plan = fleet.json(&["migrate", "plan"]).await;
    assert_eq!(plan["counts"]["pending"], 1, "{plan}");
    fleet.cleanup().await;
}
