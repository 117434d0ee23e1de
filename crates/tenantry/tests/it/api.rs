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
    nul_bytes_in_paths_queries_and_bodies_are_invalid_input,
    http_details_answer_with_problems,
    live_streams_end_with_their_credential_and_are_capped,
    sign_in_is_throttled_per_account_and_address,
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
    // The public part names no customer; per-tenant series need a platform role's token.
    assert!(
        !metrics.contains("via-http") && !metrics.contains("tenantry_tenant_"),
        "anonymous /metrics names a tenant: {metrics}"
    );
    let with_token = server
        .get("/metrics", &token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        with_token.contains("tenantry_tenant_info{") && with_token.contains("via-http"),
        "{with_token}"
    );
    let bad_token = server
        .get("/metrics", "tnt_nope.nope")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!bad_token.contains("via-http"), "{bad_token}");
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
        .replace("{notification_id}", "no-such-delivery")
        .replace("{webhook_id}", "no-such-webhook")
        .replace("{change_request_id}", "no-such-request")
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
    // A tenant admin is scoped to a tenant that exists; every route they may not call is 404 to them, and the
    // ones they may call answer within their tenant (the concrete paths name no tenant of theirs: 404 too).
    fleet.provision("matrix-own", &[]).await.assert_ok();
    fleet
        .run(&[
            "users",
            "add",
            "--email",
            "tenant-admin@example.com",
            "--role",
            "TENANT_ADMIN",
            "--tenant",
            "matrix-own",
        ])
        .await
        .assert_ok();
    let tenant_admin = fleet
        .run(&["users", "token", "--email", "tenant-admin@example.com"])
        .await
        .stdout
        .trim()
        .to_owned();
    tokens.push((PlatformRole::TenantAdmin, tenant_admin));
    let server = fleet.serve(&[]).await;
    for (method, path, access) in POLICY {
        let url = server.url(&concrete(path));
        let request = |token: Option<&str>| {
            let builder = match *method {
                "GET" => server.http.get(&url),
                "POST" => server.http.post(&url).json(&json!({})),
                "DELETE" => server.http.delete(&url),
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
            } else if *role == PlatformRole::TenantAdmin {
                assert_eq!(response.status(), 404, "{role} may not {method} {path}");
                let problem: Value = response.json().await.unwrap();
                assert_eq!(problem["error_code"], "E_NOT_FOUND");
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
    // Only the tenant admin's tenant was provisioned (before the server started).
    let jobs = fleet.jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["tenant_slug"], "matrix-own");
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

/// Adds a user with a chosen password and returns an API token for it.
async fn user_with_password(fleet: &Fleet, email: &str, role: &str, password: &str) -> String {
    fleet
        .run_with_stdin(
            &[
                "users",
                "add",
                "--email",
                email,
                "--role",
                role,
                "--password-stdin",
            ],
            password,
        )
        .await
        .assert_ok();
    let token = fleet.run(&["users", "token", "--email", email]).await;
    token.assert_ok();
    token.stdout.trim().to_owned()
}

/// Asserts a problem+json answer with this status and code.
async fn assert_problem(response: reqwest::Response, status: u16, code: &str, what: &str) {
    assert_eq!(response.status(), status, "{what}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "{what}"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["error_code"], code, "{what}: {problem}");
}

/// A NUL byte reached PostgreSQL as text and came back as a 500 on nine routes. It is bad input wherever it is.
async fn nul_bytes_in_paths_queries_and_bodies_are_invalid_input(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let token = fleet.token_for("ops@example.com", "PLATFORM_ADMIN").await;
    let server = fleet.serve(&[]).await;
    let get_paths = [
        "/platform/tenants?search=a%00b",
        "/platform/tenants?status=active%00",
        "/platform/tenants/a%00b",
        "/platform/jobs?tenant=a%00b",
        "/platform/jobs?status=%00",
        "/platform/jobs/a%00b",
        "/platform/jobs/a%00b/events",
        "/platform/audit?tenant=a%00b",
        "/platform/audit?event_type=a%00b",
        "/platform/audit?actor=a%00b",
        "/platform/plans?region=a%00b",
    ];
    for path in get_paths {
        let response = server.get(path, &token).send().await.unwrap();
        assert_problem(response, 400, "E_INVALID_INPUT", path).await;
    }
    let post_paths = [
        "/platform/servers/a%00b/drain",
        "/platform/tenants/a%00b/offboard",
        "/platform/tenants/a%00b/plan",
        "/platform/jobs/a%00b/retry",
        "/platform/jobs/a%00b/rollback",
        "/platform/jobs/a%00b/approve",
    ];
    for path in post_paths {
        let response = server
            .post(path, &token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_problem(response, 400, "E_INVALID_INPUT", path).await;
    }
    // In bodies: a sign-in and a provisioning request.
    let sign_in = server
        .http
        .post(server.url("/platform/login"))
        .form(&[
            ("email", "a\u{0}b@example.com"),
            ("password", "whatever it is"),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        sign_in.status().is_client_error(),
        "a NUL in the email: {}",
        sign_in.status()
    );
    let mut body = tenant_body("nul-body");
    body["plan"] = json!("starter\u{0}");
    let response = server
        .post("/platform/tenants", &token)
        .header("Idempotency-Key", "nul-body")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_client_error(),
        "a NUL in the plan: {}",
        response.status()
    );
    assert!(fleet.jobs().await.is_empty(), "bad input changes nothing");
    // In the reason for a decision, which is kept in the job's error message.
    let other_admin = fleet.token_for("ops2@example.com", "PLATFORM_ADMIN").await;
    let mut waiting = tenant_body("waits-for-nul");
    waiting["budget"] = json!(2_000_000);
    let accepted: Value = server
        .post("/platform/tenants", &token)
        .json(&waiting)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = accepted["job_id"].as_str().unwrap().to_owned();
    let rejected = server
        .post(&format!("/platform/jobs/{job_id}/reject"), &other_admin)
        .json(&json!({ "reason": "over\u{0}budget" }))
        .send()
        .await
        .unwrap();
    assert_problem(rejected, 422, "E_INVALID_INPUT", "a NUL in the reason").await;
    assert_eq!(
        fleet.json(&["jobs", "show", &job_id]).await["status"],
        "awaiting_approval"
    );
    assert!(
        !server.log().contains("request failed"),
        "no request failed on the server: {}",
        server.log()
    );
    server.terminate().await;
    fleet.cleanup().await;
}

/// The smaller HTTP findings: a header-splitting `next=`, problem+json for 413/414/415, the bearer scheme in any
/// case, a budget above int64, and a token that expires in 0 days.
async fn http_details_answer_with_problems(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let token = user_with_password(
        &fleet,
        "ops@example.com",
        "PLATFORM_ADMIN",
        "correct horse battery",
    )
    .await;
    let server = fleet.serve(&[]).await;

    // `next=` with CR/LF: still a redirect, to a safe local path.
    for accept in ["application/json", "text/html"] {
        let signed_in = server
            .http
            .post(server.url("/platform/login"))
            .header("accept", accept)
            .form(&[
                ("email", "ops@example.com"),
                ("password", "correct horse battery"),
                ("next", "/platform/jobs\r\nSet-Cookie: evil=1"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(signed_in.status(), 303, "{accept}");
        assert_eq!(
            signed_in
                .headers()
                .get("location")
                .map(|value| value.to_str().unwrap()),
            Some("/platform/tenants"),
            "{accept}"
        );
    }
    // JSON to the sign-in form.
    let json_sign_in = server
        .http
        .post(server.url("/platform/login"))
        .json(&json!({ "email": "ops@example.com", "password": "correct horse battery" }))
        .send()
        .await
        .unwrap();
    assert_problem(
        json_sign_in,
        415,
        "E_INVALID_INPUT",
        "JSON to /platform/login",
    )
    .await;
    // A URI past the limit.
    let long = format!("/platform/tenants?search={}", "a".repeat(20_000));
    let response = server.get(&long, &token).send().await.unwrap();
    assert_problem(response, 414, "E_INVALID_INPUT", "a 20 kB URI").await;
    // A body past the limit, declared and chunked. The server answers before reading it all and then closes the
    // connection, so these go on connections of their own, which no later request reuses.
    let huge = vec![b' '; 3 * 1024 * 1024];
    let unpooled = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let response = unpooled
        .post(server.url("/platform/tenants"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(huge.clone())
        .send()
        .await
        .unwrap();
    assert_problem(response, 413, "E_INVALID_INPUT", "a 3 MB body").await;
    let chunks = futures_util::stream::iter(
        huge.chunks(64 * 1024)
            .map(|chunk| Ok::<_, std::io::Error>(chunk.to_vec()))
            .collect::<Vec<_>>(),
    );
    let response = unpooled
        .post(server.url("/platform/jobs/no-such-job/approve"))
        .bearer_auth(&token)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_problem(response, 413, "E_INVALID_INPUT", "a 3 MB chunked body").await;
    // The bearer scheme in any case.
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let response = server
            .http
            .get(server.url("/platform/me"))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "scheme {scheme}");
    }
    // A budget above int64 (what the document promises).
    let mut body = tenant_body("big-budget");
    body["budget"] = json!(9_223_372_036_854_775_808_u64);
    let response = server
        .post("/platform/tenants", &token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(response, 422, "E_INVALID_INPUT", "budget 2^63").await;
    let response = server
        .post("/platform/tenants/no-such-tenant/plan", &token)
        .json(&json!({ "plan": "professional", "budget": 18_446_744_073_709_551_615_u64 }))
        .send()
        .await
        .unwrap();
    assert_problem(response, 422, "E_INVALID_INPUT", "set-plan budget 2^64-1").await;
    assert!(fleet.jobs().await.is_empty(), "bad input changes nothing");
    // A token that expires in 0 days would be dead on arrival.
    let zero_days = fleet
        .run(&[
            "users",
            "token",
            "--email",
            "ops@example.com",
            "--expires-in-days",
            "0",
        ])
        .await;
    assert_ne!(zero_days.status, 0, "{zero_days:?}");
    assert_eq!(
        zero_days.error_code().as_deref(),
        Some("E_INVALID_INPUT"),
        "{zero_days:?}"
    );
    assert_eq!(
        fleet
            .json(&["users", "list"])
            .await
            .as_array()
            .unwrap()
            .len(),
        1,
        "one user, and no token was added"
    );
    server.terminate().await;
    fleet.cleanup().await;
}

/// Opens a live stream of a job; asserts it is open.
async fn open_stream(request: reqwest::RequestBuilder) -> reqwest::Response {
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response
}

/// Reads a live stream until it ends; panics if it does not within `seconds`.
async fn stream_ends_within(response: reqwest::Response, seconds: u64, what: &str) {
    use futures_util::StreamExt;
    let mut body = response.bytes_stream();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(seconds), async {
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "{what}: the stream was still open after {seconds} s"
    );
}

/// A sample of `/metrics` without labels, read with a token.
async fn metric(server: &Server, token: &str, name: &str) -> Option<f64> {
    let text = server
        .get("/metrics", token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The CSRF token of a session, as the console's pages carry it.
async fn csrf_token_of(server: &Server, session: &str) -> String {
    let page = server
        .http
        .get(server.url("/platform/tenants"))
        .header("accept", "text/html")
        .header("cookie", session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF meta element: {page}"))
        .to_owned()
}

/// Live streams: capped per credential and in all (503 with Retry-After), idle ones read nothing, and each ends
/// within seconds once its token is revoked or its session ends.
async fn live_streams_end_with_their_credential_and_are_capped(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    let admin = fleet.token_for("admin@example.com", "PLATFORM_ADMIN").await;
    let reader = user_with_password(
        &fleet,
        "reader@example.com",
        "PLATFORM_READONLY",
        "correct horse battery",
    )
    .await;
    let server = fleet
        .serve(&[
            ("TENANTRY_SSE_MAX_STREAMS", "3"),
            ("TENANTRY_SSE_MAX_STREAMS_PER_CREDENTIAL", "2"),
        ])
        .await;
    // A job that waits for approval: its stream stays open with nothing to say.
    let mut body = tenant_body("waiting");
    body["budget"] = json!(2_000_000);
    let accepted: Value = server
        .post("/platform/tenants", &admin)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(accepted["status"], "awaiting_approval");
    let events = format!(
        "/platform/jobs/{}/events",
        accepted["job_id"].as_str().unwrap()
    );

    let admin_streams = vec![
        open_stream(server.get(&events, &admin)).await,
        open_stream(server.get(&events, &admin)).await,
    ];
    let over_token = server.get(&events, &admin).send().await.unwrap();
    assert!(over_token.headers().contains_key("retry-after"));
    assert_problem(
        over_token,
        503,
        "E_RATE_LIMITED",
        "a third stream for one token",
    )
    .await;
    let reader_stream = open_stream(server.get(&events, &reader)).await;
    let over_all = server.get(&events, &reader).send().await.unwrap();
    assert!(over_all.headers().contains_key("retry-after"));
    assert_problem(over_all, 503, "E_RATE_LIMITED", "a fourth stream in all").await;

    // Idle streams cost nothing: no registry read while nothing changes. (A window, not a wait for a condition:
    // the old streams polled every 500 ms, so 3 of them read 12 times in 2 s.)
    assert_eq!(
        metric(&server, &admin, "tenantry_live_streams").await,
        Some(3.0)
    );
    let reads_before = metric(&server, &admin, "tenantry_live_stream_reads_total").await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let reads_after = metric(&server, &admin, "tenantry_live_stream_reads_total").await;
    assert_eq!(reads_before, reads_after, "idle streams read the registry");

    // Revoking the admin's token ends its streams; the reader's stays.
    let token_id = admin
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
    for stream in admin_streams {
        stream_ends_within(stream, 10, "a revoked token's stream").await;
    }
    crate::harness::eventually(
        10,
        || "one stream left".into(),
        || async {
            (metric(&server, &reader, "tenantry_live_streams").await == Some(1.0)).then_some(())
        },
    )
    .await;

    // A session's stream ends when the session does.
    let signed_in = server
        .http
        .post(server.url("/platform/login"))
        .form(&[
            ("email", "reader@example.com"),
            ("password", "correct horse battery"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let session = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let session_stream = open_stream(
        server
            .http
            .get(server.url(&events))
            .header("cookie", &session),
    )
    .await;
    let csrf = csrf_token_of(&server, &session).await;
    let signed_out = server
        .http
        .post(server.url("/platform/logout"))
        .header("cookie", &session)
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 303);
    stream_ends_within(session_stream, 10, "an ended session's stream").await;
    // With room again, the reader may open a second stream.
    let second = open_stream(server.get(&events, &reader)).await;
    drop((second, reader_stream));
    server.terminate().await;
    fleet.cleanup().await;
}

async fn sign_in(server: &Server, email: &str, password: &str, address: &str) -> reqwest::Response {
    server
        .http
        .post(server.url("/platform/login"))
        .header("x-forwarded-for", format!("192.0.2.77, {address}"))
        .form(&[("email", email), ("password", password)])
        .send()
        .await
        .unwrap()
}

/// Guessing passwords is throttled per account and per client address (429 with Retry-After), for a bounded
/// time, and a successful sign-in clears the account's count. Behind a trusted proxy the cookie is `Secure` when
/// the proxy says the client used HTTPS, and the client address is the proxy's last `X-Forwarded-For` entry.
async fn sign_in_is_throttled_per_account_and_address(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    user_with_password(
        &fleet,
        "ops@example.com",
        "PLATFORM_ADMIN",
        "correct horse battery",
    )
    .await;
    let server = fleet.serve(&[("TENANTRY_TRUST_PROXY", "true")]).await;

    for attempt in 1..=5 {
        let wrong = sign_in(&server, "ops@example.com", "wrong password", "10.0.0.1").await;
        assert_eq!(wrong.status(), 401, "wrong password {attempt}");
    }
    let throttled = sign_in(&server, "ops@example.com", "wrong password", "10.0.0.1").await;
    assert!(throttled.headers().contains_key("retry-after"));
    assert_problem(throttled, 429, "E_RATE_LIMITED", "the sixth guess").await;
    // Throttled per account: the right password from elsewhere waits too, for a short while.
    let right_too = sign_in(
        &server,
        "ops@example.com",
        "correct horse battery",
        "10.0.0.2",
    )
    .await;
    assert_problem(
        right_too,
        429,
        "E_RATE_LIMITED",
        "the right password while throttled",
    )
    .await;
    let signed_in = crate::harness::eventually(
        10,
        || "the block ends".into(),
        || async {
            let response = server
                .http
                .post(server.url("/platform/login"))
                .header("x-forwarded-for", "10.0.0.2")
                .header("x-forwarded-proto", "https")
                .form(&[
                    ("email", "ops@example.com"),
                    ("password", "correct horse battery"),
                ])
                .send()
                .await
                .unwrap();
            (response.status() != 429).then_some(response)
        },
    )
    .await;
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("; Secure"),
        "behind a proxy that says https: {cookie}"
    );
    // The success cleared the account's count: a wrong password is a plain 401 again.
    let wrong = sign_in(&server, "ops@example.com", "wrong password", "10.0.0.3").await;
    assert_eq!(wrong.status(), 401);
    let plain = sign_in(
        &server,
        "ops@example.com",
        "correct horse battery",
        "10.0.0.3",
    )
    .await;
    assert_eq!(plain.status(), 303);
    let cookie = plain.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");

    // Per address: guesses spread over many accounts from one address.
    for index in 0..20 {
        let email = format!("nobody{index}@example.com");
        let wrong = sign_in(&server, &email, "wrong password", "10.0.0.9").await;
        assert_eq!(wrong.status(), 401, "guess {index} from one address");
    }
    let from_there = sign_in(
        &server,
        "ops@example.com",
        "correct horse battery",
        "10.0.0.9",
    )
    .await;
    assert!(from_there.headers().contains_key("retry-after"));
    assert_problem(
        from_there,
        429,
        "E_RATE_LIMITED",
        "the address after 20 guesses",
    )
    .await;
    let from_elsewhere = sign_in(
        &server,
        "ops@example.com",
        "correct horse battery",
        "10.0.0.10",
    )
    .await;
    assert_eq!(
        from_elsewhere.status(),
        303,
        "other addresses are not throttled"
    );
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
    // A URL of another scheme for a PostgreSQL server was read as PostgreSQL on localhost (a 503 from the
    // machine's server); it is bad input.
    let response = server
        .post("/platform/servers", &token)
        .json(&json!({ "name": "mixed", "engine": "postgres", "admin_url": "sqlite:///tmp/somewhere", "capacity": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error_code"],
        "E_INVALID_INPUT"
    );
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
