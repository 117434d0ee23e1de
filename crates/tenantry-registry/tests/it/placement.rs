//! Conformance cases for placing provisioning jobs on servers without ever overbooking a server.

use crate::harness::{
    add_postgres_server, claimed_provision_job, new_job, new_server, register_tenant_on,
};
use anyhow::{bail, Context};
use std::sync::Arc;
use tenantry_core::{EngineKind, JobKind, JobStatus, ServerStatus};
use tenantry_registry::{Fence, Placement, PlacementRequest, Registry};

fn auto_in(region: &str, engine: Option<EngineKind>) -> PlacementRequest {
    PlacementRequest::Auto {
        engine,
        region: region.to_owned(),
    }
}

fn auto_postgres_in_eu() -> PlacementRequest {
    auto_in("eu", Some(EngineKind::Postgres))
}

fn named(server_name: &str) -> PlacementRequest {
    PlacementRequest::Named(server_name.to_owned())
}

/// The server a placement chose, or a readable error for any other outcome.
fn placed_on(placement: Placement) -> anyhow::Result<String> {
    match placement {
        Placement::Placed(server) => Ok(server.name),
        other => bail!("expected the job to be placed, got {other:?}"),
    }
}

/// Creates and claims a provisioning job for `slug` and places it.
async fn place_new_job(
    registry: &Registry,
    slug: &str,
    request: &PlacementRequest,
) -> anyhow::Result<(Fence, Placement)> {
    let (_job, fence) = claimed_provision_job(registry, slug).await?;
    let placement = registry.place_job(&fence, request).await?;
    Ok((fence, placement))
}

pub async fn case_placement_auto_picks_most_free_room_ties_by_name(
    registry: Registry,
) -> anyhow::Result<()> {
    add_postgres_server(&registry, "pg-small", 2).await?;
    // Added out of name order, so a tie broken by insertion order would pick pg-c.
    add_postgres_server(&registry, "pg-c", 5).await?;
    add_postgres_server(&registry, "pg-b", 5).await?;
    registry
        .add_server(
            &new_server("sqlite-big", EngineKind::Sqlite, "eu", 50),
            "test",
        )
        .await?;
    registry
        .add_server(
            &new_server("pg-far", EngineKind::Postgres, "us", 100),
            "test",
        )
        .await?;

    let mut chosen = Vec::new();
    for slug in ["tenant-1", "tenant-2", "tenant-3", "tenant-4"] {
        let (_fence, placement) = place_new_job(&registry, slug, &auto_postgres_in_eu()).await?;
        chosen.push(placed_on(placement)?);
    }
    // Free room (b, c): (5, 5) → b; (4, 5) → c; (4, 4) → b; (3, 4) → c.
    assert_eq!(chosen, ["pg-b", "pg-c", "pg-b", "pg-c"]);

    let (_fence, any_engine) = place_new_job(&registry, "tenant-5", &auto_in("eu", None)).await?;
    assert_eq!(placed_on(any_engine)?, "sqlite-big");
    let (_fence, sqlite_only) = place_new_job(
        &registry,
        "tenant-6",
        &auto_in("eu", Some(EngineKind::Sqlite)),
    )
    .await?;
    assert_eq!(placed_on(sqlite_only)?, "sqlite-big");

    let (_fence, nowhere) = place_new_job(&registry, "tenant-7", &auto_in("ap", None)).await?;
    assert!(
        matches!(nowhere, Placement::NoCapacity { candidates: 0 }),
        "got {nowhere:?}"
    );

    // A draining server takes no new tenants however much room it has.
    registry
        .set_server_status("pg-far", ServerStatus::Draining, "test", "SERVER_DRAINED")
        .await?;
    let (_fence, drained) = place_new_job(&registry, "tenant-8", &auto_in("us", None)).await?;
    assert!(
        matches!(drained, Placement::NoCapacity { candidates: 0 }),
        "got {drained:?}"
    );
    Ok(())
}

pub async fn case_placement_counts_tenants_and_live_placed_provision_jobs(
    registry: Registry,
) -> anyhow::Result<()> {
    add_postgres_server(&registry, "pg-a", 3).await?;
    let is_full =
        |placement: &Placement| matches!(placement, Placement::NoCapacity { candidates: 1 });

    // A tenant registered by an unplaced, finished job counts through the tenants table alone.
    let (_job, registering_fence) = claimed_provision_job(&registry, "existing").await?;
    register_tenant_on(&registry, &registering_fence, "existing", "pg-a").await?;
    registry
        .finish_job(&registering_fence, JobStatus::Complete, None, None, &[])
        .await?;
    assert_eq!(registry.get_server("pg-a").await?.tenant_count, 1);

    // One tenant and two live placed provisioning jobs fill pg-a.
    let (first_fence, first) = place_new_job(&registry, "tenant-1", &named("pg-a")).await?;
    assert_eq!(placed_on(first)?, "pg-a");
    let (second_fence, second) = place_new_job(&registry, "tenant-2", &named("pg-a")).await?;
    assert_eq!(placed_on(second)?, "pg-a");
    let (third_fence, third) = place_new_job(&registry, "tenant-3", &named("pg-a")).await?;
    assert!(is_full(&third), "got {third:?}");

    // A provisioning job that failed without registering its tenant gives its room back.
    registry
        .finish_job(
            &second_fence,
            JobStatus::Failed,
            Some(("E_INTERNAL", "boom")),
            None,
            &[],
        )
        .await?;
    let third = registry.place_job(&third_fence, &named("pg-a")).await?;
    assert_eq!(placed_on(third)?, "pg-a");

    // Once the first job registered its tenant, the tenant and the still-live job are one load, not two:
    // after the third job lets go, the load is two tenants and there is room for one more.
    register_tenant_on(&registry, &first_fence, "tenant-1", "pg-a").await?;
    let server = registry.get_server("pg-a").await?;
    assert_eq!((server.tenant_count, server.free_room()), (2, 1));
    registry.clear_placement(&third_fence).await?;
    let (_fence, fourth) = place_new_job(&registry, "tenant-4", &named("pg-a")).await?;
    assert_eq!(placed_on(fourth)?, "pg-a");
    let (_fence, fifth) = place_new_job(&registry, "tenant-5", &named("pg-a")).await?;
    assert!(is_full(&fifth), "got {fifth:?}");

    // Finishing the first job leaves its tenant's room taken.
    registry
        .finish_job(&first_fence, JobStatus::Complete, None, None, &[])
        .await?;
    let (_fence, sixth) = place_new_job(&registry, "tenant-6", &named("pg-a")).await?;
    assert!(is_full(&sixth), "got {sixth:?}");
    Ok(())
}

pub async fn case_placement_named_server_rules(registry: Registry) -> anyhow::Result<()> {
    add_postgres_server(&registry, "pg-ok", 5).await?;
    add_postgres_server(&registry, "pg-draining", 5).await?;
    add_postgres_server(&registry, "pg-inactive", 5).await?;
    add_postgres_server(&registry, "pg-full", 0).await?;
    registry
        .set_server_status(
            "pg-draining",
            ServerStatus::Draining,
            "test",
            "SERVER_DRAINED",
        )
        .await?;
    registry
        .set_server_status(
            "pg-inactive",
            ServerStatus::Inactive,
            "test",
            "SERVER_DISABLED",
        )
        .await?;

    let (job, fence) = claimed_provision_job(&registry, "acme").await?;
    for unavailable in ["ghost", "pg-draining", "pg-inactive"] {
        let placement = registry.place_job(&fence, &named(unavailable)).await?;
        assert!(
            matches!(placement, Placement::ServerUnavailable),
            "placing on {unavailable}: expected ServerUnavailable, got {placement:?}"
        );
    }
    let full = registry.place_job(&fence, &named("pg-full")).await?;
    assert!(
        matches!(full, Placement::NoCapacity { candidates: 1 }),
        "got {full:?}"
    );
    assert_eq!(registry.get_job(&job.id).await?.placed_server, None);

    let placed = registry.place_job(&fence, &named("pg-ok")).await?;
    assert_eq!(placed_on(placed)?, "pg-ok");
    assert_eq!(
        registry.get_job(&job.id).await?.placed_server.as_deref(),
        Some("pg-ok")
    );
    Ok(())
}

pub async fn case_placement_twice_returns_same_server_and_clear_frees_room(
    registry: Registry,
) -> anyhow::Result<()> {
    add_postgres_server(&registry, "pg-a", 1).await?;
    add_postgres_server(&registry, "pg-b", 0).await?;
    let (first_job, first_fence) = claimed_provision_job(&registry, "tenant-1").await?;
    assert_eq!(
        placed_on(
            registry
                .place_job(&first_fence, &auto_postgres_in_eu())
                .await?
        )?,
        "pg-a"
    );
    // pg-a is now full, but the job's own reservation is its to keep, whatever the second request says.
    assert_eq!(
        placed_on(
            registry
                .place_job(&first_fence, &auto_postgres_in_eu())
                .await?
        )?,
        "pg-a"
    );
    assert_eq!(
        placed_on(registry.place_job(&first_fence, &named("pg-b")).await?)?,
        "pg-a"
    );

    let (_second_job, second_fence) = claimed_provision_job(&registry, "tenant-2").await?;
    let refused = registry
        .place_job(&second_fence, &auto_postgres_in_eu())
        .await?;
    assert!(
        matches!(refused, Placement::NoCapacity { candidates: 2 }),
        "got {refused:?}"
    );

    registry.clear_placement(&first_fence).await?;
    assert_eq!(registry.get_job(&first_job.id).await?.placed_server, None);
    registry.clear_placement(&first_fence).await?;
    assert_eq!(
        placed_on(
            registry
                .place_job(&second_fence, &auto_postgres_in_eu())
                .await?
        )?,
        "pg-a"
    );
    Ok(())
}

pub async fn case_placement_concurrent_jobs_never_overbook(
    registry: Registry,
) -> anyhow::Result<()> {
    const N_JOBS: usize = 8;
    const CAPACITY: i64 = 3;
    add_postgres_server(&registry, "pg-shared", CAPACITY).await?;

    let mut fences = Vec::new();
    for index in 0..N_JOBS {
        let job = registry
            .create_job(&new_job(JobKind::Provision, &format!("tenant-{index}")))
            .await?;
        let fence = registry
            .claim_job(&job.id, &format!("worker-{index}"), 60_000, None)
            .await?
            .context("a new job is claimable")?;
        fences.push(fence);
    }

    // Every worker waits at the barrier so that the placements really race.
    let start_line = Arc::new(tokio::sync::Barrier::new(N_JOBS));
    let mut workers = tokio::task::JoinSet::new();
    for fence in fences {
        let registry = registry.clone();
        let start_line = Arc::clone(&start_line);
        workers.spawn(async move {
            start_line.wait().await;
            registry.place_job(&fence, &auto_postgres_in_eu()).await
        });
    }
    let (mut n_placed, mut n_no_capacity) = (0, 0);
    while let Some(joined) = workers.join_next().await {
        match joined?? {
            Placement::Placed(server) => {
                assert_eq!(server.name, "pg-shared");
                n_placed += 1;
            }
            Placement::NoCapacity { candidates: 1 } => n_no_capacity += 1,
            other => bail!("unexpected placement {other:?}"),
        }
    }
    assert_eq!(
        (n_placed, n_no_capacity),
        (CAPACITY, N_JOBS as i64 - CAPACITY)
    );

    let jobs = registry
        .list_jobs(&tenantry_registry::JobFilter {
            limit: 100,
            ..Default::default()
        })
        .await?;
    let n_recorded = jobs
        .iter()
        .filter(|job| job.placed_server.as_deref() == Some("pg-shared"))
        .count();
    assert_eq!(n_recorded as i64, CAPACITY);
    Ok(())
}
