//! The HTTP API against a real `tenantry serve` on port 0, on both registries: provisioning over HTTP with the
//! job and its live events, the role × route matrix, errors as problem+json, idempotency, rate limits, revoked
//! tokens, console sessions and CSRF, metrics and audit, secrets never in logs, and a clean SIGTERM.

use crate::for_each_engine;
use crate::harness::{Engine, Fleet, Server, PROVISION_PHASES};
use serde_json::{json, Value};
use tenantry_core::PlatformRole;
use tenantry_server::auth::{Access, POLICY};

for_each_engine!(
    provisions_over_http_and_streams_events,
    every_role_meets_the_policy_on_every_route,
    idempotency_rate_limit_and_problem_details,
    sessions_csrf_revocation_and_logs,
    sigterm_hands_back_the_job_in_hand,
);

fn tenant_body(slug: &str) -> Value {
    json!({ "slug": slug, "display_name": format!("Tenant {slug}"), "admin_email": format!("admin@{slug}.example") })
}

/// Follows a job's event stream to its end; returns `(event name, data)` pairs.
async fn follow_events(server: &Server, token: &str, job_id: &str) -> Vec<(String, Value)> {
    use futures_util::StreamExt;
    let response = server
        .get(&format!("/platform/jobs/{job_id}/events"), token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = String::new();
    let mut stream = response.bytes_stream();
    let read = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(chunk) = stream.next().await {
            body.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if body.contains("event: done") && body.ends_with("\n\n") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the stream ends with a done event: {body}");
    body.split("\n\n")
        .filter_map(|block| {
            let name = block
                .lines()
                .find_map(|line| line.strip_prefix("event: "))?;
            let data = block.lines().find_map(|line| line.strip_prefix("data: "))?;
            Some((name.to_owned(), serde_json::from_str(data).unwrap()))
        })
        .collect()
}

async fn provisions_over_http_and_streams_events(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let token = fleet.token_for("ops@example.com", "PLATFORM_ADMIN").await;
    let server = fleet.serve(&[]).await;

    let response = server
        .post("/platform/tenants", &token)
        .json(&tenant_body("via-http"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(accepted["tenant_slug"], "via-http");
    let job_id = accepted["job_id"].as_str().unwrap().to_owned();

    let events = follow_events(&server, &token, &job_id).await;
    let (last_name, last_data) = events.last().unwrap();
    assert_eq!(last_name, "done");
    assert_eq!(last_data["status"], "complete");
    let applied: Vec<&str> = events
        .iter()
        .filter(|(name, data)| name == "phase" && data["status"] == "applied")
        .map(|(_, data)| data["phase"].as_str().unwrap())
        .collect();
    assert_eq!(applied.len(), PROVISION_PHASES.len(), "{applied:?}");
    assert!(events.iter().any(|(name, _)| name == "log"));

    // A client that connects after the end gets the whole story replayed.
    let late = follow_events(&server, &token, &job_id).await;
    assert_eq!(late.len(), events.len());

    let job: Value = server
        .get(&format!("/platform/jobs/{job_id}"), &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut fields: Vec<&str> = job
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "current_phase",
            "error_code",
            "error_message",
            "estimated_completion",
            "finished_at",
            "job_id",
            "kind",
            "logs",
            "phase_name",
            "phases",
            "progress_percentage",
            "started_at",
            "status",
            "tenant_slug",
            "total_phases",
        ],
        "exactly the fields of DESIGN.md"
    );
    assert_eq!(job["status"], "complete");
    assert_eq!(job["progress_percentage"], 100);
    // A worker ran the job, so no one saw the one-time password: the log says where the invitation waits.
    let logs = job["logs"].to_string();
    assert!(logs.contains("tenant-invite-via-http"), "{logs}");
    let mut phase_keys: Vec<&str> = job["phases"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    phase_keys.sort_unstable();
    assert_eq!(phase_keys, ["finished_at", "name", "started_at", "status"]);

    let tenant: Value = server
        .get("/platform/tenants/via-http", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tenant["status"], "active");
    let audit: Value = server
        .get(
            "/platform/audit?tenant=via-http&event_type=TENANT_PROVISIONED",
            &token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me: Value = server
        .get("/platform/me", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        audit[0]["actor"],
        format!("user:{}", me["user_id"].as_str().unwrap())
    );

    let metrics = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tenantry_jobs{kind=\"provision\",status=\"complete\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tenantry_phase_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains("tenantry_job_queue_depth 0"));
    assert_eq!(
        server
            .http
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        server
            .http
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let spec: Value = server
        .http
        .get(server.url("/platform/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(spec["paths"]["/platform/jobs/{job_id}"].is_object());

    let status = server.terminate().await;
    assert!(
        status.success(),
        "SIGTERM ends the server cleanly: {status:?}"
    );
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

fn concrete(path: &str) -> String {
    path.replace("{slug}", "no-such-tenant")
        .replace("{job_id}", "no-such-job")
        .replace("{name}", "no-such-server")
}

async fn every_role_meets_the_policy_on_every_route(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let mut tokens = Vec::new();
    for (role, email) in [
        (PlatformRole::Admin, "admin@example.com"),
        (PlatformRole::Support, "support@example.com"),
        (PlatformRole::ReadOnly, "readonly@example.com"),
    ] {
        tokens.push((role, fleet.token_for(email, role.as_str()).await));
    }
    let server = fleet.serve(&[]).await;
    for (method, path, access) in POLICY {
        let url = server.url(&concrete(path));
        let request = |token: Option<&str>| {
            let builder = match *method {
                "GET" => server.http.get(&url),
                "POST" => server.http.post(&url).json(&json!({})),
                other => panic!("unexpected method {other}"),
            };
            match token {
                Some(token) => builder.bearer_auth(token),
                None => builder,
            }
        };
        let anonymous = request(None).send().await.unwrap();
        match access {
            Access::Public => assert_ne!(anonymous.status(), 401, "{method} {path} is public"),
            Access::Roles(_) => {
                assert_eq!(anonymous.status(), 401, "{method} {path} without a token");
                let problem: Value = anonymous.json().await.unwrap();
                assert_eq!(problem["error_code"], "E_UNAUTHENTICATED");
            }
        }
        for (role, token) in &tokens {
            let response = request(Some(token)).send().await.unwrap();
            let allowed = match access {
                Access::Public => true,
                Access::Roles(roles) => roles.contains(role),
            };
            if allowed {
                assert!(
                    ![401, 403].contains(&response.status().as_u16()),
                    "{role} may {method} {path}, got {}",
                    response.status()
                );
            } else {
                assert_eq!(response.status(), 403, "{role} may not {method} {path}");
                let problem: Value = response.json().await.unwrap();
                assert_eq!(problem["error_code"], "E_FORBIDDEN");
            }
        }
    }
    // READONLY cannot provision, and nothing was created by trying.
    let readonly = &tokens[2].1;
    let refused = server
        .post("/platform/tenants", readonly)
        .json(&tenant_body("not-me"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(fleet.jobs().await.is_empty());
    server.terminate().await;
    fleet.cleanup().await;
}

async fn idempotency_rate_limit_and_problem_details(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let token = fleet.token_for("ops@example.com", "PLATFORM_ADMIN").await;
    let server = fleet.serve(&[("TENANTRY_PROVISION_RATE_LIMIT", "4")]).await;

    // Same key and body: the same job. Same key, other body: 409.
    let first = server
        .post("/platform/tenants", &token)
        .header("Idempotency-Key", "signup-42")
        .json(&tenant_body("idem"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = server
        .post("/platform/tenants", &token)
        .header("Idempotency-Key", "signup-42")
        .json(&tenant_body("idem"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["job_id"], first["job_id"]);
    let other = server
        .post("/platform/tenants", &token)
        .header("Idempotency-Key", "signup-42")
        .json(&tenant_body("idem-other"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 409);
    assert_eq!(
        other.json::<Value>().await.unwrap()["error_code"],
        "E_CONFLICT"
    );

    // Problem details: shape, content type, codes.
    let unknown_field = server
        .post("/platform/tenants", &token)
        .json(&json!({ "slug": "x-y-z", "display_name": "Xyz Co", "admin_email": "a@b.example", "colour": "red" }))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_field.status(), 400);
    assert_eq!(
        unknown_field.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = unknown_field.json().await.unwrap();
    for field in ["type", "title", "status", "detail", "error_code"] {
        assert!(problem.get(field).is_some(), "{field} in {problem}");
    }
    assert_eq!(problem["status"], 400);
    assert_eq!(problem["error_code"], "E_INVALID_INPUT");
    let bad_slug = server
        .post("/platform/tenants", &token)
        .json(&tenant_body("Bad_Slug"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_slug.status(), 422);
    assert_eq!(
        bad_slug.json::<Value>().await.unwrap()["error_code"],
        "E_INVALID_SLUG"
    );
    let missing = server
        .get("/platform/jobs/nope", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error_code"],
        "E_NOT_FOUND"
    );

    // The limit is 4 per minute per token; 4 requests were counted above (the idempotent repeat included).
    let limited = server
        .post("/platform/tenants", &token)
        .json(&tenant_body("one-more"))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(
        limited.json::<Value>().await.unwrap()["error_code"],
        "E_RATE_LIMITED"
    );
    // Another token has its own budget.
    let other_token = fleet.token_for("ops2@example.com", "PLATFORM_ADMIN").await;
    let allowed = server
        .post("/platform/tenants", &other_token)
        .json(&tenant_body("other-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 202);

    let events = follow_events(&server, &token, first["job_id"].as_str().unwrap()).await;
    assert_eq!(events.last().unwrap().1["status"], "complete");
    let accepted: Value = allowed.json().await.unwrap();
    follow_events(&server, &token, accepted["job_id"].as_str().unwrap()).await;
    server.terminate().await;
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

async fn sessions_csrf_revocation_and_logs(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let added = fleet
        .run_with_stdin(
            &[
                "users",
                "add",
                "--email",
                "ops@example.com",
                "--role",
                "PLATFORM_ADMIN",
                "--password-stdin",
            ],
            "correct horse battery staple",
        )
        .await;
    added.assert_ok();
    let token = fleet
        .run(&["users", "token", "--email", "ops@example.com"])
        .await
        .stdout
        .trim()
        .to_owned();
    let server = fleet.serve(&[("RUST_LOG", "debug")]).await;

    // Sign in: an HttpOnly, SameSite=Strict session cookie.
    let wrong = server
        .http
        .post(server.url("/platform/login"))
        .form(&[
            ("email", "ops@example.com"),
            ("password", "not the password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let signed_in = server
        .http
        .post(server.url("/platform/login"))
        .form(&[
            ("email", "ops@example.com"),
            ("password", "correct horse battery staple"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let me = server
        .http
        .get(server.url("/platform/me"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    // A write with the cookie but without the CSRF token is refused.
    let forged = server
        .http
        .post(server.url("/platform/tenants"))
        .header("cookie", &session)
        .json(&tenant_body("forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(fleet.jobs().await.is_empty());

    // Provision once so the log has seen a tenant password being made.
    let accepted: Value = server
        .post("/platform/tenants", &token)
        .json(&tenant_body("logged"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = follow_events(&server, &token, accepted["job_id"].as_str().unwrap()).await;
    assert_eq!(events.last().unwrap().1["status"], "complete");

    // A token in use is remembered by the server; revoked by another process (the CLI), it is refused at once, on
    // the finished job's view (which the server remembers too) as everywhere else.
    let job_path = format!("/platform/jobs/{}", accepted["job_id"].as_str().unwrap());
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let response = server.get(&job_path, &token).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        bodies.push(response.text().await.unwrap());
    }
    assert_eq!(bodies[0], bodies[1]);
    let job: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(job["status"], "complete");
    let before = server
        .get("/platform/tenants", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(before.status(), 200);
    let token_id = token
        .strip_prefix("tnt_")
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    fleet
        .run(&["users", "revoke-token", &token_id])
        .await
        .assert_ok();
    let revoked = server
        .get("/platform/tenants", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 401);
    let revoked = server.get(&job_path, &token).send().await.unwrap();
    assert_eq!(revoked.status(), 401);

    let log = server.log();
    assert!(log.len() > 500, "debug logging was on");
    let secret_part = token.split('.').nth(1).unwrap();
    assert!(
        !log.contains(secret_part),
        "the token's secret is in the log"
    );
    assert!(
        !log.contains("correct horse battery staple"),
        "the password is in the log"
    );
    if engine == Engine::Postgres {
        let url = fleet.secret("tenant-db-logged").await.unwrap();
        let password = url
            .strip_prefix("postgres://tenant_logged:")
            .unwrap()
            .split('@')
            .next()
            .unwrap();
        assert!(!log.contains(password), "the tenant password is in the log");
    }
    server.terminate().await;
    fleet.cleanup().await;
}

async fn sigterm_hands_back_the_job_in_hand(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let token = fleet.token_for("ops@example.com", "PLATFORM_ADMIN").await;
    // `secret_set` takes two seconds here, so the signal arrives while the job is in hand.
    let server = fleet
        .serve(&[("TENANTRY_FAILPOINTS", "secret_set.after=delay")])
        .await;
    let accepted: Value = server
        .post("/platform/tenants", &token)
        .json(&tenant_body("in-flight"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = accepted["job_id"].as_str().unwrap().to_owned();
    // Wait until the worker is inside `secret_set`.
    let in_phase = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            let job: Value = server
                .get(&format!("/platform/jobs/{job_id}"), &token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if job["phases"][3]["status"] == "running" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(in_phase.is_ok(), "the job reached secret_set");
    let status = server.terminate().await;
    assert!(status.success(), "{status:?}");

    // The phase in hand finished, the job was handed back unfinished, with its lease released.
    let job = fleet.json(&["jobs", "show", &job_id]).await;
    assert_eq!(job["status"], "in_progress");
    assert_eq!(job["phases"][3]["status"], "applied");
    assert_eq!(job["phases"][4]["status"], "pending");
    let doctor = fleet.run(&["doctor"]).await;
    assert!(
        doctor
            .stdout
            .contains(&format!("tenantry jobs resume {job_id}")),
        "{}",
        doctor.stdout
    );
    fleet.run(&["jobs", "resume", &job_id]).await.assert_ok();
    assert_eq!(
        fleet.json(&["jobs", "show", &job_id]).await["status"],
        "complete"
    );
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_the_registry_is_unreachable() {
    use sqlx::{Connection, Executor};
    let fleet = Fleet::new(Engine::Postgres).await;
    let server = fleet.serve(&[]).await;
    assert_eq!(
        server
            .http
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let database = fleet.registry_database.clone().unwrap();
    let mut admin = sqlx::PgConnection::connect(&crate::harness::registry_admin_url())
        .await
        .unwrap();
    admin
        .execute(format!("ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS false").as_str())
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&database)
        .execute(&mut admin)
        .await
        .unwrap();
    let unready = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(unready.status(), 503);
    assert_eq!(
        unready.json::<Value>().await.unwrap()["error_code"],
        "PROVISIONING_UNAVAILABLE"
    );
    assert_eq!(
        server
            .http
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "alive all the same"
    );
    admin
        .execute(format!("ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS true").as_str())
        .await
        .unwrap();
    let ready_again = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while server
            .http
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            != 200
        {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(ready_again.is_ok(), "ready again once the registry answers");
    server.terminate().await;
    fleet.cleanup().await;
}

/// A SQLite server's directory must lie under the data directory (or a configured `sqlite_server_roots`):
/// registering one used to accept `sqlite:///etc/…` and create the missing directories, over the API and the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_server_outside_the_allowed_roots_is_refused_and_nothing_is_created() {
    let fleet = Fleet::new(Engine::Sqlite).await;
    let add = |name: &str, directory: &std::path::Path| {
        vec![
            "servers".to_owned(),
            "add".into(),
            "--name".into(),
            name.into(),
            "--engine".into(),
            "sqlite".into(),
            "--admin-url".into(),
            format!("sqlite://{}", directory.display()),
            "--capacity".into(),
            "5".into(),
        ]
    };
    let run_add = |args: Vec<String>| {
        let fleet = &fleet;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            fleet.run(&args).await
        }
    };
    // Outside the data directory, and the same by `..` and by a symbolic link inside it.
    let outside = fleet.scratch_dir.join("outside").join("tenants");
    let by_parent = fleet.data_dir.join("..").join("by-parent");
    let linked_target = fleet.scratch_dir.join("linked-target");
    std::fs::create_dir_all(&linked_target).unwrap();
    std::fs::create_dir_all(&fleet.data_dir).unwrap();
    std::os::unix::fs::symlink(&linked_target, fleet.data_dir.join("link")).unwrap();
    let by_link = fleet.data_dir.join("link").join("tenants");
    for (name, directory) in [
        ("outside", &outside),
        ("by-parent", &by_parent),
        ("by-link", &by_link),
    ] {
        let run = run_add(add(name, directory)).await;
        assert_eq!(
            run.error_code().as_deref(),
            Some("E_INVALID_INPUT"),
            "{run:?}"
        );
        assert!(!directory.exists(), "{} was created", directory.display());
    }
    assert!(!fleet.scratch_dir.join("by-parent").exists());

    let server = fleet.serve(&[]).await;
    let token = fleet.token_for("ops@example.com", "PLATFORM_ADMIN").await;
    let etc_directory = format!("/etc/tenantry-test-{}", uuid::Uuid::now_v7().simple());
    let response = server
        .post("/platform/servers", &token)
        .json(&json!({ "name": "etc", "engine": "sqlite", "admin_url": format!("sqlite://{etc_directory}"), "capacity": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error_code"],
        "E_INVALID_INPUT"
    );
    assert!(!std::path::Path::new(&etc_directory).exists());
    server.terminate().await;
    let servers = fleet.json(&["servers", "list"]).await;
    assert_eq!(servers.as_array().unwrap().len(), 1, "{servers}");

    // Inside the data directory it is accepted; a configured root allows a directory elsewhere.
    fleet
        .run_env(
            &add("inside", &fleet.data_dir.join("more-tenants"))
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            &[],
        )
        .await
        .assert_ok();
    let roots = fleet.scratch_dir.join("outside");
    fleet
        .run_env(
            &add("outside", &outside)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            &[("TENANTRY_SQLITE_SERVER_ROOTS", roots.to_str().unwrap())],
        )
        .await
        .assert_ok();
    assert!(outside.is_dir());
    fleet.cleanup().await;
}
