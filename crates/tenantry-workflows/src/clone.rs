//! Clones: a new tenant whose data is a copy of another's at one instant (a staging copy, say), with its own role,
//! credentials, labels, resources and first admin (job kind `clone`). A clone is a provisioning whose data comes
//! from a snapshot of the source: `source_snapshot_taken` takes a backup of the source with the backup steps
//! (`pg_dump` reads one snapshot of the database while the source keeps serving; SQLite's `VACUUM INTO` copies one
//! consistent state), provision's phases make the new tenant and restore that backup in `migrations_applied`, and
//! `snapshot_discarded` removes the snapshot (data key, files, row) before `complete`: it is the means of the copy,
//! not a backup of the source, so it is neither listed nor kept afterwards. The snapshot's id is the job's.
//! A failed clone is undone to nothing, the snapshot included.

use crate::backup::{check_backup_store, take_backup, take_backup_undo};
use crate::plans::{approval_needed, require_plan};
use crate::platform::Platform;
use crate::provision::{provision_phases, ProvisionWorkflow};
use crate::schema_fit::refuse_misfit_statements;
use crate::{registry_error, Submitted};
use tenantry_core::{
    Error as CodedError, ErrorCode, JobKind, Plan, RawTenantSpec, Slug, SpecDefaults, TenantSpec,
    TenantStatus,
};
use tenantry_engine::{JobContext, PhaseError, Workflow};
use tenantry_registry::{now_millis, JobRecord, NewAuditEvent, NewJob, NewLease, TenantRecord};

/// A snapshot of the source taken as a backup whose id is this job's.
pub const SOURCE_SNAPSHOT_TAKEN: &str = "source_snapshot_taken";
/// The snapshot removed once the new tenant holds its data.
pub const SNAPSHOT_DISCARDED: &str = "snapshot_discarded";

/// The parameters of a clone job: the source, and the new tenant as a provisioning request whose `restore_from`
/// is the snapshot (the job's own id).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloneRequest {
    pub source: Slug,
    pub tenant: TenantSpec,
}

/// What a clone is asked for, before the checks: the source, the new slug, and what may differ from the source.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawClone<'a> {
    pub source: &'a str,
    pub to: &'a str,
    /// Default: the source's plan.
    pub plan: Option<&'a str>,
    /// Default: the source's first admin.
    pub admin_email: Option<&'a str>,
    /// Default: the source's display name.
    pub display_name: Option<&'a str>,
}

/// The phases of a clone onto `plan`: provision's, with the snapshot taken before the new tenant's secret and
/// discarded before `complete`. Their names are API.
pub fn clone_phases(plan: &Plan) -> Vec<String> {
    let mut phases = Vec::new();
    for phase in provision_phases(plan) {
        match phase.as_str() {
            "secret_set" => phases.push(SOURCE_SNAPSHOT_TAKEN.to_owned()),
            "complete" => phases.push(SNAPSHOT_DISCARDED.to_owned()),
            _ => {}
        }
        phases.push(phase);
    }
    phases
}

fn require_active_source(source: &TenantRecord) -> Result<(), CodedError> {
    if source.status == TenantStatus::Active {
        return Ok(());
    }
    Err(CodedError::new(
        ErrorCode::Conflict,
        format!(
            "tenant {:?} is {}; only an active tenant is cloned",
            source.slug, source.status
        ),
    ))
}

/// Checks a clone: both slugs valid (`E_INVALID_SLUG`), the source registered (`E_NOT_FOUND`) and active
/// (`E_CONFLICT`), the plan known and, if it names an engine, the source's (`E_INVALID_INPUT`: the data is a
/// dump of that engine). The new tenant goes on the source's server (same engine and version, so the dump
/// restores), in its region, with its display name and first admin unless others are given.
pub async fn clone_request(
    platform: &Platform,
    raw: RawClone<'_>,
) -> Result<CloneRequest, CodedError> {
    let source_slug = Slug::parse(raw.source)?;
    let to = Slug::parse(raw.to)?;
    let source = platform
        .registry
        .get_tenant(source_slug.as_str())
        .await
        .map_err(registry_error)?
        .ok_or_else(|| {
            CodedError::new(
                ErrorCode::NotFound,
                format!("tenant {:?} is not registered", source_slug.as_str()),
            )
        })?;
    require_active_source(&source)?;
    crate::plans::refuse_shared_tier(&platform.settings, &source.slug, &source.plan, "a clone")?;
    // The copy is a backup of the source: an engine without backups (MariaDB) has no clone either.
    crate::backup::check_engine_dumps(platform, &source).await?;
    let plan_name = raw.plan.unwrap_or(&source.plan);
    let plan = require_plan(&platform.settings, plan_name)?;
    crate::plans::refuse_shared_tier(&platform.settings, to.as_str(), plan_name, "a clone")?;
    let server = platform
        .registry
        .get_server(&source.server_name)
        .await
        .map_err(registry_error)?;
    if let Some(engine) = plan.engine.filter(|engine| *engine != server.engine) {
        return Err(CodedError::invalid_input(format!(
            "plan {plan_name:?} puts tenants on {engine}; tenant {:?} is on {} server {:?}, and its data is a {} dump",
            source.slug, server.engine, server.name, server.engine
        )));
    }
    let tenant = TenantSpec::parse(
        RawTenantSpec {
            slug: to.as_str(),
            display_name: raw.display_name.unwrap_or(&source.display_name),
            admin_email: raw.admin_email.unwrap_or(&source.admin_email),
            plan: Some(plan_name),
            region: Some(&source.region),
            server: Some(&source.server_name),
            budget: None,
            dry_run: false,
        },
        SpecDefaults {
            plan: &platform.settings.default_plan,
            region: &platform.settings.default_region,
        },
    )?;
    Ok(CloneRequest {
        source: source_slug,
        tenant,
    })
}

/// Records a clone job for a worker (or, with `lease`, for the caller) to run: the new slug is free
/// (`E_ALREADY_PROVISIONED`), the admin seed fits, the snapshot can be written, and the plan's approval rule
/// holds as for any provisioning.
pub async fn submit_clone(
    platform: &Platform,
    request: &CloneRequest,
    actor: &str,
    lease: Option<NewLease>,
) -> Result<Submitted, CodedError> {
    let mut request = request.clone();
    ProvisionWorkflow::validate(platform, &request.tenant)?;
    if let Some(tenant) = platform
        .registry
        .get_tenant(request.tenant.slug.as_str())
        .await
        .map_err(registry_error)?
    {
        return Err(CodedError::new(
            ErrorCode::AlreadyProvisioned,
            format!(
                "tenant {:?} already exists (status {})",
                tenant.slug, tenant.status
            ),
        ));
    }
    check_backup_store(platform)?;
    refuse_misfit_statements(platform, &request.tenant).await?;
    let plan = require_plan(&platform.settings, &request.tenant.plan)?;
    let approval = approval_needed(
        &platform.settings,
        plan,
        &request.tenant.region,
        None,
        now_millis(),
    );
    let id = uuid::Uuid::now_v7().to_string();
    request.tenant.restore_from = Some(id.clone());
    let job = NewJob {
        id,
        kind: JobKind::Clone,
        tenant_slug: request.tenant.slug.as_str().to_owned(),
        params: serde_json::to_value(&request)
            .map_err(|error| CodedError::new(ErrorCode::Internal, error.to_string()))?,
        phases: clone_phases(plan),
        actor: actor.to_owned(),
        plan: Some(request.tenant.plan.clone()),
        idempotency: None,
        approval,
        lease,
    };
    crate::submit::submit_job(platform, job).await
}

/// Clones one tenant: the snapshot steps here, every other phase provision's.
pub struct CloneWorkflow {
    platform: Platform,
    provision: ProvisionWorkflow,
}

impl CloneWorkflow {
    pub fn new(platform: Platform) -> CloneWorkflow {
        CloneWorkflow {
            provision: ProvisionWorkflow::new(platform.clone()),
            platform,
        }
    }

    async fn source_snapshot_taken(
        &self,
        context: &mut JobContext,
        request: &CloneRequest,
    ) -> Result<(), PhaseError> {
        let source = self
            .platform
            .registry
            .get_tenant(request.source.as_str())
            .await?
            .ok_or_else(|| {
                PhaseError::fatal(
                    ErrorCode::NotFound,
                    format!("tenant {:?} is not registered", request.source.as_str()),
                )
            })?;
        require_active_source(&source).map_err(PhaseError::Fatal)?;
        let snapshot = take_backup(&self.platform, context, &source).await?;
        context
            .log(
                "info",
                &format!(
                    "snapshot {snapshot} of tenant {} taken; it is removed once the clone holds its data",
                    source.slug
                ),
            )
            .await
    }
}

impl Workflow for CloneWorkflow {
    type Params = CloneRequest;

    async fn apply(
        &self,
        context: &mut JobContext,
        request: &CloneRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        match phase {
            SOURCE_SNAPSHOT_TAKEN => self.source_snapshot_taken(context, request).await,
            SNAPSHOT_DISCARDED => {
                take_backup_undo(&self.platform, context).await?;
                context.log("info", "snapshot removed").await
            }
            _ => self.provision.apply(context, &request.tenant, phase).await,
        }
    }

    async fn undo(
        &self,
        context: &mut JobContext,
        request: &CloneRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        match phase {
            SOURCE_SNAPSHOT_TAKEN => take_backup_undo(&self.platform, context).await,
            // Nothing to undo: a removed snapshot is not brought back; `source_snapshot_taken`'s undo removes
            // whatever is left of it.
            SNAPSHOT_DISCARDED => Ok(()),
            _ => self.provision.undo(context, &request.tenant, phase).await,
        }
    }

    fn undo_failed_advice(&self) -> Option<&str> {
        Some(crate::UNDO_FAILED_ADVICE)
    }

    fn on_complete(&self, job: &JobRecord) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        let source = job.params.get("source").cloned().unwrap_or_default();
        let plan = job
            .params
            .get("tenant")
            .and_then(|tenant| tenant.get("plan"))
            .cloned()
            .unwrap_or_default();
        let event = |event_type: &'static str, details: serde_json::Value| NewAuditEvent {
            actor: job.actor.clone(),
            event_type,
            tenant_slug: Some(job.tenant_slug.clone()),
            job_id: Some(job.id.clone()),
            details,
        };
        // TENANT_PROVISIONED as for any new tenant (its webhooks and its first admin's invitation follow it), and
        // TENANT_CLONED naming where its data came from.
        (
            Some(TenantStatus::Active),
            vec![
                event(
                    "TENANT_PROVISIONED",
                    serde_json::json!({ "server": job.placed_server, "plan": plan }),
                ),
                event(
                    "TENANT_CLONED",
                    serde_json::json!({ "source": source, "server": job.placed_server, "plan": plan }),
                ),
            ],
        )
    }

    fn on_failure(
        &self,
        job: &JobRecord,
        error: &CodedError,
    ) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        let mut cloned = crate::failure_audit(job, "TENANT_CLONE_FAILED", true, error);
        cloned.details["source"] = job.params.get("source").cloned().unwrap_or_default();
        (
            Some(TenantStatus::Failed),
            vec![
                crate::failure_audit(job, "TENANT_PROVISION_FAILED", true, error),
                cloned,
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_is_taken_before_the_secret_and_discarded_before_complete() {
        let plan: Plan = serde_json::from_value(serde_json::json!({
            "name": "team",
            "connection_limit": 10,
            "statement_timeout_ms": 1000,
            "resources": ["database", "cache"],
        }))
        .unwrap();
        let phases = clone_phases(&plan);
        let position = |name: &str| phases.iter().position(|phase| phase == name).unwrap();
        assert_eq!(position(SOURCE_SNAPSHOT_TAKEN) + 1, position("secret_set"));
        assert!(position(SOURCE_SNAPSHOT_TAKEN) > position("state_checked"));
        assert_eq!(position(SNAPSHOT_DISCARDED) + 1, position("complete"));
        assert_eq!(phases.len(), provision_phases(&plan).len() + 2);
    }
}
