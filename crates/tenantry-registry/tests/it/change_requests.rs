//! Conformance cases for change requests: filing records the request and its `CHANGE_REQUESTED` event (and the
//! `change.requested` delivery) together; only someone other than the requester decides; an approval records its
//! job in the same transaction, and one whose job cannot be recorded leaves the request pending; two deciders at
//! once cannot both win; a tenant admin is stored with their tenant.

use crate::harness::{count_audit, new_job};
use std::collections::BTreeMap;
use tenantry_core::{JobKind, JobStatus, PlatformRole};
use tenantry_registry::{
    ChangeDecision, ChangeOutcome, NewChangeRequest, PlatformUser, Registry, CHANGE_APPROVED,
    CHANGE_PENDING, CHANGE_REJECTED,
};

fn request(id: &str, slug: &str) -> NewChangeRequest {
    NewChangeRequest {
        id: id.to_owned(),
        tenant_slug: slug.to_owned(),
        plan: Some("enterprise".into()),
        modules: BTreeMap::from([("ml".to_owned(), true), ("bi".to_owned(), false)]),
        resource_tier: None,
        reason: "we need the ML module".into(),
        requested_by: "user:tenant-admin".into(),
    }
}

fn approval(actor: &str, slug: &str) -> ChangeDecision {
    ChangeDecision {
        actor: actor.to_owned(),
        reason: "fine".into(),
        job: Some(tenantry_registry::NewJob {
            actor: actor.to_owned(),
            ..new_job(JobKind::SetPlan, slug)
        }),
    }
}

async fn jobs_of(registry: &Registry, slug: &str) -> anyhow::Result<usize> {
    Ok(registry
        .list_jobs(&tenantry_registry::JobFilter {
            tenant_slug: Some(slug.to_owned()),
            status: None,
            limit: 100,
        })
        .await?
        .len())
}

fn rejection(actor: &str) -> ChangeDecision {
    ChangeDecision {
        actor: actor.to_owned(),
        reason: "not this quarter".into(),
        job: None,
    }
}

pub async fn case_change_requests_filed_listed_and_approved_with_their_job(
    registry: Registry,
) -> anyhow::Result<()> {
    registry
        .add_webhook(&tenantry_registry::WebhookRecord {
            id: "hook-1".into(),
            url: "http://127.0.0.1:9/hook".into(),
            events: vec!["change.requested".into(), "change.decided".into()],
            format: "standard".into(),
            created_by: "test".into(),
            created_at: 0,
        })
        .await?;
    let filed = registry
        .create_change_request(&request("cr-1", "acme"))
        .await?;
    assert_eq!(filed.status, CHANGE_PENDING);
    assert_eq!(filed.plan.as_deref(), Some("enterprise"));
    assert_eq!(filed.modules.get("ml"), Some(&true));
    assert_eq!(
        count_audit(&registry, "CHANGE_REQUESTED", Some("acme")).await?,
        1
    );
    registry
        .create_change_request(&request("cr-2", "globex"))
        .await?;
    let acme: Vec<String> = registry
        .list_change_requests(Some("acme"), None, 10)
        .await?
        .into_iter()
        .map(|request| request.id)
        .collect();
    assert_eq!(acme, ["cr-1"]);
    assert_eq!(
        registry
            .list_change_requests(None, Some(CHANGE_PENDING), 10)
            .await?
            .len(),
        2
    );

    // The requester cannot decide it; nothing changes.
    assert!(matches!(
        registry
            .decide_change_request("cr-1", &approval("user:tenant-admin", "acme"))
            .await?,
        ChangeOutcome::OwnRequest
    ));
    assert_eq!(jobs_of(&registry, "acme").await?, 0);

    let decision = approval("user:platform-admin", "acme");
    let job_id = decision.job.as_ref().map(|job| job.id.clone());
    let ChangeOutcome::Decided(approved) =
        registry.decide_change_request("cr-1", &decision).await?
    else {
        anyhow::bail!("the approval was not recorded");
    };
    assert_eq!(approved.status, CHANGE_APPROVED);
    assert_eq!(approved.job_id, job_id);
    assert_eq!(approved.decided_by.as_deref(), Some("user:platform-admin"));
    let job = registry
        .get_job(job_id.as_deref().unwrap_or_default())
        .await?;
    assert_eq!(job.status, JobStatus::Pending);
    assert_eq!(
        count_audit(&registry, "CHANGE_APPROVED", Some("acme")).await?,
        1
    );
    // Deciding again is refused with its status.
    assert!(matches!(
        registry
            .decide_change_request("cr-1", &rejection("user:someone-else"))
            .await?,
        ChangeOutcome::NotPending(status) if status == CHANGE_APPROVED
    ));
    // Filing and deciding each queued the subscribed webhook's delivery.
    let events: Vec<String> = registry
        .list_notifications(None, 50)
        .await?
        .into_iter()
        .map(|delivery| delivery.event_type)
        .collect();
    assert!(
        events.iter().any(|event| event == "change.requested"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|event| event == "change.decided"),
        "{events:?}"
    );
    Ok(())
}

pub async fn case_change_requests_approval_whose_job_conflicts_stays_pending(
    registry: Registry,
) -> anyhow::Result<()> {
    registry
        .create_change_request(&request("cr-busy", "initech"))
        .await?;
    // The tenant has an unfinished job: the approval's job cannot be recorded, and nothing of it is.
    registry
        .create_job(&new_job(JobKind::Backup, "initech"))
        .await?;
    let refused = registry
        .decide_change_request("cr-busy", &approval("user:platform-admin", "initech"))
        .await;
    assert!(
        matches!(refused, Err(tenantry_registry::Error::Conflict { .. })),
        "{refused:?}"
    );
    let request = registry
        .get_change_request("cr-busy")
        .await?
        .expect("the request is kept");
    assert_eq!(request.status, CHANGE_PENDING);
    assert_eq!(request.job_id, None);
    assert_eq!(
        count_audit(&registry, "CHANGE_APPROVED", Some("initech")).await?,
        0
    );
    let ChangeOutcome::Decided(rejected) = registry
        .decide_change_request("cr-busy", &rejection("user:platform-admin"))
        .await?
    else {
        anyhow::bail!("the rejection was not recorded");
    };
    assert_eq!(rejected.status, CHANGE_REJECTED);
    assert_eq!(
        rejected.decision_reason.as_deref(),
        Some("not this quarter")
    );
    assert_eq!(
        count_audit(&registry, "CHANGE_REJECTED", Some("initech")).await?,
        1
    );
    Ok(())
}

pub async fn case_change_requests_concurrent_decisions_have_one_winner(
    registry: Registry,
) -> anyhow::Result<()> {
    registry
        .create_change_request(&request("cr-race", "hooli"))
        .await?;
    let deciders = ["user:bob", "user:carol", "user:dave", "user:erin"].map(|actor| {
        let registry = registry.clone();
        tokio::spawn(async move {
            let decision = if actor == "user:carol" {
                rejection(actor)
            } else {
                approval(actor, "hooli")
            };
            registry.decide_change_request("cr-race", &decision).await
        })
    });
    let mut decided = 0;
    for decider in deciders {
        // A losing approval may also meet the winner's job (`Conflict`): it changed nothing either.
        if matches!(decider.await?, Ok(ChangeOutcome::Decided(_))) {
            decided += 1;
        }
    }
    assert_eq!(decided, 1, "exactly one decision wins");
    let approved = count_audit(&registry, "CHANGE_APPROVED", Some("hooli")).await?;
    let rejected = count_audit(&registry, "CHANGE_REJECTED", Some("hooli")).await?;
    assert_eq!(approved + rejected, 1);
    assert_eq!(jobs_of(&registry, "hooli").await?, approved);
    Ok(())
}

pub async fn case_change_requests_tenant_admin_is_stored_with_their_tenant(
    registry: Registry,
) -> anyhow::Result<()> {
    let user = PlatformUser {
        id: "ta-1".into(),
        email: "owner@acme.example".into(),
        role: PlatformRole::TenantAdmin,
        password_hash: "hash".into(),
        created_at: 0,
        tenant_slug: Some("acme".into()),
    };
    registry.add_user(&user, "test").await?;
    let stored = registry
        .get_user_by_email("owner@acme.example")
        .await?
        .expect("the user is stored");
    assert_eq!(stored.role, PlatformRole::TenantAdmin);
    assert_eq!(stored.tenant_slug.as_deref(), Some("acme"));
    Ok(())
}
