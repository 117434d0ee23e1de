//! What every workflow works with: the registry, the secret store, and the operator's settings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tenantry_core::{EngineKind, Error as CodedError, ErrorCode, Plan};
use tenantry_engine::PhaseError;
use tenantry_providers::credentials::SecretString;
use tenantry_providers::engines::{
    ConfiguredStatement, Installation, SchemaVersion, Sessions, TenantServer,
};
use tenantry_providers::resources::Providers;
use tenantry_providers::secrets::SecretStore;
use tenantry_registry::{Registry, ServerRecord};

/// Where a tenant's schema comes from: a migrations directory and an admin seed file, per engine.
#[derive(Debug, Clone)]
pub struct TenantSchema {
    /// A directory in sqlx's migration format, or one holding such a directory per SQL dialect (`postgres/`,
    /// `sqlite/`, `mysql/` for MariaDB).
    pub migrations: PathBuf,
    /// A seed SQL file, or a directory holding `<engine>.sql`.
    pub admin_seed: PathBuf,
    /// A query counting the seeded admins ready for first login (`$1` the admin's email), or a directory holding
    /// `<engine>.sql`; `None`: the validation suite skips the admin check.
    pub admin_check: Option<PathBuf>,
}

impl TenantSchema {
    pub fn migrations_for(&self, engine: EngineKind) -> PathBuf {
        let per_engine = self.migrations.join(engine.schema_dialect());
        if per_engine.is_dir() {
            per_engine
        } else {
            self.migrations.clone()
        }
    }

    pub fn admin_seed_for(&self, engine: EngineKind) -> PathBuf {
        per_engine_file(&self.admin_seed, engine)
    }

    pub fn admin_check_for(&self, engine: EngineKind) -> Option<PathBuf> {
        self.admin_check
            .as_deref()
            .map(|path| per_engine_file(path, engine))
    }

    /// The operator's statements that run inside a tenant database on `engine`, read from their files: the
    /// admin seed (`$1` email, `$2` password hash, `$3` invitation token hash), then the admin check (`$1` email)
    /// if one is configured.
    pub fn operator_statements(
        &self,
        engine: EngineKind,
    ) -> Result<Vec<OperatorStatement>, CodedError> {
        let seed_path = self.admin_seed_for(engine);
        let mut statements = vec![OperatorStatement {
            name: format!("admin seed {}", seed_path.display()),
            sql: read_configured_file(&seed_path, "admin seed")?,
            n_parameters: 3,
        }];
        if let Some(check_path) = self.admin_check_for(engine) {
            statements.push(OperatorStatement {
                name: format!("admin check {}", check_path.display()),
                sql: read_configured_file(&check_path, "admin check")?,
                n_parameters: 1,
            });
        }
        Ok(statements)
    }
}

/// One statement of the operator's tenant schema configuration, read from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorStatement {
    /// What it is and which file it came from, for messages.
    pub name: String,
    pub sql: String,
    pub n_parameters: usize,
}

impl OperatorStatement {
    pub fn as_configured(&self) -> ConfiguredStatement<'_> {
        ConfiguredStatement {
            name: &self.name,
            sql: &self.sql,
            n_parameters: self.n_parameters,
        }
    }
}

fn read_configured_file(path: &Path, what: &str) -> Result<String, CodedError> {
    std::fs::read_to_string(path).map_err(|error| {
        CodedError::new(
            ErrorCode::Internal,
            format!("cannot read the {what} {}: {error}", path.display()),
        )
    })
}

/// `path` itself, or `path/<engine>.sql` when it is a directory.
fn per_engine_file(path: &Path, engine: EngineKind) -> PathBuf {
    if path.is_dir() {
        path.join(format!("{}.sql", engine.schema_dialect()))
    } else {
        path.to_path_buf()
    }
}

/// The operator's settings that workflows read.
#[derive(Debug, Clone)]
pub struct Settings {
    pub plans: Vec<Plan>,
    pub regions: Vec<String>,
    pub default_plan: String,
    pub default_region: String,
    pub tenant_schema: TenantSchema,
    /// The first admin's invitation: the link's form, the SMTP server and the e-mail's template.
    pub invitations: crate::invitations::InvitationSettings,
    pub warm_pool: WarmPoolSettings,
    pub notifications: NotificationSettings,
    /// The least time between two purges (DROP DATABASE) on one server: each forces a checkpoint other tenants feel.
    pub purge_min_interval: std::time::Duration,
    pub approvals: ApprovalSettings,
    pub pricing: PricingSettings,
    /// The registry's PostgreSQL URL, so the validation suite can prove a tenant cannot log in to it (`None`:
    /// the registry is a SQLite file, which no tenant login reaches).
    pub registry_postgres_url: Option<SecretString>,
    /// The directories under which a SQLite server's directory may lie (absolute; by default the data
    /// directory), so that registering a server cannot make tenantry create or write files anywhere else.
    pub sqlite_server_roots: Vec<std::path::PathBuf>,
    pub backups: BackupSettings,
}

/// Where backups go and what makes them.
#[derive(Debug, Clone, Default)]
pub struct BackupSettings {
    /// The backup store's directory (`backup_dir`; by default `<data_dir>/backups`).
    pub directory: std::path::PathBuf,
    /// PostgreSQL's `pg_dump` and `pg_restore` (`pg_bin_dir`; by default the newest installed version's).
    pub pg_bin_dir: Option<std::path::PathBuf>,
}

/// When a request waits for a PLATFORM_ADMIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// Budgets at or above this (whole currency units per month) wait for approval.
    pub auto_approve_threshold: u64,
    /// How long a request waits before it lapses (`E_APPROVAL_EXPIRED`).
    pub ttl: std::time::Duration,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        ApprovalSettings {
            auto_approve_threshold: 10_000,
            ttl: std::time::Duration::from_secs(72 * 3600),
        }
    }
}

/// How a plan's list price becomes a tenant's monthly cost: plan and region multipliers, in one currency.
#[derive(Debug, Clone, PartialEq)]
pub struct PricingSettings {
    pub currency: String,
    /// Regions missing here cost 1.0×.
    pub region_multipliers: std::collections::BTreeMap<String, f64>,
}

impl Default for PricingSettings {
    fn default() -> Self {
        PricingSettings {
            currency: "USD".into(),
            region_multipliers: std::collections::BTreeMap::new(),
        }
    }
}

/// How webhook deliveries are guarded and retried.
#[derive(Debug, Clone)]
pub struct NotificationSettings {
    /// Webhook URLs may resolve to private and link-local addresses.
    pub allow_internal: bool,
    /// The first retry's delay, doubled on each further one (at most five minutes).
    pub retry_base: std::time::Duration,
    /// Attempts before a delivery is dead.
    pub max_attempts: u32,
}

/// How many databases each server keeps ready ahead of time (PostgreSQL servers; see `crate::pool`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmPoolSettings {
    /// Pool databases per server that the background refill keeps ready. 0: no warm pool (the template only).
    pub size: u32,
    /// At most this many pool databases made per server per refill round, so a refill never floods a server.
    pub refill_batch: u32,
}

impl Default for WarmPoolSettings {
    fn default() -> Self {
        WarmPoolSettings {
            size: 0,
            refill_batch: 2,
        }
    }
}

impl Settings {
    pub fn plan(&self, name: &str) -> Option<&Plan> {
        self.plans.iter().find(|plan| plan.name == name)
    }
}

/// Everything a workflow needs. Cheap to clone.
#[derive(Clone)]
pub struct Platform {
    pub registry: Registry,
    pub secrets: Arc<dyn SecretStore>,
    pub settings: Arc<Settings>,
    /// The resource kinds beyond the database, each served by its provider.
    pub providers: Providers,
    /// The sessions kept open to the fleet's servers between calls and between a job's phases. This platform's
    /// own (clones share them), so two platforms in one process never hand each other a session.
    pub sessions: Sessions,
    /// Woken when something may have queued a delivery (a job ended, an invitation was resent), so this
    /// process's sender sends it now instead of at its next poll.
    pub outbox_wake: Arc<tokio::sync::Notify>,
}

impl Platform {
    /// The server's admin connection from the secret store (`E_ADMIN_CONN_UNRESOLVED` when it cannot be had).
    pub async fn tenant_server(&self, server: &ServerRecord) -> Result<TenantServer, CodedError> {
        let admin_url = self.admin_url(server).await?;
        TenantServer::from_admin_url(
            server.engine,
            &admin_url,
            &self.installation().await?,
            &self.sessions,
        )
        .map_err(|error| {
            CodedError::new(
                ErrorCode::AdminConnUnresolved,
                format!("server {:?}: {error}", server.name),
            )
        })
    }

    /// [`Platform::tenant_server`] placing tenants as plan `plan` says: in a database of their own, or as a schema
    /// in the server's shared database (`isolation = "schema"`). Every handle that acts on one tenant's database
    /// comes from here; a plan no longer configured places as `database`.
    pub async fn tenant_server_for(
        &self,
        server: &ServerRecord,
        plan: &str,
    ) -> Result<TenantServer, CodedError> {
        let tenant_server = self.tenant_server(server).await?;
        let Some(plan) = self.settings.plan(plan) else {
            return Ok(tenant_server);
        };
        tenant_server
            .with_isolation(plan.isolation, &plan.shared_tables)
            .map_err(|error| {
                CodedError::invalid_input(format!(
                    "plan {:?} on server {:?}: {error}",
                    plan.name, server.name
                ))
            })
    }

    /// A server's admin URL from the secret store (`E_ADMIN_CONN_UNRESOLVED` when it cannot be read).
    pub async fn admin_url(&self, server: &ServerRecord) -> Result<SecretString, CodedError> {
        let unresolved = |why: String| {
            CodedError::new(
                ErrorCode::AdminConnUnresolved,
                format!("server {:?}: {why}", server.name),
            )
        };
        let admin_url = self
            .secrets
            .get(&server.admin_secret_ref)
            .await
            .map_err(|error| {
                unresolved(format!(
                    "cannot read secret {:?}: {error}",
                    server.admin_secret_ref
                ))
            })?
            .ok_or_else(|| {
                unresolved(format!(
                    "secret {:?} does not exist",
                    server.admin_secret_ref
                ))
            })?;
        Ok(admin_url)
    }

    /// This registry's installation, which marks everything tenantry makes on a server.
    pub async fn installation(&self) -> Result<Installation, CodedError> {
        let id = self
            .registry
            .installation_id()
            .await
            .map_err(crate::registry_error)?;
        Installation::new(&id)
            .map_err(|error| CodedError::new(ErrorCode::Internal, error.to_string()))
    }

    /// The version of the tenant schema for `engine`: its migrations, read and hashed.
    pub async fn schema_version(&self, engine: EngineKind) -> Result<SchemaVersion, CodedError> {
        let directory = self.settings.tenant_schema.migrations_for(engine);
        let schema = SchemaVersion::read(&directory)
            .await
            .map_err(|error| CodedError::new(ErrorCode::MigrationsFailed, error.to_string()))?;
        Ok(schema.for_installation(&self.installation().await?))
    }

    /// Reads a secret for a phase: an unreachable store is retryable `PROVISIONING_UNAVAILABLE`.
    pub async fn read_secret(&self, name: &str) -> Result<Option<SecretString>, PhaseError> {
        self.secrets
            .get(name)
            .await
            .map_err(|error| secret_store_error(&error))
    }
}

pub(crate) fn secret_store_error(error: &tenantry_providers::Error) -> PhaseError {
    if matches!(error, tenantry_providers::Error::Fenced(_)) {
        return PhaseError::Fenced;
    }
    let message = format!("secret store: {error}");
    if error.is_transient() {
        PhaseError::retryable(ErrorCode::ProvisioningUnavailable, message)
    } else {
        PhaseError::fatal(ErrorCode::ProvisioningUnavailable, message)
    }
}

/// The outcome of acting on something under a tenant's name: another installation's object there is left in
/// place and said in the job log (`Ok(false)`: this job made none of it); any other failure is the phase's.
pub(crate) async fn unless_foreign(
    context: &mut tenantry_engine::JobContext,
    outcome: tenantry_providers::Result<()>,
) -> Result<bool, PhaseError> {
    match outcome {
        Err(tenantry_providers::Error::Foreign(why)) => {
            context
                .log("warn", &format!("left in place: {why}"))
                .await?;
            Ok(false)
        }
        other => other
            .map(|()| true)
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error)),
    }
}

/// A provider failure as a phase error with `code` (transient ones are retried).
pub(crate) fn provider_error(code: ErrorCode, error: tenantry_providers::Error) -> PhaseError {
    match error {
        tenantry_providers::Error::Transient(message) => PhaseError::retryable(code, message),
        tenantry_providers::Error::AdminConnection(message) => {
            PhaseError::fatal(ErrorCode::AdminConnUnresolved, message)
        }
        tenantry_providers::Error::Migration(message) => {
            PhaseError::fatal(ErrorCode::MigrationsFailed, message)
        }
        tenantry_providers::Error::SecretStore(message) => {
            PhaseError::fatal(ErrorCode::ProvisioningUnavailable, message)
        }
        tenantry_providers::Error::Refused(message) => PhaseError::fatal(code, message),
        tenantry_providers::Error::Foreign(message) => {
            PhaseError::fatal(ErrorCode::ForeignObject, message)
        }
        tenantry_providers::Error::SchemaMismatch(message) => {
            PhaseError::fatal(ErrorCode::TenantSchemaMismatch, message)
        }
        tenantry_providers::Error::SeedFailed(message) => {
            PhaseError::fatal(ErrorCode::AdminSeedFailed, message)
        }
        tenantry_providers::Error::Fenced(_) => PhaseError::Fenced,
        tenantry_providers::Error::Failpoint(message) => {
            PhaseError::fatal(ErrorCode::Failpoint, message)
        }
    }
}
