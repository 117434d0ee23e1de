//! The cache kind against the machine's Redis (`TENANTRY_TEST_REDIS_URL`): the conformance suite, two real
//! tenants kept apart, the plan's denied commands, a user tenantry did not make, and admin connections that fail.
//! Every test names its tenants at random, under an installation of its own, and removes what it made; none
//! flushes, restarts or reconfigures the server.

use crate::conformance::{self, new_installation, unique_slug};
use redis::aio::MultiplexedConnection;
use std::future::Future;
use std::sync::Arc;
use tenantry_core::EngineKind;
use tenantry_providers::credentials::{self, SecretString};
use tenantry_providers::engines::{Installation, Ownership};
use tenantry_providers::resources::{
    Observed, Providers, ResourceProvider, ResourceServer, WantedResource,
};
use tenantry_providers::Error;

fn redis_url() -> String {
    std::env::var("TENANTRY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn server(installation: Installation) -> ResourceServer {
    ResourceServer {
        name: "test-redis".into(),
        engine: EngineKind::Redis,
        admin_url: SecretString::new(redis_url()),
        public_url: None,
        installation,
    }
}

/// The provider as the platform finds it: through the standard registration.
fn cache_provider() -> Arc<dyn ResourceProvider> {
    Providers::standard()
        .require("cache")
        .expect("the cache kind is registered")
        .clone()
}

async fn connect(url: &str) -> redis::RedisResult<MultiplexedConnection> {
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}

async fn admin_connection() -> MultiplexedConnection {
    connect(&redis_url())
        .await
        .expect("the machine's Redis answers (eval \"$(scripts/test-services)\")")
}

/// Runs `body`, then removes every cache user `installation` made on the machine's Redis and whatever else
/// `extra_cleanup` names, whether `body` passed or panicked.
async fn with_cleanup<F>(installation: &Installation, extra_cleanup: Vec<String>, body: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let outcome = tokio::spawn(body).await;
    let server = server(installation.clone());
    let provider = cache_provider();
    for item in provider.inventory(&server).await.expect("inventory") {
        if item.ownership == Ownership::Ours {
            provider
                .remove(&server, &item.name)
                .await
                .expect("cleaning up");
        }
    }
    let mut admin = admin_connection().await;
    for user in extra_cleanup {
        let _: () = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&user)
            .query_async(&mut admin)
            .await
            .expect("cleaning up");
    }
    if let Err(panicked) = outcome {
        std::panic::resume_unwind(panicked.into_panic());
    }
}

/// Widens the user to every key, as an operator fixing something in a hurry might.
fn widen_to_every_key<'a>(
    server: &'a ResourceServer,
    wanted: &'a WantedResource,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let mut admin = connect(server.admin_url.expose()).await.expect("admin");
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&wanted.name)
            .arg("~*")
            .query_async(&mut admin)
            .await
            .expect("widening the user");
    })
}

#[tokio::test]
async fn conformance_on_the_machines_redis() {
    let installation = new_installation();
    let ours = server(installation.clone());
    let other = server(new_installation());
    with_cleanup(&installation, Vec::new(), async move {
        // A plan that denies more than the base rules, so the comparison of command rules meets a list the
        // server rewrites.
        let quotas = serde_json::json!({ "denied_commands": ["SCAN", "RANDOMKEY"] });
        conformance::run(
            cache_provider().as_ref(),
            &ours,
            &other,
            quotas,
            widen_to_every_key,
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_tenant_cannot_reach_its_neighbours_keys_channels_or_owner_key() {
    let installation = new_installation();
    let server = server(installation.clone());
    with_cleanup(&installation, Vec::new(), async move {
        let provider = cache_provider();
        let tenant_a = WantedResource::new(&unique_slug("iso-a"), serde_json::json!({}));
        let tenant_b = WantedResource::new(&unique_slug("iso-b"), serde_json::json!({}));
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

        let b_key = format!("tenant:{}:secret", tenant_b.slug.as_str());
        let mut as_b = connect(credentials_b.expose()).await.expect("B logs in");
        let _: () = redis::cmd("SET")
            .arg(&b_key)
            .arg("b's data")
            .query_async(&mut as_b)
            .await
            .expect("B writes in its prefix");

        let mut as_a = connect(credentials_a.expose()).await.expect("A logs in");
        let who: String = redis::cmd("ACL")
            .arg("WHOAMI")
            .query_async(&mut as_a)
            .await
            .unwrap();
        assert_eq!(who, tenant_a.name);
        let refused = |result: redis::RedisResult<redis::Value>, what: &str| match result {
            Err(error) => assert_eq!(error.code(), Some("NOPERM"), "{what}: {error}"),
            Ok(value) => panic!("A could {what}: {value:?}"),
        };
        refused(
            redis::cmd("GET").arg(&b_key).query_async(&mut as_a).await,
            "read B's key",
        );
        refused(
            redis::cmd("SET")
                .arg(&b_key)
                .arg("overwritten")
                .query_async(&mut as_a)
                .await,
            "overwrite B's key",
        );
        refused(
            redis::cmd("GET")
                .arg(format!("tenantry:owner:{}", tenant_a.name))
                .query_async(&mut as_a)
                .await,
            "read its own owner key",
        );
        refused(
            redis::cmd("SET")
                .arg(format!("tenantry:owner:{}", tenant_b.name))
                .arg("forged")
                .query_async(&mut as_a)
                .await,
            "forge B's owner key",
        );
        refused(
            redis::cmd("PUBLISH")
                .arg(format!("tenant:{}:events", tenant_b.slug.as_str()))
                .arg("hello")
                .query_async(&mut as_a)
                .await,
            "publish on B's channel",
        );
        refused(
            redis::cmd("KEYS").arg("*").query_async(&mut as_a).await,
            "list every key",
        );
        refused(
            redis::cmd("ACL").arg("LIST").query_async(&mut as_a).await,
            "list the users",
        );
        let b_data: String = redis::cmd("GET")
            .arg(&b_key)
            .query_async(&mut as_b)
            .await
            .unwrap();
        assert_eq!(b_data, "b's data");

        // Removing B deletes its keys and ends its sessions; A is untouched.
        provider.remove(&server, &tenant_b.name).await.unwrap();
        let mut admin = admin_connection().await;
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&b_key)
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!(exists, 0, "removing B left its keys");
        assert!(
            redis::cmd("PING")
                .query_async::<String>(&mut as_b)
                .await
                .is_err(),
            "B's session outlived its user"
        );
        assert!(provider
            .observe(&server, &tenant_a, Some(&credentials_a))
            .await
            .unwrap()
            .matches());
    })
    .await;
}

#[tokio::test]
async fn the_plans_denied_commands_are_refused_and_bad_ones_change_nothing() {
    let installation = new_installation();
    let server = server(installation.clone());
    with_cleanup(&installation, Vec::new(), async move {
        let provider = cache_provider();
        let slug = unique_slug("deny");
        let mut wanted =
            WantedResource::new(&slug, serde_json::json!({ "denied_commands": ["HGETALL"] }));
        let credentials = provider.new_credentials(&server, &wanted).unwrap();
        provider
            .ensure(&server, &wanted, &credentials)
            .await
            .unwrap();
        let mut as_tenant = connect(credentials.expose()).await.unwrap();
        let hash_key = format!("tenant:{}:hash", slug.as_str());
        let _: () = redis::cmd("HSET")
            .arg(&hash_key)
            .arg("field")
            .arg("value")
            .query_async(&mut as_tenant)
            .await
            .expect("HSET stays allowed");
        let denied = redis::cmd("HGETALL")
            .arg(&hash_key)
            .query_async::<redis::Value>(&mut as_tenant)
            .await
            .expect_err("HGETALL is denied");
        assert_eq!(denied.code(), Some("NOPERM"));

        // The plan changes: observe names the commands, ensure applies them.
        wanted.quotas = serde_json::json!({});
        match provider
            .observe(&server, &wanted, Some(&credentials))
            .await
            .unwrap()
        {
            Observed::Present { differences, .. } => assert!(
                differences
                    .iter()
                    .any(|difference| difference.starts_with("commands are")),
                "{differences:?}"
            ),
            Observed::Absent => panic!("the user vanished"),
        }
        provider
            .ensure(&server, &wanted, &credentials)
            .await
            .unwrap();
        assert!(provider
            .observe(&server, &wanted, Some(&credentials))
            .await
            .unwrap()
            .matches());

        // A denied "command" that would smuggle in a rule is refused before anything is written, and so is a
        // name of the right shape that is no command (`allkeys`: Redis refuses `-allkeys`).
        for smuggled in ["GET ~*", "+@all", "allkeys"] {
            let bad =
                WantedResource::new(&slug, serde_json::json!({ "denied_commands": [smuggled] }));
            let outcome = provider.ensure(&server, &bad, &credentials).await;
            assert!(
                matches!(outcome, Err(Error::Refused(_))),
                "{smuggled}: {outcome:?}"
            );
        }
        assert!(provider
            .observe(&server, &wanted, Some(&credentials))
            .await
            .unwrap()
            .matches());
    })
    .await;
}

#[tokio::test]
async fn observe_names_a_wrong_password_a_disabled_user_and_a_lost_one() {
    let installation = new_installation();
    let server = server(installation.clone());
    with_cleanup(&installation, Vec::new(), async move {
        let provider = cache_provider();
        let neighbour = WantedResource::new(&unique_slug("nb"), serde_json::json!({}));
        let mut wanted = WantedResource::new(&unique_slug("obs"), serde_json::json!({}));
        let credentials = provider.new_credentials(&server, &wanted).unwrap();
        let password = credentials::password_in_url(&credentials).unwrap();
        provider
            .ensure(&server, &wanted, &credentials)
            .await
            .unwrap();

        // Someone else's secret: the password differs, and verify fails at the login, not with an error.
        let stale_credentials = provider.new_credentials(&server, &wanted).unwrap();
        let differences =
            observed_differences(provider.as_ref(), &server, &wanted, &stale_credentials).await;
        assert!(
            differences.contains(&"password does not match the secret".to_owned()),
            "{differences:?}"
        );
        let checks = provider
            .verify(&server, &wanted, &stale_credentials, &neighbour)
            .await
            .unwrap();
        assert_eq!(checks.len(), 4);
        assert!(checks.iter().all(|check| !check.passed), "{checks:?}");
        assert_eq!(checks[0].name, "cache_login");
        assert!(!checks[0].detail.contains(password.expose()));

        // Suspended: ensure with the tenant disabled turns the user off, and that is the state it wants.
        wanted.enabled = false;
        provider
            .ensure(&server, &wanted, &credentials)
            .await
            .unwrap();
        assert!(provider
            .observe(&server, &wanted, Some(&credentials))
            .await
            .unwrap()
            .matches());
        let checks = provider
            .verify(&server, &wanted, &credentials, &neighbour)
            .await
            .unwrap();
        assert!(!checks[0].passed, "a suspended tenant logs in: {checks:?}");
        wanted.enabled = true;
        assert_eq!(
            observed_differences(provider.as_ref(), &server, &wanted, &credentials).await,
            ["user is off"]
        );
        provider
            .ensure(&server, &wanted, &credentials)
            .await
            .unwrap();

        // A Redis restart without an ACL file loses the user but keeps the owner key: the user is absent, and
        // ensure makes it again as this installation's.
        let mut admin = admin_connection().await;
        let _: () = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&wanted.name)
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!(
            provider
                .observe(&server, &wanted, Some(&credentials))
                .await
                .unwrap(),
            Observed::Absent
        );
        provider
            .ensure(&server, &wanted, &credentials)
            .await
            .unwrap();
        assert!(provider
            .observe(&server, &wanted, Some(&credentials))
            .await
            .unwrap()
            .matches());
        let checks = provider
            .verify(&server, &wanted, &credentials, &neighbour)
            .await
            .unwrap();
        assert!(checks.iter().all(|check| check.passed), "{checks:?}");
    })
    .await;
}

async fn observed_differences(
    provider: &dyn ResourceProvider,
    server: &ResourceServer,
    wanted: &WantedResource,
    credentials: &SecretString,
) -> Vec<String> {
    match provider
        .observe(server, wanted, Some(credentials))
        .await
        .expect("observe")
    {
        Observed::Present { differences, .. } => differences,
        Observed::Absent => panic!("{} is absent", wanted.name),
    }
}

#[tokio::test]
async fn a_user_without_an_owner_key_is_someone_elses() {
    let installation = new_installation();
    let server = server(installation.clone());
    let slug = unique_slug("unm");
    let wanted = WantedResource::new(&slug, serde_json::json!({}));
    with_cleanup(&installation, vec![wanted.name.clone()], async move {
        let provider = cache_provider();
        let mut admin = admin_connection().await;
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&wanted.name)
            .arg("on")
            .arg(">someone-elses-password")
            .arg(format!("~tenant:{}:*", slug.as_str()))
            .query_async(&mut admin)
            .await
            .unwrap();

        match provider.observe(&server, &wanted, None).await.unwrap() {
            Observed::Present { ownership, .. } => assert_eq!(ownership, Ownership::Unmarked),
            Observed::Absent => panic!("the user is not seen"),
        }
        let inventory = provider.inventory(&server).await.unwrap();
        let item = inventory
            .iter()
            .find(|item| item.name == wanted.name)
            .expect("inventory lists it");
        assert_eq!(item.ownership, Ownership::Unmarked);

        let credentials = provider.new_credentials(&server, &wanted).unwrap();
        for outcome in [
            provider.ensure(&server, &wanted, &credentials).await,
            provider.remove(&server, &wanted.name).await,
            provider.disable(&server, &wanted.name).await,
            provider.enable(&server, &wanted.name).await,
        ] {
            match outcome {
                Err(Error::Foreign(message)) => assert!(message.contains("owner key"), "{message}"),
                other => panic!("an unmarked user was touched: {other:?}"),
            }
        }
        // Untouched: still its owner's password, still on.
        let getuser: redis::Value = redis::cmd("ACL")
            .arg("GETUSER")
            .arg(&wanted.name)
            .query_async(&mut admin)
            .await
            .unwrap();
        let shown = format!("{getuser:?}");
        assert!(shown.contains(&credentials::sha256_hex("someone-elses-password")));
    })
    .await;
}

#[tokio::test]
async fn check_server_warns_that_the_machines_default_user_has_no_password() {
    // This machine's Redis runs with its stock configuration: `default` is on with nopass.
    let warnings = cache_provider()
        .check_server(&server(new_installation()))
        .await
        .expect("the machine's Redis passes the check");
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains("default user is enabled without a password")),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn an_unreachable_admin_url_fails_without_showing_its_password() {
    let password = credentials::generate_database_password();
    let unreachable = ResourceServer {
        name: "nowhere".into(),
        engine: EngineKind::Redis,
        admin_url: SecretString::new(format!(
            "redis://tenantry_admin:{}@127.0.0.1:1",
            password.expose()
        )),
        public_url: None,
        installation: new_installation(),
    };
    let provider = cache_provider();
    let wanted = WantedResource::new(&unique_slug("gone"), serde_json::json!({}));
    let credentials = provider.new_credentials(&unreachable, &wanted).unwrap();
    let failures = [
        provider.check_server(&unreachable).await.map(|_| ()),
        provider.ensure(&unreachable, &wanted, &credentials).await,
        provider
            .observe(&unreachable, &wanted, None)
            .await
            .map(|_| ()),
        provider.remove(&unreachable, &wanted.name).await,
        provider.inventory(&unreachable).await.map(|_| ()),
    ];
    for (index, failure) in failures.into_iter().enumerate() {
        let error = failure.expect_err("nothing answers on port 1");
        let message = error.to_string();
        assert!(
            matches!(error, Error::AdminConnection(_) | Error::Transient(_)),
            "{index}: {error:?}"
        );
        assert!(message.contains("127.0.0.1:1"), "{index}: {message}");
        assert!(!message.contains(password.expose()), "{index}: {message}");
    }
    // Adding a server that cannot be reached is the admin connection's fault.
    assert!(matches!(
        provider.check_server(&unreachable).await,
        Err(Error::AdminConnection(_))
    ));
}

#[tokio::test]
async fn a_wrong_admin_password_is_an_admin_connection_error_without_the_password() {
    // `default` is nopass here, so AUTH as a user that does not exist fails the way a wrong password does.
    let password = credentials::generate_database_password();
    let mut admin_url = url::Url::parse(&redis_url()).unwrap();
    admin_url.set_username("tenantry_no_such_admin").unwrap();
    admin_url.set_password(Some(password.expose())).unwrap();
    let wrong = ResourceServer {
        admin_url: SecretString::new(admin_url.to_string()),
        ..server(new_installation())
    };
    let provider = cache_provider();
    for failure in [
        provider.check_server(&wrong).await.map(|_| ()),
        provider.inventory(&wrong).await.map(|_| ()),
    ] {
        match failure {
            Err(Error::AdminConnection(message)) => {
                assert!(!message.contains(password.expose()), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn observe_names_each_way_a_user_can_be_widened_and_ensure_repairs_it() {
    let installation = new_installation();
    let server = server(installation.clone());
    with_cleanup(&installation, Vec::new(), async move {
        let provider = cache_provider();
        let wanted = WantedResource::new(&unique_slug("wide"), serde_json::json!({}));
        let credentials = provider.new_credentials(&server, &wanted).unwrap();
        let mut admin = admin_connection().await;
        for (rules, named) in [
            (vec!["~*"], "keys are ~* instead of"),
            (vec!["allchannels"], "channels are &* instead of"),
            (vec!["+@admin"], "commands are"),
            (vec!["(~* +get)"], "selector granting more"),
            (vec!["nopass"], "accepts any password"),
            (vec![">a-second-password"], "accepts 2 passwords"),
            (vec!["off"], "user is off"),
        ] {
            provider
                .ensure(&server, &wanted, &credentials)
                .await
                .unwrap();
            let _: () = redis::cmd("ACL")
                .arg("SETUSER")
                .arg(&wanted.name)
                .arg(&rules)
                .query_async(&mut admin)
                .await
                .unwrap();
            let differences =
                observed_differences(provider.as_ref(), &server, &wanted, &credentials).await;
            assert!(
                differences
                    .iter()
                    .any(|difference| difference.contains(named)),
                "{rules:?}: {differences:?}"
            );
            provider
                .ensure(&server, &wanted, &credentials)
                .await
                .unwrap();
            assert_eq!(
                observed_differences(provider.as_ref(), &server, &wanted, &credentials).await,
                Vec::<String>::new(),
                "ensure did not repair {rules:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn verify_counts_only_a_permission_refusal_as_refused() {
    let installation = new_installation();
    let server = server(installation.clone());
    with_cleanup(&installation, Vec::new(), async move {
        let provider = cache_provider();
        let wanted = WantedResource::new(&unique_slug("perm"), serde_json::json!({}));
        let neighbour = WantedResource::new(&unique_slug("nb"), serde_json::json!({}));
        let credentials = provider.new_credentials(&server, &wanted).unwrap();
        provider
            .ensure(&server, &wanted, &credentials)
            .await
            .unwrap();
        // Widened, the tenant reaches its neighbour's key; a GET of it fails only because it holds a hash.
        let neighbour_key = format!("tenant:{}:tenantry-verify", neighbour.slug.as_str());
        let mut admin = admin_connection().await;
        let _: () = redis::pipe()
            .cmd("ACL")
            .arg("SETUSER")
            .arg(&wanted.name)
            .arg("~*")
            .ignore()
            .cmd("HSET")
            .arg(&neighbour_key)
            .arg("field")
            .arg("value")
            .ignore()
            .query_async(&mut admin)
            .await
            .unwrap();
        let checks = provider
            .verify(&server, &wanted, &credentials, &neighbour)
            .await;
        let _: () = redis::cmd("DEL")
            .arg(&neighbour_key)
            .query_async(&mut admin)
            .await
            .unwrap();
        let checks = checks.unwrap();
        let neighbour_check = checks
            .iter()
            .find(|check| check.name == "cache_neighbour_refused")
            .unwrap();
        assert!(!neighbour_check.passed, "{checks:?}");
    })
    .await;
}

#[tokio::test]
async fn credentials_that_log_in_as_default_fail_the_login_check() {
    let installation = new_installation();
    let server = server(installation.clone());
    with_cleanup(&installation, Vec::new(), async move {
        let provider = cache_provider();
        let wanted = WantedResource::new(&unique_slug("who"), serde_json::json!({}));
        let neighbour = WantedResource::new(&unique_slug("nb"), serde_json::json!({}));
        let credentials = provider.new_credentials(&server, &wanted).unwrap();
        provider
            .ensure(&server, &wanted, &credentials)
            .await
            .unwrap();
        // A secret that names another user: this machine's `default` is nopass, so any password lets the
        // connection in, as the wrong user. Only asking the server who the connection is catches it.
        let mut as_default = url::Url::parse(credentials.expose()).unwrap();
        as_default.set_username("default").unwrap();
        let checks = provider
            .verify(
                &server,
                &wanted,
                &SecretString::new(as_default.to_string()),
                &neighbour,
            )
            .await
            .unwrap();
        assert_eq!(checks[0].name, "cache_login");
        assert!(!checks[0].passed, "{checks:?}");
        assert!(checks[0].detail.contains("default"), "{checks:?}");
    })
    .await;
}

#[tokio::test]
async fn disable_ends_the_sessions_already_open() {
    let installation = new_installation();
    let server = server(installation.clone());
    with_cleanup(&installation, Vec::new(), async move {
        let provider = cache_provider();
        let wanted = WantedResource::new(&unique_slug("sess"), serde_json::json!({}));
        let credentials = provider.new_credentials(&server, &wanted).unwrap();
        provider
            .ensure(&server, &wanted, &credentials)
            .await
            .unwrap();
        let mut session = connect(credentials.expose()).await.unwrap();
        let _: String = redis::cmd("PING").query_async(&mut session).await.unwrap();
        provider.disable(&server, &wanted.name).await.unwrap();
        // `ACL SETUSER off` alone leaves this session working.
        assert!(
            redis::cmd("PING")
                .query_async::<String>(&mut session)
                .await
                .is_err(),
            "a session opened before disable still works"
        );
    })
    .await;
}

#[tokio::test]
async fn after_a_redis_restart_the_same_provider_reconnects_and_recreates_the_lost_user() {
    // The suite's own Redis, the one server it may restart (scripts/test-services starts it and writes the
    // restart script).
    let own_redis_url = std::env::var("TENANTRY_TEST_OWN_REDIS_URL")
        .expect("TENANTRY_TEST_OWN_REDIS_URL is set by scripts/test-services");
    let restart = std::env::var("TENANTRY_TEST_REDIS_RESTART")
        .expect("TENANTRY_TEST_REDIS_RESTART is set by scripts/test-services");
    let server = ResourceServer {
        name: "test-own-redis".into(),
        admin_url: SecretString::new(own_redis_url),
        ..server(new_installation())
    };
    let provider = cache_provider();
    let wanted = WantedResource::new(&unique_slug("restart"), serde_json::json!({}));
    let neighbour = WantedResource::new(&unique_slug("nb"), serde_json::json!({}));
    let credentials = provider.new_credentials(&server, &wanted).unwrap();
    provider
        .ensure(&server, &wanted, &credentials)
        .await
        .unwrap();
    assert!(provider
        .observe(&server, &wanted, Some(&credentials))
        .await
        .unwrap()
        .matches());

    let restarted = tokio::process::Command::new(&restart)
        .status()
        .await
        .expect("running the restart script");
    assert!(restarted.success(), "{restart}: {restarted}");

    // The cached admin connection died with the server: the provider opens a new one rather than failing.
    assert_eq!(
        provider
            .observe(&server, &wanted, Some(&credentials))
            .await
            .expect("observe after the restart"),
        Observed::Absent
    );
    provider
        .ensure(&server, &wanted, &credentials)
        .await
        .unwrap();
    let checks = provider
        .verify(&server, &wanted, &credentials, &neighbour)
        .await
        .unwrap();
    assert!(checks.iter().all(|check| check.passed), "{checks:?}");
    provider.remove(&server, &wanted.name).await.unwrap();
}
