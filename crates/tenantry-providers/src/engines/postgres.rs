//! The PostgreSQL engine: a login role and a database per tenant, created through the server's admin connection.
//!
//! A tenant database starts as a copy of a template database that already holds the tenant schema
//! ([`warm_pool`]), or, faster still, is a copy made ahead of time and claimed by renaming it. Admin sessions are
//! pooled per server ([`sessions`]).

mod logins;
mod moves;
mod sessions;
mod shared_schema;
mod tenant_side;
mod warm_pool;

pub use logins::{alternate_login, login_of_url, tenant_logins, tenant_of_login};
pub use moves::{MoveObject, SequenceState, MOVE_OBJECT_PREFIX};
pub use sessions::PostgresSessions;
pub use shared_schema::SharedIsolation;
pub use tenant_side::tenant_login_elsewhere;
pub use warm_pool::{
    CatalogObject, DatabaseOrigin, FillReport, LockWait, PruneReport, PruneScope, WarmPoolInventory,
};

use super::foreign_error;
use super::{
    migration_error, quote_identifier, quote_literal, seed_error, AdminSeed, Installation,
    Inventory, Ownership, TenantAccess, TenantDatabaseSpec, TenantResource,
};
use crate::credentials::{scram_sha256_verifier, SecretString};
use crate::{failpoint, Error, Result};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, Postgres};
use sqlx::{ConnectOptions, Connection, Executor};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A PostgreSQL server reached through its admin connection.
#[derive(Clone)]
pub struct PostgresServer {
    admin: PgConnectOptions,
    /// The admin URL's hash: which pool of admin sessions this server uses.
    admin_url_key: [u8; 32],
    /// Whose objects this handle makes, and which it may touch.
    installation: Installation,
    /// The platform's admin pools and parked tenant sessions, shared with every other server handle it makes.
    sessions: Arc<PostgresSessions>,
    /// `Some`: tenants live as schemas in the server's shared database (`isolation = "schema"`), see
    /// `shared_schema.rs`; `None`: each in a database of its own.
    shared: Option<shared_schema::SharedPlacement>,
}

impl std::fmt::Debug for PostgresServer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "PostgresServer({}:{})",
            self.admin.get_host(),
            self.admin.get_port()
        )
    }
}

fn parse_url(url: &SecretString, what: &str) -> Result<PgConnectOptions> {
    // sqlx reads any scheme as PostgreSQL (a `sqlite:///dir` URL became a database named "dir" on localhost).
    let scheme_is_postgres = ["postgres://", "postgresql://"]
        .iter()
        .any(|scheme| url.expose().starts_with(scheme));
    if !scheme_is_postgres {
        return Err(Error::AdminConnection(format!(
            "the {what} must start with postgres:// or postgresql://"
        )));
    }
    PgConnectOptions::from_str(url.expose())
        // Statements can carry a password verifier: never log them, slow ones included.
        .map(|options| {
            options
                .log_statements(tracing::log::LevelFilter::Off)
                .log_slow_statements(tracing::log::LevelFilter::Off, Duration::ZERO)
        })
        .map_err(|_| Error::AdminConnection(format!("the {what} is not a valid postgres:// URL")))
}

async fn connect(options: &PgConnectOptions, what: &str) -> Result<PgConnection> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(Error::from_server(
            &format!("cannot connect to the {what}"),
            error,
        )),
        Err(_) => Err(Error::Transient(format!(
            "connecting to the {what} timed out"
        ))),
    }
}

/// A refused admin login is a configuration problem (`E_ADMIN_CONN_UNRESOLVED`), not a refused statement.
fn as_admin_connection_error(error: Error) -> Error {
    match error {
        Error::Refused(message) => Error::AdminConnection(message),
        other => other,
    }
}

/// The SQLSTATE of a database error, if it is one.
fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(database_error) => {
            database_error.code().map(|code| code.into_owned())
        }
        _ => None,
    }
}

/// A `tenant_*` object as the catalog shows it: name, kind, the database's owner, the role's mark, and whether
/// PUBLIC may connect.
type TenantCatalogRow = (String, String, Option<String>, Option<String>, bool);

/// The NOLOGIN role that owns (at the database level) every database an installation makes on a server: tenant
/// databases, templates and pool databases. A tenant role is granted CONNECT, CREATE and TEMPORARY on its database
/// and owns the objects inside it, but not the database itself, so it cannot open it to PUBLIC, lift the plan's
/// connection limit, or rename or comment on it. The role's name carries the installation id, so the owner of a
/// database says whose it is from the moment `CREATE DATABASE` makes it.
pub(crate) fn owner_role(installation: &Installation) -> String {
    format!("tenantry_owner_{}", installation.id())
}

/// The installation id in an owner role's name (`None`: not an owner role).
fn installation_of_owner(role: &str) -> Option<&str> {
    role.strip_prefix("tenantry_owner_")
        .filter(|id| tenantry_registry::is_installation_id(id))
}

/// The phase whose apply `create_database` is: its failpoints are named `database_created.<point>`.
const CREATE_PHASE: &str = "database_created";
/// The failpoints inside `drop_database` (the undo of `database_created`, and the purge's `database_dropped`).
const DROP_OPERATION: &str = "drop_database";

/// Whether a `CREATE DATABASE` or `CREATE ROLE` (or a rename to that name) failed because the name is taken: by
/// an earlier attempt (42P04, 42710), or by another runner of the same phase at the same moment, whose catalog row
/// was not committed when this statement checked the name (PostgreSQL then reports the unique index instead,
/// 23505). The caller adopts what is there, if it is this installation's.
fn already_exists(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(database_error) = error else {
        return false;
    };
    match database_error.code().as_deref() {
        Some("42P04" | "42710") => true,
        Some("23505") => matches!(
            database_error.constraint(),
            Some("pg_database_datname_index" | "pg_authid_rolname_index")
        ),
        _ => false,
    }
}

/// Runs statements in order, taking "already exists" (a concurrent or earlier attempt made it) as done.
async fn execute_converging(
    connection: &mut PgConnection,
    statements: &[String],
    context: &str,
) -> Result<()> {
    for statement in statements {
        match connection.execute(statement.as_str()).await {
            Ok(_) => {}
            Err(error) if already_exists(&error) => {}
            Err(error) => return Err(Error::from_server(context, error)),
        }
    }
    Ok(())
}

/// Runs `statements` as one simple query: one round trip, and (PostgreSQL's rule for a multi-statement query
/// outside a transaction block) one transaction, so either all of them hold or none. Only for statements that
/// never meet an object that already exists: [`execute_converging`] is for those.
async fn execute_batch(
    connection: &mut PgConnection,
    statements: &[String],
    context: &str,
) -> Result<()> {
    connection
        .execute(statements.join(";\n").as_str())
        .await
        .map(|_| ())
        .map_err(|error| Error::from_server(context, error))
}

impl PostgresServer {
    pub fn from_admin_url(
        admin_url: &SecretString,
        installation: &Installation,
        sessions: Arc<PostgresSessions>,
    ) -> Result<PostgresServer> {
        Ok(PostgresServer {
            admin: parse_url(admin_url, "server's admin URL")?,
            admin_url_key: sessions::url_key(admin_url),
            installation: installation.clone(),
            sessions,
            shared: None,
        })
    }

    /// Whose a database is, from its owner (`database_owner`) or, for a database its own role owns (made before
    /// installation ids), from that role's mark.
    fn judge_database(&self, database_owner: Option<&str>, owner_mark: Option<&str>) -> Ownership {
        match database_owner.and_then(installation_of_owner) {
            Some(id) => self.installation.judge_id(Some(id)),
            None => self.installation.judge_mark(owner_mark),
        }
    }

    /// Takes the database `resource_name`, which a `CREATE DATABASE` found already there, as this job's: only if it
    /// is this installation's (`Error::Foreign` otherwise).
    async fn adopt_database(&self, resource_name: &str) -> Result<()> {
        let inventory = self.inventory(resource_name).await?;
        match inventory.ownership {
            Ownership::Ours => Ok(()),
            // Gone again meanwhile (a concurrent undo): the phase runs again and makes it.
            _ if !inventory.database => Err(Error::Transient(format!(
                "{resource_name} was dropped while it was being created"
            ))),
            other => Err(foreign_error(
                &format!("{resource_name} on this server"),
                &other,
            )),
        }
    }

    /// Whose a tenant's pieces are, together: `database` is the owner of its database (`None`: no database),
    /// `role` its role's mark (`None`: no role).
    pub(super) fn judge_tenant(
        &self,
        database: Option<Option<&str>>,
        role: Option<Option<&str>>,
    ) -> Ownership {
        let role_mark = role.flatten();
        let database = database.map(|owner| self.judge_database(owner, role_mark));
        let role = role.map(|mark| self.installation.judge_mark(mark));
        Ownership::combine(database.into_iter().chain(role))
    }

    /// Makes this installation's owner role if it is missing (converging: concurrent makers agree).
    async fn ensure_owner_role(&self, connection: &mut PgConnection) -> Result<()> {
        let owner = quote_identifier(&owner_role(&self.installation))?;
        execute_converging(
            connection,
            &[format!(
                "CREATE ROLE {owner} NOLOGIN; COMMENT ON ROLE {owner} IS {}",
                quote_literal(&self.installation.mark("owner").to_string())
            )],
            "making the installation's owner role",
        )
        .await
    }

    /// Makes the NOLOGIN role `quoted` with this installation's mark, in one transaction. A role of that name made
    /// meanwhile by someone else is refused, not adopted.
    async fn create_marked_role(
        &self,
        connection: &mut PgConnection,
        name: &str,
        what: &str,
        context: &str,
    ) -> Result<()> {
        // The tenant role, or its alternate login.
        let quoted = logins::quote_login(name)?;
        execute_converging(
            connection,
            &[format!(
                "CREATE ROLE {quoted} NOLOGIN; COMMENT ON ROLE {quoted} IS {}",
                quote_literal(&self.installation.mark(what).to_string())
            )],
            context,
        )
        .await?;
        let mark: Option<String> = sqlx::query_scalar(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
        )
        .bind(name)
        .fetch_optional(&mut *connection)
        .await
        .map_err(|error| Error::from_server("reading the server catalog", error))?
        .flatten();
        match self.installation.judge_mark(mark.as_deref()) {
            Ownership::Ours => Ok(()),
            other => Err(foreign_error(&format!("role {name}"), &other)),
        }
    }

    fn admin_pool(&self) -> PgPool {
        self.sessions.admin_pool(self.admin_url_key, &self.admin)
    }

    /// An admin session from the platform's pool for the server.
    async fn admin_connection(&self) -> Result<PoolConnection<Postgres>> {
        self.admin_pool()
            .acquire()
            .await
            .map_err(|error| {
                Error::from_server("cannot connect to the server's admin connection", error)
            })
            .map_err(as_admin_connection_error)
    }

    /// A fresh admin session of its own, for work that holds a session-level lock or must connect to another
    /// database than the admin URL's.
    async fn dedicated_admin_connection(&self, database: Option<&str>) -> Result<PgConnection> {
        let options = match database {
            Some(database) => self.admin.clone().database(database),
            None => self.admin.clone(),
        };
        connect(&options, "server's admin connection")
            .await
            .map_err(as_admin_connection_error)
    }

    pub async fn check_admin_connection(&self) -> Result<()> {
        let mut connection = self.admin_connection().await?;
        connection
            .execute("SELECT 1")
            .await
            .map_err(|error| Error::from_server("admin connection", error))?;
        Ok(())
    }

    /// The server's databases that are neither tenants' nor tenantry's and still admit PUBLIC (PostgreSQL's
    /// default for `postgres` and `template1`): any tenant role can log in to them and read the shared catalogs.
    pub async fn databases_open_to_public(&self) -> Result<Vec<String>> {
        let mut connection = self.admin_connection().await?;
        sqlx::query_scalar(
            "SELECT datname::text FROM pg_database
             WHERE datallowconn AND has_database_privilege('public', oid, 'CONNECT')
               AND datname NOT LIKE 'tenant\\_%' AND datname NOT LIKE 'tenantry\\_%'
             ORDER BY 1",
        )
        .fetch_all(&mut *connection)
        .await
        .map_err(|error| Error::from_server("reading database privileges", error))
    }

    /// Takes CONNECT and TEMPORARY on `database` away from PUBLIC. Roles granted CONNECT by name, the owner and
    /// superusers keep their way in.
    pub async fn revoke_public_connect(&self, database: &str) -> Result<()> {
        let mut connection = self.admin_connection().await?;
        let quoted = format!("\"{}\"", database.replace('"', "\"\""));
        connection
            .execute(format!("REVOKE CONNECT, TEMPORARY ON DATABASE {quoted} FROM PUBLIC").as_str())
            .await
            .map_err(|error| Error::from_server(&format!("closing {database} to PUBLIC"), error))?;
        Ok(())
    }

    /// Takes CONNECT, CREATE and TEMPORARY on the tenant database `resource_name` away from `role`, which was
    /// granted them by hand (`tenant_access` names such roles).
    pub async fn revoke_database_access(&self, resource_name: &str, role: &str) -> Result<()> {
        let name = quote_identifier(resource_name)?;
        let quoted_role = format!("\"{}\"", role.replace('"', "\"\""));
        let mut connection = self.admin_connection().await?;
        connection
            .execute(format!("REVOKE ALL ON DATABASE {name} FROM {quoted_role}").as_str())
            .await
            .map_err(|error| {
                Error::from_server(&format!("closing {resource_name} to role {role}"), error)
            })?;
        Ok(())
    }

    /// The database the admin URL names (PostgreSQL's default: the user's name).
    pub fn admin_database(&self) -> String {
        self.admin
            .get_database()
            .unwrap_or(self.admin.get_username())
            .to_owned()
    }

    pub async fn cluster_identity(&self) -> Result<String> {
        let mut connection = self.admin_connection().await?;
        let identifier: Option<i64> =
            sqlx::query_scalar("SELECT system_identifier FROM pg_control_system()")
                .fetch_one(&mut *connection)
                .await
                .ok();
        Ok(match identifier {
            Some(identifier) => format!("PostgreSQL system identifier {identifier}"),
            None => format!(
                "PostgreSQL at {}:{}",
                self.admin.get_host(),
                self.admin.get_port()
            ),
        })
    }

    pub fn tenant_url(&self, resource_name: &str, password: &SecretString) -> SecretString {
        self.login_url(resource_name, resource_name, password)
    }

    pub async fn inventory(&self, resource_name: &str) -> Result<Inventory> {
        if self.shared.is_some() {
            return self.shared_inventory(resource_name).await;
        }
        let mut connection = self.admin_connection().await?;
        let (database, database_owner, role, role_mark): (
            bool,
            Option<String>,
            bool,
            Option<String>,
        ) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1),
                    (SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1),
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1),
                    (SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1)",
        )
        .bind(resource_name)
        .fetch_one(&mut *connection)
        .await
        .map_err(|error| Error::from_server("reading the server catalog", error))?;
        Ok(Inventory {
            database,
            role,
            ownership: self.judge_tenant(
                database.then_some(database_owner.as_deref()),
                role.then_some(role_mark.as_deref()),
            ),
        })
    }

    /// The tenant role's login, password (as a SCRAM verifier; `None` keeps the one it has) and quotas, for a role
    /// that exists.
    fn role_statements(
        name: &str,
        spec: &TenantDatabaseSpec,
        password: Option<&SecretString>,
    ) -> Vec<String> {
        let password = password
            .map(|password| {
                format!(
                    " PASSWORD {}",
                    quote_literal(&scram_sha256_verifier(password))
                )
            })
            .unwrap_or_default();
        vec![
            format!(
                "ALTER ROLE {name} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS CONNECTION LIMIT {}{password}",
                spec.connection_limit,
            ),
            format!(
                "ALTER ROLE {name} SET statement_timeout = {}",
                spec.statement_timeout_ms
            ),
        ]
    }

    /// Brings the existing role `name` in line: login, password, quotas.
    async fn set_up_role(
        &self,
        name: &str,
        spec: &TenantDatabaseSpec,
        password: &SecretString,
        context: &str,
    ) -> Result<()> {
        let mut connection = self.admin_connection().await?;
        execute_converging(
            &mut connection,
            &Self::role_statements(name, spec, Some(password)),
            context,
        )
        .await
    }

    /// The database owned by the installation's owner role, the plan's connection limit, nothing for PUBLIC,
    /// CONNECT, CREATE and TEMPORARY for the tenant role, and the installation's mark on both (the labels stay
    /// in the registry: every role on the server can read comments).
    fn access_statements(&self, name: &str, spec: &TenantDatabaseSpec) -> Result<Vec<String>> {
        let owner = quote_identifier(&owner_role(&self.installation))?;
        let mark = quote_literal(&self.installation.mark("tenant").to_string());
        Ok(vec![
            format!("ALTER DATABASE {name} OWNER TO {owner}"),
            format!(
                "ALTER DATABASE {name} CONNECTION LIMIT {}",
                spec.connection_limit
            ),
            format!("REVOKE ALL ON DATABASE {name} FROM PUBLIC"),
            format!("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {name} TO {name}"),
            format!("COMMENT ON DATABASE {name} IS {mark}"),
            format!("COMMENT ON ROLE {name} IS {mark}"),
        ])
    }

    /// Creates the tenant's role and database, or brings existing ones in line. With a schema version, the
    /// database is a claimed warm-pool database or a copy of the schema's template, so it already holds the schema
    /// and its objects belong to the tenant; without one, it is empty. A database or role of that name that is not
    /// this installation's is refused (`Error::Foreign`), never adopted.
    pub async fn create_database(
        &self,
        spec: &TenantDatabaseSpec,
        password: &SecretString,
        schema: Option<&super::SchemaVersion>,
    ) -> Result<DatabaseOrigin> {
        if self.shared.is_some() {
            return self.create_shared_schema(spec, password).await;
        }
        let name = quote_identifier(&spec.resource_name)?;
        let context = format!("creating {}", spec.resource_name);
        failpoint(CREATE_PHASE, "started").await?;
        let lookup = self.creation_lookup(&spec.resource_name, schema).await?;
        if matches!(lookup.ownership, Ownership::Foreign(_))
            || (lookup.ownership == Ownership::Unmarked && (lookup.database || lookup.role))
        {
            return Err(foreign_error(
                &format!("{} on this server", spec.resource_name),
                &lookup.ownership,
            ));
        }
        if !lookup.owner_role {
            let mut connection = self.admin_connection().await?;
            self.ensure_owner_role(&mut connection).await?;
        }
        failpoint(CREATE_PHASE, "looked_up").await?;
        if !lookup.database && !lookup.role {
            if let Some(claimed) = self.claim_pool_database(spec, password, &lookup).await? {
                return Ok(claimed);
            }
        }
        if !lookup.role {
            // The role first, marked in the same transaction; the login and password follow. A role another runner
            // of this phase made meanwhile is adopted if it carries this installation's mark.
            let mut connection = self.admin_connection().await?;
            self.create_marked_role(&mut connection, &spec.resource_name, "tenant", &context)
                .await?;
            drop(connection);
            failpoint(CREATE_PHASE, "role_created").await?;
        }
        let origin = if lookup.database {
            // Made by an earlier attempt (this installation's: checked above), which may have stopped before
            // opening it: nothing can connect to it, to settle it or to migrate, until it is open.
            self.open_to_owner_only(&name, &context).await?;
            self.set_up_role(&name, spec, password, &context).await?;
            DatabaseOrigin::Existing
        } else {
            // Setting a password costs the server a few milliseconds (it checks the verifier against an empty
            // password), so it runs beside the copy, on another admin session.
            let (created, role) = tokio::join!(
                self.create_from_template(spec, schema),
                self.set_up_role(&name, spec, password, &context)
            );
            role?;
            created?
        };
        match origin {
            DatabaseOrigin::Template => {
                self.settle_inside(&spec.resource_name, &name, true, false)
                    .await?
            }
            // An earlier attempt may have stopped before handing the template's objects or the public schema over.
            DatabaseOrigin::Existing => {
                self.settle_inside(&spec.resource_name, &name, lookup.template_owner, true)
                    .await?
            }
            DatabaseOrigin::Plain { .. } => {
                self.settle_inside(&spec.resource_name, &name, false, true)
                    .await?
            }
            DatabaseOrigin::WarmPool { .. } | DatabaseOrigin::SharedSchema { .. } => {}
        }
        failpoint(CREATE_PHASE, "settled").await?;
        let mut connection = self.admin_connection().await?;
        execute_converging(
            &mut connection,
            &self.access_statements(&name, spec)?,
            &context,
        )
        .await?;
        self.log_in_ahead(&spec.resource_name, password);
        Ok(origin)
    }

    /// Inside the tenant's database, as the admin: the template's objects to the tenant role (`reassign`), and the
    /// `public` schema to it (`public_schema`), since the database's owner is the installation's role and the
    /// tenant could not create in `public` otherwise. One session, one round trip.
    async fn settle_inside(
        &self,
        resource_name: &str,
        quoted_name: &str,
        reassign: bool,
        public_schema: bool,
    ) -> Result<()> {
        let mut statements = Vec::new();
        if reassign {
            statements.push(format!(
                "REASSIGN OWNED BY {} TO {quoted_name}",
                quote_identifier(warm_pool::TEMPLATE_OWNER)?
            ));
        }
        if public_schema {
            // The operator's schema may have dropped `public`.
            statements.push(format!(
                "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public') THEN
                     ALTER SCHEMA public OWNER TO {quoted_name};
                 END IF; END $$"
            ));
        }
        if statements.is_empty() {
            return Ok(());
        }
        let mut connection = self.dedicated_admin_connection(Some(resource_name)).await?;
        let settled = connection
            .execute(statements.join(";\n").as_str())
            .await
            .map_err(|error| {
                Error::from_server(
                    &format!("handing {resource_name}'s objects to its role"),
                    error,
                )
            });
        let _ = connection.close().await;
        settled.map(|_| ())
    }

    /// The tenant's first session, started now for the migrations that come next.
    fn log_in_ahead(&self, resource_name: &str, password: &SecretString) {
        let url = self.tenant_url(resource_name, password);
        if let Ok(options) = parse_url(&url, "tenant's connection URL") {
            self.sessions.log_in_ahead(&url, options);
        }
    }

    pub async fn drop_database(&self, resource_name: &str) -> Result<()> {
        let name = quote_identifier(resource_name)?;
        let inventory = self.inventory(resource_name).await?;
        if let Ownership::Foreign(_) = inventory.ownership {
            return Err(foreign_error(resource_name, &inventory.ownership));
        }
        let mut connection = self.admin_connection().await?;
        let context = format!("dropping {resource_name}");
        connection
            .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await
            .map_err(|error| Error::from_server(&context, error))?;
        failpoint(DROP_OPERATION, "database_dropped").await?;
        // A schema tenant's pieces in the shared database, whichever placement this handle has: a purge of an
        // orphan does not know which the slug had. Its logins' sessions end first, so none holds the schema's
        // locks.
        if inventory.role {
            Self::end_sessions(&mut connection, &tenant_logins(resource_name)).await?;
        }
        // Handed back first: the shared half takes admin sessions of its own, and purges run several at once.
        drop(connection);
        self.drop_shared_schema(resource_name, inventory.role)
            .await?;
        let mut connection = self.admin_connection().await?;
        // The alternate login first: while the tenant role stands, its inventory says the pair is ours.
        let alternate = logins::quote_login(&alternate_login(resource_name))?;
        for role in [alternate, name] {
            connection
                .execute(format!("DROP ROLE IF EXISTS {role}").as_str())
                .await
                .map_err(|error| Error::from_server(&context, error))?;
        }
        Ok(())
    }

    /// Locks the tenant's logins (its role and, after a rotation, the alternate) out and ends their sessions.
    pub async fn disable_login(&self, resource_name: &str) -> Result<()> {
        quote_identifier(resource_name)?;
        self.disable_logins(resource_name).await
    }

    /// Ends every session of the tenant's role (its applications' and tenantry's own), its login kept: an in-place
    /// restore starts with no session holding a lock on the tables it drops.
    pub async fn end_tenant_sessions(&self, resource_name: &str) -> Result<()> {
        quote_identifier(resource_name)?;
        let mut connection = self.admin_connection().await?;
        Self::end_sessions(&mut connection, &tenant_logins(resource_name)).await
    }

    /// Undoes [`PostgresServer::disable_login`]: the tenant's logins that no rotation retired may log in again.
    /// Only a role marked as this installation's is touched (`Error::Foreign` otherwise, unmarked included:
    /// nothing says it is ours to open).
    pub async fn enable_login(&self, resource_name: &str) -> Result<()> {
        quote_identifier(resource_name)?;
        let inventory = self.inventory(resource_name).await?;
        if !inventory.role {
            return Err(Error::Refused(format!(
                "there is no role {resource_name} to enable; ensuring the database creates it"
            )));
        }
        if inventory.ownership != Ownership::Ours {
            return Err(foreign_error(resource_name, &inventory.ownership));
        }
        self.enable_logins(resource_name).await
    }

    /// The tenant role's login and quotas and who may connect to its database, as the catalog holds them.
    pub async fn tenant_access(&self, resource_name: &str) -> Result<TenantAccess> {
        let mut connection = self.admin_connection().await?;
        // The tenant can log in when either of its logins can (after a rotation, the alternate).
        let role: Option<(bool, i32, Option<String>)> = sqlx::query_as(
            "SELECT r.rolcanlogin OR EXISTS (SELECT 1 FROM pg_roles a WHERE a.rolname = $2 AND a.rolcanlogin),
                    r.rolconnlimit,
                    (SELECT substr(setting, length('statement_timeout=') + 1)
                     FROM pg_db_role_setting s, unnest(s.setconfig) AS setting
                     WHERE s.setrole = r.oid AND s.setdatabase = 0 AND setting LIKE 'statement\\_timeout=%'
                     LIMIT 1)
             FROM pg_roles r WHERE r.rolname = $1",
        )
        .bind(resource_name)
        .bind(alternate_login(resource_name))
        .fetch_optional(&mut *connection)
        .await
        .map_err(|error| Error::from_server("reading the server catalog", error))?;
        // A NULL ACL is PostgreSQL's default, which admits PUBLIC: `acldefault` spells it out. The database's owner
        // (the installation's role) and the tenant's own role are expected; anyone else is a widening.
        let database: Option<(i32, Vec<String>)> = sqlx::query_as(
            "SELECT d.datconnlimit,
                    ARRAY(SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END
                          FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) AS a
                          WHERE a.privilege_type = 'CONNECT' AND a.grantee <> d.datdba
                            AND (a.grantee = 0 OR pg_get_userbyid(a.grantee) <> d.datname)
                          ORDER BY 1)
             FROM pg_database d WHERE d.datname = $1",
        )
        .bind(resource_name)
        .fetch_optional(&mut *connection)
        .await
        .map_err(|error| Error::from_server("reading database privileges", error))?;
        if self.shared.is_some() {
            return Ok(TenantAccess {
                login: role.as_ref().map(|(login, _, _)| *login),
                role_connection_limit: role.as_ref().map(|(_, limit, _)| *limit),
                statement_timeout: role.and_then(|(_, _, timeout)| timeout),
                database_connection_limit: None,
                other_connectors: self.shared_schema_users(resource_name).await?,
                file_mode: None,
            });
        }
        Ok(TenantAccess {
            login: role.as_ref().map(|(login, _, _)| *login),
            role_connection_limit: role.as_ref().map(|(_, limit, _)| *limit),
            statement_timeout: role.and_then(|(_, _, timeout)| timeout),
            database_connection_limit: database.as_ref().map(|(limit, _)| *limit),
            other_connectors: database.map(|(_, others)| others).unwrap_or_default(),
            file_mode: None,
        })
    }

    pub async fn list_tenant_resources(&self) -> Result<Vec<TenantResource>> {
        let mut connection = self.admin_connection().await?;
        // Per object: its owner (databases), its role's mark, and whether PUBLIC may connect (databases).
        let rows: Vec<TenantCatalogRow> = sqlx::query_as(
            "SELECT d.datname::text, 'database', pg_get_userbyid(d.datdba)::text,
                    (SELECT shobj_description(r.oid, 'pg_authid') FROM pg_roles r WHERE r.rolname = d.datname),
                    d.datallowconn AND has_database_privilege('public', d.oid, 'CONNECT')
             FROM pg_database d WHERE d.datname LIKE 'tenant\\_%'
             UNION ALL
             SELECT rolname::text, 'role', NULL, shobj_description(oid, 'pg_authid'), false
             FROM pg_roles WHERE rolname LIKE 'tenant\\_%'
             ORDER BY 1, 2",
        )
        .fetch_all(&mut *connection)
        .await
        .map_err(|error| Error::from_server("reading the server catalog", error))?;
        let ours = owner_role(&self.installation);
        let schemas = self.list_shared_schemas().await?;
        Ok(rows
            .into_iter()
            .map(|(name, kind, database_owner, role_mark, public_connect)| {
                let mut drift = Vec::new();
                let (kind, ownership) = if kind == "database" {
                    if public_connect {
                        drift.push("admits PUBLIC (any role on the server may connect)".to_owned());
                    }
                    if database_owner.as_deref() != Some(ours.as_str()) {
                        drift.push(format!(
                            "owned by {}, not by {ours} (the tenant could change its limits and privileges)",
                            database_owner.as_deref().unwrap_or("an unknown role")
                        ));
                    }
                    (
                        "database",
                        self.judge_database(database_owner.as_deref(), role_mark.as_deref()),
                    )
                } else {
                    ("role", self.installation.judge_mark(role_mark.as_deref()))
                };
                TenantResource {
                    name,
                    kind,
                    ownership,
                    drift,
                }
            })
            .chain(schemas)
            .collect())
    }

    /// A session as the tenant: the one an earlier phase of this job parked, or a new one.
    pub(super) async fn tenant_connection(
        &self,
        tenant_url: &SecretString,
    ) -> Result<PgConnection> {
        if let Some(parked) = self.sessions.take_parked(tenant_url).await {
            return Ok(parked);
        }
        let options = parse_url(tenant_url, "tenant's connection URL")?;
        connect(&options, "tenant database").await
    }

    pub async fn run_migrations(
        &self,
        tenant_url: &SecretString,
        migrator: &mut sqlx::migrate::Migrator,
    ) -> Result<()> {
        let mut connection = self.tenant_connection(tenant_url).await?;
        // A database from the template or the pool is already at the latest version: confirming that is one read,
        // where the migrator would also take its lock and make sure of its table first.
        let migrated = match Self::already_migrated(&mut connection, migrator).await {
            true => Ok(()),
            false if self.shared.is_some() => Self::migrate_schema(&mut connection, migrator).await,
            false => migrator.run_direct(&mut connection).await,
        };
        match migrated {
            Ok(()) => {
                // Provisioning seeds the first admin right after migrating: the session waits for it.
                self.sessions.park(tenant_url, connection);
                Ok(())
            }
            Err(error) => {
                let _ = connection.close().await;
                Err(migration_error(error))
            }
        }
    }

    /// Migrates a schema tenant: the migrator's own lock is one per database, which in the shared database would
    /// make every schema tenant's migrations wait for every other's; this lock is the tenant's schema's alone (its
    /// role's name, which is its schema's), held for the run as the migrator's would be.
    async fn migrate_schema(
        connection: &mut PgConnection,
        migrator: &mut sqlx::migrate::Migrator,
    ) -> std::result::Result<(), sqlx::migrate::MigrateError> {
        const LOCK: &str =
            "SELECT pg_advisory_lock(hashtextextended('tenantry_migrations ' || current_user, 0))";
        const UNLOCK: &str =
            "SELECT pg_advisory_unlock(hashtextextended('tenantry_migrations ' || current_user, 0))";
        connection.execute(LOCK).await?;
        migrator.set_locking(false);
        migrator.run_direct(&mut *connection).await?;
        connection.execute(UNLOCK).await?;
        Ok(())
    }

    /// The tenant database's migration records, read as the tenant on a connection of its own.
    pub async fn applied_migrations(
        &self,
        tenant_url: &SecretString,
    ) -> Result<Vec<super::AppliedMigration>> {
        let options = parse_url(tenant_url, "tenant's connection URL")?;
        let mut connection = connect(&options, "tenant database").await?;
        let rows = sqlx::query_as(super::schema_version::APPLIED_MIGRATIONS_SQL)
            .fetch_all(&mut connection)
            .await;
        let _ = connection.close().await;
        super::schema_version::applied_from(rows)
    }

    /// Applies `schema` as the tenant and reads the records after (see `TenantServer::migrate_tenant`).
    pub async fn migrate_tenant(
        &self,
        tenant_url: &SecretString,
        schema: &super::SchemaVersion,
    ) -> Result<(Result<()>, Vec<super::AppliedMigration>)> {
        let options = parse_url(tenant_url, "tenant's connection URL")?;
        let mut connection = connect(&options, "tenant database").await?;
        let migrated = schema
            .migrator
            .run_direct(&mut connection)
            .await
            .map_err(super::migration_error);
        let rows = sqlx::query_as(super::schema_version::APPLIED_MIGRATIONS_SQL)
            .fetch_all(&mut connection)
            .await;
        let _ = connection.close().await;
        Ok((migrated, super::schema_version::applied_from(rows)?))
    }

    /// Whether the database records exactly the migrator's migrations, each applied with the same checksum. Any
    /// doubt (no table yet, a failed or missing or changed migration) answers false, and the migrator decides.
    async fn already_migrated(
        connection: &mut PgConnection,
        migrator: &sqlx::migrate::Migrator,
    ) -> bool {
        let Ok(applied) = sqlx::query_as::<_, (i64, Vec<u8>, bool)>(
            "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&mut *connection)
        .await
        else {
            return false;
        };
        let wanted: Vec<(i64, &[u8])> = migrator
            .iter()
            .filter(|migration| !migration.migration_type.is_down_migration())
            .map(|migration| (migration.version, migration.checksum.as_ref()))
            .collect();
        applied.len() == wanted.len()
            && applied.iter().zip(&wanted).all(
                |((version, checksum, success), (wanted_version, wanted_checksum))| {
                    *success && version == wanted_version && checksum.as_slice() == *wanted_checksum
                },
            )
    }

    pub async fn seed_admin(&self, tenant_url: &SecretString, seed: &AdminSeed<'_>) -> Result<()> {
        let mut connection = self.tenant_connection(tenant_url).await?;
        let seeded = sqlx::query(seed.sql)
            .bind(seed.email)
            .bind(seed.password_hash)
            .bind(seed.invitation_token_hash)
            .execute(&mut connection)
            .await
            .map_err(|error| seed_error(Error::from_server("seeding the first admin", error)));
        match seeded {
            Ok(_) => {
                // Provisioning writes the tenant's settings right after seeding: the session waits for it.
                self.sessions.park(tenant_url, connection);
                Ok(())
            }
            Err(error) => {
                let _ = connection.close().await;
                Err(error)
            }
        }
    }
}
