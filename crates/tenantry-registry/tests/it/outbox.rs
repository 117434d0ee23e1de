//! Conformance cases for the outbox's invitation e-mails: queued by the audit event that completes a provisioning
//! (in its transaction), one per tenant at a time (a newer one ends the older), claimed only by a sender that can
//! send e-mail, and the tenant's newest one readable for its views.

use crate::harness::{add_postgres_server, audit_event, claimed_provision_job, register_tenant_on};
use tenantry_registry::{AttemptOutcome, Registry, CHANNEL_EMAIL, DELIVERY_DEAD, INVITATION_EVENT};

pub async fn case_outbox_invitation_queued_superseded_and_claimed_only_with_email(
    registry: Registry,
) -> anyhow::Result<()> {
    add_postgres_server(&registry, "pg-a", 10).await?;
    let (_, fence) = claimed_provision_job(&registry, "acme").await?;
    register_tenant_on(&registry, &fence, "acme", "pg-a").await?;
    assert!(registry.latest_invitation("acme").await?.is_none());

    registry
        .record_audit(&audit_event(
            "worker-1",
            "TENANT_PROVISIONED",
            Some("acme"),
            None,
        ))
        .await?;
    let first = registry
        .latest_invitation("acme")
        .await?
        .expect("queued by the audit event");
    assert_eq!(first.channel, CHANNEL_EMAIL);
    assert_eq!(first.event_type, INVITATION_EVENT);
    assert_eq!(first.recipient.as_deref(), Some("admin@acme.example"));
    assert_eq!(first.tenant_slug.as_deref(), Some("acme"));
    assert_eq!(first.status, "pending");

    // A sender without SMTP leaves it waiting; one with SMTP claims it.
    let none = registry
        .claim_due_notifications("sender-1", 30_000, 10, &[], false)
        .await?;
    assert!(none.is_empty(), "{none:?}");

    // A resend queues a new one and ends the older one, which would carry a link that no longer works.
    registry
        .record_audit(&audit_event("ops", "INVITATION_RESENT", Some("acme"), None))
        .await?;
    let second = registry
        .latest_invitation("acme")
        .await?
        .expect("the newer one");
    assert_ne!(second.id, first.id);
    let older = registry.list_notifications(Some(DELIVERY_DEAD), 10).await?;
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].id, first.id);
    assert_eq!(
        older[0].last_error.as_deref(),
        Some("superseded by a newer invitation")
    );

    let claimed = registry
        .claim_due_notifications("sender-1", 30_000, 10, &[], true)
        .await?;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, second.id);
    assert!(
        registry
            .record_attempt(&second.id, "sender-1", &AttemptOutcome::Sent)
            .await?
    );
    let sent = registry
        .latest_invitation("acme")
        .await?
        .expect("still there");
    assert_eq!(sent.status, "sent");
    assert!(sent.sent_at.is_some());
    // An e-mail that died can be retried by an operator, like a webhook delivery.
    assert!(registry.retry_notification(&first.id).await?);

    // An audit event of another kind, or for a tenant that is not registered, queues no e-mail.
    registry
        .record_audit(&audit_event(
            "ops",
            "TENANT_PROVISIONED",
            Some("ghost"),
            None,
        ))
        .await?;
    assert!(registry.latest_invitation("ghost").await?.is_none());
    Ok(())
}
