//! MariaDB-plan tenants on the machine's MariaDB (127.0.0.1:3306, shared with other installations, so every slug
//! is unique and every test purges what it made): end to end, isolation between tenants and from the server's own
//! `mysql` schema, a grant widened by hand, and bad server input. The crash sweep is saga.rs's
//! `provision_mariadb_plan`.

use crate::harness::{Engine, Fleet};
use crate::resources::{resource_name, unique};
use serde_json::{json, Value};
use sqlx::mysql::MySqlConnection;
use sqlx::{Connection, Executor};

/// Plans whose databases live on MariaDB; the first is the default plan.
const MARIADB_PLANS: &str = r#"
[[plans]]
name = "starter"
engine = "mariadb"
connection_limit = 4
statement_timeout_ms = 15000

[[plans]]
name = "professional"
engine = "mariadb"
connection_limit = 8
statement_timeout_ms = 30000
"#;

pub(crate) fn mariadb_url() -> String {
    std::env::var("TENANTRY_TEST_MARIADB_URL")
        .expect("TENANTRY_TEST_MARIADB_URL is set by scripts/test-services")
}

async fn admin() -> MySqlConnection {
    MySqlConnection::connect(&mariadb_url())
        .await
        .expect("the machine's MariaDB")
}

/// A fleet on a SQLite registry whose only tenant server is the machine's MariaDB, `maria`, and whose plans
/// place databases there.
pub(crate) async fn mariadb_fleet() -> Fleet {
    let mut fleet = Fleet::new(Engine::Sqlite).await;
    fleet.set_env("TENANTRY_BOOTSTRAP_LOCAL_SERVER", "false");
    std::fs::write(fleet.scratch_dir.join("tenantry.toml"), MARIADB_PLANS).expect("plans");
    fleet
        .run_with_stdin(
            &[
                "servers",
                "add",
                "--name",
                "maria",
                "--engine",
                "mariadb",
                "--admin-url-stdin",
                "--capacity",
                "1000",
            ],
            &mariadb_url(),
        )
        .await
        .assert_ok();
    fleet
}

/// Whether the tenant's database and user exist on the machine's MariaDB.
pub(crate) async fn server_has(slug: &str) -> (bool, bool) {
    let name = resource_name(slug);
    let mut admin = admin().await;
    let database: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    let user: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM mysql.global_priv WHERE User = ? AND Host = '%'")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    admin.close().await.unwrap();
    (database > 0, user > 0)
}

/// The tenant's database as the saga harness compares it: there, its user, the tenant's own login, its settings
/// and its user's connection limit.
pub(crate) async fn database_facts(slug: &str, url: Option<String>) -> Value {
    let (exists, user) = server_has(slug).await;
    if !exists {
        return json!({ "exists": false, "role": user });
    }
    let name = resource_name(slug);
    let login = match &url {
        Some(url) => MySqlConnection::connect(url).await.is_ok(),
        None => false,
    };
    let mut admin = admin().await;
    let settings: Vec<(String, String)> = sqlx::query_as(&format!(
        "SELECT CAST(`key` AS CHAR), CAST(value AS CHAR) FROM `{name}`.tenantry_settings ORDER BY 1"
    ))
    .fetch_all(&mut admin)
    .await
    .unwrap_or_default();
    let limit: Option<String> = sqlx::query_scalar(
        "SELECT CAST(JSON_VALUE(Priv, '$.max_user_connections') AS CHAR) FROM mysql.global_priv
         WHERE User = ? AND Host = '%'",
    )
    .bind(&name)
    .fetch_optional(&mut admin)
    .await
    .unwrap()
    .flatten();
    admin.close().await.unwrap();
    json!({
        "exists": true,
        "role": user,
        "login": login,
        "settings": settings,
        "connection_limit": limit,
    })
}

/// Purges every slug (no backup: tenantry cannot dump MariaDB yet), then the fleet.
async fn purge_all(fleet: Fleet, slugs: &[&str]) {
    for slug in slugs {
        let purged = fleet
            .run(&["offboard-tenant", "--slug", slug, "--purge", "--no-backup"])
            .await;
        assert!(
            purged.status == 0 || purged.error_code().as_deref() == Some("E_NOT_FOUND"),
            "{slug}: {purged:?}"
        );
        assert_eq!(server_has(slug).await, (false, false), "{slug}");
    }
    fleet.cleanup().await;
}

async fn login(url: &str, database: &str) -> Result<MySqlConnection, String> {
    let (base, _) = url.rsplit_once('/').unwrap();
    MySqlConnection::connect(&format!("{base}/{database}"))
        .await
        .map_err(|error| error.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_tenant_is_provisioned_validated_offboarded_and_purged() {
    let fleet = mariadb_fleet().await;
    let slug = unique("mdb-e2e");
    let name = resource_name(&slug);
    // A neighbour on the same server, so that isolation_other_tenants has a tenant to be isolated from whatever
    // else the machine's MariaDB holds (with none, the check is skipped, not passed).
    let neighbour = unique("mdb-nb");
    fleet.provision(&neighbour, &[]).await.assert_ok();
    fleet.provision(&slug, &[]).await.assert_ok();
    let shown = fleet.json(&["tenants", "show", &slug]).await;
    assert_eq!(shown["tenant"]["status"], "active", "{shown}");
    assert_eq!(shown["schema"]["state"], "latest", "{shown}");
    assert_eq!(server_has(&slug).await, (true, true));

    // The secret is the tenant's own mysql:// URL; the schema, the admin and the settings are in its database.
    let url = fleet.secret(&format!("tenant-db-{slug}")).await.unwrap();
    assert!(
        url.starts_with(&format!("mysql://{name}:")),
        "the URL's scheme and user"
    );
    let mut tenant = login(&url, &name).await.unwrap();
    let admins: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND must_reset_password",
    )
    .fetch_one(&mut tenant)
    .await
    .unwrap();
    assert_eq!(admins, 1);
    let version: i64 =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut tenant)
            .await
            .unwrap();
    assert_eq!(version, 2);
    tenant.close().await.unwrap();

    // The database carries the installation's mark and the cost labels; the user the plan's limits.
    let mut admin = admin().await;
    let comment: String = sqlx::query_scalar(
        "SELECT CAST(SCHEMA_COMMENT AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    let comment: Value = serde_json::from_str(&comment).unwrap();
    assert_eq!(comment["tenantry"], "tenant");
    assert_eq!(comment["labels"]["plan"], "starter", "{comment}");
    let limits: (String, String) = sqlx::query_as(
        "SELECT CAST(JSON_VALUE(Priv, '$.max_user_connections') AS CHAR),
                CAST(JSON_VALUE(Priv, '$.max_statement_time') AS CHAR)
         FROM mysql.global_priv WHERE User = ? AND Host = '%'",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(limits.0, "4");
    assert_eq!(limits.1.parse::<f64>().unwrap(), 15.0);
    admin.close().await.unwrap();

    let checks = fleet.validation(&slug).await;
    for required in [
        "tenant_login",
        "role_privileges",
        "isolation_other_tenants",
        "migrations_latest",
        "admin_seeded",
        "cost_labels",
    ] {
        assert!(
            checks
                .iter()
                .any(|(name, passed)| name == required && *passed),
            "{required}: {checks:?}"
        );
    }
    fleet.assert_doctor_clean().await;

    // A plan change reaches the user's limits.
    fleet
        .run(&["tenants", "set-plan", &slug, "professional"])
        .await
        .assert_ok();
    assert_eq!(
        database_facts(&slug, Some(url.clone())).await["connection_limit"],
        "8"
    );

    // A purge takes a backup first, which tenantry cannot make of MariaDB: refused before anything changes.
    let refused = fleet
        .run(&["offboard-tenant", "--slug", &slug, "--purge"])
        .await;
    assert_eq!(
        refused.error_code().as_deref(),
        Some("E_BACKUP_UNSUPPORTED"),
        "{refused:?}"
    );
    assert!(login(&url, &name).await.is_ok());
    // A clone copies a backup of the source: refused the same way, and nothing of the new slug exists.
    let clone_slug = format!("{slug}-c");
    let refused = fleet
        .run(&["tenants", "clone", &slug, "--to", &clone_slug])
        .await;
    assert_eq!(
        refused.error_code().as_deref(),
        Some("E_BACKUP_UNSUPPORTED"),
        "{refused:?}"
    );
    assert!(fleet
        .json(&["jobs", "list", "--tenant", &clone_slug])
        .await
        .as_array()
        .is_some_and(Vec::is_empty));

    // Offboarding keeps the data and locks the login; the purge drops both.
    fleet
        .run(&["offboard-tenant", "--slug", &slug])
        .await
        .assert_ok();
    assert_eq!(server_has(&slug).await, (true, true));
    assert!(
        login(&url, &name).await.is_err(),
        "an offboarded tenant's login works"
    );
    fleet.assert_doctor_clean().await;
    fleet
        .run(&["offboard-tenant", "--slug", &slug, "--purge", "--no-backup"])
        .await
        .assert_ok();
    assert_eq!(server_has(&slug).await, (false, false));
    assert_eq!(fleet.secret(&format!("tenant-db-{slug}")).await, None);
    fleet.assert_doctor_clean().await;
    purge_all(fleet, &[&neighbour]).await;
}

/// Two tenants whose names differ where an unescaped grant pattern would not tell them apart (`_` is a wildcard
/// in MariaDB grants: `tenant_mX_x` would admit `tenant_mXyx`): neither logs in to the other's database, nor to
/// the server's `mysql` schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_tenants_are_isolated_from_each_other_and_from_the_mysql_schema() {
    let fleet = mariadb_fleet().await;
    let stem = unique("mi").replace('-', "");
    let (a, b) = (format!("{stem}-x"), format!("{stem}yx"));
    fleet.provision(&a, &[]).await.assert_ok();
    fleet.provision(&b, &[]).await.assert_ok();
    let url_a = fleet.secret(&format!("tenant-db-{a}")).await.unwrap();
    let url_b = fleet.secret(&format!("tenant-db-{b}")).await.unwrap();
    for (url, other) in [(&url_a, resource_name(&b)), (&url_b, resource_name(&a))] {
        let Err(refused) = login(url, &other).await else {
            panic!("{other} admits its neighbour's login");
        };
        assert!(refused.contains("Access denied"), "{refused}");
        let Err(refused) = login(url, "mysql").await else {
            panic!("the mysql schema admits a tenant's login");
        };
        assert!(refused.contains("Access denied"), "{refused}");
        // Nor through its own database.
        let mut own = login(url, url.rsplit('/').next().unwrap()).await.unwrap();
        assert!(own
            .execute(format!("SELECT COUNT(*) FROM `{other}`.users").as_str())
            .await
            .is_err());
        assert!(own
            .execute("SELECT COUNT(*) FROM mysql.user")
            .await
            .is_err());
        own.close().await.unwrap();
    }
    fleet.run(&["validate", "--slug", &a]).await.assert_ok();
    purge_all(fleet, &[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_widened_by_hand_is_named_by_doctor_and_repaired_by_reconcile() {
    let fleet = mariadb_fleet().await;
    let slug = unique("mdb-drift");
    let name = resource_name(&slug);
    fleet.provision(&slug, &[]).await.assert_ok();
    let url = fleet.secret(&format!("tenant-db-{slug}")).await.unwrap();
    let mut admin = admin().await;
    admin
        .execute(format!("GRANT SELECT ON mysql.* TO '{name}'@'%'").as_str())
        .await
        .unwrap();
    assert!(login(&url, "mysql").await.is_ok(), "the widening works");

    let doctor = fleet.run(&["doctor", "--json"]).await;
    assert_ne!(doctor.status, 0, "doctor names the widened grant");
    let report = doctor.json();
    let drift: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|finding| finding["kind"] == "drift")
        .collect();
    assert_eq!(drift.len(), 1, "{}", doctor.stdout);
    assert_eq!(drift[0]["subject"], format!("tenant {slug}"));
    assert!(
        drift[0]["detail"]
            .as_str()
            .unwrap()
            .contains("SELECT ON `mysql`.*"),
        "{}",
        drift[0]
    );
    assert!(
        !fleet
            .run(&["validate", "--slug", &slug])
            .await
            .stdout
            .is_empty(),
        "validate reports"
    );
    fleet.run(&["reconcile", "--slug", &slug]).await.assert_ok();
    fleet.assert_doctor_clean().await;
    assert!(login(&url, "mysql").await.is_err(), "the widening is gone");
    assert!(
        login(&url, &name).await.is_ok(),
        "the tenant's own grant stays"
    );
    admin.close().await.unwrap();
    purge_all(fleet, &[&slug]).await;
}

/// A MariaDB server whose admin URL does not reach MariaDB is refused with a clear code, and nothing is added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_server_that_is_not_one_is_refused() {
    let fleet = Fleet::new(Engine::Sqlite).await;
    let postgres = std::env::var("TENANTRY_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let port = url::Url::parse(&postgres).unwrap().port().unwrap_or(5432);
    for (case, admin_url, code) in [
        (
            "not a mysql URL",
            "http://root@127.0.0.1:3306".to_owned(),
            "E_INVALID_INPUT",
        ),
        (
            "a wrong password",
            "mysql://root:wrong@127.0.0.1:3306".to_owned(),
            "E_ADMIN_CONN_UNRESOLVED",
        ),
        (
            "PostgreSQL, not MariaDB",
            format!("mysql://root@127.0.0.1:{port}"),
            "E_ADMIN_CONN_UNRESOLVED",
        ),
        (
            "nothing listening",
            "mysql://root@127.0.0.1:9".to_owned(),
            "E_ADMIN_CONN_UNRESOLVED",
        ),
    ] {
        let added = fleet
            .run_with_stdin(
                &[
                    "servers",
                    "add",
                    "--name",
                    "maria",
                    "--engine",
                    "mariadb",
                    "--admin-url-stdin",
                    "--capacity",
                    "10",
                ],
                &admin_url,
            )
            .await;
        assert_ne!(added.status, 0, "{case}: {added:?}");
        assert_eq!(
            added.error_code().as_deref(),
            Some(code),
            "{case}: {added:?}"
        );
        assert!(
            !added.stderr.contains("wrong"),
            "{case}: the password is not echoed"
        );
    }
    let servers = fleet.json(&["servers", "list"]).await;
    assert!(
        servers
            .as_array()
            .unwrap()
            .iter()
            .all(|server| server["name"] != "maria"),
        "{servers}"
    );
    fleet.cleanup().await;
}
