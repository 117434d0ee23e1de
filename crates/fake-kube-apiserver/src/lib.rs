//! A FAKE Kubernetes API server, for tenantry's tests only: no real API server (nor etcd, nor a kubelet) can run
//! on this machine, so the `namespace` kind is tested against this small in-memory imitation of the parts of the
//! API it uses. It is not Kubernetes and proves nothing about a real cluster beyond what it imitates.
//!
//! What it answers, on plain HTTP at 127.0.0.1 on a random port, with a bearer token (401 without it):
//! - `GET /version`;
//! - for cluster objects (`/api/v1/namespaces[/NAME]`) and namespaced ones
//!   (`/api/v1/namespaces/NS/RESOURCE[/NAME]`, `/apis/GROUP/VERSION/namespaces/NS/RESOURCE[/NAME]`): `GET` of one
//!   object or of a list (no label selectors, no watch), `DELETE`, and `PATCH` as server-side apply
//!   (`application/apply-patch+yaml`, `fieldManager` required) or as a JSON merge patch
//!   (`application/merge-patch+json`, what a person's `kubectl patch --type merge` sends).
//!
//! Apply and merge patch both merge the body into the stored object (maps merged, lists replaced), and an apply
//! records its field manager in `metadata.managedFields`. Field ownership and conflicts are not modelled: an
//! apply without `force` never conflicts here. A deleted namespace is `Terminating` (with a
//! `deletionTimestamp`) for [`TERMINATION`] before it disappears with every object in it, and nothing new may be
//! created in it meanwhile (403), as on a real server. Nothing is validated against a schema and no defaults are
//! filled in (a real server adds `protocol: TCP` to a port, canonicalises quantities, …).

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long a deleted namespace stays `Terminating` before it disappears.
pub const TERMINATION: Duration = Duration::from_millis(400);

/// Where an object is kept: the API prefix (`api/v1`, `apis/rbac.authorization.k8s.io/v1`), the resource's plural
/// name, its namespace (empty for a namespace itself) and its name.
pub type ObjectKey = (String, String, String, String);

#[derive(Default)]
struct Store {
    objects: BTreeMap<ObjectKey, Value>,
    resource_version: u64,
}

/// A running fake API server; it stops when the test's runtime ends.
#[derive(Clone)]
pub struct FakeApiServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The bearer token it accepts.
    pub token: String,
    store: Arc<Mutex<Store>>,
}

#[derive(Clone)]
struct Shared {
    token: String,
    store: Arc<Mutex<Store>>,
}

impl FakeApiServer {
    /// Starts one on a random port of 127.0.0.1, accepting `token`.
    pub async fn start(token: &str) -> FakeApiServer {
        let store = Arc::new(Mutex::new(Store::default()));
        let shared = Shared {
            token: token.to_owned(),
            store: store.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the fake API server binds a port of 127.0.0.1");
        let address = listener
            .local_addr()
            .expect("the fake API server's address");
        let app = axum::Router::new().fallback(handle).with_state(shared);
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeApiServer {
            url: format!("http://{address}"),
            token: token.to_owned(),
            store,
        }
    }

    /// The admin URL tenantry registers: the token as the URL's password.
    pub fn admin_url(&self) -> String {
        format!("http://admin:{}@{}", self.token, self.address())
    }

    fn address(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// The stored namespace `name`, if any (terminating or not).
    pub fn namespace(&self, name: &str) -> Option<Value> {
        lock(&self.store)
            .objects
            .get(&key("api/v1", "namespaces", "", name))
            .cloned()
    }

    /// Every object stored in namespace `namespace`, as `(resource, object)`.
    pub fn objects_in(&self, namespace: &str) -> Vec<(String, Value)> {
        lock(&self.store)
            .objects
            .iter()
            .filter(|((_, _, object_namespace, _), _)| object_namespace == namespace)
            .map(|((_, resource, _, _), object)| (resource.clone(), object.clone()))
            .collect()
    }

    /// Stores a namespace as someone other than tenantry would make it (`labels` only).
    pub fn put_namespace(&self, name: &str, labels: Value) {
        let mut store = lock(&self.store);
        let object = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": { "name": name, "labels": labels },
        });
        let object = store.stamp(object);
        store
            .objects
            .insert(key("api/v1", "namespaces", "", name), object);
    }
}

fn key(prefix: &str, resource: &str, namespace: &str, name: &str) -> ObjectKey {
    (
        prefix.to_owned(),
        resource.to_owned(),
        namespace.to_owned(),
        name.to_owned(),
    )
}

fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    // A test that panicked while holding the lock has failed already; the store is still usable.
    store
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store {
    /// Gives a new or changed object the metadata a server keeps.
    fn stamp(&mut self, mut object: Value) -> Value {
        self.resource_version += 1;
        let metadata = &mut object["metadata"];
        if metadata.get("uid").is_none() {
            metadata["uid"] = json!(format!("fake-uid-{}", self.resource_version));
            metadata["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        metadata["resourceVersion"] = json!(self.resource_version.to_string());
        object
    }
}

/// A Kubernetes `Status` error.
fn status(code: StatusCode, reason: &str, message: String) -> Response {
    (
        code,
        Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code.as_u16(),
        })),
    )
        .into_response()
}

/// A request's target, from its path.
struct Target {
    prefix: String,
    resource: String,
    namespace: String,
    name: Option<String>,
}

impl Target {
    fn parse(path: &str) -> Option<Target> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (prefix, rest) = match segments.as_slice() {
            ["api", "v1", rest @ ..] => ("api/v1".to_owned(), rest),
            ["apis", group, version, rest @ ..] => (format!("apis/{group}/{version}"), rest),
            _ => return None,
        };
        let (resource, namespace, name) = match rest {
            ["namespaces"] => ("namespaces", "", None),
            ["namespaces", name] => ("namespaces", "", Some(*name)),
            ["namespaces", namespace, resource] => (*resource, *namespace, None),
            ["namespaces", namespace, resource, name] => (*resource, *namespace, Some(*name)),
            _ => return None,
        };
        if resource == "namespaces" && prefix != "api/v1" {
            return None;
        }
        Some(Target {
            prefix,
            resource: resource.to_owned(),
            namespace: namespace.to_owned(),
            name: name.map(str::to_owned),
        })
    }

    fn key(&self, name: &str) -> ObjectKey {
        key(&self.prefix, &self.resource, &self.namespace, name)
    }
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorised = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == format!("Bearer {}", shared.token));
    if !authorised {
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".into(),
        );
    }
    if uri.path() == "/version" && method == Method::GET {
        return Json(json!({
            "major": "1", "minor": "30", "gitVersion": "v1.30.0-fake", "gitCommit": "fake",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "fake",
            "compiler": "fake", "platform": "fake/fake",
        }))
        .into_response();
    }
    let Some(target) = Target::parse(uri.path()) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the fake has no {}", uri.path()),
        );
    };
    match (method, target.name.clone()) {
        (Method::GET, Some(name)) => get(&shared, &target, &name),
        (Method::GET, None) => list(&shared, &target),
        (Method::PATCH, Some(name)) => {
            let content_type = headers
                .get("content-type")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("");
            patch(&shared, &target, &name, content_type, &query, &body)
        }
        (Method::DELETE, Some(name)) => delete(&shared, &target, &name),
        (method, _) => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("the fake does not answer {method} {}", uri.path()),
        ),
    }
}

fn not_found(target: &Target, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} \"{name}\" not found", target.resource),
    )
}

fn get(shared: &Shared, target: &Target, name: &str) -> Response {
    match lock(&shared.store).objects.get(&target.key(name)) {
        Some(object) => Json(object.clone()).into_response(),
        None => not_found(target, name),
    }
}

fn list(shared: &Shared, target: &Target) -> Response {
    let store = lock(&shared.store);
    let items: Vec<Value> = store
        .objects
        .iter()
        .filter(|((prefix, resource, namespace, _), _)| {
            *prefix == target.prefix
                && *resource == target.resource
                && *namespace == target.namespace
        })
        .map(|(_, object)| object.clone())
        .collect();
    Json(json!({
        "kind": "List", "apiVersion": "v1",
        "metadata": { "resourceVersion": store.resource_version.to_string() },
        "items": items,
    }))
    .into_response()
}

/// Maps merged key by key, anything else replaced; `null` removes a key (as in a JSON merge patch).
fn merge(stored: &mut Value, patch: &Value) {
    match (stored, patch) {
        (Value::Object(stored), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    stored.remove(key);
                } else {
                    merge(stored.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (stored, patch) => *stored = patch.clone(),
    }
}

fn patch(
    shared: &Shared,
    target: &Target,
    name: &str,
    content_type: &str,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Response {
    let is_apply = content_type.starts_with("application/apply-patch+yaml");
    if !is_apply && !content_type.starts_with("application/merge-patch+json") {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the fake takes apply and merge patches, not {content_type:?}"),
        );
    }
    // YAML is a superset of JSON, so one parser reads both.
    let Ok(patch) = serde_yaml::from_slice::<Value>(body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not YAML".into(),
        );
    };
    let manager = query.get("fieldManager").cloned();
    if is_apply {
        if manager.as_deref().unwrap_or("").is_empty() {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "PATCH, apply: fieldManager is required".into(),
            );
        }
        if patch.get("apiVersion").is_none() || patch.get("kind").is_none() {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "an applied object names its apiVersion and kind".into(),
            );
        }
        if patch["metadata"]["name"].as_str() != Some(name) {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("the applied object's name is not {name:?}"),
            );
        }
    }
    let mut store = lock(&shared.store);
    if !target.namespace.is_empty() {
        match store
            .objects
            .get(&key("api/v1", "namespaces", "", &target.namespace))
        {
            None => {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("namespaces \"{}\" not found", target.namespace),
                )
            }
            Some(namespace)
                if namespace["status"]["phase"] == "Terminating"
                    && !store.objects.contains_key(&target.key(name)) =>
            {
                return status(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    format!(
                        "{} \"{name}\" is forbidden: unable to create new content in namespace {} because it is \
                         being terminated",
                        target.resource, target.namespace
                    ),
                )
            }
            Some(_) => {}
        }
    }
    let existing = store.objects.get(&target.key(name)).cloned();
    let mut object = match existing {
        Some(object) => object,
        None if is_apply => {
            let mut object = json!({ "metadata": { "name": name } });
            if !target.namespace.is_empty() {
                object["metadata"]["namespace"] = json!(target.namespace);
            }
            if target.resource == "namespaces" {
                object["status"] = json!({ "phase": "Active" });
            }
            object
        }
        None => return not_found(target, name),
    };
    merge(&mut object, &patch);
    if let Some(manager) = manager.filter(|_| is_apply) {
        let fields = object["metadata"]
            .as_object_mut()
            .map(|metadata| metadata.entry("managedFields").or_insert(json!([])));
        if let Some(Value::Array(fields)) = fields {
            fields.retain(|entry| entry["manager"] != manager.as_str());
            fields.push(json!({ "manager": manager, "operation": "Apply" }));
        }
    }
    let object = store.stamp(object);
    store.objects.insert(target.key(name), object.clone());
    Json(object).into_response()
}

fn delete(shared: &Shared, target: &Target, name: &str) -> Response {
    let mut store = lock(&shared.store);
    let object_key = target.key(name);
    let Some(object) = store.objects.get(&object_key).cloned() else {
        return not_found(target, name);
    };
    if target.resource != "namespaces" {
        store.objects.remove(&object_key);
        return Json(object).into_response();
    }
    if object["status"]["phase"] == "Terminating" {
        return Json(object).into_response();
    }
    let mut terminating = object;
    terminating["status"] = json!({ "phase": "Terminating" });
    terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let terminating = store.stamp(terminating);
    store
        .objects
        .insert(object_key.clone(), terminating.clone());
    // The namespace controller's work: after a while the namespace and everything in it are gone.
    let store_handle = shared.store.clone();
    let namespace = name.to_owned();
    tokio::spawn(async move {
        tokio::time::sleep(TERMINATION).await;
        let mut store = lock(&store_handle);
        store
            .objects
            .retain(|(_, _, object_namespace, _), _| *object_namespace != namespace);
        store.objects.remove(&object_key);
    });
    Json(terminating).into_response()
}

/// The fields of `wanted` that `live` lacks or holds otherwise (maps compared key by key, lists element by
/// element), as `path: wanted ≠ live` lines: how a test compares printed manifests with what the fake holds.
pub fn missing_fields(wanted: &Value, live: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    walk(wanted, live, String::new(), &mut missing);
    missing
}

fn walk(wanted: &Value, live: &Value, path: String, missing: &mut Vec<String>) {
    match (wanted, live) {
        (Value::Object(wanted), Value::Object(live)) => {
            for (key, value) in wanted {
                walk(
                    value,
                    live.get(key).unwrap_or(&Value::Null),
                    format!("{path}.{key}"),
                    missing,
                );
            }
        }
        (Value::Array(wanted), Value::Array(live)) if wanted.len() == live.len() => {
            for (index, (wanted, live)) in wanted.iter().zip(live).enumerate() {
                walk(wanted, live, format!("{path}[{index}]"), missing);
            }
        }
        (wanted, live) if wanted == live => {}
        (wanted, live) => missing.push(format!("{path}: {wanted} ≠ {live}")),
    }
}
