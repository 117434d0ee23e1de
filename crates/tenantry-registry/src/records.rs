//! The rows of the registry as Rust values, and how each is read from a database row.

use crate::store::{get, get_json};
use crate::{Error, Result};
use serde::Serialize;
use sqlx::any::AnyRow;
use tenantry_core::{EngineKind, JobKind, JobStatus, PhaseStatus, ServerStatus, TenantStatus};

fn parse_column<T>(parsed: tenantry_core::Result<T>) -> Result<T> {
    parsed.map_err(|error| Error::Corrupt(error.message))
}

/// A fleet member, with how many tenants it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerRecord {
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub engine: EngineKind,
    pub region: String,
    pub admin_secret_ref: String,
    pub capacity_hint: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: ServerStatus,
    /// How many tenant resources it holds (tenants' databases on a database server).
    pub tenant_count: i64,
    /// Where tenants connect when it is not the admin URL's host (RabbitMQ's AMQP URL).
    pub public_url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ServerRecord {
    pub(crate) fn from_row(row: &AnyRow) -> Result<ServerRecord> {
        Ok(ServerRecord {
            name: get(row, "name")?,
            engine: parse_column(EngineKind::parse(&get::<String>(row, "engine")?))?,
            region: get(row, "region")?,
            admin_secret_ref: get(row, "admin_secret_ref")?,
            capacity_hint: get(row, "capacity_hint")?,
            status: parse_column(ServerStatus::parse(&get::<String>(row, "status")?))?,
            tenant_count: get(row, "tenant_count")?,
            public_url: get(row, "public_url")?,
            created_at: get(row, "created_at")?,
            updated_at: get(row, "updated_at")?,
        })
    }

    /// Room left below the capacity hint (never negative).
    pub fn free_room(&self) -> i64 {
        (self.capacity_hint - self.tenant_count).max(0)
    }
}

/// What `servers add` records.
#[derive(Debug, Clone)]
pub struct NewServer {
    pub name: String,
    pub engine: EngineKind,
    pub region: String,
    pub admin_secret_ref: String,
    pub capacity_hint: i64,
    pub public_url: Option<String>,
}

/// One of a tenant's resources: a kind on a server, its name there and the secret with its credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantResourceRecord {
    pub tenant_slug: String,
    /// `database`, `cache`, `queue`, …
    pub kind: String,
    pub server_name: String,
    /// Its name on the server (`tenant_<slug_>`).
    pub name: String,
    /// The secret with the tenant's credentials for it (never its value).
    pub secret_name: Option<String>,
    /// `active` or `disabled`.
    pub status: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub labels: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A tenant as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantRecord {
    pub slug: String,
    pub display_name: String,
    pub admin_email: String,
    pub plan: String,
    pub region: String,
    pub server_name: String,
    pub resource_name: String,
    pub secret_ref: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: TenantStatus,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub labels: serde_json::Value,
    /// The effective settings of the tenant's plan (limits, modules, flags, monthly cost), as written into its
    /// database's `tenantry.settings` table (`tenantry_settings` on SQLite).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub settings: serde_json::Value,
    /// What the provisioning request said beyond slug, names and plan: `description`, `contact_name`,
    /// `resource_tier` (`small`, `medium`, `large`), `isolation`, `data_sources` (each `name`, `kind`,
    /// `endpoint` `{scheme, host, port}` and `secret`, the name of the secret that holds its URL — never the
    /// URL), `modules` (module name to on/off) and `security` (`auth_method`, `mfa_policy`, `allowed_cidrs`).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub profile: tenantry_core::TenantProfile,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TenantRecord {
    pub(crate) fn from_row(row: &AnyRow) -> Result<TenantRecord> {
        Ok(TenantRecord {
            slug: get(row, "slug")?,
            display_name: get(row, "display_name")?,
            admin_email: get(row, "admin_email")?,
            plan: get(row, "plan")?,
            region: get(row, "region")?,
            server_name: get(row, "server_name")?,
            resource_name: get(row, "resource_name")?,
            secret_ref: get(row, "secret_ref")?,
            status: parse_column(TenantStatus::parse(&get::<String>(row, "status")?))?,
            labels: get_json(row, "labels")?,
            settings: get_json(row, "settings")?,
            profile: serde_json::from_value(get_json(row, "profile")?)
                .map_err(|error| crate::Error::Corrupt(format!("column profile: {error}")))?,
            created_at: get(row, "created_at")?,
            updated_at: get(row, "updated_at")?,
        })
    }
}

/// One durable job. `params` and `state` never hold a secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub kind: JobKind,
    pub tenant_slug: String,
    pub status: JobStatus,
    pub params: serde_json::Value,
    pub state: serde_json::Value,
    pub placed_server: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub actor: String,
    pub plan: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_token: i64,
    pub lease_expires_at: Option<i64>,
    /// While the job awaits approval: when the request lapses unless a PLATFORM_ADMIN decides.
    pub approval_expires_at: Option<i64>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
    pub phases: Vec<PhaseRecord>,
}

impl JobRecord {
    pub(crate) fn from_row(row: &AnyRow, phases: Vec<PhaseRecord>) -> Result<JobRecord> {
        Ok(JobRecord {
            id: get(row, "id")?,
            kind: parse_column(JobKind::parse(&get::<String>(row, "kind")?))?,
            tenant_slug: get(row, "tenant_slug")?,
            status: parse_column(JobStatus::parse(&get::<String>(row, "status")?))?,
            params: get_json(row, "params")?,
            state: get_json(row, "state")?,
            placed_server: get(row, "placed_server")?,
            error_code: get(row, "error_code")?,
            error_message: get(row, "error_message")?,
            actor: get(row, "actor")?,
            plan: get(row, "plan")?,
            lease_owner: get(row, "lease_owner")?,
            lease_token: get(row, "lease_token")?,
            lease_expires_at: get(row, "lease_expires_at")?,
            approval_expires_at: get(row, "approval_expires_at")?,
            created_at: get(row, "created_at")?,
            started_at: get(row, "started_at")?,
            finished_at: get(row, "finished_at")?,
            updated_at: get(row, "updated_at")?,
            phases,
        })
    }
}

/// One phase of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhaseRecord {
    pub position: i64,
    pub name: String,
    pub status: PhaseStatus,
    pub attempts: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

impl PhaseRecord {
    pub(crate) fn from_row(row: &AnyRow) -> Result<PhaseRecord> {
        Ok(PhaseRecord {
            position: get(row, "position")?,
            name: get(row, "name")?,
            status: parse_column(PhaseStatus::parse(&get::<String>(row, "status")?))?,
            attempts: get(row, "attempts")?,
            started_at: get(row, "started_at")?,
            finished_at: get(row, "finished_at")?,
        })
    }
}

/// Whether a job event records a phase change or a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Phase,
    Log,
}

/// A timestamped event of a job: a phase changing status, or a log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobEvent {
    pub id: i64,
    pub job_id: String,
    pub at: i64,
    pub kind: EventKind,
    pub phase: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: Option<String>,
    pub level: String,
    pub message: String,
}

impl JobEvent {
    pub(crate) fn from_row(row: &AnyRow) -> Result<JobEvent> {
        let kind = match get::<String>(row, "kind")?.as_str() {
            "phase" => EventKind::Phase,
            "log" => EventKind::Log,
            other => return Err(Error::Corrupt(format!("unknown event kind {other:?}"))),
        };
        Ok(JobEvent {
            id: get(row, "id")?,
            job_id: get(row, "job_id")?,
            at: get(row, "at")?,
            kind,
            phase: get(row, "phase")?,
            status: get(row, "status")?,
            level: get(row, "level")?,
            message: get(row, "message")?,
        })
    }
}

/// An audit event to write, in the same transaction as the change it records.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub actor: String,
    pub event_type: &'static str,
    pub tenant_slug: Option<String>,
    pub job_id: Option<String>,
    pub details: serde_json::Value,
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub event_type: String,
    pub tenant_slug: Option<String>,
    pub job_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: serde_json::Value,
}

impl AuditEvent {
    pub(crate) fn from_row(row: &AnyRow) -> Result<AuditEvent> {
        Ok(AuditEvent {
            id: get(row, "id")?,
            at: get(row, "at")?,
            actor: get(row, "actor")?,
            event_type: get(row, "event_type")?,
            tenant_slug: get(row, "tenant_slug")?,
            job_id: get(row, "job_id")?,
            details: get_json(row, "details")?,
        })
    }
}

/// An encrypted secret as stored: everything base64, nothing readable without the master key.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRecord {
    pub name: String,
    pub key_id: String,
    pub wrapped_key: String,
    pub ciphertext: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for SecretRecord {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SecretRecord")
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SecretRecord {
    pub(crate) fn from_row(row: &AnyRow) -> Result<SecretRecord> {
        Ok(SecretRecord {
            name: get(row, "name")?,
            key_id: get(row, "key_id")?,
            wrapped_key: get(row, "wrapped_key")?,
            ciphertext: get(row, "ciphertext")?,
            created_at: get(row, "created_at")?,
            updated_at: get(row, "updated_at")?,
        })
    }
}
