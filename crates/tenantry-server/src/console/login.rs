//! The sign-in page (`GET /platform/login`) and the browser side of `POST /platform/login`: a wrong password
//! shows the form again with the message, instead of a problem+json body.

use super::errors::PageError;
use super::layout::{html_response, shell, Field, Section, Viewer};
use crate::api::session::{self, safe_next, LoginForm};
use crate::api::ApiForm;
use crate::auth::Principal;
use crate::client::ClientContext;
use crate::error::ApiError;
use crate::state::ServerState;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

fn login_page(
    signed_in: Option<&Principal>,
    next: &str,
    email: &str,
    refusal: Option<&str>,
) -> Markup {
    let email_field = Field {
        input_type: "email",
        autocomplete: Some("username"),
        required: true,
        ..Field::text("email", "Email", email)
    };
    let password_field = Field {
        input_type: "password",
        autocomplete: Some("current-password"),
        required: true,
        error: refusal,
        ..Field::text("password", "Password", "")
    };
    let body = html! {
        div.login-card {
            h1 { "Sign in to tenantry" }
            @if let Some(principal) = signed_in {
                p.notice {
                    "You are signed in as " strong { (principal.email) } ". "
                    a href=(next) { "Continue" }
                }
            }
            form.stack method="post" action="/platform/login" {
                // A browser that still holds a session must pass the CSRF check on this post too.
                @if let Some(principal) = signed_in { (Viewer::new(principal).csrf_field()) }
                input type="hidden" name="next" value=(next);
                (email_field.render())
                (password_field.render())
                button.primary type="submit" { "Sign in" }
            }
            p.hint {
                "No account yet? An admin creates one with "
                code { "tenantry users add --email you@example.com --role PLATFORM_ADMIN --password-stdin" }
                "."
            }
        }
    };
    shell(None, Section::None, "Sign in", body)
}

/// `GET /platform/login`: the form.
pub async fn login_form(
    principal: Option<Extension<Principal>>,
    Query(query): Query<LoginQuery>,
) -> Response {
    let principal = principal.map(|Extension(principal)| principal);
    let next = safe_next(query.next.as_deref());
    html_response(
        StatusCode::OK,
        login_page(principal.as_ref(), next, "", None),
    )
}

/// The sign-in form's fields, as a browser posts them.
#[derive(Debug, Deserialize)]
pub struct LoginFields {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

/// `POST /platform/login` from a browser: signs in and redirects, or shows the form again with the refusal.
pub async fn login_submit(
    State(state): State<ServerState>,
    principal: Option<Extension<Principal>>,
    client: ClientContext,
    ApiForm(fields): ApiForm<LoginFields>,
) -> Response {
    let principal = principal.map(|Extension(principal)| principal);
    let email = fields.email.clone();
    let next = safe_next(fields.next.as_deref()).to_owned();
    let form = LoginForm {
        email: fields.email,
        password: fields.password,
        next: Some(next.clone()),
    };
    match session::login(State(state), client, ApiForm(form)).await {
        Ok(response) => response,
        Err(ApiError { status, .. }) if status == StatusCode::UNAUTHORIZED => html_response(
            StatusCode::UNAUTHORIZED,
            login_page(
                principal.as_ref(),
                &next,
                &email,
                Some("Wrong email or password."),
            ),
        ),
        Err(ApiError {
            status,
            retry_after: Some(retry_after),
            ..
        }) if status == StatusCode::TOO_MANY_REQUESTS => {
            let refusal =
                format!("Too many failed sign-ins. Wait {retry_after} s, then try again.");
            let mut response = html_response(
                StatusCode::TOO_MANY_REQUESTS,
                login_page(principal.as_ref(), &next, &email, Some(&refusal)),
            );
            if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Err(error) => PageError::anonymous(error).into_response(),
    }
}
