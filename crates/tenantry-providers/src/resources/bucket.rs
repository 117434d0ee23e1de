//! The `bucket` kind: one S3 bucket `tenant-<slug>` per tenant, tagged with its labels and this installation, and
//! one IAM user of the same name whose only policy allows `s3:*` on that bucket and its objects, with one access
//! key. Made on SeaweedFS through its S3 API and the IAM API it serves on the same port (`CreateUser`,
//! `CreateAccessKey` with the key id and secret tenantry generated, `PutUserPolicy`), so no command is run.
//!
//! Requests are signed here (AWS Signature Version 4, over the existing reqwest client) rather than through an S3
//! crate: the kind needs bucket, tagging and object calls and IAM calls signed for another service, and the
//! signature is a page of HMAC-SHA-256 over crates already in the tree; responses are read with roxmltree.
//!
//! The bucket's `installation` tag decides whose the pair is: users have no place for a mark. `ensure` makes the
//! bucket before the user and `remove` deletes the user before the bucket, so a run cut short in between never
//! leaves a user without the bucket that vouches for it. Suspension deletes the user's policy (its key then
//! opens nothing) and resumption puts it back; the objects stay.

use super::check;
use super::{
    InventoryItem, Observed, ResourceProvider, ResourceServer, Verification, WantedResource,
};
use crate::credentials::{random_token, SecretString};
use crate::engines::{foreign_error, Ownership};
use crate::{Error, Result};
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tenantry_core::{EngineKind, Slug};

/// How long one request may take, connecting included.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `verify` waits for a key the server says is allowed, where its gateway has not caught up yet.
const READ_WRITE_PATIENCE: Duration = Duration::from_secs(5);

/// SeaweedFS accepts any region; requests are signed for this one.
const REGION: &str = "us-east-1";

/// The name of the one inline policy a tenant's user has.
const POLICY_NAME: &str = "tenantry-bucket";

/// The tags a tenant's bucket carries; `installation` is the mark.
const LABEL_KEYS: [&str; 4] = ["tenant", "plan", "cost_center", "installation"];

/// Everything but RFC 3986's unreserved characters is escaped, as Signature Version 4 wants it.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The `bucket` kind on S3 servers (SeaweedFS). The platform owns the instance, and with it one HTTP client.
pub struct S3Bucket {
    http: reqwest::Client,
}

impl S3Bucket {
    pub fn new() -> S3Bucket {
        S3Bucket {
            http: reqwest::Client::new(),
        }
    }
}

impl Default for S3Bucket {
    fn default() -> Self {
        S3Bucket::new()
    }
}

/// The bucket of a tenant: `tenant-<slug>`.
pub fn bucket_name(slug: &Slug) -> String {
    format!("tenant-{}", slug.as_str())
}

/// The tenant's slug in a resource name `tenant_<slug_>` (slugs have no `_`, so the name gives it back).
fn slug_of(name: &str) -> Result<Slug> {
    name.strip_prefix("tenant_")
        .and_then(|rest| Slug::parse(&rest.replace('_', "-")).ok())
        .ok_or_else(|| Error::Refused(format!("{name:?} is not a tenant's resource name")))
}

/// An access key: its id and its secret.
struct Key {
    id: String,
    secret: SecretString,
}

/// An S3 endpoint and the key requests to it are signed with.
struct Endpoint<'a> {
    http: &'a reqwest::Client,
    /// `host:port` as the `Host` header and messages have it.
    authority: String,
    key: Key,
}

/// One request before it is signed.
struct Call<'c> {
    /// What it is signed for: `s3` or `iam`.
    service: &'c str,
    method: reqwest::Method,
    /// Escaped already.
    path: &'c str,
    /// Escaped when signed.
    query: &'c [(&'c str, &'c str)],
    body: Vec<u8>,
    content_type: Option<&'c str>,
}

/// A response's status and body, read whole (every answer here is small XML, except an object we wrote).
struct Answer {
    status: reqwest::StatusCode,
    body: String,
}

impl Answer {
    /// The S3 or IAM error code in the body (`AccessDenied`, `NoSuchBucket`, …), if any.
    fn error_code(&self) -> Option<String> {
        xml_text(&self.body, "Code")
    }
}

impl<'a> Endpoint<'a> {
    /// From an admin URL `http://KEY_ID:SECRET@host:port`.
    fn admin(http: &'a reqwest::Client, server: &ResourceServer) -> Result<Endpoint<'a>> {
        // Refused, not an admin connection failure: a malformed URL is bad input, whatever the server would say.
        let invalid = |why: &str| {
            Error::Refused(format!(
                "the admin URL of S3 server {:?} {why}; it must look like http://KEY_ID:SECRET@host:port",
                server.name
            ))
        };
        let url = url::Url::parse(server.admin_url.expose())
            .map_err(|_| invalid("is not a valid URL"))?;
        if url.scheme() != "http" {
            return Err(invalid("must use http (https is not supported)"));
        }
        let host = url.host_str().ok_or_else(|| invalid("has no host"))?;
        let id = decode(url.username());
        let secret = decode(url.password().unwrap_or(""));
        if id.is_empty() || secret.is_empty() {
            return Err(invalid("has no access key id and secret"));
        }
        if !url.path().trim_matches('/').is_empty() || url.query().is_some() {
            return Err(invalid("has a path or a query"));
        }
        Ok(Endpoint {
            http,
            authority: authority(host, url.port()),
            key: Key {
                id,
                secret: SecretString::new(secret),
            },
        })
    }

    /// From a tenant's secret `s3://KEY_ID:SECRET@host:port/tenant-<slug>`: the endpoint and the bucket.
    fn tenant(
        http: &'a reqwest::Client,
        credentials: &SecretString,
    ) -> Result<(Endpoint<'a>, String)> {
        let invalid = || {
            Error::Refused(
                "a tenant's bucket secret must look like s3://KEY_ID:SECRET@host:port/tenant-<slug>"
                    .to_owned(),
            )
        };
        let url = url::Url::parse(credentials.expose()).map_err(|_| invalid())?;
        if url.scheme() != "s3" {
            return Err(invalid());
        }
        let host = url.host_str().ok_or_else(invalid)?;
        let bucket = url.path().trim_matches('/').to_owned();
        let id = decode(url.username());
        let secret = decode(url.password().unwrap_or(""));
        if bucket.is_empty() || id.is_empty() || secret.is_empty() {
            return Err(invalid());
        }
        Ok((
            Endpoint {
                http,
                authority: authority(host, url.port()),
                key: Key {
                    id,
                    secret: SecretString::new(secret),
                },
            },
            bucket,
        ))
    }

    /// One signed request. `path` is already escaped; `query` is escaped here.
    async fn send(&self, what: &str, call: Call<'_>) -> Result<Answer> {
        let Call {
            service,
            method,
            path,
            query,
            body,
            content_type,
        } = call;
        let query = canonical_query(query);
        let payload_hash = hex::encode(Sha256::digest(&body));
        let amz_date = amz_date(SystemTime::now());
        let mut headers = vec![
            ("host".to_owned(), self.authority.clone()),
            ("x-amz-content-sha256".to_owned(), payload_hash.clone()),
            ("x-amz-date".to_owned(), amz_date.clone()),
        ];
        if let Some(content_type) = content_type {
            headers.push(("content-type".to_owned(), content_type.to_owned()));
        }
        let authorization = sign(&SigningInput {
            method: method.as_str(),
            path,
            query: &query,
            headers: &headers,
            payload_hash: &payload_hash,
            amz_date: &amz_date,
            service,
            key: &self.key,
        });
        let url = if query.is_empty() {
            format!("http://{}{path}", self.authority)
        } else {
            format!("http://{}{path}?{query}", self.authority)
        };
        let mut request = self
            .http
            .request(method, url)
            .timeout(HTTP_TIMEOUT)
            .header("authorization", authorization)
            .body(body);
        for (name, value) in &headers {
            if name != "host" {
                request = request.header(name.as_str(), value.as_str());
            }
        }
        let unreachable = |error: reqwest::Error| {
            Error::Transient(format!(
                "{what}: the S3 server at {} {}",
                self.authority,
                describe_http_error(&error)
            ))
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.text().await.map_err(unreachable)?;
        Ok(Answer { status, body })
    }

    async fn s3(
        &self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer> {
        let call = Call {
            service: "s3",
            method,
            path,
            query,
            body,
            content_type: None,
        };
        self.send(what, call).await
    }

    /// One IAM action (`Action=…` form-encoded, as AWS's IAM takes it) on the same port.
    async fn iam(&self, what: &str, action: &str, params: &[(&str, &str)]) -> Result<Answer> {
        let mut form = vec![("Action", action), ("Version", "2010-05-08")];
        form.extend_from_slice(params);
        let body = form
            .iter()
            .map(|(name, value)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(name, UNRESERVED),
                    utf8_percent_encode(value, UNRESERVED)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let call = Call {
            service: "iam",
            method: reqwest::Method::POST,
            path: "/",
            query: &[],
            body: body.into_bytes(),
            content_type: Some("application/x-www-form-urlencoded"),
        };
        self.send(what, call).await
    }

    /// The answer if it succeeded, else the error its status calls for.
    fn success(&self, what: &str, answer: Answer) -> Result<Answer> {
        if answer.status.is_success() {
            return Ok(answer);
        }
        let code = answer.error_code().unwrap_or_default();
        let message = format!(
            "{what}: the S3 server at {} answered {}{}",
            self.authority,
            answer.status,
            if code.is_empty() {
                String::new()
            } else {
                format!(" ({code})")
            }
        );
        Err(if answer.status.is_server_error() {
            Error::Transient(message)
        } else if matches!(
            code.as_str(),
            "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidClientTokenId"
        ) || answer.status == reqwest::StatusCode::UNAUTHORIZED
        {
            Error::AdminConnection(format!("{message}: the admin credentials were refused"))
        } else {
            Error::Refused(message)
        })
    }

    /// The bucket's tags, or `None` when there is no such bucket.
    async fn bucket_tags(&self, bucket: &str) -> Result<Option<BTreeMap<String, String>>> {
        let what = format!("reading the tags of bucket {bucket}");
        let answer = self
            .s3(
                &what,
                reqwest::Method::GET,
                &bucket_path(bucket),
                &[("tagging", "")],
                Vec::new(),
            )
            .await?;
        match answer.error_code().as_deref() {
            _ if answer.status.is_success() => Ok(Some(parse_tags(&answer.body)?)),
            Some("NoSuchBucket") => Ok(None),
            Some("NoSuchTagSet") => Ok(Some(BTreeMap::new())),
            _ => self.success(&what, answer).map(|_| None),
        }
    }

    async fn put_tags(&self, bucket: &str, tags: &BTreeMap<String, String>) -> Result<()> {
        let what = format!("tagging bucket {bucket}");
        let answer = self
            .s3(
                &what,
                reqwest::Method::PUT,
                &bucket_path(bucket),
                &[("tagging", "")],
                tagging_xml(tags).into_bytes(),
            )
            .await?;
        self.success(&what, answer).map(drop)
    }

    /// Whose the bucket is (`None`: there is no such bucket), with its tags.
    async fn bucket_ownership(
        &self,
        server: &ResourceServer,
        bucket: &str,
    ) -> Result<Option<(Ownership, BTreeMap<String, String>)>> {
        let Some(tags) = self.bucket_tags(bucket).await? else {
            return Ok(None);
        };
        let ownership = server
            .installation
            .judge_id(tags.get("installation").map(String::as_str));
        // A bucket with no tag at all and nothing in it is what a run cut short between creating the bucket and
        // tagging it leaves (a crash, or another branch of the job ending the process): S3 cannot create a bucket
        // with its tags in one call. Such a bucket holds nothing of anyone's, so it is taken as ours and tagged.
        if ownership == Ownership::Unmarked
            && tags.is_empty()
            && self.bucket_is_empty(bucket).await?
        {
            tracing::info!(
                bucket,
                "adopting a bare, empty bucket a cut-short run left untagged"
            );
            return Ok(Some((Ownership::Ours, tags)));
        }
        Ok(Some((ownership, tags)))
    }

    /// Whether the bucket holds no object (one listing page says so).
    async fn bucket_is_empty(&self, bucket: &str) -> Result<bool> {
        let what = format!("listing bucket {bucket}");
        let answer = self.list_objects(bucket).await?;
        let answer = self.success(&what, answer)?;
        Ok(object_keys(&answer.body)?.is_empty())
    }

    /// Whether the bucket exists; an error if it does and is not this installation's.
    async fn require_ours(&self, server: &ResourceServer, bucket: &str) -> Result<bool> {
        match self.bucket_ownership(server, bucket).await? {
            None => Ok(false),
            Some((Ownership::Ours, _)) => Ok(true),
            Some((other, _)) => Err(foreign_error(&format!("S3 bucket {bucket}"), &other)),
        }
    }

    /// The user's access key ids, or `None` when there is no such user.
    async fn user_keys(&self, user: &str) -> Result<Option<Vec<(String, String)>>> {
        // SeaweedFS lists no keys, rather than an error, for a user that does not exist: ask for the user first.
        let what = format!("reading user {user}");
        let answer = self.iam(&what, "GetUser", &[("UserName", user)]).await?;
        if answer.error_code().as_deref() == Some("NoSuchEntity") {
            return Ok(None);
        }
        self.success(&what, answer)?;
        let what = format!("listing the access keys of user {user}");
        let answer = self
            .iam(&what, "ListAccessKeys", &[("UserName", user)])
            .await?;
        if answer.error_code().as_deref() == Some("NoSuchEntity") {
            return Ok(None);
        }
        let answer = self.success(&what, answer)?;
        let document = parse_xml(&answer.body)?;
        Ok(Some(
            document
                .descendants()
                .filter(|node| node.tag_name().name() == "member")
                .filter_map(|member| {
                    let id = child_text(member, "AccessKeyId")?;
                    let status = child_text(member, "Status").unwrap_or_default();
                    Some((id, status))
                })
                .collect(),
        ))
    }

    /// The user's inline policy document, or `None` when it has none (or there is no such user).
    async fn user_policy(&self, user: &str) -> Result<Option<serde_json::Value>> {
        let what = format!("reading the policy of user {user}");
        let answer = self
            .iam(
                &what,
                "GetUserPolicy",
                &[("UserName", user), ("PolicyName", POLICY_NAME)],
            )
            .await?;
        if answer.error_code().as_deref() == Some("NoSuchEntity") {
            return Ok(None);
        }
        let answer = self.success(&what, answer)?;
        let document = xml_text(&answer.body, "PolicyDocument").unwrap_or_default();
        let document = percent_decode_str(&document)
            .decode_utf8_lossy()
            .into_owned();
        Ok(serde_json::from_str(&document).ok())
    }

    async fn put_policy(&self, user: &str, bucket: &str) -> Result<()> {
        let what = format!("granting user {user} bucket {bucket}");
        let policy = bucket_policy(bucket).to_string();
        let answer = self
            .iam(
                &what,
                "PutUserPolicy",
                &[
                    ("UserName", user),
                    ("PolicyName", POLICY_NAME),
                    ("PolicyDocument", &policy),
                ],
            )
            .await?;
        self.success(&what, answer).map(drop)
    }

    async fn delete_policy(&self, user: &str) -> Result<()> {
        let what = format!("revoking the policy of user {user}");
        let answer = self
            .iam(
                &what,
                "DeleteUserPolicy",
                &[("UserName", user), ("PolicyName", POLICY_NAME)],
            )
            .await?;
        if answer.error_code().as_deref() == Some("NoSuchEntity") {
            return Ok(());
        }
        self.success(&what, answer).map(drop)
    }

    /// Deletes the user with its keys and policy; a user already gone is fine.
    async fn delete_user(&self, user: &str) -> Result<()> {
        let Some(keys) = self.user_keys(user).await? else {
            return Ok(());
        };
        for (id, _) in keys {
            let what = format!("deleting an access key of user {user}");
            let answer = self
                .iam(
                    &what,
                    "DeleteAccessKey",
                    &[("UserName", user), ("AccessKeyId", &id)],
                )
                .await?;
            if answer.error_code().as_deref() != Some("NoSuchEntity") {
                self.success(&what, answer)?;
            }
        }
        self.delete_policy(user).await?;
        let what = format!("deleting user {user}");
        let answer = self.iam(&what, "DeleteUser", &[("UserName", user)]).await?;
        if answer.error_code().as_deref() == Some("NoSuchEntity") {
            return Ok(());
        }
        self.success(&what, answer).map(drop)
    }

    /// The keys of one page of the bucket's objects (at most 1000), and whether more follow.
    async fn list_objects(&self, bucket: &str) -> Result<Answer> {
        self.s3(
            &format!("listing bucket {bucket}"),
            reqwest::Method::GET,
            &bucket_path(bucket),
            &[("list-type", "2")],
            Vec::new(),
        )
        .await
    }

    /// Puts, gets, lists and deletes a probe object in `bucket` with this endpoint's key: `None` when all of it
    /// worked, else what did not.
    async fn read_write_probe(&self, bucket: &str) -> Result<Option<String>> {
        let probe_key = format!("tenantry-verify-{}", hex::encode(rand::random::<[u8; 6]>()));
        let probe_body = probe_key.clone().into_bytes();
        let path = object_path(bucket, &probe_key);
        let put = self
            .s3(
                "putting an object as the tenant",
                reqwest::Method::PUT,
                &path,
                &[],
                probe_body.clone(),
            )
            .await?;
        let got = if put.status.is_success() {
            Some(
                self.s3(
                    "getting an object as the tenant",
                    reqwest::Method::GET,
                    &path,
                    &[],
                    Vec::new(),
                )
                .await?,
            )
        } else {
            None
        };
        let listed = self.list_objects(bucket).await?;
        if put.status.is_success() {
            let answer = self
                .s3(
                    "deleting an object as the tenant",
                    reqwest::Method::DELETE,
                    &path,
                    &[],
                    Vec::new(),
                )
                .await?;
            if !answer.status.is_success() {
                tracing::warn!(bucket, "the validation's probe object could not be deleted");
            }
        }
        let got_it_back = got
            .as_ref()
            .is_some_and(|got| got.status.is_success() && got.body.as_bytes() == probe_body);
        let listed_it = listed.status.is_success()
            && object_keys(&listed.body).is_ok_and(|keys| keys.contains(&probe_key));
        Ok(if put.status.is_success() && got_it_back && listed_it {
            None
        } else {
            Some(format!(
                "key {} in bucket {bucket}: put {}, get {}, list {}",
                self.key.id,
                put.status,
                got.as_ref()
                    .map(|got| got.status.to_string())
                    .unwrap_or_else(|| "not tried".to_owned()),
                listed.status
            ))
        })
    }

    /// Deletes every object in the bucket, one page at a time.
    async fn empty_bucket(&self, bucket: &str) -> Result<()> {
        loop {
            let what = format!("listing bucket {bucket}");
            let answer = self.list_objects(bucket).await?;
            if answer.error_code().as_deref() == Some("NoSuchBucket") {
                return Ok(());
            }
            let answer = self.success(&what, answer)?;
            let keys = object_keys(&answer.body)?;
            if keys.is_empty() {
                return Ok(());
            }
            for key in keys {
                let what = format!("deleting an object of bucket {bucket}");
                let answer = self
                    .s3(
                        &what,
                        reqwest::Method::DELETE,
                        &object_path(bucket, &key),
                        &[],
                        Vec::new(),
                    )
                    .await?;
                if answer.status != reqwest::StatusCode::NOT_FOUND {
                    self.success(&what, answer)?;
                }
            }
        }
    }
}

/// `host:port` (an IPv6 host in brackets, as the URL had it).
fn authority(host: &str, port: Option<u16>) -> String {
    match port {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn bucket_path(bucket: &str) -> String {
    format!("/{}", utf8_percent_encode(bucket, UNRESERVED))
}

fn object_path(bucket: &str, key: &str) -> String {
    let key: Vec<String> = key
        .split('/')
        .map(|segment| utf8_percent_encode(segment, UNRESERVED).to_string())
        .collect();
    format!("{}/{}", bucket_path(bucket), key.join("/"))
}

/// The policy of a tenant's user: everything on its bucket and the objects in it, nothing else.
fn bucket_policy(bucket: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["s3:*"],
            "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
        }],
    })
}

/// Whether a policy document read back is the one [`bucket_policy`] makes (the server may write a lone action
/// as a string).
fn policy_is_right(policy: &serde_json::Value, bucket: &str) -> bool {
    let as_list = |value: Option<&serde_json::Value>| -> Vec<String> {
        match value {
            Some(serde_json::Value::String(one)) => vec![one.clone()],
            Some(serde_json::Value::Array(many)) => many
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    let Some(statements) = policy.get("Statement").and_then(|s| s.as_array()) else {
        return false;
    };
    let mut wanted_resources = vec![
        format!("arn:aws:s3:::{bucket}"),
        format!("arn:aws:s3:::{bucket}/*"),
    ];
    wanted_resources.sort();
    statements.len() == 1
        && statements.iter().all(|statement| {
            let mut resources = as_list(statement.get("Resource"));
            resources.sort();
            statement.get("Effect").and_then(|e| e.as_str()) == Some("Allow")
                && as_list(statement.get("Action")) == ["s3:*"]
                && resources == wanted_resources
        })
}

/// The bucket's tags as the wanted state has them: the tenant's labels and this installation.
fn wanted_tags(server: &ResourceServer, wanted: &WantedResource) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    for key in LABEL_KEYS {
        if let Some(value) = wanted.labels.get(key).and_then(|v| v.as_str()) {
            tags.insert(key.to_owned(), value.to_owned());
        }
    }
    tags.entry("tenant".to_owned())
        .or_insert_with(|| wanted.slug.as_str().to_owned());
    tags.insert(
        "installation".to_owned(),
        server.installation.id().to_owned(),
    );
    tags
}

/// How the bucket's tags differ from the wanted ones. Labels the caller does not know (an empty `labels`) are
/// not judged: only the tags it wants.
fn tag_differences(
    actual: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> Vec<String> {
    wanted
        .iter()
        .filter_map(|(key, value)| match actual.get(key) {
            Some(actual) if actual == value => None,
            Some(actual) => Some(format!("tag {key} is {actual:?}, not {value:?}")),
            None => Some(format!("tag {key} is missing")),
        })
        .collect()
}

/// The tags to write: the ones there, with the wanted ones over them.
fn merged_tags(
    actual: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut tags = actual.clone();
    tags.extend(wanted.iter().map(|(k, v)| (k.clone(), v.clone())));
    tags
}

fn tagging_xml(tags: &BTreeMap<String, String>) -> String {
    let tags: String = tags
        .iter()
        .map(|(key, value)| {
            format!(
                "<Tag><Key>{}</Key><Value>{}</Value></Tag>",
                xml_escape(key),
                xml_escape(value)
            )
        })
        .collect();
    format!(
        r#"<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>{tags}</TagSet></Tagging>"#
    )
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn parse_xml(body: &str) -> Result<roxmltree::Document<'_>> {
    roxmltree::Document::parse(body).map_err(|error| {
        Error::Refused(format!(
            "the S3 server sent XML that does not parse ({error})"
        ))
    })
}

fn child_text(node: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    node.children()
        .find(|child| child.tag_name().name() == name)
        .map(|child| child.text().unwrap_or_default().to_owned())
}

/// The text of the first element named `name` (any namespace) in `body`, if it is XML and has one.
fn xml_text(body: &str, name: &str) -> Option<String> {
    let document = roxmltree::Document::parse(body).ok()?;
    let node = document
        .descendants()
        .find(|node| node.tag_name().name() == name)?;
    Some(node.text().unwrap_or_default().to_owned())
}

fn parse_tags(body: &str) -> Result<BTreeMap<String, String>> {
    let document = parse_xml(body)?;
    Ok(document
        .descendants()
        .filter(|node| node.tag_name().name() == "Tag")
        .filter_map(|tag| Some((child_text(tag, "Key")?, child_text(tag, "Value")?)))
        .collect())
}

fn object_keys(body: &str) -> Result<Vec<String>> {
    let document = parse_xml(body)?;
    Ok(document
        .descendants()
        .filter(|node| node.tag_name().name() == "Contents")
        .filter_map(|contents| child_text(contents, "Key"))
        .collect())
}

/// A reqwest error in a few words, without its URL.
fn describe_http_error(error: &reqwest::Error) -> String {
    if error.is_connect() {
        "could not be reached (connection failed)".to_owned()
    } else if error.is_timeout() {
        format!("did not answer within {} seconds", HTTP_TIMEOUT.as_secs())
    } else {
        let mut words = error.to_string();
        if let Some(url) = error.url() {
            words = words.replace(url.as_str(), "the API");
        }
        format!("failed: {words}")
    }
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// The query string as Signature Version 4 has it: pairs sorted, each part escaped, `name=` for a flag.
fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(name, value)| {
            (
                utf8_percent_encode(name, UNRESERVED).to_string(),
                utf8_percent_encode(value, UNRESERVED).to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// What a request's signature covers.
struct SigningInput<'a> {
    method: &'a str,
    /// Escaped.
    path: &'a str,
    /// Canonical already.
    query: &'a str,
    /// Lower-case names; all of them are signed.
    headers: &'a [(String, String)],
    payload_hash: &'a str,
    /// `YYYYMMDDTHHMMSSZ`.
    amz_date: &'a str,
    service: &'a str,
    key: &'a Key,
}

/// The `Authorization` header of AWS Signature Version 4.
fn sign(input: &SigningInput<'_>) -> String {
    let mut headers: Vec<(&str, &str)> = input
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.trim()))
        .collect();
    headers.sort();
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        input.method, input.path, input.query, input.payload_hash
    );
    let date = &input.amz_date[..8];
    let scope = format!("{date}/{REGION}/{}/aws4_request", input.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        input.amz_date,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let signing_key = [date, REGION, input.service, "aws4_request"].iter().fold(
        format!("AWS4{}", input.key.secret.expose()).into_bytes(),
        |key, part| hmac_sha256(&key, part.as_bytes()),
    );
    let signature = hex::encode(hmac_sha256(&signing_key, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        input.key.id
    )
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `YYYYMMDDTHHMMSSZ` in UTC.
fn amz_date(now: SystemTime) -> String {
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// A new access key id: 20 upper-case letters and digits, as AWS's look, starting `TB` (tenantry bucket).
fn new_key_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let random: String = (0..18)
        .map(|_| ALPHABET[usize::from(rand::random::<u8>() % 32)] as char)
        .collect();
    format!("TB{random}")
}

#[async_trait::async_trait]
impl ResourceProvider for S3Bucket {
    fn kind(&self) -> &'static str {
        "bucket"
    }

    fn engines(&self) -> &'static [EngineKind] {
        &[EngineKind::S3]
    }

    async fn check_server(&self, server: &ResourceServer) -> Result<Vec<String>> {
        let admin = Endpoint::admin(&self.http, server)?;
        let as_admin_error = |error: Error| match error {
            Error::Transient(message) | Error::Refused(message) => Error::AdminConnection(message),
            other => other,
        };
        let answer = admin
            .s3(
                "listing buckets",
                reqwest::Method::GET,
                "/",
                &[],
                Vec::new(),
            )
            .await
            .map_err(as_admin_error)?;
        let is_s3 = |answer: &Answer, root: &str| {
            roxmltree::Document::parse(&answer.body)
                .is_ok_and(|document| document.root_element().tag_name().name() == root)
        };
        if !answer.status.is_success() && !is_s3(&answer, "Error") {
            return Err(Error::AdminConnection(format!(
                "{} does not answer as an S3 server ({} to a signed ListBuckets)",
                admin.authority, answer.status
            )));
        }
        let answer = admin
            .success("listing buckets", answer)
            .map_err(as_admin_error)?;
        if !is_s3(&answer, "ListAllMyBucketsResult") {
            return Err(Error::AdminConnection(format!(
                "{} does not answer as an S3 server (no ListAllMyBucketsResult)",
                admin.authority
            )));
        }
        // The identities must be manageable too, or no tenant could get a key.
        let answer = admin
            .iam("listing users", "ListUsers", &[])
            .await
            .map_err(as_admin_error)?;
        if !is_s3(&answer, "ListUsersResponse") {
            return Err(Error::AdminConnection(format!(
                "the S3 server at {} does not let these credentials manage identities through its IAM API \
                 ({}{}); give the admin identity the Admin action, and run SeaweedFS with -s3.iam.readOnly=false",
                admin.authority,
                answer.status,
                answer
                    .error_code()
                    .map(|code| format!(", {code}"))
                    .unwrap_or_default()
            )));
        }
        Ok(Vec::new())
    }

    fn new_credentials(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
    ) -> Result<SecretString> {
        let admin = Endpoint::admin(&self.http, server)?;
        let secret = random_token(30);
        Ok(SecretString::new(format!(
            "s3://{}:{}@{}/{}",
            new_key_id(),
            secret.expose(),
            admin.authority,
            bucket_name(&wanted.slug)
        )))
    }

    async fn observe(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        credentials: Option<&SecretString>,
    ) -> Result<Observed> {
        let admin = Endpoint::admin(&self.http, server)?;
        let bucket = bucket_name(&wanted.slug);
        let Some((ownership, tags)) = admin.bucket_ownership(server, &bucket).await? else {
            return Ok(Observed::Absent);
        };
        let mut differences = tag_differences(&tags, &wanted_tags(server, wanted));
        if ownership != Ownership::Ours {
            return Ok(Observed::Present {
                ownership,
                differences,
            });
        }
        match admin.user_keys(&bucket).await? {
            None => differences.push(format!("user {bucket} is missing")),
            Some(keys) => {
                if let Some(credentials) = credentials {
                    let (tenant, _) = Endpoint::tenant(&self.http, credentials)?;
                    match keys.iter().find(|(id, _)| *id == tenant.key.id) {
                        None => differences
                            .push(format!("user {bucket} lacks the access key in the secret")),
                        Some((_, status)) if status != "Active" => {
                            differences.push(format!("the access key of user {bucket} is {status}"))
                        }
                        Some(_) => {}
                    }
                    if keys.iter().any(|(id, _)| *id != tenant.key.id) {
                        differences.push(format!(
                            "user {bucket} has access keys besides the one in the secret"
                        ));
                    }
                }
                match (admin.user_policy(&bucket).await?, wanted.enabled) {
                    (None, true) => differences.push(format!("user {bucket} has no policy")),
                    (Some(policy), true) if !policy_is_right(&policy, &bucket) => differences.push(
                        format!("the policy of user {bucket} reaches beyond bucket {bucket}"),
                    ),
                    (Some(_), false) => {
                        differences.push(format!("user {bucket} has a policy while disabled"))
                    }
                    _ => {}
                }
            }
        }
        Ok(Observed::Present {
            ownership,
            differences,
        })
    }

    async fn ensure(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        credentials: &SecretString,
    ) -> Result<()> {
        let admin = Endpoint::admin(&self.http, server)?;
        let bucket = bucket_name(&wanted.slug);
        let (tenant, secret_bucket) = Endpoint::tenant(&self.http, credentials)?;
        if secret_bucket != bucket {
            return Err(Error::Refused(format!(
                "the secret is for bucket {secret_bucket:?}, not {bucket:?}"
            )));
        }
        let wanted_tags = wanted_tags(server, wanted);

        // The bucket and its tags first: the installation tag is what makes the user below this installation's.
        let tags = match admin.bucket_ownership(server, &bucket).await? {
            Some((Ownership::Ours, tags)) => tags,
            Some((other, _)) => return Err(foreign_error(&format!("S3 bucket {bucket}"), &other)),
            None => {
                let what = format!("creating bucket {bucket}");
                let answer = admin
                    .s3(
                        &what,
                        reqwest::Method::PUT,
                        &bucket_path(&bucket),
                        &[],
                        Vec::new(),
                    )
                    .await?;
                // A run cut short after the create and before the tags finds the bucket there: it is its own.
                if answer.error_code().as_deref() != Some("BucketAlreadyOwnedByYou") {
                    admin.success(&what, answer)?;
                }
                tracing::info!(bucket, "created a tenant's S3 bucket");
                BTreeMap::new()
            }
        };
        if !tag_differences(&tags, &wanted_tags).is_empty() {
            admin
                .put_tags(&bucket, &merged_tags(&tags, &wanted_tags))
                .await?;
        }

        let keys = match admin.user_keys(&bucket).await? {
            Some(keys) => keys,
            None => {
                let what = format!("creating user {bucket}");
                let answer = admin
                    .iam(&what, "CreateUser", &[("UserName", &bucket)])
                    .await?;
                if answer.error_code().as_deref() != Some("EntityAlreadyExists") {
                    admin.success(&what, answer)?;
                }
                Vec::new()
            }
        };
        for (id, _) in keys.iter().filter(|(id, _)| *id != tenant.key.id) {
            // A key the secret does not hold is one someone added by hand, or one a rotation replaced.
            let what = format!("deleting an access key of user {bucket}");
            let answer = admin
                .iam(
                    &what,
                    "DeleteAccessKey",
                    &[("UserName", &bucket), ("AccessKeyId", id)],
                )
                .await?;
            if answer.error_code().as_deref() != Some("NoSuchEntity") {
                admin.success(&what, answer)?;
            }
        }
        match keys.iter().find(|(id, _)| *id == tenant.key.id) {
            None => {
                let what = format!("giving user {bucket} its access key");
                let answer = admin
                    .iam(
                        &what,
                        "CreateAccessKey",
                        &[
                            ("UserName", &bucket),
                            ("AccessKeyId", &tenant.key.id),
                            ("SecretAccessKey", tenant.key.secret.expose()),
                        ],
                    )
                    .await?;
                // The answer echoes the secret: only its status and code are kept.
                admin.success(&what, answer)?;
            }
            Some((id, status)) if status != "Active" => {
                let what = format!("activating the access key of user {bucket}");
                let answer = admin
                    .iam(
                        &what,
                        "UpdateAccessKey",
                        &[
                            ("UserName", &bucket),
                            ("AccessKeyId", id),
                            ("Status", "Active"),
                        ],
                    )
                    .await?;
                admin.success(&what, answer)?;
            }
            Some(_) => {}
        }

        let policy = admin.user_policy(&bucket).await?;
        if wanted.enabled {
            if !policy.is_some_and(|policy| policy_is_right(&policy, &bucket)) {
                admin.put_policy(&bucket, &bucket).await?;
            }
        } else if policy.is_some() {
            admin.delete_policy(&bucket).await?;
        }
        Ok(())
    }

    async fn remove(&self, server: &ResourceServer, name: &str) -> Result<()> {
        let admin = Endpoint::admin(&self.http, server)?;
        let bucket = bucket_name(&slug_of(name)?);
        if !admin.require_ours(server, &bucket).await? {
            return Ok(());
        }
        // The user before the bucket: while the bucket stands, its tag still says the user is ours.
        admin.delete_user(&bucket).await?;
        admin.empty_bucket(&bucket).await?;
        let what = format!("deleting bucket {bucket}");
        let answer = admin
            .s3(
                &what,
                reqwest::Method::DELETE,
                &bucket_path(&bucket),
                &[],
                Vec::new(),
            )
            .await?;
        if answer.error_code().as_deref() != Some("NoSuchBucket") {
            admin.success(&what, answer)?;
        }
        tracing::info!(bucket, "removed a tenant's S3 bucket and user");
        Ok(())
    }

    async fn disable(&self, server: &ResourceServer, name: &str) -> Result<()> {
        let admin = Endpoint::admin(&self.http, server)?;
        let bucket = bucket_name(&slug_of(name)?);
        if !admin.require_ours(server, &bucket).await? {
            // Without its bucket the tenant's key has nothing to open.
            return Ok(());
        }
        // Without a policy the user's key opens nothing; the key and the objects stay for the resumption.
        admin.delete_policy(&bucket).await
    }

    async fn enable(&self, server: &ResourceServer, name: &str) -> Result<()> {
        let admin = Endpoint::admin(&self.http, server)?;
        let bucket = bucket_name(&slug_of(name)?);
        if !admin.require_ours(server, &bucket).await? {
            return Err(Error::Refused(format!(
                "S3 bucket {bucket} does not exist; ensuring the resource creates it"
            )));
        }
        admin.put_policy(&bucket, &bucket).await
    }

    fn rotates(&self, engine: EngineKind) -> bool {
        engine == EngineKind::S3
    }

    /// A second access key for the tenant's user (an S3 identity keeps several), made with an id and secret of
    /// our own choosing like the first, and both keys listing the bucket before the new one is handed out.
    async fn rotate_add(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        current: &SecretString,
    ) -> Result<SecretString> {
        let admin = Endpoint::admin(&self.http, server)?;
        let bucket = bucket_name(&wanted.slug);
        if !admin.require_ours(server, &bucket).await? || admin.user_keys(&bucket).await?.is_none()
        {
            return Err(Error::Refused(format!(
                "there is no S3 bucket and user {bucket} on {} to rotate; `tenantry reconcile --kind bucket` \
                 makes them",
                server.name
            )));
        }
        let new_credentials = self.new_credentials(server, wanted)?;
        let (new_key, _) = Endpoint::tenant(&self.http, &new_credentials)?;
        let what = format!("adding an access key to user {bucket}");
        let answer = admin
            .iam(
                &what,
                "CreateAccessKey",
                &[
                    ("UserName", &bucket),
                    ("AccessKeyId", &new_key.key.id),
                    ("SecretAccessKey", new_key.key.secret.expose()),
                ],
            )
            .await?;
        // The answer echoes the secret: only its status and code are kept.
        admin.success(&what, answer)?;
        // The gateway learns of identity changes from the filer's change feed: the new key may be refused for a
        // moment, so both are tried until they list the bucket (at most READ_WRITE_PATIENCE).
        let (current_key, _) = Endpoint::tenant(&self.http, current)?;
        for (which, endpoint) in [("new", &new_key), ("current", &current_key)] {
            let deadline = std::time::Instant::now() + READ_WRITE_PATIENCE;
            loop {
                let answer = endpoint.list_objects(&bucket).await?;
                if answer.status.is_success() {
                    break;
                }
                if std::time::Instant::now() >= deadline {
                    return Err(Error::Refused(format!(
                        "the {which} access key {} of user {bucket} does not list its bucket ({})",
                        endpoint.key.id, answer.status
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(new_credentials)
    }

    /// `keep`'s key becomes the user's only one: `ensure` deletes every other key and brings `keep`'s back
    /// (with the same id and secret) if it was gone, so the call with the old credentials undoes an addition.
    async fn rotate_retire(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        keep: &SecretString,
    ) -> Result<()> {
        self.ensure(server, wanted, keep).await
    }

    async fn verify(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        credentials: &SecretString,
        neighbour: &WantedResource,
    ) -> Result<Vec<Verification>> {
        let admin = Endpoint::admin(&self.http, server)?;
        let (tenant, bucket) = Endpoint::tenant(&self.http, credentials)?;
        let mut checks = Vec::new();

        // Put, get and list in its own bucket, with its own key. SeaweedFS's gateway learns of a bucket from the
        // filer's change feed, so one just made (again, under a name it saw deleted) may refuse the key for a
        // moment: while the server says the key is active and the policy right, a refusal is tried again for
        // up to READ_WRITE_PATIENCE before it counts. A disabled tenant has no policy and fails at once.
        let deadline = std::time::Instant::now() + READ_WRITE_PATIENCE;
        let failure = loop {
            match tenant.read_write_probe(&bucket).await? {
                None => break None,
                Some(failure) => {
                    let key_active = admin.user_keys(&bucket).await?.is_some_and(|keys| {
                        keys.iter()
                            .any(|(id, status)| *id == tenant.key.id && status == "Active")
                    });
                    let should_work = key_active
                        && admin
                            .user_policy(&bucket)
                            .await?
                            .is_some_and(|policy| policy_is_right(&policy, &bucket));
                    if !should_work || std::time::Instant::now() >= deadline {
                        break Some(failure);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        checks.push(match failure {
            None => check(
                "bucket_read_write",
                true,
                format!(
                    "key {} put, got and listed an object in bucket {bucket}",
                    tenant.key.id
                ),
            ),
            Some(failure) => check("bucket_read_write", false, failure),
        });
        let probe_key = format!("tenantry-verify-{}", hex::encode(rand::random::<[u8; 6]>()));
        let probe_body = probe_key.clone().into_bytes();

        // The neighbour's bucket refuses the same calls: 403 before it even says whether the bucket exists.
        let neighbour_bucket = bucket_name(&neighbour.slug);
        let neighbour_list = tenant.list_objects(&neighbour_bucket).await?;
        let neighbour_put = tenant
            .s3(
                "putting an object in the neighbour's bucket",
                reqwest::Method::PUT,
                &object_path(&neighbour_bucket, &probe_key),
                &[],
                probe_body,
            )
            .await?;
        for answer in [&neighbour_list, &neighbour_put] {
            if answer.status.is_server_error() {
                return Err(Error::Transient(format!(
                    "the S3 server at {} answered {} to the tenant's key",
                    tenant.authority, answer.status
                )));
            }
        }
        let refused = |answer: &Answer| answer.status == reqwest::StatusCode::FORBIDDEN;
        checks.push(check(
            "bucket_neighbour_refused",
            refused(&neighbour_list) && refused(&neighbour_put),
            format!(
                "key {} on the neighbour's bucket {neighbour_bucket}: list {}, put {}",
                tenant.key.id, neighbour_list.status, neighbour_put.status
            ),
        ));

        // The cost tags, read with the admin's key: every label the tenant has (`tenant` and `installation`
        // always; `plan` and `cost_center` where known), with its value.
        let wanted_tags = wanted_tags(server, wanted);
        let names: Vec<&str> = wanted_tags.keys().map(String::as_str).collect();
        checks.push(match admin.bucket_tags(&bucket).await? {
            None => check(
                "bucket_cost_tags",
                false,
                format!("bucket {bucket} does not exist"),
            ),
            Some(tags) => {
                let differences = tag_differences(&tags, &wanted_tags);
                check(
                    "bucket_cost_tags",
                    differences.is_empty(),
                    if differences.is_empty() {
                        format!("bucket {bucket} carries {}", names.join(", "))
                    } else {
                        differences.join("; ")
                    },
                )
            }
        });
        Ok(checks)
    }

    async fn inventory(&self, server: &ResourceServer) -> Result<Vec<InventoryItem>> {
        let admin = Endpoint::admin(&self.http, server)?;
        let answer = admin
            .s3(
                "listing buckets",
                reqwest::Method::GET,
                "/",
                &[],
                Vec::new(),
            )
            .await?;
        let answer = admin.success("listing buckets", answer)?;
        let document = parse_xml(&answer.body)?;
        let mut items = Vec::new();
        for bucket in document
            .descendants()
            .filter(|node| node.tag_name().name() == "Bucket")
            .filter_map(|node| child_text(node, "Name"))
        {
            let Some(slug) = bucket
                .strip_prefix("tenant-")
                .and_then(|slug| Slug::parse(slug).ok())
            else {
                continue;
            };
            // A bucket deleted between the list and this read is gone: nothing to report.
            let Some((ownership, tags)) = admin.bucket_ownership(server, &bucket).await? else {
                continue;
            };
            // Only a bucket with an installation tag looks like a tenant's: the server holds others' buckets.
            if tags.contains_key("installation") {
                items.push(InventoryItem {
                    name: slug.resource_name(),
                    ownership,
                });
            }
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_aws_test_suite() {
        // "get-vanilla-query-order-key-case" from AWS's Signature Version 4 test suite, signed for service
        // "service" in us-east-1.
        let key = Key {
            id: "AKIDEXAMPLE".to_owned(),
            secret: SecretString::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned()),
        };
        let headers = vec![
            ("host".to_owned(), "example.amazonaws.com".to_owned()),
            ("x-amz-date".to_owned(), "20150830T123600Z".to_owned()),
        ];
        let query = canonical_query(&[("Param2", "value2"), ("Param1", "value1")]);
        assert_eq!(query, "Param1=value1&Param2=value2");
        let authorization = sign(&SigningInput {
            method: "GET",
            path: "/",
            query: &query,
            headers: &headers,
            payload_hash: &hex::encode(Sha256::digest(b"")),
            amz_date: "20150830T123600Z",
            service: "service",
            key: &key,
        });
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }

    #[test]
    fn amz_date_is_utc_civil_time() {
        let at = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        assert_eq!(amz_date(at), "20150830T123600Z");
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(amz_date(leap), "20000229T000000Z");
    }

    #[test]
    fn policy_read_back_is_judged() {
        let bucket = "tenant-acme";
        assert!(policy_is_right(&bucket_policy(bucket), bucket));
        let widened = serde_json::json!({ "Statement": [{ "Effect": "Allow", "Action": "s3:*",
            "Resource": ["arn:aws:s3:::*"] }] });
        assert!(!policy_is_right(&widened, bucket));
        let lone_action = serde_json::json!({ "Statement": [{ "Effect": "Allow", "Action": "s3:*",
            "Resource": ["arn:aws:s3:::tenant-acme/*", "arn:aws:s3:::tenant-acme"] }] });
        assert!(policy_is_right(&lone_action, bucket));
    }

    #[test]
    fn tags_are_escaped_and_read_back() {
        let tags: BTreeMap<String, String> =
            [("cost_center".to_owned(), "R&D <1>".to_owned())].into();
        let xml = tagging_xml(&tags);
        assert!(xml.contains("R&amp;D &lt;1&gt;"));
        assert_eq!(parse_tags(&xml).unwrap(), tags);
    }

    #[test]
    fn names_follow_the_slug() {
        let slug = Slug::parse("acme-health").unwrap();
        assert_eq!(bucket_name(&slug), "tenant-acme-health");
        assert_eq!(slug_of(&slug.resource_name()).unwrap(), slug);
        assert!(slug_of("other").is_err());
    }
}
