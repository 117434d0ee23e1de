//! Health, readiness, metrics, the OpenAPI document, the audit log, and who the caller is.

use super::{page_limit, ApiQuery};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ProblemDetails};
use crate::state::ServerState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::{Deserialize, Serialize};
use tenantry_registry::{AuditEvent, AuditFilter};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the registry answers.
#[utoipa::path(get, path = "/readyz", tag = "system", responses(
    (status = 200, body = String, content_type = "text/plain"),
    (status = 503, body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn readyz(State(state): State<ServerState>) -> ApiResult<&'static str> {
    state.platform.registry.ping().await.map_err(|error| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            tenantry_core::ErrorCode::ProvisioningUnavailable,
            format!("the registry is unreachable: {error}"),
        )
    })?;
    Ok("ready")
}

/// Prometheus metrics. Anyone gets the platform's own series (jobs, phases, queue, live streams), which name no
/// customer; the per-tenant series (`tenantry_tenant_info`, `tenantry_tenant_monthly_cost`: slug, plan, cost
/// center, cost) come only with a platform role's credentials.
#[utoipa::path(get, path = "/metrics", tag = "system", responses(
    (status = 200, body = String, content_type = "text/plain"),
    (status = 503, body = ProblemDetails, content_type = "application/problem+json")),
    security((), ("bearer" = [])))]
pub async fn metrics(
    State(state): State<ServerState>,
    principal: Option<Extension<Principal>>,
) -> ApiResult<Response> {
    // A tenant admin's credentials are not a platform role's: every tenant's series are not theirs to read.
    let platform_role = principal.is_some_and(|Extension(principal)| !principal.is_tenant_scoped());
    let scope = if platform_role {
        crate::metrics::Scope::WithTenants
    } else {
        crate::metrics::Scope::Public
    };
    let text = crate::metrics::render(&state.metrics, &state.platform.registry, scope).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// The OpenAPI 3.1 description of this API, with the configured plans and regions as enums.
#[utoipa::path(get, path = "/platform/openapi.json", tag = "system", responses((status = 200, body = Object)))]
pub async fn openapi(State(state): State<ServerState>) -> axum::Json<serde_json::Value> {
    let settings = &state.platform.settings;
    axum::Json(crate::openapi::document_for(
        settings.plans.iter().map(|plan| plan.name.as_str()),
        settings.regions.iter().map(String::as_str),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub tenant: Option<String>,
    pub event_type: Option<String>,
    pub actor: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since: Option<i64>,
    /// Unix milliseconds, inclusive.
    pub until: Option<i64>,
    pub limit: Option<i64>,
}

/// The audit log, newest first, filtered.
#[utoipa::path(get, path = "/platform/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Vec<AuditEvent>),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_audit(
    State(state): State<ServerState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<axum::Json<Vec<AuditEvent>>> {
    let events = state
        .platform
        .registry
        .list_audit(&AuditFilter {
            tenant_slug: query.tenant,
            event_type: query.event_type,
            actor: query.actor,
            since_millis: query.since,
            until_millis: query.until,
            limit: page_limit(query.limit),
        })
        .await?;
    Ok(axum::Json(events))
}

/// Who the caller is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    pub user_id: String,
    pub email: String,
    pub role: String,
    /// The one tenant a `TENANT_ADMIN` is scoped to; absent for the platform roles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_slug: Option<String>,
}

/// The authenticated caller.
#[utoipa::path(get, path = "/platform/me", tag = "system",
    responses((status = 200, body = Me), (status = 401, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn me(Extension(principal): Extension<Principal>) -> axum::Json<Me> {
    axum::Json(Me {
        user_id: principal.user_id,
        email: principal.email,
        role: principal.role.as_str().to_owned(),
        tenant_slug: principal.tenant_slug,
    })
}
