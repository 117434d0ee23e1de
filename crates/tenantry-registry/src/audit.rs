//! The append-only audit log: written inside the transaction of the change it records, read with filters.

use crate::records::{AuditEvent, NewAuditEvent};
use crate::store::now_millis;
use crate::{Registry, Result};
use sqlx::AnyConnection;

/// Which audit events to list. Every field narrows the result; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub tenant_slug: Option<String>,
    pub event_type: Option<String>,
    pub actor: Option<String>,
    pub since_millis: Option<i64>,
    pub until_millis: Option<i64>,
    pub limit: i64,
}

pub(crate) async fn insert_audit(
    connection: &mut AnyConnection,
    event: &NewAuditEvent,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_events (at, actor, event_type, tenant_slug, job_id, details) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(now_millis())
    .bind(&event.actor)
    .bind(event.event_type)
    .bind(&event.tenant_slug)
    .bind(&event.job_id)
    .bind(event.details.to_string())
    .execute(connection)
    .await?;
    Ok(())
}

impl Registry {
    /// Writes an audit event that records no other change (for example a secret being read).
    pub async fn record_audit(&self, event: &NewAuditEvent) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        insert_audit(&mut transaction, event).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Audit events, newest first.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, event_type, tenant_slug, job_id, details FROM audit_events
             WHERE (CAST($1 AS TEXT) IS NULL OR tenant_slug = $1)
               AND (CAST($2 AS TEXT) IS NULL OR event_type = $2)
               AND (CAST($3 AS TEXT) IS NULL OR actor = $3)
               AND (CAST($4 AS BIGINT) IS NULL OR at >= $4)
               AND (CAST($5 AS BIGINT) IS NULL OR at <= $5)
             ORDER BY id DESC LIMIT $6",
        )
        .bind(&filter.tenant_slug)
        .bind(&filter.event_type)
        .bind(&filter.actor)
        .bind(filter.since_millis)
        .bind(filter.until_millis)
        .bind(if filter.limit > 0 { filter.limit } else { 100 })
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(AuditEvent::from_row).collect()
    }
}
