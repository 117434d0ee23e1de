//! The `namespace` kind: a tenant's Kubernetes namespace, made through a `kubernetes` server's API with
//! server-side apply (field manager `tenantry`) by the `kube` client.
//!
//! A `kubernetes` server's admin URL is the API server's URL with a bearer token as its password,
//! `https://admin:TOKEN@host:6443` (on stdin: the token is a secret; it is never logged nor put in an error). Per
//! tenant, in namespace `tenant-<slug>` (see [`tenant_objects`], the one function that builds them for both `ensure`
//! and `tenants manifests`):
//! - the Namespace, labelled with the installation's mark and the tenant's cost labels (the mark decides whose a
//!   namespace is: another installation's is `Foreign`, one without it `Unmarked`);
//! - a ResourceQuota (`tenant-quota`: CPU, memory and pods, from `[plans.quotas.namespace]` `cpu_millis`,
//!   `memory_mib`, `pods`) and a LimitRange (`tenant-limits`: a container's default requests and limits,
//!   `container_cpu_millis`, `container_memory_mib`), plain integers so that a plan's tier can scale them;
//! - NetworkPolicies: `default-deny` (no traffic in or out), `allow-same-namespace` and `allow-dns-egress` (to
//!   the cluster DNS in `kube-system`);
//! - ServiceAccount `tenant-app` with Role `tenant-app` (workloads, services, config and secrets of this namespace
//!   alone) bound to it by RoleBinding `tenant-app`.
//!
//! Suspension sets the quota's `pods` to 0 (no new pod may start; running pods are left to end) and empties the
//! RoleBinding's subjects (the service account's token is refused everything); the plan's quotas ride along in an
//! annotation of the quota, so `disable` and `enable` rebuild the same objects from the server alone. `remove`
//! deletes the namespace, which takes everything in it, and waits until the API server no longer has it.
//! There is no tenant secret: the service account's token is Kubernetes' business.

use super::check;
use super::{
    InventoryItem, Observed, ResourceProvider, ResourceServer, Verification, WantedResource,
};
use crate::credentials::SecretString;
use crate::engines::{foreign_error, Ownership};
use crate::{Error, Result};
use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
    ServiceAccount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::Resource;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use tenantry_core::{EngineKind, Slug};

/// The field manager of every apply: what the API server records as the owner of the fields tenantry sets.
pub const FIELD_MANAGER: &str = "tenantry";

/// The label carrying the installation's mark.
const INSTALLATION_LABEL: &str = "tenantry.io/installation";
/// Set on everything tenantry applies.
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The plan's quotas for the kind, as JSON, on the ResourceQuota: what `enable` rebuilds the quota from.
const QUOTAS_ANNOTATION: &str = "tenantry.io/quotas";

/// The tenant's service account, and the Role and RoleBinding that give it its rights.
const APP_ACCOUNT: &str = "tenant-app";
const QUOTA_NAME: &str = "tenant-quota";
const LIMITS_NAME: &str = "tenant-limits";
const DEFAULT_DENY: &str = "default-deny";

/// How long `remove` waits for a terminating namespace to be gone, and how often it looks.
const REMOVAL_TIMEOUT: Duration = Duration::from_secs(180);
const REMOVAL_POLL: Duration = Duration::from_millis(100);

/// How long one API request may take to connect, and to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The `namespace` kind on `kubernetes` servers. The platform owns the instance, and with it one client (and its
/// connection pool) per API server.
pub struct KubernetesNamespaces {
    clients: Mutex<HashMap<String, kube::Client>>,
}

impl KubernetesNamespaces {
    pub fn new() -> KubernetesNamespaces {
        KubernetesNamespaces {
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn cluster<'a>(&self, server: &'a ResourceServer) -> Result<Cluster<'a>> {
        let endpoint = Endpoint::parse(server)?;
        let key = server.admin_url.expose().to_owned();
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let client = match clients.get(&key) {
            Some(client) => client.clone(),
            None => {
                let client = endpoint.client()?;
                clients.insert(key, client.clone());
                client
            }
        };
        Ok(Cluster {
            client,
            address: endpoint.address,
            server,
        })
    }
}

impl Default for KubernetesNamespaces {
    fn default() -> Self {
        KubernetesNamespaces::new()
    }
}

/// A `kubernetes` server's admin URL, taken apart.
struct Endpoint {
    /// The API server's URL without the token.
    cluster_url: String,
    /// `host:port`, for messages.
    address: String,
    token: SecretString,
}

impl Endpoint {
    fn parse(server: &ResourceServer) -> Result<Endpoint> {
        let invalid = |why: &str| {
            Error::Refused(format!(
                "the admin URL of Kubernetes server {:?} {why}",
                server.name
            ))
        };
        let url = url::Url::parse(server.admin_url.expose())
            .map_err(|_| invalid("is not a valid URL"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(invalid(
                "must be the API server's https://admin:TOKEN@host:port",
            ));
        }
        let host = url.host_str().ok_or_else(|| invalid("has no host"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| invalid("has no port"))?;
        let token = percent_decode_str(url.password().unwrap_or(""))
            .decode_utf8_lossy()
            .into_owned();
        if token.is_empty() {
            return Err(invalid(
                "has no bearer token (give it as the password: https://admin:TOKEN@host:port)",
            ));
        }
        if url.path() != "/" && !url.path().is_empty() || url.query().is_some() {
            return Err(invalid("must name the API server alone, with no path"));
        }
        Ok(Endpoint {
            cluster_url: format!("{}://{host}:{port}", url.scheme()),
            address: format!("{host}:{port}"),
            token: SecretString::new(token),
        })
    }

    fn client(&self) -> Result<kube::Client> {
        let uri = self.cluster_url.parse().map_err(|_| {
            Error::Refused(format!(
                "the API server address {} is not a valid URI",
                self.address
            ))
        })?;
        let mut config = kube::Config::new(uri);
        config.auth_info.token = Some(self.token.expose().to_owned().into());
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        config.read_timeout = Some(READ_TIMEOUT);
        kube::Client::try_from(config).map_err(|error| {
            Error::AdminConnection(format!(
                "no client for the Kubernetes API server at {}: {error}",
                self.address
            ))
        })
    }
}

/// The plan's quotas for a tenant's namespace (`[plans.quotas.namespace]`), with defaults for what it leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamespaceQuotas {
    /// CPU the namespace's containers may request and use together, in thousandths of a core.
    pub cpu_millis: u64,
    /// Memory the namespace's containers may request and use together, in MiB.
    pub memory_mib: u64,
    /// Pods that may exist at once.
    pub pods: u64,
    /// A container's CPU limit when it names none (its request is a fifth of it).
    pub container_cpu_millis: u64,
    /// A container's memory limit when it names none (its request is a quarter of it).
    pub container_memory_mib: u64,
}

impl Default for NamespaceQuotas {
    fn default() -> Self {
        NamespaceQuotas {
            cpu_millis: 2000,
            memory_mib: 4096,
            pods: 20,
            container_cpu_millis: 500,
            container_memory_mib: 512,
        }
    }
}

impl NamespaceQuotas {
    /// The quotas in `value` (the plan's table for the kind); a key that is not one, or a value that is not a
    /// positive integer, is refused.
    pub fn parse(value: &Value) -> Result<NamespaceQuotas> {
        let value = if value.is_null() { &json!({}) } else { value };
        let quotas: NamespaceQuotas = serde_json::from_value(value.clone()).map_err(|error| {
            Error::Refused(format!(
                "the plan's namespace quotas are not valid ({error}); use positive integers for cpu_millis, \
                 memory_mib, pods, container_cpu_millis and container_memory_mib"
            ))
        })?;
        let named = [
            ("cpu_millis", quotas.cpu_millis),
            ("memory_mib", quotas.memory_mib),
            ("pods", quotas.pods),
            ("container_cpu_millis", quotas.container_cpu_millis),
            ("container_memory_mib", quotas.container_memory_mib),
        ];
        if let Some((name, _)) = named.iter().find(|(_, value)| *value == 0) {
            return Err(Error::Refused(format!(
                "the plan's namespace quota {name} must be a positive integer"
            )));
        }
        Ok(quotas)
    }
}

/// CPU as Kubernetes writes a quantity canonically: whole cores without a suffix, else thousandths (`1500m`).
fn cpu(millis: u64) -> Quantity {
    Quantity(if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    })
}

/// Memory as Kubernetes writes a binary quantity canonically: the largest unit that keeps it whole.
fn memory(mib: u64) -> Quantity {
    Quantity(if mib.is_multiple_of(1024 * 1024) {
        format!("{}Ti", mib / (1024 * 1024))
    } else if mib.is_multiple_of(1024) {
        format!("{}Gi", mib / 1024)
    } else {
        format!("{mib}Mi")
    })
}

/// `text` as a label value may be (at most 63 letters, digits, `-`, `_`, `.`, starting and ending with a letter or
/// digit): other characters become `-`.
fn label_value(text: &str) -> String {
    let replaced: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    replaced
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// The namespace of a tenant.
pub fn namespace_name(slug: &Slug) -> String {
    format!("tenant-{}", slug.as_str())
}

/// The tenant's slug in a resource name `tenant_<slug_>` (slugs have no `_`, so the name gives it back).
fn slug_of(name: &str) -> Result<Slug> {
    name.strip_prefix("tenant_")
        .map(|rest| rest.replace('_', "-"))
        .and_then(|slug| Slug::parse(&slug).ok())
        .ok_or_else(|| Error::Refused(format!("{name:?} is not a tenant's resource name")))
}

/// One object tenantry applies: the API it belongs to, and its manifest.
#[derive(Debug, Clone)]
pub struct TenantObject {
    api: ApiResource,
    /// `Namespace/tenant-acme`, `Role/tenant-app`, for messages.
    pub title: String,
    pub name: String,
    /// Whether it lives in the tenant's namespace (every object but the Namespace).
    namespaced: bool,
    pub manifest: Value,
}

impl TenantObject {
    fn new<K>(object: K) -> Result<TenantObject>
    where
        K: Resource<DynamicType = ()> + serde::Serialize,
    {
        let name = object.meta().name.clone().unwrap_or_default();
        let namespaced = object.meta().namespace.is_some();
        let manifest = serde_json::to_value(&object)
            .map_err(|error| Error::Refused(format!("a manifest could not be built: {error}")))?;
        Ok(TenantObject {
            api: ApiResource::erase::<K>(&()),
            title: format!("{}/{name}", K::kind(&())),
            name,
            namespaced,
            manifest,
        })
    }
}

/// Metadata of an object in the tenant's namespace.
fn metadata(namespace: &str, name: &str, installation: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(BTreeMap::from([
            (MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned()),
            (INSTALLATION_LABEL.to_owned(), installation.to_owned()),
        ])),
        ..ObjectMeta::default()
    }
}

/// The rules of the tenant's Role: its workloads, services, configuration and secrets, in its namespace alone
/// (a Role grants nothing outside the namespace it is in).
fn app_rules() -> Vec<PolicyRule> {
    let verbs: Vec<String> = [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ]
    .map(String::from)
    .to_vec();
    let rule = |group: &str, resources: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: verbs.clone(),
        ..PolicyRule::default()
    };
    vec![
        rule(
            "",
            &[
                "pods",
                "pods/log",
                "services",
                "endpoints",
                "configmaps",
                "secrets",
                "persistentvolumeclaims",
            ],
        ),
        rule("apps", &["deployments", "statefulsets", "replicasets"]),
        rule("batch", &["jobs", "cronjobs"]),
    ]
}

/// The tenant's ResourceQuota: the plan's quotas, `pods` 0 while suspended, the quotas kept in an annotation.
fn quota_object(
    namespace: &str,
    installation: &str,
    quotas: &NamespaceQuotas,
    enabled: bool,
) -> Result<TenantObject> {
    let mut meta = metadata(namespace, QUOTA_NAME, installation);
    meta.annotations = Some(BTreeMap::from([(
        QUOTAS_ANNOTATION.to_owned(),
        serde_json::to_string(quotas).unwrap_or_default(),
    )]));
    let pods = if enabled { quotas.pods } else { 0 };
    TenantObject::new(ResourceQuota {
        metadata: meta,
        spec: Some(ResourceQuotaSpec {
            hard: Some(BTreeMap::from([
                ("requests.cpu".to_owned(), cpu(quotas.cpu_millis)),
                ("limits.cpu".to_owned(), cpu(quotas.cpu_millis)),
                ("requests.memory".to_owned(), memory(quotas.memory_mib)),
                ("limits.memory".to_owned(), memory(quotas.memory_mib)),
                ("pods".to_owned(), Quantity(pods.to_string())),
            ])),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    })
}

/// The RoleBinding giving the tenant's service account its Role; no subject while suspended.
fn binding_object(namespace: &str, installation: &str, enabled: bool) -> Result<TenantObject> {
    let subjects = if enabled {
        vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: APP_ACCOUNT.to_owned(),
            namespace: Some(namespace.to_owned()),
            ..Subject::default()
        }]
    } else {
        Vec::new()
    };
    TenantObject::new(RoleBinding {
        metadata: metadata(namespace, APP_ACCOUNT, installation),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: APP_ACCOUNT.to_owned(),
        },
        subjects: Some(subjects),
    })
}

fn network_policy(
    namespace: &str,
    installation: &str,
    name: &str,
    spec: NetworkPolicySpec,
) -> Result<TenantObject> {
    TenantObject::new(NetworkPolicy {
        metadata: metadata(namespace, name, installation),
        spec: Some(spec),
    })
}

/// Every object of a tenant's namespace, in the order they are applied (the Namespace first). The one builder
/// of what `ensure` applies, `observe` compares and `tenants manifests` prints.
pub fn tenant_objects(
    server: &ResourceServer,
    wanted: &WantedResource,
) -> Result<Vec<TenantObject>> {
    let quotas = NamespaceQuotas::parse(&wanted.quotas)?;
    let namespace = namespace_name(&wanted.slug);
    let installation = server.installation.id();
    let mut labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned()),
        (INSTALLATION_LABEL.to_owned(), installation.to_owned()),
        (
            "tenantry.io/tenant".to_owned(),
            wanted.slug.as_str().to_owned(),
        ),
        // A tenant's pods may not run privileged, share the node's namespaces or mount its paths.
        (
            "pod-security.kubernetes.io/enforce".to_owned(),
            "baseline".to_owned(),
        ),
    ]);
    for key in ["plan", "cost_center"] {
        if let Some(value) = wanted.labels.get(key).and_then(Value::as_str) {
            labels.insert(format!("tenantry.io/{key}"), label_value(value));
        }
    }
    let everything = || Some(LabelSelector::default());
    let same_namespace = NetworkPolicyPeer {
        pod_selector: everything(),
        ..NetworkPolicyPeer::default()
    };
    let dns_port = |protocol: &str| NetworkPolicyPort {
        port: Some(IntOrString::Int(53)),
        protocol: Some(protocol.to_owned()),
        ..NetworkPolicyPort::default()
    };
    Ok(vec![
        TenantObject::new(Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.clone()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        })?,
        quota_object(&namespace, installation, &quotas, wanted.enabled)?,
        TenantObject::new(LimitRange {
            metadata: metadata(&namespace, LIMITS_NAME, installation),
            spec: Some(LimitRangeSpec {
                limits: vec![LimitRangeItem {
                    type_: "Container".to_owned(),
                    default: Some(BTreeMap::from([
                        ("cpu".to_owned(), cpu(quotas.container_cpu_millis)),
                        ("memory".to_owned(), memory(quotas.container_memory_mib)),
                    ])),
                    default_request: Some(BTreeMap::from([
                        (
                            "cpu".to_owned(),
                            cpu((quotas.container_cpu_millis / 5).max(1)),
                        ),
                        (
                            "memory".to_owned(),
                            memory((quotas.container_memory_mib / 4).max(1)),
                        ),
                    ])),
                    ..LimitRangeItem::default()
                }],
            }),
        })?,
        network_policy(
            &namespace,
            installation,
            DEFAULT_DENY,
            NetworkPolicySpec {
                pod_selector: everything(),
                policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
                ..NetworkPolicySpec::default()
            },
        )?,
        network_policy(
            &namespace,
            installation,
            "allow-same-namespace",
            NetworkPolicySpec {
                pod_selector: everything(),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![same_namespace.clone()]),
                    ..NetworkPolicyIngressRule::default()
                }]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![same_namespace]),
                    ..NetworkPolicyEgressRule::default()
                }]),
                policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            },
        )?,
        network_policy(
            &namespace,
            installation,
            "allow-dns-egress",
            NetworkPolicySpec {
                pod_selector: everything(),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([(
                                "kubernetes.io/metadata.name".to_owned(),
                                "kube-system".to_owned(),
                            )])),
                            ..LabelSelector::default()
                        }),
                        pod_selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([(
                                "k8s-app".to_owned(),
                                "kube-dns".to_owned(),
                            )])),
                            ..LabelSelector::default()
                        }),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: Some(vec![dns_port("UDP"), dns_port("TCP")]),
                }]),
                policy_types: Some(vec!["Egress".to_owned()]),
                ..NetworkPolicySpec::default()
            },
        )?,
        TenantObject::new(ServiceAccount {
            metadata: metadata(&namespace, APP_ACCOUNT, installation),
            ..ServiceAccount::default()
        })?,
        TenantObject::new(Role {
            metadata: metadata(&namespace, APP_ACCOUNT, installation),
            rules: Some(app_rules()),
        })?,
        binding_object(&namespace, installation, wanted.enabled)?,
    ])
}

/// The objects as YAML documents, one after the other: what an operator may `kubectl apply --server-side
/// --field-manager tenantry -f` or `kubectl diff -f`.
pub fn manifests_yaml(objects: &[TenantObject]) -> Result<String> {
    let mut yaml = String::new();
    for object in objects {
        yaml.push_str("---\n");
        yaml.push_str(
            &serde_yaml::to_string(&object.manifest)
                .map_err(|error| Error::Refused(format!("{} as YAML: {error}", object.title)))?,
        );
    }
    Ok(yaml)
}

/// The fields of `wanted` that `live` lacks or holds otherwise (maps compared key by key, so the server's own
/// fields are no difference; lists element by element), as `path` lines.
fn differing_fields(wanted: &Value, live: &Value, path: &str, found: &mut Vec<String>) {
    match (wanted, live) {
        (Value::Object(wanted), Value::Object(live)) => {
            for (key, value) in wanted {
                differing_fields(
                    value,
                    live.get(key).unwrap_or(&Value::Null),
                    &format!("{path}.{key}"),
                    found,
                );
            }
        }
        (Value::Array(wanted), Value::Array(live)) if wanted.len() == live.len() => {
            for (index, (wanted, live)) in wanted.iter().zip(live).enumerate() {
                differing_fields(wanted, live, &format!("{path}[{index}]"), found);
            }
        }
        (wanted, live) if wanted == live => {}
        _ => found.push(path.trim_start_matches('.').to_owned()),
    }
}

/// Whose a namespace is, from its installation label.
fn ownership_of(labels: Option<&Value>, server: &ResourceServer) -> Ownership {
    match labels
        .and_then(|labels| labels.get(INSTALLATION_LABEL))
        .and_then(Value::as_str)
    {
        Some(id) if id == server.installation.id() => Ownership::Ours,
        Some(id) => Ownership::Foreign(id.to_owned()),
        None => Ownership::Unmarked,
    }
}

/// A client error as a provider error, with what was being done; never with the token.
fn kube_error(what: &str, address: &str, error: kube::Error) -> Error {
    match error {
        kube::Error::Api(response) => {
            let message = format!(
                "{what}: the Kubernetes API server at {address} answered {} {}: {}",
                response.code,
                response.reason,
                response.message.chars().take(300).collect::<String>()
            );
            match response.code {
                401 => Error::AdminConnection(format!(
                    "{what}: the Kubernetes API server at {address} refused the bearer token (401)"
                )),
                403 if response.message.contains("being terminated") => Error::Transient(message),
                403 => Error::AdminConnection(message),
                429 | 500..=599 => Error::Transient(message),
                _ => Error::Refused(message),
            }
        }
        kube::Error::SerdeError(_) => Error::AdminConnection(format!(
            "{what}: {address} answered with something that is not the Kubernetes API"
        )),
        other => Error::Transient(format!(
            "{what}: the Kubernetes API server at {address} could not be reached: {other}"
        )),
    }
}

/// One API server, reached with the admin token.
struct Cluster<'a> {
    client: kube::Client,
    address: String,
    server: &'a ResourceServer,
}

impl Cluster<'_> {
    fn api(&self, object: &TenantObject, namespace: &str) -> Api<DynamicObject> {
        if object.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &object.api)
        } else {
            Api::all_with(self.client.clone(), &object.api)
        }
    }

    fn namespaces(&self) -> Api<Namespace> {
        Api::all(self.client.clone())
    }

    /// The live object as JSON, or `None` where the server has none.
    async fn live(&self, object: &TenantObject, namespace: &str) -> Result<Option<Value>> {
        let found = self
            .api(object, namespace)
            .get_opt(&object.name)
            .await
            .map_err(|error| {
                kube_error(&format!("reading {}", object.title), &self.address, error)
            })?;
        found
            .map(|found| {
                serde_json::to_value(found)
                    .map_err(|error| Error::Refused(format!("reading {}: {error}", object.title)))
            })
            .transpose()
    }

    /// The tenant's namespace as JSON, or `None`.
    async fn namespace(&self, namespace: &str) -> Result<Option<Value>> {
        let found = self
            .namespaces()
            .get_opt(namespace)
            .await
            .map_err(|error| {
                kube_error(
                    &format!("reading namespace {namespace}"),
                    &self.address,
                    error,
                )
            })?;
        Ok(found.and_then(|found| serde_json::to_value(found).ok()))
    }

    /// The namespace if it is this installation's; `None` if absent; an error if it is not ours.
    async fn our_namespace(&self, namespace: &str) -> Result<Option<Value>> {
        let Some(found) = self.namespace(namespace).await? else {
            return Ok(None);
        };
        let ownership = ownership_of(found["metadata"].get("labels"), self.server);
        if ownership != Ownership::Ours {
            return Err(foreign_error(
                &format!("Kubernetes namespace {namespace}"),
                &ownership,
            ));
        }
        Ok(Some(found))
    }

    /// Server-side apply of one object, as the `tenantry` field manager, taking over fields someone else changed.
    async fn apply(&self, object: &TenantObject, namespace: &str) -> Result<()> {
        self.api(object, namespace)
            .patch(
                &object.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object.manifest),
            )
            .await
            .map_err(|error| {
                kube_error(&format!("applying {}", object.title), &self.address, error)
            })?;
        Ok(())
    }

    /// How each object differs from its wanted manifest, one sentence each.
    async fn differences(&self, objects: &[TenantObject], namespace: &str) -> Result<Vec<String>> {
        let mut differences = Vec::new();
        for object in objects {
            match self.live(object, namespace).await? {
                None => differences.push(format!("{} is missing", object.title)),
                Some(live) => {
                    let mut fields = Vec::new();
                    differing_fields(&object.manifest, &live, "", &mut fields);
                    if !fields.is_empty() {
                        differences.push(format!(
                            "{} differs at {}",
                            object.title,
                            fields.join(", ")
                        ));
                    }
                    if live["status"]["phase"] == "Terminating" {
                        differences.push(format!("{} is terminating", object.title));
                    }
                }
            }
        }
        Ok(differences)
    }

    /// Suspends or resumes the tenant: the quota and the RoleBinding rebuilt from the quotas the quota carries.
    async fn switch(&self, name: &str, enabled: bool) -> Result<bool> {
        let slug = slug_of(name)?;
        let namespace = namespace_name(&slug);
        if self.our_namespace(&namespace).await?.is_none() {
            return Ok(false);
        }
        let installation = self.server.installation.id();
        // The quota's API and name, to read the live quota whose annotation holds the plan's quotas.
        let probe = quota_object(
            &namespace,
            installation,
            &NamespaceQuotas::default(),
            enabled,
        )?;
        let quotas = match self.live(&probe, &namespace).await? {
            Some(live) => live["metadata"]["annotations"][QUOTAS_ANNOTATION]
                .as_str()
                .and_then(|text| serde_json::from_str::<Value>(text).ok())
                .map(|value| NamespaceQuotas::parse(&value))
                .transpose()?
                .unwrap_or_default(),
            None => NamespaceQuotas::default(),
        };
        self.apply(
            &quota_object(&namespace, installation, &quotas, enabled)?,
            &namespace,
        )
        .await?;
        self.apply(
            &binding_object(&namespace, installation, enabled)?,
            &namespace,
        )
        .await?;
        tracing::info!(
            namespace,
            enabled,
            "switched a tenant's Kubernetes namespace"
        );
        Ok(true)
    }
}

#[async_trait::async_trait]
impl ResourceProvider for KubernetesNamespaces {
    fn kind(&self) -> &'static str {
        "namespace"
    }

    fn engines(&self) -> &'static [EngineKind] {
        &[EngineKind::Kubernetes]
    }

    /// The tenant's workloads use the service account's token, which Kubernetes issues and mounts itself.
    fn has_secret(&self) -> bool {
        false
    }

    fn check_quotas(&self, quotas: &Value) -> Result<()> {
        NamespaceQuotas::parse(quotas).map(drop)
    }

    fn manifests(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
    ) -> Result<Option<String>> {
        manifests_yaml(&tenant_objects(server, wanted)?).map(Some)
    }

    async fn check_server(&self, server: &ResourceServer) -> Result<Vec<String>> {
        let cluster = self.cluster(server)?;
        let address = &cluster.address;
        // Anything that is not an API server fails here: no `/version`, or not its JSON.
        cluster
            .client
            .apiserver_version()
            .await
            .map_err(|error| match error {
                kube::Error::Api(ref response) if response.code == 401 => {
                    kube_error("checking the server", address, error)
                }
                kube::Error::Api(_) | kube::Error::SerdeError(_) => Error::AdminConnection(
                    format!("{address} does not answer as a Kubernetes API server (GET /version)"),
                ),
                // Nothing answered: a closed port, an unknown host, a TLS handshake that failed.
                other => match kube_error("checking the server", address, other) {
                    Error::Transient(message) => Error::AdminConnection(message),
                    classified => classified,
                },
            })?;
        // The token must be allowed to read namespaces; writing them is found out by the first apply.
        cluster
            .namespaces()
            .list(&ListParams::default().limit(1))
            .await
            .map_err(
                |error| match kube_error("listing namespaces", address, error) {
                    Error::Transient(message) | Error::Refused(message) => {
                        Error::AdminConnection(message)
                    }
                    other => other,
                },
            )?;
        Ok(Vec::new())
    }

    /// Nothing secret: the namespace's address on the API server.
    fn new_credentials(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
    ) -> Result<SecretString> {
        let endpoint = Endpoint::parse(server)?;
        Ok(SecretString::new(format!(
            "{}/api/v1/namespaces/{}",
            endpoint.cluster_url,
            namespace_name(&wanted.slug)
        )))
    }

    async fn observe(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        _credentials: Option<&SecretString>,
    ) -> Result<Observed> {
        let cluster = self.cluster(server)?;
        let namespace = namespace_name(&wanted.slug);
        let Some(found) = cluster.namespace(&namespace).await? else {
            return Ok(Observed::Absent);
        };
        let ownership = ownership_of(found["metadata"].get("labels"), server);
        let objects = tenant_objects(server, wanted)?;
        Ok(Observed::Present {
            ownership,
            differences: cluster.differences(&objects, &namespace).await?,
        })
    }

    async fn ensure(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        _credentials: &SecretString,
    ) -> Result<()> {
        let cluster = self.cluster(server)?;
        let namespace = namespace_name(&wanted.slug);
        let objects = tenant_objects(server, wanted)?;
        if let Some(found) = cluster.our_namespace(&namespace).await? {
            if found["status"]["phase"] == "Terminating" {
                return Err(Error::Transient(format!(
                    "Kubernetes namespace {namespace} is being deleted; it can be made again once it is gone"
                )));
            }
            if cluster.differences(&objects, &namespace).await?.is_empty() {
                return Ok(());
            }
        }
        for object in &objects {
            cluster.apply(object, &namespace).await?;
        }
        tracing::info!(namespace, "applied a tenant's Kubernetes namespace");
        Ok(())
    }

    async fn remove(&self, server: &ResourceServer, name: &str) -> Result<()> {
        let cluster = self.cluster(server)?;
        let namespace = namespace_name(&slug_of(name)?);
        let Some(found) = cluster.our_namespace(&namespace).await? else {
            return Ok(());
        };
        if found["status"]["phase"] != "Terminating" {
            match cluster
                .namespaces()
                .delete(&namespace, &DeleteParams::foreground())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(response)) if response.code == 404 => return Ok(()),
                Err(error) => {
                    return Err(kube_error(
                        &format!("deleting namespace {namespace}"),
                        &cluster.address,
                        error,
                    ))
                }
            }
        }
        // A namespace terminates asynchronously (its objects are deleted first): the removal is done when the API
        // server no longer has it.
        let deadline = tokio::time::Instant::now() + REMOVAL_TIMEOUT;
        while cluster.namespace(&namespace).await?.is_some() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Transient(format!(
                    "Kubernetes namespace {namespace} is still terminating after {}s (a finalizer that is not \
                     released?)",
                    REMOVAL_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(REMOVAL_POLL).await;
        }
        tracing::info!(namespace, "removed a tenant's Kubernetes namespace");
        Ok(())
    }

    async fn disable(&self, server: &ResourceServer, name: &str) -> Result<()> {
        // An absent namespace runs nothing already.
        self.cluster(server)?.switch(name, false).await.map(drop)
    }

    async fn enable(&self, server: &ResourceServer, name: &str) -> Result<()> {
        if !self.cluster(server)?.switch(name, true).await? {
            return Err(Error::Refused(format!(
                "Kubernetes namespace {} does not exist; ensuring the resource creates it",
                namespace_name(&slug_of(name)?)
            )));
        }
        Ok(())
    }

    /// Checks the objects' presence and confinement as the admin sees them (the checks cannot act as the tenant's
    /// service account: its token is Kubernetes' to issue).
    async fn verify(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        _credentials: &SecretString,
        neighbour: &WantedResource,
    ) -> Result<Vec<Verification>> {
        let cluster = self.cluster(server)?;
        let namespace = namespace_name(&wanted.slug);
        let objects = tenant_objects(server, wanted)?;
        let mut checks = Vec::new();

        let differences = cluster.differences(&objects, &namespace).await?;
        checks.push(check(
            "namespace_objects_present",
            differences.is_empty(),
            if differences.is_empty() {
                format!(
                    "namespace {namespace} holds its {} objects as applied",
                    objects.len()
                )
            } else {
                differences.join("; ")
            },
        ));

        let find = |title: &str| objects.iter().find(|object| object.title == title);
        let role = match find(&format!("Role/{APP_ACCOUNT}")) {
            Some(object) => cluster.live(object, &namespace).await?,
            None => None,
        };
        let binding = match find(&format!("RoleBinding/{APP_ACCOUNT}")) {
            Some(object) => cluster.live(object, &namespace).await?,
            None => None,
        };
        let wanted_rules = serde_json::to_value(app_rules()).unwrap_or_default();
        let role_confined = role
            .as_ref()
            .is_some_and(|role| role["rules"] == wanted_rules);
        let subjects_confined = binding.as_ref().is_some_and(|binding| {
            binding["roleRef"]["kind"] == "Role"
                && binding["roleRef"]["name"] == APP_ACCOUNT
                && binding["subjects"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|subject| {
                        subject["kind"] == "ServiceAccount"
                            && subject["name"] == APP_ACCOUNT
                            && subject["namespace"] == namespace.as_str()
                    })
        });
        checks.push(check(
            "namespace_role_confined",
            role_confined && subjects_confined,
            if role_confined && subjects_confined {
                format!("Role {APP_ACCOUNT} grants its rules in {namespace} alone, to {APP_ACCOUNT} alone")
            } else if !role_confined {
                format!("Role {APP_ACCOUNT} in {namespace} is missing or grants other rules than tenantry's")
            } else {
                format!("RoleBinding {APP_ACCOUNT} in {namespace} binds another role or subject")
            },
        ));

        let deny = match find(&format!("NetworkPolicy/{DEFAULT_DENY}")) {
            Some(object) => cluster.live(object, &namespace).await?,
            None => None,
        };
        let denies = deny.as_ref().is_some_and(|deny| {
            deny["spec"]["podSelector"] == json!({})
                && deny["spec"]["policyTypes"] == json!(["Ingress", "Egress"])
                && deny["spec"].get("ingress").is_none()
                && deny["spec"].get("egress").is_none()
        });
        checks.push(check(
            "namespace_default_deny",
            denies,
            if denies {
                format!("NetworkPolicy {DEFAULT_DENY} denies all traffic of {namespace} but what is allowed")
            } else {
                format!("NetworkPolicy {DEFAULT_DENY} of {namespace} is missing or lets traffic through")
            },
        ));

        let quota = match find(&format!("ResourceQuota/{QUOTA_NAME}")) {
            Some(object) => cluster.live(object, &namespace).await?,
            None => None,
        };
        let may_run = quota
            .as_ref()
            .and_then(|quota| quota["spec"]["hard"]["pods"].as_str().map(str::to_owned))
            .is_some_and(|pods| pods != "0")
            && binding.as_ref().is_some_and(|binding| {
                binding["subjects"]
                    .as_array()
                    .is_some_and(|subjects| !subjects.is_empty())
            });
        checks.push(check(
            "namespace_account_active",
            may_run,
            if may_run {
                format!("{APP_ACCOUNT} in {namespace} holds its role and pods may start")
            } else {
                format!(
                    "{namespace} is suspended: no pod may start and {APP_ACCOUNT} holds no role"
                )
            },
        ));

        // Nothing in the neighbour's namespace may be granted to this tenant's service account.
        let neighbour_namespace = namespace_name(&neighbour.slug);
        let bindings: Api<RoleBinding> =
            Api::namespaced(cluster.client.clone(), &neighbour_namespace);
        let crossed = bindings
            .list(&ListParams::default())
            .await
            .map_err(|error| {
                kube_error(
                    &format!("listing role bindings of {neighbour_namespace}"),
                    &cluster.address,
                    error,
                )
            })?
            .items
            .iter()
            .any(|binding| {
                binding
                    .subjects
                    .iter()
                    .flatten()
                    .any(|subject| subject.namespace.as_deref() == Some(namespace.as_str()))
            });
        checks.push(check(
            "namespace_neighbour_apart",
            !crossed,
            if crossed {
                format!(
                    "a role binding in {neighbour_namespace} grants {namespace}'s accounts rights"
                )
            } else {
                format!(
                    "no role binding in {neighbour_namespace} grants {namespace}'s accounts rights"
                )
            },
        ));
        Ok(checks)
    }

    async fn inventory(&self, server: &ResourceServer) -> Result<Vec<InventoryItem>> {
        let cluster = self.cluster(server)?;
        let namespaces = cluster
            .namespaces()
            .list(&ListParams::default())
            .await
            .map_err(|error| kube_error("listing namespaces", &cluster.address, error))?;
        Ok(namespaces
            .items
            .iter()
            .filter_map(|namespace| {
                let name = namespace.metadata.name.as_deref()?;
                let slug = Slug::parse(name.strip_prefix("tenant-")?).ok()?;
                let labels = serde_json::to_value(&namespace.metadata.labels).ok();
                Some(InventoryItem {
                    name: slug.resource_name(),
                    ownership: ownership_of(labels.as_ref(), server),
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_canonical() {
        assert_eq!(cpu(2000).0, "2");
        assert_eq!(cpu(1500).0, "1500m");
        assert_eq!(memory(512).0, "512Mi");
        assert_eq!(memory(4096).0, "4Gi");
        assert_eq!(memory(1024 * 1024).0, "1Ti");
    }

    #[test]
    fn label_values_are_made_valid() {
        assert_eq!(label_value("growth"), "growth");
        assert_eq!(label_value("R&D (EU)"), "R-D--EU");
        assert_eq!(label_value(&"x".repeat(80)).len(), 63);
    }

    #[test]
    fn quotas_have_defaults_and_refuse_nonsense() {
        assert_eq!(
            NamespaceQuotas::parse(&json!({})).unwrap(),
            NamespaceQuotas::default()
        );
        assert_eq!(
            NamespaceQuotas::parse(&json!({ "pods": 5 })).unwrap().pods,
            5
        );
        assert!(NamespaceQuotas::parse(&json!({ "pods": 0 })).is_err());
        assert!(NamespaceQuotas::parse(&json!({ "pods": "many" })).is_err());
        assert!(NamespaceQuotas::parse(&json!({ "gpus": 1 })).is_err());
    }

    #[test]
    fn resource_names_give_the_slug_back() {
        assert_eq!(
            slug_of("tenant_acme_health").unwrap().as_str(),
            "acme-health"
        );
        assert!(slug_of("acme").is_err());
    }
}
