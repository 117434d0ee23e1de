//! Concurrency: many processes asking for one slug make one tenant; many jobs never overbook a server; the CLI
//! runs its own job while a worker watches the same registry.

use crate::for_each_engine;
use crate::harness::{eventually, Engine, Fleet};

for_each_engine!(
    eight_processes_one_slug_make_one_tenant,
    eight_jobs_never_overbook_capacity_three,
    provision_beside_a_running_worker_is_run_and_reported_by_the_cli,
    resuming_a_job_a_worker_runs_follows_it_to_its_end
);

async fn eight_processes_one_slug_make_one_tenant(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let runs = futures_join(8, |_| fleet.provision("contested", &[])).await;
    let n_succeeded = runs.iter().filter(|run| run.status == 0).count();
    assert_eq!(n_succeeded, 1, "exactly one process provisions: {runs:#?}");
    for run in runs.iter().filter(|run| run.status != 0) {
        let code = run.error_code();
        assert!(
            matches!(
                code.as_deref(),
                Some("E_CONFLICT" | "E_ALREADY_PROVISIONED")
            ),
            "the others are told why: {run:?}"
        );
    }
    assert_eq!(fleet.tenants().await.len(), 1);
    assert_eq!(fleet.n_tenant_databases().await, 1);
    assert_eq!(
        fleet.server_has("contested").await,
        (true, engine == Engine::Postgres)
    );
    assert!(fleet.secret("tenant-db-contested").await.is_some());
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

async fn eight_jobs_never_overbook_capacity_three(engine: Engine) {
    let fleet = Fleet::with_capacity(engine, Some(3)).await;
    let shared = &fleet;
    let runs = futures_join(8, |index| async move {
        shared.provision(&format!("cap-{index}"), &[]).await
    })
    .await;
    let n_succeeded = runs.iter().filter(|run| run.status == 0).count();
    assert_eq!(n_succeeded, 3, "{runs:#?}");
    for run in runs.iter().filter(|run| run.status != 0) {
        assert_eq!(
            run.error_code().as_deref(),
            Some("E_NO_CAPACITY"),
            "{run:?}"
        );
    }
    assert_eq!(fleet.tenants().await.len(), 3);
    assert_eq!(fleet.n_tenant_databases().await, 3);
    let servers = fleet.json(&["servers", "list"]).await;
    assert_eq!(servers.as_array().unwrap().len(), 1);
    assert_eq!(servers[0]["tenant_count"], 3);
    assert_eq!(servers[0]["capacity_hint"], 3);
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

/// With a `worker` on the same registry (woken at once by NOTIFY on PostgreSQL), `provision-tenant` used to lose
/// its job to the worker and exit 1 with `E_CONFLICT: job … is held by …`, and the one-time secrets were shown to
/// nobody. The CLI's job is now created holding the CLI's lease: every run completes here and prints them.
async fn provision_beside_a_running_worker_is_run_and_reported_by_the_cli(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let mut worker = fleet.spawn(&["worker", "--workers", "2"], &[]);
    // The worker is claiming jobs once it has run one that nobody else runs.
    let warm_up = fleet
        .json(&[
            "provision-tenant",
            "--slug",
            "warm-up",
            "--display-name",
            "Warm Up",
            "--admin-email",
            "admin@warm-up.example",
            "--no-wait",
        ])
        .await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(
        60,
        || format!("the worker did not run {warm_up}: {}", worker.log()),
        || async {
            let job = fleet.json(&["jobs", "show", &warm_up]).await;
            (job["status"] == "complete").then_some(())
        },
    )
    .await;
    for index in 0..5 {
        let slug = format!("beside-{index}");
        let run = fleet.provision(&slug, &[]).await;
        assert_eq!(run.status, 0, "{run:?}\nworker log: {}", worker.log());
        for label in ["admin_email: ", "invitation_url: "] {
            assert!(run.stdout.contains(label), "{label} not printed: {run:?}");
        }
        let tenant = fleet.json(&["tenants", "show", &slug]).await;
        assert_eq!(tenant["tenant"]["status"], "active", "{tenant}");
    }
    let jobs = fleet.jobs().await;
    assert!(
        jobs.iter().all(|job| job["status"] == "complete"),
        "{jobs:#?}"
    );
    worker.signal("TERM");
    worker.wait(30).await;
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

/// `jobs resume` of a job a live worker is running (and, the same way, a `jobs approve` that a worker beat to
/// the claim) used to exit 1 with `E_CONFLICT: … is held by …`. It now
/// follows the job to its end, with its phases, outcome and exit status, and says where the invitation waits.
async fn resuming_a_job_a_worker_runs_follows_it_to_its_end(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let mut args = Fleet::provision_args("followed");
    args.extend(["--no-wait".to_owned(), "--json".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let submitted = fleet.run(&args).await;
    submitted.assert_ok();
    let job_id = submitted.json()["job_id"].as_str().unwrap().to_owned();
    // The worker holds `secret_set` for two seconds: long enough for the resume to find it busy.
    let mut worker = fleet.spawn(
        &["worker", "--workers", "1"],
        &[("TENANTRY_FAILPOINTS", "secret_set.before=delay")],
    );
    eventually(
        30,
        || format!("the worker did not claim {job_id}: {}", worker.log()),
        || async {
            let job = fleet.json(&["jobs", "show", &job_id]).await;
            (job["status"] == "in_progress").then_some(())
        },
    )
    .await;
    let resumed = fleet.run(&["jobs", "resume", &job_id]).await;
    assert_eq!(resumed.status, 0, "{resumed:?}");
    assert!(
        resumed.stderr.contains("following it to its end"),
        "{resumed:?}"
    );
    assert!(resumed.stderr.contains("✓ complete"), "{resumed:?}");
    assert!(
        resumed.stdout.contains(&format!("job {job_id} complete")),
        "{resumed:?}"
    );
    assert!(
        resumed.stdout.contains("tenant-invite-followed"),
        "{resumed:?}"
    );
    worker.signal("TERM");
    worker.wait(30).await;
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

/// Runs `n` futures made by `make` at once (so the processes really overlap) and collects their results.
async fn futures_join<F, Fut, T>(n: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    futures_util::future::join_all((0..n).map(make)).await
}
