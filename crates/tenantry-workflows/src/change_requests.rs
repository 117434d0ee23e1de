//! Change requests, the same for every way in (API, console, CLI): a tenant admin (or a platform admin) asks for
//! another plan and/or module switches for one tenant; a PLATFORM_ADMIN other than the requester approves, which
//! records the set-plan job that makes the change in the same transaction, or rejects with a reason.

use crate::set_plan::SetPlanRequest;
use crate::submit::set_plan_job;
use crate::{registry_error, Platform};
use std::collections::BTreeMap;
use tenantry_core::{Error as CodedError, ErrorCode, Slug};
use tenantry_registry::{ChangeDecision, ChangeOutcome, ChangeRequestRecord, NewChangeRequest};

/// The longest reason a requester or a decider may give.
const MAX_REASON_CHARS: usize = 500;

/// What a change request asks for.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ChangeRequestInput {
    /// Another plan (its resource tier, quotas and price).
    pub plan: Option<String>,
    /// Module switches: module name → on or off.
    pub modules: BTreeMap<String, bool>,
    /// Another resource tier (`small`, `medium`, `large`).
    pub resource_tier: Option<String>,
    /// Why: shown to the platform admin who decides.
    pub reason: String,
}

fn checked_reason(reason: &str, required: bool) -> Result<String, CodedError> {
    let reason = reason.trim();
    if required && reason.is_empty() {
        return Err(CodedError::invalid_input(
            "a reason is required: say why, for whoever decides",
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS
        || reason.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(CodedError::invalid_input(format!(
            "the reason must be at most {MAX_REASON_CHARS} characters of text"
        )));
    }
    Ok(reason.to_owned())
}

/// The set-plan request a change request comes to for the tenant as it is now.
async fn set_plan_request(
    platform: &Platform,
    slug: &Slug,
    plan: Option<&str>,
    modules: &BTreeMap<String, bool>,
    resource_tier: Option<&str>,
) -> Result<SetPlanRequest, CodedError> {
    let resource_tier = resource_tier
        .map(tenantry_core::ResourceTier::parse)
        .transpose()?;
    let plan = match plan {
        Some(plan) => plan.to_owned(),
        None => {
            platform
                .registry
                .get_tenant(slug.as_str())
                .await
                .map_err(registry_error)?
                .ok_or_else(|| not_found_tenant(slug.as_str()))?
                .plan
        }
    };
    let mut request = SetPlanRequest::new(slug.clone(), plan);
    request.modules = modules.clone();
    request.resource_tier = resource_tier;
    Ok(request)
}

fn not_found_tenant(slug: &str) -> CodedError {
    CodedError::new(
        ErrorCode::NotFound,
        format!("tenant {slug:?} is not registered"),
    )
}

/// Validates and records a change request for `slug` (audited `CHANGE_REQUESTED`, notified `change.requested`).
/// Bad input (no change asked, an unknown plan or module, a module the plan does not allow, no reason) is
/// `E_INVALID_INPUT` and records nothing; so is a change the set-plan job would refuse now.
pub async fn file_change_request(
    platform: &Platform,
    slug: &str,
    input: &ChangeRequestInput,
    actor: &str,
) -> Result<ChangeRequestRecord, CodedError> {
    let slug = Slug::parse(slug)?;
    let reason = checked_reason(&input.reason, true)?;
    let plan = input
        .plan
        .as_deref()
        .map(str::trim)
        .filter(|plan| !plan.is_empty());
    let resource_tier = input
        .resource_tier
        .as_deref()
        .map(str::trim)
        .filter(|tier| !tier.is_empty());
    if plan.is_none() && input.modules.is_empty() && resource_tier.is_none() {
        return Err(CodedError::invalid_input(
            "a change request asks for a plan, module switches, a resource tier, or some of them",
        ));
    }
    let request = set_plan_request(platform, &slug, plan, &input.modules, resource_tier).await?;
    // The same checks the job's submission makes on approval: the tenant is active, the plan exists and keeps
    // its resources, the modules are known and allowed, and something changes.
    crate::set_plan::SetPlanWorkflow::validate(platform, &request).await?;
    platform
        .registry
        .create_change_request(&NewChangeRequest {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_slug: slug.as_str().to_owned(),
            plan: plan.map(str::to_owned),
            modules: input.modules.clone(),
            resource_tier: request.resource_tier.map(|tier| tier.as_str().to_owned()),
            reason,
            requested_by: actor.to_owned(),
        })
        .await
        .map_err(registry_error)
}

/// A PLATFORM_ADMIN's decision. Approving records the set-plan job (no second approval: this decision is the
/// four-eyes check) with the decision; rejecting needs a reason. `E_FORBIDDEN` for the requester's own request,
/// `E_CONFLICT` when it was decided already or the tenant has an unfinished job (it then stays pending),
/// `E_NOT_FOUND` when there is no such request.
pub async fn decide_change_request(
    platform: &Platform,
    id: &str,
    actor: &str,
    approve: bool,
    reason: &str,
) -> Result<ChangeRequestRecord, CodedError> {
    let reason = checked_reason(reason, !approve)?;
    let request = platform
        .registry
        .get_change_request(id)
        .await
        .map_err(registry_error)?
        .ok_or_else(|| CodedError::new(ErrorCode::NotFound, format!("no change request {id:?}")))?;
    let own = || {
        CodedError::new(
            ErrorCode::Forbidden,
            format!(
                "{actor} filed change request {id} and cannot {} it; another PLATFORM_ADMIN must decide",
                if approve { "approve" } else { "reject" }
            ),
        )
    };
    if request.requested_by == actor {
        return Err(own());
    }
    let job = if approve && request.status == tenantry_registry::CHANGE_PENDING {
        let slug = Slug::parse(&request.tenant_slug)?;
        let set_plan = set_plan_request(
            platform,
            &slug,
            request.plan.as_deref(),
            &request.modules,
            request.resource_tier.as_deref(),
        )
        .await?;
        Some(set_plan_job(platform, &set_plan, actor, None, false).await?)
    } else {
        None
    };
    if approve && job.is_none() {
        return Err(not_pending(id, &request.status));
    }
    let decision = ChangeDecision {
        actor: actor.to_owned(),
        reason,
        job,
    };
    match platform
        .registry
        .decide_change_request(id, &decision)
        .await
    {
        Ok(ChangeOutcome::Decided(record)) => Ok(*record),
        Ok(ChangeOutcome::OwnRequest) => Err(own()),
        Ok(ChangeOutcome::NotPending(status)) => Err(not_pending(id, &status)),
        Err(tenantry_registry::Error::Conflict { .. }) => Err(CodedError::new(
            ErrorCode::Conflict,
            format!(
                "tenant {:?} has an unfinished job; change request {id} stays pending, decide it again when that job ends",
                request.tenant_slug
            ),
        )),
        Err(error) => Err(registry_error(error)),
    }
}

fn not_pending(id: &str, status: &str) -> CodedError {
    CodedError::new(
        ErrorCode::Conflict,
        format!("change request {id} is {status}, not pending"),
    )
}
