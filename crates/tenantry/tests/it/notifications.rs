//! Webhooks through the real binary, to a real HTTP receiver on loopback that answers as each test scripts it
//! and keeps every request: retries with backoff until delivered, a dead delivery retried by an operator, the
//! same `webhook-id` on every attempt (also after a crash between the send and its record), signatures that
//! verify with the subscription's secret and fail with another, and bad subscriptions refused.

use crate::harness::{eventually, Engine, Fleet, Received, Receiver};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;

/// Whether a delivery's `webhook-signature` verifies with `secret`, as the Standard Webhooks spec says: the
/// base64 HMAC-SHA256, keyed by the base64 after `whsec_`, of `id.timestamp.body`.
fn signature_verifies(received: &Received, secret: &str) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(received.headers["webhook-id"].as_bytes());
    mac.update(b".");
    mac.update(received.headers["webhook-timestamp"].as_bytes());
    mac.update(b".");
    mac.update(&received.body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    received.headers["webhook-signature"]
        .split(' ')
        .any(|signature| signature == format!("v1,{expected}"))
}

async fn add_webhook(fleet: &Fleet, url: &str, events: &str) -> (String, String) {
    let added = fleet
        .json(&["webhooks", "add", "--url", url, "--events", events])
        .await;
    (
        added["webhook"]["id"].as_str().unwrap().to_owned(),
        added["secret"].as_str().unwrap().to_owned(),
    )
}

/// The webhook deliveries (each provisioning also queues its invitation e-mail, tested in invitations.rs).
async fn deliveries(fleet: &Fleet) -> Vec<Value> {
    fleet
        .json(&["notifications", "list"])
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|delivery| delivery["channel"] == "webhook")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_retried_until_delivered_signed_and_a_dead_one_is_retried_by_an_operator() {
    let mut fleet = Fleet::new(Engine::Sqlite).await;
    fleet.set_env("TENANTRY_NOTIFY_RETRY_BASE_MS", "50");
    fleet.set_env("TENANTRY_NOTIFY_MAX_ATTEMPTS", "2");
    // First tenant: 500, then 200. Second tenant: 500 twice (dead), then 200 when an operator retries.
    let receiver = Receiver::start(vec![500, 200, 500, 500]).await;
    let (webhook_id, secret) =
        add_webhook(&fleet, &receiver.url, "tenant.provisioned,job.failed").await;
    assert!(secret.starts_with("whsec_"));
    // Audited with who added it, without the secret or the URL's path.
    let audited = fleet
        .run(&["audit", "list", "--event-type", "WEBHOOK_ADDED", "--json"])
        .await;
    assert!(audited.stdout.contains(&webhook_id), "{audited:?}");
    assert!(!audited.stdout.contains(&secret) && !audited.stdout.contains("/hooks/tenantry"));

    // The CLI sends at once (answered 500); a worker retries (answered 200).
    fleet.provision("hook-one", &[]).await.assert_ok();
    let mut worker = fleet.spawn(&["worker", "--workers", "1"], &[]);
    let sent = eventually(
        30,
        || worker.log(),
        || async {
            let list = deliveries(&fleet).await;
            (list.len() == 1 && list[0]["status"] == "sent").then(|| list[0].clone())
        },
    )
    .await;
    assert_eq!(sent["attempts"], 2, "{sent}");
    assert_eq!(sent["event_type"], "tenant.provisioned");
    assert_eq!(sent["webhook_id"], webhook_id.as_str());
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].headers["webhook-id"], got[1].headers["webhook-id"],
        "one id for every attempt"
    );
    assert_eq!(got[0].headers["webhook-id"], sent["id"].as_str().unwrap());
    for delivery in &got {
        assert!(signature_verifies(delivery, &secret), "{delivery:?}");
        assert!(!signature_verifies(
            delivery,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        ));
        let body: Value = serde_json::from_slice(&delivery.body).unwrap();
        assert_eq!(body["type"], "tenant.provisioned");
        assert_eq!(body["data"]["tenant"], "hook-one");
        let text = String::from_utf8_lossy(&delivery.body);
        assert!(
            !text.contains("sqlite://") && !text.contains("password"),
            "{text}"
        );
    }

    // The second tenant's delivery fails twice and is dead, with the receiver's answer as its error.
    fleet.provision("hook-two", &[]).await.assert_ok();
    let dead = eventually(
        30,
        || worker.log(),
        || async {
            deliveries(&fleet)
                .await
                .into_iter()
                .find(|delivery| delivery["status"] == "dead")
        },
    )
    .await;
    assert_eq!(dead["attempts"], 2, "{dead}");
    assert!(
        dead["last_error"].as_str().unwrap().contains("500"),
        "{dead}"
    );
    let id = dead["id"].as_str().unwrap();
    fleet.run(&["notifications", "retry", id]).await.assert_ok();
    let list = deliveries(&fleet).await;
    assert!(
        list.iter().all(|delivery| delivery["status"] == "sent"),
        "{list:?}"
    );
    let got = receiver.received();
    assert_eq!(got.len(), 5);
    assert!(got[2..]
        .iter()
        .all(|delivery| delivery.headers["webhook-id"] == id));

    // A failed job is told too (job.failed), and the event nobody subscribed to is not.
    let failed = fleet
        .provision(
            "hook-three",
            &[("TENANTRY_FAILPOINTS", "admin_seeded.before=error")],
        )
        .await;
    assert_ne!(failed.status, 0);
    eventually(
        30,
        || worker.log(),
        || async {
            let got = receiver.received();
            (got.len() == 6).then_some(())
        },
    )
    .await;
    let body: Value = serde_json::from_slice(&receiver.received()[5].body).unwrap();
    assert_eq!(body["type"], "job.failed", "{body}");
    assert_eq!(body["data"]["tenant"], "hook-three");
    assert_eq!(
        body["data"]["details"]["error_code"], "E_FAILPOINT",
        "{body}"
    );
    worker.signal("TERM");
    assert!(worker.wait(30).await.success());
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_send_sends_again_with_the_same_id() {
    let fleet = Fleet::new(Engine::Sqlite).await;
    let receiver = Receiver::start(Vec::new()).await;
    let (_, secret) = add_webhook(&fleet, &receiver.url, "tenant.provisioned").await;
    let crashed = fleet
        .provision(
            "hook-crash",
            &[("TENANTRY_FAILPOINTS", "notification.after_send=exit")],
        )
        .await;
    assert_eq!(crashed.status, 137, "{crashed:?}");
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(deliveries(&fleet).await[0]["status"], "pending");
    // The process that held it is gone: a worker takes it over at once and sends it again.
    let mut worker = fleet.spawn(&["worker", "--workers", "1"], &[]);
    eventually(
        30,
        || worker.log(),
        || async { (deliveries(&fleet).await[0]["status"] == "sent").then_some(()) },
    )
    .await;
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].headers["webhook-id"], got[1].headers["webhook-id"]);
    assert!(got
        .iter()
        .all(|delivery| signature_verifies(delivery, &secret)));
    worker.signal("TERM");
    assert!(worker.wait(30).await.success());
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_are_refused_and_store_nothing() {
    let fleet = Fleet::new(Engine::Sqlite).await;
    for (url, events, format) in [
        // Internal addresses, as literals: nothing is resolved or sent anywhere.
        ("http://10.1.2.3/hook", "tenant.provisioned", None),
        ("https://192.168.1.20/hook", "tenant.provisioned", None),
        ("https://169.254.169.254/latest", "tenant.provisioned", None),
        ("https://[fd00::1]/hook", "tenant.provisioned", None),
        ("http://93.184.216.34/hook", "tenant.provisioned", None),
        ("not a url", "tenant.provisioned", None),
        ("http://127.0.0.1:9/hook", "tenant.exploded", None),
        ("http://127.0.0.1:9/hook", "tenant.provisioned", Some("xml")),
    ] {
        let mut args = vec!["webhooks", "add", "--url", url, "--events", events];
        if let Some(format) = format {
            args.extend(["--format", format]);
        }
        let refused = fleet.run(&args).await;
        assert_eq!(
            refused.error_code().as_deref(),
            Some("E_INVALID_INPUT"),
            "{url} {events}: {refused:?}"
        );
    }
    assert!(fleet
        .json(&["webhooks", "list"])
        .await
        .as_array()
        .unwrap()
        .is_empty());
    let refused = fleet.run(&["notifications", "retry", "msg_nothing"]).await;
    assert_eq!(refused.error_code().as_deref(), Some("E_NOT_FOUND"));
    fleet.cleanup().await;
}
