//! `plans`, `tenants set-plan`, `validate` and `costs`: what each plan gives and costs, moving a tenant between
//! plans, the validation suite on demand, and the monthly chargeback.

use super::provision::{lease_for, run_submitted};
use crate::app::{cli_actor, App};
use crate::config::Config;
use crate::output::{print_json, print_table};
use crate::CommandResult;
use std::process::ExitCode;
use tenantry_core::{Error as CodedError, ErrorCode, Slug};
use tenantry_workflows::{
    cost_report, monthly_estimate, registry_error, run_checks, submit_reconcile_to_run,
    submit_set_plan, submit_set_plan_to_run, CheckStatus, PricingSettings, ReconcileRequest,
    SetPlanRequest, NEIGHBOURS_ON_DEMAND,
};

pub fn list(config: &Config, region: Option<&str>, json: bool) -> CommandResult {
    let region = region.unwrap_or(&config.default_region);
    if !config.regions.iter().any(|known| known == region) {
        return Err(CodedError::invalid_input(format!(
            "region {region:?} does not exist; known regions: {}",
            config.regions.join(", ")
        ))
        .into());
    }
    let pricing = PricingSettings {
        currency: config.currency.clone(),
        region_multipliers: config.region_multipliers.clone(),
    };
    if json {
        let plans: Vec<serde_json::Value> = config
            .plans
            .iter()
            .map(|plan| {
                let mut value = serde_json::to_value(plan).unwrap_or_default();
                value["monthly_estimate"] =
                    serde_json::json!(monthly_estimate(&pricing, plan, region));
                value["currency"] = serde_json::json!(config.currency);
                value
            })
            .collect();
        print_json(&plans)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = config
        .plans
        .iter()
        .map(|plan| {
            let modules: Vec<&str> = plan
                .modules
                .entries()
                .into_iter()
                .filter(|(_, on)| *on)
                .map(|(name, _)| name)
                .collect();
            let flags: Vec<&str> = plan
                .feature_flags
                .iter()
                .filter(|(_, on)| **on)
                .map(|(name, _)| name.as_str())
                .collect();
            vec![
                plan.name.clone(),
                plan.resources.join("+"),
                plan.connection_limit.to_string(),
                format!("{} ms", plan.statement_timeout_ms),
                format!("{}/min", plan.rate_limit_qpm),
                modules.join(","),
                flags.join(","),
                format!(
                    "{:.2} {}",
                    monthly_estimate(&pricing, plan, region),
                    config.currency
                ),
                if plan.approval_required {
                    "always"
                } else {
                    "by budget"
                }
                .to_owned(),
            ]
        })
        .collect();
    print_table(
        &[
            "PLAN",
            "RESOURCES",
            "CONNECTIONS",
            "STATEMENT TIMEOUT",
            "RATE LIMIT",
            "MODULES",
            "FEATURES",
            "MONTHLY",
            "APPROVAL",
        ],
        &rows,
    );
    println!(
        "prices in region {region}; budgets at or above {} {} wait for approval",
        config.auto_approve_threshold, config.currency
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn set_plan(
    app: &App,
    slug: &str,
    plan: &str,
    budget: Option<u64>,
    no_wait: bool,
    json: bool,
) -> CommandResult {
    let request = SetPlanRequest {
        slug: Slug::parse(slug)?,
        plan: plan.to_owned(),
        previous_plan: String::new(),
        budget: tenantry_core::checked_budget(budget)?,
        reconcile: false,
        kind: None,
        modules: Default::default(),
        previous_modules_off: Vec::new(),
        resource_tier: None,
        previous_resource_tier: Default::default(),
    };
    let runner = app.runner();
    let submitted = if no_wait {
        submit_set_plan(&app.platform, &request, &cli_actor()).await?
    } else {
        submit_set_plan_to_run(&app.platform, &request, &cli_actor(), lease_for(&runner)).await?
    };
    let doing = format!("moving tenant {slug} to plan {plan}");
    run_submitted(app, runner, submitted.job(), &doing, no_wait, json).await
}

/// Converges one tenant (or every tenant) on its plan and on tenantry's access model, audited
/// `TENANT_RECONCILED`. For one tenant: a set-plan job to the plan it is on (of `kind` alone if given). For
/// the fleet: one reconcile job for every tenant's other resources (those of `kind` if given), then a set-plan
/// job per active tenant for its database. Stops at the first job that does not complete.
pub async fn reconcile(
    app: &App,
    slug: Option<&str>,
    kind: Option<&str>,
    json: bool,
) -> CommandResult {
    tenantry_workflows::validate_reconcile_kind(&app.platform, kind)?;
    let database_only = Some(tenantry_core::DATABASE_RESOURCE);
    if slug.is_none() && kind != database_only {
        let request = ReconcileRequest {
            kind: kind.map(str::to_owned),
        };
        let runner = app.runner();
        let submitted = submit_reconcile_to_run(
            &app.platform,
            &request,
            &cli_actor(),
            Some(lease_for(&runner)),
        )
        .await?;
        let doing = match kind {
            Some(kind) => format!("reconciling every tenant's {kind}"),
            None => "reconciling every tenant's resources beyond its database".to_owned(),
        };
        let exit = run_submitted(app, runner, submitted.job(), &doing, false, json).await?;
        if exit != ExitCode::SUCCESS || kind.is_some() {
            return Ok(exit);
        }
    }
    let tenants = match slug {
        Some(slug) => vec![app
            .platform
            .registry
            .require_tenant(Slug::parse(slug)?.as_str())
            .await
            .map_err(registry_error)?],
        None => app
            .platform
            .registry
            .list_tenants(None, None, i64::MAX, 0)
            .await
            .map_err(registry_error)?
            .into_iter()
            .filter(|tenant| tenant.status == tenantry_core::TenantStatus::Active)
            .collect(),
    };
    for tenant in tenants {
        let request = SetPlanRequest {
            slug: Slug::parse(&tenant.slug)?,
            plan: tenant.plan.clone(),
            previous_plan: String::new(),
            budget: None,
            reconcile: true,
            // The fleet job above did the other resources.
            kind: match slug {
                Some(_) => kind.map(str::to_owned),
                None => database_only.map(str::to_owned),
            },
            modules: Default::default(),
            previous_modules_off: Vec::new(),
            resource_tier: None,
            previous_resource_tier: Default::default(),
        };
        let runner = app.runner();
        let submitted =
            submit_set_plan_to_run(&app.platform, &request, &cli_actor(), lease_for(&runner))
                .await?;
        let doing = format!("reconciling tenant {}", tenant.slug);
        let exit = run_submitted(app, runner, submitted.job(), &doing, false, json).await?;
        if exit != ExitCode::SUCCESS {
            return Ok(exit);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn validate(app: &App, slug: &Slug, json: bool) -> CommandResult {
    let tenant = app
        .platform
        .registry
        .require_tenant(slug.as_str())
        .await
        .map_err(registry_error)?;
    let report = run_checks(&app.platform, &tenant, NEIGHBOURS_ON_DEMAND).await?;
    if json {
        print_json(&report)?;
    } else {
        let rows: Vec<Vec<String>> = report
            .checks
            .iter()
            .map(|check| {
                vec![
                    check.name.to_owned(),
                    if check.critical {
                        "critical"
                    } else {
                        "warning"
                    }
                    .to_owned(),
                    check.status.as_str().to_owned(),
                    format!("{:.2} ms", check.duration_ms),
                    check.detail.clone(),
                ]
            })
            .collect();
        print_table(&["CHECK", "ON FAILURE", "STATUS", "TOOK", "DETAIL"], &rows);
        println!("tenant {}: {}", tenant.slug, report.summary());
    }
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|check| check.status == CheckStatus::Failed)
        .map(|check| check.name.as_str())
        .collect();
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    // The report above is the output, in JSON mode too; the verdict goes to stderr like any other error.
    let error = CodedError::new(
        ErrorCode::ValidationFailed,
        format!(
            "tenant {}: critical check(s) failed: {}",
            tenant.slug,
            failed.join(", ")
        ),
    );
    eprintln!("error: {error}");
    Ok(ExitCode::FAILURE)
}

pub async fn costs(app: &App, json: bool) -> CommandResult {
    let report = cost_report(&app.platform).await?;
    if json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    if report.tenants.is_empty() {
        println!("No billable tenants yet — provision one with `tenantry provision-tenant`.");
        return Ok(ExitCode::SUCCESS);
    }
    let money = |value: f64| format!("{value:.2} {}", report.currency);
    let rows: Vec<Vec<String>> = report
        .tenants
        .iter()
        .map(|line| {
            vec![
                line.tenant_slug.clone(),
                line.plan.clone(),
                line.region.clone(),
                line.cost_center.clone(),
                line.status.clone(),
                money(line.monthly_cost),
            ]
        })
        .collect();
    print_table(
        &[
            "TENANT",
            "PLAN",
            "REGION",
            "COST CENTER",
            "STATUS",
            "MONTHLY",
        ],
        &rows,
    );
    for (title, totals) in [
        ("PLAN", &report.by_plan),
        ("REGION", &report.by_region),
        ("COST CENTER", &report.by_cost_center),
    ] {
        println!();
        let rows: Vec<Vec<String>> = totals
            .iter()
            .map(|total| {
                vec![
                    total.key.clone(),
                    total.tenants.to_string(),
                    money(total.monthly_cost),
                ]
            })
            .collect();
        print_table(&[title, "TENANTS", "MONTHLY"], &rows);
    }
    println!();
    println!("total {} per month", money(report.total_monthly_cost));
    Ok(ExitCode::SUCCESS)
}
