//! The `queue` kind: one RabbitMQ vhost and one user of the same name per tenant, made through the management
//! HTTP API and verified over AMQP with the tenant's own credentials.
//!
//! The vhost carries the installation mark in its description, so it decides whose the pair is: users have no
//! place for a mark. `ensure` makes the vhost before the user and `remove` deletes the user before the vhost, so
//! a run cut short in between never leaves a user without the vhost that vouches for it.

use super::check;
use super::{
    InventoryItem, Observed, ResourceProvider, ResourceServer, Verification, WantedResource,
};
use crate::credentials::{generate_database_password, SecretString};
use crate::engines::{foreign_error, Ownership};
use crate::{Error, Result};
use amqprs::channel::{QueueDeclareArguments, QueueDeleteArguments};
use amqprs::connection::{Connection, OpenConnectionArguments};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tenantry_core::EngineKind;

/// What is escaped in one path segment of a management API URL or an AMQP URL: everything but RFC 3986's
/// unreserved characters, so a vhost named `/` becomes `%2F` and cannot add a segment.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// How long one management API request may take, connecting included.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one AMQP step (connect and log in, open a channel, declare, delete, close) may take: a refused login
/// answers at once, so a step this slow is a server that does not answer.
const AMQP_TIMEOUT: Duration = Duration::from_secs(5);

const DEFAULT_AMQP_PORT: u16 = 5672;

/// A tenant's user may configure, write and read everything in its own vhost, and nothing elsewhere.
const FULL_ACCESS: &str = ".*";

/// The plan's quota keys (`[plans.quotas.queue]`) and the vhost limits RabbitMQ calls them.
const VHOST_LIMITS: [(&str, &str); 2] = [
    ("max_connections", "max-connections"),
    ("max_queues", "max-queues"),
];

/// The `queue` kind on RabbitMQ servers. The platform owns the instance, and with it one HTTP client (and its
/// connection pool) for every server.
pub struct RabbitQueue {
    http: reqwest::Client,
}

impl RabbitQueue {
    pub fn new() -> RabbitQueue {
        RabbitQueue {
            http: reqwest::Client::new(),
        }
    }

    fn management_api<'a>(&'a self, server: &ResourceServer) -> Result<ManagementApi<'a>> {
        ManagementApi::parse(&self.http, server)
    }
}

impl Default for RabbitQueue {
    fn default() -> Self {
        RabbitQueue::new()
    }
}

/// A server's management API, reached with its admin credentials.
struct ManagementApi<'a> {
    http: &'a reqwest::Client,
    /// The admin URL without its credentials.
    base: String,
    /// `host:port`, for messages.
    address: String,
    host: String,
    user: String,
    password: SecretString,
}

impl<'a> ManagementApi<'a> {
    fn parse(http: &'a reqwest::Client, server: &ResourceServer) -> Result<ManagementApi<'a>> {
        // Refused, not an admin connection failure: a malformed URL is bad input, whatever the server would say.
        let invalid = |why: &str| {
            Error::Refused(format!(
                "the admin URL of RabbitMQ server {:?} {why}",
                server.name
            ))
        };
        let url = url::Url::parse(server.admin_url.expose())
            .map_err(|_| invalid("is not a valid URL"))?;
        if url.scheme() != "http" {
            return Err(invalid(
                "must be the management API's http://user:password@host:15672 (https is not supported)",
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| invalid("has no host"))?
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let user = decode(url.username());
        if user.is_empty() {
            return Err(invalid("has no user"));
        }
        let password = SecretString::new(decode(url.password().unwrap_or("")));
        let base = format!("http://{host}:{port}{}", url.path().trim_end_matches('/'));
        Ok(ManagementApi {
            http,
            base,
            address: format!("{host}:{port}"),
            host,
            user,
            password,
        })
    }

    fn url(&self, segments: &[&str]) -> String {
        let path: Vec<String> = segments
            .iter()
            .map(|segment| utf8_percent_encode(segment, PATH_SEGMENT).to_string())
            .collect();
        format!("{}/api/{}", self.base, path.join("/"))
    }

    async fn send(
        &self,
        what: &str,
        method: reqwest::Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<reqwest::Response> {
        let mut request = self
            .http
            .request(method, self.url(segments))
            .basic_auth(&self.user, Some(self.password.expose()))
            .timeout(HTTP_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.map_err(|error| {
            Error::Transient(format!(
                "{what}: RabbitMQ's management API at {} {}",
                self.address,
                describe_http_error(&error)
            ))
        })
    }

    /// The JSON at `segments`, or `None` where the API answers 404.
    async fn get(&self, what: &str, segments: &[&str]) -> Result<Option<Value>> {
        let response = self
            .send(what, reqwest::Method::GET, segments, None)
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.success(what, response).await?;
        response.json::<Value>().await.map(Some).map_err(|error| {
            Error::Transient(format!(
                "{what}: RabbitMQ's management API at {} sent an unreadable answer ({})",
                self.address,
                describe_http_error(&error)
            ))
        })
    }

    /// A list the API must have (a 404 there is an error, not an empty list).
    async fn get_list(&self, what: &str, segments: &[&str]) -> Result<Vec<Value>> {
        match self.get(what, segments).await? {
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(Error::Refused(format!(
                "{what}: RabbitMQ's management API at {} did not answer with a list",
                self.address
            ))),
            None => Err(Error::Refused(format!(
                "{what}: RabbitMQ's management API at {} has no such resource",
                self.address
            ))),
        }
    }

    async fn put(&self, what: &str, segments: &[&str], body: &Value) -> Result<()> {
        let response = self
            .send(what, reqwest::Method::PUT, segments, Some(body))
            .await?;
        self.success(what, response).await.map(drop)
    }

    /// A vhost whose creation was cut short (the client that asked went away mid-request: a crash while another
    /// phase of the job ran beside this one) can stay recorded yet stopped on a node, refusing every login
    /// ("vhost … is down"); starting it where it is not running converges.
    async fn start_stopped_vhost(&self, name: &str) -> Result<()> {
        let Some(vhost) = self
            .get(&format!("reading vhost {name}"), &["vhosts", name])
            .await?
        else {
            return Ok(());
        };
        let Some(states) = vhost.get("cluster_state").and_then(Value::as_object) else {
            return Ok(());
        };
        for (node, state) in states {
            if state != "running" {
                let what = format!("starting vhost {name} on {node}");
                let response = self
                    .send(
                        &what,
                        reqwest::Method::POST,
                        &["vhosts", name, "start", node],
                        None,
                    )
                    .await?;
                self.success(&what, response).await?;
                tracing::warn!(
                    vhost = name,
                    node = node.as_str(),
                    "started a tenant's RabbitMQ vhost found stopped"
                );
            }
        }
        Ok(())
    }

    /// Deletes what `segments` names; what is already gone is fine.
    async fn delete(&self, what: &str, segments: &[&str]) -> Result<()> {
        let response = self
            .send(what, reqwest::Method::DELETE, segments, None)
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        self.success(what, response).await.map(drop)
    }

    /// The response if it succeeded, else the error its status calls for, with the API's reason.
    async fn success(&self, what: &str, response: reqwest::Response) -> Result<reqwest::Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let reason = response
            .json::<Value>()
            .await
            .ok()
            .and_then(|body| {
                body.get("reason")
                    .and_then(Value::as_str)
                    .map(|reason| reason.trim().chars().take(300).collect::<String>())
            })
            .unwrap_or_default();
        // The API echoes some values it refuses; the admin password is never one we send, but the reason is
        // scrubbed of it all the same.
        let reason = scrub(&reason, &[&self.password]);
        let message = format!(
            "{what}: RabbitMQ's management API at {} answered {status}{}",
            self.address,
            if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            }
        );
        Err(if status.is_server_error() {
            Error::Transient(message)
        } else if status == reqwest::StatusCode::UNAUTHORIZED {
            Error::AdminConnection(format!("{message} (the admin credentials were refused)"))
        } else {
            Error::Refused(message)
        })
    }

    /// Whose the vhost `name` is, from the mark in its description (`None`: there is no such vhost).
    async fn vhost_ownership(
        &self,
        server: &ResourceServer,
        name: &str,
    ) -> Result<Option<Ownership>> {
        let vhost = self
            .get(&format!("reading vhost {name}"), &["vhosts", name])
            .await?;
        Ok(vhost.map(|vhost| ownership_of(server, &vhost)))
    }

    /// Whether the vhost `name` exists; an error if it does and is not this installation's.
    async fn require_ours(&self, server: &ResourceServer, name: &str) -> Result<bool> {
        match self.vhost_ownership(server, name).await? {
            None => Ok(false),
            Some(Ownership::Ours) => Ok(true),
            Some(other) => Err(foreign_error(&format!("RabbitMQ vhost {name}"), &other)),
        }
    }

    /// The permissions `user` holds, one entry per vhost (empty when the user is absent).
    async fn permissions_of(&self, user: &str) -> Result<Vec<Value>> {
        Ok(
            match self
                .get(
                    &format!("reading the permissions of user {user}"),
                    &["users", user, "permissions"],
                )
                .await?
            {
                Some(Value::Array(entries)) => entries,
                _ => Vec::new(),
            },
        )
    }

    async fn grant_full_access(&self, vhost: &str, user: &str) -> Result<()> {
        self.put(
            &format!("granting user {user} access to vhost {vhost}"),
            &["permissions", vhost, user],
            &json!({ "configure": FULL_ACCESS, "write": FULL_ACCESS, "read": FULL_ACCESS }),
        )
        .await
    }

    async fn revoke_access(&self, vhost: &str, user: &str) -> Result<()> {
        self.delete(
            &format!("revoking the access of user {user} to vhost {vhost}"),
            &["permissions", vhost, user],
        )
        .await
    }

    /// Ends every connection of `user`, through RabbitMQ's connection tracker
    /// (`DELETE /api/connections/username/{user}`). The tracker knows a connection the moment it is open, where
    /// the connection list is read from statistics that lag by seconds and would miss one opened just before.
    async fn close_connections(&self, user: &str) -> Result<()> {
        self.delete(
            &format!("closing the connections of user {user}"),
            &["connections", "username", user],
        )
        .await
    }

    /// The vhost's limits as RabbitMQ names them (`max-connections`), with their values.
    async fn vhost_limits(&self, vhost: &str) -> Result<serde_json::Map<String, Value>> {
        let entries = self
            .get(
                &format!("reading the limits of vhost {vhost}"),
                &["vhost-limits", vhost],
            )
            .await?;
        Ok(entries
            .as_ref()
            .and_then(Value::as_array)
            .and_then(|entries| entries.first())
            .and_then(|entry| entry.get("value"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default())
    }
}

/// Whose a vhost (the management API's JSON for it) is.
fn ownership_of(server: &ResourceServer, vhost: &Value) -> Ownership {
    let description = vhost
        .get("description")
        .and_then(Value::as_str)
        .filter(|description| !description.is_empty());
    server.installation.judge_mark(description)
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

/// `text` with every non-empty secret in it replaced by `***`.
fn scrub(text: &str, secrets: &[&SecretString]) -> String {
    secrets
        .iter()
        .filter(|secret| !secret.expose().is_empty())
        .fold(text.to_owned(), |text, secret| {
            text.replace(secret.expose(), "***")
        })
}

/// Where tenants reach the AMQP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AmqpAddress {
    /// As it goes in a URL (an IPv6 address in brackets).
    url_host: String,
    port: u16,
}

impl AmqpAddress {
    /// The server's public AMQP URL, or the admin URL's host on the standard port.
    fn public(server: &ResourceServer, api: &ManagementApi<'_>) -> Result<AmqpAddress> {
        let Some(public_url) = &server.public_url else {
            return Ok(AmqpAddress {
                url_host: api.host.clone(),
                port: DEFAULT_AMQP_PORT,
            });
        };
        let invalid = || {
            Error::Refused(format!(
                "the public URL of RabbitMQ server {:?} must look like amqp://host:5672",
                server.name
            ))
        };
        let url = url::Url::parse(public_url).map_err(|_| invalid())?;
        if url.scheme() != "amqp" {
            return Err(invalid());
        }
        Ok(AmqpAddress {
            url_host: url.host_str().ok_or_else(invalid)?.to_owned(),
            port: url.port().unwrap_or(DEFAULT_AMQP_PORT),
        })
    }

    /// The host as a socket takes it (an IPv6 address without brackets).
    fn connect_host(&self) -> &str {
        self.url_host.trim_start_matches('[').trim_end_matches(']')
    }

    fn display(&self) -> String {
        format!("{}:{}", self.url_host, self.port)
    }

    /// Whether a TCP connection to it opens (an AMQP listener, or at least something, is there).
    async fn accepts_connections(&self) -> std::result::Result<(), String> {
        match tokio::time::timeout(
            AMQP_TIMEOUT,
            tokio::net::TcpStream::connect((self.connect_host(), self.port)),
        )
        .await
        {
            Ok(Ok(_stream)) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!(
                "no answer within {} seconds",
                AMQP_TIMEOUT.as_secs()
            )),
        }
    }
}

/// A tenant's credentials, read from its `amqp://user:password@host:port/vhost` URL.
struct TenantLogin {
    user: String,
    password: SecretString,
    address: AmqpAddress,
}

impl TenantLogin {
    fn parse(credentials: &SecretString) -> Result<TenantLogin> {
        // Never the URL itself in the message: it holds the password.
        let invalid = || {
            Error::Refused(
                "the queue credentials are not an amqp://user:password@host/vhost URL".into(),
            )
        };
        let url = url::Url::parse(credentials.expose()).map_err(|_| invalid())?;
        if url.scheme() != "amqp" || url.username().is_empty() {
            return Err(invalid());
        }
        let password = url.password().ok_or_else(invalid)?;
        Ok(TenantLogin {
            user: decode(url.username()),
            password: SecretString::new(decode(password)),
            address: AmqpAddress {
                url_host: url.host_str().ok_or_else(invalid)?.to_owned(),
                port: url.port().unwrap_or(DEFAULT_AMQP_PORT),
            },
        })
    }

    /// Refuses credentials made for another resource: they log in as the vhost's user or as its alternate.
    fn require_user(&self, name: &str) -> Result<()> {
        if !login_users(name).contains(&self.user) {
            return Err(Error::Refused(format!(
                "the queue credentials are for user {:?}, not {name:?} or {:?}",
                self.user,
                alternate_user(name)
            )));
        }
        Ok(())
    }
}

/// The other login of a vhost: RabbitMQ keeps one password per user, so a rotation makes the vhost's other user
/// (`tenant_x` and `tenant_x.b` alternate) with a new password and the same permissions, and retires the first
/// once clients have re-read the secret. A `.` never appears in a name made from a slug, so the alternate of one
/// tenant is never another tenant's user.
fn alternate_user(name: &str) -> String {
    format!("{name}.b")
}

/// Both users that may log in to vhost `name`: its own name and the alternate.
fn login_users(name: &str) -> [String; 2] {
    [name.to_owned(), alternate_user(name)]
}

/// Whether RabbitMQ's `rabbit_password_hashing_sha256` hash (base64 of a 4-byte salt followed by
/// SHA-256(salt ++ password)) is the hash of `password`; `None` when the hash is not of that shape.
fn sha256_password_matches(password_hash: &str, password: &SecretString) -> Option<bool> {
    let bytes = STANDARD.decode(password_hash).ok()?;
    if bytes.len() != 4 + 32 {
        return None;
    }
    let (salt, digest) = bytes.split_at(4);
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(password.expose().as_bytes());
    Some(hasher.finalize().as_slice() == digest)
}

/// Whether the user (the management API's JSON for it) has `password`; `None` when its hashing algorithm is
/// one tenantry does not compute.
fn user_has_password(user: &Value, password: &SecretString) -> Option<bool> {
    if user.get("hashing_algorithm").and_then(Value::as_str)
        != Some("rabbit_password_hashing_sha256")
    {
        return None;
    }
    sha256_password_matches(user.get("password_hash")?.as_str()?, password)
}

/// A user's tags: a list since RabbitMQ 3.9, a comma-separated string before.
fn tags_of(user: &Value) -> Vec<String> {
    match user.get("tags") {
        Some(Value::Array(tags)) => tags
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(tags)) => tags
            .split(',')
            .map(str::trim)
            .filter(|tag| !tag.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The vhost limits the plan's quotas ask for, by RabbitMQ's name (`None`: no limit).
fn wanted_limits(quotas: &Value) -> Result<Vec<(&'static str, Option<i64>)>> {
    VHOST_LIMITS
        .iter()
        .map(|&(quota_key, limit_name)| match quotas.get(quota_key) {
            None | Some(Value::Null) => Ok((limit_name, None)),
            Some(value) => value
                .as_i64()
                .map(|limit| (limit_name, Some(limit)))
                .ok_or_else(|| {
                    Error::Refused(format!(
                        "the plan's queue quota {quota_key} must be an integer, not {value}"
                    ))
                }),
        })
        .collect()
}

/// How one permission entry (the management API's JSON) falls short of full access to its vhost, one sentence
/// per permission.
fn permission_differences(entry: &Value, vhost: &str) -> Vec<String> {
    ["configure", "write", "read"]
        .into_iter()
        .filter_map(|permission| {
            let actual = entry.get(permission).and_then(Value::as_str).unwrap_or("");
            (actual != FULL_ACCESS).then(|| {
                format!("{permission} is {actual:?} on vhost {vhost}, expected {FULL_ACCESS:?}")
            })
        })
        .collect()
}

fn has_full_access(entry: &Value) -> bool {
    permission_differences(entry, "").is_empty()
}

fn vhost_of(entry: &Value) -> &str {
    entry.get("vhost").and_then(Value::as_str).unwrap_or("")
}

/// The outcome of one AMQP check: what happened, in words without the password.
type AmqpOutcome = std::result::Result<(), String>;

/// Logs in to `vhost` with the tenant's credentials.
async fn amqp_open(login: &TenantLogin, vhost: &str) -> std::result::Result<Connection, String> {
    let arguments = OpenConnectionArguments::new(
        login.address.connect_host(),
        login.address.port,
        &login.user,
        login.password.expose(),
    )
    .virtual_host(vhost)
    .connection_name("tenantry-verify")
    .finish();
    match tokio::time::timeout(AMQP_TIMEOUT, Connection::open(&arguments)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(scrub(&amqp_refusal(&error.to_string()), &[&login.password])),
        Err(_) => Err(format!(
            "the login got no answer within {} seconds",
            AMQP_TIMEOUT.as_secs()
        )),
    }
}

/// The server's own words in an amqprs error (`NOT_ALLOWED - vhost tenant_x not found`), which amqprs wraps in
/// the debug form of the AMQP close frame; the whole text when they are not there.
fn amqp_refusal(error: &str) -> String {
    error
        .split_once("reply_text: ShortStr(")
        .and_then(|(_, rest)| rest.split_once('"'))
        .and_then(|(_, quoted)| quoted.split_once('"'))
        .map(|(reply_text, _)| reply_text.to_owned())
        .unwrap_or_else(|| error.to_owned())
}

/// Closes a connection a check opened; a close that fails or hangs leaves nothing to undo, so it is ignored.
async fn amqp_close(connection: Connection) {
    let _ = tokio::time::timeout(AMQP_TIMEOUT, connection.close()).await;
}

/// Declares a throwaway queue on `connection` and deletes it.
async fn declare_and_delete_queue(connection: &Connection) -> AmqpOutcome {
    let step = |what: &'static str| move |error: String| format!("{what}: {error}");
    let channel = amqp_step(connection.open_channel(None))
        .await
        .map_err(step("opening a channel"))?;
    let queue_name = format!(
        "tenantry-verify-{}",
        crate::credentials::random_token(6).expose()
    );
    let declared =
        amqp_step(channel.queue_declare(QueueDeclareArguments::transient_autodelete(&queue_name)))
            .await
            .map_err(step("declaring a queue"));
    let deleted = match declared {
        Ok(_) => amqp_step(channel.queue_delete(QueueDeleteArguments::new(&queue_name)))
            .await
            .map(drop)
            .map_err(step("deleting the queue")),
        Err(error) => Err(error),
    };
    let _ = tokio::time::timeout(AMQP_TIMEOUT, channel.close()).await;
    deleted
}

/// One AMQP call under [`AMQP_TIMEOUT`].
async fn amqp_step<T>(
    call: impl std::future::Future<Output = std::result::Result<T, amqprs::error::Error>>,
) -> std::result::Result<T, String> {
    match tokio::time::timeout(AMQP_TIMEOUT, call).await {
        Ok(result) => result.map_err(|error| error.to_string()),
        Err(_) => Err(format!(
            "no answer within {} seconds",
            AMQP_TIMEOUT.as_secs()
        )),
    }
}

#[async_trait::async_trait]
impl ResourceProvider for RabbitQueue {
    fn kind(&self) -> &'static str {
        "queue"
    }

    fn engines(&self) -> &'static [EngineKind] {
        &[EngineKind::Rabbitmq]
    }

    async fn check_server(&self, server: &ResourceServer) -> Result<Vec<String>> {
        let api = self.management_api(server)?;
        let whoami = api
            .get("checking the admin user", &["whoami"])
            .await
            .map_err(|error| match error {
                Error::Transient(message) | Error::Refused(message) => {
                    Error::AdminConnection(message)
                }
                other => other,
            })?
            .ok_or_else(|| {
                Error::AdminConnection(format!(
                    "{} does not serve RabbitMQ's management API (no /api/whoami)",
                    api.address
                ))
            })?;
        if !tags_of(&whoami).iter().any(|tag| tag == "administrator") {
            return Err(Error::AdminConnection(format!(
                "RabbitMQ user {:?} at {}: the user needs the administrator tag",
                api.user, api.address
            )));
        }
        let public = AmqpAddress::public(server, &api)?;
        public.accepts_connections().await.map_err(|why| {
            Error::AdminConnection(format!(
                "RabbitMQ's AMQP listener at {} does not accept connections: {why}",
                public.display()
            ))
        })?;
        // Nothing here weakens isolation between tenants: RabbitMQ's `guest` logs in from loopback only, and a
        // missing public URL means tenants get the admin API's host, which `servers list` shows.
        Ok(Vec::new())
    }

    fn new_credentials(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
    ) -> Result<SecretString> {
        let api = self.management_api(server)?;
        let public = AmqpAddress::public(server, &api)?;
        let password = generate_database_password();
        Ok(SecretString::new(format!(
            "amqp://{}:{}@{}/{}",
            utf8_percent_encode(&wanted.name, PATH_SEGMENT),
            password.expose(),
            public.display(),
            utf8_percent_encode(&wanted.name, PATH_SEGMENT)
        )))
    }

    async fn observe(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        credentials: Option<&SecretString>,
    ) -> Result<Observed> {
        let api = self.management_api(server)?;
        let name = wanted.name.as_str();
        let limits = wanted_limits(&wanted.quotas)?;
        let Some(ownership) = api.vhost_ownership(server, name).await? else {
            return Ok(Observed::Absent);
        };
        let mut differences = Vec::new();
        let vhost_name = name;
        // The user the secret logs in as: the vhost's name, or its alternate after an odd number of rotations.
        let login = credentials.map(TenantLogin::parse).transpose()?;
        let name = match &login {
            Some(login) if login.require_user(vhost_name).is_err() => {
                differences.push(format!(
                    "the secret is for user {:?}, not {vhost_name:?}",
                    login.user
                ));
                vhost_name.to_owned()
            }
            Some(login) => login.user.clone(),
            None => vhost_name.to_owned(),
        };
        let name = name.as_str();

        let user = api
            .get(&format!("reading user {name}"), &["users", name])
            .await?;
        match &user {
            None => differences.push(format!("user {name} is missing")),
            Some(user) => {
                let tags = tags_of(user);
                if !tags.is_empty() {
                    differences.push(format!(
                        "user {name} has tags {}; a tenant's user has none",
                        tags.join(", ")
                    ));
                }
                if let Some(login) = &login {
                    if login.user == name && user_has_password(user, &login.password) == Some(false)
                    {
                        differences.push("password does not match the secret".to_owned());
                    }
                }
            }
        }

        let permissions = api.permissions_of(name).await?;
        for entry in &permissions {
            let vhost = vhost_of(entry);
            if vhost != vhost_name {
                differences.push(format!("user {name} has permissions on vhost {vhost} too"));
            } else if !wanted.enabled {
                differences.push(format!(
                    "user {name} has permissions on vhost {vhost_name} while disabled"
                ));
            } else {
                differences.extend(permission_differences(entry, vhost_name));
            }
        }
        if wanted.enabled
            && user.is_some()
            && !permissions
                .iter()
                .any(|entry| vhost_of(entry) == vhost_name)
        {
            differences.push(format!(
                "user {name} has no permissions on vhost {vhost_name}"
            ));
        }

        let actual_limits = api.vhost_limits(vhost_name).await?;
        for (limit_name, wanted_limit) in limits {
            let actual = actual_limits.get(limit_name).and_then(Value::as_i64);
            match (actual, wanted_limit) {
                (Some(actual), Some(wanted_limit)) if actual != wanted_limit => differences.push(
                    format!("{limit_name} is {actual}, the plan says {wanted_limit}"),
                ),
                (None, Some(wanted_limit)) => differences.push(format!(
                    "{limit_name} is unlimited, the plan says {wanted_limit}"
                )),
                (Some(actual), None) => {
                    differences.push(format!("{limit_name} is {actual}, the plan sets no limit"))
                }
                _ => {}
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
        let api = self.management_api(server)?;
        let name = wanted.name.as_str();
        let limits = wanted_limits(&wanted.quotas)?;
        let login = TenantLogin::parse(credentials)?;
        login.require_user(name)?;

        // The vhost first: its mark is what makes the user below this installation's.
        if !api.require_ours(server, name).await? {
            let mark = server.installation.mark("queue").to_string();
            api.put(
                &format!("creating vhost {name}"),
                &["vhosts", name],
                &json!({ "description": mark, "tags": "tenantry" }),
            )
            .await?;
            tracing::info!(vhost = name, "created a tenant's RabbitMQ vhost");
        }
        api.start_stopped_vhost(name).await?;

        // The user the secret names (the vhost's own, or its alternate after a rotation), on the vhost `name`.
        let vhost_name = name;
        let name = login.user.as_str();
        let user = api
            .get(&format!("reading user {name}"), &["users", name])
            .await?;
        let user_is_right = user.as_ref().is_some_and(|user| {
            tags_of(user).is_empty() && user_has_password(user, &login.password) == Some(true)
        });
        if !user_is_right {
            api.put(
                &format!("setting user {name}"),
                &["users", name],
                &json!({ "password": login.password.expose(), "tags": "" }),
            )
            .await
            .map_err(|error| scrub_error(error, &login.password))?;
        }

        let permissions = api.permissions_of(name).await?;
        for entry in &permissions {
            let vhost = vhost_of(entry);
            if vhost != vhost_name {
                // Access to another vhost is a widening someone made by hand: a tenant's user has none.
                api.revoke_access(vhost, name).await?;
            }
        }
        let own_entry = permissions
            .iter()
            .find(|entry| vhost_of(entry) == vhost_name);
        if wanted.enabled {
            if !own_entry.is_some_and(has_full_access) {
                api.grant_full_access(vhost_name, name).await?;
            }
        } else {
            if own_entry.is_some() {
                api.revoke_access(vhost_name, name).await?;
            }
            api.close_connections(name).await?;
        }
        let name = vhost_name;

        let actual_limits = api.vhost_limits(name).await?;
        for (limit_name, wanted_limit) in limits {
            let actual = actual_limits.get(limit_name).and_then(Value::as_i64);
            let what = format!("setting {limit_name} on vhost {name}");
            match wanted_limit {
                Some(limit) if actual != Some(limit) => {
                    api.put(
                        &what,
                        &["vhost-limits", name, limit_name],
                        &json!({ "value": limit }),
                    )
                    .await?
                }
                None if actual_limits.contains_key(limit_name) => {
                    api.delete(&what, &["vhost-limits", name, limit_name])
                        .await?
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn remove(&self, server: &ResourceServer, name: &str) -> Result<()> {
        let api = self.management_api(server)?;
        if !api.require_ours(server, name).await? {
            return Ok(());
        }
        // The users before the vhost: while the vhost stands, its mark still says they are ours.
        for user in login_users(name) {
            api.delete(&format!("deleting user {user}"), &["users", &user])
                .await?;
        }
        api.delete(&format!("deleting vhost {name}"), &["vhosts", name])
            .await?;
        tracing::info!(vhost = name, "removed a tenant's RabbitMQ vhost and user");
        Ok(())
    }

    async fn disable(&self, server: &ResourceServer, name: &str) -> Result<()> {
        let api = self.management_api(server)?;
        if !api.require_ours(server, name).await? {
            // Without its vhost the tenant has nothing to log in to.
            return Ok(());
        }
        // Every vhost the users may reach, not only their own: the credentials must stop working everywhere.
        // Both of the vhost's logins: either may be the one the secret names.
        for user in login_users(name) {
            for entry in api.permissions_of(&user).await? {
                api.revoke_access(vhost_of(&entry), &user).await?;
            }
            api.close_connections(&user).await?;
        }
        Ok(())
    }

    async fn enable(&self, server: &ResourceServer, name: &str) -> Result<()> {
        let api = self.management_api(server)?;
        if !api.require_ours(server, name).await? {
            return Err(Error::Refused(format!(
                "RabbitMQ vhost {name} does not exist; ensuring the resource creates it"
            )));
        }
        // Whichever of the vhost's two logins exists (after a rotation it may be the alternate alone).
        for user in login_users(name) {
            if api
                .get(&format!("reading user {user}"), &["users", &user])
                .await?
                .is_some()
            {
                api.grant_full_access(name, &user).await?;
            }
        }
        Ok(())
    }

    fn rotates(&self, _engine: EngineKind) -> bool {
        true
    }

    async fn rotate_add(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        current: &SecretString,
    ) -> Result<SecretString> {
        let api = self.management_api(server)?;
        let vhost = wanted.name.as_str();
        let current_login = TenantLogin::parse(current)?;
        current_login.require_user(vhost)?;
        if !api.require_ours(server, vhost).await? {
            return Err(Error::Refused(format!(
                "RabbitMQ vhost {vhost} does not exist; `tenantry reconcile --kind queue` makes it"
            )));
        }
        // The login the secret does not name gets a new password and the same rights; the current one is
        // untouched, so clients holding it carry on.
        let next_user = login_users(vhost)
            .into_iter()
            .find(|user| *user != current_login.user)
            .unwrap_or_else(|| alternate_user(vhost));
        let public = AmqpAddress::public(server, &api)?;
        let password = generate_database_password();
        let new_credentials = SecretString::new(format!(
            "amqp://{}:{}@{}/{}",
            utf8_percent_encode(&next_user, PATH_SEGMENT),
            password.expose(),
            public.display(),
            utf8_percent_encode(vhost, PATH_SEGMENT)
        ));
        api.put(
            &format!("setting user {next_user}"),
            &["users", &next_user],
            &json!({ "password": password.expose(), "tags": "" }),
        )
        .await
        .map_err(|error| scrub_error(error, &password))?;
        for entry in api.permissions_of(&next_user).await? {
            if vhost_of(&entry) != vhost {
                api.revoke_access(vhost_of(&entry), &next_user).await?;
            }
        }
        api.grant_full_access(vhost, &next_user).await?;
        // Both must log in now: the new login before anyone is given it, the current one because clients
        // still hold it until they re-read the secret.
        for (which, credentials) in [("new", &new_credentials), ("current", current)] {
            let login = TenantLogin::parse(credentials)?;
            match amqp_open(&login, vhost).await {
                Ok(connection) => amqp_close(connection).await,
                Err(why) => {
                    return Err(Error::Transient(format!(
                    "user {} could not log in to vhost {vhost} with the {which} credentials: {why}",
                    login.user
                )))
                }
            }
        }
        Ok(new_credentials)
    }

    async fn rotate_retire(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        keep: &SecretString,
    ) -> Result<()> {
        let api = self.management_api(server)?;
        let vhost = wanted.name.as_str();
        let keep_login = TenantLogin::parse(keep)?;
        keep_login.require_user(vhost)?;
        if !api.require_ours(server, vhost).await? {
            return Err(Error::Refused(format!(
                "RabbitMQ vhost {vhost} does not exist; `tenantry reconcile --kind queue` makes it"
            )));
        }
        // The kept login first, as it must be (an undo brings back a login a retirement removed), so that
        // some login always works.
        let kept = api
            .get(
                &format!("reading user {}", keep_login.user),
                &["users", &keep_login.user],
            )
            .await?;
        if !kept.as_ref().is_some_and(|user| {
            tags_of(user).is_empty() && user_has_password(user, &keep_login.password) == Some(true)
        }) {
            api.put(
                &format!("setting user {}", keep_login.user),
                &["users", &keep_login.user],
                &json!({ "password": keep_login.password.expose(), "tags": "" }),
            )
            .await
            .map_err(|error| scrub_error(error, &keep_login.password))?;
        }
        if wanted.enabled {
            api.grant_full_access(vhost, &keep_login.user).await?;
        }
        for user in login_users(vhost) {
            if user != keep_login.user {
                // Deleting the user refuses its password; its open connections are closed through the tracker,
                // which sees every one.
                api.delete(&format!("deleting user {user}"), &["users", &user])
                    .await?;
                api.close_connections(&user).await?;
            }
        }
        Ok(())
    }

    async fn verify(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        credentials: &SecretString,
        neighbour: &WantedResource,
    ) -> Result<Vec<Verification>> {
        let api = self.management_api(server)?;
        let login = TenantLogin::parse(credentials)?;
        // A server that cannot be reached says nothing about the tenant's isolation: that is an error to retry,
        // where a refused login is a finding.
        login.address.accepts_connections().await.map_err(|why| {
            Error::Transient(format!(
                "RabbitMQ's AMQP listener at {} cannot be reached: {why}",
                login.address.display()
            ))
        })?;
        let mut checks = Vec::new();

        let own = amqp_open(&login, &wanted.name).await;
        let usable = match &own {
            Ok(connection) => declare_and_delete_queue(connection).await,
            Err(_) => Err("not tried: the login failed".to_owned()),
        };
        checks.push(match &own {
            Ok(_) => check(
                "queue_login",
                true,
                format!("user {} logged in to vhost {}", login.user, wanted.name),
            ),
            Err(why) => check(
                "queue_login",
                false,
                format!(
                    "user {} could not log in to vhost {}: {why}",
                    login.user, wanted.name
                ),
            ),
        });
        if let Ok(connection) = own {
            amqp_close(connection).await;
        }
        checks.push(match usable {
            Ok(()) => check(
                "queue_usable",
                true,
                format!("declared and deleted a queue in vhost {}", wanted.name),
            ),
            Err(why) => check(
                "queue_usable",
                false,
                format!("could not use vhost {}: {why}", wanted.name),
            ),
        });

        checks.push(match amqp_open(&login, &neighbour.name).await {
            Ok(connection) => {
                amqp_close(connection).await;
                check(
                    "queue_neighbour_refused",
                    false,
                    format!(
                        "user {} logged in to the neighbour's vhost {}",
                        login.user, neighbour.name
                    ),
                )
            }
            Err(why) => check(
                "queue_neighbour_refused",
                true,
                format!("vhost {} refused the login: {why}", neighbour.name),
            ),
        });

        let whoami = self
            .http
            .get(api.url(&["whoami"]))
            .basic_auth(&login.user, Some(login.password.expose()))
            .timeout(HTTP_TIMEOUT)
            .send()
            .await
            .map_err(|error| {
                Error::Transient(format!(
                    "RabbitMQ's management API at {} {}",
                    api.address,
                    describe_http_error(&error)
                ))
            })?;
        let status = whoami.status();
        checks.push(if status.is_success() {
            check(
                "queue_no_management",
                false,
                format!(
                    "the management API at {} let user {} in",
                    api.address, login.user
                ),
            )
        } else if matches!(
            status,
            reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN
        ) {
            check(
                "queue_no_management",
                true,
                format!("the management API refused user {} ({status})", login.user),
            )
        } else {
            return Err(Error::Transient(format!(
                "RabbitMQ's management API at {} answered {status} to the tenant's login",
                api.address
            )));
        });
        Ok(checks)
    }

    async fn inventory(&self, server: &ResourceServer) -> Result<Vec<InventoryItem>> {
        let api = self.management_api(server)?;
        let vhosts = api.get_list("listing vhosts", &["vhosts"]).await?;
        Ok(vhosts
            .iter()
            .filter_map(|vhost| {
                let name = vhost.get("name").and_then(Value::as_str)?;
                name.starts_with("tenant_").then(|| InventoryItem {
                    name: name.to_owned(),
                    ownership: ownership_of(server, vhost),
                })
            })
            .collect())
    }
}

/// `error` with `secret` scrubbed from its message (for a request that carried the tenant's password).
fn scrub_error(error: Error, secret: &SecretString) -> Error {
    match error {
        Error::Refused(message) => Error::Refused(scrub(&message, &[secret])),
        Error::Transient(message) => Error::Transient(scrub(&message, &[secret])),
        Error::AdminConnection(message) => Error::AdminConnection(scrub(&message, &[secret])),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hash_check_follows_rabbitmq() {
        // The guest user's hash from a RabbitMQ 3.10 node (password "guest").
        let hash = "EsrgkXw85m4yLVpJmJ/+if97AsVOn9cY8b2SFAIf/HVUGg9d";
        assert_eq!(
            sha256_password_matches(hash, &SecretString::new("guest".into())),
            Some(true)
        );
        assert_eq!(
            sha256_password_matches(hash, &SecretString::new("guesT".into())),
            Some(false)
        );
        assert_eq!(
            sha256_password_matches("bm90IGEgaGFzaA==", &SecretString::new("guest".into())),
            None
        );
    }

    #[test]
    fn quotas_become_vhost_limits() {
        let limits = wanted_limits(&json!({ "max_connections": 10, "other": "x" })).unwrap();
        assert_eq!(
            limits,
            vec![("max-connections", Some(10)), ("max-queues", None)]
        );
        assert!(wanted_limits(&Value::Null)
            .unwrap()
            .iter()
            .all(|(_, limit)| limit.is_none()));
        assert!(matches!(
            wanted_limits(&json!({ "max_queues": "ten" })),
            Err(Error::Refused(_))
        ));
    }

    #[test]
    fn tags_read_as_list_or_string() {
        assert_eq!(
            tags_of(&json!({ "tags": ["administrator"] })),
            vec!["administrator"]
        );
        assert_eq!(
            tags_of(&json!({ "tags": "management, monitoring" })),
            vec!["management", "monitoring"]
        );
        assert!(tags_of(&json!({ "tags": "" })).is_empty());
    }

    #[test]
    fn path_segments_cannot_add_segments() {
        assert_eq!(utf8_percent_encode("/", PATH_SEGMENT).to_string(), "%2F");
        assert_eq!(
            utf8_percent_encode("tenant_a-b.c", PATH_SEGMENT).to_string(),
            "tenant_a-b.c"
        );
    }

    #[test]
    fn amqp_refusals_keep_the_servers_words() {
        let error = r#"AMQP connection open error: failed to open connection, reason: Close(MethodHeader { class_id: 10, method_id: 50 }, Close { reply_code: 530, reply_text: ShortStr(48, "NOT_ALLOWED - vhost tenant_nb_x not found"), class_id: 10, method_id: 40 })"#;
        assert_eq!(
            amqp_refusal(error),
            "NOT_ALLOWED - vhost tenant_nb_x not found"
        );
        assert_eq!(
            amqp_refusal("AMQP network error: reset"),
            "AMQP network error: reset"
        );
    }

    #[test]
    fn scrub_hides_secrets() {
        let secret = SecretString::new("hunter2".into());
        assert_eq!(scrub("bad hunter2 value", &[&secret]), "bad *** value");
    }
}
