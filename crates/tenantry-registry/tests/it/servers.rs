//! Conformance cases for fleet members: adding, reading, listing and changing status.

use crate::harness::{count_audit, new_server};
use tenantry_core::{EngineKind, ServerStatus};
use tenantry_registry::{AuditFilter, Error, Registry};

pub async fn case_servers_add_get_and_list_sorted_by_name(
    registry: Registry,
) -> anyhow::Result<()> {
    let before = tenantry_registry::now_millis();
    let added = registry
        .add_server(&new_server("pg-b", EngineKind::Postgres, "eu", 10), "alice")
        .await?;
    assert_eq!(added.name, "pg-b");
    assert_eq!(added.engine, EngineKind::Postgres);
    assert_eq!(added.region, "eu");
    assert_eq!(added.admin_secret_ref, "servers/pg-b/admin");
    assert_eq!(added.capacity_hint, 10);
    assert_eq!(added.status, ServerStatus::Active);
    assert_eq!(added.tenant_count, 0);
    assert_eq!(added.free_room(), 10);
    assert!(
        added.created_at >= before,
        "created_at {} is before the call at {before}",
        added.created_at
    );
    assert_eq!(added.created_at, added.updated_at);

    registry
        .add_server(&new_server("sqlite-a", EngineKind::Sqlite, "us", 3), "bob")
        .await?;
    registry
        .add_server(&new_server("pg-a", EngineKind::Postgres, "eu", 0), "alice")
        .await?;

    assert_eq!(registry.get_server("pg-b").await?, added);
    let servers = registry.list_servers().await?;
    let names: Vec<&str> = servers.iter().map(|server| server.name.as_str()).collect();
    assert_eq!(names, ["pg-a", "pg-b", "sqlite-a"]);
    assert_eq!(servers[2].engine, EngineKind::Sqlite);
    assert_eq!(servers[2].region, "us");

    let added_events = registry
        .list_audit(&AuditFilter {
            event_type: Some("SERVER_ADDED".to_owned()),
            ..Default::default()
        })
        .await?;
    let audited: Vec<(&str, &serde_json::Value)> = added_events
        .iter()
        .map(|event| (event.actor.as_str(), &event.details["server"]))
        .collect();
    assert_eq!(
        audited,
        [
            ("alice", &serde_json::json!("pg-a")),
            ("bob", &serde_json::json!("sqlite-a")),
            ("alice", &serde_json::json!("pg-b"))
        ]
    );
    Ok(())
}

pub async fn case_servers_duplicate_name_is_conflict_and_writes_nothing(
    registry: Registry,
) -> anyhow::Result<()> {
    let original = registry
        .add_server(&new_server("pg-a", EngineKind::Postgres, "eu", 10), "alice")
        .await?;
    let duplicate = registry
        .add_server(&new_server("pg-a", EngineKind::Sqlite, "us", 99), "mallory")
        .await;
    assert!(
        matches!(duplicate, Err(Error::Conflict { .. })),
        "expected Conflict, got {duplicate:?}"
    );
    assert_eq!(registry.list_servers().await?, vec![original]);
    assert_eq!(count_audit(&registry, "SERVER_ADDED", None).await?, 1);
    Ok(())
}

pub async fn case_servers_unknown_name_is_not_found(registry: Registry) -> anyhow::Result<()> {
    let missing = registry.get_server("ghost").await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "expected NotFound, got {missing:?}"
    );
    let status_change = registry
        .set_server_status("ghost", ServerStatus::Draining, "alice", "SERVER_DRAINED")
        .await;
    assert!(
        matches!(status_change, Err(Error::NotFound { .. })),
        "expected NotFound, got {status_change:?}"
    );
    assert_eq!(count_audit(&registry, "SERVER_DRAINED", None).await?, 0);
    Ok(())
}

pub async fn case_servers_set_status_changes_status_and_writes_audit(
    registry: Registry,
) -> anyhow::Result<()> {
    let added = registry
        .add_server(&new_server("pg-a", EngineKind::Postgres, "eu", 10), "alice")
        .await?;
    let drained = registry
        .set_server_status("pg-a", ServerStatus::Draining, "bob", "SERVER_DRAINED")
        .await?;
    assert_eq!(drained.status, ServerStatus::Draining);
    assert!(drained.updated_at >= added.updated_at);
    assert_eq!(drained.created_at, added.created_at);
    assert_eq!(
        registry.get_server("pg-a").await?.status,
        ServerStatus::Draining
    );

    let events = registry
        .list_audit(&AuditFilter {
            event_type: Some("SERVER_DRAINED".to_owned()),
            ..Default::default()
        })
        .await?;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, "bob");
    assert_eq!(events[0].tenant_slug, None);
    assert_eq!(
        events[0].details,
        serde_json::json!({ "server": "pg-a", "status": "draining" })
    );

    registry
        .set_server_status("pg-a", ServerStatus::Active, "bob", "SERVER_ACTIVATED")
        .await?;
    assert_eq!(
        registry.get_server("pg-a").await?.status,
        ServerStatus::Active
    );
    assert_eq!(count_audit(&registry, "SERVER_ACTIVATED", None).await?, 1);
    Ok(())
}
