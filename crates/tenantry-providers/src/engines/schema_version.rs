//! The version of a tenant schema: a hash of its migrations as sqlx reads them. It names the template database
//! built from those migrations, so a changed migration means a new template and the old one is known as stale.

use crate::{Error, Result};
use sha2::{Digest, Sha256};
use sqlx::migrate::Migrator;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How many hex digits of the SHA-256 go into names: 64 bits, and short enough for PostgreSQL's 63-byte names.
const HASH_HEX_DIGITS: usize = 16;

/// A migrations directory, read and hashed.
#[derive(Clone)]
pub struct SchemaVersion {
    /// Lowercase hex; safe inside SQL identifiers.
    pub hash: String,
    pub directory: PathBuf,
    /// The highest migration version (0 when there is none).
    pub latest: i64,
    pub(crate) migrator: Arc<Migrator>,
}

impl std::fmt::Debug for SchemaVersion {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SchemaVersion")
            .field("hash", &self.hash)
            .field("directory", &self.directory)
            .field("latest", &self.latest)
            .finish()
    }
}

impl SchemaVersion {
    /// Reads the migrations in `directory` (sqlx's format) and hashes what sqlx would apply: each up migration's
    /// version, description (from the file name) and checksum (of the file's contents).
    pub async fn read(directory: &Path) -> Result<SchemaVersion> {
        let migrator = Migrator::new(directory).await.map_err(|error| {
            Error::Migration(format!(
                "cannot read migrations in {}: {error}",
                directory.display()
            ))
        })?;
        let mut hasher = Sha256::new();
        let mut latest = 0;
        for migration in migrator
            .iter()
            .filter(|migration| !migration.migration_type.is_down_migration())
        {
            hasher.update(migration.version.to_be_bytes());
            hasher.update(migration.description.as_bytes());
            hasher.update([0, u8::from(migration.no_tx)]);
            hasher.update(&migration.checksum);
            latest = latest.max(migration.version);
        }
        let hash: String = hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
            .chars()
            .take(HASH_HEX_DIGITS)
            .collect();
        Ok(SchemaVersion {
            hash,
            directory: directory.to_path_buf(),
            latest,
            migrator: Arc::new(migrator),
        })
    }

    /// The same schema as one installation names it: the hash covers the installation id too, so the templates
    /// and pool databases of two installations sharing a server never share a name, and neither uses, claims or
    /// prunes the other's.
    pub fn for_installation(mut self, installation: &super::Installation) -> SchemaVersion {
        let mut hasher = Sha256::new();
        hasher.update(installation.id().as_bytes());
        hasher.update([0]);
        hasher.update(self.hash.as_bytes());
        self.hash = hex::encode(hasher.finalize())[..HASH_HEX_DIGITS].to_owned();
        self
    }
}

/// A migration as a tenant database records it in sqlx's `_sqlx_migrations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: i64,
    pub checksum: Vec<u8>,
    pub success: bool,
}

/// Where a tenant database stands against the tenant schema's files. A database can be several of these at once
/// (an edited migration and pending ones); each list says which versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SchemaStanding {
    /// The highest version the database records (0: none).
    pub version: i64,
    /// Versions in the files the database does not record: what a rollout applies.
    pub pending: Vec<i64>,
    /// Versions recorded with a checksum the files no longer have (a migration edited after it ran).
    pub edited: Vec<i64>,
    /// Versions recorded that the files do not have (the database is ahead of this tenantry, or a file was removed).
    pub unknown: Vec<i64>,
    /// Versions recorded as started and not finished (`success = false`): the migrator refuses to go on.
    pub dirty: Vec<i64>,
}

impl SchemaStanding {
    /// The one word reports use, the worst first: `failed`, `edited`, `unknown`, `pending`, `latest`.
    pub fn state(&self) -> &'static str {
        if !self.dirty.is_empty() {
            "failed"
        } else if !self.edited.is_empty() {
            "edited"
        } else if !self.unknown.is_empty() {
            "unknown"
        } else if !self.pending.is_empty() {
            "pending"
        } else {
            "latest"
        }
    }

    /// Whether the migrator would refuse this database: what it recorded is not what the files say.
    pub fn drifted(&self) -> bool {
        !(self.dirty.is_empty() && self.edited.is_empty() && self.unknown.is_empty())
    }

    /// The drift in words, for reports and errors (empty when there is none).
    pub fn drift_description(&self) -> String {
        let list = |versions: &[i64]| {
            versions
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if !self.dirty.is_empty() {
            parts.push(format!("migration {} failed half-way", list(&self.dirty)));
        }
        if !self.edited.is_empty() {
            parts.push(format!(
                "migration {} was edited after it ran (checksum differs)",
                list(&self.edited)
            ));
        }
        if !self.unknown.is_empty() {
            parts.push(format!(
                "migration {} is recorded but not in the files",
                list(&self.unknown)
            ));
        }
        parts.join("; ")
    }
}

impl SchemaVersion {
    /// The up migrations' versions, in order.
    pub fn versions(&self) -> Vec<i64> {
        self.migrator
            .iter()
            .filter(|migration| !migration.migration_type.is_down_migration())
            .map(|migration| migration.version)
            .collect()
    }

    /// Judges what a tenant database records against these files.
    pub fn standing(&self, applied: &[AppliedMigration]) -> SchemaStanding {
        let files: std::collections::BTreeMap<i64, &[u8]> = self
            .migrator
            .iter()
            .filter(|migration| !migration.migration_type.is_down_migration())
            .map(|migration| (migration.version, migration.checksum.as_ref()))
            .collect();
        let recorded: std::collections::BTreeSet<i64> =
            applied.iter().map(|migration| migration.version).collect();
        let mut standing = SchemaStanding {
            version: applied.iter().map(|m| m.version).max().unwrap_or(0),
            pending: files
                .keys()
                .filter(|version| !recorded.contains(version))
                .copied()
                .collect(),
            ..SchemaStanding::default()
        };
        for migration in applied {
            if !migration.success {
                standing.dirty.push(migration.version);
            }
            match files.get(&migration.version) {
                None => standing.unknown.push(migration.version),
                Some(checksum) if *checksum != migration.checksum.as_slice() => {
                    standing.edited.push(migration.version)
                }
                Some(_) => {}
            }
        }
        standing
    }
}

/// Whether a read of `_sqlx_migrations` failed because the table is not there (no migration ever ran).
pub(crate) fn no_migrations_table(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database) => {
            // PostgreSQL's undefined table, MariaDB's unknown table.
            matches!(database.code().as_deref(), Some("42P01" | "42S02"))
                || database.message().contains("no such table")
        }
        _ => false,
    }
}

/// The rows of `_sqlx_migrations` as read, or none when the table is missing.
pub(crate) fn applied_from(
    rows: std::result::Result<Vec<(i64, Vec<u8>, bool)>, sqlx::Error>,
) -> Result<Vec<AppliedMigration>> {
    match rows {
        Ok(rows) => Ok(rows
            .into_iter()
            .map(|(version, checksum, success)| AppliedMigration {
                version,
                checksum,
                success,
            })
            .collect()),
        Err(error) if no_migrations_table(&error) => Ok(Vec::new()),
        Err(error) => Err(Error::from_server(
            "reading the tenant's migration records",
            error,
        )),
    }
}

/// The query that reads a tenant database's migration records, the same on every engine.
pub(crate) const APPLIED_MIGRATIONS_SQL: &str =
    "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_hash_follows_names_and_contents() {
        let directory =
            std::env::temp_dir().join(format!("tenantry-schema-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        std::fs::write(directory.join("0001_core.sql"), "CREATE TABLE a (id INT);").unwrap();
        let first = SchemaVersion::read(&directory).await.unwrap();
        assert_eq!(first.hash.len(), HASH_HEX_DIGITS);
        assert_eq!(first.latest, 1);
        assert_eq!(
            SchemaVersion::read(&directory).await.unwrap().hash,
            first.hash
        );

        std::fs::write(directory.join("0001_core.sql"), "CREATE TABLE b (id INT);").unwrap();
        let changed = SchemaVersion::read(&directory).await.unwrap();
        assert_ne!(changed.hash, first.hash, "contents count");

        std::fs::rename(
            directory.join("0001_core.sql"),
            directory.join("0001_renamed.sql"),
        )
        .unwrap();
        let renamed = SchemaVersion::read(&directory).await.unwrap();
        assert_ne!(renamed.hash, changed.hash, "names count");
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
