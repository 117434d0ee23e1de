//! What a workflow is to the runtime: named phases, each with an idempotent apply and undo, over a job context.

use crate::runner::ProgressSink;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;
use tenantry_core::{Error as CodedError, ErrorCode};
use tenantry_registry::{Fence, JobLogLine, JobRecord, NewAuditEvent, Registry, SubjectStatus};

/// How a phase failed.
#[derive(Debug)]
pub enum PhaseError {
    /// Worth trying again after a pause (connection refused, timeout, serialization failure).
    Retryable(CodedError),
    /// Will not pass by waiting; the job unwinds.
    Fatal(CodedError),
    /// This worker lost the job's lease; it must stop without touching anything more.
    Fenced,
    /// The process is shutting down and the phase stopped where running it again resumes it (a long phase that
    /// waits, such as a rollout's waves): the job goes back to the queue for another worker.
    HandBack,
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
    /// The job's parameters as this workflow reads them. The runner parses them from the job record once per run
    /// and hands them to every phase; parameters that do not parse fail the run's first phase (`E_INVALID_INPUT`).
    type Params: DeserializeOwned + Send + Sync;

    /// Applies one phase. Running it again after it succeeded (or half-succeeded) must converge.
    fn apply(
        &self,
        context: &mut JobContext,
        params: &Self::Params,
        phase: &str,
    ) -> impl Future<Output = Result<(), PhaseError>> + Send;

    /// Undoes one phase. Undoing what was never done, or undoing twice, must succeed.
    fn undo(
        &self,
        context: &mut JobContext,
        params: &Self::Params,
        phase: &str,
    ) -> impl Future<Output = Result<(), PhaseError>> + Send;

    /// The new status of the job's subject (if it changes) and the audit events to write when the job completes.
    fn on_complete(&self, job: &JobRecord) -> (Option<SubjectStatus>, Vec<NewAuditEvent>);

    /// The new status of the job's subject (if it changes) and the audit events to write when the job ends rolled
    /// back or failed.
    fn on_failure(
        &self,
        job: &JobRecord,
        error: &CodedError,
    ) -> (Option<SubjectStatus>, Vec<NewAuditEvent>);

    /// Whether a fatal error ends the job without undoing its applied phases, and with which status (`None`, the
    /// default: it unwinds). A workflow whose work cannot be taken back piece by piece (a rollout: each tenant
    /// keeps the migrations it recorded) stops where it stands, and a retry carries on from the failed phase.
    fn stop_without_undo(&self, _cause: &CodedError) -> Option<tenantry_core::JobStatus> {
        None
    }

    /// What to tell whoever reads a job whose undo failed, which leaves the job's subject partly made: the product
    /// knows where its leftovers are found (a command to run); the runtime does not. It ends the job's message.
    fn undo_failed_advice(&self) -> Option<&str> {
        None
    }

    /// The phases that `phases[index]` waits for, as indices into `phases` (the job's phases in their stored
    /// order). The default, the phase before it, applies them one after another. A workflow whose phases do not
    /// all need each other names fewer, and the runner applies every phase whose dependencies are applied at the
    /// same time, within the one job. Only earlier phases count (a later index is ignored), so the stored order
    /// always satisfies the graph: undoing in reverse stored order undoes every phase before what it depends on.
    fn depends_on(&self, _params: &Self::Params, _phases: &[&str], index: usize) -> Vec<usize> {
        index.checked_sub(1).into_iter().collect()
    }
}

/// What a phase sees: the registry, its fence, the job as recorded, and a place for one-time reveals.
pub struct JobContext {
    pub registry: Registry,
    pub fence: Fence,
    pub job: JobRecord,
    pub(crate) reveals: Vec<(String, String)>,
    pub(crate) progress: Option<ProgressSink>,
    pub(crate) current_phase: Option<String>,
    /// Log lines not yet in the registry: they go with the run's next write (the phase's end, a state change),
    /// so logging costs no write of its own. A crash loses only lines of a phase that is not recorded as applied
    /// and runs again.
    pub(crate) pending_logs: Vec<JobLogLine>,
    /// The state changed by [`JobContext::set_output`] and not yet written.
    pub(crate) state_changed: bool,
    /// The keys [`JobContext::set_output`] changed and no write has carried yet.
    pub(crate) changed_keys: Vec<String>,
    /// Turns true when the process shuts down (see [`JobContext::stop_requested`]).
    pub(crate) stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// While phases run side by side, each has a context of its own and this is the job's state as last
    /// written, shared by all of them: a write merges the keys its context changed into it, under its lock, so
    /// two phases' writes never undo each other's keys.
    pub(crate) shared_state: Option<Arc<tokio::sync::Mutex<serde_json::Value>>>,
}

impl JobContext {
    /// Whether the process is shutting down: a phase that waits a long time checks it and returns
    /// [`PhaseError::HandBack`], so the job goes to another worker instead of holding this process up.
    pub fn stop_requested(&self) -> bool {
        self.stop.as_ref().is_some_and(|stop| *stop.borrow())
    }

    /// The shutdown signal itself, for a phase that hands work to tasks of its own.
    pub fn stop_signal(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.stop.clone()
    }

    /// A value from the job's state, written by an earlier phase.
    pub fn state_str(&self, key: &str) -> Option<&str> {
        self.job.state.get(key).and_then(serde_json::Value::as_str)
    }

    /// Records a non-secret value in the job's state, durably (with the log lines so far), before returning.
    pub async fn set_state(
        &mut self,
        key: &str,
        value: serde_json::Value,
    ) -> Result<(), PhaseError> {
        self.set_output(key, value);
        self.record(&[]).await
    }

    /// Records a phase's output (a non-secret value later phases or readers of the job want) in the job's state
    /// with the write that marks the phase applied: no write of its own. Use [`JobContext::set_state`] instead
    /// when the value must be durable before the phase acts on the world (what an undo needs to find).
    pub fn set_output(&mut self, key: &str, value: serde_json::Value) {
        if !self.job.state.is_object() {
            self.job.state = serde_json::json!({});
        }
        self.job.state[key] = value;
        self.state_changed = true;
        if !self.changed_keys.iter().any(|changed| changed == key) {
            self.changed_keys.push(key.to_owned());
        }
    }

    /// Adds a log line to the job's event log (and the process log). Never pass a secret. The line reaches the
    /// registry with the run's next write, at the latest when the phase ends.
    pub async fn log(&mut self, level: &str, message: &str) -> Result<(), PhaseError> {
        tracing::info!(job_id = %self.fence.job_id, phase = ?self.current_phase, level, "{message}");
        self.pending_logs.push(JobLogLine {
            at: tenantry_registry::now_millis(),
            phase: self.current_phase.clone(),
            level: level.to_owned(),
            message: message.to_owned(),
        });
        if let Some(progress) = &self.progress {
            progress(&crate::runner::Progress::Log {
                level: level.to_owned(),
                message: message.to_owned(),
            });
        }
        Ok(())
    }

    /// Writes the pending log lines now, with `transitions` (phase status changes) in the same transaction.
    pub(crate) async fn record(
        &mut self,
        transitions: &[tenantry_registry::PhaseTransition],
    ) -> Result<(), PhaseError> {
        if self.pending_logs.is_empty() && transitions.is_empty() && !self.state_changed {
            return Ok(());
        }
        match (self.state_changed, self.shared_state.clone()) {
            (true, Some(shared)) => {
                // The lock is held over the write, so the last write always holds every branch's keys.
                let mut written = shared.lock().await;
                let mut merged = written.clone();
                if !merged.is_object() {
                    merged = serde_json::json!({});
                }
                for key in &self.changed_keys {
                    merged[key.as_str()] = self.job.state[key.as_str()].clone();
                }
                self.registry
                    .record_progress(&self.fence, &self.pending_logs, transitions, Some(&merged))
                    .await?;
                *written = merged.clone();
                self.job.state = merged;
            }
            _ => {
                let state = self.state_changed.then_some(&self.job.state);
                self.registry
                    .record_progress(&self.fence, &self.pending_logs, transitions, state)
                    .await?;
            }
        }
        self.pending_logs.clear();
        self.state_changed = false;
        self.changed_keys.clear();
        Ok(())
    }

    /// A context of its own for one phase that runs beside others: the same job, registry and fence, the job's
    /// state as last written, and no log lines or reveals yet.
    pub(crate) fn branch(&self, state: serde_json::Value) -> JobContext {
        let mut job = self.job.clone();
        job.state = state;
        JobContext {
            registry: self.registry.clone(),
            fence: self.fence.clone(),
            job,
            reveals: Vec::new(),
            progress: self.progress.clone(),
            current_phase: None,
            pending_logs: Vec::new(),
            state_changed: false,
            changed_keys: Vec::new(),
            stop: self.stop.clone(),
            shared_state: self.shared_state.clone(),
        }
    }

    /// Hands a one-time secret to the caller who runs this job in process (shown once, never stored).
    pub fn reveal_once(&mut self, label: &str, value: &str) {
        self.reveals.push((label.to_owned(), value.to_owned()));
    }
}
