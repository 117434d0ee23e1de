//! What a plan means for one tenant: its monthly cost, its effective settings (the registry's copy and the rows
//! of tenantry's settings table in the tenant database), its cost labels, and whether a request for it waits for
//! approval.

use crate::platform::{PricingSettings, Settings};
use tenantry_core::{Error as CodedError, Plan, ResourceTier, TenantProfile};
use tenantry_registry::ApprovalRequest;

/// Keys tenantry owns in its settings table in a tenant database beyond its fixed ones: stale ones are removed when
/// the plan changes.
pub const OWNED_SETTING_PREFIXES: [&str; 4] = ["module.", "feature.", "label.", "security."];

/// The plan's monthly cost in `region`: list price × plan multiplier × region multiplier, to the cent.
pub fn monthly_estimate(pricing: &PricingSettings, plan: &Plan, region: &str) -> f64 {
    let region_multiplier = pricing
        .region_multipliers
        .get(region)
        .copied()
        .unwrap_or(1.0);
    let cost = plan.base_monthly_price * plan.price_multiplier * region_multiplier;
    (cost * 100.0).round() / 100.0
}

/// The cost labels every resource of the tenant carries.
pub fn cost_labels(slug: &str, plan: &Plan) -> serde_json::Value {
    serde_json::json!({
        "tenant": slug,
        "tenant_id": slug,
        "plan": plan.name,
        "cost_center": plan.cost_center,
    })
}

/// The tenant's effective settings under `plan`, as the registry keeps them.
pub fn effective_settings(
    settings: &Settings,
    plan: &Plan,
    region: &str,
    slug: &str,
) -> serde_json::Value {
    let modules: serde_json::Map<String, serde_json::Value> = plan
        .modules
        .entries()
        .into_iter()
        .map(|(name, on)| (name.to_owned(), serde_json::Value::Bool(on)))
        .collect();
    serde_json::json!({
        "plan": plan.name,
        "region": region,
        "connection_limit": plan.connection_limit,
        "statement_timeout_ms": plan.statement_timeout_ms,
        "rate_limit_qpm": plan.rate_limit_qpm,
        "query_sla_ms": plan.query_sla_ms,
        "modules": modules,
        "feature_flags": plan.feature_flags,
        "monthly_cost": monthly_estimate(&settings.pricing, plan, region),
        "currency": settings.pricing.currency,
        "labels": cost_labels(slug, plan),
    })
}

/// The key of a tenant's effective settings that lists the modules it switched off though its plan has them on
/// (a change request's doing). Absent when there are none.
pub const MODULES_OFF_KEY: &str = "modules_off";

/// Effective settings with the tenant's own switched-off modules applied: each listed module off, and the list
/// kept under [`MODULES_OFF_KEY`] so the next plan change or reconcile keeps them.
pub fn with_modules_off(
    mut effective: serde_json::Value,
    modules_off: &[String],
) -> serde_json::Value {
    if modules_off.is_empty() {
        return effective;
    }
    if let Some(modules) = effective
        .get_mut("modules")
        .and_then(serde_json::Value::as_object_mut)
    {
        for module in modules_off {
            modules.insert(module.clone(), serde_json::Value::Bool(false));
        }
    }
    if let Some(object) = effective.as_object_mut() {
        object.insert(MODULES_OFF_KEY.to_owned(), serde_json::json!(modules_off));
    }
    effective
}

/// Effective settings with what the tenant's profile adds: its resource tier (the numbers are already the
/// tier's, from [`tenant_plan`]) and its security policy (`security.auth_method`, `security.mfa_policy`,
/// `security.allowed_cidrs` as a JSON list, empty for anywhere: the rows the tenant's application reads). The
/// profile's module switches are applied once, at provisioning, as switched-off modules ([`with_modules_off`]),
/// which later plan changes and change requests carry on.
pub fn with_profile(
    mut effective: serde_json::Value,
    profile: &TenantProfile,
) -> serde_json::Value {
    if let Some(object) = effective.as_object_mut() {
        object.insert(
            "resource_tier".to_owned(),
            serde_json::json!(profile.resource_tier.as_str()),
        );
        let cidrs: Vec<String> = profile
            .security
            .allowed_cidrs
            .iter()
            .map(ToString::to_string)
            .collect();
        object.insert(
            "security".to_owned(),
            serde_json::json!({
                "auth_method": profile.security.auth_method.as_str(),
                "mfa_policy": profile.security.mfa_policy.as_str(),
                "allowed_cidrs": cidrs,
            }),
        );
    }
    effective
}

/// The modules a tenant has switched off, from its effective settings in the registry.
pub fn tenant_modules_off(effective: &serde_json::Value) -> Vec<String> {
    effective
        .get(MODULES_OFF_KEY)
        .and_then(|off| serde_json::from_value(off.clone()).ok())
        .unwrap_or_default()
}

/// The modules switched off under `plan` after applying `switches` to a tenant that had `modules_off`: only
/// modules the plan has on can be switched off (one the plan has off is off anyway), in the plan's order.
pub fn modules_off_after(
    plan: &Plan,
    modules_off: &[String],
    switches: &std::collections::BTreeMap<String, bool>,
) -> Vec<String> {
    plan.modules
        .entries()
        .into_iter()
        .filter(|(_, plan_has_it)| *plan_has_it)
        .map(|(name, _)| name)
        .filter(|name| match switches.get(*name) {
            Some(on) => !on,
            None => modules_off.iter().any(|off| off == name),
        })
        .map(str::to_owned)
        .collect()
}

/// Module switches a request may ask for under `plan`: known modules only (`E_INVALID_INPUT` naming them), and
/// on only where the plan has the module on.
pub fn validate_module_switches(
    plan: &Plan,
    switches: &std::collections::BTreeMap<String, bool>,
) -> Result<(), CodedError> {
    plan.check_module_switches(switches)
}

/// The same settings as rows of tenantry's settings table in the tenant database, the flat form an application
/// reads.
pub fn settings_rows(effective: &serde_json::Value) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let Some(object) = effective.as_object() else {
        return rows;
    };
    for (key, value) in object {
        let prefix = match key.as_str() {
            "modules" => "module.",
            "feature_flags" => "feature.",
            "labels" => "label.",
            "security" => "security.",
            // Already applied to `modules`: the application reads `module.<name>`.
            MODULES_OFF_KEY => continue,
            _ => {
                rows.push((key.clone(), scalar_text(value)));
                continue;
            }
        };
        if let Some(nested) = value.as_object() {
            for (name, value) in nested {
                rows.push((format!("{prefix}{name}"), scalar_text(value)));
            }
        }
    }
    rows.sort();
    rows
}

fn scalar_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Whether a request for `plan` with `budget` waits for a PLATFORM_ADMIN, and why. Without a budget, the plan's
/// monthly estimate stands in for it.
pub fn approval_needed(
    settings: &Settings,
    plan: &Plan,
    region: &str,
    budget: Option<u64>,
    now_millis: i64,
) -> Option<ApprovalRequest> {
    let threshold = settings.approvals.auto_approve_threshold;
    let estimate = monthly_estimate(&settings.pricing, plan, region);
    let budget_value = budget.map_or(estimate, |budget| budget as f64);
    let over_budget = budget_value >= threshold as f64;
    if !over_budget && !plan.approval_required {
        return None;
    }
    let currency = &settings.pricing.currency;
    let reason = if plan.approval_required {
        format!(
            "waiting for approval: plan {:?} always needs a PLATFORM_ADMIN other than the requester",
            plan.name
        )
    } else {
        format!(
            "waiting for approval: budget {budget_value} {currency} is at or above the auto-approve threshold of {threshold} {currency}; a PLATFORM_ADMIN other than the requester must approve"
        )
    };
    let ttl_millis = i64::try_from(settings.approvals.ttl.as_millis()).unwrap_or(i64::MAX);
    Some(ApprovalRequest {
        expires_at: now_millis.saturating_add(ttl_millis),
        details: serde_json::json!({
            "plan": plan.name,
            "budget": budget,
            "monthly_estimate": estimate,
            "auto_approve_threshold": threshold,
            "plan_requires_approval": plan.approval_required,
            "currency": currency,
        }),
        reason,
    })
}

/// The named plan as a tenant of resource tier `tier` has it ([`ResourceTier::scaled_plan`]): the plan whose
/// numbers reach the world for that tenant (its role's connection limit, its settings' query rate, every kind's
/// quotas, its price). Every workflow that acts on one tenant's plan resolves it here.
pub fn tenant_plan(
    settings: &Settings,
    name: &str,
    tier: ResourceTier,
) -> Result<Plan, CodedError> {
    require_plan(settings, name).map(|plan| tier.scaled_plan(plan))
}

/// A registered tenant's plan at its tier; `None` when the plan is no longer configured.
pub fn registered_plan(
    settings: &Settings,
    tenant: &tenantry_registry::TenantRecord,
) -> Option<Plan> {
    settings
        .plan(&tenant.plan)
        .map(|plan| tenant.profile.resource_tier.scaled_plan(plan))
}

/// The named plan, or `E_INVALID_INPUT` naming the known ones. Unscaled: what the plan says for a medium
/// tenant; a tenant's own plan is [`tenant_plan`].
pub fn require_plan<'a>(settings: &'a Settings, name: &str) -> Result<&'a Plan, CodedError> {
    settings.plan(name).ok_or_else(|| {
        let known: Vec<&str> = settings
            .plans
            .iter()
            .map(|plan| plan.name.as_str())
            .collect();
        CodedError::invalid_input(format!(
            "plan {name:?} does not exist; known plans: {}",
            known.join(", ")
        ))
    })
}

/// Refuses `what` (a move, a clone, an in-place restore) for a tenant of the shared tier: those copy or replace a
/// database of the tenant's own, and a shared-tier tenant is a schema in the server's shared database
/// (`E_INVALID_INPUT`, before any job is recorded).
pub(crate) fn refuse_shared_tier(
    settings: &crate::Settings,
    slug: &str,
    plan: &str,
    what: &str,
) -> Result<(), tenantry_core::Error> {
    match settings.plan(plan) {
        Some(plan) if plan.isolation == tenantry_core::Isolation::Schema => {
            Err(tenantry_core::Error::invalid_input(format!(
                "tenant {slug:?} is on plan {:?}, a schema in the server's shared database: {what} works on a \
                 tenant with a database of its own",
                plan.name
            )))
        }
        _ => Ok(()),
    }
}
