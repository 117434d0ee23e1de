//! Conformance cases for backup rows: written and rewritten by their job (fenced), listed newest first per tenant,
//! expired ones found by time, and deleted with the audit event that records why.

use crate::harness::claimed_provision_job;
use tenantry_registry::{
    BackupRecord, Fence, NewAuditEvent, Registry, BACKUP_COMPLETE, BACKUP_RUNNING,
};

fn backup(id: &str, tenant_slug: &str, job_id: &str, created_at: i64) -> BackupRecord {
    BackupRecord {
        id: id.to_owned(),
        tenant_slug: tenant_slug.to_owned(),
        status: BACKUP_RUNNING.to_owned(),
        source: serde_json::json!({ "plan": "starter", "region": "eu" }),
        resources: serde_json::json!([]),
        job_id: job_id.to_owned(),
        created_at,
        completed_at: None,
        expires_at: Some(created_at + 1_000),
    }
}

pub async fn case_backups_written_by_their_job_listed_expired_and_deleted_with_audit(
    registry: Registry,
) -> anyhow::Result<()> {
    let (job, fence) = claimed_provision_job(&registry, "acme").await?;
    let mut first = backup(&job.id, "acme", &job.id, 1_000);
    registry.put_backup_for_job(&fence, &first).await?;
    // Rewritten by its job: the status, resources and times change, the rest stays.
    first.status = BACKUP_COMPLETE.to_owned();
    first.resources = serde_json::json!([{ "kind": "database", "plain_sha256": "ab" }]);
    first.completed_at = Some(1_500);
    registry.put_backup_for_job(&fence, &first).await?;
    assert_eq!(registry.get_backup(&job.id).await?, Some(first.clone()));
    let second = backup("b-2", "acme", &job.id, 2_000);
    registry.put_backup_for_job(&fence, &second).await?;
    registry
        .put_backup_for_job(&fence, &backup("b-3", "globex", &job.id, 3_000))
        .await?;

    // A fence that no longer holds the job writes nothing.
    let stale = Fence {
        job_id: job.id.clone(),
        token: fence.token + 1,
    };
    assert!(registry
        .put_backup_for_job(&stale, &backup("b-4", "acme", &job.id, 4_000))
        .await
        .is_err());
    assert!(registry.get_backup("b-4").await?.is_none());

    let ids = |backups: Vec<BackupRecord>| {
        backups
            .into_iter()
            .map(|backup| backup.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(registry.list_backups(Some("acme")).await?),
        ["b-2", job.id.as_str()]
    );
    assert_eq!(registry.list_backups(None).await?.len(), 3);
    // Only complete backups expire.
    assert_eq!(
        ids(registry.expired_backups(10_000).await?),
        [job.id.as_str()]
    );
    assert!(registry.expired_backups(1_999).await?.is_empty());

    let audit = NewAuditEvent {
        actor: "alice".into(),
        event_type: "BACKUP_PRUNED",
        tenant_slug: Some("acme".into()),
        job_id: Some(job.id.clone()),
        details: serde_json::json!({ "backup_id": job.id }),
    };
    assert!(registry.delete_backup(&job.id, &audit).await?);
    assert!(!registry.delete_backup(&job.id, &audit).await?);
    registry.delete_backup_for_job(&fence, "b-2").await?;
    registry.delete_backup_for_job(&fence, "b-2").await?;
    assert_eq!(ids(registry.list_backups(None).await?), ["b-3"]);
    let pruned = registry
        .list_audit(&tenantry_registry::AuditFilter {
            tenant_slug: Some("acme".into()),
            event_type: Some("BACKUP_PRUNED".into()),
            actor: None,
            since_millis: None,
            until_millis: None,
            limit: 10,
        })
        .await?;
    assert_eq!(pruned.len(), 1);
    Ok(())
}
