//! The secret store: named credentials, encrypted at rest, never logged. `local` is the built-in backend;
//! others (Vault KV v2, …) implement the same trait.

pub(crate) mod local;

pub use local::{LocalSecretStore, MasterKey, MasterKeyCheck, KEY_CHECK_SECRET};

use crate::credentials::SecretString;
use crate::Result;
use std::future::Future;
use std::pin::Pin;
use tenantry_registry::Fence;

/// A boxed future, so that the trait can be used as `dyn SecretStore`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A backend that keeps named secrets.
pub trait SecretStore: Send + Sync {
    /// Creates or replaces a secret.
    fn put<'a>(&'a self, name: &'a str, value: &'a SecretString) -> BoxFuture<'a, Result<()>>;
    /// Reads a secret; `None` when there is none.
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<SecretString>>>;
    /// Deletes a secret; `false` when there was none.
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>>;
    /// Every secret name, sorted.
    fn list_names(&self) -> BoxFuture<'_, Result<Vec<String>>>;
    /// Creates or replaces a secret with its cost labels (`{tenant_id, plan, cost_center}`) on behalf of a job;
    /// refused (`Fenced`) once the job's lease was taken over.
    fn put_for_job<'a>(
        &'a self,
        fence: &'a Fence,
        name: &'a str,
        value: &'a SecretString,
        labels: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<()>>;
    /// Deletes a secret on behalf of a job; refused once the job's lease was taken over.
    fn delete_for_job<'a>(&'a self, fence: &'a Fence, name: &'a str)
        -> BoxFuture<'a, Result<bool>>;
    /// Replaces a secret's cost labels on behalf of a job (a plan change); `false` when the secret does not exist.
    fn label_for_job<'a>(
        &'a self,
        fence: &'a Fence,
        name: &'a str,
        labels: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<bool>>;
    /// A secret's cost labels; `None` when the secret does not exist.
    fn labels<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<serde_json::Value>>>;
}
