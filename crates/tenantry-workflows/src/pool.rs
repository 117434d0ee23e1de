//! Template databases and the warm pool across the fleet: status, filling, the bounded background refill, and
//! pruning what an older tenant schema left behind. The engine work is in the providers; this picks the servers
//! and the schema version.

use crate::{registry_error, Platform};
use std::time::Duration;
use tenantry_core::{EngineKind, Error as CodedError, ErrorCode, ServerStatus};
use tenantry_providers::engines::{
    FillReport, LockWait, PruneReport, PruneScope, SchemaVersion, TenantServer, WarmPoolInventory,
};
use tenantry_registry::ServerRecord;
use tokio::sync::watch;

/// One server's templates and warm pool.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WarmPoolStatus {
    pub server: String,
    /// The pool size the background refill keeps (`warm_pool_size`).
    pub target_size: u32,
    #[serde(flatten)]
    pub inventory: WarmPoolInventory,
}

/// What one refill round did on one server.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RefillOutcome {
    pub server: String,
    /// `Err`: why the server could not be refilled this round (it is tried again next round).
    pub result: Result<FillReport, String>,
}

fn server_error(server: &ServerRecord, error: tenantry_providers::Error) -> CodedError {
    let code = if error.is_transient() {
        ErrorCode::ProvisioningUnavailable
    } else if matches!(error, tenantry_providers::Error::Migration(_)) {
        ErrorCode::MigrationsFailed
    } else {
        ErrorCode::AdminConnUnresolved
    };
    CodedError::new(code, format!("server {}: {error}", server.name))
}

/// The server named, which must run an engine with a warm pool.
async fn pool_server(
    platform: &Platform,
    server_name: &str,
) -> Result<(ServerRecord, TenantServer), CodedError> {
    let record = platform
        .registry
        .get_server(server_name)
        .await
        .map_err(|error| match error {
            tenantry_registry::Error::NotFound { .. } => CodedError::new(
                ErrorCode::DbServerNotFound,
                format!("server {server_name:?} does not exist"),
            ),
            other => registry_error(other),
        })?;
    let server = platform.tenant_server(&record).await?;
    if !server.has_warm_pool() {
        return Err(CodedError::invalid_input(format!(
            "server {} runs {}, which keeps no templates or warm pool",
            record.name, record.engine
        )));
    }
    Ok((record, server))
}

async fn postgres_schema(platform: &Platform) -> Result<SchemaVersion, CodedError> {
    platform.schema_version(EngineKind::Postgres).await
}

/// The templates and warm pool of one server, or of every server that has them.
pub async fn warm_pool_status(
    platform: &Platform,
    server_name: Option<&str>,
) -> Result<Vec<WarmPoolStatus>, CodedError> {
    let servers = match server_name {
        Some(name) => vec![pool_server(platform, name).await?],
        None => {
            let mut servers = Vec::new();
            for record in platform
                .registry
                .list_servers()
                .await
                .map_err(registry_error)?
                .into_iter()
                .filter(|record| record.engine.hosts_databases())
            {
                let server = platform.tenant_server(&record).await?;
                if server.has_warm_pool() {
                    servers.push((record, server));
                }
            }
            servers
        }
    };
    // Without readable migrations nothing can be judged stale, but the counts still mean something.
    let schema = postgres_schema(platform).await.ok();
    let mut statuses = Vec::new();
    for (record, server) in servers {
        let inventory = server
            .warm_pool_inventory(schema.as_ref())
            .await
            .map_err(|error| server_error(&record, error))?
            .unwrap_or_default();
        statuses.push(WarmPoolStatus {
            server: record.name,
            target_size: platform.settings.warm_pool.size,
            inventory,
        });
    }
    Ok(statuses)
}

/// Fills one server's pool up to `size` (default: `warm_pool_size`) now, waiting for any other build to end.
pub async fn fill_warm_pool(
    platform: &Platform,
    server_name: &str,
    size: Option<u32>,
) -> Result<FillReport, CodedError> {
    let (record, server) = pool_server(platform, server_name).await?;
    let schema = postgres_schema(platform).await?;
    let target =
        usize::try_from(size.unwrap_or(platform.settings.warm_pool.size)).unwrap_or(usize::MAX);
    server
        .fill_warm_pool(&schema, target, target, LockWait::Wait)
        .await
        .map_err(|error| server_error(&record, error))
}

/// One round of the background refill: on every active server with a warm pool, makes at most
/// `warm_pool_refill_batch` databases toward `warm_pool_size`. A server another process is filling is skipped
/// this round. Meant to be called every few seconds by `serve` and `worker`; does nothing when the size is 0.
pub async fn refill_warm_pools(platform: &Platform) -> Vec<RefillOutcome> {
    let settings = &platform.settings.warm_pool;
    if settings.size == 0 {
        return Vec::new();
    }
    let target = usize::try_from(settings.size).unwrap_or(usize::MAX);
    let batch = usize::try_from(settings.refill_batch).unwrap_or(usize::MAX);
    let servers = match platform.registry.list_servers().await {
        Ok(servers) => servers,
        Err(error) => {
            tracing::warn!(%error, "warm pool refill: cannot list servers");
            return Vec::new();
        }
    };
    let schema = match postgres_schema(platform).await {
        Ok(schema) => schema,
        Err(error) => {
            tracing::warn!(error = %error.message, "warm pool refill: cannot read the tenant schema");
            return Vec::new();
        }
    };
    let mut outcomes = Vec::new();
    for record in servers
        .into_iter()
        .filter(|record| record.status == ServerStatus::Active && record.engine.hosts_databases())
    {
        let server = match platform.tenant_server(&record).await {
            Ok(server) if server.has_warm_pool() => server,
            Ok(_) => continue,
            Err(error) => {
                outcomes.push(RefillOutcome {
                    server: record.name,
                    result: Err(error.message),
                });
                continue;
            }
        };
        let result = server
            .fill_warm_pool(&schema, target, batch, LockWait::Skip)
            .await
            .map_err(|error| error.to_string());
        match &result {
            Err(why) => {
                tracing::warn!(server = %record.name, why, "warm pool refill failed; will try again");
            }
            Ok(report) if report.n_created > 0 => tracing::info!(
                server = %record.name,
                made = report.n_created,
                ready = report.n_ready,
                target,
                "warm pool refilled"
            ),
            Ok(_) => {}
        }
        outcomes.push(RefillOutcome {
            server: record.name,
            result,
        });
    }
    outcomes
}

/// How long the background refill waits between two rounds.
pub const REFILL_INTERVAL: Duration = Duration::from_secs(2);

/// The background refill: a round of [`refill_warm_pools`] every [`REFILL_INTERVAL`] until `shutdown` turns true
/// (at most `warm_pool_refill_batch` databases per server per round). `serve` and `worker` spawn it; it returns
/// at once when `warm_pool_size` is 0.
pub async fn run_warm_pool_refill(platform: Platform, mut shutdown: watch::Receiver<bool>) {
    if platform.settings.warm_pool.size == 0 {
        return;
    }
    while !*shutdown.borrow() {
        refill_warm_pools(&platform).await;
        tokio::select! {
            () = tokio::time::sleep(REFILL_INTERVAL) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Drops one server's templates and pool databases as `scope` says (by default what is stale).
pub async fn prune_warm_pool(
    platform: &Platform,
    server_name: &str,
    scope: PruneScope,
) -> Result<PruneReport, CodedError> {
    let (record, server) = pool_server(platform, server_name).await?;
    // Stale means "not the current schema"; without the current schema only leftovers of builds are pruned.
    let schema = postgres_schema(platform).await.ok();
    server
        .prune_warm_pool(schema.as_ref(), scope)
        .await
        .map_err(|error| server_error(&record, error))
}

/// The command that clears a server's stale templates and pool databases.
pub fn prune_fix(server_name: &str) -> String {
    format!("tenantry pool prune --server {server_name}")
}
