//! Fleet migrations: the tenant schema's new migrations reach every tenant database as one durable rollout job
//! with one child record per tenant: a canary wave, then waves in order, bounded overall and per server, stopped
//! by a failure budget, paused, resumed or aborted by an operator. Any worker may migrate a child: children are
//! claimed with leases and fenced like jobs, and each tenant's migrations run in its own transactions under
//! sqlx's lock on that database, so a crash anywhere migrates no tenant twice.

use crate::phases::{phases, unknown_phase};
use crate::platform::Platform;
use crate::registry_error;
use futures_util::stream::{self, StreamExt};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantry_core::{EngineKind, Error as CodedError, ErrorCode, JobStatus, Slug, TenantStatus};
use tenantry_engine::{owner_is_dead_local_process, JobContext, PhaseError, Workflow};
use tenantry_providers::engines::{SchemaStanding, SchemaVersion, TenantServer};
use tenantry_registry::{
    ChildOutcomeRecord, ClaimBounds, ClaimedChild, JobRecord, NewAuditEvent, NewRollout,
    NewRolloutChild, TenantRecord, WaveCounts, CHILD_APPLIED, CHILD_FAILED, CHILD_PENDING,
    CHILD_SKIPPED, ROLLOUT_ABORTED, ROLLOUT_PAUSED,
};
use tokio::sync::Mutex;

phases! {
    /// The phases of a rollout.
    enum RolloutPhase {
        RequestValidated = "request_validated",
        TenantsListed = "tenants_listed",
        CanaryMigrated = "canary_migrated",
        WavesMigrated = "waves_migrated",
        PoolRefreshed = "pool_refreshed",
        Complete = "complete",
    }
}

/// The phases of a rollout. Their names are API.
pub const ROLLOUT_PHASES: [&str; 6] = RolloutPhase::names(RolloutPhase::ALL);

/// What a rollout job is recorded under in place of a tenant: not a slug, so one rollout runs at a time.
pub const ROLLOUT_SUBJECT: &str = "*rollout";

/// How many tenant databases are read at once for a plan.
const PLAN_CONCURRENCY: usize = 16;
/// How often a rollout's coordinator looks at its children while other workers hold some, or while paused.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// How often the coordinator writes the waves' counts to the job (each write is an event for live views).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// How the tenants after the canary are cut into waves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Waves {
    /// Waves of this many tenants each.
    Size(usize),
    /// Waves ending at these cumulative percentages of the tenants (the last is 100).
    Percents(Vec<u32>),
}

/// A rollout as an operator asks for it (CLI flags, the API's body); [`RolloutOptions::validate`] checks it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutOptions {
    /// How many tenants the canary wave takes (1 unless `canary_tenants` names them).
    pub canary: Option<usize>,
    /// The canary's tenants by slug.
    #[serde(default)]
    pub canary_tenants: Vec<String>,
    /// Waves of this many tenants.
    pub wave_size: Option<usize>,
    /// Waves ending at these cumulative percentages, e.g. `["10%", "50%", "100%"]`.
    #[serde(default)]
    pub waves: Vec<String>,
    /// Tenants migrated at once across every worker (default 8).
    pub concurrency: Option<usize>,
    /// Tenants migrated at once on one server (default: the concurrency).
    pub per_server: Option<usize>,
    /// The rollout stops once this many tenants failed (default 1).
    pub max_failures: Option<usize>,
    /// Leave out tenants whose records differ from the files (edited, unknown or failed migrations) instead of
    /// refusing the rollout.
    #[serde(default)]
    pub skip_drifted: bool,
}

/// A rollout's parameters as its job records them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    /// The tenant schema's hash per engine when the rollout was asked for: it runs those files and no others.
    pub schemas: BTreeMap<String, String>,
    pub canary: usize,
    pub canary_tenants: Vec<String>,
    pub waves: Waves,
    pub concurrency: usize,
    pub per_server: usize,
    pub max_failures: usize,
    pub skip_drifted: bool,
}

/// The most tenants a rollout migrates at once.
pub const MAX_CONCURRENCY: usize = 256;

impl RolloutOptions {
    /// Checks the options (`E_INVALID_INPUT` with what is wrong) and fills in the defaults.
    pub fn validate(self) -> Result<RolloutRequest, CodedError> {
        let invalid = |message: String| Err(CodedError::invalid_input(message));
        if self.canary.is_some() && !self.canary_tenants.is_empty() {
            return invalid("give --canary or --canary-tenants, not both".into());
        }
        if self.wave_size.is_some() && !self.waves.is_empty() {
            return invalid("give --wave-size or --waves, not both".into());
        }
        let mut canary_tenants = Vec::new();
        for slug in &self.canary_tenants {
            canary_tenants.push(Slug::parse(slug.trim())?.as_str().to_owned());
        }
        let waves = match (self.wave_size, self.waves.is_empty()) {
            (Some(0), _) => return invalid("--wave-size must be at least 1".into()),
            (Some(size), _) => Waves::Size(size),
            (None, true) => Waves::Percents(vec![100]),
            (None, false) => Waves::Percents(parse_percents(&self.waves)?),
        };
        let concurrency = self.concurrency.unwrap_or(8);
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            return invalid(format!(
                "--concurrency must be between 1 and {MAX_CONCURRENCY}"
            ));
        }
        let per_server = self.per_server.unwrap_or(concurrency);
        if per_server == 0 {
            return invalid("--per-server must be at least 1".into());
        }
        let max_failures = self.max_failures.unwrap_or(1);
        if max_failures == 0 {
            return invalid("--max-failures must be at least 1".into());
        }
        Ok(RolloutRequest {
            schemas: BTreeMap::new(),
            canary: match self.canary {
                Some(canary) => canary,
                None if canary_tenants.is_empty() => 1,
                None => 0,
            },
            canary_tenants,
            waves,
            concurrency,
            per_server: per_server.min(concurrency),
            max_failures,
            skip_drifted: self.skip_drifted,
        })
    }
}

/// `10%,50%,100%`: strictly rising, each 1..=100, ending at 100.
fn parse_percents(waves: &[String]) -> Result<Vec<u32>, CodedError> {
    let mut percents = Vec::new();
    for wave in waves.iter().flat_map(|wave| wave.split(',')) {
        let text = wave.trim();
        let number = text.strip_suffix('%').unwrap_or(text);
        let percent: u32 = number.parse().map_err(|_| {
            CodedError::invalid_input(format!(
                "wave {text:?} is not a percentage (e.g. --waves 10%,50%,100%)"
            ))
        })?;
        if percent == 0 || percent > 100 || percents.last().is_some_and(|last| *last >= percent) {
            return Err(CodedError::invalid_input(
                "waves are rising percentages between 1% and 100% (e.g. --waves 10%,50%,100%)",
            ));
        }
        percents.push(percent);
    }
    if percents.last() != Some(&100) {
        return Err(CodedError::invalid_input(
            "the last wave must be 100%, so every tenant is in one",
        ));
    }
    Ok(percents)
}

/// A registered tenant against the tenant schema's files.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantSchemaState {
    pub slug: String,
    pub server: String,
    pub engine: EngineKind,
    pub tenant_status: TenantStatus,
    /// One word: `latest`, `pending`, `edited`, `unknown`, `failed`; `unreachable` when its records could not be
    /// read; `not_migrated` for a tenant whose login is off (suspended, offboarded).
    pub state: String,
    #[serde(flatten)]
    pub standing: SchemaStanding,
    /// Why the records could not be read, or what differs from the files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Every registered tenant's schema state, and the count per state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SchemaPlan {
    /// The latest version in the files, per engine.
    pub latest: BTreeMap<String, i64>,
    pub counts: BTreeMap<String, usize>,
    pub tenants: Vec<TenantSchemaState>,
}

/// The tenant schema's files per engine, read now.
pub(crate) async fn current_schemas(
    platform: &Platform,
) -> Result<BTreeMap<EngineKind, SchemaVersion>, CodedError> {
    let mut schemas = BTreeMap::new();
    for engine in [EngineKind::Postgres, EngineKind::Sqlite] {
        schemas.insert(engine, platform.schema_version(engine).await?);
    }
    // An operator's schema without a `mysql/` directory serves no MariaDB tenant: its absence is no error for
    // the others (a MariaDB tenant's state then says so).
    if let Ok(schema) = platform.schema_version(EngineKind::Mariadb).await {
        schemas.insert(EngineKind::Mariadb, schema);
    }
    Ok(schemas)
}

/// The tenant servers of the fleet, made once per server and shared by everything a plan or rollout reads.
#[derive(Clone)]
pub(crate) struct ServerCache {
    platform: Platform,
    servers: Arc<Mutex<BTreeMap<String, TenantServer>>>,
}

impl ServerCache {
    pub(crate) fn new(platform: &Platform) -> ServerCache {
        ServerCache {
            platform: platform.clone(),
            servers: Arc::default(),
        }
    }

    async fn get(&self, name: &str) -> Result<TenantServer, CodedError> {
        let mut servers = self.servers.lock().await;
        if let Some(server) = servers.get(name) {
            return Ok(server.clone());
        }
        let record = self
            .platform
            .registry
            .get_server(name)
            .await
            .map_err(registry_error)?;
        let server = self.platform.tenant_server(&record).await?;
        servers.insert(name.to_owned(), server.clone());
        Ok(server)
    }
}

/// Reads one tenant's migration records as the tenant.
async fn read_state(
    platform: &Platform,
    servers: &ServerCache,
    schemas: &BTreeMap<EngineKind, SchemaVersion>,
    tenant: TenantRecord,
    engine: EngineKind,
) -> TenantSchemaState {
    let mut state = TenantSchemaState {
        slug: tenant.slug.clone(),
        server: tenant.server_name.clone(),
        engine,
        tenant_status: tenant.status,
        state: String::new(),
        standing: SchemaStanding::default(),
        detail: None,
    };
    if tenant.status != TenantStatus::Active {
        state.state = "not_migrated".into();
        state.detail = Some(format!(
            "tenant is {}: its login is off, so it is migrated when it is active again",
            tenant.status
        ));
        return state;
    }
    let read = async {
        let server = servers.get(&tenant.server_name).await?;
        let url = platform
            .secrets
            .get(&tenant.secret_ref)
            .await
            .map_err(|error| {
                CodedError::new(ErrorCode::ProvisioningUnavailable, error.to_string())
            })?
            .ok_or_else(|| {
                CodedError::new(
                    ErrorCode::PartialState,
                    format!("secret {} is missing", tenant.secret_ref),
                )
            })?;
        server
            .applied_migrations(&url)
            .await
            .map_err(|error| CodedError::new(ErrorCode::AdminConnUnresolved, error.to_string()))
    };
    match (read.await, schemas.get(&engine)) {
        (Ok(applied), Some(schema)) => {
            state.standing = schema.standing(&applied);
            state.state = state.standing.state().to_owned();
            if state.standing.drifted() {
                state.detail = Some(state.standing.drift_description());
            }
        }
        (Ok(_), None) => {
            state.state = "unreachable".into();
            state.detail = Some(format!("no tenant schema for engine {engine}"));
        }
        (Err(error), _) => {
            state.state = "unreachable".into();
            state.detail = Some(error.message);
        }
    }
    state
}

/// Every registered tenant's schema state (of `slug` alone if given), read as each tenant, 16 at once.
pub async fn schema_plan(
    platform: &Platform,
    slug: Option<&str>,
) -> Result<SchemaPlan, CodedError> {
    schema_plan_at(platform, slug, PLAN_CONCURRENCY).await
}

/// [`schema_plan`] with at most `concurrency` tenant databases open at once (a rollout reads at its own bound).
pub(crate) async fn schema_plan_at(
    platform: &Platform,
    slug: Option<&str>,
    concurrency: usize,
) -> Result<SchemaPlan, CodedError> {
    let schemas = current_schemas(platform).await?;
    let servers = ServerCache::new(platform);
    let engines: BTreeMap<String, EngineKind> = platform
        .registry
        .list_servers()
        .await
        .map_err(registry_error)?
        .into_iter()
        .map(|server| (server.name, server.engine))
        .collect();
    let tenants: Vec<TenantRecord> = match slug {
        Some(slug) => platform
            .registry
            .get_tenant(slug)
            .await
            .map_err(registry_error)?
            .into_iter()
            .collect(),
        None => platform
            .registry
            .list_tenants(None, None, i64::MAX, 0)
            .await
            .map_err(registry_error)?,
    };
    let mut states: Vec<TenantSchemaState> = stream::iter(
        tenants
            .into_iter()
            // Tenants being provisioned get the latest version from their own job; failed ones have nothing to
            // migrate; offboarded ones are gone but for their retention.
            .filter(|tenant| {
                matches!(
                    tenant.status,
                    TenantStatus::Active | TenantStatus::Suspended
                )
            })
            .filter_map(|tenant| {
                let engine = *engines.get(&tenant.server_name)?;
                engine.hosts_databases().then_some((tenant, engine))
            }),
    )
    .map(|(tenant, engine)| read_state(platform, &servers, &schemas, tenant, engine))
    .buffer_unordered(concurrency.max(1))
    .collect()
    .await;
    states.sort_by(|a, b| a.slug.cmp(&b.slug));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for state in &states {
        *counts.entry(state.state.clone()).or_default() += 1;
    }
    Ok(SchemaPlan {
        latest: schemas
            .iter()
            .map(|(engine, schema)| (engine.to_string(), schema.latest))
            .collect(),
        counts,
        tenants: states,
    })
}

/// Which tenants a rollout migrates in which wave (0: the canary), and which it leaves out and why.
pub fn assign_waves(request: &RolloutRequest, plan: &SchemaPlan) -> Vec<NewRolloutChild> {
    let child =
        |state: &TenantSchemaState, wave: i64, status: &'static str, note: Option<String>| {
            NewRolloutChild {
                tenant_slug: state.slug.clone(),
                server_name: state.server.clone(),
                wave,
                status,
                pending_versions: state.standing.pending.clone(),
                note,
            }
        };
    let to_migrate: Vec<&TenantSchemaState> = plan
        .tenants
        .iter()
        .filter(|state| matches!(state.state.as_str(), "pending" | "unreachable"))
        .collect();
    let named: BTreeSet<&str> = request.canary_tenants.iter().map(String::as_str).collect();
    let (canary, rest): (Vec<&TenantSchemaState>, Vec<&TenantSchemaState>) = if named.is_empty() {
        let n_canary = request.canary.min(to_migrate.len());
        (
            to_migrate[..n_canary].to_vec(),
            to_migrate[n_canary..].to_vec(),
        )
    } else {
        to_migrate
            .iter()
            .partition(|state| named.contains(state.slug.as_str()))
    };
    let mut children: Vec<NewRolloutChild> = canary
        .iter()
        .map(|state| child(state, 0, CHILD_PENDING, None))
        .collect();
    let bounds: Vec<usize> = match &request.waves {
        Waves::Size(size) => (1..=rest.len().div_ceil(*size))
            .map(|wave| (wave * size).min(rest.len()))
            .collect(),
        Waves::Percents(percents) => percents
            .iter()
            .map(|percent| (rest.len() * *percent as usize).div_ceil(100))
            .collect(),
    };
    let mut start = 0;
    let mut wave = 0;
    for end in bounds {
        if end > start {
            wave += 1;
            children.extend(
                rest[start..end]
                    .iter()
                    .map(|state| child(state, wave, CHILD_PENDING, None)),
            );
            start = end;
        }
    }
    let last_wave = wave.max(1);
    for state in &plan.tenants {
        let note = match state.state.as_str() {
            "pending" | "unreachable" => continue,
            "latest" => format!("already at version {}", state.standing.version),
            _ => state.detail.clone().unwrap_or_else(|| state.state.clone()),
        };
        children.push(child(state, last_wave, CHILD_SKIPPED, Some(note)));
    }
    children
}

/// Refuses a rollout over tenants whose records differ from the files, unless the operator said to skip them.
pub fn refuse_drift(request: &RolloutRequest, plan: &SchemaPlan) -> Result<(), CodedError> {
    let drifted: Vec<String> = plan
        .tenants
        .iter()
        .filter(|state| state.standing.drifted())
        .map(|state| {
            format!(
                "{}: {}",
                state.slug,
                state.detail.clone().unwrap_or_default()
            )
        })
        .collect();
    if drifted.is_empty() || request.skip_drifted {
        return Ok(());
    }
    let shown = drifted
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    let more = drifted.len().saturating_sub(5);
    Err(CodedError::new(
        ErrorCode::MigrationDrift,
        format!(
            "{} tenant(s) record migrations that differ from the files ({shown}{}); restore the files, or pass --skip-drifted to leave them out",
            drifted.len(),
            if more > 0 { format!("; and {more} more") } else { String::new() }
        ),
    ))
}

/// The hash of each engine's tenant schema, as a request records them.
pub(crate) fn schema_hashes(
    schemas: &BTreeMap<EngineKind, SchemaVersion>,
) -> BTreeMap<String, String> {
    schemas
        .iter()
        .map(|(engine, schema)| (engine.to_string(), schema.hash.clone()))
        .collect()
}

/// What one worker needs to migrate children: the files the rollout runs, and the servers.
#[derive(Clone)]
pub(crate) struct ChildMigrator {
    platform: Platform,
    schemas: Arc<BTreeMap<EngineKind, SchemaVersion>>,
    servers: ServerCache,
}

/// How a child ended.
struct ChildOutcome {
    status: &'static str,
    versions_applied: Vec<i64>,
    error: Option<String>,
}

impl ChildMigrator {
    /// The migrator for a rollout, refusing when the files on disk are no longer the ones it was asked for.
    pub(crate) async fn for_rollout(
        platform: &Platform,
        expected: &BTreeMap<String, String>,
    ) -> Result<ChildMigrator, CodedError> {
        let schemas = current_schemas(platform).await?;
        let found = schema_hashes(&schemas);
        if &found != expected {
            return Err(CodedError::new(
                ErrorCode::Conflict,
                "the tenant schema's files changed since this rollout was asked for; abort it and start a new one",
            ));
        }
        Ok(ChildMigrator {
            platform: platform.clone(),
            schemas: Arc::new(schemas),
            servers: ServerCache::new(platform),
        })
    }

    async fn migrate(&self, child: &ClaimedChild) -> ChildOutcome {
        let failed = |error: String| ChildOutcome {
            status: CHILD_FAILED,
            versions_applied: Vec::new(),
            error: Some(error),
        };
        let tenant = match self.platform.registry.get_tenant(&child.tenant_slug).await {
            Ok(Some(tenant)) if tenant.status == TenantStatus::Active => tenant,
            // Offboarded, suspended or purged since the rollout listed it: nothing to migrate, no failure.
            Ok(gone) => {
                return ChildOutcome {
                    status: CHILD_SKIPPED,
                    versions_applied: Vec::new(),
                    error: Some(match gone {
                        Some(tenant) => {
                            format!("tenant is {} since the rollout listed it", tenant.status)
                        }
                        None => "tenant was removed since the rollout listed it".to_owned(),
                    }),
                }
            }
            Err(error) => return failed(error.to_string()),
        };
        let prepared = async {
            let server = self
                .servers
                .get(&child.server_name)
                .await
                .map_err(|error| error.message)?;
            let schema = self
                .schemas
                .get(&server.engine())
                .ok_or_else(|| format!("no tenant schema for engine {}", server.engine()))?;
            let url = self
                .platform
                .secrets
                .get(&tenant.secret_ref)
                .await
                .map_err(|error| format!("secret store: {error}"))?
                .ok_or_else(|| format!("secret {} is missing", tenant.secret_ref))?;
            Ok::<_, String>((server, schema, url))
        };
        let (server, schema, url) = match prepared.await {
            Ok(prepared) => prepared,
            Err(error) => return failed(error),
        };
        if let Err(fired) = tenantry_core::failpoints::check("rollout_tenant", "before").await {
            return failed(fired.to_string());
        }
        let (migrated, applied) = match server.migrate_tenant(&url, schema).await {
            Ok(outcome) => outcome,
            Err(error) => return failed(error.to_string()),
        };
        if let Err(fired) = tenantry_core::failpoints::check("rollout_tenant", "after").await {
            return failed(fired.to_string());
        }
        let recorded: BTreeSet<i64> = applied
            .iter()
            .filter(|migration| migration.success)
            .map(|migration| migration.version)
            .collect();
        // What this rollout brought: the versions it found missing that the database now records. A second
        // attempt after a crash finds the first attempt's work recorded and applies nothing again.
        let versions_applied: Vec<i64> = child
            .pending_versions
            .iter()
            .filter(|version| recorded.contains(version))
            .copied()
            .collect();
        match migrated {
            Ok(()) if versions_applied.is_empty() => ChildOutcome {
                status: CHILD_SKIPPED,
                versions_applied,
                error: None,
            },
            Ok(()) => ChildOutcome {
                status: CHILD_APPLIED,
                versions_applied,
                error: None,
            },
            Err(error) => ChildOutcome {
                status: CHILD_FAILED,
                versions_applied,
                error: Some(error.to_string()),
            },
        }
    }

    /// Claims and migrates children of `rollout_id` until none can be claimed and none is in hand, with at most
    /// `slots` at once in this call. Outcomes are recorded together with the next claim, in one registry write
    /// for whatever finished meanwhile: a crash before that write leaves those children `running` under a
    /// lease that expires, and whoever claims them again finds their migrations recorded and applies nothing
    /// twice. `keep_claiming` is asked before each claim (a shutdown stops claiming; children in hand finish).
    pub(crate) async fn work(
        &self,
        rollout_id: &str,
        owner: &str,
        lease_ttl_millis: i64,
        slots: usize,
        keep_claiming: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<usize, tenantry_registry::Error> {
        let registry = &self.platform.registry;
        let mut in_hand = tokio::task::JoinSet::new();
        let mut outcomes: Vec<ChildOutcomeRecord> = Vec::new();
        let mut last_renewal = Instant::now();
        let renew_every =
            Duration::from_millis(u64::try_from(lease_ttl_millis / 3).unwrap_or(1000));
        let mut n_done = 0;
        loop {
            let room = if keep_claiming() {
                slots - in_hand.len()
            } else {
                0
            };
            if room > 0 || !outcomes.is_empty() {
                let dead_owners = if room > 0 {
                    registry
                        .rollout_child_owners(rollout_id)
                        .await?
                        .into_iter()
                        .filter(|owner| owner_is_dead_local_process(owner))
                        .collect()
                } else {
                    Vec::new()
                };
                let bounds = ClaimBounds {
                    owner: owner.to_owned(),
                    lease_ttl_millis,
                    max_children: i64::try_from(room).unwrap_or(i64::MAX),
                    dead_owners,
                };
                let (claimed, taken_over) = registry
                    .settle_rollout_children(rollout_id, &outcomes, &bounds)
                    .await?;
                for tenant in taken_over {
                    tracing::warn!(rollout_id, tenant, "another worker took this rollout tenant over; its outcome here was not recorded");
                }
                n_done += outcomes.len();
                outcomes.clear();
                for child in claimed {
                    let migrator = self.clone();
                    in_hand.spawn(async move {
                        let outcome = migrator.migrate(&child).await;
                        ChildOutcomeRecord {
                            child,
                            status: outcome.status,
                            versions_applied: outcome.versions_applied,
                            error: outcome.error,
                            finished_at: Some(tenantry_registry::now_millis()),
                        }
                    });
                }
            }
            if in_hand.is_empty() {
                return Ok(n_done);
            }
            tokio::select! {
                joined = in_hand.join_next() => {
                    if let Some(Ok(outcome)) = joined {
                        outcomes.push(outcome);
                    }
                    // Whatever else finished meanwhile goes in the same write.
                    while let Some(Ok(outcome)) = in_hand.try_join_next() {
                        outcomes.push(outcome);
                    }
                }
                () = tokio::time::sleep(WATCH_INTERVAL) => {}
            }
            if last_renewal.elapsed() >= renew_every {
                registry
                    .renew_rollout_children(rollout_id, owner, lease_ttl_millis)
                    .await?;
                last_renewal = Instant::now();
            }
        }
    }
}

/// The rollout's shared record for its job `id`, from its request, its plan and its waves.
pub(crate) fn new_rollout(
    id: &str,
    request: &RolloutRequest,
    plan: &SchemaPlan,
    children: &[NewRolloutChild],
) -> NewRollout {
    NewRollout {
        id: id.to_owned(),
        schema_hash: request
            .schemas
            .iter()
            .map(|(engine, hash)| format!("{engine}:{hash}"))
            .collect::<Vec<_>>()
            .join(","),
        target_version: plan.latest.values().copied().max().unwrap_or(0),
        n_waves: children.iter().map(|child| child.wave).max().unwrap_or(1),
        concurrency: request.concurrency as i64,
        per_server: request.per_server as i64,
        max_failures: request.max_failures as i64,
    }
}

/// Helps with every rollout that has children to claim, for a worker with nothing else to do. Returns whether
/// it migrated any tenant.
pub(crate) async fn help_rollouts(
    platform: &Platform,
    owner: &str,
    lease_ttl_millis: i64,
    keep_claiming: &(dyn Fn() -> bool + Send + Sync),
) -> bool {
    let rollouts = match platform.registry.claimable_rollouts().await {
        Ok(rollouts) => rollouts,
        Err(error) => {
            tracing::warn!(%error, "could not look for rollouts to help with");
            return false;
        }
    };
    let mut helped = false;
    for rollout_id in rollouts {
        let Ok(job) = platform.registry.get_job(&rollout_id).await else {
            continue;
        };
        let Ok(request) = serde_json::from_value::<RolloutRequest>(job.params.clone()) else {
            continue;
        };
        let migrator = match ChildMigrator::for_rollout(platform, &request.schemas).await {
            Ok(migrator) => migrator,
            Err(error) => {
                tracing::warn!(rollout_id, error = %error.message, "cannot help with this rollout");
                continue;
            }
        };
        match migrator
            .work(
                &rollout_id,
                owner,
                lease_ttl_millis,
                request.concurrency,
                keep_claiming,
            )
            .await
        {
            Ok(n_done) => helped |= n_done > 0,
            Err(error) => tracing::warn!(rollout_id, %error, "stopped helping with a rollout"),
        }
    }
    helped
}

/// Runs a rollout: lists the tenants, migrates the canary, then the waves, then brings the template and the
/// warm pool to the new version.
pub struct RolloutWorkflow {
    platform: Platform,
    owner: String,
    lease_ttl_millis: i64,
}

impl RolloutWorkflow {
    pub fn new(platform: Platform, owner: &str, lease_ttl: Duration) -> RolloutWorkflow {
        RolloutWorkflow {
            platform,
            owner: owner.to_owned(),
            lease_ttl_millis: i64::try_from(lease_ttl.as_millis()).unwrap_or(30_000),
        }
    }

    async fn tenants_listed(
        &self,
        context: &mut JobContext,
        request: &RolloutRequest,
    ) -> Result<(), PhaseError> {
        if let Some(rollout) = context.registry.get_rollout(&context.job.id).await? {
            let n_tenants: i64 = context
                .registry
                .rollout_counts(&rollout.id)
                .await?
                .iter()
                .map(WaveCounts::total)
                .sum();
            return context
                .log(
                    "info",
                    &format!("{n_tenants} tenant(s) listed when the rollout was asked for, in a canary and {} wave(s)", rollout.n_waves),
                )
                .await;
        }
        let plan = schema_plan_at(&self.platform, None, request.concurrency)
            .await
            .map_err(PhaseError::Fatal)?;
        refuse_drift(request, &plan).map_err(PhaseError::Fatal)?;
        let children = assign_waves(request, &plan);
        let rollout = new_rollout(&context.job.id, request, &plan, &children);
        let (to_migrate, n_waves) = (
            children
                .iter()
                .filter(|child| child.status == CHILD_PENDING)
                .count(),
            rollout.n_waves,
        );
        context
            .registry
            .record_rollout(Some(&context.fence), &rollout, &children)
            .await?;
        context.set_output("n_tenants", serde_json::json!(children.len()));
        context
            .log(
                "info",
                &format!(
                    "{} tenant(s) listed: {to_migrate} to migrate in a canary and {n_waves} wave(s), {} left as they are",
                    children.len(),
                    children.len() - to_migrate
                ),
            )
            .await
    }

    /// Opens each wave in turn and migrates its children (with whatever other workers help), until every child
    /// of the wave is settled. Stops at the failure budget, on a failed canary, and on an abort.
    async fn migrate_waves(
        &self,
        context: &mut JobContext,
        request: &RolloutRequest,
        waves: std::ops::RangeInclusive<i64>,
    ) -> Result<(), PhaseError> {
        let migrator = ChildMigrator::for_rollout(&self.platform, &request.schemas)
            .await
            .map_err(PhaseError::Fatal)?;
        let rollout_id = context.job.id.clone();
        let mut last_progress: Option<(Instant, Vec<WaveCounts>)> = None;
        let mut said_paused = false;
        for wave in waves {
            context
                .registry
                .open_rollout_wave(&context.fence, wave)
                .await?;
            loop {
                if context.stop_requested() {
                    return Err(PhaseError::HandBack);
                }
                let rollout = context
                    .registry
                    .get_rollout(&rollout_id)
                    .await?
                    .ok_or_else(|| {
                        PhaseError::fatal(ErrorCode::Internal, "the rollout's record is missing")
                    })?;
                let stop = context.stop_signal();
                let keep_claiming = move || !stop.as_ref().is_some_and(|stop| *stop.borrow());
                if rollout.control != ROLLOUT_PAUSED && rollout.control != ROLLOUT_ABORTED {
                    said_paused = false;
                    migrator
                        .work(
                            &rollout_id,
                            &self.owner,
                            self.lease_ttl_millis,
                            request.concurrency,
                            &keep_claiming,
                        )
                        .await?;
                }
                let mut counts = context.registry.rollout_counts(&rollout_id).await?;
                let failed: i64 = counts.iter().map(|wave| wave.failed).sum();
                let claims_stopped = rollout.control != tenantry_registry::ROLLOUT_RUN
                    || failed >= request.max_failures as i64;
                if claims_stopped && counts.iter().any(|wave| wave.running > 0) {
                    // Children held by a worker that died would hold up a rollout that claims no more.
                    let dead_owners: Vec<String> = context
                        .registry
                        .rollout_child_owners(&rollout_id)
                        .await?
                        .into_iter()
                        .filter(|owner| owner_is_dead_local_process(owner))
                        .collect();
                    if context
                        .registry
                        .release_lost_children(&rollout_id, &dead_owners)
                        .await?
                        > 0
                    {
                        counts = context.registry.rollout_counts(&rollout_id).await?;
                    }
                }
                self.report_progress(context, &counts, &mut last_progress)
                    .await?;
                if rollout.control == ROLLOUT_ABORTED {
                    let running: i64 = counts.iter().map(|wave| wave.running).sum();
                    if running == 0 {
                        return Err(PhaseError::fatal(
                            ErrorCode::RolloutAborted,
                            format!("aborted by an operator; {}", summary(&counts)),
                        ));
                    }
                } else if rollout.control == ROLLOUT_PAUSED && !said_paused {
                    said_paused = true;
                    context
                        .log(
                            "info",
                            "paused by an operator; tenants in hand finish, no new one starts",
                        )
                        .await?;
                    context.set_state("paused", serde_json::json!(true)).await?;
                }
                let open: Vec<&WaveCounts> =
                    counts.iter().filter(|counts| counts.wave <= wave).collect();
                let unsettled: i64 = open.iter().map(|wave| wave.pending + wave.running).sum();
                let running: i64 = counts.iter().map(|wave| wave.running).sum();
                if wave == 0 && failed > 0 && running == 0 {
                    return Err(self
                        .failure(&rollout_id, "the canary failed", &counts)
                        .await);
                }
                if failed >= request.max_failures as i64 && running == 0 {
                    return Err(self
                        .failure(
                            &rollout_id,
                            &format!(
                                "{failed} tenant(s) failed (--max-failures {})",
                                request.max_failures
                            ),
                            &counts,
                        )
                        .await);
                }
                if unsettled == 0 {
                    break;
                }
                tokio::time::sleep(WATCH_INTERVAL).await;
            }
        }
        self.report_progress(
            context,
            &context.registry.rollout_counts(&rollout_id).await?,
            &mut None,
        )
        .await
    }

    /// Writes the waves' counts to the job when they changed (at most every [`PROGRESS_INTERVAL`], and always
    /// when `last` is `None`): a live view sees each write as an event.
    async fn report_progress(
        &self,
        context: &mut JobContext,
        counts: &[WaveCounts],
        last: &mut Option<(Instant, Vec<WaveCounts>)>,
    ) -> Result<(), PhaseError> {
        let due = match last {
            None => true,
            Some((at, seen)) => seen != counts && at.elapsed() >= PROGRESS_INTERVAL,
        };
        if !due {
            return Ok(());
        }
        context.log("info", &summary(counts)).await?;
        context
            .set_state("waves", serde_json::json!(counts))
            .await?;
        *last = Some((Instant::now(), counts.to_vec()));
        Ok(())
    }

    async fn failure(&self, rollout_id: &str, what: &str, counts: &[WaveCounts]) -> PhaseError {
        let failed = self
            .platform
            .registry
            .rollout_children(rollout_id, Some(CHILD_FAILED), 5, 0)
            .await
            .unwrap_or_default();
        let named = failed
            .iter()
            .map(|child| {
                format!(
                    "{}: {}",
                    child.tenant_slug,
                    child.error.clone().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        PhaseError::fatal(
            ErrorCode::MigrationsFailed,
            format!(
                "{what}: {named}; {}. Fix the cause, then `tenantry migrate resume {rollout_id}` retries the failed tenants",
                summary(counts)
            ),
        )
    }

    async fn pool_refreshed(&self, context: &mut JobContext) -> Result<(), PhaseError> {
        let servers = self.platform.registry.list_servers().await?;
        let schema = self
            .platform
            .schema_version(EngineKind::Postgres)
            .await
            .map_err(PhaseError::Fatal)?;
        for record in servers
            .iter()
            .filter(|server| server.engine == EngineKind::Postgres)
        {
            let outcome = async {
                let server = self.platform.tenant_server(record).await?;
                let pruned = server
                    .prune_warm_pool(
                        Some(&schema),
                        tenantry_providers::engines::PruneScope::Stale,
                    )
                    .await
                    .map_err(|error| {
                        CodedError::new(ErrorCode::AdminConnUnresolved, error.to_string())
                    })?;
                server.ensure_template(&schema).await.map_err(|error| {
                    CodedError::new(ErrorCode::AdminConnUnresolved, error.to_string())
                })?;
                Ok::<_, CodedError>(pruned)
            }
            .await;
            let line = match outcome {
                Ok(pruned) => format!(
                    "server {}: template of version {} ready; {} stale template or pool database(s) removed (the pool refills with the new version)",
                    record.name,
                    schema.latest,
                    pruned.dropped.len()
                ),
                // The tenants are migrated; a server whose pool cannot be refreshed now is `doctor`'s `stale`.
                Err(error) => format!(
                    "server {}: template and pool not refreshed ({}); `tenantry doctor` names what is stale",
                    record.name, error.message
                ),
            };
            context.log("info", &line).await?;
        }
        Ok(())
    }
}

/// The waves' counts in words: `canary 2/2 applied; wave 1 10/24 applied, 1 failed; …`.
pub fn summary(counts: &[WaveCounts]) -> String {
    counts
        .iter()
        .map(|wave| {
            let name = if wave.wave == 0 {
                "canary".to_owned()
            } else {
                format!("wave {}", wave.wave)
            };
            let mut line = format!(
                "{name} {}/{} settled ({} applied",
                wave.settled(),
                wave.total(),
                wave.applied
            );
            for (count, word) in [
                (wave.skipped, "skipped"),
                (wave.failed, "failed"),
                (wave.running, "running"),
            ] {
                if count > 0 {
                    line.push_str(&format!(", {count} {word}"));
                }
            }
            line.push(')');
            line
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Workflow for RolloutWorkflow {
    type Params = RolloutRequest;

    async fn apply(
        &self,
        context: &mut JobContext,
        request: &RolloutRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        let phase = RolloutPhase::parse(phase).ok_or_else(|| unknown_phase("rollout", phase))?;
        match phase {
            RolloutPhase::RequestValidated => {
                ChildMigrator::for_rollout(&self.platform, &request.schemas)
                    .await
                    .map(|_| ())
                    .map_err(PhaseError::Fatal)
            }
            RolloutPhase::TenantsListed => self.tenants_listed(context, request).await,
            RolloutPhase::CanaryMigrated => self.migrate_waves(context, request, 0..=0).await,
            RolloutPhase::WavesMigrated => {
                let n_waves = context
                    .registry
                    .get_rollout(&context.job.id)
                    .await?
                    .map(|rollout| rollout.n_waves)
                    .unwrap_or(1);
                self.migrate_waves(context, request, 1..=n_waves).await
            }
            RolloutPhase::PoolRefreshed => self.pool_refreshed(context).await,
            RolloutPhase::Complete => Ok(()),
        }
    }

    async fn undo(
        &self,
        _context: &mut JobContext,
        _request: &RolloutRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        // Never called: a rollout stops where it stands (`stop_without_undo`). Each tenant keeps the migrations
        // it recorded, which is a version the files know; there is no down migration to run.
        RolloutPhase::parse(phase).ok_or_else(|| unknown_phase("rollout", phase))?;
        Ok(())
    }

    fn stop_without_undo(&self, cause: &CodedError) -> Option<JobStatus> {
        Some(match cause.code {
            ErrorCode::RolloutAborted => JobStatus::Cancelled,
            _ => JobStatus::Failed,
        })
    }

    fn on_complete(&self, job: &JobRecord) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        (
            None,
            vec![NewAuditEvent {
                actor: job.actor.clone(),
                event_type: "ROLLOUT_COMPLETED",
                tenant_slug: None,
                job_id: Some(job.id.clone()),
                details: serde_json::json!({ "waves": job.state.get("waves") }),
            }],
        )
    }

    fn on_failure(
        &self,
        job: &JobRecord,
        error: &CodedError,
    ) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        let event = match error.code {
            ErrorCode::RolloutAborted => "ROLLOUT_ABORTED",
            _ => "ROLLOUT_STOPPED",
        };
        (None, vec![crate::failure_audit(job, event, false, error)])
    }
}

/// What an operator may do to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutControl {
    /// Tenants in hand finish; no new one starts until it resumes.
    Pause,
    /// A paused rollout goes on; a stopped one (failure budget, failed canary) tries its failed tenants again.
    Resume,
    /// Tenants in hand finish; the rest stay where they are, and the rollout ends `cancelled`. Final.
    Abort,
}

impl RolloutControl {
    fn audit_event(self) -> &'static str {
        match self {
            RolloutControl::Pause => "ROLLOUT_PAUSED",
            RolloutControl::Resume => "ROLLOUT_RESUMED",
            RolloutControl::Abort => "ROLLOUT_ABORT_REQUESTED",
        }
    }
}

/// The rollout job `rollout_id`, or `E_NOT_FOUND`.
pub async fn require_rollout_job(
    platform: &Platform,
    rollout_id: &str,
) -> Result<JobRecord, CodedError> {
    let not_found = || {
        CodedError::new(
            ErrorCode::NotFound,
            format!("rollout {rollout_id} not found"),
        )
    };
    match platform.registry.get_job(rollout_id).await {
        Ok(job) if job.kind == tenantry_core::JobKind::Rollout => Ok(job),
        Ok(_) | Err(tenantry_registry::Error::NotFound { .. }) => Err(not_found()),
        Err(error) => Err(registry_error(error)),
    }
}

/// Pauses, resumes or aborts a rollout, audited with the actor. Resuming a stopped rollout puts its failed
/// tenants back to `pending` and reopens its job, which the caller then runs (or a worker claims).
pub async fn control_rollout(
    platform: &Platform,
    runner: &tenantry_engine::Runner,
    rollout_id: &str,
    control: RolloutControl,
    actor: &str,
) -> Result<JobRecord, CodedError> {
    let job = require_rollout_job(platform, rollout_id).await?;
    let conflict = |message: String| Err(CodedError::new(ErrorCode::Conflict, message));
    let Some(rollout) = platform
        .registry
        .get_rollout(rollout_id)
        .await
        .map_err(registry_error)?
    else {
        return conflict(format!(
            "rollout {rollout_id} has not listed its tenants yet; try again in a moment"
        ));
    };
    if matches!(job.status, JobStatus::Complete | JobStatus::Cancelled) {
        return conflict(format!(
            "rollout {rollout_id} is {}; nothing to change",
            job.status
        ));
    }
    if rollout.control == ROLLOUT_ABORTED {
        return conflict(format!(
            "rollout {rollout_id} was aborted; start a new one with `tenantry migrate apply`"
        ));
    }
    let registry = &platform.registry;
    let set = |control: &'static str| async move {
        registry
            .set_rollout_control(rollout_id, control)
            .await
            .map_err(registry_error)
    };
    let mut details = serde_json::json!({});
    match control {
        RolloutControl::Pause
            if job.status != JobStatus::InProgress && job.status != JobStatus::Pending =>
        {
            return conflict(format!(
                "rollout {rollout_id} is {}; only a running rollout pauses",
                job.status
            ));
        }
        RolloutControl::Pause => {
            set(tenantry_registry::ROLLOUT_PAUSED).await?;
        }
        RolloutControl::Resume => {
            set(tenantry_registry::ROLLOUT_RUN).await?;
            if job.status == JobStatus::Failed {
                let retried = registry
                    .retry_failed_children(rollout_id)
                    .await
                    .map_err(registry_error)?;
                details = serde_json::json!({ "failed_tenants_retried": retried });
                runner
                    .reopen(rollout_id, actor, false)
                    .await
                    .map_err(crate::engine_error)?;
            }
        }
        RolloutControl::Abort => {
            set(ROLLOUT_ABORTED).await?;
        }
    }
    registry
        .record_audit(&NewAuditEvent {
            actor: actor.to_owned(),
            event_type: control.audit_event(),
            tenant_slug: None,
            job_id: Some(rollout_id.to_owned()),
            details,
        })
        .await
        .map_err(registry_error)?;
    registry.get_job(rollout_id).await.map_err(registry_error)
}

/// A rollout as the CLI and the API show it: its job's status, its bounds, the counts per wave and status, and
/// one page of its tenants.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutView {
    pub id: String,
    /// The job's status: `in_progress`, `complete`, `failed` (stopped by failures), `cancelled` (aborted), …
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: JobStatus,
    /// `run`, `paused` or `aborted`; empty before the rollout listed its tenants.
    pub control: String,
    pub actor: String,
    pub target_version: i64,
    pub concurrency: i64,
    pub per_server: i64,
    pub max_failures: i64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    /// Per wave (0 is the canary): how many tenants are pending, running, applied, skipped, failed.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub waves: Vec<WaveCounts>,
    /// Over every wave.
    pub counts: BTreeMap<String, i64>,
    /// The page of tenants asked for (filtered by status if asked).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub tenants: Vec<tenantry_registry::RolloutChild>,
}

/// A rollout's view with `limit` of its tenants from `offset` (of `status` alone if given).
pub async fn rollout_view(
    platform: &Platform,
    rollout_id: &str,
    status: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<RolloutView, CodedError> {
    if let Some(status) = status {
        if !tenantry_registry::CHILD_STATUSES.contains(&status) {
            return Err(CodedError::invalid_input(format!(
                "status must be one of {}",
                tenantry_registry::CHILD_STATUSES.join(", ")
            )));
        }
    }
    let job = require_rollout_job(platform, rollout_id).await?;
    let registry = &platform.registry;
    let rollout = registry
        .get_rollout(rollout_id)
        .await
        .map_err(registry_error)?;
    let waves = registry
        .rollout_counts(rollout_id)
        .await
        .map_err(registry_error)?;
    let tenants = registry
        .rollout_children(rollout_id, status, limit, offset)
        .await
        .map_err(registry_error)?;
    let mut counts: BTreeMap<String, i64> = tenantry_registry::CHILD_STATUSES
        .iter()
        .map(|status| ((*status).to_owned(), 0))
        .collect();
    for wave in &waves {
        for (status, count) in [
            ("pending", wave.pending),
            ("running", wave.running),
            ("applied", wave.applied),
            ("skipped", wave.skipped),
            ("failed", wave.failed),
        ] {
            *counts.entry(status.to_owned()).or_default() += count;
        }
    }
    let request: Option<RolloutRequest> = serde_json::from_value(job.params.clone()).ok();
    let bound = |value: Option<i64>, from_request: Option<usize>| {
        value.unwrap_or_else(|| from_request.map_or(0, |value| value as i64))
    };
    Ok(RolloutView {
        id: job.id.clone(),
        status: job.status,
        control: rollout
            .as_ref()
            .map(|r| r.control.clone())
            .unwrap_or_default(),
        actor: job.actor.clone(),
        target_version: rollout.as_ref().map_or(0, |r| r.target_version),
        concurrency: bound(
            rollout.as_ref().map(|r| r.concurrency),
            request.as_ref().map(|r| r.concurrency),
        ),
        per_server: bound(
            rollout.as_ref().map(|r| r.per_server),
            request.as_ref().map(|r| r.per_server),
        ),
        max_failures: bound(
            rollout.as_ref().map(|r| r.max_failures),
            request.as_ref().map(|r| r.max_failures),
        ),
        error_code: job.error_code.clone(),
        error_message: job.error_message.clone(),
        created_at: job.created_at,
        finished_at: job.finished_at,
        waves,
        counts,
        tenants,
    })
}

/// The newest rollouts' views, without their tenants.
pub async fn list_rollouts(
    platform: &Platform,
    limit: i64,
) -> Result<Vec<RolloutView>, CodedError> {
    let rollouts = platform
        .registry
        .list_rollouts(limit)
        .await
        .map_err(registry_error)?;
    let mut views = Vec::new();
    for rollout in rollouts {
        views.push(rollout_view(platform, &rollout.id, None, 0, 0).await?);
    }
    Ok(views)
}
