//! The `namespace` kind against the FAKE Kubernetes API server (`fake-kube-apiserver`: no real API server can run
//! on this machine): the conformance suite, the objects it applies and their field manager, suspension, removal
//! that waits for a terminating namespace, manifests that are what was applied, another installation's and
//! unmarked namespaces left alone, and servers refused with a clear reason.

use crate::conformance::{self, new_installation, unique_slug};
use fake_kube_apiserver::{missing_fields, FakeApiServer};
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tenantry_core::EngineKind;
use tenantry_providers::credentials::SecretString;
use tenantry_providers::engines::{Installation, Ownership};
use tenantry_providers::resources::{
    Observed, Providers, ResourceProvider, ResourceServer, WantedResource,
};
use tenantry_providers::Error;

const TOKEN: &str = "fake-admin-token-3d9c";

fn provider() -> Arc<dyn ResourceProvider> {
    Providers::standard()
        .require("namespace")
        .expect("the namespace kind is registered")
        .clone()
}

fn server_at(admin_url: &str, installation: Installation) -> ResourceServer {
    ResourceServer {
        name: "kubernetes-test".to_owned(),
        engine: EngineKind::Kubernetes,
        admin_url: SecretString::new(admin_url.to_owned()),
        public_url: None,
        installation,
    }
}

/// Widens the tenant's Role by hand (every verb on every resource), as `kubectl patch --type merge` would.
fn widen_role_by_hand<'a>(
    server: &'a ResourceServer,
    wanted: &'a WantedResource,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let url = url::Url::parse(server.admin_url.expose()).expect("an admin URL");
        let response = reqwest::Client::new()
            .patch(format!(
                "http://{}:{}/apis/rbac.authorization.k8s.io/v1/namespaces/tenant-{}/roles/tenant-app",
                url.host_str().expect("a host"),
                url.port().expect("a port"),
                wanted.slug.as_str()
            ))
            .bearer_auth(url.password().expect("a token"))
            .header("content-type", "application/merge-patch+json")
            .body(
                json!({ "rules": [{ "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"] }] })
                    .to_string(),
            )
            .send()
            .await
            .expect("the fake answers");
        assert!(response.status().is_success(), "{}", response.status());
    })
}

#[tokio::test]
async fn namespace_passes_the_conformance_suite() {
    let fake = FakeApiServer::start(TOKEN).await;
    let server = server_at(&fake.admin_url(), new_installation());
    let other = server_at(&fake.admin_url(), new_installation());
    conformance::run(
        provider().as_ref(),
        &server,
        &other,
        json!({ "cpu_millis": 1500, "memory_mib": 2048, "pods": 7 }),
        widen_role_by_hand,
    )
    .await;
}

/// The object of `resource` named `name` in what the fake holds for `namespace`.
fn stored(fake: &FakeApiServer, namespace: &str, resource: &str, name: &str) -> Value {
    fake.objects_in(namespace)
        .into_iter()
        .find(|(kind, object)| kind == resource && object["metadata"]["name"] == name)
        .map(|(_, object)| object)
        .unwrap_or_else(|| panic!("{resource}/{name} is not in {namespace}"))
}

#[tokio::test]
async fn the_objects_are_applied_with_the_plans_quotas_and_suspension_locks_them() {
    let fake = FakeApiServer::start(TOKEN).await;
    let provider = provider();
    let server = server_at(&fake.admin_url(), new_installation());
    let mut tenant = WantedResource::new(
        &unique_slug("objs"),
        json!({ "cpu_millis": 3000, "memory_mib": 6144, "pods": 12 }),
    );
    tenant.labels = json!({ "tenant": tenant.slug.as_str(), "plan": "pro", "cost_center": "R&D" });
    let credentials = provider.new_credentials(&server, &tenant).unwrap();
    assert!(!credentials.expose().contains(TOKEN));
    provider
        .ensure(&server, &tenant, &credentials)
        .await
        .unwrap();

    let namespace = format!("tenant-{}", tenant.slug.as_str());
    let stored_namespace = fake.namespace(&namespace).expect("the namespace");
    let labels = &stored_namespace["metadata"]["labels"];
    assert_eq!(labels["tenantry.io/installation"], server.installation.id());
    assert_eq!(labels["tenantry.io/tenant"], tenant.slug.as_str());
    assert_eq!(labels["tenantry.io/plan"], "pro");
    assert_eq!(labels["tenantry.io/cost_center"], "R-D");
    assert_eq!(
        stored_namespace["metadata"]["managedFields"],
        json!([{ "manager": "tenantry", "operation": "Apply" }])
    );

    let mut kinds: Vec<String> = fake
        .objects_in(&namespace)
        .into_iter()
        .map(|(resource, object)| {
            format!(
                "{resource}/{}",
                object["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "limitranges/tenant-limits",
            "networkpolicies/allow-dns-egress",
            "networkpolicies/allow-same-namespace",
            "networkpolicies/default-deny",
            "resourcequotas/tenant-quota",
            "rolebindings/tenant-app",
            "roles/tenant-app",
            "serviceaccounts/tenant-app",
        ]
    );
    let quota = stored(&fake, &namespace, "resourcequotas", "tenant-quota");
    assert_eq!(
        quota["spec"]["hard"],
        json!({ "requests.cpu": "3", "limits.cpu": "3", "requests.memory": "6Gi",
                "limits.memory": "6Gi", "pods": "12" })
    );
    let deny = stored(&fake, &namespace, "networkpolicies", "default-deny");
    assert_eq!(
        deny["spec"],
        json!({ "podSelector": {}, "policyTypes": ["Ingress", "Egress"] })
    );
    let binding = stored(&fake, &namespace, "rolebindings", "tenant-app");
    assert_eq!(
        binding["subjects"],
        json!([{ "kind": "ServiceAccount", "name": "tenant-app", "namespace": namespace }])
    );
    assert_eq!(binding["roleRef"]["kind"], "Role");

    // Suspended: no new pod, and the service account holds no role; resumed, both come back.
    provider.disable(&server, &tenant.name).await.unwrap();
    let quota = stored(&fake, &namespace, "resourcequotas", "tenant-quota");
    assert_eq!(quota["spec"]["hard"]["pods"], "0");
    assert_eq!(quota["spec"]["hard"]["limits.cpu"], "3");
    let binding = stored(&fake, &namespace, "rolebindings", "tenant-app");
    assert_eq!(binding["subjects"], json!([]));
    let mut suspended = tenant.clone();
    suspended.enabled = false;
    assert!(
        provider
            .observe(&server, &suspended, None)
            .await
            .unwrap()
            .matches(),
        "a suspended namespace matches the suspended wanted state"
    );
    provider.enable(&server, &tenant.name).await.unwrap();
    let quota = stored(&fake, &namespace, "resourcequotas", "tenant-quota");
    assert_eq!(quota["spec"]["hard"]["pods"], "12");
    assert!(provider
        .observe(&server, &tenant, None)
        .await
        .unwrap()
        .matches());
}

#[tokio::test]
async fn the_printed_manifests_are_what_was_applied() {
    let fake = FakeApiServer::start(TOKEN).await;
    let provider = provider();
    let server = server_at(&fake.admin_url(), new_installation());
    let tenant = WantedResource::new(&unique_slug("mani"), json!({ "pods": 3 }));
    let credentials = provider.new_credentials(&server, &tenant).unwrap();
    provider
        .ensure(&server, &tenant, &credentials)
        .await
        .unwrap();
    let yaml = provider
        .manifests(&server, &tenant)
        .unwrap()
        .expect("the namespace kind has manifests");
    let namespace = format!("tenant-{}", tenant.slug.as_str());
    let mut n_documents = 0;
    for document in serde_yaml::Deserializer::from_str(&yaml) {
        let manifest: Value = serde::Deserialize::deserialize(document).expect("YAML");
        n_documents += 1;
        let name = manifest["metadata"]["name"].as_str().expect("a name");
        let live = if manifest["kind"] == "Namespace" {
            fake.namespace(name).expect("the namespace")
        } else {
            let resource = format!("{}s", manifest["kind"].as_str().unwrap().to_lowercase())
                .replace("policys", "policies");
            stored(&fake, &namespace, &resource, name)
        };
        assert_eq!(
            missing_fields(&manifest, &live),
            Vec::<String>::new(),
            "{name}"
        );
    }
    assert_eq!(n_documents, 9);
}

#[tokio::test]
async fn removal_waits_until_the_namespace_is_gone() {
    let fake = FakeApiServer::start(TOKEN).await;
    let provider = provider();
    let server = server_at(&fake.admin_url(), new_installation());
    let tenant = WantedResource::new(&unique_slug("gone"), json!({}));
    let credentials = provider.new_credentials(&server, &tenant).unwrap();
    provider
        .ensure(&server, &tenant, &credentials)
        .await
        .unwrap();
    let namespace = format!("tenant-{}", tenant.slug.as_str());
    provider.remove(&server, &tenant.name).await.unwrap();
    // Looked at the moment `remove` returns: the fake keeps a deleted namespace Terminating for a while, so a
    // removal that did not wait would leave it here.
    assert_eq!(fake.namespace(&namespace), None);
    assert!(fake.objects_in(&namespace).is_empty());
}

#[tokio::test]
async fn unmarked_and_foreign_namespaces_are_left_alone() {
    let fake = FakeApiServer::start(TOKEN).await;
    let provider = provider();
    let server = server_at(&fake.admin_url(), new_installation());
    let unmarked = WantedResource::new(&unique_slug("hand"), json!({}));
    fake.put_namespace(
        &format!("tenant-{}", unmarked.slug.as_str()),
        json!({ "team": "someone" }),
    );
    let foreign = WantedResource::new(&unique_slug("theirs"), json!({}));
    fake.put_namespace(
        &format!("tenant-{}", foreign.slug.as_str()),
        json!({ "tenantry.io/installation": "00000000000000ff" }),
    );
    // A namespace that is no tenant's is not in the inventory at all.
    fake.put_namespace("kube-system", json!({}));

    let mut inventory = provider.inventory(&server).await.unwrap();
    inventory.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(inventory.len(), 2, "{inventory:?}");
    for (wanted, ownership) in [
        (&unmarked, Ownership::Unmarked),
        (&foreign, Ownership::Foreign("00000000000000ff".into())),
    ] {
        let item = inventory
            .iter()
            .find(|item| item.name == wanted.name)
            .unwrap();
        assert_eq!(item.ownership, ownership);
        match provider.observe(&server, wanted, None).await.unwrap() {
            Observed::Present {
                ownership: seen, ..
            } => assert_eq!(seen, ownership),
            Observed::Absent => panic!("absent"),
        }
        let credentials = provider.new_credentials(&server, wanted).unwrap();
        assert!(matches!(
            provider.ensure(&server, wanted, &credentials).await,
            Err(Error::Foreign(_))
        ));
        assert!(matches!(
            provider.remove(&server, &wanted.name).await,
            Err(Error::Foreign(_))
        ));
        assert!(matches!(
            provider.disable(&server, &wanted.name).await,
            Err(Error::Foreign(_))
        ));
    }
    // Untouched: still no object inside, and the labels as they were.
    let namespace = format!("tenant-{}", unmarked.slug.as_str());
    assert!(fake.objects_in(&namespace).is_empty());
    assert_eq!(
        fake.namespace(&namespace).unwrap()["metadata"]["labels"],
        json!({ "team": "someone" })
    );
}

#[tokio::test]
async fn bad_servers_are_refused_with_a_reason() {
    let fake = FakeApiServer::start(TOKEN).await;
    let provider = provider();
    let good = server_at(&fake.admin_url(), new_installation());
    assert_eq!(
        provider.check_server(&good).await.unwrap(),
        Vec::<String>::new()
    );

    let address = fake.url.trim_start_matches("http://").to_owned();
    let error = provider
        .check_server(&server_at(
            &format!("http://admin:not-the-token@{address}"),
            new_installation(),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::AdminConnection(message) if message.contains("refused the bearer token")),
        "{error:?}"
    );
    assert!(!format!("{error:?}").contains("not-the-token"));

    // Something that answers HTTP but is not an API server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = [0u8; 2048];
            let _ = stream.read(&mut buffer).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 13\r\nconnection: close\r\n\r\n<html></html>")
                .await;
        }
    });
    let error = provider
        .check_server(&server_at(
            &format!("http://admin:{TOKEN}@127.0.0.1:{port}"),
            new_installation(),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::AdminConnection(message) if message.contains("does not answer as a Kubernetes API server")),
        "{error:?}"
    );
    assert!(!format!("{error:?}").contains(TOKEN));

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let error = provider
        .check_server(&server_at(
            &format!("http://admin:{TOKEN}@127.0.0.1:{closed}"),
            new_installation(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::AdminConnection(_)), "{error:?}");
    assert!(!format!("{error:?}").contains(TOKEN));

    // URLs that are not an API server's with a token: bad input.
    for url in [
        format!("http://{address}"),
        format!("postgres://admin:{TOKEN}@{address}"),
        format!("http://admin:{TOKEN}@{address}/api/v1"),
        "not a url".to_owned(),
    ] {
        let error = provider
            .check_server(&server_at(&url, new_installation()))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Refused(_)), "{url}: {error:?}");
        assert!(!error.to_string().contains(TOKEN), "{error}");
    }
}
