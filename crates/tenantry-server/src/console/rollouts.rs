//! Rollout pages: the list of fleet migrations, and one rollout live (its waves with their bars, the counts per
//! status, the failed tenants with Retry, and Pause / Resume / Abort for admins), plus the browser side of those
//! buttons.

use super::audit::{actor, actor_names};
use super::errors::{OrPage, PageError};
use super::jobs::error_help_json;
use super::layout::{
    empty_state, html_response, page_header, pill, query_escape, see_other, shell, short_id,
    time_ago, Section, Viewer,
};
use crate::api::rollouts::{self as api_rollouts};
use crate::auth::Principal;
use crate::state::ServerState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use tenantry_core::JobStatus;
use tenantry_registry::{WaveCounts, CHILD_FAILED, CHILD_STATUSES, ROLLOUT_ABORTED};
use tenantry_workflows::{RolloutControl, RolloutView};

/// How many rollouts the list shows.
const LIST_LIMIT: i64 = 100;
/// How many failed tenants a rollout's page lists (the script asks for as many).
const FAILED_SHOWN: i64 = 100;

fn rollout_path(rollout_id: &str) -> String {
    format!("/platform/rollouts/{}", query_escape(rollout_id))
}

/// `Canary` for wave 0, `Wave 3` for the others.
fn wave_name(wave: i64) -> String {
    if wave == 0 {
        "Canary".to_owned()
    } else {
        format!("Wave {wave}")
    }
}

/// A wave's counts in words: `3/10 settled · 2 applied · 1 failed · 7 pending` (a count of 0 is left out,
/// but for applied). The script writes the same text.
fn wave_counts_text(wave: &WaveCounts) -> String {
    let mut text = format!(
        "{}/{} settled · {} applied",
        wave.settled(),
        wave.total(),
        wave.applied
    );
    for (count, word) in [
        (wave.skipped, "skipped"),
        (wave.failed, "failed"),
        (wave.running, "running"),
        (wave.pending, "pending"),
    ] {
        if count > 0 {
            text.push_str(&format!(" · {count} {word}"));
        }
    }
    text
}

/// Settled and total tenants over every wave.
fn settled_of(view: &RolloutView) -> (i64, i64) {
    view.waves.iter().fold((0, 0), |(settled, total), wave| {
        (settled + wave.settled(), total + wave.total())
    })
}

fn percent(settled: i64, total: i64) -> i64 {
    if total == 0 {
        0
    } else {
        settled * 100 / total
    }
}

/// What an admin may do to a rollout now. The script applies the same rules (`rolloutActions`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Actions {
    pause: bool,
    resume: bool,
    /// Resume a stopped rollout: its failed tenants are tried again.
    retry: bool,
    abort: bool,
}

fn actions(status: JobStatus, control: &str) -> Actions {
    // Before the rollout lists its tenants there is nothing to steer; after it ends or is aborted, nothing more.
    let over = control.is_empty()
        || control == ROLLOUT_ABORTED
        || matches!(
            status,
            JobStatus::Complete | JobStatus::Cancelled | JobStatus::RolledBack
        );
    if over {
        return Actions::default();
    }
    Actions {
        pause: control == tenantry_registry::ROLLOUT_RUN
            && matches!(status, JobStatus::Pending | JobStatus::InProgress),
        resume: control == tenantry_registry::ROLLOUT_PAUSED && status != JobStatus::Failed,
        retry: status == JobStatus::Failed,
        abort: true,
    }
}

/// A button's form: `key` names it for the script (`pause`, `resume`, `retry`, `abort`), `path` is where it
/// posts (Retry posts to `resume`).
struct ControlButton<'a> {
    key: &'a str,
    path: &'a str,
    label: &'a str,
    class: Option<&'a str>,
    shown: bool,
}

fn control_form(viewer: &Viewer, rollout_id: &str, button: ControlButton<'_>) -> Markup {
    html! {
        form method="post" action={ (rollout_path(rollout_id)) "/" (button.path) } data-rollout-action=(button.key)
            hidden[!button.shown] {
            (viewer.csrf_field())
            button class=[button.class] type="submit" { (button.label) }
        }
    }
}

fn wave_item(wave: &WaveCounts) -> Markup {
    let name = wave_name(wave.wave);
    html! {
        li.wave data-wave=(wave.wave) {
            span.wave-name { (name) }
            progress max=(wave.total().max(1)) value=(wave.settled()) aria-label={ (name) " progress" } {
                (wave.settled()) "/" (wave.total())
            }
            span.wave-counts { (wave_counts_text(wave)) }
        }
    }
}

fn failed_row(child: &tenantry_registry::RolloutChild) -> Markup {
    html! {
        tr {
            td { a href={ "/platform/tenants/" (query_escape(&child.tenant_slug)) } { (child.tenant_slug) } }
            td { (wave_name(child.wave)) }
            td.details-cell { (child.error.as_deref().unwrap_or("")) }
            td.num { (child.attempts) }
        }
    }
}

/// The live rollout: status and control, overall bar, counts per status, one bar per wave, the outcome or the
/// failure with what to do, the admin's buttons, and the failed tenants with Retry. `console.js` patches the
/// same structure from `GET /platform/rollouts/{rollout_id}` (JSON) on every event of the rollout's job.
fn rollout_live(view: &RolloutView, viewer: &Viewer) -> Markup {
    let status = view.status.as_str();
    let (settled, total) = settled_of(view);
    let allowed = actions(view.status, &view.control);
    let n_failed = view.counts.get(CHILD_FAILED).copied().unwrap_or(0);
    let stopped = matches!(view.status, JobStatus::Failed | JobStatus::RolledBack)
        || (view.status == JobStatus::Cancelled && view.error_code.is_some());
    let is_admin = viewer.is_admin();
    html! {
        section.rollout-live data-rollout-id=(view.id) data-status=(status) data-control=(view.control)
            data-can-control=(is_admin) data-failed-shown=(FAILED_SHOWN) data-error-help=(error_help_json()) {
            div.job-head {
                span.rollout-status { (pill(status)) }
                span.rollout-control {
                    @if !view.control.is_empty() { "control " (pill(&view.control)) }
                }
            }
            div.job-progress {
                progress.rollout-progress max=(total.max(1)) value=(settled) aria-label="Tenants settled" {
                    (settled) "/" (total)
                }
                span.job-percent.rollout-percent { (percent(settled, total)) "%" }
            }
            dl.rollout-counts {
                @for child_status in CHILD_STATUSES {
                    div {
                        dt { (child_status) }
                        dd data-count=(child_status) { (view.counts.get(child_status).copied().unwrap_or(0)) }
                    }
                }
            }
            h3 { "Waves" }
            ol.waves aria-label="Waves" {
                @for wave in &view.waves { (wave_item(wave)) }
                @if view.waves.is_empty() { li.waves-empty.muted { "The rollout has not listed its tenants yet." } }
            }
            div.job-outcome hidden[view.status != JobStatus::Complete] {
                @if view.status == JobStatus::Complete {
                    p.outcome-ok { "Complete: every tenant to migrate is at version " (view.target_version) "." }
                }
            }
            div.job-failure role="alert" hidden[!stopped] {
                @if stopped {
                    h3 { @if view.status == JobStatus::Cancelled { "Aborted" } @else { "Stopped" } }
                    (super::jobs::failure_details(view.error_code.as_deref(), view.error_message.as_deref()))
                }
            }
            @if is_admin {
                div.job-actions.rollout-actions {
                    (control_form(viewer, &view.id, ControlButton {
                        key: "pause", path: "pause", label: "Pause", class: None, shown: allowed.pause,
                    }))
                    (control_form(viewer, &view.id, ControlButton {
                        key: "resume", path: "resume", label: "Resume", class: Some("primary"), shown: allowed.resume,
                    }))
                    (control_form(viewer, &view.id, ControlButton {
                        key: "abort", path: "abort", label: "Abort", class: Some("danger"), shown: allowed.abort,
                    }))
                }
            }
            div.rollout-failed hidden[n_failed == 0] {
                h3 { "Failed tenants " span.muted.failed-count { (n_failed) } }
                div.table-wrap {
                    table.failed-tenants {
                        thead { tr { th { "Tenant" } th { "Wave" } th { "Error" } th.num { "Attempts" } } }
                        tbody {
                            @for child in &view.tenants { (failed_row(child)) }
                        }
                    }
                }
                p.muted.failed-more hidden[n_failed <= FAILED_SHOWN] {
                    "The first " (FAILED_SHOWN) " are shown; "
                    code { "GET " (rollout_path(&view.id)) "?status=failed" } " pages through all of them."
                }
                @if is_admin {
                    (control_form(viewer, &view.id, ControlButton {
                        key: "retry", path: "resume", label: "Retry failed tenants", class: Some("primary"),
                        shown: allowed.retry,
                    }))
                }
            }
        }
    }
}

/// `GET /platform/rollouts/{rollout_id}` for a browser.
pub async fn rollout_page(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(rollout_id): Path<String>,
) -> Result<Response, PageError> {
    let viewer = Viewer::new(&principal);
    let view = api_rollouts::read_rollout(
        &state,
        &rollout_id,
        Some(CHILD_FAILED),
        Some(FAILED_SHOWN),
        None,
    )
    .await
    .or_page(&viewer)?;
    let names = actor_names(&state.platform.registry, [view.actor.as_str()]).await;
    let short_id = short_id(&view.id);
    let title = format!("Rollout {short_id}");
    let body = html! {
        (page_header(
            html! { "Rollout " code { (short_id) } },
            Some(html! {
                "Fleet migration"
                @if view.target_version > 0 { " to version " (view.target_version) }
            }),
            html! { a.button href="/platform/rollouts" { "All rollouts" } },
        ))
        div.panel { (rollout_live(&view, &viewer)) }
        dl.details {
            div { dt { "Rollout id" } dd { code { (view.id) } } }
            div { dt { "Concurrency" } dd { (view.concurrency) } }
            div { dt { "Per server" } dd { (view.per_server) } }
            div { dt { "Max failures" } dd { (view.max_failures) } }
            div { dt { "Requested by" } dd { (actor(&names, &view.actor)) } }
            div { dt { "Created" } dd { (time_ago(view.created_at)) } }
            div { dt { "Finished" } dd data-rollout-finished {
                @match view.finished_at { Some(at) => (time_ago(at)), None => span.muted { "—" } }
            } }
            div { dt { "Phases and log" } dd {
                a href={ "/platform/jobs/" (query_escape(&view.id)) } { "The rollout's job" }
            } }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        shell(Some(&viewer), Section::Rollouts, &title, body),
    ))
}

/// `GET /platform/rollouts` for a browser: the newest rollouts with their progress.
pub async fn rollouts_page(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, PageError> {
    let viewer = Viewer::new(&principal);
    let rollouts = tenantry_workflows::list_rollouts(&state.platform, LIST_LIMIT)
        .await
        .or_page(&viewer)?;
    let names = actor_names(
        &state.platform.registry,
        rollouts.iter().map(|rollout| rollout.actor.as_str()),
    )
    .await;
    let body = html! {
        (page_header(
            html! { "Rollouts" },
            Some(html! { "Fleet migrations: the tenant schema's new migrations, wave by wave. Newest first." }),
            html! {},
        ))
        @if rollouts.is_empty() {
            (empty_state("No rollouts yet.", html! {
                "An admin starts one from a shell with " code { "tenantry migrate apply" } " or with "
                code { "POST /platform/rollouts" } "; " code { "tenantry migrate plan" } " shows what it would migrate."
            }))
        } @else {
            div.table-wrap {
                table.rollouts {
                    thead { tr {
                        th { "Rollout" } th { "Status" } th.wide-only { "Control" } th { "Target" }
                        th { "Progress" } th.num { "Applied" } th.num { "Failed" } th.wide-only { "By" } th { "Created" }
                    } }
                    tbody {
                        @for rollout in &rollouts {
                            @let (settled, total) = settled_of(rollout);
                            tr {
                                td { a href=(rollout_path(&rollout.id)) { code { (short_id(&rollout.id)) } } }
                                td { (pill(rollout.status.as_str())) }
                                td.wide-only { @if !rollout.control.is_empty() { (pill(&rollout.control)) } }
                                td.num { (rollout.target_version) }
                                td {
                                    div.capacity {
                                        progress max=(total.max(1)) value=(settled) aria-label="Tenants settled" {
                                            (settled) "/" (total)
                                        }
                                        span.capacity-text { (settled) "/" (total) }
                                    }
                                }
                                td.num { (rollout.counts.get("applied").copied().unwrap_or(0)) }
                                td.num { (rollout.counts.get(CHILD_FAILED).copied().unwrap_or(0)) }
                                td.wide-only.muted.actor { (actor(&names, &rollout.actor)) }
                                td { (time_ago(rollout.created_at)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        shell(Some(&viewer), Section::Rollouts, "Rollouts", body),
    ))
}

async fn control_from_form(
    state: ServerState,
    principal: Principal,
    rollout_id: String,
    action: RolloutControl,
) -> Response {
    let viewer = Viewer::new(&principal);
    match api_rollouts::control(&state, &principal, &rollout_id, action).await {
        // Back to the rollout, which follows the run live from there.
        Ok(()) => see_other(&rollout_path(&rollout_id)),
        Err(error) => PageError::new(&viewer, error).into_response(),
    }
}

/// `POST /platform/rollouts/{rollout_id}/pause` from the rollout page's form.
pub async fn pause_rollout_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(rollout_id): Path<String>,
) -> Response {
    control_from_form(state, principal, rollout_id, RolloutControl::Pause).await
}

/// `POST /platform/rollouts/{rollout_id}/resume` from the rollout page's Resume or Retry form.
pub async fn resume_rollout_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(rollout_id): Path<String>,
) -> Response {
    control_from_form(state, principal, rollout_id, RolloutControl::Resume).await
}

/// `POST /platform/rollouts/{rollout_id}/abort` from the rollout page's form.
pub async fn abort_rollout_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(rollout_id): Path<String>,
) -> Response {
    control_from_form(state, principal, rollout_id, RolloutControl::Abort).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buttons_follow_the_rollouts_state() {
        let running = actions(JobStatus::InProgress, "run");
        assert!(running.pause && running.abort && !running.resume && !running.retry);
        let paused = actions(JobStatus::InProgress, "paused");
        assert!(paused.resume && paused.abort && !paused.pause && !paused.retry);
        let stopped = actions(JobStatus::Failed, "run");
        assert!(stopped.retry && stopped.abort && !stopped.pause && !stopped.resume);
        for (status, control) in [
            (JobStatus::Complete, "run"),
            (JobStatus::Cancelled, "aborted"),
            (JobStatus::InProgress, "aborted"),
            (JobStatus::Pending, ""),
        ] {
            assert_eq!(
                actions(status, control),
                Actions::default(),
                "{status} {control:?}"
            );
        }
    }

    #[test]
    fn wave_counts_read_at_a_glance() {
        let wave = WaveCounts {
            wave: 1,
            pending: 7,
            running: 0,
            applied: 2,
            skipped: 0,
            failed: 1,
        };
        assert_eq!(
            wave_counts_text(&wave),
            "3/10 settled · 2 applied · 1 failed · 7 pending"
        );
        assert_eq!(wave_name(0), "Canary");
        assert_eq!(wave_name(2), "Wave 2");
    }
}
