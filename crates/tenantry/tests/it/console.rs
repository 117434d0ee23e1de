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

/// A platform admin `ops@example.com` with [`PASSWORD`] (for the sign-in form) and an API token, and a running
/// `serve`.
async fn admin_and_server(fleet: &Fleet) -> (String, Server) {
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
        .await;
    token.assert_ok();
    (token.stdout.trim().to_owned(), fleet.serve(&[]).await)
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
    let (token, server) = admin_and_server(&fleet).await;

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

/// Signs `email` in through the form; returns the session cookie and the CSRF token the wizard's page carries.
async fn sign_in_for_wizard(server: &Server) -> (String, String) {
    let signed_in = server
        .http
        .post(server.url("/platform/login"))
        .header("accept", BROWSER_ACCEPT)
        .form(&[("email", "ops@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = header(&signed_in, "set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let wizard = page(server, "/platform/tenants/new", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_token(&wizard);
    (cookie, csrf)
}

/// The text of the error slot `id` (`<p class="field-error" id=… role="alert">…</p>`), quotes unescaped.
fn error_at(html: &str, id: &str) -> String {
    let (_, after) = html
        .split_once(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("the page has no element {id}"));
    let (_, text) = after.split_once('>').unwrap();
    text.split("</p>")
        .next()
        .unwrap()
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// The step the page shows.
fn shown_step(html: &str) -> String {
    let (_, after) = html
        .split_once("name=\"step\" value=\"")
        .expect("the wizard carries its step");
    after.split('"').next().unwrap().to_owned()
}

/// Every field of the seven-step wizard, valid, as a browser without JavaScript posts them (module boxes and data
/// source rows repeat their names).
fn seven_step_form(csrf: &str, step: u8, action: &str, url: &str) -> Vec<(String, String)> {
    [
        ("csrf_token", csrf),
        ("idempotency_key", "wizard-seven-1"),
        ("step", &step.to_string()),
        ("action", action),
        ("display_name", "Seven Steps Co"),
        ("slug", "seven"),
        ("description", "A clinic network\nwith two sites"),
        ("plan", "starter"),
        ("admin_email", "admin@seven.example"),
        ("contact_name", "Ada Lovelace"),
        ("budget", ""),
        ("region", "local"),
        ("resource_tier", "large"),
        ("isolation", "database"),
        ("server", ""),
        ("ds_name", "warehouse"),
        ("ds_kind", "postgres"),
        ("ds_url", url),
        ("modules_chosen", "true"),
        ("modules", "core"),
        ("modules", "context_graph"),
        ("auth_method", "oidc"),
        ("mfa_policy", "required"),
        ("allowed_cidrs", "10.0.0.0/8\n127.0.0.1\n"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect()
}

fn replaced(mut form: Vec<(String, String)>, key: &str, values: &[&str]) -> Vec<(String, String)> {
    form.retain(|(name, _)| name != key);
    form.extend(
        values
            .iter()
            .map(|value| (key.to_owned(), (*value).to_owned())),
    );
    form
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seven_step_wizard_without_javascript_checks_each_step_and_keeps_the_url_secret() {
    let fleet = Fleet::new(Engine::Sqlite).await;
    let (token, server) = admin_and_server(&fleet).await;
    let (cookie, csrf) = sign_in_for_wizard(&server).await;
    let post = |form: Vec<(String, String)>| {
        server
            .http
            .post(server.url("/platform/tenants/new"))
            .header("accept", BROWSER_ACCEPT)
            .header("cookie", &cookie)
            .form(&form)
            .send()
    };
    // The URL carries a password: it must reach the secret store and no page after the submit.
    let secret_url = "postgres://reader:s3cret-pw@127.0.0.1:5432/warehouse";

    // Step 1: a description of 501 characters is refused at its field, and every value stays.
    let long = "x".repeat(501);
    let form = replaced(
        seven_step_form(&csrf, 1, "next", secret_url),
        "description",
        &[&long],
    );
    let answer = post(form).await.unwrap();
    assert_eq!(answer.status(), 422);
    let html = answer.text().await.unwrap();
    assert_eq!(shown_step(&html), "1");
    let error = error_at(&html, "field-description-error");
    assert!(
        error.contains("at most 500 characters; it has 501 (E_INVALID_INPUT)"),
        "{error}"
    );
    assert!(
        html.contains(&format!(">{long}</textarea>")),
        "the description is kept"
    );
    assert!(html.contains("aria-invalid=\"true\""));
    assert!(
        html.contains("501 / 500"),
        "the counter counts without JavaScript"
    );
    assert!(
        html.contains("value=\"Ada Lovelace\""),
        "the other values are kept"
    );
    let answer = post(seven_step_form(&csrf, 1, "next", secret_url))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let html = answer.text().await.unwrap();
    assert_eq!(shown_step(&html), "2");
    // Each tier with its numbers for the plan: large doubles the connection limit.
    assert!(html.contains("data-tier-detail=\"large\""));

    // Step 2: shared compute on a plan whose tenants get their own database is refused at the isolation field.
    let form = replaced(
        seven_step_form(&csrf, 2, "next", secret_url),
        "isolation",
        &["schema"],
    );
    let answer = post(form).await.unwrap();
    assert_eq!(answer.status(), 422);
    let html = answer.text().await.unwrap();
    assert_eq!(shown_step(&html), "2");
    let error = error_at(&html, "field-isolation-error");
    assert!(
        error.contains("plan \"starter\" gives each tenant its own database"),
        "{error}"
    );
    assert!(
        html.contains("value=\"schema\" checked"),
        "the choice is kept"
    );
    let answer = post(seven_step_form(&csrf, 2, "next", secret_url))
        .await
        .unwrap();
    assert_eq!(shown_step(&answer.text().await.unwrap()), "3");

    // Step 3: "Add data source" re-renders with one more row; a URL that is not a URL is refused at its row.
    let no_rows: Vec<(String, String)> = seven_step_form(&csrf, 3, "add_source", secret_url)
        .into_iter()
        .filter(|(name, _)| !name.starts_with("ds_"))
        .collect();
    let html = post(no_rows).await.unwrap().text().await.unwrap();
    assert_eq!(shown_step(&html), "3");
    assert!(html.contains("id=\"field-ds-0-url\""), "one row after Add");
    let answer = post(seven_step_form(&csrf, 3, "next", "not a url"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 422);
    let html = answer.text().await.unwrap();
    let error = error_at(&html, "field-ds-0-url-error");
    assert!(error.contains("data source URL is not a URL"), "{error}");
    assert!(html.contains("value=\"warehouse\""), "the row is kept");
    // Check: the machine's PostgreSQL answers; the result is at the row and names the endpoint, not the URL.
    let html = post(seven_step_form(&csrf, 3, "check_source:0", secret_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let check = error_at(&html, "field-ds-0-url-error");
    assert!(check.is_empty(), "{check}");
    let (_, status) = html.split_once("class=\"data-source-check\"").unwrap();
    let status = status.split("</p>").next().unwrap();
    assert!(
        status.contains("reachable") && status.contains("postgres://127.0.0.1:5432"),
        "{status}"
    );
    assert!(!status.contains("s3cret"), "{status}");
    let answer = post(seven_step_form(&csrf, 3, "next", secret_url))
        .await
        .unwrap();
    assert_eq!(shown_step(&answer.text().await.unwrap()), "4");

    // Step 4: a module the plan does not have, or one that does not exist, is refused at the modules field.
    let form = replaced(
        seven_step_form(&csrf, 4, "next", secret_url),
        "modules",
        &["core", "ml"],
    );
    let answer = post(form).await.unwrap();
    assert_eq!(answer.status(), 422);
    let html = answer.text().await.unwrap();
    let error = error_at(&html, "field-modules-error");
    assert!(error.contains("does not allow module \"ml\""), "{error}");
    assert!(html.contains(
        "id=\"field-module-ml\" type=\"checkbox\" name=\"modules\" value=\"ml\" disabled"
    ));
    let form = replaced(
        seven_step_form(&csrf, 4, "next", secret_url),
        "modules",
        &["crm"],
    );
    let html = post(form).await.unwrap().text().await.unwrap();
    assert!(error_at(&html, "field-modules-error").contains("module \"crm\" does not exist"));
    let answer = post(seven_step_form(&csrf, 4, "next", secret_url))
        .await
        .unwrap();
    assert_eq!(shown_step(&answer.text().await.unwrap()), "5");

    // Step 5: every bad allowlist line is named by its number.
    let form = replaced(
        seven_step_form(&csrf, 5, "next", secret_url),
        "allowed_cidrs",
        &["10.0.0.0/8\n10.0.0.0/33\nnot-a-network"],
    );
    let answer = post(form).await.unwrap();
    assert_eq!(answer.status(), 422);
    let html = answer.text().await.unwrap();
    let error = error_at(&html, "field-allowed_cidrs-error");
    assert!(error.contains("line 2: \"10.0.0.0/33\""), "{error}");
    assert!(error.contains("line 3: \"not-a-network\""), "{error}");
    assert!(
        html.contains("10.0.0.0/33\nnot-a-network</textarea>"),
        "the list is kept"
    );
    let answer = post(seven_step_form(&csrf, 5, "next", secret_url))
        .await
        .unwrap();
    let html = answer.text().await.unwrap();
    assert_eq!(shown_step(&html), "6");

    // Step 6: the Review has every choice and the large tier's price (twice the plan's).
    for shown in [
        "Ada Lovelace",
        "warehouse (postgres)",
        "Core (AI + Agents), Context Graph",
        "oidc",
        "required",
        "10.0.0.0/8, 127.0.0.1",
    ] {
        assert!(html.contains(shown), "the Review shows {shown}");
    }
    let plans: Value = server
        .get("/platform/plans", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let starter = plans
        .as_array()
        .and_then(|plans| {
            plans
                .iter()
                .find(|offer| offer["plan"]["name"] == "starter")
        })
        .unwrap_or_else(|| panic!("starter in {plans}"));
    let large_price = starter["monthly_estimate"].as_f64().unwrap() * 2.0;
    let currency = starter["currency"].as_str().unwrap();
    assert!(
        html.contains(&format!("{large_price:.2} {currency} per month in local")),
        "the tier's price"
    );

    // Provision: the job page, then the job completes; neither it nor the tenant's page has the URL.
    let provisioned = post(seven_step_form(&csrf, 6, "provision", secret_url))
        .await
        .unwrap();
    assert_eq!(provisioned.status(), 303);
    let job_page = header(&provisioned, "location");
    let job_id = job_page.strip_prefix("/platform/jobs/").unwrap().to_owned();
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
                return job;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the job completes");
    assert!(!done.to_string().contains("s3cret"), "{done}");
    for path in [
        job_page.as_str(),
        "/platform/tenants/seven",
        "/platform/tenants",
        "/platform/audit",
    ] {
        let html = page(&server, path, &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!html.contains("s3cret"), "{path} shows the data source URL");
        assert!(
            !html.contains("reader:"),
            "{path} shows the data source's user"
        );
    }
    let tenant: Value = server
        .get("/platform/tenants/seven", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!tenant.to_string().contains("s3cret"), "{tenant}");

    server.terminate().await;
    fleet.cleanup().await;
}
