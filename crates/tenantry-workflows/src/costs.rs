//! Cost attribution: monthly chargeback per tenant, plan, region and cost center, from the registry's tenants and
//! the effective settings each was given; and the per-tenant lines of `/metrics`.

use crate::plans::monthly_estimate;
use crate::platform::Platform;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use tenantry_core::{Error as CodedError, TenantStatus};
use tenantry_registry::{Registry, TenantRecord};

/// Tenants read per registry query while adding up a fleet.
const PAGE: i64 = 1000;

/// One tenant's line of the chargeback.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantCost {
    pub tenant_slug: String,
    pub plan: String,
    pub region: String,
    pub cost_center: String,
    pub status: String,
    pub monthly_cost: f64,
}

/// A total over a group (a plan, a region or a cost center).
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CostTotal {
    pub key: String,
    pub tenants: u64,
    pub monthly_cost: f64,
}

/// The monthly chargeback of every billable tenant (provisioning, active or suspended).
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CostReport {
    pub currency: String,
    pub tenants: Vec<TenantCost>,
    pub by_plan: Vec<CostTotal>,
    pub by_region: Vec<CostTotal>,
    pub by_cost_center: Vec<CostTotal>,
    pub total_monthly_cost: f64,
}

fn is_billable(status: TenantStatus) -> bool {
    matches!(
        status,
        TenantStatus::Provisioning | TenantStatus::Active | TenantStatus::Suspended
    )
}

/// Every tenant in the registry, a page at a time.
async fn all_tenants(registry: &Registry) -> Result<Vec<TenantRecord>, tenantry_registry::Error> {
    let mut tenants = Vec::new();
    loop {
        let page = registry
            .list_tenants(None, None, PAGE, tenants.len() as i64)
            .await?;
        let done = (page.len() as i64) < PAGE;
        tenants.extend(page);
        if done {
            return Ok(tenants);
        }
    }
}

/// The tenant's monthly cost: what it was given when provisioned or moved to its plan, else today's estimate.
fn tenant_cost(platform: &Platform, tenant: &TenantRecord) -> f64 {
    tenant
        .settings
        .get("monthly_cost")
        .and_then(serde_json::Value::as_f64)
        .or_else(|| {
            crate::plans::registered_plan(&platform.settings, tenant)
                .map(|plan| monthly_estimate(&platform.settings.pricing, &plan, &tenant.region))
        })
        .unwrap_or(0.0)
}

fn label(tenant: &TenantRecord, key: &str) -> String {
    tenant
        .labels
        .get(key)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn cents(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Adds up the chargeback of every billable tenant.
pub async fn cost_report(platform: &Platform) -> Result<CostReport, CodedError> {
    let tenants = all_tenants(&platform.registry)
        .await
        .map_err(crate::registry_error)?;
    let lines: Vec<TenantCost> = tenants
        .iter()
        .filter(|tenant| is_billable(tenant.status))
        .map(|tenant| TenantCost {
            tenant_slug: tenant.slug.clone(),
            plan: tenant.plan.clone(),
            region: tenant.region.clone(),
            cost_center: label(tenant, "cost_center"),
            status: tenant.status.as_str().to_owned(),
            monthly_cost: tenant_cost(platform, tenant),
        })
        .collect();
    let group = |key: fn(&TenantCost) -> &str| {
        let mut totals: BTreeMap<String, (u64, f64)> = BTreeMap::new();
        for line in &lines {
            let entry = totals.entry(key(line).to_owned()).or_default();
            entry.0 += 1;
            entry.1 += line.monthly_cost;
        }
        totals
            .into_iter()
            .map(|(key, (tenants, cost))| CostTotal {
                key,
                tenants,
                monthly_cost: cents(cost),
            })
            .collect::<Vec<_>>()
    };
    Ok(CostReport {
        currency: platform.settings.pricing.currency.clone(),
        by_plan: group(|line| &line.plan),
        by_region: group(|line| &line.region),
        by_cost_center: group(|line| &line.cost_center),
        total_monthly_cost: cents(lines.iter().map(|line| line.monthly_cost).sum()),
        tenants: lines,
    })
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The per-tenant lines of `/metrics` for every registered tenant, read from the registry at scrape time.
pub async fn tenant_metrics_text(registry: &Registry) -> Result<String, tenantry_registry::Error> {
    Ok(render_tenant_metrics(&all_tenants(registry).await?))
}

/// `tenantry_tenant_info` (one series per tenant with its plan, region, cost center and status) and
/// `tenantry_tenant_monthly_cost` for billable tenants, in Prometheus text.
pub fn render_tenant_metrics(tenants: &[TenantRecord]) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# HELP tenantry_tenant_info Every registered tenant, with its plan, region, cost center and status."
    );
    let _ = writeln!(text, "# TYPE tenantry_tenant_info gauge");
    let labels_of = |tenant: &TenantRecord| {
        format!(
            "tenant=\"{}\",plan=\"{}\",region=\"{}\",cost_center=\"{}\"",
            escape_label(&tenant.slug),
            escape_label(&tenant.plan),
            escape_label(&tenant.region),
            escape_label(&label(tenant, "cost_center"))
        )
    };
    for tenant in tenants {
        let _ = writeln!(
            text,
            "tenantry_tenant_info{{{},status=\"{}\"}} 1",
            labels_of(tenant),
            tenant.status
        );
    }
    let _ = writeln!(
        text,
        "# HELP tenantry_tenant_monthly_cost The monthly cost attributed to each billable tenant."
    );
    let _ = writeln!(text, "# TYPE tenantry_tenant_monthly_cost gauge");
    for tenant in tenants.iter().filter(|tenant| is_billable(tenant.status)) {
        if let Some(cost) = tenant
            .settings
            .get("monthly_cost")
            .and_then(serde_json::Value::as_f64)
        {
            let _ = writeln!(
                text,
                "tenantry_tenant_monthly_cost{{{}}} {cost}",
                labels_of(tenant)
            );
        }
    }
    text
}
