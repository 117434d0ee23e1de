//! Whether the operator's admin seed and admin check fit the operator's tenant schema, judged before a job is
//! recorded wherever that can be done without a tenant database: on SQLite, against a scratch in-memory database
//! migrated with the configured migrations. (A PostgreSQL placement is judged in `admin_seeded`, against the
//! tenant's own freshly migrated database, before the seed runs; the job then rolls back and leaves nothing.)

use crate::{registry_error, Platform};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use tenantry_core::{EngineKind, Error as CodedError, ErrorCode, ServerStatus, TenantSpec};
use tenantry_providers::engines::{check_statements_in_scratch, SchemaVersion, ScratchVerdict};

/// Verdicts this process has reached, by the hash of the migrations and statements judged (`None`: nothing to
/// refuse). A judgement is a few milliseconds of migrating in memory, and the files rarely change while a process
/// runs, so a submission usually costs reading and hashing them.
static VERDICTS: LazyLock<Mutex<HashMap<[u8; 32], Option<CodedError>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Refuses a provisioning request whose admin seed or admin check does not fit the tenant schema of an engine
/// the request may be placed on (`E_TENANT_SCHEMA_MISMATCH`, naming the statement and the database's error).
pub async fn refuse_misfit_statements(
    platform: &Platform,
    spec: &TenantSpec,
) -> Result<(), CodedError> {
    // The registry is asked where the request may go only when there is something to refuse.
    match sqlite_misfit(platform).await? {
        Some(misfit) if may_be_placed_on(platform, spec, EngineKind::Sqlite).await? => Err(misfit),
        _ => Ok(()),
    }
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

/// What a scratch SQLite database migrated with the configured migrations says of the seed and check: the
/// refusal if one does not fit, `None` if they fit or the migrations do not run there (the job reports those).
async fn sqlite_misfit(platform: &Platform) -> Result<Option<CodedError>, CodedError> {
    let schema = &platform.settings.tenant_schema;
    let statements = schema.operator_statements(EngineKind::Sqlite)?;
    // Migrations that cannot be read are reported by the job (E_MIGRATIONS_FAILED), as before.
    let Ok(version) = SchemaVersion::read(&schema.migrations_for(EngineKind::Sqlite)).await else {
        return Ok(None);
    };
    let mut hasher = Sha256::new();
    hasher.update(version.hash.as_bytes());
    for statement in &statements {
        hasher.update([0]);
        hasher.update(statement.sql.as_bytes());
    }
    let key: [u8; 32] = hasher.finalize().into();
    if let Some(verdict) = VERDICTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Ok(verdict.clone());
    }
    let configured: Vec<_> = statements
        .iter()
        .map(|statement| statement.as_configured())
        .collect();
    let verdict = match check_statements_in_scratch(&version.directory, &configured).await {
        Ok(ScratchVerdict::Fits | ScratchVerdict::Unjudged(_)) => None,
        Err(tenantry_providers::Error::SchemaMismatch(message)) => Some(CodedError::new(
            ErrorCode::TenantSchemaMismatch,
            format!("{message}; nothing was created"),
        )),
        Err(error) => {
            return Err(CodedError::new(
                ErrorCode::Internal,
                format!("cannot judge the admin seed and check in a scratch database: {error}"),
            ))
        }
    };
    VERDICTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, verdict.clone());
    Ok(verdict)
}
