//! Submitting jobs, the same for every way in (CLI, API, console): validate, honour an idempotency key, record.

use crate::offboard::{OffboardRequest, OffboardWorkflow, OFFBOARD_PHASES, PURGE_PHASES};
use crate::plans::{approval_needed, require_plan};
use crate::provision::{provision_phases, ProvisionWorkflow, DRY_RUN_PHASES};
use crate::reconcile::{validate_kind, ReconcileRequest, FLEET_SUBJECT, RECONCILE_PHASES};
use crate::schema_fit::refuse_misfit_statements;
use crate::set_plan::{SetPlanRequest, SetPlanWorkflow, SET_PLAN_PHASES};
use crate::suspend::{suspend_phases, validate_suspension, Direction, SuspendRequest};
use crate::{registry_error, Platform};
use sha2::{Digest, Sha256};
use tenantry_core::{Error as CodedError, ErrorCode, JobKind, TenantSpec};
use tenantry_registry::{
    now_millis, ApprovalDecision, ApprovalOutcome, IdempotencyKey, JobRecord, NewJob, NewLease,
};

/// A client's idempotency key for a submission: who sent it and the key itself.
#[derive(Debug, Clone)]
pub struct IdempotencyRequest {
    pub principal: String,
    pub key: String,
}

/// The outcome of a submission.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// A new job was recorded.
    New(JobRecord),
    /// The same idempotency key and request were seen before: this is that job.
    Repeated(JobRecord),
}

impl Submitted {
    pub fn job(&self) -> &JobRecord {
        match self {
            Submitted::New(job) | Submitted::Repeated(job) => job,
        }
    }
}

fn request_hash(params: &serde_json::Value) -> String {
    Sha256::digest(params.to_string().as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The job an idempotency key already made, if the request matches; `E_CONFLICT` if it does not.
async fn remembered_job(
    platform: &Platform,
    idempotency: &IdempotencyKey,
) -> Result<Option<JobRecord>, CodedError> {
    let Some(record) = platform
        .registry
        .get_idempotency(&idempotency.principal, &idempotency.key)
        .await
        .map_err(registry_error)?
    else {
        return Ok(None);
    };
    if record.request_hash != idempotency.request_hash {
        return Err(CodedError::new(
            ErrorCode::Conflict,
            format!(
                "Idempotency-Key {:?} was used with a different request",
                idempotency.key
            ),
        ));
    }
    Ok(Some(
        platform
            .registry
            .get_job(&record.job_id)
            .await
            .map_err(registry_error)?,
    ))
}

/// Records a job, or returns the one its idempotency key already made.
async fn submit(
    platform: &Platform,
    mut job: NewJob,
    idempotency: Option<IdempotencyRequest>,
) -> Result<Submitted, CodedError> {
    job.idempotency = idempotency.map(|request| IdempotencyKey {
        principal: request.principal,
        key: request.key,
        request_hash: request_hash(&job.params),
    });
    if let Some(idempotency) = &job.idempotency {
        if let Some(existing) = remembered_job(platform, idempotency).await? {
            return Ok(Submitted::Repeated(existing));
        }
    }
    match platform.registry.create_job(&job).await {
        Ok(record) => Ok(Submitted::New(record)),
        Err(tenantry_registry::Error::Conflict { constraint })
            if constraint == "idempotency_key" =>
        {
            // Another request with the same key won the race; answer as it was answered.
            let idempotency = job.idempotency.as_ref().ok_or_else(|| {
                CodedError::new(ErrorCode::Internal, "idempotency conflict without a key")
            })?;
            remembered_job(platform, idempotency)
                .await?
                .map(Submitted::Repeated)
                .ok_or_else(|| {
                    CodedError::new(ErrorCode::Conflict, "the idempotency key is in use")
                })
        }
        Err(tenantry_registry::Error::Conflict { .. }) => {
            let holder = platform
                .registry
                .live_job_for_slug(&job.tenant_slug)
                .await
                .map_err(registry_error)?;
            Err(CodedError::new(
                ErrorCode::Conflict,
                match holder {
                    Some(holder) => format!(
                        "tenant {:?} already has an unfinished {} job {} ({})",
                        job.tenant_slug, holder.kind, holder.id, holder.status
                    ),
                    None => format!("tenant {:?} already has an unfinished job", job.tenant_slug),
                },
            ))
        }
        Err(error) => Err(registry_error(error)),
    }
}

/// Records a job another module validated and built (a backup).
pub(crate) async fn submit_job(platform: &Platform, job: NewJob) -> Result<Submitted, CodedError> {
    submit(platform, job, None).await
}

/// Validates a provisioning request and records its job, for a worker to run.
pub async fn submit_provision(
    platform: &Platform,
    spec: &TenantSpec,
    actor: &str,
    idempotency: Option<IdempotencyRequest>,
) -> Result<Submitted, CodedError> {
    submit_provision_with(platform, spec, actor, idempotency, None).await
}

/// Validates a provisioning request and records its job already leased to the caller's runner (unless it waits
/// for approval), so the caller runs it and no worker can claim it first. The CLI runs its jobs this way, so the
/// one-time secrets reach the person who typed the command even while `serve` or `worker` runs on the registry.
pub async fn submit_provision_to_run(
    platform: &Platform,
    spec: &TenantSpec,
    actor: &str,
    lease: NewLease,
) -> Result<Submitted, CodedError> {
    submit_provision_with(platform, spec, actor, None, Some(lease)).await
}

pub(crate) async fn submit_provision_with(
    platform: &Platform,
    spec: &TenantSpec,
    actor: &str,
    idempotency: Option<IdempotencyRequest>,
    lease: Option<NewLease>,
) -> Result<Submitted, CodedError> {
    ProvisionWorkflow::validate(platform, spec)?;
    let params = serde_json::to_value(spec)
        .map_err(|error| CodedError::new(ErrorCode::Internal, error.to_string()))?;
    if !spec.dry_run {
        if let Some(tenant) = platform
            .registry
            .get_tenant(spec.slug.as_str())
            .await
            .map_err(registry_error)?
        {
            // A repeated request whose job made this tenant is answered with that job, not an error.
            if let Some(request) = &idempotency {
                let key = IdempotencyKey {
                    principal: request.principal.clone(),
                    key: request.key.clone(),
                    request_hash: request_hash(&params),
                };
                if let Some(existing) = remembered_job(platform, &key).await? {
                    return Ok(Submitted::Repeated(existing));
                }
            }
            return Err(CodedError::new(
                ErrorCode::AlreadyProvisioned,
                format!(
                    "tenant {:?} already exists (status {})",
                    tenant.slug, tenant.status
                ),
            ));
        }
    }
    // The operator's seed and check are judged against the tenant schema before any job exists, where that
    // can be done without a tenant database.
    refuse_misfit_statements(platform, spec).await?;
    let phases = if spec.dry_run {
        DRY_RUN_PHASES.map(str::to_owned).to_vec()
    } else {
        provision_phases(require_plan(&platform.settings, &spec.plan)?)
    };
    // A dry run creates nothing, so it never waits for anyone.
    let approval = if spec.dry_run {
        None
    } else {
        let plan = crate::provision::spec_plan(&platform.settings, spec)?;
        approval_needed(
            &platform.settings,
            &plan,
            &spec.region,
            spec.budget,
            now_millis(),
        )
    };
    let job = NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        // A restore is a provisioning whose data comes from a backup: the same phases, its own kind.
        kind: if spec.restore_from.is_some() {
            JobKind::Restore
        } else {
            JobKind::Provision
        },
        tenant_slug: spec.slug.as_str().to_owned(),
        params,
        phases,
        actor: actor.to_owned(),
        plan: Some(spec.plan.clone()),
        idempotency: None,
        approval,
        lease,
    };
    submit(platform, job, idempotency).await
}

/// Validates an offboarding request and records its job, for a worker to run.
pub async fn submit_offboard(
    platform: &Platform,
    request: &OffboardRequest,
    actor: &str,
) -> Result<Submitted, CodedError> {
    submit_offboard_with(platform, request, actor, None).await
}

/// Validates an offboarding request and records its job already leased to the caller's runner.
pub async fn submit_offboard_to_run(
    platform: &Platform,
    request: &OffboardRequest,
    actor: &str,
    lease: NewLease,
) -> Result<Submitted, CodedError> {
    submit_offboard_with(platform, request, actor, Some(lease)).await
}

async fn submit_offboard_with(
    platform: &Platform,
    request: &OffboardRequest,
    actor: &str,
    lease: Option<NewLease>,
) -> Result<Submitted, CodedError> {
    OffboardWorkflow::validate(platform, request).await?;
    let plan = platform
        .registry
        .get_tenant(request.slug.as_str())
        .await
        .map_err(registry_error)?
        .map(|tenant| tenant.plan);
    let job = NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        kind: JobKind::Offboard,
        tenant_slug: request.slug.as_str().to_owned(),
        params: serde_json::to_value(request)
            .map_err(|error| CodedError::new(ErrorCode::Internal, error.to_string()))?,
        phases: if request.purge {
            PURGE_PHASES.map(str::to_owned).to_vec()
        } else {
            OFFBOARD_PHASES.map(str::to_owned).to_vec()
        },
        actor: actor.to_owned(),
        plan,
        idempotency: None,
        approval: None,
        lease,
    };
    submit(platform, job, None).await
}

/// Validates a plan change and records its job (waiting for approval when the budget or the plan says so).
pub async fn submit_set_plan(
    platform: &Platform,
    request: &SetPlanRequest,
    actor: &str,
) -> Result<Submitted, CodedError> {
    submit_set_plan_with(platform, request, actor, None).await
}

/// Validates a plan change and records its job already leased to the caller's runner (unless it waits for
/// approval).
pub async fn submit_set_plan_to_run(
    platform: &Platform,
    request: &SetPlanRequest,
    actor: &str,
    lease: NewLease,
) -> Result<Submitted, CodedError> {
    submit_set_plan_with(platform, request, actor, Some(lease)).await
}

async fn submit_set_plan_with(
    platform: &Platform,
    request: &SetPlanRequest,
    actor: &str,
    lease: Option<NewLease>,
) -> Result<Submitted, CodedError> {
    let job = set_plan_job(platform, request, actor, lease, true).await?;
    submit(platform, job, None).await
}

/// A validated set-plan job, not yet recorded: the previous plan and modules filled in from the registry, and an
/// approval asked for when `may_need_approval` and the budget or the plan says so (an approved change request
/// was decided by a PLATFORM_ADMIN other than its requester already).
pub(crate) async fn set_plan_job(
    platform: &Platform,
    request: &SetPlanRequest,
    actor: &str,
    lease: Option<NewLease>,
    may_need_approval: bool,
) -> Result<NewJob, CodedError> {
    let tenant = SetPlanWorkflow::validate(platform, request).await?;
    let plan = require_plan(&platform.settings, &request.plan)?;
    // A tenant's place (its own database, or a schema in the shared one) is made by provisioning; moving between
    // the two is a data move no plan change performs.
    if let Some(current) = platform.settings.plan(&tenant.plan) {
        if current.isolation != plan.isolation {
            return Err(CodedError::invalid_input(format!(
                "plan {:?} places tenants with {} isolation and tenant {:?} has {} isolation; \
                 a plan change cannot move a tenant between a database of its own and a shared schema",
                plan.name,
                plan.isolation.as_str(),
                tenant.slug,
                current.isolation.as_str()
            )));
        }
    }
    let request = SetPlanRequest {
        previous_plan: tenant.plan.clone(),
        previous_modules_off: crate::plans::tenant_modules_off(&tenant.settings),
        previous_resource_tier: tenant.profile.resource_tier,
        ..request.clone()
    };
    // The price the approval judges is the one the tenant will pay: the new plan at the new tier.
    let plan = &crate::plans::tenant_plan(&platform.settings, &request.plan, request.tier(true))?;
    let job = NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        kind: JobKind::SetPlan,
        tenant_slug: request.slug.as_str().to_owned(),
        params: serde_json::to_value(&request)
            .map_err(|error| CodedError::new(ErrorCode::Internal, error.to_string()))?,
        phases: SET_PLAN_PHASES.map(str::to_owned).to_vec(),
        actor: actor.to_owned(),
        plan: Some(request.plan.clone()),
        idempotency: None,
        // A reconcile changes no price: nothing to approve.
        approval: if request.reconcile || !may_need_approval {
            None
        } else {
            approval_needed(
                &platform.settings,
                plan,
                &tenant.region,
                request.budget,
                now_millis(),
            )
        },
        lease,
    };
    Ok(job)
}

/// Validates a suspension or a resumption and records its job, leased to the caller's runner when `lease` is
/// given (the CLI) or for a worker to run: the tenant is registered (`E_NOT_FOUND`) and in the status the job
/// starts from (`E_CONFLICT`), a suspension has its reason (`E_INVALID_INPUT`), and the tenant has no other
/// unfinished job (`E_CONFLICT`). The phases are one per resource the tenant has now.
pub async fn submit_suspension(
    platform: &Platform,
    direction: Direction,
    request: &SuspendRequest,
    actor: &str,
    lease: Option<NewLease>,
) -> Result<Submitted, CodedError> {
    let tenant = validate_suspension(platform, direction, request).await?;
    let resources = platform
        .registry
        .tenant_resources(&tenant.slug)
        .await
        .map_err(registry_error)?;
    let job = NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        kind: direction.job_kind(),
        tenant_slug: tenant.slug.clone(),
        params: serde_json::to_value(request)
            .map_err(|error| CodedError::new(ErrorCode::Internal, error.to_string()))?,
        phases: suspend_phases(platform, direction, &resources),
        actor: actor.to_owned(),
        plan: Some(tenant.plan),
        idempotency: None,
        approval: None,
        lease,
    };
    submit(platform, job, None).await
}

/// Validates a credential rotation and records its job, leased to the caller's runner when `lease` is given (the
/// CLI) or for a worker to run (the API, the console, the schedule): the tenant is registered (`E_NOT_FOUND`)
/// and active (`E_CONFLICT`), the kind is known and the tenant's (`E_INVALID_INPUT`), something rotates
/// (`E_INVALID_INPUT`), and the tenant has no other unfinished job (`E_CONFLICT`). The phases name the kinds
/// that rotate now.
pub async fn submit_rotation(
    platform: &Platform,
    request: &crate::RotateRequest,
    actor: &str,
    lease: Option<NewLease>,
) -> Result<Submitted, CodedError> {
    let scope = crate::validate_rotation(platform, request).await?;
    let job = NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        kind: JobKind::RotateCredentials,
        tenant_slug: scope.tenant.slug.clone(),
        params: serde_json::to_value(request)
            .map_err(|error| CodedError::new(ErrorCode::Internal, error.to_string()))?,
        phases: crate::rotate_phases(&scope.kinds),
        actor: actor.to_owned(),
        plan: Some(scope.tenant.plan),
        idempotency: None,
        approval: None,
        lease,
    };
    submit(platform, job, None).await
}

/// Validates a move and records its job, leased to the caller's runner when `lease` is given (the CLI) or for a
/// worker to run (the API): see [`crate::validate_move`] for the checks and their codes; the tenant has no other
/// unfinished job (`E_CONFLICT`).
pub async fn submit_move(
    platform: &Platform,
    request: &crate::MoveRequest,
    actor: &str,
    lease: Option<NewLease>,
) -> Result<Submitted, CodedError> {
    let (tenant, _) = crate::validate_move(platform, request).await?;
    let job = NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        kind: JobKind::Move,
        tenant_slug: tenant.slug.clone(),
        params: serde_json::to_value(request)
            .map_err(|error| CodedError::new(ErrorCode::Internal, error.to_string()))?,
        phases: crate::MOVE_PHASES
            .iter()
            .map(|phase| (*phase).to_owned())
            .collect(),
        actor: actor.to_owned(),
        plan: Some(tenant.plan),
        idempotency: None,
        approval: None,
        lease,
    };
    submit(platform, job, None).await
}

/// Validates a fleet reconcile and records its job already leased to the caller's runner (`E_CONFLICT` while
/// another fleet reconcile runs).
pub async fn submit_reconcile_to_run(
    platform: &Platform,
    request: &ReconcileRequest,
    actor: &str,
    lease: Option<NewLease>,
) -> Result<Submitted, CodedError> {
    validate_kind(platform, request.kind.as_deref())?;
    let job = NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        kind: JobKind::Reconcile,
        tenant_slug: FLEET_SUBJECT.to_owned(),
        params: serde_json::to_value(request)
            .map_err(|error| CodedError::new(ErrorCode::Internal, error.to_string()))?,
        phases: RECONCILE_PHASES.map(str::to_owned).to_vec(),
        actor: actor.to_owned(),
        plan: None,
        idempotency: None,
        approval: None,
        lease,
    };
    submit(platform, job, None).await
}

/// What a rollout would do, without recording anything: the options checked, every tenant's schema state, and
/// the wave each tenant would be in (`--dry-run`, and the first step of [`submit_rollout`]). `E_MIGRATION_DRIFT`
/// when tenants record migrations that differ from the files and the options do not skip them.
pub async fn plan_rollout(
    platform: &Platform,
    options: crate::RolloutOptions,
) -> Result<
    (
        crate::RolloutRequest,
        crate::SchemaPlan,
        Vec<tenantry_registry::NewRolloutChild>,
    ),
    CodedError,
> {
    let mut request = options.validate()?;
    for slug in &request.canary_tenants {
        platform
            .registry
            .require_tenant(slug)
            .await
            .map_err(crate::registry_error)?;
    }
    let schemas = crate::rollout::current_schemas(platform).await?;
    request.schemas = crate::rollout::schema_hashes(&schemas);
    // At the rollout's own bound, so it never holds more tenant connections than it was allowed.
    let plan = crate::rollout::schema_plan_at(platform, None, request.concurrency).await?;
    crate::refuse_drift(&request, &plan)?;
    let children = crate::assign_waves(&request, &plan);
    Ok((request, plan, children))
}

/// What asking for a rollout came to.
#[derive(Debug)]
pub enum RolloutSubmission {
    /// No tenant has a migration to apply: nothing was recorded. The plan says where each tenant stands.
    NothingToMigrate(crate::SchemaPlan),
    Recorded(Box<Submitted>),
}

/// Records a rollout of the tenant schema now configured, after [`plan_rollout`]'s checks (a refused rollout
/// leaves no job). One rollout runs at a time: another live one is `E_CONFLICT`. A fleet with nothing to
/// migrate records nothing (a deploy that runs `migrate apply` every time is then a quick no-op).
pub async fn submit_rollout(
    platform: &Platform,
    options: crate::RolloutOptions,
    actor: &str,
    lease: Option<NewLease>,
) -> Result<RolloutSubmission, CodedError> {
    let (request, plan, children) = plan_rollout(platform, options).await?;
    if !children
        .iter()
        .any(|child| child.status == tenantry_registry::CHILD_PENDING)
    {
        return Ok(RolloutSubmission::NothingToMigrate(plan));
    }
    let job = NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        kind: JobKind::Rollout,
        tenant_slug: crate::ROLLOUT_SUBJECT.to_owned(),
        params: serde_json::to_value(&request)
            .map_err(|error| CodedError::new(ErrorCode::Internal, error.to_string()))?,
        phases: crate::ROLLOUT_PHASES.map(str::to_owned).to_vec(),
        actor: actor.to_owned(),
        plan: None,
        idempotency: None,
        approval: None,
        lease,
    };
    let submitted = submit(platform, job, None).await.map_err(|error| match error.code {
        ErrorCode::Conflict => CodedError::new(
            ErrorCode::Conflict,
            "another rollout is running; wait for it, or pause or abort it (`tenantry migrate status`)",
        ),
        _ => error,
    })?;
    // The tenants as just read, so the job need not read them all again; if this process dies first, the job's
    // `tenants_listed` phase lists them itself.
    let rollout = crate::rollout::new_rollout(&submitted.job().id, &request, &plan, &children);
    platform
        .registry
        .record_rollout(None, &rollout, &children)
        .await
        .map_err(crate::registry_error)?;
    Ok(RolloutSubmission::Recorded(Box::new(submitted)))
}

/// A PLATFORM_ADMIN's decision on a job waiting for approval. `E_FORBIDDEN` for the requester's own job,
/// `E_CONFLICT` when the job is not waiting (decided, expired or never needed approval).
pub async fn decide_approval(
    platform: &Platform,
    job_id: &str,
    actor: &str,
    approve: bool,
    reason: &str,
) -> Result<JobRecord, CodedError> {
    if reason.chars().count() > 500 || reason.chars().any(|c| c.is_control() && c != '\n') {
        return Err(CodedError::invalid_input(
            "the reason must be at most 500 characters of text",
        ));
    }
    let decision = ApprovalDecision {
        actor: actor.to_owned(),
        approve,
        reason: reason.trim().to_owned(),
    };
    match platform
        .registry
        .decide_approval(job_id, &decision)
        .await
        .map_err(registry_error)?
    {
        ApprovalOutcome::Decided(job) => Ok(*job),
        ApprovalOutcome::OwnRequest => Err(CodedError::new(
            ErrorCode::Forbidden,
            format!(
                "{actor} requested job {job_id} and cannot {} it; another PLATFORM_ADMIN must decide",
                if approve { "approve" } else { "reject" }
            ),
        )),
        ApprovalOutcome::Expired => Err(CodedError::new(
            ErrorCode::ApprovalExpired,
            format!("job {job_id} waited too long for approval and was cancelled"),
        )),
        ApprovalOutcome::NotAwaiting(status) => Err(CodedError::new(
            ErrorCode::Conflict,
            format!("job {job_id} is {status}, not awaiting approval"),
        )),
    }
}
