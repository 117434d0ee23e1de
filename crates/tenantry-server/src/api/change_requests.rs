//! Change requests: a tenant admin asks for another plan or other module switches for their tenant; a
//! PLATFORM_ADMIN other than the requester approves (the set-plan job starts) or rejects with a reason.
//! A tenant admin sees their tenant's requests alone (the policy's scope check and the list's filter).

use super::{page_limit, ApiBytes, ApiJson, ApiQuery};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ProblemDetails};
use crate::state::ServerState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use std::collections::BTreeMap;
use tenantry_registry::ChangeRequestRecord;
use tenantry_workflows::ChangeRequestInput;

/// What `POST /platform/tenants/{slug}/change-requests` takes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequestBody {
    /// Another plan (its resource tier, quotas and price).
    pub plan: Option<String>,
    /// Module switches: module name → on or off. A module can be on only where the plan has it.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub modules: BTreeMap<String, bool>,
    /// Another resource tier: `small`, `medium` or `large` (the plan's numbers halved, as written, doubled).
    pub resource_tier: Option<String>,
    /// Why, for whoever decides.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]*$"
    )]
    pub reason: String,
}

/// What `POST /platform/change-requests` takes: the same, with the tenant (a tenant admin's own when left out).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChangeRequestBody {
    #[schema(pattern = "^[a-z][a-z0-9-]{2,39}$")]
    pub tenant_slug: Option<String>,
    pub plan: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub modules: BTreeMap<String, bool>,
    /// Another resource tier: `small`, `medium` or `large`.
    pub resource_tier: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]*$"
    )]
    pub reason: String,
}

/// What `approve` and `reject` take: a reason (required to reject).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeDecisionBody {
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]*$")]
    pub reason: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequestQuery {
    /// Only this tenant's requests.
    pub tenant: Option<String>,
    /// `pending`, `approved` or `rejected`.
    pub status: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// Files a change request for `slug` as `principal`: a tenant admin for their tenant alone (another is 404).
pub async fn file(
    state: &ServerState,
    principal: &Principal,
    slug: &str,
    input: &ChangeRequestInput,
) -> ApiResult<ChangeRequestRecord> {
    if !principal.may_see_tenant(slug) {
        return Err(ApiError::not_found(format!("tenant {slug:?}")));
    }
    Ok(
        tenantry_workflows::file_change_request(&state.platform, slug, input, &principal.actor())
            .await?,
    )
}

/// Records a PLATFORM_ADMIN's decision; an approval wakes the workers for the set-plan job.
pub async fn decide(
    state: &ServerState,
    principal: &Principal,
    id: &str,
    approve: bool,
    reason: &str,
) -> ApiResult<ChangeRequestRecord> {
    let decided = tenantry_workflows::decide_change_request(
        &state.platform,
        id,
        &principal.actor(),
        approve,
        reason,
    )
    .await?;
    if approve {
        state.wake_workers.notify_one();
    }
    state.job_changed();
    Ok(decided)
}

/// A tenant admin's own tenant, or the one asked for.
fn tenant_filter(principal: &Principal, asked: Option<String>) -> ApiResult<Option<String>> {
    if !principal.is_tenant_scoped() {
        return Ok(asked);
    }
    let own = principal.tenant_slug.clone();
    match asked {
        Some(asked) if Some(&asked) != own.as_ref() => {
            Err(ApiError::not_found(format!("tenant {asked:?}")))
        }
        // A tenant admin without a tenant (it cannot be made so, but deny by default) sees nothing.
        _ => Ok(Some(own.unwrap_or_else(|| "-".into()))),
    }
}

/// Ask for a change to a tenant: another plan, module switches, or both. A PLATFORM_ADMIN other than the
/// requester decides.
#[utoipa::path(post, path = "/platform/tenants/{slug}/change-requests", tag = "change-requests", params(("slug" = String, Path, pattern = "^[a-z][a-z0-9-]{2,39}$")),
    request_body = ChangeRequestBody,
    responses((status = 201, body = ChangeRequestRecord),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant (or not the tenant admin's)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Not active, or nothing would change", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Unknown plan or module, a module the plan does not allow, no reason", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create_for_tenant(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<ChangeRequestBody>,
) -> ApiResult<(StatusCode, axum::Json<ChangeRequestRecord>)> {
    let input = ChangeRequestInput {
        plan: body.plan,
        modules: body.modules,
        resource_tier: body.resource_tier,
        reason: body.reason,
    };
    let record = file(&state, &principal, &slug, &input).await?;
    Ok((StatusCode::CREATED, axum::Json(record)))
}

/// Ask for a change, naming the tenant in the body (a tenant admin may leave it out: their own).
#[utoipa::path(post, path = "/platform/change-requests", tag = "change-requests",
    request_body = NewChangeRequestBody,
    responses((status = 201, body = ChangeRequestRecord),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant (or not the tenant admin's)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Not active, or nothing would change", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "No tenant named, an unknown plan or module, a module the plan does not allow, no reason", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<NewChangeRequestBody>,
) -> ApiResult<(StatusCode, axum::Json<ChangeRequestRecord>)> {
    let slug = match (body.tenant_slug, principal.is_tenant_scoped()) {
        (Some(slug), _) => slug,
        (None, true) => principal.tenant_slug.clone().unwrap_or_default(),
        (None, false) => {
            return Err(tenantry_core::Error::invalid_input(
                "name the tenant: tenant_slug is required for a platform admin",
            )
            .into())
        }
    };
    let input = ChangeRequestInput {
        plan: body.plan,
        modules: body.modules,
        resource_tier: body.resource_tier,
        reason: body.reason,
    };
    let record = file(&state, &principal, &slug, &input).await?;
    Ok((StatusCode::CREATED, axum::Json(record)))
}

/// List change requests, newest first (a tenant admin sees their tenant's only).
#[utoipa::path(get, path = "/platform/change-requests", tag = "change-requests", params(ChangeRequestQuery),
    responses((status = 200, body = Vec<ChangeRequestRecord>),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "Another tenant's, asked by a tenant admin", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(query): ApiQuery<ChangeRequestQuery>,
) -> ApiResult<axum::Json<Vec<ChangeRequestRecord>>> {
    let tenant = tenant_filter(&principal, query.tenant)?;
    let requests = state
        .platform
        .registry
        .list_change_requests(
            tenant.as_deref(),
            query.status.as_deref(),
            page_limit(query.limit),
        )
        .await?;
    Ok(axum::Json(requests))
}

/// Read one change request.
#[utoipa::path(get, path = "/platform/change-requests/{change_request_id}", tag = "change-requests", params(("change_request_id" = String, Path)),
    responses((status = 200, body = ChangeRequestRecord),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<ServerState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ChangeRequestRecord>> {
    state
        .platform
        .registry
        .get_change_request(&id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found(format!("change request {id:?}")))
}

fn decision_body(body: &[u8]) -> ApiResult<ChangeDecisionBody> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ChangeDecisionBody::default());
    }
    serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("the body does not fit: {error}")))
}

/// Approve a change request: the set-plan job that makes the change is recorded with the decision. The
/// requester cannot.
#[utoipa::path(post, path = "/platform/change-requests/{change_request_id}/approve", tag = "change-requests", params(("change_request_id" = String, Path)),
    request_body(content = ChangeDecisionBody, description = "Optional: an empty body has no reason"),
    responses((status = 200, body = ChangeRequestRecord),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not a PLATFORM_ADMIN, or the requester themselves", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Decided already, the change no longer applies, or the tenant has an unfinished job", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn approve(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiBytes(body): ApiBytes,
) -> ApiResult<axum::Json<ChangeRequestRecord>> {
    let reason = decision_body(&body)?.reason;
    Ok(axum::Json(
        decide(&state, &principal, &id, true, &reason).await?,
    ))
}

/// Reject a change request, with a reason. The requester cannot.
#[utoipa::path(post, path = "/platform/change-requests/{change_request_id}/reject", tag = "change-requests", params(("change_request_id" = String, Path)),
    request_body = ChangeDecisionBody,
    responses((status = 200, body = ChangeRequestRecord),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not a PLATFORM_ADMIN, or the requester themselves", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Decided already", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "No reason given", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn reject(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiBytes(body): ApiBytes,
) -> ApiResult<axum::Json<ChangeRequestRecord>> {
    let reason = decision_body(&body)?.reason;
    Ok(axum::Json(
        decide(&state, &principal, &id, false, &reason).await?,
    ))
}
