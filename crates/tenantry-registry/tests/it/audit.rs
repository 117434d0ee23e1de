//! Conformance cases for the audit log: newest first, narrowed by tenant, event type, actor, time and limit; and
//! its chain: one valid chain under concurrent writers, and every change made behind tenantry's back named.

use crate::harness::{execute_behind_tenantry, new_job, wait_until_clock_passes};
use anyhow::Context;
use tenantry_core::JobKind;
use tenantry_registry::{
    AuditChainFault, AuditEvent, AuditFilter, NewAuditEvent, Registry, RegistryLocation,
};

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

/// Writers on many connections at once (single events, and jobs whose creation writes one inside a larger
/// transaction) still make one chain with no gap, no fork and every link valid.
pub async fn case_audit_chain_concurrent_writers_make_one_valid_chain(
    registry: Registry,
) -> anyhow::Result<()> {
    const N_WRITERS: usize = 8;
    const EVENTS_PER_WRITER: usize = 12;
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..N_WRITERS {
        let registry = registry.clone();
        writers.spawn(async move {
            for index in 0..EVENTS_PER_WRITER {
                if index % 3 == 0 {
                    let slug = format!("chain-{writer}-{index}");
                    registry
                        .create_job(&new_job(JobKind::Provision, &slug))
                        .await?;
                } else {
                    let actor = format!("writer-{writer}");
                    registry
                        .record_audit(&event(&actor, "SECRET_READ", Some("acme")))
                        .await?;
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = writers.join_next().await {
        joined??;
    }
    let report = registry.verify_audit_chain().await?;
    let n_events = i64::try_from(N_WRITERS * EVENTS_PER_WRITER)?;
    assert_eq!(report.findings, []);
    assert!(report.intact);
    assert_eq!(
        (report.n_events, report.head_chain_seq),
        (n_events, n_events)
    );
    assert_eq!(report.head_hash.len(), 64);
    assert_eq!(
        registry
            .list_audit(&AuditFilter {
                limit: 1000,
                ..Default::default()
            })
            .await?
            .len(),
        N_WRITERS * EVENTS_PER_WRITER
    );
    Ok(())
}

/// The ids of five recorded events, oldest first.
async fn five_events(registry: &Registry) -> anyhow::Result<Vec<i64>> {
    for index in 0..5 {
        registry
            .record_audit(&event(
                &format!("actor-{index}"),
                "SECRET_READ",
                Some("acme"),
            ))
            .await?;
    }
    let mut recorded = ids(&registry.list_audit(&AuditFilter::default()).await?);
    recorded.reverse();
    Ok(recorded)
}

/// An edited row and a deleted row, changed by hand in the registry, are both named; so is a row inserted by hand.
pub async fn case_audit_chain_names_edited_deleted_and_forged_events(
    registry: Registry,
    location: RegistryLocation,
) -> anyhow::Result<()> {
    let recorded = five_events(&registry).await?;
    let clean = registry.verify_audit_chain().await?;
    assert!(clean.intact, "{clean:?}");
    assert_eq!((clean.n_events, clean.head_chain_seq), (5, 5));

    let [_, second, third, fourth, _] = recorded.as_slice() else {
        anyhow::bail!("expected five events, got {recorded:?}");
    };
    let edited = execute_behind_tenantry(
        &location,
        &format!("UPDATE audit_events SET actor = 'mallory' WHERE id = {second}"),
    )
    .await?;
    let deleted = execute_behind_tenantry(
        &location,
        &format!("DELETE FROM audit_events WHERE id = {fourth}"),
    )
    .await?;
    assert_eq!((edited, deleted), (1, 1));
    let report = registry.verify_audit_chain().await?;
    assert!(!report.intact);
    let faults: Vec<_> = report
        .findings
        .iter()
        .map(|finding| (finding.fault, finding.event_id, finding.chain_seq))
        .collect();
    assert_eq!(
        faults,
        [
            (AuditChainFault::Altered, Some(*second), Some(2)),
            (AuditChainFault::Missing, None, Some(4)),
        ],
        "{report:?}"
    );
    assert!(
        report.findings[1]
            .detail
            .contains(&format!("after event id {third}")),
        "{report:?}"
    );

    // A row inserted by hand has no place in the chain.
    execute_behind_tenantry(
        &location,
        "INSERT INTO audit_events (at, actor, event_type, details) VALUES (1, 'mallory', 'FORGED', '{}')",
    )
    .await?;
    let report = registry.verify_audit_chain().await?;
    let last = report
        .findings
        .last()
        .context("a finding for the forged row")?;
    assert_eq!(last.fault, AuditChainFault::Unchained, "{report:?}");
    Ok(())
}

/// Deleting the newest events is seen even though no later event links to them: the chain head remembers.
pub async fn case_audit_chain_names_deleted_newest_events(
    registry: Registry,
    location: RegistryLocation,
) -> anyhow::Result<()> {
    let recorded = five_events(&registry).await?;
    execute_behind_tenantry(
        &location,
        &format!("DELETE FROM audit_events WHERE id >= {}", recorded[3]),
    )
    .await?;
    let report = registry.verify_audit_chain().await?;
    let faults: Vec<_> = report
        .findings
        .iter()
        .map(|finding| (finding.fault, finding.chain_seq))
        .collect();
    assert_eq!(faults, [(AuditChainFault::Missing, Some(4))], "{report:?}");
    assert!(report.findings[0].detail.contains("events #4 to #5"));
    Ok(())
}

/// A registry from before the chain: its events are chained, in id order, the first time it is opened; a row
/// added by hand afterwards is not.
pub async fn case_audit_chain_chains_events_written_before_it_existed(
    registry: Registry,
    location: RegistryLocation,
) -> anyhow::Result<()> {
    five_events(&registry).await?;
    // The state migration 6 leaves in a registry whose events were written by an older version.
    execute_behind_tenantry(
        &location,
        "UPDATE audit_events SET chain_seq = NULL, prev_hash = NULL, hash = NULL",
    )
    .await?;
    execute_behind_tenantry(
        &location,
        &format!(
            "UPDATE audit_chain_head SET chain_seq = 0, hash = '{GENESIS}',
                 legacy_up_to_id = (SELECT MAX(id) FROM audit_events)"
        ),
    )
    .await?;
    let before = registry.verify_audit_chain().await?;
    assert_eq!(before.n_events, 0);
    assert_eq!(before.findings.len(), 5, "{before:?}");

    let reopened = Registry::open(&location, 2).await?;
    reopened
        .record_audit(&event("alice", "AFTER_UPGRADE", None))
        .await?;
    let report = reopened.verify_audit_chain().await?;
    assert_eq!(report.findings, []);
    assert_eq!((report.n_events, report.head_chain_seq), (6, 6));

    execute_behind_tenantry(
        &location,
        "INSERT INTO audit_events (at, actor, event_type, details) VALUES (1, 'mallory', 'FORGED', '{}')",
    )
    .await?;
    let again = Registry::open(&location, 2).await?;
    let report = again.verify_audit_chain().await?;
    let faults: Vec<_> = report
        .findings
        .iter()
        .map(|finding| finding.fault)
        .collect();
    assert_eq!(faults, [AuditChainFault::Unchained], "{report:?}");
    reopened.close().await;
    again.close().await;
    Ok(())
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
