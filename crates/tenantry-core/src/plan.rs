//! Plans (named blueprints of quotas) and the engines a tenant database can live on.

use crate::Error;
use std::collections::BTreeMap;
use std::fmt;

/// The kind of server: one that hosts tenant databases (`postgres`, `sqlite`, `mariadb`) or another kind's resources.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Postgres,
    Sqlite,
    Redis,
    Rabbitmq,
    Powerdns,
    S3,
    Mariadb,
    Kubernetes,
}

impl EngineKind {
    pub const ALL: [EngineKind; 8] = [
        EngineKind::Postgres,
        EngineKind::Sqlite,
        EngineKind::Redis,
        EngineKind::Rabbitmq,
        EngineKind::Powerdns,
        EngineKind::S3,
        EngineKind::Mariadb,
        EngineKind::Kubernetes,
    ];

    pub fn parse(raw: &str) -> Result<EngineKind, Error> {
        match raw {
            "postgres" => Ok(EngineKind::Postgres),
            "sqlite" => Ok(EngineKind::Sqlite),
            "redis" => Ok(EngineKind::Redis),
            "rabbitmq" => Ok(EngineKind::Rabbitmq),
            "powerdns" => Ok(EngineKind::Powerdns),
            "s3" => Ok(EngineKind::S3),
            "mariadb" => Ok(EngineKind::Mariadb),
            "kubernetes" => Ok(EngineKind::Kubernetes),
            other => Err(Error::invalid_input(format!(
                "engine {other:?} is not supported; use postgres, sqlite, mariadb, redis, rabbitmq, powerdns, s3 or kubernetes"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Postgres => "postgres",
            EngineKind::Sqlite => "sqlite",
            EngineKind::Redis => "redis",
            EngineKind::Rabbitmq => "rabbitmq",
            EngineKind::Powerdns => "powerdns",
            EngineKind::S3 => "s3",
            EngineKind::Mariadb => "mariadb",
            EngineKind::Kubernetes => "kubernetes",
        }
    }

    /// The SQL dialect of the tenant schema this engine runs: the name of its directory of migrations and of its
    /// admin seed and check files (`mysql` for MariaDB, whose schema a MySQL would run too).
    pub fn schema_dialect(self) -> &'static str {
        match self {
            EngineKind::Mariadb => "mysql",
            other => other.as_str(),
        }
    }

    /// Whether a tenant's database (the `database` resource) can live on this engine.
    pub fn hosts_databases(self) -> bool {
        matches!(
            self,
            EngineKind::Postgres | EngineKind::Sqlite | EngineKind::Mariadb
        )
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The platform modules a tenant's application offers (seed 000's service selection). The defaults are the
/// wizard's: core, BI and context graph on; ML and the data platform off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Modules {
    pub core: bool,
    pub bi: bool,
    pub ml: bool,
    pub data_platform: bool,
    pub context_graph: bool,
}

impl Default for Modules {
    fn default() -> Self {
        Modules {
            core: true,
            bi: true,
            ml: false,
            data_platform: false,
            context_graph: true,
        }
    }
}

impl Modules {
    /// Each module's name and whether it is on, in a fixed order.
    pub fn entries(&self) -> [(&'static str, bool); 5] {
        [
            ("core", self.core),
            ("bi", self.bi),
            ("ml", self.ml),
            ("data_platform", self.data_platform),
            ("context_graph", self.context_graph),
        ]
    }
}

/// A named blueprint: which engine a tenant gets, its quotas, modules and feature flags, its price, and whether
/// every request for it needs approval.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub name: String,
    /// `None` lets auto-placement pick a server of any engine.
    #[serde(default)]
    pub engine: Option<EngineKind>,
    pub connection_limit: u32,
    pub statement_timeout_ms: u64,
    /// Queries per minute the tenant's application may run (enforced by the application; written to its settings).
    #[serde(default = "default_rate_limit_qpm")]
    pub rate_limit_qpm: u32,
    /// The query latency the validation suite holds the tenant's database to.
    #[serde(default = "default_query_sla_ms")]
    pub query_sla_ms: u64,
    #[serde(default)]
    pub modules: Modules,
    #[serde(default)]
    pub feature_flags: BTreeMap<String, bool>,
    /// The list price per month, before the plan and region multipliers.
    #[serde(default)]
    pub base_monthly_price: f64,
    #[serde(default = "default_multiplier")]
    pub price_multiplier: f64,
    /// Every request for this plan waits for a PLATFORM_ADMIN, whatever its budget.
    #[serde(default)]
    pub approval_required: bool,
    #[serde(default)]
    pub cost_center: String,
    /// The kinds of resource a tenant of this plan gets: `database` always, then others (`cache`, `queue`, …)
    /// in the order they are made.
    #[serde(default = "default_resources")]
    pub resources: Vec<String>,
    /// Each kind's quotas, read by that kind's provider (`[plans.quotas.queue] max_connections = 20`). The
    /// database's quotas are the fields above.
    #[serde(default)]
    pub quotas: BTreeMap<String, serde_json::Value>,
    /// Rotate a tenant's credentials by itself when its last rotation (or, with none, its creation) is this many
    /// days old: `serve` and `worker` submit the rotation. `None`: only when someone asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_days: Option<u32>,
    /// The grace period of those scheduled rotations, in seconds (default 600, at most 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_grace_seconds: Option<u32>,
    /// How many days a backup of a tenant of this plan is kept before `backups prune` deletes it.
    #[serde(default = "default_backup_retention_days")]
    pub backup_retention_days: u32,
    /// Where the tenant's database lives: a database of its own (`database`, the default) or, for a free tier,
    /// a schema and a role in the PostgreSQL server's shared database (`schema`).
    #[serde(default)]
    pub isolation: Isolation,
    /// Tables of the shared database that every schema tenant of this plan uses, each keyed by a `tenant` column
    /// under row-level security (`schema` isolation only; tenantry makes them if missing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_tables: Vec<String>,
}

impl Plan {
    /// Module switches a request may ask for under this plan: known modules only (`E_INVALID_INPUT` naming
    /// them), and on only where the plan has the module on.
    pub fn check_module_switches(&self, switches: &BTreeMap<String, bool>) -> Result<(), Error> {
        let entries = self.modules.entries();
        for (name, on) in switches {
            let Some((_, plan_has_it)) = entries.iter().find(|(known, _)| known == name) else {
                let known: Vec<&str> = entries.iter().map(|(known, _)| *known).collect();
                return Err(Error::invalid_input(format!(
                    "module {name:?} does not exist; known modules: {}",
                    known.join(", ")
                )));
            };
            if *on && !plan_has_it {
                return Err(Error::invalid_input(format!(
                    "plan {:?} does not allow module {name:?}; a plan that has it must be asked for too",
                    self.name
                )));
            }
        }
        Ok(())
    }
}

/// How a tenant's database is isolated from the other tenants on its server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// The tenant's own database and role (DESIGN's naming: `tenant_<slug_>` for both).
    #[default]
    Database,
    /// A schema `tenant_<slug_>` and a role of that name in the server's shared database.
    Schema,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Database => "database",
            Isolation::Schema => "schema",
        }
    }
}

/// Whether `name` can be a shared table's name: lowercase letters, digits and `_`, starting with a letter, at most
/// 63 bytes, and not one tenantry or PostgreSQL keeps for itself (`pg_*`, `tenant_*`, `tenantry*`).
pub fn is_shared_table_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with("pg_")
        && !name.starts_with("tenant")
}

fn default_backup_retention_days() -> u32 {
    30
}

/// The kind of resource every tenant has.
pub const DATABASE_RESOURCE: &str = "database";

fn default_resources() -> Vec<String> {
    vec![DATABASE_RESOURCE.to_owned()]
}

fn default_rate_limit_qpm() -> u32 {
    100
}

fn default_query_sla_ms() -> u64 {
    500
}

fn default_multiplier() -> f64 {
    1.0
}

impl Plan {
    /// Checks what serde cannot: a usable name, positive quotas, prices that are finite and not negative, and
    /// flag names that are safe as settings keys.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid =
            |why: String| Err(Error::invalid_input(format!("plan {:?}: {why}", self.name)));
        let name_ok = (1..=40).contains(&self.name.len())
            && self.name.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !name_ok {
            return invalid("a plan name has 1 to 40 lowercase letters, digits, '-' or '_', starting with a letter".into());
        }
        if self.connection_limit == 0 {
            return invalid("connection_limit must be at least 1".into());
        }
        if self.statement_timeout_ms == 0 {
            return invalid("statement_timeout_ms must be at least 1".into());
        }
        for (field, value) in [
            ("base_monthly_price", self.base_monthly_price),
            ("price_multiplier", self.price_multiplier),
        ] {
            if !value.is_finite() || value < 0.0 {
                return invalid(format!("{field} must be a number of at least 0"));
            }
        }
        if !self.resources.iter().any(|kind| kind == DATABASE_RESOURCE) {
            return invalid(format!(
                "resources must include {DATABASE_RESOURCE:?} (every tenant has its database)"
            ));
        }
        for (index, kind) in self.resources.iter().enumerate() {
            if self.resources[..index].contains(kind) {
                return invalid(format!("resource {kind:?} is listed twice"));
            }
        }
        for kind in self.quotas.keys() {
            if !self.resources.contains(kind) {
                return invalid(format!(
                    "quotas are given for {kind:?}, which is not among its resources"
                ));
            }
        }
        match self.isolation {
            Isolation::Schema if self.engine != Some(EngineKind::Postgres) => {
                return invalid(
                    "isolation \"schema\" places tenants in a PostgreSQL server's shared database: set engine = \"postgres\""
                        .into(),
                )
            }
            Isolation::Database if !self.shared_tables.is_empty() => {
                return invalid("shared_tables needs isolation = \"schema\"".into())
            }
            _ => {}
        }
        for (index, table) in self.shared_tables.iter().enumerate() {
            if !is_shared_table_name(table) {
                return invalid(format!(
                    "shared table {table:?} must have 1 to 63 lowercase letters, digits or '_', start with a letter, \
                     and not start with pg_ or tenant"
                ));
            }
            if self.shared_tables[..index].contains(table) {
                return invalid(format!("shared table {table:?} is listed twice"));
            }
        }
        if self
            .rotation_days
            .is_some_and(|days| !(1..=3650).contains(&days))
        {
            return invalid("rotation_days must be between 1 and 3650".into());
        }
        if self
            .rotation_grace_seconds
            .is_some_and(|seconds| seconds > 7 * 24 * 3600)
        {
            return invalid("rotation_grace_seconds must be at most 604800 (7 days)".into());
        }
        for flag in self.feature_flags.keys() {
            let flag_ok = (1..=64).contains(&flag.len())
                && flag
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !flag_ok {
                return invalid(format!(
                    "feature flag {flag:?} must have 1 to 64 lowercase letters, digits, '_' or '-'"
                ));
            }
        }
        Ok(())
    }

    /// The plans tenantry ships; the config file may replace them. None needs approval on its own: a request
    /// waits only when its budget reaches the approval threshold.
    pub fn builtin() -> Vec<Plan> {
        let flags = |pairs: &[(&str, bool)]| {
            pairs
                .iter()
                .map(|(name, on)| ((*name).to_owned(), *on))
                .collect::<BTreeMap<_, _>>()
        };
        vec![
            Plan {
                name: "starter".into(),
                engine: None,
                connection_limit: 10,
                statement_timeout_ms: 30_000,
                rate_limit_qpm: 100,
                query_sla_ms: 500,
                modules: Modules::default(),
                feature_flags: flags(&[
                    ("advanced_search", false),
                    ("realtime_indexing", false),
                    ("custom_models", false),
                ]),
                resources: default_resources(),
                quotas: BTreeMap::new(),
                rotation_days: None,
                rotation_grace_seconds: None,
                backup_retention_days: default_backup_retention_days(),
                isolation: Isolation::Database,
                shared_tables: Vec::new(),
                base_monthly_price: 49.0,
                price_multiplier: 1.0,
                approval_required: false,
                cost_center: "self-serve".into(),
            },
            Plan {
                name: "professional".into(),
                engine: None,
                connection_limit: 50,
                statement_timeout_ms: 60_000,
                rate_limit_qpm: 500,
                query_sla_ms: 500,
                modules: Modules::default(),
                feature_flags: flags(&[
                    ("advanced_search", false),
                    ("realtime_indexing", true),
                    ("custom_models", false),
                ]),
                resources: default_resources(),
                quotas: BTreeMap::new(),
                rotation_days: None,
                rotation_grace_seconds: None,
                backup_retention_days: default_backup_retention_days(),
                isolation: Isolation::Database,
                shared_tables: Vec::new(),
                base_monthly_price: 49.0,
                price_multiplier: 2.0,
                approval_required: false,
                cost_center: "growth".into(),
            },
            Plan {
                name: "enterprise".into(),
                engine: None,
                connection_limit: 200,
                statement_timeout_ms: 120_000,
                rate_limit_qpm: 1000,
                query_sla_ms: 500,
                modules: Modules {
                    ml: true,
                    data_platform: true,
                    ..Modules::default()
                },
                feature_flags: flags(&[
                    ("advanced_search", true),
                    ("realtime_indexing", true),
                    ("custom_models", true),
                ]),
                resources: default_resources(),
                quotas: BTreeMap::new(),
                rotation_days: None,
                rotation_grace_seconds: None,
                backup_retention_days: default_backup_retention_days(),
                isolation: Isolation::Database,
                shared_tables: Vec::new(),
                base_monthly_price: 49.0,
                price_multiplier: 3.0,
                approval_required: false,
                cost_center: "enterprise".into(),
            },
        ]
    }
}

/// The largest budget: the API document declares budgets as int64, and clients that believe it cannot hold more.
pub const MAX_BUDGET: u64 = i64::MAX as u64;

/// A budget as the API document declares it (an int64 of at least 0), or `E_INVALID_INPUT`; the CLI takes budgets
/// by the same rule.
pub fn checked_budget(budget: Option<u64>) -> crate::Result<Option<u64>> {
    match budget {
        Some(budget) if budget > MAX_BUDGET => Err(crate::Error::invalid_input(format!(
            "budget {budget} is above the largest allowed, {MAX_BUDGET}"
        ))),
        budget => Ok(budget),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_plans_are_valid_and_keep_seed_module_defaults() {
        for plan in Plan::builtin() {
            plan.validate().unwrap();
            assert!(!plan.approval_required, "{}", plan.name);
        }
        let defaults = Modules::default();
        assert!(defaults.core && defaults.bi && defaults.context_graph);
        assert!(!defaults.ml && !defaults.data_platform);
    }

    #[test]
    fn bad_plans_are_refused_with_the_field_named() {
        let mut plan = Plan::builtin().remove(0);
        plan.price_multiplier = f64::NAN;
        assert!(plan
            .validate()
            .unwrap_err()
            .message
            .contains("price_multiplier"));
        let mut plan = Plan::builtin().remove(0);
        plan.feature_flags.insert("Bad Flag".into(), true);
        assert!(plan.validate().unwrap_err().message.contains("Bad Flag"));
        let mut plan = Plan::builtin().remove(0);
        plan.name = "Gold Tier".into();
        assert!(plan.validate().is_err());
        let mut plan = Plan::builtin().remove(0);
        plan.isolation = Isolation::Schema;
        assert!(plan.validate().unwrap_err().message.contains("engine"));
        plan.engine = Some(EngineKind::Postgres);
        plan.validate().unwrap();
        plan.shared_tables = vec!["documents".into(), "pg_class".into()];
        assert!(plan.validate().unwrap_err().message.contains("pg_class"));
        plan.shared_tables = vec!["documents".into(), "documents".into()];
        assert!(plan.validate().unwrap_err().message.contains("twice"));
        let mut plan = Plan::builtin().remove(0);
        plan.shared_tables = vec!["documents".into()];
        assert!(plan.validate().unwrap_err().message.contains("isolation"));
    }
}
