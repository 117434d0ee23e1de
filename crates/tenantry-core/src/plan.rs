//! Plans (named blueprints of quotas) and the engines a tenant database can live on.

use crate::Error;
use std::fmt;

/// The kind of server that hosts a tenant's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Postgres,
    Sqlite,
}

impl EngineKind {
    pub fn parse(raw: &str) -> Result<EngineKind, Error> {
        match raw {
            "postgres" => Ok(EngineKind::Postgres),
            "sqlite" => Ok(EngineKind::Sqlite),
            other => Err(Error::invalid_input(format!(
                "engine {other:?} is not supported; use postgres or sqlite"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Postgres => "postgres",
            EngineKind::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A named blueprint: which engine a tenant gets and its quotas.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub name: String,
    /// `None` lets auto-placement pick a server of any engine.
    #[serde(default)]
    pub engine: Option<EngineKind>,
    pub connection_limit: u32,
    pub statement_timeout_ms: u64,
    #[serde(default)]
    pub cost_center: String,
}

impl Plan {
    /// The plans tenantry ships; the config file may replace them.
    pub fn builtin() -> Vec<Plan> {
        vec![
            Plan {
                name: "starter".into(),
                engine: None,
                connection_limit: 10,
                statement_timeout_ms: 30_000,
                cost_center: "self-serve".into(),
            },
            Plan {
                name: "professional".into(),
                engine: None,
                connection_limit: 50,
                statement_timeout_ms: 60_000,
                cost_center: "growth".into(),
            },
            Plan {
                name: "enterprise".into(),
                engine: None,
                connection_limit: 200,
                statement_timeout_ms: 120_000,
                cost_center: "enterprise".into(),
            },
        ]
    }
}
