//! Workers: claim waiting jobs (and jobs whose worker died), run them, and stop claiming on shutdown.
//!
//! A worker sleeps until it is woken: by a job submitted in this process, or (on PostgreSQL) by a NOTIFY from any
//! process that submitted, reopened or handed back a job. It also sweeps now and then for leases that expired
//! (a worker that died elsewhere) and, on SQLite, for jobs submitted by other processes. On shutdown it stops
//! claiming, and the runner hands the jobs in hand back at their next phase boundary.

use crate::Platform;
use std::sync::Arc;
use std::time::Duration;
use tenantry_engine::{owner_is_dead_local_process, Runner};
use tenantry_registry::{Fence, JobNotification};
use tokio::sync::{watch, Notify};

/// How often an idle worker looks for work when nothing can wake it (SQLite: no LISTEN across processes).
pub const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often a process looks for tenants whose scheduled credential rotation is due.
const ROTATION_SWEEP: Duration = Duration::from_secs(60);

/// The longest an idle worker sleeps between sweeps for expired leases when notifications wake it.
pub const MAX_SWEEP: Duration = Duration::from_secs(5);

/// Called with a job id whenever any process records an event of that job (for live streams).
pub type JobEventHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Runs `n_workers` workers until `shutdown` turns true and every job in hand is finished or handed back.
pub async fn run_workers(
    platform: Platform,
    runner: Runner,
    n_workers: usize,
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
    on_job_event: Option<JobEventHook>,
) {
    let runner = runner.with_stop(shutdown.clone());
    let listening =
        spawn_notification_relay(&platform, wake.clone(), on_job_event, shutdown.clone()).await;
    let sweep = if listening {
        (runner.lease_ttl() / 2).clamp(Duration::from_millis(500), MAX_SWEEP)
    } else {
        IDLE_POLL
    };
    let mut workers = tokio::task::JoinSet::new();
    for worker_index in 0..n_workers.max(1) {
        workers.spawn(worker_loop(
            platform.clone(),
            runner.clone(),
            wake.clone(),
            shutdown.clone(),
            worker_index,
            sweep,
        ));
    }
    while workers.join_next().await.is_some() {}
}

/// On PostgreSQL, relays NOTIFYs: a claimable job wakes one worker; a job event calls the hook. Returns whether
/// a relay is running.
async fn spawn_notification_relay(
    platform: &Platform,
    wake: Arc<Notify>,
    on_job_event: Option<JobEventHook>,
    mut shutdown: watch::Receiver<bool>,
) -> bool {
    let listener = match platform.registry.listen_for_jobs().await {
        Ok(Some(listener)) => listener,
        Ok(None) => return false,
        Err(error) => {
            tracing::warn!(%error, "cannot LISTEN for jobs; workers will poll");
            return false;
        }
    };
    tokio::spawn(async move {
        let mut listener = listener;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                notification = listener.recv() => match notification {
                    Ok(JobNotification::Claimable { .. }) => wake.notify_one(),
                    Ok(JobNotification::Event { job_id }) => {
                        if let Some(hook) = &on_job_event {
                            hook(&job_id);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "job notifications interrupted; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
            }
        }
    });
    true
}

async fn worker_loop(
    platform: Platform,
    runner: Runner,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
    worker_index: usize,
    sweep: Duration,
) {
    let lease_ttl_millis = i64::try_from(runner.lease_ttl().as_millis()).unwrap_or(i64::MAX);
    // The first sweep runs at once.
    let mut last_approval_sweep = std::time::Instant::now()
        .checked_sub(sweep)
        .unwrap_or_else(std::time::Instant::now);
    let mut last_rotation_sweep: Option<std::time::Instant> = None;
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
        // One worker per process sweeps for approvals whose window closed, busy or not.
        if worker_index == 0 && last_approval_sweep.elapsed() >= sweep {
            last_approval_sweep = std::time::Instant::now();
            if let Err(error) = platform.registry.expire_approvals().await {
                tracing::warn!(%error, "could not expire lapsed approvals");
            }
        }
        // One worker per process submits the rotations plans schedule (`rotation_days`), once a minute.
        if worker_index == 0
            && last_rotation_sweep.is_none_or(|last| last.elapsed() >= ROTATION_SWEEP)
        {
            last_rotation_sweep = Some(std::time::Instant::now());
            match crate::rotate::submit_scheduled_rotations(&platform).await {
                Ok(0) => {}
                Ok(submitted) => {
                    tracing::info!(submitted, "submitted scheduled credential rotations");
                    wake.notify_one();
                }
                Err(error) => tracing::warn!(%error, "could not submit scheduled rotations"),
            }
        }
        match claimed {
            Some(fence) => drive(&platform, &runner, fence).await,
            None => {
                // No job to run: migrate tenants of a rollout another worker coordinates.
                let stop = shutdown.clone();
                let keep_claiming = move || !*stop.borrow();
                if crate::rollout::help_rollouts(
                    &platform,
                    runner.owner(),
                    lease_ttl_millis,
                    &keep_claiming,
                )
                .await
                {
                    continue;
                }
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(sweep) => {}
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
    let outcome = crate::drive_by_kind(platform, runner, kind, fence).await;
    // A job's end may have queued deliveries (its audit events did, in the same transaction).
    platform.outbox_wake.notify_one();
    match outcome {
        Ok(outcome) => tracing::info!(job_id, status = %outcome.job.status, "job ended"),
        Err(tenantry_engine::Error::HandedBack { .. }) => {}
        Err(error) => tracing::warn!(job_id, %error, "job stopped"),
    }
}
