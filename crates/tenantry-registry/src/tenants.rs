//! Tenant rows: registration by a provisioning job, status changes, listing, and removal on purge.

use crate::audit::insert_audit;
use crate::jobs::{check_fence, Fence};
use crate::records::{NewAuditEvent, TenantRecord, TenantResourceRecord};
use crate::resources::{insert_resources, RESOURCE_ACTIVE};
use crate::store::now_millis;
use crate::{Error, Registry, Result};
use tenantry_core::TenantStatus;

const TENANT_COLUMNS: &str =
    "slug, display_name, admin_email, plan, region, server_name, resource_name, secret_ref,
    status, labels, settings, profile, created_at, updated_at";

impl Registry {
    /// Registers a tenant for the job that holds `fence`, with its resources: its database (from the tenant
    /// row) and `others`. Registering the same slug again is a no-op.
    pub async fn register_tenant(
        &self,
        fence: &Fence,
        tenant: &TenantRecord,
        others: &[TenantResourceRecord],
        audit: &NewAuditEvent,
    ) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        let now = now_millis();
        let inserted = sqlx::query(&format!(
            "INSERT INTO tenants ({TENANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
             ON CONFLICT (slug) DO NOTHING"
        ))
        .bind(&tenant.slug)
        .bind(&tenant.display_name)
        .bind(&tenant.admin_email)
        .bind(&tenant.plan)
        .bind(&tenant.region)
        .bind(&tenant.server_name)
        .bind(&tenant.resource_name)
        .bind(&tenant.secret_ref)
        .bind(tenant.status.as_str())
        .bind(tenant.labels.to_string())
        .bind(tenant.settings.to_string())
        .bind(
            serde_json::to_string(&tenant.profile)
                .map_err(|error| Error::Corrupt(format!("tenant profile: {error}")))?,
        )
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 1 {
            let database = TenantResourceRecord {
                tenant_slug: tenant.slug.clone(),
                kind: tenantry_core::DATABASE_RESOURCE.to_owned(),
                server_name: tenant.server_name.clone(),
                name: tenant.resource_name.clone(),
                secret_name: Some(tenant.secret_ref.clone()),
                status: RESOURCE_ACTIVE.to_owned(),
                labels: tenant.labels.clone(),
                created_at: now,
                updated_at: now,
            };
            insert_resources(&mut transaction, &[database]).await?;
            insert_resources(&mut transaction, others).await?;
            insert_audit(&mut transaction, audit).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Removes a tenant row (undo of registration, or a purge), with its audit event. Removing twice is fine.
    pub async fn remove_tenant(
        &self,
        fence: &Fence,
        slug: &str,
        audit: &NewAuditEvent,
    ) -> Result<bool> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        let deleted = sqlx::query("DELETE FROM tenants WHERE slug = $1")
            .bind(slug)
            .execute(&mut *transaction)
            .await?;
        sqlx::query("DELETE FROM tenant_resources WHERE tenant_slug = $1")
            .bind(slug)
            .execute(&mut *transaction)
            .await?;
        if deleted.rows_affected() == 1 {
            insert_audit(&mut transaction, audit).await?;
        }
        transaction.commit().await?;
        Ok(deleted.rows_affected() == 1)
    }

    /// Changes a tenant's status for the job that holds `fence`, with its audit event.
    pub async fn set_tenant_status(
        &self,
        fence: &Fence,
        slug: &str,
        status: TenantStatus,
        audit: &NewAuditEvent,
    ) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        let updated = sqlx::query(
            "UPDATE tenants SET status = $1, updated_at = $2 WHERE slug = $3 AND status <> $1",
        )
        .bind(status.as_str())
        .bind(now_millis())
        .bind(slug)
        .execute(&mut *transaction)
        .await?;
        if updated.rows_affected() == 1 {
            insert_audit(&mut transaction, audit).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Moves a tenant to another plan for the job holding `fence`: plan, labels, effective settings and profile
    /// (its resource tier may change with the plan), with the audit event, in one transaction. Setting what is already there changes nothing and audits nothing.
    pub async fn set_tenant_plan(
        &self,
        fence: &Fence,
        slug: &str,
        plan: &str,
        labels: &serde_json::Value,
        settings: &serde_json::Value,
        profile: &tenantry_core::TenantProfile,
        audit: &NewAuditEvent,
    ) -> Result<()> {
        let profile = serde_json::to_string(profile)
            .map_err(|error| Error::Corrupt(format!("tenant profile: {error}")))?;
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        let updated = sqlx::query(
            "UPDATE tenants SET plan = $1, labels = $2, settings = $3, updated_at = $4, profile = $5
             WHERE slug = $6 AND (plan <> $1 OR labels <> $2 OR settings <> $3 OR profile <> $5)",
        )
        .bind(plan)
        .bind(labels.to_string())
        .bind(settings.to_string())
        .bind(now_millis())
        .bind(profile)
        .bind(slug)
        .execute(&mut *transaction)
        .await?;
        if updated.rows_affected() == 1 {
            sqlx::query("UPDATE tenant_resources SET labels = $1 WHERE tenant_slug = $2")
                .bind(labels.to_string())
                .bind(slug)
                .execute(&mut *transaction)
                .await?;
            insert_audit(&mut transaction, audit).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Places a tenant's database on `to` instead of `from` for the job holding `fence` (a move's cut-over, or
    /// its undo with the two swapped): the tenant row and its database's resource row, with `audit` when given,
    /// in one transaction. A tenant already on `to` changes nothing and audits nothing.
    pub async fn move_tenant_database(
        &self,
        fence: &Fence,
        slug: &str,
        from: &str,
        to: &str,
        audit: Option<&NewAuditEvent>,
    ) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        let now = now_millis();
        let updated = sqlx::query(
            "UPDATE tenants SET server_name = $1, updated_at = $2 WHERE slug = $3 AND server_name = $4",
        )
        .bind(to)
        .bind(now)
        .bind(slug)
        .bind(from)
        .execute(&mut *transaction)
        .await?;
        if updated.rows_affected() == 1 {
            sqlx::query(
                "UPDATE tenant_resources SET server_name = $1, updated_at = $2
                 WHERE tenant_slug = $3 AND kind = $4 AND server_name = $5",
            )
            .bind(to)
            .bind(now)
            .bind(slug)
            .bind(tenantry_core::DATABASE_RESOURCE)
            .bind(from)
            .execute(&mut *transaction)
            .await?;
            if let Some(audit) = audit {
                insert_audit(&mut transaction, audit).await?;
            }
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Up to `limit` tenants placed on `server_name`, by slug.
    pub async fn tenants_on_server(
        &self,
        server_name: &str,
        limit: i64,
    ) -> Result<Vec<TenantRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE server_name = $1 ORDER BY slug LIMIT $2"
        ))
        .bind(server_name)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(TenantRecord::from_row).collect()
    }

    pub async fn get_tenant(&self, slug: &str) -> Result<Option<TenantRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE slug = $1"
        ))
        .bind(slug)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(TenantRecord::from_row).transpose()
    }

    pub async fn require_tenant(&self, slug: &str) -> Result<TenantRecord> {
        self.get_tenant(slug).await?.ok_or_else(|| Error::NotFound {
            what: format!("tenant {slug:?}"),
        })
    }

    /// Tenants sorted by slug; `search` matches slug or display name, `status` narrows.
    pub async fn list_tenants(
        &self,
        search: Option<&str>,
        status: Option<TenantStatus>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<TenantRecord>> {
        // `%` and `_` in the search text are literal characters, not wildcards.
        let pattern = search.map(|text| {
            let escaped = text
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        let rows = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants
             WHERE (CAST($1 AS TEXT) IS NULL OR slug LIKE $1 ESCAPE '\\' OR LOWER(display_name) LIKE $1 ESCAPE '\\')
               AND (CAST($2 AS TEXT) IS NULL OR status = $2)
             ORDER BY slug LIMIT $3 OFFSET $4"
        ))
        .bind(pattern)
        .bind(status.map(TenantStatus::as_str))
        .bind(if limit > 0 { limit } else { 100 })
        .bind(offset.max(0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(TenantRecord::from_row).collect()
    }
}
