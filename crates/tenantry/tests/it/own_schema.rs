//! An operator's own tenant schema, sharing no table with the example: with only the admin seed and check adapted,
//! a tenant provisions, validates, changes plan and is purged; a seed or check that does not fit the schema is
//! refused with `E_TENANT_SCHEMA_MISMATCH` and changes nothing. tenantry keeps what it writes into a tenant
//! database in a place of its own, also for a tenant an older version made.

use crate::for_each_engine;
use crate::harness::{tenant_cluster_url, with_database, write_file, Engine, Fleet};
use serde_json::Value;
use sqlx::{Connection, Executor};
use std::path::PathBuf;

for_each_engine!(
    an_operators_own_schema_provisions_validates_changes_plan_and_offboards,
    a_tenant_with_its_settings_in_the_old_table_keeps_working,
);

/// The operator's schema: `users` with columns of its own names, and `projects`. No `tenant_settings`, no
/// `invitation_token_hash`, no `role`.
fn write_own_schema(fleet: &Fleet) -> PathBuf {
    let root = fleet.scratch_dir.join("own-schema");
    let migrations = root.join("migrations");
    write_file(
        &migrations.join("postgres/0001_users.sql"),
        "CREATE TABLE users (
             id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             email              TEXT NOT NULL UNIQUE,
             pwd_hash           TEXT NOT NULL,
             invite_token_hash  TEXT,
             must_reset         BOOLEAN NOT NULL DEFAULT TRUE
         );",
    );
    write_file(
        &migrations.join("postgres/0002_projects.sql"),
        "CREATE TABLE projects (
             id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             owner_id  BIGINT NOT NULL REFERENCES users (id),
             name      TEXT NOT NULL
         );",
    );
    write_file(
        &migrations.join("sqlite/0001_users.sql"),
        "CREATE TABLE users (
             id                 INTEGER PRIMARY KEY AUTOINCREMENT,
             email              TEXT NOT NULL UNIQUE,
             pwd_hash           TEXT NOT NULL,
             invite_token_hash  TEXT,
             must_reset         INTEGER NOT NULL DEFAULT 1
         );",
    );
    write_file(
        &migrations.join("sqlite/0002_projects.sql"),
        "CREATE TABLE projects (
             id        INTEGER PRIMARY KEY AUTOINCREMENT,
             owner_id  INTEGER NOT NULL REFERENCES users (id),
             name      TEXT NOT NULL
         );",
    );
    for (engine, truth) in [("postgres", "TRUE"), ("sqlite", "1")] {
        write_file(
            &root.join(format!("seed/{engine}.sql")),
            &format!(
                "INSERT INTO users (email, pwd_hash, invite_token_hash, must_reset) VALUES ($1, $2, $3, {truth})
                 ON CONFLICT (email) DO UPDATE SET pwd_hash = excluded.pwd_hash,
                     invite_token_hash = excluded.invite_token_hash, must_reset = {truth}"
            ),
        );
        write_file(
            &root.join(format!("check/{engine}.sql")),
            &format!("SELECT count(*) FROM users WHERE email = $1 AND must_reset = {truth}"),
        );
    }
    root
}

/// A session in the tenant's database as the server's admin (PostgreSQL) or on its file (SQLite).
async fn tenant_database(fleet: &Fleet, slug: &str) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    let url = match fleet.engine {
        Engine::Postgres => with_database(
            &tenant_cluster_url(),
            &format!("tenant_{}", slug.replace('-', "_")),
        ),
        Engine::Sqlite => format!("sqlite://{}", fleet.sqlite_file(slug).display()),
    };
    sqlx::AnyConnection::connect(&url).await.unwrap()
}

/// The rows of tenantry's own settings table in the tenant database.
async fn tenantry_settings(fleet: &Fleet, slug: &str) -> Vec<(String, String)> {
    let table = match fleet.engine {
        Engine::Postgres => "tenantry.settings",
        Engine::Sqlite => "tenantry_settings",
    };
    let mut connection = tenant_database(fleet, slug).await;
    sqlx::query_as(&format!("SELECT key, value FROM {table} ORDER BY key"))
        .fetch_all(&mut connection)
        .await
        .unwrap()
}

fn setting<'a>(settings: &'a [(String, String)], key: &str) -> Option<&'a str> {
    settings
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

/// The tables of the tenant's own schema (PostgreSQL: `public`), tenantry's migrations table left out.
async fn schema_tables(fleet: &Fleet, slug: &str) -> Vec<String> {
    let query = match fleet.engine {
        Engine::Postgres => {
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        }
        Engine::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY 1"
        }
    };
    let mut connection = tenant_database(fleet, slug).await;
    sqlx::query_scalar(query)
        .fetch_all(&mut connection)
        .await
        .unwrap()
}

async fn validate(fleet: &Fleet, slug: &str) -> Vec<Value> {
    let run = fleet.run(&["validate", "--slug", slug, "--json"]).await;
    assert_eq!(run.status, 0, "validate failed: {run:?}");
    let checks = run.json()["checks"].as_array().cloned().unwrap();
    for check in &checks {
        assert_ne!(check["status"], "failed", "{check}");
    }
    // What the tenant schema decides, and tenantry's own labels, passed (a lone tenant has no neighbours to be
    // isolated from, and SQLite has no roles: those are skipped).
    for name in ["migrations_latest", "admin_seeded", "cost_labels"] {
        let check = checks.iter().find(|check| check["name"] == name).unwrap();
        assert_eq!(check["status"], "passed", "{check}");
    }
    checks
}

/// Asserts that a refused request left no trace: no job (when refused before one), no tenant, nothing on the
/// server, no secret, and a clean doctor.
async fn assert_untouched(fleet: &Fleet, slug: &str) {
    assert_eq!(fleet.server_has(slug).await, (false, false), "{slug}");
    assert_eq!(fleet.secret(&format!("tenant-db-{slug}")).await, None);
    assert_eq!(fleet.secret(&format!("tenant-invite-{slug}")).await, None);
    assert!(fleet.tenants().await.is_empty());
    fleet.assert_doctor_clean().await;
}

async fn an_operators_own_schema_provisions_validates_changes_plan_and_offboards(engine: Engine) {
    let mut fleet = Fleet::new(engine).await;
    let own = write_own_schema(&fleet);
    fleet.set_env(
        "TENANTRY_TENANT_MIGRATIONS",
        own.join("migrations").to_str().unwrap(),
    );

    // As a new user first tries it: their migrations, the example's seed. The seed names
    // `password_hash` and `invitation_token_hash`, which their `users` does not have: the operator's configuration error, named.
    let refused = fleet.provision("misfit", &[]).await;
    assert_eq!(
        refused.error_code().as_deref(),
        Some("E_TENANT_SCHEMA_MISMATCH"),
        "{refused:?}"
    );
    assert!(
        refused.stderr.contains("password_hash"),
        "the database's error is named: {refused:?}"
    );
    assert!(refused.stderr.contains("admin seed"), "{refused:?}");
    let jobs = fleet.jobs().await;
    match engine {
        // A scratch in-memory database migrated with the schema judged it before any job.
        Engine::Sqlite => assert!(jobs.is_empty(), "no job is recorded: {jobs:?}"),
        // Judged against the tenant's own migrated database before the seed ran; the job rolled back.
        Engine::Postgres => {
            assert_eq!(jobs.len(), 1, "{jobs:?}");
            assert_eq!(jobs[0]["status"], "rolled_back");
            assert_eq!(jobs[0]["error_code"], "E_TENANT_SCHEMA_MISMATCH");
        }
    }
    assert_untouched(&fleet, "misfit").await;

    // Their seed, with the example's check (it names `role`): refused the same way.
    let seed = own.join("seed");
    let seed = seed.to_str().unwrap();
    let refused = fleet
        .provision(
            "misfit",
            &[
                ("TENANTRY_ADMIN_SEED", seed),
                (
                    "TENANTRY_ADMIN_CHECK",
                    &fleet
                        .data_path("tenant-schema/admin-check")
                        .display()
                        .to_string(),
                ),
            ],
        )
        .await;
    assert_eq!(
        refused.error_code().as_deref(),
        Some("E_TENANT_SCHEMA_MISMATCH"),
        "{refused:?}"
    );
    assert!(refused.stderr.contains("admin check"), "{refused:?}");
    assert_untouched(&fleet, "misfit").await;

    // A seed that fits but that the database refuses to run (it leaves `pwd_hash` NULL): E_ADMIN_SEED_FAILED
    // with the database's words, and the job rolls back.
    let refusing_seed = own.join("refusing-seed.sql");
    write_file(
        &refusing_seed,
        "INSERT INTO users (email, pwd_hash, invite_token_hash) VALUES ($1, NULLIF($2, $2), $3)",
    );
    let refused = fleet
        .provision(
            "misfit",
            &[("TENANTRY_ADMIN_SEED", refusing_seed.to_str().unwrap())],
        )
        .await;
    assert_eq!(
        refused.error_code().as_deref(),
        Some("E_ADMIN_SEED_FAILED"),
        "{refused:?}"
    );
    assert!(refused.stderr.contains("pwd_hash"), "{refused:?}");
    assert_untouched(&fleet, "misfit").await;

    // Their seed and their check: the whole life of a tenant.
    fleet.set_env("TENANTRY_ADMIN_SEED", seed);
    fleet.set_env("TENANTRY_ADMIN_CHECK", own.join("check").to_str().unwrap());
    let mut args = Fleet::provision_args("own-co");
    args.push("--json".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fleet.run(&args).await;
    run.assert_ok();
    assert_eq!(run.json()["job"]["status"], "complete", "{run:?}");
    let tables = schema_tables(&fleet, "own-co").await;
    let expected: Vec<&str> = match engine {
        Engine::Postgres => vec!["_sqlx_migrations", "projects", "users"],
        // SQLite has no schemas: tenantry's tables (its installation's mark, its settings) sit beside the
        // operator's, under their own prefix.
        Engine::Sqlite => vec![
            "_sqlx_migrations",
            "projects",
            "tenantry_installation",
            "tenantry_settings",
            "users",
        ],
    };
    assert_eq!(tables, expected, "tenantry adds only its own tables");
    let settings = tenantry_settings(&fleet, "own-co").await;
    assert_eq!(setting(&settings, "plan"), Some("starter"), "{settings:?}");
    assert_eq!(setting(&settings, "label.tenant_id"), Some("own-co"));

    validate(&fleet, "own-co").await;

    fleet
        .run(&["tenants", "set-plan", "own-co", "professional"])
        .await
        .assert_ok();
    let settings = tenantry_settings(&fleet, "own-co").await;
    assert_eq!(setting(&settings, "plan"), Some("professional"));
    assert_eq!(setting(&settings, "label.plan"), Some("professional"));
    validate(&fleet, "own-co").await;

    fleet
        .run(&["offboard-tenant", "--slug", "own-co", "--purge"])
        .await
        .assert_ok();
    assert_eq!(fleet.server_has("own-co").await, (false, false));
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

/// A tenant made by an older tenantry kept its settings in the example schema's `tenant_settings` table and has
/// no table of tenantry's own: `validate` passes and `set-plan` writes tenantry's table, made on demand.
async fn a_tenant_with_its_settings_in_the_old_table_keeps_working(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    fleet.provision("elder", &[]).await.assert_ok();
    let settings = tenantry_settings(&fleet, "elder").await;
    {
        // Back to how an older version left it: the settings in `tenant_settings`, tenantry's table gone.
        let mut connection = tenant_database(&fleet, "elder").await;
        for (key, value) in &settings {
            sqlx::query("INSERT INTO tenant_settings (key, value) VALUES ($1, $2)")
                .bind(key)
                .bind(value)
                .execute(&mut connection)
                .await
                .unwrap();
        }
        let drop = match engine {
            Engine::Postgres => "DROP SCHEMA tenantry CASCADE",
            Engine::Sqlite => "DROP TABLE tenantry_settings",
        };
        connection.execute(drop).await.unwrap();
    }

    validate(&fleet, "elder").await;
    fleet
        .run(&["tenants", "set-plan", "elder", "enterprise"])
        .await
        .assert_ok();
    let settings = tenantry_settings(&fleet, "elder").await;
    assert_eq!(setting(&settings, "plan"), Some("enterprise"));
    validate(&fleet, "elder").await;
    fleet.cleanup().await;
}
