//! The `bucket` kind against the suite's own SeaweedFS (`scripts/test-services`): the conformance suite, two
//! tenants' keys kept to their own buckets, removal of a bucket that holds objects, and servers refused with a clear
//! reason (a wrong key, something that is not S3, a closed port). What a test does "by hand" goes through curl's
//! own Signature Version 4, so the provider's signing is not what checks itself.

use crate::conformance::{self, new_installation, unique_slug};
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use tenantry_core::EngineKind;
use tenantry_providers::credentials::SecretString;
use tenantry_providers::engines::Installation;
use tenantry_providers::resources::{
    Observed, Providers, ResourceProvider, ResourceServer, WantedResource,
};
use tenantry_providers::Error;

pub fn s3_url() -> String {
    std::env::var("TENANTRY_TEST_S3_URL")
        .expect("TENANTRY_TEST_S3_URL: run `eval \"$(scripts/test-services)\"` first")
}

fn provider() -> Arc<dyn ResourceProvider> {
    Providers::standard()
        .require("bucket")
        .expect("the bucket kind is registered")
        .clone()
}

fn server_at(admin_url: &str, installation: Installation) -> ResourceServer {
    ResourceServer {
        name: "s3-test".to_owned(),
        engine: EngineKind::S3,
        admin_url: SecretString::new(admin_url.to_owned()),
        public_url: None,
        installation,
    }
}

/// `(endpoint, key id, secret)` of an `http://KEY:SECRET@host:port` or `s3://KEY:SECRET@host:port/bucket` URL.
fn parts(url: &str) -> (String, String, String) {
    let url = url::Url::parse(url).expect("a URL");
    (
        format!(
            "http://{}:{}",
            url.host_str().expect("a host"),
            url.port().expect("a port")
        ),
        url.username().to_owned(),
        url.password().expect("a secret").to_owned(),
    )
}

/// One request signed by curl with the key in `url`: the HTTP status and the body. The key reaches curl through
/// a config file on its standard input, never its command line.
pub fn curl(
    url: &str,
    service: &str,
    method: &str,
    path: &str,
    data: Option<&str>,
) -> (u16, String) {
    let (endpoint, key_id, secret) = parts(url);
    let mut command = Command::new("curl");
    command.args(["-s", "--max-time", "10", "-w", "\n%{http_code}"]);
    // `-X HEAD` would wait for a body that never comes.
    if method == "HEAD" {
        command.arg("-I");
    } else {
        command.args(["-X", method]);
    }
    command
        .args(["--aws-sigv4", &format!("aws:amz:us-east-1:{service}")])
        .args(["-K", "-"]);
    if let Some(data) = data {
        command.args(["--data-binary", data]);
        if service == "s3" {
            command.args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]);
        }
    }
    command.arg(format!("{endpoint}{path}"));
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = command.spawn().expect("curl runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "user = \"{key_id}:{secret}\"").expect("write curl's config");
    }
    let output = child.wait_with_output().expect("curl ends");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// One IAM action by hand with the suite's admin key.
pub fn iam(action: &str, params: &[(&str, &str)]) -> (u16, String) {
    let mut form = vec![("Action", action), ("Version", "2010-05-08")];
    form.extend_from_slice(params);
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    curl(&s3_url(), "iam", "POST", "/", Some(&body))
}

/// Widens the tenant's user to every bucket by hand: what `observe` and `verify` must notice.
fn widen_by_hand<'a>(
    _server: &'a ResourceServer,
    wanted: &'a WantedResource,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let user = format!("tenant-{}", wanted.slug.as_str());
        let policy =
            json!({ "Version": "2012-10-17", "Statement": [{ "Effect": "Allow", "Action": ["s3:*"],
            "Resource": ["arn:aws:s3:::*"] }] })
            .to_string();
        let (status, body) = iam(
            "PutUserPolicy",
            &[
                ("UserName", &user),
                ("PolicyName", "tenantry-bucket"),
                ("PolicyDocument", &policy),
            ],
        );
        assert_eq!(status, 200, "{body}");
    })
}

#[tokio::test]
async fn bucket_passes_the_conformance_suite() {
    let provider = provider();
    let server = server_at(&s3_url(), new_installation());
    let other = server_at(&s3_url(), new_installation());
    conformance::run(provider.as_ref(), &server, &other, json!({}), widen_by_hand).await;
}

#[tokio::test]
async fn each_tenants_key_opens_its_own_bucket_alone() {
    let provider = provider();
    let server = server_at(&s3_url(), new_installation());
    let mut tenant_a = WantedResource::new(&unique_slug("iso-a"), json!({}));
    tenant_a.labels =
        json!({ "tenant": tenant_a.slug.as_str(), "plan": "starter", "cost_center": "growth" });
    let tenant_b = WantedResource::new(&unique_slug("iso-b"), json!({}));
    let credentials_a = provider.new_credentials(&server, &tenant_a).unwrap();
    let credentials_b = provider.new_credentials(&server, &tenant_b).unwrap();
    let bucket_a = format!("tenant-{}", tenant_a.slug.as_str());
    let bucket_b = format!("tenant-{}", tenant_b.slug.as_str());
    assert!(credentials_a.expose().starts_with("s3://"));
    assert!(credentials_a.expose().ends_with(&format!("/{bucket_a}")));
    for (wanted, credentials) in [(&tenant_a, &credentials_a), (&tenant_b, &credentials_b)] {
        provider.ensure(&server, wanted, credentials).await.unwrap();
    }

    // Each puts, gets and lists its own; the other's bucket, which exists, refuses it.
    let checks = provider
        .verify(&server, &tenant_a, &credentials_a, &tenant_b)
        .await
        .unwrap();
    assert!(checks.iter().all(|check| check.passed), "{checks:?}");
    let (status, _) = curl(
        credentials_b.expose(),
        "s3",
        "PUT",
        &format!("/{bucket_b}/b.txt"),
        Some("b"),
    );
    assert_eq!(status, 200);
    for (method, path) in [
        ("GET", format!("/{bucket_b}/b.txt")),
        ("GET", format!("/{bucket_b}?list-type=2")),
        ("DELETE", format!("/{bucket_b}/b.txt")),
        ("PUT", format!("/{bucket_b}/from-a.txt")),
        ("GET", "/".to_owned()),
    ] {
        let data = (method == "PUT").then_some("a");
        let (status, body) = curl(credentials_a.expose(), "s3", method, &path, data);
        if path == "/" {
            // Listing buckets shows A its own alone.
            assert!(
                body.contains(&bucket_a) && !body.contains(&bucket_b),
                "{body}"
            );
        } else {
            assert_eq!(status, 403, "A's key on {method} {path}: {body}");
        }
    }
    // A's key manages no identities.
    let (status, _) = curl(
        credentials_a.expose(),
        "iam",
        "POST",
        "/",
        Some("Action=ListUsers&Version=2010-05-08"),
    );
    assert_ne!(status, 200);

    // The tags are the labels and the installation.
    let (_, tags) = curl(
        &s3_url(),
        "s3",
        "GET",
        &format!("/{bucket_a}?tagging="),
        None,
    );
    for tag in [
        format!("<Key>tenant</Key><Value>{}</Value>", tenant_a.slug.as_str()),
        "<Key>plan</Key><Value>starter</Value>".to_owned(),
        "<Key>cost_center</Key><Value>growth</Value>".to_owned(),
        format!(
            "<Key>installation</Key><Value>{}</Value>",
            server.installation.id()
        ),
    ] {
        assert!(tags.contains(&tag), "{tag} in {tags}");
    }

    // Removal empties the bucket first: B still holds an object.
    for wanted in [&tenant_a, &tenant_b] {
        provider.remove(&server, &wanted.name).await.unwrap();
        assert_eq!(
            provider.observe(&server, wanted, None).await.unwrap(),
            Observed::Absent
        );
    }
    let (status, _) = curl(&s3_url(), "s3", "HEAD", &format!("/{bucket_b}"), None);
    assert_eq!(status, 404);
    let (status, _) = iam("GetUser", &[("UserName", &bucket_b)]);
    assert_eq!(status, 404, "the user is deleted with the bucket");
}

#[tokio::test]
async fn a_bucket_deleted_by_hand_is_observed_absent_and_ensured_back() {
    let provider = provider();
    let server = server_at(&s3_url(), new_installation());
    let wanted = WantedResource::new(&unique_slug("gone"), json!({}));
    let credentials = provider.new_credentials(&server, &wanted).unwrap();
    provider
        .ensure(&server, &wanted, &credentials)
        .await
        .unwrap();
    let bucket = format!("tenant-{}", wanted.slug.as_str());
    let (status, _) = curl(&s3_url(), "s3", "DELETE", &format!("/{bucket}"), None);
    assert_eq!(status, 204);
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
    // Made again under a name the gateway saw deleted, the key works: verify waits for the gateway to catch up.
    let neighbour = WantedResource::new(&unique_slug("nb"), json!({}));
    let checks = provider
        .verify(&server, &wanted, &credentials, &neighbour)
        .await
        .unwrap();
    assert!(checks.iter().all(|check| check.passed), "{checks:?}");
    provider.remove(&server, &wanted.name).await.unwrap();
}

#[tokio::test]
async fn bad_servers_are_refused_with_a_reason() {
    let provider = provider();
    provider
        .check_server(&server_at(&s3_url(), new_installation()))
        .await
        .expect("the suite's SeaweedFS is a good server");

    let (endpoint, key_id, _) = parts(&s3_url());
    let address = endpoint.trim_start_matches("http://");
    let wrong_key = format!("http://{key_id}:not-the-secret@{address}");
    let error = provider
        .check_server(&server_at(&wrong_key, new_installation()))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::AdminConnection(message) if message.contains("credentials were refused")),
        "{error:?}"
    );
    assert!(!error.to_string().contains("not-the-secret"));

    // PowerDNS's HTTP API answers HTTP, but not as S3.
    let pdns = std::env::var("TENANTRY_TEST_PDNS_API_URL").expect("TENANTRY_TEST_PDNS_API_URL");
    let pdns = url::Url::parse(&pdns).unwrap();
    let not_s3 = format!(
        "http://{key_id}:secret@{}:{}",
        pdns.host_str().unwrap(),
        pdns.port().unwrap()
    );
    let error = provider
        .check_server(&server_at(&not_s3, new_installation()))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::AdminConnection(message) if message.contains("does not answer as an S3 server")),
        "{error:?}"
    );

    // A closed port: a listener bound and dropped leaves a port nothing answers on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let error = provider
        .check_server(&server_at(
            &format!("http://{key_id}:secret@127.0.0.1:{port}"),
            new_installation(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::AdminConnection(_)), "{error:?}");

    // An identity that may read S3 but not manage identities: no tenant could get a key through it. (SeaweedFS
    // takes `s3:*` on every resource for its Admin action, IAM included, so this one lists and reads only.)
    let user = format!("tenant-{}", unique_slug("weak").as_str());
    let weak_key = format!(
        "TW{}",
        &user.replace('-', "").to_uppercase()[..18.min(user.len() - 2)]
    );
    let weak_secret = "weak-secret-weak-secret-weak-secret";
    let policy =
        json!({ "Version": "2012-10-17", "Statement": [{ "Effect": "Allow", "Action": ["s3:ListAllMyBuckets", "s3:ListBucket", "s3:GetObject"],
        "Resource": ["arn:aws:s3:::*"] }] })
        .to_string();
    for (action, params) in [
        ("CreateUser", vec![("UserName", user.as_str())]),
        (
            "CreateAccessKey",
            vec![
                ("UserName", user.as_str()),
                ("AccessKeyId", weak_key.as_str()),
                ("SecretAccessKey", weak_secret),
            ],
        ),
        (
            "PutUserPolicy",
            vec![
                ("UserName", user.as_str()),
                ("PolicyName", "everything-s3"),
                ("PolicyDocument", policy.as_str()),
            ],
        ),
    ] {
        let (status, body) = iam(action, &params);
        assert_eq!(status, 200, "{action}: {body}");
    }
    let weak = format!("http://{weak_key}:{weak_secret}@{address}");
    let error = provider
        .check_server(&server_at(&weak, new_installation()))
        .await
        .unwrap_err();
    for (action, params) in [
        (
            "DeleteAccessKey",
            vec![
                ("UserName", user.as_str()),
                ("AccessKeyId", weak_key.as_str()),
            ],
        ),
        (
            "DeleteUserPolicy",
            vec![("UserName", user.as_str()), ("PolicyName", "everything-s3")],
        ),
        ("DeleteUser", vec![("UserName", user.as_str())]),
    ] {
        iam(action, &params);
    }
    assert!(
        matches!(&error, Error::AdminConnection(message) if message.contains("manage identities")),
        "{error:?}"
    );

    // Malformed admin URLs are bad input.
    for url in [
        format!("https://{key_id}:secret@{address}"),
        format!("http://{address}"),
        "s3 please".to_owned(),
    ] {
        let error = provider
            .check_server(&server_at(&url, new_installation()))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Refused(_)), "{url}: {error:?}");
    }
}
