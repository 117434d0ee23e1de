//! Backups over HTTP: take one of a tenant (a job), list them, restore one into a new tenant or in place (a job),
//! and clone a tenant (a job whose snapshot is a backup). The checks are the CLI's
//! (`tenantry_workflows::submit_backup`, `restore_spec`, `restore_in_place_request`, `clone_request`), so both
//! refuse the same input.

use super::{ApiJson, ApiQuery, JobAccepted};
use crate::auth::Principal;
use crate::error::{ApiResult, ProblemDetails};
use crate::state::ServerState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use tenantry_core::{Error as CodedError, Slug};
use tenantry_registry::BackupRecord;
use tenantry_workflows::{
    clone_request, registry_error, restore_in_place_request, restore_spec, submit_backup,
    submit_clone, submit_provision, submit_restore_in_place, BackupRequest, RawClone, Submitted,
};

/// What `POST /platform/backups/{backup_id}/restore` takes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    /// The new tenant's slug: a restore makes a tenant of its own, with its own credentials. Required unless
    /// `in_place`.
    #[schema(pattern = "^[a-z][a-z0-9-]{2,39}$")]
    pub to_slug: Option<String>,
    /// Replace the data of the tenant the backup was taken of instead (it keeps its credentials; a safety
    /// backup is taken first, and undoing the job restores it). Takes none of the other fields.
    #[serde(default)]
    pub in_place: bool,
    /// The new tenant's first admin (default: the backed-up tenant's).
    pub admin_email: Option<String>,
    /// The server to restore onto (default: the one the backup came from).
    pub server: Option<String>,
}

/// What `POST /platform/tenants/{slug}/clone` takes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloneBody {
    /// The new tenant's slug.
    #[schema(pattern = "^[a-z][a-z0-9-]{2,39}$")]
    pub to_slug: String,
    /// The new tenant's plan (default: the source's); its engine, if it names one, must be the source's.
    pub plan: Option<String>,
    /// The new tenant's first admin (default: the source's).
    pub admin_email: Option<String>,
    /// The new tenant's display name (default: the source's).
    pub display_name: Option<String>,
}

/// `GET /platform/backups` filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BackupFilter {
    /// Only this tenant's backups.
    pub tenant: Option<String>,
}

fn accepted(submitted: &Submitted) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(JobAccepted::of(submitted.job())),
    )
        .into_response()
}

/// Take a backup of a tenant: one encrypted, checksummed dump per resource that holds data.
#[utoipa::path(post, path = "/platform/tenants/{slug}/backups", tag = "backups", params(("slug" = String, Path, pattern = "^[a-z][a-z0-9-]{2,39}$")),
    responses((status = 202, body = JobAccepted),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is not provisioned, or has an unfinished job", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid slug", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The backup store cannot be written", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create_backup(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
) -> ApiResult<Response> {
    let request = BackupRequest {
        slug: Slug::parse(&slug)?,
    };
    let submitted = submit_backup(&state.platform, &request, &principal.actor(), None).await?;
    state.wake_workers.notify_one();
    Ok(accepted(&submitted))
}

/// Backups, newest first, of one tenant if asked.
#[utoipa::path(get, path = "/platform/backups", tag = "backups", params(BackupFilter),
    responses((status = 200, body = [BackupRecord]),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_backups(
    State(state): State<ServerState>,
    ApiQuery(filter): ApiQuery<BackupFilter>,
) -> ApiResult<axum::Json<Vec<BackupRecord>>> {
    let tenant = filter.tenant.as_deref().map(Slug::parse).transpose()?;
    let backups = state
        .platform
        .registry
        .list_backups(tenant.as_ref().map(Slug::as_str))
        .await
        .map_err(registry_error)?;
    Ok(axum::Json(backups))
}

/// Restore a backup into a new tenant, or in place over the tenant it was taken of (a safety backup first), after
/// checking every file against its recorded checksum.
#[utoipa::path(post, path = "/platform/backups/{backup_id}/restore", tag = "backups", params(("backup_id" = String, Path)),
    request_body = RestoreBody,
    responses((status = 202, body = JobAccepted),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such backup, or (in place) its tenant is gone", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The slug is taken (E_ALREADY_PROVISIONED), or (in place) the tenant is not active or has an unfinished job", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid slug, in_place with other fields, an engine that differs, or the backup fails its checksum (E_BACKUP_CORRUPT)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "In place: the backup store cannot take the safety backup", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn restore_backup(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(backup_id): Path<String>,
    ApiJson(body): ApiJson<RestoreBody>,
) -> ApiResult<Response> {
    if body.in_place {
        if body.to_slug.is_some() || body.admin_email.is_some() || body.server.is_some() {
            return Err(CodedError::invalid_input(
                "in_place restores over the backed-up tenant: give no to_slug, admin_email or server",
            )
            .into());
        }
        let request = restore_in_place_request(&state.platform, &backup_id).await?;
        let submitted =
            submit_restore_in_place(&state.platform, &request, &principal.actor(), None).await?;
        state.wake_workers.notify_one();
        return Ok(accepted(&submitted));
    }
    let to_slug = body
        .to_slug
        .as_deref()
        .ok_or_else(|| CodedError::invalid_input("to_slug is required"))?;
    let spec = restore_spec(
        &state.platform,
        &backup_id,
        to_slug,
        body.admin_email.as_deref(),
        body.server.as_deref(),
    )
    .await?;
    let submitted = submit_provision(&state.platform, &spec, &principal.actor(), None).await?;
    state.wake_workers.notify_one();
    Ok(accepted(&submitted))
}

/// Clone a tenant: a new tenant whose data is a copy of this one's at one instant, with its own credentials,
/// labels, resources and first admin, on this tenant's server. The source keeps serving during the copy.
#[utoipa::path(post, path = "/platform/tenants/{slug}/clone", tag = "tenants", params(("slug" = String, Path, pattern = "^[a-z][a-z0-9-]{2,39}$")),
    request_body = CloneBody,
    responses((status = 202, body = JobAccepted),
        (status = 400, description = "The body does not fit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such source tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The source is not active (E_CONFLICT), or the new slug is taken (E_ALREADY_PROVISIONED)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid slug, unknown plan, or a plan whose engine is not the source's", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The backup store cannot take the snapshot", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn clone_tenant(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<CloneBody>,
) -> ApiResult<Response> {
    let submitted = submit_clone_from(&state, &principal, &slug, &body).await?;
    state.wake_workers.notify_one();
    Ok(accepted(&submitted))
}

/// Checks and records a clone for this server's workers: the API's and the console form's one way in.
pub async fn submit_clone_from(
    state: &ServerState,
    principal: &Principal,
    slug: &str,
    body: &CloneBody,
) -> Result<Submitted, CodedError> {
    let request = clone_request(
        &state.platform,
        RawClone {
            source: slug,
            to: &body.to_slug,
            plan: body.plan.as_deref(),
            admin_email: body.admin_email.as_deref(),
            display_name: body.display_name.as_deref(),
        },
    )
    .await?;
    submit_clone(&state.platform, &request, &principal.actor(), None).await
}
