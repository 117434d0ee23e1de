//! Backups: one row per backup (its tenant, status, the dump of each resource with sizes and checksums, when it
//! expires, and the job that took it). The files are in the backup store and the data key in the secret store;
//! this row is what ties the three together.

use crate::audit::insert_audit;
use crate::jobs::{check_fence, Fence};
use crate::records::NewAuditEvent;
use crate::store::{get, get_json};
use crate::{Registry, Result};
use sqlx::any::AnyRow;

/// A backup whose files are being written.
pub const BACKUP_RUNNING: &str = "running";
/// A backup whose every file is written and checked.
pub const BACKUP_COMPLETE: &str = "complete";

const BACKUP_COLUMNS: &str =
    "id, tenant_slug, status, source, resources, job_id, created_at, completed_at, expires_at";

/// One backup as the registry records it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupRecord {
    pub id: String,
    pub tenant_slug: String,
    /// `running` or `complete`.
    pub status: String,
    /// The tenant it came from, as a restore needs it once the tenant is purged: `{display_name, admin_email,
    /// plan, region, server, engine}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub source: serde_json::Value,
    /// One object per resource dumped: `{kind, engine, file, plain_bytes, stored_bytes, plain_sha256,
    /// stored_sha256}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub resources: serde_json::Value,
    pub job_id: String,
    pub created_at: i64,
    pub completed_at: Option<i64>,
    /// When `backups prune` deletes it (Unix milliseconds); `None` keeps it.
    pub expires_at: Option<i64>,
}

impl BackupRecord {
    fn from_row(row: &AnyRow) -> Result<BackupRecord> {
        Ok(BackupRecord {
            id: get(row, "id")?,
            tenant_slug: get(row, "tenant_slug")?,
            status: get(row, "status")?,
            source: get_json(row, "source")?,
            resources: get_json(row, "resources")?,
            job_id: get(row, "job_id")?,
            created_at: get(row, "created_at")?,
            completed_at: get(row, "completed_at")?,
            expires_at: get(row, "expires_at")?,
        })
    }
}

impl Registry {
    /// Writes a job's backup row (made, or brought up to date: its status and resources), fenced by the job.
    pub async fn put_backup_for_job(&self, fence: &Fence, backup: &BackupRecord) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        sqlx::query(&format!(
            "INSERT INTO backups ({BACKUP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (id) DO UPDATE SET status = $3, resources = $5, completed_at = $8, expires_at = $9"
        ))
        .bind(&backup.id)
        .bind(&backup.tenant_slug)
        .bind(&backup.status)
        .bind(backup.source.to_string())
        .bind(backup.resources.to_string())
        .bind(&backup.job_id)
        .bind(backup.created_at)
        .bind(backup.completed_at)
        .bind(backup.expires_at)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Deletes a job's backup row (its undo), fenced by the job; deleting what is absent succeeds.
    pub async fn delete_backup_for_job(&self, fence: &Fence, id: &str) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        sqlx::query("DELETE FROM backups WHERE id = $1")
            .bind(id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Deletes a backup's row with the audit event that records why (`BACKUP_PRUNED`), in one transaction.
    /// `false` when there was no such row.
    pub async fn delete_backup(&self, id: &str, audit: &NewAuditEvent) -> Result<bool> {
        let mut transaction = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM backups WHERE id = $1")
            .bind(id)
            .execute(&mut *transaction)
            .await?;
        if deleted.rows_affected() == 1 {
            insert_audit(&mut transaction, audit).await?;
        }
        transaction.commit().await?;
        Ok(deleted.rows_affected() == 1)
    }

    pub async fn get_backup(&self, id: &str) -> Result<Option<BackupRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(BackupRecord::from_row).transpose()
    }

    /// Backups, newest first, of one tenant if given.
    pub async fn list_backups(&self, tenant_slug: Option<&str>) -> Result<Vec<BackupRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {BACKUP_COLUMNS} FROM backups
             WHERE CAST($1 AS TEXT) IS NULL OR tenant_slug = $1 ORDER BY created_at DESC, id"
        ))
        .bind(tenant_slug)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(BackupRecord::from_row).collect()
    }

    /// Complete backups whose retention has run out by `now` (Unix milliseconds), oldest first.
    pub async fn expired_backups(&self, now: i64) -> Result<Vec<BackupRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {BACKUP_COLUMNS} FROM backups
             WHERE status = 'complete' AND expires_at IS NOT NULL AND expires_at <= $1 ORDER BY expires_at, id"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(BackupRecord::from_row).collect()
    }
}
