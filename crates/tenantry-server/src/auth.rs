//! Who is calling, and may they: API tokens and console sessions, the route → roles policy (deny by default),
//! and CSRF protection for cookie-authenticated writes.

use crate::error::ApiError;
use crate::state::ServerState;
use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;
use tenantry_core::PlatformRole;
pub use tenantry_providers::credentials::sha256_hex;
use tenantry_registry::now_millis;

/// The name of the console's session cookie.
pub const SESSION_COOKIE: &str = "tenantry_session";
/// The header (or form field) that carries a session's CSRF token on writes.
pub const CSRF_HEADER: &str = "x-csrf-token";
pub const CSRF_FIELD: &str = "csrf_token";

/// How a caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Token {
        token_id: String,
    },
    /// `session_hash` is the SHA-256 of the cookie's value, the session's key in the registry.
    Session {
        csrf_token: String,
        session_hash: String,
    },
}

/// An authenticated caller, available to handlers as a request extension.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: String,
    pub email: String,
    pub role: PlatformRole,
    /// The one tenant a `TENANT_ADMIN` is scoped to; `None` for the platform roles.
    pub tenant_slug: Option<String>,
    pub credential: Credential,
}

impl Principal {
    /// Whether the caller sees only one tenant (a `TENANT_ADMIN`).
    pub fn is_tenant_scoped(&self) -> bool {
        self.role == PlatformRole::TenantAdmin
    }

    /// Whether the caller may see `tenant_slug`: a platform role sees every tenant, a `TENANT_ADMIN` their own
    /// (and none if the scope is missing: deny by default).
    pub fn may_see_tenant(&self, tenant_slug: &str) -> bool {
        !self.is_tenant_scoped() || self.tenant_slug.as_deref() == Some(tenant_slug)
    }

    /// The audit actor: `user:<id>`.
    pub fn actor(&self) -> String {
        format!("user:{}", self.user_id)
    }

    /// What idempotency keys and rate limits are scoped to: the token, or the user for a session.
    pub fn scope(&self) -> String {
        match &self.credential {
            Credential::Token { token_id } => format!("token:{token_id}"),
            Credential::Session { .. } => format!("user:{}", self.user_id),
        }
    }

    /// The credential itself: the token, or this one session (what a live stream lasts only as long as).
    pub fn credential_key(&self) -> String {
        match &self.credential {
            Credential::Token { token_id } => format!("token:{token_id}"),
            Credential::Session { session_hash, .. } => format!("session:{session_hash}"),
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials needed (health, metrics, the spec, sign-in).
    Public,
    /// Any of these roles.
    Roles(&'static [PlatformRole]),
}

const ALL_ROLES: &[PlatformRole] = &[
    PlatformRole::Admin,
    PlatformRole::Support,
    PlatformRole::ReadOnly,
];
/// Every role, the tenant-scoped one too: routes a `TENANT_ADMIN` may call as well, within their tenant (see
/// [`check_tenant_scope`]).
const ALL_ROLES_AND_TENANT_ADMINS: &[PlatformRole] = &[
    PlatformRole::Admin,
    PlatformRole::Support,
    PlatformRole::ReadOnly,
    PlatformRole::TenantAdmin,
];
const ADMINS_AND_TENANT_ADMINS: &[PlatformRole] = &[PlatformRole::Admin, PlatformRole::TenantAdmin];
const OPERATORS: &[PlatformRole] = &[PlatformRole::Admin, PlatformRole::Support];
const ADMINS: &[PlatformRole] = &[PlatformRole::Admin];

/// The policy: every route, by method and path template, to the roles allowed. A route missing here is refused.
pub const POLICY: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Access::Public),
    ("GET", "/readyz", Access::Public),
    ("GET", "/metrics", Access::Public),
    ("GET", "/platform/openapi.json", Access::Public),
    ("POST", "/platform/login", Access::Public),
    // A TENANT_ADMIN (scoped to one tenant) is named where they may call a route at all; the rest is 404 to them,
    // as if it did not exist. Where they may, `check_tenant_scope` holds them to their tenant: the tenant page,
    // that tenant's jobs, its change requests, and the plans (which name no tenant).
    (
        "POST",
        "/platform/logout",
        Access::Roles(ALL_ROLES_AND_TENANT_ADMINS),
    ),
    (
        "GET",
        "/platform/me",
        Access::Roles(ALL_ROLES_AND_TENANT_ADMINS),
    ),
    ("GET", "/platform/tenants", Access::Roles(ALL_ROLES)),
    ("POST", "/platform/tenants", Access::Roles(ADMINS)),
    // The wizard's reachability check: whoever may provision may check where the tenant's data lives.
    (
        "POST",
        "/platform/data-sources/check",
        Access::Roles(ADMINS),
    ),
    (
        "GET",
        "/platform/tenants/{slug}",
        Access::Roles(ALL_ROLES_AND_TENANT_ADMINS),
    ),
    (
        "GET",
        "/platform/tenants/{slug}/resources",
        Access::Roles(ALL_ROLES),
    ),
    (
        "GET",
        "/platform/tenants/{slug}/schema",
        Access::Roles(ALL_ROLES),
    ),
    (
        "GET",
        "/platform/tenants/{slug}/invitation",
        Access::Roles(ALL_ROLES),
    ),
    // A fresh invitation resets the first admin's access to the tenant: admins only.
    (
        "POST",
        "/platform/tenants/{slug}/invitation",
        Access::Roles(ADMINS),
    ),
    (
        "POST",
        "/platform/tenants/{slug}/offboard",
        Access::Roles(ADMINS),
    ),
    // Suspending cuts a customer off, and resuming lets one back in: admins only, like offboarding.
    (
        "POST",
        "/platform/tenants/{slug}/suspend",
        Access::Roles(ADMINS),
    ),
    (
        "POST",
        "/platform/tenants/{slug}/resume",
        Access::Roles(ADMINS),
    ),
    // New credentials for a tenant's resources change what its applications must read: admins only.
    (
        "POST",
        "/platform/tenants/{slug}/rotate-credentials",
        Access::Roles(ADMINS),
    ),
    // A move copies a tenant's data to another server and freezes its writes for the cut-over: admins only.
    (
        "POST",
        "/platform/tenants/{slug}/move",
        Access::Roles(ADMINS),
    ),
    // A backup reads every row of a tenant into a file, and a restore makes a tenant: admins only. Reading the
    // list (ids, sizes, checksums; never data or keys) is for every role.
    (
        "POST",
        "/platform/tenants/{slug}/backups",
        Access::Roles(ADMINS),
    ),
    // A clone copies every row of a tenant into a new one: admins only, like a restore.
    (
        "POST",
        "/platform/tenants/{slug}/clone",
        Access::Roles(ADMINS),
    ),
    ("GET", "/platform/backups", Access::Roles(ALL_ROLES)),
    (
        "POST",
        "/platform/backups/{backup_id}/restore",
        Access::Roles(ADMINS),
    ),
    ("GET", "/platform/jobs", Access::Roles(ALL_ROLES)),
    (
        "GET",
        "/platform/jobs/{job_id}",
        Access::Roles(ALL_ROLES_AND_TENANT_ADMINS),
    ),
    (
        "GET",
        "/platform/jobs/{job_id}/events",
        Access::Roles(ALL_ROLES_AND_TENANT_ADMINS),
    ),
    (
        "POST",
        "/platform/jobs/{job_id}/retry",
        Access::Roles(OPERATORS),
    ),
    (
        "POST",
        "/platform/jobs/{job_id}/rollback",
        Access::Roles(OPERATORS),
    ),
    // Approving spends money: admins only, and never the requester (checked with the job).
    (
        "POST",
        "/platform/jobs/{job_id}/approve",
        Access::Roles(ADMINS),
    ),
    (
        "POST",
        "/platform/jobs/{job_id}/reject",
        Access::Roles(ADMINS),
    ),
    // Fleet migrations change every tenant's database: starting and steering one is for admins; reading one is
    // for whoever may read jobs (a rollout is a job).
    ("POST", "/platform/rollouts", Access::Roles(ADMINS)),
    ("GET", "/platform/rollouts", Access::Roles(ALL_ROLES)),
    (
        "GET",
        "/platform/rollouts/{rollout_id}",
        Access::Roles(ALL_ROLES),
    ),
    (
        "POST",
        "/platform/rollouts/{rollout_id}/pause",
        Access::Roles(ADMINS),
    ),
    (
        "POST",
        "/platform/rollouts/{rollout_id}/resume",
        Access::Roles(ADMINS),
    ),
    (
        "POST",
        "/platform/rollouts/{rollout_id}/abort",
        Access::Roles(ADMINS),
    ),
    (
        "GET",
        "/platform/plans",
        Access::Roles(ALL_ROLES_AND_TENANT_ADMINS),
    ),
    (
        "POST",
        "/platform/tenants/{slug}/plan",
        Access::Roles(ADMINS),
    ),
    (
        "POST",
        "/platform/tenants/{slug}/reconcile",
        Access::Roles(ADMINS),
    ),
    ("GET", "/platform/costs", Access::Roles(ALL_ROLES)),
    ("GET", "/platform/servers", Access::Roles(ALL_ROLES)),
    ("POST", "/platform/servers", Access::Roles(ADMINS)),
    (
        "POST",
        "/platform/servers/{name}/drain",
        Access::Roles(ADMINS),
    ),
    ("GET", "/platform/audit", Access::Roles(ALL_ROLES)),
    // Webhooks: reading deliveries and subscriptions is for whoever may read jobs (they name no secret);
    // subscribing, removing and sending again are for admins, as a webhook sends the platform's events out.
    ("GET", "/platform/notifications", Access::Roles(ALL_ROLES)),
    (
        "POST",
        "/platform/notifications/{notification_id}/retry",
        Access::Roles(ADMINS),
    ),
    ("GET", "/platform/webhooks", Access::Roles(ALL_ROLES)),
    ("POST", "/platform/webhooks", Access::Roles(ADMINS)),
    (
        "DELETE",
        "/platform/webhooks/{webhook_id}",
        Access::Roles(ADMINS),
    ),
    // Change requests: a tenant admin files them for their tenant (a platform admin may file one for any tenant);
    // whoever may read jobs reads them (a tenant admin their tenant's only); deciding one is for admins, and
    // never the requester (checked with the request).
    (
        "POST",
        "/platform/tenants/{slug}/change-requests",
        Access::Roles(ADMINS_AND_TENANT_ADMINS),
    ),
    (
        "POST",
        "/platform/change-requests",
        Access::Roles(ADMINS_AND_TENANT_ADMINS),
    ),
    (
        "GET",
        "/platform/change-requests",
        Access::Roles(ALL_ROLES_AND_TENANT_ADMINS),
    ),
    (
        "GET",
        "/platform/change-requests/{change_request_id}",
        Access::Roles(ALL_ROLES_AND_TENANT_ADMINS),
    ),
    (
        "POST",
        "/platform/change-requests/{change_request_id}/approve",
        Access::Roles(ADMINS),
    ),
    (
        "POST",
        "/platform/change-requests/{change_request_id}/reject",
        Access::Roles(ADMINS),
    ),
    // The console's own routes: the way in, sign-in form, assets, and the wizard (admins, like provisioning).
    ("GET", "/", Access::Public),
    ("GET", "/platform", Access::Public),
    ("GET", "/platform/login", Access::Public),
    ("GET", "/platform/assets/{name}", Access::Public),
    ("GET", "/platform/tenants/new", Access::Roles(ADMINS)),
    ("POST", "/platform/tenants/new", Access::Roles(ADMINS)),
    // A form cannot send DELETE: the notifications page's Remove button posts here.
    (
        "POST",
        "/platform/webhooks/{webhook_id}/remove",
        Access::Roles(ADMINS),
    ),
];

/// The policy entry for a route, if any.
pub fn access_for(method: &Method, path: &str) -> Option<Access> {
    POLICY
        .iter()
        .find(|(policy_method, policy_path, _)| {
            *policy_method == method.as_str() && *policy_path == path
        })
        .map(|(_, _, access)| *access)
}

/// An API token as handed to its owner: `tnt_<id>.<secret>`.
pub fn format_token(token_id: &str, secret: &str) -> String {
    format!("tnt_{token_id}.{secret}")
}

fn parse_token(presented: &str) -> Option<(&str, &str)> {
    presented.strip_prefix("tnt_")?.split_once('.')
}

/// The credentials of an `Authorization: Bearer …` header. The scheme is case-insensitive (RFC 9110 §11.1), so
/// `bearer` and `BEARER` count too.
fn bearer_credentials(authorization: &str) -> Option<&str> {
    let (scheme, credentials) = authorization.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(credentials.trim())
}

fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Finds the caller from a bearer token or a session cookie. `Ok(None)` when no credentials were presented;
/// `Err` when credentials were presented and are not valid.
pub async fn authenticate(
    state: &ServerState,
    headers: &HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    let registry = &state.platform.registry;
    if let Some(authorization) = headers.get(header::AUTHORIZATION) {
        let presented = authorization
            .to_str()
            .ok()
            .and_then(bearer_credentials)
            .ok_or_else(ApiError::unauthenticated)?;
        let (token_id, secret) =
            parse_token(presented.trim()).ok_or_else(ApiError::unauthenticated)?;
        // Remembered tokens are trusted only while the registry has not changed, so a revocation from any process
        // is refused by the next request (see `cache::TokenCache`).
        let known = state
            .tokens
            .lookup(registry, token_id)
            .await?
            .ok_or_else(ApiError::unauthenticated)?;
        let matches: bool = sha256_hex(secret)
            .as_bytes()
            .ct_eq(known.secret_hash.as_bytes())
            .into();
        if !matches || !known.is_usable(now_millis()) {
            return Err(ApiError::unauthenticated());
        }
        return Ok(Some(Principal {
            user_id: known.user_id.clone(),
            email: known.email.clone(),
            role: known.role,
            tenant_slug: known.tenant_slug.clone(),
            credential: Credential::Token {
                token_id: known.token_id.clone(),
            },
        }));
    }
    if let Some(session_value) = cookie_value(headers, SESSION_COOKIE) {
        let session_hash = sha256_hex(session_value);
        let Some((session, user)) = registry.get_session_with_user(&session_hash).await? else {
            return Err(ApiError::unauthenticated());
        };
        return Ok(Some(Principal {
            user_id: user.id,
            email: user.email,
            role: user.role,
            tenant_slug: user.tenant_slug,
            credential: Credential::Session {
                csrf_token: session.csrf_token,
                session_hash,
            },
        }));
    }
    Ok(None)
}

/// Applies the policy to every routed request: public routes pass; others need a principal whose role the
/// route allows; cookie-authenticated writes also need the session's CSRF token.
pub async fn enforce_policy(
    State(state): State<ServerState>,
    request: Request,
    next: Next,
) -> Response {
    match authorize(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(error) => axum::response::IntoResponse::into_response(error),
    }
}

async fn authorize(state: &ServerState, request: Request) -> Result<Request, ApiError> {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_owned())
        .unwrap_or_default();
    let access = access_for(request.method(), &path);
    let principal = match access {
        Some(Access::Public) => authenticate(state, request.headers()).await.ok().flatten(),
        Some(Access::Roles(roles)) => {
            let principal = authenticate(state, request.headers())
                .await?
                .ok_or_else(ApiError::unauthenticated)?;
            if !roles.contains(&principal.role) {
                // To a tenant admin the platform's other routes do not exist: 404, as for another tenant.
                if principal.is_tenant_scoped() {
                    return Err(ApiError::not_found("this path"));
                }
                return Err(ApiError::forbidden(principal.role.as_str()));
            }
            Some(principal)
        }
        None => {
            let allowed: Vec<&str> = POLICY
                .iter()
                .filter(|(_, policy_path, _)| *policy_path == path)
                .map(|(method, _, _)| *method)
                .collect();
            if !allowed.is_empty() {
                // A known path with a method it does not serve.
                let mut error = ApiError::new(
                    axum::http::StatusCode::METHOD_NOT_ALLOWED,
                    tenantry_core::ErrorCode::InvalidInput,
                    format!(
                        "{} is not served here; use {}",
                        request.method(),
                        allowed.join(" or ")
                    ),
                );
                error.allow = Some(allowed.join(", "));
                return Err(error);
            }
            tracing::error!(method = %request.method(), path, "route has no policy entry; refused");
            return Err(ApiError::forbidden("any"));
        }
    };
    let mut request = request;
    if let Some(principal) = principal
        .as_ref()
        .filter(|principal| principal.is_tenant_scoped())
    {
        let (mut parts, body) = request.into_parts();
        let params = RawPathParams::from_request_parts(&mut parts, state)
            .await
            .map_err(|_| ApiError::not_found("this path"))?;
        check_tenant_scope(state, principal, &params).await?;
        request = Request::from_parts(parts, body);
    }
    if let Some(principal) = &principal {
        if let Credential::Session { csrf_token, .. } = &principal.credential {
            if !matches!(
                *request.method(),
                Method::GET | Method::HEAD | Method::OPTIONS
            ) {
                request = check_csrf(request, csrf_token).await?;
            }
        }
    }
    if let Some(principal) = principal {
        request.extensions_mut().insert(principal);
    }
    Ok(request)
}

/// Holds a tenant admin to their tenant on a route the policy lets them call: every path parameter must name
/// their tenant or something of it (a job, a change request), or the answer is 404, the same as for something that
/// does not exist. A parameter this does not know is refused too (deny by default): a new route that lets tenant
/// admins in must teach this its parameter.
pub async fn check_tenant_scope(
    state: &ServerState,
    principal: &Principal,
    params: &RawPathParams,
) -> Result<(), ApiError> {
    let registry = &state.platform.registry;
    for (name, value) in params {
        let owner = match name {
            "slug" => Some(value.to_owned()),
            "job_id" => match registry.get_job(value).await {
                Ok(job) => Some(job.tenant_slug),
                Err(tenantry_registry::Error::NotFound { .. }) => None,
                Err(error) => return Err(error.into()),
            },
            "change_request_id" => registry
                .get_change_request(value)
                .await?
                .map(|request| request.tenant_slug),
            _ => None,
        };
        if !owner.is_some_and(|owner| principal.may_see_tenant(&owner)) {
            return Err(ApiError::not_found(format!("{name} {value:?}")));
        }
    }
    Ok(())
}

/// Accepts a write only if it carries the session's CSRF token (header, or form field for plain HTML forms).
async fn check_csrf(request: Request, expected: &str) -> Result<Request, ApiError> {
    let forbidden = || {
        ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        tenantry_core::ErrorCode::Forbidden,
        "the form is stale or was not sent by the console (CSRF token missing or wrong); reload the page",
    )
    };
    let token_matches =
        |presented: &str| -> bool { presented.as_bytes().ct_eq(expected.as_bytes()).into() };
    if let Some(presented) = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok())
    {
        return if token_matches(presented) {
            Ok(request)
        } else {
            Err(forbidden())
        };
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|content_type| content_type.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(forbidden());
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1024 * 1024)
        .await
        .map_err(|_| ApiError::bad_request("the form is too large"))?;
    let presented = form_field(&bytes, CSRF_FIELD).ok_or_else(forbidden)?;
    if !token_matches(&presented) {
        return Err(forbidden());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::bearer_credentials;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in ["Bearer tnt_a.b", "bearer tnt_a.b", "BEARER  tnt_a.b "] {
            assert_eq!(bearer_credentials(header), Some("tnt_a.b"), "{header}");
        }
        assert_eq!(bearer_credentials("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_credentials("Bearertnt_a.b"), None);
    }
}
