//! `/platform/jobs`: read jobs, follow one live (Server-Sent Events), retry or roll back a failed one.

use super::{page_limit, ApiBytes, ApiQuery, JobAccepted};
use crate::auth::Principal;
use crate::cache::JobViewCache;
use crate::error::{ApiError, ApiResult, ProblemDetails};
use crate::live::StreamTicket;
use crate::state::ServerState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::Stream;
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use tenantry_core::JobStatus;
use tenantry_engine::JobView;
use tenantry_registry::{EventKind, JobFilter, JobRecord, Registry};
use tokio::sync::watch;

/// How many recent completed jobs of the same plan the estimate of a job's completion looks at.
const ESTIMATE_SAMPLE_JOBS: i64 = 20;
/// How long a live stream whose registry read failed waits before reading again.
const STREAM_RETRY_AFTER_ERROR: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    pub tenant: Option<String>,
    pub status: Option<String>,
    pub limit: Option<i64>,
}

/// The API's view of a job: its record with its events and, while it runs, an estimate of its completion.
pub async fn job_view(registry: &Registry, job: &JobRecord) -> ApiResult<JobView> {
    let events = registry.job_events(&job.id, 0).await?;
    let recent = if job.status.is_terminal() {
        Vec::new()
    } else {
        registry
            .recent_phase_durations(job.kind.as_str(), job.plan.as_deref(), ESTIMATE_SAMPLE_JOBS)
            .await?
    };
    Ok(JobView::build_with_history(job, &events, &recent))
}

/// The job, or a 404 that names it.
pub async fn require_job(registry: &Registry, job_id: &str) -> ApiResult<JobRecord> {
    match registry.get_job(job_id).await {
        Ok(job) => Ok(job),
        Err(tenantry_registry::Error::NotFound { .. }) => {
            Err(ApiError::not_found(format!("job {job_id:?}")))
        }
        Err(error) => Err(error.into()),
    }
}

/// List recent jobs, newest first (without their logs).
#[utoipa::path(get, path = "/platform/jobs", tag = "jobs", params(JobQuery),
    responses((status = 200, body = Vec<JobView>),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_jobs(
    State(state): State<ServerState>,
    ApiQuery(query): ApiQuery<JobQuery>,
) -> ApiResult<axum::Json<Vec<JobView>>> {
    let status = query
        .status
        .as_deref()
        .map(JobStatus::parse)
        .transpose()
        .map_err(|error| ApiError::bad_request(error.message))?;
    let jobs = state
        .platform
        .registry
        .list_jobs(&JobFilter {
            tenant_slug: query.tenant,
            status,
            limit: page_limit(query.limit),
        })
        .await?;
    Ok(axum::Json(
        jobs.iter().map(|job| JobView::build(job, &[])).collect(),
    ))
}

/// Read a job: phases, progress, log, error and estimated completion.
#[utoipa::path(get, path = "/platform/jobs/{job_id}", tag = "jobs", params(("job_id" = String, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 200, body = JobView),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_job(
    State(state): State<ServerState>,
    Path(job_id): Path<String>,
) -> ApiResult<Response> {
    if let Some(body) = state.job_views.get(&job_id) {
        return Ok(json_body(body));
    }
    let registry = &state.platform.registry;
    let job = require_job(registry, &job_id).await?;
    let view = job_view(registry, &job).await?;
    let body = Bytes::from(serde_json::to_vec(&view).map_err(|error| {
        ApiError::from(tenantry_core::Error::new(
            tenantry_core::ErrorCode::Internal,
            format!("cannot write job {job_id:?} as JSON: {error}"),
        ))
    })?);
    // The job's record was read before its events: a job final then had written its last event already.
    if JobViewCache::is_final(job.status) {
        state.job_views.insert(&job_id, body.clone());
    }
    Ok(json_body(body))
}

/// A JSON body written already, answered as `axum::Json` would answer it.
fn json_body(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

async fn reopen(
    state: &ServerState,
    principal: &Principal,
    job_id: &str,
    rollback: bool,
) -> ApiResult<(StatusCode, axum::Json<JobAccepted>)> {
    require_job(&state.platform.registry, job_id).await?;
    let job = state
        .runner
        .reopen(job_id, &principal.actor(), rollback)
        .await
        .map_err(|error| ApiError::from(tenantry_workflows::engine_error(error)))?;
    state.wake_workers.notify_one();
    Ok((StatusCode::ACCEPTED, axum::Json(JobAccepted::of(&job))))
}

/// What `POST /platform/jobs/{job_id}/approve` and `/reject` take.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalBody {
    /// Why, in a few words; kept in the job log and the audit event.
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]*$")]
    pub reason: String,
}

/// A JSON body that may be left out (an empty body reads as the default).
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("the body does not fit: {error}")))
}

/// Records a PLATFORM_ADMIN's decision on a job waiting for approval.
pub async fn decide(
    state: &ServerState,
    principal: &Principal,
    job_id: &str,
    approve: bool,
    reason: &str,
) -> ApiResult<JobRecord> {
    // An unknown job is the registry's NotFound, answered as a 404.
    let job = tenantry_workflows::decide_approval(
        &state.platform,
        job_id,
        &principal.actor(),
        approve,
        reason,
    )
    .await?;
    if approve {
        state.wake_workers.notify_one();
    }
    state.job_changed();
    Ok(job)
}

/// Approve a job waiting for approval: it becomes `pending` and a worker runs it. The requester cannot.
#[utoipa::path(post, path = "/platform/jobs/{job_id}/approve", tag = "jobs", params(("job_id" = String, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    request_body(content = ApprovalBody, description = "Optional: an empty body has no reason"),
    responses((status = 200, body = JobView),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not a PLATFORM_ADMIN, or the requester themselves", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The job is not awaiting approval (or its window closed)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn approve_job(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(job_id): Path<String>,
    ApiBytes(body): ApiBytes,
) -> ApiResult<axum::Json<JobView>> {
    let reason = optional_json::<ApprovalBody>(&body)?.reason;
    let job = decide(&state, &principal, &job_id, true, &reason).await?;
    Ok(axum::Json(job_view(&state.platform.registry, &job).await?))
}

/// Reject a job waiting for approval: it ends `cancelled` with `E_APPROVAL_REJECTED`. The requester cannot.
#[utoipa::path(post, path = "/platform/jobs/{job_id}/reject", tag = "jobs", params(("job_id" = String, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    request_body(content = ApprovalBody, description = "Optional: an empty body has no reason"),
    responses((status = 200, body = JobView),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not a PLATFORM_ADMIN, or the requester themselves", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The job is not awaiting approval (or its window closed)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn reject_job(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(job_id): Path<String>,
    ApiBytes(body): ApiBytes,
) -> ApiResult<axum::Json<JobView>> {
    let reason = optional_json::<ApprovalBody>(&body)?.reason;
    let job = decide(&state, &principal, &job_id, false, &reason).await?;
    Ok(axum::Json(job_view(&state.platform.registry, &job).await?))
}

/// Run a failed or rolled-back job again from the phases not applied.
#[utoipa::path(post, path = "/platform/jobs/{job_id}/retry", tag = "jobs", params(("job_id" = String, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 202, body = JobAccepted),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The job is not failed", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn retry_job(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(job_id): Path<String>,
) -> ApiResult<(StatusCode, axum::Json<JobAccepted>)> {
    reopen(&state, &principal, &job_id, false).await
}

/// Undo what a failed job applied.
#[utoipa::path(post, path = "/platform/jobs/{job_id}/rollback", tag = "jobs", params(("job_id" = String, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 202, body = JobAccepted),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The job is not failed", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn rollback_job(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(job_id): Path<String>,
) -> ApiResult<(StatusCode, axum::Json<JobAccepted>)> {
    reopen(&state, &principal, &job_id, true).await
}

/// One Server-Sent Event of a job stream: `phase` and `log` carry a job event as JSON (with its id as the SSE
/// id, for `Last-Event-ID`); the final `done` carries the job's terminal status and error.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct StreamEvent {
    /// `phase`, `log` or `done`.
    pub event: String,
    pub id: Option<String>,
    /// JSON text.
    pub data: String,
}

struct StreamCursor {
    registry: Registry,
    job_id: String,
    last_event_id: i64,
    pending: VecDeque<Event>,
    finished: bool,
    changes: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    /// Its place under the caps; `ticket.ended` turns true when the caller's credential stops being valid.
    ticket: StreamTicket,
}

impl StreamCursor {
    /// Queues the events recorded since the last one sent; after the job ends, a final `done` event.
    async fn fill(&mut self) -> Result<(), tenantry_registry::Error> {
        metrics::counter!("tenantry_live_stream_reads_total").increment(1);
        // Read the status first: if the job had ended, every one of its events is already recorded.
        let job = self.registry.get_job(&self.job_id).await?;
        for event in self
            .registry
            .job_events(&self.job_id, self.last_event_id)
            .await?
        {
            self.last_event_id = event.id;
            let name = match event.kind {
                EventKind::Phase => "phase",
                EventKind::Log => "log",
            };
            let data = serde_json::to_string(&event).unwrap_or_default();
            self.pending.push_back(
                Event::default()
                    .event(name)
                    .id(event.id.to_string())
                    .data(data),
            );
        }
        if job.status.is_terminal() {
            let data = serde_json::json!({
                "job_id": job.id,
                "status": job.status,
                "error_code": job.error_code,
                "error_message": job.error_message,
            });
            self.pending
                .push_back(Event::default().event("done").data(data.to_string()));
            self.finished = true;
        }
        Ok(())
    }
}

/// Follow a job live: it first replays what happened (after `Last-Event-ID`, if sent), then sends `phase` and `log`
/// events as they are recorded, and ends with a `done` event at the job's terminal status. The stream also ends
/// when the caller's token is revoked or expires, or their session ends. Streams are capped per token or
/// session and in all (503 with `Retry-After`).
#[utoipa::path(get, path = "/platform/jobs/{job_id}/events", tag = "jobs", params(("job_id" = String, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 200, description = "An event stream; each event is described by the schema", content_type = "text/event-stream", body = StreamEvent),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "Too many live streams for this token or session, or in all", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn job_events(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(job_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let registry = state.platform.registry.clone();
    require_job(&registry, &job_id).await?;
    let ticket = state.live_streams.open(&principal)?;
    state.live_streams.start_watcher(&state);
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    let cursor = StreamCursor {
        registry,
        job_id,
        last_event_id,
        pending: VecDeque::new(),
        finished: false,
        changes: state.job_changes.subscribe(),
        shutdown: state.shutdown.clone(),
        ticket,
    };
    let stream = futures_util::stream::unfold(cursor, |mut cursor| async move {
        loop {
            if *cursor.ticket.ended.borrow() {
                return None;
            }
            if let Some(event) = cursor.pending.pop_front() {
                return Some((Ok(event), cursor));
            }
            if cursor.finished || *cursor.shutdown.borrow() {
                return None;
            }
            cursor.changes.mark_unchanged();
            let read_failed = match cursor.fill().await {
                Ok(()) => false,
                Err(error) => {
                    tracing::warn!(job_id = cursor.job_id, %error, "live job stream could not read the registry");
                    true
                }
            };
            if cursor.pending.is_empty() {
                // Nothing new: sleep until something changes. No timer unless a read failed: an idle stream
                // costs nothing.
                let woken = tokio::select! {
                    () = tokio::time::sleep(STREAM_RETRY_AFTER_ERROR), if read_failed => true,
                    changed = cursor.changes.changed() => changed.is_ok(),
                    changed = cursor.shutdown.changed() => changed.is_ok(),
                    changed = cursor.ticket.ended.changed() => changed.is_ok(),
                };
                if !woken {
                    return None;
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
