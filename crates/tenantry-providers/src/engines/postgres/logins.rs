//! A tenant's two PostgreSQL logins, so its credentials rotate with no failed login: the tenant role `tenant_x`
//! (which owns the tenant's objects and holds its grants) and the alternate `tenant_x.b`, a LOGIN role that is a
//! member of `tenant_x` and starts every session as it (`ALTER ROLE … SET role`), so what it creates belongs to the
//! tenant role. A rotation gives the login the secret does not name a new password, then retires the other:
//! `NOLOGIN`, no password, `VALID UNTIL '-infinity'` (the mark that says it is retired, readable in `pg_roles`
//! without a superuser) and its sessions ended. Suspension locks both and resumption opens the ones not retired.

use super::{connect, execute_converging, parse_url, PostgresServer};
use crate::credentials::{
    generate_database_password, password_in_url, scram_sha256_verifier, SecretString,
};
use crate::engines::{foreign_error, quote_identifier, quote_literal, Ownership};
use crate::{Error, Result};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};

/// The ending of the alternate login's name. A `.` never comes from a slug, so the alternate of one tenant is
/// never another tenant's role (RabbitMQ's alternate user has the same name for the same reason).
pub const ALTERNATE_LOGIN_SUFFIX: &str = ".b";

/// The alternate login of the tenant role `resource_name`.
pub fn alternate_login(resource_name: &str) -> String {
    format!("{resource_name}{ALTERNATE_LOGIN_SUFFIX}")
}

/// Both roles that may log in as the tenant `resource_name`: the tenant role itself, then its alternate.
pub fn tenant_logins(resource_name: &str) -> [String; 2] {
    [resource_name.to_owned(), alternate_login(resource_name)]
}

/// The tenant role a login is one of: `tenant_x` for both `tenant_x` and `tenant_x.b`.
pub fn tenant_of_login(login: &str) -> &str {
    login.strip_suffix(ALTERNATE_LOGIN_SUFFIX).unwrap_or(login)
}

/// `"name"` for SQL, for a tenant role or its alternate (the `.` is the only character the alternate adds).
pub(super) fn quote_login(login: &str) -> Result<String> {
    quote_identifier(tenant_of_login(login))?;
    Ok(format!("\"{login}\""))
}

/// The role a tenant URL logs in as.
pub fn login_of_url(url: &SecretString) -> Result<String> {
    Ok(parse_url(url, "tenant's connection URL")?
        .get_username()
        .to_owned())
}

/// The login `url` names, if it is one of the tenant `resource_name`'s (a refusal otherwise).
fn tenant_login_in(url: &SecretString, resource_name: &str) -> Result<String> {
    let login = login_of_url(url)?;
    if !tenant_logins(resource_name).contains(&login) {
        return Err(Error::Refused(format!(
            "the database credentials log in as {login:?}, not {resource_name:?} or {:?}",
            alternate_login(resource_name)
        )));
    }
    Ok(login)
}

/// One of a tenant's logins as the catalog shows it.
#[derive(Debug)]
struct LoginRow {
    login: String,
    can_login: bool,
    /// `VALID UNTIL` in the past: a rotation retired it, and resumption leaves it off.
    retired: bool,
}

impl PostgresServer {
    /// The URL that logs in as `login` to the tenant database `resource_name`.
    pub fn login_url(
        &self,
        login: &str,
        resource_name: &str,
        password: &SecretString,
    ) -> SecretString {
        let host = self.admin.get_host();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        SecretString::new(format!(
            "postgres://{login}:{}@{host}:{}/{}",
            password.expose(),
            self.admin.get_port(),
            self.database_of(resource_name)
        ))
    }

    /// The tenant's logins that exist.
    async fn logins(connection: &mut PgConnection, resource_name: &str) -> Result<Vec<LoginRow>> {
        let rows: Vec<(String, bool, bool)> = sqlx::query_as(
            "SELECT rolname::text, rolcanlogin, coalesce(rolvaliduntil < now(), false)
             FROM pg_roles WHERE rolname = ANY($1) ORDER BY rolname",
        )
        .bind(tenant_logins(resource_name).as_slice())
        .fetch_all(&mut *connection)
        .await
        .map_err(|error| Error::from_server("reading the tenant's logins", error))?;
        Ok(rows
            .into_iter()
            .map(|(login, can_login, retired)| LoginRow {
                login,
                can_login,
                retired,
            })
            .collect())
    }

    /// Ends every session of the tenant's logins named in `logins`, and waits (up to 5 s each) until they are
    /// gone: without the wait a session signalled but not yet exited can still commit, after a move's freeze has
    /// read the source's last position (seen: the target 6 rows short).
    pub(super) async fn end_sessions(
        connection: &mut PgConnection,
        logins: &[String],
    ) -> Result<()> {
        sqlx::query(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
             WHERE usename = ANY($1) AND pid <> pg_backend_pid()",
        )
        .bind(logins)
        .execute(&mut *connection)
        .await
        .map_err(|error| Error::from_server("ending sessions", error))?;
        Ok(())
    }

    /// Locks every login of the tenant out (NOLOGIN) and ends their sessions; passwords and the retired mark stay,
    /// so [`PostgresServer::enable_logins`] opens exactly the logins that were open.
    pub(super) async fn disable_logins(&self, resource_name: &str) -> Result<()> {
        let mut connection = self.admin_connection().await?;
        let present = Self::logins(&mut connection, resource_name).await?;
        for row in &present {
            connection
                .execute(format!("ALTER ROLE {} NOLOGIN", quote_login(&row.login)?).as_str())
                .await
                .map_err(|error| Error::from_server("disabling login", error))?;
        }
        Self::end_sessions(&mut connection, &tenant_logins(resource_name)).await
    }

    /// Undoes [`PostgresServer::disable_logins`]: every login of the tenant that no rotation retired may log in
    /// again (the tenant role alone, until a first rotation).
    pub(super) async fn enable_logins(&self, resource_name: &str) -> Result<()> {
        let mut connection = self.admin_connection().await?;
        for row in Self::logins(&mut connection, resource_name).await? {
            if !row.retired && !row.can_login {
                connection
                    .execute(format!("ALTER ROLE {} LOGIN", quote_login(&row.login)?).as_str())
                    .await
                    .map_err(|error| Error::from_server("enabling login", error))?;
            }
        }
        Ok(())
    }

    /// The tenant's role and database exist and are this installation's: what a rotation needs before it touches
    /// a login.
    async fn require_rotatable(&self, resource_name: &str) -> Result<()> {
        let inventory = self.inventory(resource_name).await?;
        if !inventory.database || !inventory.role {
            return Err(Error::Refused(format!(
                "{resource_name}: the database or role is missing; `tenantry doctor` names what is wrong"
            )));
        }
        if inventory.ownership != Ownership::Ours {
            return Err(foreign_error(resource_name, &inventory.ownership));
        }
        Ok(())
    }

    /// Makes `login` (one of `resource_name`'s) able to log in with `password`, or sets it up locked when
    /// `enabled` is false. The tenant role keeps its own settings; the alternate is made if missing, a member of
    /// the tenant role that starts every session as it, with the tenant role's connection limit and statement
    /// timeout (role settings apply to the login, not to the role it switches to).
    async fn set_login(
        &self,
        resource_name: &str,
        login: &str,
        password: &SecretString,
        enabled: bool,
    ) -> Result<()> {
        let context = format!("setting up login {login}");
        let quoted = quote_login(login)?;
        let login_switch = if enabled { "LOGIN" } else { "NOLOGIN" };
        let password_clause = format!(
            "PASSWORD {} VALID UNTIL 'infinity'",
            quote_literal(&scram_sha256_verifier(password))
        );
        if login == resource_name {
            let mut connection = self.admin_connection().await?;
            return execute_converging(
                &mut connection,
                &[format!(
                    "ALTER ROLE {quoted} {login_switch} {password_clause}"
                )],
                &context,
            )
            .await;
        }
        let access = self.tenant_access(resource_name).await?;
        let mut connection = self.admin_connection().await?;
        self.create_marked_role(&mut connection, login, "login", &context)
            .await?;
        let tenant_role = quote_identifier(resource_name)?;
        let mut statements = vec![
            format!(
                "ALTER ROLE {quoted} WITH {login_switch} NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS \
                 CONNECTION LIMIT {} {password_clause}",
                access.role_connection_limit.unwrap_or(-1)
            ),
            format!("GRANT {tenant_role} TO {quoted}"),
            format!(
                "ALTER ROLE {quoted} SET role = {}",
                quote_literal(resource_name)
            ),
        ];
        statements.push(match access.statement_timeout {
            Some(timeout) => format!(
                "ALTER ROLE {quoted} SET statement_timeout = {}",
                quote_literal(&timeout)
            ),
            None => format!("ALTER ROLE {quoted} RESET statement_timeout"),
        });
        execute_converging(&mut connection, &statements, &context).await
    }

    /// The alternate login's connection limit and statement timeout follow the tenant role's (a plan change).
    pub(super) async fn align_alternate_login(
        &self,
        connection: &mut PgConnection,
        resource_name: &str,
        connection_limit: u32,
        statement_timeout_ms: u64,
    ) -> Result<()> {
        let alternate = alternate_login(resource_name);
        let exists = Self::logins(connection, resource_name)
            .await?
            .iter()
            .any(|row| row.login == alternate);
        if !exists {
            return Ok(());
        }
        let quoted = quote_login(&alternate)?;
        execute_converging(
            connection,
            &[
                format!("ALTER ROLE {quoted} CONNECTION LIMIT {connection_limit}"),
                format!("ALTER ROLE {quoted} SET statement_timeout = {statement_timeout_ms}"),
            ],
            &format!("applying the plan to login {alternate}"),
        )
        .await
    }

    /// The first half of a rotation: the login `current` does not name gets a new password (the alternate is
    /// made on the first rotation) and may log in; `current` is untouched, so clients holding it carry on. Both
    /// are tried with a fresh login before the new URL is returned.
    pub async fn rotate_login_add(
        &self,
        resource_name: &str,
        current: &SecretString,
    ) -> Result<SecretString> {
        let current_login = tenant_login_in(current, resource_name)?;
        self.require_rotatable(resource_name).await?;
        let next_login = tenant_logins(resource_name)
            .into_iter()
            .find(|login| *login != current_login)
            .unwrap_or_else(|| alternate_login(resource_name));
        let password = generate_database_password();
        self.set_login(resource_name, &next_login, &password, true)
            .await?;
        let new_credentials = self.login_url(&next_login, resource_name, &password);
        for (which, credentials) in [("new", &new_credentials), ("current", current)] {
            let options = parse_url(credentials, "tenant's connection URL")?;
            let mut connection = connect(&options, "tenant database")
                .await
                .map_err(|error| {
                    Error::Transient(format!(
                        "{} could not log in to {resource_name} with the {which} credentials: {error}",
                        options.get_username()
                    ))
                })?;
            let _ = connection.execute("SELECT 1").await;
            let _ = connection.close().await;
        }
        Ok(new_credentials)
    }

    /// The second half: the login `keep` names may log in with its password (brought back if it was retired, so
    /// this is also the undo of [`PostgresServer::rotate_login_add`]), and the other is retired: no login, no
    /// password, `VALID UNTIL '-infinity'`, its sessions ended. With `enabled` false (a suspended tenant) the
    /// kept login stays locked too.
    pub async fn rotate_login_retire(
        &self,
        resource_name: &str,
        keep: &SecretString,
        enabled: bool,
    ) -> Result<()> {
        let keep_login = tenant_login_in(keep, resource_name)?;
        let password = password_in_url(keep)
            .ok_or_else(|| Error::Refused("the tenant's database URL holds no password".into()))?;
        self.require_rotatable(resource_name).await?;
        self.set_login(resource_name, &keep_login, &password, enabled)
            .await?;
        let mut connection = self.admin_connection().await?;
        let others: Vec<String> = Self::logins(&mut connection, resource_name)
            .await?
            .into_iter()
            .map(|row| row.login)
            .filter(|login| *login != keep_login)
            .collect();
        for other in &others {
            connection
                .execute(
                    format!(
                        "ALTER ROLE {} NOLOGIN PASSWORD NULL VALID UNTIL '-infinity'",
                        quote_login(other)?
                    )
                    .as_str(),
                )
                .await
                .map_err(|error| Error::from_server(&format!("retiring login {other}"), error))?;
        }
        // After NOLOGIN, so no new session of the retired login can start between the two.
        Self::end_sessions(&mut connection, &others).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alternate_login_is_never_another_tenants_role() {
        assert_eq!(
            tenant_logins("tenant_acme"),
            ["tenant_acme", "tenant_acme.b"]
        );
        assert_eq!(tenant_of_login("tenant_acme.b"), "tenant_acme");
        assert_eq!(tenant_of_login("tenant_acme"), "tenant_acme");
        assert_eq!(quote_login("tenant_acme.b").unwrap(), "\"tenant_acme.b\"");
        assert!(quote_login("tenant_acme.c").is_err());
        assert!(quote_login("tenant_a\".b").is_err());
        let slug = tenantry_core::Slug::parse("acme-b").unwrap();
        assert_ne!(slug.resource_name(), alternate_login("tenant_acme"));
    }
}
