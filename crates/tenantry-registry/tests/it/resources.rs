//! Conformance cases for a tenant's resources: registered with the tenant, listed, disabled, forgotten with it,
//! and placed per kind without overbooking.

use crate::harness::{
    add_postgres_server, audit_event, claimed_provision_job, new_server, tenant_record,
};
use anyhow::{bail, Context};
use std::sync::Arc;
use tenantry_core::{EngineKind, TenantStatus};
use tenantry_registry::{
    Placement, Registry, TenantResourceRecord, RESOURCE_ACTIVE, RESOURCE_DISABLED,
};

fn cache_of(slug: &str, server: &str) -> TenantResourceRecord {
    TenantResourceRecord {
        tenant_slug: slug.to_owned(),
        kind: "cache".to_owned(),
        server_name: server.to_owned(),
        name: format!("tenant_{}", slug.replace('-', "_")),
        secret_name: Some(format!("tenant-cache-{slug}")),
        status: RESOURCE_ACTIVE.to_owned(),
        labels: serde_json::json!({ "tenant": slug }),
        created_at: 0,
        updated_at: 0,
    }
}

async fn add_redis_server(
    registry: &Registry,
    name: &str,
    region: &str,
    capacity: i64,
) -> anyhow::Result<()> {
    registry
        .add_server(
            &new_server(name, EngineKind::Redis, region, capacity),
            "alice",
        )
        .await?;
    Ok(())
}

pub async fn case_resources_registered_with_the_tenant_and_forgotten_with_it(
    registry: Registry,
) -> anyhow::Result<()> {
    add_postgres_server(&registry, "pg-a", 10).await?;
    add_redis_server(&registry, "redis-a", "eu", 10).await?;
    let (_, fence) = claimed_provision_job(&registry, "acme").await?;
    let tenant = tenant_record("acme", "Acme", "pg-a", TenantStatus::Provisioning);
    let audit = audit_event("worker-1", "TENANT_REGISTERED", Some("acme"), None);
    registry
        .register_tenant(&fence, &tenant, &[cache_of("acme", "redis-a")], &audit)
        .await?;
    // Registering again adds nothing.
    registry
        .register_tenant(&fence, &tenant, &[cache_of("acme", "redis-a")], &audit)
        .await?;

    let resources = registry.tenant_resources("acme").await?;
    let kinds: Vec<&str> = resources
        .iter()
        .map(|resource| resource.kind.as_str())
        .collect();
    assert_eq!(kinds, [tenantry_core::DATABASE_RESOURCE, "cache"]);
    let database = &resources[0];
    assert_eq!(
        (
            database.server_name.as_str(),
            database.name.as_str(),
            database.secret_name.as_deref()
        ),
        (
            "pg-a",
            tenant.resource_name.as_str(),
            Some(tenant.secret_ref.as_str())
        )
    );
    assert_eq!(registry.get_server("redis-a").await?.tenant_count, 1);
    assert_eq!(registry.list_resources(Some("cache")).await?.len(), 1);
    assert_eq!(
        registry
            .neighbour_on_server("cache", "redis-a", "acme")
            .await?,
        None
    );
    assert_eq!(
        registry
            .neighbour_on_server("cache", "redis-a", "other")
            .await?
            .as_deref(),
        Some("acme")
    );

    registry
        .set_resource_status(&fence, "acme", "cache", RESOURCE_DISABLED)
        .await?;
    let cache = registry.tenant_resources("acme").await?.remove(1);
    assert_eq!(cache.status, RESOURCE_DISABLED);

    registry
        .remove_tenant(
            &fence,
            "acme",
            &audit_event("worker-1", "TENANT_PURGED", Some("acme"), None),
        )
        .await?;
    assert!(registry.tenant_resources("acme").await?.is_empty());
    assert_eq!(registry.get_server("redis-a").await?.tenant_count, 0);
    Ok(())
}

pub async fn case_resources_placement_by_engine_and_region_and_twice_is_the_same(
    registry: Registry,
) -> anyhow::Result<()> {
    add_postgres_server(&registry, "pg-a", 10).await?;
    add_redis_server(&registry, "redis-us", "us", 10).await?;
    add_redis_server(&registry, "redis-eu-1", "eu", 2).await?;
    add_redis_server(&registry, "redis-eu-2", "eu", 3).await?;
    let (job, fence) = claimed_provision_job(&registry, "acme").await?;
    let placed = registry
        .place_resource(&fence, "cache", &[EngineKind::Redis], "eu")
        .await?;
    let Placement::Placed(server) = placed else {
        bail!("not placed: {placed:?}")
    };
    // The most free room in the tenant's region, never another region's or another engine's server.
    assert_eq!(server.name, "redis-eu-2");
    let again = registry
        .place_resource(&fence, "cache", &[EngineKind::Redis], "eu")
        .await?;
    assert!(matches!(again, Placement::Placed(ref server) if server.name == "redis-eu-2"));
    assert_eq!(
        registry
            .resource_placement(&job.id, "cache")
            .await?
            .as_deref(),
        Some("redis-eu-2")
    );
    let nowhere = registry
        .place_resource(&fence, "queue", &[EngineKind::Rabbitmq], "eu")
        .await?;
    assert!(
        matches!(nowhere, Placement::NoCapacity { candidates: 0 }),
        "{nowhere:?}"
    );

    registry.clear_resource_placement(&fence, "cache").await?;
    registry.clear_resource_placement(&fence, "cache").await?;
    assert_eq!(registry.resource_placement(&job.id, "cache").await?, None);
    Ok(())
}

pub async fn case_resources_concurrent_placements_never_overbook(
    registry: Registry,
) -> anyhow::Result<()> {
    const N_JOBS: usize = 8;
    const CAPACITY: i64 = 3;
    add_redis_server(&registry, "redis-shared", "eu", CAPACITY).await?;
    let mut fences = Vec::new();
    for index in 0..N_JOBS {
        let (_, fence) = claimed_provision_job(&registry, &format!("tenant-{index}")).await?;
        fences.push(fence);
    }
    let start_line = Arc::new(tokio::sync::Barrier::new(N_JOBS));
    let mut workers = tokio::task::JoinSet::new();
    for fence in fences {
        let registry = registry.clone();
        let start_line = Arc::clone(&start_line);
        workers.spawn(async move {
            start_line.wait().await;
            registry
                .place_resource(&fence, "cache", &[EngineKind::Redis], "eu")
                .await
        });
    }
    let (mut n_placed, mut n_no_capacity) = (0, 0);
    while let Some(joined) = workers.join_next().await {
        match joined.context("a placement task")?? {
            Placement::Placed(_) => n_placed += 1,
            Placement::NoCapacity { candidates: 1 } => n_no_capacity += 1,
            other => bail!("unexpected placement {other:?}"),
        }
    }
    assert_eq!(
        (n_placed, n_no_capacity),
        (CAPACITY, N_JOBS as i64 - CAPACITY)
    );
    Ok(())
}
