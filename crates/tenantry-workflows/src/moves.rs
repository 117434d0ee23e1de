//! The move workflow: a tenant's PostgreSQL database moves to another PostgreSQL server with logical replication
//! (a publication on the source, a subscription on the target), writes frozen only from the moment the target
//! has caught up to the cut-over. The source keeps the tenant's data and its login until the job completes, so
//! an undo of any phase up to the cut-over leaves the tenant where it was, working.

use crate::phases::phases;
use crate::platform::{provider_error, secret_store_error};
use crate::{registry_error, Platform};
use std::time::Duration;
use tenantry_core::{EngineKind, Error as CodedError, ErrorCode, Slug, TenantStatus};
use tenantry_engine::{JobContext, PhaseError, Workflow};
use tenantry_providers::credentials::{generate_database_password, SecretString};
use tenantry_providers::engines::{
    PostgresServer, SequenceState, TenantDatabaseSpec, TenantServer,
};

use tenantry_registry::{JobRecord, NewAuditEvent, ServerRecord, TenantRecord};

phases! {
    /// A move's phases, in order.
    pub enum MovePhase {
        RequestValidated = "request_validated",
        TargetCreated = "target_created",
        ReplicationStarted = "replication_started",
        ReplicationCaughtUp = "replication_caught_up",
        WritesFrozen = "writes_frozen",
        TargetSynced = "target_synced",
        CutOver = "cut_over",
        Complete = "complete",
    }
}

/// The phases of every move job.
pub const MOVE_PHASES: [&str; 8] = MovePhase::names(MovePhase::ALL);

/// Job state: the server the tenant's database was on when the job began (what every undo goes back to).
const FROM_SERVER: &str = "from_server";
/// Job state: when writes were frozen (Unix ms), and when the cut-over let them go on the target.
const FREEZE_STARTED: &str = "freeze_started_ms";
const FREEZE_ENDED: &str = "freeze_ended_ms";
/// How long the caught-up wait and the drain wait at most before the move gives up (and unwinds).
const CATCH_UP_LIMIT: Duration = Duration::from_secs(3600);
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// The parameters of a move job.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    pub slug: Slug,
    /// The server the tenant's database moves to.
    pub to_server: String,
}

/// Both ends of a move, reached through their admin connections.
struct Ends {
    tenant: TenantRecord,
    from: ServerRecord,
    to: ServerRecord,
    source: TenantServer,
    target: TenantServer,
}

impl Ends {
    fn source(&self) -> Result<&PostgresServer, PhaseError> {
        postgres(&self.source, &self.from)
    }

    fn target(&self) -> Result<&PostgresServer, PhaseError> {
        postgres(&self.target, &self.to)
    }
}

fn postgres<'s>(
    server: &'s TenantServer,
    record: &ServerRecord,
) -> Result<&'s PostgresServer, PhaseError> {
    server.as_postgres().ok_or_else(|| {
        PhaseError::fatal(
            ErrorCode::InvalidInput,
            format!("server {:?} is not a PostgreSQL server", record.name),
        )
    })
}

fn not_found(message: String) -> CodedError {
    CodedError::new(ErrorCode::NotFound, message)
}

/// The request checked against the registry and both servers before a job is created: the tenant is registered
/// (`E_NOT_FOUND`) and active (`E_CONFLICT`); the target server exists and is active (`E_DB_SERVER_NOT_FOUND`),
/// is not where the tenant is, and has the engine of the tenant's database, PostgreSQL (`E_INVALID_INPUT`); the
/// source writes logical WAL and every table can be replicated (`E_INVALID_INPUT`); no fleet migration still has
/// the tenant to migrate (`E_CONFLICT`). Returns the tenant and its current server.
pub async fn validate_move(
    platform: &Platform,
    request: &MoveRequest,
) -> Result<(TenantRecord, ServerRecord), CodedError> {
    let tenant = platform
        .registry
        .get_tenant(request.slug.as_str())
        .await
        .map_err(registry_error)?
        .ok_or_else(|| {
            not_found(format!(
                "tenant {:?} is not registered",
                request.slug.as_str()
            ))
        })?;
    if tenant.status != TenantStatus::Active {
        return Err(CodedError::new(
            ErrorCode::Conflict,
            format!(
                "tenant {:?} is {}; only an active tenant is moved",
                tenant.slug, tenant.status
            ),
        ));
    }
    crate::plans::refuse_shared_tier(&platform.settings, &tenant.slug, &tenant.plan, "a move")?;
    let to = match platform.registry.get_server(&request.to_server).await {
        Ok(server) if server.status == tenantry_core::ServerStatus::Active => server,
        Ok(server) => {
            return Err(CodedError::new(
                ErrorCode::DbServerNotFound,
                format!(
                    "server {:?} is {}; a tenant moves only to an active server",
                    server.name, server.status
                ),
            ))
        }
        Err(tenantry_registry::Error::NotFound { .. }) => {
            return Err(CodedError::new(
                ErrorCode::DbServerNotFound,
                format!("no server is named {:?}", request.to_server),
            ))
        }
        Err(error) => return Err(registry_error(error)),
    };
    if to.name == tenant.server_name {
        return Err(CodedError::invalid_input(format!(
            "tenant {:?} is already on server {:?}",
            tenant.slug, to.name
        )));
    }
    let from = platform
        .registry
        .get_server(&tenant.server_name)
        .await
        .map_err(registry_error)?;
    if from.engine != EngineKind::Postgres || to.engine != EngineKind::Postgres {
        return Err(CodedError::invalid_input(format!(
            "a move goes from one PostgreSQL server to another; tenant {:?} is on {} server {:?} and {:?} is a {} server",
            tenant.slug, from.engine, from.name, to.name, to.engine
        )));
    }
    if let Some((rollout_id, child)) = platform
        .registry
        .tenant_rollout_child(&tenant.slug)
        .await
        .map_err(registry_error)?
    {
        if matches!(child.status.as_str(), "pending" | "running") {
            let rollout = platform
                .registry
                .get_job(&rollout_id)
                .await
                .map_err(registry_error)?;
            if !rollout.status.is_terminal() {
                return Err(CodedError::new(
                    ErrorCode::Conflict,
                    format!(
                        "tenant {:?} is {} in fleet migration {rollout_id}; move it once the migration is done",
                        tenant.slug, child.status
                    ),
                ));
            }
        }
    }
    let source = platform.tenant_server(&from).await?;
    let source = source
        .as_postgres()
        .ok_or_else(|| CodedError::invalid_input("the source is not a PostgreSQL server"))?;
    let wal_level = source
        .wal_level()
        .await
        .map_err(|error| CodedError::new(ErrorCode::AdminConnUnresolved, error.to_string()))?;
    if wal_level != "logical" {
        return Err(CodedError::invalid_input(format!(
            "server {:?} has wal_level = {wal_level}; moving a tenant off it needs wal_level = logical",
            from.name
        )));
    }
    let unreplicable = source
        .tables_without_identity(&tenant.resource_name)
        .await
        .map_err(|error| CodedError::new(ErrorCode::AdminConnUnresolved, error.to_string()))?;
    if !unreplicable.is_empty() {
        return Err(CodedError::invalid_input(format!(
            "tenant {:?} has tables without a primary key or replica identity, whose updates logical replication \
             cannot carry: {}",
            tenant.slug,
            unreplicable.join(", ")
        )));
    }
    Ok((tenant, from))
}

/// Moves one tenant's database to another server.
pub struct MoveWorkflow {
    platform: Platform,
}

impl MoveWorkflow {
    pub fn new(platform: Platform) -> MoveWorkflow {
        MoveWorkflow { platform }
    }

    fn parse_phase(&self, phase: &str) -> Result<MovePhase, PhaseError> {
        MovePhase::parse(phase).ok_or_else(|| crate::phases::unknown_phase("move", phase))
    }

    /// Both ends, once `request_validated` recorded where the tenant was (`None` before that: nothing was done).
    async fn ends(
        &self,
        context: &JobContext,
        request: &MoveRequest,
    ) -> Result<Option<Ends>, PhaseError> {
        let Some(from_name) = context.state_str(FROM_SERVER).map(str::to_owned) else {
            return Ok(None);
        };
        let tenant = self
            .platform
            .registry
            .get_tenant(request.slug.as_str())
            .await?
            .ok_or_else(|| {
                PhaseError::fatal(
                    ErrorCode::PartialState,
                    format!(
                        "tenant {} is not registered any more",
                        request.slug.as_str()
                    ),
                )
            })?;
        let from = self.platform.registry.get_server(&from_name).await?;
        let to = self
            .platform
            .registry
            .get_server(&request.to_server)
            .await?;
        let source = self
            .platform
            .tenant_server(&from)
            .await
            .map_err(PhaseError::Fatal)?;
        let target = self
            .platform
            .tenant_server(&to)
            .await
            .map_err(PhaseError::Fatal)?;
        Ok(Some(Ends {
            tenant,
            from,
            to,
            source,
            target,
        }))
    }

    async fn require_ends(
        &self,
        context: &JobContext,
        request: &MoveRequest,
    ) -> Result<Ends, PhaseError> {
        self.ends(context, request).await?.ok_or_else(|| {
            PhaseError::fatal(
                ErrorCode::Internal,
                "the move's source server is not recorded",
            )
        })
    }

    /// `request_validated`: the checks of the submission again (another job may have come between), and the
    /// source server recorded for every later phase and undo.
    async fn request_validated(
        &self,
        context: &mut JobContext,
        request: &MoveRequest,
    ) -> Result<(), PhaseError> {
        if let Some(from) = context.state_str(FROM_SERVER) {
            // Run again after it was recorded: the tenant may be half-way already; the record stands.
            let from = from.to_owned();
            return context
                .log("info", &format!("moving from server {from} (recorded)"))
                .await;
        }
        let (tenant, from) = validate_move(&self.platform, request)
            .await
            .map_err(PhaseError::Fatal)?;
        context
            .set_state(FROM_SERVER, serde_json::json!(from.name))
            .await?;
        context
            .log(
                "info",
                &format!(
                    "moving tenant {} from server {} to server {}",
                    tenant.slug, from.name, request.to_server
                ),
            )
            .await
    }

    /// The tenant's password, from its secret (the target's role gets the same one, so the secret changes its
    /// address only).
    async fn tenant_password(&self, tenant: &TenantRecord) -> Result<SecretString, PhaseError> {
        let url = self
            .platform
            .read_secret(&tenant.secret_ref)
            .await?
            .ok_or_else(|| {
                PhaseError::fatal(
                    ErrorCode::PartialState,
                    format!("the secret {} is missing", tenant.secret_ref),
                )
            })?;
        tenantry_providers::credentials::password_in_url(&url).ok_or_else(|| {
            PhaseError::fatal(
                ErrorCode::PartialState,
                format!("the secret {} holds no password", tenant.secret_ref),
            )
        })
    }

    /// `target_created`: the tenant's role (same password, login off until the cut-over) and an empty database
    /// on the target, with the plan's quotas and labels, then the source's schema without rows.
    async fn target_created(
        &self,
        context: &mut JobContext,
        request: &MoveRequest,
    ) -> Result<(), PhaseError> {
        let ends = self.require_ends(context, request).await?;
        let plan = crate::plans::registered_plan(&self.platform.settings, &ends.tenant)
            .ok_or_else(|| {
                PhaseError::fatal(
                    ErrorCode::InvalidInput,
                    format!("plan {:?} is not configured", ends.tenant.plan),
                )
            })?;
        let password = self.tenant_password(&ends.tenant).await?;
        let spec = TenantDatabaseSpec {
            resource_name: ends.tenant.resource_name.clone(),
            connection_limit: plan.connection_limit,
            statement_timeout_ms: plan.statement_timeout_ms,
            labels: crate::plans::cost_labels(&ends.tenant.slug, &plan),
        };
        let target = ends.target()?;
        target
            .create_database(&spec, &password, None)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        target
            .disable_login(&ends.tenant.resource_name)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        tenantry_engine::failpoint(MovePhase::TargetCreated.name(), "database_created").await?;
        let bin_dir = tenantry_providers::backup::postgres_bin_dir(
            self.platform.settings.backups.pg_bin_dir.as_deref(),
        );
        tenantry_providers::backup::copy_postgres_schema(
            &bin_dir,
            &self
                .platform
                .admin_url(&ends.from)
                .await
                .map_err(PhaseError::Fatal)?,
            &self
                .platform
                .admin_url(&ends.to)
                .await
                .map_err(PhaseError::Fatal)?,
            &ends.tenant.resource_name,
            &ends.tenant.resource_name,
        )
        .await
        .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        context
            .log(
                "info",
                &format!(
                    "database {} and its schema made on server {}, login off until the cut-over",
                    ends.tenant.resource_name, ends.to.name
                ),
            )
            .await
    }

    /// The undo of `target_created`: the target's database and role, unless the tenant is placed there (never
    /// while the cut-over is undone first; checked so that no undo ever drops the tenant's live database).
    async fn target_created_undo(
        &self,
        context: &mut JobContext,
        request: &MoveRequest,
    ) -> Result<(), PhaseError> {
        let Some(ends) = self.ends(context, request).await? else {
            return Ok(());
        };
        if ends.tenant.server_name == ends.to.name {
            return Err(PhaseError::fatal(
                ErrorCode::PartialState,
                format!(
                    "tenant {} is placed on {}; its database there is not dropped",
                    ends.tenant.slug, ends.to.name
                ),
            ));
        }
        let target = ends.target()?;
        target
            .unsubscribe_move(&ends.tenant.resource_name)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        target
            .drop_database(&ends.tenant.resource_name)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        context
            .log(
                "info",
                &format!(
                    "database {} removed from server {}",
                    ends.tenant.resource_name, ends.to.name
                ),
            )
            .await
    }

    /// `replication_started`: the publication and its login on the source, the subscription on the target (which
    /// makes the slot on the source and starts the first copy of every table).
    async fn replication_started(
        &self,
        context: &mut JobContext,
        request: &MoveRequest,
    ) -> Result<(), PhaseError> {
        let ends = self.require_ends(context, request).await?;
        let name = &ends.tenant.resource_name;
        let target = ends.target()?;
        if target
            .has_move_subscription(name)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?
        {
            // Done by an earlier run: a new password now would lock the running subscription out.
            return context
                .log("info", &format!("{name} is already replicating"))
                .await;
        }
        // A new password on every run that has no subscription yet: nothing else uses the login.
        let conninfo = ends
            .source()?
            .publish_for_move(name, &generate_database_password())
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        tenantry_engine::failpoint(MovePhase::ReplicationStarted.name(), "published").await?;
        ends.target()?
            .subscribe_for_move(name, &conninfo)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        context
            .log(
                "info",
                &format!(
                    "replicating {name} from {} to {}",
                    ends.from.name, ends.to.name
                ),
            )
            .await
    }

    /// The undo of `replication_started` (and the source's half of the cleanup at completion): the subscription,
    /// then the slot, the publication and the login on the source. No slot is left to hold WAL.
    async fn stop_replication(&self, ends: &Ends) -> Result<(), PhaseError> {
        let name = &ends.tenant.resource_name;
        ends.target()?
            .unsubscribe_move(name)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        ends.source()?
            .unpublish_move(name)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))
    }

    /// `replication_caught_up`: every table's first copy done, and the target confirmed everything the source
    /// had written when the copies were done. Writes go on meanwhile; the lag left is what came since.
    async fn replication_caught_up(
        &self,
        context: &mut JobContext,
        request: &MoveRequest,
    ) -> Result<(), PhaseError> {
        let ends = self.require_ends(context, request).await?;
        let name = &ends.tenant.resource_name;
        let started = std::time::Instant::now();
        loop {
            let (n_tables, n_ready) = ends
                .target()?
                .subscription_progress(name)
                .await
                .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
            if n_tables == n_ready {
                break;
            }
            self.wait_a_little(context, started, CATCH_UP_LIMIT, "the first copy")
                .await?;
        }
        let position = ends
            .source()?
            .current_wal_lsn()
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        self.wait_for_slot(context, &ends, &position, CATCH_UP_LIMIT)
            .await?;
        context
            .log(
                "info",
                &format!(
                    "the target caught up in {} ms",
                    started.elapsed().as_millis()
                ),
            )
            .await
    }

    async fn wait_a_little(
        &self,
        context: &JobContext,
        started: std::time::Instant,
        limit: Duration,
        what: &str,
    ) -> Result<(), PhaseError> {
        if context.stop_requested() {
            return Err(PhaseError::HandBack);
        }
        if started.elapsed() > limit {
            return Err(PhaseError::fatal(
                ErrorCode::ProvisioningUnavailable,
                format!("{what} did not finish within {} s", limit.as_secs()),
            ));
        }
        tokio::time::sleep(POLL).await;
        Ok(())
    }

    /// Waits until the target confirmed, through the slot, everything up to `position` on the source.
    async fn wait_for_slot(
        &self,
        context: &JobContext,
        ends: &Ends,
        position: &str,
        limit: Duration,
    ) -> Result<(), PhaseError> {
        let started = std::time::Instant::now();
        loop {
            match ends
                .source()?
                .move_slot_reached(&ends.tenant.resource_name, position)
                .await
                .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?
            {
                Some(true) => return Ok(()),
                Some(false) => {}
                None => {
                    return Err(PhaseError::fatal(
                        ErrorCode::PartialState,
                        "the move's replication slot is gone",
                    ))
                }
            }
            self.wait_a_little(context, started, limit, "the replication")
                .await?;
        }
    }

    /// `writes_frozen`: the tenant's login off on the source and its sessions ended, so nothing more is written
    /// there. The moment is recorded: the freeze window runs from here to the end of the cut-over.
    async fn writes_frozen(
        &self,
        context: &mut JobContext,
        request: &MoveRequest,
    ) -> Result<(), PhaseError> {
        let ends = self.require_ends(context, request).await?;
        if context.job.state.get(FREEZE_STARTED).is_none() {
            context
                .set_state(
                    FREEZE_STARTED,
                    serde_json::json!(tenantry_registry::now_millis()),
                )
                .await?;
        }
        ends.source()?
            .disable_login(&ends.tenant.resource_name)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        context
            .log(
                "info",
                &format!("writes frozen on server {}", ends.from.name),
            )
            .await
    }

    /// The undo of `writes_frozen`: the tenant logs in on the source again.
    async fn writes_frozen_undo(
        &self,
        context: &mut JobContext,
        request: &MoveRequest,
    ) -> Result<(), PhaseError> {
        let Some(ends) = self.ends(context, request).await? else {
            return Ok(());
        };
        if ends.tenant.server_name != ends.from.name {
            return Ok(());
        }
        ends.source()?
            .enable_login(&ends.tenant.resource_name)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        context
            .set_state(FREEZE_STARTED, serde_json::Value::Null)
            .await?;
        context
            .log(
                "info",
                &format!("writes go on on server {} again", ends.from.name),
            )
            .await
    }

    /// `target_synced`: the last changes drained to the target, the sequences set to the source's, and every
    /// table's row count equal on both (`E_PARTIAL_STATE` otherwise, which unwinds to the source).
    async fn target_synced(
        &self,
        context: &mut JobContext,
        request: &MoveRequest,
    ) -> Result<(), PhaseError> {
        let ends = self.require_ends(context, request).await?;
        let name = &ends.tenant.resource_name;
        let source = ends.source()?;
        let target = ends.target()?;
        let position = source
            .current_wal_lsn()
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        self.wait_for_slot(context, &ends, &position, DRAIN_LIMIT)
            .await?;
        let sequences: Vec<SequenceState> = source
            .sequence_states(name)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        target
            .set_sequence_states(name, &sequences)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        let (on_source, on_target) =
            tokio::join!(source.table_row_counts(name), target.table_row_counts(name));
        let on_source =
            on_source.map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        let on_target =
            on_target.map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        if on_source != on_target {
            let differing: Vec<String> = on_source
                .iter()
                .filter(|(table, count)| on_target.get(*table) != Some(count))
                .map(|(table, count)| {
                    format!(
                        "{table}: {count} on the source, {} on the target",
                        on_target
                            .get(table)
                            .map_or("none".to_owned(), i64::to_string)
                    )
                })
                .collect();
            return Err(PhaseError::fatal(
                ErrorCode::PartialState,
                format!(
                    "the target's rows differ from the source's: {}",
                    differing.join("; ")
                ),
            ));
        }
        let n_rows: i64 = on_source.values().sum();
        context.set_output("rows_verified", serde_json::json!(n_rows));
        context
            .log(
                "info",
                &format!(
                    "target in sync: {} tables, {n_rows} rows, {} sequences",
                    on_source.len(),
                    sequences.len()
                ),
            )
            .await
    }

    /// `cut_over`: replication stops (the subscription goes; the source keeps its data), the tenant's login
    /// opens on the target, the registry places the tenant there (one fenced write, with `TENANT_MOVED`'s
    /// facts in the job), and the secret gets the target's address. Writes go on from here.
    async fn cut_over(
        &self,
        context: &mut JobContext,
        request: &MoveRequest,
    ) -> Result<(), PhaseError> {
        let ends = self.require_ends(context, request).await?;
        let name = &ends.tenant.resource_name;
        let target = ends.target()?;
        target
            .unsubscribe_move(name)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        target
            .enable_login(name)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        self.platform
            .registry
            .move_tenant_database(
                &context.fence,
                &ends.tenant.slug,
                &ends.from.name,
                &ends.to.name,
                None,
            )
            .await?;
        tenantry_engine::failpoint(MovePhase::CutOver.name(), "placed").await?;
        let password = self.tenant_password(&ends.tenant).await?;
        self.put_secret(context, &ends.tenant, &target.tenant_url(name, &password))
            .await?;
        let ended = match context
            .job
            .state
            .get(FREEZE_ENDED)
            .and_then(serde_json::Value::as_i64)
        {
            Some(ended) => ended,
            None => {
                let ended = tenantry_registry::now_millis();
                context
                    .set_state(FREEZE_ENDED, serde_json::json!(ended))
                    .await?;
                ended
            }
        };
        let started = context
            .job
            .state
            .get(FREEZE_STARTED)
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(ended);
        context.set_output("freeze_ms", serde_json::json!(ended - started));
        context
            .log(
                "info",
                &format!(
                    "cut over to server {}: writes were frozen for {} ms",
                    ends.to.name,
                    ended - started
                ),
            )
            .await
    }

    async fn put_secret(
        &self,
        context: &JobContext,
        tenant: &TenantRecord,
        url: &SecretString,
    ) -> Result<(), PhaseError> {
        // The labels the secret has, so the move changes its value only.
        let existing = self
            .platform
            .registry
            .secret_labels(&tenant.secret_ref)
            .await?;
        let labels = match (existing, self.platform.settings.plan(&tenant.plan)) {
            (Some(labels), _) => labels,
            (None, Some(plan)) => {
                let slug = Slug::parse(&tenant.slug).map_err(PhaseError::Fatal)?;
                let installation = self
                    .platform
                    .installation()
                    .await
                    .map_err(PhaseError::Fatal)?;
                crate::resources::labels(&slug, plan, installation.id())
            }
            (None, None) => tenant.labels.clone(),
        };
        self.platform
            .secrets
            .put_for_job(&context.fence, &tenant.secret_ref, url, &labels)
            .await
            .map_err(|error| secret_store_error(&error))
    }

    /// The undo of `cut_over`: the secret back to the source's address, the registry back to the source, the
    /// target's login off. The source still holds the tenant's data as it was at the freeze (its login comes
    /// back with `writes_frozen`'s undo); what was written on the target after the cut-over is lost with it,
    /// which is why nothing after the cut-over but the cleanup at completion can fail.
    async fn cut_over_undo(
        &self,
        context: &mut JobContext,
        request: &MoveRequest,
    ) -> Result<(), PhaseError> {
        let Some(ends) = self.ends(context, request).await? else {
            return Ok(());
        };
        let name = &ends.tenant.resource_name;
        let inventory = ends
            .source
            .inventory(name)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        if !inventory.database {
            return Err(PhaseError::fatal(
                ErrorCode::PartialState,
                format!(
                    "the source database on {} was removed at completion: the tenant stays on {}; `tenantry jobs retry {}` finishes the move",
                    ends.from.name, ends.to.name, context.job.id
                ),
            ));
        }
        let password = self.tenant_password(&ends.tenant).await?;
        self.put_secret(
            context,
            &ends.tenant,
            &ends.source()?.tenant_url(name, &password),
        )
        .await?;
        self.platform
            .registry
            .move_tenant_database(
                &context.fence,
                &ends.tenant.slug,
                &ends.to.name,
                &ends.from.name,
                None,
            )
            .await?;
        ends.target()?
            .disable_login(name)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        context
            .set_state(FREEZE_ENDED, serde_json::Value::Null)
            .await?;
        context
            .log(
                "info",
                &format!(
                    "tenant {} placed on server {} again",
                    ends.tenant.slug, ends.from.name
                ),
            )
            .await
    }

    /// `complete`: the source's publication, slot and login role go, then the tenant's old database and role.
    async fn complete(
        &self,
        context: &mut JobContext,
        request: &MoveRequest,
    ) -> Result<(), PhaseError> {
        let ends = self.require_ends(context, request).await?;
        self.stop_replication(&ends).await?;
        ends.source
            .drop_database(&ends.tenant.resource_name)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        context
            .log(
                "info",
                &format!(
                    "database {} removed from server {}",
                    ends.tenant.resource_name, ends.from.name
                ),
            )
            .await
    }
}

impl Workflow for MoveWorkflow {
    type Params = MoveRequest;

    async fn apply(
        &self,
        context: &mut JobContext,
        request: &MoveRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        match self.parse_phase(phase)? {
            MovePhase::RequestValidated => self.request_validated(context, request).await,
            MovePhase::TargetCreated => self.target_created(context, request).await,
            MovePhase::ReplicationStarted => self.replication_started(context, request).await,
            MovePhase::ReplicationCaughtUp => self.replication_caught_up(context, request).await,
            MovePhase::WritesFrozen => self.writes_frozen(context, request).await,
            MovePhase::TargetSynced => self.target_synced(context, request).await,
            MovePhase::CutOver => self.cut_over(context, request).await,
            MovePhase::Complete => self.complete(context, request).await,
        }
    }

    async fn undo(
        &self,
        context: &mut JobContext,
        request: &MoveRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        match self.parse_phase(phase)? {
            // Nothing to undo: it reads, and records the source for the other undos (kept for them).
            MovePhase::RequestValidated => Ok(()),
            MovePhase::TargetCreated => self.target_created_undo(context, request).await,
            MovePhase::ReplicationStarted => match self.ends(context, request).await? {
                Some(ends) => self.stop_replication(&ends).await,
                None => Ok(()),
            },
            // Nothing to undo: waiting changes nothing.
            MovePhase::ReplicationCaughtUp => Ok(()),
            MovePhase::WritesFrozen => self.writes_frozen_undo(context, request).await,
            // Nothing to undo: the target's sequences go with its database.
            MovePhase::TargetSynced => Ok(()),
            MovePhase::CutOver => self.cut_over_undo(context, request).await,
            // Nothing can be undone: the source is gone (the cut-over's undo says so and stops the unwinding).
            MovePhase::Complete => Ok(()),
        }
    }

    fn undo_failed_advice(&self) -> Option<&str> {
        Some(crate::UNDO_FAILED_ADVICE)
    }

    fn on_complete(&self, job: &JobRecord) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        let audit = NewAuditEvent {
            actor: job.actor.clone(),
            event_type: "TENANT_MOVED",
            tenant_slug: Some(job.tenant_slug.clone()),
            job_id: Some(job.id.clone()),
            details: serde_json::json!({
                "from_server": job.state.get(FROM_SERVER),
                "to_server": job.params.get("to_server"),
                "freeze_ms": job.state.get("freeze_ms"),
                "freeze_started_ms": job.state.get(FREEZE_STARTED),
                "freeze_ended_ms": job.state.get(FREEZE_ENDED),
                "rows_verified": job.state.get("rows_verified"),
            }),
        };
        (None, vec![audit])
    }

    fn on_failure(
        &self,
        job: &JobRecord,
        error: &CodedError,
    ) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        let mut audit = crate::failure_audit(job, "TENANT_MOVE_FAILED", true, error);
        audit.details["to_server"] = job.params.get("to_server").cloned().unwrap_or_default();
        (None, vec![audit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_freezes_writes_only_between_catching_up_and_the_cut_over() {
        assert_eq!(
            MOVE_PHASES,
            [
                "request_validated",
                "target_created",
                "replication_started",
                "replication_caught_up",
                "writes_frozen",
                "target_synced",
                "cut_over",
                "complete"
            ]
        );
    }

    #[test]
    fn the_request_refuses_unknown_fields() {
        assert!(serde_json::from_value::<MoveRequest>(
            serde_json::json!({ "slug": "acme", "to_server": "pg-2", "force": true })
        )
        .is_err());
    }
}
