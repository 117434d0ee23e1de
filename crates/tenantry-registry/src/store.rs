//! Opening the registry: the backend's connection pool, its schema migration, and the transaction opener.

use crate::{sqlite_file, Error, Result};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Transaction};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the registry lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryLocation {
    /// A SQLite file (the embedded default is `<data dir>/registry.db`).
    Sqlite(PathBuf),
    /// A PostgreSQL URL. Its password, if any, is never logged.
    Postgres(String),
}

/// The SQL dialect of the backend, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A handle on the registry. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    pub(crate) pool: AnyPool,
    pub(crate) dialect: Dialect,
    /// SQLite only: this process's writers take turns here before `BEGIN IMMEDIATE`. SQLite has one write lock,
    /// and a connection that finds it taken waits in SQLite's busy handler, which sleeps 1, 2, 5, 10 ms and more
    /// between tries: two concurrent jobs in one process would spend much of their time asleep. Queued here, the
    /// next writer starts the moment the lock is free. Other processes still meet at the busy handler.
    pub(crate) write_turn: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
    /// The PostgreSQL URL, kept to open LISTEN connections (`None` on SQLite).
    pub(crate) postgres_url: Option<std::sync::Arc<str>>,
    /// This registry's installation id, read once ([`Registry::installation_id`]).
    pub(crate) installation: std::sync::Arc<tokio::sync::OnceCell<String>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Registry")
            .field("dialect", &self.dialect)
            .finish()
    }
}

// Migrations whose SQL is the same on both backends live once, in `migrations/shared/`.
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "platform_access",
        include_str!("../migrations/shared/0002_platform_access.sql"),
    ),
    (
        3,
        "purge_pacing",
        include_str!("../migrations/shared/0003_purge_pacing.sql"),
    ),
    (
        4,
        "plans_approvals_costs",
        include_str!("../migrations/shared/0004_plans_approvals_costs.sql"),
    ),
    (
        5,
        "installation",
        include_str!("../migrations/shared/0005_installation.sql"),
    ),
    (
        6,
        "audit_chain",
        include_str!("../migrations/shared/0006_audit_chain.sql"),
    ),
    (
        7,
        "tenant_resources",
        include_str!("../migrations/shared/0007_tenant_resources.sql"),
    ),
    (
        8,
        "rollouts",
        include_str!("../migrations/shared/0008_rollouts.sql"),
    ),
    (
        9,
        "notifications",
        include_str!("../migrations/shared/0009_notifications.sql"),
    ),
    (
        10,
        "invitations",
        include_str!("../migrations/shared/0010_invitations.sql"),
    ),
    (
        11,
        "jobs_by_finished",
        include_str!("../migrations/shared/0011_jobs_by_finished.sql"),
    ),
    // 12 is another branch's (dns servers); versions need not be contiguous.
    (
        12,
        "backups",
        include_str!("../migrations/shared/0012_backups.sql"),
    ),
    (
        13,
        "change_requests",
        include_str!("../migrations/shared/0013_change_requests.sql"),
    ),
    (
        14,
        "tenant_profile",
        include_str!("../migrations/shared/0014_tenant_profile.sql"),
    ),
];
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "platform_access",
        include_str!("../migrations/shared/0002_platform_access.sql"),
    ),
    (
        3,
        "purge_pacing",
        include_str!("../migrations/shared/0003_purge_pacing.sql"),
    ),
    (
        4,
        "plans_approvals_costs",
        include_str!("../migrations/shared/0004_plans_approvals_costs.sql"),
    ),
    (
        5,
        "installation",
        include_str!("../migrations/shared/0005_installation.sql"),
    ),
    (
        6,
        "audit_chain",
        include_str!("../migrations/shared/0006_audit_chain.sql"),
    ),
    (
        7,
        "tenant_resources",
        include_str!("../migrations/shared/0007_tenant_resources.sql"),
    ),
    (
        8,
        "rollouts",
        include_str!("../migrations/shared/0008_rollouts.sql"),
    ),
    (
        9,
        "notifications",
        include_str!("../migrations/shared/0009_notifications.sql"),
    ),
    (
        10,
        "invitations",
        include_str!("../migrations/shared/0010_invitations.sql"),
    ),
    (
        11,
        "jobs_by_finished",
        include_str!("../migrations/shared/0011_jobs_by_finished.sql"),
    ),
    // 12 is another branch's (dns servers); versions need not be contiguous.
    (
        12,
        "backups",
        include_str!("../migrations/shared/0012_backups.sql"),
    ),
    (
        13,
        "change_requests",
        include_str!("../migrations/shared/0013_change_requests.sql"),
    ),
    (
        14,
        "tenant_profile",
        include_str!("../migrations/shared/0014_tenant_profile.sql"),
    ),
];

/// How long a SQLite connection waits for another process's write lock before reporting the registry busy.
const SQLITE_BUSY_TIMEOUT_MS: u64 = 20_000;

impl Registry {
    /// Connects and migrates the schema to the latest version. Safe to call from many processes at once.
    pub async fn open(location: &RegistryLocation, max_connections: u32) -> Result<Registry> {
        sqlx::any::install_default_drivers();
        match location {
            RegistryLocation::Sqlite(path) => Registry::open_sqlite(path, max_connections).await,
            RegistryLocation::Postgres(url) => {
                let pool = AnyPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await
                    .map_err(|error| Error::Unavailable(redact_connect_error(&error)))?;
                let registry = Registry {
                    pool,
                    dialect: Dialect::Postgres,
                    write_turn: None,
                    postgres_url: Some(url.as_str().into()),
                    installation: Default::default(),
                };
                // sqlx's migrator takes a PostgreSQL advisory lock, so concurrent starts are safe.
                registry
                    .migrator(POSTGRES_MIGRATIONS)
                    .run(&registry.pool)
                    .await?;
                registry.admit_only_owner().await;
                registry.chain_legacy_audit_events().await?;
                Ok(registry)
            }
        }
    }

    /// Tenant roles may live on the registry's own cluster, and the validation suite requires that none can log in
    /// to the registry: the database stops admitting PUBLIC, leaving its owner and superusers. A registry user that
    /// does not own the database cannot do this; the suite's `isolation_registry` check then names the fix.
    async fn admit_only_owner(&self) {
        let revoked = sqlx::query(
            "DO $$ BEGIN
                 EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
             EXCEPTION WHEN insufficient_privilege THEN NULL;
             END $$",
        )
        .execute(&self.pool)
        .await;
        if let Err(error) = revoked {
            tracing::warn!(%error, "could not revoke PUBLIC's CONNECT on the registry database");
        }
    }

    async fn open_sqlite(path: &Path, max_connections: u32) -> Result<Registry> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|error| {
                Error::Unavailable(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        // sqlx takes no lock while migrating SQLite, so processes starting together serialise on a lock file. It is
        // held from before the file is looked at, so of several first starts one creates the registry and the
        // others find it made.
        let lock_path = path.with_extension("migrate.lock");
        let lock_file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&lock_path)
                .map_err(|error| {
                    Error::Unavailable(format!("cannot open {}: {error}", lock_path.display()))
                })?
        };
        let lock_file = tokio::task::spawn_blocking(move || lock_file.lock().map(|()| lock_file))
            .await
            .map_err(|error| Error::Unavailable(error.to_string()))?
            .map_err(|error| {
                Error::Unavailable(format!("cannot lock {}: {error}", lock_path.display()))
            })?;
        let registry_file = path.to_owned();
        tokio::task::spawn_blocking(move || sqlite_file::prepare(&registry_file))
            .await
            .map_err(|error| Error::Unavailable(error.to_string()))??;
        // `mode=rw`: the file exists now, and SQLite must never make a new, empty one in its place.
        let url = format!("sqlite://{}?mode=rw", path.display());
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            // A connection to a local file does not go stale the way a network session does; sqlx's ping before
            // each acquire would double the round trips (each one a hop to the connection's thread) of every query.
            .test_before_acquire(false)
            .after_connect(|connection, _meta| {
                Box::pin(async move {
                    connection
                        .execute(
                            format!(
                                "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;"
                            )
                            .as_str(),
                        )
                        .await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|error| Error::Unavailable(error.to_string()))?;
        let registry = Registry {
            pool,
            dialect: Dialect::Sqlite,
            write_turn: Some(std::sync::Arc::new(tokio::sync::Mutex::new(()))),
            postgres_url: None,
            installation: Default::default(),
        };
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&registry.pool)
            .await?;
        let migrated = registry
            .migrator(SQLITE_MIGRATIONS)
            .run(&registry.pool)
            .await;
        drop(lock_file);
        migrated?;
        registry.chain_legacy_audit_events().await?;
        Ok(registry)
    }

    fn migrator(&self, migrations: &[(i64, &'static str, &'static str)]) -> Migrator {
        Migrator {
            migrations: Cow::Owned(
                migrations
                    .iter()
                    .map(|(version, description, sql)| {
                        Migration::new(
                            *version,
                            Cow::Borrowed(*description),
                            MigrationType::Simple,
                            Cow::Borrowed(*sql),
                            false,
                        )
                    })
                    .collect(),
            ),
            ignore_missing: false,
            locking: true,
            no_tx: false,
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Whether the registry answers a trivial query.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`),
    /// because a deferred transaction that reads and then writes fails at once when another process wrote meanwhile.
    pub(crate) async fn begin_write(&self) -> Result<WriteTransaction> {
        let turn = match &self.write_turn {
            Some(turn) => Some(turn.clone().lock_owned().await),
            None => None,
        };
        let transaction = match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTransaction { transaction, turn })
    }
}

/// A write transaction, holding this process's write turn on SQLite until it ends. It derefs to the connection,
/// like sqlx's `Transaction`.
pub(crate) struct WriteTransaction {
    // Declared first, so dropped first: an unfinished transaction goes back to be rolled back before the turn
    // passes on.
    transaction: Transaction<'static, sqlx::Any>,
    turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTransaction {
    pub(crate) async fn commit(self) -> std::result::Result<(), sqlx::Error> {
        let WriteTransaction { transaction, turn } = self;
        let committed = transaction.commit().await;
        drop(turn);
        committed
    }
}

impl std::ops::Deref for WriteTransaction {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &sqlx::AnyConnection {
        &self.transaction
    }
}

impl std::ops::DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.transaction
    }
}

/// The current time in Unix milliseconds, the registry's unit of time.
pub fn now_millis() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// A connection error's text with any `user:password@` part of a URL removed.
fn redact_connect_error(error: &sqlx::Error) -> String {
    let text = error.to_string();
    match (text.find("://"), text.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &text[..scheme_end], &text[at..])
        }
        _ => text,
    }
}

pub(crate) fn get<'r, T>(row: &'r AnyRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    sqlx::Row::try_get(row, column)
        .map_err(|error| Error::Corrupt(format!("column {column}: {error}")))
}

pub(crate) fn get_json(row: &AnyRow, column: &str) -> Result<serde_json::Value> {
    let text: String = get(row, column)?;
    serde_json::from_str(&text).map_err(|error| Error::Corrupt(format!("column {column}: {error}")))
}
