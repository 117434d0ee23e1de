//! The offboard workflow: disable login and keep the data, or (with purge) remove every piece of the tenant,
//! including the leftovers of a slug left in `E_PARTIAL_STATE`.

use crate::phases::{phases, unknown_phase};
use crate::platform::{provider_error, secret_store_error, unless_foreign, Platform};
use crate::resources::{reach_resource, resource_server, switch_resource, OnForeign, ResourceAt};
use tenantry_core::{
    EngineKind, Error as CodedError, ErrorCode, Isolation, JobKind, Slug, TenantStatus,
};
use tenantry_engine::{JobContext, PhaseError, Workflow};
use tenantry_providers::engines::{Ownership, TenantServer};
use tenantry_providers::resources::{Observed, WantedResource};
use tenantry_registry::{JobFilter, JobRecord, NewAuditEvent};

phases! {
    /// The phases of an offboarding, in the order of a purge (which has them all).
    enum OffboardPhase {
        RequestValidated = "request_validated",
        LoginDisabled = "login_disabled",
        BackupTaken = "backup_taken",
        DatabaseDropped = "database_dropped",
        ResourcesRemoved = "resources_removed",
        SecretDeleted = "secret_deleted",
        RegistryCleared = "registry_cleared",
        Complete = "complete",
    }
}

/// Offboarding that keeps the data. Their names are API.
pub const OFFBOARD_PHASES: [&str; 3] = OffboardPhase::names([
    OffboardPhase::RequestValidated,
    OffboardPhase::LoginDisabled,
    OffboardPhase::Complete,
]);

/// Offboarding that removes everything. Their names are API.
pub const PURGE_PHASES: [&str; 8] = OffboardPhase::names(OffboardPhase::ALL);

/// The parameters of an offboard job.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffboardRequest {
    pub slug: Slug,
    pub purge: bool,
    /// A purge without the backup it otherwise takes first (`--no-backup`): said explicitly, and audited.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_backup: bool,
}

/// Offboards one tenant.
pub struct OffboardWorkflow {
    platform: Platform,
}

impl OffboardWorkflow {
    pub fn new(platform: Platform) -> OffboardWorkflow {
        OffboardWorkflow { platform }
    }

    /// Checks that there is something to offboard, before a job is created.
    pub async fn validate(
        platform: &Platform,
        request: &OffboardRequest,
    ) -> Result<(), CodedError> {
        let tenant = platform
            .registry
            .get_tenant(request.slug.as_str())
            .await
            .map_err(crate::registry_error)?;
        if request.no_backup && !request.purge {
            return Err(CodedError::invalid_input(
                "--no-backup goes with --purge: an offboarding that keeps the data takes no backup",
            ));
        }
        // A purge of a registered tenant takes a backup first: refused now, before anything is dropped, when no
        // backup can be written.
        if request.purge && !request.no_backup {
            if let Some(tenant) = &tenant {
                crate::backup::check_backup_store(platform)?;
                crate::backup::check_engine_dumps(platform, tenant).await?;
            }
        }
        match tenant {
            Some(tenant) if tenant.status == TenantStatus::Offboarded && !request.purge => Err(CodedError::new(
                ErrorCode::Conflict,
                format!("tenant {:?} is already offboarded; add --purge to remove its data", request.slug.as_str()),
            )),
            Some(_) => Ok(()),
            None if request.purge => {
                let holding = Self::servers_holding(platform, &request.slug).await?;
                if holding.is_empty() && !Self::has_any_secret(platform, &request.slug).await? {
                    let foreign = Self::foreign_pieces(platform, &request.slug).await?;
                    if foreign.is_empty() {
                        Err(CodedError::new(
                            ErrorCode::NotFound,
                            format!("nothing of tenant {:?} exists to purge", request.slug.as_str()),
                        ))
                    } else {
                        Err(CodedError::new(
                            ErrorCode::ForeignObject,
                            format!(
                                "nothing of tenant {:?} is this installation's to purge; {} left untouched",
                                request.slug.as_str(),
                                foreign.join(", ")
                            ),
                        ))
                    }
                } else {
                    Ok(())
                }
            }
            None => Err(CodedError::new(
                ErrorCode::NotFound,
                format!(
                    "tenant {:?} is not registered (to clear leftovers of a failed provisioning, add --purge)",
                    request.slug.as_str()
                ),
            )),
        }
    }

    async fn has_any_secret(platform: &Platform, slug: &Slug) -> Result<bool, CodedError> {
        let others = platform
            .providers
            .iter()
            .map(|provider| provider.secret_name(slug));
        for name in [slug.secret_name(), slug.invitation_secret_name()]
            .into_iter()
            .chain(others)
        {
            let found = platform.secrets.get(&name).await.map_err(|error| {
                CodedError::new(
                    ErrorCode::ProvisioningUnavailable,
                    format!("secret store: {error}"),
                )
            })?;
            if found.is_some() {
                return Ok(true);
            }
        }
        if !crate::wizard::data_source_secrets_of(platform, slug)
            .await?
            .is_empty()
        {
            return Ok(true);
        }
        Ok(false)
    }

    /// Every server that holds a database or role of this slug that is this installation's (for leftovers with
    /// no registry row): marked as ours, or unmarked (made before installation ids) of a slug this registry has
    /// a job for.
    async fn servers_holding(platform: &Platform, slug: &Slug) -> Result<Vec<String>, CodedError> {
        let known = Self::registry_knows(platform, slug).await?;
        Ok(Self::pieces_by_owner(platform, slug)
            .await?
            .into_iter()
            .filter(|(_, ownership)| {
                *ownership == Ownership::Ours || (known && *ownership == Ownership::Unmarked)
            })
            .map(|(server, _)| server)
            .collect())
    }

    /// The servers holding a piece of this slug that is not this installation's, described.
    async fn foreign_pieces(platform: &Platform, slug: &Slug) -> Result<Vec<String>, CodedError> {
        Ok(Self::pieces_by_owner(platform, slug)
            .await?
            .into_iter()
            .filter(|(_, ownership)| *ownership != Ownership::Ours)
            .map(|(server, ownership)| match ownership {
                Ownership::Foreign(id) => format!(
                    "{} on server {server} belongs to installation {id}",
                    slug.resource_name()
                ),
                _ => format!(
                    "{} on server {server} carries no mark of this installation",
                    slug.resource_name()
                ),
            })
            .collect())
    }

    async fn registry_knows(platform: &Platform, slug: &Slug) -> Result<bool, CodedError> {
        let jobs = platform
            .registry
            .list_jobs(&JobFilter {
                tenant_slug: Some(slug.as_str().to_owned()),
                status: None,
                limit: i64::MAX,
            })
            .await
            .map_err(crate::registry_error)?;
        // A provisioning job of this registry made it; the purge job asking does not count.
        Ok(jobs.iter().any(|job| job.kind == JobKind::Provision))
    }

    /// Each server that holds a piece of this slug, with whose the pieces are.
    async fn pieces_by_owner(
        platform: &Platform,
        slug: &Slug,
    ) -> Result<Vec<(String, Ownership)>, CodedError> {
        let mut found = Vec::new();
        for record in platform
            .registry
            .list_servers()
            .await
            .map_err(crate::registry_error)?
            .into_iter()
            .filter(|record| record.engine.hosts_databases())
        {
            let server = platform.tenant_server(&record).await?;
            let unreachable = |error: tenantry_providers::Error| {
                CodedError::new(ErrorCode::AdminConnUnresolved, error.to_string())
            };
            let inventory = server
                .inventory(&slug.resource_name())
                .await
                .map_err(unreachable)?;
            // Or a schema in the server's shared database (`isolation = "schema"`): the slug's plan is unknown
            // here, so both places are looked at; dropping takes both away.
            let schema = match server.engine() {
                EngineKind::Postgres => Some(
                    server
                        .clone()
                        .with_isolation(Isolation::Schema, &[])
                        .map_err(unreachable)?
                        .inventory(&slug.resource_name())
                        .await
                        .map_err(unreachable)?,
                ),
                _ => None,
            };
            let pieces = std::iter::once(inventory)
                .chain(schema)
                .filter(|inventory| inventory.any());
            let pieces: Vec<_> = pieces.collect();
            if !pieces.is_empty() {
                let ownership =
                    Ownership::combine(pieces.into_iter().map(|inventory| inventory.ownership));
                found.push((record.name, ownership));
            }
        }
        Ok(found)
    }

    /// The names of the servers this job works on, recorded in its state by `request_validated`.
    fn target_server_names(&self, context: &JobContext) -> Vec<String> {
        context
            .job
            .state
            .get("servers")
            .and_then(|servers| serde_json::from_value(servers.clone()).ok())
            .unwrap_or_default()
    }

    /// The servers this job works on.
    async fn target_servers(&self, context: &JobContext) -> Result<Vec<TenantServer>, PhaseError> {
        let mut servers = Vec::new();
        for name in self.target_server_names(context) {
            let record = self.platform.registry.get_server(&name).await?;
            servers.push(
                self.platform
                    .tenant_server(&record)
                    .await
                    .map_err(PhaseError::Fatal)?,
            );
        }
        Ok(servers)
    }

    async fn request_validated(
        &self,
        context: &mut JobContext,
        request: &OffboardRequest,
    ) -> Result<(), PhaseError> {
        let tenant = self
            .platform
            .registry
            .get_tenant(request.slug.as_str())
            .await?;
        let servers = match &tenant {
            Some(tenant) => vec![tenant.server_name.clone()],
            None => Self::servers_holding(&self.platform, &request.slug)
                .await
                .map_err(PhaseError::Fatal)?,
        };
        context
            .set_state("servers", serde_json::json!(servers))
            .await?;
        let others = match &tenant {
            Some(_) => self
                .platform
                .registry
                .tenant_resources(request.slug.as_str())
                .await?
                .into_iter()
                .filter(|resource| self.platform.providers.get(&resource.kind).is_some())
                .map(|resource| OtherResource {
                    kind: resource.kind,
                    server: resource.server_name,
                })
                .collect(),
            None => leftover_resources(&self.platform, &request.slug)
                .await
                .map_err(PhaseError::Fatal)?,
        };
        context
            .set_state("resources", serde_json::json!(others))
            .await?;
        if let Some(tenant) = tenant {
            // Recorded once: a second apply (a resume after a crash, or a repeated step) finds the tenant already
            // `offboarding`, and the undo must return it to the status it had before this job, not to that.
            if context.state_str("previous_status").is_none() {
                context
                    .set_state("previous_status", serde_json::json!(tenant.status))
                    .await?;
            }
            let audit = self.audit(
                context,
                "TENANT_OFFBOARDING",
                serde_json::json!({ "purge": request.purge }),
            );
            self.platform
                .registry
                .set_tenant_status(
                    &context.fence,
                    request.slug.as_str(),
                    TenantStatus::Offboarding,
                    &audit,
                )
                .await?;
        }
        Ok(())
    }

    async fn request_validated_undo(&self, context: &mut JobContext) -> Result<(), PhaseError> {
        let Some(previous) = context.state_str("previous_status").map(str::to_owned) else {
            return Ok(());
        };
        let previous = TenantStatus::parse(&previous).map_err(PhaseError::Fatal)?;
        let audit = self.audit(
            context,
            "TENANT_OFFBOARD_UNDONE",
            serde_json::json!({ "status": previous }),
        );
        let slug = context.job.tenant_slug.clone();
        Ok(self
            .platform
            .registry
            .set_tenant_status(&context.fence, &slug, previous, &audit)
            .await?)
    }

    async fn login_disabled(
        &self,
        context: &mut JobContext,
        request: &OffboardRequest,
    ) -> Result<(), PhaseError> {
        for server in self.target_servers(context).await? {
            server
                .disable_login(&request.slug.resource_name())
                .await
                .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        }
        let registered = self
            .platform
            .registry
            .get_tenant(request.slug.as_str())
            .await?
            .is_some();
        for resource in other_resources(context) {
            let at = ResourceAt {
                kind: &resource.kind,
                server_name: &resource.server,
            };
            switch_resource(
                &self.platform,
                context,
                &request.slug,
                at,
                false,
                registered,
                OnForeign::LeaveInPlace,
            )
            .await?;
        }
        context
            .log("info", "login disabled and sessions ended")
            .await
    }

    /// Removes the tenant's other resources and their secrets (purge).
    async fn resources_removed(
        &self,
        context: &mut JobContext,
        request: &OffboardRequest,
    ) -> Result<(), PhaseError> {
        for resource in other_resources(context) {
            let (provider, server) =
                reach_resource(&self.platform, &resource.kind, &resource.server).await?;
            let outcome = provider
                .remove(&server, &request.slug.resource_name())
                .await;
            if !unless_foreign(context, outcome).await? {
                continue;
            }
            self.platform
                .secrets
                .delete_for_job(&context.fence, &provider.secret_name(&request.slug))
                .await
                .map_err(|error| secret_store_error(&error))?;
            context
                .log(
                    "info",
                    &format!(
                        "removed {} {} from server {}",
                        resource.kind,
                        request.slug.resource_name(),
                        resource.server
                    ),
                )
                .await?;
        }
        Ok(())
    }

    async fn login_disabled_undo(&self, context: &mut JobContext) -> Result<(), PhaseError> {
        // Re-enabling would need the tenant's password policy; an operator re-activates deliberately instead.
        context
            .log(
                "warn",
                "login stays disabled after this rollback; re-enable it deliberately if wanted",
            )
            .await
    }

    /// Waits for the server's next purge slot (purges are spaced by `purge_min_interval` across every process).
    async fn wait_for_purge_slot(
        &self,
        context: &mut JobContext,
        server_name: &str,
    ) -> Result<(), PhaseError> {
        const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(600);
        let min_interval_millis =
            i64::try_from(self.platform.settings.purge_min_interval.as_millis())
                .unwrap_or(i64::MAX);
        let started = std::time::Instant::now();
        let mut told = false;
        while let Some(wait_millis) = self
            .platform
            .registry
            .reserve_purge_slot(server_name, min_interval_millis)
            .await?
        {
            if started.elapsed() > MAX_WAIT {
                return Err(PhaseError::retryable(
                    ErrorCode::ProvisioningUnavailable,
                    format!(
                        "no purge slot on server {server_name} for {} s",
                        MAX_WAIT.as_secs()
                    ),
                ));
            }
            if !told {
                context
                    .log(
                        "info",
                        &format!("waiting for the next purge slot on server {server_name}"),
                    )
                    .await?;
                told = true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(wait_millis.unsigned_abs())).await;
        }
        Ok(())
    }

    async fn database_dropped(
        &self,
        context: &mut JobContext,
        request: &OffboardRequest,
    ) -> Result<(), PhaseError> {
        let server_names = self.target_server_names(context);
        for server_name in &server_names {
            self.wait_for_purge_slot(context, server_name).await?;
        }
        for server in self.target_servers(context).await? {
            server
                .drop_database(&request.slug.resource_name())
                .await
                .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        }
        context
            .log("info", &format!("dropped {}", request.slug.resource_name()))
            .await
    }

    async fn secret_deleted(
        &self,
        context: &mut JobContext,
        request: &OffboardRequest,
    ) -> Result<(), PhaseError> {
        // With any copy a rotation left of the credentials it replaced, of every kind (`<secret>.previous`).
        let mut names = vec![
            request.slug.secret_name(),
            request.slug.invitation_secret_name(),
            crate::previous_secret_name(&request.slug.secret_name()),
        ];
        names.extend(
            self.platform
                .providers
                .iter()
                .map(|provider| crate::previous_secret_name(&provider.secret_name(&request.slug))),
        );
        // And the URLs of its data sources (the wizard's step 3).
        names.extend(
            crate::wizard::data_source_secrets_of(&self.platform, &request.slug)
                .await
                .map_err(PhaseError::Fatal)?,
        );
        for name in names {
            self.platform
                .secrets
                .delete_for_job(&context.fence, &name)
                .await
                .map_err(|error| secret_store_error(&error))?;
        }
        context.log("info", "deleted the tenant's secrets").await
    }

    /// `backup_taken`: a purge's backup of a registered tenant, with the id of this job, before anything is
    /// dropped (`--no-backup` skips it, and the job's log and `TENANT_PURGED` say so). A slug with no registry
    /// row (leftovers of a failed provisioning) has no tenant data to keep.
    async fn backup_taken(
        &self,
        context: &mut JobContext,
        request: &OffboardRequest,
    ) -> Result<(), PhaseError> {
        if request.no_backup {
            return context
                .log(
                    "warn",
                    "no backup taken: the purge was asked for with --no-backup",
                )
                .await;
        }
        let Some(tenant) = self
            .platform
            .registry
            .get_tenant(request.slug.as_str())
            .await?
        else {
            return context
                .log("info", "no registered tenant: nothing to back up")
                .await;
        };
        // An earlier purge that failed once it had dropped something (E_PARTIAL_STATE, finished by running the
        // purge again) took its backup while the data was whole: that backup is this purge's, since the data can
        // no longer be dumped.
        let backup_id = match self.earlier_purge_backup(request.slug.as_str()).await? {
            Some(backup_id) => {
                context
                    .log(
                        "info",
                        &format!(
                            "backup {backup_id}, taken by an earlier purge of this tenant, is kept"
                        ),
                    )
                    .await?;
                backup_id
            }
            None => crate::backup::take_backup(&self.platform, context, &tenant).await?,
        };
        context
            .set_state("backup_id", serde_json::json!(backup_id))
            .await?;
        Ok(())
    }

    /// The complete backup of a purge of this tenant that ended `failed` (its undo stopped at data it had
    /// dropped), if there is one.
    async fn earlier_purge_backup(&self, slug: &str) -> Result<Option<String>, PhaseError> {
        for backup in self.platform.registry.list_backups(Some(slug)).await? {
            if backup.status != tenantry_registry::BACKUP_COMPLETE {
                continue;
            }
            let Ok(job) = self.platform.registry.get_job(&backup.job_id).await else {
                continue;
            };
            if job.kind == JobKind::Offboard
                && job.status == tenantry_core::JobStatus::Failed
                && is_purge(&job)
            {
                return Ok(Some(backup.id));
            }
        }
        Ok(None)
    }

    async fn registry_cleared(&self, context: &mut JobContext) -> Result<(), PhaseError> {
        let slug = context.job.tenant_slug.clone();
        let details = serde_json::json!({
            "backup_id": context.state_str("backup_id"),
            "no_backup": context.job.params.get("no_backup").and_then(serde_json::Value::as_bool).unwrap_or(false),
        });
        let audit = self.audit(context, "TENANT_PURGED", details);
        self.platform
            .registry
            .remove_tenant(&context.fence, &slug, &audit)
            .await?;
        Ok(())
    }

    fn audit(
        &self,
        context: &JobContext,
        event_type: &'static str,
        details: serde_json::Value,
    ) -> NewAuditEvent {
        NewAuditEvent {
            actor: context.job.actor.clone(),
            event_type,
            tenant_slug: Some(context.job.tenant_slug.clone()),
            job_id: Some(context.job.id.clone()),
            details,
        }
    }
}

/// One of the tenant's resources besides its database, as an offboard job records it before acting.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct OtherResource {
    kind: String,
    server: String,
}

/// The other resources an offboard job works on, recorded in its state by `request_validated`.
fn other_resources(context: &JobContext) -> Vec<OtherResource> {
    context
        .job
        .state
        .get("resources")
        .and_then(|resources| serde_json::from_value(resources.clone()).ok())
        .unwrap_or_default()
}

/// The other resources of an unregistered slug (what a failed provisioning left) that are this installation's:
/// every server of every kind is asked.
async fn leftover_resources(
    platform: &Platform,
    slug: &Slug,
) -> Result<Vec<OtherResource>, CodedError> {
    let mut found = Vec::new();
    let servers = platform
        .registry
        .list_servers()
        .await
        .map_err(crate::registry_error)?;
    for provider in platform.providers.iter() {
        let wanted = WantedResource::new(slug, serde_json::json!({}));
        for record in servers
            .iter()
            .filter(|record| provider.engines().contains(&record.engine))
        {
            let server = resource_server(platform, record).await?;
            let observed = provider
                .observe(&server, &wanted, None)
                .await
                .map_err(|error| {
                    CodedError::new(
                        ErrorCode::AdminConnUnresolved,
                        format!("server {}: {error}", record.name),
                    )
                })?;
            if matches!(
                observed,
                Observed::Present {
                    ownership: Ownership::Ours,
                    ..
                }
            ) {
                found.push(OtherResource {
                    kind: provider.kind().to_owned(),
                    server: record.name.clone(),
                });
            }
        }
    }
    Ok(found)
}

fn is_purge(job: &JobRecord) -> bool {
    job.params
        .get("purge")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

impl Workflow for OffboardWorkflow {
    type Params = OffboardRequest;

    async fn apply(
        &self,
        context: &mut JobContext,
        request: &OffboardRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        let phase = OffboardPhase::parse(phase).ok_or_else(|| unknown_phase("offboard", phase))?;
        match phase {
            OffboardPhase::RequestValidated => self.request_validated(context, request).await,
            OffboardPhase::LoginDisabled => self.login_disabled(context, request).await,
            OffboardPhase::BackupTaken => self.backup_taken(context, request).await,
            OffboardPhase::DatabaseDropped => self.database_dropped(context, request).await,
            OffboardPhase::ResourcesRemoved => self.resources_removed(context, request).await,
            OffboardPhase::SecretDeleted => self.secret_deleted(context, request).await,
            OffboardPhase::RegistryCleared => self.registry_cleared(context).await,
            OffboardPhase::Complete => Ok(()),
        }
    }

    async fn undo(
        &self,
        context: &mut JobContext,
        request: &OffboardRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        let phase = OffboardPhase::parse(phase).ok_or_else(|| unknown_phase("offboard", phase))?;
        match phase {
            OffboardPhase::RequestValidated => self.request_validated_undo(context).await,
            OffboardPhase::LoginDisabled => self.login_disabled_undo(context).await,
            // The purge did not happen, so the backup it took for it goes too (key, files, row).
            OffboardPhase::BackupTaken => {
                crate::backup::take_backup_undo(&self.platform, context).await
            }
            // Nothing can be undone here: dropped data cannot come back. So the undo fails, and the job ends
            // `failed` with E_PARTIAL_STATE (not `rolled_back`, which would claim the tenant is as it was); the
            // purge is finished by running it again (or `jobs retry`), and doctor names what is left meanwhile.
            OffboardPhase::DatabaseDropped
            | OffboardPhase::ResourcesRemoved
            | OffboardPhase::SecretDeleted
            | OffboardPhase::RegistryCleared => Err(PhaseError::fatal(
                ErrorCode::PartialState,
                format!(
                    "{}: the purge already removed data that cannot come back; finish it with \
                     `tenantry offboard-tenant --slug {} --purge`",
                    phase.name(),
                    request.slug.as_str()
                ),
            )),
            // Nothing to undo: it changes nothing outside the job record.
            OffboardPhase::Complete => Ok(()),
        }
    }

    fn undo_failed_advice(&self) -> Option<&str> {
        Some(crate::UNDO_FAILED_ADVICE)
    }

    fn on_complete(&self, job: &JobRecord) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        if is_purge(job) {
            // The registry row is gone (TENANT_PURGED was written with it).
            return (None, Vec::new());
        }
        let audit = NewAuditEvent {
            actor: job.actor.clone(),
            event_type: "TENANT_OFFBOARDED",
            tenant_slug: Some(job.tenant_slug.clone()),
            job_id: Some(job.id.clone()),
            details: serde_json::json!({ "purge": false }),
        };
        (Some(TenantStatus::Offboarded), vec![audit])
    }

    fn on_failure(
        &self,
        job: &JobRecord,
        error: &CodedError,
    ) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        let audit = crate::failure_audit(job, "TENANT_OFFBOARD_FAILED", true, error);
        // A rolled-back offboard restored the previous status in its undo; a failed one leaves the tenant failed.
        let status = (error.code == ErrorCode::PartialState).then_some(TenantStatus::Failed);
        (status, vec![audit])
    }
}
