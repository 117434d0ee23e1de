//! The REST handlers, grouped by resource, and the request and response bodies they exchange.

pub mod backups;
pub mod change_requests;
pub mod jobs;
pub mod notifications;
pub mod plans;
pub mod rollouts;
pub mod servers;
pub mod session;
pub mod system;
pub mod tenants;

use crate::boundary::body_too_large;
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tenantry_core::ErrorCode;

/// A JSON body whose errors (malformed JSON, unknown or missing fields, wrong types) are problem+json 400s; a
/// body over the size limit is a 413, and one that is not JSON a 415.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(body_too_large())
            }
            Err(rejection) => Err(ApiError::bad_request(match rejection {
                JsonRejection::JsonDataError(error) => {
                    format!("the body does not fit: {}", error.body_text())
                }
                JsonRejection::JsonSyntaxError(error) => {
                    format!("the body is not valid JSON: {}", error.body_text())
                }
                JsonRejection::MissingJsonContentType(_) => {
                    "send the body as application/json".to_owned()
                }
                other => other.body_text(),
            })),
        }
    }
}

/// A form body (`application/x-www-form-urlencoded`) whose errors are problem+json: 415 for another content type
/// (JSON to the sign-in form, say), 413 over the size limit, 400 for fields that do not fit.
pub struct ApiForm<T>(pub T);

impl<S, T> FromRequest<S> for ApiForm<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(request, state).await {
            Ok(axum::Form(value)) => Ok(ApiForm(value)),
            Err(rejection) => Err(match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => body_too_large(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    ErrorCode::InvalidInput,
                    "send this as a form (application/x-www-form-urlencoded); API clients use a bearer token",
                ),
                _ => ApiError::bad_request(format!(
                    "the form does not fit: {}",
                    rejection.body_text()
                )),
            }),
        }
    }
}

/// A raw body whose only error, being over the size limit, is a problem+json 413.
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(ApiBytes(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(body_too_large())
            }
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// Query parameters whose errors are problem+json 400s.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(error)) => Err(
                ApiError::bad_request(format!("the query is not valid: {}", error.body_text())),
            ),
            Err(other) => Err(ApiError::bad_request(other.body_text())),
        }
    }
}

/// `202 Accepted`: the job that will do the work.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobAccepted {
    pub job_id: String,
    pub tenant_slug: String,
    /// `pending` (a worker runs it next), or `awaiting_approval` (it waits for a PLATFORM_ADMIN other than the
    /// requester), or the status of the job an idempotent repeat refers to.
    pub status: String,
}

impl JobAccepted {
    pub fn of(job: &tenantry_registry::JobRecord) -> JobAccepted {
        JobAccepted {
            job_id: job.id.clone(),
            tenant_slug: job.tenant_slug.clone(),
            status: job.status.as_str().to_owned(),
        }
    }
}

pub use tenantry_core::{checked_budget, MAX_BUDGET};

/// Clamps a page size to 1..=500 (default 100).
pub fn page_limit(limit: Option<i64>) -> i64 {
    limit.unwrap_or(100).clamp(1, 500)
}
