//! Wiring: from a validated [`Config`] to a ready [`Platform`] and [`Runner`], plus the embedded defaults
//! (the bundled tenant schema, the `local` SQLite server).

use crate::config::Config;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tenantry_core::{EngineKind, Error as CodedError, ErrorCode};
use tenantry_engine::{process_owner_id, Runner};
use tenantry_providers::credentials::SecretString;
use tenantry_providers::secrets::{LocalSecretStore, MasterKey, MasterKeyCheck, SecretStore};
use tenantry_registry::{NewServer, Registry, RegistryLocation};
use tenantry_workflows::{
    admin_secret_name, ApprovalSettings, BackupSettings, NotificationSettings, Platform,
    PricingSettings, Settings, TenantSchema, WarmPoolSettings,
};

/// The example tenant schema, compiled in so that a fresh clone (or a copied binary) works with no set-up.
const BUNDLED_SCHEMA: &[(&str, &str)] = &[
    (
        "migrations/postgres/0001_core.sql",
        include_str!("../../../tenant-schema/migrations/postgres/0001_core.sql"),
    ),
    (
        "migrations/postgres/0002_settings.sql",
        include_str!("../../../tenant-schema/migrations/postgres/0002_settings.sql"),
    ),
    (
        "migrations/sqlite/0001_core.sql",
        include_str!("../../../tenant-schema/migrations/sqlite/0001_core.sql"),
    ),
    (
        "migrations/sqlite/0002_settings.sql",
        include_str!("../../../tenant-schema/migrations/sqlite/0002_settings.sql"),
    ),
    (
        "admin-seed/postgres.sql",
        include_str!("../../../tenant-schema/admin-seed/postgres.sql"),
    ),
    (
        "admin-seed/sqlite.sql",
        include_str!("../../../tenant-schema/admin-seed/sqlite.sql"),
    ),
    (
        "admin-check/postgres.sql",
        include_str!("../../../tenant-schema/admin-check/postgres.sql"),
    ),
    (
        "admin-check/sqlite.sql",
        include_str!("../../../tenant-schema/admin-check/sqlite.sql"),
    ),
    (
        "migrations/mysql/0001_core.sql",
        include_str!("../../../tenant-schema/migrations/mysql/0001_core.sql"),
    ),
    (
        "migrations/mysql/0002_settings.sql",
        include_str!("../../../tenant-schema/migrations/mysql/0002_settings.sql"),
    ),
    (
        "admin-seed/mysql.sql",
        include_str!("../../../tenant-schema/admin-seed/mysql.sql"),
    ),
    (
        "admin-check/mysql.sql",
        include_str!("../../../tenant-schema/admin-check/mysql.sql"),
    ),
];

/// Who the CLI acts as: `os:<user>`. The user is `USER` (or `LOGNAME`), as the shell says; without either (cron,
/// systemd units, containers), the name the OS user database gives the effective uid; `uid-<n>` only when it has none.
pub fn cli_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|user| !user.is_empty())
        .or_else(|| {
            whoami::fallible::username()
                .ok()
                .filter(|user| !user.is_empty())
        })
        .or_else(|| {
            let status = std::fs::read_to_string("/proc/self/status").ok()?;
            let uid = status.lines().find_map(|line| line.strip_prefix("Uid:"))?;
            Some(format!("uid-{}", uid.split_whitespace().nth(1)?))
        })
        .unwrap_or_else(|| "unknown".into());
    format!("os:{user}")
}

/// A connected control plane.
pub struct App {
    pub config: Config,
    pub platform: Platform,
}

impl App {
    pub async fn open(config: Config) -> Result<App, CodedError> {
        let unavailable =
            |message: String| CodedError::new(ErrorCode::ProvisioningUnavailable, message);
        create_private_dir(&config.data_dir).map_err(|error| {
            unavailable(format!(
                "cannot create the data directory {}: {error}",
                config.data_dir.display()
            ))
        })?;
        let registry = Registry::open(&config.registry, 8)
            .await
            .map_err(|error| match error {
                tenantry_registry::Error::NotARegistry(message) => {
                    CodedError::new(ErrorCode::RegistryUnreadable, message)
                }
                other => unavailable(format!("cannot open the registry: {other}")),
            })?;
        let master_key = match std::env::var("TENANTRY_MASTER_KEY")
            .ok()
            .filter(|key| !key.is_empty())
        {
            Some(encoded) => MasterKey::from_base64(&encoded),
            None => MasterKey::load_or_create(&config.data_dir.join("master.key")),
        }
        .map_err(|error| unavailable(format!("cannot load the master key: {error}")))?;
        let local_secrets = LocalSecretStore::new(registry.clone(), master_key);
        // A wrong key would otherwise be found only by a job, half-way, as an admin connection it cannot read.
        match local_secrets
            .check_master_key()
            .await
            .map_err(|error| unavailable(format!("cannot check the master key: {error}")))?
        {
            MasterKeyCheck::Opens => {}
            MasterKeyCheck::DoesNotOpen(detail) => {
                return Err(CodedError::new(ErrorCode::MasterKeyMismatch, detail))
            }
        }
        let secrets: Arc<dyn SecretStore> = Arc::new(local_secrets);
        let tenant_schema =
            resolve_tenant_schema(&config).map_err(|error| unavailable(format!("{error:#}")))?;
        let settings = Settings {
            plans: config.plans.clone(),
            regions: config.regions.clone(),
            default_plan: config.default_plan.clone(),
            default_region: config.default_region.clone(),
            tenant_schema,
            invitations: config.invitations.clone(),
            purge_min_interval: config.purge_min_interval,
            notifications: NotificationSettings {
                allow_internal: config.webhook_allow_internal,
                retry_base: config.notify_retry_base,
                max_attempts: config.notify_max_attempts,
            },
            warm_pool: WarmPoolSettings {
                size: config.warm_pool_size,
                refill_batch: config.warm_pool_refill_batch,
            },
            approvals: ApprovalSettings {
                auto_approve_threshold: config.auto_approve_threshold,
                ttl: config.approval_ttl,
            },
            pricing: PricingSettings {
                currency: config.currency.clone(),
                region_multipliers: config.region_multipliers.clone(),
            },
            registry_postgres_url: match &config.registry {
                RegistryLocation::Postgres(url) => Some(SecretString::new(url.clone())),
                RegistryLocation::Sqlite(_) => None,
            },
            sqlite_server_roots: config.sqlite_server_roots.clone(),
            backups: BackupSettings {
                directory: config.backup_dir.clone(),
                pg_bin_dir: config.pg_bin_dir.clone(),
            },
        };
        let app = App {
            platform: Platform {
                registry,
                secrets,
                settings: Arc::new(settings),
                providers: tenantry_providers::resources::Providers::standard(),
                sessions: tenantry_providers::engines::Sessions::new(),
                outbox_wake: Arc::new(tokio::sync::Notify::new()),
            },
            config,
        };
        if app.config.bootstrap_local_server {
            app.bootstrap_local_server().await?;
        }
        Ok(app)
    }

    pub fn runner(&self) -> Runner {
        Runner::new(
            self.platform.registry.clone(),
            process_owner_id(),
            self.config.lease_ttl,
            self.config.retry.clone(),
        )
    }

    /// On an empty fleet, registers the embedded default server: SQLite files under `<data dir>/tenants`.
    async fn bootstrap_local_server(&self) -> Result<(), CodedError> {
        let registry = &self.platform.registry;
        let servers = registry
            .list_servers()
            .await
            .map_err(tenantry_workflows::registry_error)?;
        if !servers.is_empty() {
            return Ok(());
        }
        let directory = self.config.data_dir.join("tenants");
        let admin_url = SecretString::new(format!("sqlite://{}", directory.display()));
        self.platform
            .secrets
            .put(&admin_secret_name("local"), &admin_url)
            .await
            .map_err(|error| {
                CodedError::new(ErrorCode::ProvisioningUnavailable, error.to_string())
            })?;
        let added = registry
            .add_server(
                &NewServer {
                    name: "local".into(),
                    engine: EngineKind::Sqlite,
                    region: self.config.default_region.clone(),
                    admin_secret_ref: admin_secret_name("local"),
                    capacity_hint: 1000,
                    public_url: None,
                },
                "system:bootstrap",
            )
            .await;
        match added {
            // Another process bootstrapped at the same moment: same result.
            Ok(_) | Err(tenantry_registry::Error::Conflict { .. }) => Ok(()),
            Err(error) => Err(tenantry_workflows::registry_error(error)),
        }
    }
}

/// Creates the data directory readable by its owner only: it holds the registry and the master key.
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
    {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// The operator's schema if configured; otherwise the bundled one, written into the data directory once.
fn resolve_tenant_schema(config: &Config) -> anyhow::Result<TenantSchema> {
    let bundled_root = config.data_dir.join("tenant-schema");
    let needs_bundled = config.tenant_migrations.is_none() || config.admin_seed.is_none();
    if needs_bundled {
        write_bundled_schema(&bundled_root)?;
    }
    Ok(TenantSchema {
        migrations: config
            .tenant_migrations
            .clone()
            .unwrap_or_else(|| bundled_root.join("migrations")),
        admin_seed: config
            .admin_seed
            .clone()
            .unwrap_or_else(|| bundled_root.join("admin-seed")),
        // The bundled check matches the bundled seed; an operator's own seed needs its own check.
        admin_check: config.admin_check.clone().or_else(|| {
            config
                .admin_seed
                .is_none()
                .then(|| bundled_root.join("admin-check"))
        }),
    })
}

fn write_bundled_schema(root: &Path) -> anyhow::Result<()> {
    for (relative, contents) in BUNDLED_SCHEMA {
        let path: PathBuf = root.join(relative);
        if path.exists() {
            continue;
        }
        let parent = path.parent().unwrap_or(root);
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        // Write then rename, so a process starting at the same moment never reads half a file.
        let temporary = path.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&temporary, contents)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, &path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
