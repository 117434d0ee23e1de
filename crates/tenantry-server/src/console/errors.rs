//! Errors as a person in a browser should meet them: an unauthenticated page view goes to the sign-in page, and
//! any other problem+json answer (from the policy, a handler or the fallback) becomes an HTML page that names
//! the error code, what it means and what to do.

use super::layout::{html_response, query_escape, see_other, shell, Section, Viewer};
use super::negotiate::prefers_html;
use crate::error::ApiError;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::html;
use tenantry_core::ErrorCode;

/// The largest problem+json body this layer reads back to re-render as HTML.
const MAX_PROBLEM_BYTES: usize = 64 * 1024;

/// Middleware around every route: for callers that prefer HTML, problem+json answers become pages, and a 401
/// becomes a redirect to `/platform/login?next=…`. Everyone else gets the API's answer untouched.
pub async fn render_html_errors(request: Request, next: Next) -> Response {
    if !prefers_html(request.headers()) {
        return next.run(request).await;
    }
    let is_page_view = matches!(*request.method(), Method::GET | Method::HEAD);
    let requested = request
        .uri()
        .path_and_query()
        .map(|path_and_query| path_and_query.as_str().to_owned())
        .unwrap_or_default();
    let response = next.run(request).await;
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|content_type| content_type.starts_with("application/problem+json"));
    if !is_problem {
        return response;
    }
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        let after_sign_in = if is_page_view && requested.starts_with("/platform/") {
            requested
        } else {
            "/platform/tenants".to_owned()
        };
        return see_other(&format!(
            "/platform/login?next={}",
            query_escape(&after_sign_in)
        ));
    }
    let body = axum::body::to_bytes(response.into_body(), MAX_PROBLEM_BYTES)
        .await
        .unwrap_or_default();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let detail = problem["detail"].as_str().unwrap_or_default();
    // The body came from this server's own API, so its code is known; if it is not, the page says so in the
    // detail rather than passing the code off as another one. A body without a code is an internal error.
    match ErrorCode::parse(problem["error_code"].as_str().unwrap_or("E_INTERNAL")) {
        Ok(code) => error_page(None, status, code, detail),
        Err(unknown) => error_page(
            None,
            status,
            ErrorCode::Internal,
            &format!("{unknown}. {detail}"),
        ),
    }
}

/// An error page: the status, the code with its meaning, the detail, and what to do.
pub fn error_page(
    viewer: Option<&Viewer>,
    status: StatusCode,
    code: ErrorCode,
    detail: &str,
) -> Response {
    let heading = status.canonical_reason().unwrap_or("Error");
    let body = html! {
        div.error-page {
            h1 { (heading) }
            p.error-code { code { (code.as_str()) } " — " (code.meaning()) }
            @if !detail.is_empty() { p.error-detail { (detail) } }
            p.error-remedy { strong { "What to do: " } (code.remedy()) }
            p { a href="/platform/tenants" { "Back to tenants" } }
        }
    };
    html_response(status, shell(viewer, Section::None, heading, body))
}

/// An error met while building a page, shown with the operator's navigation. Boxed: it travels in `Result`s.
pub struct PageError(Box<PageErrorParts>);

struct PageErrorParts {
    viewer: Option<Viewer>,
    error: ApiError,
}

impl PageError {
    pub fn new(viewer: &Viewer, error: impl Into<ApiError>) -> PageError {
        PageError(Box::new(PageErrorParts {
            viewer: Some(viewer.clone()),
            error: error.into(),
        }))
    }

    /// For pages shown before anyone signed in.
    pub fn anonymous(error: impl Into<ApiError>) -> PageError {
        PageError(Box::new(PageErrorParts {
            viewer: None,
            error: error.into(),
        }))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let PageErrorParts { viewer, error } = *self.0;
        let detail = if error.status.is_server_error() {
            // As for the API: the detail goes to the log, the page gets a reference to quote.
            let reference = uuid::Uuid::now_v7().simple().to_string();
            tracing::error!(reference, code = %error.error.code, detail = %error.error.message, "page failed");
            format!("the page could not be built; quote reference {reference} to an operator")
        } else {
            error.error.message.clone()
        };
        error_page(viewer.as_ref(), error.status, error.error.code, &detail)
    }
}

/// `?` for page handlers: any error the API knows becomes a [`PageError`] shown with the viewer's navigation.
pub trait OrPage<T> {
    fn or_page(self, viewer: &Viewer) -> Result<T, PageError>;
}

impl<T, E: Into<ApiError>> OrPage<T> for Result<T, E> {
    fn or_page(self, viewer: &Viewer) -> Result<T, PageError> {
        self.map_err(|error| PageError::new(viewer, error))
    }
}
