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
use crate::error::ApiError;
use crate::state::ServerState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::BTreeMap;
use tenantry_core::{ErrorCode, PlatformRole, TenantStatus};
use tenantry_registry::{ChangeRequestRecord, TenantRecord, CHANGE_PENDING};
use tenantry_workflows::ChangeRequestInput;

/// How many of a tenant's requests its page lists.
const TENANT_PAGE_REQUESTS: i64 = 20;
/// How many requests the change requests page lists.
const PAGE_REQUESTS: i64 = 200;
/// A module select's field names start with this; the rest is the module's name.
const MODULE_FIELD_PREFIX: &str = "module_";

/// What the "Request a change" form holds: empty on the tenant page, the values sent and the error at its field
/// when the form comes back refused.
#[derive(Debug, Default)]
struct RequestForm {
    plan: String,
    /// Module name → the choice sent: "" (keep), "on" or "off".
    modules: BTreeMap<String, String>,
    reason: String,
    /// The field the refusal is about (`plan`, `module_ml`, `reason`, or `form` for the whole request), and it.
    error: Option<(String, String)>,
}

impl RequestForm {
    fn error(&self, field: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|(name, _)| name == field)
            .map(|(_, message)| message.as_str())
    }
}

/// The form field a refusal of a change request is about, from the workflow's message: a module it names, the
/// reason, the plan, or the request as a whole.
fn field_for(code: ErrorCode, message: &str) -> String {
    let named_module = tenantry_core::Modules::default()
        .entries()
        .into_iter()
        .map(|(name, _)| name)
        .find(|name| message.contains(&format!("module {name:?}")));
    match (code, named_module) {
        (ErrorCode::InvalidInput, Some(module)) => format!("{MODULE_FIELD_PREFIX}{module}"),
        (ErrorCode::InvalidInput, None) if message.contains("reason") => "reason".into(),
        (ErrorCode::InvalidInput, None) if message.starts_with("a change request asks") => {
            "form".into()
        }
        (ErrorCode::InvalidInput, None) if message.contains("plan") => "plan".into(),
        (ErrorCode::Conflict, None) if message.contains("already on plan") => "plan".into(),
        _ => "form".into(),
    }
}

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
        @if may_file { (request_form(state, viewer, tenant, &RequestForm::default())) }
        @if requests.is_empty() {
            (empty_state("No change requests.", html! {
                @if may_file { "Ask for another plan or other modules with the form above; a platform admin decides." }
                @else { "A tenant admin asks for another plan or other modules here; a platform admin decides." }
            }))
        } @else {
            (requests_table(viewer, &requests, false, None))
        }
    }
}

/// The "Request a change" form: a plan (or keep the current one), each module kept, on or off, and a reason;
/// `form` holds what was sent and the error at its field when it comes back refused.
fn request_form(
    state: &ServerState,
    viewer: &Viewer,
    tenant: &TenantRecord,
    form: &RequestForm,
) -> Markup {
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
        error: form.error("reason"),
        ..Field::text("reason", "Reason", &form.reason)
    };
    html! {
        form.panel.change-request-form method="post" action={ "/platform/tenants/" (query_escape(&tenant.slug)) "/change-requests" } {
            h3 { "Request a change" }
            @if let Some(error) = form.error("form") { p.form-error role="alert" { (error) } }
            (viewer.csrf_field())
            (select_field("plan", "Plan (resource tier)", &plans, &form.plan, form.error("plan")))
            fieldset.modules {
                legend { "Modules" }
                @for (name, _) in tenantry_core::Modules::default().entries() {
                    @let field = format!("{MODULE_FIELD_PREFIX}{name}");
                    @let chosen = form.modules.get(name).map_or("", String::as_str);
                    (select_field(&field, name, &module_choices(name), chosen, form.error(&field)))
                }
            }
            (reason.render())
            button.primary type="submit" { "Request the change" }
        }
    }
}

/// A decision refused for bad input (no reason to reject): shown at the reason field of that request's row.
struct DecisionError<'a> {
    change_request_id: &'a str,
    reason: &'a str,
    message: &'a str,
}

/// The requests as a table; `with_tenant` adds the tenant's column (the page of every tenant's requests).
fn requests_table(
    viewer: &Viewer,
    requests: &[ChangeRequestRecord],
    with_tenant: bool,
    decision_error: Option<&DecisionError>,
) -> Markup {
    html! {
        div.table-wrap {
            table.change-requests {
                thead { tr {
                    @if with_tenant { th { "Tenant" } }
                    th { "Change" } th { "Reason" } th { "Status" } th { "Filed" } th { "Decision" }
                } }
                tbody {
                    @for request in requests {
                        @let error = decision_error.filter(|error| error.change_request_id == request.id);
                        tr data-change-request=(request.id) {
                            @if with_tenant {
                                td { a href={ "/platform/tenants/" (query_escape(&request.tenant_slug)) } { (request.tenant_slug) } }
                            }
                            td { (change_summary(request)) }
                            td { (request.reason) }
                            td { (pill(&request.status)) }
                            td { (time_ago(request.created_at)) }
                            td { (decision_cell(viewer, request, error)) }
                        }
                    }
                }
            }
        }
    }
}

fn decision_cell(
    viewer: &Viewer,
    request: &ChangeRequestRecord,
    error: Option<&DecisionError>,
) -> Markup {
    let path = format!("/platform/change-requests/{}", query_escape(&request.id));
    // One decision form per pending row: the field's id names the request, so each label finds its own input.
    let field_id = format!("decision-reason-{}", request.id);
    html! {
        @if request.status == CHANGE_PENDING {
            @if viewer.can_decide(&request.requested_by) {
                // One form, two answers: Reject posts the same reason to its own path.
                form.approval-form method="post" action={ (path) "/approve" } {
                    (viewer.csrf_field())
                    (Field {
                        hint: Some("Required to reject."),
                        autocomplete: Some("off"),
                        id: Some(&field_id),
                        error: error.map(|error| error.message),
                        ..Field::text("reason", "Reason", error.map_or("", |error| error.reason))
                    }.render())
                    button.primary type="submit" { "Approve" }
                    " "
                    button.danger type="submit" formaction={ (path) "/reject" } { "Reject" }
                }
            } @else if viewer.actor == request.requested_by && viewer.is_admin() {
                // The four-eyes rule: the workflow refuses the requester's own decision, so the page does not offer it.
                span.muted.own-request { "You filed this request, so another platform admin approves or rejects it." }
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
    render_change_requests(
        &state,
        &principal,
        &viewer,
        query.status.as_deref(),
        None,
        StatusCode::OK,
    )
    .await
}

/// The change requests page, with a refused decision's error at its row's reason field.
async fn render_change_requests(
    state: &ServerState,
    principal: &Principal,
    viewer: &Viewer,
    status_filter: Option<&str>,
    decision_error: Option<&DecisionError<'_>>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let tenant = principal
        .is_tenant_scoped()
        .then(|| principal.tenant_slug.clone().unwrap_or_default());
    let mut requests = state
        .platform
        .registry
        .list_change_requests(tenant.as_deref(), status_filter, PAGE_REQUESTS)
        .await
        .or_page(viewer)?;
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
            (requests_table(viewer, &requests, true, decision_error))
        }
    };
    Ok(html_response(
        status,
        shell(
            Some(viewer),
            Section::ChangeRequests,
            "Change requests",
            body,
        ),
    ))
}

/// `POST /platform/tenants/{slug}/change-requests` from the tenant page's form: file it and go back to the page,
/// or show the form again with what was sent and the error at its field.
pub async fn change_request_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
    ApiForm(fields): ApiForm<BTreeMap<String, String>>,
) -> Response {
    let viewer = Viewer::new(&principal);
    let mut form = RequestForm {
        plan: fields.get("plan").cloned().unwrap_or_default(),
        reason: fields.get("reason").cloned().unwrap_or_default(),
        ..RequestForm::default()
    };
    let mut modules = BTreeMap::new();
    for (field, value) in &fields {
        let Some(module) = field.strip_prefix(MODULE_FIELD_PREFIX) else {
            continue;
        };
        form.modules.insert(module.to_owned(), value.clone());
        match value.as_str() {
            "" => {}
            "on" => {
                modules.insert(module.to_owned(), true);
            }
            "off" => {
                modules.insert(module.to_owned(), false);
            }
            other => {
                form.error.get_or_insert_with(|| {
                    (
                        field.clone(),
                        format!(
                            "{}: module {module:?}: choose keep, on or off, not {other:?}",
                            ErrorCode::InvalidInput
                        ),
                    )
                });
            }
        }
    }
    let status = if form.error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        let input = ChangeRequestInput {
            plan: Some(form.plan.clone()).filter(|plan| !plan.is_empty()),
            modules,
            reason: form.reason.clone(),
            ..ChangeRequestInput::default()
        };
        match api::file(&state, &principal, &slug, &input).await {
            Ok(_) => return see_other(&format!("/platform/tenants/{}", query_escape(&slug))),
            // Not theirs, gone, or a server fault: an error page, as for any page.
            Err(error)
                if !matches!(
                    error.error.code,
                    ErrorCode::InvalidInput | ErrorCode::Conflict
                ) =>
            {
                return PageError::new(&viewer, error).into_response()
            }
            Err(error) => {
                let field = field_for(error.error.code, &error.error.message);
                form.error = Some((
                    field,
                    format!("{}: {}", error.error.code, error.error.message),
                ));
                error.status
            }
        }
    };
    render_request_form(&state, &viewer, &slug, &form, status)
        .await
        .into_response()
}

/// The "Request a change" form on a page of its own, when it comes back refused.
async fn render_request_form(
    state: &ServerState,
    viewer: &Viewer,
    slug: &str,
    form: &RequestForm,
    status: StatusCode,
) -> Result<Response, PageError> {
    let tenant = state
        .platform
        .registry
        .get_tenant(slug)
        .await
        .or_page(viewer)?
        .ok_or_else(|| PageError::new(viewer, ApiError::not_found(format!("tenant {slug:?}"))))?;
    let tenant_path = format!("/platform/tenants/{}", query_escape(slug));
    let body = html! {
        (page_header(
            html! { (slug) },
            Some(html! { (tenant.display_name) }),
            html! { a.button href=(tenant_path) { "Back to the tenant" } },
        ))
        (request_form(state, viewer, &tenant, form))
    };
    Ok(html_response(
        status,
        shell(Some(viewer), Section::Tenants, slug, body),
    ))
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
    match api::decide(&state, &principal, &id, approve, &reason).await {
        // Approved: the set-plan job's page follows the change live. Rejected: back to the list.
        Ok(decided) => Ok(match &decided.job_id {
            Some(job_id) => see_other(&format!("/platform/jobs/{}", query_escape(job_id))),
            None => see_other("/platform/change-requests"),
        }),
        // Bad input (no reason to reject): the list again, with the error at that request's reason field.
        Err(error) if error.error.code == ErrorCode::InvalidInput => {
            let message = format!("{}: {}", error.error.code, error.error.message);
            let decision_error = DecisionError {
                change_request_id: &id,
                reason: &reason,
                message: &message,
            };
            render_change_requests(
                &state,
                &principal,
                &viewer,
                None,
                Some(&decision_error),
                error.status,
            )
            .await
        }
        // The requester's own request (403, saying why), decided already, or an unfinished job: an error page.
        Err(error) => Err(PageError::new(&viewer, error)),
    }
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
