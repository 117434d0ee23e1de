//! The registry: the control plane's own database of servers, tenants, jobs, job events, audit events and
//! encrypted secrets, on SQLite (the embedded default) or PostgreSQL.
//!
//! One implementation serves both backends through sqlx's `Any` driver: the SQL is written once with `$N`
//! parameters (which SQLite accepts too), times are Unix milliseconds, JSON is text. Only the DDL and the
//! transaction opener differ per backend ([`Dialect`]).

mod access;
mod approvals;
pub mod audit;
mod backups;
mod change_requests;
mod error;
mod installation;
mod jobs;
mod notify;
mod outbox;
mod records;
mod resources;
mod rollouts;
mod secrets;
mod servers;
mod sqlite_file;
mod store;
mod tenants;

pub use access::{AccessWatch, ApiToken, ConsoleSession, IdempotencyRecord, PlatformUser};
pub use approvals::{ApprovalDecision, ApprovalOutcome};
pub use audit::{AuditChainFault, AuditChainFinding, AuditChainReport, AuditFilter};
pub use backups::{BackupRecord, BACKUP_COMPLETE, BACKUP_RUNNING};
pub use change_requests::{
    ChangeDecision, ChangeOutcome, ChangeRequestRecord, NewChangeRequest, CHANGE_APPROVED,
    CHANGE_PENDING, CHANGE_REJECTED,
};
pub use error::{is_transient_sqlx_error, Error, Result};
pub use installation::is_installation_id;
pub use jobs::{
    ApprovalRequest, Fence, IdempotencyKey, JobFilter, JobLogLine, NewJob, NewLease,
    PhaseTransition, Placement, PlacementRequest, SubjectStatus,
};
pub use notify::{JobListener, JobNotification, JOBS_CHANNEL, JOB_EVENTS_CHANNEL};
pub use outbox::{
    events_raised_by, shown_url, AttemptOutcome, NotificationRecord, WebhookRecord, CHANNEL_EMAIL,
    CHANNEL_WEBHOOK, DELIVERY_DEAD, DELIVERY_PENDING, DELIVERY_SENT, INVITATION_EVENT,
    INVITATION_RAISED_BY, NOTIFICATION_EVENTS,
};
pub use records::{
    AuditEvent, EventKind, JobEvent, JobRecord, NewAuditEvent, NewServer, PhaseRecord,
    SecretRecord, ServerRecord, TenantRecord, TenantResourceRecord,
};
pub use resources::{RESOURCE_ACTIVE, RESOURCE_DISABLED};
pub use rollouts::{
    ChildOutcomeRecord, ClaimBounds, ClaimedChild, NewRollout, NewRolloutChild, RolloutChild,
    RolloutRecord, WaveCounts, CHILD_APPLIED, CHILD_FAILED, CHILD_PENDING, CHILD_RUNNING,
    CHILD_SKIPPED, CHILD_STATUSES, ROLLOUT_ABORTED, ROLLOUT_PAUSED, ROLLOUT_RUN,
};
pub use store::{now_millis, Dialect, Registry, RegistryLocation};
pub use tenants::PlanChange;
