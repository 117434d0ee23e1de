//! What the wizard's later steps add to a provisioning request (seed 000's steps 1–5 beyond slug, name, e-mail
//! and plan): a description, a contact name, a resource tier, the isolation, the tenant's initial data sources,
//! its module switches and its security policy. Each field has its own parser, so the wizard can show an error at
//! the field it concerns; [`TenantProfile::parse`] runs them all and names the field that failed.
//!
//! A data source's URL is a secret (it usually carries a password): it is kept apart, in [`DataSourceUrl`], which
//! has no `Serialize` and a redacted `Debug`, and the profile stored with a job holds only a reference to the
//! secret (`tenant-ds-<slug>-<name>`) and the endpoint without credentials.

use crate::{Error, Isolation, Modules, Plan, Slug};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// At most this many data sources and allowlist entries per request: a wizard, not a bulk import.
pub const MAX_DATA_SOURCES: usize = 10;
pub const MAX_ALLOWED_CIDRS: usize = 50;

/// A free-text description of at most 500 characters; line breaks and tabs are kept, other control characters
/// are refused. An empty or blank description is no description.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 500;

    pub fn parse(raw: &str) -> Result<Option<Description>, Error> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let length = trimmed.chars().count();
        if length > Self::MAX_CHARS {
            return Err(Error::invalid_input(format!(
                "description must have at most {} characters; it has {length}",
                Self::MAX_CHARS
            )));
        }
        if trimmed
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
        {
            return Err(Error::invalid_input(
                "description must not contain control characters",
            ));
        }
        Ok(Some(Description(trimmed.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Description {
    type Error = Error;
    fn try_from(raw: String) -> Result<Self, Error> {
        Description::parse(&raw)?.ok_or_else(|| Error::invalid_input("description is empty"))
    }
}

impl From<Description> for String {
    fn from(description: Description) -> String {
        description.0
    }
}

/// The tenant's contact person: 1 to 100 characters without control characters. Blank is no contact name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContactName(String);

impl ContactName {
    pub fn parse(raw: &str) -> Result<Option<ContactName>, Error> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let length = trimmed.chars().count();
        if length > 100 {
            return Err(Error::invalid_input(format!(
                "contact name must have at most 100 characters; it has {length}"
            )));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(Error::invalid_input(
                "contact name must not contain control characters",
            ));
        }
        Ok(Some(ContactName(trimmed.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ContactName {
    type Error = Error;
    fn try_from(raw: String) -> Result<Self, Error> {
        ContactName::parse(&raw)?.ok_or_else(|| Error::invalid_input("contact name is empty"))
    }
}

impl From<ContactName> for String {
    fn from(name: ContactName) -> String {
        name.0
    }
}

/// Small, medium or large: the plan's quotas scaled (half, as configured, double). Medium is the plan as
/// written, so a request that names no tier gets exactly the plan.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ResourceTier {
    Small,
    #[default]
    Medium,
    Large,
}

impl ResourceTier {
    pub const ALL: [ResourceTier; 3] = [
        ResourceTier::Small,
        ResourceTier::Medium,
        ResourceTier::Large,
    ];

    pub fn parse(raw: &str) -> Result<ResourceTier, Error> {
        match raw.trim() {
            "" | "medium" => Ok(ResourceTier::Medium),
            "small" => Ok(ResourceTier::Small),
            "large" => Ok(ResourceTier::Large),
            other => Err(Error::invalid_input(format!(
                "resource tier {other:?} does not exist; use small, medium or large"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceTier::Small => "small",
            ResourceTier::Medium => "medium",
            ResourceTier::Large => "large",
        }
    }

    /// The factor applied to every quantity of the plan (and to its price).
    pub fn factor(self) -> f64 {
        match self {
            ResourceTier::Small => 0.5,
            ResourceTier::Medium => 1.0,
            ResourceTier::Large => 2.0,
        }
    }

    /// `value` scaled by this tier, never below 1 (a quota of 0 would lock the tenant out).
    pub fn scale(self, value: u64) -> u64 {
        ((value as f64 * self.factor()).round() as u64).max(1)
    }

    /// `plan` as this tier gives it: the connection limit, the query rate and every whole-number quota of every
    /// kind (`[plans.quotas.<kind>]`) scaled, and the price with them. The statement timeout and the query SLA
    /// are limits on one query, not capacity, and stay.
    pub fn scaled_plan(self, plan: &Plan) -> Plan {
        if self == ResourceTier::Medium {
            return plan.clone();
        }
        let mut scaled = plan.clone();
        scaled.connection_limit = self.scale(u64::from(plan.connection_limit)) as u32;
        scaled.rate_limit_qpm = self.scale(u64::from(plan.rate_limit_qpm)) as u32;
        scaled.base_monthly_price = plan.base_monthly_price * self.factor();
        for quotas in scaled.quotas.values_mut() {
            if let Some(object) = quotas.as_object_mut() {
                for value in object.values_mut() {
                    if let Some(number) = value.as_u64() {
                        *value = serde_json::Value::from(self.scale(number));
                    }
                }
            }
        }
        scaled
    }
}

impl fmt::Display for ResourceTier {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A data source's name: 1 to 32 lowercase letters, digits and hyphens, starting with a letter, so that the
/// secret `tenant-ds-<slug>-<name>` is a valid secret name.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct DataSourceName(String);

impl DataSourceName {
    pub fn parse(raw: &str) -> Result<DataSourceName, Error> {
        let raw = raw.trim();
        let valid = (1..=32).contains(&raw.len())
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && !raw.ends_with('-')
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(Error::invalid_input(format!(
                "data source name {raw:?} is not valid: use 1 to 32 lowercase letters, digits and hyphens, starting with a letter"
            )));
        }
        Ok(DataSourceName(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DataSourceName {
    type Error = Error;
    fn try_from(raw: String) -> Result<Self, Error> {
        DataSourceName::parse(&raw)
    }
}

impl From<DataSourceName> for String {
    fn from(name: DataSourceName) -> String {
        name.0
    }
}

/// What a data source is; its URL's scheme must fit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataSourceKind {
    Postgres,
    Mysql,
    Mongodb,
    Redis,
    Kafka,
    Http,
    S3,
}

impl DataSourceKind {
    pub const ALL: [DataSourceKind; 7] = [
        DataSourceKind::Postgres,
        DataSourceKind::Mysql,
        DataSourceKind::Mongodb,
        DataSourceKind::Redis,
        DataSourceKind::Kafka,
        DataSourceKind::Http,
        DataSourceKind::S3,
    ];

    pub fn parse(raw: &str) -> Result<DataSourceKind, Error> {
        let raw = raw.trim();
        DataSourceKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == raw)
            .ok_or_else(|| {
                let known: Vec<&str> = DataSourceKind::ALL.iter().map(|k| k.as_str()).collect();
                Error::invalid_input(format!(
                    "data source kind {raw:?} does not exist; known kinds: {}",
                    known.join(", ")
                ))
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DataSourceKind::Postgres => "postgres",
            DataSourceKind::Mysql => "mysql",
            DataSourceKind::Mongodb => "mongodb",
            DataSourceKind::Redis => "redis",
            DataSourceKind::Kafka => "kafka",
            DataSourceKind::Http => "http",
            DataSourceKind::S3 => "s3",
        }
    }

    /// The URL schemes a source of this kind may use.
    pub fn schemes(self) -> &'static [&'static str] {
        match self {
            DataSourceKind::Postgres => &["postgres", "postgresql"],
            DataSourceKind::Mysql => &["mysql", "mariadb"],
            DataSourceKind::Mongodb => &["mongodb", "mongodb+srv"],
            DataSourceKind::Redis => &["redis", "rediss"],
            DataSourceKind::Kafka => &["kafka"],
            DataSourceKind::Http => &["http", "https"],
            DataSourceKind::S3 => &["s3", "http", "https"],
        }
    }

    /// The port a URL of `scheme` means when it names none.
    fn default_port(scheme: &str) -> Option<u16> {
        match scheme {
            "postgres" | "postgresql" => Some(5432),
            "mysql" | "mariadb" => Some(3306),
            "mongodb" => Some(27017),
            "redis" | "rediss" => Some(6379),
            "kafka" => Some(9092),
            "http" => Some(80),
            "https" | "s3" => Some(443),
            _ => None,
        }
    }
}

impl fmt::Display for DataSourceKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A data source's URL, credentials and all. It is never serialized, displayed or logged: `Debug` prints only
/// its endpoint. It goes into the secret store and nowhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct DataSourceUrl {
    url: String,
    endpoint: Endpoint,
}

/// Where a data source is, without credentials, path or query: safe to store with the job and to show.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(formatter, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(formatter, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

impl DataSourceUrl {
    /// A URL with a scheme that fits `kind` and a host. The error never repeats the URL (it may hold a password).
    pub fn parse(raw: &str, kind: DataSourceKind) -> Result<DataSourceUrl, Error> {
        let raw = raw.trim();
        let not_a_url = || {
            Error::invalid_input(format!(
                "data source URL is not a URL: write {}://host[:port]/…",
                kind.schemes()[0]
            ))
        };
        if raw.len() > 2048 || raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(not_a_url());
        }
        let parsed = url::Url::parse(raw).map_err(|_| not_a_url())?;
        let scheme = parsed.scheme().to_owned();
        if !kind.schemes().contains(&scheme.as_str()) {
            return Err(Error::invalid_input(format!(
                "a {kind} data source's URL must start with {}; it starts with {scheme}://",
                kind.schemes()
                    .iter()
                    .map(|s| format!("{s}://"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        let host = match parsed.host() {
            Some(url::Host::Domain(domain)) if !domain.is_empty() => domain.to_owned(),
            Some(url::Host::Ipv4(address)) => address.to_string(),
            Some(url::Host::Ipv6(address)) => address.to_string(),
            _ => return Err(not_a_url()),
        };
        let port = parsed
            .port()
            .or_else(|| DataSourceKind::default_port(&scheme))
            .ok_or_else(not_a_url)?;
        Ok(DataSourceUrl {
            url: raw.to_owned(),
            endpoint: Endpoint { scheme, host, port },
        })
    }

    /// The whole URL, for the secret store alone.
    pub fn expose_secret(&self) -> &str {
        &self.url
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl fmt::Debug for DataSourceUrl {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "DataSourceUrl({} [redacted])", self.endpoint)
    }
}

/// A data source as stored with the tenant and its job: no credentials, and the secret that holds the URL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSourceRef {
    pub name: DataSourceName,
    pub kind: DataSourceKind,
    pub endpoint: Endpoint,
    /// `tenant-ds-<slug>-<name>`.
    pub secret: String,
}

/// The secret that holds data source `name`'s URL for tenant `slug`.
pub fn data_source_secret_name(slug: &Slug, name: &DataSourceName) -> String {
    format!("tenant-ds-{}-{}", slug.as_str(), name.as_str())
}

/// How the tenant's application signs its users in (recorded for the application; tenantry signs no one in to
/// it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    #[default]
    Password,
    Oidc,
    Saml,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 3] = [AuthMethod::Password, AuthMethod::Oidc, AuthMethod::Saml];

    pub fn parse(raw: &str) -> Result<AuthMethod, Error> {
        match raw.trim() {
            "" | "password" => Ok(AuthMethod::Password),
            "oidc" => Ok(AuthMethod::Oidc),
            "saml" => Ok(AuthMethod::Saml),
            other => Err(Error::invalid_input(format!(
                "authentication method {other:?} does not exist; use password, oidc or saml"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Password => "password",
            AuthMethod::Oidc => "oidc",
            AuthMethod::Saml => "saml",
        }
    }
}

/// Whether the tenant's application asks its users for a second factor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MfaPolicy {
    Off,
    #[default]
    Optional,
    Required,
}

impl MfaPolicy {
    pub const ALL: [MfaPolicy; 3] = [MfaPolicy::Off, MfaPolicy::Optional, MfaPolicy::Required];

    pub fn parse(raw: &str) -> Result<MfaPolicy, Error> {
        match raw.trim() {
            "" | "optional" => Ok(MfaPolicy::Optional),
            "off" => Ok(MfaPolicy::Off),
            "required" => Ok(MfaPolicy::Required),
            other => Err(Error::invalid_input(format!(
                "MFA policy {other:?} does not exist; use off, optional or required"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MfaPolicy::Off => "off",
            MfaPolicy::Optional => "optional",
            MfaPolicy::Required => "required",
        }
    }
}

/// The addresses the tenant's services may be reached from. Empty: anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityPolicy {
    #[serde(default)]
    pub auth_method: AuthMethod,
    #[serde(default)]
    pub mfa_policy: MfaPolicy,
    /// Networks in CIDR notation, normalised (`10.1.2.3/8` is stored as `10.0.0.0/8`; a bare address is a /32 or
    /// /128), without duplicates, in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_cidrs: Vec<ipnet::IpNet>,
}

impl SecurityPolicy {
    /// One allowlist entry: `a.b.c.d/n`, `a:b::/n`, or a bare address.
    pub fn parse_cidr(raw: &str) -> Result<ipnet::IpNet, Error> {
        let raw = raw.trim();
        if let Ok(network) = raw.parse::<ipnet::IpNet>() {
            return Ok(network.trunc());
        }
        if let Ok(address) = raw.parse::<IpAddr>() {
            return Ok(ipnet::IpNet::from(address));
        }
        Err(Error::invalid_input(format!(
            "{raw:?} is not a network in CIDR notation (like 10.0.0.0/8 or 2001:db8::/32)"
        )))
    }

    /// Every entry of an allowlist, blank entries skipped (a form's list may end with one).
    pub fn parse_cidrs<S: AsRef<str>>(raws: &[S]) -> Result<Vec<ipnet::IpNet>, Error> {
        let mut networks: Vec<ipnet::IpNet> = Vec::new();
        for raw in raws
            .iter()
            .map(AsRef::as_ref)
            .filter(|r| !r.trim().is_empty())
        {
            let network = SecurityPolicy::parse_cidr(raw)?;
            if !networks.contains(&network) {
                networks.push(network);
            }
        }
        if networks.len() > MAX_ALLOWED_CIDRS {
            return Err(Error::invalid_input(format!(
                "at most {MAX_ALLOWED_CIDRS} networks may be allowed; the list has {}",
                networks.len()
            )));
        }
        Ok(networks)
    }

    /// Whether a client at `address` may connect: always when the list is empty.
    pub fn allows(&self, address: IpAddr) -> bool {
        self.allowed_cidrs.is_empty()
            || self
                .allowed_cidrs
                .iter()
                .any(|network| network.contains(&address))
    }
}

/// Module switches from the names a request turns on: every known module is switched, on when named. An
/// unknown name is refused here; whether the plan allows a module is the settings' business
/// ([`TenantProfile::check_against`]).
pub fn module_switches<S: AsRef<str>>(names_on: &[S]) -> Result<BTreeMap<String, bool>, Error> {
    let known = Modules::default().entries();
    let mut switches: BTreeMap<String, bool> = known
        .iter()
        .map(|(name, _)| ((*name).to_owned(), false))
        .collect();
    for name in names_on.iter().map(|n| n.as_ref().trim()) {
        match switches.get_mut(name) {
            Some(on) => *on = true,
            None => {
                let names: Vec<&str> = known.iter().map(|(known, _)| *known).collect();
                return Err(Error::invalid_input(format!(
                    "module {name:?} does not exist; known modules: {}",
                    names.join(", ")
                )));
            }
        }
    }
    Ok(switches)
}

/// The wizard's later fields as they arrive (a JSON body, a form, flags, `--from-file`), before validation.
/// Every field may be left out: the defaults are the plan's (medium tier, the plan's isolation and modules, no
/// data sources, password sign-in with optional MFA from anywhere).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenantProfile {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub contact_name: Option<String>,
    #[serde(default)]
    pub resource_tier: Option<String>,
    #[serde(default)]
    pub isolation: Option<String>,
    #[serde(default)]
    pub data_sources: Vec<RawDataSource>,
    /// The modules to turn on; `None` keeps the plan's.
    #[serde(default)]
    pub modules: Option<Vec<String>>,
    #[serde(default)]
    pub security: RawSecurity,
}

#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDataSource {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub url: String,
}

impl fmt::Debug for RawDataSource {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RawDataSource")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecurity {
    #[serde(default)]
    pub auth_method: Option<String>,
    #[serde(default)]
    pub mfa_policy: Option<String>,
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
}

/// The wizard's later fields, validated. Stored with the job and the tenant; it holds no secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Description>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_name: Option<ContactName>,
    #[serde(default)]
    pub resource_tier: ResourceTier,
    /// `None`: the plan's isolation. When given it must equal the plan's (a plan decides where its tenants live).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_sources: Vec<DataSourceRef>,
    /// Every known module's switch when the request named modules; empty: the plan's modules.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub modules: BTreeMap<String, bool>,
    #[serde(default)]
    pub security: SecurityPolicy,
}

/// The field a profile's validation failed at, as the API and the wizard name it (`description`,
/// `data_sources[1].url`, `security.allowed_cidrs`), and the error.
#[derive(Debug, Clone)]
pub struct ProfileError {
    pub field: String,
    pub error: Error,
}

impl From<ProfileError> for Error {
    fn from(failure: ProfileError) -> Error {
        failure.error
    }
}

/// A parsed profile and the data sources' URLs, which go to the secret store (in the order of
/// `profile.data_sources`).
#[derive(Debug, Clone)]
pub struct ParsedProfile {
    pub profile: TenantProfile,
    pub data_source_urls: Vec<(String, DataSourceUrl)>,
}

impl TenantProfile {
    /// Validates every field in the wizard's order and returns the first error with its field.
    pub fn parse(raw: &RawTenantProfile, slug: &Slug) -> Result<ParsedProfile, ProfileError> {
        let at = |field: &str| {
            let field = field.to_owned();
            move |error: Error| ProfileError { field, error }
        };
        let description = Description::parse(raw.description.as_deref().unwrap_or(""))
            .map_err(at("description"))?;
        let contact_name = ContactName::parse(raw.contact_name.as_deref().unwrap_or(""))
            .map_err(at("contact_name"))?;
        let resource_tier = ResourceTier::parse(raw.resource_tier.as_deref().unwrap_or(""))
            .map_err(at("resource_tier"))?;
        let isolation = match raw.isolation.as_deref().map(str::trim) {
            None | Some("") => None,
            Some("database") => Some(Isolation::Database),
            Some("schema") => Some(Isolation::Schema),
            Some(other) => {
                return Err(ProfileError {
                    field: "isolation".into(),
                    error: Error::invalid_input(format!(
                        "isolation {other:?} does not exist; use database (dedicated) or schema (shared)"
                    )),
                })
            }
        };
        if raw.data_sources.len() > MAX_DATA_SOURCES {
            return Err(ProfileError {
                field: "data_sources".into(),
                error: Error::invalid_input(format!(
                    "at most {MAX_DATA_SOURCES} data sources; the request has {}",
                    raw.data_sources.len()
                )),
            });
        }
        let mut data_sources = Vec::new();
        let mut data_source_urls = Vec::new();
        for (index, source) in raw.data_sources.iter().enumerate() {
            let name = DataSourceName::parse(&source.name)
                .map_err(at(&format!("data_sources[{index}].name")))?;
            if data_sources
                .iter()
                .any(|known: &DataSourceRef| known.name == name)
            {
                return Err(ProfileError {
                    field: format!("data_sources[{index}].name"),
                    error: Error::invalid_input(format!(
                        "data source name {:?} is given twice",
                        name.as_str()
                    )),
                });
            }
            let kind = DataSourceKind::parse(&source.kind)
                .map_err(at(&format!("data_sources[{index}].kind")))?;
            let url = DataSourceUrl::parse(&source.url, kind)
                .map_err(at(&format!("data_sources[{index}].url")))?;
            let secret = data_source_secret_name(slug, &name);
            data_sources.push(DataSourceRef {
                name,
                kind,
                endpoint: url.endpoint().clone(),
                secret: secret.clone(),
            });
            data_source_urls.push((secret, url));
        }
        let modules = match &raw.modules {
            None => BTreeMap::new(),
            Some(names) => module_switches(names).map_err(at("modules"))?,
        };
        let security = SecurityPolicy {
            auth_method: AuthMethod::parse(raw.security.auth_method.as_deref().unwrap_or(""))
                .map_err(at("security.auth_method"))?,
            mfa_policy: MfaPolicy::parse(raw.security.mfa_policy.as_deref().unwrap_or(""))
                .map_err(at("security.mfa_policy"))?,
            allowed_cidrs: SecurityPolicy::parse_cidrs(&raw.security.allowed_cidrs)
                .map_err(at("security.allowed_cidrs"))?,
        };
        Ok(ParsedProfile {
            profile: TenantProfile {
                description,
                contact_name,
                resource_tier,
                isolation,
                data_sources,
                modules,
                security,
            },
            data_source_urls,
        })
    }

    /// What the profile asks of `plan`: an isolation, if named, that is the plan's (a plan decides where its
    /// tenants live), and modules the plan allows. The error names the field.
    pub fn check_against(&self, plan: &Plan) -> Result<(), ProfileError> {
        if let Some(isolation) = self.isolation {
            if isolation != plan.isolation {
                let (asked, given) = match isolation {
                    Isolation::Schema => {
                        ("shared (a schema in a shared database)", "its own database")
                    }
                    Isolation::Database => (
                        "dedicated (its own database)",
                        "a schema in a shared database",
                    ),
                };
                return Err(ProfileError {
                    field: "isolation".into(),
                    error: Error::invalid_input(format!(
                        "plan {:?} gives each tenant {given}, not {asked}; choose a plan with isolation {:?}",
                        plan.name,
                        isolation.as_str()
                    )),
                });
            }
        }
        plan.check_module_switches(&self.modules)
            .map_err(|error| ProfileError {
                field: "modules".into(),
                error,
            })
    }

    /// Whether nothing beyond the defaults was asked for (a request from before the wizard had these steps).
    pub fn is_default(&self) -> bool {
        *self == TenantProfile::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slug() -> Slug {
        Slug::parse("acme").unwrap()
    }

    #[test]
    fn description_is_limited_to_500_characters() {
        assert!(Description::parse(&"é".repeat(500)).unwrap().is_some());
        let error = Description::parse(&"x".repeat(501)).unwrap_err();
        assert!(error.message.contains("at most 500"), "{}", error.message);
        assert_eq!(Description::parse("  ").unwrap(), None);
        assert!(Description::parse("two\nlines").unwrap().is_some());
        assert!(Description::parse("bell\u{7}").is_err());
    }

    #[test]
    fn tiers_scale_capacity_and_price_but_not_per_query_limits() {
        let plan = Plan::builtin().remove(0);
        let mut with_quota = plan.clone();
        with_quota.quotas.insert(
            "cache".into(),
            serde_json::json!({"max_memory_mb": 64, "note": "x"}),
        );
        let large = ResourceTier::Large.scaled_plan(&with_quota);
        assert_eq!(large.connection_limit, plan.connection_limit * 2);
        assert_eq!(large.statement_timeout_ms, plan.statement_timeout_ms);
        assert_eq!(large.quotas["cache"]["max_memory_mb"], 128);
        assert_eq!(large.quotas["cache"]["note"], "x");
        assert_eq!(ResourceTier::Medium.scaled_plan(&plan), plan);
        assert_eq!(
            ResourceTier::Small.scale(1),
            1,
            "a quota never scales to zero"
        );
        assert!(ResourceTier::parse("huge").is_err());
    }

    #[test]
    fn a_data_source_url_is_checked_against_its_kind_and_never_repeated_in_an_error() {
        let url = DataSourceUrl::parse(
            "postgres://u:hunter2@db.example:6543/app",
            DataSourceKind::Postgres,
        )
        .unwrap();
        assert_eq!(url.endpoint().to_string(), "postgres://db.example:6543");
        assert!(!format!("{url:?}").contains("hunter2"));
        let wrong =
            DataSourceUrl::parse("mysql://u:hunter2@db.example/app", DataSourceKind::Postgres)
                .unwrap_err();
        assert!(!wrong.message.contains("hunter2"), "{}", wrong.message);
        let garbage = DataSourceUrl::parse("not a url hunter2", DataSourceKind::Http).unwrap_err();
        assert!(garbage.message.contains("not a URL"), "{}", garbage.message);
        assert!(!garbage.message.contains("hunter2"));
        assert!(DataSourceUrl::parse("https://api.example", DataSourceKind::Http).is_ok());
    }

    #[test]
    fn cidrs_are_normalised_and_bad_ones_named() {
        let networks =
            SecurityPolicy::parse_cidrs(&["10.1.2.3/8", "10.0.0.0/8", "127.0.0.1", "", "::1/128"])
                .unwrap();
        let shown: Vec<String> = networks.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]);
        let error = SecurityPolicy::parse_cidrs(&["10.0.0.0/33"]).unwrap_err();
        assert!(error.message.contains("10.0.0.0/33"), "{}", error.message);
        let policy = SecurityPolicy {
            allowed_cidrs: networks,
            ..SecurityPolicy::default()
        };
        assert!(policy.allows("10.9.9.9".parse().unwrap()));
        assert!(!policy.allows("192.168.0.1".parse().unwrap()));
        assert!(SecurityPolicy::default().allows("192.168.0.1".parse().unwrap()));
    }

    #[test]
    fn a_profile_names_the_field_that_failed() {
        let raw = RawTenantProfile {
            data_sources: vec![
                RawDataSource {
                    name: "warehouse".into(),
                    kind: "postgres".into(),
                    url: "postgres://127.0.0.1/w".into(),
                },
                RawDataSource {
                    name: "events".into(),
                    kind: "kafka".into(),
                    url: "nope".into(),
                },
            ],
            ..RawTenantProfile::default()
        };
        let failure = TenantProfile::parse(&raw, &slug()).unwrap_err();
        assert_eq!(failure.field, "data_sources[1].url");
        let unknown_module = RawTenantProfile {
            modules: Some(vec!["core".into(), "crm".into()]),
            ..RawTenantProfile::default()
        };
        assert_eq!(
            TenantProfile::parse(&unknown_module, &slug())
                .unwrap_err()
                .field,
            "modules"
        );
    }

    #[test]
    fn a_parsed_profile_keeps_urls_out_of_what_is_stored() {
        let raw = RawTenantProfile {
            description: Some("Clinic network".into()),
            resource_tier: Some("large".into()),
            isolation: Some("schema".into()),
            data_sources: vec![RawDataSource {
                name: "warehouse".into(),
                kind: "postgres".into(),
                url: "postgres://reader:s3cret@127.0.0.1:5432/w".into(),
            }],
            modules: Some(vec!["core".into(), "ml".into()]),
            security: RawSecurity {
                auth_method: Some("oidc".into()),
                mfa_policy: Some("required".into()),
                allowed_cidrs: vec!["127.0.0.0/8".into()],
            },
            ..RawTenantProfile::default()
        };
        let parsed = TenantProfile::parse(&raw, &slug()).unwrap();
        let stored = serde_json::to_string(&parsed.profile).unwrap();
        assert!(!stored.contains("s3cret"), "{stored}");
        assert_eq!(parsed.data_source_urls[0].0, "tenant-ds-acme-warehouse");
        assert!(parsed.profile.modules["ml"]);
        assert!(!parsed.profile.modules["bi"]);
        let back: TenantProfile = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, parsed.profile);
        assert!(TenantProfile::default().is_default());
    }
}
