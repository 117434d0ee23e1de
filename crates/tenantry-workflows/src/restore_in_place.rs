//! In-place restores: a tenant's data replaced by one of its backups, the tenant keeping its slug, role and
//! credentials (job kind `restore_in_place`). A safety backup of the data as it is comes first, so the restore
//! can be undone: a failed job's undo restores it, and after success it stays a backup like any other
//! (`backups restore SAFETY --in-place` puts the replaced data back).
//!
//! PostgreSQL: the tenant's sessions are ended, then `pg_restore --clean --if-exists --single-transaction` runs as
//! the tenant over its live database, so readers see the old data or the new, never a mixture. It drops and
//! remakes what the backup holds; an object made after the backup that the backup does not hold is left as it is.
//! SQLite: the dump is written beside the file and renamed over it in one step.

use crate::backup::{
    check_backup_store, restore_database, take_backup, take_backup_undo, verify_backup, BackupFile,
};
use crate::plans::{
    effective_settings, settings_rows, tenant_modules_off, tenant_plan, with_modules_off,
    with_profile, OWNED_SETTING_PREFIXES,
};
use crate::platform::{provider_error, Platform};
use crate::provision::check_tenant;
use crate::{registry_error, Submitted};
use tenantry_core::{
    Error as CodedError, ErrorCode, JobKind, Slug, TenantStatus, DATABASE_RESOURCE,
};
use tenantry_engine::{JobContext, PhaseError, Workflow};
use tenantry_providers::credentials::SecretString;
use tenantry_providers::engines::TenantServer;
use tenantry_registry::{JobRecord, NewAuditEvent, NewLease, TenantRecord};

pub const REQUEST_VALIDATED: &str = "request_validated";
/// A backup of the tenant as it is, taken by this job (its id is the job's): what the undo restores.
pub const SAFETY_BACKUP_TAKEN: &str = "safety_backup_taken";
/// The backup's database restored over the tenant's, brought to the latest schema, the plan's settings written.
pub const DATABASE_RESTORED: &str = "database_restored";
pub const CHECKS_PASSED: &str = "checks_passed";
pub const COMPLETE: &str = "complete";

/// The phases of an in-place restore. Their names are API.
pub const RESTORE_IN_PLACE_PHASES: [&str; 5] = [
    REQUEST_VALIDATED,
    SAFETY_BACKUP_TAKEN,
    DATABASE_RESTORED,
    CHECKS_PASSED,
    COMPLETE,
];

/// The job state key set once the restore over the live database has begun: only then has the undo data to put
/// back (a restore that never started left the tenant's own data, written since the safety backup, in place).
const RESTORE_BEGUN: &str = "restore_begun";

/// The parameters of an in-place restore.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreInPlaceRequest {
    /// The tenant whose data is replaced: the one the backup was taken of.
    pub slug: Slug,
    pub backup_id: String,
}

/// Checks an in-place restore of `backup_id` before any job exists: the backup is complete and every file
/// matches its checksum (`E_NOT_FOUND`, `E_BACKUP_CORRUPT`), the tenant it was taken of is registered
/// (`E_NOT_FOUND`: a purged tenant is restored into a new slug) and active (`E_CONFLICT`), on a server of the
/// dump's engine (`E_INVALID_INPUT`), and a safety backup can be written (`PROVISIONING_UNAVAILABLE`).
pub async fn restore_in_place_request(
    platform: &Platform,
    backup_id: &str,
) -> Result<RestoreInPlaceRequest, CodedError> {
    let backup = verify_backup(platform, backup_id).await?;
    let tenant = platform
        .registry
        .get_tenant(&backup.tenant_slug)
        .await
        .map_err(registry_error)?
        .ok_or_else(|| {
            CodedError::new(
                ErrorCode::NotFound,
                format!(
                    "tenant {:?} of backup {backup_id} is not registered; restore it into a new slug with --to",
                    backup.tenant_slug
                ),
            )
        })?;
    require_active(&tenant).map_err(|message| CodedError::new(ErrorCode::Conflict, message))?;
    crate::plans::refuse_shared_tier(
        &platform.settings,
        &tenant.slug,
        &tenant.plan,
        "an in-place restore",
    )?;
    let files: Vec<BackupFile> =
        serde_json::from_value(backup.resources.clone()).unwrap_or_default();
    let database = files
        .iter()
        .find(|file| file.kind == DATABASE_RESOURCE)
        .ok_or_else(|| {
            CodedError::new(
                ErrorCode::BackupCorrupt,
                format!("backup {backup_id}: it holds no database"),
            )
        })?;
    let server = platform
        .registry
        .get_server(&tenant.server_name)
        .await
        .map_err(registry_error)?;
    if server.engine.as_str() != database.engine {
        return Err(CodedError::invalid_input(format!(
            "backup {backup_id} is a {} dump; tenant {:?} is on {} server {:?}",
            database.engine, tenant.slug, server.engine, server.name
        )));
    }
    check_backup_store(platform)?;
    Ok(RestoreInPlaceRequest {
        slug: Slug::parse(&tenant.slug)?,
        backup_id: backup.id,
    })
}

fn require_active(tenant: &TenantRecord) -> Result<(), String> {
    if tenant.status == TenantStatus::Active {
        return Ok(());
    }
    Err(format!(
        "tenant {:?} is {}; only an active tenant is restored in place",
        tenant.slug, tenant.status
    ))
}

/// Records an in-place restore for a worker (or, with `lease`, for the caller) to run.
pub async fn submit_restore_in_place(
    platform: &Platform,
    request: &RestoreInPlaceRequest,
    actor: &str,
    lease: Option<NewLease>,
) -> Result<Submitted, CodedError> {
    let tenant = platform
        .registry
        .require_tenant(request.slug.as_str())
        .await
        .map_err(registry_error)?;
    let job = tenantry_registry::NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        kind: JobKind::RestoreInPlace,
        tenant_slug: tenant.slug.clone(),
        params: serde_json::to_value(request)
            .map_err(|error| CodedError::new(ErrorCode::Internal, error.to_string()))?,
        phases: RESTORE_IN_PLACE_PHASES.map(str::to_owned).to_vec(),
        actor: actor.to_owned(),
        plan: Some(tenant.plan),
        idempotency: None,
        approval: None,
        lease,
    };
    crate::submit::submit_job(platform, job).await
}

/// Restores one tenant's data from one of its backups, over its live database.
pub struct RestoreInPlaceWorkflow {
    platform: Platform,
}

impl RestoreInPlaceWorkflow {
    pub fn new(platform: Platform) -> RestoreInPlaceWorkflow {
        RestoreInPlaceWorkflow { platform }
    }

    async fn tenant(&self, request: &RestoreInPlaceRequest) -> Result<TenantRecord, PhaseError> {
        let tenant = self
            .platform
            .registry
            .get_tenant(request.slug.as_str())
            .await?
            .ok_or_else(|| {
                PhaseError::fatal(
                    ErrorCode::NotFound,
                    format!("tenant {:?} is not registered", request.slug.as_str()),
                )
            })?;
        require_active(&tenant)
            .map_err(|message| PhaseError::fatal(ErrorCode::Conflict, message))?;
        Ok(tenant)
    }

    /// The tenant's server and its own connection URL (the secret, unchanged by the restore).
    async fn tenant_access(
        &self,
        tenant: &TenantRecord,
    ) -> Result<(TenantServer, SecretString), PhaseError> {
        let record = self
            .platform
            .registry
            .get_server(&tenant.server_name)
            .await?;
        let server = self
            .platform
            .tenant_server(&record)
            .await
            .map_err(PhaseError::Fatal)?;
        let url = self
            .platform
            .read_secret(&tenant.secret_ref)
            .await?
            .ok_or_else(|| {
                PhaseError::fatal(
                    ErrorCode::PartialState,
                    format!("secret {:?} is missing", tenant.secret_ref),
                )
            })?;
        Ok((server, url))
    }

    /// Restores `backup_id` over the tenant's database, its sessions ended first, then brings it to the latest
    /// schema and writes its plan's settings (the backup holds those of its own day). Running it again restores
    /// again, the same data.
    async fn restore_over(
        &self,
        context: &mut JobContext,
        tenant: &TenantRecord,
        backup_id: &str,
    ) -> Result<(), PhaseError> {
        let (server, url) = self.tenant_access(tenant).await?;
        server
            .end_sessions(&tenant.resource_name)
            .await
            .map_err(|error| provider_error(ErrorCode::ProvisioningUnavailable, error))?;
        restore_database(
            &self.platform,
            context,
            backup_id,
            &server,
            &url,
            &tenant.resource_name,
        )
        .await?;
        let directory = self
            .platform
            .settings
            .tenant_schema
            .migrations_for(server.engine());
        let version = server
            .run_migrations(&url, &directory)
            .await
            .map_err(|error| provider_error(ErrorCode::MigrationsFailed, error))?;
        let plan = tenant_plan(
            &self.platform.settings,
            &tenant.plan,
            tenant.profile.resource_tier,
        )
        .map_err(PhaseError::Fatal)?;
        // The registry's settings as they are (switched-off modules, security policy included), recomputed from
        // the plan so a plan whose numbers changed since is honoured.
        let rows = settings_rows(&with_profile(
            with_modules_off(
                effective_settings(&self.platform.settings, &plan, &tenant.region, &tenant.slug),
                &tenant_modules_off(&tenant.settings),
            ),
            &tenant.profile,
        ));
        server
            .write_settings(&url, &rows, &OWNED_SETTING_PREFIXES)
            .await
            .map_err(|error| provider_error(ErrorCode::Internal, error))?;
        context
            .log(
                "info",
                &format!(
                    "tenant schema at version {version}; {} settings of plan {} written",
                    rows.len(),
                    tenant.plan
                ),
            )
            .await
    }

    async fn database_restored(
        &self,
        context: &mut JobContext,
        request: &RestoreInPlaceRequest,
    ) -> Result<(), PhaseError> {
        let tenant = self.tenant(request).await?;
        context
            .set_state(RESTORE_BEGUN, serde_json::json!(true))
            .await?;
        self.restore_over(context, &tenant, &request.backup_id)
            .await
    }

    /// Puts the safety backup back, if the restore over the live database began.
    async fn database_restored_undo(
        &self,
        context: &mut JobContext,
        request: &RestoreInPlaceRequest,
    ) -> Result<(), PhaseError> {
        if context.job.state.get(RESTORE_BEGUN) != Some(&serde_json::json!(true)) {
            return Ok(());
        }
        let tenant = self
            .platform
            .registry
            .require_tenant(request.slug.as_str())
            .await?;
        let safety_backup = context.job.id.clone();
        self.restore_over(context, &tenant, &safety_backup).await?;
        context
            .log(
                "info",
                &format!("tenant {} has its data of before the job again (safety backup {safety_backup})", tenant.slug),
            )
            .await?;
        context
            .set_state(RESTORE_BEGUN, serde_json::Value::Null)
            .await
    }
}

impl Workflow for RestoreInPlaceWorkflow {
    type Params = RestoreInPlaceRequest;

    async fn apply(
        &self,
        context: &mut JobContext,
        request: &RestoreInPlaceRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        match phase {
            // Reads only: the tenant is still active and a safety backup can be written. The backup's files were
            // hashed at submission; `database_restored` checks their sizes and authenticates every chunk it reads.
            REQUEST_VALIDATED => {
                self.tenant(request).await?;
                context
                    .set_state(RESTORE_BEGUN, serde_json::Value::Null)
                    .await?;
                check_backup_store(&self.platform).map_err(PhaseError::Fatal)
            }
            SAFETY_BACKUP_TAKEN => {
                let tenant = self.tenant(request).await?;
                let safety_backup = take_backup(&self.platform, context, &tenant).await?;
                context.set_output("safety_backup_id", serde_json::json!(safety_backup));
                context
                    .log(
                        "info",
                        &format!(
                            "safety backup {safety_backup} taken; `tenantry backups restore {safety_backup} --in-place` puts this data back"
                        ),
                    )
                    .await
            }
            DATABASE_RESTORED => self.database_restored(context, request).await,
            CHECKS_PASSED => {
                let tenant = self.tenant(request).await?;
                check_tenant(&self.platform, context, &tenant).await
            }
            COMPLETE => {
                context
                    .log(
                        "info",
                        &format!(
                            "tenant {} holds the data of backup {}",
                            request.slug.as_str(),
                            request.backup_id
                        ),
                    )
                    .await
            }
            other => Err(crate::phases::unknown_phase("restore_in_place", other)),
        }
    }

    async fn undo(
        &self,
        context: &mut JobContext,
        request: &RestoreInPlaceRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        match phase {
            // Nothing to undo: they only read (and log).
            REQUEST_VALIDATED | CHECKS_PASSED | COMPLETE => Ok(()),
            SAFETY_BACKUP_TAKEN => take_backup_undo(&self.platform, context).await,
            DATABASE_RESTORED => self.database_restored_undo(context, request).await,
            other => Err(crate::phases::unknown_phase("restore_in_place", other)),
        }
    }

    fn undo_failed_advice(&self) -> Option<&str> {
        Some(crate::UNDO_FAILED_ADVICE)
    }

    fn on_complete(&self, job: &JobRecord) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        let audit = NewAuditEvent {
            actor: job.actor.clone(),
            event_type: "BACKUP_RESTORED",
            tenant_slug: Some(job.tenant_slug.clone()),
            job_id: Some(job.id.clone()),
            details: serde_json::json!({
                "backup_id": job.params.get("backup_id"),
                "in_place": true,
                "safety_backup_id": job.id,
            }),
        };
        (None, vec![audit])
    }

    fn on_failure(
        &self,
        job: &JobRecord,
        error: &CodedError,
    ) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        // Undone, the tenant has its own data again and stays active; a failed undo is E_PARTIAL_STATE, which
        // doctor and the job record name.
        let mut audit = crate::failure_audit(job, "BACKUP_RESTORE_FAILED", true, error);
        audit.details["backup_id"] = job.params.get("backup_id").cloned().unwrap_or_default();
        audit.details["in_place"] = serde_json::json!(true);
        (None, vec![audit])
    }
}
