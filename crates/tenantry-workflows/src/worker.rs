//! Workers: claim waiting jobs (and jobs whose worker died), run them, and stop claiming on shutdown.
//!
//! A worker sleeps until it is woken (a job was submitted in this process) or a poll interval passes (a job may
//! have been submitted elsewhere, or a lease may have expired). On shutdown it stops claiming, and the runner
//! hands the jobs in hand back at their next phase boundary.

use crate::{OffboardWorkflow, Platform, ProvisionWorkflow};
use std::sync::Arc;
use std::time::Duration;
use tenantry_core::JobKind;
use tenantry_engine::{owner_is_dead_local_process, Runner};
use tenantry_registry::Fence;
use tokio::sync::{watch, Notify};

/// How often an idle worker looks for work it was not woken for.
pub const IDLE_POLL: Duration = Duration::from_secs(1);

/// Runs `n_workers` workers until `shutdown` turns true and every job in hand is finished or handed back.
pub async fn run_workers(
    platform: Platform,
    runner: Runner,
    n_workers: usize,
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
) {
    let runner = runner.with_stop(shutdown.clone());
    let mut workers = tokio::task::JoinSet::new();
    for worker_index in 0..n_workers.max(1) {
        workers.spawn(worker_loop(
            platform.clone(),
            runner.clone(),
            wake.clone(),
            shutdown.clone(),
            worker_index,
        ));
    }
    while workers.join_next().await.is_some() {}
}

async fn worker_loop(
    platform: Platform,
    runner: Runner,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
    worker_index: usize,
) {
    let lease_ttl_millis = i64::try_from(runner.lease_ttl().as_millis()).unwrap_or(i64::MAX);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let claimed = match platform
            .registry
            .claim_next_job(runner.owner(), lease_ttl_millis)
            .await
        {
            Ok(Some(fence)) => Some(fence),
            Ok(None) => claim_job_of_dead_process(&platform, &runner, lease_ttl_millis).await,
            Err(error) => {
                tracing::warn!(worker_index, %error, "could not claim a job; the registry may be unavailable");
                None
            }
        };
        match claimed {
            Some(fence) => drive(&platform, &runner, fence).await,
            None => {
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

/// A job whose lease has not expired yet but whose owner, a process on this host, is gone.
async fn claim_job_of_dead_process(
    platform: &Platform,
    runner: &Runner,
    lease_ttl_millis: i64,
) -> Option<Fence> {
    let leased = platform.registry.leased_jobs().await.ok()?;
    for (job_id, owner) in leased {
        if owner_is_dead_local_process(&owner) {
            if let Ok(Some(fence)) = platform
                .registry
                .claim_job(&job_id, runner.owner(), lease_ttl_millis, Some(&owner))
                .await
            {
                tracing::warn!(
                    job_id,
                    dead_owner = owner,
                    "took over a job whose process has exited"
                );
                return Some(fence);
            }
        }
    }
    None
}

/// Runs a claimed job with the workflow its kind names.
pub async fn drive(platform: &Platform, runner: &Runner, fence: Fence) {
    let job_id = fence.job_id.clone();
    let kind = match platform.registry.get_job(&job_id).await {
        Ok(job) => job.kind,
        Err(error) => {
            tracing::warn!(job_id, %error, "claimed job could not be read");
            let _ = platform.registry.release_lease(&fence).await;
            return;
        }
    };
    let outcome = match kind {
        JobKind::Provision => {
            runner
                .drive(&ProvisionWorkflow::new(platform.clone()), fence)
                .await
        }
        JobKind::Offboard => {
            runner
                .drive(&OffboardWorkflow::new(platform.clone()), fence)
                .await
        }
    };
    match outcome {
        Ok(outcome) => tracing::info!(job_id, status = %outcome.job.status, "job ended"),
        Err(tenantry_engine::Error::HandedBack { .. }) => {}
        Err(error) => tracing::warn!(job_id, %error, "job stopped"),
    }
}
