//! Conformance cases for approvals: a waiting job is never claimed, only someone other than the requester decides
//! it, two deciders at once cannot both win, and a lapsed window cancels it.

use crate::harness::{count_audit, new_job};
use tenantry_core::{JobKind, JobStatus};
use tenantry_registry::{ApprovalDecision, ApprovalOutcome, ApprovalRequest, Registry};

fn waiting_job(slug: &str, expires_in_millis: i64) -> tenantry_registry::NewJob {
    tenantry_registry::NewJob {
        approval: Some(ApprovalRequest {
            expires_at: tenantry_registry::now_millis() + expires_in_millis,
            details: serde_json::json!({ "budget": 2_000_000 }),
            reason: "waiting for approval: budget over the threshold".into(),
        }),
        ..new_job(JobKind::Provision, slug)
    }
}

fn decision(actor: &str, approve: bool) -> ApprovalDecision {
    ApprovalDecision {
        actor: actor.to_owned(),
        approve,
        reason: "checked".into(),
    }
}

pub async fn case_approvals_waiting_job_is_not_claimed_until_another_admin_approves(
    registry: Registry,
) -> anyhow::Result<()> {
    let job = registry.create_job(&waiting_job("acme", 60_000)).await?;
    assert_eq!(job.status, JobStatus::AwaitingApproval);
    assert!(job.approval_expires_at.is_some());
    assert_eq!(
        count_audit(&registry, "APPROVAL_REQUESTED", Some("acme")).await?,
        1
    );
    let events = registry.job_events(&job.id, 0).await?;
    assert!(events[0].message.starts_with("waiting for approval"));

    // No worker takes it, by id or from the queue.
    assert_eq!(
        registry
            .claim_job(&job.id, "worker-1", 60_000, None)
            .await?,
        None
    );
    assert_eq!(registry.claim_next_job("worker-1", 60_000).await?, None);

    // The requester ("alice", see `new_job`) cannot decide it; the job is unchanged.
    assert!(matches!(
        registry
            .decide_approval(&job.id, &decision("alice", true))
            .await?,
        ApprovalOutcome::OwnRequest
    ));
    assert_eq!(
        registry.get_job(&job.id).await?.status,
        JobStatus::AwaitingApproval
    );

    let approved = registry
        .decide_approval(&job.id, &decision("bob", true))
        .await?;
    let ApprovalOutcome::Decided(approved) = approved else {
        anyhow::bail!("bob's approval was not recorded: {approved:?}");
    };
    assert_eq!(approved.status, JobStatus::Pending);
    assert_eq!(approved.approval_expires_at, None);
    assert_eq!(
        count_audit(&registry, "APPROVAL_GRANTED", Some("acme")).await?,
        1
    );
    assert!(registry.claim_next_job("worker-1", 60_000).await?.is_some());

    // Deciding again is refused with the job's status.
    assert!(matches!(
        registry
            .decide_approval(&job.id, &decision("carol", false))
            .await?,
        ApprovalOutcome::NotAwaiting(JobStatus::InProgress)
    ));
    Ok(())
}

pub async fn case_approvals_concurrent_decisions_have_one_winner(
    registry: Registry,
) -> anyhow::Result<()> {
    let job = registry.create_job(&waiting_job("globex", 60_000)).await?;
    let deciders = ["bob", "carol", "dave", "erin"].map(|actor| {
        let registry = registry.clone();
        let job_id = job.id.clone();
        tokio::spawn(async move {
            registry
                .decide_approval(&job_id, &decision(actor, actor != "carol"))
                .await
        })
    });
    let mut decided = 0;
    for decider in deciders {
        if matches!(decider.await??, ApprovalOutcome::Decided(_)) {
            decided += 1;
        }
    }
    assert_eq!(decided, 1, "exactly one decision wins");
    let granted = count_audit(&registry, "APPROVAL_GRANTED", Some("globex")).await?;
    let rejected = count_audit(&registry, "APPROVAL_REJECTED", Some("globex")).await?;
    assert_eq!(granted + rejected, 1);
    let status = registry.get_job(&job.id).await?.status;
    assert!(
        matches!(status, JobStatus::Pending | JobStatus::Cancelled),
        "{status}"
    );
    Ok(())
}

pub async fn case_approvals_rejection_and_lapse_cancel_with_their_codes(
    registry: Registry,
) -> anyhow::Result<()> {
    let rejected = registry.create_job(&waiting_job("initech", 60_000)).await?;
    let ApprovalOutcome::Decided(rejected) = registry
        .decide_approval(&rejected.id, &decision("bob", false))
        .await?
    else {
        anyhow::bail!("the rejection was not recorded");
    };
    assert_eq!(rejected.status, JobStatus::Cancelled);
    assert_eq!(rejected.error_code.as_deref(), Some("E_APPROVAL_REJECTED"));
    assert!(rejected.finished_at.is_some());
    // The slug is free again once the job is cancelled.
    registry
        .create_job(&new_job(JobKind::Provision, "initech"))
        .await?;

    let lapsing = registry.create_job(&waiting_job("hooli", -1)).await?;
    let fresh = registry
        .create_job(&waiting_job("umbrella", 60_000))
        .await?;
    assert_eq!(registry.expire_approvals().await?, vec![lapsing.id.clone()]);
    let lapsed = registry.get_job(&lapsing.id).await?;
    assert_eq!(lapsed.status, JobStatus::Cancelled);
    assert_eq!(lapsed.error_code.as_deref(), Some("E_APPROVAL_EXPIRED"));
    assert_eq!(
        count_audit(&registry, "APPROVAL_EXPIRED", Some("hooli")).await?,
        1
    );
    assert_eq!(
        registry.get_job(&fresh.id).await?.status,
        JobStatus::AwaitingApproval
    );
    // A sweep with nothing due changes nothing.
    assert!(registry.expire_approvals().await?.is_empty());
    // Deciding a lapsed job reports the lapse.
    let late = registry.create_job(&waiting_job("late-co", -1)).await?;
    assert!(matches!(
        registry
            .decide_approval(&late.id, &decision("bob", true))
            .await?,
        ApprovalOutcome::Expired
    ));
    assert_eq!(
        registry.get_job(&late.id).await?.status,
        JobStatus::Cancelled
    );
    Ok(())
}
