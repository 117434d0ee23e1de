//! The stable error codes of tenantry (one table, one line of docs each) and the coded error that carries them.

use std::fmt;

/// Every client-visible error code. The strings are API: add codes, never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ErrorCode {
    #[serde(rename = "E_INVALID_SLUG")]
    InvalidSlug,
    #[serde(rename = "E_INVALID_INPUT")]
    InvalidInput,
    #[serde(rename = "E_ALREADY_PROVISIONED")]
    AlreadyProvisioned,
    #[serde(rename = "E_PARTIAL_STATE")]
    PartialState,
    #[serde(rename = "E_NO_CAPACITY")]
    NoCapacity,
    #[serde(rename = "E_DB_SERVER_NOT_FOUND")]
    DbServerNotFound,
    #[serde(rename = "E_ADMIN_CONN_UNRESOLVED")]
    AdminConnUnresolved,
    #[serde(rename = "E_MIGRATIONS_FAILED")]
    MigrationsFailed,
    #[serde(rename = "PROVISIONING_UNAVAILABLE")]
    ProvisioningUnavailable,
    #[serde(rename = "E_UNAUTHENTICATED")]
    Unauthenticated,
    #[serde(rename = "E_FORBIDDEN")]
    Forbidden,
    #[serde(rename = "E_NOT_FOUND")]
    NotFound,
    #[serde(rename = "E_CONFLICT")]
    Conflict,
    #[serde(rename = "E_RATE_LIMITED")]
    RateLimited,
    /// A step failed in a way no other code describes (a bug, or an outside system misbehaving).
    #[serde(rename = "E_INTERNAL")]
    Internal,
    /// A phase was stopped on purpose by a test failpoint.
    #[serde(rename = "E_FAILPOINT")]
    Failpoint,
    /// A critical post-provisioning check failed; the job rolled back.
    #[serde(rename = "E_VALIDATION_FAILED")]
    ValidationFailed,
    /// A PLATFORM_ADMIN rejected the request waiting for approval.
    #[serde(rename = "E_APPROVAL_REJECTED")]
    ApprovalRejected,
    /// Nobody approved the request before its approval window closed.
    #[serde(rename = "E_APPROVAL_EXPIRED")]
    ApprovalExpired,
    /// The object belongs to another tenantry installation (or carries no installation mark): left untouched.
    #[serde(rename = "E_FOREIGN_OBJECT")]
    ForeignObject,
    /// The configured admin seed or admin check names what the tenant schema does not have.
    #[serde(rename = "E_TENANT_SCHEMA_MISMATCH")]
    TenantSchemaMismatch,
    /// The admin seed fits the tenant schema, but the tenant database refused to run it.
    #[serde(rename = "E_ADMIN_SEED_FAILED")]
    AdminSeedFailed,
    /// An existing registry file cannot be read as a registry (empty, truncated, not SQLite); it was left as it is.
    #[serde(rename = "E_REGISTRY_UNREADABLE")]
    RegistryUnreadable,
    /// The master key does not open this registry's secrets.
    #[serde(rename = "E_MASTER_KEY_MISMATCH")]
    MasterKeyMismatch,
    /// `audit verify` found audit events changed, deleted or added behind tenantry's back.
    #[serde(rename = "E_AUDIT_CHAIN_BROKEN")]
    AuditChainBroken,
}

impl ErrorCode {
    /// Every code, in the order of the docs table.
    pub const ALL: [ErrorCode; 25] = [
        ErrorCode::InvalidSlug,
        ErrorCode::InvalidInput,
        ErrorCode::AlreadyProvisioned,
        ErrorCode::PartialState,
        ErrorCode::NoCapacity,
        ErrorCode::DbServerNotFound,
        ErrorCode::AdminConnUnresolved,
        ErrorCode::MigrationsFailed,
        ErrorCode::ProvisioningUnavailable,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::RateLimited,
        ErrorCode::Internal,
        ErrorCode::Failpoint,
        ErrorCode::ValidationFailed,
        ErrorCode::ApprovalRejected,
        ErrorCode::ApprovalExpired,
        ErrorCode::ForeignObject,
        ErrorCode::TenantSchemaMismatch,
        ErrorCode::AdminSeedFailed,
        ErrorCode::RegistryUnreadable,
        ErrorCode::MasterKeyMismatch,
        ErrorCode::AuditChainBroken,
    ];

    /// The stored, wire-visible string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidSlug => "E_INVALID_SLUG",
            ErrorCode::InvalidInput => "E_INVALID_INPUT",
            ErrorCode::AlreadyProvisioned => "E_ALREADY_PROVISIONED",
            ErrorCode::PartialState => "E_PARTIAL_STATE",
            ErrorCode::NoCapacity => "E_NO_CAPACITY",
            ErrorCode::DbServerNotFound => "E_DB_SERVER_NOT_FOUND",
            ErrorCode::AdminConnUnresolved => "E_ADMIN_CONN_UNRESOLVED",
            ErrorCode::MigrationsFailed => "E_MIGRATIONS_FAILED",
            ErrorCode::ProvisioningUnavailable => "PROVISIONING_UNAVAILABLE",
            ErrorCode::Unauthenticated => "E_UNAUTHENTICATED",
            ErrorCode::Forbidden => "E_FORBIDDEN",
            ErrorCode::NotFound => "E_NOT_FOUND",
            ErrorCode::Conflict => "E_CONFLICT",
            ErrorCode::RateLimited => "E_RATE_LIMITED",
            ErrorCode::Internal => "E_INTERNAL",
            ErrorCode::Failpoint => "E_FAILPOINT",
            ErrorCode::ValidationFailed => "E_VALIDATION_FAILED",
            ErrorCode::ApprovalRejected => "E_APPROVAL_REJECTED",
            ErrorCode::ApprovalExpired => "E_APPROVAL_EXPIRED",
            ErrorCode::ForeignObject => "E_FOREIGN_OBJECT",
            ErrorCode::TenantSchemaMismatch => "E_TENANT_SCHEMA_MISMATCH",
            ErrorCode::AdminSeedFailed => "E_ADMIN_SEED_FAILED",
            ErrorCode::RegistryUnreadable => "E_REGISTRY_UNREADABLE",
            ErrorCode::MasterKeyMismatch => "E_MASTER_KEY_MISMATCH",
            ErrorCode::AuditChainBroken => "E_AUDIT_CHAIN_BROKEN",
        }
    }

    /// Parses a stored code; unknown strings (from a newer version) read as `E_INTERNAL`.
    pub fn from_code(code: &str) -> ErrorCode {
        ErrorCode::ALL
            .into_iter()
            .find(|candidate| candidate.as_str() == code)
            .unwrap_or(ErrorCode::Internal)
    }

    /// What the code means, in one line.
    pub fn meaning(self) -> &'static str {
        match self {
            ErrorCode::InvalidSlug => "the slug must match ^[a-z][a-z0-9-]{2,39}$",
            ErrorCode::InvalidInput => "a field of the request is not valid",
            ErrorCode::AlreadyProvisioned => "the registry already has a tenant with this slug",
            ErrorCode::PartialState => {
                "registry, servers and secret store disagree about this slug"
            }
            ErrorCode::NoCapacity => "every eligible server is at its capacity_hint",
            ErrorCode::DbServerNotFound => "the chosen server is missing or not active",
            ErrorCode::AdminConnUnresolved => {
                "the server's admin connection could not be resolved or reached"
            }
            ErrorCode::MigrationsFailed => "a tenant schema migration failed",
            ErrorCode::ProvisioningUnavailable => "the secret store or registry is unavailable",
            ErrorCode::Unauthenticated => "no valid credentials were presented",
            ErrorCode::Forbidden => "the caller's role does not allow this",
            ErrorCode::NotFound => "no such object",
            ErrorCode::Conflict => "the request conflicts with the current state",
            ErrorCode::RateLimited => "too many requests; slow down",
            ErrorCode::Internal => "an unexpected internal error",
            ErrorCode::Failpoint => "a test failpoint stopped the job",
            ErrorCode::ValidationFailed => "a critical post-provisioning check failed",
            ErrorCode::ApprovalRejected => "a platform admin rejected the request",
            ErrorCode::ApprovalExpired => "nobody approved the request in time",
            ErrorCode::ForeignObject => {
                "the object is not this installation's: another tenantry registry made it, or none is known to"
            }
            ErrorCode::TenantSchemaMismatch => {
                "the configured admin seed or admin check does not fit the tenant schema"
            }
            ErrorCode::AdminSeedFailed => "the tenant database refused the configured admin seed",
            ErrorCode::RegistryUnreadable => "the registry file cannot be read as a registry",
            ErrorCode::MasterKeyMismatch => "the master key does not open this registry's secrets",
            ErrorCode::AuditChainBroken => {
                "audit events were changed, deleted or added outside tenantry"
            }
        }
    }

    /// What an operator should do about it (the runbook's troubleshooting table).
    pub fn remedy(self) -> &'static str {
        match self {
            ErrorCode::InvalidSlug => "Pick a valid slug: lowercase letters, digits and hyphens, 3 to 40 characters, starting with a letter.",
            ErrorCode::InvalidInput => "Correct the field named in the message and submit again.",
            ErrorCode::AlreadyProvisioned => "Pick a different slug, or offboard the existing tenant first.",
            ErrorCode::PartialState => "Run `tenantry offboard-tenant --slug <slug> --purge`, then retry.",
            ErrorCode::NoCapacity => "Add a server (`tenantry servers add`) or raise a server's capacity after a budget check.",
            ErrorCode::DbServerNotFound => "Refresh the server list (`tenantry servers list`) and pick an active server.",
            ErrorCode::AdminConnUnresolved => "Check the server's admin URL and that the server is reachable, then retry the job.",
            ErrorCode::MigrationsFailed => "Fix the failing migration in the tenant schema directory, then provision again.",
            ErrorCode::ProvisioningUnavailable => "Check the registry and secret store are reachable, then retry the job.",
            ErrorCode::Unauthenticated => "Sign in again or present a valid API token.",
            ErrorCode::Forbidden => "Ask a PLATFORM_ADMIN to do this.",
            ErrorCode::NotFound => "Check the identifier.",
            ErrorCode::Conflict => "Reload the current state and try again.",
            ErrorCode::RateLimited => "Wait a minute and try again.",
            ErrorCode::Internal => "Look at the job log and the server log; run `tenantry doctor`.",
            ErrorCode::Failpoint => "Unset TENANTRY_FAILPOINTS and retry the job.",
            ErrorCode::ValidationFailed => "Read the failed check in the job log (`tenantry validate` runs the suite alone), fix its cause, then provision again.",
            ErrorCode::ApprovalRejected => "Read the rejection reason in the job log; submit a revised request.",
            ErrorCode::ApprovalExpired => "Submit the request again and ask another PLATFORM_ADMIN to approve it in time.",
            ErrorCode::ForeignObject => "Leave it to the installation that owns it (`tenantry doctor` lists foreign objects with their installation id); pick another slug or server.",
            ErrorCode::TenantSchemaMismatch => "Adapt admin_seed / admin_check (TENANTRY_ADMIN_SEED, TENANTRY_ADMIN_CHECK) to the tables and columns of your tenant migrations; the message names the statement and the database's error.",
            ErrorCode::AdminSeedFailed => "Read the database's error in the message and fix the admin seed (TENANTRY_ADMIN_SEED): it must be one upsert that fills every required column, with $1 email, $2 password hash, $3 invitation token hash.",
            ErrorCode::RegistryUnreadable => "Restore the registry file from a backup, or move it away to start an empty registry.",
            ErrorCode::MasterKeyMismatch => "Set TENANTRY_MASTER_KEY (or master.key in the data directory) to the key this registry's secrets were written with.",
            ErrorCode::AuditChainBroken => "Treat the named events as tampered with: compare them with a backup of the registry and find who had write access.",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// An error with a stable code and a message a person understands. The message never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::InvalidInput, message)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_strings() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(code.as_str()), code);
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
