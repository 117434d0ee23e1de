//! The provisioning wizard's later fields end to end through the API and the CLI, on both registries, against the
//! password-checking tenant cluster: every bad field refused with its name and nothing stored; a large tier's
//! doubled connection limit on the tenant's role; the security policy in its settings rows; data source URLs in
//! the secret store and nowhere else (job records, audit, logs, the registry's every table); purge removing them;
//! `--from-file`; the reachability check; a shared-tier tenant provisioned with `isolation: "schema"`.

use crate::for_each_engine;
use crate::harness::{tenant_cluster_url, with_database, write_file, Engine, Fleet, Server};
use crate::schema_isolation::schema_fleet;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

for_each_engine!(
    bad_wizard_fields_are_named_and_store_nothing,
    the_profile_reaches_the_tenant_and_its_urls_stay_secret,
    from_file_provisions_with_data_sources,
);

/// A password that must appear nowhere but in the secret store.
const PASSWORD: &str = "Wizard-Secret-Pw-4711";

/// A data source URL on the tenant cluster's host and port (reachable), with [`PASSWORD`].
fn reachable_url(database: &str) -> String {
    let cluster = url::Url::parse(&tenant_cluster_url()).unwrap();
    format!(
        "postgres://reader:{PASSWORD}@{}:{}/{database}",
        cluster.host_str().unwrap(),
        cluster.port().unwrap_or(5432)
    )
}

fn body(slug: &str, extra: Value) -> Value {
    let mut body = json!({
        "slug": slug,
        "display_name": format!("Tenant {slug}"),
        "admin_email": format!("admin@{slug}.example"),
        "plan": "starter",
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

/// Follows a job until it ends; its final view.
async fn finished_job(server: &Server, token: &str, job_id: &str) -> Value {
    crate::harness::eventually(
        120,
        || "the job ends".to_owned(),
        || async {
            let job: Value = server
                .get(&format!("/platform/jobs/{job_id}"), token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            matches!(
                job["status"].as_str(),
                Some("complete" | "failed" | "rolled_back")
            )
            .then_some(job)
        },
    )
    .await
}

async fn rolconnlimit(slug: &str) -> i32 {
    let mut admin = PgConnection::connect(&tenant_cluster_url()).await.unwrap();
    sqlx::query_scalar("SELECT rolconnlimit FROM pg_roles WHERE rolname = $1")
        .bind(format!("tenant_{}", slug.replace('-', "_")))
        .fetch_one(&mut admin)
        .await
        .unwrap()
}

async fn setting(slug: &str, key: &str) -> Option<String> {
    let url = with_database(
        &tenant_cluster_url(),
        &format!("tenant_{}", slug.replace('-', "_")),
    );
    let mut tenant = PgConnection::connect(&url).await.unwrap();
    sqlx::query_scalar("SELECT value FROM tenantry.settings WHERE key = $1")
        .bind(key)
        .fetch_optional(&mut tenant)
        .await
        .unwrap()
}

/// Every row of every table of the registry as text (PostgreSQL), or the registry file's bytes with its WAL
/// (SQLite): where a leaked URL would be.
async fn registry_text(fleet: &Fleet) -> String {
    match &fleet.registry_database {
        Some(database) => {
            let url = with_database(&crate::harness::registry_admin_url(), database);
            let mut connection = PgConnection::connect(&url).await.unwrap();
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
            )
            .fetch_all(&mut connection)
            .await
            .unwrap();
            let mut text = String::new();
            for table in tables {
                let rows: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT t::text FROM \"{table}\" t"))
                        .fetch_all(&mut connection)
                        .await
                        .unwrap();
                text.push_str(&rows.join("\n"));
            }
            text
        }
        None => {
            let mut text = String::new();
            for file in ["registry.db", "registry.db-wal"] {
                if let Ok(bytes) = std::fs::read(fleet.data_path(file)) {
                    text.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
            text
        }
    }
}

async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn bad_wizard_fields_are_named_and_store_nothing(engine: Engine) {
    let fleet = schema_fleet(engine).await;
    let token = fleet.token_for("ops@example.com", "PLATFORM_ADMIN").await;
    let server = fleet.serve(&[("TENANTRY_PROVISION_RATE_LIMIT", "0")]).await;
    let good_source = json!({ "name": "warehouse", "kind": "postgres", "url": reachable_url("w") });
    let cases = [
        (
            json!({ "security": { "allowed_cidrs": ["10.0.0.0/8", "10.0.0.0/33"] } }),
            "security.allowed_cidrs",
        ),
        (json!({ "modules": ["core", "crm"] }), "modules"),
        // The starter plan has ml off: a tenant cannot switch it on.
        (json!({ "modules": ["core", "ml"] }), "modules"),
        (
            json!({ "data_sources": [good_source, { "name": "events", "kind": "kafka", "url": format!("not a url {PASSWORD}") }] }),
            "data_sources[1].url",
        ),
        (json!({ "description": "x".repeat(501) }), "description"),
        (json!({ "resource_tier": "huge" }), "resource_tier"),
        (json!({ "isolation": "schema" }), "isolation"),
        (
            json!({ "security": { "mfa_policy": "sometimes" } }),
            "security.mfa_policy",
        ),
    ];
    for (extra, field) in cases {
        let response = server
            .post("/platform/tenants", &token)
            .json(&body("refused", extra.clone()))
            .send()
            .await
            .unwrap();
        let (status, problem) = problem(response).await;
        assert_eq!(status, 422, "{extra}: {problem}");
        assert_eq!(problem["error_code"], "E_INVALID_INPUT", "{problem}");
        assert_eq!(problem["field"], field, "{problem}");
        assert!(!problem.to_string().contains(PASSWORD), "{problem}");
    }
    assert!(fleet.tenants().await.is_empty());
    assert!(fleet.jobs().await.is_empty());
    assert_eq!(fleet.secret("tenant-ds-refused-warehouse").await, None);
    assert!(!registry_text(&fleet).await.contains(PASSWORD));
    assert!(!server.log().contains(PASSWORD));

    // The reachability check: the tenant cluster answers, a closed loopback port does not; a bad URL is 422.
    let check = |url: String| {
        server
            .post("/platform/data-sources/check", &token)
            .json(&json!({ "kind": "postgres", "url": url }))
            .send()
    };
    let (status, reachable) = problem(check(reachable_url("w")).await.unwrap()).await;
    assert_eq!(status, 200, "{reachable}");
    assert_eq!(reachable["reachable"], true, "{reachable}");
    assert!(!reachable.to_string().contains(PASSWORD), "{reachable}");
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (status, unreachable) = problem(
        check(format!("postgres://u:{PASSWORD}@127.0.0.1:{closed_port}/x"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{unreachable}");
    assert_eq!(unreachable["reachable"], false, "{unreachable}");
    assert_eq!(
        unreachable["endpoint"],
        format!("postgres://127.0.0.1:{closed_port}")
    );
    let (status, bad) = problem(check("mysql://h/x".into()).await.unwrap()).await;
    assert_eq!((status, bad["field"].as_str()), (422, Some("url")), "{bad}");
    server.terminate().await;
    fleet.cleanup().await;
}

async fn the_profile_reaches_the_tenant_and_its_urls_stay_secret(engine: Engine) {
    let fleet = schema_fleet(engine).await;
    let token = fleet.token_for("ops@example.com", "PLATFORM_ADMIN").await;
    let server = fleet.serve(&[]).await;
    let url = reachable_url("warehouse");
    let request = body(
        "wiz-large",
        json!({
            "description": "Clinic network\nwith two sites",
            "contact_name": "Dana Example",
            "resource_tier": "large",
            "isolation": "database",
            "data_sources": [{ "name": "warehouse", "kind": "postgres", "url": url }],
            "modules": ["core", "context_graph"],
            "security": { "auth_method": "oidc", "mfa_policy": "required", "allowed_cidrs": ["10.1.2.3/8", "192.168.0.7"] },
        }),
    );
    let response = server
        .post("/platform/tenants", &token)
        .header("Idempotency-Key", "wizard-1")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    let job_id = accepted["job_id"].as_str().unwrap().to_owned();
    // The same request again (another URL to the same endpoint: the URLs are not in the hashed parameters) is
    // answered with the first job, and the first URL stays.
    let mut repeated = request.clone();
    repeated["data_sources"][0]["url"] = reachable_url("elsewhere").into();
    let again = server
        .post("/platform/tenants", &token)
        .header("Idempotency-Key", "wizard-1")
        .json(&repeated)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.json::<Value>().await.unwrap()["job_id"], job_id);
    let job = finished_job(&server, &token, &job_id).await;
    assert_eq!(job["status"], "complete", "{job}");

    // Twice the starter plan's 10 connections, and the policy in the rows the application reads.
    assert_eq!(rolconnlimit("wiz-large").await, 20);
    assert_eq!(
        setting("wiz-large", "connection_limit").await.as_deref(),
        Some("20")
    );
    assert_eq!(
        setting("wiz-large", "resource_tier").await.as_deref(),
        Some("large")
    );
    assert_eq!(
        setting("wiz-large", "security.auth_method")
            .await
            .as_deref(),
        Some("oidc")
    );
    assert_eq!(
        setting("wiz-large", "security.mfa_policy").await.as_deref(),
        Some("required")
    );
    assert_eq!(
        setting("wiz-large", "security.allowed_cidrs")
            .await
            .as_deref(),
        Some(r#"["10.0.0.0/8","192.168.0.7/32"]"#)
    );
    assert_eq!(
        setting("wiz-large", "module.bi").await.as_deref(),
        Some("false")
    );
    assert_eq!(
        setting("wiz-large", "module.core").await.as_deref(),
        Some("true")
    );

    // The tenant shows its profile, a data source by endpoint and secret name.
    let shown = server
        .get("/platform/tenants/wiz-large", &token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!shown.contains(PASSWORD), "{shown}");
    let shown: Value = serde_json::from_str(&shown).unwrap();
    let profile = &shown["profile"];
    assert_eq!(profile["description"], "Clinic network\nwith two sites");
    assert_eq!(profile["contact_name"], "Dana Example");
    assert_eq!(profile["resource_tier"], "large");
    assert_eq!(
        profile["data_sources"][0]["secret"],
        "tenant-ds-wiz-large-warehouse"
    );
    assert_eq!(
        profile["data_sources"][0]["endpoint"]["port"],
        url::Url::parse(&url).unwrap().port().unwrap_or(5432)
    );
    assert_eq!(profile["security"]["mfa_policy"], "required");
    let text = fleet.run(&["tenants", "show", "wiz-large"]).await;
    assert!(text.stdout.contains("tier        large"), "{text:?}");
    assert!(
        text.stdout.contains("secret tenant-ds-wiz-large-warehouse"),
        "{text:?}"
    );

    // The URL is in the secret store (the first request's), and nowhere else.
    assert_eq!(
        fleet
            .secret("tenant-ds-wiz-large-warehouse")
            .await
            .as_deref(),
        Some(url.as_str())
    );
    assert!(!registry_text(&fleet).await.contains(PASSWORD));
    let events = fleet
        .json(&["audit", "list", "--tenant", "wiz-large"])
        .await;
    assert!(!events.to_string().contains(PASSWORD));
    let logs = fleet.run(&["jobs", "show", &job_id, "--json"]).await;
    assert!(!logs.stdout.contains(PASSWORD), "{logs:?}");
    assert!(!server.log().contains(PASSWORD));
    fleet.assert_doctor_clean().await;

    // A shared-tier tenant, asked for with the free plan's isolation.
    let response = server
        .post("/platform/tenants", &token)
        .json(&json!({
            "slug": "wiz-shared", "display_name": "Shared Co", "admin_email": "a@shared.example",
            "plan": "free", "isolation": "schema", "resource_tier": "small",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let shared_job: Value = response.json().await.unwrap();
    let shared = finished_job(&server, &token, shared_job["job_id"].as_str().unwrap()).await;
    assert_eq!(shared["status"], "complete", "{shared}");
    // Half the free plan's 5 connections, rounded.
    assert_eq!(rolconnlimit("wiz-shared").await, 3);
    server.terminate().await;

    // A purge removes the data source's secret; nothing is left for doctor.
    for slug in ["wiz-large", "wiz-shared"] {
        fleet
            .run(&["offboard-tenant", "--slug", slug, "--purge", "--no-backup"])
            .await
            .assert_ok();
    }
    assert_eq!(fleet.secret("tenant-ds-wiz-large-warehouse").await, None);
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

async fn from_file_provisions_with_data_sources(engine: Engine) {
    let fleet = schema_fleet(engine).await;
    let url = reachable_url("lake");
    let path = fleet.scratch_dir.join("request.json");
    write_file(
        &path,
        &json!({
            "slug": "wiz-file", "display_name": "File Co", "admin_email": "a@file.example",
            "plan": "starter", "resource_tier": "small", "description": "from the file",
            "data_sources": [{ "name": "lake", "kind": "postgres", "url": url }],
        })
        .to_string(),
    );
    // A flag beside the file overrides the file's field.
    let run = fleet
        .run(&[
            "provision-tenant",
            "--from-file",
            path.to_str().unwrap(),
            "--description",
            "from the flag",
            "--allow-cidr",
            "127.0.0.0/8",
        ])
        .await;
    run.assert_ok();
    assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD));
    assert_eq!(rolconnlimit("wiz-file").await, 5);
    let shown = fleet.json(&["tenants", "show", "wiz-file"]).await;
    assert_eq!(shown["tenant"]["profile"]["description"], "from the flag");
    assert_eq!(
        shown["tenant"]["profile"]["security"]["allowed_cidrs"],
        json!(["127.0.0.0/8"])
    );
    assert_eq!(
        fleet.secret("tenant-ds-wiz-file-lake").await.as_deref(),
        Some(url.as_str())
    );
    // The same through stdin, refused for a bad field: named, and nothing stored.
    let bad = json!({
        "slug": "wiz-stdin", "display_name": "Stdin Co", "admin_email": "a@stdin.example",
        "data_sources": [{ "name": "lake", "kind": "redis", "url": url }],
    });
    let refused = fleet
        .run_with_stdin(&["provision-tenant", "--from-file", "-"], &bad.to_string())
        .await;
    assert_eq!(
        refused.error_code().as_deref(),
        Some("E_INVALID_INPUT"),
        "{refused:?}"
    );
    assert!(
        refused.stderr.contains("data_sources[0].url"),
        "{refused:?}"
    );
    assert!(!refused.stderr.contains(PASSWORD), "{refused:?}");
    assert_eq!(fleet.secret("tenant-ds-wiz-stdin-lake").await, None);
    assert!(!registry_text(&fleet).await.contains(PASSWORD));
    fleet
        .run(&[
            "offboard-tenant",
            "--slug",
            "wiz-file",
            "--purge",
            "--no-backup",
        ])
        .await
        .assert_ok();
    assert_eq!(fleet.secret("tenant-ds-wiz-file-lake").await, None);
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}
