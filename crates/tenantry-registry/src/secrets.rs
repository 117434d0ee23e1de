//! Encrypted secret records. The registry stores and returns ciphertext only; the secret store encrypts.

use crate::records::SecretRecord;
use crate::store::now_millis;
use crate::{Registry, Result};

impl Registry {
    /// Creates or replaces a secret record.
    pub async fn put_secret(&self, record: &SecretRecord) -> Result<()> {
        let now = now_millis();
        sqlx::query(
            "INSERT INTO secrets (name, key_id, wrapped_key, ciphertext, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (name) DO UPDATE SET key_id = excluded.key_id, wrapped_key = excluded.wrapped_key,
                 ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(&record.name)
        .bind(&record.key_id)
        .bind(&record.wrapped_key)
        .bind(&record.ciphertext)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_secret(&self, name: &str) -> Result<Option<SecretRecord>> {
        let row = sqlx::query(
            "SELECT name, key_id, wrapped_key, ciphertext, created_at, updated_at FROM secrets WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(SecretRecord::from_row).transpose()
    }

    /// Deletes a secret; `false` when there was none (deleting twice is fine).
    pub async fn delete_secret(&self, name: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// The names of every stored secret, sorted.
    pub async fn list_secret_names(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT name FROM secrets ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| crate::store::get(row, "name"))
            .collect()
    }
}
