//! Configuration: `tenantry.toml` (from `--config`, `TENANTRY_CONFIG` or `./tenantry.toml`), every key
//! overridable by a `TENANTRY_*` variable, validated into [`Config`] before any work starts.

use anyhow::{bail, Context as _};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tenantry_core::Plan;
use tenantry_engine::RetryPolicy;
use tenantry_registry::RegistryLocation;

/// The file's shape. Every field is optional; missing ones take the embedded defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data_dir: Option<PathBuf>,
    registry_url: Option<String>,
    lease_ttl_secs: Option<u64>,
    default_plan: Option<String>,
    default_region: Option<String>,
    regions: Option<Vec<String>>,
    bootstrap_local_server: Option<bool>,
    tenant_migrations: Option<PathBuf>,
    admin_seed: Option<PathBuf>,
    invitation_base_url: Option<String>,
    invitation_url: Option<String>,
    invitation_template: Option<PathBuf>,
    smtp_url: Option<String>,
    smtp_from: Option<String>,
    purge_min_interval_ms: Option<u64>,
    retry_max_attempts: Option<u32>,
    retry_initial_delay_ms: Option<u64>,
    retry_max_elapsed_secs: Option<u64>,
    plans: Option<Vec<Plan>>,
    warm_pool_size: Option<u32>,
    warm_pool_refill_batch: Option<u32>,
    admin_check: Option<PathBuf>,
    auto_approve_threshold: Option<u64>,
    approval_ttl_secs: Option<u64>,
    currency: Option<String>,
    region_multipliers: Option<BTreeMap<String, f64>>,
    sqlite_server_roots: Option<Vec<PathBuf>>,
    webhook_allow_internal: Option<bool>,
    notify_retry_base_ms: Option<u64>,
    notify_max_attempts: Option<u32>,
    backup_dir: Option<PathBuf>,
    pg_bin_dir: Option<PathBuf>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub registry: RegistryLocation,
    pub lease_ttl: Duration,
    pub default_plan: String,
    pub default_region: String,
    pub regions: Vec<String>,
    /// Register a `local` SQLite server when the fleet is empty (the embedded default).
    pub bootstrap_local_server: bool,
    /// `None`: the bundled example schema, written into the data directory on first use.
    pub tenant_migrations: Option<PathBuf>,
    pub admin_seed: Option<PathBuf>,
    /// The first admin's invitation: the link's form (`invitation_url`, or the older `invitation_base_url` with
    /// the token appended), the SMTP server (`smtp_url`), the sender (`smtp_from`) and the e-mail's template
    /// (`invitation_template`, a directory), each checked here.
    pub invitations: tenantry_workflows::InvitationSettings,
    /// The least time between two purges on one server (`TENANTRY_PURGE_MIN_INTERVAL_MS`, default 1000).
    pub purge_min_interval: Duration,
    /// Webhook URLs may resolve to private and link-local addresses (`TENANTRY_WEBHOOK_ALLOW_INTERNAL`).
    pub webhook_allow_internal: bool,
    /// The first retry's delay of a failed delivery, doubled each time (`TENANTRY_NOTIFY_RETRY_BASE_MS`, 1000).
    pub notify_retry_base: Duration,
    /// Attempts before a delivery is dead (`TENANTRY_NOTIFY_MAX_ATTEMPTS`, default 8).
    pub notify_max_attempts: u32,
    pub retry: RetryPolicy,
    pub plans: Vec<Plan>,
    /// PostgreSQL databases per server made ahead of time from the schema template (0: none).
    pub warm_pool_size: u32,
    /// At most this many pool databases made per server per background refill round.
    pub warm_pool_refill_batch: u32,
    /// The admin check query of the validation suite (`None` with an operator's own seed: no check).
    pub admin_check: Option<PathBuf>,
    /// Budgets at or above this wait for approval (`TENANTRY_AUTO_APPROVE_THRESHOLD`, default 10000).
    pub auto_approve_threshold: u64,
    /// How long a request waits for approval before it lapses (`TENANTRY_APPROVAL_TTL_SECS`, default 72 h).
    pub approval_ttl: Duration,
    pub currency: String,
    /// Directories a SQLite server's directory must lie under (`TENANTRY_SQLITE_SERVER_ROOTS`, comma-separated;
    /// default: the data directory).
    pub sqlite_server_roots: Vec<PathBuf>,
    /// Monthly price multiplier per region (`TENANTRY_REGION_MULTIPLIERS="eu=1.2,us=1"`); others cost 1.0×.
    pub region_multipliers: BTreeMap<String, f64>,
    /// Where backups are written (`TENANTRY_BACKUP_DIR`, default `<data_dir>/backups`).
    pub backup_dir: PathBuf,
    /// PostgreSQL's client programs for backups (`TENANTRY_PG_BIN_DIR`; default the newest
    /// `/usr/lib/postgresql/<version>/bin`, else the `PATH`).
    pub pg_bin_dir: Option<PathBuf>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn env_parsed<T: std::str::FromStr>(name: &str) -> anyhow::Result<Option<T>> {
    match env(name) {
        Some(raw) => raw
            .parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{name}={raw:?} is not a valid value")),
        None => Ok(None),
    }
}

impl Config {
    pub fn load(explicit_path: Option<&Path>) -> anyhow::Result<Config> {
        let path = explicit_path
            .map(Path::to_path_buf)
            .or_else(|| env("TENANTRY_CONFIG").map(PathBuf::from));
        let file = match path {
            Some(path) => read_file(&path)?,
            None if Path::new("tenantry.toml").exists() => read_file(Path::new("tenantry.toml"))?,
            None => ConfigFile::default(),
        };
        let data_dir = env("TENANTRY_DATA_DIR")
            .map(PathBuf::from)
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(".tenantry"));
        let data_dir = std::path::absolute(&data_dir)
            .with_context(|| format!("data directory {} is not usable", data_dir.display()))?;
        let registry = match env("TENANTRY_REGISTRY_URL").or(file.registry_url) {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                RegistryLocation::Postgres(url)
            }
            Some(url) if url.starts_with("sqlite://") => {
                RegistryLocation::Sqlite(PathBuf::from(url.trim_start_matches("sqlite://")))
            }
            Some(_) => bail!("the registry URL must start with postgres:// or sqlite://"),
            None => RegistryLocation::Sqlite(data_dir.join("registry.db")),
        };
        let lease_ttl_secs = env_parsed("TENANTRY_LEASE_TTL_SECS")?
            .or(file.lease_ttl_secs)
            .unwrap_or(30);
        if lease_ttl_secs == 0 {
            bail!("the lease TTL must be at least one second");
        }
        let regions = match env("TENANTRY_REGIONS") {
            Some(list) => list
                .split(',')
                .map(|region| region.trim().to_owned())
                .collect(),
            None => file.regions.unwrap_or_else(|| vec!["local".to_owned()]),
        };
        let default_region = env("TENANTRY_DEFAULT_REGION")
            .or(file.default_region)
            .unwrap_or_else(|| regions.first().cloned().unwrap_or_else(|| "local".into()));
        let plans = file.plans.unwrap_or_else(Plan::builtin);
        let providers = tenantry_providers::resources::Providers::standard();
        let kinds = providers.kinds();
        for plan in &plans {
            plan.validate()
                .map_err(|error| anyhow::anyhow!(error.message))?;
            if let Some(unknown) = plan.resources.iter().find(|kind| {
                *kind != tenantry_core::DATABASE_RESOURCE && !kinds.contains(&kind.as_str())
            }) {
                bail!(
                    "plan {:?}: resource kind {unknown:?} is unknown; known kinds: {}",
                    plan.name,
                    std::iter::once(tenantry_core::DATABASE_RESOURCE)
                        .chain(kinds.iter().copied())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            for (kind, quotas) in &plan.quotas {
                if let Some(provider) = providers.get(kind) {
                    provider
                        .check_quotas(quotas)
                        .map_err(|error| anyhow::anyhow!("plan {:?}: {error}", plan.name))?;
                }
            }
        }
        if let Some(duplicate) = plans
            .iter()
            .enumerate()
            .find(|(index, plan)| plans[..*index].iter().any(|other| other.name == plan.name))
        {
            bail!("plan {:?} is defined twice", duplicate.1.name);
        }
        let region_multipliers = match env("TENANTRY_REGION_MULTIPLIERS") {
            Some(list) => parse_multipliers(&list)?,
            None => file.region_multipliers.unwrap_or_default(),
        };
        if let Some((region, _)) = region_multipliers
            .iter()
            .find(|(_, multiplier)| !multiplier.is_finite() || **multiplier < 0.0)
        {
            bail!("the price multiplier of region {region:?} must be a number of at least 0");
        }
        let default_plan = env("TENANTRY_DEFAULT_PLAN")
            .or(file.default_plan)
            .unwrap_or_else(|| {
                plans
                    .first()
                    .map(|plan| plan.name.clone())
                    .unwrap_or_else(|| "starter".into())
            });
        let defaults = RetryPolicy::default();
        let retry = RetryPolicy {
            max_attempts: env_parsed("TENANTRY_RETRY_MAX_ATTEMPTS")?
                .or(file.retry_max_attempts)
                .unwrap_or(defaults.max_attempts)
                .max(1),
            initial_delay: env_parsed("TENANTRY_RETRY_INITIAL_DELAY_MS")?
                .or(file.retry_initial_delay_ms)
                .map(Duration::from_millis)
                .unwrap_or(defaults.initial_delay),
            max_delay: defaults.max_delay,
            max_elapsed: env_parsed("TENANTRY_RETRY_MAX_ELAPSED_SECS")?
                .or(file.retry_max_elapsed_secs)
                .map(Duration::from_secs)
                .unwrap_or(defaults.max_elapsed),
        };
        if !plans.iter().any(|plan| plan.name == default_plan) {
            bail!("the default plan {default_plan:?} is not among the configured plans");
        }
        let is_embedded = matches!(registry, RegistryLocation::Sqlite(_));
        let sqlite_server_roots = match env("TENANTRY_SQLITE_SERVER_ROOTS") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|root| !root.is_empty())
                .map(PathBuf::from)
                .collect(),
            None => file
                .sqlite_server_roots
                .unwrap_or_else(|| vec![data_dir.clone()]),
        };
        let sqlite_server_roots = sqlite_server_roots
            .iter()
            .map(|root| {
                std::path::absolute(root).with_context(|| {
                    format!("sqlite_server_roots: {} is not usable", root.display())
                })
            })
            .collect::<anyhow::Result<Vec<PathBuf>>>()?;
        let backup_dir = std::path::absolute(
            env("TENANTRY_BACKUP_DIR")
                .map(PathBuf::from)
                .or(file.backup_dir)
                .unwrap_or_else(|| data_dir.join("backups")),
        )
        .context("backup_dir is not usable")?;
        Ok(Config {
            data_dir,
            registry,
            lease_ttl: Duration::from_secs(lease_ttl_secs),
            default_plan,
            default_region,
            regions,
            bootstrap_local_server: env_parsed("TENANTRY_BOOTSTRAP_LOCAL_SERVER")?
                .or(file.bootstrap_local_server)
                .unwrap_or(is_embedded),
            tenant_migrations: env("TENANTRY_TENANT_MIGRATIONS")
                .map(PathBuf::from)
                .or(file.tenant_migrations),
            admin_seed: env("TENANTRY_ADMIN_SEED")
                .map(PathBuf::from)
                .or(file.admin_seed),
            purge_min_interval: Duration::from_millis(
                env_parsed("TENANTRY_PURGE_MIN_INTERVAL_MS")?
                    .or(file.purge_min_interval_ms)
                    .unwrap_or(1000),
            ),
            webhook_allow_internal: env_parsed("TENANTRY_WEBHOOK_ALLOW_INTERNAL")?
                .or(file.webhook_allow_internal)
                .unwrap_or(false),
            notify_retry_base: Duration::from_millis(
                env_parsed("TENANTRY_NOTIFY_RETRY_BASE_MS")?
                    .or(file.notify_retry_base_ms)
                    .unwrap_or(1000),
            ),
            notify_max_attempts: env_parsed("TENANTRY_NOTIFY_MAX_ATTEMPTS")?
                .or(file.notify_max_attempts)
                .unwrap_or(8)
                .max(1),
            invitations: invitation_settings(
                env("TENANTRY_INVITATION_URL").or(file.invitation_url),
                env("TENANTRY_INVITATION_BASE_URL").or(file.invitation_base_url),
                env("TENANTRY_INVITATION_TEMPLATE")
                    .map(PathBuf::from)
                    .or(file.invitation_template),
                env("TENANTRY_SMTP_URL").or(file.smtp_url),
                env("TENANTRY_SMTP_FROM").or(file.smtp_from),
            )?,
            retry,
            plans,
            warm_pool_size: env_parsed("TENANTRY_WARM_POOL_SIZE")?
                .or(file.warm_pool_size)
                .unwrap_or(0),
            warm_pool_refill_batch: env_parsed("TENANTRY_WARM_POOL_REFILL_BATCH")?
                .or(file.warm_pool_refill_batch)
                .unwrap_or(2)
                .max(1),
            admin_check: env("TENANTRY_ADMIN_CHECK")
                .map(PathBuf::from)
                .or(file.admin_check),
            auto_approve_threshold: env_parsed("TENANTRY_AUTO_APPROVE_THRESHOLD")?
                .or(file.auto_approve_threshold)
                .unwrap_or(10_000),
            approval_ttl: Duration::from_secs(
                env_parsed("TENANTRY_APPROVAL_TTL_SECS")?
                    .or(file.approval_ttl_secs)
                    .unwrap_or(72 * 3600),
            ),
            currency: env("TENANTRY_CURRENCY")
                .or(file.currency)
                .unwrap_or_else(|| "USD".into()),
            region_multipliers,
            sqlite_server_roots,
            backup_dir,
            pg_bin_dir: env("TENANTRY_PG_BIN_DIR")
                .map(PathBuf::from)
                .or(file.pg_bin_dir),
        })
    }
}

/// The invitation's settings, each checked: a link form with `{token}`, a template that renders, an SMTP URL
/// without a password, a sender that is an address.
fn invitation_settings(
    url: Option<String>,
    base_url: Option<String>,
    template: Option<PathBuf>,
    smtp_url: Option<String>,
    smtp_from: Option<String>,
) -> anyhow::Result<tenantry_workflows::InvitationSettings> {
    let url = match (url, base_url) {
        (Some(url), _) => url,
        // The older key: a base the token is appended to.
        (None, Some(base)) => format!("{base}{{token}}"),
        (None, None) => "https://{slug}.app.example/first-sign-in?token={token}".into(),
    };
    tenantry_workflows::check_url_form(&url).map_err(anyhow::Error::msg)?;
    let mut settings = tenantry_workflows::InvitationSettings::without_email(url);
    if let Some(directory) = template {
        settings.template = std::sync::Arc::new(
            tenantry_workflows::InvitationTemplate::load(&directory).map_err(anyhow::Error::msg)?,
        );
    }
    if let Some(smtp_url) = smtp_url {
        settings.smtp = Some(
            tenantry_providers::mail::SmtpEndpoint::parse(&smtp_url).map_err(anyhow::Error::msg)?,
        );
    }
    if let Some(from) = smtp_from {
        tenantry_providers::mail::check_mailbox(&from)
            .map_err(|error| anyhow::anyhow!("smtp_from: {error}"))?;
        settings.from = from;
    }
    Ok(settings)
}

/// `eu=1.2,us=1` as a map.
fn parse_multipliers(list: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    list.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (region, multiplier) = pair.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("TENANTRY_REGION_MULTIPLIERS: {pair:?} is not region=multiplier")
            })?;
            let multiplier = multiplier.trim().parse::<f64>().map_err(|_| {
                anyhow::anyhow!("TENANTRY_REGION_MULTIPLIERS: {multiplier:?} is not a number")
            })?;
            Ok((region.trim().to_owned(), multiplier))
        })
        .collect()
}

fn read_file(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))
}
