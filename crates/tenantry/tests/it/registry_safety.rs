//! What the registry guards against: audit events changed behind tenantry's back (`audit verify`), a registry file
//! that is not a registry, a registry file others can read, a wrong master key, and an audit actor without `USER`.

use crate::for_each_engine;
use crate::harness::{Engine, Fleet, Run};
use std::time::Duration;

for_each_engine!(
    audit_verify_names_an_edited_and_a_deleted_event,
    wrong_master_key_is_refused_before_any_job
);

/// Longer than any check of a file takes, shorter than the 30 s a connection pool waits before giving up.
const AT_ONCE: Duration = Duration::from_secs(15);

async fn audit_verify_names_an_edited_and_a_deleted_event(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    fleet.provision("acme", &[]).await.assert_ok();
    fleet.provision("globex", &[]).await.assert_ok();
    let clean = fleet.run(&["audit", "verify"]).await;
    clean.assert_ok();
    assert!(
        clean.stdout.contains("the audit chain is intact"),
        "{clean:?}"
    );

    let mut events = fleet.json(&["audit", "list", "--limit", "1000"]).await;
    let events = events.as_array_mut().unwrap();
    events.reverse();
    assert!(events.len() >= 6, "{events:?}");
    let id_of = |index: usize| events[index]["id"].as_i64().unwrap();
    let (edited, deleted) = (id_of(1), id_of(3));
    assert_eq!(
        fleet
            .registry_sql(&format!(
                "UPDATE audit_events SET details = '{{\"kind\":\"offboard\"}}' WHERE id = {edited}"
            ))
            .await,
        1
    );
    assert_eq!(
        fleet
            .registry_sql(&format!("DELETE FROM audit_events WHERE id = {deleted}"))
            .await,
        1
    );

    let broken = fleet.run(&["audit", "verify"]).await;
    assert_ne!(broken.status, 0, "{broken:?}");
    assert_eq!(broken.error_code().as_deref(), Some("E_AUDIT_CHAIN_BROKEN"));
    assert!(
        broken.stdout.contains(&format!("event id {edited} ")),
        "{broken:?}"
    );
    let report = fleet.run(&["audit", "verify", "--json"]).await;
    assert_ne!(report.status, 0);
    let report = report.json();
    assert_eq!(report["intact"], false);
    assert_eq!(report["error_code"], "E_AUDIT_CHAIN_BROKEN");
    let findings: Vec<(String, Option<i64>)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|finding| {
            (
                finding["fault"].as_str().unwrap().to_owned(),
                finding["event_id"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        findings,
        [
            ("altered".to_owned(), Some(edited)),
            ("missing".to_owned(), None)
        ],
        "{report}"
    );
    // The deleted event is named by its place, between its neighbours.
    let missing = report["findings"][1]["detail"].as_str().unwrap();
    assert!(
        missing.contains(&format!("after event id {}", id_of(2)))
            && missing.contains(&format!("before event id {}", id_of(4))),
        "{missing}"
    );
    fleet.cleanup().await;
}

async fn wrong_master_key_is_refused_before_any_job(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    fleet.provision("acme", &[]).await.assert_ok();
    let wrong_key = [(
        "TENANTRY_MASTER_KEY",
        "d3JvbmctbWFzdGVyLWtleS13cm9uZy1tYXN0ZXIta2U=",
    )];
    let assert_refused = |run: &Run| {
        assert_ne!(run.status, 0, "{run:?}");
        assert_eq!(
            run.error_code().as_deref(),
            Some("E_MASTER_KEY_MISMATCH"),
            "{run:?}"
        );
        assert!(
            run.stderr.contains("does not open this registry's secrets"),
            "{run:?}"
        );
    };
    assert_refused(&fleet.provision("globex", &wrong_key).await);
    assert_refused(
        &fleet
            .run_env(&["offboard-tenant", "--slug", "acme"], &wrong_key)
            .await,
    );
    assert_eq!(fleet.jobs().await.len(), 1, "no job was recorded");

    // A registry from before the check value existed is judged by one of its secrets.
    assert_eq!(
        fleet
            .registry_sql("DELETE FROM secrets WHERE name = 'tenantry-master-key-check'")
            .await,
        1
    );
    assert_refused(
        &fleet
            .run_env(&["offboard-tenant", "--slug", "acme"], &wrong_key)
            .await,
    );
    assert_eq!(fleet.jobs().await.len(), 1, "no job was recorded");
    assert_eq!(fleet.tenants().await[0]["status"], "active");
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

/// The registry file's content, to show it was left as it was.
fn registry_bytes(fleet: &Fleet) -> Vec<u8> {
    std::fs::read(fleet.data_path("registry.db")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_file_that_is_not_a_registry_is_refused_at_once_and_kept() {
    let fleet = Fleet::new(Engine::Sqlite).await;
    fleet.provision("acme", &[]).await.assert_ok();
    // Everything into the main file, so the file alone is the whole registry (and no -wal file is left to read).
    fleet.registry_sql("PRAGMA wal_checkpoint(TRUNCATE)").await;
    let wal = format!("{}-wal", fleet.data_path("registry.db").display());
    assert_eq!(std::fs::metadata(&wal).map_or(0, |wal| wal.len()), 0);
    let whole = registry_bytes(&fleet);
    assert!(
        whole.len() > 8192,
        "a registry with a tenant has pages to lose"
    );
    let other_program = fleet.scratch_dir.join("other.db");
    {
        use sqlx::{Connection, Executor};
        let url = format!("sqlite://{}?mode=rwc", other_program.display());
        let mut connection = sqlx::sqlite::SqliteConnection::connect(&url).await.unwrap();
        connection
            .execute("CREATE TABLE notes (body TEXT)")
            .await
            .unwrap();
        connection.close().await.unwrap();
    }
    let mut garbage = vec![0x5a_u8; 8192];
    garbage[..5].copy_from_slice(b"dummy");
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("empty", Vec::new(), "is empty (0 bytes)"),
        ("garbage", garbage, "is not a SQLite database"),
        ("truncated", whole[..5000].to_vec(), "is truncated"),
        (
            "damaged",
            [&whole[..4096], &vec![0xa5_u8; whole.len() - 4096][..]].concat(),
            "cannot be read as a SQLite database",
        ),
        (
            "another program's",
            std::fs::read(&other_program).unwrap(),
            "is a SQLite database of another program",
        ),
    ];
    for (case, bytes, cause) in cases {
        std::fs::write(fleet.data_path("registry.db"), &bytes).unwrap();
        let run = tokio::time::timeout(AT_ONCE, fleet.run(&["tenants", "list"]))
            .await
            .unwrap_or_else(|_| panic!("{case}: tenantry did not answer within {AT_ONCE:?}"));
        assert_ne!(run.status, 0, "{case}: {run:?}");
        assert_eq!(
            run.error_code().as_deref(),
            Some("E_REGISTRY_UNREADABLE"),
            "{case}: {run:?}"
        );
        assert!(run.stderr.contains(cause), "{case}: {run:?}");
        assert_eq!(
            registry_bytes(&fleet),
            bytes,
            "{case}: the file was changed"
        );
    }
    // The same file put back is the registry it was.
    std::fs::write(fleet.data_path("registry.db"), &whole).unwrap();
    assert_eq!(fleet.tenants().await.len(), 1);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_file_outside_the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let mut fleet = Fleet::new(Engine::Sqlite).await;
    let registry = fleet.scratch_dir.join("elsewhere").join("registry.db");
    fleet.set_env(
        "TENANTRY_REGISTRY_URL",
        &format!("sqlite://{}", registry.display()),
    );
    // `serve` keeps the registry open, so its -wal and -shm files exist while it runs.
    let server = fleet.serve(&[]).await;
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", registry.display());
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|error| panic!("{path}: {error}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{path} is {:o}", mode & 0o777);
    }
    assert!(server.terminate().await.success());
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_actor_without_user_is_the_os_user_name() {
    let fleet = Fleet::new(Engine::Sqlite).await;
    fleet
        .run_without_env(&["servers", "drain", "local"], &["USER", "LOGNAME"])
        .await
        .assert_ok();
    let os_user = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let os_user = String::from_utf8(os_user.stdout).unwrap().trim().to_owned();
    assert!(!os_user.is_empty());
    let drained = fleet
        .json(&["audit", "list", "--event-type", "SERVER_DRAINED"])
        .await;
    assert_eq!(drained[0]["actor"], format!("os:{os_user}"), "{drained}");
    fleet.cleanup().await;
}
