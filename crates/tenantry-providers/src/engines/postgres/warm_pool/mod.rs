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
//!
//! The code: [`names`] (what the databases and roles are called), [`claim`] (a tenant database from the pool or
//! the template), [`template`] (building a template), [`maintenance`] (the lock, fill, prune and inventory).

mod claim;
mod maintenance;
mod names;
mod template;

/// The NOLOGIN role that owns every object inside template databases.
pub(crate) const TEMPLATE_OWNER: &str = "tenantry_template_owner";

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
    /// No database of its own: a schema in the server's shared database (`isolation = "schema"`).
    SharedSchema { database: String },
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
            DatabaseOrigin::SharedSchema { database } => {
                write!(formatter, "a schema in the shared database {database}")
            }
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
