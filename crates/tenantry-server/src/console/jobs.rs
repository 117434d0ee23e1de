//! Job pages: the list with filters under the last day's charts (provisioning time by plan, provisioning failures
//! by error code), the detail page with the live timeline (the same component the wizard's progress drawer shows),
//! the validation checks and the approval of a waiting request, and the browser side of Retry, Roll back, Approve
//! and Reject.

use super::audit::{actor, actor_names};
use super::charts;
use super::errors::{OrPage, PageError};
use super::layout::{
    duration, empty_state, exact_time, html_response, page_header, parse_rfc3339_millis, pill,
    query_escape, see_other, select_field, shell, short_id, time_ago, time_ago_rfc3339, Field,
    Section, Viewer,
};
use crate::api::jobs::{self as api_jobs, JobQuery};
use crate::api::ApiForm;
use crate::api::ApiQuery;
use crate::auth::Principal;
use crate::state::ServerState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;
use tenantry_core::{ErrorCode, JobKind, JobStatus, PhaseStatus};
use tenantry_engine::JobView;
use tenantry_registry::{now_millis, JobRecord};

/// The window of the Jobs page's charts.
const DAY_MILLIS: i64 = 24 * 60 * 60 * 1000;

/// How the first log line of a job that waits for approval begins; the rest says why it waits.
const WAITING_FOR_APPROVAL: &str = "waiting for approval";

/// The error table as the page script needs it to explain a failure that arrives live: code → [meaning, remedy].
pub fn error_help_json() -> String {
    let table: serde_json::Map<String, serde_json::Value> = ErrorCode::ALL
        .into_iter()
        .map(|code| {
            (
                code.as_str().to_owned(),
                serde_json::json!([code.meaning(), code.remedy()]),
            )
        })
        .collect();
    serde_json::Value::Object(table).to_string()
}

fn job_path(job_id: &str) -> String {
    format!("/platform/jobs/{}", query_escape(job_id))
}

/// A phase's duration: finished minus started, or the time so far while it runs.
fn phase_duration(started_at: Option<&str>, finished_at: Option<&str>) -> Option<i64> {
    let started = started_at.and_then(parse_rfc3339_millis)?;
    let finished = finished_at
        .and_then(parse_rfc3339_millis)
        .unwrap_or_else(now_millis);
    Some(finished - started)
}

/// The failed phase: the one marked failed, or (after an automatic rollback undid it) the one the job reached.
fn failed_phase(view: &JobView) -> Option<&str> {
    view.phases
        .iter()
        .find(|phase| phase.status == PhaseStatus::Failed)
        .map(|phase| phase.name.as_str())
        .or(view.phase_name.as_deref())
}

/// One result of the validation suite, as the provisioning job keeps it in its state under `checks`.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckRow {
    #[serde(default)]
    name: String,
    #[serde(default)]
    critical: bool,
    #[serde(default)]
    status: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    duration_ms: f64,
}

/// What the job component shows beyond the API's job view, read from the job's record: when a waiting request
/// lapses, and the validation suite's results.
#[derive(Debug, Clone, Default)]
pub struct JobExtras {
    pub approval_expires_at: Option<i64>,
    pub checks: Vec<CheckRow>,
}

impl JobExtras {
    pub fn of(job: &JobRecord) -> JobExtras {
        // A malformed entry hides the table rather than the page: the checks are a report, not the job.
        let checks = job
            .state
            .get("checks")
            .cloned()
            .and_then(|checks| serde_json::from_value::<Vec<CheckRow>>(checks).ok())
            .unwrap_or_default();
        JobExtras {
            approval_expires_at: job.approval_expires_at,
            checks,
        }
    }
}

/// Why a job waits for approval, from its first log line, as a sentence.
fn approval_reason(view: &JobView) -> String {
    let reason = view
        .logs
        .iter()
        .find_map(|line| line.message.strip_prefix(WAITING_FOR_APPROVAL))
        .map(|rest| rest.trim_start_matches([':', ' ']))
        .filter(|rest| !rest.is_empty())
        .unwrap_or("the request needs a platform admin other than the requester");
    let mut chars = reason.chars();
    let mut sentence: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !sentence.ends_with('.') {
        sentence.push('.');
    }
    sentence
}

/// Whether the job stopped with an error worth explaining: failed, rolled back, or cancelled with a reason
/// (rejected, or its approval lapsed).
fn stopped_with_error(view: &JobView) -> bool {
    match view.status {
        JobStatus::Failed | JobStatus::RolledBack => true,
        JobStatus::Cancelled => view.error_code.is_some(),
        _ => false,
    }
}

/// The approval block of a waiting job: why it waits, when it lapses, and what this viewer can do about it.
fn approval_block(view: &JobView, extras: &JobExtras, viewer: &Viewer) -> Markup {
    let awaiting = view.status == JobStatus::AwaitingApproval;
    let reason_field = Field {
        hint: Some("Optional. Kept in the job log and the audit trail."),
        autocomplete: Some("off"),
        ..Field::text("reason", "Reason", "")
    };
    html! {
        div.job-approval hidden[!awaiting] {
            @if awaiting {
                h3 { "Waiting for approval" }
                p.approval-reason { (approval_reason(view)) }
                @if let Some(expires_at) = extras.approval_expires_at {
                    p.approval-expiry {
                        "Lapses " (time_ago(expires_at)) span.muted { " · " (exact_time(expires_at)) }
                        " unless a platform admin decides before then."
                    }
                }
                @if viewer.can_decide(&view.actor) {
                    // One form, two answers: Reject posts the same reason to its own path.
                    form.approval-form method="post" action={ (job_path(&view.job_id)) "/approve" } {
                        (viewer.csrf_field())
                        (reason_field.render())
                        div.job-actions {
                            button.primary type="submit" { "Approve" }
                            button.danger type="submit" formaction={ (job_path(&view.job_id)) "/reject" } { "Reject" }
                        }
                    }
                } @else if viewer.actor == view.actor {
                    p.approval-waiting {
                        strong { "Waiting for another platform admin." }
                        " You asked for this job, so someone else must approve or reject it."
                    }
                } @else {
                    p.approval-waiting { "A platform admin other than the requester approves or rejects it." }
                }
            }
        }
    }
}

/// The validation suite's results, when the job ran it.
fn checks_block(extras: &JobExtras) -> Markup {
    let checks = &extras.checks;
    let n_passed = checks
        .iter()
        .filter(|check| check.status == "passed")
        .count();
    html! {
        div.job-checks hidden[checks.is_empty()] {
            @if !checks.is_empty() {
                h3 { "Validation checks " span.muted { (n_passed) " of " (checks.len()) " passed" } }
                div.table-wrap {
                    table.checks {
                        thead { tr { th { "Check" } th { "Status" } th.wide-only { "Detail" } th { "Duration" } } }
                        tbody {
                            @for check in checks {
                                tr title=(check.detail) {
                                    td {
                                        code { (check.name) }
                                        @if check.critical { " " span.muted.critical { "critical" } }
                                    }
                                    td { (pill(&check.status)) }
                                    td.details-cell.wide-only { (check.detail) }
                                    td.num { (duration(check.duration_ms.round() as i64)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The live job component: status, progress, times, approval, failure with what to do, the phase timeline, the
/// validation checks and the log. `console.js` renders the same structure from the job's JSON as it changes (and
/// takes the approval and checks blocks from this page, which alone knows the expiry and the checks), so server
/// and script agree.
pub fn job_live(view: &JobView, extras: &JobExtras, viewer: &Viewer) -> Markup {
    let stopped = stopped_with_error(view);
    let failed = matches!(view.status, JobStatus::Failed | JobStatus::RolledBack);
    // A stored code this version does not know (a newer process ended the job) is shown as it is, said to be
    // unknown, with no remedy: never as another code's meaning.
    let stopped_at = if failed { failed_phase(view) } else { None };
    html! {
        section.job-live data-job-id=(view.job_id) data-status=(view.status.as_str())
            data-can-operate=(viewer.can_operate()) data-error-help=(error_help_json()) {
            div.job-head {
                span.job-status { (pill(view.status.as_str())) }
                span.job-phase {
                    @if view.total_phases > 0 {
                        "Phase " (view.current_phase) " of " (view.total_phases)
                        @if let Some(name) = &view.phase_name { " · " code { (name) } }
                    }
                }
            }
            div.job-progress {
                progress max="100" value=(view.progress_percentage) aria-label="Progress" {
                    (view.progress_percentage) "%"
                }
                span.job-percent { (view.progress_percentage) "%" }
            }
            dl.job-times {
                div { dt { "Started" } dd.job-started { (time_ago_rfc3339(view.started_at.as_deref())) } }
                @if view.status.is_terminal() {
                    div { dt { "Finished" } dd.job-eta { (time_ago_rfc3339(view.finished_at.as_deref())) } }
                } @else {
                    div { dt { "Estimated completion" } dd.job-eta { (time_ago_rfc3339(view.estimated_completion.as_deref())) } }
                }
            }
            (approval_block(view, extras, viewer))
            div.job-outcome hidden[view.status != JobStatus::Complete] {
                @if view.status == JobStatus::Complete {
                    p.outcome-ok {
                        @if view.phases.iter().any(|phase| phase.name == "dry_run") {
                            "Dry run complete: nothing was created. The log lists what would be."
                        } @else if view.kind == "provision" {
                            "Tenant " a href={ "/platform/tenants/" (query_escape(&view.tenant_slug)) } { (view.tenant_slug) } " is ready."
                        } @else {
                            "Done."
                        }
                    }
                }
            }
            div.job-failure role="alert" hidden[!stopped] {
                @if stopped {
                    h3 {
                        @if failed {
                            "Failed"
                            @if let Some(phase) = failed_phase(view) { " at " code { (phase) } }
                        } @else {
                            "Cancelled"
                        }
                    }
                    (failure_details(view.error_code.as_deref(), view.error_message.as_deref()))
                    @if view.status == JobStatus::RolledBack {
                        p.muted { "Everything the job had applied was undone." }
                    }
                    @if failed && viewer.can_operate() {
                        div.job-actions {
                            form method="post" action={ (job_path(&view.job_id)) "/retry" } data-job-action="retry" {
                                (viewer.csrf_field())
                                button.primary type="submit" { "Retry" }
                            }
                            @if view.status == JobStatus::Failed {
                                form method="post" action={ (job_path(&view.job_id)) "/rollback" } data-job-action="rollback" {
                                    (viewer.csrf_field())
                                    button.danger type="submit" { "Roll back" }
                                }
                            }
                        }
                    }
                }
            }
            ol.timeline aria-label="Phases" {
                @for phase in &view.phases {
                    li class={ "phase phase-" (phase.status.as_str()) @if Some(phase.name.as_str()) == stopped_at { " failed-here" } } {
                        span.phase-dot aria-hidden="true" {}
                        span.phase-name { (phase.name) }
                        span.phase-status { (phase.status.as_str()) }
                        span.phase-duration {
                            @if let Some(millis) = phase_duration(phase.started_at.as_deref(), phase.finished_at.as_deref()) {
                                (duration(millis))
                            }
                        }
                    }
                }
            }
            (checks_block(extras))
            h3.log-title { "Log" }
            ol.job-log aria-label="Log" {
                @for line in &view.logs {
                    li class={ "log-line level-" (line.level) } {
                        time datetime=(line.at) title=(line.at) { (clock(&line.at)) }
                        span.log-phase { (line.phase.as_deref().unwrap_or("")) }
                        span.log-message { (line.message) }
                    }
                }
                @if view.logs.is_empty() { li.log-empty { "No log lines yet." } }
            }
        }
    }
}

/// `13:04:05.123` from an RFC 3339 time.
fn clock(rfc3339: &str) -> &str {
    rfc3339
        .split_once('T')
        .map(|(_, time)| time.trim_end_matches('Z'))
        .unwrap_or(rfc3339)
}

/// `GET /platform/jobs/{job_id}` for a browser.
pub async fn job_page(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(job_id): Path<String>,
) -> Result<Response, PageError> {
    let viewer = Viewer::new(&principal);
    // One read of the job serves both the API's view and what only the page shows.
    let registry = &state.platform.registry;
    let record = api_jobs::require_job(registry, &job_id)
        .await
        .or_page(&viewer)?;
    let view = api_jobs::job_view(registry, &record)
        .await
        .or_page(&viewer)?;
    let extras = JobExtras::of(&record);
    let names = actor_names(&state.platform.registry, [view.actor.as_str()]).await;
    let short_id = short_id(&view.job_id);
    let title = format!("Job {short_id}");
    let body = html! {
        (page_header(
            html! { "Job " code { (short_id) } },
            Some(html! {
                (view.kind) " · tenant "
                a href={ "/platform/tenants/" (query_escape(&view.tenant_slug)) } { (view.tenant_slug) }
            }),
            html! { a.button href="/platform/jobs" { "All jobs" } },
        ))
        div.panel { (job_live(&view, &extras, &viewer)) }
        dl.details {
            div { dt { "Job id" } dd { code { (view.job_id) } } }
            div { dt { "Kind" } dd { (view.kind) } }
            div { dt { "Server" } dd { (view.placed_server.as_deref().unwrap_or("—")) } }
            div { dt { "Requested by" } dd { (actor(&names, &view.actor)) } }
            div { dt { "Created" } dd { (time_ago_rfc3339(Some(&view.created_at))) } }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        shell(Some(&viewer), Section::Jobs, &title, body),
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct JobListQuery {
    tenant: Option<String>,
    status: Option<String>,
}

/// `GET /platform/jobs` for a browser: newest first, filtered by tenant and status.
pub async fn jobs_page(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<JobListQuery>,
) -> Result<Response, PageError> {
    let viewer = Viewer::new(&principal);
    let tenant = query.tenant.filter(|tenant| !tenant.trim().is_empty());
    let status = query.status.filter(|status| !status.is_empty());
    let filtered = tenant.is_some() || status.is_some();
    let axum::Json(jobs) = api_jobs::list_jobs(
        State(state.clone()),
        ApiQuery(JobQuery {
            tenant: tenant.clone(),
            status: status.clone(),
            limit: Some(200),
        }),
    )
    .await
    .or_page(&viewer)?;
    let names = actor_names(
        &state.platform.registry,
        jobs.iter().map(|job| job.actor.as_str()),
    )
    .await;
    // The charts read the registry, not this process's metrics, so every replica draws the same ones.
    let since = now_millis() - DAY_MILLIS;
    let registry = &state.platform.registry;
    let times = charts::plan_times(
        &registry
            .completed_job_durations(JobKind::Provision, since)
            .await
            .or_page(&viewer)?,
    );
    let failures = registry
        .failure_counts_since(JobKind::Provision, since)
        .await
        .or_page(&viewer)?;
    let mut status_options = vec![(String::new(), "Any status".to_owned(), false)];
    status_options.extend(JobStatus::ALL.iter().map(|status| {
        (
            status.as_str().to_owned(),
            status.as_str().replace('_', " "),
            false,
        )
    }));
    let body = html! {
        (page_header(html! { "Jobs" }, Some(html! { "Every provisioning and offboarding job, newest first." }), html! {}))
        section.job-charts aria-label="The last day" {
            (charts::provisioning_times_chart(&times))
            (charts::failures_chart(&failures))
        }
        form.filters method="get" action="/platform/jobs" {
            (Field::text("tenant", "Tenant", tenant.as_deref().unwrap_or("")).render())
            (select_field("status", "Status", &status_options, status.as_deref().unwrap_or(""), None))
            div.filter-actions {
                button type="submit" { "Filter" }
                @if filtered { a href="/platform/jobs" { "Clear" } }
            }
        }
        @if jobs.is_empty() {
            @if filtered {
                (empty_state("No jobs match these filters.", html! { a href="/platform/jobs" { "Clear the filters" } " to see every job." }))
            } @else {
                (empty_state("No jobs yet.", html! {
                    "Jobs appear here when someone provisions or offboards a tenant. "
                    @if viewer.is_admin() { a href="/platform/tenants/new" { "Provision a tenant" } "." }
                }))
            }
        } @else {
            div.table-wrap {
                table {
                    thead { tr {
                        th { "Job" } th { "Kind" } th { "Tenant" } th { "Status" }
                        th.wide-only { "Phase" } th.wide-only { "Progress" } th.wide-only { "By" } th { "Created" }
                    } }
                    tbody {
                        @for job in &jobs {
                            tr {
                                td { a href=(job_path(&job.job_id)) { code { (short_id(&job.job_id)) } } }
                                td { (job.kind) }
                                td { a href={ "/platform/tenants/" (query_escape(&job.tenant_slug)) } { (job.tenant_slug) } }
                                td { (pill(job.status.as_str())) }
                                td.wide-only { @if let Some(name) = &job.phase_name { code { (name) } } }
                                td.num.wide-only { (job.progress_percentage) "%" }
                                td.wide-only.muted.actor { (actor(&names, &job.actor)) }
                                td { (time_ago_rfc3339(Some(&job.created_at))) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        shell(Some(&viewer), Section::Jobs, "Jobs", body),
    ))
}

/// The jobs of one tenant, for its detail page.
pub fn jobs_table(jobs: &[JobView]) -> Markup {
    html! {
        div.table-wrap {
            table {
                thead { tr { th { "Job" } th.wide-only { "Kind" } th { "Status" } th { "Progress" } th { "Created" } } }
                tbody {
                    @for job in jobs {
                        tr {
                            td { a href=(job_path(&job.job_id)) { code { (short_id(&job.job_id)) } } }
                            td.wide-only { (job.kind) }
                            td { (pill(job.status.as_str())) }
                            td.num { (job.progress_percentage) "%" }
                            td { (time_ago_rfc3339(Some(&job.created_at))) }
                        }
                    }
                }
            }
        }
    }
}

async fn reopen_from_form(
    state: ServerState,
    principal: Principal,
    job_id: String,
    rollback: bool,
) -> Result<Response, PageError> {
    let viewer = Viewer::new(&principal);
    let reopened = if rollback {
        api_jobs::rollback_job(State(state), Extension(principal), Path(job_id.clone())).await
    } else {
        api_jobs::retry_job(State(state), Extension(principal), Path(job_id.clone())).await
    };
    let _accepted = reopened.or_page(&viewer)?;
    Ok(see_other(&job_path(&job_id)))
}

/// `POST /platform/jobs/{job_id}/retry` from a plain form: reopen, then back to the job page.
pub async fn retry_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(job_id): Path<String>,
) -> Response {
    reopen_from_form(state, principal, job_id, false)
        .await
        .into_response()
}

/// `POST /platform/jobs/{job_id}/rollback` from a plain form.
pub async fn rollback_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(job_id): Path<String>,
) -> Response {
    reopen_from_form(state, principal, job_id, true)
        .await
        .into_response()
}

/// The approval form's fields (the CSRF token is checked before the handler runs).
#[derive(Debug, Default, Deserialize)]
pub struct DecisionFields {
    #[serde(default)]
    reason: String,
}

async fn decide_from_form(
    state: ServerState,
    principal: Principal,
    job_id: String,
    approve: bool,
    reason: String,
) -> Result<Response, PageError> {
    let viewer = Viewer::new(&principal);
    let _decided = api_jobs::decide(&state, &principal, &job_id, approve, &reason)
        .await
        .or_page(&viewer)?;
    // Back to the job: approved, its timeline follows the run live from there; rejected, it says why it stopped.
    Ok(see_other(&job_path(&job_id)))
}

/// `POST /platform/jobs/{job_id}/approve` from the approval form.
pub async fn approve_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(job_id): Path<String>,
    ApiForm(fields): ApiForm<DecisionFields>,
) -> Response {
    decide_from_form(state, principal, job_id, true, fields.reason)
        .await
        .into_response()
}

/// `POST /platform/jobs/{job_id}/reject` from the approval form's Reject button.
pub async fn reject_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(job_id): Path<String>,
    ApiForm(fields): ApiForm<DecisionFields>,
) -> Response {
    decide_from_form(state, principal, job_id, false, fields.reason)
        .await
        .into_response()
}

/// A finished job's (or rollout's) error for people: its code with what it means, its message, and what to do.
pub(crate) fn failure_details(code: Option<&str>, message: Option<&str>) -> Markup {
    let code = code.map(ErrorCode::parse);
    html! {
        @match &code {
            Some(Ok(code)) => {
                p.failure-code { code.error-code { (code.as_str()) } " — " (code.meaning()) }
            }
            Some(Err(unknown)) => {
                p.failure-code { code.error-code { (unknown.code) } " — " "an error code this version of tenantry does not know" }
            }
            None => {}
        }
        @if let Some(message) = message { p.failure-message { (message) } }
        @if let Some(Ok(code)) = code {
            p.failure-remedy { strong { "What to do: " } (code.remedy()) }
        }
    }
}
