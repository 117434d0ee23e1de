//! What a plan means for one tenant: its monthly cost, its effective settings (the registry's copy and the rows
//! of tenantry's settings table in the tenant database), its cost labels, and whether a request for it waits for
//! approval.

use crate::platform::{PricingSettings, Settings};
use tenantry_core::{Error as CodedError, Plan};
use tenantry_registry::ApprovalRequest;

/// Keys tenantry owns in its settings table in a tenant database beyond its fixed ones: stale ones are removed when
/// the plan changes.
pub const OWNED_SETTING_PREFIXES: [&str; 3] = ["module.", "feature.", "label."];

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

/// The named plan, or `E_INVALID_INPUT` naming the known ones.
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
