//! The local secret store: AES-256-GCM envelope encryption in the registry. Each secret has its own data key,
//! wrapped by the master key; the secret's name is the associated data of both, so a ciphertext copied under
//! another name does not decrypt.

use super::{BoxFuture, SecretStore};
use crate::credentials::SecretString;
use crate::{Error, Result};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use tenantry_registry::{Fence, Registry, SecretRecord};

const NONCE_LEN: usize = 12;

/// The 256-bit key that wraps every data key.
#[derive(Clone)]
pub struct MasterKey {
    bytes: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "MasterKey({})", self.key_id())
    }
}

impl MasterKey {
    /// Parses a base64 key of exactly 32 bytes (the form of `TENANTRY_MASTER_KEY` and the key file).
    pub fn from_base64(encoded: &str) -> Result<MasterKey> {
        let decoded = STANDARD
            .decode(encoded.trim())
            .map_err(|_| Error::SecretStore("the master key is not valid base64".into()))?;
        let bytes: [u8; 32] = decoded
            .try_into()
            .map_err(|_| Error::SecretStore("the master key must be 32 bytes".into()))?;
        Ok(MasterKey { bytes })
    }

    /// Reads the key file, creating it (mode 0600) with a fresh random key if there is none. Processes starting
    /// together agree on one key: the file appears atomically through a hard link, and a loser reads the winner's.
    pub fn load_or_create(path: &Path) -> Result<MasterKey> {
        match std::fs::read_to_string(path) {
            Ok(encoded) => return MasterKey::from_base64(&encoded),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(Error::SecretStore(format!(
                    "cannot read {}: {error}",
                    path.display()
                )))
            }
        }
        let io_error = |error: std::io::Error| {
            Error::SecretStore(format!("cannot create {}: {error}", path.display()))
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let temporary = path.with_extension(format!("tmp.{}", std::process::id()));
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)
                .map_err(io_error)?;
            file.write_all(STANDARD.encode(bytes).as_bytes())
                .map_err(io_error)?;
            file.sync_all().map_err(io_error)?;
        }
        let linked = std::fs::hard_link(&temporary, path);
        let _ = std::fs::remove_file(&temporary);
        match linked {
            Ok(()) => Ok(MasterKey { bytes }),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                let encoded = std::fs::read_to_string(path).map_err(io_error)?;
                MasterKey::from_base64(&encoded)
            }
            Err(error) => Err(io_error(error)),
        }
    }

    /// A short, non-secret fingerprint that says which master key wrapped a data key.
    pub fn key_id(&self) -> String {
        Sha256::digest(self.bytes)[..6]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

pub(crate) fn seal(key: &[u8; 32], plaintext: &[u8], associated_data: &[u8]) -> Result<String> {
    let cipher = Aes256Gcm::new(key.into());
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: associated_data,
            },
        )
        .map_err(|_| Error::SecretStore("encryption failed".into()))?;
    let mut combined = nonce.to_vec();
    combined.extend_from_slice(&sealed);
    Ok(STANDARD.encode(combined))
}

pub(crate) fn open(
    key: &[u8; 32],
    sealed: &str,
    associated_data: &[u8],
    name: &str,
) -> Result<Vec<u8>> {
    let undecryptable = || {
        Error::SecretStore(format!(
            "secret {name:?} cannot be decrypted with this master key"
        ))
    };
    let combined = STANDARD.decode(sealed).map_err(|_| undecryptable())?;
    if combined.len() < NONCE_LEN {
        return Err(undecryptable());
    }
    let (nonce, ciphertext) = combined.split_at(NONCE_LEN);
    Aes256Gcm::new(key.into())
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: associated_data,
            },
        )
        .map_err(|_| undecryptable())
}

/// The secret that says which master key this registry's secrets are sealed with: its value is fixed and not
/// secret; that it decrypts (AES-GCM authenticates) proves the key.
pub const KEY_CHECK_SECRET: &str = "tenantry-master-key-check";
const KEY_CHECK_VALUE: &str =
    "this registry's secrets are sealed with the master key that opens this";

/// Whether a master key opens this registry's secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeyCheck {
    Opens,
    /// It does not; the text says which key it is and which key the registry wants (by their non-secret ids).
    DoesNotOpen(String),
}

/// Secrets encrypted in the registry's `secrets` table.
#[derive(Clone)]
pub struct LocalSecretStore {
    registry: Registry,
    master_key: MasterKey,
}

impl LocalSecretStore {
    pub fn new(registry: Registry, master_key: MasterKey) -> LocalSecretStore {
        LocalSecretStore {
            registry,
            master_key,
        }
    }

    fn encrypt(&self, name: &str, value: &SecretString) -> Result<SecretRecord> {
        let mut data_key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut data_key);
        let key_aad = format!("data-key:{name}");
        Ok(SecretRecord {
            name: name.to_owned(),
            key_id: self.master_key.key_id(),
            wrapped_key: seal(&self.master_key.bytes, &data_key, key_aad.as_bytes())?,
            ciphertext: seal(&data_key, value.expose().as_bytes(), name.as_bytes())?,
            created_at: 0,
            updated_at: 0,
        })
    }

    fn decrypt(&self, record: &SecretRecord) -> Result<SecretString> {
        let key_aad = format!("data-key:{}", record.name);
        let data_key: [u8; 32] = open(
            &self.master_key.bytes,
            &record.wrapped_key,
            key_aad.as_bytes(),
            &record.name,
        )?
        .try_into()
        .map_err(|_| {
            Error::SecretStore(format!("secret {:?} has a malformed data key", record.name))
        })?;
        let plaintext = open(
            &data_key,
            &record.ciphertext,
            record.name.as_bytes(),
            &record.name,
        )?;
        String::from_utf8(plaintext)
            .map(SecretString::new)
            .map_err(|_| Error::SecretStore(format!("secret {:?} is not text", record.name)))
    }
}

impl LocalSecretStore {
    /// Checks, before anything is written with it, that the master key opens this registry's secrets. The check
    /// value is written with the first secret or at the first start; a registry from before it existed is checked
    /// against one of its secrets first, then gets the value.
    pub async fn check_master_key(&self) -> Result<MasterKeyCheck> {
        if let Some(check) = self.registry.get_secret(KEY_CHECK_SECRET).await? {
            return Ok(self.judge(&check));
        }
        let existing = self
            .registry
            .list_secret_names()
            .await?
            .into_iter()
            .find(|name| name != KEY_CHECK_SECRET);
        if let Some(name) = existing {
            if let Some(record) = self.registry.get_secret(&name).await? {
                let verdict = self.judge(&record);
                if verdict != MasterKeyCheck::Opens {
                    return Ok(verdict);
                }
            }
        }
        let check = self.encrypt(KEY_CHECK_SECRET, &SecretString::new(KEY_CHECK_VALUE.into()))?;
        if self.registry.put_secret_if_absent(&check).await? {
            return Ok(MasterKeyCheck::Opens);
        }
        // Another process wrote the check value first, perhaps with another key: that one decides.
        match self.registry.get_secret(KEY_CHECK_SECRET).await? {
            Some(check) => Ok(self.judge(&check)),
            None => Ok(MasterKeyCheck::Opens),
        }
    }

    fn judge(&self, record: &SecretRecord) -> MasterKeyCheck {
        match self.decrypt(record) {
            Ok(_) => MasterKeyCheck::Opens,
            Err(_) => MasterKeyCheck::DoesNotOpen(format!(
                "the master key (key id {}) does not open this registry's secrets, which were sealed with key \
                 id {}",
                self.master_key.key_id(),
                record.key_id
            )),
        }
    }
}

impl SecretStore for LocalSecretStore {
    fn put<'a>(&'a self, name: &'a str, value: &'a SecretString) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let record = self.encrypt(name, value)?;
            self.registry.put_secret(&record).await?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<SecretString>>> {
        Box::pin(async move {
            match self.registry.get_secret(name).await? {
                Some(record) => Ok(Some(self.decrypt(&record)?)),
                None => Ok(None),
            }
        })
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Ok(self.registry.delete_secret(name).await?) })
    }

    fn list_names(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move { Ok(self.registry.list_secret_names().await?) })
    }

    fn put_for_job<'a>(
        &'a self,
        fence: &'a Fence,
        name: &'a str,
        value: &'a SecretString,
        labels: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let record = self.encrypt(name, value)?;
            self.registry
                .put_secret_fenced(fence, &record, labels)
                .await?;
            Ok(())
        })
    }

    fn delete_for_job<'a>(
        &'a self,
        fence: &'a Fence,
        name: &'a str,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Ok(self.registry.delete_secret_fenced(fence, name).await?) })
    }

    fn label_for_job<'a>(
        &'a self,
        fence: &'a Fence,
        name: &'a str,
        labels: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            Ok(self
                .registry
                .set_secret_labels_fenced(fence, name, labels)
                .await?)
        })
    }

    fn labels<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<serde_json::Value>>> {
        Box::pin(async move { Ok(self.registry.secret_labels(name).await?) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_under_their_own_name() {
        let key = [7u8; 32];
        let sealed = seal(&key, b"postgres://u:p@h/db", b"tenant-db-acme").unwrap();
        assert_eq!(
            open(&key, &sealed, b"tenant-db-acme", "n").unwrap(),
            b"postgres://u:p@h/db"
        );
        assert!(open(&key, &sealed, b"tenant-db-other", "n").is_err());
        assert!(open(&[8u8; 32], &sealed, b"tenant-db-acme", "n").is_err());
    }
}
