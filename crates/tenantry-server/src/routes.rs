//! Every route of the server, by method and path template, with its handler. The policy for each is in
//! `auth::POLICY`; a test checks that every route here has one.

use crate::api::{jobs, servers, session, system, tenants};
use crate::state::ServerState;
use axum::routing::{get, post, MethodRouter};

/// A route: method, path template (axum syntax) and handler.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub handler: MethodRouter<ServerState>,
}

fn route(method: &'static str, path: &'static str, handler: MethodRouter<ServerState>) -> Route {
    Route {
        method,
        path,
        handler,
    }
}

/// The API's routes. The console's pages (another module) add theirs through the same table.
pub fn api_routes() -> Vec<Route> {
    vec![
        route("GET", "/healthz", get(system::healthz)),
        route("GET", "/readyz", get(system::readyz)),
        route("GET", "/metrics", get(system::metrics)),
        route("GET", "/platform/openapi.json", get(system::openapi)),
        route("POST", "/platform/login", post(session::login)),
        route("POST", "/platform/logout", post(session::logout)),
        route("GET", "/platform/me", get(system::me)),
        route("GET", "/platform/tenants", get(tenants::list_tenants)),
        route("POST", "/platform/tenants", post(tenants::create_tenant)),
        route("GET", "/platform/tenants/{slug}", get(tenants::get_tenant)),
        route(
            "POST",
            "/platform/tenants/{slug}/offboard",
            post(tenants::offboard_tenant),
        ),
        route("GET", "/platform/jobs", get(jobs::list_jobs)),
        route("GET", "/platform/jobs/{job_id}", get(jobs::get_job)),
        route(
            "GET",
            "/platform/jobs/{job_id}/events",
            get(jobs::job_events),
        ),
        route(
            "POST",
            "/platform/jobs/{job_id}/retry",
            post(jobs::retry_job),
        ),
        route(
            "POST",
            "/platform/jobs/{job_id}/rollback",
            post(jobs::rollback_job),
        ),
        route("GET", "/platform/servers", get(servers::list_servers)),
        route("POST", "/platform/servers", post(servers::create_server)),
        route(
            "POST",
            "/platform/servers/{name}/drain",
            post(servers::drain_server),
        ),
        route("GET", "/platform/audit", get(system::list_audit)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{access_for, POLICY};
    use axum::http::Method;

    #[test]
    fn every_route_has_a_policy_entry() {
        for route in api_routes() {
            let method = Method::from_bytes(route.method.as_bytes()).unwrap();
            assert!(
                access_for(&method, route.path).is_some(),
                "{} {} has no entry in auth::POLICY: it would be refused",
                route.method,
                route.path
            );
        }
    }

    #[test]
    fn every_policy_entry_names_a_route() {
        let routes = api_routes();
        for (method, path, _) in POLICY {
            assert!(
                routes
                    .iter()
                    .any(|route| route.method == *method && route.path == *path),
                "auth::POLICY names {method} {path}, which is not a route"
            );
        }
    }
}
