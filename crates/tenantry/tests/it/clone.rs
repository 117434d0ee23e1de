//! Clones and in-place restores through the real binary against real servers, on both engines.
//!
//! A clone taken while a writer inserts rows in pairs (two rows per transaction) holds one instant of the source:
//! an even number of rows, exactly the first N the writer committed, between the counts before and after the
//! clone; the writer never failed (the source kept serving); the snapshot is gone afterwards; and source and clone
//! are isolated (each one's credentials are refused on the other's database; a write to one is not in the other).
//! An in-place restore brings back a deleted row, the tenant keeps its secret and logs in with it, and the safety
//! backup it took puts the replaced data back. Bad input is refused with its code and changes nothing.

use crate::for_each_engine;
use crate::harness::{eventually, write_file, Engine, Fleet};
use crate::resources::unique;
use serde_json::{json, Value};
use sqlx::Connection;
use std::sync::atomic::{AtomicBool, Ordering};

for_each_engine!(
    clone_while_writes_go_on,
    clone_refuses_bad_input,
    in_place_restore_brings_back_a_deleted_row,
);

/// A connection to a tenant database of either engine, from its secret's URL.
enum Tenant {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl Tenant {
    async fn open(engine: Engine, url: &str) -> Result<Tenant, sqlx::Error> {
        Ok(match engine {
            Engine::Postgres => Tenant::Postgres(sqlx::PgConnection::connect(url).await?),
            Engine::Sqlite => Tenant::Sqlite(sqlx::SqliteConnection::connect(url).await?),
        })
    }

    async fn execute(&mut self, statement: &str) -> Result<(), sqlx::Error> {
        match self {
            Tenant::Postgres(connection) => sqlx::raw_sql(statement).execute(connection).await?,
            Tenant::Sqlite(connection) => {
                sqlx::raw_sql(statement).execute(connection).await?;
                return Ok(());
            }
        };
        Ok(())
    }

    async fn numbers(&mut self, query: &str) -> Vec<i64> {
        match self {
            Tenant::Postgres(connection) => sqlx::query_scalar(query)
                .fetch_all(connection)
                .await
                .unwrap(),
            Tenant::Sqlite(connection) => sqlx::query_scalar(query)
                .fetch_all(connection)
                .await
                .unwrap(),
        }
    }

    async fn texts(&mut self, query: &str) -> Vec<String> {
        match self {
            Tenant::Postgres(connection) => sqlx::query_scalar(query)
                .fetch_all(connection)
                .await
                .unwrap(),
            Tenant::Sqlite(connection) => sqlx::query_scalar(query)
                .fetch_all(connection)
                .await
                .unwrap(),
        }
    }

    async fn close(self) {
        match self {
            Tenant::Postgres(connection) => connection.close().await.unwrap(),
            Tenant::Sqlite(connection) => connection.close().await.unwrap(),
        }
    }
}

async fn tenant(fleet: &Fleet, slug: &str) -> Tenant {
    let url = tenant_url(fleet, slug).await;
    Tenant::open(fleet.engine, &url).await.unwrap()
}

async fn tenant_url(fleet: &Fleet, slug: &str) -> String {
    fleet
        .secret(&format!("tenant-db-{slug}"))
        .await
        .unwrap_or_else(|| panic!("no secret for {slug}"))
}

/// `url` with its database replaced by `slug`'s: another tenant's credentials aimed at this tenant's database.
fn aimed_at(url: &str, slug: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_path(&format!("/tenant_{}", slug.replace('-', "_")));
    url.to_string()
}

async fn audit_events(fleet: &Fleet, slug: &str, event_type: &str) -> Vec<Value> {
    fleet
        .json(&["audit", "list", "--tenant", slug])
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["event_type"] == event_type)
        .cloned()
        .collect()
}

async fn backups_of(fleet: &Fleet, slug: &str) -> Vec<Value> {
    fleet
        .json(&["backups", "list", slug])
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn phase_names(job: &Value) -> Vec<String> {
    job["phases"]
        .as_array()
        .unwrap_or_else(|| panic!("no phases in {job}"))
        .iter()
        .map(|phase| phase["name"].as_str().unwrap().to_owned())
        .collect()
}

/// How many rows the pair writer has committed, and how many of its transactions failed.
#[derive(Debug, Default)]
struct Written {
    committed: i64,
    failures: u64,
}

/// Inserts rows 1, 2, 3, … into `pairs`, two per transaction, until `stop`, on its own connection.
async fn write_pairs(mut connection: Tenant, stop: &AtomicBool) -> Written {
    let mut written = Written::default();
    while !stop.load(Ordering::Relaxed) {
        let (first, second) = (written.committed + 1, written.committed + 2);
        let statement = format!(
            "BEGIN; INSERT INTO pairs (id) VALUES ({first}); INSERT INTO pairs (id) VALUES ({second}); COMMIT;"
        );
        // Yield between transactions so that the probe and the clone beside it in this task get their turn.
        tokio::task::yield_now().await;
        match connection.execute(&statement).await {
            Ok(()) => written.committed += 2,
            Err(_) => {
                written.failures += 1;
                let _ = connection.execute("ROLLBACK").await;
            }
        }
    }
    connection.close().await;
    written
}

async fn clone_while_writes_go_on(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let source = unique("cs");
    fleet.provision(&source, &[]).await.assert_ok();
    let mut setup = tenant(&fleet, &source).await;
    setup
        .execute("CREATE TABLE pairs (id BIGINT PRIMARY KEY)")
        .await
        .unwrap();

    // The writer runs before, during and after the clone, in this task beside it (joined, not spawned: sqlx's
    // executor futures are not `Send` for every lifetime a spawned task asks for).
    let stop = AtomicBool::new(false);
    let clone = unique("cc");
    let writer_connection = tenant(&fleet, &source).await;
    let (written, (before_clone, cloned)) =
        tokio::join!(write_pairs(writer_connection, &stop), async {
            let before_clone = eventually(
                30,
                || "the writer to commit rows".to_owned(),
                || async {
                    let mut probe = tenant(&fleet, &source).await;
                    let count = probe.numbers("SELECT COUNT(*) FROM pairs").await[0];
                    probe.close().await;
                    (count >= 20).then_some(count)
                },
            )
            .await;
            let cloned = fleet
                .run(&["tenants", "clone", &source, "--to", &clone, "--json"])
                .await;
            stop.store(true, Ordering::Relaxed);
            (before_clone, cloned)
        });
    cloned.assert_ok();
    assert_eq!(
        written.failures, 0,
        "the source refused writes during the clone"
    );

    let job = cloned.json()["job"].clone();
    assert_eq!(job["kind"], "clone", "{job}");
    assert_eq!(job["status"], "complete", "{job}");
    let phases = phase_names(&job);
    for phase in [
        "source_snapshot_taken",
        "migrations_applied",
        "snapshot_discarded",
    ] {
        assert!(phases.contains(&phase.to_owned()), "{phases:?}");
    }

    // One instant: the first N rows the writer committed, N even, between the counts before and after.
    let mut copy = tenant(&fleet, &clone).await;
    let ids = copy.numbers("SELECT id FROM pairs ORDER BY id").await;
    let n_rows = ids.len() as i64;
    assert_eq!(
        n_rows % 2,
        0,
        "half a transaction in the clone: {n_rows} rows"
    );
    assert!(
        ids.iter().copied().eq(1..=n_rows),
        "the clone's rows are not a prefix of the writer's"
    );
    assert!(
        (before_clone..=written.committed).contains(&n_rows),
        "{before_clone} <= {n_rows} <= {}",
        written.committed
    );

    // Its own tenant: registered, valid, with its own labels and audit naming the source; the snapshot is gone.
    fleet.run(&["validate", "--slug", &clone]).await.assert_ok();
    let shown = fleet.json(&["tenants", "show", &clone]).await;
    assert_eq!(shown["tenant"]["status"], "active", "{shown}");
    assert_eq!(
        shown["tenant"]["labels"]["tenant"],
        clone.as_str(),
        "{shown}"
    );
    let audit = audit_events(&fleet, &clone, "TENANT_CLONED").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["details"]["source"], source.as_str());
    assert!(backups_of(&fleet, &source).await.is_empty());
    assert!(backups_of(&fleet, &clone).await.is_empty());
    let snapshot_id = job["job_id"].as_str().unwrap();
    assert!(!fleet.data_path(&format!("backups/{snapshot_id}")).exists());
    assert!(fleet
        .secret(&format!("backup-{snapshot_id}"))
        .await
        .is_none());

    // Isolated: a write to one is not in the other, and (PostgreSQL) each one's credentials are refused on the
    // other's database.
    copy.execute("INSERT INTO pairs (id) VALUES (-1)")
        .await
        .unwrap();
    setup
        .execute("INSERT INTO pairs (id) VALUES (-2)")
        .await
        .unwrap();
    assert_eq!(
        copy.numbers("SELECT id FROM pairs WHERE id < 0").await,
        [-1]
    );
    assert_eq!(
        setup.numbers("SELECT id FROM pairs WHERE id < 0").await,
        [-2]
    );
    copy.close().await;
    setup.close().await;
    let source_url = tenant_url(&fleet, &source).await;
    let clone_url = tenant_url(&fleet, &clone).await;
    assert_ne!(source_url, clone_url);
    if engine == Engine::Postgres {
        assert!(sqlx::PgConnection::connect(&aimed_at(&source_url, &clone))
            .await
            .is_err());
        assert!(sqlx::PgConnection::connect(&aimed_at(&clone_url, &source))
            .await
            .is_err());
    }
    fleet.assert_doctor_clean().await;
    for slug in [&source, &clone] {
        fleet
            .run(&["offboard-tenant", "--slug", slug, "--purge", "--no-backup"])
            .await
            .assert_ok();
    }
    fleet.cleanup().await;
}

async fn clone_refuses_bad_input(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    // A plan on the other engine than the fleet's tenants.
    let other_engine = match engine {
        Engine::Postgres => "sqlite",
        Engine::Sqlite => "postgres",
    };
    write_file(
        &fleet.scratch_dir.join("tenantry.toml"),
        &format!(
            r#"
[[plans]]
name = "starter"
connection_limit = 10
statement_timeout_ms = 30000

[[plans]]
name = "elsewhere"
engine = "{other_engine}"
connection_limit = 10
statement_timeout_ms = 30000
"#
        ),
    );
    let source = unique("cb");
    let taken = unique("ct");
    fleet.provision(&source, &[]).await.assert_ok();
    fleet.provision(&taken, &[]).await.assert_ok();
    let fresh = unique("cn");
    let cases: [(Vec<&str>, &str); 6] = [
        (vec![&source, "--to", "Not A Slug"], "E_INVALID_SLUG"),
        (vec!["no-such-tenant", "--to", &fresh], "E_NOT_FOUND"),
        (vec![&source, "--to", &taken], "E_ALREADY_PROVISIONED"),
        (vec![&source, "--to", &source], "E_ALREADY_PROVISIONED"),
        (
            vec![&source, "--to", &fresh, "--plan", "elsewhere"],
            "E_INVALID_INPUT",
        ),
        (
            vec![&source, "--to", &fresh, "--plan", "no-such-plan"],
            "E_INVALID_INPUT",
        ),
    ];
    for (args, code) in cases {
        let mut command = vec!["tenants", "clone"];
        command.extend(args.iter().copied());
        let refused = fleet.run(&command).await;
        assert_eq!(refused.error_code().as_deref(), Some(code), "{refused:?}");
    }
    // A source that is not active.
    fleet
        .run(&["tenants", "suspend", &source, "--reason", "test"])
        .await
        .assert_ok();
    let refused = fleet
        .run(&["tenants", "clone", &source, "--to", &fresh])
        .await;
    assert_eq!(
        refused.error_code().as_deref(),
        Some("E_CONFLICT"),
        "{refused:?}"
    );
    assert!(refused.stderr.contains("suspended"), "{refused:?}");
    // Nothing was made: no tenant, no job, no backup of the source.
    assert!(fleet
        .tenants()
        .await
        .iter()
        .all(|tenant| tenant["slug"] != fresh.as_str()));
    assert!(fleet.jobs().await.iter().all(|job| job["kind"] != "clone"));
    assert!(backups_of(&fleet, &source).await.is_empty());
    fleet.run(&["tenants", "resume", &source]).await.assert_ok();

    // Over the API: admins only; the same checks; a clone that runs to completion in a worker.
    let admin = fleet.token_for("admin@example.com", "PLATFORM_ADMIN").await;
    let readonly = fleet
        .token_for("readonly@example.com", "PLATFORM_READONLY")
        .await;
    let server = fleet.serve(&[]).await;
    let path = format!("/platform/tenants/{source}/clone");
    let forbidden = server
        .post(&path, &readonly)
        .json(&json!({ "to_slug": fresh }))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    let conflict = server
        .post(&path, &admin)
        .json(&json!({ "to_slug": taken }))
        .send()
        .await
        .unwrap();
    assert_eq!(conflict.status(), 409);
    let accepted = server
        .post(&path, &admin)
        .json(&json!({ "to_slug": fresh }))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let job_id = accepted.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = eventually(
        60,
        || format!("clone job {job_id} to finish"),
        || async {
            let job: Value = server
                .get(&format!("/platform/jobs/{job_id}"), &admin)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            ["complete", "failed", "rolled_back"]
                .contains(&job["status"].as_str().unwrap_or_default())
                .then_some(job)
        },
    )
    .await;
    assert_eq!(
        (&job["kind"], &job["status"]),
        (&json!("clone"), &json!("complete")),
        "{job}"
    );
    let openapi: Value = server
        .get("/platform/openapi.json", &admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(openapi["paths"]["/platform/tenants/{slug}/clone"]["post"].is_object());
    server.terminate().await;
    fleet.assert_doctor_clean().await;
    for slug in [&source, &taken, &fresh] {
        fleet
            .run(&["offboard-tenant", "--slug", slug, "--purge", "--no-backup"])
            .await
            .assert_ok();
    }
    fleet.cleanup().await;
}

async fn in_place_restore_brings_back_a_deleted_row(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let slug = unique("ip");
    fleet.provision(&slug, &[]).await.assert_ok();
    let secret_before = tenant_url(&fleet, &slug).await;
    let mut connection = tenant(&fleet, &slug).await;
    connection
        .execute(
            "CREATE TABLE notes (note TEXT NOT NULL); \
             INSERT INTO notes (note) VALUES ('alpha'), ('beta'), ('gamma');",
        )
        .await
        .unwrap();
    let created = fleet.run(&["backups", "create", &slug, "--json"]).await;
    created.assert_ok();
    let backup_id = created.json()["job"]["job_id"].as_str().unwrap().to_owned();
    // Someone deletes the wrong row, and writes another.
    connection
        .execute(
            "DELETE FROM notes WHERE note = 'beta'; INSERT INTO notes (note) VALUES ('delta');",
        )
        .await
        .unwrap();
    connection.close().await;

    let restored = fleet
        .run(&["backups", "restore", &backup_id, "--in-place", "--json"])
        .await;
    restored.assert_ok();
    let job = restored.json()["job"].clone();
    assert_eq!(job["kind"], "restore_in_place", "{job}");
    assert_eq!(job["status"], "complete", "{job}");
    assert_eq!(
        phase_names(&job),
        [
            "request_validated",
            "safety_backup_taken",
            "database_restored",
            "checks_passed",
            "complete"
        ]
    );
    let safety_backup = job["job_id"].as_str().unwrap().to_owned();

    // The row is back; the tenant keeps its secret and logs in with it.
    assert_eq!(tenant_url(&fleet, &slug).await, secret_before);
    let mut connection = tenant(&fleet, &slug).await;
    assert_eq!(
        connection
            .texts("SELECT note FROM notes ORDER BY note")
            .await,
        ["alpha", "beta", "gamma"]
    );
    connection.close().await;
    let audit = audit_events(&fleet, &slug, "BACKUP_RESTORED").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["details"]["in_place"], true);
    assert_eq!(audit[0]["details"]["backup_id"], backup_id.as_str());
    assert_eq!(
        audit[0]["details"]["safety_backup_id"],
        safety_backup.as_str()
    );
    let backups = backups_of(&fleet, &slug).await;
    assert_eq!(backups.len(), 2, "{backups:?}");
    assert!(backups
        .iter()
        .any(|backup| backup["id"] == safety_backup.as_str()));
    fleet.assert_doctor_clean().await;

    // The safety backup puts the replaced data back.
    fleet
        .run(&["backups", "restore", &safety_backup, "--in-place"])
        .await
        .assert_ok();
    let mut connection = tenant(&fleet, &slug).await;
    assert_eq!(
        connection
            .texts("SELECT note FROM notes ORDER BY note")
            .await,
        ["alpha", "delta", "gamma"]
    );
    connection.close().await;

    // Bad input: refused with its code, nothing changed.
    let both = fleet
        .run(&[
            "backups",
            "restore",
            &backup_id,
            "--in-place",
            "--to",
            "other-slug",
        ])
        .await;
    assert_ne!(both.status, 0, "{both:?}");
    let missing = fleet
        .run(&["backups", "restore", "0190-no-such-backup", "--in-place"])
        .await;
    assert_eq!(
        missing.error_code().as_deref(),
        Some("E_NOT_FOUND"),
        "{missing:?}"
    );
    fleet
        .run(&["tenants", "suspend", &slug, "--reason", "test"])
        .await
        .assert_ok();
    let suspended = fleet
        .run(&["backups", "restore", &backup_id, "--in-place"])
        .await;
    assert_eq!(
        suspended.error_code().as_deref(),
        Some("E_CONFLICT"),
        "{suspended:?}"
    );
    fleet.run(&["tenants", "resume", &slug]).await.assert_ok();
    let n_jobs = fleet.jobs().await.len();
    fleet
        .run(&["offboard-tenant", "--slug", &slug, "--purge", "--no-backup"])
        .await
        .assert_ok();
    let purged = fleet
        .run(&["backups", "restore", &backup_id, "--in-place"])
        .await;
    assert_eq!(
        purged.error_code().as_deref(),
        Some("E_NOT_FOUND"),
        "{purged:?}"
    );
    assert!(purged.stderr.contains("--to"), "{purged:?}");
    assert_eq!(
        fleet.jobs().await.len(),
        n_jobs + 1,
        "only the purge's job was added"
    );
    fleet.cleanup().await;
}
