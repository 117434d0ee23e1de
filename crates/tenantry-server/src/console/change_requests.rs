//! Change requests in the console: the tenant page's "Request a change" form and its list of requests (a tenant
//! admin's home), the pending requests page with Approve and Reject for platform admins, and the browser side of
//! filing and deciding. Plain forms: all of it works without JavaScript.

use super::errors::{OrPage, PageError};
use super::layout::{
    empty_state, html_response, page_header, pill, query_escape, see_other, select_field, shell,
    time_ago, Field, Section, Viewer,
};
use crate::api::change_requests as api;
use crate::api::ApiForm;
use crate::auth::Principal;
use crate::state::ServerState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::BTreeMap;
use tenantry_core::{PlatformRole, TenantStatus};
use tenantry_registry::{ChangeRequestRecord, TenantRecord, CHANGE_PENDING};
use tenantry_workflows::ChangeRequestInput;

/// How many of a tenant's requests its page lists.
const TENANT_PAGE_REQUESTS: i64 = 20;
/// How many requests the change requests page lists.
const PAGE_REQUESTS: i64 = 200;
/// A module select's field names start with this; the rest is the module's name.
const MODULE_FIELD_PREFIX: &str = "module_";

/// What a change request asks for, in words: "plan → enterprise; ml on, bi off".
pub fn change_summary(request: &ChangeRequestRecord) -> String {
    let mut parts = Vec::new();
    if let Some(plan) = &request.plan {
        parts.push(format!("plan → {plan}"));
    }
    let switches: Vec<String> = request
        .modules
        .iter()
        .map(|(name, on)| format!("{name} {}", if *on { "on" } else { "off" }))
        .collect();
    if !switches.is_empty() {
        parts.push(switches.join(", "));
    }
    parts.join("; ")
}

/// The tenant page's change requests: the form (for a tenant admin of an active tenant), then the tenant's
/// requests with their decisions, and Approve / Reject for an admin who did not file the pending one.
pub async fn tenant_panel(state: &ServerState, viewer: &Viewer, tenant: &TenantRecord) -> Markup {
    let requests = state
        .platform
        .registry
        .list_change_requests(Some(&tenant.slug), None, TENANT_PAGE_REQUESTS)
        .await
        .unwrap_or_default();
    let may_file =
        viewer.role == PlatformRole::TenantAdmin && tenant.status == TenantStatus::Active;
    if requests.is_empty() && viewer.role != PlatformRole::TenantAdmin {
        // A platform admin's tenant page shows requests when there are some; they change a plan directly.
        return html! {};
    }
    html! {
        h2 { "Change requests" }
        @if may_file { (request_form(state, viewer, tenant)) }
        @if requests.is_empty() {
            (empty_state("No change requests.", html! {
                @if may_file { "Ask for another plan or other modules with the form above; a platform admin decides." }
                @else { "A tenant admin asks for another plan or other modules here; a platform admin decides." }
            }))
        } @else {
            (requests_table(viewer, &requests, false))
        }
    }
}

/// The "Request a change" form: a plan (or keep the current one), each module kept, on or off, and a reason.
fn request_form(state: &ServerState, viewer: &Viewer, tenant: &TenantRecord) -> Markup {
    let mut plans = vec![(String::new(), format!("Keep {}", tenant.plan), false)];
    plans.extend(
        state
            .platform
            .settings
            .plans
            .iter()
            .filter(|plan| plan.name != tenant.plan)
            .map(|plan| (plan.name.clone(), plan.name.clone(), false)),
    );
    let module_choices = |name: &str| -> Vec<(String, String, bool)> {
        let now = tenant
            .settings
            .get("modules")
            .and_then(|modules| modules.get(name))
            .and_then(serde_json::Value::as_bool)
            .map_or("", |on| if on { " (on now)" } else { " (off now)" });
        vec![
            (String::new(), format!("Keep{now}"), false),
            ("on".into(), "On".into(), false),
            ("off".into(), "Off".into(), false),
        ]
    };
    let reason = Field {
        hint: Some("Required. The platform admin who decides reads it."),
        autocomplete: Some("off"),
        required: true,
        ..Field::text("reason", "Reason", "")
    };
    html! {
        form.panel.change-request-form method="post" action={ "/platform/tenants/" (query_escape(&tenant.slug)) "/change-requests" } {
            h3 { "Request a change" }
            (viewer.csrf_field())
            (select_field("plan", "Plan (resource tier)", &plans, "", None))
            fieldset.modules {
                legend { "Modules" }
                @for (name, _) in tenantry_core::Modules::default().entries() {
                    @let field = format!("{MODULE_FIELD_PREFIX}{name}");
                    (select_field(&field, name, &module_choices(name), "", None))
                }
            }
            (reason.render())
            button.primary type="submit" { "Request the change" }
        }
    }
}

/// The requests as a table; `with_tenant` adds the tenant's column (the page of every tenant's requests).
fn requests_table(viewer: &Viewer, requests: &[ChangeRequestRecord], with_tenant: bool) -> Markup {
    html! {
        div.table-wrap {
            table.change-requests {
                thead { tr {
                    @if with_tenant { th { "Tenant" } }
                    th { "Change" } th { "Reason" } th { "Status" } th { "Filed" } th { "Decision" }
                } }
                tbody {
                    @for request in requests {
                        tr data-change-request=(request.id) {
                            @if with_tenant {
                                td { a href={ "/platform/tenants/" (query_escape(&request.tenant_slug)) } { (request.tenant_slug) } }
                            }
                            td { (change_summary(request)) }
                            td { (request.reason) }
                            td { (pill(&request.status)) }
                            td { (time_ago(request.created_at)) }
                            td { (decision_cell(viewer, request)) }
                        }
                    }
                }
            }
        }
    }
}

fn decision_cell(viewer: &Viewer, request: &ChangeRequestRecord) -> Markup {
    let path = format!("/platform/change-requests/{}", query_escape(&request.id));
    html! {
        @if request.status == CHANGE_PENDING {
            @if viewer.can_decide(&request.requested_by) {
                // One form, two answers: Reject posts the same reason to its own path.
                form.approval-form method="post" action={ (path) "/approve" } {
                    (viewer.csrf_field())
                    (Field { hint: Some("Required to reject."), autocomplete: Some("off"), ..Field::text("reason", "Reason", "") }.render())
                    button.primary type="submit" { "Approve" }
                    " "
                    button.danger type="submit" formaction={ (path) "/reject" } { "Reject" }
                }
            } @else if viewer.actor == request.requested_by {
                span.muted { "Waiting for a platform admin." }
            } @else {
                span.muted { "A platform admin other than the requester decides." }
            }
        } @else {
            @if let Some(reason) = request.decision_reason.as_deref().filter(|reason| !reason.is_empty()) {
                span { (reason) }
                " "
            }
            @if let Some(job_id) = &request.job_id {
                a href={ "/platform/jobs/" (query_escape(job_id)) } { "the job" }
            }
        }
    }
}

/// `GET /platform/change-requests` for browsers: pending first, then the rest, newest first.
#[derive(Debug, Default, Deserialize)]
pub struct ChangeRequestsPageQuery {
    status: Option<String>,
}

pub async fn change_requests_page(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ChangeRequestsPageQuery>,
) -> Result<Response, PageError> {
    let viewer = Viewer::new(&principal);
    let tenant = principal
        .is_tenant_scoped()
        .then(|| principal.tenant_slug.clone().unwrap_or_default());
    let mut requests = state
        .platform
        .registry
        .list_change_requests(tenant.as_deref(), query.status.as_deref(), PAGE_REQUESTS)
        .await
        .or_page(&viewer)?;
    // Pending first: what waits for a decision is what this page is for.
    requests.sort_by_key(|request| request.status != CHANGE_PENDING);
    let pending = requests
        .iter()
        .filter(|request| request.status == CHANGE_PENDING)
        .count();
    let body = html! {
        (page_header(html! { "Change requests" }, Some(html! { (pending) " pending" }), html! {}))
        @if requests.is_empty() {
            (empty_state("No change requests yet.", html! {
                "A tenant admin files one from their tenant's page; platform admins approve or reject them here."
            }))
        } @else {
            (requests_table(&viewer, &requests, true))
        }
    };
    Ok(html_response(
        StatusCode::OK,
        shell(
            Some(&viewer),
            Section::ChangeRequests,
            "Change requests",
            body,
        ),
    ))
}

/// `POST /platform/tenants/{slug}/change-requests` from the tenant page's form: file it, then back to the page.
pub async fn change_request_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
    ApiForm(fields): ApiForm<BTreeMap<String, String>>,
) -> Response {
    let viewer = Viewer::new(&principal);
    let mut modules = BTreeMap::new();
    for (field, value) in &fields {
        let Some(module) = field.strip_prefix(MODULE_FIELD_PREFIX) else {
            continue;
        };
        match value.as_str() {
            "" => {}
            "on" => {
                modules.insert(module.to_owned(), true);
            }
            "off" => {
                modules.insert(module.to_owned(), false);
            }
            other => {
                return PageError::new(
                    &viewer,
                    tenantry_core::Error::invalid_input(format!(
                        "module {module:?}: choose keep, on or off, not {other:?}"
                    )),
                )
                .into_response()
            }
        }
    }
    let input = ChangeRequestInput {
        plan: fields.get("plan").cloned().filter(|plan| !plan.is_empty()),
        modules,
        reason: fields.get("reason").cloned().unwrap_or_default(),
        ..ChangeRequestInput::default()
    };
    match api::file(&state, &principal, &slug, &input).await {
        Ok(_) => see_other(&format!("/platform/tenants/{}", query_escape(&slug))),
        Err(error) => PageError::new(&viewer, error).into_response(),
    }
}

/// The decision form's field.
#[derive(Debug, Default, Deserialize)]
pub struct DecisionFields {
    #[serde(default)]
    reason: String,
}

async fn decide_from_form(
    state: ServerState,
    principal: Principal,
    id: String,
    approve: bool,
    reason: String,
) -> Result<Response, PageError> {
    let viewer = Viewer::new(&principal);
    let decided = api::decide(&state, &principal, &id, approve, &reason)
        .await
        .or_page(&viewer)?;
    // Approved: the set-plan job's page follows the change live. Rejected: back to the list.
    Ok(match &decided.job_id {
        Some(job_id) => see_other(&format!("/platform/jobs/{}", query_escape(job_id))),
        None => see_other("/platform/change-requests"),
    })
}

/// `POST /platform/change-requests/{change_request_id}/approve` from a decision form.
pub async fn approve_change_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiForm(fields): ApiForm<DecisionFields>,
) -> Response {
    decide_from_form(state, principal, id, true, fields.reason)
        .await
        .into_response()
}

/// `POST /platform/change-requests/{change_request_id}/reject` from a decision form's Reject button.
pub async fn reject_change_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiForm(fields): ApiForm<DecisionFields>,
) -> Response {
    decide_from_form(state, principal, id, false, fields.reason)
        .await
        .into_response()
}
