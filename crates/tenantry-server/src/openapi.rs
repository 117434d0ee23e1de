//! The OpenAPI 3.1 document, generated from the handlers' annotations and the types they exchange.

use crate::api::{jobs, plans, servers, session, system, tenants, JobAccepted};
use crate::error::ProblemDetails;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("tnt_<id>.<secret>")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "tenantry", description = "Tenant provisioning control plane: durable, audited, reversible jobs."),
    paths(
        system::healthz, system::readyz, system::metrics, system::openapi, system::list_audit, system::me,
        session::login, session::logout,
        tenants::create_tenant, tenants::list_tenants, tenants::get_tenant, tenants::offboard_tenant,
        jobs::list_jobs, jobs::get_job, jobs::job_events, jobs::retry_job, jobs::rollback_job,
        jobs::approve_job, jobs::reject_job,
        plans::list_plans, plans::set_plan, plans::costs,
        servers::list_servers, servers::create_server, servers::drain_server,
    ),
    components(schemas(
        ProblemDetails, JobAccepted, jobs::StreamEvent, jobs::ApprovalBody, plans::PlanOffer,
        plans::SetPlanBody, tenantry_workflows::CostReport, tenantry_workflows::TenantCost,
        tenantry_workflows::CostTotal, tenants::CreateTenantRequest, tenants::OffboardBody,
        servers::AddServerRequest, session::LoginForm, system::Me,
        tenantry_registry::TenantRecord, tenantry_registry::ServerRecord, tenantry_registry::AuditEvent,
        tenantry_registry::JobEvent, tenantry_registry::EventKind,
        tenantry_engine::JobView, tenantry_engine::PhaseView, tenantry_engine::LogView,
    )),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// The document served at `/platform/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document
}
