//! The shared tier (`isolation = "schema"`) on both registries: tenants as schemas in the tenant cluster's shared
//! database, isolated both ways (the course module's test: B cannot read A's schema nor A's rows in a shared
//! table; A cannot change B's settings), validated, suspended and resumed, backed up, offboarded and purged, with
//! drift named by doctor and bad configuration refused. `saga.rs` fails, repeats and crashes its provisioning.

use crate::for_each_engine;
use crate::harness::{tenant_cluster_url, with_database, write_file, Engine, Fleet};
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};

for_each_engine!(
    schema_tenants_are_isolated_both_ways_and_leave_nothing_when_purged,
    drift_of_a_schema_tenant_is_named_and_bad_configuration_refused,
);

/// A free plan on the shared tier with one shared table, and the starter plan on dedicated databases.
pub(crate) const SCHEMA_PLANS: &str = r#"
default_plan = "starter"

[[plans]]
name = "free"
engine = "postgres"
isolation = "schema"
shared_tables = ["documents"]
connection_limit = 5
statement_timeout_ms = 20000
base_monthly_price = 0.0
cost_center = "free-tier"

[[plans]]
name = "starter"
engine = "postgres"
connection_limit = 10
statement_timeout_ms = 30000
base_monthly_price = 49.0
cost_center = "self-serve"
"#;

/// A fleet with the tenant cluster as server `pg` and the plans above.
pub(crate) async fn schema_fleet(engine: Engine) -> Fleet {
    let fleet = Fleet::with_tenant_cluster(engine).await;
    write_file(&fleet.scratch_dir.join("tenantry.toml"), SCHEMA_PLANS);
    fleet
}

fn resource(slug: &str) -> String {
    format!("tenant_{}", slug.replace('-', "_"))
}

/// The name of the shared database on the tenant cluster (the tests hold the cluster: there is at most one).
async fn shared_database() -> Option<String> {
    let mut admin = PgConnection::connect(&tenant_cluster_url()).await.unwrap();
    sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname LIKE 'tenantry\\_shared\\_%'",
    )
    .fetch_optional(&mut admin)
    .await
    .unwrap()
}

async fn shared_admin() -> PgConnection {
    let database = shared_database().await.expect("a shared database");
    PgConnection::connect(&with_database(&tenant_cluster_url(), &database))
        .await
        .unwrap()
}

/// The SQLSTATE a statement fails with as the tenant (`None`: it ran).
async fn refusal(connection: &mut PgConnection, statement: &str) -> Option<String> {
    match connection.execute(statement).await {
        Ok(_) => None,
        Err(sqlx::Error::Database(error)) => error.code().map(|code| code.into_owned()),
        Err(other) => panic!("{statement}: {other}"),
    }
}

/// What a saga snapshot sees of a shared-tier tenant: its schema, role, login, settings and connection limit
/// (`None` when the fleet has no shared tier, so other scenarios keep their own facts).
pub(crate) async fn schema_facts(fleet: &Fleet, slug: &str, url: Option<&str>) -> Option<Value> {
    let config = std::fs::read_to_string(fleet.scratch_dir.join("tenantry.toml")).ok()?;
    if !config.contains("isolation = \"schema\"") {
        return None;
    }
    let name = resource(slug);
    let mut admin = PgConnection::connect(&tenant_cluster_url()).await.unwrap();
    let (role, connection_limit): (bool, Option<i32>) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1),
                (SELECT rolconnlimit FROM pg_roles WHERE rolname = $1)",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    let schema = match shared_database().await {
        Some(_) => {
            let mut shared = shared_admin().await;
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                    .bind(&name)
                    .fetch_one(&mut shared)
                    .await
                    .unwrap();
            let settings: Vec<(String, String)> = if exists {
                sqlx::query_as(&format!(
                    "SELECT key, value FROM \"{name}\".tenantry_settings ORDER BY key"
                ))
                .fetch_all(&mut shared)
                .await
                .unwrap_or_default()
            } else {
                Vec::new()
            };
            let rows: i64 =
                sqlx::query_scalar("SELECT count(*) FROM public.documents WHERE tenant = $1")
                    .bind(&name)
                    .fetch_one(&mut shared)
                    .await
                    .unwrap_or(0);
            json!({ "exists": exists, "settings": settings, "shared_rows": rows })
        }
        None => json!({ "exists": false }),
    };
    let login = match url {
        Some(url) => PgConnection::connect(url).await.is_ok(),
        None => false,
    };
    Some(json!({
        "schema": schema,
        "role": role,
        "login": login,
        "connection_limit": connection_limit,
    }))
}

async fn schema_tenants_are_isolated_both_ways_and_leave_nothing_when_purged(engine: Engine) {
    let fleet = schema_fleet(engine).await;
    let (a, b) = ("free-alpha", "free-beta");
    for slug in [a, b] {
        let run = fleet.provision_on_plan(slug, "free").await;
        run.assert_ok();
    }
    // A dedicated neighbour on the same server, which the shared tier must not disturb.
    fleet
        .provision_on_plan("paid-gamma", "starter")
        .await
        .assert_ok();
    let shared = shared_database()
        .await
        .expect("provisioning made the shared database");
    let url_a = fleet.secret(&format!("tenant-db-{a}")).await.unwrap();
    let url_b = fleet.secret(&format!("tenant-db-{b}")).await.unwrap();
    assert!(
        url_a.ends_with(&format!("/{shared}")),
        "the secret names the shared database"
    );
    for slug in [a, b] {
        let checks = fleet.validation(slug).await;
        assert!(
            checks.iter().all(|(_, passed)| *passed),
            "{slug}: every check passes: {checks:?}"
        );
        assert!(
            checks
                .iter()
                .any(|(name, _)| name == "isolation_shared_schema"),
            "{checks:?}"
        );
    }

    let mut as_a = PgConnection::connect(&url_a).await.unwrap();
    let mut as_b = PgConnection::connect(&url_b).await.unwrap();
    // The tenant schema's migrations ran inside each tenant's schema, found through its search path.
    let (schema, users): (String, i64) =
        sqlx::query_as("SELECT current_schema()::text, (SELECT count(*) FROM users)")
            .fetch_one(&mut as_a)
            .await
            .unwrap();
    assert_eq!(
        (schema.as_str(), users),
        (resource(a).as_str(), 1),
        "A's admin was seeded in A's schema"
    );
    for (connection, mine) in [(&mut as_a, a), (&mut as_b, b)] {
        connection
            .execute(
                format!("INSERT INTO documents (data) VALUES ('{{\"by\": \"{mine}\"}}')").as_str(),
            )
            .await
            .unwrap();
    }
    // The course module's test, as B: A's schema is refused, A's rows are invisible, and B cannot write a row
    // in A's name.
    let a_schema = resource(a);
    assert_eq!(
        refusal(&mut as_b, &format!("SELECT * FROM {a_schema}.users"))
            .await
            .as_deref(),
        Some("42501"),
        "B reading A's schema is refused"
    );
    let visible: Vec<String> = sqlx::query_scalar("SELECT tenant::text FROM documents")
        .fetch_all(&mut as_b)
        .await
        .unwrap();
    assert_eq!(visible, vec![resource(b)], "B sees its own row only");
    assert_eq!(
        refusal(
            &mut as_b,
            &format!("INSERT INTO documents (tenant) VALUES ('{a_schema}')")
        )
        .await
        .as_deref(),
        Some("42501"),
        "row-level security refuses a row in A's name"
    );
    assert_eq!(
        sqlx::query("UPDATE documents SET data = '{}' WHERE tenant <> current_user")
            .execute(&mut as_b)
            .await
            .unwrap()
            .rows_affected(),
        0
    );
    // And the other way: A cannot read or change B's settings, create in public, or open its schema to B.
    let b_schema = resource(b);
    for statement in [
        format!("UPDATE {b_schema}.tenantry_settings SET value = 'x'"),
        format!("SELECT * FROM {b_schema}.tenantry_settings"),
        "CREATE TABLE public.mine (id int)".to_owned(),
    ] {
        assert_eq!(
            refusal(&mut as_a, &statement).await.as_deref(),
            Some("42501"),
            "refused to A: {statement}"
        );
    }
    // A holds no grant option on its own schema (the installation's role owns it): a grant to B gives B nothing.
    let _ = as_a
        .execute(format!("GRANT USAGE ON SCHEMA {a_schema} TO {b_schema}").as_str())
        .await;
    assert_eq!(
        refusal(&mut as_b, &format!("SELECT * FROM {a_schema}.users"))
            .await
            .as_deref(),
        Some("42501"),
        "B still cannot read A's schema"
    );
    let connection_limit: String =
        sqlx::query_scalar("SELECT value FROM tenantry_settings WHERE key = 'connection_limit'")
            .fetch_one(&mut as_b)
            .await
            .unwrap();
    assert_eq!(connection_limit, "5", "B's settings are in B's schema");
    // Neither reaches the dedicated neighbour's database.
    let neighbour = with_database(&url_a, &resource("paid-gamma"));
    assert!(PgConnection::connect(&neighbour).await.is_err());
    as_a.close().await.unwrap();
    as_b.close().await.unwrap();
    fleet.assert_doctor_clean().await;

    // A plan change cannot move a tenant between the tiers; one within the tier is a set-plan job like any.
    let moved = fleet.run(&["tenants", "set-plan", a, "starter"]).await;
    assert_eq!(
        moved.error_code().as_deref(),
        Some("E_INVALID_INPUT"),
        "{moved:?}"
    );
    // A move, a clone and an in-place restore copy or replace a database of the tenant's own: refused for a
    // schema tenant before any job is recorded.
    let jobs_before = fleet.json(&["jobs", "list", "--tenant", a]).await;
    for args in [
        vec!["tenants", "move", a, "--to-server", "no-matter"],
        vec!["tenants", "clone", a, "--to", "schema-clone"],
        vec!["backups", "restore", "--latest-of", a, "--in-place"],
    ] {
        if args[0] == "backups" {
            fleet.run(&["backups", "create", a]).await.assert_ok();
        }
        let refused = fleet.run(&args).await;
        assert_eq!(
            refused.error_code().as_deref(),
            Some("E_INVALID_INPUT"),
            "{args:?}: {refused:?}"
        );
    }
    let jobs_after = fleet.json(&["jobs", "list", "--tenant", a]).await;
    let count = |jobs: &serde_json::Value| jobs.as_array().map_or(0, Vec::len);
    // Only the backup taken for the in-place attempt was recorded.
    assert_eq!(count(&jobs_after), count(&jobs_before) + 1, "{jobs_after}");

    // Suspension locks B out and ends its sessions; resumption lets it in with its row intact.
    let mut held = PgConnection::connect(&url_b).await.unwrap();
    fleet
        .run(&["tenants", "suspend", b, "--reason", "unpaid"])
        .await
        .assert_ok();
    assert!(
        PgConnection::connect(&url_b).await.is_err(),
        "suspended B cannot log in"
    );
    assert!(
        held.execute("SELECT 1").await.is_err(),
        "B's open session was ended"
    );
    fleet.run(&["tenants", "resume", b]).await.assert_ok();
    let mut as_b = PgConnection::connect(&url_b).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM documents")
        .fetch_one(&mut as_b)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    as_b.close().await.unwrap();

    // A backup of a schema tenant dumps its schema (pg_dump -n).
    fleet.run(&["backups", "create", b]).await.assert_ok();

    // Offboarding A keeps its data and locks it out; the purge drops its schema, role and shared rows, and
    // nothing of B's.
    fleet
        .run(&["offboard-tenant", "--slug", a])
        .await
        .assert_ok();
    assert!(
        PgConnection::connect(&url_a).await.is_err(),
        "offboarded A cannot log in"
    );
    fleet
        .run(&["offboard-tenant", "--slug", a, "--purge", "--no-backup"])
        .await
        .assert_ok();
    let mut shared_admin = shared_admin().await;
    let (schema_left, rows_left, b_rows): (bool, i64, i64) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
                (SELECT count(*) FROM public.documents WHERE tenant = $1),
                (SELECT count(*) FROM public.documents WHERE tenant = $2)",
    )
    .bind(&a_schema)
    .bind(&b_schema)
    .fetch_one(&mut shared_admin)
    .await
    .unwrap();
    assert_eq!((schema_left, rows_left, b_rows), (false, 0, 1));
    let mut admin = PgConnection::connect(&tenant_cluster_url()).await.unwrap();
    let role_left: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(&a_schema)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(!role_left, "A's role is dropped");
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

async fn drift_of_a_schema_tenant_is_named_and_bad_configuration_refused(engine: Engine) {
    let fleet = schema_fleet(engine).await;
    let slug = "free-delta";
    fleet.provision_on_plan(slug, "free").await.assert_ok();
    let name = resource(slug);

    // A schema opened to every role by hand is drift, and a failed isolation check.
    let mut shared = shared_admin().await;
    shared
        .execute(format!("GRANT USAGE ON SCHEMA {name} TO PUBLIC").as_str())
        .await
        .unwrap();
    let doctor = fleet.run(&["doctor", "--json"]).await;
    assert_ne!(doctor.status, 0, "{doctor:?}");
    assert!(
        doctor.stdout.contains(&format!("schema {name}"))
            && doctor.stdout.contains("may be used by PUBLIC"),
        "doctor names the widened schema: {}",
        doctor.stdout
    );
    shared
        .execute(format!("REVOKE USAGE ON SCHEMA {name} FROM PUBLIC").as_str())
        .await
        .unwrap();

    // A schema dropped by hand leaves a registered tenant missing it: partial, with the purge as its fix.
    shared
        .execute(format!("DROP SCHEMA {name} CASCADE").as_str())
        .await
        .unwrap();
    let doctor = fleet.run(&["doctor", "--json"]).await;
    let findings = doctor.json()["findings"].as_array().unwrap().clone();
    assert!(
        findings.iter().any(|finding| finding["kind"] == "partial"
            && finding["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("schema {name}"))),
        "{findings:?}"
    );
    fleet
        .run(&["offboard-tenant", "--slug", slug, "--purge", "--no-backup"])
        .await
        .assert_ok();
    fleet.assert_doctor_clean().await;

    // Bad configuration is refused with its code, before anything is made.
    for (plans, named) in [
        (
            SCHEMA_PLANS.replace("engine = \"postgres\"\nisolation", "isolation"),
            "engine",
        ),
        (
            SCHEMA_PLANS.replace("[\"documents\"]", "[\"pg_documents\"]"),
            "pg_documents",
        ),
        (
            SCHEMA_PLANS.replace("isolation = \"schema\"", "isolation = \"row\""),
            "isolation",
        ),
    ] {
        write_file(&fleet.scratch_dir.join("tenantry.toml"), &plans);
        let run = fleet.provision_on_plan("free-epsilon", "free").await;
        assert_ne!(run.status, 0, "{run:?}");
        assert_eq!(
            run.error_code().as_deref(),
            Some("E_INVALID_INPUT"),
            "{run:?}"
        );
        assert!(run.stderr.contains(named), "{named}: {run:?}");
    }
    write_file(&fleet.scratch_dir.join("tenantry.toml"), SCHEMA_PLANS);
    assert!(fleet
        .tenants()
        .await
        .iter()
        .all(|tenant| tenant["slug"] != "free-epsilon"));
    fleet.cleanup().await;
}
