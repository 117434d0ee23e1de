//! Fleet members: adding, listing with their tenant counts, and changing status.

use crate::audit::insert_audit;
use crate::records::{NewAuditEvent, NewServer, ServerRecord};
use crate::store::now_millis;
use crate::{Error, Registry, Result};
use tenantry_core::ServerStatus;

const SELECT_SERVERS: &str =
    "SELECT s.name, s.engine, s.region, s.admin_secret_ref, s.capacity_hint, s.status, s.public_url,
        s.created_at, s.updated_at,
        (SELECT COUNT(*) FROM tenant_resources r WHERE r.server_name = s.name) AS tenant_count
    FROM servers s";

impl Registry {
    /// Adds a server; `Conflict` when the name is taken.
    pub async fn add_server(&self, server: &NewServer, actor: &str) -> Result<ServerRecord> {
        let mut transaction = self.begin_write().await?;
        let now = now_millis();
        sqlx::query(
            "INSERT INTO servers (name, engine, region, admin_secret_ref, capacity_hint, status, public_url,
                                  created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $8, $7, $7)",
        )
        .bind(&server.name)
        .bind(server.engine.as_str())
        .bind(&server.region)
        .bind(&server.admin_secret_ref)
        .bind(server.capacity_hint)
        .bind(ServerStatus::Active.as_str())
        .bind(now)
        .bind(&server.public_url)
        .execute(&mut *transaction)
        .await?;
        insert_audit(
            &mut transaction,
            &NewAuditEvent {
                actor: actor.to_owned(),
                event_type: "SERVER_ADDED",
                tenant_slug: None,
                job_id: None,
                details: serde_json::json!({
                    "server": server.name,
                    "engine": server.engine,
                    "region": server.region,
                    "capacity_hint": server.capacity_hint,
                }),
            },
        )
        .await?;
        transaction.commit().await?;
        self.get_server(&server.name).await
    }

    pub async fn get_server(&self, name: &str) -> Result<ServerRecord> {
        let row = sqlx::query(&format!("{SELECT_SERVERS} WHERE s.name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("server {name:?}"),
            })?;
        ServerRecord::from_row(&row)
    }

    pub async fn list_servers(&self) -> Result<Vec<ServerRecord>> {
        let rows = sqlx::query(&format!("{SELECT_SERVERS} ORDER BY s.name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(ServerRecord::from_row).collect()
    }

    /// Changes a server's status (for example to `draining`), audited as `event_type`.
    pub async fn set_server_status(
        &self,
        name: &str,
        status: ServerStatus,
        actor: &str,
        event_type: &'static str,
    ) -> Result<ServerRecord> {
        let mut transaction = self.begin_write().await?;
        let updated =
            sqlx::query("UPDATE servers SET status = $1, updated_at = $2 WHERE name = $3")
                .bind(status.as_str())
                .bind(now_millis())
                .bind(name)
                .execute(&mut *transaction)
                .await?;
        if updated.rows_affected() == 0 {
            return Err(Error::NotFound {
                what: format!("server {name:?}"),
            });
        }
        insert_audit(
            &mut transaction,
            &NewAuditEvent {
                actor: actor.to_owned(),
                event_type,
                tenant_slug: None,
                job_id: None,
                details: serde_json::json!({ "server": name, "status": status }),
            },
        )
        .await?;
        transaction.commit().await?;
        self.get_server(name).await
    }

    /// Takes the next purge slot on a server: at most one purge per `min_interval_millis`, across every process.
    /// `None` means go now; `Some(millis)` means the slot is taken, try again in that long.
    pub async fn reserve_purge_slot(
        &self,
        server: &str,
        min_interval_millis: i64,
    ) -> Result<Option<i64>> {
        let now = now_millis();
        let reserved = sqlx::query(
            "UPDATE servers SET last_purge_at = $1 WHERE name = $2 AND (last_purge_at IS NULL OR last_purge_at <= $3)",
        )
        .bind(now)
        .bind(server)
        .bind(now - min_interval_millis)
        .execute(&self.pool)
        .await?;
        if reserved.rows_affected() == 1 {
            return Ok(None);
        }
        let last_purge_at: Option<i64> =
            sqlx::query_scalar("SELECT last_purge_at FROM servers WHERE name = $1")
                .bind(server)
                .fetch_optional(&self.pool)
                .await?
                .flatten();
        match last_purge_at {
            Some(last) => Ok(Some((last + min_interval_millis - now).max(1))),
            None => Err(Error::NotFound {
                what: format!("server {server:?}"),
            }),
        }
    }
}
