//! Conformance cases for encrypted secret records: upsert, read, idempotent delete and sorted listing.

use tenantry_registry::{Registry, SecretRecord};

fn secret_record(name: &str, key_id: &str, ciphertext: &str) -> SecretRecord {
    SecretRecord {
        name: name.to_owned(),
        key_id: key_id.to_owned(),
        wrapped_key: format!("wrapped-by-{key_id}"),
        ciphertext: ciphertext.to_owned(),
        created_at: 0,
        updated_at: 0,
    }
}

pub async fn case_secrets_put_get_delete_and_list(registry: Registry) -> anyhow::Result<()> {
    assert!(registry.get_secret("tenants/acme/db").await?.is_none());
    assert!(registry.list_secret_names().await?.is_empty());

    let first = secret_record("tenants/acme/db", "key-1", "Y2lwaGVydGV4dC0x");
    registry.put_secret(&first).await?;
    let stored = registry
        .get_secret("tenants/acme/db")
        .await?
        .ok_or_else(|| anyhow::anyhow!("the secret just put is missing"))?;
    assert_eq!(
        (stored.key_id.as_str(), stored.wrapped_key.as_str()),
        ("key-1", "wrapped-by-key-1")
    );
    assert_eq!(stored.ciphertext, "Y2lwaGVydGV4dC0x");
    assert!(stored.created_at > 0);
    assert_eq!(stored.created_at, stored.updated_at);
    assert!(
        !format!("{stored:?}").contains("Y2lwaGVydGV4dC0x"),
        "Debug must not show the ciphertext"
    );

    // Putting the same name again replaces the contents and keeps the creation time.
    crate::harness::wait_until_clock_passes(stored.updated_at).await?;
    registry
        .put_secret(&secret_record(
            "tenants/acme/db",
            "key-2",
            "Y2lwaGVydGV4dC0y",
        ))
        .await?;
    let replaced = registry
        .get_secret("tenants/acme/db")
        .await?
        .ok_or_else(|| anyhow::anyhow!("the replaced secret is missing"))?;
    assert_eq!(
        (replaced.key_id.as_str(), replaced.wrapped_key.as_str()),
        ("key-2", "wrapped-by-key-2")
    );
    assert_eq!(replaced.ciphertext, "Y2lwaGVydGV4dC0y");
    assert_eq!(replaced.created_at, stored.created_at);
    assert!(replaced.updated_at > stored.updated_at);

    registry
        .put_secret(&secret_record("servers/pg-b/admin", "key-1", "b"))
        .await?;
    registry
        .put_secret(&secret_record("servers/pg-a/admin", "key-1", "a"))
        .await?;
    assert_eq!(
        registry.list_secret_names().await?,
        [
            "servers/pg-a/admin",
            "servers/pg-b/admin",
            "tenants/acme/db"
        ]
    );

    assert!(registry.delete_secret("servers/pg-b/admin").await?);
    assert!(registry.get_secret("servers/pg-b/admin").await?.is_none());
    assert!(!registry.delete_secret("servers/pg-b/admin").await?);
    assert!(!registry.delete_secret("never-stored").await?);
    assert_eq!(
        registry.list_secret_names().await?,
        ["servers/pg-a/admin", "tenants/acme/db"]
    );
    Ok(())
}
