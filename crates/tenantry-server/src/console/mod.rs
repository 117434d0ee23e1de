//! The web console: server-rendered pages (maud) with a little plain JavaScript and CSS embedded in the binary.
//!
//! Pages live at the same paths as the API's GETs (`/platform/tenants`, `/platform/jobs/{job_id}`,
//! `/platform/costs`, …) and are chosen by content negotiation (`negotiate`); the browser side of the API's writes
//! (offboard, retry, approve a waiting job, add a server, …) answers plain HTML forms with 303 redirects.
//! Page-only routes are the sign-in form, the wizard, the assets and a webhook's Remove (a form cannot send
//! DELETE). Every route here is in `auth::POLICY` like any other, so the console can do nothing its operator's
//! role could not do over the API.

mod assets;
mod audit;
mod change_requests;
mod charts;
mod clone;
mod costs;
mod errors;
mod jobs;
mod layout;
mod login;
mod negotiate;
mod notifications;
mod rollouts;
mod servers;
mod tenants;
mod wizard;

pub use errors::render_html_errors;
pub use negotiate::{html_or_json, prefers_html};

/// The console's side of routes the API shares, by what they do.
pub mod pages {
    pub use super::audit::audit_page;
    pub use super::change_requests::{
        approve_change_submit, change_request_submit, change_requests_page, reject_change_submit,
    };
    pub use super::clone::clone_submit;
    pub use super::costs::costs_page;
    pub use super::jobs::{
        approve_submit, job_page, jobs_page, reject_submit, retry_submit, rollback_submit,
    };
    pub use super::login::login_submit;
    pub use super::notifications::{
        add_webhook_submit, notifications_page, retry_notification_submit,
    };
    pub use super::rollouts::{
        abort_rollout_submit, pause_rollout_submit, resume_rollout_submit, rollout_page,
        rollouts_page,
    };
    pub use super::servers::{add_server_submit, drain_submit, servers_page};
    pub use super::tenants::{
        backup_submit, move_submit, offboard_submit, resend_invitation_submit, resume_submit,
        rotate_submit, suspend_submit, tenant_page, tenants_page,
    };
}

use crate::routes::Route;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Extension;

/// The way in: the tenants list, or for a tenant admin their tenant's page (the only one they may see).
async fn to_tenants(principal: Option<Extension<crate::auth::Principal>>) -> Response {
    match principal {
        Some(Extension(principal)) if principal.is_tenant_scoped() => layout::see_other(&format!(
            "/platform/tenants/{}",
            layout::query_escape(principal.tenant_slug.as_deref().unwrap_or_default())
        )),
        _ => layout::see_other("/platform/tenants"),
    }
}

/// Routes only the console has: the way in, the sign-in form, the wizard and the assets.
pub fn page_routes() -> Vec<Route> {
    vec![
        Route {
            method: "GET",
            path: "/",
            handler: get(to_tenants),
        },
        Route {
            method: "GET",
            path: "/platform",
            handler: get(to_tenants),
        },
        Route {
            method: "GET",
            path: "/platform/login",
            handler: get(login::login_form),
        },
        Route {
            method: "GET",
            path: "/platform/assets/{name}",
            handler: get(assets::serve_asset),
        },
        Route {
            method: "GET",
            path: "/platform/tenants/new",
            handler: get(wizard::wizard_start),
        },
        Route {
            method: "POST",
            path: "/platform/tenants/new",
            handler: post(wizard::wizard_step),
        },
        Route {
            method: "POST",
            path: "/platform/webhooks/{webhook_id}/remove",
            handler: post(notifications::remove_webhook_submit),
        },
    ]
}
