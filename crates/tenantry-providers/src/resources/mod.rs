//! A tenant's resources: one [`ResourceProvider`] per kind (its database, a Redis cache user, a RabbitMQ
//! vhost, PowerDNS records, an S3 bucket, a Kubernetes namespace, …), observe-first like Crossplane's external client. Adding a kind is one module here and one line in
//! [`Providers::standard`]; workflows, doctor, validation and offboarding iterate the tenant's resources and name
//! no kind.

mod bucket;
mod cache;
mod database;
mod dns;
mod namespace;
mod queue;

pub use bucket::S3Bucket;
pub use cache::RedisCache;
pub use dns::PowerDns;
pub use namespace::KubernetesNamespaces;
// Not in `Providers::standard`: the workflows drive the database through its own phases.
pub use database::TenantDatabases;
pub use queue::RabbitQueue;

use crate::credentials::SecretString;
use crate::engines::{Installation, Ownership};
use crate::{Error, Result};
use std::sync::Arc;
use tenantry_core::{EngineKind, Slug};

/// One server of a resource's kind, as a provider reaches it.
#[derive(Clone)]
pub struct ResourceServer {
    pub name: String,
    pub engine: EngineKind,
    /// The admin URL from the secret store (never logged, never in an error).
    pub admin_url: SecretString,
    /// Where tenants connect, when it differs from the admin URL's host (RabbitMQ: the AMQP URL; PowerDNS: the DNS
    /// listener, zone and target, `dns://host:port/zone?target=…`).
    pub public_url: Option<String>,
    /// This registry's installation: the mark on everything the provider makes.
    pub installation: Installation,
}

/// The state a tenant's resource should have.
#[derive(Debug, Clone)]
pub struct WantedResource {
    pub slug: Slug,
    /// `tenant_<slug_>` for every kind so far.
    pub name: String,
    /// The plan's quotas for this kind (`[plans.quotas.<kind>]`), as configured; the provider reads its own keys.
    pub quotas: serde_json::Value,
    /// False while the tenant is suspended or offboarded without purge: the credentials must not work.
    pub enabled: bool,
    /// The tenant's cost labels (`tenant`, `plan`, `cost_center`), for kinds that write them onto the server
    /// (a DNS TXT record); the provider adds `installation` itself. An empty object when not known.
    pub labels: serde_json::Value,
}

impl WantedResource {
    pub fn new(slug: &Slug, quotas: serde_json::Value) -> WantedResource {
        WantedResource {
            slug: slug.clone(),
            name: slug.resource_name(),
            quotas,
            enabled: true,
            labels: serde_json::json!({}),
        }
    }
}

/// What `observe` found on the server for one resource.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Observed {
    Absent,
    Present {
        ownership: Ownership,
        /// How it differs from the wanted state, one sentence each; empty when it matches.
        differences: Vec<String>,
    },
}

impl Observed {
    pub fn matches(&self) -> bool {
        matches!(self, Observed::Present { differences, ownership } if differences.is_empty() && *ownership == Ownership::Ours)
    }
}

/// One object on a server that looks like a tenant's, for `doctor`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InventoryItem {
    /// `tenant_<slug_>`.
    pub name: String,
    pub ownership: Ownership,
}

/// One validation check a provider made with the tenant's own credentials.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    /// Stable name, prefixed with the kind (`cache_prefix_confined`).
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// One check of a kind's `verify`, as the validation suite reports it.
pub(crate) fn check(name: &str, passed: bool, detail: String) -> Verification {
    Verification {
        name: name.to_owned(),
        passed,
        detail,
    }
}

/// The contract every kind implements. Every operation is idempotent; none logs or returns a secret.
#[async_trait::async_trait]
pub trait ResourceProvider: Send + Sync {
    /// The kind's name in plans, phases (`<kind>_created`), the registry and the API.
    fn kind(&self) -> &'static str;

    /// The server engines that host this kind.
    fn engines(&self) -> &'static [EngineKind];

    /// Whether the tenant's credentials for this kind are kept in the secret store. A kind that keeps none (DNS
    /// records: nothing to log in to) gets [`ResourceProvider::new_credentials`] whenever they are needed, so they
    /// must follow from the server and the resource alone and hold nothing secret.
    fn has_secret(&self) -> bool {
        true
    }

    /// Whether this kind holds tenant data a backup must keep. A cache (Redis) and a queue (RabbitMQ) hold
    /// nothing durable worth restoring (entries expire, messages are in flight), so the default is "nothing to
    /// back up": backups skip the kind and a restore makes it fresh. A kind that answers `true` gets a
    /// `<kind>_backed_up` phase and must be dumped by `crate::backup`.
    fn holds_data(&self) -> bool {
        false
    }

    /// The secret holding the tenant's credentials for this resource (`tenant-<kind>-<slug>`), where
    /// [`ResourceProvider::has_secret`].
    fn secret_name(&self, slug: &Slug) -> String {
        format!("tenant-{}-{}", self.kind(), slug.as_str())
    }

    /// Checks a server before `servers add` records it: reachable with admin rights. The strings are
    /// warnings a person should read (e.g. Redis's `default` user enabled without a password).
    async fn check_server(&self, server: &ResourceServer) -> Result<Vec<String>>;

    /// Fresh credentials for a resource on `server`: the URL a tenant connects with, with a new password.
    fn new_credentials(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
    ) -> Result<SecretString>;

    /// What exists for this resource on the server, and how it differs from `wanted` (with `credentials`, the
    /// URL in the secret store, where the server lets the password be compared).
    async fn observe(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        credentials: Option<&SecretString>,
    ) -> Result<Observed>;

    /// Creates the resource or converges it to `wanted` with `credentials`. Refuses another installation's
    /// object of the same name ([`Error::Foreign`]).
    async fn ensure(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        credentials: &SecretString,
    ) -> Result<()>;

    /// Deletes the resource and what it holds; removing what is absent succeeds. Refuses a foreign one.
    async fn remove(&self, server: &ResourceServer, name: &str) -> Result<()>;

    /// The credentials stop working (and open sessions end); the data stays.
    async fn disable(&self, server: &ResourceServer, name: &str) -> Result<()>;

    /// Undoes [`ResourceProvider::disable`].
    async fn enable(&self, server: &ResourceServer, name: &str) -> Result<()>;

    /// Whether this kind's resources on a server of `engine` have credentials to rotate (a SQLite database has
    /// no login, so nothing to rotate). A rotation skips the resources for which this is false, and says so.
    fn rotates(&self, _engine: EngineKind) -> bool {
        false
    }

    /// The first half of a rotation with no failed login for a client that re-reads the secret: new credentials
    /// that work *alongside* `current` (a second password for the same user where the engine accepts two, or the
    /// other of two alternating logins where it accepts one), checked by logging in with them, and returned for
    /// the caller to store. Running it again makes yet other credentials, which the retirement clears.
    async fn rotate_add(
        &self,
        _server: &ResourceServer,
        _wanted: &WantedResource,
        _current: &SecretString,
    ) -> Result<SecretString> {
        Err(Error::Refused(format!(
            "rotating {} credentials is not supported",
            self.kind()
        )))
    }

    /// The second half: afterwards `keep` works and every other credential of the resource is refused (a
    /// retired alternate login also loses its open sessions). `keep` is brought back if it was retired, so
    /// the same call with the old credentials is the undo of [`ResourceProvider::rotate_add`]. Idempotent.
    async fn rotate_retire(
        &self,
        _server: &ResourceServer,
        _wanted: &WantedResource,
        _keep: &SecretString,
    ) -> Result<()> {
        Err(Error::Refused(format!(
            "rotating {} credentials is not supported",
            self.kind()
        )))
    }

    /// The kind's validation checks, made with the tenant's own credentials: the tenant gets in, and is
    /// refused at `neighbour`'s namespace (another tenant's, real or not).
    async fn verify(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        credentials: &SecretString,
        neighbour: &WantedResource,
    ) -> Result<Vec<Verification>>;

    /// Every object on the server that looks like a tenant's of this kind.
    async fn inventory(&self, server: &ResourceServer) -> Result<Vec<InventoryItem>>;

    /// Refuses a plan's quotas for this kind (`[plans.quotas.<kind>]`) that the kind cannot apply, when the
    /// configuration is loaded rather than in a provisioning job. The default takes anything.
    fn check_quotas(&self, _quotas: &serde_json::Value) -> Result<()> {
        Ok(())
    }

    /// The resource as manifests an operator can apply or diff by hand (YAML), built by the same code that
    /// `ensure` applies, for kinds whose servers take declarative objects; `None` for the others.
    fn manifests(
        &self,
        _server: &ResourceServer,
        _wanted: &WantedResource,
    ) -> Result<Option<String>> {
        Ok(None)
    }
}

/// The registered kinds, owned by the platform.
#[derive(Clone)]
pub struct Providers {
    providers: Vec<Arc<dyn ResourceProvider>>,
}

impl Providers {
    /// Every kind tenantry ships. Registering a kind is one line here.
    pub fn standard() -> Providers {
        Providers {
            providers: vec![
                Arc::new(RedisCache::new()),
                Arc::new(RabbitQueue::new()),
                Arc::new(PowerDns::new()),
                Arc::new(S3Bucket::new()),
                Arc::new(KubernetesNamespaces::new()),
            ],
        }
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn ResourceProvider>> {
        self.providers
            .iter()
            .find(|provider| provider.kind() == kind)
    }

    pub fn require(&self, kind: &str) -> Result<&Arc<dyn ResourceProvider>> {
        self.get(kind).ok_or_else(|| {
            Error::Refused(format!(
                "no provider for resource kind {kind:?}; known kinds: {}",
                self.kinds().join(", ")
            ))
        })
    }

    /// The kinds' names, in registration order.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.providers
            .iter()
            .map(|provider| provider.kind())
            .collect()
    }

    /// The provider whose servers run `engine`.
    pub fn for_engine(&self, engine: EngineKind) -> Option<&Arc<dyn ResourceProvider>> {
        self.providers
            .iter()
            .find(|provider| provider.engines().contains(&engine))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn ResourceProvider>> {
        self.providers.iter()
    }
}
