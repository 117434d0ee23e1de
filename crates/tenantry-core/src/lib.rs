//! Domain types and rules of tenantry: validated names, tenant specs, plans, statuses and the error-code table.
//!
//! Nothing here does IO, except the test failpoints, which act only with the `failpoints` feature. Every other
//! crate speaks in these types, so a value that made it into one of them has already passed the rules of DESIGN.md.

mod error;
pub mod failpoints;
mod plan;
mod profile;
mod slug;
mod status;
mod tenant;

pub use error::{Error, ErrorCode, Result, UnknownErrorCode};
pub use plan::{
    checked_budget, is_shared_table_name, EngineKind, Isolation, Modules, Plan, DATABASE_RESOURCE,
    MAX_BUDGET,
};
pub use profile::{
    data_source_secret_name, module_switches, AuthMethod, ContactName, DataSourceKind,
    DataSourceName, DataSourceRef, DataSourceUrl, Description, Endpoint, MfaPolicy, ParsedProfile,
    ProfileError, RawDataSource, RawSecurity, RawTenantProfile, ResourceTier, SecurityPolicy,
    TenantProfile, MAX_ALLOWED_CIDRS, MAX_DATA_SOURCES,
};
pub use slug::Slug;
pub use status::{JobKind, JobStatus, PhaseStatus, PlatformRole, ServerStatus, TenantStatus};
pub use tenant::{AdminEmail, DisplayName, RawTenantSpec, ServerName, SpecDefaults, TenantSpec};
