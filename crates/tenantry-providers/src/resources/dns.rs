//! The `dns` kind: a tenant's records in a PowerDNS Authoritative server, made through its HTTP API and verified
//! with a real DNS query to the server.
//!
//! A `powerdns` server names one zone, a target and where its DNS listener is, in its public URL
//! `dns://HOST:PORT/ZONE?target=TARGET` (made by `servers add --zone --dns-target --dns-port`). Per tenant:
//! - `<slug>.<zone>`: an A, AAAA or CNAME record set pointing at the target;
//! - `_tenantry.<slug>.<zone>`: a TXT record set carrying the mark and the labels (`tenantry=dns`,
//!   `installation=…`, `tenant=…`, `plan=…`, `cost_center=…`). It sits on a name of its own because a CNAME may
//!   share its name with no other record, and it decides whose the pair is, like a RabbitMQ vhost's description.
//!
//! Every change is one `PATCH` of the zone with `REPLACE`/`DELETE` changetypes, made only when `observe` found a
//! difference, so running `ensure` again changes nothing (not even the zone's serial). Suspension disables the
//! address records (PowerDNS's per-record `disabled`), so the name stops answering; the TXT mark stays. There is
//! no tenant credential and no secret: what the contract calls credentials is the record's address
//! `dns://HOST:PORT/<slug>.<zone>`, made again when needed, and rotating has nothing to do.

use super::check;
use super::{
    InventoryItem, Observed, ResourceProvider, ResourceServer, Verification, WantedResource,
};
use crate::credentials::SecretString;
use crate::engines::{foreign_error, Ownership};
use crate::{Error, Result};
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use simple_dns::rdata::RData;
use simple_dns::{Name, Packet, Question, CLASS, QCLASS, QTYPE, RCODE, TYPE};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;
use tenantry_core::{EngineKind, Slug};

/// How long one API request may take, connecting included.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one DNS query waits for its answer (UDP: a lost packet is waited for this long, then tried again).
const DNS_TIMEOUT: Duration = Duration::from_secs(2);

/// DNS queries sent before a silent listener counts as unreachable.
const DNS_ATTEMPTS: u32 = 3;

/// The TTL of a tenant's records: short, so a repair or a suspension reaches resolvers soon.
const RECORD_TTL: u32 = 60;

/// How many times one zone `PATCH` is sent when the server answers with an error of its own, and the first wait.
const PATCH_ATTEMPTS: u32 = 5;
const PATCH_BACKOFF: Duration = Duration::from_millis(50);

/// The label in front of a tenant's name that holds its TXT mark.
const MARK_LABEL: &str = "_tenantry";

/// The record types a tenant's name may hold; one of them is the wanted one, the others are removed.
const ADDRESS_TYPES: [&str; 3] = ["A", "AAAA", "CNAME"];

/// The server PowerDNS's API calls itself (there is only one per API).
const API_SERVER: &str = "localhost";

/// The `dns` kind on PowerDNS servers. The platform owns the instance, and with it one HTTP client (and its
/// connection pool) for every server.
pub struct PowerDns {
    http: reqwest::Client,
}

impl PowerDns {
    pub fn new() -> PowerDns {
        PowerDns {
            http: reqwest::Client::new(),
        }
    }

    /// The public URL that records a `powerdns` server's settings: its DNS listener (the admin URL's host, on
    /// `dns_port` or 53), the zone (made absolute) and the target (an IPv4 or IPv6 address, or a host name for a
    /// CNAME). Refuses a zone or target that is not a DNS name or address.
    pub fn settings_url(
        admin_url: &SecretString,
        zone: &str,
        target: &str,
        dns_port: Option<u16>,
    ) -> Result<String> {
        let url = url::Url::parse(admin_url.expose())
            .map_err(|_| Error::Refused("the PowerDNS admin URL is not a valid URL".into()))?;
        let host = url
            .host_str()
            .ok_or_else(|| Error::Refused("the PowerDNS admin URL names no host".into()))?;
        let zone = absolute_name(zone)
            .ok_or_else(|| Error::Refused(format!("the zone {zone:?} is not a DNS name")))?;
        let target = Target::parse(target)?;
        Ok(format!(
            "dns://{host}:{}/{zone}?target={}",
            dns_port.unwrap_or(53),
            target.content()
        ))
    }

    fn api<'a>(&'a self, server: &ResourceServer) -> Result<Api<'a>> {
        Api::parse(&self.http, server)
    }
}

impl Default for PowerDns {
    fn default() -> Self {
        PowerDns::new()
    }
}

/// Where a tenant's names point.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    /// An absolute host name.
    Cname(String),
}

impl Target {
    fn parse(text: &str) -> Result<Target> {
        match text.parse::<IpAddr>() {
            Ok(IpAddr::V4(address)) => Ok(Target::V4(address)),
            Ok(IpAddr::V6(address)) => Ok(Target::V6(address)),
            Err(_) => absolute_name(text).map(Target::Cname).ok_or_else(|| {
                Error::Refused(format!(
                    "the DNS target {text:?} is neither an IP address nor a host name"
                ))
            }),
        }
    }

    fn record_type(&self) -> &'static str {
        match self {
            Target::V4(_) => "A",
            Target::V6(_) => "AAAA",
            Target::Cname(_) => "CNAME",
        }
    }

    /// The record's content as PowerDNS writes it.
    fn content(&self) -> String {
        match self {
            Target::V4(address) => address.to_string(),
            Target::V6(address) => address.to_string(),
            Target::Cname(name) => name.clone(),
        }
    }

    /// Whether `content` (as the API returns it) is this target.
    fn is(&self, content: &str) -> bool {
        match self {
            Target::V4(address) => content.parse::<Ipv4Addr>().ok() == Some(*address),
            Target::V6(address) => content.parse::<Ipv6Addr>().ok() == Some(*address),
            Target::Cname(name) => content.eq_ignore_ascii_case(name),
        }
    }
}

/// `name` lower-cased and ending with a dot, if it is a DNS name of letters, digits and hyphens.
fn absolute_name(name: &str) -> Option<String> {
    let name = name.trim().to_ascii_lowercase();
    let relative = name.strip_suffix('.').unwrap_or(&name);
    let valid = !relative.is_empty()
        && relative.len() <= 253
        && relative.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        });
    valid.then(|| format!("{relative}."))
}

/// A `powerdns` server's settings, from its public URL.
#[derive(Debug, Clone)]
struct Settings {
    dns_host: String,
    dns_port: u16,
    zone: String,
    target: Target,
}

impl Settings {
    fn parse(server: &ResourceServer) -> Result<Settings> {
        let invalid = |why: &str| {
            Error::Refused(format!(
                "PowerDNS server {:?} {why}; add it with --zone ZONE --dns-target ADDRESS [--dns-port PORT]",
                server.name
            ))
        };
        let public_url = server
            .public_url
            .as_deref()
            .ok_or_else(|| invalid("has no zone and target"))?;
        let url = url::Url::parse(public_url).map_err(|_| {
            invalid("has settings that are not a dns://host:port/zone?target=… URL")
        })?;
        if url.scheme() != "dns" {
            return Err(invalid(
                "has settings that are not a dns://host:port/zone?target=… URL",
            ));
        }
        let dns_host = url
            .host_str()
            .ok_or_else(|| invalid("names no DNS host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let zone_text = percent_decode_str(url.path().trim_start_matches('/')).decode_utf8_lossy();
        let zone = absolute_name(&zone_text).ok_or_else(|| invalid("names no valid zone"))?;
        let target = url
            .query_pairs()
            .find(|(key, _)| key == "target")
            .map(|(_, value)| value.into_owned())
            .ok_or_else(|| invalid("names no target"))?;
        Ok(Settings {
            dns_host,
            dns_port: url.port().unwrap_or(53),
            zone,
            target: Target::parse(&target)?,
        })
    }

    /// `<slug>.<zone>`.
    fn record_name(&self, slug: &str) -> String {
        format!("{slug}.{}", self.zone)
    }

    /// `_tenantry.<slug>.<zone>`.
    fn mark_name(&self, slug: &str) -> String {
        format!("{MARK_LABEL}.{slug}.{}", self.zone)
    }
}

/// The tenant's slug in a resource name `tenant_<slug_>` (slugs have no `_`, so the name gives it back).
fn slug_of(name: &str) -> Result<String> {
    name.strip_prefix("tenant_")
        .map(|rest| rest.replace('_', "-"))
        .filter(|slug| Slug::parse(slug).is_ok())
        .ok_or_else(|| Error::Refused(format!("{name:?} is not a tenant's resource name")))
}

/// A server's HTTP API, reached with its API key (the admin URL's password).
struct Api<'a> {
    http: &'a reqwest::Client,
    base: String,
    /// `host:port`, for messages.
    address: String,
    key: SecretString,
    settings: Settings,
}

impl<'a> Api<'a> {
    fn parse(http: &'a reqwest::Client, server: &ResourceServer) -> Result<Api<'a>> {
        let invalid = |why: &str| {
            Error::Refused(format!(
                "the admin URL of PowerDNS server {:?} {why}",
                server.name
            ))
        };
        let url = url::Url::parse(server.admin_url.expose())
            .map_err(|_| invalid("is not a valid URL"))?;
        if url.scheme() != "http" {
            return Err(invalid(
                "must be the HTTP API's http://api:API_KEY@host:port (https is not supported)",
            ));
        }
        let host = url.host_str().ok_or_else(|| invalid("has no host"))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let key = percent_decode_str(url.password().unwrap_or(""))
            .decode_utf8_lossy()
            .into_owned();
        if key.is_empty() {
            return Err(invalid("has no API key (give it as the password)"));
        }
        Ok(Api {
            http,
            base: format!("http://{host}:{port}"),
            address: format!("{host}:{port}"),
            key: SecretString::new(key),
            settings: Settings::parse(server)?,
        })
    }

    fn zone_path(&self) -> String {
        format!("/zones/{}", self.settings.zone)
    }

    async fn send(
        &self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response> {
        let mut request = self
            .http
            .request(
                method,
                format!("{}/api/v1/servers/{API_SERVER}{path}", self.base),
            )
            .header("X-API-Key", self.key.expose())
            .timeout(HTTP_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.map_err(|error| {
            Error::Transient(format!(
                "{what}: PowerDNS's API at {} {}",
                self.address,
                describe_http_error(&error)
            ))
        })
    }

    /// The JSON at `path`, or `None` where the API answers 404 (PowerDNS: no such zone).
    async fn get(&self, what: &str, path: &str) -> Result<Option<Value>> {
        let response = self.send(what, reqwest::Method::GET, path, None).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.success(what, response).await?;
        response.json::<Value>().await.map(Some).map_err(|_| {
            Error::AdminConnection(format!(
                "{what}: {} answered with something that is not PowerDNS's JSON",
                self.address
            ))
        })
    }

    /// The zone's record sets; an error when the server does not have the zone.
    async fn rrsets(&self) -> Result<Vec<RecordSet>> {
        let zone = &self.settings.zone;
        let Some(body) = self
            .get(&format!("reading zone {zone}"), &self.zone_path())
            .await?
        else {
            return Err(Error::Refused(format!(
                "PowerDNS at {} has no zone {zone}",
                self.address
            )));
        };
        Ok(body
            .get("rrsets")
            .and_then(Value::as_array)
            .map(|rrsets| rrsets.iter().filter_map(RecordSet::from_api).collect())
            .unwrap_or_default())
    }

    /// One `PATCH` of the zone: PowerDNS applies its record sets' changes together or not at all. Its changes are
    /// `REPLACE` and `DELETE`, so sending it again is safe: a server error (PowerDNS on SQLite answers 500 when two
    /// writers meet, "database is locked") is tried again a few times, with a short backoff, before it is
    /// reported as transient.
    async fn patch(&self, what: &str, rrsets: Vec<Value>) -> Result<()> {
        if rrsets.is_empty() {
            return Ok(());
        }
        let body = json!({ "rrsets": rrsets });
        let mut backoff = PATCH_BACKOFF;
        for attempt in 1..=PATCH_ATTEMPTS {
            let response = self
                .send(what, reqwest::Method::PATCH, &self.zone_path(), Some(&body))
                .await?;
            match self.success(what, response).await {
                Err(Error::Transient(_)) if attempt < PATCH_ATTEMPTS => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                outcome => return outcome.map(drop),
            }
        }
        Ok(())
    }

    /// The response if it succeeded, else the error its status calls for, with PowerDNS's reason.
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
                body.get("error")
                    .and_then(Value::as_str)
                    .map(|reason| reason.trim().chars().take(300).collect::<String>())
            })
            .unwrap_or_default()
            .replace(self.key.expose(), "***");
        let message = format!(
            "{what}: PowerDNS's API at {} answered {status}{}",
            self.address,
            if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            }
        );
        Err(if status.is_server_error() {
            Error::Transient(message)
        } else if matches!(
            status,
            reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN
        ) {
            Error::AdminConnection(format!("{message} (the API key was refused)"))
        } else {
            Error::Refused(message)
        })
    }
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

/// One record set of a zone, as the API lists it.
#[derive(Debug, Clone)]
struct RecordSet {
    name: String,
    record_type: String,
    /// Each record's content and whether it is disabled.
    records: Vec<(String, bool)>,
}

impl RecordSet {
    fn from_api(rrset: &Value) -> Option<RecordSet> {
        Some(RecordSet {
            name: rrset.get("name")?.as_str()?.to_ascii_lowercase(),
            record_type: rrset.get("type")?.as_str()?.to_owned(),
            records: rrset
                .get("records")?
                .as_array()?
                .iter()
                .filter_map(|record| {
                    Some((
                        record.get("content")?.as_str()?.to_owned(),
                        record
                            .get("disabled")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    ))
                })
                .collect(),
        })
    }
}

/// What the zone holds for one tenant.
struct TenantRecords {
    /// The A, AAAA and CNAME record sets at `<slug>.<zone>`.
    address: Vec<RecordSet>,
    /// The labels of the TXT mark (`None`: no TXT record set at `_tenantry.<slug>.<zone>`).
    mark: Option<BTreeMap<String, String>>,
}

impl TenantRecords {
    fn find(rrsets: &[RecordSet], settings: &Settings, slug: &str) -> TenantRecords {
        let record_name = settings.record_name(slug);
        let mark_name = settings.mark_name(slug);
        TenantRecords {
            address: rrsets
                .iter()
                .filter(|rrset| {
                    rrset.name == record_name && ADDRESS_TYPES.contains(&rrset.record_type.as_str())
                })
                .cloned()
                .collect(),
            mark: rrsets
                .iter()
                .find(|rrset| rrset.name == mark_name && rrset.record_type == "TXT")
                .map(|rrset| {
                    rrset
                        .records
                        .iter()
                        .flat_map(|(content, _)| txt_strings(content))
                        .filter_map(|string| {
                            string
                                .split_once('=')
                                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                        })
                        .collect()
                }),
        }
    }

    fn is_absent(&self) -> bool {
        self.address.is_empty() && self.mark.is_none()
    }

    fn ownership(&self, server: &ResourceServer) -> Ownership {
        let installation = self
            .mark
            .as_ref()
            .filter(|labels| labels.get("tenantry").map(String::as_str) == Some("dns"))
            .and_then(|labels| labels.get("installation"));
        server
            .installation
            .judge_id(installation.map(String::as_str))
    }
}

/// The labels the TXT mark carries for `wanted`: the mark, the installation, the tenant, and the plan's cost
/// labels (`plan`, `cost_center`) where the workflow gave them.
fn wanted_labels(server: &ResourceServer, wanted: &WantedResource) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    if let Some(given) = wanted.labels.as_object() {
        for (key, value) in given {
            // `tenant_id` repeats `tenant`; a TXT string has room for 255 bytes, so nothing is said twice.
            if key == "tenant_id" {
                continue;
            }
            if let Some(value) = value.as_str() {
                labels.insert(key.clone(), value.to_owned());
            }
        }
    }
    labels.insert("tenantry".into(), "dns".into());
    labels.insert("installation".into(), server.installation.id().to_owned());
    labels.insert("tenant".into(), wanted.slug.as_str().to_owned());
    labels
}

/// The TXT content PowerDNS takes for `labels`: one quoted `key=value` string each, `"` and `\` escaped and
/// anything outside printable ASCII written as `\DDD`, each cut to the 255 bytes a string may hold.
fn txt_content(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(key, value)| {
            let string: String = format!("{key}={value}").bytes().take(255).fold(
                String::new(),
                |mut escaped, byte| {
                    match byte {
                        b'"' | b'\\' => {
                            escaped.push('\\');
                            escaped.push(byte as char);
                        }
                        0x20..=0x7e => escaped.push(byte as char),
                        other => escaped.push_str(&format!("\\{other:03}")),
                    }
                    escaped
                },
            );
            format!("\"{string}\"")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The strings of a TXT record's content in presentation form (`"a=b" "c=d"`), unescaped.
fn txt_strings(content: &str) -> Vec<String> {
    let mut strings = Vec::new();
    let mut bytes = content.bytes().peekable();
    while let Some(byte) = bytes.next() {
        if byte != b'"' {
            continue;
        }
        let mut string = Vec::new();
        while let Some(byte) = bytes.next() {
            match byte {
                b'"' => break,
                b'\\' => {
                    let digits: Vec<u8> =
                        std::iter::from_fn(|| bytes.next_if(|next| next.is_ascii_digit()))
                            .take(3)
                            .collect();
                    if digits.is_empty() {
                        if let Some(escaped) = bytes.next() {
                            string.push(escaped);
                        }
                    } else {
                        let value = digits
                            .iter()
                            .fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0'));
                        string.push(u8::try_from(value).unwrap_or(b'?'));
                    }
                }
                other => string.push(other),
            }
        }
        strings.push(String::from_utf8_lossy(&string).into_owned());
    }
    strings
}

/// How the tenant's records differ from `wanted`, one sentence each.
fn differences(
    records: &TenantRecords,
    settings: &Settings,
    server: &ResourceServer,
    wanted: &WantedResource,
) -> Vec<String> {
    let slug = wanted.slug.as_str();
    let record_name = settings.record_name(slug);
    let target = &settings.target;
    let mut differences = Vec::new();
    match records
        .address
        .iter()
        .find(|rrset| rrset.record_type == target.record_type())
    {
        None => differences.push(format!(
            "{record_name} has no {} record",
            target.record_type()
        )),
        Some(rrset) => {
            let contents: Vec<&str> = rrset
                .records
                .iter()
                .map(|(content, _)| content.as_str())
                .collect();
            if contents.len() != 1 || !target.is(contents[0]) {
                differences.push(format!(
                    "{record_name} {} is {}, expected {}",
                    target.record_type(),
                    contents.join(", "),
                    target.content()
                ));
            }
            let disabled = rrset.records.iter().any(|(_, disabled)| *disabled);
            if wanted.enabled && disabled {
                differences.push(format!("{record_name} is disabled"));
            } else if !wanted.enabled && rrset.records.iter().any(|(_, disabled)| !disabled) {
                differences.push(format!(
                    "{record_name} answers while the tenant is disabled"
                ));
            }
        }
    }
    for rrset in &records.address {
        if rrset.record_type != target.record_type() {
            differences.push(format!(
                "{record_name} has a {} record too",
                rrset.record_type
            ));
        }
    }
    let labels = wanted_labels(server, wanted);
    match &records.mark {
        None => differences.push(format!(
            "{} has no TXT record with the labels",
            settings.mark_name(slug)
        )),
        Some(actual) if *actual != labels => differences.push(format!(
            "the labels in {} are {}, expected {}",
            settings.mark_name(slug),
            describe_labels(actual),
            describe_labels(&labels)
        )),
        Some(_) => {}
    }
    differences
}

fn describe_labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `PATCH` record sets that turn what `records` holds into `wanted`.
fn changes(
    records: &TenantRecords,
    settings: &Settings,
    server: &ResourceServer,
    wanted: &WantedResource,
) -> Vec<Value> {
    let slug = wanted.slug.as_str();
    let record_name = settings.record_name(slug);
    let target = &settings.target;
    let mut rrsets: Vec<Value> = records
        .address
        .iter()
        .filter(|rrset| rrset.record_type != target.record_type())
        .map(|rrset| json!({ "name": record_name, "type": rrset.record_type, "changetype": "DELETE" }))
        .collect();
    rrsets.push(json!({
        "name": record_name,
        "type": target.record_type(),
        "ttl": RECORD_TTL,
        "changetype": "REPLACE",
        "records": [{ "content": target.content(), "disabled": !wanted.enabled }],
    }));
    rrsets.push(json!({
        "name": settings.mark_name(slug),
        "type": "TXT",
        "ttl": RECORD_TTL,
        "changetype": "REPLACE",
        "records": [{ "content": txt_content(&wanted_labels(server, wanted)), "disabled": false }],
    }));
    rrsets
}

/// Sets every address record of the tenant `disabled` (or not), keeping what they say.
async fn set_disabled(
    api: &Api<'_>,
    server: &ResourceServer,
    name: &str,
    disabled: bool,
) -> Result<bool> {
    let slug = slug_of(name)?;
    let records = TenantRecords::find(&api.rrsets().await?, &api.settings, &slug);
    if records.is_absent() {
        return Ok(false);
    }
    let ownership = records.ownership(server);
    if ownership != Ownership::Ours {
        return Err(foreign_error(
            &format!("DNS name {}", api.settings.record_name(&slug)),
            &ownership,
        ));
    }
    let rrsets: Vec<Value> = records
        .address
        .iter()
        .filter(|rrset| rrset.records.iter().any(|(_, is)| *is != disabled))
        .map(|rrset| {
            json!({
                "name": rrset.name,
                "type": rrset.record_type,
                "ttl": RECORD_TTL,
                "changetype": "REPLACE",
                "records": rrset.records.iter().map(|(content, _)| json!({ "content": content, "disabled": disabled })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let what = if disabled { "disabling" } else { "enabling" };
    api.patch(
        &format!("{what} {}", api.settings.record_name(&slug)),
        rrsets,
    )
    .await?;
    Ok(true)
}

/// What a DNS listener answered to one question.
struct DnsAnswer {
    rcode: RCODE,
    /// The answer section as text: addresses, CNAME targets (absolute) and TXT strings.
    texts: Vec<String>,
}

impl DnsAnswer {
    fn read(packet: &Packet<'_>) -> DnsAnswer {
        DnsAnswer {
            rcode: packet.rcode(),
            texts: packet
                .answers
                .iter()
                .flat_map(|record| match &record.rdata {
                    RData::A(a) => vec![Ipv4Addr::from(a.address).to_string()],
                    RData::AAAA(aaaa) => vec![Ipv6Addr::from(aaaa.address).to_string()],
                    RData::CNAME(cname) => vec![format!("{}.", cname.0)],
                    RData::SOA(soa) => vec![format!("{}.", soa.mname)],
                    RData::TXT(txt) => txt
                        .iter_raw()
                        .map(|(key, value)| match value {
                            Some(value) => format!(
                                "{}={}",
                                String::from_utf8_lossy(key),
                                String::from_utf8_lossy(value)
                            ),
                            None => String::from_utf8_lossy(key).into_owned(),
                        })
                        .collect(),
                    _ => Vec::new(),
                })
                .collect(),
        }
    }

    fn rcode_text(&self) -> String {
        match self.rcode {
            RCODE::NameError => "NXDOMAIN".to_owned(),
            other => format!("{other:?}"),
        }
    }
}

/// One DNS question to the server's listener and its answer; a listener that stays silent is transient.
async fn query(settings: &Settings, name: &str, record_type: TYPE) -> Result<DnsAnswer> {
    let unreachable = |why: String| {
        Error::Transient(format!(
            "PowerDNS's DNS listener at {}:{} {why}",
            settings.dns_host, settings.dns_port
        ))
    };
    let id = rand::random::<u16>();
    let mut packet = Packet::new_query(id);
    packet.questions.push(Question::new(
        Name::new(name).map_err(|error| Error::Refused(format!("{name:?}: {error}")))?,
        QTYPE::TYPE(record_type),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    let bytes = packet
        .build_bytes_vec()
        .map_err(|error| Error::Refused(format!("a DNS query for {name}: {error}")))?;
    let bind = if settings.dns_host.contains(':') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|error| unreachable(format!("cannot be asked: {error}")))?;
    socket
        .connect((settings.dns_host.as_str(), settings.dns_port))
        .await
        .map_err(|error| unreachable(format!("cannot be reached: {error}")))?;
    let mut buffer = vec![0u8; 4096];
    for _ in 0..DNS_ATTEMPTS {
        socket
            .send(&bytes)
            .await
            .map_err(|error| unreachable(format!("cannot be reached: {error}")))?;
        // Answers to an earlier attempt or to no question of ours are skipped until this one's time is up.
        let deadline = tokio::time::Instant::now() + DNS_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, socket.recv(&mut buffer)).await {
                Err(_) => break,
                Ok(Err(error)) => return Err(unreachable(format!("refused the query: {error}"))),
                Ok(Ok(length)) => {
                    if let Ok(answer) = Packet::parse(&buffer[..length]) {
                        if answer.id() == id {
                            return Ok(DnsAnswer::read(&answer));
                        }
                    }
                }
            }
        }
    }
    Err(unreachable(format!(
        "did not answer {DNS_ATTEMPTS} queries for {name}"
    )))
}

#[async_trait::async_trait]
impl ResourceProvider for PowerDns {
    fn kind(&self) -> &'static str {
        "dns"
    }

    fn engines(&self) -> &'static [EngineKind] {
        &[EngineKind::Powerdns]
    }

    fn has_secret(&self) -> bool {
        false
    }

    async fn check_server(&self, server: &ResourceServer) -> Result<Vec<String>> {
        let api = self.api(server)?;
        let info = api
            .get("checking the API key", "")
            .await
            .map_err(|error| match error {
                Error::Transient(message) | Error::Refused(message) => {
                    Error::AdminConnection(message)
                }
                other => other,
            })?;
        // PowerDNS calls its one server `localhost` and says what it is; anything else is not its API.
        let is_powerdns = info.as_ref().is_some_and(|info| {
            info.get("type").and_then(Value::as_str) == Some("Server")
                && info.get("daemon_type").and_then(Value::as_str) == Some("authoritative")
        });
        if !is_powerdns {
            return Err(Error::AdminConnection(format!(
                "{} does not serve PowerDNS Authoritative's API (no /api/v1/servers/{API_SERVER})",
                api.address
            )));
        }
        let zone = &api.settings.zone;
        if api
            .get(&format!("reading zone {zone}"), &api.zone_path())
            .await?
            .is_none()
        {
            return Err(Error::Refused(format!(
                "PowerDNS at {} has no zone {zone}; create it there first",
                api.address
            )));
        }
        // The DNS listener must answer for the zone, or `verify` could never pass.
        let answer = query(&api.settings, zone, TYPE::SOA)
            .await
            .map_err(|error| Error::AdminConnection(error.to_string()))?;
        if answer.rcode != RCODE::NoError || answer.texts.is_empty() {
            return Err(Error::AdminConnection(format!(
                "the DNS listener at {}:{} does not answer for zone {zone} ({})",
                api.settings.dns_host,
                api.settings.dns_port,
                answer.rcode_text()
            )));
        }
        Ok(Vec::new())
    }

    fn new_credentials(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
    ) -> Result<SecretString> {
        // No password: a record is looked up, not logged in to. What the contract's other operations get is where
        // the record is asked for, made again each time (nothing is kept in the secret store).
        let settings = Settings::parse(server)?;
        let host = if settings.dns_host.contains(':') {
            format!("[{}]", settings.dns_host)
        } else {
            settings.dns_host.clone()
        };
        Ok(SecretString::new(format!(
            "dns://{host}:{}/{}",
            settings.dns_port,
            settings.record_name(wanted.slug.as_str())
        )))
    }

    async fn observe(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        _credentials: Option<&SecretString>,
    ) -> Result<Observed> {
        let api = self.api(server)?;
        let records =
            TenantRecords::find(&api.rrsets().await?, &api.settings, wanted.slug.as_str());
        if records.is_absent() {
            return Ok(Observed::Absent);
        }
        Ok(Observed::Present {
            ownership: records.ownership(server),
            differences: differences(&records, &api.settings, server, wanted),
        })
    }

    async fn ensure(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        _credentials: &SecretString,
    ) -> Result<()> {
        let api = self.api(server)?;
        let slug = wanted.slug.as_str();
        let records = TenantRecords::find(&api.rrsets().await?, &api.settings, slug);
        if !records.is_absent() {
            let ownership = records.ownership(server);
            if ownership != Ownership::Ours {
                return Err(foreign_error(
                    &format!("DNS name {}", api.settings.record_name(slug)),
                    &ownership,
                ));
            }
            if differences(&records, &api.settings, server, wanted).is_empty() {
                return Ok(());
            }
        }
        api.patch(
            &format!("setting {}", api.settings.record_name(slug)),
            changes(&records, &api.settings, server, wanted),
        )
        .await?;
        tracing::info!(
            name = api.settings.record_name(slug),
            "set a tenant's DNS records"
        );
        Ok(())
    }

    async fn remove(&self, server: &ResourceServer, name: &str) -> Result<()> {
        let api = self.api(server)?;
        let slug = slug_of(name)?;
        let records = TenantRecords::find(&api.rrsets().await?, &api.settings, &slug);
        if records.is_absent() {
            return Ok(());
        }
        let ownership = records.ownership(server);
        if ownership != Ownership::Ours {
            return Err(foreign_error(
                &format!("DNS name {}", api.settings.record_name(&slug)),
                &ownership,
            ));
        }
        // One PATCH: the address records and the mark that vouches for them go together.
        let mut rrsets: Vec<Value> = records
            .address
            .iter()
            .map(|rrset| json!({ "name": rrset.name, "type": rrset.record_type, "changetype": "DELETE" }))
            .collect();
        rrsets.push(
            json!({ "name": api.settings.mark_name(&slug), "type": "TXT", "changetype": "DELETE" }),
        );
        api.patch(
            &format!("deleting {}", api.settings.record_name(&slug)),
            rrsets,
        )
        .await?;
        tracing::info!(
            name = api.settings.record_name(&slug),
            "removed a tenant's DNS records"
        );
        Ok(())
    }

    async fn disable(&self, server: &ResourceServer, name: &str) -> Result<()> {
        let api = self.api(server)?;
        // Absent records answer nothing already.
        set_disabled(&api, server, name, true).await.map(drop)
    }

    async fn enable(&self, server: &ResourceServer, name: &str) -> Result<()> {
        let api = self.api(server)?;
        if !set_disabled(&api, server, name, false).await? {
            return Err(Error::Refused(format!(
                "DNS name {} does not exist; ensuring the resource creates it",
                api.settings.record_name(&slug_of(name)?)
            )));
        }
        Ok(())
    }

    async fn verify(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        _credentials: &SecretString,
        neighbour: &WantedResource,
    ) -> Result<Vec<Verification>> {
        let settings = Settings::parse(server)?;
        let slug = wanted.slug.as_str();
        let record_name = settings.record_name(slug);
        let target = &settings.target;
        let record_type = match target {
            Target::V4(_) => TYPE::A,
            Target::V6(_) => TYPE::AAAA,
            Target::Cname(_) => TYPE::CNAME,
        };
        let mut checks = Vec::new();

        let answer = query(&settings, &record_name, record_type).await?;
        let texts = &answer.texts;
        checks.push(if texts.iter().any(|text| target.is(text)) {
            check(
                "dns_record_answers",
                true,
                format!("{record_name} answers {}", target.content()),
            )
        } else {
            check(
                "dns_record_answers",
                false,
                format!(
                    "{record_name} {} does not answer {} ({}{})",
                    target.record_type(),
                    target.content(),
                    answer.rcode_text(),
                    if texts.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", texts.join(", "))
                    }
                ),
            )
        });

        let mark_name = settings.mark_name(slug);
        let answer = query(&settings, &mark_name, TYPE::TXT).await?;
        let answered: BTreeMap<String, String> = answer
            .texts
            .iter()
            .filter_map(|text| {
                text.split_once('=')
                    .map(|(key, value)| (key.to_owned(), value.to_owned()))
            })
            .collect();
        let labels = wanted_labels(server, wanted);
        checks.push(if answered == labels {
            check(
                "dns_labels",
                true,
                format!("{mark_name} TXT carries {}", describe_labels(&labels)),
            )
        } else {
            check(
                "dns_labels",
                false,
                format!(
                    "{mark_name} TXT carries {:?}, expected {}",
                    describe_labels(&answered),
                    describe_labels(&labels)
                ),
            )
        });

        // The neighbour's name must not lead to this tenant's target through this tenant's mark: a name of
        // another tenant that carries this tenant's labels is a record crossed by hand.
        let neighbour_mark = settings.mark_name(neighbour.slug.as_str());
        let answer = query(&settings, &neighbour_mark, TYPE::TXT).await?;
        let crossed = answer
            .texts
            .iter()
            .any(|text| *text == format!("tenant={slug}"));
        checks.push(check(
            "dns_neighbour_apart",
            !crossed,
            if crossed {
                format!("{neighbour_mark} carries tenant {slug}'s labels")
            } else {
                format!("{neighbour_mark} does not carry tenant {slug}'s labels")
            },
        ));
        Ok(checks)
    }

    async fn inventory(&self, server: &ResourceServer) -> Result<Vec<InventoryItem>> {
        let api = self.api(server)?;
        let suffix = format!(".{}", api.settings.zone);
        let prefix = format!("{MARK_LABEL}.");
        let rrsets = api.rrsets().await?;
        Ok(rrsets
            .iter()
            .filter(|rrset| rrset.record_type == "TXT")
            .filter_map(|rrset| {
                let slug = rrset.name.strip_prefix(&prefix)?.strip_suffix(&suffix)?;
                let slug = Slug::parse(slug).ok()?;
                let records = TenantRecords::find(&rrsets, &api.settings, slug.as_str());
                // Only a TXT mark of tenantry's makes a name look like a tenant's: a zone holds other names.
                records
                    .mark
                    .as_ref()
                    .is_some_and(|labels| labels.get("tenantry").map(String::as_str) == Some("dns"))
                    .then(|| InventoryItem {
                        name: slug.resource_name(),
                        ownership: records.ownership(server),
                    })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_absolute_and_checked() {
        assert_eq!(
            absolute_name("Tenants.Example").as_deref(),
            Some("tenants.example.")
        );
        assert_eq!(
            absolute_name("tenants.example.").as_deref(),
            Some("tenants.example.")
        );
        assert_eq!(absolute_name("a..b"), None);
        assert_eq!(absolute_name("-a.b"), None);
        assert_eq!(absolute_name("a b.c"), None);
        assert_eq!(absolute_name(""), None);
    }

    #[test]
    fn targets_are_addresses_or_names() {
        assert_eq!(
            Target::parse("127.0.0.1").unwrap(),
            Target::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(Target::parse("::1").unwrap().record_type(), "AAAA");
        assert_eq!(
            Target::parse("ingress.example").unwrap(),
            Target::Cname("ingress.example.".into())
        );
        assert!(Target::parse("not a name").is_err());
        assert!(Target::parse("::1").unwrap().is("0:0:0:0:0:0:0:1"));
    }

    #[test]
    fn txt_content_reads_back() {
        let labels: BTreeMap<String, String> = [
            ("tenant", "acme"),
            ("cost_center", "a \"quoted\" \\ value"),
            ("plan", "grüne"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        let content = txt_content(&labels);
        assert!(content.is_ascii());
        let read: BTreeMap<String, String> = txt_strings(&content)
            .iter()
            .filter_map(|string| string.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect();
        assert_eq!(read, labels);
    }

    #[test]
    fn resource_names_give_the_slug_back() {
        assert_eq!(slug_of("tenant_acme_health").unwrap(), "acme-health");
        assert!(slug_of("acme").is_err());
    }

    #[test]
    fn settings_url_holds_zone_target_and_port() {
        let admin = SecretString::new("http://api:key@127.0.0.1:8081".into());
        assert_eq!(
            PowerDns::settings_url(&admin, "tenants.example", "10.0.0.1", Some(5353)).unwrap(),
            "dns://127.0.0.1:5353/tenants.example.?target=10.0.0.1"
        );
        assert!(PowerDns::settings_url(&admin, "bad zone", "10.0.0.1", None).is_err());
    }
}
