//! What a workflow is to the runtime: named phases, each with an idempotent apply and undo, over a job context.

use crate::runner::ProgressSink;
use std::future::Future;
use tenantry_core::{Error as CodedError, ErrorCode, TenantStatus};
use tenantry_registry::{Fence, JobRecord, NewAuditEvent, Registry};

/// How a phase failed.
#[derive(Debug)]
pub enum PhaseError {
    /// Worth trying again after a pause (connection refused, timeout, serialization failure).
    Retryable(CodedError),
    /// Will not pass by waiting; the job unwinds.
    Fatal(CodedError),
    /// This worker lost the job's lease; it must stop without touching anything more.
    Fenced,
}

impl PhaseError {
    pub fn fatal(code: ErrorCode, message: impl Into<String>) -> PhaseError {
        PhaseError::Fatal(CodedError::new(code, message))
    }

    pub fn retryable(code: ErrorCode, message: impl Into<String>) -> PhaseError {
        PhaseError::Retryable(CodedError::new(code, message))
    }
}

impl From<tenantry_registry::Error> for PhaseError {
    fn from(error: tenantry_registry::Error) -> Self {
        match error {
            tenantry_registry::Error::Fenced { .. } => PhaseError::Fenced,
            error if error.is_transient() => {
                PhaseError::retryable(ErrorCode::ProvisioningUnavailable, error.to_string())
            }
            error => PhaseError::fatal(ErrorCode::Internal, error.to_string()),
        }
    }
}

/// A durable operation made of ordered phases. Implementations keep no state of their own between phases:
/// whatever a later phase needs is in the job's parameters, its state, or the outside world.
pub trait Workflow: Send + Sync {
    /// Applies one phase. Running it again after it succeeded (or half-succeeded) must converge.
    fn apply(
        &self,
        context: &mut JobContext,
        phase: &str,
    ) -> impl Future<Output = Result<(), PhaseError>> + Send;

    /// Undoes one phase. Undoing what was never done, or undoing twice, must succeed.
    fn undo(
        &self,
        context: &mut JobContext,
        phase: &str,
    ) -> impl Future<Output = Result<(), PhaseError>> + Send;

    /// The tenant's status and the audit events to write when the job completes.
    fn on_complete(&self, job: &JobRecord) -> (Option<TenantStatus>, Vec<NewAuditEvent>);

    /// The tenant's status and the audit events to write when the job ends rolled back or failed.
    fn on_failure(
        &self,
        job: &JobRecord,
        error: &CodedError,
    ) -> (Option<TenantStatus>, Vec<NewAuditEvent>);
}

/// What a phase sees: the registry, its fence, the job as recorded, and a place for one-time reveals.
pub struct JobContext {
    pub registry: Registry,
    pub fence: Fence,
    pub job: JobRecord,
    pub(crate) reveals: Vec<(String, String)>,
    pub(crate) progress: Option<ProgressSink>,
    pub(crate) current_phase: Option<String>,
}

impl JobContext {
    /// A value from the job's state, written by an earlier phase.
    pub fn state_str(&self, key: &str) -> Option<&str> {
        self.job.state.get(key).and_then(serde_json::Value::as_str)
    }

    /// Records a non-secret value in the job's state, durably, before returning.
    pub async fn set_state(
        &mut self,
        key: &str,
        value: serde_json::Value,
    ) -> Result<(), PhaseError> {
        let mut state = self.job.state.clone();
        if !state.is_object() {
            state = serde_json::json!({});
        }
        state[key] = value;
        self.registry.set_job_state(&self.fence, &state).await?;
        self.job.state = state;
        Ok(())
    }

    /// Appends a log line to the job's event log (and the process log). Never pass a secret.
    pub async fn log(&mut self, level: &str, message: &str) -> Result<(), PhaseError> {
        tracing::info!(job_id = %self.fence.job_id, phase = ?self.current_phase, level, "{message}");
        self.registry
            .append_job_log(&self.fence, self.current_phase.as_deref(), level, message)
            .await?;
        if let Some(progress) = &self.progress {
            progress(&crate::runner::Progress::Log {
                level: level.to_owned(),
                message: message.to_owned(),
            });
        }
        Ok(())
    }

    /// Hands a one-time secret to the caller who runs this job in process (shown once, never stored).
    pub fn reveal_once(&mut self, label: &str, value: &str) {
        self.reveals.push((label.to_owned(), value.to_owned()));
    }
}
