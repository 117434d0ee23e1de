//! A tenant's resources (its database, cache user, vhost, …): one row per kind, and the room an unfinished job
//! holds for the ones it is placing.

use crate::jobs::{check_fence, most_free_room, Fence, Placement, LIVE_STATUSES};
use crate::records::TenantResourceRecord;
use crate::store::{get, get_json, now_millis};
use crate::{Registry, Result};
use sqlx::any::AnyRow;
use tenantry_core::{EngineKind, ServerStatus};

const RESOURCE_COLUMNS: &str =
    "tenant_slug, kind, server_name, name, secret_name, status, labels, created_at, updated_at";

/// A resource's status: `active`, or `disabled` (its credentials refused; the tenant suspended or offboarded).
pub const RESOURCE_ACTIVE: &str = "active";
pub const RESOURCE_DISABLED: &str = "disabled";

impl TenantResourceRecord {
    fn from_row(row: &AnyRow) -> Result<TenantResourceRecord> {
        Ok(TenantResourceRecord {
            tenant_slug: get(row, "tenant_slug")?,
            kind: get(row, "kind")?,
            server_name: get(row, "server_name")?,
            name: get(row, "name")?,
            secret_name: get(row, "secret_name")?,
            status: get(row, "status")?,
            labels: get_json(row, "labels")?,
            created_at: get(row, "created_at")?,
            updated_at: get(row, "updated_at")?,
        })
    }
}

/// Inserts resource rows inside a caller's transaction (the tenant's registration); an existing row stays.
pub(crate) async fn insert_resources(
    connection: &mut sqlx::AnyConnection,
    resources: &[TenantResourceRecord],
) -> Result<()> {
    let now = now_millis();
    for resource in resources {
        sqlx::query(&format!(
            "INSERT INTO tenant_resources ({RESOURCE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
             ON CONFLICT (tenant_slug, kind) DO NOTHING"
        ))
        .bind(&resource.tenant_slug)
        .bind(&resource.kind)
        .bind(&resource.server_name)
        .bind(&resource.name)
        .bind(&resource.secret_name)
        .bind(&resource.status)
        .bind(resource.labels.to_string())
        .bind(now)
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

impl Registry {
    /// A tenant's resources, by kind (the database first, then the others in the order they were added).
    pub async fn tenant_resources(&self, slug: &str) -> Result<Vec<TenantResourceRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM tenant_resources WHERE tenant_slug = $1
             ORDER BY CASE WHEN kind = 'database' THEN 0 ELSE 1 END, created_at, kind"
        ))
        .bind(slug)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(TenantResourceRecord::from_row).collect()
    }

    /// Every tenant's resources of `kind` (all kinds when `None`), by tenant.
    pub async fn list_resources(&self, kind: Option<&str>) -> Result<Vec<TenantResourceRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM tenant_resources
             WHERE CAST($1 AS TEXT) IS NULL OR kind = $1 ORDER BY tenant_slug, kind"
        ))
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(TenantResourceRecord::from_row).collect()
    }

    /// Another tenant with a resource of `kind` on `server_name`, if there is one (the first by slug).
    pub async fn neighbour_on_server(
        &self,
        kind: &str,
        server_name: &str,
        slug: &str,
    ) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT tenant_slug FROM tenant_resources
             WHERE kind = $1 AND server_name = $2 AND tenant_slug <> $3 ORDER BY tenant_slug LIMIT 1",
        )
        .bind(kind)
        .bind(server_name)
        .bind(slug)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records a resource the job holding `fence` made for a registered tenant (a kind its new plan adds).
    pub async fn add_tenant_resource(
        &self,
        fence: &Fence,
        resource: &TenantResourceRecord,
    ) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        insert_resources(&mut transaction, std::slice::from_ref(resource)).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Forgets a tenant's resource of `kind` (removed by the job holding `fence`). Forgetting twice is fine.
    pub async fn remove_tenant_resource(
        &self,
        fence: &Fence,
        slug: &str,
        kind: &str,
    ) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        sqlx::query("DELETE FROM tenant_resources WHERE tenant_slug = $1 AND kind = $2")
            .bind(slug)
            .bind(kind)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Sets the status of a tenant's resource of `kind` ([`RESOURCE_ACTIVE`], [`RESOURCE_DISABLED`]).
    pub async fn set_resource_status(
        &self,
        fence: &Fence,
        slug: &str,
        kind: &str,
        status: &str,
    ) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        sqlx::query(
            "UPDATE tenant_resources SET status = $1, updated_at = $2
             WHERE tenant_slug = $3 AND kind = $4 AND status <> $1",
        )
        .bind(status)
        .bind(now_millis())
        .bind(slug)
        .bind(kind)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// The server a job placed its resource of `kind` on, if it did.
    pub async fn resource_placement(&self, job_id: &str, kind: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT server_name FROM job_resource_placements WHERE job_id = $1 AND kind = $2",
        )
        .bind(job_id)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Chooses a server of one of `engines` in `region` for the job's resource of `kind` and reserves room on
    /// it, atomically with every other placement: a server's load is its resources plus the unfinished jobs'
    /// placements on it, so concurrent jobs never overbook it. Placing again returns the same server.
    pub async fn place_resource(
        &self,
        fence: &Fence,
        kind: &str,
        engines: &[EngineKind],
        region: &str,
    ) -> Result<Placement> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        let already_placed: Option<String> = sqlx::query_scalar(
            "SELECT server_name FROM job_resource_placements WHERE job_id = $1 AND kind = $2",
        )
        .bind(&fence.job_id)
        .bind(kind)
        .fetch_optional(&mut *transaction)
        .await?;
        if let Some(server_name) = already_placed {
            transaction.commit().await?;
            return Ok(Placement::Placed(self.get_server(&server_name).await?));
        }
        let lock_clause = match self.dialect {
            // Serialise placements on the candidate servers; SQLite's BEGIN IMMEDIATE already did.
            crate::Dialect::Postgres => " FOR UPDATE",
            crate::Dialect::Sqlite => "",
        };
        let mut candidates: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT name, engine FROM servers WHERE status = $1 AND region = $2 ORDER BY name{lock_clause}"
        ))
        .bind(ServerStatus::Active.as_str())
        .bind(region)
        .fetch_all(&mut *transaction)
        .await?;
        candidates.retain(|(_, engine)| engines.iter().any(|wanted| wanted.as_str() == engine));
        let mut free_rooms = Vec::with_capacity(candidates.len());
        for (name, _) in &candidates {
            let (capacity_hint, load): (i64, i64) = sqlx::query_as(&format!(
                "SELECT s.capacity_hint,
                     (SELECT COUNT(*) FROM tenant_resources r WHERE r.server_name = s.name)
                     + (SELECT COUNT(*) FROM job_resource_placements p JOIN jobs j ON j.id = p.job_id
                          WHERE p.server_name = s.name AND j.status IN {LIVE_STATUSES} AND j.id <> $2
                          AND NOT EXISTS (SELECT 1 FROM tenant_resources r2
                                          WHERE r2.tenant_slug = j.tenant_slug AND r2.kind = p.kind))
                 FROM servers s WHERE s.name = $1"
            ))
            .bind(name)
            .bind(&fence.job_id)
            .fetch_one(&mut *transaction)
            .await?;
            free_rooms.push((name.clone(), capacity_hint - load));
        }
        let Some(chosen) = most_free_room(free_rooms) else {
            transaction.commit().await?;
            return Ok(Placement::NoCapacity {
                candidates: candidates.len(),
            });
        };
        sqlx::query(
            "INSERT INTO job_resource_placements (job_id, kind, server_name) VALUES ($1, $2, $3)",
        )
        .bind(&fence.job_id)
        .bind(kind)
        .bind(&chosen)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(Placement::Placed(self.get_server(&chosen).await?))
    }

    /// Forgets the job's placement of its resource of `kind` (the undo of placing it).
    pub async fn clear_resource_placement(&self, fence: &Fence, kind: &str) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        sqlx::query("DELETE FROM job_resource_placements WHERE job_id = $1 AND kind = $2")
            .bind(&fence.job_id)
            .bind(kind)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }
}
