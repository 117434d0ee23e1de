//! The OpenAPI 3.1 document, generated from the handlers' annotations and the types they exchange.

use crate::api::{
    backups, change_requests, jobs, notifications, plans, rollouts, servers, session, system,
    tenants, JobAccepted,
};
use crate::error::ProblemDetails;
use tenantry_core::EngineKind;
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
        tenants::create_tenant, tenants::check_data_source, tenants::list_tenants, tenants::get_tenant, tenants::tenant_resources, tenants::tenant_invitation, tenants::resend_tenant_invitation, tenants::offboard_tenant,
        tenants::suspend_tenant, tenants::resume_tenant, tenants::rotate_tenant_credentials, tenants::move_tenant,
        backups::clone_tenant,
        backups::create_backup, backups::list_backups, backups::restore_backup,
        jobs::list_jobs, jobs::get_job, jobs::job_events, jobs::retry_job, jobs::rollback_job,
        jobs::approve_job, jobs::reject_job,
        plans::list_plans, plans::set_plan, plans::reconcile, plans::costs,
        servers::list_servers, servers::create_server, servers::drain_server,
        rollouts::create_rollout, rollouts::list_rollouts, rollouts::get_rollout, rollouts::pause_rollout,
        rollouts::resume_rollout, rollouts::abort_rollout, rollouts::tenant_schema,
        notifications::list_notifications, notifications::retry_notification, notifications::list_webhooks,
        notifications::create_webhook, notifications::delete_webhook,
        change_requests::create_for_tenant, change_requests::create, change_requests::list,
        change_requests::get, change_requests::approve, change_requests::reject,
    ),
    components(schemas(
        ProblemDetails, JobAccepted, jobs::StreamEvent, jobs::ApprovalBody, plans::PlanOffer,
        plans::SetPlanBody, plans::ReconcileBody, tenantry_workflows::CostReport, tenantry_workflows::TenantCost,
        tenantry_workflows::CostTotal, tenants::CreateTenantRequest, tenants::DataSourceBody, tenants::SecurityBody, tenants::DataSourceCheckBody, tenantry_workflows::DataSourceCheck, tenants::OffboardBody, tenants::SuspendBody, tenants::RotateBody, tenants::MoveBody, tenants::InvitationResent,
        backups::RestoreBody, backups::CloneBody, tenantry_registry::BackupRecord,
        tenantry_workflows::InvitationView, tenantry_workflows::Resent,
        servers::AddServerRequest, session::LoginForm, system::Me,
        tenantry_registry::TenantRecord, tenantry_registry::TenantResourceRecord, tenantry_registry::ServerRecord, tenantry_registry::AuditEvent,
        tenantry_registry::JobEvent, tenantry_registry::EventKind,
        tenantry_engine::JobView, tenantry_engine::PhaseView, tenantry_engine::LogView,
        rollouts::RolloutBody, rollouts::RolloutDryRun, rollouts::TenantSchemaView, tenantry_workflows::RolloutView,
        notifications::DeliveryView, notifications::WebhookView, notifications::WebhookBody,
        notifications::WebhookCreated,
        change_requests::ChangeRequestBody, change_requests::NewChangeRequestBody,
        change_requests::ChangeDecisionBody, tenantry_registry::ChangeRequestRecord,
    )),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// The document from the annotations alone: every constraint that does not depend on the configuration.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document
}

/// The document served at `/platform/openapi.json`: the annotations' document with what only the configuration
/// knows stated as constraints (the plan names and the regions, as enums), so a client can tell a request the
/// API will take from the document alone. A server's admin URL stays a plain string: which PostgreSQL clusters
/// are reachable no pattern can say, and the SQLite roots are paths on this host, not for an anonymous reader.
pub fn document_for<'a>(
    plans: impl IntoIterator<Item = &'a str>,
    regions: impl IntoIterator<Item = &'a str>,
) -> serde_json::Value {
    let mut document = serde_json::to_value(document()).unwrap_or_default();
    let plans = string_enum(plans);
    let regions = string_enum(regions);
    let engines = string_enum(EngineKind::ALL.map(EngineKind::as_str));
    let schemas = &mut document["components"]["schemas"];
    constrain(
        &mut schemas["CreateTenantRequest"]["properties"]["plan"],
        &plans,
    );
    constrain(
        &mut schemas["CreateTenantRequest"]["properties"]["region"],
        &regions,
    );
    constrain(&mut schemas["SetPlanBody"]["properties"]["plan"], &plans);
    // The provisioning wizard's later fields: their enums and the modules a request may turn on.
    let tiers =
        string_enum(tenantry_core::ResourceTier::ALL.map(tenantry_core::ResourceTier::as_str));
    for (schema, property) in [
        ("CreateTenantRequest", "resource_tier"),
        ("SetPlanBody", "resource_tier"),
        ("ChangeRequestBody", "resource_tier"),
        ("NewChangeRequestBody", "resource_tier"),
    ] {
        constrain(&mut schemas[schema]["properties"][property], &tiers);
    }
    constrain(
        &mut schemas["CreateTenantRequest"]["properties"]["isolation"],
        &string_enum(["database", "schema"]),
    );
    let module_names = string_enum(
        tenantry_core::Modules::default()
            .entries()
            .map(|(name, _)| name),
    );
    schemas["CreateTenantRequest"]["properties"]["modules"]["items"]["enum"] = module_names.into();
    let source_kinds =
        string_enum(tenantry_core::DataSourceKind::ALL.map(tenantry_core::DataSourceKind::as_str));
    constrain(
        &mut schemas["DataSourceBody"]["properties"]["kind"],
        &source_kinds,
    );
    constrain(
        &mut schemas["DataSourceCheckBody"]["properties"]["kind"],
        &source_kinds,
    );
    constrain(
        &mut schemas["SecurityBody"]["properties"]["auth_method"],
        &string_enum(tenantry_core::AuthMethod::ALL.map(tenantry_core::AuthMethod::as_str)),
    );
    constrain(
        &mut schemas["SecurityBody"]["properties"]["mfa_policy"],
        &string_enum(tenantry_core::MfaPolicy::ALL.map(tenantry_core::MfaPolicy::as_str)),
    );
    // A change request's plan is one of the plans, and its modules are the plans' module switches.
    let modules = change_request_modules();
    for body in ["ChangeRequestBody", "NewChangeRequestBody"] {
        constrain(&mut schemas[body]["properties"]["plan"], &plans);
        schemas[body]["properties"]["modules"] = modules.clone();
    }
    constrain(
        &mut schemas["AddServerRequest"]["properties"]["region"],
        &regions,
    );
    constrain(
        &mut schemas["AddServerRequest"]["properties"]["engine"],
        &engines,
    );
    // An approval's body may be left out, as a job approval's.
    document["paths"]["/platform/change-requests/{change_request_id}/approve"]["post"]
        ["requestBody"]["required"] = false.into();
    for decision in ["approve", "reject"] {
        // The decision's body may be left out (it reads as no reason); utoipa marks a non-`Option` body
        // required, and an `Option` one as `oneOf: [null, …]`, which the API refuses.
        let path = format!("/platform/jobs/{{job_id}}/{decision}");
        document["paths"][path.as_str()]["post"]["requestBody"]["required"] = false.into();
    }
    // What the derive cannot say about a rollout's options: the form of a wave and of a canary's slug, and the
    // options that exclude each other.
    let rollout = &mut document["components"]["schemas"]["RolloutBody"];
    rollout["properties"]["waves"]["items"]["pattern"] = WAVE_PATTERN.into();
    rollout["properties"]["canary_tenants"]["items"]["pattern"] = SLUG_PATTERN.into();
    rollout["allOf"] = serde_json::json!([
        { "not": { "required": ["canary", "canary_tenants"] } },
        { "not": { "required": ["wave_size", "waves"] } },
    ]);
    // A webhook's events and formats are the outbox's.
    let webhook = &mut document["components"]["schemas"]["WebhookBody"];
    webhook["properties"]["events"]["items"]["enum"] = string_enum(
        tenantry_registry::NOTIFICATION_EVENTS
            .iter()
            .map(|(event, _)| *event),
    )
    .into();
    constrain(
        &mut webhook["properties"]["format"],
        &string_enum(tenantry_workflows::WEBHOOK_FORMATS),
    );
    if let Some(parameters) =
        document["paths"]["/platform/plans"]["get"]["parameters"].as_array_mut()
    {
        for parameter in parameters
            .iter_mut()
            .filter(|parameter| parameter["name"] == "region")
        {
            constrain(&mut parameter["schema"], &regions);
        }
    }
    document
}

/// A wave's end: a percentage from 1 to 100 (the waves rise and end at `100%`, which no pattern can say).
const WAVE_PATTERN: &str = "^(100|[1-9][0-9]?)%$";
/// A tenant's slug.
const SLUG_PATTERN: &str = "^[a-z][a-z0-9-]{2,39}$";

/// `["a", "b"]` as JSON, for an `enum`.
fn string_enum<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<serde_json::Value> {
    values
        .into_iter()
        .map(|value| serde_json::Value::String(value.to_owned()))
        .collect()
}

/// Adds an `enum` to a string schema; a nullable one (`"type": ["string", "null"]`) keeps `null` allowed.
fn constrain(schema: &mut serde_json::Value, values: &[serde_json::Value]) {
    let mut allowed = values.to_vec();
    let nullable = schema["type"]
        .as_array()
        .is_some_and(|types| types.iter().any(|kind| kind == "null"));
    if nullable {
        allowed.push(serde_json::Value::Null);
    }
    schema["enum"] = serde_json::Value::Array(allowed);
}

/// The schema of a change request's `modules`: each known module, on or off, and nothing else.
fn change_request_modules() -> serde_json::Value {
    let properties: serde_json::Map<String, serde_json::Value> = tenantry_core::Modules::default()
        .entries()
        .into_iter()
        .map(|(name, _)| (name.to_owned(), serde_json::json!({ "type": "boolean" })))
        .collect();
    serde_json::json!({
        "type": "object",
        "description": "Module switches: module name to on (true) or off (false). A module can be on only where the plan has it.",
        "properties": properties,
        "additionalProperties": false,
    })
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
            ("/platform/rollouts", "limit"),
            ("/platform/rollouts/{rollout_id}", "status"),
            ("/platform/rollouts/{rollout_id}", "offset"),
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

    /// Schemathesis had most of its generated requests refused for six operations: the document left out the
    /// constraints the API enforces (the slug and name rules, the configured plans and regions, the engines,
    /// the header and reason rules, the job id's form, and a `null` approval body the API does not take).
    #[test]
    fn document_states_the_constraints_the_api_enforces() {
        use serde_json::json;
        let document = super::document_for(["starter", "enterprise"], ["local", "eu"]);
        let schemas = &document["components"]["schemas"];
        let tenant = &schemas["CreateTenantRequest"]["properties"];
        assert_eq!(tenant["slug"]["pattern"], "^[a-z][a-z0-9-]{2,39}$");
        assert_eq!(tenant["display_name"]["minLength"], 3);
        assert_eq!(tenant["display_name"]["maxLength"], 100);
        assert!(tenant["display_name"]["pattern"].is_string());
        assert_eq!(tenant["admin_email"]["format"], "email");
        assert!(tenant["admin_email"]["pattern"].is_string());
        assert_eq!(tenant["server"]["pattern"], "^[a-z][a-z0-9-]{0,62}$");
        assert_eq!(
            tenant["plan"]["enum"],
            json!(["starter", "enterprise", null])
        );
        assert_eq!(tenant["region"]["enum"], json!(["local", "eu", null]));
        // The wizard's later fields, and the field an error names.
        assert_eq!(
            tenant["resource_tier"]["enum"],
            json!(["small", "medium", "large", null])
        );
        assert_eq!(tenant["description"]["maxLength"], 500);
        assert!(tenant["modules"]["items"]["enum"]
            .as_array()
            .is_some_and(|names| names.contains(&json!("ml"))));
        assert!(schemas["SecurityBody"]["properties"]["mfa_policy"]["enum"].is_array());
        assert!(schemas["DataSourceBody"]["properties"]["kind"]["enum"].is_array());
        assert!(schemas["ProblemDetails"]["properties"]["field"].is_object());
        assert_eq!(tenant["budget"]["minimum"], 0);
        assert_eq!(tenant["budget"]["maximum"], i64::MAX);
        assert_eq!(
            schemas["SetPlanBody"]["properties"]["plan"]["enum"],
            json!(["starter", "enterprise"])
        );

        let server = &schemas["AddServerRequest"]["properties"];
        assert_eq!(server["name"]["pattern"], "^[a-z][a-z0-9-]{0,62}$");
        assert_eq!(
            server["engine"]["enum"],
            json!([
                "postgres",
                "sqlite",
                "redis",
                "rabbitmq",
                "powerdns",
                "s3",
                "mariadb",
                "kubernetes"
            ])
        );
        for engine in [
            "postgres",
            "sqlite",
            "redis",
            "rabbitmq",
            "powerdns",
            "s3",
            "mariadb",
            "kubernetes",
        ] {
            assert!(tenantry_core::EngineKind::parse(engine).is_ok(), "{engine}");
        }
        assert_eq!(server["capacity"]["minimum"], 1);
        assert_eq!(server["region"]["enum"], json!(["local", "eu", null]));
        assert_eq!(
            schemas["ApprovalBody"]["properties"]["reason"]["maxLength"],
            500
        );
        let rollout = &schemas["RolloutBody"];
        assert_eq!(rollout["properties"]["concurrency"]["minimum"], 1);
        assert_eq!(rollout["properties"]["concurrency"]["maximum"], 256);
        assert_eq!(rollout["properties"]["max_failures"]["minimum"], 1);
        assert_eq!(
            rollout["properties"]["waves"]["items"]["pattern"],
            super::WAVE_PATTERN
        );
        assert_eq!(
            rollout["properties"]["canary_tenants"]["items"]["pattern"],
            tenant["slug"]["pattern"]
        );
        assert_eq!(rollout["allOf"].as_array().map(Vec::len), Some(2));

        let parameter = |path: &str, method: &str, name: &str| {
            document["paths"][path][method]["parameters"]
                .as_array()
                .and_then(|parameters| {
                    parameters
                        .iter()
                        .find(|parameter| parameter["name"] == name)
                })
                .map(|parameter| parameter["schema"].clone())
                .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
        };
        assert_eq!(
            parameter("/platform/plans", "get", "region")["enum"],
            json!(["local", "eu"])
        );
        assert_eq!(
            parameter("/platform/tenants/{slug}/plan", "post", "slug")["pattern"],
            "^[a-z][a-z0-9-]{2,39}$"
        );
        assert!(parameter("/platform/tenants", "post", "Idempotency-Key")["pattern"].is_string());
        for decision in ["approve", "reject"] {
            let path = format!("/platform/jobs/{{job_id}}/{decision}");
            assert!(
                parameter(&path, "post", "job_id")["pattern"].is_string(),
                "{path}"
            );
            let body = &document["paths"][path.as_str()]["post"]["requestBody"];
            assert_eq!(
                body["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ApprovalBody",
                "{path}: a JSON null is refused, so the body is the object or nothing"
            );
            assert_ne!(body["required"], true, "{path}: an empty body is taken");
        }
    }
}
