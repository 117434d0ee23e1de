//! The `database` kind: the conformance suite on a SQLite directory of its own and on the suite's
//! password-checking PostgreSQL cluster, which other tests share (so every name here is unique, and only what this
//! test's installation made is removed).

use crate::conformance::{self, new_installation};
use serde_json::json;
use sqlx::Connection;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::pin::Pin;
use tenantry_core::EngineKind;
use tenantry_providers::credentials::SecretString;
use tenantry_providers::engines::{Installation, Ownership, Sessions};
use tenantry_providers::resources::{
    ResourceProvider, ResourceServer, TenantDatabases, WantedResource,
};

fn server(engine: EngineKind, admin_url: &str, installation: Installation) -> ResourceServer {
    ResourceServer {
        name: format!("{engine}-test"),
        engine,
        admin_url: SecretString::new(admin_url.to_owned()),
        public_url: None,
        installation,
    }
}

/// Runs the suite with `break_it`, then removes whatever this test's installation left (a failed case included),
/// and gives the suite's failure back.
async fn run_suite(server: ResourceServer, other: ResourceServer, break_it: conformance::Breaker) {
    let provider = TenantDatabases::new(Sessions::new());
    let suite = {
        let (server, other) = (server.clone(), other.clone());
        tokio::spawn(async move {
            conformance::run(
                &TenantDatabases::new(Sessions::new()),
                &server,
                &other,
                json!({ "connection_limit": 5, "statement_timeout_ms": 20000 }),
                break_it,
            )
            .await
        })
    }
    .await;
    for item in provider.inventory(&server).await.expect("inventory") {
        if item.ownership == Ownership::Ours {
            provider
                .remove(&server, &item.name)
                .await
                .expect("removing what the suite left");
        }
    }
    if let Err(failure) = suite {
        std::panic::resume_unwind(failure.into_panic());
    }
}

/// Widens a tenant's file to 0644: other users of the machine could read it.
fn widen_file_mode<'a>(
    server: &'a ResourceServer,
    wanted: &'a WantedResource,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let directory = server
            .admin_url
            .expose()
            .strip_prefix("sqlite://")
            .expect("a sqlite URL")
            .to_owned();
        let file = PathBuf::from(directory).join(format!("{}.db", wanted.name));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
            .expect("widening the file's mode");
    })
}

#[tokio::test]
async fn sqlite_database_passes_the_conformance_suite() {
    let directory = std::env::temp_dir().join(format!(
        "tenantry-dbprov-{}",
        conformance::unique_slug("dir").as_str()
    ));
    let admin_url = format!("sqlite://{}", directory.display());
    let outcome = tokio::spawn(run_suite(
        server(EngineKind::Sqlite, &admin_url, new_installation()),
        server(EngineKind::Sqlite, &admin_url, new_installation()),
        widen_file_mode,
    ))
    .await;
    let _ = std::fs::remove_dir_all(&directory);
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
}

fn scram_url() -> String {
    std::env::var("TENANTRY_TEST_SCRAM_URL")
        .expect("TENANTRY_TEST_SCRAM_URL (run: eval \"$(scripts/test-services)\")")
}

/// Opens the tenant's database to every role on the server, as an operator might by hand.
fn grant_connect_to_public<'a>(
    server: &'a ResourceServer,
    wanted: &'a WantedResource,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let mut admin = sqlx::PgConnection::connect(server.admin_url.expose())
            .await
            .expect("the admin connection");
        sqlx::query(&format!(
            "GRANT CONNECT ON DATABASE \"{}\" TO PUBLIC",
            wanted.name
        ))
        .execute(&mut admin)
        .await
        .expect("granting CONNECT to PUBLIC");
        let _ = admin.close().await;
    })
}

#[tokio::test]
async fn postgres_database_passes_the_conformance_suite() {
    let url = scram_url();
    let installation = new_installation();
    let other_installation = new_installation();
    let owners = [
        format!("tenantry_owner_{}", installation.id()),
        format!("tenantry_owner_{}", other_installation.id()),
    ];
    let outcome = tokio::spawn(run_suite(
        server(EngineKind::Postgres, &url, installation),
        server(EngineKind::Postgres, &url, other_installation),
        grant_connect_to_public,
    ))
    .await;
    // The installations' owner roles are this test's alone (their ids are fresh): nothing else on the shared
    // cluster is touched.
    let mut admin = sqlx::PgConnection::connect(&url)
        .await
        .expect("the admin connection");
    for owner in owners {
        sqlx::query(&format!("DROP ROLE IF EXISTS \"{owner}\""))
            .execute(&mut admin)
            .await
            .expect("dropping the installation's owner role");
    }
    let _ = admin.close().await;
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
}

/// A role granted CONNECT on a tenant's database by hand is observed, fails isolation, and ensure takes it away.
#[tokio::test]
async fn postgres_access_granted_by_hand_is_observed_and_revoked() {
    let url = scram_url();
    let installation = new_installation();
    let owner = format!("tenantry_owner_{}", installation.id());
    // Not `tenant_*`: other tests' inventories of the shared cluster must not see it.
    let peer = format!("dbprov_peer_{}", installation.id());
    let server = server(EngineKind::Postgres, &url, installation);
    let provider = TenantDatabases::new(Sessions::new());
    let wanted = WantedResource::new(&conformance::unique_slug("peer"), json!({}));
    let neighbour = WantedResource::new(&conformance::unique_slug("nb"), json!({}));
    let credentials = provider.new_credentials(&server, &wanted).unwrap();
    let mut admin = sqlx::PgConnection::connect(&url)
        .await
        .expect("the admin connection");

    let outcome = tokio::spawn({
        let (server, wanted, peer) = (server.clone(), wanted.clone(), peer.clone());
        async move {
            let provider = TenantDatabases::new(Sessions::new());
            provider
                .ensure(&server, &wanted, &credentials)
                .await
                .unwrap();
            let mut admin = sqlx::PgConnection::connect(server.admin_url.expose())
                .await
                .unwrap();
            for statement in [
                format!("CREATE ROLE \"{peer}\" NOLOGIN"),
                format!(
                    "GRANT CONNECT ON DATABASE \"{}\" TO \"{peer}\"",
                    wanted.name
                ),
            ] {
                sqlx::query(&statement).execute(&mut admin).await.unwrap();
            }
            let _ = admin.close().await;
            let observed = provider
                .observe(&server, &wanted, Some(&credentials))
                .await
                .unwrap();
            assert!(
                format!("{observed:?}").contains(&peer),
                "observe missed the grant: {observed:?}"
            );
            let checks = provider
                .verify(&server, &wanted, &credentials, &neighbour)
                .await
                .unwrap();
            assert!(
                checks
                    .iter()
                    .any(|check| check.name == "database_isolated" && !check.passed),
                "{checks:?}"
            );
            provider
                .ensure(&server, &wanted, &credentials)
                .await
                .unwrap();
            let observed = provider
                .observe(&server, &wanted, Some(&credentials))
                .await
                .unwrap();
            assert!(observed.matches(), "{observed:?}");
        }
    })
    .await;
    let removed = provider.remove(&server, &wanted.name).await;
    for role in [peer, owner] {
        sqlx::query(&format!("DROP ROLE IF EXISTS \"{role}\""))
            .execute(&mut admin)
            .await
            .expect("dropping the test's roles");
    }
    let _ = admin.close().await;
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
    removed.expect("removing the tenant");
}

fn mariadb_url() -> String {
    std::env::var("TENANTRY_TEST_MARIADB_URL")
        .expect("TENANTRY_TEST_MARIADB_URL (run: eval \"$(scripts/test-services)\")")
}

/// Widens the tenant's grants by hand: its user may read the server's own `mysql` schema.
fn grant_mysql_schema<'a>(
    server: &'a ResourceServer,
    wanted: &'a WantedResource,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let mut admin = sqlx::MySqlConnection::connect(server.admin_url.expose())
            .await
            .expect("the admin connection");
        sqlx::query(&format!("GRANT SELECT ON mysql.* TO '{}'@'%'", wanted.name))
            .execute(&mut admin)
            .await
            .expect("granting SELECT on mysql.*");
        let _ = admin.close().await;
    })
}

#[tokio::test]
async fn mariadb_database_passes_the_conformance_suite() {
    let url = mariadb_url();
    run_suite(
        server(EngineKind::Mariadb, &url, new_installation()),
        server(EngineKind::Mariadb, &url, new_installation()),
        grant_mysql_schema,
    )
    .await;
}
