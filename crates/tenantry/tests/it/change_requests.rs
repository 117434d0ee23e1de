//! Tenant admins and change requests against a real `tenantry serve`: a TENANT_ADMIN sees their tenant alone
//! (everything else is 404), files a change request (bad input stores nothing), another platform admin approves
//! it and the set-plan job moves the tenant to the new plan and modules; the requester cannot decide their own;
//! a rejection needs a reason and starts nothing; the console's form and pending list work without JavaScript.

use crate::for_each_engine;
use crate::harness::{eventually, Engine, Fleet, Server};
use crate::plans::{setting, tenant_settings};
use serde_json::{json, Value};

for_each_engine!(a_tenant_admin_requests_a_change_and_another_admin_decides);

const PASSWORD: &str = "correct horse battery staple";
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8";

async fn status_and_code(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// The id of the provision job of `slug`.
async fn provision_job(fleet: &Fleet, slug: &str) -> String {
    fleet
        .jobs()
        .await
        .into_iter()
        .find(|job| job["tenant_slug"] == slug)
        .and_then(|job| job["job_id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no job for {slug}"))
}

async fn wait_for_job(server: &Server, token: &str, job_id: &str) -> Value {
    eventually(
        60,
        || format!("job {job_id} did not finish: {}", server.log()),
        || async {
            let job: Value = server
                .get(&format!("/platform/jobs/{job_id}"), token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            ["complete", "failed", "rolled_back"]
                .contains(&job["status"].as_str().unwrap_or_default())
                .then_some(job)
        },
    )
    .await
}

async fn a_tenant_admin_requests_a_change_and_another_admin_decides(engine: Engine) {
    let fleet = Fleet::new(engine).await;
    fleet.provision("cr-acme", &[]).await.assert_ok();
    fleet.provision("cr-other", &[]).await.assert_ok();

    // Inviting a tenant admin: the tenant is required, must exist, and scopes nobody else.
    let no_tenant = fleet
        .run(&[
            "users",
            "add",
            "--email",
            "x@acme.example",
            "--role",
            "TENANT_ADMIN",
        ])
        .await;
    assert_eq!(
        no_tenant.error_code().as_deref(),
        Some("E_INVALID_INPUT"),
        "{no_tenant:?}"
    );
    let unknown = fleet
        .run(&[
            "users",
            "add",
            "--email",
            "x@acme.example",
            "--role",
            "TENANT_ADMIN",
            "--tenant",
            "cr-nowhere",
        ])
        .await;
    assert_eq!(
        unknown.error_code().as_deref(),
        Some("E_NOT_FOUND"),
        "{unknown:?}"
    );
    let scoped_admin = fleet
        .run(&[
            "users",
            "add",
            "--email",
            "x@acme.example",
            "--role",
            "PLATFORM_ADMIN",
            "--tenant",
            "cr-acme",
        ])
        .await;
    assert_eq!(
        scoped_admin.error_code().as_deref(),
        Some("E_INVALID_INPUT")
    );
    fleet
        .run_with_stdin(
            &[
                "users",
                "add",
                "--email",
                "owner@acme.example",
                "--role",
                "TENANT_ADMIN",
                "--tenant",
                "cr-acme",
                "--password-stdin",
            ],
            PASSWORD,
        )
        .await
        .assert_ok();
    let tenant_admin = fleet
        .run(&["users", "token", "--email", "owner@acme.example"])
        .await
        .stdout
        .trim()
        .to_owned();
    let first_admin = fleet.token_for("first@example.com", "PLATFORM_ADMIN").await;
    let second_admin = fleet
        .token_for("second@example.com", "PLATFORM_ADMIN")
        .await;
    let server = fleet.serve(&[]).await;

    // The tenant admin sees their tenant and its jobs; every other tenant, job, audit row, server and
    // notification is 404.
    let own_job = provision_job(&fleet, "cr-acme").await;
    let other_job = provision_job(&fleet, "cr-other").await;
    for path in [
        "/platform/tenants/cr-acme",
        &format!("/platform/jobs/{own_job}"),
        "/platform/me",
    ] {
        let response = server.get(path, &tenant_admin).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    for path in [
        "/platform/tenants/cr-other",
        &format!("/platform/jobs/{other_job}"),
        &format!("/platform/jobs/{other_job}/events"),
        "/platform/audit?tenant=cr-other",
        "/platform/audit",
        "/platform/tenants",
        "/platform/jobs",
        "/platform/servers",
        "/platform/notifications",
        "/platform/tenants/cr-other/resources",
        "/platform/change-requests?tenant=cr-other",
    ] {
        let (status, problem) =
            status_and_code(server.get(path, &tenant_admin).send().await.unwrap()).await;
        assert_eq!(status, 404, "{path}: {problem}");
        assert_eq!(problem["error_code"], "E_NOT_FOUND", "{path}");
    }

    // Every tenant's metric series are for platform roles, not for a tenant admin's token.
    let metrics = server
        .get("/metrics", &tenant_admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("cr-other"), "no other tenant's series");
    let metrics = server
        .get("/metrics", &first_admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("cr-other"),
        "a platform admin's token sees them"
    );

    // Bad input: a clear code, and nothing stored.
    let file = |slug: &str, body: Value| {
        server
            .post(
                &format!("/platform/tenants/{slug}/change-requests"),
                &tenant_admin,
            )
            .json(&body)
    };
    for (body, code) in [
        (
            json!({ "plan": "platinum", "reason": "more" }),
            "E_INVALID_INPUT",
        ),
        (
            json!({ "modules": { "warp_drive": true }, "reason": "more" }),
            "E_INVALID_INPUT",
        ),
        // starter has no ML module: asking for it needs a plan that has it.
        (
            json!({ "modules": { "ml": true }, "reason": "more" }),
            "E_INVALID_INPUT",
        ),
        (
            json!({ "plan": "enterprise", "reason": "  " }),
            "E_INVALID_INPUT",
        ),
        (json!({ "reason": "nothing asked" }), "E_INVALID_INPUT"),
        (
            json!({ "plan": "starter", "reason": "the plan it has" }),
            "E_CONFLICT",
        ),
    ] {
        let (status, problem) =
            status_and_code(file("cr-acme", body.clone()).send().await.unwrap()).await;
        assert!([409, 422].contains(&status), "{body}: {status} {problem}");
        assert_eq!(problem["error_code"], code, "{body}: {problem}");
    }
    let (status, _) = status_and_code(
        file(
            "cr-other",
            json!({ "plan": "enterprise", "reason": "not mine" }),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "another tenant's request");
    let (status, _) = status_and_code(
        server
            .post("/platform/change-requests", &tenant_admin)
            .json(&json!({ "tenant_slug": "cr-other", "plan": "enterprise", "reason": "not mine" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "another tenant's request, named in the body");
    let stored: Value = server
        .get("/platform/change-requests", &first_admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored, json!([]), "bad input stored nothing");

    // Filed by the tenant admin: enterprise, ML on, BI off.
    let (status, filed) = status_and_code(
        file(
            "cr-acme",
            json!({ "plan": "enterprise", "modules": { "ml": true, "bi": false }, "reason": "ML for the analysts" }),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{filed}");
    assert_eq!(filed["status"], "pending");
    let request_id = filed["id"].as_str().unwrap().to_owned();
    let (status, _) = status_and_code(
        server
            .post(
                &format!("/platform/change-requests/{request_id}/approve"),
                &tenant_admin,
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "a tenant admin does not decide");
    let listed: Value = server
        .get("/platform/change-requests", &tenant_admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    // Another admin approves: the set-plan job moves the tenant, with the module switches.
    let (status, approved) = status_and_code(
        server
            .post(
                &format!("/platform/change-requests/{request_id}/approve"),
                &first_admin,
            )
            .json(&json!({ "reason": "budget agreed" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "approved");
    let job_id = approved["job_id"].as_str().unwrap().to_owned();
    let job = wait_for_job(&server, &tenant_admin, &job_id).await;
    assert_eq!(job["status"], "complete", "{job}");
    assert_eq!(job["kind"], "set_plan");
    let tenant: Value = server
        .get("/platform/tenants/cr-acme", &tenant_admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tenant["plan"], "enterprise");
    assert_eq!(tenant["settings"]["modules"]["ml"], true);
    assert_eq!(tenant["settings"]["modules"]["bi"], false);
    let settings = tenant_settings(&fleet, "cr-acme").await;
    assert_eq!(setting(&settings, "module.ml"), Some("true"));
    assert_eq!(setting(&settings, "module.bi"), Some("false"));
    assert_eq!(setting(&settings, "plan"), Some("enterprise"));
    // A reconcile keeps the tenant's own switches.
    fleet
        .run(&["reconcile", "--slug", "cr-acme"])
        .await
        .assert_ok();
    let settings = tenant_settings(&fleet, "cr-acme").await;
    assert_eq!(
        setting(&settings, "module.bi"),
        Some("false"),
        "{settings:?}"
    );
    let audit = fleet.audit_types("cr-acme").await;
    for event in ["CHANGE_REQUESTED", "CHANGE_APPROVED", "TENANT_PLAN_CHANGED"] {
        assert!(audit.contains(&event.to_owned()), "{event} in {audit:?}");
    }

    // Four eyes: a platform admin's own request is decided by another, and a rejection needs a reason.
    let (status, own) = status_and_code(
        server
            .post("/platform/change-requests", &first_admin)
            .json(&json!({ "tenant_slug": "cr-other", "modules": { "bi": false }, "reason": "tidy up" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{own}");
    let own_id = own["id"].as_str().unwrap().to_owned();
    let jobs_before = fleet.jobs().await.len();
    let (status, problem) = status_and_code(
        server
            .post(
                &format!("/platform/change-requests/{own_id}/approve"),
                &first_admin,
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(problem["error_code"], "E_FORBIDDEN");
    let (status, problem) = status_and_code(
        server
            .post(
                &format!("/platform/change-requests/{own_id}/reject"),
                &second_admin,
            )
            .json(&json!({ "reason": "" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    let (status, rejected) = status_and_code(
        server
            .post(
                &format!("/platform/change-requests/{own_id}/reject"),
                &second_admin,
            )
            .json(&json!({ "reason": "BI stays on for everyone this quarter" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{rejected}");
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(rejected["job_id"], Value::Null);
    assert_eq!(
        fleet.jobs().await.len(),
        jobs_before,
        "a rejection starts no job"
    );
    assert!(fleet
        .audit_types("cr-other")
        .await
        .contains(&"CHANGE_REJECTED".to_owned()));
    let other: Value = server
        .get("/platform/tenants/cr-other", &first_admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["settings"]["modules"]["bi"], true);

    // The CLI reads them.
    let listed = fleet.json(&["change-requests", "list"]).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let shown = fleet.json(&["change-requests", "show", &own_id]).await;
    assert_eq!(shown["status"], "rejected");

    console_works_without_javascript(&fleet, &server).await;
    server.terminate().await;
    fleet.cleanup().await;
}

/// The console: a tenant admin lands on their tenant's page with the "Request a change" form, which works as a
/// plain form post; another tenant's page is 404; a platform admin sees the pending request with Approve.
async fn console_works_without_javascript(fleet: &Fleet, server: &Server) {
    let sign_in = |email: &'static str| async move {
        let signed_in = server
            .http
            .post(server.url("/platform/login"))
            .form(&[("email", email), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(signed_in.status(), 303, "{email} signs in");
        signed_in.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    };
    let cookie = sign_in("owner@acme.example").await;
    let page = |path: &str, cookie: &str| {
        server
            .http
            .get(server.url(path))
            .header("accept", BROWSER_ACCEPT)
            .header("cookie", cookie.to_owned())
    };
    let home = page("/platform", &cookie).send().await.unwrap();
    assert_eq!(home.status(), 303);
    assert_eq!(home.headers()["location"], "/platform/tenants/cr-acme");
    let tenant_page = page("/platform/tenants/cr-acme", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(tenant_page.status(), 200);
    let html = tenant_page.text().await.unwrap();
    assert!(html.contains("Request a change"), "the form is on the page");
    assert!(
        !html.contains("<a href=\"/platform/servers\">Servers</a>"),
        "no platform navigation"
    );
    assert!(html.contains(">My tenant</a>"), "their own navigation");
    let csrf = html
        .split_once("<meta name=\"csrf-token\" content=\"")
        .and_then(|(_, after)| after.split('"').next())
        .unwrap()
        .to_owned();
    let other = page("/platform/tenants/cr-other", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);

    let filed = server
        .http
        .post(server.url("/platform/tenants/cr-acme/change-requests"))
        .header("accept", BROWSER_ACCEPT)
        .header("cookie", cookie.clone())
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("plan", "professional"),
            ("module_ml", "off"),
            ("module_core", ""),
            ("reason", "ML costs too much"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(filed.status(), 303, "{:?}", filed.text().await);
    let pending: Value = fleet
        .json(&["change-requests", "list", "--status", "pending"])
        .await;
    assert_eq!(pending[0]["plan"], "professional", "{pending}");
    assert_eq!(pending[0]["modules"], json!({ "ml": false }));

    fleet
        .run_with_stdin(
            &[
                "users",
                "add",
                "--email",
                "deck@example.com",
                "--role",
                "PLATFORM_ADMIN",
                "--password-stdin",
            ],
            PASSWORD,
        )
        .await
        .assert_ok();
    let admin_cookie = sign_in("deck@example.com").await;
    let html = page("/platform/change-requests", &admin_cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("ML costs too much"),
        "the pending request is listed"
    );
    assert!(html.contains("Approve"), "with its decision form");
}
