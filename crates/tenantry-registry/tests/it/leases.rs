//! Conformance cases for job leases: claiming, takeover after expiry, renewal, release, and fencing stale writers.

use crate::harness::{add_postgres_server, audit_event, new_job, tenant_record, ProgressShortcuts};
use anyhow::Context;
use tenantry_core::{EngineKind, JobKind, JobStatus, PhaseStatus, TenantStatus};
use tenantry_registry::{now_millis, Error, Fence, NewLease, PlacementRequest, Registry};

/// A lease time-to-live that has already run out when it is granted, so a takeover needs no waiting.
const EXPIRED_TTL_MILLIS: i64 = -1_000;
const MINUTE_MILLIS: i64 = 60_000;

pub async fn case_leases_claim_gives_fence_and_refuses_second_claim(
    registry: Registry,
) -> anyhow::Result<()> {
    let job = registry
        .create_job(&new_job(JobKind::Provision, "acme"))
        .await?;
    let before_claim = now_millis();
    let fence = registry
        .claim_job(&job.id, "worker-a", MINUTE_MILLIS, None)
        .await?
        .context("a pending job is claimable")?;
    assert_eq!(
        fence,
        Fence {
            job_id: job.id.clone(),
            token: 1
        }
    );
    let claimed = registry.get_job(&job.id).await?;
    assert_eq!(claimed.status, JobStatus::InProgress);
    assert_eq!(claimed.lease_owner.as_deref(), Some("worker-a"));
    assert_eq!(claimed.lease_token, 1);
    assert!(claimed
        .lease_expires_at
        .is_some_and(|expires_at| expires_at >= before_claim + MINUTE_MILLIS));
    assert!(claimed
        .started_at
        .is_some_and(|started_at| started_at >= before_claim));

    assert_eq!(
        registry
            .claim_job(&job.id, "worker-b", MINUTE_MILLIS, None)
            .await?,
        None
    );
    // Naming a dead owner that is not the recorded one takes nothing.
    assert_eq!(
        registry
            .claim_job(&job.id, "worker-b", MINUTE_MILLIS, Some("worker-c"))
            .await?,
        None
    );
    let unchanged = registry.get_job(&job.id).await?;
    assert_eq!(
        (unchanged.lease_owner.as_deref(), unchanged.lease_token),
        (Some("worker-a"), 1)
    );

    // Once the caller has established that worker-a is gone, it may take the lease before it expires.
    let takeover = registry
        .claim_job(&job.id, "worker-b", MINUTE_MILLIS, Some("worker-a"))
        .await?
        .context("the lease of a dead owner can be taken")?;
    assert_eq!(takeover.token, 2);
    let taken = registry.get_job(&job.id).await?;
    assert_eq!(taken.lease_owner.as_deref(), Some("worker-b"));
    assert_eq!(taken.started_at, claimed.started_at);

    assert_eq!(
        registry
            .claim_job("no-such-job", "worker-a", MINUTE_MILLIS, None)
            .await?,
        None
    );
    Ok(())
}

pub async fn case_leases_expired_lease_is_taken_over_with_higher_token(
    registry: Registry,
) -> anyhow::Result<()> {
    let job = registry
        .create_job(&new_job(JobKind::Provision, "acme"))
        .await?;
    let first = registry
        .claim_job(&job.id, "worker-a", EXPIRED_TTL_MILLIS, None)
        .await?
        .context("a pending job is claimable")?;
    let second = registry
        .claim_job(&job.id, "worker-b", MINUTE_MILLIS, None)
        .await?
        .context("an expired lease can be taken over")?;
    assert!(
        second.token > first.token,
        "takeover token {} must exceed {}",
        second.token,
        first.token
    );
    let job = registry.get_job(&job.id).await?;
    assert_eq!(
        (job.lease_owner.as_deref(), job.lease_token),
        (Some("worker-b"), second.token)
    );
    // The new lease is valid, so the next claim fails.
    assert_eq!(
        registry
            .claim_job(&job.id, "worker-a", MINUTE_MILLIS, None)
            .await?,
        None
    );
    Ok(())
}

pub async fn case_leases_renewal_keeps_lease(registry: Registry) -> anyhow::Result<()> {
    let job = registry
        .create_job(&new_job(JobKind::Provision, "acme"))
        .await?;
    let fence = registry
        .claim_job(&job.id, "worker-a", EXPIRED_TTL_MILLIS, None)
        .await?
        .context("a pending job is claimable")?;
    let before_renewal = now_millis();
    registry.renew_lease(&fence, MINUTE_MILLIS).await?;
    let renewed = registry.get_job(&job.id).await?;
    assert!(renewed
        .lease_expires_at
        .is_some_and(|expires_at| expires_at >= before_renewal + MINUTE_MILLIS));
    assert_eq!(renewed.lease_token, fence.token);
    assert_eq!(
        registry
            .claim_job(&job.id, "worker-b", MINUTE_MILLIS, None)
            .await?,
        None
    );
    Ok(())
}

pub async fn case_leases_release_lets_another_worker_claim_at_once(
    registry: Registry,
) -> anyhow::Result<()> {
    let job = registry
        .create_job(&new_job(JobKind::Provision, "acme"))
        .await?;
    let first = registry
        .claim_job(&job.id, "worker-a", MINUTE_MILLIS, None)
        .await?
        .context("a pending job is claimable")?;
    registry.release_lease(&first).await?;
    // Releasing ends the fence at once: the releasing worker can write nothing more.
    assert_fenced(
        "append_job_log after release",
        registry.append_job_log(&first, None, "info", "late").await,
    );
    let released = registry.get_job(&job.id).await?;
    assert_eq!(
        (released.lease_owner, released.lease_expires_at),
        (None, None)
    );
    assert_eq!(released.status, JobStatus::InProgress);

    let second = registry
        .claim_job(&job.id, "worker-b", MINUTE_MILLIS, None)
        .await?
        .context("a released job is claimable at once")?;
    assert!(second.token > first.token);
    // Releasing with the old fence leaves the new owner's lease alone.
    registry.release_lease(&first).await?;
    let still_owned = registry.get_job(&job.id).await?;
    assert_eq!(still_owned.lease_owner.as_deref(), Some("worker-b"));
    assert!(still_owned.lease_expires_at.is_some());
    Ok(())
}

fn assert_fenced<T: std::fmt::Debug>(what: &str, result: Result<T, Error>) {
    assert!(
        matches!(result, Err(Error::Fenced { .. })),
        "{what} with a stale fence: expected Fenced, got {result:?}"
    );
}

pub async fn case_leases_stale_fence_is_refused_and_changes_nothing(
    registry: Registry,
) -> anyhow::Result<()> {
    add_postgres_server(&registry, "pg-a", 10).await?;
    let job = registry
        .create_job(&new_job(JobKind::Provision, "acme"))
        .await?;
    let stale = registry
        .claim_job(&job.id, "worker-a", EXPIRED_TTL_MILLIS, None)
        .await?
        .context("a pending job is claimable")?;
    let current = registry
        .claim_job(&job.id, "worker-b", MINUTE_MILLIS, None)
        .await?
        .context("an expired lease can be taken over")?;
    let before = registry.get_job(&job.id).await?;
    let n_audit_events_before = registry.list_audit(&Default::default()).await?.len();

    assert_fenced(
        "set_phase_status",
        registry
            .set_phase_status(&stale, 0, PhaseStatus::Running, "stale")
            .await,
    );
    assert_fenced(
        "append_job_log",
        registry.append_job_log(&stale, None, "info", "stale").await,
    );
    assert_fenced(
        "set_job_state",
        registry
            .set_job_state(&stale, &serde_json::json!({ "stale": true }))
            .await,
    );
    assert_fenced(
        "renew_lease",
        registry.renew_lease(&stale, 10 * MINUTE_MILLIS).await,
    );
    let placement = PlacementRequest::Auto {
        engine: Some(EngineKind::Postgres),
        region: "eu".to_owned(),
    };
    assert_fenced("place_job", registry.place_job(&stale, &placement).await);
    assert_fenced("clear_placement", registry.clear_placement(&stale).await);
    let tenant = tenant_record("acme", "Acme", "pg-a", TenantStatus::Provisioning);
    let audit = audit_event("worker-a", "TENANT_REGISTERED", Some("acme"), Some(&job.id));
    assert_fenced(
        "register_tenant",
        registry.register_tenant(&stale, &tenant, &[], &audit).await,
    );
    assert_fenced(
        "set_tenant_status",
        registry
            .set_tenant_status(&stale, "acme", TenantStatus::Active, &audit)
            .await,
    );
    assert_fenced(
        "remove_tenant",
        registry.remove_tenant(&stale, "acme", &audit).await,
    );
    assert_fenced(
        "finish_job",
        registry
            .finish_job(
                &stale,
                JobStatus::Failed,
                Some(("E_INTERNAL", "stale")),
                Some(TenantStatus::Failed),
                std::slice::from_ref(&audit),
            )
            .await,
    );

    let after = registry.get_job(&job.id).await?;
    assert_eq!(after, before, "a stale writer changed the job");
    assert!(registry.job_events(&job.id, 0).await?.is_empty());
    assert!(registry.get_tenant("acme").await?.is_none());
    assert_eq!(
        registry.list_audit(&Default::default()).await?.len(),
        n_audit_events_before
    );

    // The current owner's writes still go through.
    registry
        .set_phase_status(&current, 0, PhaseStatus::Running, "current")
        .await?;
    registry
        .register_tenant(&current, &tenant, &[], &audit)
        .await?;
    assert!(registry.get_tenant("acme").await?.is_some());
    Ok(())
}

/// A job created with a lease is its creator's from the first moment: no worker claims it from the queue or by
/// id, and the creator's fence (token 1) writes. Without this a worker claimed the CLI's job before the CLI did.
pub async fn case_leases_job_created_leased_is_never_claimed_by_another(
    registry: Registry,
) -> anyhow::Result<()> {
    let before_creation = now_millis();
    let job = registry
        .create_job(&tenantry_registry::NewJob {
            lease: Some(NewLease {
                owner: "cli-1".into(),
                ttl_millis: MINUTE_MILLIS,
            }),
            ..new_job(JobKind::Provision, "acme")
        })
        .await?;
    assert_eq!(job.status, JobStatus::InProgress);
    assert_eq!(job.lease_owner.as_deref(), Some("cli-1"));
    assert_eq!(job.lease_token, 1);
    assert!(job
        .lease_expires_at
        .is_some_and(|expires_at| expires_at >= before_creation + MINUTE_MILLIS));
    assert!(job.started_at.is_some());
    assert_eq!(
        registry.claim_next_job("worker-a", MINUTE_MILLIS).await?,
        None
    );
    assert_eq!(
        registry
            .claim_job(&job.id, "worker-a", MINUTE_MILLIS, None)
            .await?,
        None
    );
    let fence = Fence {
        job_id: job.id.clone(),
        token: job.lease_token,
    };
    registry.renew_lease(&fence, MINUTE_MILLIS).await?;

    // A job that waits for approval is nobody's yet, lease or not.
    let waiting = registry
        .create_job(&tenantry_registry::NewJob {
            lease: Some(NewLease {
                owner: "cli-1".into(),
                ttl_millis: MINUTE_MILLIS,
            }),
            approval: Some(tenantry_registry::ApprovalRequest {
                expires_at: now_millis() + MINUTE_MILLIS,
                details: serde_json::json!({}),
                reason: "waiting for approval: test".into(),
            }),
            ..new_job(JobKind::Provision, "globex")
        })
        .await?;
    assert_eq!(waiting.status, JobStatus::AwaitingApproval);
    assert_eq!(waiting.lease_owner, None);
    Ok(())
}
