//! The PostgreSQL engine: a login role and a database per tenant, created through the server's admin connection.
//!
//! A tenant database starts as a copy of a template database that already holds the tenant schema
//! ([`warm_pool`]), or, faster still, is a copy made ahead of time and claimed by renaming it. Admin sessions are
//! pooled per server ([`sessions`]).

mod naive_script;
mod sessions;
mod tenant_side;
mod warm_pool;

pub use naive_script::NaiveScript;
pub use tenant_side::tenant_login_elsewhere;
pub use warm_pool::{
    CatalogObject, DatabaseOrigin, FillReport, LockWait, PruneReport, PruneScope, WarmPoolInventory,
};

use super::{
    migration_error, quote_identifier, quote_literal, seed_error, AdminSeed, Inventory,
    TenantDatabaseSpec, TenantResource,
};
use crate::credentials::{scram_sha256_verifier, SealingKey, SecretString};
use crate::{Error, Result};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, Postgres};
use sqlx::{ConnectOptions, Connection, Executor};
use std::str::FromStr;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A PostgreSQL server reached through its admin connection.
#[derive(Clone)]
pub struct PostgresServer {
    admin: PgConnectOptions,
    /// The admin URL's hash: which pool of admin sessions this server uses.
    admin_url_key: [u8; 32],
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

/// Runs statements in order, taking "already exists" (a concurrent or earlier attempt made it) as done.
async fn execute_converging(
    connection: &mut PgConnection,
    statements: &[String],
    context: &str,
) -> Result<()> {
    for statement in statements {
        match connection.execute(statement.as_str()).await {
            Ok(_) => {}
            Err(error) if matches!(sqlstate(&error).as_deref(), Some("42P04" | "42710")) => {}
            Err(error) => return Err(Error::from_server(context, error)),
        }
    }
    Ok(())
}

impl PostgresServer {
    pub fn from_admin_url(admin_url: &SecretString) -> Result<PostgresServer> {
        Ok(PostgresServer {
            admin: parse_url(admin_url, "server's admin URL")?,
            admin_url_key: sessions::url_key(admin_url),
        })
    }

    fn admin_pool(&self) -> PgPool {
        sessions::admin_pool(self.admin_url_key, &self.admin)
    }

    /// An admin session from this process's pool for the server.
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

    pub fn tenant_url(&self, resource_name: &str, password: &SecretString) -> SecretString {
        let host = self.admin.get_host();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        SecretString::new(format!(
            "postgres://{resource_name}:{}@{host}:{}/{resource_name}",
            password.expose(),
            self.admin.get_port()
        ))
    }

    pub async fn inventory(&self, resource_name: &str) -> Result<Inventory> {
        let mut connection = self.admin_connection().await?;
        let (database, role): (bool, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1), EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
        )
        .bind(resource_name)
        .fetch_one(&mut *connection)
        .await
        .map_err(|error| Error::from_server("reading the server catalog", error))?;
        Ok(Inventory { database, role })
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

    /// Connect rights for the tenant role only, the plan's connection limit, and the labels.
    fn access_statements(name: &str, spec: &TenantDatabaseSpec) -> Vec<String> {
        vec![
            format!(
                "ALTER DATABASE {name} CONNECTION LIMIT {}",
                spec.connection_limit
            ),
            format!("REVOKE CONNECT, TEMPORARY ON DATABASE {name} FROM PUBLIC"),
            format!("GRANT CONNECT ON DATABASE {name} TO {name}"),
            format!(
                "COMMENT ON DATABASE {name} IS {}",
                quote_literal(&spec.labels.to_string())
            ),
            format!(
                "COMMENT ON ROLE {name} IS {}",
                quote_literal(&spec.labels.to_string())
            ),
        ]
    }

    /// Creates the tenant's role and database, or brings existing ones in line. With a schema version, the
    /// database is a claimed warm-pool database or a copy of the schema's template, so it already holds the schema
    /// and belongs to the tenant; without one, it is empty.
    pub async fn create_database(
        &self,
        spec: &TenantDatabaseSpec,
        password: &SecretString,
        schema: Option<&super::SchemaVersion>,
        sealing: Option<&SealingKey>,
    ) -> Result<DatabaseOrigin> {
        let name = quote_identifier(&spec.resource_name)?;
        let context = format!("creating {}", spec.resource_name);
        let lookup = self.creation_lookup(&spec.resource_name, schema).await?;
        if !lookup.database && !lookup.role {
            if let Some(claimed) = self
                .claim_pool_database(spec, password, &lookup, sealing)
                .await?
            {
                return Ok(claimed);
            }
        }
        if !lookup.role {
            // The database needs its owner first; the login and password follow.
            let mut connection = self.admin_connection().await?;
            execute_converging(
                &mut connection,
                &[format!("CREATE ROLE {name} NOLOGIN")],
                &context,
            )
            .await?;
        }
        let origin = if lookup.database {
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
        let hand_over = match origin {
            DatabaseOrigin::Template => true,
            // A copy made by an earlier attempt may not have been handed over yet.
            DatabaseOrigin::Existing => lookup.template_owner,
            DatabaseOrigin::WarmPool { .. } | DatabaseOrigin::Plain { .. } => false,
        };
        if hand_over {
            self.hand_over_template_objects(&spec.resource_name, &name)
                .await?;
        }
        let mut connection = self.admin_connection().await?;
        execute_converging(
            &mut connection,
            &Self::access_statements(&name, spec),
            &context,
        )
        .await?;
        self.log_in_ahead(&spec.resource_name, password);
        Ok(origin)
    }

    /// The tenant's first session, started now for the migrations that come next.
    fn log_in_ahead(&self, resource_name: &str, password: &SecretString) {
        let url = self.tenant_url(resource_name, password);
        if let Ok(options) = parse_url(&url, "tenant's connection URL") {
            sessions::log_in_ahead(&url, options);
        }
    }

    pub async fn drop_database(&self, resource_name: &str) -> Result<()> {
        let name = quote_identifier(resource_name)?;
        let mut connection = self.admin_connection().await?;
        let statements = [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("DROP ROLE IF EXISTS {name}"),
        ];
        for statement in statements {
            connection
                .execute(statement.as_str())
                .await
                .map_err(|error| Error::from_server(&format!("dropping {resource_name}"), error))?;
        }
        Ok(())
    }

    pub async fn disable_login(&self, resource_name: &str) -> Result<()> {
        let name = quote_identifier(resource_name)?;
        let inventory = self.inventory(resource_name).await?;
        let mut connection = self.admin_connection().await?;
        if inventory.role {
            connection
                .execute(format!("ALTER ROLE {name} NOLOGIN").as_str())
                .await
                .map_err(|error| Error::from_server("disabling login", error))?;
        }
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()")
            .bind(resource_name)
            .execute(&mut *connection)
            .await
            .map_err(|error| Error::from_server("ending sessions", error))?;
        Ok(())
    }

    pub async fn list_tenant_resources(&self) -> Result<Vec<TenantResource>> {
        let mut connection = self.admin_connection().await?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT datname::text, 'database' FROM pg_database WHERE datname LIKE 'tenant\\_%'
             UNION ALL SELECT rolname::text, 'role' FROM pg_roles WHERE rolname LIKE 'tenant\\_%'
             ORDER BY 1, 2",
        )
        .fetch_all(&mut *connection)
        .await
        .map_err(|error| Error::from_server("reading the server catalog", error))?;
        Ok(rows
            .into_iter()
            .map(|(name, kind)| TenantResource {
                name,
                kind: if kind == "database" {
                    "database"
                } else {
                    "role"
                },
            })
            .collect())
    }

    /// A session as the tenant: the one an earlier phase of this job parked, or a new one.
    pub(super) async fn tenant_connection(
        &self,
        tenant_url: &SecretString,
    ) -> Result<PgConnection> {
        if let Some(parked) = sessions::take_parked(tenant_url).await {
            return Ok(parked);
        }
        let options = parse_url(tenant_url, "tenant's connection URL")?;
        connect(&options, "tenant database").await
    }

    pub async fn run_migrations(
        &self,
        tenant_url: &SecretString,
        migrator: &sqlx::migrate::Migrator,
    ) -> Result<()> {
        let mut connection = self.tenant_connection(tenant_url).await?;
        // A database from the template or the pool is already at the latest version: confirming that is one read,
        // where the migrator would also take its lock and make sure of its table first.
        let migrated = match Self::already_migrated(&mut connection, migrator).await {
            true => Ok(()),
            false => migrator.run_direct(&mut connection).await,
        };
        match migrated {
            Ok(()) => {
                // Provisioning seeds the first admin right after migrating: the session waits for it.
                sessions::park(tenant_url, connection);
                Ok(())
            }
            Err(error) => {
                let _ = connection.close().await;
                Err(migration_error(error))
            }
        }
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
                sessions::park(tenant_url, connection);
                Ok(())
            }
            Err(error) => {
                let _ = connection.close().await;
                Err(error)
            }
        }
    }
}
