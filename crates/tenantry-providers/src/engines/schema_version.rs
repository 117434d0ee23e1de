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
