//! The provisioning wizard at `/platform/tenants/new`, the seed's seven steps: 1 Tenant details (name, slug,
//! description, billing tier, admin e-mail, contact, optional budget), 2 Infrastructure (region, resource tier with
//! what each gives, dedicated or shared compute, target server), 3 Data sources (rows of name, kind and URL, each
//! checkable for reachability), 4 Service selection (the modules the tier allows, the resources it gives),
//! 5 Security (sign-in method, MFA, network allowlist), 6 Review (everything, the tier's price, whether it waits
//! for approval), then Provision and 7 Provisioning (the progress drawer, or the job's page). Every field of every
//! step is in one form, and only the current step shows:
//! - without JavaScript, Next/Back/Provision (and Add, Remove, Check on a data source) post the form here; the
//!   server checks only the current step's fields and answers with the next step (or the same one with errors at
//!   their fields); Provision re-checks everything, parses the profile as `POST /platform/tenants` does, and
//!   answers 303 to the job's page;
//! - with JavaScript, `console.js` moves between the steps itself, checks the slug rule as you type, checks a data
//!   source with `POST /platform/data-sources/check`, posts JSON to `POST /platform/tenants`, and opens the
//!   progress drawer. It fills steps 2 and 4 and the Review from the plans embedded in the form (`data-plans`),
//!   whose texts are built here.
//!
//! Either way the server stays the authority: its errors come back to the field they concern. A data source URL
//! lives only in this form's password fields until the submit puts it in the secret store; no later page has it.

use super::errors::{OrPage, PageError};
use super::jobs::error_help_json;
use super::layout::{
    html_response, limit_millis, money, page_header, query_escape, see_other, select_field, shell,
    Field, Section, Viewer,
};
use super::negotiate::prefers_html;
use crate::api::plans::plan_offers;
use crate::api::tenants::get_tenant;
use crate::api::ApiForm;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::ServerState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use std::collections::BTreeMap;
use tenantry_core::{
    module_switches, AdminEmail, AuthMethod, ContactName, DataSourceKind, DataSourceName,
    DataSourceUrl, Description, DisplayName, Error as CodedError, ErrorCode, Isolation, MfaPolicy,
    Plan, RawDataSource, RawSecurity, RawTenantProfile, RawTenantSpec, ResourceTier,
    SecurityPolicy, ServerStatus, Slug, SpecDefaults, TenantProfile, TenantSpec, MAX_DATA_SOURCES,
};
use tenantry_providers::credentials::random_token;
use tenantry_registry::{now_millis, ServerRecord};
use tenantry_workflows::{
    approval_needed, check_data_source, monthly_estimate, submit_provision_with_data_sources,
    DataSourceCheck, IdempotencyRequest, Settings, Submitted,
};

/// The wizard's steps: number, title. Step 7 is the progress drawer (JavaScript) or the job's page (without).
const STEPS: [(u8, &str); 7] = [
    (1, "Tenant details"),
    (2, "Infrastructure"),
    (3, "Data sources"),
    (4, "Service selection"),
    (5, "Security"),
    (6, "Review"),
    (7, "Provisioning"),
];
/// The last step the form shows; Provision posts from it.
const REVIEW_STEP: u8 = 6;

/// The modules as the seed names and describes them, in `Modules::entries` order.
const MODULE_TEXTS: [(&str, &str, &str); 5] = [
    (
        "core",
        "Core (AI + Agents)",
        "Conversational analytics engine",
    ),
    ("bi", "BI Platform", "Dashboards, visualization, reporting"),
    ("ml", "ML Platform", "Model training and serving"),
    (
        "data_platform",
        "Data Platform",
        "Pipeline and catalog management",
    ),
    (
        "context_graph",
        "Context Graph",
        "Knowledge graph integration",
    ),
];

/// The form as posted (and as rendered back). Data source rows and module boxes repeat their names, so the form
/// is read from its pairs ([`WizardForm::from_pairs`]) rather than as a struct.
#[derive(Debug, Default, Clone)]
pub struct WizardForm {
    step: String,
    action: String,
    slug: String,
    display_name: String,
    admin_email: String,
    plan: String,
    /// Whole currency units per month; empty when the operator gives none.
    budget: String,
    description: String,
    contact_name: String,
    region: String,
    /// Empty for auto-placement.
    server: String,
    resource_tier: String,
    /// `database` (dedicated) or `schema` (shared); empty: the plan's.
    isolation: String,
    /// The rows of step 3; `RawDataSource`'s `Debug` hides the URL.
    data_sources: Vec<RawDataSource>,
    /// The modules ticked on step 4.
    modules: Vec<String>,
    /// Whether step 4 has been shown, so that no ticked box means "no module" rather than "the plan's".
    modules_chosen: bool,
    auth_method: String,
    mfa_policy: String,
    /// One network per line.
    allowed_cidrs: String,
    dry_run: bool,
    idempotency_key: String,
}

/// What Next, Back, Provision and the data source buttons ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Next,
    Back,
    Provision,
    AddSource,
    RemoveSource(usize),
    CheckSource(usize),
}

impl WizardForm {
    fn from_pairs(pairs: Vec<(String, String)>) -> WizardForm {
        let mut form = WizardForm::default();
        let (mut names, mut kinds, mut urls) = (Vec::new(), Vec::new(), Vec::new());
        for (key, value) in pairs {
            match key.as_str() {
                "step" => form.step = value,
                "action" => form.action = value,
                "slug" => form.slug = value.trim().to_owned(),
                "display_name" => form.display_name = value,
                "admin_email" => form.admin_email = value.trim().to_owned(),
                "plan" => form.plan = value,
                "budget" => form.budget = value,
                "description" => form.description = value,
                "contact_name" => form.contact_name = value,
                "region" => form.region = value,
                "server" => form.server = value,
                "resource_tier" => form.resource_tier = value,
                "isolation" => form.isolation = value,
                "ds_name" => names.push(value),
                "ds_kind" => kinds.push(value),
                "ds_url" => urls.push(value),
                "modules" => form.modules.push(value),
                "modules_chosen" => form.modules_chosen = true,
                "auth_method" => form.auth_method = value,
                "mfa_policy" => form.mfa_policy = value,
                "allowed_cidrs" => form.allowed_cidrs = value,
                "dry_run" => form.dry_run = value == "true",
                "idempotency_key" => form.idempotency_key = value,
                // The CSRF token is checked before the handler runs; nothing else is expected.
                _ => {}
            }
        }
        let n_rows = names.len().max(kinds.len()).max(urls.len());
        let cell = |cells: &[String], index: usize| cells.get(index).cloned().unwrap_or_default();
        form.data_sources = (0..n_rows)
            .map(|index| RawDataSource {
                name: cell(&names, index),
                kind: cell(&kinds, index),
                url: cell(&urls, index),
            })
            .collect();
        form
    }

    fn step(&self) -> u8 {
        self.step.parse().unwrap_or(1).clamp(1, REVIEW_STEP)
    }

    fn action(&self) -> Action {
        let index = |prefix: &str| {
            self.action
                .strip_prefix(prefix)
                .and_then(|index| index.parse::<usize>().ok())
        };
        match self.action.as_str() {
            "back" => Action::Back,
            "provision" => Action::Provision,
            "add_source" => Action::AddSource,
            _ => match (index("remove_source:"), index("check_source:")) {
                (Some(row), _) => Action::RemoveSource(row),
                (_, Some(row)) => Action::CheckSource(row),
                _ => Action::Next,
            },
        }
    }

    /// The budget, or `None` when left empty. Messages start with "budget" so they land on its field.
    fn budget(&self) -> Result<Option<u64>, CodedError> {
        let budget = self.budget.trim();
        if budget.is_empty() {
            return Ok(None);
        }
        let parsed = budget.parse::<u64>().map_err(|_| {
            CodedError::invalid_input(format!(
                "budget {budget:?} is not a whole number of at least 0; leave it empty to let the plan's estimate count"
            ))
        })?;
        crate::api::checked_budget(Some(parsed))
    }

    fn tier(&self) -> ResourceTier {
        ResourceTier::parse(&self.resource_tier).unwrap_or_default()
    }

    fn cidr_lines(&self) -> Vec<&str> {
        self.allowed_cidrs.lines().collect()
    }

    /// The later fields as `POST /platform/tenants` takes them, so both paths parse the same thing.
    fn raw_profile(&self) -> RawTenantProfile {
        let given = |value: &str| (!value.trim().is_empty()).then(|| value.to_owned());
        RawTenantProfile {
            description: given(&self.description),
            contact_name: given(&self.contact_name),
            resource_tier: given(&self.resource_tier),
            isolation: given(&self.isolation),
            data_sources: self.data_sources.clone(),
            modules: self.modules_chosen.then(|| self.modules.clone()),
            security: RawSecurity {
                auth_method: given(&self.auth_method),
                mfa_policy: given(&self.mfa_policy),
                allowed_cidrs: self.cidr_lines().into_iter().map(str::to_owned).collect(),
            },
        }
    }

    /// Whether a module's box is ticked: the operator's choice once step 4 was shown, the plan's before.
    fn module_on(&self, plan: Option<&Plan>, module: &str) -> bool {
        if self.modules_chosen {
            return self.modules.iter().any(|name| name == module);
        }
        plan.is_some_and(|plan| plan_allows(plan, module))
    }
}

fn plan_allows(plan: &Plan, module: &str) -> bool {
    plan.modules
        .entries()
        .iter()
        .any(|(name, on)| *name == module && *on)
}

/// Errors by field, named as the API names them (`description`, `data_sources[0].url`, `security.allowed_cidrs`;
/// `form` for those no field owns).
type FieldErrors = Vec<(String, String)>;

fn error_for<'e>(errors: &'e FieldErrors, field: &str) -> Option<&'e str> {
    errors
        .iter()
        .find(|(name, _)| name == field)
        .map(|(_, message)| message.as_str())
}

/// The step a field lives on.
fn step_of(field: &str) -> u8 {
    match field {
        "slug" | "display_name" | "admin_email" | "plan" | "budget" | "description"
        | "contact_name" => 1,
        "region" | "server" | "resource_tier" | "isolation" => 2,
        "modules" => 4,
        _ if field.starts_with("data_sources") => 3,
        _ if field.starts_with("security") => 5,
        _ => REVIEW_STEP,
    }
}

/// Which field a server error concerns when the error names none (the same table `console.js` uses for JSON
/// answers without a `field`).
pub fn field_for_error(code: ErrorCode, message: &str) -> &'static str {
    match code {
        ErrorCode::InvalidSlug
        | ErrorCode::AlreadyProvisioned
        | ErrorCode::PartialState
        | ErrorCode::Conflict => "slug",
        ErrorCode::DbServerNotFound | ErrorCode::NoCapacity => "server",
        ErrorCode::InvalidInput => {
            let message = message.to_ascii_lowercase();
            if message.starts_with("display name") {
                "display_name"
            } else if message.starts_with("admin email") || message.contains("email") {
                "admin_email"
            } else if message.starts_with("budget") {
                "budget"
            } else if message.starts_with("description") {
                "description"
            } else if message.starts_with("contact name") {
                "contact_name"
            } else if message.starts_with("resource tier") {
                "resource_tier"
            } else if message.starts_with("isolation") || message.contains("gives each tenant") {
                "isolation"
            } else if message.contains("module") {
                "modules"
            } else if message.starts_with("plan") {
                "plan"
            } else if message.starts_with("region") {
                "region"
            } else if message.starts_with("server") {
                "server"
            } else if message.contains("slug") {
                "slug"
            } else {
                "form"
            }
        }
        _ => "form",
    }
}

fn coded_message(error: &CodedError) -> String {
    format!("{} ({})", error.message, error.code)
}

fn isolation_words(isolation: Isolation) -> &'static str {
    match isolation {
        Isolation::Database => "dedicated: its own database",
        Isolation::Schema => "shared: a schema in a shared database",
    }
}

/// The isolation the form asks for: the chosen one, or the plan's when none is chosen.
fn chosen_isolation(form: &WizardForm, plan: Option<&Plan>) -> String {
    if form.isolation.is_empty() {
        plan.map(|plan| plan.isolation.as_str().to_owned())
            .unwrap_or_default()
    } else {
        form.isolation.clone()
    }
}

/// A profile that holds only what one step asked, parsed as the API parses it; the error keeps its field.
fn parse_part(form: &WizardForm, raw: RawTenantProfile) -> Result<TenantProfile, (String, String)> {
    // The slug belongs to step 1; the data source secrets' names need one, and nothing is stored here.
    let slug = Slug::parse(&form.slug).or_else(|_| Slug::parse("tenant"));
    let slug = slug.map_err(|error| ("slug".to_owned(), coded_message(&error)))?;
    TenantProfile::parse(&raw, &slug)
        .map(|parsed| parsed.profile)
        .map_err(|failure| (failure.field, coded_message(&failure.error)))
}

/// Checks the fields of one step as the server would; returns the errors by field.
fn check_step(
    state: &ServerState,
    servers: &[ServerRecord],
    form: &WizardForm,
    step: u8,
) -> FieldErrors {
    let settings = &state.platform.settings;
    let plan = settings.plan(&form.plan);
    let mut errors = FieldErrors::new();
    let mut push = |field: &str, message: String| errors.push((field.to_owned(), message));
    match step {
        1 => {
            if let Err(error) = Slug::parse(form.slug.trim()) {
                push("slug", coded_message(&error));
            }
            if let Err(error) = DisplayName::parse(&form.display_name) {
                push("display_name", coded_message(&error));
            }
            if let Err(error) = Description::parse(&form.description) {
                push("description", coded_message(&error));
            }
            if plan.is_none() {
                push("plan", format!("plan {:?} does not exist", form.plan));
            }
            if let Err(error) = AdminEmail::parse(form.admin_email.trim()) {
                push("admin_email", coded_message(&error));
            }
            if let Err(error) = ContactName::parse(&form.contact_name) {
                push("contact_name", coded_message(&error));
            }
            if let Err(error) = form.budget() {
                push("budget", coded_message(&error));
            }
        }
        2 => {
            if !settings.regions.contains(&form.region) {
                push("region", format!("region {:?} does not exist", form.region));
            }
            if let Err(error) = ResourceTier::parse(&form.resource_tier) {
                push("resource_tier", coded_message(&error));
            }
            let isolation = RawTenantProfile {
                isolation: Some(form.isolation.clone()),
                ..RawTenantProfile::default()
            };
            match (parse_part(form, isolation), plan) {
                (Err((field, message)), _) => push(&field, message),
                (Ok(profile), Some(plan)) => {
                    if let Err(failure) = profile.check_against(plan) {
                        push(&failure.field, coded_message(&failure.error));
                    }
                }
                (Ok(_), None) => {}
            }
            if !form.server.is_empty() {
                match servers.iter().find(|server| server.name == form.server) {
                    None => push(
                        "server",
                        format!(
                            "server {:?} is not in the fleet; pick another or auto-place",
                            form.server
                        ),
                    ),
                    Some(server) if server.status != ServerStatus::Active => push(
                        "server",
                        format!(
                            "server {} is {}; it takes no new tenants",
                            server.name, server.status
                        ),
                    ),
                    Some(_) => {}
                }
            }
        }
        3 => {
            // Every row's every field, so that each bad cell shows its own error at once.
            if form.data_sources.len() > MAX_DATA_SOURCES {
                push(
                    "data_sources",
                    format!(
                        "at most {MAX_DATA_SOURCES} data sources; remove {}",
                        form.data_sources.len() - MAX_DATA_SOURCES
                    ),
                );
            }
            let mut seen = Vec::new();
            for (index, source) in form.data_sources.iter().enumerate() {
                match DataSourceName::parse(&source.name) {
                    Ok(name) if seen.contains(&name) => push(
                        &format!("data_sources[{index}].name"),
                        format!("data source name {:?} is given twice", name.as_str()),
                    ),
                    Ok(name) => seen.push(name),
                    Err(error) => push(
                        &format!("data_sources[{index}].name"),
                        coded_message(&error),
                    ),
                }
                match DataSourceKind::parse(&source.kind) {
                    Ok(kind) => {
                        if let Err(error) = DataSourceUrl::parse(&source.url, kind) {
                            push(&format!("data_sources[{index}].url"), coded_message(&error));
                        }
                    }
                    Err(error) => push(
                        &format!("data_sources[{index}].kind"),
                        coded_message(&error),
                    ),
                }
            }
        }
        4 => {
            let switches = module_switches(&form.modules);
            let checked = switches.and_then(|switches| match plan {
                Some(plan) => plan.check_module_switches(&switches),
                None => Ok(()),
            });
            if let Err(error) = checked {
                push("modules", coded_message(&error));
            }
        }
        5 => {
            if let Err(error) = AuthMethod::parse(&form.auth_method) {
                push("security.auth_method", coded_message(&error));
            }
            if let Err(error) = MfaPolicy::parse(&form.mfa_policy) {
                push("security.mfa_policy", coded_message(&error));
            }
            // Each bad line by its number, all at once: a list is fixed in one go.
            let bad_lines: Vec<String> = form
                .cidr_lines()
                .iter()
                .enumerate()
                .filter(|(_, line)| !line.trim().is_empty())
                .filter_map(|(index, line)| {
                    SecurityPolicy::parse_cidr(line)
                        .err()
                        .map(|error| format!("line {}: {}", index + 1, error.message))
                })
                .collect();
            if !bad_lines.is_empty() {
                push(
                    "security.allowed_cidrs",
                    format!("{} ({})", bad_lines.join("; "), ErrorCode::InvalidInput),
                );
            } else if let Err(error) = SecurityPolicy::parse_cidrs(&form.cidr_lines()) {
                push("security.allowed_cidrs", coded_message(&error));
            }
        }
        _ => {}
    }
    errors
}

/// Every step's checks, then the whole profile as the API parses it (what no single step sees, such as the
/// profile against the plan).
fn check_all(state: &ServerState, servers: &[ServerRecord], form: &WizardForm) -> FieldErrors {
    let mut errors: FieldErrors = (1..REVIEW_STEP)
        .flat_map(|step| check_step(state, servers, form, step))
        .collect();
    if errors.is_empty() {
        match parse_part(form, form.raw_profile()) {
            Err((field, message)) => errors.push((field, message)),
            Ok(profile) => {
                if let Some(plan) = state.platform.settings.plan(&form.plan) {
                    if let Err(failure) = profile.check_against(plan) {
                        errors.push((failure.field, coded_message(&failure.error)));
                    }
                }
            }
        }
    }
    errors
}

fn plan_options(state: &ServerState) -> Vec<(String, String, bool)> {
    state
        .platform
        .settings
        .plans
        .iter()
        .map(|plan| {
            let engine = plan
                .engine
                .map(|engine| format!(", {engine}"))
                .unwrap_or_default();
            let shared = match plan.isolation {
                Isolation::Schema => ", shared",
                Isolation::Database => "",
            };
            let text = format!(
                "{} — {}; {} connections, {} s statement timeout{engine}{shared}",
                plan.name,
                plan.resources.join(" + "),
                plan.connection_limit,
                plan.statement_timeout_ms / 1000
            );
            (plan.name.clone(), text, false)
        })
        .collect()
}

fn server_options(servers: &[ServerRecord]) -> Vec<(String, String, bool)> {
    let mut options = vec![(String::new(), "Default (auto-place)".to_owned(), false)];
    for server in servers {
        let availability = if server.status == ServerStatus::Active {
            format!("{} free", server.free_room())
        } else {
            format!("{}, takes no new tenants", server.status)
        };
        options.push((
            server.name.clone(),
            format!(
                "{} — {}, {}, {availability}",
                server.name, server.engine, server.region
            ),
            server.status != ServerStatus::Active,
        ));
    }
    options
}

fn options_of(values: &[&str]) -> Vec<(String, String, bool)> {
    values
        .iter()
        .map(|value| ((*value).to_owned(), (*value).to_owned(), false))
        .collect()
}

fn quota_value(value: &serde_json::Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

/// What a tier gives of a plan, price aside: `25 connections · 300 queries / min · cache: max memory mb 32`.
fn tier_capacity(scaled: &Plan) -> String {
    let mut parts = vec![
        format!("{} connections", scaled.connection_limit),
        format!("{} queries / min", scaled.rate_limit_qpm),
    ];
    for (kind, quotas) in &scaled.quotas {
        if let Some(quotas) = quotas.as_object() {
            let items: Vec<String> = quotas
                .iter()
                .map(|(name, value)| format!("{} {}", name.replace('_', " "), quota_value(value)))
                .collect();
            parts.push(format!("{kind}: {}", items.join(", ")));
        }
    }
    parts.join(" · ")
}

/// What the Review says about the plan in the chosen region: the texts `console.js` writes into the same
/// `data-review` cells, built by the same rules (keep `planReview` there in step).
#[derive(Debug, Clone)]
struct PlanReview {
    estimate: String,
    /// The kinds of resource the plan gives (`database + cache + queue`).
    resources: String,
    quotas: String,
    flags: String,
    budget: String,
    /// Why the request will wait for approval, or `None` when it will run at once.
    approval_reason: Option<String>,
}

fn joined_or_none(names: Vec<&str>) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// The Review's quota line of a (scaled) plan.
fn review_quotas(plan: &Plan) -> String {
    format!(
        "{} connections · {} statement timeout · {} queries / min · {} query SLA",
        plan.connection_limit,
        limit_millis(plan.statement_timeout_ms),
        plan.rate_limit_qpm,
        limit_millis(plan.query_sla_ms)
    )
}

/// `plan` is the plan as the chosen tier scales it: its price and quotas are what the tenant gets.
fn plan_review(
    settings: &Settings,
    plan: &Plan,
    region: &str,
    budget: Option<u64>,
    dry_run: bool,
) -> PlanReview {
    let currency = settings.pricing.currency.as_str();
    let threshold = settings.approvals.auto_approve_threshold;
    let estimate = monthly_estimate(&settings.pricing, plan, region);
    // The submit path's own rule decides; the words below only say which part of it applies. A dry run creates
    // nothing, so it never waits.
    let waits = !dry_run && approval_needed(settings, plan, region, budget, now_millis()).is_some();
    let approval_reason = waits.then(|| {
        if plan.approval_required {
            format!("plan {} always needs approval.", plan.name)
        } else if let Some(budget) = budget {
            format!("the budget of {budget} {currency} reaches the auto-approve threshold of {threshold} {currency}.")
        } else {
            format!(
                "the plan's estimate of {} reaches the auto-approve threshold of {threshold} {currency}.",
                money(estimate, currency)
            )
        }
    });
    PlanReview {
        estimate: format!("{} per month in {region}", money(estimate, currency)),
        resources: plan.resources.join(" + "),
        quotas: review_quotas(plan),
        flags: joined_or_none(
            plan.feature_flags
                .iter()
                .filter(|(_, on)| **on)
                .map(|(name, _)| name.as_str())
                .collect(),
        ),
        budget: match budget {
            Some(budget) => format!("{budget} {currency} per month"),
            None => "none: the plan's estimate counts".to_owned(),
        },
        approval_reason,
    }
}

/// Every plan with its isolation, modules, flags and, per resource tier, its capacity, Review quotas and
/// estimate in every region, plus the threshold: what `console.js` needs to fill steps 2, 4 and the Review
/// without asking the server. The texts are built here, so both paths show the same words.
fn plans_json(state: &ServerState) -> String {
    let settings = &state.platform.settings;
    // Priced as `GET /platform/plans` prices them, one region at a time; a tier scales the price by its factor.
    let mut estimates: BTreeMap<String, serde_json::Map<String, serde_json::Value>> =
        BTreeMap::new();
    for region in &settings.regions {
        for offer in plan_offers(state, region) {
            estimates
                .entry(offer.plan.name)
                .or_default()
                .insert(region.clone(), serde_json::json!(offer.monthly_estimate));
        }
    }
    let plans: serde_json::Map<String, serde_json::Value> = settings
        .plans
        .iter()
        .map(|plan| {
            let flags: Vec<&str> = plan
                .feature_flags
                .iter()
                .filter(|(_, on)| **on)
                .map(|(name, _)| name.as_str())
                .collect();
            let modules: Vec<&str> = plan
                .modules
                .entries()
                .into_iter()
                .filter(|(_, on)| *on)
                .map(|(name, _)| name)
                .collect();
            let tiers: serde_json::Map<String, serde_json::Value> = ResourceTier::ALL
                .iter()
                .map(|tier| {
                    let scaled = tier.scaled_plan(plan);
                    let tier_estimates: serde_json::Map<String, serde_json::Value> = settings
                        .regions
                        .iter()
                        .map(|region| {
                            let estimate = monthly_estimate(&settings.pricing, &scaled, region);
                            (region.clone(), serde_json::json!(estimate))
                        })
                        .collect();
                    let description = serde_json::json!({
                        "capacity": tier_capacity(&scaled),
                        "quotas": review_quotas(&scaled),
                        "estimates": tier_estimates,
                    });
                    (tier.as_str().to_owned(), description)
                })
                .collect();
            let description = serde_json::json!({
                "resources": plan.resources,
                "isolation": plan.isolation.as_str(),
                "modules": modules,
                "flags": flags,
                "approval_required": plan.approval_required,
                "estimates": estimates.remove(&plan.name).unwrap_or_default(),
                "tiers": tiers,
            });
            (plan.name.clone(), description)
        })
        .collect();
    serde_json::json!({
        "currency": settings.pricing.currency,
        "threshold": settings.approvals.auto_approve_threshold,
        "plans": plans,
    })
    .to_string()
}

fn review_row(label: &str, field: &str, value: &str) -> Markup {
    html! {
        div { dt { (label) } dd data-review=(field) { (value) } }
    }
}

/// A `<textarea>` with a label, hint and error slot, like [`Field`].
fn textarea_field(
    name: &str,
    label: &str,
    value: &str,
    hint: &str,
    error: Option<&str>,
    extra: Option<Markup>,
) -> Markup {
    let id = format!("field-{name}");
    let hint_id = format!("{id}-hint");
    let error_id = format!("{id}-error");
    html! {
        div.field data-field=(name) {
            label for=(id) { (label) }
            textarea id=(id) name=(name) rows="4" aria-describedby={ (hint_id) " " (error_id) }
                aria-invalid=[error.map(|_| "true")] { (value) }
            p.hint id=(hint_id) { (hint) @if let Some(extra) = extra { " " (extra) } }
            p.field-error id=(error_id) role="alert" { @if let Some(error) = error { (error) } }
        }
    }
}

/// One data source row. `index` is the row's number, or `__index__` in the `<template>` `console.js` copies.
/// The URL is a password field: the browser never shows it, and only this form (never a later page) holds it.
fn data_source_row(
    index: &str,
    source: &RawDataSource,
    errors: &FieldErrors,
    check: Option<&Markup>,
) -> Markup {
    let cell = |part: &str| format!("data_sources[{index}].{part}");
    let id = |part: &str| format!("field-ds-{index}-{part}");
    let kinds: Vec<(String, String, bool)> = DataSourceKind::ALL
        .iter()
        .map(|kind| (kind.as_str().to_owned(), kind.as_str().to_owned(), false))
        .collect();
    let number = index.parse::<usize>().map_or(0, |index| index + 1);
    html! {
        fieldset.data-source data-row=(index) {
            legend.data-source-title { "Data source " span.row-number { (number) } }
            div.data-source-fields {
                @for (part, label) in [("name", "Name")] {
                    @let error = error_for(errors, &cell(part));
                    div.field data-field=(cell(part)) {
                        label for=(id(part)) { (label) }
                        input id=(id(part)) name="ds_name" type="text" value=(source.name) autocomplete="off"
                            aria-describedby={ (id(part)) "-error" } aria-invalid=[error.map(|_| "true")];
                        p.field-error id={ (id(part)) "-error" } role="alert" { @if let Some(error) = error { (error) } }
                    }
                }
                @let kind_error = error_for(errors, &cell("kind"));
                div.field data-field=(cell("kind")) {
                    label for=(id("kind")) { "Kind" }
                    select id=(id("kind")) name="ds_kind" aria-describedby={ (id("kind")) "-error" }
                        aria-invalid=[kind_error.map(|_| "true")] {
                        @for (value, text, _) in &kinds {
                            option value=(value) selected[*value == source.kind] { (text) }
                        }
                    }
                    p.field-error id={ (id("kind")) "-error" } role="alert" { @if let Some(error) = kind_error { (error) } }
                }
                @let url_error = error_for(errors, &cell("url"));
                div.field.data-source-url data-field=(cell("url")) {
                    label for=(id("url")) { "URL" }
                    input id=(id("url")) name="ds_url" type="password" value=(source.url) autocomplete="off"
                        spellcheck="false" aria-describedby={ (id("url")) "-hint " (id("url")) "-error" }
                        aria-invalid=[url_error.map(|_| "true")];
                    p.hint id={ (id("url")) "-hint" } { "With its credentials; kept as a secret, never shown again." }
                    p.field-error id={ (id("url")) "-error" } role="alert" { @if let Some(error) = url_error { (error) } }
                }
            }
            div.data-source-actions {
                button type="submit" name="action" value={ "check_source:" (index) } data-source-action="check" { "Check" }
                button type="submit" name="action" value={ "remove_source:" (index) } data-source-action="remove" { "Remove" }
                p.data-source-check role="status" aria-live="polite" {
                    @if let Some(check) = check { (check) }
                }
            }
        }
    }
}

/// A reachability check's result, as the row shows it (`console.js` writes the same words).
fn check_result(check: &DataSourceCheck) -> Markup {
    html! {
        @if check.reachable {
            span.pill.complete { "reachable" } " " (check.endpoint) " answered in " (check.millis) " ms"
        } @else {
            span.pill.failed { "unreachable" } " " (check.endpoint) ": " (check.detail)
        }
    }
}

/// The page's parts that depend on the request: which step shows, the errors, a data source check's result.
struct WizardView<'a> {
    form: &'a WizardForm,
    step: u8,
    errors: &'a FieldErrors,
    /// The row a Check was asked for, and what it found.
    check: Option<(usize, Markup)>,
}

fn wizard_page(
    state: &ServerState,
    viewer: &Viewer,
    servers: &[ServerRecord],
    view: &WizardView<'_>,
) -> Markup {
    let (form, step, errors) = (view.form, view.step, view.errors);
    let slug_field = Field {
        hint: Some("Lowercase letters, digits and hyphens; 3 to 40 characters; starts with a letter. Becomes the database name."),
        error: error_for(errors, "slug"),
        autocomplete: Some("off"),
        required: true,
        ..Field::text("slug", "Slug", &form.slug)
    };
    let display_name_field = Field {
        hint: Some("3 to 100 characters, as the customer is known."),
        error: error_for(errors, "display_name"),
        autocomplete: Some("organization"),
        required: true,
        ..Field::text("display_name", "Display name", &form.display_name)
    };
    let email_field = Field {
        input_type: "email",
        hint: Some("Receives the invitation to sign in once the tenant is ready."),
        error: error_for(errors, "admin_email"),
        autocomplete: Some("email"),
        required: true,
        ..Field::text("admin_email", "First admin email", &form.admin_email)
    };
    let contact_field = Field {
        hint: Some("Optional. The customer's contact person, up to 100 characters."),
        error: error_for(errors, "contact_name"),
        autocomplete: Some("name"),
        ..Field::text("contact_name", "Contact name", &form.contact_name)
    };
    let settings = &state.platform.settings;
    let currency = settings.pricing.currency.as_str();
    let budget_hint = format!(
        "Optional. Whole {currency} per month. At or above {} {currency} (or on a plan that always needs it) the request waits for another platform admin's approval; left empty, the plan's monthly estimate counts.",
        settings.approvals.auto_approve_threshold
    );
    let budget_field = Field {
        input_type: "number",
        hint: Some(&budget_hint),
        error: error_for(errors, "budget"),
        autocomplete: Some("off"),
        ..Field::text("budget", "Monthly budget", &form.budget)
    };
    let description_count = format!(
        "{} / {}",
        form.description.trim().chars().count(),
        Description::MAX_CHARS
    );
    let plan = settings.plan(&form.plan);
    let tier = form.tier();
    let scaled = plan.map(|plan| tier.scaled_plan(plan));
    // An unknown plan or a budget that does not parse has its error on step 1; the Review shows what it can.
    let review = scaled.as_ref().map(|scaled| {
        plan_review(
            settings,
            scaled,
            &form.region,
            form.budget().ok().flatten(),
            form.dry_run,
        )
    });
    let regions: Vec<(String, String, bool)> = settings
        .regions
        .iter()
        .map(|region| (region.clone(), region.clone(), false))
        .collect();
    let server_label = if form.server.is_empty() {
        "Default (auto-place)"
    } else {
        form.server.as_str()
    };
    let isolation = chosen_isolation(form, plan);
    let isolation_error = error_for(errors, "isolation");
    let tier_error = error_for(errors, "resource_tier");
    let modules_error = error_for(errors, "modules");
    let cidrs_error = error_for(errors, "security.allowed_cidrs");
    let chosen_modules: Vec<&str> = MODULE_TEXTS
        .iter()
        .filter(|(name, _, _)| {
            form.module_on(plan, name) && plan.is_none_or(|plan| plan_allows(plan, name))
        })
        .map(|(_, label, _)| *label)
        .collect();
    let data_sources_review: Vec<String> = form
        .data_sources
        .iter()
        .map(|source| format!("{} ({})", source.name.trim(), source.kind))
        .collect();
    let cidrs_review: Vec<&str> = form
        .cidr_lines()
        .into_iter()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let auth_methods: Vec<&str> = AuthMethod::ALL
        .iter()
        .map(|method| method.as_str())
        .collect();
    let mfa_policies: Vec<&str> = MfaPolicy::ALL
        .iter()
        .map(|policy| policy.as_str())
        .collect();
    let auth_method = AuthMethod::parse(&form.auth_method)
        .map_or(form.auth_method.clone(), |method| {
            method.as_str().to_owned()
        });
    let mfa_policy = MfaPolicy::parse(&form.mfa_policy)
        .map_or(form.mfa_policy.clone(), |policy| policy.as_str().to_owned());
    let empty_row = RawDataSource {
        kind: DataSourceKind::Postgres.as_str().to_owned(),
        ..RawDataSource::default()
    };
    html! {
        (page_header(
            html! { "New tenant" },
            Some(html! { "A customer's own database, login role, credentials, schema and first admin, in under a second." }),
            html! { a.button href="/platform/tenants" { "Cancel" } },
        ))
        ol.steps aria-label="Steps" {
            @for (number, title) in STEPS {
                li data-step=(number) aria-current=[(number == step).then_some("step")] class=[(number < step).then_some("done")] {
                    span.step-number { (number) } span.step-title { (title) }
                }
            }
        }
        form #wizard.panel.wizard method="post" action="/platform/tenants/new" novalidate data-step=(step)
            data-plans=(plans_json(state)) {
            (viewer.csrf_field())
            input type="hidden" name="idempotency_key" value=(form.idempotency_key);
            input type="hidden" name="step" value=(step);
            // Enter in a field submits with the form's first button: this one, so it moves forward and never
            // adds, removes or checks a data source, nor provisions, by accident.
            button.default-action type="submit" name="action" value="next" tabindex="-1" aria-hidden="true" hidden { "Next" }
            p.form-error role="alert" hidden[error_for(errors, "form").is_none()] {
                @if let Some(error) = error_for(errors, "form") { (error) }
            }
            fieldset.wizard-step data-step="1" hidden[step != 1] {
                legend { "Tenant details" }
                (display_name_field.render())
                (slug_field.render())
                (textarea_field("description", "Description", &form.description,
                    "Optional. What the tenant is for, up to 500 characters.",
                    error_for(errors, "description"),
                    Some(html! { span.counter data-counter="description" aria-live="polite" { (description_count) } })))
                (select_field("plan", "Billing tier", &plan_options(state), &form.plan, error_for(errors, "plan")))
                (email_field.render())
                (contact_field.render())
                (budget_field.render())
            }
            fieldset.wizard-step data-step="2" hidden[step != 2] {
                legend { "Infrastructure" }
                (select_field("region", "Region", &regions, &form.region, error_for(errors, "region")))
                fieldset.choice data-field="resource_tier" aria-describedby="field-resource_tier-error" {
                    legend { "Resource tier" }
                    @for option in ResourceTier::ALL {
                        @let option_plan = plan.map(|plan| option.scaled_plan(plan));
                        div.choice-option {
                            input #{ "field-resource_tier-" (option) } type="radio" name="resource_tier" value=(option)
                                checked[option == tier] aria-invalid=[tier_error.map(|_| "true")];
                            label for={ "field-resource_tier-" (option) } {
                                strong { (option) }
                                span.choice-detail data-tier-detail=(option) {
                                    @if let Some(option_plan) = &option_plan {
                                        (tier_capacity(option_plan)) " · "
                                        (money(monthly_estimate(&settings.pricing, option_plan, &form.region), currency)) " per month"
                                    }
                                }
                            }
                        }
                    }
                    p.field-error #field-resource_tier-error role="alert" { @if let Some(error) = tier_error { (error) } }
                }
                fieldset.choice data-field="isolation" aria-describedby="field-isolation-hint field-isolation-error" {
                    legend { "Compute" }
                    @for option in [Isolation::Database, Isolation::Schema] {
                        div.choice-option {
                            input #{ "field-isolation-" (option.as_str()) } type="radio" name="isolation" value=(option.as_str())
                                checked[isolation == option.as_str()] aria-invalid=[isolation_error.map(|_| "true")];
                            label for={ "field-isolation-" (option.as_str()) } {
                                strong { @if option == Isolation::Database { "Dedicated" } @else { "Shared" } }
                                span.choice-detail { (isolation_words(option)) }
                            }
                        }
                    }
                    p.hint #field-isolation-hint { "The billing tier decides where its tenants live; this must be the tier's." }
                    p.field-error #field-isolation-error role="alert" { @if let Some(error) = isolation_error { (error) } }
                }
                (select_field("server", "Target db server", &server_options(servers), &form.server, error_for(errors, "server")))
                p.hint { "Auto-placement picks the active server in the region with the most free room. Pick a server only for a reason, such as keeping two tenants together." }
            }
            fieldset.wizard-step data-step="3" hidden[step != 3] {
                legend { "Data sources" }
                p.hint { "Optional. The databases and services the tenant starts connected to. Each URL is kept as a secret (" code { "tenant-ds-<slug>-<name>" } ") and never shown again." }
                p.field-error role="alert" data-field="data_sources" { @if let Some(error) = error_for(errors, "data_sources") { (error) } }
                div.data-sources {
                    @for (index, source) in form.data_sources.iter().enumerate() {
                        @let check = view.check.as_ref().filter(|(row, _)| *row == index).map(|(_, check)| check);
                        (data_source_row(&index.to_string(), source, errors, check))
                    }
                }
                p.hint.data-sources-empty hidden[!form.data_sources.is_empty()] { "No data sources: the tenant starts empty." }
                template #data-source-row { (data_source_row("__index__", &empty_row, &FieldErrors::new(), None)) }
                div {
                    button type="submit" name="action" value="add_source" data-source-action="add"
                        disabled[form.data_sources.len() >= MAX_DATA_SOURCES] { "Add data source" }
                }
            }
            fieldset.wizard-step data-step="4" hidden[step != 4] {
                legend { "Service selection" }
                @if step == 4 || form.modules_chosen {
                    input type="hidden" name="modules_chosen" value="true";
                }
                fieldset.choice.modules data-field="modules" aria-describedby="field-modules-error" {
                    legend { "Modules" }
                    @for (name, label, about) in MODULE_TEXTS {
                        @let allowed = plan.is_none_or(|plan| plan_allows(plan, name));
                        div.choice-option data-module=(name) {
                            input #{ "field-module-" (name) } type="checkbox" name="modules" value=(name)
                                checked[allowed && form.module_on(plan, name)] disabled[!allowed]
                                aria-describedby={ "field-module-" (name) "-about" };
                            label for={ "field-module-" (name) } {
                                strong { (label) }
                                span.choice-detail #{ "field-module-" (name) "-about" } {
                                    (about)
                                    span.module-unavailable hidden[allowed] {
                                        " — not in the " (form.plan) " tier; choose a tier that has it"
                                    }
                                }
                            }
                        }
                    }
                    p.field-error #field-modules-error role="alert" { @if let Some(error) = modules_error { (error) } }
                }
                h3.review-title { "Resources the billing tier gives" }
                ul.plan-resources data-review="resources_list" {
                    @for resource in plan.map(|plan| plan.resources.clone()).unwrap_or_default() {
                        li { (resource) }
                    }
                }
                p.hint { "The billing tier decides these; choose another tier on step 1 for others." }
            }
            fieldset.wizard-step data-step="5" hidden[step != 5] {
                legend { "Security" }
                (select_field("auth_method", "Authentication method", &options_of(&auth_methods), &auth_method, error_for(errors, "security.auth_method")))
                (select_field("mfa_policy", "MFA policy", &options_of(&mfa_policies), &mfa_policy, error_for(errors, "security.mfa_policy")))
                (textarea_field("allowed_cidrs", "Network allowlist", &form.allowed_cidrs,
                    "Optional. One network per line in CIDR notation (10.0.0.0/8, 2001:db8::/32) or a single address; empty allows any.",
                    cidrs_error, None))
            }
            fieldset.wizard-step data-step="6" hidden[step != REVIEW_STEP] {
                legend { "Review" }
                dl.details.review {
                    (review_row("Display name", "display_name", &form.display_name))
                    (review_row("Slug", "slug", &form.slug))
                    (review_row("Description", "description", if form.description.trim().is_empty() { "none" } else { form.description.trim() }))
                    (review_row("Billing tier", "plan", &form.plan))
                    (review_row("First admin email", "admin_email", &form.admin_email))
                    (review_row("Contact name", "contact_name", if form.contact_name.trim().is_empty() { "none" } else { form.contact_name.trim() }))
                    (review_row("Monthly budget", "budget", review.as_ref().map_or("", |review| review.budget.as_str())))
                    (review_row("Region", "region", &form.region))
                    (review_row("Resource tier", "resource_tier", tier.as_str()))
                    (review_row("Compute", "isolation", &isolation))
                    (review_row("Target db server", "server", server_label))
                    (review_row("Data sources", "data_sources", &joined_or_none(data_sources_review.iter().map(String::as_str).collect())))
                    (review_row("Modules", "modules", &joined_or_none(chosen_modules)))
                    (review_row("Authentication", "auth_method", &auth_method))
                    (review_row("MFA policy", "mfa_policy", &mfa_policy))
                    (review_row("Network allowlist", "allowed_cidrs", &if cidrs_review.is_empty() { "any address".to_owned() } else { cidrs_review.join(", ") }))
                }
                h3.review-title { "What the tier gives" }
                dl.details.review.plan-review {
                    (review_row("Monthly price", "estimate", review.as_ref().map_or("", |review| review.estimate.as_str())))
                    (review_row("Resources", "resources", review.as_ref().map_or("", |review| review.resources.as_str())))
                    (review_row("Quotas", "quotas", review.as_ref().map_or("", |review| review.quotas.as_str())))
                    (review_row("Feature flags", "flags", review.as_ref().map_or("", |review| review.flags.as_str())))
                }
                @let approval_reason = review.as_ref().and_then(|review| review.approval_reason.as_deref());
                div.approval-notice role="status" hidden[approval_reason.is_none()] {
                    strong { "This request will wait for approval: " }
                    span data-review="approval_reason" { (approval_reason.unwrap_or_default()) }
                    " Another platform admin (not you) must approve it before anything is created; until then its job waits in "
                    em { "awaiting approval" } "."
                }
                div.checkbox-field {
                    input #field-dry_run type="checkbox" name="dry_run" value="true" checked[form.dry_run];
                    label for="field-dry_run" { "Dry run" }
                    p.hint { "Checks the slug and placement and stops: nothing is created, no secret is written." }
                }
            }
            div.wizard-nav {
                button.primary type="submit" name="action" value="next" data-wizard="next" hidden[step == REVIEW_STEP] { "Next" }
                button.primary type="submit" name="action" value="provision" data-wizard="provision" hidden[step != REVIEW_STEP] { "Provision" }
                button type="submit" name="action" value="back" data-wizard="back" hidden[step == 1] { "Back" }
            }
        }
        aside #job-drawer.drawer aria-labelledby="drawer-title" hidden
            data-can-operate=(viewer.can_operate()) data-error-help=(error_help_json()) {
            div.drawer-header {
                h2 #drawer-title tabindex="-1" { "Provisioning" }
                button.drawer-close type="button" { "Close" }
            }
            div.drawer-body {}
            div.drawer-footer { a.drawer-job-link href="/platform/jobs" { "Open the job's page" } }
        }
    }
}

async fn database_servers(
    state: &ServerState,
    viewer: &Viewer,
) -> Result<Vec<ServerRecord>, PageError> {
    Ok(state
        .platform
        .registry
        .list_servers()
        .await
        .or_page(viewer)?
        .into_iter()
        .filter(|server| server.engine.hosts_databases())
        .collect())
}

async fn render(
    state: &ServerState,
    viewer: &Viewer,
    view: &WizardView<'_>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let servers = database_servers(state, viewer).await?;
    let markup = wizard_page(state, viewer, &servers, view);
    Ok(html_response(
        status,
        shell(Some(viewer), Section::Tenants, "New tenant", markup),
    ))
}

/// `GET /platform/tenants/new`: step 1. A program asking for JSON here means the tenant whose slug is `new`.
pub async fn wizard_start(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    if !prefers_html(&headers) {
        return get_tenant(State(state), Path("new".to_owned()))
            .await
            .into_response();
    }
    let viewer = Viewer::new(&principal);
    let settings = &state.platform.settings;
    let form = WizardForm {
        plan: settings.default_plan.clone(),
        region: settings.default_region.clone(),
        resource_tier: ResourceTier::default().as_str().to_owned(),
        auth_method: AuthMethod::default().as_str().to_owned(),
        mfa_policy: MfaPolicy::default().as_str().to_owned(),
        idempotency_key: random_token(16).expose().to_owned(),
        ..WizardForm::default()
    };
    let view = WizardView {
        form: &form,
        step: 1,
        errors: &FieldErrors::new(),
        check: None,
    };
    render(&state, &viewer, &view, StatusCode::OK)
        .await
        .into_response()
}

/// `POST /platform/tenants/new`: a step of the wizard without JavaScript, or the final Provision.
pub async fn wizard_step(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    ApiForm(pairs): ApiForm<Vec<(String, String)>>,
) -> Response {
    let viewer = Viewer::new(&principal);
    let mut form = WizardForm::from_pairs(pairs);
    if form.idempotency_key.is_empty() {
        form.idempotency_key = random_token(16).expose().to_owned();
    }
    let outcome = advance(&state, &principal, &viewer, form).await;
    outcome.unwrap_or_else(IntoResponse::into_response)
}

async fn advance(
    state: &ServerState,
    principal: &Principal,
    viewer: &Viewer,
    mut form: WizardForm,
) -> Result<Response, PageError> {
    let step = form.step();
    let servers = database_servers(state, viewer).await?;
    let invalid = StatusCode::UNPROCESSABLE_ENTITY;
    let no_errors = FieldErrors::new();
    let view = |form, step, errors, check| WizardView {
        form,
        step,
        errors,
        check,
    };
    match form.action() {
        Action::Back => {
            let back = step.saturating_sub(1).max(1);
            render(
                state,
                viewer,
                &view(&form, back, &no_errors, None),
                StatusCode::OK,
            )
            .await
        }
        Action::AddSource => {
            if form.data_sources.len() < MAX_DATA_SOURCES {
                form.data_sources.push(RawDataSource {
                    kind: DataSourceKind::Postgres.as_str().to_owned(),
                    ..RawDataSource::default()
                });
            }
            render(
                state,
                viewer,
                &view(&form, 3, &no_errors, None),
                StatusCode::OK,
            )
            .await
        }
        Action::RemoveSource(row) => {
            if row < form.data_sources.len() {
                form.data_sources.remove(row);
            }
            render(
                state,
                viewer,
                &view(&form, 3, &no_errors, None),
                StatusCode::OK,
            )
            .await
        }
        Action::CheckSource(row) => {
            let Some(source) = form.data_sources.get(row) else {
                return render(
                    state,
                    viewer,
                    &view(&form, 3, &no_errors, None),
                    StatusCode::OK,
                )
                .await;
            };
            let parsed = DataSourceKind::parse(&source.kind)
                .map_err(|error| (format!("data_sources[{row}].kind"), error))
                .and_then(|kind| {
                    DataSourceUrl::parse(&source.url, kind)
                        .map(|url| (kind, url))
                        .map_err(|error| (format!("data_sources[{row}].url"), error))
                });
            match parsed {
                Ok((kind, url)) => {
                    let check = check_result(&check_data_source(kind, &url).await);
                    render(
                        state,
                        viewer,
                        &view(&form, 3, &no_errors, Some((row, check))),
                        StatusCode::OK,
                    )
                    .await
                }
                Err((field, error)) => {
                    let errors = vec![(field, coded_message(&error))];
                    render(state, viewer, &view(&form, 3, &errors, None), invalid).await
                }
            }
        }
        Action::Provision => {
            let errors = check_all(state, &servers, &form);
            if let Some(first) = errors.iter().map(|(field, _)| step_of(field)).min() {
                return render(state, viewer, &view(&form, first, &errors, None), invalid).await;
            }
            match provision(state, principal, &form).await {
                Ok(job_id) => Ok(see_other(&format!(
                    "/platform/jobs/{}",
                    query_escape(&job_id)
                ))),
                // A 5xx says nothing internal on a page either: the error page logs it under a reference.
                Err(error) if error.status.is_server_error() => Err(PageError::new(viewer, error)),
                Err(error) => {
                    let field = field_for_error(error.error.code, &error.error.message);
                    let errors = vec![(field.to_owned(), coded_message(&error.error))];
                    render(
                        state,
                        viewer,
                        &view(&form, step_of(field), &errors, None),
                        error.status,
                    )
                    .await
                }
            }
        }
        Action::Next => {
            let errors = check_step(state, &servers, &form, step);
            if errors.is_empty() {
                let next = (step + 1).min(REVIEW_STEP);
                render(
                    state,
                    viewer,
                    &view(&form, next, &errors, None),
                    StatusCode::OK,
                )
                .await
            } else {
                render(state, viewer, &view(&form, step, &errors, None), invalid).await
            }
        }
    }
}

/// Submits the job exactly as `POST /platform/tenants` does: the rate limit, the idempotency key, the profile
/// parsed as the API parses it, one submit that stores the data sources' URLs as secrets.
async fn provision(
    state: &ServerState,
    principal: &Principal,
    form: &WizardForm,
) -> Result<String, ApiError> {
    if state.rate_limiter.check(&principal.scope()).is_err() {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            "too many provisioning requests; wait a minute",
        ));
    }
    // The form always carries a plan and a region (the defaults are filled in on the first step); an empty server
    // asks for auto-placement. `check_all` has already reported each bad field on its own.
    let mut spec = TenantSpec::parse(
        RawTenantSpec {
            slug: &form.slug,
            display_name: &form.display_name,
            admin_email: &form.admin_email,
            plan: Some(&form.plan),
            region: Some(&form.region),
            server: (!form.server.is_empty()).then_some(form.server.as_str()),
            budget: form.budget()?,
            dry_run: form.dry_run,
        },
        SpecDefaults {
            plan: &state.platform.settings.default_plan,
            region: &state.platform.settings.default_region,
        },
    )?;
    let parsed = TenantProfile::parse(&form.raw_profile(), &spec.slug).map_err(CodedError::from)?;
    spec.profile = parsed.profile;
    let idempotency = (!form.idempotency_key.is_empty()).then(|| IdempotencyRequest {
        principal: principal.scope(),
        key: form.idempotency_key.clone(),
    });
    let submitted = submit_provision_with_data_sources(
        &state.platform,
        &spec,
        &parsed.data_source_urls,
        &principal.actor(),
        idempotency,
    )
    .await?;
    if matches!(submitted, Submitted::New(_)) {
        state.wake_workers.notify_one();
    }
    Ok(submitted.job().id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_land_on_their_field() {
        assert_eq!(field_for_error(ErrorCode::InvalidSlug, ""), "slug");
        assert_eq!(field_for_error(ErrorCode::AlreadyProvisioned, ""), "slug");
        assert_eq!(field_for_error(ErrorCode::Conflict, ""), "slug");
        assert_eq!(field_for_error(ErrorCode::NoCapacity, ""), "server");
        assert_eq!(field_for_error(ErrorCode::DbServerNotFound, ""), "server");
        assert_eq!(
            field_for_error(
                ErrorCode::InvalidInput,
                "display name must have 3 to 100 characters; it has 1"
            ),
            "display_name"
        );
        assert_eq!(
            field_for_error(
                ErrorCode::InvalidInput,
                "admin email \"x\" is not a valid address"
            ),
            "admin_email"
        );
        assert_eq!(
            field_for_error(
                ErrorCode::InvalidInput,
                "plan \"gold\" does not exist; known plans: starter"
            ),
            "plan"
        );
        assert_eq!(
            field_for_error(
                ErrorCode::InvalidInput,
                "region \"mars\" does not exist; known regions: local"
            ),
            "region"
        );
        assert_eq!(
            field_for_error(
                ErrorCode::InvalidInput,
                "budget \"lots\" is not a whole number of at least 0"
            ),
            "budget"
        );
        assert_eq!(step_of("budget"), 1);
        assert_eq!(step_of("isolation"), 2);
        assert_eq!(step_of("data_sources[2].url"), 3);
        assert_eq!(step_of("modules"), 4);
        assert_eq!(step_of("security.allowed_cidrs"), 5);
        assert_eq!(
            field_for_error(
                ErrorCode::InvalidInput,
                "plan \"free\" gives each tenant a schema in a shared database, not dedicated"
            ),
            "isolation"
        );
        assert_eq!(field_for_error(ErrorCode::RateLimited, ""), "form");
    }
}
