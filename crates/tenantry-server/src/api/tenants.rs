//! `/platform/tenants`: submit provisioning, offboarding, suspension and resumption, list and read tenants.

use super::{page_limit, ApiJson, ApiQuery, JobAccepted};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ProblemDetails};
use crate::state::ServerState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use tenantry_core::{ErrorCode, RawTenantSpec, Slug, SpecDefaults, TenantSpec, TenantStatus};
use tenantry_registry::{TenantRecord, TenantResourceRecord};
use tenantry_workflows::{
    invitation_state, resend_invitation, submit_move, submit_offboard,
    submit_provision_with_data_sources, submit_rotation, submit_suspension, Direction,
    IdempotencyRequest, InvitationView, MoveRequest, OffboardRequest, Resent, RotateRequest,
    Submitted, SuspendRequest,
};

/// What `POST /platform/tenants` takes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// `^[a-z][a-z0-9-]{2,39}$`
    #[schema(pattern = "^[a-z][a-z0-9-]{2,39}$", min_length = 3, max_length = 40)]
    pub slug: String,
    /// 3 to 100 characters after trimming, none a control character.
    #[schema(
        min_length = 3,
        max_length = 100,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]{1,98}[^\s\x00-\x1f\x7f-\x9f]$"
    )]
    pub display_name: String,
    /// One `@`, a local part of at most 64 characters, a dotted domain of letters, digits and hyphens. (The API
    /// also takes a local part with non-ASCII letters; the pattern states the ASCII ones.)
    #[schema(
        format = "email",
        max_length = 254,
        pattern = r"^[!-?A-~]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
    )]
    pub admin_email: String,
    /// One of the configured plans (default: the default plan).
    pub plan: Option<String>,
    /// One of the configured regions (default: the default region).
    pub region: Option<String>,
    /// A server name; omitted for auto-placement.
    #[schema(pattern = "^[a-z][a-z0-9-]{0,62}$", min_length = 1, max_length = 63)]
    pub server: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// Monthly budget in whole currency units. At or above the auto-approve threshold, the job waits in
    /// `awaiting_approval` for a PLATFORM_ADMIN other than the requester. Default: the plan's monthly estimate.
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_u64)]
    pub budget: Option<u64>,
    /// What the tenant is for: at most 500 characters (line breaks and tabs kept, no other control character).
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// The tenant's contact person: at most 100 characters, no control character.
    #[schema(max_length = 100)]
    pub contact_name: Option<String>,
    /// `small`, `medium` (default) or `large`: the plan's connection limit, query rate, quotas and price halved,
    /// as written, or doubled.
    pub resource_tier: Option<String>,
    /// `database` (dedicated) or `schema` (shared); when given it must be the plan's isolation.
    pub isolation: Option<String>,
    /// The tenant's initial data sources, at most 10. Each URL is stored in the secret store as
    /// `tenant-ds-<slug>-<name>` and never shown again; the tenant shows the endpoint only.
    #[serde(default)]
    #[schema(max_items = 10)]
    pub data_sources: Vec<DataSourceBody>,
    /// The modules to turn on (each must be on in the plan); absent: the plan's modules.
    pub modules: Option<Vec<String>>,
    /// How the tenant's application signs its users in, and where its services may be reached from.
    #[serde(default)]
    pub security: SecurityBody,
}

/// One data source of a provisioning request.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DataSourceBody {
    /// 1 to 32 lowercase letters, digits and hyphens, starting with a letter; unique in the request.
    #[schema(
        pattern = "^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$",
        min_length = 1,
        max_length = 32
    )]
    pub name: String,
    /// What it is; its URL's scheme must fit it (`postgres`: postgres:// or postgresql://, …).
    pub kind: String,
    /// Where it is, credentials included. Secret: stored in the secret store only.
    #[schema(max_length = 2048)]
    pub url: String,
}

impl std::fmt::Debug for DataSourceBody {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DataSourceBody")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &"[redacted]")
            .finish()
    }
}

/// A provisioning request's security policy.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityBody {
    /// `password` (default), `oidc` or `saml`: recorded for the tenant's application.
    pub auth_method: Option<String>,
    /// `off`, `optional` (default) or `required`: recorded for the tenant's application.
    pub mfa_policy: Option<String>,
    /// Networks in CIDR notation (a bare address is one host) the tenant's services may be reached from, at most
    /// 50; empty: anywhere.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub allowed_cidrs: Vec<String>,
}

impl CreateTenantRequest {
    /// The wizard's later fields as the profile parser takes them.
    pub fn raw_profile(&self) -> tenantry_core::RawTenantProfile {
        tenantry_core::RawTenantProfile {
            description: self.description.clone(),
            contact_name: self.contact_name.clone(),
            resource_tier: self.resource_tier.clone(),
            isolation: self.isolation.clone(),
            data_sources: self
                .data_sources
                .iter()
                .map(|source| tenantry_core::RawDataSource {
                    name: source.name.clone(),
                    kind: source.kind.clone(),
                    url: source.url.clone(),
                })
                .collect(),
            modules: self.modules.clone(),
            security: tenantry_core::RawSecurity {
                auth_method: self.security.auth_method.clone(),
                mfa_policy: self.security.mfa_policy.clone(),
                allowed_cidrs: self.security.allowed_cidrs.clone(),
            },
        }
    }
}

/// What `POST /platform/tenants/{slug}/offboard` takes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OffboardBody {
    /// Remove the database, role, secrets and registry row too (after taking a backup, unless `no_backup`).
    #[serde(default)]
    pub purge: bool,
    /// With `purge`: take no backup first (audited in `TENANT_PURGED`).
    #[serde(default)]
    pub no_backup: bool,
}

/// What `POST /platform/tenants/{slug}/suspend` takes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspendBody {
    /// Why the tenant is suspended: 1 to 500 characters after trimming, no control character but a line break.
    /// Kept in the job's parameters and in the `TENANT_SUSPENDED` audit event.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

/// What `POST /platform/tenants/{slug}/rotate-credentials` takes (both optional: `{}` rotates every resource
/// with a ten-minute grace period).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// Only this kind's resource (`database`, `cache`, `queue`, …); every resource whose kind rotates when absent.
    #[serde(default)]
    pub kind: Option<String>,
    /// How long the old credentials keep working after the new ones are in the secret: 0 to 604800 (7 days),
    /// default 600.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604800)]
    pub grace_seconds: Option<i64>,
}

/// What `POST /platform/tenants/{slug}/move` takes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    /// The server the tenant's database moves to: active, PostgreSQL, not the one it is on.
    pub to_server: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TenantQuery {
    /// Matches slug or display name.
    pub search: Option<String>,
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

const IDEMPOTENCY_HEADER: &str = "idempotency-key";

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| !key.is_empty() && key.len() <= 255)
        .ok_or_else(|| {
            ApiError::bad_request("Idempotency-Key must be 1 to 255 visible ASCII characters")
        })?;
    Ok(Some(key.to_owned()))
}

fn accepted(submitted: &Submitted) -> Response {
    let job = submitted.job();
    let mut response = (StatusCode::ACCEPTED, axum::Json(JobAccepted::of(job))).into_response();
    if matches!(submitted, Submitted::Repeated(_)) {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    response
}

/// Submit a provisioning job.
#[utoipa::path(post, path = "/platform/tenants", tag = "tenants", request_body = CreateTenantRequest,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255,
        pattern = "^[!-~]([ -~]{0,253}[!-~])?$", description = "Same key and body: the same job")),
    responses(
        (status = 202, description = "Job accepted", body = JobAccepted),
        (status = 400, description = "Malformed body", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Already provisioned, or a job holds the slug, or the key was reused", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid slug or field", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn create_tenant(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateTenantRequest>,
) -> ApiResult<Response> {
    if let Err(retry_after) = state.rate_limiter.check(&principal.scope()) {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            "too many provisioning requests for this token; wait a minute",
        );
        error.retry_after = Some(retry_after);
        return Err(error);
    }
    let key = idempotency_key(&headers)?;
    let config = &state.platform.settings;
    let mut spec = TenantSpec::parse(
        RawTenantSpec {
            slug: &body.slug,
            display_name: &body.display_name,
            admin_email: &body.admin_email,
            plan: body.plan.as_deref(),
            region: body.region.as_deref(),
            server: body.server.as_deref(),
            budget: body.budget,
            dry_run: body.dry_run,
        },
        SpecDefaults {
            plan: &config.default_plan,
            region: &config.default_region,
        },
    )?;
    let parsed = tenantry_core::TenantProfile::parse(&body.raw_profile(), &spec.slug)
        .map_err(|failure| ApiError::from(failure.error).at_field(failure.field))?;
    if let Some(plan) = config.plan(&spec.plan) {
        parsed
            .profile
            .check_against(plan)
            .map_err(|failure| ApiError::from(failure.error).at_field(failure.field))?;
    }
    spec.profile = parsed.profile;
    let idempotency = key.map(|key| IdempotencyRequest {
        principal: principal.scope(),
        key,
    });
    let submitted = submit_provision_with_data_sources(
        &state.platform,
        &spec,
        &parsed.data_source_urls,
        &principal.actor(),
        idempotency,
    )
    .await?;
    if matches!(submitted, Submitted::New(_)) {
        state.wake_workers.notify_one();
    }
    Ok(accepted(&submitted))
}

/// List tenants.
#[utoipa::path(get, path = "/platform/tenants", tag = "tenants", params(TenantQuery),
    responses((status = 200, body = Vec<TenantRecord>),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_tenants(
    State(state): State<ServerState>,
    ApiQuery(query): ApiQuery<TenantQuery>,
) -> ApiResult<axum::Json<Vec<TenantRecord>>> {
    let status = query
        .status
        .as_deref()
        .map(TenantStatus::parse)
        .transpose()
        .map_err(|error| ApiError::bad_request(error.message))?;
    let tenants = state
        .platform
        .registry
        .list_tenants(
            query.search.as_deref(),
            status,
            page_limit(query.limit),
            query.offset.unwrap_or(0).max(0),
        )
        .await?;
    Ok(axum::Json(tenants))
}

/// Read one tenant.
#[utoipa::path(get, path = "/platform/tenants/{slug}", tag = "tenants", params(("slug" = String, Path, pattern = "^[a-z][a-z0-9-]{2,39}$")),
    responses((status = 200, body = TenantRecord),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_tenant(
    State(state): State<ServerState>,
    Path(slug): Path<String>,
) -> ApiResult<axum::Json<TenantRecord>> {
    let tenant = state
        .platform
        .registry
        .get_tenant(&slug)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tenant {slug:?}")))?;
    Ok(axum::Json(tenant))
}

/// A tenant's resources: its database, and its cache, queue, … as its plan gives them, each with its server,
/// its name there and its secret's name (never the secret).
#[utoipa::path(get, path = "/platform/tenants/{slug}/resources", tag = "tenants", params(("slug" = String, Path, pattern = "^[a-z][a-z0-9-]{2,39}$")),
    responses((status = 200, body = Vec<TenantResourceRecord>),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn tenant_resources(
    State(state): State<ServerState>,
    Path(slug): Path<String>,
) -> ApiResult<axum::Json<Vec<TenantResourceRecord>>> {
    let registry = &state.platform.registry;
    if registry.get_tenant(&slug).await?.is_none() {
        return Err(ApiError::not_found(format!("tenant {slug:?}")));
    }
    Ok(axum::Json(registry.tenant_resources(&slug).await?))
}

/// A tenant's first-admin invitation: where it stands (`sent`, `pending`, `waiting_for_smtp`, `dead`), to whom,
/// its attempts and last error. Never the link.
#[utoipa::path(get, path = "/platform/tenants/{slug}/invitation", tag = "tenants", params(("slug" = String, Path, pattern = "^[a-z][a-z0-9-]{2,39}$")),
    responses((status = 200, body = InvitationView),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant, or no invitation was ever queued for it", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn tenant_invitation(
    State(state): State<ServerState>,
    Path(slug): Path<String>,
) -> ApiResult<axum::Json<InvitationView>> {
    if state.platform.registry.get_tenant(&slug).await?.is_none() {
        return Err(ApiError::not_found(format!("tenant {slug:?}")));
    }
    let invitation = invitation_state(&state.platform, &slug)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("an invitation for tenant {slug:?}")))?;
    Ok(axum::Json(invitation))
}

/// What resending an invitation did, and where the new one stands.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct InvitationResent {
    pub resent: Resent,
    pub invitation: Option<InvitationView>,
}

/// Send the tenant's first admin a fresh first-sign-in link (audited `INVITATION_RESENT`): the old link stops
/// working, and so does any password set through it (the new link sets one). Without `smtp_url` the link waits in
/// the secret store.
#[utoipa::path(post, path = "/platform/tenants/{slug}/invitation", tag = "tenants", params(("slug" = String, Path, pattern = "^[a-z][a-z0-9-]{2,39}$")),
    responses((status = 202, body = InvitationResent),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is not active", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid slug", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn resend_tenant_invitation(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
) -> ApiResult<(StatusCode, axum::Json<InvitationResent>)> {
    let slug = Slug::parse(&slug)?;
    let resent = resend_invitation(&state.platform, &slug, &principal.actor()).await?;
    let invitation = invitation_state(&state.platform, slug.as_str()).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(InvitationResent { resent, invitation }),
    ))
}

/// Submit an offboarding job.
#[utoipa::path(post, path = "/platform/tenants/{slug}/offboard", tag = "tenants", params(("slug" = String, Path, pattern = "^[a-z][a-z0-9-]{2,39}$")),
    request_body = OffboardBody,
    responses((status = 202, body = JobAccepted),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn offboard_tenant(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<OffboardBody>,
) -> ApiResult<Response> {
    let request = OffboardRequest {
        slug: Slug::parse(&slug)?,
        purge: body.purge,
        no_backup: body.no_backup,
    };
    let submitted = submit_offboard(&state.platform, &request, &principal.actor()).await?;
    state.wake_workers.notify_one();
    Ok(accepted(&submitted))
}

/// Submit a suspension: every resource of the tenant turned off (credentials refused, sessions ended, data kept),
/// then the tenant `suspended`.
#[utoipa::path(post, path = "/platform/tenants/{slug}/suspend", tag = "tenants", params(("slug" = String, Path, pattern = "^[a-z][a-z0-9-]{2,39}$")),
    request_body = SuspendBody,
    responses((status = 202, body = JobAccepted),
        (status = 400, description = "The body does not fit (no reason, say)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is not active, or has an unfinished job", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid slug or reason", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn suspend_tenant(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<SuspendBody>,
) -> ApiResult<Response> {
    let request = SuspendRequest::suspend(Slug::parse(&slug)?, &body.reason)?;
    submit_suspension_here(&state, &principal, Direction::Suspend, &request).await
}

/// Submit a resumption: every resource of a suspended tenant turned back on, then the tenant `active`.
#[utoipa::path(post, path = "/platform/tenants/{slug}/resume", tag = "tenants", params(("slug" = String, Path, pattern = "^[a-z][a-z0-9-]{2,39}$")),
    responses((status = 202, body = JobAccepted),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is not suspended, or has an unfinished job", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid slug", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn resume_tenant(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
) -> ApiResult<Response> {
    let request = SuspendRequest::resume(Slug::parse(&slug)?);
    submit_suspension_here(&state, &principal, Direction::Resume, &request).await
}

/// Submit a credential rotation: new credentials for each resource, written to its secret, the old ones kept
/// valid for the grace period and refused after it. A worker runs the job; its page follows the wait.
#[utoipa::path(post, path = "/platform/tenants/{slug}/rotate-credentials", tag = "tenants", params(("slug" = String, Path, pattern = "^[a-z][a-z0-9-]{2,39}$")),
    request_body = RotateBody,
    responses((status = 202, body = JobAccepted),
        (status = 400, description = "The body does not fit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is not active, or has an unfinished job", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid slug, unknown kind, a kind the tenant lacks, nothing to rotate, or a grace period out of bounds", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn rotate_tenant_credentials(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<RotateBody>,
) -> ApiResult<Response> {
    let request = RotateRequest::new(
        Slug::parse(&slug)?,
        body.kind.as_deref(),
        body.grace_seconds,
    )?;
    let submitted = submit_rotation(&state.platform, &request, &principal.actor(), None).await?;
    state.wake_workers.notify_one();
    Ok(accepted(&submitted))
}

/// Submit a move: the tenant's PostgreSQL database moves to another PostgreSQL server with logical replication;
/// writes are refused only between the target catching up and the cut-over. A worker runs the job.
#[utoipa::path(post, path = "/platform/tenants/{slug}/move", tag = "tenants", params(("slug" = String, Path, pattern = "^[a-z][a-z0-9-]{2,39}$")),
    request_body = MoveBody,
    responses((status = 202, body = JobAccepted),
        (status = 400, description = "The body does not fit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant, or no such active server (`E_DB_SERVER_NOT_FOUND`)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is not active, has an unfinished job, or a fleet migration still has it", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Invalid slug; the server is the tenant's own or not PostgreSQL; the source lacks wal_level = logical; a table has no replica identity", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn move_tenant(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<MoveBody>,
) -> ApiResult<Response> {
    let request = MoveRequest {
        slug: Slug::parse(&slug)?,
        to_server: body.to_server,
    };
    let submitted = submit_move(&state.platform, &request, &principal.actor(), None).await?;
    state.wake_workers.notify_one();
    Ok(accepted(&submitted))
}

/// Records a suspension or resumption for this server's workers, and wakes one.
async fn submit_suspension_here(
    state: &ServerState,
    principal: &Principal,
    direction: Direction,
    request: &SuspendRequest,
) -> ApiResult<Response> {
    let submitted = submit_suspension(
        &state.platform,
        direction,
        request,
        &principal.actor(),
        None,
    )
    .await?;
    state.wake_workers.notify_one();
    Ok(accepted(&submitted))
}

/// What `POST /platform/data-sources/check` takes: a data source as the wizard's step 3 has it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DataSourceCheckBody {
    /// What the data source is; its URL's scheme must fit it.
    #[schema(value_type = String, example = "postgres")]
    pub kind: String,
    /// The data source's URL (credentials included, if any). Used for this one connection attempt and forgotten;
    /// never logged or repeated in the answer.
    #[schema(max_length = 2048)]
    pub url: String,
}

impl std::fmt::Debug for DataSourceCheckBody {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DataSourceCheckBody")
            .field("kind", &self.kind)
            .field("url", &"[redacted]")
            .finish()
    }
}

/// Check that a data source can be reached: a TCP connection to its host and port within 3 s. Nothing is sent;
/// the credentials are not tried.
#[utoipa::path(post, path = "/platform/data-sources/check", tag = "tenants", request_body = DataSourceCheckBody,
    responses(
        (status = 200, description = "The check ran (reachable or not)", body = tenantry_workflows::DataSourceCheck),
        (status = 400, description = "Malformed body", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "Unknown kind or not a URL of that kind (`field` names it)", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn check_data_source(
    ApiJson(body): ApiJson<DataSourceCheckBody>,
) -> ApiResult<axum::Json<tenantry_workflows::DataSourceCheck>> {
    let kind = tenantry_core::DataSourceKind::parse(&body.kind)
        .map_err(|error| ApiError::from(error).at_field("kind"))?;
    let url = tenantry_core::DataSourceUrl::parse(&body.url, kind)
        .map_err(|error| ApiError::from(error).at_field("url"))?;
    Ok(axum::Json(
        tenantry_workflows::check_data_source(kind, &url).await,
    ))
}
