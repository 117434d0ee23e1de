//! The public shape of a job (DESIGN.md's `GET /platform/jobs/{job_id}`), shared by the CLI's `--json` and the API.

use serde::Serialize;
use tenantry_core::{JobStatus, PhaseStatus};
use tenantry_registry::{EventKind, JobEvent, JobRecord};

/// One phase as shown to people and programs.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PhaseView {
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: PhaseStatus,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// For text output; not part of the API's contract, which lists exactly the fields above.
    #[serde(skip)]
    pub duration_ms: Option<i64>,
}

/// One log line of a job.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogView {
    pub at: String,
    pub level: String,
    pub phase: Option<String>,
    pub message: String,
}

/// A job with its phases, progress and log.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobView {
    pub job_id: String,
    pub kind: String,
    pub tenant_slug: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: JobStatus,
    /// 1-based position of the phase running now (or the last one reached).
    pub current_phase: usize,
    pub total_phases: usize,
    pub phase_name: Option<String>,
    pub progress_percentage: u8,
    pub phases: Vec<PhaseView>,
    pub logs: Vec<LogView>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub estimated_completion: Option<String>,
    // For text output; not part of the API's contract, which lists exactly the fields above.
    #[serde(skip)]
    pub placed_server: Option<String>,
    #[serde(skip)]
    pub actor: String,
    #[serde(skip)]
    pub created_at: String,
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds.
pub fn format_millis(millis: i64) -> String {
    let time = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(millis).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

impl JobView {
    pub fn build(job: &JobRecord, events: &[JobEvent]) -> JobView {
        JobView::build_with_history(job, events, &[])
    }

    /// Like [`JobView::build`], estimating completion from `recent_phase_ms`: the mean duration of each phase
    /// over recent completed jobs of the same kind and plan.
    pub fn build_with_history(
        job: &JobRecord,
        events: &[JobEvent],
        recent_phase_ms: &[(String, f64)],
    ) -> JobView {
        let total_phases = job.phases.len();
        let applied = job
            .phases
            .iter()
            .filter(|phase| matches!(phase.status, PhaseStatus::Applied | PhaseStatus::Skipped))
            .count();
        let reached = job
            .phases
            .iter()
            .rposition(|phase| phase.status != PhaseStatus::Pending)
            .map(|index| index + 1)
            .unwrap_or(0);
        let current = job
            .phases
            .iter()
            .find(|phase| {
                matches!(
                    phase.status,
                    PhaseStatus::Running | PhaseStatus::Undoing | PhaseStatus::Failed
                )
            })
            .or_else(|| job.phases.get(reached.saturating_sub(1)));
        let progress_percentage = if job.status == JobStatus::Complete || total_phases == 0 {
            100
        } else {
            u8::try_from(applied * 100 / total_phases).unwrap_or(100)
        };
        let phases = job
            .phases
            .iter()
            .map(|phase| PhaseView {
                name: phase.name.clone(),
                status: phase.status,
                started_at: phase.started_at.map(format_millis),
                finished_at: phase.finished_at.map(format_millis),
                duration_ms: phase
                    .started_at
                    .zip(phase.finished_at)
                    .map(|(start, end)| end - start),
            })
            .collect();
        let logs = events
            .iter()
            .filter(|event| event.kind == EventKind::Log)
            .map(|event| LogView {
                at: format_millis(event.at),
                level: event.level.clone(),
                phase: event.phase.clone(),
                message: event.message.clone(),
            })
            .collect();
        JobView {
            job_id: job.id.clone(),
            kind: job.kind.as_str().to_owned(),
            tenant_slug: job.tenant_slug.clone(),
            status: job.status,
            current_phase: current
                .map(|phase| phase.position as usize + 1)
                .unwrap_or(0),
            total_phases,
            phase_name: current.map(|phase| phase.name.clone()),
            progress_percentage,
            phases,
            logs,
            error_code: job.error_code.clone(),
            error_message: job.error_message.clone(),
            started_at: job.started_at.map(format_millis),
            finished_at: job.finished_at.map(format_millis),
            estimated_completion: estimate_completion(job, recent_phase_ms),
            placed_server: job.placed_server.clone(),
            actor: job.actor.clone(),
            created_at: format_millis(job.created_at),
        }
    }
}

/// While a job runs: now plus the expected duration of each phase not yet applied. A phase's expected duration is
/// its mean over recent jobs of the same plan, or else the mean of this job's finished phases.
fn estimate_completion(job: &JobRecord, recent_phase_ms: &[(String, f64)]) -> Option<String> {
    if job.status.is_terminal() {
        return job.finished_at.map(format_millis);
    }
    let own_durations: Vec<i64> = job
        .phases
        .iter()
        .filter_map(|phase| {
            phase
                .started_at
                .zip(phase.finished_at)
                .map(|(start, end)| end - start)
        })
        .collect();
    let own_mean = (!own_durations.is_empty())
        .then(|| own_durations.iter().sum::<i64>() as f64 / own_durations.len() as f64);
    let mut remaining_ms = 0.0;
    for phase in job
        .phases
        .iter()
        .filter(|phase| !matches!(phase.status, PhaseStatus::Applied | PhaseStatus::Skipped))
    {
        let expected = recent_phase_ms
            .iter()
            .find(|(name, _)| *name == phase.name)
            .map(|(_, mean)| *mean)
            .or(own_mean)?;
        remaining_ms += expected;
    }
    Some(format_millis(
        tenantry_registry::now_millis() + remaining_ms.round() as i64,
    ))
}
