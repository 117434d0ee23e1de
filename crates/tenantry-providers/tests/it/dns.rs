//! The `dns` kind against the suite's own PowerDNS (`scripts/test-services`): the conformance suite, two tenants'
//! records kept apart, CNAME and AAAA targets, and servers refused with a clear reason (a wrong API key, a zone the
//! server lacks, something that is not PowerDNS). Each test makes a zone of its own and deletes it afterwards.

use crate::conformance::{self, new_installation, unique_slug};
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tenantry_core::EngineKind;
use tenantry_providers::credentials::SecretString;
use tenantry_providers::engines::{Installation, Ownership};
use tenantry_providers::resources::{
    Observed, PowerDns, Providers, ResourceProvider, ResourceServer, WantedResource,
};
use tenantry_providers::Error;

fn api_url() -> String {
    std::env::var("TENANTRY_TEST_PDNS_API_URL")
        .expect("TENANTRY_TEST_PDNS_API_URL: run `eval \"$(scripts/test-services)\"` first")
}

fn dns_port() -> u16 {
    std::env::var("TENANTRY_TEST_PDNS_DNS_PORT")
        .ok()
        .and_then(|port| port.parse().ok())
        .unwrap_or(55353)
}

fn provider() -> Arc<dyn ResourceProvider> {
    Providers::standard()
        .require("dns")
        .expect("the dns kind is registered")
        .clone()
}

fn server_at(
    admin_url: &str,
    zone: &str,
    target: &str,
    installation: Installation,
) -> ResourceServer {
    let admin_url = SecretString::new(admin_url.to_owned());
    let settings =
        PowerDns::settings_url(&admin_url, zone, target, Some(dns_port())).expect("valid settings");
    ResourceServer {
        name: "powerdns-test".to_owned(),
        engine: EngineKind::Powerdns,
        admin_url,
        public_url: Some(settings),
        installation,
    }
}

/// The API with the suite's key, for what the provider must not be the one to do; and the zone a test owns.
pub struct Admin {
    http: reqwest::Client,
    base: String,
    key: String,
    pub zone: String,
}

impl Admin {
    /// Makes a fresh zone for one test.
    pub async fn with_new_zone() -> Admin {
        let url = url::Url::parse(&api_url()).expect("a valid API URL");
        let zone = format!("{}.test.", unique_slug("zone").as_str());
        let admin = Admin {
            http: reqwest::Client::new(),
            base: format!(
                "http://{}:{}/api/v1/servers/localhost",
                url.host_str().expect("a host"),
                url.port().expect("a port")
            ),
            key: url.password().expect("the API key").to_owned(),
            zone: zone.clone(),
        };
        admin
            .send(
                reqwest::Method::POST,
                "/zones",
                Some(json!({ "name": zone, "kind": "Native", "nameservers": [format!("ns1.{zone}")] })),
            )
            .await;
        admin
    }

    /// One API request; a 500 (PowerDNS on SQLite when two writers meet: "database is locked") is sent again.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        for attempt in 1.. {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .header("X-API-Key", &self.key)
                .timeout(Duration::from_secs(10));
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await.expect("PowerDNS's API answers");
            let status = response.status();
            if status.is_server_error() && attempt < 10 {
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                continue;
            }
            assert!(status.is_success(), "{method} {path}: {status}");
            return response.json().await.unwrap_or(Value::Null);
        }
        unreachable!("the loop returns")
    }

    /// Sets `<name>` `record_type` to `content` by hand.
    pub async fn set_record(&self, name: &str, record_type: &str, content: &str) {
        self.send(
            reqwest::Method::PATCH,
            &format!("/zones/{}", self.zone),
            Some(json!({ "rrsets": [{ "name": name, "type": record_type, "ttl": 60, "changetype": "REPLACE",
                "records": [{ "content": content, "disabled": false }] }] })),
        )
        .await;
    }

    /// The zone's record sets as `(name, type, contents)`, but its SOA (whose serial every change moves).
    pub async fn records(&self) -> Vec<(String, String, Vec<String>)> {
        let zone = self
            .send(reqwest::Method::GET, &format!("/zones/{}", self.zone), None)
            .await;
        let mut records: Vec<(String, String, Vec<String>)> = zone["rrsets"]
            .as_array()
            .expect("rrsets")
            .iter()
            .filter(|rrset| rrset["type"] != "SOA")
            .map(|rrset| {
                (
                    rrset["name"].as_str().unwrap_or("").to_owned(),
                    rrset["type"].as_str().unwrap_or("").to_owned(),
                    rrset["records"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|record| record["content"].as_str().unwrap_or("").to_owned())
                        .collect(),
                )
            })
            .collect();
        records.sort();
        records
    }

    pub async fn delete_zone(&self) {
        self.send(
            reqwest::Method::DELETE,
            &format!("/zones/{}", self.zone),
            None,
        )
        .await;
    }
}

/// Points the tenant's name elsewhere by hand: what `observe` and `verify` must notice.
fn repoint_by_hand<'a>(
    server: &'a ResourceServer,
    wanted: &'a WantedResource,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let admin = Admin::with_zone(server);
        admin
            .set_record(
                &format!("{}.{}", wanted.slug.as_str(), admin.zone),
                "A",
                "192.0.2.99",
            )
            .await;
    })
}

impl Admin {
    /// The admin for the zone `server` names (its settings URL's path).
    fn with_zone(server: &ResourceServer) -> Admin {
        let settings = url::Url::parse(server.public_url.as_deref().expect("settings"))
            .expect("a settings URL");
        let url = url::Url::parse(&api_url()).expect("a valid API URL");
        Admin {
            http: reqwest::Client::new(),
            base: format!(
                "http://{}:{}/api/v1/servers/localhost",
                url.host_str().expect("a host"),
                url.port().expect("a port")
            ),
            key: url.password().expect("the API key").to_owned(),
            zone: settings.path().trim_start_matches('/').to_owned(),
        }
    }
}

#[tokio::test]
async fn dns_passes_the_conformance_suite() {
    let admin = Admin::with_new_zone().await;
    let provider = provider();
    let server = server_at(&api_url(), &admin.zone, "127.0.0.1", new_installation());
    let other = server_at(&api_url(), &admin.zone, "127.0.0.1", new_installation());
    // In its own task, so that the zone is deleted whatever the suite found.
    let suite = tokio::spawn({
        let provider = provider.clone();
        async move {
            conformance::run(
                provider.as_ref(),
                &server,
                &other,
                json!({}),
                repoint_by_hand,
            )
            .await
        }
    })
    .await;
    admin.delete_zone().await;
    if let Err(failure) = suite {
        std::panic::resume_unwind(failure.into_panic());
    }
}

#[tokio::test]
async fn a_second_tenant_changes_nothing_of_the_first() {
    let admin = Admin::with_new_zone().await;
    let provider = provider();
    let server = server_at(&api_url(), &admin.zone, "127.0.0.1", new_installation());
    let mut tenant_a = WantedResource::new(&unique_slug("iso-a"), json!({}));
    tenant_a.labels =
        json!({ "tenant": tenant_a.slug.as_str(), "plan": "starter", "cost_center": "growth" });
    let tenant_b = WantedResource::new(&unique_slug("iso-b"), json!({}));
    let credentials_a = provider.new_credentials(&server, &tenant_a).unwrap();
    let credentials_b = provider.new_credentials(&server, &tenant_b).unwrap();
    assert!(
        !credentials_a.expose().contains('@'),
        "a DNS resource has no password"
    );
    provider
        .ensure(&server, &tenant_a, &credentials_a)
        .await
        .unwrap();
    let records_after_a = admin.records().await;
    let name_a = format!("{}.{}", tenant_a.slug.as_str(), admin.zone);
    assert!(records_after_a
        .iter()
        .any(|(name, kind, contents)| *name == name_a
            && kind == "A"
            && contents == &["127.0.0.1"]));
    let mark_a = records_after_a
        .iter()
        .find(|(name, kind, _)| *name == format!("_tenantry.{name_a}") && kind == "TXT")
        .expect("the TXT mark");
    for label in [
        "\"plan=starter\"",
        "\"cost_center=growth\"",
        &format!("\"installation={}\"", server.installation.id()),
    ] {
        assert!(mark_a.2[0].contains(label), "{label} in {:?}", mark_a.2);
    }

    provider
        .ensure(&server, &tenant_b, &credentials_b)
        .await
        .unwrap();
    provider.remove(&server, &tenant_b.name).await.unwrap();
    assert_eq!(
        admin.records().await,
        records_after_a,
        "B changed A's records"
    );
    let checks = provider
        .verify(&server, &tenant_a, &credentials_a, &tenant_b)
        .await
        .unwrap();
    assert!(checks.iter().all(|check| check.passed), "{checks:?}");
    admin.delete_zone().await;
}

#[tokio::test]
async fn a_cname_target_answers_over_dns() {
    let admin = Admin::with_new_zone().await;
    let provider = provider();
    let server = server_at(
        &api_url(),
        &admin.zone,
        "ingress.example.net",
        new_installation(),
    );
    let tenant = WantedResource::new(&unique_slug("cname"), json!({}));
    let neighbour = WantedResource::new(&unique_slug("nb"), json!({}));
    let credentials = provider.new_credentials(&server, &tenant).unwrap();
    provider
        .ensure(&server, &tenant, &credentials)
        .await
        .unwrap();
    assert!(provider
        .observe(&server, &tenant, None)
        .await
        .unwrap()
        .matches());
    let checks = provider
        .verify(&server, &tenant, &credentials, &neighbour)
        .await
        .unwrap();
    assert!(checks.iter().all(|check| check.passed), "{checks:?}");
    // An A record added beside the CNAME by hand is a difference, and ensure removes it.
    let other_server = server_at(
        &api_url(),
        &admin.zone,
        "127.0.0.1",
        server.installation.clone(),
    );
    provider
        .ensure(&other_server, &tenant, &credentials)
        .await
        .unwrap();
    match provider.observe(&server, &tenant, None).await.unwrap() {
        Observed::Present { differences, .. } => assert!(!differences.is_empty()),
        Observed::Absent => panic!("absent"),
    }
    provider
        .ensure(&server, &tenant, &credentials)
        .await
        .unwrap();
    assert!(provider
        .observe(&server, &tenant, None)
        .await
        .unwrap()
        .matches());
    admin.delete_zone().await;
}

#[tokio::test]
async fn bad_servers_are_refused_with_a_reason() {
    let admin = Admin::with_new_zone().await;
    let provider = provider();
    let good = server_at(&api_url(), &admin.zone, "127.0.0.1", new_installation());
    assert_eq!(
        provider.check_server(&good).await.unwrap(),
        Vec::<String>::new()
    );

    let mut wrong_key = url::Url::parse(&api_url()).unwrap();
    wrong_key.set_password(Some("not-the-key")).unwrap();
    let error = provider
        .check_server(&server_at(
            wrong_key.as_str(),
            &admin.zone,
            "127.0.0.1",
            new_installation(),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::AdminConnection(message) if message.contains("API key was refused")),
        "{error:?}"
    );
    assert!(!error.to_string().contains("not-the-key"));

    let error = provider
        .check_server(&server_at(
            &api_url(),
            "no-such-zone.test.",
            "127.0.0.1",
            new_installation(),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Refused(message) if message.contains("has no zone no-such-zone.test.")),
        "{error:?}"
    );

    // Something that answers HTTP but is not PowerDNS: a closed port, and a listener of our own that answers 404.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = [0u8; 2048];
            let _ = stream.read(&mut buffer).await;
            let _ = stream
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
        }
    });
    let error = provider
        .check_server(&server_at(
            &format!("http://api:key@127.0.0.1:{port}"),
            &admin.zone,
            "127.0.0.1",
            new_installation(),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::AdminConnection(message) if message.contains("does not serve PowerDNS")),
        "{error:?}"
    );
    drop(error);
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let error = provider
        .check_server(&server_at(
            &format!("http://api:key@127.0.0.1:{closed}"),
            &admin.zone,
            "127.0.0.1",
            new_installation(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::AdminConnection(_)), "{error:?}");

    // Settings that are not a zone and a target are bad input.
    let mut no_settings = good.clone();
    no_settings.public_url = None;
    assert!(matches!(
        provider.check_server(&no_settings).await,
        Err(Error::Refused(_))
    ));
    admin.delete_zone().await;
}

#[tokio::test]
async fn another_installations_records_are_listed_as_foreign() {
    let admin = Admin::with_new_zone().await;
    let provider = provider();
    let ours = server_at(&api_url(), &admin.zone, "127.0.0.1", new_installation());
    let theirs = server_at(&api_url(), &admin.zone, "127.0.0.1", new_installation());
    let tenant = WantedResource::new(&unique_slug("theirs"), json!({}));
    let credentials = provider.new_credentials(&theirs, &tenant).unwrap();
    provider
        .ensure(&theirs, &tenant, &credentials)
        .await
        .unwrap();
    // A name of the zone that is no tenant's is not in the inventory at all.
    admin
        .set_record(&format!("www.{}", admin.zone), "A", "192.0.2.1")
        .await;
    let inventory = provider.inventory(&ours).await.unwrap();
    assert_eq!(inventory.len(), 1, "{inventory:?}");
    assert_eq!(inventory[0].name, tenant.name);
    assert!(matches!(inventory[0].ownership, Ownership::Foreign(_)));
    assert!(matches!(
        provider.disable(&ours, &tenant.name).await,
        Err(Error::Foreign(_))
    ));
    admin.delete_zone().await;
}

#[tokio::test]
async fn an_ipv6_target_answers_as_aaaa() {
    let admin = Admin::with_new_zone().await;
    let provider = provider();
    let server = server_at(&api_url(), &admin.zone, "2001:db8::10", new_installation());
    let tenant = WantedResource::new(&unique_slug("six"), json!({}));
    let neighbour = WantedResource::new(&unique_slug("nb"), json!({}));
    let credentials = provider.new_credentials(&server, &tenant).unwrap();
    provider
        .ensure(&server, &tenant, &credentials)
        .await
        .unwrap();
    let name = format!("{}.{}", tenant.slug.as_str(), admin.zone);
    assert!(admin
        .records()
        .await
        .iter()
        .any(|(record, kind, contents)| *record == name
            && kind == "AAAA"
            && contents == &["2001:db8::10"]));
    let checks = provider
        .verify(&server, &tenant, &credentials, &neighbour)
        .await
        .unwrap();
    assert!(checks.iter().all(|check| check.passed), "{checks:?}");
    admin.delete_zone().await;
}
