//! The HTTP side of tenantry: the REST API (problem+json errors, roles, idempotency, rate limits), live job
//! events over SSE, metrics and health, and the console's routes. Only this crate knows HTTP.

pub mod api;
pub mod auth;
pub mod boundary;
pub mod cache;
pub mod client;
pub mod console;
pub mod error;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod routes;
pub mod state;

pub use state::{ServerSettings, ServerState};

use axum::Router;

/// The whole router: every route, each behind the policy check, all behind the boundary checks (URI length,
/// body size, NUL bytes). Browsers get errors as pages (and a sign-in redirect instead of a 401); everyone else
/// gets problem+json.
pub fn router(state: ServerState) -> Router {
    let mut router = Router::new();
    for route in routes::all_routes() {
        router = router.route(route.path, route.handler);
    }
    router
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::enforce_policy,
        ))
        .fallback(|| async { error::ApiError::not_found("this path") })
        .layer(axum::middleware::from_fn(boundary::refuse_malformed))
        .layer(axum::middleware::from_fn(console::render_html_errors))
        .with_state(state)
}
