//! Conformance cases for opening the registry: the schema is migrated once and reopening changes nothing.

use crate::harness::{add_postgres_server, applied_migration_versions};
use tenantry_registry::{Registry, RegistryLocation};

/// Every registry migration, in order; a new migration must be added here (and is then checked on both backends).
const LATEST_MIGRATIONS: [i64; 14] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];

pub async fn case_schema_migrates_on_open_and_reopen_is_a_noop(
    registry: Registry,
    location: RegistryLocation,
) -> anyhow::Result<()> {
    assert_eq!(
        applied_migration_versions(&location).await?,
        LATEST_MIGRATIONS
    );
    registry.ping().await?;
    assert!(registry.list_servers().await?.is_empty());
    add_postgres_server(&registry, "pg-a", 10).await?;

    // Two more processes starting at once against the migrated registry must both open it and keep its data.
    let (first_reopened, second_reopened) =
        tokio::join!(Registry::open(&location, 2), Registry::open(&location, 2));
    let (first_reopened, second_reopened) = (first_reopened?, second_reopened?);
    // The installation id is made once: processes that ask at the same time get the same one, and it stays.
    let (first_id, second_id) = tokio::join!(
        first_reopened.installation_id(),
        second_reopened.installation_id()
    );
    let first_id = first_id?;
    assert_eq!(first_id, second_id?);
    assert!(
        tenantry_registry::is_installation_id(&first_id),
        "{first_id}"
    );
    assert_eq!(registry.installation_id().await?, first_id);
    for reopened in [&first_reopened, &second_reopened] {
        let names: Vec<String> = reopened
            .list_servers()
            .await?
            .into_iter()
            .map(|server| server.name)
            .collect();
        assert_eq!(names, ["pg-a"]);
        assert_eq!(reopened.dialect(), registry.dialect());
    }
    first_reopened.close().await;
    second_reopened.close().await;
    assert_eq!(
        applied_migration_versions(&location).await?,
        LATEST_MIGRATIONS
    );
    Ok(())
}
