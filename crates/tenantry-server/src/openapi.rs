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

#[cfg(test)]
mod tests {
    use super::document;
    use utoipa::openapi::path::ParameterIn;

    /// The names in a path template: `/platform/jobs/{job_id}` → `["job_id"]`.
    fn template_names(path: &str) -> Vec<String> {
        path.split('{')
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned()))
            .collect()
    }

    /// A path parameter its template lacks makes every generated request wrong (schemathesis rejected most of
    /// what it generated for five operations); a template name without its parameter is undocumented.
    #[test]
    fn path_parameters_are_exactly_the_templates_names() {
        let document = document();
        for (path, item) in &document.paths.paths {
            let names = template_names(path);
            let operations = [&item.get, &item.post, &item.put, &item.delete, &item.patch];
            for operation in operations.into_iter().flatten() {
                let parameters = operation.parameters.clone().unwrap_or_default();
                let in_path: Vec<String> = parameters
                    .iter()
                    .filter(|parameter| parameter.parameter_in == ParameterIn::Path)
                    .map(|parameter| parameter.name.clone())
                    .collect();
                for name in &in_path {
                    assert!(
                        names.contains(name),
                        "{path} declares a path parameter {name:?} its template lacks"
                    );
                }
                for name in &names {
                    assert!(
                        in_path.contains(name),
                        "{path} has {{{name}}} but no path parameter for it"
                    );
                }
                for parameter in &parameters {
                    if parameter.parameter_in == ParameterIn::Query {
                        assert!(
                            !matches!(parameter.required, utoipa::openapi::Required::True),
                            "{path}: the query parameter {} is optional",
                            parameter.name
                        );
                    }
                }
            }
        }
    }

    /// The listing filters are query parameters, as the handlers read them.
    #[test]
    fn listing_filters_are_query_parameters() {
        let document = serde_json::to_value(document()).unwrap_or_default();
        for (path, name) in [
            ("/platform/tenants", "search"),
            ("/platform/jobs", "tenant"),
            ("/platform/audit", "actor"),
            ("/platform/plans", "region"),
        ] {
            let parameters = document["paths"][path]["get"]["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let parameter = parameters
                .iter()
                .find(|parameter| parameter["name"] == name)
                .unwrap_or_else(|| panic!("{path} has no parameter {name}"));
            assert_eq!(parameter["in"], "query", "{path} {name}");
        }
    }
}
