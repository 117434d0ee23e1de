//! Console sign-in and sign-out: a session cookie (HttpOnly, SameSite=Strict, and Secure over HTTPS) and its CSRF
//! token. Password guessing is throttled per account and per client address (`rate_limit::SignInThrottle`).

use super::ApiForm;
use crate::auth::{sha256_hex, Principal, SESSION_COOKIE};
use crate::client::ClientContext;
use crate::error::{ApiError, ApiResult, ProblemDetails};
use crate::rate_limit::SignInKey;
use crate::state::ServerState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use tenantry_providers::credentials::{hash_password, random_token, verify_password, SecretString};
use tenantry_registry::now_millis;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginForm {
    pub email: String,
    pub password: String,
    /// Where to go after signing in (a path under /platform/).
    pub next: Option<String>,
}

fn unknown_user_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&random_token(16)).unwrap_or_default())
        .clone()
}

fn session_cookie(value: &str, max_age_secs: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}")
}

/// Where to go after signing in: a console path of visible ASCII characters, or the tenants list. Anything else
/// (another site, `//host`, a backslash, CR/LF that would split the `Location` header) is replaced, not refused:
/// the person signed in all the same.
pub fn safe_next(next: Option<&str>) -> &str {
    next.filter(|next| {
        next.starts_with("/platform/")
            && !next.starts_with("//")
            && next
                .bytes()
                .all(|byte| byte.is_ascii_graphic() && byte != b'\\')
    })
    .unwrap_or(DEFAULT_NEXT)
}

/// Where a sign-in leads when the form names nowhere else.
const DEFAULT_NEXT: &str = "/platform/tenants";

fn redirect(location: &str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if let Some(cookie) = cookie.and_then(|cookie| HeaderValue::from_str(&cookie).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Sign in with email and password (a form post); answers with the session cookie and a redirect.
#[utoipa::path(post, path = "/platform/login", tag = "session",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Signed in; the cookie is set"),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "Not a form", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed sign-ins for the account or the address", body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn login(
    State(state): State<ServerState>,
    client: ClientContext,
    ApiForm(form): ApiForm<LoginForm>,
) -> ApiResult<Response> {
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            tenantry_core::ErrorCode::Unauthenticated,
            "wrong email or password",
        )
    };
    let email = form.email.trim().to_ascii_lowercase();
    let throttle_keys = [
        SignInKey::Account(email.clone()),
        SignInKey::Address(
            client
                .address
                .map_or_else(|| "unknown".to_owned(), |address| address.to_string()),
        ),
    ];
    if let Err(retry_after) = state
        .sign_in_throttle
        .begin(&throttle_keys, std::time::Instant::now())
    {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            tenantry_core::ErrorCode::RateLimited,
            format!("too many failed sign-ins for this account or address; try again in {retry_after} s"),
        );
        error.retry_after = Some(retry_after);
        return Err(error);
    }
    // No email holds a NUL, and PostgreSQL refuses one in text: such an email is simply unknown.
    let user = if email.contains('\0') {
        None
    } else {
        state.platform.registry.get_user_by_email(&email).await?
    };
    // Verify against a real hash even for an unknown email, so the answer takes as long either way.
    let stored_hash = match &user {
        Some(user) => user.password_hash.clone(),
        None => unknown_user_hash(),
    };
    let password = SecretString::new(form.password);
    let verified = tokio::task::spawn_blocking(move || verify_password(&password, &stored_hash))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| verified) else {
        return Err(refused());
    };
    state.sign_in_throttle.succeeded(&throttle_keys);
    let session_value = random_token(32);
    let csrf_token = random_token(24);
    let ttl = state.settings.session_ttl_secs;
    state
        .platform
        .registry
        .create_session(
            &sha256_hex(session_value.expose()),
            &user.id,
            csrf_token.expose(),
            now_millis() + ttl * 1000,
        )
        .await?;
    let next = safe_next(form.next.as_deref());
    // A tenant admin may see one tenant's page and not the tenants list: the way in leads there instead. A
    // slug is lowercase letters, digits and hyphens, so it goes into the path as it is.
    let own_tenant_page = user
        .tenant_slug
        .as_deref()
        .filter(|_| next == DEFAULT_NEXT)
        .map(|slug| format!("{DEFAULT_NEXT}/{slug}"));
    Ok(redirect(
        own_tenant_page.as_deref().unwrap_or(next),
        Some(session_cookie(session_value.expose(), ttl, client.https)),
    ))
}

/// Sign out: the session ends and the cookie is cleared.
#[utoipa::path(post, path = "/platform/logout", tag = "session",
    responses((status = 303, description = "Signed out"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn logout(
    State(state): State<ServerState>,
    Extension(_principal): Extension<Principal>,
    client: ClientContext,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(value) = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
    {
        state
            .platform
            .registry
            .delete_session(&sha256_hex(&value))
            .await?;
    }
    Ok(redirect(
        "/platform/login",
        Some(session_cookie("", 0, client.https)),
    ))
}
