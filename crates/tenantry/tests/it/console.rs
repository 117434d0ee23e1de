//! The web console over HTTP against a real `tenantry serve`: the same URL answers a browser with a page and a
//! program with JSON; a page view without a session goes to the sign-in form; the wizard works as plain form
//! posts (CSRF-checked) and ends on the job's page; data is escaped. The browser tests in `e2e/` drive the rest.

use crate::harness::{Engine, Fleet, Server};
use serde_json::Value;

const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
const PASSWORD: &str = "correct horse battery staple";

fn page(server: &Server, path: &str, cookie: &str) -> reqwest::RequestBuilder {
    server
        .http
        .get(server.url(path))
        .header("accept", BROWSER_ACCEPT)
        .header("cookie", cookie)
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The CSRF token a page renders into its `<meta>`.
fn csrf_token(html: &str) -> String {
    let (_, after) = html
        .split_once("<meta name=\"csrf-token\" content=\"")
        .expect("the page carries the CSRF token");
    after.split('"').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_json_share_urls_and_forms_work_without_javascript() {
    let fleet = Fleet::new(Engine::Sqlite).await;
    fleet
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
            PASSWORD,
        )
        .await
        .assert_ok();
    let token = fleet
        .run(&["users", "token", "--email", "ops@example.com"])
        .await
        .stdout
        .trim()
        .to_owned();
    let server = fleet.serve(&[]).await;

    // No session: a browser is sent to sign in (and back); a program gets the 401 problem.
    let anonymous = page(&server, "/platform/tenants?status=active", "")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 303);
    assert_eq!(
        header(&anonymous, "location"),
        "/platform/login?next=%2Fplatform%2Ftenants%3Fstatus%3Dactive"
    );
    let program = server
        .http
        .get(server.url("/platform/tenants"))
        .send()
        .await
        .unwrap();
    assert_eq!(program.status(), 401);
    assert_eq!(header(&program, "content-type"), "application/problem+json");
    let login_form = page(&server, "/platform/login", "").send().await.unwrap();
    assert_eq!(login_form.status(), 200);
    let login_html = login_form.text().await.unwrap();
    for label in [">Email<", ">Password<", ">Sign in<"] {
        assert!(login_html.contains(label), "{label} in the sign-in form");
    }

    // A wrong password shows the form again; the right one signs in and goes where it was asked to.
    let refused = server
        .http
        .post(server.url("/platform/login"))
        .header("accept", BROWSER_ACCEPT)
        .form(&[("email", "ops@example.com"), ("password", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(header(&refused, "content-type").starts_with("text/html"));
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("Wrong email or password."));
    let signed_in = server
        .http
        .post(server.url("/platform/login"))
        .header("accept", BROWSER_ACCEPT)
        .form(&[
            ("email", "ops@example.com"),
            ("password", PASSWORD),
            ("next", "/platform/servers"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    assert_eq!(header(&signed_in, "location"), "/platform/servers");
    let cookie = header(&signed_in, "set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    // One URL, two representations.
    let html = page(&server, "/platform/tenants", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(html.status(), 200);
    assert!(header(&html, "content-type").starts_with("text/html"));
    assert_eq!(header(&html, "vary"), "accept");
    assert!(header(&html, "content-security-policy").contains("script-src 'self'"));
    assert_eq!(header(&html, "cache-control"), "no-store");
    let html = html.text().await.unwrap();
    assert!(html.contains("No tenants yet."));
    assert!(
        html.contains("href=\"/platform/tenants/new\""),
        "admins get New tenant"
    );
    let csrf = csrf_token(&html);
    let json = server
        .http
        .get(server.url("/platform/tenants"))
        .header("accept", "application/json")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 200);
    assert_eq!(json.json::<Value>().await.unwrap(), serde_json::json!([]));

    // The assets are public and cacheable.
    let stylesheet = server
        .http
        .get(server.url("/platform/assets/console.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(stylesheet.status(), 200);
    assert!(header(&stylesheet, "content-type").starts_with("text/css"));
    assert!(!header(&stylesheet, "etag").is_empty());

    // The wizard without JavaScript: a step with an error comes back with it at the field.
    let wizard_form = |action: &str, slug: &str, csrf: &str| {
        vec![
            ("csrf_token", csrf.to_owned()),
            ("idempotency_key", "wizard-test-1".to_owned()),
            ("step", "1".to_owned()),
            ("action", action.to_owned()),
            ("slug", slug.to_owned()),
            ("display_name", "<script>alert(1)</script> Co".to_owned()),
            ("admin_email", "admin@escaped.example".to_owned()),
            ("plan", "starter".to_owned()),
            ("region", "local".to_owned()),
            ("server", String::new()),
        ]
    };
    let post_form = |form: Vec<(&'static str, String)>| {
        server
            .http
            .post(server.url("/platform/tenants/new"))
            .header("accept", BROWSER_ACCEPT)
            .header("cookie", &cookie)
            .form(&form)
            .send()
    };
    let bad_step = post_form(wizard_form("next", "Bad_Slug", &csrf))
        .await
        .unwrap();
    assert_eq!(bad_step.status(), 422);
    let bad_step = bad_step.text().await.unwrap();
    assert!(
        bad_step.contains("(E_INVALID_SLUG)"),
        "the slug error is shown"
    );
    let forged = post_form(wizard_form("provision", "escaped", "not-the-token"))
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let provisioned = post_form(wizard_form("provision", "escaped", &csrf))
        .await
        .unwrap();
    assert_eq!(provisioned.status(), 303);
    let job_page = header(&provisioned, "location");
    let job_id = job_page
        .strip_prefix("/platform/jobs/")
        .expect("the wizard ends on the job's page")
        .to_owned();
    // The same key and form again (a double submit): the same job.
    let again = post_form(wizard_form("provision", "escaped", &csrf))
        .await
        .unwrap();
    assert_eq!(header(&again, "location"), job_page);
    let done = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let job: Value = server
                .get(&format!("/platform/jobs/{job_id}"), &token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if job["status"] == "complete" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "the job completes");
    let job_html = page(&server, &job_page, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(job_html.contains("data-status=\"complete\""));
    assert!(job_html.contains("request_validated"));

    // What a user typed is escaped on every page that shows it.
    let tenant_html = page(&server, "/platform/tenants/escaped", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(tenant_html.contains("&lt;script&gt;alert(1)&lt;/script&gt; Co"));
    assert!(!tenant_html.contains("<script>alert(1)"));

    // A program asking for `/platform/tenants/new` means the tenant with that slug, not the wizard.
    let tenant_named_new = server
        .get("/platform/tenants/new", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(tenant_named_new.status(), 404);
    assert_eq!(
        tenant_named_new.json::<Value>().await.unwrap()["error_code"],
        "E_NOT_FOUND"
    );
    // Unknown paths and records are pages for a browser too.
    let missing = page(&server, "/platform/jobs/no-such-job", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("E_NOT_FOUND"));

    server.terminate().await;
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}
