//! The set-plan workflow: moves a live tenant to another plan. Quotas and labels on the server, the settings in
//! the tenant's database and the registry row change in that order; the validation suite then judges the tenant
//! under its new plan. Each step's undo puts the previous plan back, so a failed change leaves the tenant as it was.

use crate::phases::{phases, unknown_phase};
use crate::plans::{
    cost_labels, effective_settings, modules_off_after, require_plan, settings_rows, tenant_plan,
    validate_module_switches, with_modules_off, with_profile, OWNED_SETTING_PREFIXES,
};
use crate::platform::{provider_error, Platform};
use crate::provision::check_tenant;
use crate::reconcile::{ensure_resources, validate_kind};
use crate::resources::{create_resource, extra_kinds, placed_resources_of, undo_create_resource};
use std::collections::BTreeMap;
use tenantry_core::{Error as CodedError, ErrorCode, Plan, ResourceTier, Slug, TenantStatus};
use tenantry_engine::{JobContext, PhaseError, Workflow};
use tenantry_providers::engines::{TenantDatabaseSpec, TenantServer};
use tenantry_registry::{JobRecord, NewAuditEvent, TenantRecord};

phases! {
    /// The phases of a plan change.
    enum SetPlanPhase {
        RequestValidated = "request_validated",
        LimitsApplied = "limits_applied",
        ResourcesEnsured = "resources_ensured",
        SettingsApplied = "settings_applied",
        RegistryUpdated = "registry_updated",
        ChecksPassed = "checks_passed",
        Complete = "complete",
    }
}

/// The phases of a plan change. Their names are API.
pub const SET_PLAN_PHASES: [&str; 7] = SetPlanPhase::names(SetPlanPhase::ALL);

/// The parameters of a set-plan job: the tenant, the plan it moves to, the plan it leaves, and the budget asked.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPlanRequest {
    pub slug: Slug,
    pub plan: String,
    /// Filled in at submission from the registry: the plan an undo returns to.
    #[serde(default)]
    pub previous_plan: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<u64>,
    /// `reconcile`: the tenant stays on its plan, and every step converges what is there on what that plan and
    /// tenantry's access model say (a database opened to PUBLIC is closed, one its tenant owns is handed to the
    /// installation's owner role, the settings are rewritten), then the validation suite runs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reconcile: bool,
    /// With `reconcile`: only this kind of resource (`database` for the database alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Module switches (module name → on or off) over the tenant's current ones, from an approved change request;
    /// empty keeps the tenant's. A module can only be on if the plan has it on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub modules: BTreeMap<String, bool>,
    /// Filled in at submission from the registry: the modules the tenant had switched off though its plan has
    /// them on (what an undo puts back, and what a plain plan change keeps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_modules_off: Vec<String>,
    /// A new resource tier (the plan's numbers halved, as written, doubled); `None` keeps the tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_tier: Option<ResourceTier>,
    /// Filled in at submission from the registry: the tier an undo returns to (and a plain change keeps).
    #[serde(default)]
    pub previous_resource_tier: ResourceTier,
}

impl SetPlanRequest {
    /// A request with nothing but the tenant and the plan (the rest filled in at submission or left off).
    pub fn new(slug: Slug, plan: String) -> SetPlanRequest {
        SetPlanRequest {
            slug,
            plan,
            previous_plan: String::new(),
            budget: None,
            reconcile: false,
            kind: None,
            modules: BTreeMap::new(),
            previous_modules_off: Vec::new(),
            resource_tier: None,
            previous_resource_tier: ResourceTier::Medium,
        }
    }

    /// The resource tier the tenant has once the step runs.
    pub fn tier(&self, forward: bool) -> ResourceTier {
        if forward {
            self.resource_tier.unwrap_or(self.previous_resource_tier)
        } else {
            self.previous_resource_tier
        }
    }

    /// The modules the tenant has switched off under `plan` once the step runs: after the job's switches going
    /// forward, as before the job on undo.
    fn modules_off(&self, plan: &Plan, forward: bool) -> Vec<String> {
        if forward {
            modules_off_after(plan, &self.previous_modules_off, &self.modules)
        } else {
            modules_off_after(plan, &self.previous_modules_off, &BTreeMap::new())
        }
    }
}

/// Moves one tenant to another plan.
pub struct SetPlanWorkflow {
    platform: Platform,
}

impl SetPlanWorkflow {
    pub fn new(platform: Platform) -> SetPlanWorkflow {
        SetPlanWorkflow { platform }
    }

    /// Checks the request before a job is created: the tenant is active, the plan exists and is another one.
    pub async fn validate(
        platform: &Platform,
        request: &SetPlanRequest,
    ) -> Result<TenantRecord, CodedError> {
        require_plan(&platform.settings, &request.plan)?;
        let tenant = platform
            .registry
            .get_tenant(request.slug.as_str())
            .await
            .map_err(crate::registry_error)?
            .ok_or_else(|| {
                CodedError::new(
                    ErrorCode::NotFound,
                    format!("tenant {:?} is not registered", request.slug.as_str()),
                )
            })?;
        if tenant.status != TenantStatus::Active {
            return Err(CodedError::new(
                ErrorCode::Conflict,
                format!(
                    "tenant {:?} is {}; only an active tenant changes plan",
                    tenant.slug, tenant.status
                ),
            ));
        }
        if request.reconcile && tenant.plan != request.plan {
            return Err(CodedError::invalid_input(format!(
                "a reconcile keeps tenant {:?} on its plan {:?}",
                tenant.slug, tenant.plan
            )));
        }
        if request.reconcile
            && request
                .resource_tier
                .is_some_and(|tier| tier != tenant.profile.resource_tier)
        {
            return Err(CodedError::invalid_input(
                "a reconcile keeps the tenant's resource tier; a tier comes with a plan change",
            ));
        }
        if request.reconcile && !request.modules.is_empty() {
            return Err(CodedError::invalid_input(
                "a reconcile keeps the tenant's modules; module switches come with a plan change",
            ));
        }
        validate_module_switches(
            require_plan(&platform.settings, &request.plan)?,
            &request.modules,
        )?;
        if request.kind.is_some() && !request.reconcile {
            return Err(CodedError::invalid_input(
                "a kind narrows a reconcile; a plan change applies to every resource",
            ));
        }
        validate_kind(platform, request.kind.as_deref())?;
        let plan = require_plan(&platform.settings, &request.plan)?;
        let kinds: Vec<&str> = extra_kinds(plan).collect();
        let resources = platform
            .registry
            .tenant_resources(&tenant.slug)
            .await
            .map_err(crate::registry_error)?;
        if let Some(dropped) = resources.iter().find(|resource| {
            platform.providers.get(&resource.kind).is_some()
                && !kinds.contains(&resource.kind.as_str())
        }) {
            return Err(CodedError::invalid_input(format!(
                "plan {:?} has no {} resource, and tenant {:?} has one with data in it; moving to that plan \
                 would delete it, which a plan change does not do",
                request.plan, dropped.kind, tenant.slug
            )));
        }
        let same_tier = request
            .resource_tier
            .is_none_or(|tier| tier == tenant.profile.resource_tier);
        if tenant.plan == request.plan
            && !request.reconcile
            && request.modules.is_empty()
            && same_tier
        {
            return Err(CodedError::new(
                ErrorCode::Conflict,
                format!(
                    "tenant {:?} is already on plan {:?}",
                    tenant.slug, tenant.plan
                ),
            ));
        }
        Ok(tenant)
    }

    async fn tenant(&self, context: &JobContext) -> Result<TenantRecord, PhaseError> {
        Ok(self
            .platform
            .registry
            .require_tenant(&context.job.tenant_slug)
            .await?)
    }

    async fn server(&self, tenant: &TenantRecord) -> Result<TenantServer, PhaseError> {
        let record = self
            .platform
            .registry
            .get_server(&tenant.server_name)
            .await?;
        self.platform
            .tenant_server_for(&record, &tenant.plan)
            .await
            .map_err(PhaseError::Fatal)
    }

    /// What every step works from besides the request: the tenant as registered now, and the plan the step
    /// applies (the new one forward, the previous one on undo), scaled by the tier the step gives the tenant.
    async fn step(
        &self,
        context: &JobContext,
        request: &SetPlanRequest,
        forward: bool,
    ) -> Result<(TenantRecord, Plan), PhaseError> {
        let tenant = self.tenant(context).await?;
        let name = if forward {
            &request.plan
        } else {
            &request.previous_plan
        };
        let plan = tenant_plan(&self.platform.settings, name, request.tier(forward))
            .map_err(PhaseError::Fatal)?;
        Ok((tenant, plan))
    }

    async fn apply_limits(
        &self,
        context: &mut JobContext,
        request: &SetPlanRequest,
        forward: bool,
    ) -> Result<(), PhaseError> {
        let (tenant, plan) = self.step(context, request, forward).await?;
        if !includes_database(request) {
            return Ok(());
        }
        let server = self.server(&tenant).await?;
        server
            .apply_plan_limits(&TenantDatabaseSpec {
                resource_name: tenant.resource_name.clone(),
                connection_limit: plan.connection_limit,
                statement_timeout_ms: plan.statement_timeout_ms,
                labels: cost_labels(&tenant.slug, &plan),
            })
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        for secret in [
            tenant.secret_ref.clone(),
            request.slug.invitation_secret_name(),
        ] {
            self.platform
                .secrets
                .label_for_job(&context.fence, &secret, &cost_labels(&tenant.slug, &plan))
                .await
                .map_err(|error| crate::platform::secret_store_error(&error))?;
        }
        context
            .log(
                "info",
                &format!(
                    "plan {} quotas on {}: {} connections, statement timeout {} ms",
                    plan.name,
                    tenant.resource_name,
                    plan.connection_limit,
                    plan.statement_timeout_ms
                ),
            )
            .await
    }

    async fn apply_settings(
        &self,
        context: &mut JobContext,
        request: &SetPlanRequest,
        forward: bool,
    ) -> Result<(), PhaseError> {
        let (tenant, plan) = self.step(context, request, forward).await?;
        if !includes_database(request) {
            return Ok(());
        }
        let server = self.server(&tenant).await?;
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
        let rows = settings_rows(&self.tenant_settings(&tenant, &plan, request, forward));
        server
            .write_settings(&url, &rows, &OWNED_SETTING_PREFIXES)
            .await
            .map_err(|error| provider_error(ErrorCode::Internal, error))
    }

    /// `resources_ensured`: every resource of the plan's other kinds converged on its quotas (repaired if it
    /// was lost or changed by hand), and the kinds the tenant lacks made. The kinds made are noted before they
    /// are made, so an undo removes exactly those and puts the previous plan's quotas back on the rest.
    async fn ensure_resources(
        &self,
        context: &mut JobContext,
        request: &SetPlanRequest,
        forward: bool,
    ) -> Result<(), PhaseError> {
        let (tenant, plan) = self.step(context, request, forward).await?;
        let slug = Slug::parse(&tenant.slug).map_err(PhaseError::Fatal)?;
        let made_by_this_job: Vec<String> = context
            .job
            .state
            .get("resources_made")
            .and_then(|made| serde_json::from_value(made.clone()).ok())
            .unwrap_or_default();
        if !forward {
            for kind in &made_by_this_job {
                undo_create_resource(&self.platform, context, &slug, kind).await?;
                self.platform
                    .registry
                    .remove_tenant_resource(&context.fence, &tenant.slug, kind)
                    .await?;
            }
        }
        let registered = self
            .platform
            .registry
            .tenant_resources(&tenant.slug)
            .await?;
        let wanted_kinds: Vec<String> = extra_kinds(&plan)
            .filter(|kind| request.kind.as_deref().is_none_or(|only| only == *kind))
            .map(str::to_owned)
            .collect();
        let existing: Vec<(tenantry_registry::TenantResourceRecord, String)> = registered
            .into_iter()
            .filter(|resource| wanted_kinds.contains(&resource.kind))
            .map(|resource| (resource, plan.name.clone()))
            .collect();
        let repairs = ensure_resources(&self.platform, context, existing.clone()).await?;
        if !repairs.is_empty() {
            context.set_output("repaired", serde_json::json!(repairs));
        }
        if !forward {
            return Ok(());
        }
        let missing: Vec<&String> = wanted_kinds
            .iter()
            .filter(|kind| !existing.iter().any(|(resource, _)| &resource.kind == *kind))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut made = made_by_this_job;
        for kind in missing {
            if !made.contains(kind) {
                made.push(kind.clone());
                context
                    .set_state("resources_made", serde_json::json!(made))
                    .await?;
            }
            create_resource(&self.platform, context, &slug, &plan, &tenant.region, kind).await?;
        }
        let records = placed_resources_of(&self.platform, context, &slug, &plan, &made).await?;
        for record in records {
            self.platform
                .registry
                .add_tenant_resource(&context.fence, &record)
                .await?;
        }
        Ok(())
    }

    /// The tenant's profile once the step runs: its tier changed, the rest as it is.
    fn profile_after(
        tenant: &TenantRecord,
        request: &SetPlanRequest,
        forward: bool,
    ) -> tenantry_core::TenantProfile {
        tenantry_core::TenantProfile {
            resource_tier: request.tier(forward),
            ..tenant.profile.clone()
        }
    }

    /// The tenant's effective settings once the step runs: the plan's, its switched-off modules, and its
    /// profile's tier and security policy.
    fn tenant_settings(
        &self,
        tenant: &TenantRecord,
        plan: &Plan,
        request: &SetPlanRequest,
        forward: bool,
    ) -> serde_json::Value {
        with_profile(
            with_modules_off(
                effective_settings(&self.platform.settings, plan, &tenant.region, &tenant.slug),
                &request.modules_off(plan, forward),
            ),
            &Self::profile_after(tenant, request, forward),
        )
    }

    async fn update_registry(
        &self,
        context: &mut JobContext,
        request: &SetPlanRequest,
        forward: bool,
    ) -> Result<(), PhaseError> {
        let (tenant, plan) = self.step(context, request, forward).await?;
        let audit = NewAuditEvent {
            actor: context.job.actor.clone(),
            event_type: if forward {
                "TENANT_PLAN_CHANGED"
            } else {
                "TENANT_PLAN_CHANGE_UNDONE"
            },
            tenant_slug: Some(tenant.slug.clone()),
            job_id: Some(context.job.id.clone()),
            details: serde_json::json!({
                "from": tenant.plan,
                "to": plan.name,
                "modules_off": request.modules_off(&plan, forward),
                "resource_tier": request.tier(forward).as_str(),
            }),
        };
        Ok(self
            .platform
            .registry
            .set_tenant_plan(
                &context.fence,
                &tenant.slug,
                &plan.name,
                &cost_labels(&tenant.slug, &plan),
                &self.tenant_settings(&tenant, &plan, request, forward),
                &Self::profile_after(&tenant, request, forward),
                &audit,
            )
            .await?)
    }
}

/// Whether a (reconcile) request touches the database: always, unless it names another kind.
fn includes_database(request: &SetPlanRequest) -> bool {
    request
        .kind
        .as_deref()
        .is_none_or(|kind| kind == tenantry_core::DATABASE_RESOURCE)
}

impl Workflow for SetPlanWorkflow {
    type Params = SetPlanRequest;

    async fn apply(
        &self,
        context: &mut JobContext,
        request: &SetPlanRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        let phase = SetPlanPhase::parse(phase).ok_or_else(|| unknown_phase("set-plan", phase))?;
        match phase {
            SetPlanPhase::RequestValidated => {
                require_plan(&self.platform.settings, &request.plan).map_err(PhaseError::Fatal)?;
                require_plan(&self.platform.settings, &request.previous_plan)
                    .map_err(PhaseError::Fatal)?;
                Ok(())
            }
            SetPlanPhase::LimitsApplied => self.apply_limits(context, request, true).await,
            SetPlanPhase::ResourcesEnsured => self.ensure_resources(context, request, true).await,
            SetPlanPhase::SettingsApplied => self.apply_settings(context, request, true).await,
            SetPlanPhase::RegistryUpdated => self.update_registry(context, request, true).await,
            SetPlanPhase::ChecksPassed => {
                let tenant = self.tenant(context).await?;
                check_tenant(&self.platform, context, &tenant).await
            }
            SetPlanPhase::Complete => {
                context
                    .log(
                        "info",
                        &format!(
                            "tenant {} is on plan {}",
                            request.slug.as_str(),
                            request.plan
                        ),
                    )
                    .await
            }
        }
    }

    async fn undo(
        &self,
        context: &mut JobContext,
        request: &SetPlanRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        let phase = SetPlanPhase::parse(phase).ok_or_else(|| unknown_phase("set-plan", phase))?;
        match phase {
            // Nothing to undo: it only reads the request and the plans.
            SetPlanPhase::RequestValidated => Ok(()),
            // Each step's undo is the step again with the previous plan.
            SetPlanPhase::LimitsApplied => self.apply_limits(context, request, false).await,
            SetPlanPhase::ResourcesEnsured => self.ensure_resources(context, request, false).await,
            SetPlanPhase::SettingsApplied => self.apply_settings(context, request, false).await,
            SetPlanPhase::RegistryUpdated => self.update_registry(context, request, false).await,
            // Nothing to undo: the checks only read, and completion only logs.
            SetPlanPhase::ChecksPassed | SetPlanPhase::Complete => Ok(()),
        }
    }

    fn undo_failed_advice(&self) -> Option<&str> {
        Some(crate::UNDO_FAILED_ADVICE)
    }

    fn on_complete(&self, job: &JobRecord) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        let reconciled = job
            .params
            .get("reconcile")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        if !reconciled {
            return (None, Vec::new());
        }
        // A reconcile may change nothing in the registry (so `registry_updated` writes no event): the job's end
        // is what says the tenant was brought in line.
        let audit = NewAuditEvent {
            actor: job.actor.clone(),
            event_type: "TENANT_RECONCILED",
            tenant_slug: Some(job.tenant_slug.clone()),
            job_id: Some(job.id.clone()),
            details: serde_json::json!({ "plan": job.params.get("plan") }),
        };
        (None, vec![audit])
    }

    fn on_failure(
        &self,
        job: &JobRecord,
        error: &CodedError,
    ) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        // The tenant keeps serving on its previous plan: its status does not change.
        let audit = crate::failure_audit(job, "TENANT_PLAN_CHANGE_FAILED", true, error);
        (None, vec![audit])
    }
}
