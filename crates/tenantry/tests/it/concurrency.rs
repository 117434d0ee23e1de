//! Concurrency: many processes asking for one slug make one tenant; many jobs never overbook a server.

use crate::for_each_engine;
use crate::harness::{Engine, Fleet};

for_each_engine!(
    eight_processes_one_slug_make_one_tenant,
    eight_jobs_never_overbook_capacity_three
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

/// Runs `n` futures made by `make` at once (so the processes really overlap) and collects their results.
async fn futures_join<F, Fut, T>(n: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    futures_util::future::join_all((0..n).map(make)).await
}
