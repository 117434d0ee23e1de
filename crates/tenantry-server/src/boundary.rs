//! What every request must satisfy before any handler sees it, answered as problem+json like every other error:
//! a URI of bounded length (414), a declared body of bounded size (413), and no NUL byte in the path or the query
//! (400). A NUL is valid in a URI as `%00`, but no name, slug, id or filter of tenantry can hold one, and
//! PostgreSQL refuses it in text, which made it a 500 on every route that passed it to the registry.

use crate::error::ApiError;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tenantry_core::ErrorCode;

/// The longest path and query accepted. Filters and ids are short; this leaves room for any real one.
/// (hyper itself answers a URI over 64 KiB with an empty 414 before the router sees it.)
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The largest request body accepted: axum's default limit for the extractors, checked here on the declared
/// length so the answer comes before the body is read.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The problem for a body over [`MAX_BODY_BYTES`].
pub fn body_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::InvalidInput,
        format!(
            "the request body is larger than {} MiB",
            MAX_BODY_BYTES / (1024 * 1024)
        ),
    )
}

/// Whether a percent-encoded URI part holds a NUL byte. A NUL can only arrive encoded (`%00`): a raw one is
/// refused by the HTTP parser.
fn holds_nul(encoded: &str) -> bool {
    encoded
        .as_bytes()
        .windows(3)
        .any(|window| window[0] == b'%' && window[1] == b'0' && window[2] == b'0')
        || encoded.contains('\0')
}

/// The checks, in the order a reader would expect: length, body size, content.
pub fn check(request: &Request) -> Result<(), ApiError> {
    let uri = request.uri();
    let path = uri.path();
    let query = uri.query().unwrap_or_default();
    if path.len() + query.len() > MAX_URI_BYTES {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            ErrorCode::InvalidInput,
            format!("the path and query are longer than {MAX_URI_BYTES} bytes"),
        ));
    }
    let declared_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(body_too_large());
    }
    if holds_nul(path) || holds_nul(query) {
        return Err(ApiError::bad_request(
            "the path or query holds a NUL byte (%00), which no name, id or filter can contain",
        ));
    }
    Ok(())
}

/// How much of a refused body is read and thrown away before the refusal is sent, and for how long. A client
/// still writing when the server closes the connection gets a broken pipe instead of the answer; reading what it
/// sends (up to these bounds) lets it read the 413.
const DRAIN_MAX_BYTES: usize = 16 * 1024 * 1024;
const DRAIN_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and discards what is left of a refused body, within [`DRAIN_MAX_BYTES`] and [`DRAIN_MAX_TIME`].
async fn drain(stream: impl futures_util::Stream<Item = Result<axum::body::Bytes, axum::Error>>) {
    use futures_util::StreamExt;
    let mut stream = std::pin::pin!(stream);
    let mut drained = 0usize;
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            drained += chunk.len();
            if drained > DRAIN_MAX_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Middleware around every route (and the fallback): refuses what [`check`] refuses. A body of no declared
/// length (chunked) is read here, within [`MAX_BODY_BYTES`], so one that is too large is refused like a declared
/// one, and a refused body is drained so the client can read the answer.
pub async fn refuse_malformed(request: Request, next: Next) -> Response {
    if let Err(error) = check(&request) {
        if error.status == StatusCode::PAYLOAD_TOO_LARGE {
            drain(request.into_body().into_data_stream()).await;
        }
        return error.into_response();
    }
    let chunked = !request.headers().contains_key(header::CONTENT_LENGTH)
        && request.headers().contains_key(header::TRANSFER_ENCODING);
    if !chunked {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let mut stream = std::pin::pin!(body.into_data_stream());
    let mut buffered = Vec::new();
    {
        use futures_util::StreamExt;
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else {
                return ApiError::bad_request("the request body could not be read").into_response();
            };
            buffered.extend_from_slice(&chunk);
            if buffered.len() > MAX_BODY_BYTES {
                drain(stream).await;
                return body_too_large().into_response();
            }
        }
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(buffered)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str) -> Request {
        Request::builder()
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn refuses_nul_anywhere_in_path_or_query() {
        for uri in [
            "/platform/tenants/%00",
            "/platform/jobs?tenant=a%00b",
            "/platform/audit?actor=x&event_type=%00",
        ] {
            let error = check(&request(uri)).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(error.error.code, ErrorCode::InvalidInput);
        }
        // `%2500` is a literal "%00" of three characters, not a NUL.
        assert!(check(&request("/platform/tenants?search=%2500")).is_ok());
        assert!(check(&request("/platform/tenants?search=a%20b")).is_ok());
    }

    #[test]
    fn refuses_long_uris_and_large_declared_bodies() {
        let long = format!("/platform/tenants?search={}", "a".repeat(MAX_URI_BYTES));
        assert_eq!(
            check(&request(&long)).unwrap_err().status,
            StatusCode::URI_TOO_LONG
        );
        let large = Request::builder()
            .uri("/platform/tenants")
            .header(header::CONTENT_LENGTH, (MAX_BODY_BYTES + 1).to_string())
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(
            check(&large).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
