//! The MariaDB engine: per tenant a database `tenant_<slug_>` whose COMMENT carries the installation's mark and
//! the tenant's cost labels, and a user `'tenant_<slug_>'@'%'` with privileges on that database alone, the plan's
//! `MAX_USER_CONNECTIONS` and `MAX_STATEMENT_TIME`.
//!
//! MariaDB's DDL commits at once, statement by statement: nothing here is a transaction, so every step is written
//! to converge when it runs again from any point (`IF NOT EXISTS`, `IF EXISTS`, and grants compared before they
//! are changed). The user is made after the database and dropped before it, so a user of this installation never
//! exists without its marked database: a `tenant_*` user with no database is nobody's this installation can prove.

use super::{
    foreign_error, migration_error, quote_identifier, seed_error, statement_misfit, AdminSeed,
    AppliedMigration, ConfiguredStatement, Installation, Inventory, LoginAttempt, Ownership,
    Reachable, SchemaVersion, TenantAccess, TenantDatabaseSpec, TenantProbe, TenantResource,
};
use crate::credentials::SecretString;
use crate::{failpoint, Error, Result};
use sha1::{Digest, Sha1};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError};
use sqlx::{ConnectOptions, Connection, Executor};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// How long a login may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The phase whose apply `create_database` is: its failpoints are named `database_created.<point>`.
const CREATE_PHASE: &str = "database_created";
/// The failpoints inside `drop_database`.
const DROP_OPERATION: &str = "drop_database";
/// The first MariaDB that keeps a COMMENT on a database (10.5), which is where the installation's mark lives.
const MIN_VERSION: (u32, u32) = (10, 5);
/// MariaDB error numbers that mean "these credentials may not log in here": access denied to the database
/// (1044), wrong user or password (1045), unknown database (1049, told only to users who may see it), and a
/// locked account (4151).
const LOGIN_REFUSED: [u16; 4] = [1044, 1045, 1049, 4151];
/// The collation of every session tenantry opens (see `from_admin_url`).
const SESSION_COLLATION: &str = "utf8mb4_general_ci";
/// tenantry's own settings table in a tenant database (`key` is a reserved word in MariaDB, so it is quoted).
const ENSURE_SETTINGS_TABLE: &str = "CREATE TABLE IF NOT EXISTS tenantry_settings (
    `key`       VARCHAR(255) NOT NULL PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
)";

/// A MariaDB server reached through its admin URL (`mysql://user:password@host:port`).
#[derive(Debug, Clone)]
pub struct MariadbServer {
    admin: MySqlConnectOptions,
    installation: Installation,
}

/// `` `name` `` for SQL, for names that already passed the slug-derived identifier rule.
fn quote_name(name: &str) -> Result<String> {
    quote_identifier(name)?;
    Ok(format!("`{name}`"))
}

/// The tenant's account, `'name'@'%'`: the host is a wildcard so that a login from any address of the server's
/// network counts, and the password is what admits it.
fn account(name: &str) -> Result<String> {
    quote_identifier(name)?;
    Ok(format!("'{name}'@'%'"))
}

/// A database name as a grant's pattern: `_` is a wildcard in grants, so `tenant_ab_c`'s grant would also
/// admit `tenant_abxc`'s database unless every underscore is escaped.
fn grant_pattern(name: &str) -> String {
    name.replace('_', "\\_")
}

/// A MariaDB string literal (backslashes are escapes unless the server runs with NO_BACKSLASH_ESCAPES, which
/// tenantry's sessions turn off).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// The `mysql_native_password` hash of a password (`*` and the hex of SHA1(SHA1(password))): what `IDENTIFIED BY
/// PASSWORD` takes, so the password itself never travels in a statement the server might log or show.
fn native_password_hash(password: &SecretString) -> String {
    let inner = Sha1::digest(password.expose().as_bytes());
    let outer = Sha1::digest(inner);
    let hex: String = outer.iter().map(|byte| format!("{byte:02X}")).collect();
    format!("*{hex}")
}

/// The MariaDB error number of a driver error, if the server sent one.
fn error_number(error: &sqlx::Error) -> Option<u16> {
    match error {
        sqlx::Error::Database(database_error) => database_error
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// The grants `SHOW GRANTS` lists for a tenant account beyond what tenantry gives it (usage, and every
/// privilege on its own database without the grant option), each as `<privileges> ON <object>`. The
/// account's password hash, which the first line carries, is never part of what is returned.
fn extra_grants(name: &str, lines: &[String]) -> Vec<String> {
    let own = format!("`{}`.*", grant_pattern(name));
    lines
        .iter()
        .filter_map(|line| {
            let rest = line.strip_prefix("GRANT ")?;
            let (privileges, rest) = rest.split_once(" ON ")?;
            let (object, tail) = rest.split_once(" TO ")?;
            let expected = match (privileges, object) {
                ("USAGE", "*.*") => true,
                ("ALL PRIVILEGES", object) if object == own => !tail.contains("WITH GRANT OPTION"),
                _ => false,
            };
            (!expected).then(|| {
                let with_grant = if tail.contains("WITH GRANT OPTION") {
                    " WITH GRANT OPTION"
                } else {
                    ""
                };
                format!("{privileges} ON {object}{with_grant}")
            })
        })
        .collect()
}

impl MariadbServer {
    /// The admin URL is `mysql://user[:password]@host[:port]` (`mariadb://` is accepted as the same).
    pub fn from_admin_url(
        admin_url: &SecretString,
        installation: &Installation,
    ) -> Result<MariadbServer> {
        let text = admin_url.expose();
        let normalized = match text.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None if text.starts_with("mysql://") => text.to_owned(),
            None => {
                return Err(Error::AdminConnection(
                    "a mariadb server's URL must be mysql://user:password@host:port".into(),
                ))
            }
        };
        let admin = MySqlConnectOptions::from_str(&normalized)
            .map_err(|_| Error::AdminConnection("the mariadb admin URL is not valid".into()))?
            // The catalog's collation: comparing a literal or a parameter in sqlx's default collation with
            // information_schema's names is otherwise an "illegal mix of collations".
            .collation(SESSION_COLLATION)
            .log_statements(tracing::log::LevelFilter::Off);
        Ok(MariadbServer {
            admin,
            installation: installation.clone(),
        })
    }

    async fn connect(options: &MySqlConnectOptions, what: &str) -> Result<MySqlConnection> {
        match tokio::time::timeout(CONNECT_TIMEOUT, MySqlConnection::connect_with(options)).await {
            Ok(Ok(mut connection)) => {
                // Backslashes in literals are escapes in every session tenantry runs (see `literal`).
                connection
                    .execute(
                        "SET SESSION sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')",
                    )
                    .await
                    .map_err(|error| Error::from_server(&format!("opening the {what}"), error))?;
                Ok(connection)
            }
            Ok(Err(error)) if error_number(&error) == Some(1045) && what == "admin connection" => {
                Err(Error::AdminConnection(format!(
                    "the mariadb server refused the admin login: {}",
                    crate::error::describe(&error)
                )))
            }
            Ok(Err(error)) => Err(Error::from_server(
                &format!("connecting to the {what}"),
                error,
            )),
            Err(_) => Err(Error::Transient(format!(
                "connecting to the {what} timed out"
            ))),
        }
    }

    async fn admin_connection(&self) -> Result<MySqlConnection> {
        Self::connect(&self.admin, "admin connection").await
    }

    /// Runs `statements` in order on one admin session, then closes it.
    async fn execute_all(&self, statements: &[String], context: &str) -> Result<()> {
        let mut connection = self.admin_connection().await?;
        let mut outcome = Ok(());
        for statement in statements {
            if let Err(error) = connection.execute(statement.as_str()).await {
                outcome = Err(Error::from_server(context, error));
                break;
            }
        }
        let _ = connection.close().await;
        outcome
    }

    /// Checks the admin login works and the server is a MariaDB that keeps database comments. Whatever fails
    /// here is the admin URL's fault (`servers add` reports it as such), a server that is not MariaDB included.
    pub async fn check_admin_connection(&self) -> Result<()> {
        let mut connection = self.admin_connection().await.map_err(|error| {
            Error::AdminConnection(format!(
                "cannot log in to a MariaDB server at {}:{}: {error}",
                self.admin.get_host(),
                self.admin.get_port()
            ))
        })?;
        let version: Result<String> = sqlx::query_scalar("SELECT CAST(VERSION() AS CHAR)")
            .fetch_one(&mut connection)
            .await
            .map_err(|error| Error::from_server("reading the server's version", error));
        let _ = connection.close().await;
        let version = version?;
        if !version.contains("MariaDB") {
            return Err(Error::AdminConnection(format!(
                "the server at {}:{} is not MariaDB (version {version})",
                self.admin.get_host(),
                self.admin.get_port()
            )));
        }
        let mut numbers = version
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|part| part.parse::<u32>().ok());
        let found = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
        if found < MIN_VERSION {
            return Err(Error::AdminConnection(format!(
                "MariaDB {version} keeps no database comments; tenantry needs {}.{} or later",
                MIN_VERSION.0, MIN_VERSION.1
            )));
        }
        Ok(())
    }

    /// The server's host name, port and data directory: one server whatever address reaches it.
    pub async fn cluster_identity(&self) -> Result<String> {
        let mut connection = self.admin_connection().await?;
        let identity: Result<(String, i64, String)> = sqlx::query_as(
            "SELECT CAST(@@hostname AS CHAR), CAST(@@port AS SIGNED), CAST(@@datadir AS CHAR)",
        )
        .fetch_one(&mut connection)
        .await
        .map_err(|error| Error::from_server("reading the server's identity", error));
        let _ = connection.close().await;
        let (host, port, datadir) = identity?;
        Ok(format!("mariadb {host}:{port} {datadir}"))
    }

    pub fn tenant_url(&self, resource_name: &str, password: &SecretString) -> SecretString {
        let host = self.admin.get_host();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        SecretString::new(format!(
            "mysql://{resource_name}:{}@{host}:{}/{resource_name}",
            password.expose(),
            self.admin.get_port()
        ))
    }

    /// The comment on the database `resource_name` (`None`: no such database).
    async fn database_comment(
        connection: &mut MySqlConnection,
        resource_name: &str,
    ) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT CAST(SCHEMA_COMMENT AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
        )
        .bind(resource_name)
        .fetch_optional(&mut *connection)
        .await
        .map_err(|error| Error::from_server("reading the server catalog", error))
    }

    pub async fn inventory(&self, resource_name: &str) -> Result<Inventory> {
        quote_identifier(resource_name)?;
        let mut connection = self.admin_connection().await?;
        let read = async {
            let comment = Self::database_comment(&mut connection, resource_name).await?;
            let users: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM mysql.global_priv WHERE User = ? AND Host = '%'",
            )
            .bind(resource_name)
            .fetch_one(&mut connection)
            .await
            .map_err(|error| Error::from_server("reading the server's users", error))?;
            Ok::<_, Error>((comment, users > 0))
        }
        .await;
        let _ = connection.close().await;
        let (comment, user) = read?;
        let ownership = match &comment {
            Some(comment) => self.installation.judge_mark(Some(comment)),
            None => Ownership::Unmarked,
        };
        Ok(Inventory {
            database: comment.is_some(),
            role: user,
            ownership,
        })
    }

    /// The comment tenantry writes on a tenant database: the installation's mark, and the cost labels (only the
    /// tenant's own user and the server's administrators can read a database's comment).
    fn comment(&self, labels: &serde_json::Value) -> String {
        let mut mark = self.installation.mark("tenant");
        if let (Some(object), true) = (mark.as_object_mut(), labels.is_object()) {
            object.insert("labels".into(), labels.clone());
        }
        mark.to_string()
    }

    /// The labels a comment carries (`None`: none, or not tenantry's comment).
    fn labels_in(comment: Option<&str>) -> Option<serde_json::Value> {
        comment
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            .and_then(|value| value.get("labels").cloned())
            .filter(|labels| labels.as_object().is_some_and(|labels| !labels.is_empty()))
    }

    /// The labels to write: the spec's, or (a spec without any, as `reconcile` gives) those already there.
    async fn labels_to_write(&self, spec: &TenantDatabaseSpec) -> Result<serde_json::Value> {
        if spec
            .labels
            .as_object()
            .is_some_and(|labels| !labels.is_empty())
        {
            return Ok(spec.labels.clone());
        }
        let mut connection = self.admin_connection().await?;
        let comment = Self::database_comment(&mut connection, &spec.resource_name).await;
        let _ = connection.close().await;
        Ok(Self::labels_in(comment?.as_deref()).unwrap_or_else(|| serde_json::json!({})))
    }

    /// Creates the tenant's database (marked in the statement that makes it) and user, or brings existing ones
    /// in line: password, quotas, privileges on its own database alone, login. A database or user of that name
    /// that is not this installation's is refused (`Error::Foreign`) before anything changes.
    pub async fn create_database(
        &self,
        spec: &TenantDatabaseSpec,
        password: &SecretString,
    ) -> Result<()> {
        let name = &spec.resource_name;
        let database = quote_name(name)?;
        let context = format!("creating {name}");
        failpoint(CREATE_PHASE, "started").await?;
        let inventory = self.inventory(name).await?;
        if inventory.ownership != Ownership::Ours && inventory.any() {
            return Err(foreign_error(
                &format!("{name} on this server"),
                &inventory.ownership,
            ));
        }
        if !inventory.database {
            let comment = self.comment(&spec.labels);
            self.execute_all(
                &[format!(
                    "CREATE DATABASE IF NOT EXISTS {database} CHARACTER SET utf8mb4 COMMENT {}",
                    literal(&comment)
                )],
                &context,
            )
            .await?;
            // Another installation may have made one of that name since the look-up: judge what is there now.
            let made = self.inventory(name).await?;
            if made.ownership != Ownership::Ours {
                return Err(foreign_error(
                    &format!("{name} on this server"),
                    &made.ownership,
                ));
            }
            failpoint(CREATE_PHASE, "database_made").await?;
        }
        self.execute_all(
            &[format!(
                "CREATE USER IF NOT EXISTS {} IDENTIFIED BY PASSWORD {}",
                account(name)?,
                literal(&native_password_hash(password))
            )],
            &context,
        )
        .await?;
        failpoint(CREATE_PHASE, "user_made").await?;
        self.settle(spec, Some(password), true).await
    }

    /// The user's password (when given), quotas and login, its privileges narrowed to its own database, and the
    /// database's comment.
    async fn settle(
        &self,
        spec: &TenantDatabaseSpec,
        password: Option<&SecretString>,
        unlock: bool,
    ) -> Result<()> {
        let name = &spec.resource_name;
        let user = account(name)?;
        let context = format!("settling {name}");
        let password = password
            .map(|password| {
                format!(
                    " IDENTIFIED BY PASSWORD {}",
                    literal(&native_password_hash(password))
                )
            })
            .unwrap_or_default();
        // MAX_STATEMENT_TIME is in seconds, with microseconds.
        let statement_seconds = spec.statement_timeout_ms as f64 / 1000.0;
        let mut statements = vec![format!(
            "ALTER USER {user}{password} WITH MAX_USER_CONNECTIONS {} MAX_STATEMENT_TIME {statement_seconds:.3}{}",
            spec.connection_limit,
            if unlock { " ACCOUNT UNLOCK" } else { "" }
        )];
        // Privileges are taken away only when there are more than tenantry gives: a plan change does not leave a
        // running tenant without its grant for a moment.
        if !self.extra_grants_of(name).await?.is_empty() {
            statements.push(format!("REVOKE ALL PRIVILEGES, GRANT OPTION FROM {user}"));
        }
        statements.push(format!(
            "GRANT ALL PRIVILEGES ON `{}`.* TO {user}",
            grant_pattern(name)
        ));
        let labels = self.labels_to_write(spec).await?;
        statements.push(format!(
            "ALTER DATABASE {} COMMENT {}",
            quote_name(name)?,
            literal(&self.comment(&labels))
        ));
        self.execute_all(&statements, &context).await
    }

    /// What `SHOW GRANTS` says the tenant's account holds beyond tenantry's grant (none when it has no account).
    async fn extra_grants_of(&self, name: &str) -> Result<Vec<String>> {
        let mut connection = self.admin_connection().await?;
        let lines = Self::grants_of(&mut connection, name).await;
        let _ = connection.close().await;
        Ok(extra_grants(name, &lines?))
    }

    async fn grants_of(connection: &mut MySqlConnection, name: &str) -> Result<Vec<String>> {
        match sqlx::query_scalar::<_, String>(&format!("SHOW GRANTS FOR {}", account(name)?))
            .fetch_all(&mut *connection)
            .await
        {
            Ok(lines) => Ok(lines),
            // 1141: no such grant (no such account).
            Err(error) if error_number(&error) == Some(1141) => Ok(Vec::new()),
            Err(error) => Err(Error::from_server("reading the tenant's grants", error)),
        }
    }

    /// Ends every session of the tenant's user.
    async fn end_sessions(connection: &mut MySqlConnection, name: &str) -> Result<()> {
        let sessions: Vec<u64> = sqlx::query_scalar(
            "SELECT CAST(ID AS UNSIGNED) FROM information_schema.PROCESSLIST WHERE USER = ? AND ID <> CONNECTION_ID()",
        )
        .bind(name)
        .fetch_all(&mut *connection)
        .await
        .map_err(|error| Error::from_server("listing the tenant's sessions", error))?;
        for session in sessions {
            match connection
                .execute(format!("KILL CONNECTION {session}").as_str())
                .await
            {
                // 1094: the session ended meanwhile.
                Err(error) if error_number(&error) != Some(1094) => {
                    return Err(Error::from_server("ending the tenant's sessions", error))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Ends sessions, then drops the user and the database (in that order: see the module's comment). Another
    /// installation's database is refused before anything is dropped.
    pub async fn drop_database(&self, resource_name: &str) -> Result<()> {
        let database = quote_name(resource_name)?;
        let inventory = self.inventory(resource_name).await?;
        if let Ownership::Foreign(_) = inventory.ownership {
            return Err(foreign_error(resource_name, &inventory.ownership));
        }
        let context = format!("dropping {resource_name}");
        let mut connection = self.admin_connection().await?;
        let dropped = async {
            if inventory.role {
                connection
                    .execute(
                        format!("ALTER USER {} ACCOUNT LOCK", account(resource_name)?).as_str(),
                    )
                    .await
                    .map_err(|error| Error::from_server(&context, error))?;
                Self::end_sessions(&mut connection, resource_name).await?;
            }
            connection
                .execute(format!("DROP USER IF EXISTS {}", account(resource_name)?).as_str())
                .await
                .map_err(|error| Error::from_server(&context, error))?;
            failpoint(DROP_OPERATION, "user_dropped").await?;
            connection
                .execute(format!("DROP DATABASE IF EXISTS {database}").as_str())
                .await
                .map_err(|error| Error::from_server(&context, error))?;
            Ok(())
        }
        .await;
        let _ = connection.close().await;
        dropped
    }

    /// Locks the account and ends its sessions; the data stays.
    pub async fn disable_login(&self, resource_name: &str) -> Result<()> {
        let inventory = self.inventory(resource_name).await?;
        let mut connection = self.admin_connection().await?;
        let disabled = async {
            if inventory.role {
                connection
                    .execute(
                        format!("ALTER USER {} ACCOUNT LOCK", account(resource_name)?).as_str(),
                    )
                    .await
                    .map_err(|error| Error::from_server("disabling login", error))?;
            }
            Self::end_sessions(&mut connection, resource_name).await
        }
        .await;
        let _ = connection.close().await;
        disabled
    }

    /// Unlocks the account of a tenant marked as this installation's (`Error::Foreign` otherwise).
    pub async fn enable_login(&self, resource_name: &str) -> Result<()> {
        let inventory = self.inventory(resource_name).await?;
        if !inventory.role {
            return Err(Error::Refused(format!(
                "there is no user {resource_name} to enable; ensuring the database creates it"
            )));
        }
        if inventory.ownership != Ownership::Ours {
            return Err(foreign_error(resource_name, &inventory.ownership));
        }
        self.execute_all(
            &[format!(
                "ALTER USER {} ACCOUNT UNLOCK",
                account(resource_name)?
            )],
            "enabling login",
        )
        .await
    }

    /// The account's lock, connection limit and statement time, and who else holds privileges on the database.
    pub async fn tenant_access(&self, resource_name: &str) -> Result<TenantAccess> {
        quote_identifier(resource_name)?;
        let mut connection = self.admin_connection().await?;
        let read = async {
            let user: Option<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT CAST(JSON_VALUE(Priv, '$.account_locked') AS CHAR),
                        CAST(JSON_VALUE(Priv, '$.max_user_connections') AS CHAR),
                        CAST(JSON_VALUE(Priv, '$.max_statement_time') AS CHAR)
                 FROM mysql.global_priv WHERE User = ? AND Host = '%'",
            )
            .bind(resource_name)
            .fetch_optional(&mut connection)
            .await
            .map_err(|error| Error::from_server("reading the tenant's account", error))?;
            // Grants on the database, or on tables in it, to any account but the tenant's own.
            let others: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT CAST(CONCAT(User, '@', Host) AS CHAR) FROM (
                     SELECT User, Host FROM mysql.db WHERE (Db = ? OR Db = ?) AND NOT (User = ? AND Host = '%')
                     UNION ALL
                     SELECT User, Host FROM mysql.tables_priv WHERE Db = ? AND NOT (User = ? AND Host = '%')
                 ) AS grantees ORDER BY 1",
            )
            .bind(resource_name)
            .bind(grant_pattern(resource_name))
            .bind(resource_name)
            .bind(resource_name)
            .bind(resource_name)
            .fetch_all(&mut connection)
            .await
            .map_err(|error| Error::from_server("reading database privileges", error))?;
            Ok::<_, Error>((user, others))
        }
        .await;
        let _ = connection.close().await;
        let (user, others) = read?;
        Ok(TenantAccess {
            login: user
                .as_ref()
                .map(|(locked, _, _)| !matches!(locked.as_deref(), Some("true" | "1"))),
            role_connection_limit: user.as_ref().map(|(_, limit, _)| {
                limit
                    .as_deref()
                    .and_then(|limit| limit.parse().ok())
                    .unwrap_or(0)
            }),
            database_connection_limit: None,
            statement_timeout: user.and_then(|(_, _, seconds)| {
                seconds
                    .and_then(|seconds| seconds.parse::<f64>().ok())
                    .map(|seconds| format!("{}", (seconds * 1000.0).round() as i64))
            }),
            other_connectors: others,
            file_mode: None,
        })
    }

    /// Every database and user named `tenant_*`, whose each is (a user is its database's), and the grants a
    /// user of this installation holds beyond its own database as drift.
    pub async fn list_tenant_resources(&self) -> Result<Vec<TenantResource>> {
        let mut connection = self.admin_connection().await?;
        let listed = async {
            let databases: Vec<(String, Option<String>)> = sqlx::query_as(
                "SELECT CAST(SCHEMA_NAME AS CHAR), CAST(SCHEMA_COMMENT AS CHAR) FROM information_schema.SCHEMATA
                 WHERE SCHEMA_NAME LIKE 'tenant\\_%' ORDER BY 1",
            )
            .fetch_all(&mut connection)
            .await
            .map_err(|error| Error::from_server("reading the server catalog", error))?;
            let users: Vec<String> = sqlx::query_scalar(
                "SELECT CAST(User AS CHAR) FROM mysql.global_priv WHERE User LIKE 'tenant\\_%' AND Host = '%' ORDER BY 1",
            )
            .fetch_all(&mut connection)
            .await
            .map_err(|error| Error::from_server("reading the server's users", error))?;
            let mut resources = Vec::new();
            for (name, comment) in &databases {
                resources.push(TenantResource {
                    name: name.clone(),
                    kind: "database",
                    ownership: self.installation.judge_mark(comment.as_deref()),
                    drift: Vec::new(),
                });
            }
            for name in users {
                let ownership = databases
                    .iter()
                    .find(|(database, _)| *database == name)
                    .map(|(_, comment)| self.installation.judge_mark(comment.as_deref()))
                    .unwrap_or(Ownership::Unmarked);
                // Another installation's user is its business; names that are not tenant identifiers are not
                // tenantry's at all.
                let drift = if ownership == Ownership::Ours && quote_identifier(&name).is_ok() {
                    extra_grants(&name, &Self::grants_of(&mut connection, &name).await?)
                        .into_iter()
                        .map(|grant| format!("holds {grant} beyond its own database"))
                        .collect()
                } else {
                    Vec::new()
                };
                resources.push(TenantResource {
                    name,
                    kind: "user",
                    ownership,
                    drift,
                });
            }
            resources.sort_by(|left, right| (&left.name, left.kind).cmp(&(&right.name, right.kind)));
            Ok::<_, Error>(resources)
        }
        .await;
        let _ = connection.close().await;
        listed
    }

    /// Brings an existing tenant in line with the plan and tenantry's access model (a plan change, `reconcile`):
    /// quotas, privileges on its own database alone, the comment. Login is left as it is (a suspended tenant
    /// stays suspended).
    pub async fn apply_plan_limits(&self, spec: &TenantDatabaseSpec) -> Result<()> {
        let inventory = self.inventory(&spec.resource_name).await?;
        if let Ownership::Foreign(_) = inventory.ownership {
            return Err(foreign_error(&spec.resource_name, &inventory.ownership));
        }
        if !inventory.database || !inventory.role {
            return Err(Error::Refused(format!(
                "{}: the database or user is missing",
                spec.resource_name
            )));
        }
        self.settle(spec, None, false).await
    }

    /// Takes every privilege on the tenant's database away from `grantee` (`user@host`, as `tenant_access`
    /// names it).
    pub async fn revoke_database_access(&self, resource_name: &str, grantee: &str) -> Result<()> {
        let (user, host) = grantee
            .rsplit_once('@')
            .ok_or_else(|| Error::Refused(format!("{grantee:?} is not an account (user@host)")))?;
        let account = format!("{}@{}", literal(user), literal(host));
        let mut connection = self.admin_connection().await?;
        let mut outcome = Ok(());
        for object in [
            format!("`{}`.*", grant_pattern(resource_name)),
            format!("{}.*", quote_name(resource_name)?),
        ] {
            match connection
                .execute(format!("REVOKE ALL PRIVILEGES ON {object} FROM {account}").as_str())
                .await
            {
                // 1141: no such grant on that form of the name.
                Err(error) if error_number(&error) != Some(1141) => {
                    outcome = Err(Error::from_server("revoking database access", error));
                    break;
                }
                _ => {}
            }
        }
        let _ = connection.close().await;
        outcome
    }

    /// The cost labels in the database's comment.
    pub async fn resource_labels(
        &self,
        resource_name: &str,
    ) -> Result<Vec<(&'static str, Option<serde_json::Value>)>> {
        let mut connection = self.admin_connection().await?;
        let comment = Self::database_comment(&mut connection, resource_name).await;
        let _ = connection.close().await;
        Ok(vec![("database", Self::labels_in(comment?.as_deref()))])
    }

    async fn tenant_connection(tenant_url: &SecretString) -> Result<MySqlConnection> {
        let options = Self::tenant_options(tenant_url)?;
        Self::connect(&options, "tenant database").await
    }

    fn tenant_options(tenant_url: &SecretString) -> Result<MySqlConnectOptions> {
        Ok(MySqlConnectOptions::from_str(tenant_url.expose())
            .map_err(|_| Error::Refused("the tenant's mysql URL is not valid".into()))?
            .collation(SESSION_COLLATION)
            .log_statements(tracing::log::LevelFilter::Off))
    }

    /// Applies the migrations as the tenant. A migration that stopped midway (its DDL committed, its record left
    /// unsuccessful) is tried again rather than reported as dirty: MariaDB cannot roll DDL back, so the `mysql/`
    /// migrations are written to run again over their own partial work (`IF NOT EXISTS`).
    pub async fn run_migrations(
        &self,
        tenant_url: &SecretString,
        migrator: &sqlx::migrate::Migrator,
    ) -> Result<()> {
        let mut connection = Self::tenant_connection(tenant_url).await?;
        let migrated = async {
            Self::forget_unfinished(&mut connection).await?;
            migrator
                .run_direct(&mut connection)
                .await
                .map_err(migration_error)
        }
        .await;
        let _ = connection.close().await;
        migrated
    }

    async fn forget_unfinished(connection: &mut MySqlConnection) -> Result<()> {
        match sqlx::query("DELETE FROM _sqlx_migrations WHERE NOT success")
            .execute(&mut *connection)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if super::schema_version::no_migrations_table(&error) => Ok(()),
            Err(error) => Err(Error::from_server("reading the migration records", error)),
        }
    }

    pub async fn applied_migrations(
        &self,
        tenant_url: &SecretString,
    ) -> Result<Vec<AppliedMigration>> {
        let mut connection = Self::tenant_connection(tenant_url).await?;
        let rows = sqlx::query_as(super::schema_version::APPLIED_MIGRATIONS_SQL)
            .fetch_all(&mut connection)
            .await;
        let _ = connection.close().await;
        super::schema_version::applied_from(rows)
    }

    pub async fn migrate_tenant(
        &self,
        tenant_url: &SecretString,
        schema: &SchemaVersion,
    ) -> Result<(Result<()>, Vec<AppliedMigration>)> {
        let mut connection = Self::tenant_connection(tenant_url).await?;
        let migrated = async {
            Self::forget_unfinished(&mut connection).await?;
            schema
                .migrator
                .run_direct(&mut connection)
                .await
                .map_err(migration_error)
        }
        .await;
        let rows = sqlx::query_as(super::schema_version::APPLIED_MIGRATIONS_SQL)
            .fetch_all(&mut connection)
            .await;
        let _ = connection.close().await;
        Ok((migrated, super::schema_version::applied_from(rows)?))
    }

    /// Runs the admin seed as the tenant: `?` placeholders bound to email, password hash, invitation hash.
    pub async fn seed_admin(&self, tenant_url: &SecretString, seed: &AdminSeed<'_>) -> Result<()> {
        let mut connection = Self::tenant_connection(tenant_url).await?;
        let seeded = sqlx::query(seed.sql)
            .bind(seed.email)
            .bind(seed.password_hash)
            .bind(seed.invitation_token_hash)
            .execute(&mut connection)
            .await
            .map_err(|error| seed_error(Error::from_server("seeding the first admin", error)));
        let _ = connection.close().await;
        seeded.map(|_| ())
    }

    /// Prepares each statement as the tenant (MariaDB resolves tables and columns when it prepares).
    pub async fn check_statements_fit(
        &self,
        tenant_url: &SecretString,
        statements: &[ConfiguredStatement<'_>],
    ) -> Result<()> {
        let mut connection = Self::tenant_connection(tenant_url).await?;
        let mut fits = Ok(());
        for statement in statements {
            if let Err(error) = (&mut connection).prepare(statement.sql).await {
                fits = Err(statement_misfit(statement, error));
                break;
            }
        }
        let _ = connection.close().await;
        fits
    }

    /// Replaces tenantry's keys in `tenantry_settings` in one transaction (the table is made first: its DDL
    /// would commit the transaction).
    pub async fn write_settings(
        &self,
        tenant_url: &SecretString,
        settings: &[(String, String)],
        owned_prefixes: &[&str],
    ) -> Result<()> {
        let mut connection = Self::tenant_connection(tenant_url).await?;
        let written = async {
            connection.execute(ENSURE_SETTINGS_TABLE).await?;
            let mut transaction = connection.begin().await?;
            let keys: Vec<&str> = settings.iter().map(|(key, _)| key.as_str()).collect();
            for prefix in owned_prefixes {
                let stale: Vec<String> = sqlx::query_scalar(
                    "SELECT `key` FROM tenantry_settings WHERE LEFT(`key`, CHAR_LENGTH(?)) = ?",
                )
                .bind(*prefix)
                .bind(*prefix)
                .fetch_all(&mut *transaction)
                .await?;
                for key in stale.iter().filter(|key| !keys.contains(&key.as_str())) {
                    sqlx::query("DELETE FROM tenantry_settings WHERE `key` = ?")
                        .bind(key)
                        .execute(&mut *transaction)
                        .await?;
                }
            }
            for (key, value) in settings {
                // `updated_at` first: MariaDB assigns left to right, and it must compare the old value.
                sqlx::query(
                    "INSERT INTO tenantry_settings (`key`, value) VALUES (?, ?)
                     ON DUPLICATE KEY UPDATE
                         updated_at = IF(value = VALUES(value), updated_at, CURRENT_TIMESTAMP),
                         value = VALUES(value)",
                )
                .bind(key)
                .bind(value)
                .execute(&mut *transaction)
                .await?;
            }
            transaction.commit().await
        }
        .await;
        let _ = connection.close().await;
        written.map_err(|error| Error::from_server("writing the tenant's settings", error))
    }

    /// Logs in with the tenant's URL and reads what the validation suite judges.
    pub async fn probe_tenant(
        &self,
        tenant_url: &SecretString,
        admin_check: Option<(&str, &str)>,
    ) -> Result<TenantProbe> {
        let mut connection = Self::tenant_connection(tenant_url).await?;
        let probed = async {
            let (current_user, current_database): (String, Option<String>) =
                sqlx::query_as("SELECT CAST(CURRENT_USER() AS CHAR), CAST(DATABASE() AS CHAR)")
                    .fetch_one(&mut connection)
                    .await?;
            let user = current_user
                .rsplit_once('@')
                .map(|(user, _)| user.to_owned())
                .unwrap_or(current_user);
            let grants: Vec<String> = sqlx::query_scalar("SHOW GRANTS FOR CURRENT_USER()")
                .fetch_all(&mut connection)
                .await?;
            let extra = extra_grants(&user, &grants);
            let mut elevated = Vec::new();
            if extra.iter().any(|grant| grant.contains(" ON *.*")) {
                elevated.push("global privileges");
            }
            if extra
                .iter()
                .any(|grant| grant.contains("WITH GRANT OPTION"))
            {
                elevated.push("grant option");
            }
            let schema_version: Option<i64> =
                sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                    .fetch_one(&mut connection)
                    .await
                    .unwrap_or(None);
            let admin_ready = match admin_check {
                Some((sql, email)) => Some(
                    match sqlx::query_scalar::<_, i64>(sql)
                        .bind(email)
                        .fetch_one(&mut connection)
                        .await
                    {
                        Ok(count) => Ok(count > 0),
                        Err(error @ (sqlx::Error::Io(_) | sqlx::Error::Protocol(_))) => {
                            return Err(error)
                        }
                        Err(error) => Err(crate::error::describe(&error)),
                    },
                ),
                None => None,
            };
            connection.execute("SELECT 1").await?;
            let started = Instant::now();
            connection.execute("SELECT 1").await?;
            Ok::<_, sqlx::Error>(TenantProbe {
                current_user: Some(user),
                current_database: current_database.unwrap_or_default(),
                elevated_privileges: Some(elevated),
                schema_version,
                admin_ready,
                query_latency: started.elapsed(),
            })
        }
        .await;
        let _ = connection.close().await;
        probed.map_err(|error| Error::from_server("probing the tenant database", error))
    }

    /// The other tenant databases this tenant's account reaches by the server's privilege rules: through a
    /// database grant whose pattern matches them, a table grant in them, or a global privilege.
    pub async fn tenant_databases_open_to(&self, resource_name: &str) -> Result<Reachable> {
        let mut connection = self.admin_connection().await?;
        let read = async {
            let others: Vec<String> = sqlx::query_scalar(
                "SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA
                 WHERE SCHEMA_NAME LIKE 'tenant\\_%' AND SCHEMA_NAME <> ? ORDER BY 1",
            )
            .bind(resource_name)
            .fetch_all(&mut connection)
            .await?;
            let granted: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT CAST(s.SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA s
                 WHERE s.SCHEMA_NAME LIKE 'tenant\\_%' AND s.SCHEMA_NAME <> ?
                   AND (EXISTS (SELECT 1 FROM mysql.db d
                                WHERE d.User = ? AND d.Host = '%' AND s.SCHEMA_NAME LIKE d.Db)
                        OR EXISTS (SELECT 1 FROM mysql.tables_priv t
                                   WHERE t.User = ? AND t.Host = '%' AND t.Db = s.SCHEMA_NAME)
                        OR EXISTS (SELECT 1 FROM mysql.user u
                                   WHERE u.User = ? AND u.Host = '%' AND u.Select_priv = 'Y'))
                 ORDER BY 1",
            )
            .bind(resource_name)
            .bind(resource_name)
            .bind(resource_name)
            .bind(resource_name)
            .fetch_all(&mut connection)
            .await?;
            Ok::<_, sqlx::Error>((others, granted))
        }
        .await;
        let _ = connection.close().await;
        let (others, granted) =
            read.map_err(|error| Error::from_server("reading database privileges", error))?;
        Ok(Reachable {
            granted,
            open_to_public: Vec::new(),
            n_others: others.len() as i64,
        })
    }

    /// Tries to log in to `database` on this server with the tenant's credentials.
    pub async fn tenant_login_to(
        &self,
        tenant_url: &SecretString,
        database: &str,
    ) -> Result<LoginAttempt> {
        let options = Self::tenant_options(tenant_url)?.database(database);
        match tokio::time::timeout(CONNECT_TIMEOUT, MySqlConnection::connect_with(&options)).await {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                Ok(LoginAttempt::Allowed)
            }
            Ok(Err(error)) => match error_number(&error) {
                Some(number) if LOGIN_REFUSED.contains(&number) => {
                    Ok(LoginAttempt::Refused(crate::error::describe(&error)))
                }
                // Too many connections (the server's, or the tenant user's MAX_USER_CONNECTIONS while its own
                // sessions close): no verdict on the login yet.
                Some(1040 | 1226) => Err(Error::Transient(format!(
                    "the login attempt met a connection limit: {}",
                    crate::error::describe(&error)
                ))),
                _ => Err(Error::from_server("trying the login", error)),
            },
            Err(_) => Err(Error::Transient("the login attempt timed out".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_native_hash_is_mysqls() {
        // SELECT PASSWORD('secret') on MariaDB.
        assert_eq!(
            native_password_hash(&SecretString::new("secret".into())),
            "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"
        );
    }

    #[test]
    fn only_grants_beyond_the_own_database_are_extra() {
        let name = "tenant_ab_c";
        let lines = vec![
            "GRANT USAGE ON *.* TO `tenant_ab_c`@`%` IDENTIFIED BY PASSWORD '*ABC'".to_owned(),
            "GRANT ALL PRIVILEGES ON `tenant\\_ab\\_c`.* TO `tenant_ab_c`@`%`".to_owned(),
        ];
        assert!(extra_grants(name, &lines).is_empty());
        let mut widened = lines.clone();
        widened.push("GRANT SELECT ON `mysql`.* TO `tenant_ab_c`@`%`".to_owned());
        widened.push("GRANT PROCESS ON *.* TO `tenant_ab_c`@`%`".to_owned());
        let extra = extra_grants(name, &widened);
        assert_eq!(extra, ["SELECT ON `mysql`.*", "PROCESS ON *.*"]);
        assert!(extra.iter().all(|grant| !grant.contains("ABC")));
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal(r#"{"a":"x'\y"}"#), r#"'{"a":"x''\\y"}'"#);
    }
}
