//! Provisioning end to end: the happy path, dry run, bad input, credentials and secrets kept out of output.

use crate::for_each_engine;
use crate::harness::{Engine, Fleet, PROVISION_PHASES as PHASES};
use sqlx::Connection;

for_each_engine!(
    provisions_a_tenant_end_to_end,
    dry_run_creates_nothing,
    offboard_keeps_data_and_disables_login
);

async fn provisions_a_tenant_end_to_end(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let run = fleet.provision("acme-health", &[]).await;
    run.assert_ok();
    assert!(run.stdout.contains("complete"), "{run:?}");
    // No SMTP server here: the link is shown by the command that ran the job, and no one-time password exists
    // (the link sets the first password).
    assert!(
        run.stdout.contains("invitation_url: "),
        "the first-sign-in link is shown: {run:?}"
    );
    assert!(!run.stdout.contains("one_time_password"), "{run:?}");

    let tenants = fleet.tenants().await;
    assert_eq!(tenants.len(), 1);
    assert_eq!(tenants[0]["slug"], "acme-health");
    assert_eq!(tenants[0]["status"], "active");
    assert_eq!(tenants[0]["resource_name"], "tenant_acme_health");

    let jobs = fleet.jobs().await;
    assert_eq!(jobs.len(), 1);
    let job = fleet
        .json(&["jobs", "show", jobs[0]["job_id"].as_str().unwrap()])
        .await;
    assert_eq!(job["status"], "complete");
    assert_eq!(job["progress_percentage"], 100);
    let names: Vec<&str> = job["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|phase| phase["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, PHASES);
    assert!(job["phases"]
        .as_array()
        .unwrap()
        .iter()
        .all(|phase| phase["status"] == "applied"));
    assert!(!job["logs"].as_array().unwrap().is_empty());

    let (database, role) = fleet.server_has("acme-health").await;
    assert!(database);
    assert_eq!(role, engine == Engine::Postgres);
    let url = fleet
        .secret("tenant-db-acme-health")
        .await
        .expect("the tenant secret exists");
    match engine {
        Engine::Postgres => assert!(url.starts_with("postgres://tenant_acme_health:")),
        Engine::Sqlite => {
            assert!(url.starts_with("sqlite:///"));
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(fleet.sqlite_file("acme-health"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "tenant files are private");
        }
    }
    let audit = fleet.audit_types("acme-health").await;
    assert!(
        audit.contains(&"TENANT_PROVISIONED".to_owned()),
        "{audit:?}"
    );
    let provisioned = fleet
        .json(&["audit", "list", "--event-type", "TENANT_PROVISIONED"])
        .await;
    assert_eq!(provisioned[0]["actor"], "os:tester");

    // The admin is seeded with a hash and a forced reset, and the schema is migrated, as the tenant sees it.
    let (email, hash, must_reset) = read_admin(engine, &url).await;
    assert_eq!(email, "admin@acme-health.example");
    assert!(hash.starts_with("$argon2id$"));
    assert!(must_reset);

    // The data directory holds the registry and the master key: only its owner may enter it.
    if engine == Engine::Sqlite {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&fleet.data_dir)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "data directory mode {mode:o}");
    }

    // Provisioning the same slug again is refused and changes nothing.
    let again = fleet.provision("acme-health", &[]).await;
    assert_eq!(
        again.error_code().as_deref(),
        Some("E_ALREADY_PROVISIONED"),
        "{again:?}"
    );
    assert_eq!(fleet.tenants().await[0]["status"], "active");
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

/// The first admin's row, read with the tenant's own credentials.
async fn read_admin(engine: Engine, url: &str) -> (String, String, bool) {
    match engine {
        Engine::Postgres => {
            let mut connection = sqlx::PgConnection::connect(url)
                .await
                .expect("tenant credentials work");
            sqlx::query_as("SELECT email, password_hash, must_reset_password FROM users")
                .fetch_one(&mut connection)
                .await
                .expect("admin row")
        }
        Engine::Sqlite => {
            let mut connection = sqlx::SqliteConnection::connect(url)
                .await
                .expect("tenant file opens");
            let (email, hash, must_reset): (String, String, i64) =
                sqlx::query_as("SELECT email, password_hash, must_reset_password FROM users")
                    .fetch_one(&mut connection)
                    .await
                    .expect("admin row");
            (email, hash, must_reset == 1)
        }
    }
}

async fn dry_run_creates_nothing(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let mut args = Fleet::provision_args("dry-one");
    args.extend(["--dry-run".to_owned(), "--json".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fleet.run(&args).await;
    run.assert_ok();
    let job = &run.json()["job"];
    assert_eq!(job["status"], "complete");
    let names: Vec<&str> = job["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|phase| phase["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "request_validated",
            "placement_resolved",
            "state_checked",
            "dry_run"
        ]
    );
    assert!(job["logs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|log| log["message"].as_str().unwrap().contains("would create")));
    assert!(fleet.tenants().await.is_empty());
    assert_eq!(fleet.server_has("dry-one").await, (false, false));
    assert_eq!(fleet.secret("tenant-db-dry-one").await, None);
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

async fn offboard_keeps_data_and_disables_login(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    fleet.provision("leaving", &[]).await.assert_ok();
    let url = fleet.secret("tenant-db-leaving").await.unwrap();
    fleet
        .run(&["offboard-tenant", "--slug", "leaving"])
        .await
        .assert_ok();
    assert_eq!(fleet.tenants().await[0]["status"], "offboarded");
    let (database, _) = fleet.server_has("leaving").await;
    assert!(database, "offboarding without purge keeps the data");
    match engine {
        Engine::Postgres => {
            let refused = sqlx::PgConnection::connect(&url).await;
            assert!(refused.is_err(), "login is disabled");
        }
        Engine::Sqlite => {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(fleet.sqlite_file("leaving"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o400, "the file is read-only");
        }
    }
    let audit = fleet.audit_types("leaving").await;
    assert!(audit.contains(&"TENANT_OFFBOARDED".to_owned()), "{audit:?}");
    fleet.assert_doctor_clean().await;

    // Offboarding again without purge is refused; with purge everything goes.
    let again = fleet.run(&["offboard-tenant", "--slug", "leaving"]).await;
    assert_eq!(again.error_code().as_deref(), Some("E_CONFLICT"));
    fleet
        .run(&["offboard-tenant", "--slug", "leaving", "--purge"])
        .await
        .assert_ok();
    assert!(fleet.tenants().await.is_empty());
    assert_eq!(fleet.server_has("leaving").await, (false, false));
    assert_eq!(fleet.secret("tenant-db-leaving").await, None);
    assert!(fleet
        .audit_types("leaving")
        .await
        .contains(&"TENANT_PURGED".to_owned()));
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

#[tokio::test]
async fn bad_input_gets_its_code_and_creates_nothing() {
    let fleet = Fleet::new(Engine::Sqlite).await;
    let long_name = "x".repeat(101);
    let long_slug = format!("a{}", "b".repeat(40));
    let cases: Vec<(&str, &str, &str, &str)> = vec![
        (
            "Acme",
            "Acme Health",
            "admin@acme.example",
            "E_INVALID_SLUG",
        ),
        ("ab", "Acme Health", "admin@acme.example", "E_INVALID_SLUG"),
        (
            &long_slug,
            "Acme Health",
            "admin@acme.example",
            "E_INVALID_SLUG",
        ),
        (
            "1acme",
            "Acme Health",
            "admin@acme.example",
            "E_INVALID_SLUG",
        ),
        (
            "acme_health",
            "Acme Health",
            "admin@acme.example",
            "E_INVALID_SLUG",
        ),
        (
            "a;drop database x",
            "Acme Health",
            "admin@acme.example",
            "E_INVALID_SLUG",
        ),
        (
            "acme'x",
            "Acme Health",
            "admin@acme.example",
            "E_INVALID_SLUG",
        ),
        (
            "acme\"x",
            "Acme Health",
            "admin@acme.example",
            "E_INVALID_SLUG",
        ),
        (
            "acmé",
            "Acme Health",
            "admin@acme.example",
            "E_INVALID_SLUG",
        ),
        ("", "Acme Health", "admin@acme.example", "E_INVALID_SLUG"),
        ("acme", &long_name, "admin@acme.example", "E_INVALID_INPUT"),
        ("acme", "Acme Health", "not-an-email", "E_INVALID_INPUT"),
        ("acme", "Acme Health", "admin@", "E_INVALID_INPUT"),
    ];
    for (slug, display_name, email, expected) in cases {
        let run = fleet
            .run(&[
                "provision-tenant",
                "--slug",
                slug,
                "--display-name",
                display_name,
                "--admin-email",
                email,
            ])
            .await;
        assert_ne!(run.status, 0, "{slug:?} must be refused");
        assert_eq!(
            run.error_code().as_deref(),
            Some(expected),
            "{slug:?} {display_name:?} {email:?}: {run:?}"
        );
        let message = run
            .stderr
            .lines()
            .find(|line| line.starts_with("error: "))
            .unwrap();
        assert!(
            message.len() > "error: E_INVALID_SLUG: ".len() + 10,
            "a message a person understands: {message}"
        );
    }
    // Validation happens before anything is opened: not even the data directory's registry exists.
    assert!(
        !fleet.data_path("registry.db").exists(),
        "bad input created the registry"
    );

    // Input that needs the settings (plan, region) is refused before any job is recorded, and so is a budget
    // above int64 (the API document's promise; the CLI takes budgets by the same rule as the API).
    let over_int64 = (i64::MAX as u64 + 1).to_string();
    for (flag, value) in [
        ("--plan", "platinum"),
        ("--region", "mars"),
        ("--budget", over_int64.as_str()),
    ] {
        let mut args = Fleet::provision_args("acme");
        args.extend([flag.to_owned(), value.to_owned()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = fleet.run(&args).await;
        assert_eq!(
            run.error_code().as_deref(),
            Some("E_INVALID_INPUT"),
            "{run:?}"
        );
    }
    assert!(fleet.jobs().await.is_empty());
    assert!(fleet.tenants().await.is_empty());
    assert_eq!(fleet.n_tenant_databases().await, 0);
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

#[tokio::test]
async fn trace_logging_never_shows_the_generated_password() {
    let fleet = Fleet::new(Engine::Postgres).await;
    let run = fleet.provision("traced", &[("RUST_LOG", "trace")]).await;
    run.assert_ok();
    assert!(
        run.stderr.len() > 1000,
        "trace logging was on: {} bytes",
        run.stderr.len()
    );
    let url = fleet.secret("tenant-db-traced").await.unwrap();
    let password = url
        .strip_prefix("postgres://tenant_traced:")
        .and_then(|rest| rest.split('@').next())
        .unwrap();
    assert!(password.len() >= 43);
    assert!(!run.stdout.contains(password), "password on stdout");
    assert!(!run.stderr.contains(password), "password in the log");
    // Nor the master key, nor the secret in job records.
    let master_key = std::fs::read_to_string(fleet.data_path("master.key")).unwrap();
    assert!(!run.stderr.contains(master_key.trim()));
    let job_id = fleet.jobs().await[0]["job_id"].as_str().unwrap().to_owned();
    let job = fleet.run(&["jobs", "show", &job_id, "--json"]).await;
    assert!(!job.stdout.contains(password));
    let audit = fleet.run(&["audit", "list", "--json"]).await;
    assert!(!audit.stdout.contains(password));
    fleet.cleanup().await;
}

#[tokio::test]
async fn tenant_credentials_connect_and_a_wrong_password_is_refused() {
    let fleet = Fleet::new(Engine::Postgres).await;
    fleet.provision("creds", &[]).await.assert_ok();
    let url = fleet.secret("tenant-db-creds").await.unwrap();
    let mut connection = sqlx::PgConnection::connect(&url)
        .await
        .expect("the secret's URL connects");
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(user, "tenant_creds");
    let (superuser, createdb, createrole, bypassrls): (bool, bool, bool, bool) = sqlx::query_as(
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert!(!superuser && !createdb && !createrole && !bypassrls);
    let password = url
        .strip_prefix("postgres://tenant_creds:")
        .unwrap()
        .split('@')
        .next()
        .unwrap();
    let wrong = url.replace(password, "wrong-password");
    let refused = sqlx::PgConnection::connect(&wrong)
        .await
        .expect_err("a wrong password is refused")
        .to_string();
    assert!(
        refused.contains("password authentication failed"),
        "{refused}"
    );
    // No one else may connect to the tenant's database: PUBLIC lost CONNECT.
    let mut admin = sqlx::PgConnection::connect(&crate::harness::tenant_cluster_url())
        .await
        .unwrap();
    let public_can_connect: bool =
        sqlx::query_scalar("SELECT has_database_privilege('public', 'tenant_creds', 'CONNECT')")
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(!public_can_connect);
    let labels: String = sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'tenant_creds'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    // Every role on the server can read comments: the database carries only the installation's id, the labels
    // live in the registry.
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["tenantry"], "tenant");
    assert!(labels["installation"].is_string());
    assert!(labels.get("plan").is_none() && labels.get("cost_center").is_none());
    drop(connection);
    fleet.cleanup().await;
}
