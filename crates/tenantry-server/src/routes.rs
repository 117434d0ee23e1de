//! Every route of the server, by method and path template, with its handler. The policy for each is in
//! `auth::POLICY`; a test checks that every route here has one.

use crate::api::{
    backups, change_requests, jobs, notifications, plans, rollouts, servers, session, system,
    tenants,
};
use crate::console::{self, html_or_json, pages};
use crate::state::ServerState;
use axum::routing::{delete, get, post, MethodFilter, MethodRouter};

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

/// A shared route: a browser that prefers HTML gets the console's `page`, every other caller the API handler.
fn with_page<P, T>(
    method: &'static str,
    path: &'static str,
    api: MethodRouter<ServerState>,
    page: P,
) -> Route
where
    P: axum::handler::Handler<T, ServerState>,
    T: 'static,
{
    let filter = if method == "POST" {
        MethodFilter::POST
    } else {
        MethodFilter::GET
    };
    route(method, path, html_or_json(filter, api, page))
}

/// Every route: the API's and the console's.
pub fn all_routes() -> Vec<Route> {
    let mut routes = api_routes();
    routes.extend(console::page_routes());
    routes
}

/// The API's routes. Where the console has a page or a form for the same path, it answers browsers.
pub fn api_routes() -> Vec<Route> {
    vec![
        route("GET", "/healthz", get(system::healthz)),
        route("GET", "/readyz", get(system::readyz)),
        route("GET", "/metrics", get(system::metrics)),
        route("GET", "/platform/openapi.json", get(system::openapi)),
        with_page(
            "POST",
            "/platform/login",
            post(session::login),
            pages::login_submit,
        ),
        route("POST", "/platform/logout", post(session::logout)),
        route("GET", "/platform/me", get(system::me)),
        with_page(
            "GET",
            "/platform/tenants",
            get(tenants::list_tenants),
            pages::tenants_page,
        ),
        route("POST", "/platform/tenants", post(tenants::create_tenant)),
        route(
            "POST",
            "/platform/data-sources/check",
            post(tenants::check_data_source),
        ),
        with_page(
            "GET",
            "/platform/tenants/{slug}",
            get(tenants::get_tenant),
            pages::tenant_page,
        ),
        route(
            "GET",
            "/platform/tenants/{slug}/resources",
            get(tenants::tenant_resources),
        ),
        route(
            "GET",
            "/platform/tenants/{slug}/schema",
            get(rollouts::tenant_schema),
        ),
        route(
            "GET",
            "/platform/tenants/{slug}/invitation",
            get(tenants::tenant_invitation),
        ),
        with_page(
            "POST",
            "/platform/tenants/{slug}/invitation",
            post(tenants::resend_tenant_invitation),
            pages::resend_invitation_submit,
        ),
        with_page(
            "POST",
            "/platform/tenants/{slug}/offboard",
            post(tenants::offboard_tenant),
            pages::offboard_submit,
        ),
        with_page(
            "POST",
            "/platform/tenants/{slug}/suspend",
            post(tenants::suspend_tenant),
            pages::suspend_submit,
        ),
        with_page(
            "POST",
            "/platform/tenants/{slug}/resume",
            post(tenants::resume_tenant),
            pages::resume_submit,
        ),
        with_page(
            "POST",
            "/platform/tenants/{slug}/rotate-credentials",
            post(tenants::rotate_tenant_credentials),
            pages::rotate_submit,
        ),
        with_page(
            "POST",
            "/platform/tenants/{slug}/move",
            post(tenants::move_tenant),
            pages::move_submit,
        ),
        with_page(
            "POST",
            "/platform/tenants/{slug}/backups",
            post(backups::create_backup),
            pages::backup_submit,
        ),
        with_page(
            "POST",
            "/platform/tenants/{slug}/clone",
            post(backups::clone_tenant),
            pages::clone_submit,
        ),
        route("GET", "/platform/backups", get(backups::list_backups)),
        route(
            "POST",
            "/platform/backups/{backup_id}/restore",
            post(backups::restore_backup),
        ),
        with_page(
            "GET",
            "/platform/jobs",
            get(jobs::list_jobs),
            pages::jobs_page,
        ),
        with_page(
            "GET",
            "/platform/jobs/{job_id}",
            get(jobs::get_job),
            pages::job_page,
        ),
        route(
            "GET",
            "/platform/jobs/{job_id}/events",
            get(jobs::job_events),
        ),
        with_page(
            "POST",
            "/platform/jobs/{job_id}/retry",
            post(jobs::retry_job),
            pages::retry_submit,
        ),
        with_page(
            "POST",
            "/platform/jobs/{job_id}/rollback",
            post(jobs::rollback_job),
            pages::rollback_submit,
        ),
        with_page(
            "POST",
            "/platform/jobs/{job_id}/approve",
            post(jobs::approve_job),
            pages::approve_submit,
        ),
        with_page(
            "POST",
            "/platform/jobs/{job_id}/reject",
            post(jobs::reject_job),
            pages::reject_submit,
        ),
        route("POST", "/platform/rollouts", post(rollouts::create_rollout)),
        with_page(
            "GET",
            "/platform/rollouts",
            get(rollouts::list_rollouts),
            pages::rollouts_page,
        ),
        with_page(
            "GET",
            "/platform/rollouts/{rollout_id}",
            get(rollouts::get_rollout),
            pages::rollout_page,
        ),
        with_page(
            "POST",
            "/platform/rollouts/{rollout_id}/pause",
            post(rollouts::pause_rollout),
            pages::pause_rollout_submit,
        ),
        with_page(
            "POST",
            "/platform/rollouts/{rollout_id}/resume",
            post(rollouts::resume_rollout),
            pages::resume_rollout_submit,
        ),
        with_page(
            "POST",
            "/platform/rollouts/{rollout_id}/abort",
            post(rollouts::abort_rollout),
            pages::abort_rollout_submit,
        ),
        route("GET", "/platform/plans", get(plans::list_plans)),
        route(
            "POST",
            "/platform/tenants/{slug}/plan",
            post(plans::set_plan),
        ),
        route(
            "POST",
            "/platform/tenants/{slug}/reconcile",
            post(plans::reconcile),
        ),
        with_page(
            "GET",
            "/platform/costs",
            get(plans::costs),
            pages::costs_page,
        ),
        with_page(
            "GET",
            "/platform/servers",
            get(servers::list_servers),
            pages::servers_page,
        ),
        with_page(
            "POST",
            "/platform/servers",
            post(servers::create_server),
            pages::add_server_submit,
        ),
        with_page(
            "POST",
            "/platform/servers/{name}/drain",
            post(servers::drain_server),
            pages::drain_submit,
        ),
        with_page(
            "GET",
            "/platform/notifications",
            get(notifications::list_notifications),
            pages::notifications_page,
        ),
        with_page(
            "POST",
            "/platform/notifications/{notification_id}/retry",
            post(notifications::retry_notification),
            pages::retry_notification_submit,
        ),
        route(
            "GET",
            "/platform/webhooks",
            get(notifications::list_webhooks),
        ),
        with_page(
            "POST",
            "/platform/webhooks",
            post(notifications::create_webhook),
            pages::add_webhook_submit,
        ),
        route(
            "DELETE",
            "/platform/webhooks/{webhook_id}",
            delete(notifications::delete_webhook),
        ),
        with_page(
            "GET",
            "/platform/audit",
            get(system::list_audit),
            pages::audit_page,
        ),
    ]
    .into_iter()
    .chain(change_request_routes())
    .collect()
}

/// Change requests: a tenant admin's way to ask for another plan or other modules, and a platform admin's
/// decision. The console's forms post to the same paths.
fn change_request_routes() -> Vec<Route> {
    vec![
        with_page(
            "POST",
            "/platform/tenants/{slug}/change-requests",
            post(change_requests::create_for_tenant),
            pages::change_request_submit,
        ),
        route(
            "POST",
            "/platform/change-requests",
            post(change_requests::create),
        ),
        with_page(
            "GET",
            "/platform/change-requests",
            get(change_requests::list),
            pages::change_requests_page,
        ),
        route(
            "GET",
            "/platform/change-requests/{change_request_id}",
            get(change_requests::get),
        ),
        with_page(
            "POST",
            "/platform/change-requests/{change_request_id}/approve",
            post(change_requests::approve),
            pages::approve_change_submit,
        ),
        with_page(
            "POST",
            "/platform/change-requests/{change_request_id}/reject",
            post(change_requests::reject),
            pages::reject_change_submit,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{access_for, POLICY};
    use axum::http::Method;

    #[test]
    fn every_route_has_a_policy_entry() {
        for route in all_routes() {
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
        let routes = all_routes();
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
