//! The cases every [`ResourceProvider`] passes, whatever its kind: ensure twice, remove twice and when absent,
//! observe after each, inventory, verify of a good and a broken resource, disable and enable, and another
//! installation's object left alone.

use std::future::Future;
use std::pin::Pin;
use tenantry_core::Slug;
use tenantry_providers::engines::{Installation, Ownership};
use tenantry_providers::resources::{Observed, ResourceProvider, ResourceServer, WantedResource};
use tenantry_providers::Error;

/// A fresh installation id, so that concurrent runs (and other installations on the machine's servers) never
/// share a name.
pub fn new_installation() -> Installation {
    let id: String = (0..16)
        .map(|_| format!("{:x}", rand::random::<u8>() % 16))
        .collect();
    Installation::new(&id).expect("a valid installation id")
}

/// A slug no other run uses.
pub fn unique_slug(prefix: &str) -> Slug {
    let suffix: String = (0..8)
        .map(|_| (b'a' + rand::random::<u8>() % 26) as char)
        .collect();
    Slug::parse(&format!("{prefix}-{suffix}")).expect("a valid slug")
}

/// Breaks a resource by hand the way an operator or attacker might (widens its permissions), for the case
/// that `verify` and `observe` must notice.
pub type Breaker = for<'a> fn(
    &'a ResourceServer,
    &'a WantedResource,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Runs every case on `server` (this installation's) and `other` (the same server as another installation).
pub async fn run(
    provider: &dyn ResourceProvider,
    server: &ResourceServer,
    other: &ResourceServer,
    quotas: serde_json::Value,
    break_it: Breaker,
) {
    let slug = unique_slug("conf");
    let wanted = WantedResource::new(&slug, quotas.clone());
    let neighbour = WantedResource::new(&unique_slug("nb"), quotas.clone());
    let credentials = provider
        .new_credentials(server, &wanted)
        .expect("credentials");

    // Absent before anything.
    assert_eq!(
        provider
            .observe(server, &wanted, Some(&credentials))
            .await
            .expect("observe"),
        Observed::Absent
    );
    provider
        .remove(server, &wanted.name)
        .await
        .expect("removing what is absent succeeds");

    // Ensure twice: the second changes nothing and both leave it matching.
    for round in 0..2 {
        provider
            .ensure(server, &wanted, &credentials)
            .await
            .unwrap_or_else(|error| panic!("ensure round {round}: {error}"));
        let observed = provider
            .observe(server, &wanted, Some(&credentials))
            .await
            .expect("observe");
        assert!(observed.matches(), "after ensure {round}: {observed:?}");
    }

    // Verify passes with its own credentials, and its neighbour's namespace is refused.
    let checks = provider
        .verify(server, &wanted, &credentials, &neighbour)
        .await
        .expect("verify");
    assert!(!checks.is_empty());
    assert!(
        checks.iter().all(|check| check.passed),
        "a good resource fails verify: {checks:?}"
    );

    if provider.rotates(server.engine) {
        rotation(provider, server, &wanted, &credentials, &neighbour).await;
    }

    // Inventory finds it, as ours (a resource no registry knows is what doctor calls an orphan).
    let inventory = provider.inventory(server).await.expect("inventory");
    let found = inventory
        .iter()
        .find(|item| item.name == wanted.name)
        .expect("inventory lists the resource");
    assert_eq!(found.ownership, Ownership::Ours);

    // Another installation sees it as foreign and may not take it over or remove it.
    let other_credentials = provider
        .new_credentials(other, &wanted)
        .expect("credentials");
    match provider
        .observe(other, &wanted, None)
        .await
        .expect("observe")
    {
        Observed::Present { ownership, .. } => {
            assert!(matches!(ownership, Ownership::Foreign(_)), "{ownership:?}")
        }
        Observed::Absent => panic!("the other installation does not see the resource"),
    }
    assert!(matches!(
        provider.ensure(other, &wanted, &other_credentials).await,
        Err(Error::Foreign(_))
    ));
    assert!(matches!(
        provider.remove(other, &wanted.name).await,
        Err(Error::Foreign(_))
    ));

    // Disabled, its credentials stop working; enabled, they work again.
    provider
        .disable(server, &wanted.name)
        .await
        .expect("disable");
    provider
        .disable(server, &wanted.name)
        .await
        .expect("disable twice");
    let checks = provider
        .verify(server, &wanted, &credentials, &neighbour)
        .await
        .expect("verify");
    assert!(
        checks.iter().any(|check| !check.passed),
        "a disabled resource still lets its tenant in: {checks:?}"
    );
    provider.enable(server, &wanted.name).await.expect("enable");
    provider
        .enable(server, &wanted.name)
        .await
        .expect("enable twice");
    let checks = provider
        .verify(server, &wanted, &credentials, &neighbour)
        .await
        .expect("verify");
    assert!(checks.iter().all(|check| check.passed), "{checks:?}");

    // Broken by hand: observe names the difference, verify fails, ensure repairs it.
    break_it(server, &wanted).await;
    match provider
        .observe(server, &wanted, Some(&credentials))
        .await
        .expect("observe")
    {
        Observed::Present { differences, .. } => {
            assert!(!differences.is_empty(), "observe missed the widening")
        }
        Observed::Absent => panic!("breaking removed the resource"),
    }
    let checks = provider
        .verify(server, &wanted, &credentials, &neighbour)
        .await
        .expect("verify");
    assert!(
        checks.iter().any(|check| !check.passed),
        "verify passed a widened resource: {checks:?}"
    );
    provider
        .ensure(server, &wanted, &credentials)
        .await
        .expect("ensure repairs");
    assert!(provider
        .observe(server, &wanted, Some(&credentials))
        .await
        .expect("observe")
        .matches());

    // Remove twice: gone after each, and absent from the inventory.
    for round in 0..2 {
        provider
            .remove(server, &wanted.name)
            .await
            .unwrap_or_else(|error| panic!("remove round {round}: {error}"));
        assert_eq!(
            provider
                .observe(server, &wanted, Some(&credentials))
                .await
                .expect("observe"),
            Observed::Absent
        );
    }
    let inventory = provider.inventory(server).await.expect("inventory");
    assert!(inventory.iter().all(|item| item.name != wanted.name));
}

/// Whether `credentials` pass every check of `verify` (a refused login fails the kind's login check).
async fn logs_in(
    provider: &dyn ResourceProvider,
    server: &ResourceServer,
    wanted: &WantedResource,
    credentials: &tenantry_providers::credentials::SecretString,
    neighbour: &WantedResource,
) -> bool {
    provider
        .verify(server, wanted, credentials, neighbour)
        .await
        .expect("verify")
        .iter()
        .all(|check| check.passed)
}

/// The two halves of a rotation: after `rotate_add` both credentials log in; after `rotate_retire` keeping the
/// new ones, only they do (twice changes nothing); `rotate_retire` keeping the old ones (the undo) brings them
/// back and refuses the new ones, and the resource matches the old credentials again.
async fn rotation(
    provider: &dyn ResourceProvider,
    server: &ResourceServer,
    wanted: &WantedResource,
    old: &tenantry_providers::credentials::SecretString,
    neighbour: &WantedResource,
) {
    let new = provider
        .rotate_add(server, wanted, old)
        .await
        .expect("rotate_add");
    assert_ne!(new.expose(), old.expose());
    assert!(
        logs_in(provider, server, wanted, &new, neighbour).await,
        "new, after add"
    );
    assert!(
        logs_in(provider, server, wanted, old, neighbour).await,
        "old, after add"
    );
    for round in 0..2 {
        provider
            .rotate_retire(server, wanted, &new)
            .await
            .unwrap_or_else(|error| panic!("rotate_retire round {round}: {error}"));
        assert!(
            logs_in(provider, server, wanted, &new, neighbour).await,
            "new, after retire"
        );
        assert!(
            !logs_in(provider, server, wanted, old, neighbour).await,
            "old, after retire"
        );
    }
    let observed = provider
        .observe(server, wanted, Some(&new))
        .await
        .expect("observe");
    assert!(observed.matches(), "after the retirement: {observed:?}");
    // The undo: the old credentials back, the new ones refused.
    provider
        .rotate_retire(server, wanted, old)
        .await
        .expect("rotate_retire keeping the old credentials");
    assert!(
        logs_in(provider, server, wanted, old, neighbour).await,
        "old, after the undo"
    );
    assert!(
        !logs_in(provider, server, wanted, &new, neighbour).await,
        "new, after the undo"
    );
    let observed = provider
        .observe(server, wanted, Some(old))
        .await
        .expect("observe");
    assert!(observed.matches(), "after the undo: {observed:?}");
}
