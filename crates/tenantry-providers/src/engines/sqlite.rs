//! The SQLite engine: one file per tenant, `tenant_<slug>.db`, mode 0600, under the server's directory.

use super::{
    migration_error, quote_identifier, AdminSeed, Inventory, TenantDatabaseSpec, TenantResource,
};
use crate::credentials::SecretString;
use crate::{Error, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A directory that holds tenant SQLite files.
#[derive(Debug, Clone)]
pub struct SqliteServer {
    directory: PathBuf,
}

fn io_error(context: &str, path: &Path, error: std::io::Error) -> Error {
    Error::Refused(format!("{context} {}: {error}", path.display()))
}

impl SqliteServer {
    /// The admin URL is `sqlite:///absolute/directory`.
    pub fn from_admin_url(admin_url: &SecretString) -> Result<SqliteServer> {
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
        })
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    fn file(&self, resource_name: &str) -> Result<PathBuf> {
        quote_identifier(resource_name)?;
        Ok(self.directory.join(format!("{resource_name}.db")))
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
        Ok(Inventory {
            database: self.file(resource_name)?.exists(),
            role: false,
        })
    }

    pub async fn create_database(&self, spec: &TenantDatabaseSpec) -> Result<()> {
        let path = self.file(&spec.resource_name)?;
        std::fs::create_dir_all(&self.directory)
            .map_err(|error| io_error("cannot create", &self.directory, error))?;
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|error| io_error("cannot create", &path, error))?;
        // The file may predate this attempt with other permissions; the contract is 0600.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|error| io_error("cannot set permissions on", &path, error))?;
        Ok(())
    }

    pub async fn drop_database(&self, resource_name: &str) -> Result<()> {
        let path = self.file(resource_name)?;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(io_error("cannot remove", &file, error)),
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

    pub async fn list_tenant_resources(&self) -> Result<Vec<TenantResource>> {
        let entries = match std::fs::read_dir(&self.directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error("cannot list", &self.directory, error)),
        };
        let mut resources: Vec<TenantResource> = entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let file_name = entry.file_name().to_string_lossy().into_owned();
                file_name
                    .strip_suffix(".db")
                    .filter(|stem| stem.starts_with("tenant_"))
                    .map(|stem| TenantResource {
                        name: stem.to_owned(),
                        kind: "file",
                    })
            })
            .collect();
        resources.sort_by(|left, right| left.name.cmp(&right.name));
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
