//! The SQLite engine: one file per tenant, `tenant_<slug>.db`, mode 0600, under the server's directory.

use super::{
    migration_error, quote_identifier, seed_error, statement_misfit, AdminSeed,
    ConfiguredStatement, Installation, Inventory, Ownership, ScratchVerdict, TenantAccess,
    TenantDatabaseSpec, TenantProbe, TenantResource,
};
use crate::credentials::SecretString;
use crate::{failpoint, Error, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Executor};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// tenantry's own table in a tenant file, named so it cannot be taken for one of the operator's schema: made on
/// first write, so no tenant schema needs to provide it, also in files made by an older tenantry that kept its
/// settings in the example schema's `tenant_settings` table.
const ENSURE_SETTINGS_TABLE: &str = "CREATE TABLE IF NOT EXISTS tenantry_settings (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
)";

/// Prepares each statement on `connection` without running it (SQLite compiles it, so a missing table or column
/// is found).
async fn prepare_each(
    connection: &mut SqliteConnection,
    statements: &[ConfiguredStatement<'_>],
) -> Result<()> {
    for statement in statements {
        if let Err(error) = (&mut *connection).prepare(statement.sql).await {
            return Err(statement_misfit(statement, error));
        }
    }
    Ok(())
}

/// Migrates a scratch in-memory database with the migrations in `directory` and prepares each statement against
/// it: the operator's seed and check judged before any job, with nothing written anywhere.
pub async fn check_statements_in_scratch(
    directory: &Path,
    statements: &[ConfiguredStatement<'_>],
) -> Result<ScratchVerdict> {
    let migrator = match sqlx::migrate::Migrator::new(directory).await {
        Ok(migrator) => migrator,
        Err(error) => return Ok(ScratchVerdict::Unjudged(error.to_string())),
    };
    let options = SqliteConnectOptions::from_str("sqlite::memory:")
        .map_err(|error| Error::Refused(format!("cannot open a scratch database: {error}")))?
        .log_statements(tracing::log::LevelFilter::Off);
    let mut connection = SqliteConnection::connect_with(&options)
        .await
        .map_err(|error| Error::from_server("cannot open a scratch database", error))?;
    let verdict = match migrator.run_direct(&mut connection).await {
        Ok(()) => prepare_each(&mut connection, statements)
            .await
            .map(|()| ScratchVerdict::Fits),
        Err(error) => Ok(ScratchVerdict::Unjudged(migration_error(error).to_string())),
    };
    let _ = connection.close().await;
    verdict
}

/// A directory that holds tenant SQLite files.
#[derive(Debug, Clone)]
pub struct SqliteServer {
    directory: PathBuf,
    /// Whose files this handle makes, and which it may remove.
    installation: Installation,
}

/// The table inside each tenant file that holds the installation's mark, written with the file's creation.
const MARK_TABLE: &str = "tenantry_installation";

/// The phase whose apply `create_database` is: its failpoints are named `database_created.<point>`.
const CREATE_PHASE: &str = "database_created";

fn io_error(context: &str, path: &Path, error: std::io::Error) -> Error {
    Error::Refused(format!("{context} {}: {error}", path.display()))
}

impl SqliteServer {
    /// The admin URL is `sqlite:///absolute/directory`.
    pub fn from_admin_url(
        admin_url: &SecretString,
        installation: &Installation,
    ) -> Result<SqliteServer> {
        let directory = admin_url
            .expose()
            .strip_prefix("sqlite://")
            .filter(|path| path.starts_with('/'))
            .ok_or_else(|| {
                Error::AdminConnection(
                    "a sqlite server's URL must be sqlite:///absolute/directory".into(),
                )
            })?;
        Ok(SqliteServer {
            directory: PathBuf::from(directory),
            installation: installation.clone(),
        })
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The tenant's file (for backups: dumped and restored whole).
    pub fn file(&self, resource_name: &str) -> Result<PathBuf> {
        quote_identifier(resource_name)?;
        Ok(self.directory.join(format!("{resource_name}.db")))
    }

    /// Where a tenant file is made and marked before it is renamed into place.
    fn building_file(&self, resource_name: &str) -> Result<PathBuf> {
        quote_identifier(resource_name)?;
        Ok(self.directory.join(format!(".{resource_name}.db.building")))
    }

    pub async fn check_admin_connection(&self) -> Result<()> {
        std::fs::create_dir_all(&self.directory).map_err(|error| {
            Error::AdminConnection(format!("cannot use {}: {error}", self.directory.display()))
        })
    }

    pub fn tenant_url(&self, resource_name: &str) -> SecretString {
        SecretString::new(format!(
            "sqlite://{}/{resource_name}.db",
            self.directory.display()
        ))
    }

    pub async fn inventory(&self, resource_name: &str) -> Result<Inventory> {
        let path = self.file(resource_name)?;
        let database = path.exists();
        let ownership = if database {
            self.ownership_of(&path).await
        } else {
            Ownership::Unmarked
        };
        Ok(Inventory {
            database,
            role: false,
            ownership,
        })
    }

    /// Whose a tenant file is, from the mark inside it. A file that cannot be read as SQLite, or has no mark, is
    /// unmarked.
    async fn ownership_of(&self, path: &Path) -> Ownership {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .create_if_missing(false)
            .log_statements(tracing::log::LevelFilter::Off);
        let Ok(mut connection) = SqliteConnection::connect_with(&options).await else {
            return Ownership::Unmarked;
        };
        let mark: Option<String> =
            sqlx::query_scalar(&format!("SELECT id FROM {MARK_TABLE} LIMIT 1"))
                .fetch_optional(&mut connection)
                .await
                .ok()
                .flatten();
        let _ = connection.close().await;
        self.installation.judge_id(mark.as_deref())
    }

    /// Creates the tenant's file with the installation's mark inside: the file is made and marked under a
    /// temporary name, then renamed into place, so a file of that name is always marked. A file already there is
    /// this installation's (kept, its permissions set to 0600) or refused.
    pub async fn create_database(&self, spec: &TenantDatabaseSpec) -> Result<()> {
        let path = self.file(&spec.resource_name)?;
        std::fs::create_dir_all(&self.directory)
            .map_err(|error| io_error("cannot create", &self.directory, error))?;
        if path.exists() {
            match self.ownership_of(&path).await {
                Ownership::Ours => {}
                other => return Err(super::foreign_error(&path.display().to_string(), &other)),
            }
        } else {
            // A file left here by an attempt that stopped before its rename is made again from the start.
            let building = self.building_file(&spec.resource_name)?;
            let _ = std::fs::remove_file(&building);
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&building)
                .map_err(|error| io_error("cannot create", &building, error))?;
            failpoint(CREATE_PHASE, "file_made").await?;
            let options = SqliteConnectOptions::new()
                .filename(&building)
                .create_if_missing(false)
                .log_statements(tracing::log::LevelFilter::Off);
            let mut connection = SqliteConnection::connect_with(&options)
                .await
                .map_err(|error| Error::from_server("cannot open the new tenant file", error))?;
            let marked = sqlx::query(&format!(
                "CREATE TABLE {MARK_TABLE} (id TEXT NOT NULL); INSERT INTO {MARK_TABLE} (id) VALUES ('{}')",
                self.installation.id()
            ))
            .execute(&mut connection)
            .await;
            let _ = connection.close().await;
            marked.map_err(|error| Error::from_server("marking the new tenant file", error))?;
            failpoint(CREATE_PHASE, "marked").await?;
            std::fs::rename(&building, &path)
                .map_err(|error| io_error("cannot rename into place", &path, error))?;
            failpoint(CREATE_PHASE, "renamed").await?;
        }
        // The file may predate this attempt with other permissions; the contract is 0600.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|error| io_error("cannot set permissions on", &path, error))?;
        Ok(())
    }

    pub async fn drop_database(&self, resource_name: &str) -> Result<()> {
        let path = self.file(resource_name)?;
        if path.exists() {
            if let ownership @ Ownership::Foreign(_) = self.ownership_of(&path).await {
                return Err(super::foreign_error(
                    &path.display().to_string(),
                    &ownership,
                ));
            }
        }
        // The file first: once it is gone the tenant is gone, and what follows only tidies up.
        let mut leftovers = vec![path.clone()];
        for suffix in ["-wal", "-shm", "-journal"] {
            leftovers.push(PathBuf::from(format!("{}{suffix}", path.display())));
        }
        // What a creation that stopped before its rename left (a job unwound from there).
        leftovers.push(self.building_file(resource_name)?);
        for (index, file) in leftovers.iter().enumerate() {
            match std::fs::remove_file(file) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(io_error("cannot remove", file, error)),
            }
            if index == 0 {
                failpoint("drop_database", "database_dropped").await?;
            }
        }
        Ok(())
    }

    /// SQLite has no logins: disabling makes the file read-only, so the tenant's application cannot write.
    pub async fn disable_login(&self, resource_name: &str) -> Result<()> {
        let path = self.file(resource_name)?;
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))
                .map_err(|error| io_error("cannot set permissions on", &path, error))?;
        }
        Ok(())
    }

    /// Undoes [`SqliteServer::disable_login`]: the file is the tenant's to write again (mode 0600). Only a file
    /// marked as this installation's is touched (`Error::Foreign` otherwise).
    pub async fn enable_login(&self, resource_name: &str) -> Result<()> {
        let path = self.file(resource_name)?;
        if !path.exists() {
            return Err(Error::Refused(format!(
                "there is no file {} to enable; ensuring the database creates it",
                path.display()
            )));
        }
        match self.ownership_of(&path).await {
            Ownership::Ours => {}
            other => return Err(super::foreign_error(&path.display().to_string(), &other)),
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|error| io_error("cannot set permissions on", &path, error))
    }

    /// The file's permission bits, which are all SQLite has of a login: 0600 open, 0400 disabled.
    pub async fn tenant_access(&self, resource_name: &str) -> Result<TenantAccess> {
        let path = self.file(resource_name)?;
        let mode = match std::fs::metadata(&path) {
            Ok(metadata) => Some(metadata.permissions().mode() & 0o7777),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(io_error("cannot read", &path, error)),
        };
        Ok(TenantAccess {
            login: mode.map(|mode| mode & 0o200 != 0),
            file_mode: mode,
            ..TenantAccess::default()
        })
    }

    pub async fn list_tenant_resources(&self) -> Result<Vec<TenantResource>> {
        let entries = match std::fs::read_dir(&self.directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error("cannot list", &self.directory, error)),
        };
        let mut names: Vec<String> = entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let file_name = entry.file_name().to_string_lossy().into_owned();
                file_name
                    .strip_suffix(".db")
                    .filter(|stem| stem.starts_with("tenant_"))
                    .map(str::to_owned)
            })
            .collect();
        names.sort();
        let mut resources = Vec::with_capacity(names.len());
        for name in names {
            let ownership = self
                .ownership_of(&self.directory.join(format!("{name}.db")))
                .await;
            resources.push(TenantResource {
                name,
                kind: "file",
                ownership,
                drift: Vec::new(),
            });
        }
        Ok(resources)
    }

    async fn tenant_connection(&self, tenant_url: &SecretString) -> Result<SqliteConnection> {
        let options = SqliteConnectOptions::from_str(tenant_url.expose())
            .map_err(|_| Error::Refused("the tenant's sqlite URL is not valid".into()))?
            .create_if_missing(false)
            .busy_timeout(std::time::Duration::from_secs(10))
            .log_statements(tracing::log::LevelFilter::Off);
        SqliteConnection::connect_with(&options)
            .await
            .map_err(|error| Error::from_server("cannot open the tenant database", error))
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

    /// The tenant database's migration records.
    pub async fn applied_migrations(
        &self,
        tenant_url: &SecretString,
    ) -> Result<Vec<super::AppliedMigration>> {
        let mut connection = self.tenant_connection(tenant_url).await?;
        let rows = sqlx::query_as(super::schema_version::APPLIED_MIGRATIONS_SQL)
            .fetch_all(&mut connection)
            .await;
        let _ = connection.close().await;
        super::schema_version::applied_from(rows)
    }

    /// Applies `schema` and reads the records after (see `TenantServer::migrate_tenant`).
    pub async fn migrate_tenant(
        &self,
        tenant_url: &SecretString,
        schema: &super::SchemaVersion,
    ) -> Result<(Result<()>, Vec<super::AppliedMigration>)> {
        let mut connection = self.tenant_connection(tenant_url).await?;
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

    pub async fn seed_admin(&self, tenant_url: &SecretString, seed: &AdminSeed<'_>) -> Result<()> {
        let mut connection = self.tenant_connection(tenant_url).await?;
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

    /// Prepares each statement in the tenant's file without running it (see the PostgreSQL engine).
    pub async fn check_statements_fit(
        &self,
        tenant_url: &SecretString,
        statements: &[ConfiguredStatement<'_>],
    ) -> Result<()> {
        let mut connection = self.tenant_connection(tenant_url).await?;
        let fits = prepare_each(&mut connection, statements).await;
        let _ = connection.close().await;
        fits
    }

    /// Replaces tenantry's keys in `tenantry_settings` in one transaction, making the table first if it is
    /// missing (see the PostgreSQL engine).
    pub async fn write_settings(
        &self,
        tenant_url: &SecretString,
        settings: &[(String, String)],
        owned_prefixes: &[&str],
    ) -> Result<()> {
        let mut connection = self.tenant_connection(tenant_url).await?;
        let written = async {
            let mut transaction = connection.begin().await?;
            sqlx::query(ENSURE_SETTINGS_TABLE)
                .execute(&mut *transaction)
                .await?;
            let keys: Vec<&str> = settings.iter().map(|(key, _)| key.as_str()).collect();
            for prefix in owned_prefixes {
                let stale: Vec<String> =
                    sqlx::query_scalar("SELECT key FROM tenantry_settings WHERE substr(key, 1, length($1)) = $1")
                        .bind(*prefix)
                        .fetch_all(&mut *transaction)
                        .await?;
                for key in stale.iter().filter(|key| !keys.contains(&key.as_str())) {
                    sqlx::query("DELETE FROM tenantry_settings WHERE key = $1")
                        .bind(key)
                        .execute(&mut *transaction)
                        .await?;
                }
            }
            for (key, value) in settings {
                sqlx::query(
                    "INSERT INTO tenantry_settings (key, value, updated_at) VALUES ($1, $2, CURRENT_TIMESTAMP)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = CURRENT_TIMESTAMP
                     WHERE tenantry_settings.value IS NOT excluded.value",
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

    /// SQLite files have nowhere to hold labels but tenantry's settings table (`label.*` keys). A file an older
    /// tenantry made, not written since, has them in the example schema's `tenant_settings` table instead.
    pub async fn resource_labels(
        &self,
        resource_name: &str,
    ) -> Result<Vec<(&'static str, Option<serde_json::Value>)>> {
        let url = self.tenant_url(resource_name);
        let mut connection = self.tenant_connection(&url).await?;
        let rows = async {
            let table: Option<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master
                 WHERE type = 'table' AND name IN ('tenantry_settings', 'tenant_settings')
                 ORDER BY name = 'tenantry_settings' DESC LIMIT 1",
            )
            .fetch_optional(&mut connection)
            .await?;
            let Some(table) = table else {
                return Ok(Vec::new());
            };
            // `table` is one of the two literal names above.
            sqlx::query_as::<_, (String, String)>(&format!(
                "SELECT substr(key, 7), value FROM {table} WHERE substr(key, 1, 6) = 'label.'"
            ))
            .fetch_all(&mut connection)
            .await
        }
        .await;
        let _ = connection.close().await;
        let rows =
            rows.map_err(|error: sqlx::Error| Error::from_server("reading the labels", error))?;
        let labels = (!rows.is_empty()).then(|| {
            serde_json::Value::Object(
                rows.into_iter()
                    .map(|(key, value)| (key, serde_json::Value::String(value)))
                    .collect(),
            )
        });
        Ok(vec![("database", labels)])
    }

    /// Opens the tenant's file with its URL and reads what the validation suite judges.
    pub async fn probe_tenant(
        &self,
        tenant_url: &SecretString,
        admin_check: Option<(&str, &str)>,
    ) -> Result<TenantProbe> {
        let mut connection = self.tenant_connection(tenant_url).await?;
        let probed = async {
            let schema_version: Option<i64> =
                sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                    .fetch_one(&mut connection)
                    .await
                    .unwrap_or(None);
            // A refusal by the database is the check's verdict (the operator's check does not fit the schema).
            let admin_ready = match admin_check {
                Some((sql, email)) => Some(
                    match sqlx::query_scalar::<_, i64>(sql)
                        .bind(email)
                        .fetch_one(&mut connection)
                        .await
                    {
                        Ok(count) => Ok(count > 0),
                        Err(error) => Err(crate::error::describe(&error)),
                    },
                ),
                None => None,
            };
            let started = std::time::Instant::now();
            sqlx::query("SELECT 1").execute(&mut connection).await?;
            Ok::<_, sqlx::Error>(TenantProbe {
                current_user: None,
                current_database: tenant_url
                    .expose()
                    .rsplit('/')
                    .next()
                    .and_then(|file| file.strip_suffix(".db"))
                    .unwrap_or_default()
                    .to_owned(),
                elevated_privileges: None,
                schema_version,
                admin_ready,
                query_latency: started.elapsed(),
            })
        }
        .await;
        let _ = connection.close().await;
        probed.map_err(|error| Error::from_server("probing the tenant database", error))
    }
}
