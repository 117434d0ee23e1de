//! What creates things outside the registry: tenant database engines (PostgreSQL, SQLite), the secret store,
//! and the credentials tenantry generates. Only this crate speaks a vendor's wire protocol.

pub mod backup;
pub mod credentials;
pub mod engines;
mod error;
pub mod mail;
pub mod resources;
pub mod secrets;
pub mod webhooks;

pub use error::{Error, Result};

/// A test failpoint between two statements of a provider operation (`tenantry_core::failpoints`; it acts only in
/// a `failpoints` build). One set to `error` fails the operation with [`Error::Failpoint`].
pub(crate) async fn failpoint(phase: &str, point: &str) -> Result<()> {
    tenantry_core::failpoints::check(phase, point)
        .await
        .map_err(|fired| Error::Failpoint(fired.to_string()))
}
