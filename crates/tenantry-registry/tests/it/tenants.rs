//! Conformance cases for tenant rows: idempotent registration and removal, status changes, listing.

use crate::harness::{
    add_postgres_server, audit_event, claimed_provision_job, count_audit, tenant_record,
};
use tenantry_core::TenantStatus;
use tenantry_registry::{Error, Registry};

pub async fn case_tenants_register_is_idempotent(registry: Registry) -> anyhow::Result<()> {
    add_postgres_server(&registry, "pg-a", 10).await?;
    let (job, fence) = claimed_provision_job(&registry, "acme").await?;
    let tenant = tenant_record("acme", "Acme Corp", "pg-a", TenantStatus::Provisioning);
    let audit = audit_event("worker-1", "TENANT_REGISTERED", Some("acme"), Some(&job.id));
    let before = tenantry_registry::now_millis();
    registry
        .register_tenant(&fence, &tenant, &[], &audit)
        .await?;

    let stored = registry.require_tenant("acme").await?;
    assert_eq!(
        stored,
        tenantry_registry::TenantRecord {
            created_at: stored.created_at,
            updated_at: stored.updated_at,
            ..tenant.clone()
        }
    );
    assert!(
        stored.created_at >= before,
        "the registry sets created_at, not the caller"
    );
    assert_eq!(stored.created_at, stored.updated_at);
    assert_eq!(registry.get_server("pg-a").await?.tenant_count, 1);

    let changed = tenant_record("acme", "Someone Else", "pg-a", TenantStatus::Active);
    registry
        .register_tenant(&fence, &changed, &[], &audit)
        .await?;
    assert_eq!(registry.require_tenant("acme").await?, stored);
    assert_eq!(
        count_audit(&registry, "TENANT_REGISTERED", Some("acme")).await?,
        1
    );
    assert_eq!(registry.get_server("pg-a").await?.tenant_count, 1);
    Ok(())
}

pub async fn case_tenants_register_on_unknown_server_is_conflict(
    registry: Registry,
) -> anyhow::Result<()> {
    let (job, fence) = claimed_provision_job(&registry, "acme").await?;
    let tenant = tenant_record("acme", "Acme Corp", "ghost", TenantStatus::Provisioning);
    let audit = audit_event("worker-1", "TENANT_REGISTERED", Some("acme"), Some(&job.id));
    let registered = registry.register_tenant(&fence, &tenant, &[], &audit).await;
    assert!(
        matches!(registered, Err(Error::Conflict { .. })),
        "expected Conflict, got {registered:?}"
    );
    assert!(registry.get_tenant("acme").await?.is_none());
    assert_eq!(count_audit(&registry, "TENANT_REGISTERED", None).await?, 0);
    Ok(())
}

pub async fn case_tenants_remove_twice_is_fine(registry: Registry) -> anyhow::Result<()> {
    add_postgres_server(&registry, "pg-a", 10).await?;
    let (job, fence) = claimed_provision_job(&registry, "acme").await?;
    let tenant = tenant_record("acme", "Acme Corp", "pg-a", TenantStatus::Active);
    registry
        .register_tenant(
            &fence,
            &tenant,
            &[],
            &audit_event("worker-1", "TENANT_REGISTERED", Some("acme"), None),
        )
        .await?;
    let removal_audit = audit_event("worker-1", "TENANT_REMOVED", Some("acme"), Some(&job.id));

    assert!(
        registry
            .remove_tenant(&fence, "acme", &removal_audit)
            .await?
    );
    assert!(registry.get_tenant("acme").await?.is_none());
    let required = registry.require_tenant("acme").await;
    assert!(
        matches!(required, Err(Error::NotFound { .. })),
        "expected NotFound, got {required:?}"
    );
    assert!(
        !registry
            .remove_tenant(&fence, "acme", &removal_audit)
            .await?
    );
    assert_eq!(
        count_audit(&registry, "TENANT_REMOVED", Some("acme")).await?,
        1
    );
    assert_eq!(registry.get_server("pg-a").await?.tenant_count, 0);
    Ok(())
}

pub async fn case_tenants_set_status_audits_only_changes(registry: Registry) -> anyhow::Result<()> {
    add_postgres_server(&registry, "pg-a", 10).await?;
    let (_job, fence) = claimed_provision_job(&registry, "acme").await?;
    let tenant = tenant_record("acme", "Acme Corp", "pg-a", TenantStatus::Provisioning);
    registry
        .register_tenant(
            &fence,
            &tenant,
            &[],
            &audit_event("worker-1", "TENANT_REGISTERED", Some("acme"), None),
        )
        .await?;
    let activation = audit_event("worker-1", "TENANT_ACTIVATED", Some("acme"), None);

    registry
        .set_tenant_status(&fence, "acme", TenantStatus::Active, &activation)
        .await?;
    assert_eq!(
        registry.require_tenant("acme").await?.status,
        TenantStatus::Active
    );
    registry
        .set_tenant_status(&fence, "acme", TenantStatus::Active, &activation)
        .await?;
    assert_eq!(
        count_audit(&registry, "TENANT_ACTIVATED", Some("acme")).await?,
        1
    );

    // A tenant that does not exist changes nothing and records nothing.
    let ghost_audit = audit_event("worker-1", "TENANT_SUSPENDED", Some("ghost"), None);
    registry
        .set_tenant_status(&fence, "ghost", TenantStatus::Suspended, &ghost_audit)
        .await?;
    assert_eq!(count_audit(&registry, "TENANT_SUSPENDED", None).await?, 0);
    Ok(())
}

pub async fn case_tenants_set_plan_changes_plan_labels_settings_with_audit(
    registry: Registry,
) -> anyhow::Result<()> {
    add_postgres_server(&registry, "pg-a", 10).await?;
    let (_job, fence) = claimed_provision_job(&registry, "acme").await?;
    let tenant = tenant_record("acme", "Acme Corp", "pg-a", TenantStatus::Active);
    registry
        .register_tenant(
            &fence,
            &tenant,
            &[],
            &audit_event("worker-1", "TENANT_REGISTERED", Some("acme"), None),
        )
        .await?;
    assert_eq!(
        registry.require_tenant("acme").await?.settings,
        tenant.settings
    );
    let labels =
        serde_json::json!({ "tenant_id": "acme", "plan": "enterprise", "cost_center": "ent" });
    let settings = serde_json::json!({ "plan": "enterprise", "monthly_cost": 147.0 });
    let change = audit_event("worker-1", "TENANT_PLAN_CHANGED", Some("acme"), None);
    for _ in 0..2 {
        registry
            .set_tenant_plan(
                &fence,
                "acme",
                "enterprise",
                &labels,
                &settings,
                &Default::default(),
                &change,
            )
            .await?;
    }
    let moved = registry.require_tenant("acme").await?;
    assert_eq!(
        (moved.plan.as_str(), &moved.labels, &moved.settings),
        ("enterprise", &labels, &settings)
    );
    // Setting what is already there audits nothing more.
    assert_eq!(
        count_audit(&registry, "TENANT_PLAN_CHANGED", Some("acme")).await?,
        1
    );
    Ok(())
}

pub async fn case_tenants_list_search_status_limit_offset(
    registry: Registry,
) -> anyhow::Result<()> {
    add_postgres_server(&registry, "pg-a", 10).await?;
    let (_job, fence) = claimed_provision_job(&registry, "registrar").await?;
    for (slug, display_name, status) in [
        ("gamma-co", "GAMMA Corp", TenantStatus::Active),
        ("beta-labs", "Beta Labs", TenantStatus::Suspended),
        ("alpha-co", "Alpha Company", TenantStatus::Active),
        ("delta", "Delta Co", TenantStatus::Failed),
    ] {
        let tenant = tenant_record(slug, display_name, "pg-a", status);
        registry
            .register_tenant(
                &fence,
                &tenant,
                &[],
                &audit_event("worker-1", "TENANT_REGISTERED", Some(slug), None),
            )
            .await?;
    }
    let list =
        |search: Option<&'static str>, status: Option<TenantStatus>, limit: i64, offset: i64| {
            let registry = registry.clone();
            async move {
                let tenants = registry.list_tenants(search, status, limit, offset).await?;
                anyhow::Ok(
                    tenants
                        .into_iter()
                        .map(|tenant| tenant.slug)
                        .collect::<Vec<_>>(),
                )
            }
        };

    assert_eq!(
        list(None, None, 0, 0).await?,
        ["alpha-co", "beta-labs", "delta", "gamma-co"]
    );
    // "co" is in two slugs and, in any case, in three display names.
    assert_eq!(
        list(Some("co"), None, 0, 0).await?,
        ["alpha-co", "delta", "gamma-co"]
    );
    assert_eq!(list(Some("CORP"), None, 0, 0).await?, ["gamma-co"]);
    assert_eq!(list(Some("Labs"), None, 0, 0).await?, ["beta-labs"]);
    assert!(list(Some("zeta"), None, 0, 0).await?.is_empty());
    // `%` and `_` are searched for literally, not as wildcards.
    assert!(list(Some("%"), None, 0, 0).await?.is_empty());
    assert!(list(Some("a_p"), None, 0, 0).await?.is_empty());
    assert_eq!(
        list(None, Some(TenantStatus::Active), 0, 0).await?,
        ["alpha-co", "gamma-co"]
    );
    assert_eq!(
        list(None, Some(TenantStatus::Suspended), 0, 0).await?,
        ["beta-labs"]
    );
    assert!(list(None, Some(TenantStatus::Offboarded), 0, 0)
        .await?
        .is_empty());
    assert_eq!(
        list(Some("co"), Some(TenantStatus::Failed), 0, 0).await?,
        ["delta"]
    );
    assert_eq!(list(None, None, 2, 0).await?, ["alpha-co", "beta-labs"]);
    assert_eq!(list(None, None, 2, 2).await?, ["delta", "gamma-co"]);
    assert_eq!(list(None, None, 2, 3).await?, ["gamma-co"]);
    assert!(list(None, None, 2, 4).await?.is_empty());
    assert_eq!(list(None, None, 1, -5).await?, ["alpha-co"]);
    Ok(())
}
