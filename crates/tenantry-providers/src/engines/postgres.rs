//! The PostgreSQL engine: a login role and a database per tenant, created through the server's admin connection.

use super::{
    migration_error, quote_identifier, quote_literal, AdminSeed, Inventory, TenantDatabaseSpec,
    TenantResource,
};
use crate::credentials::{scram_sha256_verifier, SecretString};
use crate::{Error, Result};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Executor};
use std::str::FromStr;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A PostgreSQL server reached through its admin connection.
#[derive(Clone)]
pub struct PostgresServer {
    admin: PgConnectOptions,
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
        .map(|options| options.log_statements(tracing::log::LevelFilter::Off))
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

impl PostgresServer {
    pub fn from_admin_url(admin_url: &SecretString) -> Result<PostgresServer> {
        Ok(PostgresServer {
            admin: parse_url(admin_url, "server's admin URL")?,
        })
    }

    async fn admin_connection(&self) -> Result<PgConnection> {
        match connect(&self.admin, "server's admin connection").await {
            Err(Error::Refused(message)) => Err(Error::AdminConnection(message)),
            other => other,
        }
    }

    pub async fn check_admin_connection(&self) -> Result<()> {
        let mut connection = self.admin_connection().await?;
        connection
            .execute("SELECT 1")
            .await
            .map_err(|error| Error::from_server("admin connection", error))?;
        let _ = connection.close().await;
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
        .fetch_one(&mut connection)
        .await
        .map_err(|error| Error::from_server("reading the server catalog", error))?;
        let _ = connection.close().await;
        Ok(Inventory { database, role })
    }

    pub async fn create_database(
        &self,
        spec: &TenantDatabaseSpec,
        password: &SecretString,
    ) -> Result<()> {
        let name = quote_identifier(&spec.resource_name)?;
        let verifier = scram_sha256_verifier(password);
        let mut connection = self.admin_connection().await?;
        let inventory = self.inventory(&spec.resource_name).await?;
        let role_statement = if inventory.role {
            // A role left by an interrupted attempt: bring its password in line with the secret.
            format!(
                "ALTER ROLE {name} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS CONNECTION LIMIT {} PASSWORD {}",
                spec.connection_limit,
                quote_literal(&verifier)
            )
        } else {
            format!(
                "CREATE ROLE {name} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS CONNECTION LIMIT {} PASSWORD {}",
                spec.connection_limit,
                quote_literal(&verifier)
            )
        };
        let mut statements = vec![
            role_statement,
            format!(
                "ALTER ROLE {name} SET statement_timeout = {}",
                spec.statement_timeout_ms
            ),
        ];
        if !inventory.database {
            statements.push(format!(
                "CREATE DATABASE {name} OWNER {name} CONNECTION LIMIT {}",
                spec.connection_limit
            ));
        }
        statements.extend([
            format!("REVOKE CONNECT, TEMPORARY ON DATABASE {name} FROM PUBLIC"),
            format!("GRANT CONNECT ON DATABASE {name} TO {name}"),
            format!(
                "COMMENT ON DATABASE {name} IS {}",
                quote_literal(&spec.labels.to_string())
            ),
        ]);
        for statement in statements {
            match connection.execute(statement.as_str()).await {
                Ok(_) => {}
                // Another attempt created it between our look and our create: the goal is reached.
                Err(sqlx::Error::Database(error))
                    if matches!(error.code().as_deref(), Some("42P04" | "42710")) => {}
                Err(error) => {
                    let _ = connection.close().await;
                    return Err(Error::from_server(
                        &format!("creating {}", spec.resource_name),
                        error,
                    ));
                }
            }
        }
        let _ = connection.close().await;
        Ok(())
    }

    pub async fn drop_database(&self, resource_name: &str) -> Result<()> {
        let name = quote_identifier(resource_name)?;
        let mut connection = self.admin_connection().await?;
        let statements = [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("DROP ROLE IF EXISTS {name}"),
        ];
        for statement in statements {
            if let Err(error) = connection.execute(statement.as_str()).await {
                let _ = connection.close().await;
                return Err(Error::from_server(
                    &format!("dropping {resource_name}"),
                    error,
                ));
            }
        }
        let _ = connection.close().await;
        Ok(())
    }

    pub async fn disable_login(&self, resource_name: &str) -> Result<()> {
        let name = quote_identifier(resource_name)?;
        let mut connection = self.admin_connection().await?;
        let inventory = self.inventory(resource_name).await?;
        if inventory.role {
            connection
                .execute(format!("ALTER ROLE {name} NOLOGIN").as_str())
                .await
                .map_err(|error| Error::from_server("disabling login", error))?;
        }
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()")
            .bind(resource_name)
            .execute(&mut connection)
            .await
            .map_err(|error| Error::from_server("ending sessions", error))?;
        let _ = connection.close().await;
        Ok(())
    }

    pub async fn list_tenant_resources(&self) -> Result<Vec<TenantResource>> {
        let mut connection = self.admin_connection().await?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT datname::text, 'database' FROM pg_database WHERE datname LIKE 'tenant\\_%'
             UNION ALL SELECT rolname::text, 'role' FROM pg_roles WHERE rolname LIKE 'tenant\\_%'
             ORDER BY 1, 2",
        )
        .fetch_all(&mut connection)
        .await
        .map_err(|error| Error::from_server("reading the server catalog", error))?;
        let _ = connection.close().await;
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

    async fn tenant_connection(&self, tenant_url: &SecretString) -> Result<PgConnection> {
        let options = parse_url(tenant_url, "tenant's connection URL")?;
        connect(&options, "tenant database").await
    }

    pub async fn run_migrations(
        &self,
        tenant_url: &SecretString,
        migrator: &sqlx::migrate::Migrator,
    ) -> Result<()> {
        let mut connection = self.tenant_connection(tenant_url).await?;
        let migrated = migrator
            .run_direct(&mut connection)
            .await
            .map_err(migration_error);
        let _ = connection.close().await;
        migrated
    }

    pub async fn seed_admin(&self, tenant_url: &SecretString, seed: &AdminSeed<'_>) -> Result<()> {
        let mut connection = self.tenant_connection(tenant_url).await?;
        let seeded = sqlx::query(seed.sql)
            .bind(seed.email)
            .bind(seed.password_hash)
            .bind(seed.invitation_token_hash)
            .execute(&mut connection)
            .await
            .map_err(|error| Error::from_server("seeding the first admin", error));
        let _ = connection.close().await;
        seeded.map(|_| ())
    }
}
