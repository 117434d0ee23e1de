//! Webhooks over HTTP against a real `tenantry serve` and a real receiver on loopback: a subscription added
//! over the API answers its secret once, a forbidden URL is refused and stores nothing, a read-only role cannot
//! subscribe or retry, a provisioned tenant's delivery shows in the list and on the console's page, a dead one is
//! sent again by its retry over the API and by the page's Retry form (CSRF-checked), the outbox's counts are on `/metrics`, the console's form shows a new secret once,
//! and removal answers 204 and then 404.

use crate::harness::{eventually, Engine, Fleet, Receiver, Server};
use serde_json::{json, Value};

const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
const PASSWORD: &str = "correct horse battery staple";

/// Signs in through the console's form; returns the session cookie.
async fn sign_in(server: &Server) -> String {
    let signed_in = server
        .http
        .post(server.url("/platform/login"))
        .header("accept", BROWSER_ACCEPT)
        .form(&[("email", "ops@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// The CSRF token a page renders into its `<meta>`.
fn csrf_token(html: &str) -> String {
    let (_, after) = html
        .split_once("<meta name=\"csrf-token\" content=\"")
        .expect("the page carries the CSRF token");
    after.split('"').next().unwrap().to_owned()
}

async fn deliveries(server: &Server, token: &str) -> Vec<Value> {
    let response = server
        .get("/platform/notifications", token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The webhook deliveries (each provisioning also queues its invitation e-mail, tested in invitations.rs).
    let listed: Vec<Value> = response.json().await.unwrap();
    listed
        .into_iter()
        .filter(|delivery| delivery["channel"] == "webhook")
        .collect()
}

async fn webhooks(server: &Server, token: &str) -> Vec<Value> {
    let response = server
        .get("/platform/webhooks", token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_over_the_api_and_the_console() {
    let fleet = Fleet::new(Engine::Sqlite).await;
    let admin = fleet.token_for("admin@example.com", "PLATFORM_ADMIN").await;
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
    let readonly = fleet
        .token_for("reader@example.com", "PLATFORM_READONLY")
        .await;
    // One attempt: each 500 makes the delivery dead, for an operator to retry (over the API, then the console).
    let server = fleet.serve(&[("TENANTRY_NOTIFY_MAX_ATTEMPTS", "1")]).await;
    let receiver = Receiver::start(vec![500, 500]).await;
    let subscription = json!({ "url": receiver.url, "events": ["tenant.provisioned"] });

    let refused = server
        .post("/platform/webhooks", &readonly)
        .json(&subscription)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let bad_url = server
        .post("/platform/webhooks", &admin)
        .json(&json!({ "url": "http://10.1.2.3/x", "events": ["tenant.provisioned"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_url.status(), 422);
    assert_eq!(
        bad_url.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = bad_url.json().await.unwrap();
    assert_eq!(problem["error_code"], "E_INVALID_INPUT");
    assert!(webhooks(&server, &readonly).await.is_empty());

    let created = server
        .post("/platform/webhooks", &admin)
        .json(&subscription)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let webhook_id = created["webhook"]["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let listed = webhooks(&server, &readonly).await;
    assert_eq!(listed.len(), 1);
    // Shown without its path, which may be the receiver's credential.
    let shown = tenantry_registry::shown_url(&receiver.url);
    assert!(shown.ends_with("/…") && !shown.contains("hooks"), "{shown}");
    assert_eq!(listed[0]["url"], shown.as_str());
    assert!(
        !serde_json::to_string(&listed).unwrap().contains(secret),
        "the list never holds the secret"
    );

    let provision = server
        .post("/platform/tenants", &admin)
        .json(&json!({ "slug": "hooked", "display_name": "Hooked Co", "admin_email": "admin@hooked.example" }))
        .send()
        .await
        .unwrap();
    assert_eq!(provision.status(), 202);
    let dead = eventually(
        60,
        || server.log(),
        || async {
            let listed = deliveries(&server, &readonly).await;
            (listed.len() == 1 && listed[0]["status"] == "dead").then(|| listed[0].clone())
        },
    )
    .await;
    assert_eq!(dead["event"], "tenant.provisioned");
    assert_eq!(dead["webhook_id"], webhook_id.as_str());
    assert_eq!(dead["url"], shown.as_str());
    assert_eq!(dead["attempts"], 1);
    assert!(
        dead["last_error"].as_str().unwrap().contains("500"),
        "{dead}"
    );
    let delivery_id = dead["id"].as_str().unwrap().to_owned();

    let cookie = sign_in(&server).await;
    let page = server
        .http
        .get(server.url("/platform/notifications"))
        .header("accept", BROWSER_ACCEPT)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = csrf_token(&html);
    for shown in [
        "<title>Notifications",
        "tenant.provisioned",
        shown.as_str(),
        &format!("/platform/notifications/{delivery_id}/retry"),
        "Add webhook",
    ] {
        assert!(html.contains(shown), "{shown} on the page");
    }
    assert!(!html.contains(secret), "the page never holds the secret");

    let retry_path = format!("/platform/notifications/{delivery_id}/retry");
    let refused = server.post(&retry_path, &readonly).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let retried = server.post(&retry_path, &admin).send().await.unwrap();
    assert_eq!(retried.status(), 204);
    // Its second attempt meets the second 500: dead again, for the console's Retry button.
    eventually(
        30,
        || server.log(),
        || async {
            let listed = deliveries(&server, &readonly).await;
            (listed[0]["status"] == "dead" && listed[0]["attempts"] == 2).then_some(())
        },
    )
    .await;
    let form_retry = |csrf: &str| {
        server
            .http
            .post(server.url(&retry_path))
            .header("accept", BROWSER_ACCEPT)
            .header("cookie", &cookie)
            .form(&[("csrf_token", csrf.to_owned())])
    };
    let forged = form_retry("not-the-token").send().await.unwrap();
    assert_eq!(
        forged.status(),
        403,
        "the form needs the session's CSRF token"
    );
    let from_page = form_retry(&csrf).send().await.unwrap();
    assert_eq!(from_page.status(), 303);
    assert_eq!(from_page.headers()["location"], "/platform/notifications");
    eventually(
        30,
        || server.log(),
        || async { (deliveries(&server, &readonly).await[0]["status"] == "sent").then_some(()) },
    )
    .await;
    let got = receiver.received();
    assert_eq!(got.len(), 3);
    assert!(got
        .iter()
        .all(|request| request.headers["webhook-id"] == delivery_id));
    let again = server.post(&retry_path, &admin).send().await.unwrap();
    assert_eq!(again.status(), 404, "only a dead delivery is retried");

    let metrics = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "tenantry_notifications{channel=\"webhook\",status=\"sent\"} 1",
        "tenantry_notifications{channel=\"webhook\",status=\"dead\"} 0",
        "tenantry_notifications_sent_total{event=\"tenant.provisioned\"} 1",
        "tenantry_notifications_dead_total{event=\"tenant.provisioned\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    // The console's form: the new secret on the result page, once; its Remove button.
    let added = server
        .post("/platform/webhooks", &admin)
        .header("accept", BROWSER_ACCEPT)
        .form(&[
            ("url", receiver.url.as_str()),
            ("events", "job.failed"),
            ("events", "tenant.offboarded"),
            ("format", "slack"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    let added_html = added.text().await.unwrap();
    assert!(added_html.contains("whsec_"), "the secret is shown once");
    let listed = webhooks(&server, &admin).await;
    assert_eq!(listed.len(), 2);
    let form_webhook = listed
        .iter()
        .find(|webhook| webhook["format"] == "slack")
        .unwrap();
    assert_eq!(
        form_webhook["events"],
        json!(["job.failed", "tenant.offboarded"])
    );
    let bad_form = server
        .post("/platform/webhooks", &admin)
        .header("accept", BROWSER_ACCEPT)
        .form(&[("url", "http://10.1.2.3/x"), ("events", "job.failed")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_form.status(), 422);
    assert!(bad_form.text().await.unwrap().contains("E_INVALID_INPUT"));
    let removed = server
        .post(
            &format!(
                "/platform/webhooks/{}/remove",
                form_webhook["id"].as_str().unwrap()
            ),
            &admin,
        )
        .header("accept", BROWSER_ACCEPT)
        .form(&[("csrf_token", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 303);
    assert_eq!(removed.headers()["location"], "/platform/notifications");

    let path = format!("/platform/webhooks/{webhook_id}");
    let refused = server
        .http
        .delete(server.url(&path))
        .bearer_auth(&readonly)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let deleted = server
        .http
        .delete(server.url(&path))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = server
        .http
        .delete(server.url(&path))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    assert!(webhooks(&server, &admin).await.is_empty());

    assert!(server.terminate().await.success());
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}
