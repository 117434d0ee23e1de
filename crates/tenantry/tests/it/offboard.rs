//! Leftovers: doctor names an orphan and its fix, provisioning refuses the slug with E_PARTIAL_STATE, and
//! `offboard-tenant --purge` clears it so the slug can be provisioned again.

use crate::for_each_engine;
use crate::harness::{tenant_cluster_url, Engine, Fleet};
use sqlx::{Connection, Executor};

for_each_engine!(purge_clears_a_partial_state);

async fn purge_clears_a_partial_state(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    // Make the registry know the fleet (bootstraps the local server), then leave a database nobody registered,
    // marked as this installation's, as a job's crash would leave it.
    fleet.run(&["servers", "list"]).await.assert_ok();
    let installation = fleet.json(&["doctor"]).await["installation"]
        .as_str()
        .unwrap()
        .to_owned();
    match engine {
        Engine::Sqlite => {
            std::fs::create_dir_all(fleet.data_path("tenants")).unwrap();
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(fleet.sqlite_file("ghost"))
                .create_if_missing(true);
            let mut file = sqlx::SqliteConnection::connect_with(&options)
                .await
                .unwrap();
            sqlx::raw_sql(&format!(
                "CREATE TABLE tenantry_installation (id TEXT NOT NULL);
                 INSERT INTO tenantry_installation VALUES ('{installation}')"
            ))
            .execute(&mut file)
            .await
            .unwrap();
            file.close().await.unwrap();
        }
        Engine::Postgres => {
            let mut admin = sqlx::PgConnection::connect(&tenant_cluster_url())
                .await
                .unwrap();
            for statement in [
                format!("CREATE ROLE tenantry_owner_{installation} NOLOGIN"),
                format!("CREATE DATABASE tenant_ghost OWNER tenantry_owner_{installation}"),
            ] {
                admin.execute(statement.as_str()).await.unwrap();
            }
        }
    }
    let doctor = fleet.run(&["doctor"]).await;
    assert_eq!(doctor.status, 1, "{doctor:?}");
    assert!(doctor.stdout.contains("orphan"), "{}", doctor.stdout);
    assert!(
        doctor
            .stdout
            .contains("tenantry offboard-tenant --slug ghost --purge"),
        "{}",
        doctor.stdout
    );

    let refused = fleet.provision("ghost", &[]).await;
    assert_eq!(
        refused.error_code().as_deref(),
        Some("E_PARTIAL_STATE"),
        "{refused:?}"
    );
    assert!(
        refused.stderr.contains("database tenant_ghost"),
        "the pieces are named: {refused:?}"
    );

    let not_there = fleet.run(&["offboard-tenant", "--slug", "nobody"]).await;
    assert_eq!(not_there.error_code().as_deref(), Some("E_NOT_FOUND"));
    fleet
        .run(&["offboard-tenant", "--slug", "ghost", "--purge"])
        .await
        .assert_ok();
    fleet.assert_doctor_clean().await;
    fleet.provision("ghost", &[]).await.assert_ok();
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}
