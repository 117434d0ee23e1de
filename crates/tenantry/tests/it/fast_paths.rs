//! The fast ways to a tenant database on PostgreSQL: the schema's template database and the warm pool. Whatever
//! the path, a tenant must come out the same: at the latest migration, everything in its database owned by its
//! own role (so it can migrate further as itself), its credentials working, and `doctor` clean.

use crate::failures::{assert_nothing_left, resume_at_every_phase, unwind_at_every_phase};
use crate::harness::{
    eventually, tenant_cluster_url, with_database, write_file, Engine, Fleet, PROVISION_PHASES,
};
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const PRUNE_FIX: &str = "tenantry pool prune --server pg";

fn resource_name(slug: &str) -> String {
    format!("tenant_{}", slug.replace('-', "_"))
}

/// The job log of the tenant's provisioning job.
async fn provision_log(fleet: &Fleet, slug: &str) -> Vec<String> {
    let jobs = fleet.json(&["jobs", "list", "--tenant", slug]).await;
    let job_id = jobs[0]["job_id"].as_str().unwrap().to_owned();
    let job = fleet.json(&["jobs", "show", &job_id]).await;
    job["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|log| log["message"].as_str().unwrap().to_owned())
        .collect()
}

/// How `database_created` came by the tenant's database, as its log line says.
async fn database_origin(fleet: &Fleet, slug: &str) -> String {
    provision_log(fleet, slug)
        .await
        .into_iter()
        .find(|message| message.starts_with(&format!("created {}", resource_name(slug))))
        .unwrap_or_else(|| panic!("no database_created log line for {slug}"))
}

async fn pool_status(fleet: &Fleet) -> Value {
    fleet.json(&["pool", "status", "--server", "pg"]).await[0].clone()
}

/// Checks the tenant the way its application and a later migration would see it.
async fn assert_tenant_is_whole(fleet: &Fleet, slug: &str, latest_migration: i64) {
    let resource = resource_name(slug);
    let mut admin = PgConnection::connect(&with_database(&tenant_cluster_url(), &resource))
        .await
        .unwrap();
    let owners: Vec<(String, String)> = sqlx::query_as(
        "SELECT relname::text, pg_get_userbyid(relowner)::text FROM pg_class
         WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'S', 'v', 'm', 'p') ORDER BY 1",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    let names: Vec<&str> = owners.iter().map(|(name, _)| name.as_str()).collect();
    assert!(names.contains(&"_sqlx_migrations"), "{owners:?}");
    assert!(names.contains(&"users"), "{owners:?}");
    for (name, owner) in &owners {
        assert_eq!(owner, &resource, "{name} belongs to the tenant");
    }
    let left_to_template_owner: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_shdepend WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND refobjid = (SELECT oid FROM pg_roles WHERE rolname = 'tenantry_template_owner')",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(
        left_to_template_owner, 0,
        "nothing refers to the template owner"
    );
    let database_owner: String = sqlx::query_scalar(
        "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    // The database itself is the installation's, so the tenant cannot loosen its limits or privileges; the
    // `public` schema is the tenant's, so its later migrations can create tables there.
    assert!(
        database_owner.starts_with("tenantry_owner_"),
        "{database_owner}"
    );
    let public_owner: String = sqlx::query_scalar(
        "SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = 'public'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(public_owner, resource);
    admin.close().await.unwrap();

    let url = fleet
        .secret(&format!("tenant-db-{slug}"))
        .await
        .expect("the tenant's secret");
    let mut tenant = PgConnection::connect(&url)
        .await
        .expect("the tenant's credentials work");
    let (version, n_failed): (i64, i64) = sqlx::query_as(
        "SELECT MAX(version), COUNT(*) FILTER (WHERE NOT success) FROM _sqlx_migrations",
    )
    .fetch_one(&mut tenant)
    .await
    .unwrap();
    assert_eq!((version, n_failed), (latest_migration, 0));
    let n_admins: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&mut tenant)
        .await
        .unwrap();
    assert_eq!(n_admins, 1, "the first admin is seeded");
    // A later migration runs as the tenant: it must be able to change its tables and its migration record.
    let mut transaction = tenant.begin().await.unwrap();
    transaction
        .execute("ALTER TABLE users ADD COLUMN nickname TEXT")
        .await
        .expect("the tenant can alter its tables");
    transaction
        .execute("UPDATE _sqlx_migrations SET description = description")
        .await
        .expect("the tenant can write its migration record");
    transaction.rollback().await.unwrap();
    tenant.close().await.unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the bundled tenant schema with one more PostgreSQL migration (version 3).
fn schema_with_one_more_migration(fleet: &Fleet) -> PathBuf {
    let schema = fleet.scratch_dir.join("schema-v3");
    copy_dir(&fleet.data_path("tenant-schema/migrations"), &schema);
    write_file(
        &schema.join("postgres/0003_notes.sql"),
        "CREATE TABLE notes (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body TEXT NOT NULL);",
    );
    schema
}

async fn stale_findings(fleet: &Fleet) -> Vec<Value> {
    stale_in(&fleet.run(&["doctor", "--json"]).await.json())
}

/// The `stale` findings of a `doctor --json` report.
fn stale_in(doctor: &Value) -> Vec<Value> {
    doctor["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|finding| finding["kind"] == "stale")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_path_makes_a_whole_tenant() {
    let fleet = Fleet::new(Engine::Postgres).await;
    fleet.provision("from-template", &[]).await.assert_ok();
    let origin = database_origin(&fleet, "from-template").await;
    assert!(
        origin.ends_with("copied from the schema template"),
        "{origin}"
    );
    assert_tenant_is_whole(&fleet, "from-template", 2).await;
    // The template was compacted before it was copied: `VACUUM (FULL)` gave the tenant's table and the catalogs
    // new files, where a table keeps the file named after its oid until it is rewritten.
    let mut admin = PgConnection::connect(&with_database(
        &tenant_cluster_url(),
        &resource_name("from-template"),
    ))
    .await
    .unwrap();
    let rewritten: (bool, bool) = sqlx::query_as(
        "SELECT pg_relation_filenode('users') <> 'users'::regclass::oid,
                pg_relation_filenode('pg_proc') <> 'pg_proc'::regclass::oid",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(rewritten, (true, true), "the template was compacted");
    admin.close().await.unwrap();
    let status = pool_status(&fleet).await;
    assert_eq!(status["template_ready"], true, "{status}");
    assert_eq!(status["n_ready"], 0, "{status}");

    let doctor = fleet.run(&["doctor", "--json"]).await;
    assert_eq!(doctor.status, 0, "{doctor:?}");
    assert_eq!(doctor.json()["n_templates"], 1);
    assert_eq!(
        doctor.json()["n_tenants"],
        1,
        "the template is not a tenant"
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_pool_tenant_is_whole_and_the_pool_shrinks_by_one() {
    let fleet = Fleet::new(Engine::Postgres).await;
    let filled = fleet
        .json(&["pool", "fill", "--server", "pg", "--size", "2"])
        .await;
    assert_eq!(filled["n_created"], 2, "{filled}");
    assert_eq!(pool_status(&fleet).await["n_ready"], 2);
    fleet.assert_doctor_clean().await;
    // Each pool role cannot log in yet, and its database belongs to the installation's owner role; what a tenant
    // can read of it (its comment) holds the installation's mark and the schema, nothing secret.
    let mut admin = PgConnection::connect(&tenant_cluster_url()).await.unwrap();
    let pool_roles: Vec<(bool, String, String)> = sqlx::query_as(
        "SELECT r.rolcanlogin, pg_get_userbyid(d.datdba)::text, shobj_description(d.oid, 'pg_database')
         FROM pg_roles r JOIN pg_database d ON d.datname = r.rolname
         WHERE r.rolname LIKE 'tenantry\\_pool\\_%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(pool_roles.len(), 2, "{pool_roles:?}");
    for (can_login, owner, comment) in &pool_roles {
        assert!(!can_login, "{pool_roles:?}");
        assert!(owner.starts_with("tenantry_owner_"), "{pool_roles:?}");
        let label: Value = serde_json::from_str(comment).unwrap();
        assert_eq!(label["tenantry"], "warm_pool", "{label}");
        assert!(label["installation"].is_string(), "{label}");
    }

    fleet.provision("from-pool", &[]).await.assert_ok();
    let origin = database_origin(&fleet, "from-pool").await;
    assert!(
        origin.contains("claimed warm-pool database tenantry_pool_"),
        "{origin}"
    );
    // The claimed database's comment is the tenant's installation mark, with no labels.
    let comment: String = sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'tenant_from_pool'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    let label: Value = serde_json::from_str(&comment).unwrap();
    assert_eq!(label["tenantry"], "tenant", "{label}");
    assert!(label.get("plan").is_none(), "{label}");
    admin.close().await.unwrap();
    assert_eq!(
        pool_status(&fleet).await["n_ready"],
        1,
        "the pool shrank by one"
    );
    assert_tenant_is_whole(&fleet, "from-pool", 2).await;
    let doctor = fleet.run(&["doctor", "--json"]).await;
    assert_eq!(doctor.status, 0, "{doctor:?}");
    assert_eq!(doctor.json()["n_pool_databases"], 1);
    assert_eq!(
        doctor.json()["n_tenants"],
        1,
        "pool databases are not tenants"
    );

    fleet
        .run(&["offboard-tenant", "--slug", "from-pool", "--purge"])
        .await
        .assert_ok();
    assert_eq!(fleet.server_has("from-pool").await, (false, false));
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_migrations_build_a_new_template() {
    let mut fleet = Fleet::new(Engine::Postgres).await;
    fleet.provision("before-change", &[]).await.assert_ok();
    let old_hash = pool_status(&fleet).await["schema_hash"].clone();

    let schema = schema_with_one_more_migration(&fleet);
    fleet.set_env("TENANTRY_TENANT_MIGRATIONS", schema.to_str().unwrap());
    let status = pool_status(&fleet).await;
    assert_ne!(
        status["schema_hash"], old_hash,
        "a new migration is a new schema version"
    );
    assert_eq!(status["template_ready"], false);

    fleet.provision("after-change", &[]).await.assert_ok();
    let origin = database_origin(&fleet, "after-change").await;
    assert!(
        origin.ends_with("copied from the schema template"),
        "{origin}"
    );
    assert_tenant_is_whole(&fleet, "after-change", 3).await;
    let mut admin =
        PgConnection::connect(&with_database(&tenant_cluster_url(), "tenant_after_change"))
            .await
            .unwrap();
    let notes_owner: String =
        sqlx::query_scalar("SELECT tableowner::text FROM pg_tables WHERE tablename = 'notes'")
            .fetch_one(&mut admin)
            .await
            .expect("the new migration's table is there");
    assert_eq!(notes_owner, "tenant_after_change");
    admin.close().await.unwrap();
    assert_eq!(pool_status(&fleet).await["template_ready"], true);

    // The old template is no longer used: doctor says so, and prune clears it.
    let stale = stale_findings(&fleet).await;
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert!(
        stale[0]["subject"].as_str().unwrap().starts_with(&format!(
            "database tenantry_template_{}",
            old_hash.as_str().unwrap()
        )),
        "{stale:?}"
    );
    fleet
        .run(&["pool", "prune", "--server", "pg"])
        .await
        .assert_ok();
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_provisions_share_a_pool_of_three() {
    let fleet = Fleet::new(Engine::Postgres).await;
    fleet
        .run(&["pool", "fill", "--server", "pg", "--size", "3"])
        .await
        .assert_ok();
    let slugs: Vec<String> = (0..8).map(|index| format!("crowd-{index}")).collect();
    let runs =
        futures_util::future::join_all(slugs.iter().map(|slug| fleet.provision(slug, &[]))).await;
    for run in &runs {
        run.assert_ok();
    }
    let mut claimed = Vec::new();
    for slug in &slugs {
        let origin = database_origin(&fleet, slug).await;
        match origin.split_once("claimed warm-pool database ") {
            Some((_, pool_database)) => claimed.push(pool_database.to_owned()),
            None => assert!(
                origin.ends_with("copied from the schema template"),
                "{origin}"
            ),
        }
        assert_tenant_is_whole(&fleet, slug, 2).await;
    }
    let distinct: BTreeSet<&String> = claimed.iter().collect();
    assert_eq!(
        claimed.len(),
        3,
        "every pool database was used: {claimed:?}"
    );
    assert_eq!(distinct.len(), 3, "none was claimed twice: {claimed:?}");
    assert_eq!(pool_status(&fleet).await["n_ready"], 0);
    assert_eq!(fleet.tenants().await.len(), 8);
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_a_stale_pool_and_prune_clears_it() {
    let mut fleet = Fleet::new(Engine::Postgres).await;
    fleet
        .run(&["pool", "fill", "--server", "pg", "--size", "2"])
        .await
        .assert_ok();
    fleet.assert_doctor_clean().await;

    let schema = schema_with_one_more_migration(&fleet);
    fleet.set_env("TENANTRY_TENANT_MIGRATIONS", schema.to_str().unwrap());
    let doctor = fleet.run(&["doctor"]).await;
    assert_eq!(doctor.status, 1, "{doctor:?}");
    assert!(doctor.stdout.contains(PRUNE_FIX), "{}", doctor.stdout);
    let stale = stale_findings(&fleet).await;
    let subjects: Vec<&str> = stale
        .iter()
        .map(|finding| finding["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects
            .iter()
            .filter(|subject| {
                subject.starts_with("database tenantry_pool_")
                    || subject.starts_with("role tenantry_pool_")
            })
            .count(),
        4,
        "two pool databases and their roles: {subjects:?}"
    );
    assert!(
        subjects
            .iter()
            .any(|subject| subject.starts_with("database tenantry_template_")),
        "{subjects:?}"
    );
    assert!(stale.iter().all(|finding| finding["fix"] == PRUNE_FIX));

    // A new tenant never takes a pool database of the old schema.
    fleet.provision("new-schema", &[]).await.assert_ok();
    let origin = database_origin(&fleet, "new-schema").await;
    assert!(
        origin.ends_with("copied from the schema template"),
        "{origin}"
    );
    assert_tenant_is_whole(&fleet, "new-schema", 3).await;

    let pruned = fleet.json(&["pool", "prune", "--server", "pg"]).await;
    assert_eq!(pruned["dropped"].as_array().unwrap().len(), 5, "{pruned}");
    fleet.assert_doctor_clean().await;
    let status = pool_status(&fleet).await;
    assert_eq!(status["n_pool_databases"], 0, "{status}");
    assert_eq!(status["template_ready"], true, "the current template stays");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_three_paths_and_cleans_up() {
    let fleet = Fleet::new(Engine::Postgres).await;
    let run = fleet
        .run(&[
            "bench",
            "--server",
            "pg",
            "--tenants",
            "3",
            "--concurrency",
            "2",
            "--json",
        ])
        .await;
    run.assert_ok();
    let report = run.json();
    let paths: Vec<&str> = report["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|path| path["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["warm_pool", "template", "baseline"]);
    for path in report["paths"].as_array().unwrap() {
        assert_eq!(path["n_tenants"], 3, "{path}");
        assert_eq!(path["n_failed"], 0, "{path}");
        assert!(path["p50_ms"].as_f64().unwrap() > 0.0, "{path}");
        assert!(path["tenants_per_second"].as_f64().unwrap() > 0.0, "{path}");
    }
    assert_eq!(report["paths"][0]["n_from_pool"], 3, "{report}");
    assert_eq!(report["cleanup"]["doctor_clean"], true, "{report}");
    assert_eq!(report["cleanup"]["n_tenants_purged"], 6, "{report}");

    assert_eq!(fleet.n_tenant_databases().await, 0);
    assert_eq!(pool_status(&fleet).await["n_pool_databases"], 0);
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_servers_have_no_pool() {
    let fleet = Fleet::new(Engine::Sqlite).await;
    let run = fleet.run(&["pool", "fill", "--server", "local"]).await;
    assert_eq!(
        run.error_code().as_deref(),
        Some("E_INVALID_INPUT"),
        "{run:?}"
    );
    let run = fleet
        .run(&["bench", "--server", "local", "--tenants", "1"])
        .await;
    assert_eq!(
        run.error_code().as_deref(),
        Some("E_INVALID_INPUT"),
        "{run:?}"
    );
    assert_eq!(fleet.json(&["pool", "status"]).await, serde_json::json!([]));
    fleet.cleanup().await;
}

/// Pool databases ready to claim, as `pool status` counts them.
async fn n_ready(fleet: &Fleet) -> u64 {
    pool_status(fleet).await["n_ready"].as_u64().unwrap()
}

/// A PostgreSQL fleet whose server has `size` pool databases ready.
async fn fleet_with_pool(size: usize) -> Fleet {
    let fleet = Fleet::new(Engine::Postgres).await;
    let size = size.to_string();
    fleet
        .run(&["pool", "fill", "--server", "pg", "--size", &size])
        .await
        .assert_ok();
    fleet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_phase_of_a_pool_claim_resumes_to_complete() {
    let n_jobs = PROVISION_PHASES.len() * 2;
    let fleet = fleet_with_pool(n_jobs).await;
    let slugs = resume_at_every_phase(&fleet).await;
    // Every job got its database from the pool (a crash after the claim finds it on resume), none from the
    // template, and each works with the credentials its secret holds.
    assert_eq!(n_ready(&fleet).await, 0, "each job claimed one");
    for slug in &slugs {
        let origin = database_origin(&fleet, slug).await;
        assert!(
            !origin.ends_with("copied from the schema template"),
            "{slug}: {origin}"
        );
        assert_tenant_is_whole(&fleet, slug, 2).await;
    }
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_at_every_phase_of_a_pool_claim_unwinds_to_nothing() {
    let n_jobs = PROVISION_PHASES.len() * 2;
    let fleet = fleet_with_pool(n_jobs).await;
    unwind_at_every_phase(&fleet).await;
    // The jobs that failed after their claim (from `database_created.after` on) each dropped the database they
    // claimed; the others left the pool alone.
    let database_created = PROVISION_PHASES
        .iter()
        .position(|phase| *phase == "database_created")
        .unwrap();
    let n_claimed = 1 + 2 * (PROVISION_PHASES.len() - database_created - 1);
    assert_eq!(n_ready(&fleet).await, (n_jobs - n_claimed) as u64);
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_of_a_pool_claim_run_twice_converges() {
    let fleet = fleet_with_pool(2).await;
    let twice = [("TENANTRY_REPEAT_STEPS", "1")];
    fleet.provision("claimed-twice", &twice).await.assert_ok();
    // The second `database_created` finds the claimed database and keeps the secret and the role in step.
    assert_tenant_is_whole(&fleet, "claimed-twice", 2).await;
    assert_eq!(
        n_ready(&fleet).await,
        1,
        "one claim, however often the step ran"
    );
    fleet.assert_doctor_clean().await;

    let run = fleet
        .provision(
            "unclaimed-twice",
            &[
                ("TENANTRY_REPEAT_STEPS", "1"),
                ("TENANTRY_FAILPOINTS", "complete.after=error"),
            ],
        )
        .await;
    assert_eq!(run.error_code().as_deref(), Some("E_FAILPOINT"), "{run:?}");
    assert_nothing_left(&fleet, "unclaimed-twice").await;
    assert_eq!(n_ready(&fleet).await, 0);
    fleet.cleanup().await;
}

/// A crash right after the claim: the pool database is the tenant's (renamed, its role given the secret's
/// password), but the phase is not recorded; the resumed job finds it and brings it in line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_the_claim_resumes_with_working_credentials() {
    let fleet = fleet_with_pool(2).await;
    let crashed = fleet
        .provision(
            "claim-crash",
            &[("TENANTRY_FAILPOINTS", "database_created.claimed=exit")],
        )
        .await;
    assert_eq!(crashed.status, 137, "{crashed:?}");
    assert_eq!(fleet.server_has("claim-crash").await, (true, true));
    let doctor = fleet.run(&["doctor", "--json"]).await;
    assert_eq!(
        doctor.status, 1,
        "the interrupted job is reported: {doctor:?}"
    );

    fleet.provision("claim-crash", &[]).await.assert_ok();
    let origin = database_origin(&fleet, "claim-crash").await;
    assert!(
        origin.ends_with("already there, brought in line"),
        "{origin}"
    );
    assert_tenant_is_whole(&fleet, "claim-crash", 2).await;
    assert_eq!(n_ready(&fleet).await, 1, "the resumed job claimed no other");
    fleet.assert_doctor_clean().await;

    // A failure at the same moment unwinds the claim: the database and role are dropped, the secret deleted.
    let failed = fleet
        .provision(
            "claim-fail",
            &[("TENANTRY_FAILPOINTS", "database_created.claimed=error")],
        )
        .await;
    assert_eq!(
        failed.error_code().as_deref(),
        Some("E_FAILPOINT"),
        "{failed:?}"
    );
    assert_nothing_left(&fleet, "claim-fail").await;
    assert_eq!(
        n_ready(&fleet).await,
        0,
        "the claimed database went with the job"
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_refills_the_pool_a_batch_per_round() {
    let fleet = Fleet::new(Engine::Postgres).await;
    let mut worker = fleet.spawn(
        &["worker", "--workers", "1"],
        &[
            ("TENANTRY_WARM_POOL_SIZE", "2"),
            ("TENANTRY_WARM_POOL_REFILL_BATCH", "1"),
            ("RUST_LOG", "tenantry_workflows=info"),
        ],
    );
    let pool_of = |size: u64| {
        let fleet = &fleet;
        move || async move { (n_ready(fleet).await == size).then_some(()) }
    };
    eventually(
        60,
        || format!("a pool of 2; worker log:\n{}", worker.log()),
        pool_of(2),
    )
    .await;

    // A tenant the worker provisions takes one; the next rounds put it back.
    let recorded = fleet
        .run(&[
            "provision-tenant",
            "--slug",
            "refilled",
            "--display-name",
            "Refilled",
            "--admin-email",
            "admin@refilled.example",
            "--no-wait",
            "--json",
        ])
        .await;
    recorded.assert_ok();
    let job_id = recorded.json()["job_id"].as_str().unwrap().to_owned();
    let job = eventually(
        60,
        || format!("job {job_id} ends; worker log:\n{}", worker.log()),
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
    assert_eq!(job["status"], "complete", "{job}\n{}", worker.log());
    assert!(
        database_origin(&fleet, "refilled")
            .await
            .contains("claimed warm-pool database"),
        "the worker's job claimed a pool database"
    );
    eventually(
        60,
        || format!("the pool refilled; worker log:\n{}", worker.log()),
        pool_of(2),
    )
    .await;
    worker.signal("TERM");
    assert!(worker.wait(30).await.success(), "{}", worker.log());

    // Three databases made, never more than the batch in one round.
    let rounds: Vec<u64> = worker
        .log()
        .lines()
        .filter(|line| line.contains("warm pool refilled"))
        .map(|line| {
            let made = line.split("made=").nth(1).unwrap();
            made.split_whitespace().next().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(rounds, [1, 1, 1], "{}", worker.log());
    assert_tenant_is_whole(&fleet, "refilled", 2).await;
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

/// How many databases on the tenant cluster match a `LIKE` pattern.
async fn n_databases_like(pattern: &str) -> i64 {
    let mut admin = PgConnection::connect(&tenant_cluster_url()).await.unwrap();
    let count = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname LIKE $1")
        .bind(pattern)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_killed_midway_leaves_only_what_doctor_names_and_the_next_fill_replaces_it() {
    let fleet = fleet_with_pool(1).await;
    let pool_builds = "tenantry\\_build\\_%\\_%";
    // kill -9 while a pool database is being made (copied, not yet renamed into the pool). The kill can land just
    // after the rename; then it is tried again, a few times at most.
    let mut n_left = 0;
    for _ in 0..5 {
        let mut filling = fleet.spawn(&["pool", "fill", "--server", "pg", "--size", "60"], &[]);
        eventually(
            60,
            || {
                format!(
                    "a pool database under construction; fill log:\n{}",
                    filling.log()
                )
            },
            || async { (n_databases_like(pool_builds).await > 0).then_some(()) },
        )
        .await;
        filling.signal("KILL");
        assert!(!filling.wait(10).await.success());
        // Its admin session ends with it, and with the session the maintenance lock.
        eventually(
            30,
            || "the killed fill's lock released".to_owned(),
            || async { (pool_status(&fleet).await["build_in_progress"] == false).then_some(()) },
        )
        .await;
        // Whatever the moment of the kill, every finding is a fast-path leftover that prune would clear.
        let doctor = fleet.run(&["doctor", "--json"]).await;
        let stale = stale_in(&doctor.json());
        assert_eq!(
            doctor.json()["findings"].as_array().unwrap().len(),
            stale.len(),
            "{doctor:?}"
        );
        assert!(
            stale.iter().all(|finding| finding["fix"] == PRUNE_FIX),
            "{stale:?}"
        );
        n_left = n_databases_like(pool_builds).await;
        if n_left > 0 {
            assert_eq!(doctor.status, 1, "{doctor:?}");
            assert!(
                stale.iter().any(|finding| finding["subject"]
                    .as_str()
                    .unwrap()
                    .starts_with("database tenantry_build_")),
                "{stale:?}"
            );
            break;
        }
    }
    assert_eq!(
        n_left, 1,
        "five kills never caught a pool database being made"
    );

    // The next fill takes the abandoned build's number and replaces it.
    let ready = n_ready(&fleet).await;
    let size = (ready + 2).to_string();
    let filled = fleet
        .json(&["pool", "fill", "--server", "pg", "--size", &size])
        .await;
    assert_eq!(filled["n_created"], 2, "{filled}");
    assert_eq!(n_databases_like(pool_builds).await, 0, "no leftover build");
    fleet.assert_doctor_clean().await;
    fleet.provision("after-kill", &[]).await.assert_ok();
    assert!(database_origin(&fleet, "after-kill")
        .await
        .contains("claimed warm-pool database"));
    assert_tenant_is_whole(&fleet, "after-kill", 2).await;
    fleet.cleanup().await;
}
