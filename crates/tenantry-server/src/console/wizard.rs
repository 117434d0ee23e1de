//! The provisioning wizard at `/platform/tenants/new`: 1 Tenant details (with the plan and an optional budget),
//! 2 Infrastructure, 3 Review (the plan's monthly estimate in the region, its quotas, modules and flags, and
//! whether the request will wait for approval), then Provision. Every field of every step is in one form, and
//! only the current step shows:
//! - without JavaScript, Next/Back/Provision post the form here, and the server checks the step and answers with
//!   the next one (or the same one with errors at their fields), and Provision answers 303 to the job's page;
//! - with JavaScript, `console.js` moves between the steps itself, checks the slug rule as you type, posts JSON
//!   to `POST /platform/tenants`, and opens the progress drawer. It fills the Review from the plans embedded in
//!   the form (`data-plans`), by the same rules as `plan_review` here.
//!
//! Either way the server stays the authority: its errors come back to the field they concern.

use super::errors::{OrPage, PageError};
use super::jobs::error_help_json;
use super::layout::{
    html_response, limit_millis, money, page_header, query_escape, see_other, select_field, shell,
    Field, Section, Viewer,
};
use super::negotiate::prefers_html;
use crate::api::plans::plan_offers;
use crate::api::tenants::get_tenant;
use crate::api::ApiForm;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::ServerState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::BTreeMap;
use tenantry_core::{
    AdminEmail, DisplayName, Error as CodedError, ErrorCode, Plan, RawTenantSpec, ServerStatus,
    Slug, SpecDefaults, TenantSpec,
};
use tenantry_providers::credentials::random_token;
use tenantry_registry::{now_millis, ServerRecord};
use tenantry_workflows::{
    approval_needed, monthly_estimate, submit_provision, IdempotencyRequest, Settings, Submitted,
};

/// The wizard's steps: number, title.
const STEPS: [(u8, &str); 3] = [(1, "Tenant details"), (2, "Infrastructure"), (3, "Review")];

/// The form as posted (and as rendered back).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct WizardForm {
    #[serde(default)]
    step: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    slug: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    admin_email: String,
    #[serde(default)]
    plan: String,
    /// Whole currency units per month; empty when the operator gives none.
    #[serde(default)]
    budget: String,
    #[serde(default)]
    region: String,
    /// Empty for auto-placement.
    #[serde(default)]
    server: String,
    dry_run: Option<String>,
    #[serde(default)]
    idempotency_key: String,
}

impl WizardForm {
    fn step(&self) -> u8 {
        self.step.parse().unwrap_or(1).clamp(1, 3)
    }

    fn dry_run(&self) -> bool {
        self.dry_run.as_deref() == Some("true")
    }

    /// The budget, or `None` when left empty. Messages start with "budget" so they land on its field.
    fn budget(&self) -> Result<Option<u64>, CodedError> {
        let budget = self.budget.trim();
        if budget.is_empty() {
            return Ok(None);
        }
        let parsed = budget.parse::<u64>().map_err(|_| {
            CodedError::invalid_input(format!(
                "budget {budget:?} is not a whole number of at least 0; leave it empty to let the plan's estimate count"
            ))
        })?;
        crate::api::checked_budget(Some(parsed))
    }
}

/// Errors by field name (`form` for those no field owns).
type FieldErrors = Vec<(&'static str, String)>;

fn error_for<'e>(errors: &'e FieldErrors, field: &str) -> Option<&'e str> {
    errors
        .iter()
        .find(|(name, _)| *name == field)
        .map(|(_, message)| message.as_str())
}

/// The step a field lives on.
fn step_of(field: &str) -> u8 {
    match field {
        "slug" | "display_name" | "admin_email" | "plan" | "budget" => 1,
        "region" | "server" => 2,
        _ => 3,
    }
}

/// Which field a server error concerns (the same table `console.js` uses for JSON answers).
pub fn field_for_error(code: ErrorCode, message: &str) -> &'static str {
    match code {
        ErrorCode::InvalidSlug
        | ErrorCode::AlreadyProvisioned
        | ErrorCode::PartialState
        | ErrorCode::Conflict => "slug",
        ErrorCode::DbServerNotFound | ErrorCode::NoCapacity => "server",
        ErrorCode::InvalidInput => {
            let message = message.to_ascii_lowercase();
            if message.starts_with("display name") {
                "display_name"
            } else if message.starts_with("admin email") || message.contains("email") {
                "admin_email"
            } else if message.starts_with("budget") {
                "budget"
            } else if message.starts_with("plan") {
                "plan"
            } else if message.starts_with("region") {
                "region"
            } else if message.starts_with("server") {
                "server"
            } else if message.contains("slug") {
                "slug"
            } else {
                "form"
            }
        }
        _ => "form",
    }
}

fn coded_message(error: &CodedError) -> String {
    format!("{} ({})", error.message, error.code)
}

/// Checks the fields of one step as the server would; returns the errors by field.
fn check_step(
    state: &ServerState,
    servers: &[ServerRecord],
    form: &WizardForm,
    step: u8,
) -> FieldErrors {
    let settings = &state.platform.settings;
    let mut errors = FieldErrors::new();
    if step == 1 {
        if let Err(error) = Slug::parse(form.slug.trim()) {
            errors.push(("slug", coded_message(&error)));
        }
        if let Err(error) = DisplayName::parse(&form.display_name) {
            errors.push(("display_name", coded_message(&error)));
        }
        if let Err(error) = AdminEmail::parse(form.admin_email.trim()) {
            errors.push(("admin_email", coded_message(&error)));
        }
        if settings.plan(&form.plan).is_none() {
            errors.push(("plan", format!("plan {:?} does not exist", form.plan)));
        }
        if let Err(error) = form.budget() {
            errors.push(("budget", coded_message(&error)));
        }
    }
    if step == 2 {
        if !settings.regions.contains(&form.region) {
            errors.push(("region", format!("region {:?} does not exist", form.region)));
        }
        if !form.server.is_empty() {
            match servers.iter().find(|server| server.name == form.server) {
                None => errors.push((
                    "server",
                    format!(
                        "server {:?} is not in the fleet; pick another or auto-place",
                        form.server
                    ),
                )),
                Some(server) if server.status != ServerStatus::Active => errors.push((
                    "server",
                    format!(
                        "server {} is {}; it takes no new tenants",
                        server.name, server.status
                    ),
                )),
                Some(_) => {}
            }
        }
    }
    errors
}

fn plan_options(state: &ServerState) -> Vec<(String, String, bool)> {
    state
        .platform
        .settings
        .plans
        .iter()
        .map(|plan| {
            let engine = plan
                .engine
                .map(|engine| format!(", {engine}"))
                .unwrap_or_default();
            let text = format!(
                "{} — {}; {} connections, {} s statement timeout{engine}",
                plan.name,
                plan.resources.join(" + "),
                plan.connection_limit,
                plan.statement_timeout_ms / 1000
            );
            (plan.name.clone(), text, false)
        })
        .collect()
}

fn server_options(servers: &[ServerRecord]) -> Vec<(String, String, bool)> {
    let mut options = vec![(String::new(), "Default (auto-place)".to_owned(), false)];
    for server in servers {
        let availability = if server.status == ServerStatus::Active {
            format!("{} free", server.free_room())
        } else {
            format!("{}, takes no new tenants", server.status)
        };
        options.push((
            server.name.clone(),
            format!(
                "{} — {}, {}, {availability}",
                server.name, server.engine, server.region
            ),
            server.status != ServerStatus::Active,
        ));
    }
    options
}

/// What the Review says about the plan in the chosen region: the texts `console.js` writes into the same
/// `data-review` cells, built by the same rules (keep `planReview` there in step).
#[derive(Debug, Clone)]
struct PlanReview {
    estimate: String,
    /// The kinds of resource the plan gives (`database + cache + queue`).
    resources: String,
    quotas: String,
    modules: String,
    flags: String,
    budget: String,
    /// Why the request will wait for approval, or `None` when it will run at once.
    approval_reason: Option<String>,
}

fn joined_or_none(names: Vec<&str>) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn plan_review(
    settings: &Settings,
    plan: &Plan,
    region: &str,
    budget: Option<u64>,
    dry_run: bool,
) -> PlanReview {
    let currency = settings.pricing.currency.as_str();
    let threshold = settings.approvals.auto_approve_threshold;
    let estimate = monthly_estimate(&settings.pricing, plan, region);
    // The submit path's own rule decides; the words below only say which part of it applies. A dry run creates
    // nothing, so it never waits.
    let waits = !dry_run && approval_needed(settings, plan, region, budget, now_millis()).is_some();
    let approval_reason = waits.then(|| {
        if plan.approval_required {
            format!("plan {} always needs approval.", plan.name)
        } else if let Some(budget) = budget {
            format!("the budget of {budget} {currency} reaches the auto-approve threshold of {threshold} {currency}.")
        } else {
            format!(
                "the plan's estimate of {} reaches the auto-approve threshold of {threshold} {currency}.",
                money(estimate, currency)
            )
        }
    });
    PlanReview {
        estimate: format!("{} per month in {region}", money(estimate, currency)),
        resources: plan.resources.join(" + "),
        quotas: format!(
            "{} connections · {} statement timeout · {} queries / min · {} query SLA",
            plan.connection_limit,
            limit_millis(plan.statement_timeout_ms),
            plan.rate_limit_qpm,
            limit_millis(plan.query_sla_ms)
        ),
        modules: joined_or_none(
            plan.modules
                .entries()
                .into_iter()
                .filter(|(_, on)| *on)
                .map(|(name, _)| name)
                .collect(),
        ),
        flags: joined_or_none(
            plan.feature_flags
                .iter()
                .filter(|(_, on)| **on)
                .map(|(name, _)| name.as_str())
                .collect(),
        ),
        budget: match budget {
            Some(budget) => format!("{budget} {currency} per month"),
            None => "none: the plan's estimate counts".to_owned(),
        },
        approval_reason,
    }
}

/// Every plan with its quotas, switches and estimate in every region, plus the threshold: what `console.js` needs
/// to fill the Review without asking the server.
fn plans_json(state: &ServerState) -> String {
    let settings = &state.platform.settings;
    // Priced as `GET /platform/plans` prices them, one region at a time.
    let mut estimates: BTreeMap<String, serde_json::Map<String, serde_json::Value>> =
        BTreeMap::new();
    for region in &settings.regions {
        for offer in plan_offers(state, region) {
            estimates
                .entry(offer.plan.name)
                .or_default()
                .insert(region.clone(), serde_json::json!(offer.monthly_estimate));
        }
    }
    let plans: serde_json::Map<String, serde_json::Value> = settings
        .plans
        .iter()
        .map(|plan| {
            let switched_on = |switches: Vec<(&str, bool)>| {
                switches
                    .into_iter()
                    .filter(|(_, on)| *on)
                    .map(|(name, _)| name.to_owned())
                    .collect::<Vec<_>>()
            };
            let flags = plan
                .feature_flags
                .iter()
                .map(|(name, on)| (name.as_str(), *on))
                .collect();
            let description = serde_json::json!({
                "resources": plan.resources,
                "connection_limit": plan.connection_limit,
                "statement_timeout_ms": plan.statement_timeout_ms,
                "rate_limit_qpm": plan.rate_limit_qpm,
                "query_sla_ms": plan.query_sla_ms,
                "modules": switched_on(plan.modules.entries().to_vec()),
                "flags": switched_on(flags),
                "approval_required": plan.approval_required,
                "estimates": estimates.remove(&plan.name).unwrap_or_default(),
            });
            (plan.name.clone(), description)
        })
        .collect();
    serde_json::json!({
        "currency": settings.pricing.currency,
        "threshold": settings.approvals.auto_approve_threshold,
        "plans": plans,
    })
    .to_string()
}

fn review_row(label: &str, field: &str, value: &str) -> Markup {
    html! {
        div { dt { (label) } dd data-review=(field) { (value) } }
    }
}

fn wizard_page(
    state: &ServerState,
    viewer: &Viewer,
    servers: &[ServerRecord],
    form: &WizardForm,
    step: u8,
    errors: &FieldErrors,
) -> Markup {
    let slug_field = Field {
        hint: Some("Lowercase letters, digits and hyphens; 3 to 40 characters; starts with a letter. Becomes the database name."),
        error: error_for(errors, "slug"),
        autocomplete: Some("off"),
        required: true,
        ..Field::text("slug", "Slug", &form.slug)
    };
    let display_name_field = Field {
        hint: Some("3 to 100 characters, as the customer is known."),
        error: error_for(errors, "display_name"),
        autocomplete: Some("organization"),
        required: true,
        ..Field::text("display_name", "Display name", &form.display_name)
    };
    let email_field = Field {
        input_type: "email",
        hint: Some("Receives the invitation to sign in once the tenant is ready."),
        error: error_for(errors, "admin_email"),
        autocomplete: Some("email"),
        required: true,
        ..Field::text("admin_email", "First admin email", &form.admin_email)
    };
    let settings = &state.platform.settings;
    let currency = settings.pricing.currency.as_str();
    let budget_hint = format!(
        "Optional. Whole {currency} per month. At or above {} {currency} (or on a plan that always needs it) the request waits for another platform admin's approval; left empty, the plan's monthly estimate counts.",
        settings.approvals.auto_approve_threshold
    );
    let budget_field = Field {
        input_type: "number",
        hint: Some(&budget_hint),
        error: error_for(errors, "budget"),
        autocomplete: Some("off"),
        ..Field::text("budget", "Monthly budget", &form.budget)
    };
    // An unknown plan or a budget that does not parse has its error on step 1; the Review shows what it can.
    let review = settings.plan(&form.plan).map(|plan| {
        plan_review(
            settings,
            plan,
            &form.region,
            form.budget().ok().flatten(),
            form.dry_run(),
        )
    });
    let regions: Vec<(String, String, bool)> = state
        .platform
        .settings
        .regions
        .iter()
        .map(|region| (region.clone(), region.clone(), false))
        .collect();
    let server_label = if form.server.is_empty() {
        "Default (auto-place)"
    } else {
        form.server.as_str()
    };
    html! {
        (page_header(
            html! { "New tenant" },
            Some(html! { "A customer's own database, login role, credentials, schema and first admin, in under a second." }),
            html! { a.button href="/platform/tenants" { "Cancel" } },
        ))
        ol.steps aria-label="Steps" {
            @for (number, title) in STEPS {
                li data-step=(number) aria-current=[(number == step).then_some("step")] class=[(number < step).then_some("done")] {
                    span.step-number { (number) } span.step-title { (title) }
                }
            }
        }
        form #wizard.panel.wizard method="post" action="/platform/tenants/new" novalidate data-step=(step)
            data-plans=(plans_json(state)) {
            (viewer.csrf_field())
            input type="hidden" name="idempotency_key" value=(form.idempotency_key);
            input type="hidden" name="step" value=(step);
            p.form-error role="alert" hidden[error_for(errors, "form").is_none()] {
                @if let Some(error) = error_for(errors, "form") { (error) }
            }
            fieldset.wizard-step data-step="1" hidden[step != 1] {
                legend { "Tenant details" }
                (slug_field.render())
                (display_name_field.render())
                (email_field.render())
                (select_field("plan", "Plan", &plan_options(state), &form.plan, error_for(errors, "plan")))
                (budget_field.render())
            }
            fieldset.wizard-step data-step="2" hidden[step != 2] {
                legend { "Infrastructure" }
                (select_field("region", "Region", &regions, &form.region, error_for(errors, "region")))
                (select_field("server", "Target db server", &server_options(servers), &form.server, error_for(errors, "server")))
                p.hint { "Auto-placement picks the active server in the region with the most free room. Pick a server only for a reason, such as keeping two tenants together." }
            }
            fieldset.wizard-step data-step="3" hidden[step != 3] {
                legend { "Review" }
                dl.details.review {
                    (review_row("Slug", "slug", &form.slug))
                    (review_row("Display name", "display_name", &form.display_name))
                    (review_row("First admin email", "admin_email", &form.admin_email))
                    (review_row("Plan", "plan", &form.plan))
                    (review_row("Region", "region", &form.region))
                    (review_row("Target db server", "server", server_label))
                    (review_row("Monthly budget", "budget", review.as_ref().map_or("", |review| review.budget.as_str())))
                }
                h3.review-title { "What the plan gives" }
                dl.details.review.plan-review {
                    (review_row("Monthly estimate", "estimate", review.as_ref().map_or("", |review| review.estimate.as_str())))
                    (review_row("Resources", "resources", review.as_ref().map_or("", |review| review.resources.as_str())))
                    (review_row("Quotas", "quotas", review.as_ref().map_or("", |review| review.quotas.as_str())))
                    (review_row("Modules", "modules", review.as_ref().map_or("", |review| review.modules.as_str())))
                    (review_row("Feature flags", "flags", review.as_ref().map_or("", |review| review.flags.as_str())))
                }
                @let approval_reason = review.as_ref().and_then(|review| review.approval_reason.as_deref());
                div.approval-notice role="status" hidden[approval_reason.is_none()] {
                    strong { "This request will wait for approval: " }
                    span data-review="approval_reason" { (approval_reason.unwrap_or_default()) }
                    " Another platform admin (not you) must approve it before anything is created; until then its job waits in "
                    em { "awaiting approval" } "."
                }
                div.checkbox-field {
                    input #field-dry_run type="checkbox" name="dry_run" value="true" checked[form.dry_run()];
                    label for="field-dry_run" { "Dry run" }
                    p.hint { "Checks the slug and placement and stops: nothing is created, no secret is written." }
                }
            }
            // Next comes first, so Enter in a field moves forward and never provisions by accident.
            div.wizard-nav {
                button.primary type="submit" name="action" value="next" data-wizard="next" hidden[step == 3] { "Next" }
                button.primary type="submit" name="action" value="provision" data-wizard="provision" hidden[step != 3] { "Provision" }
                button type="submit" name="action" value="back" data-wizard="back" hidden[step == 1] { "Back" }
            }
        }
        aside #job-drawer.drawer aria-labelledby="drawer-title" hidden
            data-can-operate=(viewer.can_operate()) data-error-help=(error_help_json()) {
            div.drawer-header {
                h2 #drawer-title tabindex="-1" { "Provisioning" }
                button.drawer-close type="button" { "Close" }
            }
            div.drawer-body {}
            div.drawer-footer { a.drawer-job-link href="/platform/jobs" { "Open the job's page" } }
        }
    }
}

async fn render(
    state: &ServerState,
    viewer: &Viewer,
    form: &WizardForm,
    step: u8,
    errors: &FieldErrors,
    status: StatusCode,
) -> Result<Response, PageError> {
    let servers = state
        .platform
        .registry
        .list_servers()
        .await
        .or_page(viewer)?
        .into_iter()
        .filter(|server| server.engine.hosts_databases())
        .collect::<Vec<_>>();
    let markup = wizard_page(state, viewer, &servers, form, step, errors);
    Ok(html_response(
        status,
        shell(Some(viewer), Section::Tenants, "New tenant", markup),
    ))
}

/// `GET /platform/tenants/new`: step 1. A program asking for JSON here means the tenant whose slug is `new`.
pub async fn wizard_start(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    if !prefers_html(&headers) {
        return get_tenant(State(state), Path("new".to_owned()))
            .await
            .into_response();
    }
    let viewer = Viewer::new(&principal);
    let settings = &state.platform.settings;
    let form = WizardForm {
        plan: settings.default_plan.clone(),
        region: settings.default_region.clone(),
        idempotency_key: random_token(16).expose().to_owned(),
        ..WizardForm::default()
    };
    render(
        &state,
        &viewer,
        &form,
        1,
        &FieldErrors::new(),
        StatusCode::OK,
    )
    .await
    .into_response()
}

/// `POST /platform/tenants/new`: a step of the wizard without JavaScript, or the final Provision.
pub async fn wizard_step(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    ApiForm(mut form): ApiForm<WizardForm>,
) -> Response {
    let viewer = Viewer::new(&principal);
    form.slug = form.slug.trim().to_owned();
    form.admin_email = form.admin_email.trim().to_owned();
    if form.idempotency_key.is_empty() {
        form.idempotency_key = random_token(16).expose().to_owned();
    }
    let outcome = advance(&state, &principal, &viewer, &form).await;
    outcome.unwrap_or_else(IntoResponse::into_response)
}

async fn advance(
    state: &ServerState,
    principal: &Principal,
    viewer: &Viewer,
    form: &WizardForm,
) -> Result<Response, PageError> {
    let step = form.step();
    let servers = state
        .platform
        .registry
        .list_servers()
        .await
        .or_page(viewer)?
        .into_iter()
        .filter(|server| server.engine.hosts_databases())
        .collect::<Vec<_>>();
    let invalid = StatusCode::UNPROCESSABLE_ENTITY;
    match form.action.as_str() {
        "back" => {
            render(
                state,
                viewer,
                form,
                step.saturating_sub(1).max(1),
                &FieldErrors::new(),
                StatusCode::OK,
            )
            .await
        }
        "provision" => {
            let mut errors = check_step(state, &servers, form, 1);
            errors.extend(check_step(state, &servers, form, 2));
            if let Some(first) = errors.iter().map(|(field, _)| step_of(field)).min() {
                return render(state, viewer, form, first, &errors, invalid).await;
            }
            match provision(state, principal, form).await {
                Ok(job_id) => Ok(see_other(&format!(
                    "/platform/jobs/{}",
                    query_escape(&job_id)
                ))),
                // A 5xx says nothing internal on a page either: the error page logs it under a reference.
                Err(error) if error.status.is_server_error() => Err(PageError::new(viewer, error)),
                Err(error) => {
                    let field = field_for_error(error.error.code, &error.error.message);
                    let errors = vec![(field, coded_message(&error.error))];
                    render(state, viewer, form, step_of(field), &errors, error.status).await
                }
            }
        }
        _ => {
            let errors = check_step(state, &servers, form, step);
            if errors.is_empty() {
                render(
                    state,
                    viewer,
                    form,
                    (step + 1).min(3),
                    &errors,
                    StatusCode::OK,
                )
                .await
            } else {
                render(state, viewer, form, step, &errors, invalid).await
            }
        }
    }
}

/// Submits the job exactly as `POST /platform/tenants` does: the rate limit, the idempotency key, one submit.
async fn provision(
    state: &ServerState,
    principal: &Principal,
    form: &WizardForm,
) -> Result<String, ApiError> {
    if state.rate_limiter.check(&principal.scope()).is_err() {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            "too many provisioning requests; wait a minute",
        ));
    }
    // The form always carries a plan and a region (the defaults are filled in on the first step); an empty server
    // asks for auto-placement. `check_step` has already reported each bad field on its own.
    let spec = TenantSpec::parse(
        RawTenantSpec {
            slug: &form.slug,
            display_name: &form.display_name,
            admin_email: &form.admin_email,
            plan: Some(&form.plan),
            region: Some(&form.region),
            server: (!form.server.is_empty()).then_some(form.server.as_str()),
            budget: form.budget()?,
            dry_run: form.dry_run(),
        },
        SpecDefaults {
            plan: &state.platform.settings.default_plan,
            region: &state.platform.settings.default_region,
        },
    )?;
    let idempotency = (!form.idempotency_key.is_empty()).then(|| IdempotencyRequest {
        principal: principal.scope(),
        key: form.idempotency_key.clone(),
    });
    let submitted =
        submit_provision(&state.platform, &spec, &principal.actor(), idempotency).await?;
    if matches!(submitted, Submitted::New(_)) {
        state.wake_workers.notify_one();
    }
    Ok(submitted.job().id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_land_on_their_field() {
        assert_eq!(field_for_error(ErrorCode::InvalidSlug, ""), "slug");
        assert_eq!(field_for_error(ErrorCode::AlreadyProvisioned, ""), "slug");
        assert_eq!(field_for_error(ErrorCode::Conflict, ""), "slug");
        assert_eq!(field_for_error(ErrorCode::NoCapacity, ""), "server");
        assert_eq!(field_for_error(ErrorCode::DbServerNotFound, ""), "server");
        assert_eq!(
            field_for_error(
                ErrorCode::InvalidInput,
                "display name must have 3 to 100 characters; it has 1"
            ),
            "display_name"
        );
        assert_eq!(
            field_for_error(
                ErrorCode::InvalidInput,
                "admin email \"x\" is not a valid address"
            ),
            "admin_email"
        );
        assert_eq!(
            field_for_error(
                ErrorCode::InvalidInput,
                "plan \"gold\" does not exist; known plans: starter"
            ),
            "plan"
        );
        assert_eq!(
            field_for_error(
                ErrorCode::InvalidInput,
                "region \"mars\" does not exist; known regions: local"
            ),
            "region"
        );
        assert_eq!(
            field_for_error(
                ErrorCode::InvalidInput,
                "budget \"lots\" is not a whole number of at least 0"
            ),
            "budget"
        );
        assert_eq!(step_of("budget"), 1);
        assert_eq!(field_for_error(ErrorCode::RateLimited, ""), "form");
    }
}
