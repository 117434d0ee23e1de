//! Conformance cases for the audit log: newest first, narrowed by tenant, event type, actor, time and limit.

use crate::harness::wait_until_clock_passes;
use anyhow::Context;
use tenantry_registry::{AuditEvent, AuditFilter, NewAuditEvent, Registry};

fn event(actor: &str, event_type: &'static str, tenant_slug: Option<&str>) -> NewAuditEvent {
    NewAuditEvent {
        actor: actor.to_owned(),
        event_type,
        tenant_slug: tenant_slug.map(str::to_owned),
        job_id: None,
        details: serde_json::json!({ "actor": actor, "nested": { "list": [1, 2, 3] } }),
    }
}

/// Records the events in order, each at a strictly later millisecond than the one before, and returns them.
async fn record_in_order(
    registry: &Registry,
    events: &[NewAuditEvent],
) -> anyhow::Result<Vec<AuditEvent>> {
    for new_event in events {
        registry.record_audit(new_event).await?;
        let latest = registry
            .list_audit(&AuditFilter {
                limit: 1,
                ..Default::default()
            })
            .await?;
        wait_until_clock_passes(latest.first().context("the event just recorded")?.at).await?;
    }
    let mut recorded = registry.list_audit(&AuditFilter::default()).await?;
    recorded.reverse();
    Ok(recorded)
}

fn ids(events: &[AuditEvent]) -> Vec<i64> {
    events.iter().map(|event| event.id).collect()
}

pub async fn case_audit_lists_newest_first_with_filters(registry: Registry) -> anyhow::Result<()> {
    let recorded = record_in_order(
        &registry,
        &[
            event("alice", "TENANT_VIEWED", Some("acme")),
            event("bob", "SECRET_READ", Some("acme")),
            event("alice", "SECRET_READ", Some("globex")),
            event("carol", "SETTINGS_CHANGED", None),
        ],
    )
    .await?;
    let [viewed, bob_read, alice_read, settings] = recorded.as_slice() else {
        anyhow::bail!("expected four events, got {recorded:?}");
    };
    assert_eq!(
        (
            viewed.actor.as_str(),
            viewed.event_type.as_str(),
            viewed.tenant_slug.as_deref()
        ),
        ("alice", "TENANT_VIEWED", Some("acme"))
    );
    assert_eq!(
        viewed.details,
        serde_json::json!({ "actor": "alice", "nested": { "list": [1, 2, 3] } })
    );
    assert_eq!(settings.tenant_slug, None);

    let list = |filter: AuditFilter| {
        let registry = registry.clone();
        async move { anyhow::Ok(ids(&registry.list_audit(&filter).await?)) }
    };
    assert_eq!(
        list(AuditFilter::default()).await?,
        [settings.id, alice_read.id, bob_read.id, viewed.id]
    );
    let for_acme = AuditFilter {
        tenant_slug: Some("acme".to_owned()),
        ..Default::default()
    };
    assert_eq!(list(for_acme.clone()).await?, [bob_read.id, viewed.id]);
    let secret_reads = AuditFilter {
        event_type: Some("SECRET_READ".to_owned()),
        ..Default::default()
    };
    assert_eq!(list(secret_reads).await?, [alice_read.id, bob_read.id]);
    let by_alice = AuditFilter {
        actor: Some("alice".to_owned()),
        ..Default::default()
    };
    assert_eq!(list(by_alice.clone()).await?, [alice_read.id, viewed.id]);
    let acme_by_alice = AuditFilter {
        actor: Some("alice".to_owned()),
        ..for_acme
    };
    assert_eq!(list(acme_by_alice).await?, [viewed.id]);
    let by_nobody = AuditFilter {
        actor: Some("mallory".to_owned()),
        ..Default::default()
    };
    assert!(list(by_nobody).await?.is_empty());
    let newest_two = AuditFilter {
        limit: 2,
        ..Default::default()
    };
    assert_eq!(list(newest_two).await?, [settings.id, alice_read.id]);
    Ok(())
}

pub async fn case_audit_filters_by_time(registry: Registry) -> anyhow::Result<()> {
    let recorded = record_in_order(
        &registry,
        &[
            event("alice", "FIRST", None),
            event("alice", "SECOND", None),
            event("alice", "THIRD", None),
            event("alice", "FOURTH", None),
        ],
    )
    .await?;
    let [first, second, third, fourth] = recorded.as_slice() else {
        anyhow::bail!("expected four events, got {recorded:?}");
    };
    assert!(first.at < second.at && second.at < third.at && third.at < fourth.at);

    let list = |since_millis: Option<i64>, until_millis: Option<i64>| {
        let registry = registry.clone();
        async move {
            let filter = AuditFilter {
                since_millis,
                until_millis,
                ..Default::default()
            };
            anyhow::Ok(ids(&registry.list_audit(&filter).await?))
        }
    };
    // Both bounds are inclusive.
    assert_eq!(list(Some(third.at), None).await?, [fourth.id, third.id]);
    assert_eq!(list(None, Some(second.at)).await?, [second.id, first.id]);
    assert_eq!(
        list(Some(second.at), Some(third.at)).await?,
        [third.id, second.id]
    );
    assert_eq!(
        list(Some(second.at + 1), Some(third.at - 1)).await?,
        Vec::<i64>::new()
    );
    assert!(list(Some(fourth.at + 1), None).await?.is_empty());
    assert_eq!(list(None, None).await?.len(), 4);
    Ok(())
}
