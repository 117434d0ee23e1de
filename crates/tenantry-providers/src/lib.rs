//! What creates things outside the registry: tenant database engines (PostgreSQL, SQLite), the secret store,
//! and the credentials tenantry generates. Only this crate speaks a vendor's wire protocol.

pub mod credentials;
pub mod engines;
mod error;
pub mod secrets;

pub use error::{Error, Result};
