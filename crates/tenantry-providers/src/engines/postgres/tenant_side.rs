//! What tenantry does and checks as the tenant, with the tenant's own credentials: tenantry's settings table, the
//! fit of the operator's seed and check, the validation probe (who am I, what may I do, which schema version, how
//! fast), and login attempts that must fail.

use super::{parse_url, sqlstate, PostgresServer};
use crate::credentials::SecretString;
use crate::engines::{
    foreign_error, quote_identifier, statement_misfit, ConfiguredStatement, LoginAttempt,
    Ownership, Reachable, TenantDatabaseSpec, TenantProbe,
};
use crate::{Error, Result};
use sqlx::{Connection, Executor};
use std::time::Instant;

/// SQLSTATEs that mean "this login is not allowed": no CONNECT privilege, no pg_hba entry, wrong password or
/// unknown role, no such database.
const LOGIN_REFUSED: [&str; 4] = ["42501", "28000", "28P01", "3D000"];

/// tenantry's own place in a tenant database: a schema of its own, so it needs nothing from the operator's tenant
/// schema. Made by the tenant's role over its own session, so the tenant owns it (whoever owns the database) and
/// its application can read it. `IF NOT EXISTS` makes it on first write, also in databases made by an older
/// tenantry that kept its settings in the example schema's `tenant_settings` table.
const ENSURE_SETTINGS_TABLE: &str = "CREATE SCHEMA IF NOT EXISTS tenantry;
     CREATE TABLE IF NOT EXISTS tenantry.settings (
         key         TEXT PRIMARY KEY,
         value       TEXT NOT NULL,
         updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
     )";

impl PostgresServer {
    /// Replaces tenantry's keys in `tenantry.settings`: makes the table if it is missing, then upserts `settings`
    /// and removes keys under `owned_prefixes` that are no longer among them in one statement, on the session the
    /// admin seed left parked, or a new one. The session is parked again for the validation suite that follows.
    pub async fn write_settings(
        &self,
        tenant_url: &SecretString,
        settings: &[(String, String)],
        owned_prefixes: &[&str],
    ) -> Result<()> {
        if self.shared.is_some() {
            return self
                .write_settings_in_schema(tenant_url, settings, owned_prefixes)
                .await;
        }
        let mut connection = self.tenant_connection(tenant_url).await?;
        let keys: Vec<&str> = settings.iter().map(|(key, _)| key.as_str()).collect();
        let values: Vec<&str> = settings.iter().map(|(_, value)| value.as_str()).collect();
        let written = async {
            // One round trip for both statements (the simple query protocol takes several).
            connection.execute(ENSURE_SETTINGS_TABLE).await?;
            sqlx::query(
                "WITH stale AS (
                     DELETE FROM tenantry.settings
                     WHERE EXISTS (SELECT 1 FROM unnest($3::text[]) AS owned (prefix) WHERE starts_with(key, prefix))
                       AND NOT (key = ANY($1))
                 )
                 INSERT INTO tenantry.settings AS stored (key, value, updated_at)
                 SELECT key, value, now() FROM UNNEST($1::text[], $2::text[]) AS given (key, value)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()
                 WHERE stored.value IS DISTINCT FROM excluded.value",
            )
            .bind(&keys)
            .bind(&values)
            .bind(owned_prefixes)
            .execute(&mut connection)
            .await
        }
        .await;
        match written {
            Ok(_) => {
                self.sessions.park(tenant_url, connection);
                Ok(())
            }
            Err(error) => {
                let _ = connection.close().await;
                Err(Error::from_server("writing the tenant's settings", error))
            }
        }
    }

    /// Prepares each statement on the tenant's session (parse and describe, nothing runs), with its parameters
    /// typed as the text they will be bound as. The prepared statements stay in the session's cache, so the seed
    /// that follows on the parked session runs without being parsed again.
    pub async fn check_statements_fit(
        &self,
        tenant_url: &SecretString,
        statements: &[ConfiguredStatement<'_>],
    ) -> Result<()> {
        let mut connection = self.tenant_connection(tenant_url).await?;
        let text = <&str as sqlx::Type<sqlx::Postgres>>::type_info();
        let mut outcome = Ok(());
        for statement in statements {
            let parameter_types = vec![text.clone(); statement.n_parameters];
            if let Err(error) = connection
                .prepare_with(statement.sql, &parameter_types)
                .await
            {
                outcome = Err(statement_misfit(statement, error));
                break;
            }
        }
        match outcome {
            Err(Error::Transient(message)) => {
                let _ = connection.close().await;
                Err(Error::Transient(message))
            }
            outcome => {
                self.sessions.park(tenant_url, connection);
                outcome
            }
        }
    }

    /// Brings an existing tenant role and database in line: the plan's quotas, and the access model (the database
    /// owned by the installation's role, the tenant's grants, nothing for PUBLIC, the `public` schema the
    /// tenant's, the installation's mark). A plan change runs it, and so does `reconcile`, which converts a tenant
    /// made before this model (when the tenant role owned its database) and closes a database opened to PUBLIC.
    pub async fn apply_plan_limits(&self, spec: &TenantDatabaseSpec) -> Result<()> {
        if self.shared.is_some() {
            return self.shared_plan_limits(spec).await;
        }
        let name = quote_identifier(&spec.resource_name)?;
        let context = format!("applying the plan to {}", spec.resource_name);
        let inventory = self.inventory(&spec.resource_name).await?;
        if let Ownership::Foreign(_) = inventory.ownership {
            return Err(foreign_error(&spec.resource_name, &inventory.ownership));
        }
        if !inventory.database || !inventory.role {
            return Err(Error::Refused(format!(
                "{}: the database or role is missing",
                spec.resource_name
            )));
        }
        let mut statements = vec![
            format!(
                "ALTER ROLE {name} CONNECTION LIMIT {}",
                spec.connection_limit
            ),
            format!(
                "ALTER ROLE {name} SET statement_timeout = {}",
                spec.statement_timeout_ms
            ),
        ];
        statements.extend(self.access_statements(&name, spec)?);
        let mut connection = self.admin_connection().await?;
        self.ensure_owner_role(&mut connection).await?;
        for statement in statements {
            connection
                .execute(statement.as_str())
                .await
                .map_err(|error| Error::from_server(&context, error))?;
        }
        self.align_alternate_login(
            &mut connection,
            &spec.resource_name,
            spec.connection_limit,
            spec.statement_timeout_ms,
        )
        .await?;
        drop(connection);
        self.settle_inside(&spec.resource_name, &name, false, true)
            .await
    }

    /// PostgreSQL keeps no labels on the server: every role can read comments, so they live in the registry and
    /// the database and role carry only the installation's mark.
    pub async fn resource_labels(
        &self,
        _resource_name: &str,
    ) -> Result<Vec<(&'static str, Option<serde_json::Value>)>> {
        Ok(Vec::new())
    }

    /// Logs in with the tenant's credentials and reads what the validation suite judges. Inside a provisioning
    /// job, the session this job opened with exactly these credentials (parked under the hash of the URL, so a
    /// secret that changed meanwhile finds none) is that login; on demand, it is a new one.
    pub async fn probe_tenant(
        &self,
        tenant_url: &SecretString,
        admin_check: Option<(&str, &str)>,
    ) -> Result<TenantProbe> {
        let connection = self.tenant_connection(tenant_url).await?;
        probe_on(connection, admin_check).await
    }

    /// [`PostgresServer::probe_tenant`] over a login of its own, never a parked session: outside a job a parked
    /// session may be one a `disable_login` since ended, and the login itself is what is being judged.
    pub async fn probe_tenant_afresh(&self, tenant_url: &SecretString) -> Result<TenantProbe> {
        let options = parse_url(tenant_url, "tenant's connection URL")?;
        let connection = super::connect(&options, "tenant database").await?;
        probe_on(connection, None).await
    }

    /// What the tenant's role can reach among the other tenant databases on this server, by the server's own
    /// privilege rules: those it may connect to through a grant of its own (to it or a role it belongs to), and,
    /// separately, those that admit PUBLIC (the neighbour opened itself: its finding, not this tenant's).
    pub async fn tenant_databases_open_to(&self, resource_name: &str) -> Result<Reachable> {
        if self.shared.is_some() {
            return self.shared_schemas_open_to(resource_name).await;
        }
        let mut connection = self.admin_connection().await?;
        let rows: Vec<(String, bool, bool)> = sqlx::query_as(
            "SELECT d.datname::text,
                    d.datallowconn AND has_database_privilege('public', d.oid, 'CONNECT'),
                    d.datallowconn AND (has_database_privilege($1, d.oid, 'CONNECT')
                        OR EXISTS (SELECT 1 FROM pg_roles r
                                   WHERE r.rolname = $2 AND has_database_privilege(r.oid, d.oid, 'CONNECT')))
             FROM pg_database d
             WHERE d.datname LIKE 'tenant\\_%' AND d.datname <> $1 ORDER BY d.datname",
        )
        .bind(resource_name)
        // A grant to the alternate login (after a rotation, the one the secret may name) widens the tenant too.
        .bind(super::alternate_login(resource_name))
        .fetch_all(&mut *connection)
        .await
        .map_err(|error| Error::from_server("reading database privileges", error))?;
        let mut reachable = Reachable {
            n_others: rows.len() as i64,
            ..Reachable::default()
        };
        for (name, public, may_connect) in rows {
            if public {
                reachable.open_to_public.push(name);
            } else if may_connect {
                reachable.granted.push(name);
            }
        }
        Ok(reachable)
    }

    /// Tries to log in to `database` on this server with the tenant's credentials.
    pub async fn tenant_login_to(
        &self,
        tenant_url: &SecretString,
        database: &str,
    ) -> Result<LoginAttempt> {
        let options = parse_url(tenant_url, "tenant's connection URL")?.database(database);
        login_attempt(&options).await
    }
}

/// Reads what the validation suite judges over the tenant's `connection`, then closes it.
async fn probe_on(
    mut connection: sqlx::PgConnection,
    admin_check: Option<(&str, &str)>,
) -> Result<TenantProbe> {
    let probed = async {
        let (current_user, current_database, superuser, createdb, createrole, bypassrls): (
            String,
            String,
            bool,
            bool,
            bool,
            bool,
        ) = sqlx::query_as(
            // The login (`session_user`: after a rotation, the alternate) and the role it acts as (`current_user`:
            // the tenant role) are judged together: a privilege of either is the tenant's.
            "SELECT current_user::text, current_database()::text, bool_or(rolsuper), bool_or(rolcreatedb),
                    bool_or(rolcreaterole), bool_or(rolbypassrls)
             FROM pg_roles WHERE rolname IN (current_user, session_user)",
        )
        .fetch_one(&mut connection)
        .await?;
        let elevated: Vec<&'static str> = [
            ("superuser", superuser),
            ("createdb", createdb),
            ("createrole", createrole),
            ("bypassrls", bypassrls),
        ]
        .into_iter()
        .filter(|(_, granted)| *granted)
        .map(|(name, _)| name)
        .collect();
        let schema_version: Option<i64> = sqlx::query_scalar(
            "SELECT max(version) FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(&mut connection)
        .await
        .unwrap_or(None);
        let admin_ready = match admin_check {
            Some((sql, email)) => Some(run_admin_check(&mut connection, sql, email).await?),
            None => None,
        };
        // The first round trip after login warms the session; time the next, as an application would see it.
        connection.execute("SELECT 1").await?;
        let started = Instant::now();
        connection.execute("SELECT 1").await?;
        let query_latency = started.elapsed();
        Ok::<_, sqlx::Error>(TenantProbe {
            current_user: Some(current_user),
            current_database,
            elevated_privileges: Some(elevated),
            schema_version,
            admin_ready,
            query_latency,
        })
    }
    .await;
    let _ = connection.close().await;
    probed.map_err(|error| Error::from_server("probing the tenant database", error))
}

/// Runs the operator's admin check. A refusal by the database (a column the schema lacks, a result that is not a
/// count) is the check's verdict, named; a lost connection fails the probe.
async fn run_admin_check(
    connection: &mut sqlx::PgConnection,
    sql: &str,
    email: &str,
) -> std::result::Result<std::result::Result<bool, String>, sqlx::Error> {
    match sqlx::query_scalar::<_, i64>(sql)
        .bind(email)
        .fetch_one(&mut *connection)
        .await
    {
        Ok(count) => Ok(Ok(count > 0)),
        Err(error @ (sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_))) => {
            Err(error)
        }
        Err(error) => Ok(Err(crate::error::describe(&error))),
    }
}

/// Tries to log in to the PostgreSQL at `target` (its host, port and database) as the tenant of `tenant_url`.
pub async fn tenant_login_elsewhere(
    tenant_url: &SecretString,
    target: &SecretString,
) -> Result<LoginAttempt> {
    let tenant = parse_url(tenant_url, "tenant's connection URL")?;
    let target = parse_url(target, "target URL")?;
    let database = target.get_database().unwrap_or("postgres").to_owned();
    let mut options = target.username(tenant.get_username()).database(&database);
    if let Some(password) = password_of(tenant_url) {
        options = options.password(password.expose());
    }
    login_attempt(&options).await
}

fn password_of(url: &SecretString) -> Option<SecretString> {
    crate::credentials::password_in_url(url)
}

async fn login_attempt(options: &sqlx::postgres::PgConnectOptions) -> Result<LoginAttempt> {
    match tokio::time::timeout(
        super::CONNECT_TIMEOUT,
        sqlx::postgres::PgConnection::connect_with(options),
    )
    .await
    {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(LoginAttempt::Allowed)
        }
        Ok(Err(error)) => match sqlstate(&error) {
            Some(code) if LOGIN_REFUSED.contains(&code.as_str()) => {
                Ok(LoginAttempt::Refused(crate::error::describe(&error)))
            }
            _ => Err(Error::from_server("trying the login", error)),
        },
        Err(_) => Err(Error::Transient("the login attempt timed out".into())),
    }
}
