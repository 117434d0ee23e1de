//! Console sign-in and sign-out: a session cookie (HttpOnly, SameSite=Strict) and its CSRF token.

use crate::auth::{sha256_hex, Principal, SESSION_COOKIE};
use crate::error::{ApiError, ApiResult, ProblemDetails};
use crate::state::ServerState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
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

fn session_cookie(state: &ServerState, value: &str, max_age_secs: i64) -> String {
    let secure = if state.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}")
}

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
        (status = 401, body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn login(
    State(state): State<ServerState>,
    Form(form): Form<LoginForm>,
) -> ApiResult<Response> {
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            tenantry_core::ErrorCode::Unauthenticated,
            "wrong email or password",
        )
    };
    let user = state
        .platform
        .registry
        .get_user_by_email(&form.email.trim().to_ascii_lowercase())
        .await?;
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
    let next = form
        .next
        .filter(|next| next.starts_with("/platform/") && !next.starts_with("//"))
        .unwrap_or_else(|| "/platform/tenants".into());
    Ok(redirect(
        &next,
        Some(session_cookie(&state, session_value.expose(), ttl)),
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
        Some(session_cookie(&state, "", 0)),
    ))
}
