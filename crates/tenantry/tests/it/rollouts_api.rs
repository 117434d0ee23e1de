//! Fleet migrations over HTTP against a real `tenantry serve`: a dry run records nothing, bad options and the
//! wrong roles are refused, a rollout with a canary migrates every tenant on the server's workers, its tenants
//! page by status, its page shows the waves, a stopped rollout names its failed tenant and the console's Retry
//! form finishes it, and each tenant's schema state follows.

use crate::harness::{eventually, write_file, Engine, Fleet, Server};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
const SLUGS: [&str; 3] = ["roll-a", "roll-b", "roll-c"];

/// The example tenant schema's migrations, copied where the test can add one.
fn copy_example_migrations(fleet: &Fleet) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tenant-schema/migrations");
    let target = fleet.scratch_dir.join("schema/migrations");
    for engine in ["postgres", "sqlite"] {
        for entry in std::fs::read_dir(source.join(engine)).unwrap() {
            let path = entry.unwrap().path();
            let contents = std::fs::read_to_string(&path).unwrap();
            write_file(
                &target.join(engine).join(path.file_name().unwrap()),
                &contents,
            );
        }
    }
    target
}

/// One statement on a tenant's SQLite file, as someone with a shell on the host would run it.
async fn on_tenant_file(fleet: &Fleet, slug: &str, statement: &str) {
    use sqlx::{Connection, Executor};
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", fleet.sqlite_file(slug).display());
    let mut connection = sqlx::AnyConnection::connect(&url).await.unwrap();
    connection.execute(statement).await.unwrap();
    connection.close().await.unwrap();
}

async fn get_json(server: &Server, path: &str, token: &str) -> (u16, Value) {
    let response = server.get(path, token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn post_json(server: &Server, path: &str, token: &str, body: Value) -> (u16, Value) {
    let response = server.post(path, token).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn page(server: &Server, path: &str, token: &str) -> String {
    let response = server
        .get(path, token)
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    response.text().await.unwrap()
}

/// The rollout jobs the registry holds.
async fn rollout_jobs(fleet: &Fleet) -> Vec<Value> {
    fleet
        .jobs()
        .await
        .into_iter()
        .filter(|job| job["kind"] == "rollout")
        .collect()
}

/// Waits until the rollout ends; returns its view with every tenant.
async fn finished(server: &Server, token: &str, rollout_id: &str) -> Value {
    let path = format!("/platform/rollouts/{rollout_id}?limit=500");
    eventually(
        90,
        || format!("rollout {rollout_id} did not end: {}", server.log()),
        || async {
            let (status, view) = get_json(server, &path, token).await;
            assert_eq!(status, 200, "{view}");
            ["complete", "failed", "cancelled"]
                .contains(&view["status"].as_str().unwrap_or_default())
                .then_some(view)
        },
    )
    .await
}

fn slugs_of(tenants: &Value) -> BTreeSet<String> {
    tenants
        .as_array()
        .unwrap()
        .iter()
        .map(|tenant| tenant["tenant_slug"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_over_http_migrate_the_fleet_wave_by_wave() {
    let mut fleet = Fleet::new(Engine::Sqlite).await;
    let migrations = copy_example_migrations(&fleet);
    fleet.set_env("TENANTRY_TENANT_MIGRATIONS", migrations.to_str().unwrap());
    for slug in SLUGS {
        fleet.provision(slug, &[]).await.assert_ok();
    }
    let admin = fleet.token_for("ops@example.com", "PLATFORM_ADMIN").await;
    let support = fleet
        .token_for("support@example.com", "PLATFORM_SUPPORT")
        .await;
    let readonly = fleet
        .token_for("readonly@example.com", "PLATFORM_READONLY")
        .await;
    write_file(
        &migrations.join("sqlite/0003_notes.sql"),
        "CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);",
    );
    let server = fleet.serve(&[]).await;

    // Every tenant lacks the new migration, and says so.
    let (status, schema) = get_json(&server, "/platform/tenants/roll-a/schema", &readonly).await;
    assert_eq!(status, 200, "{schema}");
    assert_eq!(schema["state"], "pending", "{schema}");
    assert_eq!(schema["version"], 2);
    assert_eq!(schema["pending"], json!([3]));
    assert_eq!(schema["latest"], 3);
    let (status, problem) = get_json(&server, "/platform/tenants/no-such/schema", &admin).await;
    assert_eq!(
        (status, problem["error_code"].as_str()),
        (404, Some("E_NOT_FOUND"))
    );

    // A dry run says which wave each tenant would be in, and records nothing.
    let (status, plan) = post_json(
        &server,
        "/platform/rollouts",
        &admin,
        json!({ "canary": 1, "concurrency": 2, "dry_run": true }),
    )
    .await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["counts"]["pending"], 3, "{plan}");
    let tenants = plan["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 3, "{plan}");
    assert!(tenants.iter().all(|tenant| tenant["status"] == "pending"));
    assert_eq!(
        tenants.iter().filter(|tenant| tenant["wave"] == 0).count(),
        1,
        "one canary: {plan}"
    );
    assert!(rollout_jobs(&fleet).await.is_empty());

    // Options that do not fit, a body that is not the API's, and roles that may not: refused, nothing recorded.
    let (status, problem) = post_json(
        &server,
        "/platform/rollouts",
        &admin,
        json!({ "waves": ["50%"] }),
    )
    .await;
    assert_eq!(
        status, 422,
        "the error table's status for E_INVALID_INPUT: {problem}"
    );
    assert_eq!(problem["error_code"], "E_INVALID_INPUT");
    assert!(
        problem["detail"].as_str().unwrap().contains("100%"),
        "{problem}"
    );
    let (status, problem) = post_json(
        &server,
        "/platform/rollouts",
        &admin,
        json!({ "canary": 1, "wave_size": 1, "waves": ["100%"] }),
    )
    .await;
    assert_eq!(
        (status, problem["error_code"].as_str()),
        (422, Some("E_INVALID_INPUT"))
    );
    let (status, problem) = post_json(
        &server,
        "/platform/rollouts",
        &admin,
        json!({ "canaries": 1 }),
    )
    .await;
    assert_eq!(
        (status, problem["error_code"].as_str()),
        (400, Some("E_INVALID_INPUT"))
    );
    for token in [&support, &readonly] {
        let (status, problem) =
            post_json(&server, "/platform/rollouts", token, json!({ "canary": 1 })).await;
        assert_eq!(
            (status, problem["error_code"].as_str()),
            (403, Some("E_FORBIDDEN"))
        );
    }
    assert!(rollout_jobs(&fleet).await.is_empty());
    let (status, listed) = get_json(&server, "/platform/rollouts", &readonly).await;
    assert_eq!((status, listed), (200, json!([])));

    // Unknown rollouts, and a job that is not a rollout, are not found.
    for id in [
        "01900000-0000-7000-8000-000000000000".to_owned(),
        fleet.jobs().await[0]["job_id"].as_str().unwrap().to_owned(),
    ] {
        let (status, problem) =
            get_json(&server, &format!("/platform/rollouts/{id}"), &admin).await;
        assert_eq!(
            (status, problem["error_code"].as_str()),
            (404, Some("E_NOT_FOUND")),
            "{id}"
        );
        let (status, problem) = post_json(
            &server,
            &format!("/platform/rollouts/{id}/pause"),
            &admin,
            json!({}),
        )
        .await;
        assert_eq!(
            (status, problem["error_code"].as_str()),
            (404, Some("E_NOT_FOUND")),
            "{id}"
        );
    }

    // The rollout: recorded, run by the server's workers, the canary first.
    let response = server
        .post("/platform/rollouts", &admin)
        .json(&json!({ "canary": 1, "concurrency": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = response.json().await.unwrap();
    let rollout_id = accepted["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/platform/rollouts/{rollout_id}"));
    assert_eq!(accepted["concurrency"], 2);
    let (status, problem) = post_json(
        &server,
        &format!("/platform/rollouts/{rollout_id}/abort"),
        &readonly,
        json!({}),
    )
    .await;
    assert_eq!(
        (status, problem["error_code"].as_str()),
        (403, Some("E_FORBIDDEN"))
    );

    let view = finished(&server, &admin, &rollout_id).await;
    assert_eq!(view["status"], "complete", "{view}");
    assert_eq!(view["target_version"], 3);
    assert_eq!(view["counts"]["applied"], 3, "{view}");
    assert_eq!(view["counts"]["failed"], 0);
    let waves = view["waves"].as_array().unwrap();
    assert_eq!(waves[0]["wave"], 0, "the canary: {view}");
    assert_eq!(waves[0]["applied"], 1);
    let applied_after_canary: i64 = waves[1..]
        .iter()
        .map(|wave| wave["applied"].as_i64().unwrap())
        .sum();
    assert_eq!(applied_after_canary, 2, "{view}");
    let tenants = view["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 3);
    for tenant in tenants {
        assert_eq!(tenant["status"], "applied", "{tenant}");
        assert_eq!(tenant["versions_applied"], json!([3]), "{tenant}");
    }
    on_tenant_file(
        &fleet,
        "roll-b",
        "INSERT INTO notes (body) VALUES ('migrated')",
    )
    .await;

    // Its tenants page by status.
    let base = format!("/platform/rollouts/{rollout_id}");
    let (_, first) = get_json(
        &server,
        &format!("{base}?status=applied&limit=2"),
        &readonly,
    )
    .await;
    let (_, second) = get_json(
        &server,
        &format!("{base}?status=applied&limit=2&offset=2"),
        &readonly,
    )
    .await;
    assert_eq!(first["tenants"].as_array().unwrap().len(), 2, "{first}");
    assert_eq!(second["tenants"].as_array().unwrap().len(), 1, "{second}");
    let mut paged = slugs_of(&first["tenants"]);
    paged.extend(slugs_of(&second["tenants"]));
    assert_eq!(paged, SLUGS.iter().map(|slug| (*slug).to_owned()).collect());
    let (_, none_failed) = get_json(&server, &format!("{base}?status=failed"), &readonly).await;
    assert_eq!(none_failed["tenants"], json!([]));
    assert_eq!(
        first["counts"], view["counts"],
        "the counts are the whole rollout's"
    );
    let (status, problem) = get_json(&server, &format!("{base}?status=done"), &readonly).await;
    assert_eq!(
        (status, problem["error_code"].as_str()),
        (400, Some("E_INVALID_INPUT"))
    );
    let (_, listed) = get_json(&server, "/platform/rollouts", &support).await;
    assert_eq!(listed[0]["id"], rollout_id.as_str(), "{listed}");
    assert_eq!(listed[0]["status"], "complete");

    // Its progress was told on the job stream, which a late reader gets replayed to its end.
    let events = server
        .get(&format!("/platform/jobs/{rollout_id}/events"), &readonly)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(events.contains("event: log"), "{events}");
    assert!(events.contains("event: done"), "{events}");

    // The pages: the list, and the rollout with its waves as bars.
    let html = page(&server, "/platform/rollouts", &readonly).await;
    assert!(html.contains(&rollout_id[rollout_id.len() - 8..]), "{html}");
    assert!(html.contains("href=\"/platform/rollouts\" aria-current=\"page\""));
    let html = page(&server, &base, &readonly).await;
    for expected in [
        "Canary",
        "Wave 1",
        "<progress",
        "data-count=\"applied\">3<",
        "Complete",
    ] {
        assert!(
            html.contains(expected),
            "{expected} in the rollout's page: {html}"
        );
    }
    assert!(!html.contains("style="), "no inline styles (CSP)");
    assert!(
        !html.contains("data-rollout-action"),
        "no buttons for a reader"
    );

    // A finished rollout cannot be steered, and with nothing left to migrate, none starts.
    let (status, problem) = post_json(&server, &format!("{base}/pause"), &admin, json!({})).await;
    assert_eq!(
        (status, problem["error_code"].as_str()),
        (409, Some("E_CONFLICT"))
    );
    let (status, problem) = post_json(&server, "/platform/rollouts", &admin, json!({})).await;
    assert_eq!(
        (status, problem["error_code"].as_str()),
        (409, Some("E_CONFLICT")),
        "{problem}"
    );
    assert_eq!(rollout_jobs(&fleet).await.len(), 1);

    let (_, schema) = get_json(&server, "/platform/tenants/roll-c/schema", &readonly).await;
    assert_eq!(schema["state"], "latest", "{schema}");
    assert_eq!(schema["version"], 3);
    assert_eq!(schema["pending"], json!([]));
    let html = page(&server, "/platform/tenants/roll-c", &readonly).await;
    assert!(html.contains("version 3, at latest"), "{html}");

    // A second migration that one tenant refuses (someone made its table by hand): the rollout stops and names it.
    write_file(
        &migrations.join("sqlite/0004_tags.sql"),
        "CREATE TABLE tags (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL);",
    );
    on_tenant_file(&fleet, "roll-c", "CREATE TABLE tags (hand_made TEXT)").await;
    let html = page(&server, "/platform/tenants/roll-c", &readonly).await;
    assert!(html.contains("version 3, pending: 4"), "{html}");
    let (status, accepted) = post_json(
        &server,
        "/platform/rollouts",
        &admin,
        json!({ "canary": 1, "concurrency": 2, "max_failures": 1 }),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let rollout_id = accepted["id"].as_str().unwrap().to_owned();
    let base = format!("/platform/rollouts/{rollout_id}");
    let view = finished(&server, &admin, &rollout_id).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["error_code"], "E_MIGRATIONS_FAILED");
    assert_eq!(view["counts"]["failed"], 1, "{view}");
    let (_, failed) = get_json(&server, &format!("{base}?status=failed"), &readonly).await;
    assert_eq!(failed["tenants"][0]["tenant_slug"], "roll-c", "{failed}");
    let html = page(&server, &base, &admin).await;
    assert!(html.contains("Failed tenants"), "{html}");
    assert!(html.contains(">roll-c<"), "{html}");
    assert!(
        html.contains(&format!(
            "action=\"{base}/resume\" data-rollout-action=\"retry\">"
        )),
        "an admin is offered Retry: {html}"
    );

    // The cause removed, the console's Retry form (a plain post) sends the browser back to the rollout, and the
    // server's workers finish it.
    on_tenant_file(&fleet, "roll-c", "DROP TABLE tags").await;
    let retried = server
        .post(&format!("{base}/resume"), &admin)
        .header("accept", BROWSER_ACCEPT)
        .form(&[("csrf_token", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 303, "{}", retried.text().await.unwrap());
    assert_eq!(retried.headers()["location"], base.as_str());
    let view = finished(&server, &admin, &rollout_id).await;
    assert_eq!(view["status"], "complete", "{view}");
    assert_eq!(view["counts"]["applied"], 3, "{view}");
    let retried_tenant = view["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|tenant| tenant["tenant_slug"] == "roll-c")
        .unwrap();
    assert_eq!(retried_tenant["attempts"], 2, "{retried_tenant}");
    for slug in SLUGS {
        let (_, schema) =
            get_json(&server, &format!("/platform/tenants/{slug}/schema"), &admin).await;
        assert_eq!(
            (schema["state"].as_str(), schema["version"].as_i64()),
            (Some("latest"), Some(4))
        );
    }

    server.terminate().await;
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}
