//! tenantry's operations as ordered phase lists over the providers and the registry: provisioning a tenant,
//! offboarding one, and the doctor that compares registry, servers and secret store.

mod backup;
mod change_requests;
mod checks;
mod clone;
mod costs;
mod doctor;
mod fleet;
mod invitations;
mod moves;
mod notify;
mod offboard;
mod phases;
mod plans;
mod platform;
mod pool;
mod provision;
mod reconcile;
mod resources;
mod restore_in_place;
mod rollout;
mod rotate;
mod schema_fit;
mod set_plan;
mod submit;
mod suspend;
mod wizard;
mod worker;

pub use backup::{
    backup_key_name, backup_phases, backup_store, check_backup_store, prune_backups, restore_spec,
    submit_backup, validate_backup, verify_backup, BackupFile, BackupRequest, BackupWorkflow,
};
pub use change_requests::{decide_change_request, file_change_request, ChangeRequestInput};
pub use checks::{
    run_checks, CheckReport, CheckResult, CheckStatus, NEIGHBOURS_IN_JOB, NEIGHBOURS_ON_DEMAND,
};
pub use clone::{
    clone_phases, clone_request, submit_clone, CloneRequest, CloneWorkflow, RawClone,
    SNAPSHOT_DISCARDED, SOURCE_SNAPSHOT_TAKEN,
};
pub use costs::{
    cost_report, render_tenant_metrics, tenant_metrics_text, CostReport, CostTotal, TenantCost,
};
pub use doctor::{run_doctor, DoctorReport, Finding};
pub use fleet::{
    add_server, admin_secret_name, harden_server, public_url_with_dns, AddedServer, DnsSettings,
    Hardening, ServerRequest,
};
pub use invitations::{
    check_url_form, invitation_state, resend as resend_invitation, InvitationSettings,
    InvitationTemplate, InvitationView, Resent, SMTP_PASSWORD_SECRET,
};
pub use moves::{validate_move, MoveRequest, MoveWorkflow, MOVE_PHASES};
pub use notify::{
    add_webhook, remove_webhook, run_sender, send_due, webhook_secret_name, WebhookRequest,
    SENDER_POLL, WEBHOOK_FORMATS,
};
pub use offboard::{OffboardRequest, OffboardWorkflow, OFFBOARD_PHASES, PURGE_PHASES};
pub use plans::{
    approval_needed, effective_settings, modules_off_after, monthly_estimate, tenant_modules_off,
    validate_module_switches, MODULES_OFF_KEY,
};
pub use platform::{
    ApprovalSettings, BackupSettings, NotificationSettings, Platform, PricingSettings, Settings,
    TenantSchema, WarmPoolSettings,
};
pub use pool::{
    fill_warm_pool, prune_warm_pool, refill_warm_pools, run_warm_pool_refill, warm_pool_status,
    RefillOutcome, WarmPoolStatus, REFILL_INTERVAL,
};
pub use provision::{provision_phases, ProvisionWorkflow, DRY_RUN_PHASES, PROVISION_PHASES};
pub use reconcile::{
    validate_kind as validate_reconcile_kind, ReconcileRequest, ReconcileWorkflow, FLEET_SUBJECT,
    RECONCILE_PHASES,
};
pub use resources::{extra_kinds, resource_server};
pub use restore_in_place::{
    restore_in_place_request, submit_restore_in_place, RestoreInPlaceRequest,
    RestoreInPlaceWorkflow, RESTORE_IN_PLACE_PHASES,
};
pub use rollout::{
    assign_waves, control_rollout, list_rollouts, refuse_drift, require_rollout_job, rollout_view,
    schema_plan, summary as rollout_summary, RolloutControl, RolloutOptions, RolloutRequest,
    RolloutView, RolloutWorkflow, SchemaPlan, TenantSchemaState, Waves, ROLLOUT_PHASES,
    ROLLOUT_SUBJECT,
};
pub use rotate::{
    previous_secret_name, rotate_phases, validate_rotation, RotateRequest, RotateWorkflow,
    RotationScope, DEFAULT_GRACE_SECONDS, MAX_GRACE_SECONDS, PREVIOUS_SUFFIX,
};
pub use set_plan::{SetPlanRequest, SetPlanWorkflow, SET_PLAN_PHASES};
pub use submit::{
    decide_approval, plan_rollout, submit_move, submit_offboard, submit_offboard_to_run,
    submit_provision, submit_provision_to_run, submit_reconcile_to_run, submit_rollout,
    submit_rotation, submit_set_plan, submit_set_plan_to_run, submit_suspension,
    IdempotencyRequest, RolloutSubmission, Submitted,
};
pub use suspend::{
    parse_reason as parse_suspension_reason, suspend_phases, validate_suspension, Direction,
    SuspendRequest, SuspendWorkflow, MAX_REASON_CHARS,
};
pub use wizard::{
    check_data_source, submit_provision_with_data_sources,
    submit_provision_with_data_sources_to_run, DataSourceCheck, DATA_SOURCE_CHECK_TIMEOUT,
};
pub use worker::{drive, run_workers, JobEventHook, IDLE_POLL, MAX_SWEEP};

use tenantry_core::{Error as CodedError, ErrorCode, JobKind};
use tenantry_engine::{JobOutcome, Runner};

/// What a job whose undo failed tells its reader: `doctor` names what the job left behind, with the fix.
pub(crate) const UNDO_FAILED_ADVICE: &str = "run `tenantry doctor`";

/// How an attempt to run a job in this process ended.
#[derive(Debug)]
pub enum RunHere {
    /// This process ran it (or found it already ended).
    Ran(Box<JobOutcome>),
    /// Another live process holds its lease and is running it.
    HeldElsewhere { owner: String },
}

/// Runs a job of any kind with the workflow its kind names; `E_CONFLICT` when another process holds it.
pub async fn run_job(
    platform: &Platform,
    runner: &Runner,
    job_id: &str,
) -> Result<JobOutcome, CodedError> {
    match try_run_job(platform, runner, job_id).await? {
        RunHere::Ran(outcome) => Ok(*outcome),
        RunHere::HeldElsewhere { owner } => Err(engine_error(tenantry_engine::Error::Busy {
            job_id: job_id.to_owned(),
            owner,
        })),
    }
}

/// Runs a job here if nobody else is running it (taking it over from a process on this host that has exited).
pub async fn try_run_job(
    platform: &Platform,
    runner: &Runner,
    job_id: &str,
) -> Result<RunHere, CodedError> {
    let job = platform
        .registry
        .get_job(job_id)
        .await
        .map_err(registry_error)?;
    if job.status == tenantry_core::JobStatus::AwaitingApproval {
        return Err(CodedError::new(
            ErrorCode::Conflict,
            format!(
                "job {job_id} is awaiting approval; a PLATFORM_ADMIN other than {} approves it with `tenantry jobs approve {job_id}`",
                job.actor
            ),
        ));
    }
    let ran = match job.kind {
        JobKind::Provision | JobKind::Restore => {
            runner
                .run_job(&ProvisionWorkflow::new(platform.clone()), job_id)
                .await
        }
        JobKind::Backup => {
            runner
                .run_job(&BackupWorkflow::new(platform.clone()), job_id)
                .await
        }
        JobKind::Clone => {
            runner
                .run_job(&CloneWorkflow::new(platform.clone()), job_id)
                .await
        }
        JobKind::RestoreInPlace => {
            runner
                .run_job(&RestoreInPlaceWorkflow::new(platform.clone()), job_id)
                .await
        }
        JobKind::Offboard => {
            runner
                .run_job(&OffboardWorkflow::new(platform.clone()), job_id)
                .await
        }
        JobKind::SetPlan => {
            runner
                .run_job(&SetPlanWorkflow::new(platform.clone()), job_id)
                .await
        }
        JobKind::Reconcile => {
            runner
                .run_job(&ReconcileWorkflow::new(platform.clone()), job_id)
                .await
        }
        JobKind::Rollout => {
            let workflow =
                RolloutWorkflow::new(platform.clone(), runner.owner(), runner.lease_ttl());
            runner.run_job(&workflow, job_id).await
        }
        JobKind::Suspend => {
            let workflow = SuspendWorkflow::new(platform.clone(), Direction::Suspend);
            runner.run_job(&workflow, job_id).await
        }
        JobKind::Resume => {
            let workflow = SuspendWorkflow::new(platform.clone(), Direction::Resume);
            runner.run_job(&workflow, job_id).await
        }
        JobKind::RotateCredentials => {
            runner
                .run_job(&RotateWorkflow::new(platform.clone()), job_id)
                .await
        }
        JobKind::Move => {
            runner
                .run_job(&MoveWorkflow::new(platform.clone()), job_id)
                .await
        }
    };
    match ran {
        Ok(outcome) => Ok(RunHere::Ran(Box::new(outcome))),
        Err(tenantry_engine::Error::Busy { owner, .. }) => Ok(RunHere::HeldElsewhere { owner }),
        Err(error) => Err(engine_error(error)),
    }
}

/// Runs a job whose lease the caller holds (a job it created leased, `submit_*_to_run`) to its end.
pub async fn drive_job(
    platform: &Platform,
    runner: &Runner,
    fence: tenantry_registry::Fence,
) -> Result<JobOutcome, CodedError> {
    let job = platform
        .registry
        .get_job(&fence.job_id)
        .await
        .map_err(registry_error)?;
    drive_by_kind(platform, runner, job.kind, fence)
        .await
        .map_err(engine_error)
}

/// Drives a job whose lease `fence` holds with the workflow its kind names.
pub(crate) async fn drive_by_kind(
    platform: &Platform,
    runner: &Runner,
    kind: JobKind,
    fence: tenantry_registry::Fence,
) -> Result<JobOutcome, tenantry_engine::Error> {
    match kind {
        JobKind::Provision | JobKind::Restore => {
            runner
                .drive(&ProvisionWorkflow::new(platform.clone()), fence)
                .await
        }
        JobKind::Backup => {
            runner
                .drive(&BackupWorkflow::new(platform.clone()), fence)
                .await
        }
        JobKind::Clone => {
            runner
                .drive(&CloneWorkflow::new(platform.clone()), fence)
                .await
        }
        JobKind::RestoreInPlace => {
            runner
                .drive(&RestoreInPlaceWorkflow::new(platform.clone()), fence)
                .await
        }
        JobKind::Offboard => {
            runner
                .drive(&OffboardWorkflow::new(platform.clone()), fence)
                .await
        }
        JobKind::SetPlan => {
            runner
                .drive(&SetPlanWorkflow::new(platform.clone()), fence)
                .await
        }
        JobKind::Reconcile => {
            runner
                .drive(&ReconcileWorkflow::new(platform.clone()), fence)
                .await
        }
        JobKind::Rollout => {
            let workflow =
                RolloutWorkflow::new(platform.clone(), runner.owner(), runner.lease_ttl());
            runner.drive(&workflow, fence).await
        }
        JobKind::Suspend => {
            runner
                .drive(
                    &SuspendWorkflow::new(platform.clone(), Direction::Suspend),
                    fence,
                )
                .await
        }
        JobKind::Resume => {
            runner
                .drive(
                    &SuspendWorkflow::new(platform.clone(), Direction::Resume),
                    fence,
                )
                .await
        }
        JobKind::RotateCredentials => {
            runner
                .drive(&RotateWorkflow::new(platform.clone()), fence)
                .await
        }
        JobKind::Move => {
            runner
                .drive(&MoveWorkflow::new(platform.clone()), fence)
                .await
        }
    }
}

/// The audit event a workflow writes when its job ends rolled back or failed: the code and message, about the
/// job's tenant (`about_tenant`) or about no one tenant (a fleet job).
pub(crate) fn failure_audit(
    job: &tenantry_registry::JobRecord,
    event_type: &'static str,
    about_tenant: bool,
    error: &CodedError,
) -> tenantry_registry::NewAuditEvent {
    tenantry_registry::NewAuditEvent {
        actor: job.actor.clone(),
        event_type,
        tenant_slug: about_tenant.then(|| job.tenant_slug.clone()),
        job_id: Some(job.id.clone()),
        details: serde_json::json!({ "error_code": error.code, "error_message": error.message }),
    }
}

/// A registry failure as a coded error for the caller.
pub fn registry_error(error: tenantry_registry::Error) -> CodedError {
    match error {
        tenantry_registry::Error::NotFound { what } => {
            CodedError::new(ErrorCode::NotFound, format!("{what} not found"))
        }
        tenantry_registry::Error::Conflict { constraint } => CodedError::new(
            ErrorCode::Conflict,
            format!("conflicts with existing data ({constraint})"),
        ),
        tenantry_registry::Error::Unavailable(message) => CodedError::new(
            ErrorCode::ProvisioningUnavailable,
            format!("the registry is unavailable: {message}"),
        ),
        other => CodedError::new(ErrorCode::Internal, other.to_string()),
    }
}

/// A runtime failure as a coded error for the caller.
pub fn engine_error(error: tenantry_engine::Error) -> CodedError {
    match error {
        tenantry_engine::Error::Registry(error) => registry_error(error),
        busy @ tenantry_engine::Error::Busy { .. } => {
            CodedError::new(ErrorCode::Conflict, busy.to_string())
        }
        reopen @ tenantry_engine::Error::NotReopenable { .. } => {
            CodedError::new(ErrorCode::Conflict, reopen.to_string())
        }
        handed_back @ tenantry_engine::Error::HandedBack { .. } => {
            CodedError::new(ErrorCode::ProvisioningUnavailable, handed_back.to_string())
        }
    }
}
