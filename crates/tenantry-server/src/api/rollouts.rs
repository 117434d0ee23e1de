//! `/platform/rollouts`: fleet migrations over HTTP. Start one (or plan it with `dry_run`), list them, read one
//! with a page of its tenants, pause, resume or abort it; and one tenant's schema state against the files.

use super::{ApiJson, ApiQuery};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ProblemDetails};
use crate::state::ServerState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tenantry_core::{Error as CodedError, ErrorCode};
use tenantry_registry::{NewRolloutChild, CHILD_STATUSES};
use tenantry_workflows::{
    control_rollout, plan_rollout, rollout_view, schema_plan, submit_rollout, RolloutControl,
    RolloutOptions, RolloutRequest, RolloutSubmission, RolloutView,
};

/// Tenants per page of a rollout's view, unless the caller asks for another number.
pub const DEFAULT_TENANT_LIMIT: i64 = 50;
/// The most tenants one page of a rollout's view holds.
pub const MAX_TENANT_LIMIT: i64 = 500;

/// What `POST /platform/rollouts` takes: how the tenants are cut into waves and how fast they go.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutBody {
    /// How many tenants the canary wave takes (default 1; not with `canary_tenants`).
    #[schema(minimum = 0)]
    pub canary: Option<usize>,
    /// The canary's tenants by slug (not with `canary`).
    #[serde(default)]
    pub canary_tenants: Vec<String>,
    /// Waves of this many tenants after the canary (not with `waves`).
    #[schema(minimum = 1)]
    pub wave_size: Option<usize>,
    /// Waves ending at these cumulative percentages of the tenants after the canary, rising, the last `100%`:
    /// `["10%", "50%", "100%"]` (default: one wave). Not with `wave_size`.
    #[serde(default)]
    pub waves: Vec<String>,
    /// Tenants migrated at once across every worker (default 8).
    #[schema(minimum = 1, maximum = 256)]
    pub concurrency: Option<usize>,
    /// Tenants migrated at once on one server (default: the concurrency).
    #[schema(minimum = 1)]
    pub per_server: Option<usize>,
    /// The rollout stops once this many tenants failed (default 1).
    #[schema(minimum = 1)]
    pub max_failures: Option<usize>,
    /// Leave out tenants whose records differ from the files (edited, unknown or unfinished migrations) instead
    /// of refusing the rollout with `E_MIGRATION_DRIFT`.
    #[serde(default)]
    pub skip_drifted: bool,
    /// Only say what the rollout would do: every tenant's wave, recording nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl RolloutBody {
    fn options(&self) -> RolloutOptions {
        RolloutOptions {
            canary: self.canary,
            canary_tenants: self.canary_tenants.clone(),
            wave_size: self.wave_size,
            waves: self.waves.clone(),
            concurrency: self.concurrency,
            per_server: self.per_server,
            max_failures: self.max_failures,
            skip_drifted: self.skip_drifted,
        }
    }
}

/// What a dry run answers: the options as the rollout would record them, every tenant's schema state counted,
/// and the wave each tenant would be in (`pending`) or why it would be left as it is (`skipped`, with a note).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RolloutDryRun {
    /// Always true.
    pub dry_run: bool,
    #[schema(value_type = Object)]
    pub request: RolloutRequest,
    /// Tenants per schema state: `latest`, `pending`, `edited`, `unknown`, `failed`, `unreachable`,
    /// `not_migrated`.
    pub counts: BTreeMap<String, usize>,
    /// `{tenant_slug, server_name, wave, status, pending_versions, note}`; wave 0 is the canary.
    #[schema(value_type = Vec<Object>)]
    pub tenants: Vec<NewRolloutChild>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RolloutListQuery {
    /// How many rollouts, newest first (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// A tenant's place in a rollout, as a filter: the registry's `CHILD_STATUSES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChildStatus {
    Pending,
    Running,
    Applied,
    Skipped,
    Failed,
}

impl ChildStatus {
    pub const ALL: [ChildStatus; 5] = [
        ChildStatus::Pending,
        ChildStatus::Running,
        ChildStatus::Applied,
        ChildStatus::Skipped,
        ChildStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChildStatus::Pending => tenantry_registry::CHILD_PENDING,
            ChildStatus::Running => tenantry_registry::CHILD_RUNNING,
            ChildStatus::Applied => tenantry_registry::CHILD_APPLIED,
            ChildStatus::Skipped => tenantry_registry::CHILD_SKIPPED,
            ChildStatus::Failed => tenantry_registry::CHILD_FAILED,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RolloutQuery {
    /// Only tenants in this state.
    #[param(inline)]
    pub status: Option<ChildStatus>,
    /// Tenants in the page (default 50, at most 500; 0 for the counts alone).
    #[param(minimum = 0, maximum = 500)]
    pub limit: Option<i64>,
    /// Tenants to pass over first (default 0).
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// One tenant's schema against the tenant schema's files.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantSchemaView {
    pub slug: String,
    pub server: String,
    /// `postgres` or `sqlite`.
    pub engine: String,
    pub tenant_status: String,
    /// `latest`, `pending`, `edited`, `unknown`, `failed` (a migration started and not finished),
    /// `unreachable` (its records could not be read) or `not_migrated` (its login is off).
    pub state: String,
    /// The highest version the database records (0: none).
    pub version: i64,
    /// The latest version in the files for its engine.
    pub latest: Option<i64>,
    /// Versions in the files the database does not record: what a rollout applies.
    pub pending: Vec<i64>,
    /// Versions recorded with a checksum the files no longer have.
    pub edited: Vec<i64>,
    /// Versions recorded that the files do not have.
    pub unknown: Vec<i64>,
    /// Versions recorded as started and not finished.
    pub dirty: Vec<i64>,
    /// Why the records could not be read, or what differs from the files.
    pub detail: Option<String>,
}

/// A rollout's view with one page of its tenants; a status filter outside the five is a 400, as the job list's
/// (the API's query cannot hold one; the check is for the pages).
pub async fn read_rollout(
    state: &ServerState,
    rollout_id: &str,
    status: Option<&str>,
    limit: Option<i64>,
    offset: Option<i64>,
) -> ApiResult<RolloutView> {
    let status = status.filter(|status| !status.is_empty());
    if let Some(status) = status {
        if !CHILD_STATUSES.contains(&status) {
            return Err(ApiError::bad_request(format!(
                "status must be one of {}",
                CHILD_STATUSES.join(", ")
            )));
        }
    }
    let limit = limit
        .unwrap_or(DEFAULT_TENANT_LIMIT)
        .clamp(0, MAX_TENANT_LIMIT);
    let offset = offset.unwrap_or(0).max(0);
    Ok(rollout_view(&state.platform, rollout_id, status, limit, offset).await?)
}

/// Start a fleet migration of the tenant schema now configured: a canary wave, then the waves in order, run by
/// the server's workers. With `dry_run`, only what it would do. One rollout runs at a time.
#[utoipa::path(post, path = "/platform/rollouts", tag = "rollouts",
    request_body = RolloutBody,
    responses((status = 200, description = "A dry run: nothing was recorded", body = RolloutDryRun),
        (status = 202, description = "Recorded; the server's workers run it", body = RolloutView,
            headers(("location" = String, description = "The rollout's URL"))),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "A canary tenant is not registered", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Another rollout is running, tenants record migrations that differ from the files (`E_MIGRATION_DRIFT`), or no tenant has anything to migrate", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Options that do not fit together or are out of range", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create_rollout(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<RolloutBody>,
) -> ApiResult<Response> {
    let platform = &state.platform;
    if body.dry_run {
        let (request, plan, children) = plan_rollout(platform, body.options()).await?;
        return Ok(axum::Json(RolloutDryRun {
            dry_run: true,
            request,
            counts: plan.counts,
            tenants: children,
        })
        .into_response());
    }
    let submitted = match submit_rollout(platform, body.options(), &principal.actor(), None).await? {
        RolloutSubmission::Recorded(submitted) => submitted,
        // A rollout that would migrate nobody would still be a job to run and watch; say so instead.
        RolloutSubmission::NothingToMigrate(plan) => {
            return Err(CodedError::new(
                ErrorCode::Conflict,
                format!(
                    "nothing to migrate: {} tenant(s), none with a pending migration; `dry_run` shows each tenant's state",
                    plan.tenants.len()
                ),
            )
            .into())
        }
    };
    state.wake_workers.notify_one();
    let rollout_id = submitted.job().id.clone();
    let view = read_rollout(&state, &rollout_id, None, None, None).await?;
    let mut response = (StatusCode::ACCEPTED, axum::Json(view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/platform/rollouts/{rollout_id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The newest rollouts, with their counts per wave and status (without their tenants). A rollout shows here
/// once it has listed its tenants.
#[utoipa::path(get, path = "/platform/rollouts", tag = "rollouts", params(RolloutListQuery),
    responses((status = 200, body = Vec<RolloutView>),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_rollouts(
    State(state): State<ServerState>,
    ApiQuery(query): ApiQuery<RolloutListQuery>,
) -> ApiResult<axum::Json<Vec<RolloutView>>> {
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    Ok(axum::Json(
        tenantry_workflows::list_rollouts(&state.platform, limit).await?,
    ))
}

/// Read a rollout: its status and control, its bounds, the counts per wave and status, and one page of its
/// tenants (of one status if asked). Its progress also arrives live on `/platform/jobs/{job_id}/events`: the
/// rollout is a job with the same id.
#[utoipa::path(get, path = "/platform/rollouts/{rollout_id}", tag = "rollouts",
    params(("rollout_id" = String, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"), RolloutQuery),
    responses((status = 200, body = RolloutView),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_rollout(
    State(state): State<ServerState>,
    Path(rollout_id): Path<String>,
    ApiQuery(query): ApiQuery<RolloutQuery>,
) -> ApiResult<axum::Json<RolloutView>> {
    Ok(axum::Json(
        read_rollout(
            &state,
            &rollout_id,
            query.status.map(ChildStatus::as_str),
            query.limit,
            query.offset,
        )
        .await?,
    ))
}

/// Pauses, resumes or aborts a rollout, audited with the caller, and wakes whoever must act on it.
pub async fn control(
    state: &ServerState,
    principal: &Principal,
    rollout_id: &str,
    control: RolloutControl,
) -> ApiResult<()> {
    control_rollout(
        &state.platform,
        &state.runner,
        rollout_id,
        control,
        &principal.actor(),
    )
    .await?;
    if control == RolloutControl::Resume {
        // Resuming a stopped rollout reopened its job: a worker claims it, as after a job retry.
        state.wake_workers.notify_one();
    }
    state.job_changed();
    Ok(())
}

async fn control_and_view(
    state: ServerState,
    principal: Principal,
    rollout_id: String,
    action: RolloutControl,
) -> ApiResult<axum::Json<RolloutView>> {
    control(&state, &principal, &rollout_id, action).await?;
    Ok(axum::Json(
        read_rollout(&state, &rollout_id, None, None, None).await?,
    ))
}

/// Pause a running rollout: tenants in hand finish, no new one starts until it resumes.
#[utoipa::path(post, path = "/platform/rollouts/{rollout_id}/pause", tag = "rollouts",
    params(("rollout_id" = String, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 200, body = RolloutView),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Not running, or aborted", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn pause_rollout(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(rollout_id): Path<String>,
) -> ApiResult<axum::Json<RolloutView>> {
    control_and_view(state, principal, rollout_id, RolloutControl::Pause).await
}

/// Resume a paused rollout; a stopped one (`failed`: its failure budget was spent, or the canary failed) tries
/// its failed tenants again.
#[utoipa::path(post, path = "/platform/rollouts/{rollout_id}/resume", tag = "rollouts",
    params(("rollout_id" = String, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 200, body = RolloutView),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Complete, cancelled or aborted", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn resume_rollout(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(rollout_id): Path<String>,
) -> ApiResult<axum::Json<RolloutView>> {
    control_and_view(state, principal, rollout_id, RolloutControl::Resume).await
}

/// Abort a rollout: tenants in hand finish, the rest stay where they are, and it ends `cancelled`. Final.
#[utoipa::path(post, path = "/platform/rollouts/{rollout_id}/abort", tag = "rollouts",
    params(("rollout_id" = String, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses((status = 200, body = RolloutView),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Complete, cancelled or aborted already", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn abort_rollout(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(rollout_id): Path<String>,
) -> ApiResult<axum::Json<RolloutView>> {
    control_and_view(state, principal, rollout_id, RolloutControl::Abort).await
}

/// One tenant's schema state, read as the tenant; `E_NOT_FOUND` for a slug with no tenant, or one with no
/// database to read (being provisioned, failed, offboarded).
pub async fn read_tenant_schema(state: &ServerState, slug: &str) -> ApiResult<TenantSchemaView> {
    let plan = schema_plan(&state.platform, Some(slug)).await?;
    let Some(row) = plan.tenants.into_iter().next() else {
        let registry = &state.platform.registry;
        return Err(match registry.get_tenant(slug).await? {
            None => ApiError::not_found(format!("tenant {slug:?}")),
            Some(tenant) => ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!(
                    "tenant {slug:?} is {}: only an active or suspended tenant has a schema to read",
                    tenant.status
                ),
            ),
        });
    };
    let engine = row.engine.to_string();
    Ok(TenantSchemaView {
        latest: plan.latest.get(&engine).copied(),
        slug: row.slug,
        server: row.server,
        engine,
        tenant_status: row.tenant_status.as_str().to_owned(),
        state: row.state,
        version: row.standing.version,
        pending: row.standing.pending,
        edited: row.standing.edited,
        unknown: row.standing.unknown,
        dirty: row.standing.dirty,
        detail: row.detail,
    })
}

/// A tenant's schema against the tenant schema's files: the version it records, what is pending, and any drift
/// (migrations edited after they ran, unknown to the files, or unfinished).
#[utoipa::path(get, path = "/platform/tenants/{slug}/schema", tag = "tenants", params(("slug" = String, Path, pattern = "^[a-z][a-z0-9-]{2,39}$")),
    responses((status = 200, body = TenantSchemaView),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn tenant_schema(
    State(state): State<ServerState>,
    Path(slug): Path<String>,
) -> ApiResult<axum::Json<TenantSchemaView>> {
    Ok(axum::Json(read_tenant_schema(&state, &slug).await?))
}

#[cfg(test)]
mod tests {
    use super::ChildStatus;

    #[test]
    fn the_status_filter_is_the_registrys_child_statuses() {
        let names: Vec<&str> = ChildStatus::ALL
            .iter()
            .map(|status| status.as_str())
            .collect();
        assert_eq!(names, tenantry_registry::CHILD_STATUSES);
        for status in ChildStatus::ALL {
            let parsed: ChildStatus = serde_json::from_value(status.as_str().into()).unwrap();
            assert_eq!(parsed, status);
        }
    }
}
