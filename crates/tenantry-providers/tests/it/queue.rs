//! The `queue` kind against the machine's RabbitMQ: the conformance suite, tenants kept apart, quotas and
//! suspension followed, other people's vhosts left alone, and an unreachable server reported without its password.

use crate::conformance::{self, new_installation, unique_slug};
use amqprs::connection::{Connection, OpenConnectionArguments};
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tenantry_core::EngineKind;
use tenantry_providers::credentials::SecretString;
use tenantry_providers::engines::{Installation, Ownership};
use tenantry_providers::resources::{
    Observed, Providers, ResourceProvider, ResourceServer, WantedResource,
};
use tenantry_providers::Error;

fn admin_url() -> String {
    std::env::var("TENANTRY_TEST_RABBITMQ_ADMIN_URL")
        .unwrap_or_else(|_| "http://guest:guest@127.0.0.1:15672".to_owned())
}

fn amqp_url() -> String {
    std::env::var("TENANTRY_TEST_RABBITMQ_AMQP_URL")
        .unwrap_or_else(|_| "amqp://127.0.0.1:5672".to_owned())
}

fn provider() -> Arc<dyn ResourceProvider> {
    Providers::standard()
        .require("queue")
        .expect("the queue kind is registered")
        .clone()
}

fn server(installation: Installation) -> ResourceServer {
    server_at(&admin_url(), installation)
}

fn server_at(admin_url: &str, installation: Installation) -> ResourceServer {
    ResourceServer {
        name: "rabbitmq-test".to_owned(),
        engine: EngineKind::Rabbitmq,
        admin_url: SecretString::new(admin_url.to_owned()),
        public_url: Some(amqp_url()),
        installation,
    }
}

/// The management API with the test's admin credentials, for what the provider must not be the one to do.
struct Admin {
    http: reqwest::Client,
    base: String,
    user: String,
    password: String,
}

impl Admin {
    fn new() -> Admin {
        let url = url::Url::parse(&admin_url()).expect("a valid admin URL");
        Admin {
            http: reqwest::Client::new(),
            base: format!(
                "http://{}:{}",
                url.host_str().expect("a host"),
                url.port().unwrap_or(15672)
            ),
            user: url.username().to_owned(),
            password: url.password().unwrap_or("").to_owned(),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}/api/{path}", self.base))
            .basic_auth(&self.user, Some(&self.password))
            .timeout(Duration::from_secs(10));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the management API answers");
        let status = response.status();
        assert!(
            status.is_success() || (method == reqwest::Method::DELETE && status.as_u16() == 404),
            "{method} {path}: {status}"
        );
        response.json().await.unwrap_or(Value::Null)
    }
}

/// AMQP login with `credentials`' user and password to `vhost`: whether it was let in.
async fn amqp_login(credentials: &SecretString, vhost: &str) -> bool {
    let url = url::Url::parse(credentials.expose()).expect("an amqp URL");
    let arguments = OpenConnectionArguments::new(
        url.host_str().expect("a host"),
        url.port().unwrap_or(5672),
        url.username(),
        url.password().expect("a password"),
    )
    .virtual_host(vhost)
    .finish();
    match tokio::time::timeout(Duration::from_secs(5), Connection::open(&arguments)).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            true
        }
        Ok(Err(_)) => false,
        Err(_) => panic!("the AMQP login to {vhost} got no answer"),
    }
}

/// Gives the tenant's user the management tag: the way in to the management API that `queue_no_management`
/// and `observe` must both notice.
fn grant_management_tag<'a>(
    _server: &'a ResourceServer,
    wanted: &'a WantedResource,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let admin = Admin::new();
        let user = admin
            .send(
                reqwest::Method::GET,
                &format!("users/{}", wanted.name),
                None,
            )
            .await;
        admin
            .send(
                reqwest::Method::PUT,
                &format!("users/{}", wanted.name),
                Some(json!({
                    "password_hash": user["password_hash"],
                    "hashing_algorithm": user["hashing_algorithm"],
                    "tags": "management",
                })),
            )
            .await;
    })
}

#[tokio::test]
async fn queue_passes_the_conformance_suite() {
    let provider = provider();
    let server = server(new_installation());
    // The suite runs in its own task so that a failing case still lets this test remove what it made: the
    // installation is this test's alone, so everything marked ours is the suite's.
    let suite = tokio::spawn({
        let provider = provider.clone();
        let server = server.clone();
        async move {
            conformance::run(
                provider.as_ref(),
                &server,
                &self::server(new_installation()),
                json!({ "max_connections": 10, "max_queues": 20 }),
                grant_management_tag,
            )
            .await
        }
    })
    .await;
    for item in provider.inventory(&server).await.expect("inventory") {
        if item.ownership == Ownership::Ours {
            provider
                .remove(&server, &item.name)
                .await
                .expect("removing what the suite left");
        }
    }
    if let Err(failure) = suite {
        std::panic::resume_unwind(failure.into_panic());
    }
}

#[tokio::test]
async fn a_tenants_credentials_open_its_own_vhost_only() {
    let provider = provider();
    let server = server(new_installation());
    let tenant_a = WantedResource::new(&unique_slug("iso-a"), json!({}));
    let tenant_b = WantedResource::new(&unique_slug("iso-b"), json!({}));
    let credentials_a = provider.new_credentials(&server, &tenant_a).unwrap();
    let credentials_b = provider.new_credentials(&server, &tenant_b).unwrap();
    provider
        .ensure(&server, &tenant_a, &credentials_a)
        .await
        .unwrap();
    provider
        .ensure(&server, &tenant_b, &credentials_b)
        .await
        .unwrap();

    let a_in_a = amqp_login(&credentials_a, &tenant_a.name).await;
    let a_in_b = amqp_login(&credentials_a, &tenant_b.name).await;
    let b_in_a = amqp_login(&credentials_b, &tenant_a.name).await;
    let a_in_default = amqp_login(&credentials_a, "/").await;
    let checks = provider
        .verify(&server, &tenant_a, &credentials_a, &tenant_b)
        .await
        .unwrap();

    provider.remove(&server, &tenant_a.name).await.unwrap();
    provider.remove(&server, &tenant_b.name).await.unwrap();
    assert!(a_in_a, "A cannot log in to its own vhost");
    assert!(!a_in_b, "A's credentials opened B's vhost");
    assert!(!b_in_a, "B's credentials opened A's vhost");
    assert!(!a_in_default, "A's credentials opened the default vhost");
    let neighbour = checks
        .iter()
        .find(|check| check.name == "queue_neighbour_refused")
        .expect("a neighbour check");
    assert!(neighbour.passed, "{checks:?}");
}

#[tokio::test]
async fn quotas_suspension_and_the_password_are_observed_and_converged() {
    let provider = provider();
    let server = server(new_installation());
    let mut wanted = WantedResource::new(&unique_slug("conv"), json!({ "max_connections": 10 }));
    let credentials = provider.new_credentials(&server, &wanted).unwrap();
    provider
        .ensure(&server, &wanted, &credentials)
        .await
        .unwrap();
    let differences = |observed: Observed| match observed {
        Observed::Present { differences, .. } => differences,
        Observed::Absent => panic!("the resource is gone"),
    };

    // The plan's quotas change: observe names the limit, ensure sets it, and a dropped quota lifts the limit.
    wanted.quotas = json!({ "max_connections": 5, "max_queues": 3 });
    let found = differences(
        provider
            .observe(&server, &wanted, Some(&credentials))
            .await
            .unwrap(),
    );
    let limits_before = found.clone();
    provider
        .ensure(&server, &wanted, &credentials)
        .await
        .unwrap();
    let after_limits = provider
        .observe(&server, &wanted, Some(&credentials))
        .await
        .unwrap();
    wanted.quotas = json!({});
    let lifted = differences(
        provider
            .observe(&server, &wanted, Some(&credentials))
            .await
            .unwrap(),
    );
    provider
        .ensure(&server, &wanted, &credentials)
        .await
        .unwrap();
    let after_lifting = provider
        .observe(&server, &wanted, Some(&credentials))
        .await
        .unwrap();

    // Another password than the secret's is noticed.
    let other_credentials = provider.new_credentials(&server, &wanted).unwrap();
    let wrong_password = differences(
        provider
            .observe(&server, &wanted, Some(&other_credentials))
            .await
            .unwrap(),
    );

    // Access to another vhost granted by hand is named, and ensure takes it back.
    let admin = Admin::new();
    admin
        .send(
            reqwest::Method::PUT,
            &format!("permissions/%2F/{}", wanted.name),
            Some(json!({ "configure": "", "write": "", "read": ".*" })),
        )
        .await;
    let widened = differences(
        provider
            .observe(&server, &wanted, Some(&credentials))
            .await
            .unwrap(),
    );
    provider
        .ensure(&server, &wanted, &credentials)
        .await
        .unwrap();
    let login_to_default_after_ensure = amqp_login(&credentials, "/").await;

    // Suspended (ensured with enabled false): no permissions, so no login; resumed, the login works again.
    wanted.enabled = false;
    provider
        .ensure(&server, &wanted, &credentials)
        .await
        .unwrap();
    let suspended = provider
        .observe(&server, &wanted, Some(&credentials))
        .await
        .unwrap();
    let login_while_suspended = amqp_login(&credentials, &wanted.name).await;
    let mut resumed_wanted = wanted.clone();
    resumed_wanted.enabled = true;
    let while_suspended_seen_as_enabled = differences(
        provider
            .observe(&server, &resumed_wanted, Some(&credentials))
            .await
            .unwrap(),
    );
    provider
        .ensure(&server, &resumed_wanted, &credentials)
        .await
        .unwrap();
    let login_after_resuming = amqp_login(&credentials, &wanted.name).await;

    provider.remove(&server, &wanted.name).await.unwrap();
    assert!(
        limits_before.contains(&"max-connections is 10, the plan says 5".to_owned())
            && limits_before.contains(&"max-queues is unlimited, the plan says 3".to_owned()),
        "{limits_before:?}"
    );
    assert!(after_limits.matches(), "{after_limits:?}");
    assert!(
        lifted.contains(&"max-connections is 5, the plan sets no limit".to_owned()),
        "{lifted:?}"
    );
    assert!(after_lifting.matches(), "{after_lifting:?}");
    assert_eq!(
        wrong_password,
        vec!["password does not match the secret".to_owned()]
    );
    assert_eq!(
        widened,
        vec![format!(
            "user {} has permissions on vhost / too",
            wanted.name
        )]
    );
    assert!(
        !login_to_default_after_ensure,
        "ensure left the access to the default vhost"
    );
    assert!(suspended.matches(), "{suspended:?}");
    assert!(!login_while_suspended, "a suspended tenant logged in");
    assert!(
        while_suspended_seen_as_enabled
            .iter()
            .any(|difference| difference.contains("has no permissions")),
        "{while_suspended_seen_as_enabled:?}"
    );
    assert!(login_after_resuming, "a resumed tenant cannot log in");
}

#[tokio::test]
async fn a_vhost_without_a_tenantry_mark_is_left_alone() {
    let provider = provider();
    let server = server(new_installation());
    let wanted = WantedResource::new(&unique_slug("unmarked"), json!({}));
    let admin = Admin::new();
    admin
        .send(
            reqwest::Method::PUT,
            &format!("vhosts/{}", wanted.name),
            Some(json!({ "description": "made by hand" })),
        )
        .await;
    let credentials = provider.new_credentials(&server, &wanted).unwrap();

    let observed = provider.observe(&server, &wanted, None).await;
    let ensured = provider.ensure(&server, &wanted, &credentials).await;
    let removed = provider.remove(&server, &wanted.name).await;
    let disabled = provider.disable(&server, &wanted.name).await;
    let enabled = provider.enable(&server, &wanted.name).await;
    let inventory = provider.inventory(&server).await;
    let user_made = admin
        .http
        .get(format!("{}/api/users/{}", admin.base, wanted.name))
        .basic_auth(&admin.user, Some(&admin.password))
        .send()
        .await
        .expect("the management API answers")
        .status()
        .is_success();

    admin
        .send(
            reqwest::Method::DELETE,
            &format!("vhosts/{}", wanted.name),
            None,
        )
        .await;
    match observed.unwrap() {
        Observed::Present { ownership, .. } => assert_eq!(ownership, Ownership::Unmarked),
        Observed::Absent => panic!("the unmarked vhost is not seen"),
    }
    assert!(matches!(ensured, Err(Error::Foreign(_))), "{ensured:?}");
    assert!(matches!(removed, Err(Error::Foreign(_))), "{removed:?}");
    assert!(matches!(disabled, Err(Error::Foreign(_))), "{disabled:?}");
    assert!(matches!(enabled, Err(Error::Foreign(_))), "{enabled:?}");
    assert!(
        !user_made,
        "ensure made a user for a vhost that is not ours"
    );
    let item = inventory
        .unwrap()
        .into_iter()
        .find(|item| item.name == wanted.name)
        .expect("inventory lists the unmarked vhost");
    assert_eq!(item.ownership, Ownership::Unmarked);
}

#[tokio::test]
async fn check_server_wants_an_administrator() {
    let provider = provider();
    assert!(provider
        .check_server(&server(new_installation()))
        .await
        .is_ok());

    let admin = Admin::new();
    let user = format!(
        "tenantry_test_{}",
        unique_slug("na").as_str().replace('-', "_")
    );
    let password = "not-an-admin-pw";
    admin
        .send(
            reqwest::Method::PUT,
            &format!("users/{user}"),
            Some(json!({ "password": password, "tags": "management" })),
        )
        .await;
    let result = provider
        .check_server(&server_at(
            &format!("http://{user}:{password}@127.0.0.1:15672"),
            new_installation(),
        ))
        .await;
    admin
        .send(reqwest::Method::DELETE, &format!("users/{user}"), None)
        .await;
    match result {
        Err(Error::AdminConnection(message)) => {
            assert!(message.contains("administrator tag"), "{message}");
            assert!(!message.contains(password), "{message}");
        }
        other => panic!("a user without the administrator tag was accepted: {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_without_its_password() {
    let provider = provider();
    let server = server_at("http://guest:secretpw@127.0.0.1:1", new_installation());
    let wanted = WantedResource::new(&unique_slug("down"), json!({}));
    let checked = provider.check_server(&server).await;
    match &checked {
        Err(error @ (Error::AdminConnection(_) | Error::Transient(_))) => {
            let message = error.to_string();
            assert!(message.contains("127.0.0.1:1"), "{message}");
            assert!(!message.contains("secretpw"), "{message}");
        }
        other => panic!("an unreachable server passed its check: {other:?}"),
    }
    match provider.observe(&server, &wanted, None).await {
        Err(error @ Error::Transient(_)) => {
            assert!(!error.to_string().contains("secretpw"), "{error}")
        }
        other => panic!("observing an unreachable server: {other:?}"),
    }
}
