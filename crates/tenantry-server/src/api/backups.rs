//! Backups over HTTP: take one of a tenant (a job), list them, restore one into a new tenant (a job). The
//! checks are the CLI's (`tenantry_workflows::submit_backup`, `restore_spec`), so both refuse the same input.

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
    registry_error, restore_spec, submit_backup, submit_provision, BackupRequest, Submitted,
};

/// What `POST /platform/backups/{backup_id}/restore` takes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    /// The new tenant's slug: a restore makes a tenant of its own, with its own credentials.
    #[schema(pattern = "^[a-z][a-z0-9-]{2,39}$")]
    pub to_slug: Option<String>,
    /// Restoring over an existing tenant is not offered: always `false` (or absent).
    #[serde(default)]
    pub in_place: bool,
    /// The new tenant's first admin (default: the backed-up tenant's).
    pub admin_email: Option<String>,
    /// The server to restore onto (default: the one the backup came from).
    pub server: Option<String>,
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

/// Restore a backup into a new tenant, after checking every file against its recorded checksum.
#[utoipa::path(post, path = "/platform/backups/{backup_id}/restore", tag = "backups", params(("backup_id" = String, Path)),
    request_body = RestoreBody,
    responses((status = 202, body = JobAccepted),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such backup", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The slug is taken", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid slug, in_place asked for, or the backup fails its checksum (E_BACKUP_CORRUPT)", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn restore_backup(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(backup_id): Path<String>,
    ApiJson(body): ApiJson<RestoreBody>,
) -> ApiResult<Response> {
    if body.in_place {
        return Err(CodedError::invalid_input(
            "restoring in place is not offered: restore into a new slug (to_slug)",
        )
        .into());
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
