//! Template databases and the warm pool: the two fast ways to a migrated tenant database on PostgreSQL.
//!
//! - **Template**: per tenant-schema version, `tenantry_template_<hash>` holds the schema, migrated once.
//!   A tenant database is `CREATE DATABASE … TEMPLATE` of it (PostgreSQL 15+ copies with `WAL_LOG` by default,
//!   which suits small databases: no checkpoint). The template's objects belong to a NOLOGIN role,
//!   `tenantry_template_owner`, never to the admin; a new tenant database gets them with
//!   `REASSIGN OWNED BY tenantry_template_owner TO tenant_<slug>`, so the tenant owns its tables and
//!   `_sqlx_migrations` and runs later migrations as itself.
//! - **Warm pool**: databases copied from the template ahead of time, `tenantry_pool_<hash>_<n>`, each owned
//!   (with everything in it) by a NOLOGIN role of the same name. Claiming one is a single transaction on the admin
//!   session: rename the database and the role to `tenant_<slug>`, give the role its login, set the quotas,
//!   grants and labels. Ownership follows the role, so nothing inside the database is touched, and no session to
//!   it is needed. Two jobs cannot claim one database: the second rename waits for the first and then finds no
//!   database of that name, and its transaction changes nothing.
//! - **Ownership**: every template, pool and tenant database is owned (at the database level) by the
//!   installation's NOLOGIN owner role, `tenantry_owner_<installation>`, so whose a database is can be read from
//!   its owner, and a tenant owns what is inside its database but not the database. Pool roles carry the
//!   installation's mark in their comment. Nothing a tenant can read on the server holds a secret or a label.
//!   Template and pool names carry a hash of the installation and the schema, so two installations sharing a
//!   server never use, claim or prune each other's.
//!
//! Databases are built under a temporary name, `tenantry_build_<hash>[_<n>]`, and renamed when complete, so a
//! half-built one is never used. Building, filling and pruning take one advisory lock on the admin database, so
//! concurrent processes build each template once and never number two pool databases alike, and a build database
//! that the lock's holder finds is a crash's leftover, which the next fill replaces. Nothing here is named
//! `tenant_*`: pool and template databases are not tenants to placement or to `doctor`'s orphan check.

use super::super::{quote_identifier, quote_literal, SchemaVersion, TenantDatabaseSpec};
use super::{
    already_exists, execute_converging, owner_role, sqlstate, PostgresServer, CREATE_PHASE,
};
use crate::credentials::SecretString;
use crate::{failpoint, Error, Result};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};
use std::collections::BTreeSet;

/// The NOLOGIN role that owns every object inside template databases.
pub(crate) const TEMPLATE_OWNER: &str = "tenantry_template_owner";
/// The advisory lock (two-key form, on the admin database) held while building, filling or pruning.
const MAINTENANCE_LOCK: (i32, i32) = (0x7465_6e74, 6);
/// How long a job waits for another process's template build before it reports the server busy (retryable).
const MAINTENANCE_LOCK_TIMEOUT_MS: u32 = 60_000;
/// How many pool databases a job tries before it falls back to the template.
const CLAIM_CANDIDATES: i64 = 8;

fn template_name(hash: &str) -> String {
    format!("tenantry_template_{hash}")
}

fn template_build_name(hash: &str) -> String {
    format!("tenantry_build_{hash}")
}

fn pool_name(hash: &str, number: u64) -> String {
    format!("tenantry_pool_{hash}_{number}")
}

fn pool_build_name(hash: &str, number: u64) -> String {
    format!("tenantry_build_{hash}_{number}")
}

/// `LIKE` pattern of the pool databases of one schema version (the hash is hex, so it needs no escaping).
fn pool_pattern(hash: &str) -> String {
    format!("tenantry\\_pool\\_{hash}\\_%")
}

fn is_schema_hash(text: &str) -> bool {
    text.len() == 16
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// What a `tenantry_*` database or role name stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FastPathName {
    Template {
        hash: String,
    },
    Pool {
        hash: String,
        number: u64,
    },
    /// A template or pool database still being built (or left half-built by a crash).
    Build {
        hash: String,
        number: Option<u64>,
    },
}

fn parse_hash_and_number(rest: &str) -> Option<(String, Option<u64>)> {
    let (hash, number) = match rest.split_once('_') {
        Some((hash, number)) => (hash, Some(number.parse::<u64>().ok()?)),
        None => (rest, None),
    };
    is_schema_hash(hash).then(|| (hash.to_owned(), number))
}

fn parse_name(name: &str) -> Option<FastPathName> {
    if let Some(rest) = name.strip_prefix("tenantry_template_") {
        return match parse_hash_and_number(rest)? {
            (hash, None) => Some(FastPathName::Template { hash }),
            _ => None,
        };
    }
    if let Some(rest) = name.strip_prefix("tenantry_pool_") {
        return match parse_hash_and_number(rest)? {
            (hash, Some(number)) => Some(FastPathName::Pool { hash, number }),
            _ => None,
        };
    }
    let (hash, number) = parse_hash_and_number(name.strip_prefix("tenantry_build_")?)?;
    Some(FastPathName::Build { hash, number })
}

/// How `create_database` came by the tenant's database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseOrigin {
    /// A warm-pool database, claimed by renaming it.
    WarmPool {
        /// Its former name.
        database: String,
    },
    /// A copy of the schema's template database.
    Template,
    /// An empty database; the migrations run as the tenant. `why`: the reason the template was not used.
    Plain { why: Option<String> },
    /// The database was there already (an earlier attempt made it) and was brought in line.
    Existing,
}

impl std::fmt::Display for DatabaseOrigin {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseOrigin::WarmPool { database } => {
                write!(formatter, "claimed warm-pool database {database}")
            }
            DatabaseOrigin::Template => formatter.write_str("copied from the schema template"),
            DatabaseOrigin::Plain { why: None } => formatter.write_str("created empty"),
            DatabaseOrigin::Plain { why: Some(why) } => {
                write!(formatter, "created empty (template not used: {why})")
            }
            DatabaseOrigin::Existing => formatter.write_str("already there, brought in line"),
        }
    }
}

/// Whether to wait for another process's build, fill or prune, or to give up at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    Wait,
    Skip,
}

/// What a fill did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FillReport {
    /// Pool databases made by this call.
    pub n_created: usize,
    /// Pool databases of the current schema ready when the call ended.
    pub n_ready: usize,
    /// Whether this call built the schema's template.
    pub template_built: bool,
    /// Another process held the lock and `LockWait::Skip` was asked: nothing was done.
    pub busy: bool,
}

/// What a prune removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneScope {
    /// Templates and pool databases of other schema versions, half-built databases, and pool roles without a
    /// database.
    Stale,
    /// Also the current schema's pool databases (the template stays).
    Pool,
    /// Also the current template and the template owner role: nothing of tenantry's fast paths is left.
    Everything,
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    pub dropped: Vec<String>,
    /// What could not be dropped, with why.
    pub kept: Vec<String>,
}

/// A database or role on a server.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct CatalogObject {
    /// `database` or `role`.
    pub kind: &'static str,
    pub name: String,
}

impl CatalogObject {
    fn database(name: &str) -> CatalogObject {
        CatalogObject {
            kind: "database",
            name: name.to_owned(),
        }
    }

    fn role(name: &str) -> CatalogObject {
        CatalogObject {
            kind: "role",
            name: name.to_owned(),
        }
    }
}

impl std::fmt::Display for CatalogObject {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} {}", self.kind, self.name)
    }
}

/// The fast-path databases on a server, for `pool status` and `doctor`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WarmPoolInventory {
    /// The current tenant schema's version (`None` when it could not be read).
    pub schema_hash: Option<String>,
    /// Whether the current schema's template exists.
    pub template_ready: bool,
    /// Pool databases of the current schema, ready to claim.
    pub n_ready: usize,
    /// Template databases of any schema version.
    pub n_templates: usize,
    /// Pool databases of any schema version.
    pub n_pool_databases: usize,
    /// Databases and roles a prune would remove: other schema versions, and leftovers of an interrupted build.
    pub stale: Vec<CatalogObject>,
    /// Templates, pool and build databases and pool roles of other installations (or with no installation's
    /// mark): never used, claimed or pruned here.
    pub foreign: Vec<CatalogObject>,
    /// Whether a process holds the maintenance lock (building, filling or pruning) right now.
    pub build_in_progress: bool,
}

impl WarmPoolInventory {
    fn from_catalog(
        databases: &[String],
        pool_roles: &[String],
        current: Option<&str>,
        build_in_progress: bool,
    ) -> WarmPoolInventory {
        let mut inventory = WarmPoolInventory {
            schema_hash: current.map(str::to_owned),
            build_in_progress,
            ..WarmPoolInventory::default()
        };
        let is_current = |hash: &str| current == Some(hash);
        let mut stale = BTreeSet::new();
        for name in databases {
            match parse_name(name) {
                Some(FastPathName::Template { hash }) => {
                    inventory.n_templates += 1;
                    if is_current(&hash) {
                        inventory.template_ready = true;
                    } else if current.is_some() {
                        stale.insert(CatalogObject::database(name));
                    }
                }
                Some(FastPathName::Pool { hash, .. }) => {
                    inventory.n_pool_databases += 1;
                    if is_current(&hash) {
                        inventory.n_ready += 1;
                    } else if current.is_some() {
                        stale.insert(CatalogObject::database(name));
                    }
                }
                Some(FastPathName::Build { .. }) if !build_in_progress => {
                    stale.insert(CatalogObject::database(name));
                }
                _ => {}
            }
        }
        let database_names: BTreeSet<&str> = databases.iter().map(String::as_str).collect();
        for role in pool_roles {
            let Some(FastPathName::Pool { hash, .. }) = parse_name(role) else {
                continue;
            };
            let stale_version = current.is_some() && !is_current(&hash);
            // A role is made just before its database is built, so without a build in progress a role with no
            // database of its name is a leftover.
            let lone = !database_names.contains(role.as_str()) && !build_in_progress;
            if stale_version || lone {
                stale.insert(CatalogObject::role(role));
            }
        }
        inventory.stale = stale.into_iter().collect();
        inventory
    }
}

/// The fast-path objects on a server, split by whose they are.
#[derive(Default)]
struct FastPathCatalog {
    /// This installation's template, pool and build databases.
    databases: Vec<String>,
    /// This installation's pool roles.
    pool_roles: Vec<String>,
    /// Everyone else's.
    foreign: Vec<CatalogObject>,
}

/// What `create_database` needs to know before it starts, in one round trip.
pub(super) struct CreationLookup {
    pub database: bool,
    pub role: bool,
    /// Of the tenant's database and role, where they exist.
    pub ownership: super::Ownership,
    pub template_owner: bool,
    /// Whether the installation's owner role exists.
    pub owner_role: bool,
    /// This installation's pool databases of the schema, in random order so that concurrent jobs try different
    /// ones first.
    pub candidates: Vec<String>,
}

impl PostgresServer {
    pub(super) async fn creation_lookup(
        &self,
        resource_name: &str,
        schema: Option<&SchemaVersion>,
    ) -> Result<CreationLookup> {
        let mut connection = self.admin_connection().await?;
        let owner = owner_role(&self.installation);
        let (database, database_owner, role, role_mark, template_owner, owner_exists, candidates): (
            bool,
            Option<String>,
            bool,
            Option<String>,
            bool,
            bool,
            Vec<String>,
        ) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1),
                    (SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1),
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1),
                    (SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1),
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $2),
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $5),
                    ARRAY(SELECT datname::text FROM pg_database
                          WHERE datname LIKE $3 AND pg_get_userbyid(datdba) = $5
                          ORDER BY random() LIMIT $4)",
        )
        .bind(resource_name)
        .bind(TEMPLATE_OWNER)
        .bind(schema.map(|schema| pool_pattern(&schema.hash)))
        .bind(CLAIM_CANDIDATES)
        .bind(&owner)
        .fetch_one(&mut *connection)
        .await
        .map_err(|error| Error::from_server("reading the server catalog", error))?;
        Ok(CreationLookup {
            database,
            role,
            ownership: self.judge_tenant(
                database.then_some(database_owner.as_deref()),
                role.then_some(role_mark.as_deref()),
            ),
            template_owner,
            owner_role: owner_exists,
            candidates,
        })
    }

    /// Claims one warm-pool database for the tenant, or returns `None` when none could be had. The role gets
    /// `password`.
    pub(super) async fn claim_pool_database(
        &self,
        spec: &TenantDatabaseSpec,
        password: &SecretString,
        lookup: &CreationLookup,
    ) -> Result<Option<DatabaseOrigin>> {
        if lookup.candidates.is_empty() {
            return Ok(None);
        }
        let name = quote_identifier(&spec.resource_name)?;
        let access = self.access_statements(&name, spec)?;
        failpoint(CREATE_PHASE, "claiming").await?;
        let mut connection = self.admin_connection().await?;
        for candidate in &lookup.candidates {
            if !matches!(parse_name(candidate), Some(FastPathName::Pool { .. })) {
                continue;
            }
            let pool_database = quote_identifier(candidate)?;
            // One simple-protocol message runs as one implicit transaction: the claim happens whole or not at all.
            let claim = [
                format!("ALTER DATABASE {pool_database} RENAME TO {name}"),
                format!("ALTER ROLE {pool_database} RENAME TO {name}"),
            ]
            .into_iter()
            .chain(Self::role_statements(&name, spec, Some(password)))
            .chain(access.iter().cloned())
            .map(|statement| format!("{statement};"))
            .collect::<Vec<_>>()
            .join("\n");
            match connection.execute(claim.as_str()).await {
                Ok(_) => {
                    self.log_in_ahead(&spec.resource_name, password);
                    return Ok(Some(DatabaseOrigin::WarmPool {
                        database: candidate.clone(),
                    }));
                }
                // Claimed by another job a moment ago (3D000), a session on it (55006), or a leftover without its
                // role (42704): try the next one.
                Err(error)
                    if matches!(
                        sqlstate(&error).as_deref(),
                        Some("3D000" | "55006" | "42704")
                    ) => {}
                // The tenant's own database or role appeared meanwhile (made, or being made, by another runner of
                // this phase): not a pool matter any more; the caller adopts what is there.
                Err(error) if already_exists(&error) => return Ok(None),
                Err(error) => {
                    return Err(Error::from_server(
                        &format!("claiming a warm-pool database for {}", spec.resource_name),
                        error,
                    ))
                }
            }
        }
        Ok(None)
    }

    /// Creates the tenant database as a copy of the schema's template (built first if missing), or empty when
    /// there is no schema or its template cannot be built.
    pub(super) async fn create_from_template(
        &self,
        spec: &TenantDatabaseSpec,
        schema: Option<&SchemaVersion>,
    ) -> Result<DatabaseOrigin> {
        let name = quote_identifier(&spec.resource_name)?;
        let context = format!("creating {}", spec.resource_name);
        // A new database admits PUBLIC, so it is born closed to everyone (ALLOW_CONNECTIONS false) and opened only
        // once PUBLIC's CONNECT is gone: no moment in which another tenant's role could enter it.
        let owner = quote_identifier(&owner_role(&self.installation))?;
        let plain = format!(
            "CREATE DATABASE {name} OWNER {owner} CONNECTION LIMIT {} ALLOW_CONNECTIONS false",
            spec.connection_limit
        );
        let Some(schema) = schema else {
            let origin = self
                .create_plain(&spec.resource_name, &plain, &context, None)
                .await?;
            return Ok(origin);
        };
        let from_template = format!(
            "CREATE DATABASE {name} TEMPLATE {} OWNER {owner} CONNECTION LIMIT {} ALLOW_CONNECTIONS false",
            quote_identifier(&template_name(&schema.hash))?,
            spec.connection_limit
        );
        for attempt in 0..2 {
            let mut connection = self.admin_connection().await?;
            match connection.execute(from_template.as_str()).await {
                Ok(_) => {
                    drop(connection);
                    failpoint(CREATE_PHASE, "database_created").await?;
                    self.open_to_owner_only(&name, &context).await?;
                    failpoint(CREATE_PHASE, "opened").await?;
                    return Ok(DatabaseOrigin::Template);
                }
                Err(error) if already_exists(&error) => {
                    // An earlier attempt, or another runner of this phase right now, made it, and may not have
                    // opened it yet.
                    drop(connection);
                    self.adopt_database(&spec.resource_name).await?;
                    self.open_to_owner_only(&name, &context).await?;
                    return Ok(DatabaseOrigin::Existing);
                }
                // The template does not exist (yet, or any more): build it, then copy it.
                Err(error) if sqlstate(&error).as_deref() == Some("3D000") && attempt == 0 => {
                    drop(connection);
                    match self.ensure_template(schema).await {
                        Ok(_) => {}
                        // The template is only a shortcut. If it cannot be built (the migrations fail, or the admin
                        // may not act as the template owner), the database starts empty, `migrations_applied`
                        // runs the migrations as the tenant and reports any failure where it belongs, and the
                        // job log says why the template was not used.
                        Err(Error::Migration(why) | Error::Refused(why)) => {
                            return self
                                .create_plain(&spec.resource_name, &plain, &context, Some(why))
                                .await;
                        }
                        Err(other) => return Err(other),
                    }
                }
                Err(error) => return Err(Error::from_server(&context, error)),
            }
        }
        Err(Error::Transient(format!(
            "the template for schema {} vanished while {} was being created",
            schema.hash, spec.resource_name
        )))
    }

    /// Creates the empty tenant database with `statement` and opens it, or adopts and opens one that is there
    /// already (`Existing`).
    async fn create_plain(
        &self,
        resource_name: &str,
        statement: &str,
        context: &str,
        why: Option<String>,
    ) -> Result<DatabaseOrigin> {
        let name = quote_identifier(resource_name)?;
        let mut connection = self.admin_connection().await?;
        let origin = match connection.execute(statement).await {
            Ok(_) => DatabaseOrigin::Plain { why },
            Err(error) if already_exists(&error) => {
                drop(connection);
                self.adopt_database(resource_name).await?;
                DatabaseOrigin::Existing
            }
            Err(error) => return Err(Error::from_server(context, error)),
        };
        failpoint(CREATE_PHASE, "database_created").await?;
        self.open_to_owner_only(&name, context).await?;
        failpoint(CREATE_PHASE, "opened").await?;
        Ok(origin)
    }

    /// Takes PUBLIC's CONNECT and TEMPORARY away from a new database, then lets connections in: one query
    /// string, which PostgreSQL runs as one implicit transaction (both or neither). Opening an open database
    /// changes nothing, so this is also how a resumed or concurrent runner makes sure of it.
    pub(super) async fn open_to_owner_only(&self, quoted_name: &str, context: &str) -> Result<()> {
        let mut connection = self.admin_connection().await?;
        connection
            .execute(
                format!(
                    "REVOKE CONNECT, TEMPORARY ON DATABASE {quoted_name} FROM PUBLIC;
                     ALTER DATABASE {quoted_name} ALLOW_CONNECTIONS true"
                )
                .as_str(),
            )
            .await
            .map_err(|error| Error::from_server(context, error))?;
        Ok(())
    }

    /// Gives the tenant role everything in its database that came from the template.
    pub(super) async fn hand_over_template_objects(
        &self,
        resource_name: &str,
        quoted_name: &str,
    ) -> Result<()> {
        let mut connection = self.dedicated_admin_connection(Some(resource_name)).await?;
        let handed_over = connection
            .execute(
                format!(
                    "REASSIGN OWNED BY {} TO {quoted_name}",
                    quote_identifier(TEMPLATE_OWNER)?
                )
                .as_str(),
            )
            .await
            .map_err(|error| {
                Error::from_server(
                    &format!("handing the template's objects to {resource_name}"),
                    error,
                )
            });
        let _ = connection.close().await;
        handed_over.map(|_| ())
    }

    /// A dedicated admin session holding the maintenance lock, or `None` when `wait` is `Skip` and another process
    /// holds it. The lock ends with the session.
    async fn maintenance_session(&self, wait: LockWait) -> Result<Option<PgConnection>> {
        let mut connection = self.dedicated_admin_connection(None).await?;
        let locked = match wait {
            LockWait::Wait => {
                connection
                    .execute(format!("SET lock_timeout = {MAINTENANCE_LOCK_TIMEOUT_MS}").as_str())
                    .await
                    .map_err(|error| Error::from_server("preparing the admin session", error))?;
                match sqlx::query("SELECT pg_advisory_lock($1, $2)")
                    .bind(MAINTENANCE_LOCK.0)
                    .bind(MAINTENANCE_LOCK.1)
                    .execute(&mut connection)
                    .await
                {
                    Ok(_) => true,
                    Err(error) if sqlstate(&error).as_deref() == Some("55P03") => {
                        let _ = connection.close().await;
                        return Err(Error::Transient(
                            "another process has been building templates or pool databases on this server for a minute".into(),
                        ));
                    }
                    Err(error) => {
                        let _ = connection.close().await;
                        return Err(Error::from_server("waiting for the template lock", error));
                    }
                }
            }
            LockWait::Skip => sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                .bind(MAINTENANCE_LOCK.0)
                .bind(MAINTENANCE_LOCK.1)
                .fetch_one(&mut connection)
                .await
                .map_err(|error| Error::from_server("taking the template lock", error))?,
        };
        if locked {
            Ok(Some(connection))
        } else {
            let _ = connection.close().await;
            Ok(None)
        }
    }

    /// Makes sure the schema's template exists, building it if needed. Returns whether this call built it.
    pub async fn ensure_template(&self, schema: &SchemaVersion) -> Result<bool> {
        let Some(mut session) = self.maintenance_session(LockWait::Wait).await? else {
            return Err(Error::Transient(
                "the template lock is held elsewhere".into(),
            ));
        };
        let built = self.ensure_template_locked(&mut session, schema).await;
        let _ = session.close().await;
        built
    }

    async fn database_exists(connection: &mut PgConnection, name: &str) -> Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(connection)
            .await
            .map_err(|error| Error::from_server("reading the server catalog", error))
    }

    /// With the maintenance lock held: builds the template under a temporary name, migrates it as the template
    /// owner, and renames it into place.
    async fn ensure_template_locked(
        &self,
        session: &mut PgConnection,
        schema: &SchemaVersion,
    ) -> Result<bool> {
        let template = template_name(&schema.hash);
        if Self::database_exists(session, &template).await? {
            return Ok(false);
        }
        let build = quote_identifier(&template_build_name(&schema.hash))?;
        let owner = quote_identifier(TEMPLATE_OWNER)?;
        let database_owner = quote_identifier(&owner_role(&self.installation))?;
        let context = format!("building template {template}");
        self.ensure_owner_role(session).await?;
        execute_converging(
            session,
            &[
                format!("CREATE ROLE {owner} NOLOGIN"),
                // A leftover of a build that was interrupted.
                format!("DROP DATABASE IF EXISTS {build} WITH (FORCE)"),
                // Born closed, opened only together with the revoke: PUBLIC is never admitted.
                format!("CREATE DATABASE {build} OWNER {database_owner} ALLOW_CONNECTIONS false"),
                format!("REVOKE CONNECT, TEMPORARY ON DATABASE {build} FROM PUBLIC; ALTER DATABASE {build} ALLOW_CONNECTIONS true"),
                // The owner creates the schema's objects; it needs CREATE only while it does.
                format!("GRANT CREATE ON DATABASE {build} TO {owner}"),
            ],
            &context,
        )
        .await?;
        failpoint(CREATE_PHASE, "template_created").await?;
        let mut connection = self
            .dedicated_admin_connection(Some(&template_build_name(&schema.hash)))
            .await?;
        let migrated = Self::migrate_as_template_owner(&mut connection, schema, &owner).await;
        if migrated.is_ok() {
            Self::compact_template(&mut connection, &template).await;
        }
        let _ = connection.close().await;
        if migrated.is_ok() {
            failpoint(CREATE_PHASE, "template_migrated").await?;
        }
        if let Err(error) = migrated {
            let _ = session
                .execute(format!("DROP DATABASE IF EXISTS {build} WITH (FORCE)").as_str())
                .await;
            return Err(error);
        }
        let template_quoted = quote_identifier(&template)?;
        let mut label = self.installation.mark("template");
        label["schema"] = serde_json::json!(schema.hash);
        label["latest_migration"] = serde_json::json!(schema.latest);
        let finish = [
            format!("REVOKE CREATE ON DATABASE {build} FROM {owner}"),
            format!("ALTER DATABASE {build} RENAME TO {template_quoted}"),
            // Nobody connects to a template: a session on it would make every copy fail.
            format!("ALTER DATABASE {template_quoted} ALLOW_CONNECTIONS false"),
            format!(
                "COMMENT ON DATABASE {template_quoted} IS {}",
                quote_literal(&label.to_string())
            ),
        ]
        .map(|statement| format!("{statement};"))
        .join("\n");
        session
            .execute(finish.as_str())
            .await
            .map_err(|error| Error::from_server(&context, error))?;
        tracing::info!(template, "built the tenant schema template");
        Ok(true)
    }

    /// Rewrites the template's tables and catalogs without the dead rows and slack that creating a database and
    /// migrating it leave behind. Every copy (`STRATEGY WAL_LOG` reads and logs each page) then has 14% fewer pages
    /// to write, which made a copy about 18% faster on the test cluster (6.9 MB instead of 8.0 MB; pgbench, 40
    /// copies at concurrency 2: 22.5 and 19.8 ms against 27.1 and 24.5 ms). Shared catalogs are left out: they are
    /// not copied, and only a superuser may vacuum them. The template works uncompacted, so a failure is only
    /// logged.
    async fn compact_template(connection: &mut PgConnection, template: &str) {
        let relations: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(
            "SELECT string_agg(format('%I.%I', n.nspname, c.relname), ', ')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'm') AND NOT c.relisshared",
        )
        .fetch_one(&mut *connection)
        .await;
        let compacted = match relations {
            Ok(Some(relations)) => connection
                .execute(format!("VACUUM (FULL) {relations}").as_str())
                .await
                .map(|_| ()),
            Ok(None) => Ok(()),
            Err(error) => Err(error),
        };
        if let Err(error) = compacted {
            tracing::warn!(template, %error, "could not compact the template; copies of it will be larger");
        }
    }

    async fn migrate_as_template_owner(
        connection: &mut PgConnection,
        schema: &SchemaVersion,
        owner: &str,
    ) -> Result<()> {
        let context = "preparing the template";
        // The template owner owns `public`, so every copy hands it, with the schema's objects, to its tenant role
        // (the database's own owner is the installation's role, which a tenant is not).
        connection
            .execute(format!("ALTER SCHEMA public OWNER TO {owner}").as_str())
            .await
            .map_err(|error| Error::from_server(context, error))?;
        connection
            .execute(format!("SET ROLE {owner}").as_str())
            .await
            .map_err(|error| Error::from_server(context, error))?;
        schema
            .migrator
            .run_direct(connection)
            .await
            .map_err(super::super::migration_error)?;
        connection
            .execute("RESET ROLE")
            .await
            .map_err(|error| Error::from_server(context, error))?;
        Ok(())
    }

    /// Fills the pool of the current schema up to `target` databases, making at most `max_creations` in this call
    /// (builds the template first when needed).
    pub async fn fill_warm_pool(
        &self,
        schema: &SchemaVersion,
        target: usize,
        max_creations: usize,
        wait: LockWait,
    ) -> Result<FillReport> {
        let Some(mut session) = self.maintenance_session(wait).await? else {
            return Ok(FillReport {
                busy: true,
                ..FillReport::default()
            });
        };
        let filled = self
            .fill_locked(&mut session, schema, target, max_creations)
            .await;
        let _ = session.close().await;
        filled
    }

    async fn fill_locked(
        &self,
        session: &mut PgConnection,
        schema: &SchemaVersion,
        target: usize,
        max_creations: usize,
    ) -> Result<FillReport> {
        let mut report = FillReport::default();
        let used_numbers = Self::pool_numbers(session, &schema.hash).await?;
        report.n_ready = used_numbers.len();
        if report.n_ready >= target || max_creations == 0 {
            return Ok(report);
        }
        report.template_built = self.ensure_template_locked(session, schema).await?;
        let mut numbers = (1..).filter(|number| !used_numbers.contains(number));
        while report.n_ready < target && report.n_created < max_creations {
            let Some(number) = numbers.next() else {
                break;
            };
            self.create_pool_database(session, schema, number).await?;
            report.n_created += 1;
            report.n_ready += 1;
        }
        Ok(report)
    }

    /// The numbers of the pool databases of `hash` that are ready. A `tenantry_build_<hash>_<n>` does not take its
    /// number: under the maintenance lock a build database is what a crashed fill left, and making that number
    /// again drops it first, so the next fill replaces the leftover.
    async fn pool_numbers(session: &mut PgConnection, hash: &str) -> Result<BTreeSet<u64>> {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE $1")
                .bind(pool_pattern(hash))
                .fetch_all(&mut *session)
                .await
                .map_err(|error| Error::from_server("reading the server catalog", error))?;
        Ok(names
            .iter()
            .filter_map(|name| match parse_name(name) {
                Some(FastPathName::Pool { hash: of, number }) if of == hash => Some(number),
                _ => None,
            })
            .collect())
    }

    /// Copies the template into `tenantry_build_<hash>_<n>`, hands its objects to the pool role of the same
    /// number (NOLOGIN, marked as this installation's, in the same transaction that makes it), and renames it into
    /// the pool.
    async fn create_pool_database(
        &self,
        session: &mut PgConnection,
        schema: &SchemaVersion,
        number: u64,
    ) -> Result<()> {
        let pool = pool_name(&schema.hash, number);
        let pool_quoted = quote_identifier(&pool)?;
        let build_name = pool_build_name(&schema.hash, number);
        let build = quote_identifier(&build_name)?;
        let database_owner = quote_identifier(&owner_role(&self.installation))?;
        let context = format!("making warm-pool database {pool}");
        self.create_marked_role(session, &pool, "warm_pool", &context)
            .await?;
        execute_converging(
            session,
            &[
                format!("DROP DATABASE IF EXISTS {build} WITH (FORCE)"),
                // Born closed, opened only together with the revoke: PUBLIC is never admitted.
                format!(
                    "CREATE DATABASE {build} TEMPLATE {} OWNER {database_owner} ALLOW_CONNECTIONS false",
                    quote_identifier(&template_name(&schema.hash))?
                ),
                format!("REVOKE CONNECT, TEMPORARY ON DATABASE {build} FROM PUBLIC; ALTER DATABASE {build} ALLOW_CONNECTIONS true"),
            ],
            &context,
        )
        .await?;
        self.hand_over_template_objects(&build_name, &pool_quoted)
            .await?;
        let mut label = self.installation.mark("warm_pool");
        label["schema"] = serde_json::json!(schema.hash);
        let finish = format!(
            "ALTER DATABASE {build} RENAME TO {pool_quoted};\nCOMMENT ON DATABASE {pool_quoted} IS {};",
            quote_literal(&label.to_string())
        );
        session
            .execute(finish.as_str())
            .await
            .map_err(|error| Error::from_server(&context, error))?;
        Ok(())
    }

    /// The server's templates and pool databases, judged against the current schema version.
    pub async fn warm_pool_inventory(
        &self,
        schema: Option<&SchemaVersion>,
    ) -> Result<WarmPoolInventory> {
        let mut connection = self.admin_connection().await?;
        self.inventory_of(&mut connection, schema, None).await
    }

    /// The fast-path databases and pool roles on the server: this installation's (databases its owner role owns,
    /// roles with its mark), and everyone else's.
    async fn fast_path_catalog(&self, connection: &mut PgConnection) -> Result<FastPathCatalog> {
        let catalog = |error| Error::from_server("reading the server catalog", error);
        let databases: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT datname::text, pg_get_userbyid(datdba)::text FROM pg_database
             WHERE datname LIKE 'tenantry\\_%' ORDER BY 1",
        )
        .fetch_all(&mut *connection)
        .await
        .map_err(catalog)?;
        let pool_roles: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT rolname::text, shobj_description(oid, 'pg_authid') FROM pg_roles
             WHERE rolname LIKE 'tenantry\\_pool\\_%' ORDER BY 1",
        )
        .fetch_all(&mut *connection)
        .await
        .map_err(catalog)?;
        let ours = owner_role(&self.installation);
        let mut found = FastPathCatalog::default();
        for (name, owner) in databases {
            if parse_name(&name).is_none() {
                continue;
            }
            if owner.as_deref() == Some(ours.as_str()) {
                found.databases.push(name);
            } else {
                found.foreign.push(CatalogObject::database(&name));
            }
        }
        for (name, mark) in pool_roles {
            if parse_name(&name).is_none() {
                continue;
            }
            match self.installation.judge_mark(mark.as_deref()) {
                super::Ownership::Ours => found.pool_roles.push(name),
                _ => found.foreign.push(CatalogObject::role(&name)),
            }
        }
        Ok(found)
    }

    /// `build_in_progress`: `None` to look at the lock, `Some` when the caller knows (it holds the lock itself).
    async fn inventory_of(
        &self,
        connection: &mut PgConnection,
        schema: Option<&SchemaVersion>,
        build_in_progress: Option<bool>,
    ) -> Result<WarmPoolInventory> {
        let catalog = |error| Error::from_server("reading the server catalog", error);
        let found = self.fast_path_catalog(connection).await?;
        let build_in_progress = match build_in_progress {
            Some(known) => known,
            None => sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                    AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 2
                    AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
            )
            .bind(i64::from(MAINTENANCE_LOCK.0))
            .bind(i64::from(MAINTENANCE_LOCK.1))
            .fetch_one(&mut *connection)
            .await
            .map_err(catalog)?,
        };
        let mut inventory = WarmPoolInventory::from_catalog(
            &found.databases,
            &found.pool_roles,
            schema.map(|schema| schema.hash.as_str()),
            build_in_progress,
        );
        inventory.foreign = found.foreign;
        Ok(inventory)
    }

    /// Drops what `scope` names, waiting for any build in progress to end first.
    pub async fn prune_warm_pool(
        &self,
        schema: Option<&SchemaVersion>,
        scope: PruneScope,
    ) -> Result<PruneReport> {
        let Some(mut session) = self.maintenance_session(LockWait::Wait).await? else {
            return Err(Error::Transient(
                "the template lock is held elsewhere".into(),
            ));
        };
        let pruned = self.prune_locked(&mut session, schema, scope).await;
        let _ = session.close().await;
        pruned
    }

    /// Only this installation's databases and roles are dropped; others' are never looked at twice.
    async fn prune_locked(
        &self,
        session: &mut PgConnection,
        schema: Option<&SchemaVersion>,
        scope: PruneScope,
    ) -> Result<PruneReport> {
        let inventory = self.inventory_of(session, schema, Some(false)).await?;
        let found = self.fast_path_catalog(session).await?;
        let databases = found.databases;
        let mut doomed: BTreeSet<String> = inventory
            .stale
            .iter()
            .filter(|object| object.kind == "database")
            .map(|object| object.name.clone())
            .collect();
        for name in &databases {
            let extra = matches!(
                (parse_name(name), scope),
                (Some(FastPathName::Pool { .. }), PruneScope::Pool)
                    | (Some(_), PruneScope::Everything)
            );
            if extra {
                doomed.insert(name.clone());
            }
        }
        let mut report = PruneReport::default();
        // Databases first: a pool role owns its database and cannot be dropped before it.
        for name in doomed.iter().filter(|name| databases.contains(name)) {
            let statement = format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_identifier(name)?
            );
            match session.execute(statement.as_str()).await {
                Ok(_) => report.dropped.push(format!("database {name}")),
                Err(error) => report.kept.push(format!(
                    "database {name}: {}",
                    crate::error::describe(&error)
                )),
            }
        }
        // A pool role whose database is gone (dropped above, or never made).
        let remaining = self.fast_path_catalog(session).await?.databases;
        let mut roles: Vec<String> = found
            .pool_roles
            .into_iter()
            .filter(|role| matches!(parse_name(role), Some(FastPathName::Pool { .. })))
            .filter(|role| !remaining.contains(role))
            .collect();
        if scope == PruneScope::Everything {
            // Shared by every installation on the server: it goes only once it owns nothing anywhere.
            roles.push(TEMPLATE_OWNER.to_owned());
        }
        for role in roles {
            let statement = format!("DROP ROLE IF EXISTS {}", quote_identifier(&role)?);
            match session.execute(statement.as_str()).await {
                Ok(_) => report.dropped.push(format!("role {role}")),
                // Another installation's templates still use it.
                Err(error)
                    if role == TEMPLATE_OWNER && sqlstate(&error).as_deref() == Some("2BP01") => {}
                Err(error) => report
                    .kept
                    .push(format!("role {role}: {}", crate::error::describe(&error))),
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CURRENT: &str = "0123456789abcdef";
    const OLD: &str = "fedcba9876543210";

    #[test]
    fn names_parse_back() {
        assert_eq!(
            parse_name(&template_name(CURRENT)),
            Some(FastPathName::Template {
                hash: CURRENT.into()
            })
        );
        assert_eq!(
            parse_name(&pool_name(CURRENT, 12)),
            Some(FastPathName::Pool {
                hash: CURRENT.into(),
                number: 12
            })
        );
        assert_eq!(
            parse_name(&pool_build_name(CURRENT, 3)),
            Some(FastPathName::Build {
                hash: CURRENT.into(),
                number: Some(3)
            })
        );
        assert_eq!(parse_name("tenantry_pool_nothex0123456789_1"), None);
        assert_eq!(parse_name(&format!("tenantry_pool_{CURRENT}")), None);
        assert_eq!(parse_name("tenant_acme"), None);
        for name in [template_name(CURRENT), pool_name(CURRENT, u64::MAX)] {
            assert!(
                quote_identifier(&name).is_ok(),
                "{name} is a valid identifier"
            );
        }
    }

    #[test]
    fn stale_means_another_schema_or_an_abandoned_build() {
        let databases = vec![
            template_name(CURRENT),
            template_name(OLD),
            pool_name(CURRENT, 1),
            pool_name(OLD, 1),
            pool_build_name(CURRENT, 2),
            "tenantry_something_else".to_owned(),
        ];
        let roles = vec![
            pool_name(CURRENT, 1),
            pool_name(CURRENT, 2),
            pool_name(OLD, 1),
        ];
        let idle = WarmPoolInventory::from_catalog(&databases, &roles, Some(CURRENT), false);
        assert!(idle.template_ready);
        assert_eq!(
            (idle.n_ready, idle.n_templates, idle.n_pool_databases),
            (1, 2, 2)
        );
        let database = |name: String| CatalogObject::database(&name);
        let role = |name: String| CatalogObject::role(&name);
        assert_eq!(
            idle.stale,
            vec![
                database(pool_build_name(CURRENT, 2)),
                database(pool_name(OLD, 1)),
                database(template_name(OLD)),
                role(pool_name(CURRENT, 2)),
                role(pool_name(OLD, 1)),
            ]
        );
        let building = WarmPoolInventory::from_catalog(&databases, &roles, Some(CURRENT), true);
        assert_eq!(
            building.stale,
            vec![
                database(pool_name(OLD, 1)),
                database(template_name(OLD)),
                role(pool_name(OLD, 1)),
            ]
        );
        let unknown = WarmPoolInventory::from_catalog(&databases, &roles, None, false);
        assert_eq!(
            unknown.stale,
            vec![
                database(pool_build_name(CURRENT, 2)),
                role(pool_name(CURRENT, 2)),
            ]
        );
    }
}
