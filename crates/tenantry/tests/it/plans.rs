//! Plans, budget approvals, the validation suite and cost attribution: seed 004's success criteria, on the
//! password-checking PostgreSQL cluster (so that credential checks mean something) and on SQLite.

use crate::for_each_engine;
use crate::harness::{
    eventually, tenant_cluster_url, with_database, write_file, Engine, Fleet, Server,
};
use serde_json::{json, Value};
use sqlx::postgres::PgConnection;
use sqlx::Connection;

for_each_engine!(
    three_plans_pass_every_check_with_labels_settings_and_costs,
    a_critical_check_failure_rolls_back_and_leaves_nothing,
    a_budget_over_the_threshold_waits_for_another_admin,
    approvals_over_http_refuse_the_requester_and_lapse,
    set_plan_applies_new_limits_and_rolls_back_on_failure,
);

mod validate_names_what_was_tampered_with {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::validate_names_what_was_tampered_with().await;
    }
}

/// The validation suite of one tenant, through `tenantry validate --json`.
async fn validate(fleet: &Fleet, slug: &str) -> (i32, Vec<Value>) {
    let run = fleet.run(&["validate", "--slug", slug, "--json"]).await;
    let report = run.json();
    (
        run.status,
        report["checks"].as_array().cloned().unwrap_or_default(),
    )
}

fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|check| check["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:?}"))
}

/// What the tenant's database holds in tenantry's settings table, and its role's connection limit and labels
/// (PostgreSQL), read as the cluster's admin.
async fn pg_tenant_facts(slug: &str) -> (Vec<(String, String)>, i32, Value, Value) {
    let resource = format!("tenant_{}", slug.replace('-', "_"));
    let mut admin = PgConnection::connect(&tenant_cluster_url()).await.unwrap();
    let (connection_limit, database_labels, role_labels): (i32, String, String) = sqlx::query_as(
        "SELECT r.rolconnlimit, shobj_description(d.oid, 'pg_database'), shobj_description(r.oid, 'pg_authid')
         FROM pg_roles r, pg_database d WHERE r.rolname = $1 AND d.datname = $1",
    )
    .bind(&resource)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    let mut tenant_db = PgConnection::connect(&with_database(&tenant_cluster_url(), &resource))
        .await
        .unwrap();
    let settings = sqlx::query_as("SELECT key, value FROM tenantry.settings ORDER BY key")
        .fetch_all(&mut tenant_db)
        .await
        .unwrap();
    (
        settings,
        connection_limit,
        serde_json::from_str(&database_labels).unwrap(),
        serde_json::from_str(&role_labels).unwrap(),
    )
}

async fn sqlite_tenant_settings(fleet: &Fleet, slug: &str) -> Vec<(String, String)> {
    let url = format!("sqlite://{}", fleet.sqlite_file(slug).display());
    let mut connection = sqlx::sqlite::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query_as("SELECT key, value FROM tenantry_settings ORDER BY key")
        .fetch_all(&mut connection)
        .await
        .unwrap()
}

pub(crate) async fn tenant_settings(fleet: &Fleet, slug: &str) -> Vec<(String, String)> {
    match fleet.engine {
        Engine::Postgres => pg_tenant_facts(slug).await.0,
        Engine::Sqlite => sqlite_tenant_settings(fleet, slug).await,
    }
}

pub(crate) fn setting<'a>(settings: &'a [(String, String)], key: &str) -> Option<&'a str> {
    settings
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

async fn three_plans_pass_every_check_with_labels_settings_and_costs(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let plans = [
        ("gold-co", "enterprise", "1000", "200"),
        ("silver-co", "professional", "500", "50"),
        ("bronze-co", "starter", "100", "10"),
    ];
    for (slug, plan, _, _) in plans {
        let mut args = Fleet::provision_args(slug);
        args.extend(["--plan".into(), plan.into(), "--json".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = fleet.run(&args).await;
        run.assert_ok();
        let job = &run.json()["job"];
        assert_eq!(job["status"], "complete", "{run:?}");
        let checks_phase = job["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|phase| phase["name"] == "checks_passed")
            .unwrap();
        assert_eq!(checks_phase["status"], "applied");
        let summary = job["logs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|log| log["message"].as_str())
            .find(|message| message.starts_with("10 checks:"))
            .unwrap_or_else(|| panic!("no check summary in {job}"))
            .to_owned();
        assert!(!summary.contains("failed"), "{summary}");
        assert!(!summary.contains("warning"), "{summary}");
    }

    for (slug, plan, rate_limit, connection_limit) in plans {
        // Every check passes now that each tenant has neighbours to be isolated from.
        let (status, checks) = validate(&fleet, slug).await;
        assert_eq!(status, 0, "{checks:?}");
        assert_eq!(checks.len(), 10, "{checks:?}");
        for check in &checks {
            let applies = match engine {
                Engine::Postgres => true,
                // A SQLite tenant is a file: no roles, no logins to refuse.
                Engine::Sqlite => check["name"] != "role_privileges",
            };
            let expected = if applies { "passed" } else { "skipped" };
            assert_eq!(check["status"], expected, "{check}");
        }
        if engine == Engine::Postgres {
            assert!(
                check(&checks, "isolation_other_tenants")["detail"]
                    .as_str()
                    .unwrap()
                    .contains("refused"),
                "{checks:?}"
            );
            assert!(
                check(&checks, "isolation_registry")["detail"]
                    .as_str()
                    .unwrap()
                    .contains("refused"),
                "{checks:?}"
            );
        }

        // The effective settings: in the registry and in the tenant's own database.
        let tenant = fleet.json(&["tenants", "show", slug]).await["tenant"].clone();
        assert_eq!(tenant["settings"]["plan"], plan);
        assert_eq!(tenant["settings"]["rate_limit_qpm"].to_string(), rate_limit);
        assert_eq!(tenant["labels"]["tenant_id"], slug);
        assert_eq!(tenant["labels"]["plan"], plan);
        assert!(tenant["labels"]["cost_center"].as_str().unwrap().len() > 1);
        let settings = tenant_settings(&fleet, slug).await;
        assert_eq!(setting(&settings, "plan"), Some(plan));
        assert_eq!(setting(&settings, "rate_limit_qpm"), Some(rate_limit));
        assert_eq!(
            setting(&settings, "connection_limit"),
            Some(connection_limit)
        );
        assert_eq!(setting(&settings, "module.core"), Some("true"));
        assert_eq!(
            setting(&settings, "module.data_platform"),
            Some(if plan == "enterprise" {
                "true"
            } else {
                "false"
            })
        );
        assert_eq!(setting(&settings, "label.tenant_id"), Some(slug));
        if engine == Engine::Postgres {
            // Cost labels on the database and the role, and the plan's connection limit on the role.
            // The plan's connection limit on the role; the database and role carry the installation's mark and
            // no labels (every role on the server can read comments; the labels are the registry row's).
            let (_, role_limit, database_labels, role_labels) = pg_tenant_facts(slug).await;
            assert_eq!(role_limit.to_string(), connection_limit);
            for labels in [database_labels, role_labels] {
                assert_eq!(labels["tenantry"], "tenant");
                assert!(labels.get("plan").is_none(), "{labels}");
            }
            assert_eq!(tenant["labels"]["plan"], plan);
        }
    }

    // Chargeback: one line per tenant, totals by plan, region and cost center that add up.
    let costs = fleet.json(&["costs"]).await;
    assert_eq!(costs["currency"], "USD");
    assert_eq!(costs["tenants"].as_array().unwrap().len(), 3);
    assert_eq!(costs["by_plan"].as_array().unwrap().len(), 3);
    let enterprise = costs["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["tenant_slug"] == "gold-co")
        .unwrap();
    assert_eq!(enterprise["monthly_cost"], 147.0);
    assert_eq!(costs["total_monthly_cost"], 49.0 + 98.0 + 147.0);
    let by_region_total: f64 = costs["by_region"]
        .as_array()
        .unwrap()
        .iter()
        .map(|total| total["monthly_cost"].as_f64().unwrap())
        .sum();
    assert_eq!(by_region_total, 294.0);

    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

/// A plan whose query SLA no database can meet (0 ms) makes the critical latency check fail for real.
const IMPOSSIBLE_PLAN_CONFIG: &str = r#"
[[plans]]
name = "starter"
connection_limit = 10
statement_timeout_ms = 30000
base_monthly_price = 49.0
cost_center = "self-serve"

[[plans]]
name = "growth"
connection_limit = 50
statement_timeout_ms = 60000
rate_limit_qpm = 500
base_monthly_price = 49.0
price_multiplier = 2.0
cost_center = "growth"
feature_flags = { realtime_indexing = true }

[[plans]]
name = "instant"
connection_limit = 10
statement_timeout_ms = 30000
query_sla_ms = 0
base_monthly_price = 10.0
cost_center = "lab"
"#;

async fn a_critical_check_failure_rolls_back_and_leaves_nothing(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    write_file(
        &fleet.scratch_dir.join("tenantry.toml"),
        IMPOSSIBLE_PLAN_CONFIG,
    );
    let mut args = Fleet::provision_args("too-fast");
    args.extend(["--plan".into(), "instant".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fleet.run(&args).await;
    assert_ne!(run.status, 0, "{run:?}");
    assert_eq!(
        run.error_code().as_deref(),
        Some("E_VALIDATION_FAILED"),
        "{run:?}"
    );
    assert!(run.stderr.contains("query_latency"), "{run:?}");

    let job = fleet.jobs().await.into_iter().next().unwrap();
    assert_eq!(job["status"], "rolled_back");
    assert_eq!(job["error_code"], "E_VALIDATION_FAILED");
    // Nothing is left: no database, no role, no secret, no registry row, and doctor agrees.
    assert_eq!(fleet.server_has("too-fast").await, (false, false));
    assert_eq!(fleet.secret("tenant-db-too-fast").await, None);
    assert_eq!(fleet.secret("tenant-invite-too-fast").await, None);
    assert!(fleet.tenants().await.is_empty());
    let audit = fleet.audit_types("too-fast").await;
    assert!(
        audit.contains(&"TENANT_PROVISION_FAILED".to_owned()),
        "{audit:?}"
    );
    fleet.assert_doctor_clean().await;

    // The same tenant on a plan whose SLA holds provisions cleanly afterwards.
    fleet.provision("too-fast", &[]).await.assert_ok();
    let (status, _) = validate(&fleet, "too-fast").await;
    assert_eq!(status, 0);
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

async fn a_budget_over_the_threshold_waits_for_another_admin(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let mut args = Fleet::provision_args("big-spender");
    args.extend([
        "--plan".into(),
        "enterprise".into(),
        "--budget".into(),
        "2000000".into(),
        "--json".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fleet.run_env(&args, &[("USER", "alice")]).await;
    run.assert_ok();
    let waiting = run.json();
    assert_eq!(waiting["status"], "awaiting_approval", "{run:?}");
    let job_id = waiting["job_id"].as_str().unwrap().to_owned();
    // Nothing was created while it waits, and no worker may take it.
    assert_eq!(fleet.server_has("big-spender").await, (false, false));
    assert_eq!(fleet.secret("tenant-db-big-spender").await, None);
    let resumed = fleet.run(&["jobs", "resume", &job_id]).await;
    assert_eq!(
        resumed.error_code().as_deref(),
        Some("E_CONFLICT"),
        "{resumed:?}"
    );

    // The requester cannot approve their own request.
    let own = fleet
        .run_env(&["jobs", "approve", &job_id], &[("USER", "alice")])
        .await;
    assert_eq!(own.error_code().as_deref(), Some("E_FORBIDDEN"), "{own:?}");
    assert_eq!(
        fleet.json(&["jobs", "show", &job_id]).await["status"],
        "awaiting_approval"
    );

    // Another admin can; the job then runs to the end, every check passing.
    let approved = fleet
        .run_env(
            &[
                "jobs",
                "approve",
                &job_id,
                "--reason",
                "signed contract",
                "--json",
            ],
            &[("USER", "bob")],
        )
        .await;
    approved.assert_ok();
    assert_eq!(approved.json()["job"]["status"], "complete", "{approved:?}");
    assert!(fleet.server_has("big-spender").await.0);
    let audit = fleet.audit_types("big-spender").await;
    for event in [
        "APPROVAL_REQUESTED",
        "APPROVAL_GRANTED",
        "TENANT_PROVISIONED",
    ] {
        assert!(audit.contains(&event.to_owned()), "{event} in {audit:?}");
    }
    let granted = fleet
        .json(&["audit", "list", "--event-type", "APPROVAL_GRANTED"])
        .await;
    assert_eq!(granted[0]["actor"], "os:bob");
    assert_eq!(granted[0]["details"]["requested_by"], "os:alice");

    // A decided job cannot be decided again.
    let again = fleet
        .run_env(&["jobs", "reject", &job_id], &[("USER", "carol")])
        .await;
    assert_eq!(
        again.error_code().as_deref(),
        Some("E_CONFLICT"),
        "{again:?}"
    );

    // A budget below the threshold proceeds at once.
    let mut args = Fleet::provision_args("small-spender");
    args.extend(["--budget".into(), "500".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fleet.run(&args).await.assert_ok();
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

async fn get_json(server: &Server, path: &str, token: &str) -> Value {
    server
        .get(path, token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn post_json(server: &Server, path: &str, token: &str, body: &Value) -> Value {
    server
        .post(path, token)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn job(server: &Server, token: &str, job_id: &str) -> Value {
    get_json(server, &format!("/platform/jobs/{job_id}"), token).await
}

/// Waits until the job's status is `status` (the server's workers or its expiry sweep act on their own).
async fn wait_for_status(server: &Server, token: &str, job_id: &str, status: &str) -> Value {
    let describe = || {
        format!(
            "job {job_id} reaches {status}; server log:\n{}",
            server.log()
        )
    };
    eventually(60, describe, || async {
        let view = job(server, token, job_id).await;
        (view["status"] == status).then_some(view)
    })
    .await
}

async fn approvals_over_http_refuse_the_requester_and_lapse(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let alice = fleet.token_for("alice@ops.example", "PLATFORM_ADMIN").await;
    let bob = fleet.token_for("bob@ops.example", "PLATFORM_ADMIN").await;
    let support = fleet.token_for("sam@ops.example", "PLATFORM_SUPPORT").await;
    let server = fleet
        .serve(&[("TENANTRY_AUTO_APPROVE_THRESHOLD", "1000")])
        .await;

    // Plans come priced, and say when they need approval.
    let plans: Value = get_json(&server, "/platform/plans", &alice).await;
    assert_eq!(plans.as_array().unwrap().len(), 3);
    assert_eq!(plans[2]["plan"]["name"], "enterprise");
    assert_eq!(plans[2]["monthly_estimate"], 147.0);

    let request = |slug: &str, budget: u64| json!({ "slug": slug, "display_name": format!("Tenant {slug}"), "admin_email": format!("admin@{slug}.example"), "budget": budget });
    let accepted: Value = post_json(
        &server,
        "/platform/tenants",
        &alice,
        &request("approved-co", 5000),
    )
    .await;
    assert_eq!(accepted["status"], "awaiting_approval", "{accepted}");
    let job_id = accepted["job_id"].as_str().unwrap().to_owned();

    // The requester and a support user are refused, each with a problem+json that says why.
    for (token, why) in [(&alice, "requested"), (&support, "role")] {
        let refused = server
            .post(&format!("/platform/jobs/{job_id}/approve"), token)
            .json(&json!({ "reason": "looks fine" }))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403);
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(problem["error_code"], "E_FORBIDDEN");
        assert!(
            problem["detail"].as_str().unwrap().contains(why),
            "{problem}"
        );
    }
    assert_eq!(
        job(&server, &alice, &job_id).await["status"],
        "awaiting_approval"
    );

    // Another admin approves (no body needed); the workers run it to the end.
    let approved = server
        .post(&format!("/platform/jobs/{job_id}/approve"), &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), 200);
    wait_for_status(&server, &bob, &job_id, "complete").await;

    // A rejection cancels the job with its code; nothing was created.
    let accepted: Value = post_json(
        &server,
        "/platform/tenants",
        &alice,
        &request("rejected-co", 5000),
    )
    .await;
    let rejected_id = accepted["job_id"].as_str().unwrap().to_owned();
    let rejected: Value = post_json(
        &server,
        &format!("/platform/jobs/{rejected_id}/reject"),
        &bob,
        &json!({ "reason": "over budget" }),
    )
    .await;
    assert_eq!(rejected["status"], "cancelled", "{rejected}");
    assert_eq!(rejected["error_code"], "E_APPROVAL_REJECTED");
    assert_eq!(fleet.server_has("rejected-co").await, (false, false));
    let conflict = server
        .post(&format!("/platform/jobs/{rejected_id}/approve"), &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(conflict.status(), 409);
    // Bad input changes nothing.
    let malformed = server
        .post(&format!("/platform/jobs/{rejected_id}/approve"), &bob)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert!(server.terminate().await.success());

    // A request nobody decides lapses when its window closes, by the workers' sweep.
    let server = fleet
        .serve(&[
            ("TENANTRY_AUTO_APPROVE_THRESHOLD", "1000"),
            ("TENANTRY_APPROVAL_TTL_SECS", "1"),
        ])
        .await;
    let accepted: Value = post_json(
        &server,
        "/platform/tenants",
        &alice,
        &request("lapsed-co", 5000),
    )
    .await;
    let lapsed_id = accepted["job_id"].as_str().unwrap().to_owned();
    let lapsed = wait_for_status(&server, &alice, &lapsed_id, "cancelled").await;
    assert_eq!(lapsed["error_code"], "E_APPROVAL_EXPIRED");
    let audit = fleet.audit_types("lapsed-co").await;
    assert!(audit.contains(&"APPROVAL_EXPIRED".to_owned()), "{audit:?}");

    // Costs and metrics carry the tenant that was provisioned (per-tenant series need a platform role).
    let costs: Value = get_json(&server, "/platform/costs", &support).await;
    assert_eq!(costs["tenants"].as_array().unwrap().len(), 1, "{costs}");
    assert_eq!(costs["tenants"][0]["tenant_slug"], "approved-co");
    let metrics = server
        .get("/metrics", &support)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tenantry_tenant_info{tenant=\"approved-co\",plan=\"starter\""),
        "{metrics}"
    );
    assert!(server.terminate().await.success());
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

async fn set_plan_applies_new_limits_and_rolls_back_on_failure(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    write_file(
        &fleet.scratch_dir.join("tenantry.toml"),
        IMPOSSIBLE_PLAN_CONFIG,
    );
    fleet.provision("upgrader", &[]).await.assert_ok();
    let before = fleet.json(&["tenants", "show", "upgrader"]).await["tenant"].clone();
    assert_eq!(before["plan"], "starter");

    // A move to a plan whose checks cannot pass is undone: the tenant keeps its plan, limits and settings.
    let failed = fleet
        .run(&["tenants", "set-plan", "upgrader", "instant"])
        .await;
    assert_eq!(
        failed.error_code().as_deref(),
        Some("E_VALIDATION_FAILED"),
        "{failed:?}"
    );
    let after = fleet.json(&["tenants", "show", "upgrader"]).await["tenant"].clone();
    assert_eq!(after["plan"], "starter");
    assert_eq!(after["settings"], before["settings"]);
    assert_eq!(after["status"], "active");
    assert_eq!(
        setting(&tenant_settings(&fleet, "upgrader").await, "plan"),
        Some("starter")
    );
    let audit = fleet.audit_types("upgrader").await;
    for event in [
        "TENANT_PLAN_CHANGED",
        "TENANT_PLAN_CHANGE_UNDONE",
        "TENANT_PLAN_CHANGE_FAILED",
    ] {
        assert!(audit.contains(&event.to_owned()), "{event} in {audit:?}");
    }
    let (status, _) = validate(&fleet, "upgrader").await;
    assert_eq!(status, 0);

    // Bad input changes nothing.
    let unknown = fleet
        .run(&["tenants", "set-plan", "upgrader", "platinum"])
        .await;
    assert_eq!(
        unknown.error_code().as_deref(),
        Some("E_INVALID_INPUT"),
        "{unknown:?}"
    );
    let same = fleet
        .run(&["tenants", "set-plan", "upgrader", "starter"])
        .await;
    assert_eq!(same.error_code().as_deref(), Some("E_CONFLICT"), "{same:?}");

    // A move to a plan that fits applies its limits, settings, labels and price everywhere.
    fleet
        .run(&["tenants", "set-plan", "upgrader", "growth"])
        .await
        .assert_ok();
    let moved = fleet.json(&["tenants", "show", "upgrader"]).await["tenant"].clone();
    assert_eq!(moved["plan"], "growth");
    assert_eq!(moved["labels"]["plan"], "growth");
    assert_eq!(moved["labels"]["cost_center"], "growth");
    assert_eq!(moved["settings"]["monthly_cost"], 98.0);
    let settings = tenant_settings(&fleet, "upgrader").await;
    assert_eq!(setting(&settings, "plan"), Some("growth"));
    assert_eq!(setting(&settings, "connection_limit"), Some("50"));
    assert_eq!(
        setting(&settings, "feature.realtime_indexing"),
        Some("true")
    );
    assert_eq!(setting(&settings, "label.cost_center"), Some("growth"));
    if engine == Engine::Postgres {
        let (_, role_limit, database_labels, role_labels) = pg_tenant_facts("upgrader").await;
        assert_eq!(role_limit, 50);
        assert!(database_labels.get("plan").is_none() && role_labels.get("plan").is_none());
    }
    let (status, checks) = validate(&fleet, "upgrader").await;
    assert_eq!(status, 0, "{checks:?}");
    assert_eq!(check(&checks, "cost_labels")["status"], "passed");
    assert_eq!(fleet.json(&["costs"]).await["total_monthly_cost"], 98.0);
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

/// Each check can fail: break one thing at a time behind tenantry's back and `validate` names it.
async fn validate_names_what_was_tampered_with() {
    let fleet = Fleet::new(Engine::Postgres).await;
    fleet.provision("victim", &[]).await.assert_ok();
    fleet.provision("intruder", &[]).await.assert_ok();
    let mut admin = PgConnection::connect(&tenant_cluster_url()).await.unwrap();
    sqlx::raw_sql(
        "GRANT CONNECT ON DATABASE tenant_victim TO tenant_intruder;
         ALTER ROLE tenant_intruder CREATEDB;",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let mut victim_db =
        PgConnection::connect(&with_database(&tenant_cluster_url(), "tenant_intruder"))
            .await
            .unwrap();
    sqlx::raw_sql("UPDATE users SET must_reset_password = false; DELETE FROM _sqlx_migrations WHERE version = 2")
        .execute(&mut victim_db)
        .await
        .unwrap();
    drop(victim_db);

    let run = fleet.run(&["validate", "--slug", "intruder"]).await;
    assert_eq!(
        run.error_code().as_deref(),
        Some("E_VALIDATION_FAILED"),
        "{run:?}"
    );
    let (_, checks) = validate(&fleet, "intruder").await;
    for (name, status) in [
        ("secret_resolves", "passed"),
        ("tenant_login", "passed"),
        ("role_privileges", "failed"),
        ("isolation_other_tenants", "failed"),
        ("isolation_registry", "passed"),
        ("migrations_latest", "failed"),
        ("admin_seeded", "failed"),
        ("query_latency", "passed"),
        // The labels live in the registry and the secrets, which tenantry alone writes.
        ("cost_labels", "passed"),
        ("metrics_visible", "passed"),
    ] {
        assert_eq!(check(&checks, name)["status"], status, "{name}: {checks:?}");
    }
    assert!(check(&checks, "role_privileges")["detail"]
        .as_str()
        .unwrap()
        .contains("createdb"));
    assert!(check(&checks, "isolation_other_tenants")["detail"]
        .as_str()
        .unwrap()
        .contains("tenant_victim"));
    // A secret that no longer works is caught too; the untouched tenant still passes.
    let (status, _) = validate(&fleet, "victim").await;
    assert_eq!(status, 0);
    sqlx::raw_sql("ALTER ROLE tenant_victim PASSWORD 'changed-behind-our-back'")
        .execute(&mut admin)
        .await
        .unwrap();
    let (status, checks) = validate(&fleet, "victim").await;
    assert_ne!(status, 0);
    assert_eq!(
        check(&checks, "tenant_login")["status"],
        "failed",
        "{checks:?}"
    );
    fleet.cleanup().await;
}
