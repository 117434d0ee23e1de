//! The one error type of the API and its mapping to HTTP: RFC 9457 problem+json with a stable `error_code`.
//! A 5xx body says nothing internal; its detail goes to the log under a reference the client can quote.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tenantry_core::{Error as CodedError, ErrorCode};

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemDetails {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The stable code from tenantry's error table.
    pub error_code: String,
    /// The request field the error is about, as the request names it (`description`, `data_sources[1].url`,
    /// `security.allowed_cidrs`), when the error concerns one field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: CodedError,
    /// Seconds to wait, for 429 and 503.
    pub retry_after: Option<u64>,
    /// The methods a path serves, for 405.
    pub allow: Option<String>,
    /// The request field the error is about, when one is.
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: CodedError::new(code, message),
            retry_after: None,
            allow: None,
            field: None,
        }
    }

    pub fn unauthenticated() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            "present a valid API token (Authorization: Bearer …) or sign in",
        )
    }

    pub fn forbidden(role: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!("the role {role} may not do this"),
        )
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("{} not found", what.into()),
        )
    }

    /// This error as about the request's field `field` (the body's `field` member).
    pub fn at_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidInput, message)
    }
}

/// The HTTP status for each error code: the number from the code's row in the core table, as axum's type. Only
/// this crate knows HTTP.
pub fn status_for(code: ErrorCode) -> StatusCode {
    // Every status in the table is a valid one (a unit test here checks them all); a bad one would surface as a
    // 500, never as a panic.
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl From<CodedError> for ApiError {
    fn from(error: CodedError) -> Self {
        ApiError {
            status: status_for(error.code),
            error,
            retry_after: None,
            allow: None,
            field: None,
        }
    }
}

impl From<tenantry_registry::Error> for ApiError {
    fn from(error: tenantry_registry::Error) -> Self {
        ApiError::from(tenantry_workflows::registry_error(error))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = if self.status.is_server_error() {
            let reference = uuid::Uuid::now_v7().simple().to_string();
            tracing::error!(reference, code = %self.error.code, detail = %self.error.message, "request failed");
            format!(
                "the request could not be completed; quote reference {reference} to an operator"
            )
        } else {
            self.error.message.clone()
        };
        let body = ProblemDetails {
            problem_type: format!("https://tenantry.dev/errors/{}", self.error.code.as_str()),
            title: self.error.code.meaning().to_owned(),
            status: self.status.as_u16(),
            detail,
            error_code: self.error.code.as_str().to_owned(),
            field: self.field,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tenantry\""),
            );
        }
        if let Some(allow) = self
            .allow
            .as_deref()
            .and_then(|allow| HeaderValue::from_str(allow).ok())
        {
            headers.insert(header::ALLOW, allow);
        }
        if let Some(seconds) = self.retry_after {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                headers.insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_valid_status() {
        for code in ErrorCode::ALL {
            assert_eq!(
                StatusCode::from_u16(code.http_status()).ok(),
                Some(status_for(code)),
                "{code}"
            );
        }
    }
}
