//! Encrypted secret records. The registry stores and returns ciphertext only; the secret store encrypts.

use crate::jobs::{check_fence, Fence};
use crate::records::SecretRecord;
use crate::store::now_millis;
use crate::{Registry, Result};
use sqlx::AnyConnection;

const UPSERT_SECRET: &str =
    "INSERT INTO secrets (name, key_id, wrapped_key, ciphertext, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $5)
     ON CONFLICT (name) DO UPDATE SET key_id = excluded.key_id, wrapped_key = excluded.wrapped_key,
         ciphertext = excluded.ciphertext, updated_at = excluded.updated_at";

async fn upsert_secret(connection: &mut AnyConnection, record: &SecretRecord) -> Result<()> {
    sqlx::query(UPSERT_SECRET)
        .bind(&record.name)
        .bind(&record.key_id)
        .bind(&record.wrapped_key)
        .bind(&record.ciphertext)
        .bind(now_millis())
        .execute(connection)
        .await?;
    Ok(())
}

impl Registry {
    /// Creates or replaces a secret with its cost labels for the job holding `fence`, in one transaction with the
    /// fence check, so a worker whose lease was taken over cannot replace a secret the new owner already relies on.
    pub async fn put_secret_fenced(
        &self,
        fence: &Fence,
        record: &SecretRecord,
        labels: &serde_json::Value,
    ) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        upsert_secret(&mut transaction, record).await?;
        sqlx::query("UPDATE secrets SET labels = $1 WHERE name = $2")
            .bind(labels.to_string())
            .bind(&record.name)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Deletes a secret for the job holding `fence`; `false` when there was none.
    pub async fn delete_secret_fenced(&self, fence: &Fence, name: &str) -> Result<bool> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        let deleted = sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// Creates or replaces a secret record (operator actions outside any job, such as `servers add`).
    pub async fn put_secret(&self, record: &SecretRecord) -> Result<()> {
        let mut connection = self.pool.acquire().await?;
        upsert_secret(&mut connection, record).await
    }

    /// Stores a secret record unless one of that name exists; `false` when one did (it is left as it was).
    pub async fn put_secret_if_absent(&self, record: &SecretRecord) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO secrets (name, key_id, wrapped_key, ciphertext, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&record.name)
        .bind(&record.key_id)
        .bind(&record.wrapped_key)
        .bind(&record.ciphertext)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(inserted.rows_affected() == 1)
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

    /// Records a secret's cost labels for the job holding `fence` (`false` when the secret does not exist).
    pub async fn set_secret_labels_fenced(
        &self,
        fence: &Fence,
        name: &str,
        labels: &serde_json::Value,
    ) -> Result<bool> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        let updated = sqlx::query("UPDATE secrets SET labels = $1 WHERE name = $2")
            .bind(labels.to_string())
            .bind(name)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(updated.rows_affected() > 0)
    }

    /// A secret's cost labels (`None` when the secret does not exist).
    pub async fn secret_labels(&self, name: &str) -> Result<Option<serde_json::Value>> {
        let row = sqlx::query("SELECT labels FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref()
            .map(|row| crate::store::get_json(row, "labels"))
            .transpose()
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
