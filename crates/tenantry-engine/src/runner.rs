//! The runner: claims a job's lease, keeps it alive, drives phases forward or backward, and ends the job.

use crate::failpoints::{self, Boundary};
use crate::workflow::{JobContext, PhaseError, Workflow};
use crate::{owner_is_dead_local_process, Error, Result};
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantry_core::{Error as CodedError, ErrorCode, JobStatus, PhaseStatus};
use tenantry_registry::{Fence, JobRecord, PhaseRecord, PhaseTransition, Registry};

/// Bounded exponential backoff for transient phase errors.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    /// No new attempt starts once this much time has passed since the first.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_elapsed: Duration::from_secs(30),
        }
    }
}

/// A live update for whoever watches a job run in this process (the CLI's progress display).
#[derive(Debug, Clone)]
pub enum Progress {
    Phase {
        name: String,
        status: PhaseStatus,
        elapsed: Option<Duration>,
    },
    Log {
        level: String,
        message: String,
    },
}

pub type ProgressSink = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How a run ended: the job as recorded, and the one-time secrets its phases revealed to this caller.
#[derive(Debug)]
pub struct JobOutcome {
    pub job: JobRecord,
    pub reveals: Vec<(String, String)>,
    /// The job had already ended when this caller came to run it (another process ran it meanwhile).
    pub ended_before: bool,
}

/// Runs jobs in this process.
#[derive(Clone)]
pub struct Runner {
    registry: Registry,
    owner: String,
    lease_ttl: Duration,
    retry: RetryPolicy,
    progress: Option<ProgressSink>,
    /// When it turns true, jobs in hand are handed back at the next phase boundary (graceful shutdown).
    stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// Applies every job's phases one after another, whatever its workflow's graph allows (the bench's
    /// comparison, or an operator's `TENANTRY_SEQUENTIAL_PHASES=1`).
    sequential_phases: bool,
}

/// The environment variable that makes every runner of the process apply phases one after another.
pub const SEQUENTIAL_PHASES_ENV: &str = "TENANTRY_SEQUENTIAL_PHASES";

/// The job-state key where a rollback's cause is kept, so a crash during undo resumes the undo.
const ROLLBACK_KEY: &str = "_rollback";

#[derive(Debug, Clone, Copy)]
enum Step {
    Apply,
    Undo,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::Apply => "apply",
            Step::Undo => "undo",
        }
    }
}

enum Ending {
    /// A shutdown was requested: the job goes back to the queue, untouched, for another worker.
    HandedBack,
    Complete,
    RolledBack(CodedError),
    /// A fatal error in a workflow that does not unwind: the job ends with this status, its phases as they are.
    Stopped {
        status: JobStatus,
        cause: CodedError,
    },
    UndoFailed {
        cause: CodedError,
        undo_error: CodedError,
    },
}

impl Runner {
    pub fn new(
        registry: Registry,
        owner: String,
        lease_ttl: Duration,
        retry: RetryPolicy,
    ) -> Runner {
        Runner {
            registry,
            owner,
            lease_ttl,
            retry,
            progress: None,
            stop: None,
            sequential_phases: std::env::var(SEQUENTIAL_PHASES_ENV).is_ok_and(|value| value == "1"),
        }
    }

    /// Applies phases one after another (`true`), or side by side where the workflow's graph allows (`false`,
    /// the default unless `TENANTRY_SEQUENTIAL_PHASES=1`).
    pub fn with_sequential_phases(mut self, sequential: bool) -> Runner {
        self.sequential_phases = sequential;
        self
    }

    /// Hands jobs back (releases their lease) at the next phase boundary once `stop` turns true.
    pub fn with_stop(mut self, stop: tokio::sync::watch::Receiver<bool>) -> Runner {
        self.stop = Some(stop);
        self
    }

    fn stop_requested(&self) -> bool {
        self.stop.as_ref().is_some_and(|stop| *stop.borrow())
    }

    /// This runner's lease owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    pub fn with_progress(mut self, progress: ProgressSink) -> Runner {
        self.progress = Some(progress);
        self
    }

    fn lease_ttl_millis(&self) -> i64 {
        i64::try_from(self.lease_ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// Claims the job (taking it over from an owner on this host that has exited) and runs it to its end.
    pub async fn run_job<W: Workflow>(&self, workflow: &W, job_id: &str) -> Result<JobOutcome> {
        let job = self.registry.get_job(job_id).await?;
        if job.status.is_terminal() {
            return Ok(JobOutcome {
                job,
                reveals: Vec::new(),
                ended_before: true,
            });
        }
        let dead_owner = job
            .lease_owner
            .as_deref()
            .filter(|owner| owner_is_dead_local_process(owner));
        if let Some(dead_owner) = dead_owner {
            tracing::warn!(
                job_id,
                dead_owner,
                "taking over a job whose process has exited"
            );
        }
        let fence = self
            .registry
            .claim_job(job_id, &self.owner, self.lease_ttl_millis(), dead_owner)
            .await?
            .ok_or_else(|| Error::Busy {
                job_id: job_id.to_owned(),
                owner: job
                    .lease_owner
                    .clone()
                    .unwrap_or_else(|| "another worker".into()),
            })?;
        self.drive(workflow, fence).await
    }

    /// Runs a job whose lease the caller already holds.
    pub async fn drive<W: Workflow>(&self, workflow: &W, fence: Fence) -> Result<JobOutcome> {
        let heartbeat = self.spawn_heartbeat(fence.clone());
        let driven = self.drive_phases(workflow, fence).await;
        heartbeat.abort();
        driven
    }

    fn spawn_heartbeat(&self, fence: Fence) -> tokio::task::JoinHandle<()> {
        let registry = self.registry.clone();
        let ttl_millis = self.lease_ttl_millis();
        let period = self.lease_ttl / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                match registry.renew_lease(&fence, ttl_millis).await {
                    Ok(()) => {}
                    Err(tenantry_registry::Error::Fenced { .. }) => {
                        tracing::warn!(job_id = %fence.job_id, "lease was taken over by another worker; this worker will change nothing more");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(job_id = %fence.job_id, %error, "lease renewal failed; will try again")
                    }
                }
            }
        })
    }

    fn emit(&self, progress: crate::runner::Progress) {
        if let Some(sink) = &self.progress {
            sink(&progress);
        }
    }

    async fn drive_phases<W: Workflow>(&self, workflow: &W, fence: Fence) -> Result<JobOutcome> {
        let job = self.registry.get_job(&fence.job_id).await?;
        let mut context = JobContext {
            registry: self.registry.clone(),
            fence: fence.clone(),
            job,
            reveals: Vec::new(),
            progress: self.progress.clone(),
            current_phase: None,
            pending_logs: Vec::new(),
            state_changed: false,
            changed_keys: Vec::new(),
            stop: self.stop.clone(),
            shared_state: None,
        };
        let params = parse_params::<W>(&context.job);
        let mut refused = None;
        let ending = match self
            .forward(workflow, &mut context, &params, &mut refused)
            .await
        {
            Ok(ending) => ending,
            Err(error) => return Err(stopped(&fence, error)),
        };
        let ending = match ending {
            Ending::RolledBack(cause) => match workflow.stop_without_undo(&cause) {
                Some(status) => Ending::Stopped { status, cause },
                None => match self
                    .backward(workflow, &mut context, &params, refused, cause)
                    .await
                {
                    Ok(ending) => ending,
                    Err(error) => return Err(stopped(&fence, error)),
                },
            },
            complete => complete,
        };
        if matches!(ending, Ending::HandedBack) {
            self.registry.release_lease(&fence).await?;
            tracing::info!(job_id = %fence.job_id, "job handed back for another worker (shutting down)");
            return Err(Error::HandedBack {
                job_id: fence.job_id.clone(),
            });
        }
        let job = self.registry.get_job(&fence.job_id).await?;
        let finished = match &ending {
            Ending::HandedBack => Ok(()),
            Ending::Complete => {
                let (subject_status, audit) = workflow.on_complete(&job);
                self.registry
                    .finish_job(&fence, JobStatus::Complete, None, subject_status, &audit)
                    .await
            }
            Ending::RolledBack(cause) => {
                let (subject_status, audit) = workflow.on_failure(&job, cause);
                self.registry
                    .finish_job(
                        &fence,
                        JobStatus::RolledBack,
                        Some((cause.code.as_str(), &cause.message)),
                        subject_status,
                        &audit,
                    )
                    .await
            }
            Ending::Stopped { status, cause } => {
                let (subject_status, audit) = workflow.on_failure(&job, cause);
                self.registry
                    .finish_job(
                        &fence,
                        *status,
                        Some((cause.code.as_str(), &cause.message)),
                        subject_status,
                        &audit,
                    )
                    .await
            }
            Ending::UndoFailed { cause, undo_error } => {
                let advice = workflow
                    .undo_failed_advice()
                    .map(|advice| format!("; {advice}"))
                    .unwrap_or_default();
                let partial = CodedError::new(
                    ErrorCode::PartialState,
                    format!(
                        "{} (undo failed: {}{advice})",
                        cause.message, undo_error.message
                    ),
                );
                let (subject_status, audit) = workflow.on_failure(&job, &partial);
                self.registry
                    .finish_job(
                        &fence,
                        JobStatus::Failed,
                        Some((partial.code.as_str(), &partial.message)),
                        subject_status,
                        &audit,
                    )
                    .await
            }
        };
        finished?;
        let job = self.registry.get_job(&fence.job_id).await?;
        record_job_metrics(&job);
        Ok(JobOutcome {
            job,
            reveals: context.reveals,
            ended_before: false,
        })
    }

    /// Applies every phase not yet applied, in order. Returns the ending to record, or the rollback to start.
    /// When the parameters do not parse, the first phase fails without being applied: `refused` says which.
    async fn forward<W: Workflow>(
        &self,
        workflow: &W,
        context: &mut JobContext,
        params: &Parsed<W::Params>,
        refused: &mut Option<i64>,
    ) -> Result<Ending, PhaseError> {
        if let Some(cause) = rollback_cause(&context.job) {
            return Ok(Ending::RolledBack(cause));
        }
        match self.phase_graph(workflow, &context.job, params) {
            Some(graph) => {
                self.forward_side_by_side(workflow, context, params, &graph)
                    .await
            }
            None => {
                self.forward_in_order(workflow, context, params, refused)
                    .await
            }
        }
    }

    /// The phases each phase of the job waits for (indices into its phases), when the workflow's graph lets
    /// some run side by side; `None` when they run one after another (the default graph, parameters that do not
    /// parse, or sequential phases asked for).
    fn phase_graph<W: Workflow>(
        &self,
        workflow: &W,
        job: &JobRecord,
        params: &Parsed<W::Params>,
    ) -> Option<Vec<Vec<usize>>> {
        let params = params.as_ref().ok().filter(|_| !self.sequential_phases)?;
        let names: Vec<&str> = job.phases.iter().map(|phase| phase.name.as_str()).collect();
        let graph: Vec<Vec<usize>> = (0..names.len())
            .map(|index| {
                let mut waits_for = workflow.depends_on(params, &names, index);
                waits_for.retain(|earlier| *earlier < index);
                waits_for.sort_unstable();
                waits_for.dedup();
                waits_for
            })
            .collect();
        let in_order = graph.iter().enumerate().all(|(index, waits_for)| {
            *waits_for == index.checked_sub(1).into_iter().collect::<Vec<_>>()
        });
        (!in_order).then_some(graph)
    }

    /// Applies every phase not yet applied, in order.
    async fn forward_in_order<W: Workflow>(
        &self,
        workflow: &W,
        context: &mut JobContext,
        params: &Parsed<W::Params>,
        refused: &mut Option<i64>,
    ) -> Result<Ending, PhaseError> {
        let phases = context.job.phases.clone();
        let to_apply: Vec<&PhaseRecord> = phases
            .iter()
            .filter(|phase| !matches!(phase.status, PhaseStatus::Applied | PhaseStatus::Skipped))
            .collect();
        // The phase the previous one's final write already marked running.
        let mut marked_running = None;
        for (index, phase) in to_apply.iter().enumerate() {
            if self.stop_requested() {
                return Ok(Ending::HandedBack);
            }
            let next = to_apply.get(index + 1).copied();
            let already_running = marked_running == Some(phase.position);
            match self
                .apply_phase(workflow, context, params, phase, already_running, next)
                .await
            {
                Ok(next_marked) => marked_running = next_marked,
                Err(error) => {
                    if params.is_err() {
                        *refused = Some(phase.position);
                    }
                    let cause = match error {
                        PhaseError::Fenced => return Err(PhaseError::Fenced),
                        PhaseError::HandBack => return Ok(Ending::HandedBack),
                        // A phase's own transient errors become fatal once its retries run out, so a retryable
                        // error here means the registry could not record the runner's bookkeeping: stop without
                        // judging the job; it resumes where its records stand once the lease expires.
                        retryable @ PhaseError::Retryable(_) => return Err(retryable),
                        PhaseError::Fatal(cause) => cause,
                    };
                    // Fenced like every write: a worker whose lease was taken over while the phase ran (stopped,
                    // then woken) gets `Fenced` here and stops, undoing nothing; its failure may only be the
                    // race with the worker that took over, which carries on.
                    context
                        .record(&[PhaseTransition {
                            position: phase.position,
                            status: PhaseStatus::Failed,
                            message: format!("{}: {}", cause.code, cause.message),
                        }])
                        .await?;
                    self.emit(Progress::Phase {
                        name: phase.name.clone(),
                        status: PhaseStatus::Failed,
                        elapsed: None,
                    });
                    context
                        .set_state(
                            ROLLBACK_KEY,
                            serde_json::json!({ "code": cause.code, "message": cause.message, "phase": phase.name }),
                        )
                        .await?;
                    context.job = context.registry.get_job(&context.fence.job_id).await?;
                    return Ok(Ending::RolledBack(cause));
                }
            }
        }
        Ok(Ending::Complete)
    }

    /// Applies every phase not yet applied as soon as the phases it waits for are, several at once, each with a
    /// context of its own (see [`JobContext::branch`]); all within this task. After a fatal error no phase
    /// starts: the ones running finish (their next boundary) and the rollback cause is already recorded, so a
    /// crash meanwhile resumes into the rollback. A lost lease or registry stops everything at once, as a crash.
    ///
    /// Everything a branch awaits happens inside its own future: the branches are only polled while this loop
    /// waits for the next one to end, and one not polled may hold a registry transaction (SQLite's one writer, a
    /// job row's lock) or the state's lock, which an await out here would wait for forever.
    async fn forward_side_by_side<W: Workflow>(
        &self,
        workflow: &W,
        context: &mut JobContext,
        params: &Parsed<W::Params>,
        graph: &[Vec<usize>],
    ) -> Result<Ending, PhaseError> {
        use futures_util::stream::{FuturesUnordered, StreamExt};
        use std::sync::atomic::AtomicBool;
        let phases = context.job.phases.clone();
        let mut applied: Vec<bool> = phases
            .iter()
            .map(|phase| matches!(phase.status, PhaseStatus::Applied | PhaseStatus::Skipped))
            .collect();
        let mut started = applied.clone();
        let mut placed_before = vec![None; phases.len()];
        let shared = Arc::new(tokio::sync::Mutex::new(context.job.state.clone()));
        context.shared_state = Some(shared.clone());
        // Set by the first branch that fails: it alone records its error as the rollback's cause.
        let failed = AtomicBool::new(false);
        let mut running_now = FuturesUnordered::new();
        let mut cause: Option<CodedError> = None;
        let mut handing_back = false;
        loop {
            if cause.is_none() && !handing_back {
                handing_back = self.stop_requested();
            }
            if cause.is_none() && !handing_back {
                for (index, phase) in phases.iter().enumerate() {
                    if started[index] || !graph[index].iter().all(|earlier| applied[*earlier]) {
                        continue;
                    }
                    started[index] = true;
                    placed_before[index] = context.job.placed_server.clone();
                    let mut branch = context.branch(serde_json::Value::Null);
                    let (shared, failed) = (shared.clone(), &failed);
                    running_now.push(async move {
                        branch.job.state = shared.lock().await.clone();
                        let outcome = self
                            .apply_phase(workflow, &mut branch, params, phase, false, None)
                            .await;
                        let outcome = match outcome {
                            Err(PhaseError::Fatal(failure)) => self
                                .record_side_failure(&mut branch, phase, &failure, failed)
                                .await
                                .map(|first| Err((failure, first))),
                            Err(other) => Err(other),
                            Ok(_) => Ok(Ok(())),
                        };
                        (index, branch, outcome)
                    });
                }
            }
            let Some((index, mut branch, outcome)) = running_now.next().await else {
                break;
            };
            context.reveals.append(&mut branch.reveals);
            match outcome {
                Ok(Ok(())) => {
                    applied[index] = true;
                    // What a phase changes on its copy of the job record besides the state (a placement), the
                    // phases after it see; no two phases that run side by side change the same field.
                    if branch.job.placed_server != placed_before[index] {
                        context.job.placed_server = branch.job.placed_server.clone();
                    }
                }
                Ok(Err((failure, first))) => {
                    if first {
                        cause = Some(failure);
                    }
                }
                Err(PhaseError::Fenced) => return Err(PhaseError::Fenced),
                // As in order: the registry could not record the runner's bookkeeping.
                Err(retryable @ PhaseError::Retryable(_)) => return Err(retryable),
                Err(PhaseError::HandBack) => handing_back = true,
                Err(PhaseError::Fatal(failure)) => return Err(PhaseError::Fatal(failure)),
            }
        }
        context.shared_state = None;
        context.current_phase = None;
        if let Some(cause) = cause {
            context.job = context.registry.get_job(&context.fence.job_id).await?;
            return Ok(Ending::RolledBack(cause));
        }
        context.job.state = shared.lock().await.clone();
        Ok(if handing_back {
            Ending::HandedBack
        } else {
            Ending::Complete
        })
    }

    /// Records a phase that failed beside others: `failed`, with its log lines; and, if it is the first of the
    /// job to fail, the rollback's cause, at once. Returns whether it was the first.
    async fn record_side_failure(
        &self,
        branch: &mut JobContext,
        phase: &PhaseRecord,
        failure: &CodedError,
        failed: &std::sync::atomic::AtomicBool,
    ) -> Result<bool, PhaseError> {
        branch
            .record(&[PhaseTransition {
                position: phase.position,
                status: PhaseStatus::Failed,
                message: format!("{}: {}", failure.code, failure.message),
            }])
            .await?;
        self.emit(Progress::Phase {
            name: phase.name.clone(),
            status: PhaseStatus::Failed,
            elapsed: None,
        });
        let first = !failed.swap(true, std::sync::atomic::Ordering::SeqCst);
        if first {
            branch
                .set_state(
                    ROLLBACK_KEY,
                    serde_json::json!({ "code": failure.code, "message": failure.message, "phase": phase.name }),
                )
                .await?;
        }
        Ok(first)
    }

    /// Applies one phase. Its end is one registry write: the phase applied, its log lines and outputs, and `next`
    /// marked running (unless a shutdown was asked for). Returns the position of the phase it marked running.
    async fn apply_phase<W: Workflow>(
        &self,
        workflow: &W,
        context: &mut JobContext,
        params: &Parsed<W::Params>,
        phase: &PhaseRecord,
        already_running: bool,
        next: Option<&PhaseRecord>,
    ) -> Result<Option<i64>, PhaseError> {
        check_failpoint(&phase.name, Boundary::Before).await?;
        context.current_phase = Some(phase.name.clone());
        if !already_running {
            context.record(&[running(phase)]).await?;
            self.emit(Progress::Phase {
                name: phase.name.clone(),
                status: PhaseStatus::Running,
                elapsed: None,
            });
        }
        let started = Instant::now();
        self.with_retries(workflow, context, params, &phase.name, Step::Apply)
            .await?;
        check_failpoint(&phase.name, Boundary::After).await?;
        let elapsed = started.elapsed();
        metrics::histogram!(
            "tenantry_phase_duration_seconds",
            "kind" => context.job.kind.as_str(),
            "plan" => context.job.plan.clone().unwrap_or_default(),
            "phase" => phase.name.clone()
        )
        .record(elapsed.as_secs_f64());
        let next = next.filter(|_| !self.stop_requested());
        let mut transitions = vec![PhaseTransition {
            position: phase.position,
            status: PhaseStatus::Applied,
            message: format!("applied in {} ms", elapsed.as_millis()),
        }];
        transitions.extend(next.map(running));
        context.record(&transitions).await?;
        context.current_phase = None;
        self.emit(Progress::Phase {
            name: phase.name.clone(),
            status: PhaseStatus::Applied,
            elapsed: Some(elapsed),
        });
        if let Some(next) = next {
            self.emit(Progress::Phase {
                name: next.name.clone(),
                status: PhaseStatus::Running,
                elapsed: None,
            });
        }
        Ok(next.map(|next| next.position))
    }

    /// Undoes, in reverse, every phase that was started and not yet undone. The phase `forward` refused to apply
    /// (its parameters did not parse) changed nothing, so it has nothing to undo.
    async fn backward<W: Workflow>(
        &self,
        workflow: &W,
        context: &mut JobContext,
        params: &Parsed<W::Params>,
        refused: Option<i64>,
        cause: CodedError,
    ) -> Result<Ending, PhaseError> {
        let phases = context.job.phases.clone();
        for phase in phases.iter().rev() {
            if matches!(
                phase.status,
                PhaseStatus::Pending | PhaseStatus::Undone | PhaseStatus::Skipped
            ) {
                continue;
            }
            if self.stop_requested() {
                return Ok(Ending::HandedBack);
            }
            context.current_phase = Some(phase.name.clone());
            context
                .record(&[PhaseTransition {
                    position: phase.position,
                    status: PhaseStatus::Undoing,
                    message: "undoing".into(),
                }])
                .await?;
            self.emit(Progress::Phase {
                name: phase.name.clone(),
                status: PhaseStatus::Undoing,
                elapsed: None,
            });
            let started = Instant::now();
            let undone = match check_failpoint(&phase.name, Boundary::Undo).await {
                Ok(()) if refused == Some(phase.position) => Ok(()),
                Ok(()) => {
                    self.with_retries(workflow, context, params, &phase.name, Step::Undo)
                        .await
                }
                Err(error) => Err(error),
            };
            match undone {
                Ok(()) => {}
                Err(PhaseError::Fenced) => return Err(PhaseError::Fenced),
                Err(PhaseError::HandBack) => return Ok(Ending::HandedBack),
                Err(PhaseError::Fatal(undo_error) | PhaseError::Retryable(undo_error)) => {
                    context
                        .record(&[PhaseTransition {
                            position: phase.position,
                            status: PhaseStatus::Failed,
                            message: format!("undo failed: {}", undo_error.message),
                        }])
                        .await?;
                    return Ok(Ending::UndoFailed { cause, undo_error });
                }
            }
            context
                .record(&[PhaseTransition {
                    position: phase.position,
                    status: PhaseStatus::Undone,
                    message: format!("undone in {} ms", started.elapsed().as_millis()),
                }])
                .await?;
            self.emit(Progress::Phase {
                name: phase.name.clone(),
                status: PhaseStatus::Undone,
                elapsed: Some(started.elapsed()),
            });
        }
        context.current_phase = None;
        Ok(Ending::RolledBack(cause))
    }

    async fn with_retries<W: Workflow>(
        &self,
        workflow: &W,
        context: &mut JobContext,
        params: &Parsed<W::Params>,
        phase: &str,
        step: Step,
    ) -> Result<(), PhaseError> {
        let params = params
            .as_ref()
            .map_err(|invalid| PhaseError::Fatal(invalid.clone()))?;
        self.with_retries_once(workflow, context, params, phase, step)
            .await?;
        if failpoints::repeat_steps() {
            self.with_retries_once(workflow, context, params, phase, step)
                .await?;
        }
        Ok(())
    }

    async fn with_retries_once<W: Workflow>(
        &self,
        workflow: &W,
        context: &mut JobContext,
        params: &W::Params,
        phase: &str,
        step: Step,
    ) -> Result<(), PhaseError> {
        let first_attempt = Instant::now();
        let mut delay = self.retry.initial_delay;
        let mut attempt = 1;
        loop {
            let attempted = match step {
                Step::Apply => workflow.apply(context, params, phase).await,
                Step::Undo => workflow.undo(context, params, phase).await,
            };
            match attempted {
                Ok(()) => return Ok(()),
                Err(PhaseError::Retryable(error))
                    if attempt < self.retry.max_attempts
                        && first_attempt.elapsed() + delay < self.retry.max_elapsed =>
                {
                    context
                        .log(
                            "warn",
                            &format!(
                                "{phase} {} attempt {attempt} failed ({}: {}); retrying in {} ms",
                                step.as_str(),
                                error.code,
                                error.message,
                                delay.as_millis()
                            ),
                        )
                        .await?;
                    // A retry waits a while: the warning goes to the registry now, for whoever watches the job.
                    context.record(&[]).await?;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.retry.max_delay);
                    attempt += 1;
                }
                Err(PhaseError::Retryable(error)) => {
                    return Err(PhaseError::Fatal(CodedError::new(
                        error.code,
                        format!(
                            "{} (gave up after {attempt} attempts in {} ms)",
                            error.message,
                            first_attempt.elapsed().as_millis()
                        ),
                    )))
                }
                Err(other) => return Err(other),
            }
        }
    }
}

/// A job's parameters as its workflow reads them, or why they cannot be read.
type Parsed<Params> = Result<Params, CodedError>;

/// Parses the job's parameters once for the whole run.
fn parse_params<W: Workflow>(job: &JobRecord) -> Parsed<W::Params> {
    W::Params::deserialize(&job.params).map_err(|error| {
        CodedError::new(
            ErrorCode::InvalidInput,
            format!("job parameters are not valid: {error}"),
        )
    })
}

fn running(phase: &PhaseRecord) -> PhaseTransition {
    PhaseTransition {
        position: phase.position,
        status: PhaseStatus::Running,
        message: "started".into(),
    }
}

async fn check_failpoint(phase: &str, boundary: Boundary) -> Result<(), PhaseError> {
    failpoints::check(phase, boundary.as_str()).await
}

/// The phase whose failure started the job's rollback, as `forward` kept it beside the cause.
fn failed_phase(job: &JobRecord) -> Option<&str> {
    job.state.get(ROLLBACK_KEY)?.get("phase")?.as_str()
}

/// The job-level series the dashboards read: how long a job took from its first claim to its end, by kind, plan
/// and outcome; and, for a job that ended with an error, one count by kind, the phase that failed and the code it
/// ended with (the common failure points). Every label comes from a fixed set (kinds, configured plans, phase
/// names, statuses, the error table), never a slug or an id, so the number of series stays small.
fn record_job_metrics(job: &JobRecord) {
    let kind = job.kind.as_str();
    let plan = job.plan.clone().unwrap_or_default();
    if let (Some(started_at), Some(finished_at)) = (job.started_at, job.finished_at) {
        metrics::histogram!(
            "tenantry_job_duration_seconds",
            "kind" => kind,
            "plan" => plan,
            "outcome" => job.status.as_str()
        )
        .record((finished_at - started_at).max(0) as f64 / 1000.0);
    }
    if let (Some(error_code), false) = (&job.error_code, job.status == JobStatus::Complete) {
        // A job reopened for rollback by an older version kept no phase with its cause.
        let phase = failed_phase(job).unwrap_or("unknown").to_owned();
        metrics::counter!(
            "tenantry_job_failures_total",
            "kind" => kind,
            "phase" => phase,
            "error_code" => error_code.clone()
        )
        .increment(1);
    }
}

fn rollback_cause(job: &JobRecord) -> Option<CodedError> {
    let rollback = job.state.get(ROLLBACK_KEY)?;
    let stored_code = rollback.get("code")?.as_str()?;
    let message = rollback
        .get("message")
        .and_then(|message| message.as_str())
        .unwrap_or_default();
    match ErrorCode::parse(stored_code) {
        Ok(code) => Some(CodedError::new(code, message)),
        // A code this version does not know (a newer worker began the rollback): the rollback still runs, and
        // the job's error says which code it was rather than passing for an ordinary internal error.
        Err(unknown) => {
            tracing::warn!(job_id = %job.id, %unknown, "rolling back a job whose cause has an unknown code");
            Some(CodedError::new(
                ErrorCode::Internal,
                format!("{unknown}: {message}"),
            ))
        }
    }
}

/// Why driving a job stopped before its end: its lease was taken over, or the registry could not record it.
fn stopped(fence: &Fence, error: PhaseError) -> Error {
    match error {
        PhaseError::Fenced => fenced(fence),
        PhaseError::HandBack => Error::HandedBack {
            job_id: fence.job_id.clone(),
        },
        PhaseError::Retryable(cause) | PhaseError::Fatal(cause) => {
            tracing::warn!(job_id = %fence.job_id, error = %cause, "stopped driving the job; it resumes when its lease expires");
            Error::Registry(tenantry_registry::Error::Unavailable(cause.message))
        }
    }
}

fn fenced(fence: &Fence) -> Error {
    Error::Registry(tenantry_registry::Error::Fenced {
        job_id: fence.job_id.clone(),
    })
}

/// Prepares a finished job to run again: `retry` re-applies what is not applied; `rollback` undoes what is.
pub(crate) fn reset_for(job: &JobRecord, rollback: bool) -> serde_json::Value {
    let mut state = job.state.clone();
    if let Some(object) = state.as_object_mut() {
        if rollback {
            let mut cause = job
                .error_code
                .clone()
                .map(|code| serde_json::json!({ "code": code, "message": job.error_message.clone().unwrap_or_default() }))
                .unwrap_or_else(|| serde_json::json!({ "code": "E_INTERNAL", "message": "rolled back by an operator" }));
            // The phase that failed stays with the new cause, so the failure is counted where it happened.
            if let (Some(phase), Some(cause)) = (failed_phase(job), cause.as_object_mut()) {
                cause.insert("phase".into(), phase.into());
            }
            object.insert(ROLLBACK_KEY.into(), cause);
        } else {
            object.remove(ROLLBACK_KEY);
        }
    }
    state
}

impl Runner {
    /// Reopens a finished job so it can run again: `rollback` undoes what is applied (for a `failed` job);
    /// otherwise it is a retry that re-applies every phase not applied (for a `failed` or `rolled_back` job).
    pub async fn reopen(&self, job_id: &str, actor: &str, rollback: bool) -> Result<JobRecord> {
        let job = self.registry.get_job(job_id).await?;
        let allowed = if rollback {
            job.status == JobStatus::Failed
        } else {
            matches!(job.status, JobStatus::Failed | JobStatus::RolledBack)
        };
        if !allowed {
            return Err(Error::NotReopenable {
                job_id: job_id.to_owned(),
                status: job.status,
                action: if rollback { "rolled back" } else { "retried" },
            });
        }
        let state = reset_for(&job, rollback);
        let event_type = if rollback {
            "JOB_ROLLBACK_REQUESTED"
        } else {
            "JOB_RETRIED"
        };
        Ok(self
            .registry
            .reopen_job(job_id, actor, event_type, &state, !rollback)
            .await?)
    }
}
