//! Failure paths: a fatal error at every phase unwinds to nothing; a crash at every phase resumes to complete;
//! every step converges when run twice; a failing migration rolls back; a failed undo is named and recoverable.

use crate::for_each_engine;
use crate::harness::{write_file, Engine, Fleet, PROVISION_PHASES as PHASES};

for_each_engine!(
    error_at_every_phase_unwinds_to_nothing,
    crash_at_every_phase_resumes_to_complete,
    every_step_run_twice_converges,
    failing_migration_rolls_back_everything,
    failed_undo_is_reported_and_rolled_back_later,
    crash_during_rollback_resumes_the_rollback,
    rolled_back_job_can_be_retried,
);

/// Asserts that nothing of `slug` exists anywhere and doctor agrees.
pub(crate) async fn assert_nothing_left(fleet: &Fleet, slug: &str) {
    assert_eq!(
        fleet.server_has(slug).await,
        (false, false),
        "{slug}: database or role left behind"
    );
    assert_eq!(
        fleet.secret(&format!("tenant-db-{slug}")).await,
        None,
        "{slug}: secret left behind"
    );
    assert_eq!(
        fleet.secret(&format!("tenant-invite-{slug}")).await,
        None,
        "{slug}: invitation left behind"
    );
    assert!(
        !fleet
            .tenants()
            .await
            .iter()
            .any(|tenant| tenant["slug"] == slug),
        "{slug}: registry row left behind"
    );
    fleet.assert_doctor_clean().await;
}

async fn error_at_every_phase_unwinds_to_nothing(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    unwind_at_every_phase(&fleet).await;
    fleet.cleanup().await;
}

/// A fatal error before and after each phase, one tenant each: every job rolls back and leaves nothing.
pub(crate) async fn unwind_at_every_phase(fleet: &Fleet) {
    for (index, phase) in PHASES.iter().enumerate() {
        for boundary in ["before", "after"] {
            let slug = format!("fail-{index}-{boundary}");
            let failpoint = format!("{phase}.{boundary}=error");
            let run = fleet
                .provision(&slug, &[("TENANTRY_FAILPOINTS", &failpoint)])
                .await;
            assert_ne!(run.status, 0, "{failpoint}: {run:?}");
            assert_eq!(
                run.error_code().as_deref(),
                Some("E_FAILPOINT"),
                "{failpoint}: {run:?}"
            );
            let job = fleet.json(&["jobs", "list", "--tenant", &slug]).await[0].clone();
            assert_eq!(job["status"], "rolled_back", "{failpoint}");
            assert_eq!(job["error_code"], "E_FAILPOINT", "{failpoint}");
            assert_nothing_left(fleet, &slug).await;
            assert!(fleet
                .audit_types(&slug)
                .await
                .contains(&"TENANT_PROVISION_FAILED".to_owned()));
        }
    }
}

async fn crash_at_every_phase_resumes_to_complete(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    resume_at_every_phase(&fleet).await;
    fleet.cleanup().await;
}

/// A crash before and after each phase, one tenant each on a fleet that had none: each job resumes to complete.
/// Returns the slugs.
pub(crate) async fn resume_at_every_phase(fleet: &Fleet) -> Vec<String> {
    let mut slugs = Vec::new();
    for (index, phase) in PHASES.iter().enumerate() {
        for boundary in ["before", "after"] {
            let slug = format!("crash-{index}-{boundary}");
            let failpoint = format!("{phase}.{boundary}=exit");
            let crashed = fleet
                .provision(&slug, &[("TENANTRY_FAILPOINTS", &failpoint)])
                .await;
            assert_eq!(
                crashed.status, 137,
                "{failpoint} ends the process abruptly: {crashed:?}"
            );
            let job_id = fleet.json(&["jobs", "list", "--tenant", &slug]).await[0]["job_id"]
                .as_str()
                .unwrap()
                .to_owned();
            // While it lies interrupted, doctor names the job and how to finish it.
            let doctor = fleet.run(&["doctor", "--json"]).await;
            assert_eq!(
                doctor.status, 1,
                "{failpoint}: doctor must report the interrupted job"
            );
            assert!(
                doctor
                    .stdout
                    .contains(&format!("tenantry jobs resume {job_id}")),
                "{}",
                doctor.stdout
            );

            let resumed = fleet.provision(&slug, &[]).await;
            resumed.assert_ok();
            assert!(
                resumed.stderr.contains(&format!("resuming job {job_id}")),
                "{resumed:?}"
            );
            let job = fleet.json(&["jobs", "show", &job_id]).await;
            assert_eq!(job["status"], "complete", "{failpoint}");
            assert!(job["phases"]
                .as_array()
                .unwrap()
                .iter()
                .all(|phase| phase["status"] == "applied"));
            let (database, _) = fleet.server_has(&slug).await;
            assert!(database, "{failpoint}");
            assert!(fleet.secret(&format!("tenant-db-{slug}")).await.is_some());
            slugs.push(slug);
        }
    }
    assert_eq!(fleet.tenants().await.len(), PHASES.len() * 2);
    assert_eq!(fleet.n_tenant_databases().await, (PHASES.len() * 2) as i64);
    fleet.assert_doctor_clean().await;
    slugs
}

async fn every_step_run_twice_converges(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let twice = [("TENANTRY_REPEAT_STEPS", "1")];
    fleet.provision("twice", &twice).await.assert_ok();
    assert_eq!(fleet.tenants().await.len(), 1);
    assert_eq!(fleet.n_tenant_databases().await, 1);
    let registered = fleet
        .audit_types("twice")
        .await
        .iter()
        .filter(|event| *event == "TENANT_REGISTERED")
        .count();
    assert_eq!(
        registered, 1,
        "registering twice writes one row and one audit event"
    );
    // The credentials still match after the role was created twice.
    let url = fleet.secret("tenant-db-twice").await.unwrap();
    let n_users = count_users(engine, &url).await;
    assert_eq!(n_users, 1, "the admin is seeded once");
    fleet.assert_doctor_clean().await;

    // Every undo twice: a failure at the last phase unwinds all of them, each undo running twice.
    let run = fleet
        .provision(
            "undo-twice",
            &[
                ("TENANTRY_REPEAT_STEPS", "1"),
                ("TENANTRY_FAILPOINTS", "complete.after=error"),
            ],
        )
        .await;
    assert_eq!(run.error_code().as_deref(), Some("E_FAILPOINT"), "{run:?}");
    assert_nothing_left(&fleet, "undo-twice").await;
    fleet.cleanup().await;
}

pub(crate) async fn count_users(engine: Engine, url: &str) -> i64 {
    use sqlx::Connection;
    match engine {
        Engine::Postgres => {
            let mut connection = sqlx::PgConnection::connect(url)
                .await
                .expect("credentials work");
            sqlx::query_scalar("SELECT COUNT(*) FROM users")
                .fetch_one(&mut connection)
                .await
                .unwrap()
        }
        Engine::Sqlite => {
            let mut connection = sqlx::SqliteConnection::connect(url)
                .await
                .expect("file opens");
            sqlx::query_scalar("SELECT COUNT(*) FROM users")
                .fetch_one(&mut connection)
                .await
                .unwrap()
        }
    }
}

async fn failing_migration_rolls_back_everything(engine: Engine) {
    let mut fleet = Fleet::new(engine).await;
    let migrations = fleet.scratch_dir.join("broken-schema");
    let engine_dir = migrations.join(if engine == Engine::Postgres {
        "postgres"
    } else {
        "sqlite"
    });
    write_file(
        &engine_dir.join("0001_users.sql"),
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);",
    );
    write_file(
        &engine_dir.join("0002_broken.sql"),
        "CREATE TABLE oops (id INTEGER PRIMARY KEY, ) ;",
    );
    fleet.set_env("TENANTRY_TENANT_MIGRATIONS", migrations.to_str().unwrap());
    let run = fleet.provision("bad-schema", &[]).await;
    assert_eq!(
        run.error_code().as_deref(),
        Some("E_MIGRATIONS_FAILED"),
        "{run:?}"
    );
    let job = fleet
        .json(&["jobs", "list", "--tenant", "bad-schema"])
        .await[0]
        .clone();
    assert_eq!(job["status"], "rolled_back");
    assert_eq!(job["error_code"], "E_MIGRATIONS_FAILED");
    assert_nothing_left(&fleet, "bad-schema").await;
    fleet.cleanup().await;
}

async fn failed_undo_is_reported_and_rolled_back_later(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let run = fleet
        .provision(
            "stuck",
            &[(
                "TENANTRY_FAILPOINTS",
                "admin_seeded.before=error,database_created.undo=error",
            )],
        )
        .await;
    assert_eq!(
        run.error_code().as_deref(),
        Some("E_PARTIAL_STATE"),
        "{run:?}"
    );
    let job = fleet.json(&["jobs", "list", "--tenant", "stuck"]).await[0].clone();
    assert_eq!(job["status"], "failed");
    // The database could not be dropped: doctor names it with the fix.
    let doctor = fleet.run(&["doctor"]).await;
    assert_eq!(doctor.status, 1);
    assert!(doctor.stdout.contains("tenant_stuck"), "{}", doctor.stdout);
    assert!(
        doctor
            .stdout
            .contains("tenantry offboard-tenant --slug stuck --purge"),
        "{}",
        doctor.stdout
    );
    // An operator rolls the job back once the cause is gone.
    let job_id = job["job_id"].as_str().unwrap();
    let rolled_back = fleet.run(&["jobs", "rollback", job_id]).await;
    assert_eq!(
        rolled_back.status, 1,
        "the job ends rolled_back, which is not success: {rolled_back:?}"
    );
    assert_eq!(
        fleet.json(&["jobs", "show", job_id]).await["status"],
        "rolled_back"
    );
    assert_nothing_left(&fleet, "stuck").await;
    fleet.cleanup().await;
}

async fn crash_during_rollback_resumes_the_rollback(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let crashed = fleet
        .provision(
            "half-undone",
            &[(
                "TENANTRY_FAILPOINTS",
                "master_registered.after=error,secret_set.undo=exit",
            )],
        )
        .await;
    assert_eq!(crashed.status, 137, "{crashed:?}");
    let resumed = fleet.provision("half-undone", &[]).await;
    assert_eq!(
        resumed.error_code().as_deref(),
        Some("E_FAILPOINT"),
        "the original cause is kept: {resumed:?}"
    );
    let job = fleet
        .json(&["jobs", "list", "--tenant", "half-undone"])
        .await[0]
        .clone();
    assert_eq!(job["status"], "rolled_back");
    assert_nothing_left(&fleet, "half-undone").await;
    fleet.cleanup().await;
}

async fn rolled_back_job_can_be_retried(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let run = fleet
        .provision(
            "second-try",
            &[("TENANTRY_FAILPOINTS", "migrations_applied.before=error")],
        )
        .await;
    assert_eq!(run.error_code().as_deref(), Some("E_FAILPOINT"));
    let job_id = fleet
        .json(&["jobs", "list", "--tenant", "second-try"])
        .await[0]["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    fleet.run(&["jobs", "retry", &job_id]).await.assert_ok();
    assert_eq!(
        fleet.json(&["jobs", "show", &job_id]).await["status"],
        "complete"
    );
    assert_eq!(fleet.tenants().await[0]["status"], "active");
    assert!(fleet
        .audit_types("second-try")
        .await
        .contains(&"JOB_RETRIED".to_owned()));
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}
