//! What a tenant and a second installation can do to tenants they do not own: a tenant cannot loosen what its plan
//! set, a neighbour that opened itself is its own finding, and an installation never takes another's objects (or
//! objects it cannot place) for its own: `doctor` lists them as foreign, `--purge`, `pool prune` and provisioning
//! leave them alone.

use crate::harness::{tenant_cluster_url, with_database, Engine, Fleet};
use serde_json::Value;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};

/// The tenant's own connection URL, from the secret store.
async fn tenant_url(fleet: &Fleet, slug: &str) -> String {
    fleet
        .secret(&format!("tenant-db-{slug}"))
        .await
        .expect("the tenant's secret")
}

async fn cluster_admin() -> PgConnection {
    PgConnection::connect(&tenant_cluster_url())
        .await
        .expect("tenant cluster")
}

async fn public_may_connect(admin: &mut PgConnection, database: &str) -> bool {
    sqlx::query_scalar("SELECT has_database_privilege('public', $1, 'CONNECT')")
        .bind(database)
        .fetch_one(admin)
        .await
        .unwrap()
}

fn findings_of(report: &Value, kind: &str) -> Vec<Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|finding| finding["kind"] == kind)
        .cloned()
        .collect()
}

/// Before: the tenant role owned its database, so its own credentials could open it to PUBLIC (blocking every
/// new tenant on the server) and lift the plan's connection limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_loosen_what_its_plan_set_and_keeps_its_schema() {
    let fleet = Fleet::new(Engine::Postgres).await;
    fleet.provision("own-db", &[]).await.assert_ok();
    let url = tenant_url(&fleet, "own-db").await;
    let mut tenant = PgConnection::connect(&url).await.expect("tenant login");
    // PostgreSQL answers a grant by someone without the grant option with a warning, not an error: what counts
    // is that PUBLIC still may not connect (checked below).
    tenant
        .execute("GRANT CONNECT ON DATABASE tenant_own_db TO PUBLIC")
        .await
        .ok();
    for statement in [
        "ALTER DATABASE tenant_own_db CONNECTION LIMIT -1",
        "COMMENT ON DATABASE tenant_own_db IS 'mine'",
        "ALTER DATABASE tenant_own_db RENAME TO elsewhere",
    ] {
        let refused = tenant.execute(statement).await;
        assert!(refused.is_err(), "{statement} was allowed to the tenant");
    }
    // What migrations need still works: tables in `public`, a schema of its own, temporary tables, and altering
    // what the template gave it.
    for statement in [
        "CREATE TABLE public.later_migration (id bigint)",
        "CREATE SCHEMA reporting",
        "CREATE TABLE reporting.totals (n int)",
        "CREATE TEMPORARY TABLE scratch (n int)",
        "ALTER TABLE _sqlx_migrations ADD COLUMN note text",
    ] {
        tenant
            .execute(statement)
            .await
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    tenant.close().await.unwrap();
    let mut admin = cluster_admin().await;
    assert!(!public_may_connect(&mut admin, "tenant_own_db").await);
    // The comments a tenant can read on the server hold an opaque installation id, no labels and no secret.
    let comments: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname LIKE 'tenant%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    for comment in comments.into_iter().flatten() {
        assert!(
            !comment.contains("cost_center")
                && !comment.contains("plan")
                && !comment.contains("sealed"),
            "{comment}"
        );
    }
    fleet
        .run(&["validate", "--slug", "own-db"])
        .await
        .assert_ok();
    fleet
        .run(&["offboard-tenant", "--slug", "own-db", "--purge"])
        .await
        .assert_ok();
    assert_eq!(fleet.server_has("own-db").await, (false, false));
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

/// Before: a neighbour open to PUBLIC failed every new tenant's `isolation_other_tenants` and `doctor` said
/// nothing. Now the new tenant is provisioned with the neighbour named, doctor reports the neighbour as drift, and
/// `reconcile` closes it (and converts a database its tenant owns, as older versions made them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_neighbour_is_its_own_finding_and_reconcile_closes_it() {
    let fleet = Fleet::new(Engine::Postgres).await;
    fleet.provision("opened", &[]).await.assert_ok();
    let mut admin = cluster_admin().await;
    // What a tenant of an older version could do to itself, done here by the admin.
    admin
        .execute("ALTER DATABASE tenant_opened OWNER TO tenant_opened")
        .await
        .unwrap();
    admin
        .execute("GRANT CONNECT ON DATABASE tenant_opened TO PUBLIC")
        .await
        .unwrap();
    fleet.provision("next-door", &[]).await.assert_ok();
    let checks = fleet
        .json(&["validate", "--slug", "next-door"])
        .await
        .to_string();
    assert!(
        checks.contains("tenant_opened admit PUBLIC"),
        "the isolation check names the open neighbour: {checks}"
    );
    let doctor = fleet.run(&["doctor", "--json"]).await;
    assert_ne!(doctor.status, 0, "doctor names the open database");
    let drift = findings_of(&doctor.json(), "drift");
    assert_eq!(drift.len(), 1, "{}", doctor.stdout);
    assert_eq!(drift[0]["subject"], "tenant opened");
    assert!(drift[0]["detail"]
        .as_str()
        .unwrap()
        .contains("admits PUBLIC"));
    assert_eq!(drift[0]["fix"], "tenantry reconcile --slug opened");
    fleet
        .run(&["reconcile", "--slug", "opened"])
        .await
        .assert_ok();
    assert!(fleet
        .audit_types("opened")
        .await
        .contains(&"TENANT_RECONCILED".to_owned()));
    fleet.assert_doctor_clean().await;
    // Converted: the tenant's own credentials can no longer open it again, and it still works.
    let url = tenant_url(&fleet, "opened").await;
    let mut tenant = PgConnection::connect(&url).await.unwrap();
    tenant
        .execute("GRANT CONNECT ON DATABASE tenant_opened TO PUBLIC")
        .await
        .ok();
    assert!(!public_may_connect(&mut admin, "tenant_opened").await);
    tenant
        .execute("CREATE TABLE after_reconcile (id int)")
        .await
        .unwrap();
    tenant.close().await.unwrap();
    fleet
        .run(&["validate", "--slug", "opened"])
        .await
        .assert_ok();
    fleet.cleanup().await;
}

/// Before: one installation's doctor called another's 24 tenants orphans (and its template stale), and
/// `offboard-tenant --purge` as recommended dropped the other's database and role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_installations_on_one_server_never_touch_each_others_objects() {
    let ours = Fleet::new(Engine::Postgres).await;
    let theirs = ours.another_installation().await;
    theirs.provision("theirs-a", &[]).await.assert_ok();
    theirs.provision("theirs-b", &[]).await.assert_ok();
    ours.provision("ours-a", &[]).await.assert_ok();

    // Each doctor is clean and lists the other's objects as foreign.
    for (fleet, other_slug) in [(&ours, "theirs_a"), (&theirs, "ours_a")] {
        let doctor = fleet.run(&["doctor", "--json"]).await;
        assert_eq!(doctor.status, 0, "{}", doctor.stdout);
        let report = doctor.json();
        let foreign = report["foreign"].to_string();
        assert!(
            foreign.contains(&format!("tenant_{other_slug}")),
            "{foreign}"
        );
        assert!(foreign.contains("tenantry_template_"), "{foreign}");
    }

    // The purge doctor used to recommend is refused, and changes nothing.
    let purge = ours
        .run(&["offboard-tenant", "--slug", "theirs-a", "--purge"])
        .await;
    assert_eq!(
        purge.error_code().as_deref(),
        Some("E_FOREIGN_OBJECT"),
        "{purge:?}"
    );
    assert_eq!(ours.server_has("theirs-a").await, (true, true));
    // Provisioning a slug the other installation holds fails without dropping the other's database.
    let clash = ours.provision("theirs-b", &[]).await;
    assert_ne!(clash.status, 0);
    assert!(clash.stderr.contains("E_FOREIGN_OBJECT"), "{clash:?}");
    assert_eq!(ours.server_has("theirs-b").await, (true, true));
    // Pruning everything of ours leaves the other's template and tenants in place.
    ours.run(&["pool", "prune", "--server", "pg", "--all"])
        .await
        .assert_ok();
    let mut admin = cluster_admin().await;
    let templates: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_database WHERE datname LIKE 'tenantry\\_template\\_%'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(templates, 1, "the other installation's template stays");
    theirs
        .run(&["validate", "--slug", "theirs-a"])
        .await
        .assert_ok();
    theirs
        .run(&["validate", "--slug", "theirs-b"])
        .await
        .assert_ok();
    ours.run(&["validate", "--slug", "ours-a"])
        .await
        .assert_ok();

    // One cluster registered twice under two names is refused.
    let twice = ours
        .run_with_stdin(
            &[
                "servers",
                "add",
                "--name",
                "pg-again",
                "--engine",
                "postgres",
                "--admin-url-stdin",
                "--capacity",
                "10",
            ],
            &with_database(&tenant_cluster_url(), "template1"),
        )
        .await;
    assert_eq!(
        twice.error_code().as_deref(),
        Some("E_CONFLICT"),
        "{twice:?}"
    );
    assert!(
        twice.stderr.contains("already registered as pg"),
        "{twice:?}"
    );

    theirs.cleanup().await;
    ours.cleanup().await;
}

/// Before: a registry that started afresh beside existing tenant files called each an orphan, and `--purge`
/// deleted one. A file made by another registry is foreign; a purge refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_registry_beside_existing_sqlite_tenants_takes_none_of_them() {
    let fleet = Fleet::new(Engine::Sqlite).await;
    fleet.provision("kept-file", &[]).await.assert_ok();
    let fresh = format!(
        "sqlite://{}",
        fleet.scratch_dir.join("fresh-registry.db").display()
    );
    let env = [("TENANTRY_REGISTRY_URL", fresh.as_str())];
    let doctor = fleet.run_env(&["doctor", "--json"], &env).await;
    assert_eq!(doctor.status, 0, "{}", doctor.stdout);
    let report = doctor.json();
    assert!(
        report["foreign"].to_string().contains("tenant_kept_file"),
        "{report}"
    );
    let purge = fleet
        .run_env(&["offboard-tenant", "--slug", "kept-file", "--purge"], &env)
        .await;
    assert_eq!(
        purge.error_code().as_deref(),
        Some("E_FOREIGN_OBJECT"),
        "{purge:?}"
    );
    assert!(fleet.sqlite_file("kept-file").exists());
    fleet
        .run(&["validate", "--slug", "kept-file"])
        .await
        .assert_ok();
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

/// Before: a tenant could log in to the server's `postgres` and `template1` databases, and `servers add` said
/// nothing. Now it names them, and `servers harden --apply` closes them (the admin URL's own database stays open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_harden_names_and_closes_the_databases_that_admit_public() {
    let fleet = Fleet::new(Engine::Postgres).await;
    let mut admin = cluster_admin().await;
    // The suite's own cluster, as initdb made it (a run before this one closed template1 and reopened it).
    admin
        .execute("GRANT CONNECT ON DATABASE template1 TO PUBLIC")
        .await
        .unwrap();
    let report = fleet.json(&["servers", "harden", "pg"]).await;
    let open = report["open_to_public"].to_string();
    assert!(
        open.contains("\"postgres\"") && open.contains("\"template1\""),
        "{report}"
    );
    assert!(
        public_may_connect(&mut admin, "template1").await,
        "a report changes nothing"
    );

    let applied = fleet.json(&["servers", "harden", "pg", "--apply"]).await;
    assert_eq!(
        applied["closed"],
        serde_json::json!(["template1"]),
        "{applied}"
    );
    assert!(
        applied["kept"]
            .to_string()
            .contains("postgres (the admin connection's own database)"),
        "{applied}"
    );
    assert!(!public_may_connect(&mut admin, "template1").await);
    assert!(fleet
        .run(&["audit", "list", "--json"])
        .await
        .stdout
        .contains("SERVER_HARDENED"));
    // Tenants are provisioned and validated as before.
    fleet.provision("after-harden", &[]).await.assert_ok();
    fleet
        .run(&["validate", "--slug", "after-harden"])
        .await
        .assert_ok();
    admin
        .execute("GRANT CONNECT ON DATABASE template1 TO PUBLIC")
        .await
        .unwrap();
    fleet.cleanup().await;
}
