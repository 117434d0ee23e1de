//! The tenant's database as a [`ResourceProvider`]: a PostgreSQL role and database, a MariaDB user and database,
//! or a SQLite file, driven
//! through [`TenantServer`]. Not registered in [`super::Providers::standard`]: the workflows still make the
//! database through its own phases (`database_created`, `migrated`, …), and would otherwise handle it twice.

use super::check;
use super::{
    InventoryItem, Observed, ResourceProvider, ResourceServer, Verification, WantedResource,
};
use crate::credentials::{self, SecretString};
use crate::engines::{
    login_of_url, tenant_logins, tenant_of_login, LoginAttempt, Ownership, PostgresServer,
    Sessions, TenantAccess, TenantDatabaseSpec, TenantServer,
};
use crate::{Error, Result};
use serde_json::Value;
use tenantry_core::{EngineKind, Isolation, Slug};

/// A plan without `connection_limit` gets this many connections per tenant.
const DEFAULT_CONNECTION_LIMIT: u32 = 10;
/// A plan without `statement_timeout_ms` gets this statement timeout.
const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 30_000;

/// A SQLite tenant's file while the tenant may use it, and while it is disabled (see `disable_login`).
const SQLITE_OPEN_MODE: u32 = 0o600;
const SQLITE_DISABLED_MODE: u32 = 0o400;

/// Tenant databases on PostgreSQL, MariaDB and SQLite servers.
pub struct TenantDatabases {
    /// The platform's sessions, so that this provider shares admin pools with the workflows.
    sessions: Sessions,
}

impl TenantDatabases {
    pub fn new(sessions: Sessions) -> TenantDatabases {
        TenantDatabases { sessions }
    }

    fn tenant_server(&self, server: &ResourceServer) -> Result<TenantServer> {
        TenantServer::from_admin_url(
            server.engine,
            &server.admin_url,
            &server.installation,
            &self.sessions,
        )
    }

    /// The server placing the tenant as its wanted state says (`isolation` and `shared_tables` among its quotas,
    /// which the workflows add for a shared-tier plan).
    fn placed_server(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
    ) -> Result<TenantServer> {
        let isolation: Isolation = match wanted.quotas.get("isolation") {
            None | Some(Value::Null) => Isolation::Database,
            Some(value) => serde_json::from_value(value.clone()).map_err(|_| {
                Error::Refused(format!(
                    "the database's isolation {value} is neither database nor schema"
                ))
            })?,
        };
        let shared_tables: Vec<String> = match wanted.quotas.get("shared_tables") {
            None | Some(Value::Null) => Vec::new(),
            Some(value) => serde_json::from_value(value.clone()).map_err(|_| {
                Error::Refused(format!(
                    "the database's shared_tables {value} is not a list of names"
                ))
            })?,
        };
        self.tenant_server(server)?
            .with_isolation(isolation, &shared_tables)
    }
}

/// The plan's quotas for the database, with the defaults a plan without them gets.
fn database_spec(wanted: &WantedResource) -> Result<TenantDatabaseSpec> {
    let quota = |key: &str| -> Result<Option<u64>> {
        match wanted.quotas.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value.as_u64().map(Some).ok_or_else(|| {
                Error::Refused(format!(
                    "the plan's database quota {key} is {value}, not a whole number"
                ))
            }),
        }
    };
    let connection_limit = match quota("connection_limit")? {
        None => DEFAULT_CONNECTION_LIMIT,
        Some(limit) => u32::try_from(limit)
            .ok()
            .filter(|limit| i32::try_from(*limit).is_ok())
            .ok_or_else(|| {
                Error::Refused(format!(
                    "the plan's database quota connection_limit is {limit}, too large"
                ))
            })?,
    };
    Ok(TenantDatabaseSpec {
        resource_name: wanted.name.clone(),
        connection_limit,
        statement_timeout_ms: quota("statement_timeout_ms")?
            .unwrap_or(DEFAULT_STATEMENT_TIMEOUT_MS),
        labels: serde_json::json!({}),
    })
}

/// The password in the tenant's URL, on engines that use one.
fn password_of(tenant: &TenantServer, credentials: &SecretString) -> Result<Option<SecretString>> {
    if !tenant.uses_passwords() {
        return Ok(None);
    }
    credentials::password_in_url(credentials)
        .map(Some)
        .ok_or_else(|| Error::Refused("the tenant's database URL holds no password".into()))
}

/// Whether `credentials` is the URL of `name` on this server (its password aside, which is what it carries), as
/// either of the tenant's logins on PostgreSQL (after a rotation, the secret may name the alternate).
fn names_this_database(
    tenant: &TenantServer,
    name: &str,
    credentials: &SecretString,
) -> Result<bool> {
    let password = password_of(tenant, credentials)?;
    if let (TenantServer::Postgres(server), Some(password)) = (tenant, password.as_ref()) {
        let login = login_of_url(credentials)?;
        return Ok(tenant_logins(name).contains(&login)
            && server.login_url(&login, name, password).expose() == credentials.expose());
    }
    Ok(tenant.tenant_url(name, password.as_ref())?.expose() == credentials.expose())
}

/// The PostgreSQL server behind `tenant`: only PostgreSQL tenants have logins to rotate.
fn rotating_server<'t>(tenant: &'t TenantServer, kind: &str) -> Result<&'t PostgresServer> {
    match tenant {
        TenantServer::Postgres(server) => Ok(server),
        other => Err(Error::Refused(format!(
            "a {kind} on a {} server has no login to rotate",
            other.engine()
        ))),
    }
}

/// How the login, quotas and access the engine reports differ from `wanted`.
fn access_differences(
    access: &TenantAccess,
    wanted: &WantedResource,
    spec: &TenantDatabaseSpec,
) -> Vec<String> {
    let name = &wanted.name;
    let mut differences = Vec::new();
    if let Some(mode) = access.file_mode {
        // A SQLite file's mode is its login and its isolation at once: one sentence says both.
        let expected = if wanted.enabled {
            SQLITE_OPEN_MODE
        } else {
            SQLITE_DISABLED_MODE
        };
        if mode != expected {
            differences.push(format!(
                "file mode is {mode:04o}; a tenant's file is {expected:04o}{}",
                if wanted.enabled {
                    ""
                } else {
                    " while disabled"
                }
            ));
        }
    } else if let Some(login) = access.login {
        match (login, wanted.enabled) {
            (true, false) => differences.push(format!(
                "login is enabled for role {name}, though the tenant is disabled"
            )),
            (false, true) => differences.push(format!("login is disabled for role {name}")),
            _ => {}
        }
    }
    let limit = i64::from(spec.connection_limit);
    for (what, actual) in [
        ("role", access.role_connection_limit),
        ("database", access.database_connection_limit),
    ] {
        if let Some(actual) = actual.filter(|actual| i64::from(*actual) != limit) {
            differences.push(format!(
                "the {what}'s connection limit is {actual}, the plan says {limit}"
            ));
        }
    }
    // Only engines with roles report a login without a file mode; they also keep the statement timeout.
    if access.login.is_some() && access.file_mode.is_none() {
        let wanted_timeout = spec.statement_timeout_ms.to_string();
        match access.statement_timeout.as_deref() {
            Some(actual) if actual == wanted_timeout => {}
            Some(actual) => differences.push(format!(
                "statement_timeout is {actual}, the plan says {wanted_timeout}"
            )),
            None => differences.push(format!(
                "statement_timeout is not set, the plan says {wanted_timeout}"
            )),
        }
    }
    // PUBLIC is already reported from the server's drift (`list_tenant_resources`).
    for role in access
        .other_connectors
        .iter()
        .filter(|role| *role != "PUBLIC")
    {
        differences.push(format!("role {role} may connect to database {name}"));
    }
    differences
}

impl TenantDatabases {
    /// PostgreSQL: a fresh login with the tenant's URL to its own database, as itself and with no elevated
    /// privilege; no other tenant database grants its role CONNECT, its own database admits no other role, and the
    /// neighbour's database refuses its login.
    async fn verify_postgres(
        &self,
        tenant: &TenantServer,
        wanted: &WantedResource,
        credentials: &SecretString,
        neighbour: &WantedResource,
    ) -> Result<Vec<Verification>> {
        let name = &wanted.name;
        let login = match tenant.tenant_login_to(credentials, name).await? {
            Some(LoginAttempt::Allowed) => match tenant.probe_tenant_afresh(credentials).await {
                Ok(probe) => {
                    let elevated = probe.elevated_privileges.unwrap_or_default();
                    let as_itself = probe.current_user.as_deref() == Some(name.as_str())
                        && probe.current_database == *name;
                    check(
                        "database_login",
                        as_itself && elevated.is_empty(),
                        if !as_itself {
                            format!(
                                "the URL logged in as {} to {}, not as {name} to {name}",
                                probe.current_user.unwrap_or_default(),
                                probe.current_database
                            )
                        } else if !elevated.is_empty() {
                            format!("role {name} logged in, and holds {}", elevated.join(", "))
                        } else {
                            format!("role {name} logged in to {name}, with no elevated privilege")
                        },
                    )
                }
                // The server went away between the two logins: nothing was learned about the tenant.
                Err(error @ Error::Transient(_)) => return Err(error),
                Err(error) => check(
                    "database_login",
                    false,
                    format!("role {name} logged in, but the probe failed: {error}"),
                ),
            },
            Some(LoginAttempt::Refused(why)) => check(
                "database_login",
                false,
                format!("role {name} could not log in to {name}: {why}"),
            ),
            None => {
                return Err(Error::Refused(format!(
                    "a {} server has no logins to verify",
                    tenant.engine()
                )))
            }
        };

        let mut problems = Vec::new();
        let mut found = Vec::new();
        if let Some(reachable) = tenant.tenant_databases_open_to(name).await? {
            if reachable.granted.is_empty() {
                found.push(format!(
                    "none of the {} other tenant databases grants it CONNECT",
                    reachable.n_others
                ));
            } else {
                problems.push(format!(
                    "role {name} has been granted CONNECT on {}",
                    reachable.granted.join(", ")
                ));
            }
        }
        let access = tenant.tenant_access(name).await?;
        if access.other_connectors.is_empty() {
            found.push(format!("{name} admits no role but its own"));
        } else {
            problems.push(format!(
                "{name} admits {} besides its own role",
                access.other_connectors.join(", ")
            ));
        }
        match tenant.tenant_login_to(credentials, &neighbour.name).await? {
            Some(LoginAttempt::Allowed) => problems.push(format!(
                "the tenant's credentials log in to the neighbour's database {}",
                neighbour.name
            )),
            Some(LoginAttempt::Refused(why)) => found.push(format!(
                "the neighbour's database {} refused its login ({why})",
                neighbour.name
            )),
            None => {}
        }
        let isolated = if problems.is_empty() {
            check("database_isolated", true, found.join("; "))
        } else {
            check("database_isolated", false, problems.join("; "))
        };
        Ok(vec![login, isolated])
    }

    /// MariaDB: a fresh login with the tenant's URL to its own database, as its own account with no privilege
    /// beyond that database; no other tenant database matches one of its grants, and real logins to the
    /// neighbour's database and to the server's own `mysql` schema are refused.
    async fn verify_mariadb(
        &self,
        tenant: &TenantServer,
        wanted: &WantedResource,
        credentials: &SecretString,
        neighbour: &WantedResource,
    ) -> Result<Vec<Verification>> {
        let name = &wanted.name;
        let login = match tenant.probe_tenant_afresh(credentials).await {
            Ok(probe) => {
                let elevated = probe.elevated_privileges.unwrap_or_default();
                let as_itself = probe.current_user.as_deref() == Some(name.as_str())
                    && probe.current_database == *name;
                check(
                    "database_login",
                    as_itself && elevated.is_empty(),
                    if !as_itself {
                        format!(
                            "the URL logged in as {} to {}, not as {name} to {name}",
                            probe.current_user.unwrap_or_default(),
                            probe.current_database
                        )
                    } else if !elevated.is_empty() {
                        format!("user {name} logged in, and holds {}", elevated.join(", "))
                    } else {
                        format!("user {name} logged in to {name}, with no privilege beyond it")
                    },
                )
            }
            Err(error @ Error::Transient(_)) => return Err(error),
            Err(error) => check(
                "database_login",
                false,
                format!("user {name} could not log in to {name}: {error}"),
            ),
        };
        let mut problems = Vec::new();
        let mut found = Vec::new();
        if let Some(reachable) = tenant.tenant_databases_open_to(name).await? {
            if reachable.granted.is_empty() {
                found.push(format!(
                    "none of the {} other tenant databases matches its grants",
                    reachable.n_others
                ));
            } else {
                problems.push(format!(
                    "user {name} has been granted privileges on {}",
                    reachable.granted.join(", ")
                ));
            }
        }
        let access = tenant.tenant_access(name).await?;
        if access.other_connectors.is_empty() {
            found.push(format!("{name} grants no account but its own"));
        } else {
            problems.push(format!(
                "{name} grants {} besides its own user",
                access.other_connectors.join(", ")
            ));
        }
        for database in [neighbour.name.as_str(), "mysql"] {
            match tenant.tenant_login_to(credentials, database).await? {
                Some(LoginAttempt::Allowed) => {
                    problems.push(format!("the tenant's credentials log in to {database}"))
                }
                Some(LoginAttempt::Refused(why)) => {
                    found.push(format!("{database} refused its login ({why})"))
                }
                None => {}
            }
        }
        let isolated = if problems.is_empty() {
            check("database_isolated", true, found.join("; "))
        } else {
            check("database_isolated", false, problems.join("; "))
        };
        Ok(vec![login, isolated])
    }

    /// SQLite has no logins and no roles: a tenant is a file that only the control plane's user may open. What can
    /// be judged is that the URL opens the tenant's file, that the file is writable (not disabled), and that its
    /// mode lets no other user of the machine read it. The control plane may run as root, which no mode stops: the
    /// mode is judged, not tried.
    async fn verify_sqlite(
        &self,
        tenant: &TenantServer,
        wanted: &WantedResource,
        credentials: &SecretString,
        neighbour: &WantedResource,
    ) -> Result<Vec<Verification>> {
        let name = &wanted.name;
        let mode = tenant.tenant_access(name).await?.file_mode;
        let opened = match tenant.probe_tenant_afresh(credentials).await {
            Ok(probe) if probe.current_database == *name => Ok(()),
            Ok(probe) => Err(format!(
                "the URL opens {}, not {name}",
                probe.current_database
            )),
            Err(error @ Error::Transient(_)) => return Err(error),
            Err(error) => Err(error.to_string()),
        };
        let login = match (opened, mode) {
            (Err(why), _) => check(
                "database_login",
                false,
                format!("SQLite has no logins; the URL does not open the tenant's file: {why}"),
            ),
            (Ok(()), Some(mode)) if mode & 0o200 != 0 => check(
                "database_login",
                true,
                format!(
                    "SQLite has no logins; the URL opens {name}'s file, writable (mode {mode:04o})"
                ),
            ),
            (Ok(()), mode) => check(
                "database_login",
                false,
                format!(
                    "SQLite has no logins; {name}'s file is read-only (mode {:04o}): the tenant is disabled",
                    mode.unwrap_or_default()
                ),
            ),
        };
        let isolated = match mode {
            Some(mode) if mode & 0o077 == 0 => check(
                "database_isolated",
                true,
                format!(
                    "SQLite has no roles; {name}'s file is mode {mode:04o}, so only the control plane's user \
                     opens it, and no URL of this tenant names the neighbour's file {}.db",
                    neighbour.name
                ),
            ),
            Some(mode) => check(
                "database_isolated",
                false,
                format!(
                    "SQLite has no roles; {name}'s file is mode {mode:04o}: other users of the machine may open it"
                ),
            ),
            None => check(
                "database_isolated",
                false,
                format!("{name}'s file is missing"),
            ),
        };
        Ok(vec![login, isolated])
    }
}

#[async_trait::async_trait]
impl ResourceProvider for TenantDatabases {
    fn kind(&self) -> &'static str {
        tenantry_core::DATABASE_RESOURCE
    }

    fn engines(&self) -> &'static [EngineKind] {
        &[
            EngineKind::Postgres,
            EngineKind::Sqlite,
            EngineKind::Mariadb,
        ]
    }

    /// `tenant-db-<slug>`, the name the database's secret had before resources had providers.
    fn secret_name(&self, slug: &Slug) -> String {
        slug.secret_name()
    }

    async fn check_server(&self, server: &ResourceServer) -> Result<Vec<String>> {
        let tenant = self.tenant_server(server)?;
        tenant.check_admin_connection().await?;
        // What `servers add` warns about today: tenantry leaves such databases open unless told.
        Ok(tenant
            .databases_open_to_public()
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(|database| {
                format!(
                    "database {database} admits PUBLIC: every tenant role can log in to it and read what it holds \
                     (`tenantry servers harden {} --apply` closes it)",
                    server.name
                )
            })
            .collect())
    }

    fn new_credentials(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
    ) -> Result<SecretString> {
        let tenant = self.placed_server(server, wanted)?;
        let password = tenant
            .uses_passwords()
            .then(credentials::generate_database_password);
        tenant.tenant_url(&wanted.name, password.as_ref())
    }

    async fn observe(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        credentials: Option<&SecretString>,
    ) -> Result<Observed> {
        let tenant = self.placed_server(server, wanted)?;
        let spec = database_spec(wanted)?;
        let name = &wanted.name;
        let inventory = tenant.inventory(name).await?;
        if !inventory.any() {
            return Ok(Observed::Absent);
        }
        let mut differences = Vec::new();
        if tenant.uses_passwords() {
            // Half a tenant: an attempt that stopped midway, or someone dropped a piece.
            let login = if tenant.engine() == EngineKind::Mariadb {
                "user"
            } else {
                "role"
            };
            if !inventory.role {
                differences.push(format!("{login} {name} is missing"));
            }
            if !inventory.database {
                differences.push(format!("database {name} is missing"));
            }
        }
        for resource in tenant.list_tenant_resources().await? {
            if resource.name == *name {
                for drift in resource.drift {
                    differences.push(format!("{} {name} {drift}", resource.kind));
                }
            }
        }
        differences.extend(access_differences(
            &tenant.tenant_access(name).await?,
            wanted,
            &spec,
        ));
        // The password itself is not compared (PostgreSQL keeps a salted verifier); the rest of the URL is.
        if let Some(credentials) = credentials {
            match names_this_database(&tenant, name, credentials) {
                Ok(true) => {}
                Ok(false) => differences.push(format!(
                    "the secret's URL does not name {name} on server {}",
                    server.name
                )),
                Err(error) => differences.push(format!("the secret's URL: {error}")),
            }
        }
        Ok(Observed::Present {
            ownership: inventory.ownership,
            differences,
        })
    }

    async fn ensure(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        credentials: &SecretString,
    ) -> Result<()> {
        let tenant = self.placed_server(server, wanted)?;
        let spec = database_spec(wanted)?;
        if !names_this_database(&tenant, &wanted.name, credentials)? {
            return Err(Error::Refused(format!(
                "the credentials given are not a URL of {} on server {}",
                wanted.name, server.name
            )));
        }
        // After a rotation the URL may name the alternate login: the tenant role is then made (if missing) with a
        // password nobody is given, and retired below, so only the URL's login works.
        let alternate = match &tenant {
            TenantServer::Postgres(_) => login_of_url(credentials)? != wanted.name,
            _ => false,
        };
        let password = match alternate {
            true => Some(credentials::generate_database_password()),
            false => password_of(&tenant, credentials)?,
        };
        // An empty database: the tenant schema's migrations are the provisioning workflow's job. Another
        // installation's database or role of that name is refused here, before anything changes.
        tenant
            .create_database(&spec, password.as_ref(), None)
            .await?;
        tenant.apply_plan_limits(&spec).await?;
        if let TenantServer::Postgres(server) = &tenant {
            // The URL's login works and the tenant's other login (if any) is retired: the secret's credentials
            // are the only ones.
            server
                .rotate_login_retire(&wanted.name, credentials, wanted.enabled)
                .await?;
        }
        // A shared-tier tenant has no database of its own to close; its schema's grants are the provider's.
        if tenant.isolation() == Isolation::Schema {
            return match wanted.enabled {
                true => tenant.enable_login(&wanted.name).await,
                false => tenant.disable_login(&wanted.name).await,
            };
        }
        // A database opened to PUBLIC by hand is closed again (apply_plan_limits revokes it too; this says so).
        tenant.revoke_public_connect(&wanted.name).await?;
        // Roles granted access by hand (observe names them): a tenant's database admits its own role only.
        for role in tenant.tenant_access(&wanted.name).await?.other_connectors {
            if role != "PUBLIC" {
                tenant.revoke_database_access(&wanted.name, &role).await?;
            }
        }
        if wanted.enabled {
            tenant.enable_login(&wanted.name).await
        } else {
            tenant.disable_login(&wanted.name).await
        }
    }

    async fn remove(&self, server: &ResourceServer, name: &str) -> Result<()> {
        self.tenant_server(server)?.drop_database(name).await
    }

    async fn disable(&self, server: &ResourceServer, name: &str) -> Result<()> {
        let tenant = self.tenant_server(server)?;
        // `disable_login` itself does not look at whose the role is; another installation's tenant is not ours
        // to lock out.
        let inventory = tenant.inventory(name).await?;
        if let Ownership::Foreign(_) = inventory.ownership {
            return Err(crate::engines::foreign_error(name, &inventory.ownership));
        }
        tenant.disable_login(name).await
    }

    async fn enable(&self, server: &ResourceServer, name: &str) -> Result<()> {
        self.tenant_server(server)?.enable_login(name).await
    }

    /// PostgreSQL only: a SQLite tenant is a file with no login.
    fn rotates(&self, engine: EngineKind) -> bool {
        engine == EngineKind::Postgres
    }

    /// The tenant's other login (its role `tenant_x`, or the alternate `tenant_x.b`, a member of it) gets a new
    /// password; see `engines::postgres::logins`.
    async fn rotate_add(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        current: &SecretString,
    ) -> Result<SecretString> {
        let tenant = self.tenant_server(server)?;
        rotating_server(&tenant, self.kind())?
            .rotate_login_add(&wanted.name, current)
            .await
    }

    async fn rotate_retire(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        keep: &SecretString,
    ) -> Result<()> {
        let tenant = self.tenant_server(server)?;
        rotating_server(&tenant, self.kind())?
            .rotate_login_retire(&wanted.name, keep, wanted.enabled)
            .await
    }

    async fn verify(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        credentials: &SecretString,
        neighbour: &WantedResource,
    ) -> Result<Vec<Verification>> {
        let tenant = self.placed_server(server, wanted)?;
        match tenant.engine() {
            EngineKind::Sqlite => {
                self.verify_sqlite(&tenant, wanted, credentials, neighbour)
                    .await
            }
            EngineKind::Mariadb => {
                self.verify_mariadb(&tenant, wanted, credentials, neighbour)
                    .await
            }
            _ => {
                self.verify_postgres(&tenant, wanted, credentials, neighbour)
                    .await
            }
        }
    }

    async fn inventory(&self, server: &ResourceServer) -> Result<Vec<InventoryItem>> {
        let resources = self.tenant_server(server)?.list_tenant_resources().await?;
        // A PostgreSQL tenant is a database and a role of one name (and, after a rotation, the role's alternate
        // login): one item, whose if any piece is foreign.
        let mut items: Vec<InventoryItem> = Vec::new();
        for mut resource in resources {
            resource.name = tenant_of_login(&resource.name).to_owned();
            match items.iter_mut().find(|item| item.name == resource.name) {
                Some(item) => {
                    item.ownership =
                        Ownership::combine([item.ownership.clone(), resource.ownership]);
                }
                None => items.push(InventoryItem {
                    name: resource.name,
                    ownership: resource.ownership,
                }),
            }
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wanted(quotas: Value) -> WantedResource {
        WantedResource::new(&Slug::parse("acme").unwrap(), quotas)
    }

    #[test]
    fn quotas_default_and_are_read() {
        let spec = database_spec(&wanted(json!({}))).unwrap();
        assert_eq!(
            (spec.connection_limit, spec.statement_timeout_ms),
            (10, 30_000)
        );
        let spec = database_spec(&wanted(
            json!({ "connection_limit": 3, "statement_timeout_ms": 500 }),
        ))
        .unwrap();
        assert_eq!((spec.connection_limit, spec.statement_timeout_ms), (3, 500));
        assert!(database_spec(&wanted(json!({ "connection_limit": "many" }))).is_err());
        assert!(database_spec(&wanted(json!({ "connection_limit": 5_000_000_000u64 }))).is_err());
    }

    #[test]
    fn a_sqlite_file_mode_is_judged_against_the_tenants_state() {
        let mut wanted = wanted(json!({}));
        let spec = database_spec(&wanted).unwrap();
        let access = |mode| TenantAccess {
            login: Some(mode & 0o200 != 0),
            file_mode: Some(mode),
            ..TenantAccess::default()
        };
        assert!(access_differences(&access(0o600), &wanted, &spec).is_empty());
        assert_eq!(access_differences(&access(0o644), &wanted, &spec).len(), 1);
        assert_eq!(access_differences(&access(0o400), &wanted, &spec).len(), 1);
        wanted.enabled = false;
        assert!(access_differences(&access(0o400), &wanted, &spec).is_empty());
        assert_eq!(access_differences(&access(0o600), &wanted, &spec).len(), 1);
    }
}
