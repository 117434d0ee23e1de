//! Plans and money: the configured plans with their monthly estimate, moving a tenant to another plan, and the
//! monthly chargeback per tenant, plan, region and cost center.

use super::{checked_budget, ApiJson, ApiQuery, JobAccepted};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ProblemDetails};
use crate::state::ServerState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use serde::{Deserialize, Serialize};
use tenantry_core::Slug;
use tenantry_workflows::{
    cost_report, monthly_estimate, submit_set_plan, CostReport, SetPlanRequest,
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PlanQuery {
    /// Price the plans in this region (default: the default region).
    pub region: Option<String>,
}

/// A plan as offered: its blueprint and what it costs per month in the asked region.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlanOffer {
    /// The plan: engine, quotas, modules, feature flags, price and approval rule.
    #[schema(value_type = Object)]
    pub plan: tenantry_core::Plan,
    pub region: String,
    pub monthly_estimate: f64,
    pub currency: String,
    /// Whether a request without a budget waits for approval (the estimate reaches the threshold, or the plan
    /// always needs approval).
    pub needs_approval_by_default: bool,
    pub auto_approve_threshold: u64,
}

/// The plans a tenant can be given, each priced in `region`.
pub fn plan_offers(state: &ServerState, region: &str) -> Vec<PlanOffer> {
    let settings = &state.platform.settings;
    settings
        .plans
        .iter()
        .map(|plan| {
            let estimate = monthly_estimate(&settings.pricing, plan, region);
            PlanOffer {
                plan: plan.clone(),
                region: region.to_owned(),
                monthly_estimate: estimate,
                currency: settings.pricing.currency.clone(),
                needs_approval_by_default: plan.approval_required
                    || estimate >= settings.approvals.auto_approve_threshold as f64,
                auto_approve_threshold: settings.approvals.auto_approve_threshold,
            }
        })
        .collect()
}

/// List the plans with their monthly estimate in a region.
#[utoipa::path(get, path = "/platform/plans", tag = "plans", params(PlanQuery),
    responses((status = 200, body = Vec<PlanOffer>),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Unknown region", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_plans(
    State(state): State<ServerState>,
    ApiQuery(query): ApiQuery<PlanQuery>,
) -> ApiResult<axum::Json<Vec<PlanOffer>>> {
    let settings = &state.platform.settings;
    let region = query
        .region
        .unwrap_or_else(|| settings.default_region.clone());
    if !settings.regions.contains(&region) {
        return Err(tenantry_core::Error::invalid_input(format!(
            "region {region:?} does not exist; known regions: {}",
            settings.regions.join(", ")
        ))
        .into());
    }
    Ok(axum::Json(plan_offers(&state, &region)))
}

/// What `POST /platform/tenants/{slug}/plan` takes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPlanBody {
    pub plan: String,
    /// Monthly budget for the new plan (see `POST /platform/tenants`).
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_u64)]
    pub budget: Option<u64>,
}

/// Move a tenant to another plan: quotas, settings and labels, then the validation suite.
#[utoipa::path(post, path = "/platform/tenants/{slug}/plan", tag = "tenants", params(("slug" = String, Path, pattern = "^[a-z][a-z0-9-]{2,39}$")),
    request_body = SetPlanBody,
    responses((status = 202, body = JobAccepted),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Not active, already on the plan, or a job holds the slug", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid slug or unknown plan", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn set_plan(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<SetPlanBody>,
) -> ApiResult<(StatusCode, axum::Json<JobAccepted>)> {
    let request = SetPlanRequest {
        slug: Slug::parse(&slug)?,
        plan: body.plan,
        previous_plan: String::new(),
        budget: checked_budget(body.budget)?,
        reconcile: false,
        kind: None,
        modules: Default::default(),
        previous_modules_off: Vec::new(),
        resource_tier: None,
        previous_resource_tier: Default::default(),
    };
    let submitted = submit_set_plan(&state.platform, &request, &principal.actor()).await?;
    state.wake_workers.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(JobAccepted::of(submitted.job())),
    ))
}

/// Monthly chargeback of every billable tenant, with totals per plan, region and cost center.
#[utoipa::path(get, path = "/platform/costs", tag = "plans",
    responses((status = 200, body = CostReport),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn costs(State(state): State<ServerState>) -> ApiResult<axum::Json<CostReport>> {
    Ok(axum::Json(
        cost_report(&state.platform).await.map_err(ApiError::from)?,
    ))
}

/// What `POST /platform/tenants/{slug}/reconcile` takes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileBody {
    /// Only this kind of resource (`database`, `cache`, `queue`, …); every kind when absent.
    #[schema(pattern = "^[a-z][a-z0-9_]{0,39}$")]
    pub kind: Option<String>,
}

/// Converge a tenant on its plan: every resource missing or changed by hand is ensured again, audited
/// `TENANT_RECONCILED`.
#[utoipa::path(post, path = "/platform/tenants/{slug}/reconcile", tag = "tenants", params(("slug" = String, Path, pattern = "^[a-z][a-z0-9-]{2,39}$")),
    request_body = ReconcileBody,
    responses((status = 202, body = JobAccepted),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Not active, or a job holds the slug", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid slug or unknown kind", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn reconcile(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<ReconcileBody>,
) -> ApiResult<(StatusCode, axum::Json<JobAccepted>)> {
    let slug = Slug::parse(&slug)?;
    let tenant = state
        .platform
        .registry
        .get_tenant(slug.as_str())
        .await?
        .ok_or_else(|| {
            tenantry_core::Error::new(
                tenantry_core::ErrorCode::NotFound,
                format!("tenant {:?} is not registered", slug.as_str()),
            )
        })?;
    let request = SetPlanRequest {
        slug,
        plan: tenant.plan,
        previous_plan: String::new(),
        budget: None,
        reconcile: true,
        kind: body.kind,
        modules: Default::default(),
        previous_modules_off: Vec::new(),
        resource_tier: None,
        previous_resource_tier: Default::default(),
    };
    let submitted = submit_set_plan(&state.platform, &request, &principal.actor()).await?;
    state.wake_workers.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(JobAccepted::of(submitted.job())),
    ))
}
