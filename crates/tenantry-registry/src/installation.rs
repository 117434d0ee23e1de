//! The installation id: this registry's own id, made once, which every object tenantry creates outside the
//! registry carries, so that two installations sharing a server can tell their objects apart.

use crate::store::{now_millis, Registry};
use crate::Result;

/// How an installation id looks: 16 lowercase hex digits, short enough to sit inside PostgreSQL role names.
pub fn is_installation_id(text: &str) -> bool {
    text.len() == 16
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

impl Registry {
    /// This registry's installation id, made on first use. Concurrent first uses agree: the row is inserted only
    /// if absent, then read back.
    pub async fn installation_id(&self) -> Result<String> {
        self.installation
            .get_or_try_init(|| async {
                if let Some(id) = self.read_installation_id().await? {
                    return Ok(id);
                }
                // The 62 random bits of a UUIDv7 (its second half, after the variant bits): two registries made in
                // the same millisecond still differ.
                let candidate = uuid::Uuid::now_v7().simple().to_string()[16..].to_owned();
                let mut transaction = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO installation (singleton, id, created_at) VALUES (1, $1, $2)
                     ON CONFLICT (singleton) DO NOTHING",
                )
                .bind(&candidate)
                .bind(now_millis())
                .execute(&mut *transaction)
                .await?;
                transaction.commit().await?;
                self.read_installation_id().await?.ok_or_else(|| {
                    crate::Error::Corrupt("the installation id was not recorded".into())
                })
            })
            .await
            .cloned()
    }

    async fn read_installation_id(&self) -> Result<Option<String>> {
        let id: Option<String> =
            sqlx::query_scalar("SELECT id FROM installation WHERE singleton = 1")
                .fetch_optional(&self.pool)
                .await?;
        match id {
            Some(id) if is_installation_id(&id) => Ok(Some(id)),
            Some(other) => Err(crate::Error::Corrupt(format!(
                "the registry's installation id {other:?} is not 16 hex digits"
            ))),
            None => Ok(None),
        }
    }
}
