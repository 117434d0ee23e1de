//! Whether the operator's admin seed and admin check fit the operator's tenant schema, judged before a job is
//! recorded wherever that can be done without a tenant database: on SQLite, against a scratch in-memory database
//! migrated with the configured migrations. (A PostgreSQL placement is judged in `admin_seeded`, against the
//! tenant's own freshly migrated database, before the seed runs; the job then rolls back and leaves nothing.)

use crate::{registry_error, Platform};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, PoisonError};
use tenantry_core::{EngineKind, Error as CodedError, ErrorCode, ServerStatus, TenantSpec};
use tenantry_providers::engines::{check_statements_in_scratch, SchemaVersion, ScratchVerdict};

/// Schema-and-statements combinations this process has seen fit, by hash: a judgement is a few milliseconds of
/// migrating in memory, and the files rarely change while a process runs.
static KNOWN_TO_FIT: LazyLock<Mutex<HashSet<[u8; 32]>>> =
    LazyLock::new(|| Mutex::new(HashSet::new()));

/// Refuses a provisioning request whose admin seed or admin check does not fit the tenant schema of an engine
/// the request may be placed on (`E_TENANT_SCHEMA_MISMATCH`, naming the statement and the database's error).
pub async fn refuse_misfit_statements(
    platform: &Platform,
    spec: &TenantSpec,
) -> Result<(), CodedError> {
    if may_be_placed_on(platform, spec, EngineKind::Sqlite).await? {
        check_sqlite_fit(platform).await?;
    }
    Ok(())
}

/// Whether placement could choose a server of `engine` for this request: the server it names, else the plan's
/// engine, else any active server of that engine in its region.
async fn may_be_placed_on(
    platform: &Platform,
    spec: &TenantSpec,
    engine: EngineKind,
) -> Result<bool, CodedError> {
    if let Some(name) = &spec.server {
        return match platform.registry.get_server(name.as_str()).await {
            Ok(server) => Ok(server.engine == engine),
            // The job names the missing server (E_DB_SERVER_NOT_FOUND) at placement.
            Err(tenantry_registry::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(registry_error(error)),
        };
    }
    if let Some(plan_engine) = platform
        .settings
        .plan(&spec.plan)
        .and_then(|plan| plan.engine)
    {
        return Ok(plan_engine == engine);
    }
    let servers = platform
        .registry
        .list_servers()
        .await
        .map_err(registry_error)?;
    Ok(servers.iter().any(|server| {
        server.engine == engine
            && server.status == ServerStatus::Active
            && server.region == spec.region
    }))
}

async fn check_sqlite_fit(platform: &Platform) -> Result<(), CodedError> {
    let schema = &platform.settings.tenant_schema;
    let statements = schema.operator_statements(EngineKind::Sqlite)?;
    // Migrations that cannot be read are reported by the job (E_MIGRATIONS_FAILED), as before.
    let Ok(version) = SchemaVersion::read(&schema.migrations_for(EngineKind::Sqlite)).await else {
        return Ok(());
    };
    let mut hasher = Sha256::new();
    hasher.update(version.hash.as_bytes());
    for statement in &statements {
        hasher.update([0]);
        hasher.update(statement.sql.as_bytes());
    }
    let key: [u8; 32] = hasher.finalize().into();
    if KNOWN_TO_FIT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&key)
    {
        return Ok(());
    }
    let configured: Vec<_> = statements
        .iter()
        .map(|statement| statement.as_configured())
        .collect();
    match check_statements_in_scratch(&version.directory, &configured).await {
        Ok(ScratchVerdict::Fits) => {
            KNOWN_TO_FIT
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key);
            Ok(())
        }
        // Migrations that fail here fail in the job too, which reports them as E_MIGRATIONS_FAILED.
        Ok(ScratchVerdict::Unjudged(_)) => Ok(()),
        Err(tenantry_providers::Error::SchemaMismatch(message)) => Err(CodedError::new(
            ErrorCode::TenantSchemaMismatch,
            format!("{message}; nothing was created"),
        )),
        Err(error) => Err(CodedError::new(
            ErrorCode::Internal,
            format!("cannot judge the admin seed and check in a scratch database: {error}"),
        )),
    }
}
