//! Tenant database engines. A [`TenantServer`] is one fleet member reached through its admin connection; it
//! creates, inspects, migrates, seeds, disables and drops tenant databases. Every operation is idempotent.

mod mariadb;
mod postgres;
mod schema_version;
mod sqlite;

pub use mariadb::MariadbServer;
pub use postgres::{
    alternate_login, login_of_url, tenant_login_elsewhere, tenant_logins, tenant_of_login,
    CatalogObject, DatabaseOrigin, FillReport, LockWait, MoveObject, PostgresServer,
    PostgresSessions, PruneReport, PruneScope, SequenceState, SharedIsolation, WarmPoolInventory,
    MOVE_OBJECT_PREFIX,
};
pub use schema_version::{AppliedMigration, SchemaStanding, SchemaVersion};
pub use sqlite::{check_statements_in_scratch, SqliteServer};

use crate::credentials::SecretString;
use crate::{Error, Result};
use std::path::Path;
use std::sync::Arc;
use tenantry_core::{EngineKind, Isolation};

/// The sessions a platform keeps open to its servers between calls (PostgreSQL admin pools, tenant sessions parked
/// between the phases of a job), handed to every [`TenantServer`] it makes. The platform owns them, so two
/// platforms in one process keep theirs apart. Cheap to clone: clones share the same sessions.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    postgres: Arc<PostgresSessions>,
}

impl Sessions {
    /// No session yet: each is opened on first use.
    pub fn new() -> Sessions {
        Sessions::default()
    }
}

/// What a tenant database gets: its name (database, role, file stem) and the plan's quotas and labels.
#[derive(Debug, Clone)]
pub struct TenantDatabaseSpec {
    pub resource_name: String,
    pub connection_limit: u32,
    pub statement_timeout_ms: u64,
    /// `{tenant, plan, cost_center}`, recorded on the database where the engine can hold it.
    pub labels: serde_json::Value,
}

/// This installation (this registry) as its objects on a server name it. Every database, role and file tenantry
/// creates carries the id, so two installations sharing a server never take each other's objects for their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    id: String,
}

impl Installation {
    /// `id`: the registry's installation id (16 lowercase hex digits).
    pub fn new(id: &str) -> Result<Installation> {
        if !tenantry_registry::is_installation_id(id) {
            return Err(Error::Refused(format!(
                "{id:?} is not an installation id (16 hex digits)"
            )));
        }
        Ok(Installation { id: id.to_owned() })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The mark written on what tenantry makes (a PostgreSQL comment, a row in a SQLite file): which installation
    /// made it, and as what. It is all a tenant can read there: labels live in the registry.
    pub(crate) fn mark(&self, what: &str) -> serde_json::Value {
        serde_json::json!({ "tenantry": what, "installation": self.id })
    }

    /// Whose an object is, from the mark it carries (`None`: no mark, or one that is not tenantry's).
    pub(crate) fn judge_mark(&self, mark: Option<&str>) -> Ownership {
        let installation = mark
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            .and_then(|value| {
                value
                    .get("installation")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            });
        self.judge_id(installation.as_deref())
    }

    pub(crate) fn judge_id(&self, installation: Option<&str>) -> Ownership {
        match installation {
            Some(id) if id == self.id => Ownership::Ours,
            Some(other) => Ownership::Foreign(other.to_owned()),
            None => Ownership::Unmarked,
        }
    }
}

/// Whose an object on a server is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "owner", content = "installation")]
pub enum Ownership {
    /// Marked as this installation's.
    Ours,
    /// Marked as another installation's (its id).
    Foreign(String),
    /// No installation mark: made by a tenantry older than installation ids, or by someone else. It is this
    /// installation's only where the registry knows the slug.
    Unmarked,
}

impl Ownership {
    /// The ownership of a whole made of pieces: foreign if any piece is, ours if any is and none is foreign.
    pub fn combine(pieces: impl IntoIterator<Item = Ownership>) -> Ownership {
        let mut combined = Ownership::Unmarked;
        for piece in pieces {
            match piece {
                Ownership::Foreign(_) => return piece,
                Ownership::Ours => combined = Ownership::Ours,
                Ownership::Unmarked => {}
            }
        }
        combined
    }
}

/// Which pieces of a tenant exist on a server, and whose they are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inventory {
    pub database: bool,
    /// Always false on engines without roles.
    pub role: bool,
    /// Of the pieces that exist (`Unmarked` when none does).
    pub ownership: Ownership,
}

impl Inventory {
    pub fn any(&self) -> bool {
        self.database || self.role
    }
}

/// Something on a server that looks like a tenant's (name starts with `tenant_`), for `doctor`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantResource {
    pub name: String,
    pub kind: &'static str,
    pub ownership: Ownership,
    /// How it differs from what tenantry sets (e.g. a database that admits PUBLIC); empty when it does not.
    pub drift: Vec<String>,
}

/// What the tenant's own credentials see in its database, for the validation suite.
#[derive(Debug, Clone)]
pub struct TenantProbe {
    /// The role the credentials log in as (`None` on engines without logins).
    pub current_user: Option<String>,
    pub current_database: String,
    /// Which of superuser, createdb, createrole, bypassrls the role holds (`None` on engines without roles).
    pub elevated_privileges: Option<Vec<&'static str>>,
    /// The latest tenant schema migration applied (`None`: none recorded).
    pub schema_version: Option<i64>,
    /// What the admin check query says (`None`: no check configured; `Some(Err(why))`: the database refused
    /// the query, the operator's check does not fit the schema).
    pub admin_ready: Option<std::result::Result<bool, String>>,
    /// One round trip of a trivial query on a warmed session.
    pub query_latency: std::time::Duration,
}

/// How a tenant's login, quotas and access stand on its server, as far as the engine keeps them (`None`: the
/// engine has no such thing, or the piece that holds it is missing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantAccess {
    /// Whether the tenant can log in (PostgreSQL: the role's LOGIN; SQLite: the file is writable by its owner).
    pub login: Option<bool>,
    /// The role's connection limit (-1: none).
    pub role_connection_limit: Option<i32>,
    /// The database's connection limit (-1: none).
    pub database_connection_limit: Option<i32>,
    /// The role's `statement_timeout` setting as stored (milliseconds when tenantry set it).
    pub statement_timeout: Option<String>,
    /// Who besides the tenant's role and the database's owner may connect to the database (`PUBLIC`: every role).
    pub other_connectors: Vec<String>,
    /// A SQLite file's permission bits.
    pub file_mode: Option<u32>,
}

/// The other tenant databases on a server that a tenant's role can reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reachable {
    /// Through a grant to the tenant's role (or a role it belongs to): the tenant is not isolated.
    pub granted: Vec<String>,
    /// Because they admit PUBLIC: those neighbours opened themselves (each is its own finding in `doctor`).
    pub open_to_public: Vec<String>,
    /// How many other tenant databases there are.
    pub n_others: i64,
}

/// The outcome of a login that isolation requires to fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginAttempt {
    Allowed,
    /// Refused, with the server's words.
    Refused(String),
}

/// The first admin to insert into a tenant database, with hashes only.
#[derive(Debug, Clone)]
pub struct AdminSeed<'a> {
    pub sql: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub invitation_token_hash: &'a str,
}

/// A statement from the operator's configuration that runs inside a tenant database (the admin seed, the admin
/// check), with what it is called in messages and how many text parameters (`$1`…) it is given.
#[derive(Debug, Clone, Copy)]
pub struct ConfiguredStatement<'a> {
    /// What it is and where it comes from, e.g. `admin seed /etc/tenantry/seed.sql`.
    pub name: &'a str,
    pub sql: &'a str,
    pub n_parameters: usize,
}

/// Whether a scratch database could judge the configured statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScratchVerdict {
    /// Every statement was prepared against the migrated schema.
    Fits,
    /// The migrations do not run in the scratch database, so nothing was judged (the job reports them).
    Unjudged(String),
}

/// The database's refusal to prepare `statement` as the operator's configuration error (a lost connection stays
/// transient).
pub(crate) fn statement_misfit(statement: &ConfiguredStatement<'_>, error: sqlx::Error) -> Error {
    match Error::from_server(&format!("preparing the {}", statement.name), error) {
        Error::Refused(message) => Error::SchemaMismatch(format!(
            "{message} (the statement does not fit the tenant schema)"
        )),
        other => other,
    }
}

/// The database's refusal to run the admin seed as the operator's configuration error (a lost connection stays
/// transient).
pub(crate) fn seed_error(error: Error) -> Error {
    match error {
        Error::Refused(message) => Error::SeedFailed(message),
        other => other,
    }
}

/// A server that hosts tenant databases.
#[derive(Debug, Clone)]
pub enum TenantServer {
    // Boxed: PostgreSQL and MariaDB connect options are large, and servers are made once per use, not per row.
    Postgres(Box<PostgresServer>),
    Sqlite(SqliteServer),
    Mariadb(Box<MariadbServer>),
}

impl TenantServer {
    /// Reads a server's admin connection (a URL from the secret store). Nothing is contacted yet. The server
    /// keeps and reuses its sessions in `sessions`.
    pub fn from_admin_url(
        engine: EngineKind,
        admin_url: &SecretString,
        installation: &Installation,
        sessions: &Sessions,
    ) -> Result<TenantServer> {
        match engine {
            EngineKind::Postgres => {
                PostgresServer::from_admin_url(admin_url, installation, sessions.postgres.clone())
                    .map(|server| TenantServer::Postgres(Box::new(server)))
            }
            EngineKind::Sqlite => {
                SqliteServer::from_admin_url(admin_url, installation).map(TenantServer::Sqlite)
            }
            EngineKind::Mariadb => MariadbServer::from_admin_url(admin_url, installation)
                .map(|server| TenantServer::Mariadb(Box::new(server))),
            other => Err(Error::Refused(format!(
                "a {other} server hosts no tenant databases"
            ))),
        }
    }

    /// The PostgreSQL server behind this one, if it is one (a move works between PostgreSQL servers only).
    pub fn as_postgres(&self) -> Option<&PostgresServer> {
        match self {
            TenantServer::Postgres(server) => Some(server),
            TenantServer::Sqlite(_) | TenantServer::Mariadb(_) => None,
        }
    }

    /// This handle, placing tenants as `isolation` says: `Schema` puts them in the PostgreSQL server's shared
    /// database with `shared_tables` (see `engines/postgres/shared_schema.rs`); other engines have no shared tier.
    pub fn with_isolation(
        self,
        isolation: Isolation,
        shared_tables: &[String],
    ) -> Result<TenantServer> {
        match (self, isolation) {
            (server, Isolation::Database) => Ok(server),
            (TenantServer::Postgres(server), Isolation::Schema) => Ok(TenantServer::Postgres(
                Box::new(server.in_shared_schema(shared_tables.to_vec())),
            )),
            (other, Isolation::Schema) => Err(Error::Refused(format!(
                "a {} server has no shared database: schema isolation needs PostgreSQL",
                other.engine()
            ))),
        }
    }

    /// How this handle places tenants.
    pub fn isolation(&self) -> Isolation {
        match self {
            TenantServer::Postgres(server) if server.places_in_shared_schema() => Isolation::Schema,
            _ => Isolation::Database,
        }
    }

    /// The database the tenant `resource_name` connects to: its own, or the shared one (SQLite: the file's stem).
    pub fn database_of(&self, resource_name: &str) -> String {
        match self {
            TenantServer::Postgres(server) => server.database_of(resource_name),
            TenantServer::Sqlite(_) | TenantServer::Mariadb(_) => resource_name.to_owned(),
        }
    }

    /// The course module's isolation test as the tenant of `tenant_url` (`None` unless this handle places tenants
    /// in the shared database).
    pub async fn shared_isolation(
        &self,
        tenant_url: &SecretString,
    ) -> Result<Option<SharedIsolation>> {
        match self {
            TenantServer::Postgres(server) if server.places_in_shared_schema() => {
                server.shared_isolation(tenant_url).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    pub fn engine(&self) -> EngineKind {
        match self {
            TenantServer::Postgres(_) => EngineKind::Postgres,
            TenantServer::Sqlite(_) => EngineKind::Sqlite,
            TenantServer::Mariadb(_) => EngineKind::Mariadb,
        }
    }

    /// Whether tenants on this engine log in with a password (and so get one generated).
    pub fn uses_passwords(&self) -> bool {
        matches!(self, TenantServer::Postgres(_) | TenantServer::Mariadb(_))
    }

    /// The scheme of the tenant URLs this engine's secrets hold.
    pub fn url_scheme(&self) -> &'static str {
        match self {
            TenantServer::Postgres(_) => "postgres",
            TenantServer::Sqlite(_) => "sqlite",
            TenantServer::Mariadb(_) => "mysql",
        }
    }

    /// Checks the admin connection works.
    pub async fn check_admin_connection(&self) -> Result<()> {
        match self {
            TenantServer::Postgres(server) => server.check_admin_connection().await,
            TenantServer::Sqlite(server) => server.check_admin_connection().await,
            TenantServer::Mariadb(server) => server.check_admin_connection().await,
        }
    }

    /// What makes this server one server whatever URL reaches it: PostgreSQL's `system_identifier` (with its
    /// host's port as a fallback where the admin may not read it), a SQLite directory's canonical path.
    pub async fn cluster_identity(&self) -> Result<String> {
        match self {
            TenantServer::Postgres(server) => server.cluster_identity().await,
            TenantServer::Sqlite(server) => Ok(format!(
                "directory {}",
                std::fs::canonicalize(server.directory())
                    .unwrap_or_else(|_| server.directory().to_path_buf())
                    .display()
            )),
            TenantServer::Mariadb(server) => server.cluster_identity().await,
        }
    }

    /// The databases on this server, not tenants' nor tenantry's, that any role may connect to (`None` on engines
    /// without logins).
    pub async fn databases_open_to_public(&self) -> Result<Option<Vec<String>>> {
        match self {
            TenantServer::Postgres(server) => server.databases_open_to_public().await.map(Some),
            TenantServer::Sqlite(_) | TenantServer::Mariadb(_) => Ok(None),
        }
    }

    /// The database the admin URL connects to (`None` on engines without one).
    pub fn admin_database(&self) -> Option<String> {
        match self {
            TenantServer::Postgres(server) => Some(server.admin_database()),
            TenantServer::Sqlite(_) | TenantServer::Mariadb(_) => None,
        }
    }

    /// Closes `database` (one `databases_open_to_public` named) to PUBLIC.
    pub async fn revoke_public_connect(&self, database: &str) -> Result<()> {
        match self {
            TenantServer::Postgres(server) => server.revoke_public_connect(database).await,
            // MariaDB's PUBLIC holds no privilege tenantry looks after: grants are per account.
            TenantServer::Sqlite(_) | TenantServer::Mariadb(_) => Ok(()),
        }
    }

    /// Takes access to the tenant database `resource_name` away from `role` (not PUBLIC: see
    /// [`TenantServer::revoke_public_connect`]). Nothing to do on engines without roles.
    pub async fn revoke_database_access(&self, resource_name: &str, role: &str) -> Result<()> {
        match self {
            TenantServer::Postgres(server) => {
                server.revoke_database_access(resource_name, role).await
            }
            TenantServer::Mariadb(server) => {
                server.revoke_database_access(resource_name, role).await
            }
            TenantServer::Sqlite(_) => Ok(()),
        }
    }

    /// The tenant's connection URL: what the secret `tenant-db-<slug>` holds.
    pub fn tenant_url(
        &self,
        resource_name: &str,
        password: Option<&SecretString>,
    ) -> Result<SecretString> {
        match (self, password) {
            (TenantServer::Postgres(server), Some(password)) => {
                Ok(server.tenant_url(resource_name, password))
            }
            (TenantServer::Postgres(_), None) => {
                Err(Error::Refused("a postgres tenant needs a password".into()))
            }
            (TenantServer::Sqlite(server), _) => Ok(server.tenant_url(resource_name)),
            (TenantServer::Mariadb(server), Some(password)) => {
                Ok(server.tenant_url(resource_name, password))
            }
            (TenantServer::Mariadb(_), None) => {
                Err(Error::Refused("a mariadb tenant needs a password".into()))
            }
        }
    }

    pub async fn inventory(&self, resource_name: &str) -> Result<Inventory> {
        match self {
            TenantServer::Postgres(server) => server.inventory(resource_name).await,
            TenantServer::Sqlite(server) => server.inventory(resource_name).await,
            TenantServer::Mariadb(server) => server.inventory(resource_name).await,
        }
    }

    /// Creates the tenant's role and database (or brings existing ones in line): owner, password, quotas, labels,
    /// connect rights for the tenant role only. Given the tenant schema's version, an engine that can starts the
    /// database with the schema in it (a warm-pool database or a copy of the schema's template); the migrations
    /// then only confirm it.
    pub async fn create_database(
        &self,
        spec: &TenantDatabaseSpec,
        password: Option<&SecretString>,
        schema: Option<&SchemaVersion>,
    ) -> Result<DatabaseOrigin> {
        match (self, password) {
            (TenantServer::Postgres(server), Some(password)) => {
                server.create_database(spec, password, schema).await
            }
            (TenantServer::Postgres(_), None) => {
                Err(Error::Refused("a postgres tenant needs a password".into()))
            }
            (TenantServer::Sqlite(server), _) => server
                .create_database(spec)
                .await
                .map(|()| DatabaseOrigin::Plain { why: None }),
            (TenantServer::Mariadb(server), Some(password)) => server
                .create_database(spec, password)
                .await
                .map(|()| DatabaseOrigin::Plain { why: None }),
            (TenantServer::Mariadb(_), None) => {
                Err(Error::Refused("a mariadb tenant needs a password".into()))
            }
        }
    }

    /// Ends sessions, then drops the database and role. Dropping what is not there is fine; a piece marked as
    /// another installation's is left alone and refused (`Error::Foreign`), before anything is dropped.
    pub async fn drop_database(&self, resource_name: &str) -> Result<()> {
        match self {
            TenantServer::Postgres(server) => server.drop_database(resource_name).await,
            TenantServer::Sqlite(server) => server.drop_database(resource_name).await,
            TenantServer::Mariadb(server) => server.drop_database(resource_name).await,
        }
    }

    /// Stops the tenant from connecting while keeping its data.
    pub async fn disable_login(&self, resource_name: &str) -> Result<()> {
        match self {
            TenantServer::Postgres(server) => server.disable_login(resource_name).await,
            TenantServer::Sqlite(server) => server.disable_login(resource_name).await,
            TenantServer::Mariadb(server) => server.disable_login(resource_name).await,
        }
    }

    /// Ends the tenant's open sessions, its login kept (PostgreSQL). A SQLite tenant has no session to end: a
    /// restore renames a whole file into place, and a connection open on the old file keeps reading that one.
    pub async fn end_sessions(&self, resource_name: &str) -> Result<()> {
        match self {
            TenantServer::Postgres(server) => server.end_tenant_sessions(resource_name).await,
            TenantServer::Sqlite(_) => Ok(()),
            // Nothing restores over a MariaDB tenant yet: it has no backups (`E_BACKUP_UNSUPPORTED`).
            TenantServer::Mariadb(_) => Err(Error::Refused(
                "ending a MariaDB tenant's sessions for a restore: MariaDB tenants have no backups yet".into(),
            )),
        }
    }

    /// Undoes [`TenantServer::disable_login`], for a tenant marked as this installation's (`Error::Foreign`
    /// otherwise). Enabling what is enabled changes nothing.
    pub async fn enable_login(&self, resource_name: &str) -> Result<()> {
        match self {
            TenantServer::Postgres(server) => server.enable_login(resource_name).await,
            TenantServer::Sqlite(server) => server.enable_login(resource_name).await,
            TenantServer::Mariadb(server) => server.enable_login(resource_name).await,
        }
    }

    /// The tenant's login, quotas and who else may connect, as the server holds them.
    pub async fn tenant_access(&self, resource_name: &str) -> Result<TenantAccess> {
        match self {
            TenantServer::Postgres(server) => server.tenant_access(resource_name).await,
            TenantServer::Sqlite(server) => server.tenant_access(resource_name).await,
            TenantServer::Mariadb(server) => server.tenant_access(resource_name).await,
        }
    }

    /// Everything on the server named `tenant_*`.
    pub async fn list_tenant_resources(&self) -> Result<Vec<TenantResource>> {
        match self {
            TenantServer::Postgres(server) => server.list_tenant_resources().await,
            TenantServer::Sqlite(server) => server.list_tenant_resources().await,
            TenantServer::Mariadb(server) => server.list_tenant_resources().await,
        }
    }

    /// Whether this engine keeps template databases and a warm pool.
    pub fn has_warm_pool(&self) -> bool {
        matches!(self, TenantServer::Postgres(server) if !server.places_in_shared_schema())
    }

    /// The server's templates and warm pool, judged against `schema` (`None` on engines without them).
    pub async fn warm_pool_inventory(
        &self,
        schema: Option<&SchemaVersion>,
    ) -> Result<Option<WarmPoolInventory>> {
        match self {
            TenantServer::Postgres(server) => server.warm_pool_inventory(schema).await.map(Some),
            TenantServer::Sqlite(_) | TenantServer::Mariadb(_) => Ok(None),
        }
    }

    /// Fills the warm pool of `schema` up to `target` databases, making at most `max_creations` now.
    pub async fn fill_warm_pool(
        &self,
        schema: &SchemaVersion,
        target: usize,
        max_creations: usize,
        wait: LockWait,
    ) -> Result<FillReport> {
        match self {
            TenantServer::Postgres(server) => {
                server
                    .fill_warm_pool(schema, target, max_creations, wait)
                    .await
            }
            TenantServer::Sqlite(_) | TenantServer::Mariadb(_) => Ok(FillReport::default()),
        }
    }

    /// Drops templates and pool databases as `scope` says.
    pub async fn prune_warm_pool(
        &self,
        schema: Option<&SchemaVersion>,
        scope: PruneScope,
    ) -> Result<PruneReport> {
        match self {
            TenantServer::Postgres(server) => server.prune_warm_pool(schema, scope).await,
            TenantServer::Sqlite(_) | TenantServer::Mariadb(_) => Ok(PruneReport::default()),
        }
    }

    /// Builds the template of `schema` if it is missing. Returns whether this call built it.
    pub async fn ensure_template(&self, schema: &SchemaVersion) -> Result<bool> {
        match self {
            TenantServer::Postgres(server) => server.ensure_template(schema).await,
            TenantServer::Sqlite(_) | TenantServer::Mariadb(_) => Ok(false),
        }
    }

    /// Applies the tenant schema migrations in `directory` (sqlx's format) as the tenant, returning the latest
    /// applied version.
    pub async fn run_migrations(&self, tenant_url: &SecretString, directory: &Path) -> Result<i64> {
        let mut migrator = sqlx::migrate::Migrator::new(directory)
            .await
            .map_err(|error| {
                Error::Migration(format!(
                    "cannot read migrations in {}: {error}",
                    directory.display()
                ))
            })?;
        let latest = migrator
            .iter()
            .map(|migration| migration.version)
            .max()
            .unwrap_or(0);
        match self {
            TenantServer::Postgres(server) => {
                server.run_migrations(tenant_url, &mut migrator).await?
            }
            TenantServer::Sqlite(server) => server.run_migrations(tenant_url, &migrator).await?,
            TenantServer::Mariadb(server) => server.run_migrations(tenant_url, &migrator).await?,
        }
        Ok(latest)
    }

    /// The migrations the tenant database records (none when no migration ever ran), read as the tenant.
    pub async fn applied_migrations(
        &self,
        tenant_url: &SecretString,
    ) -> Result<Vec<AppliedMigration>> {
        match self {
            TenantServer::Postgres(server) => server.applied_migrations(tenant_url).await,
            TenantServer::Sqlite(server) => server.applied_migrations(tenant_url).await,
            TenantServer::Mariadb(server) => server.applied_migrations(tenant_url).await,
        }
    }

    /// Applies `schema`'s migrations as the tenant (each in its own transaction, under the migrator's lock on
    /// the database, so two migrators never apply one migration twice) and reads what the database records
    /// afterwards, whether or not every migration applied: a failure leaves the ones before it recorded.
    pub async fn migrate_tenant(
        &self,
        tenant_url: &SecretString,
        schema: &SchemaVersion,
    ) -> Result<(Result<()>, Vec<AppliedMigration>)> {
        match self {
            TenantServer::Postgres(server) => server.migrate_tenant(tenant_url, schema).await,
            TenantServer::Sqlite(server) => server.migrate_tenant(tenant_url, schema).await,
            TenantServer::Mariadb(server) => server.migrate_tenant(tenant_url, schema).await,
        }
    }

    /// Prepares each statement as the tenant, without running it: a statement naming a table or column the
    /// tenant schema does not have is refused with [`Error::SchemaMismatch`], before it can change anything.
    pub async fn check_statements_fit(
        &self,
        tenant_url: &SecretString,
        statements: &[ConfiguredStatement<'_>],
    ) -> Result<()> {
        match self {
            TenantServer::Postgres(server) => {
                server.check_statements_fit(tenant_url, statements).await
            }
            TenantServer::Sqlite(server) => {
                server.check_statements_fit(tenant_url, statements).await
            }
            TenantServer::Mariadb(server) => {
                server.check_statements_fit(tenant_url, statements).await
            }
        }
    }

    /// Runs the admin seed statement as the tenant with bound parameters `$1` email, `$2` password hash,
    /// `$3` invitation token hash. The statement must be an upsert, so running it twice converges.
    pub async fn seed_admin(&self, tenant_url: &SecretString, seed: &AdminSeed<'_>) -> Result<()> {
        match self {
            TenantServer::Postgres(server) => server.seed_admin(tenant_url, seed).await,
            TenantServer::Sqlite(server) => server.seed_admin(tenant_url, seed).await,
            TenantServer::Mariadb(server) => server.seed_admin(tenant_url, seed).await,
        }
    }
}

impl TenantServer {
    /// Writes tenantry's keys into tenantry's own settings table in the tenant database (`tenantry.settings` on
    /// PostgreSQL, `tenantry_settings` on SQLite; made on first write, so no tenant schema needs to provide it, and
    /// the tenant's application reads them there); keys under `owned_prefixes` that are no longer given are
    /// removed.
    pub async fn write_settings(
        &self,
        tenant_url: &SecretString,
        settings: &[(String, String)],
        owned_prefixes: &[&str],
    ) -> Result<()> {
        match self {
            TenantServer::Postgres(server) => {
                server
                    .write_settings(tenant_url, settings, owned_prefixes)
                    .await
            }
            TenantServer::Sqlite(server) => {
                server
                    .write_settings(tenant_url, settings, owned_prefixes)
                    .await
            }
            TenantServer::Mariadb(server) => {
                server
                    .write_settings(tenant_url, settings, owned_prefixes)
                    .await
            }
        }
    }

    /// Brings an existing tenant's database and role in line with the plan and with tenantry's access model:
    /// quotas, the installation's ownership of the database, the tenant role's grants, no PUBLIC access (a plan
    /// change, and `reconcile`). Nothing to do on engines without quotas or privileges.
    pub async fn apply_plan_limits(&self, spec: &TenantDatabaseSpec) -> Result<()> {
        match self {
            TenantServer::Postgres(server) => server.apply_plan_limits(spec).await,
            TenantServer::Mariadb(server) => server.apply_plan_limits(spec).await,
            TenantServer::Sqlite(_) => Ok(()),
        }
    }

    /// The cost labels recorded on each of the tenant's resources on this server, by kind.
    pub async fn resource_labels(
        &self,
        resource_name: &str,
    ) -> Result<Vec<(&'static str, Option<serde_json::Value>)>> {
        match self {
            TenantServer::Postgres(server) => server.resource_labels(resource_name).await,
            TenantServer::Sqlite(server) => server.resource_labels(resource_name).await,
            TenantServer::Mariadb(server) => server.resource_labels(resource_name).await,
        }
    }

    /// Logs in afresh with the tenant's URL and reads identity, privileges, schema version, the admin check
    /// (`(sql, email)`: a query returning a count, `$1` the admin's email) and a query's latency.
    pub async fn probe_tenant(
        &self,
        tenant_url: &SecretString,
        admin_check: Option<(&str, &str)>,
    ) -> Result<TenantProbe> {
        match self {
            TenantServer::Postgres(server) => server.probe_tenant(tenant_url, admin_check).await,
            TenantServer::Sqlite(server) => server.probe_tenant(tenant_url, admin_check).await,
            TenantServer::Mariadb(server) => server.probe_tenant(tenant_url, admin_check).await,
        }
    }

    /// [`TenantServer::probe_tenant`] over a login of its own, never a session an earlier phase parked (without
    /// the admin check): what a validation outside a job judges.
    pub async fn probe_tenant_afresh(&self, tenant_url: &SecretString) -> Result<TenantProbe> {
        match self {
            TenantServer::Postgres(server) => server.probe_tenant_afresh(tenant_url).await,
            TenantServer::Sqlite(server) => server.probe_tenant(tenant_url, None).await,
            TenantServer::Mariadb(server) => server.probe_tenant(tenant_url, None).await,
        }
    }

    /// The other tenant databases on this server the tenant's role can reach, by the server's privilege rules
    /// (`None` on engines without logins).
    pub async fn tenant_databases_open_to(&self, resource_name: &str) -> Result<Option<Reachable>> {
        match self {
            TenantServer::Postgres(server) => server
                .tenant_databases_open_to(resource_name)
                .await
                .map(Some),
            TenantServer::Mariadb(server) => server
                .tenant_databases_open_to(resource_name)
                .await
                .map(Some),
            TenantServer::Sqlite(_) => Ok(None),
        }
    }

    /// Tries to log in to another `database` on this server with the tenant's credentials (`None` on engines
    /// without logins, where a tenant is a file only tenantry's process can open).
    pub async fn tenant_login_to(
        &self,
        tenant_url: &SecretString,
        database: &str,
    ) -> Result<Option<LoginAttempt>> {
        match self {
            TenantServer::Postgres(server) => {
                server.tenant_login_to(tenant_url, database).await.map(Some)
            }
            TenantServer::Mariadb(server) => {
                server.tenant_login_to(tenant_url, database).await.map(Some)
            }
            TenantServer::Sqlite(_) => Ok(None),
        }
    }
}

/// `"name"` for SQL, for names that already passed the slug-derived identifier rule.
pub(crate) fn quote_identifier(name: &str) -> Result<String> {
    let safe = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !safe {
        return Err(Error::Refused(format!(
            "{name:?} is not a valid tenant identifier"
        )));
    }
    Ok(format!("\"{name}\""))
}

/// A SQL string literal: single quotes doubled (PostgreSQL's standard_conforming_strings is on).
pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn migration_error(error: sqlx::migrate::MigrateError) -> Error {
    match error {
        sqlx::migrate::MigrateError::Execute(inner) if is_connection_failure(&inner) => {
            Error::Transient(format!(
                "migration could not reach the database: {}",
                crate::error::describe(&inner)
            ))
        }
        sqlx::migrate::MigrateError::Execute(inner)
        | sqlx::migrate::MigrateError::ExecuteMigration(inner, _) => Error::Migration(format!(
            "migration failed: {}",
            crate::error::describe(&inner)
        )),
        other => Error::Migration(format!("migration failed: {other}")),
    }
}

fn is_connection_failure(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut)
}

/// The refusal to touch `what`, which is not this installation's.
pub(crate) fn foreign_error(what: &str, ownership: &Ownership) -> Error {
    match ownership {
        Ownership::Foreign(id) => Error::Foreign(format!(
            "{what} belongs to another tenantry installation ({id}); it was left untouched"
        )),
        _ => Error::Foreign(format!(
            "{what} exists but carries no mark of this tenantry installation; it was left untouched"
        )),
    }
}
