//! The suspend and resume workflows: every resource of a tenant turned off (its credentials refused, its sessions
//! ended, its data kept) and the tenant `suspended`, or every resource turned back on and the tenant `active`.
//! One phase per resource the tenant has (`<kind>_disabled`, `<kind>_enabled`), each undone by the other
//! direction, so a failed suspend leaves the tenant working and a failed resume leaves it locked out.

use crate::resources::{is_known_kind, switch_resource, OnForeign, ResourceAt};
use crate::{registry_error, Platform};
use tenantry_core::{Error as CodedError, ErrorCode, JobKind, Slug, TenantStatus};
use tenantry_engine::{JobContext, PhaseError, Workflow};
use tenantry_registry::{JobRecord, NewAuditEvent, TenantRecord, TenantResourceRecord};

/// The first phase of both: the tenant is still in the status the job starts from.
pub const REQUEST_VALIDATED: &str = "request_validated";
/// The last phase of both; the tenant's status changes when the job completes.
pub const COMPLETE: &str = "complete";
/// `<kind>_disabled`: suspend's phase for one of the tenant's resources.
pub const DISABLED_SUFFIX: &str = "_disabled";
/// `<kind>_enabled`: resume's phase for one of the tenant's resources.
pub const ENABLED_SUFFIX: &str = "_enabled";

/// The longest reason a suspension records, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Which way a job turns the tenant's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Suspend,
    Resume,
}

impl Direction {
    pub fn of(kind: JobKind) -> Option<Direction> {
        match kind {
            JobKind::Suspend => Some(Direction::Suspend),
            JobKind::Resume => Some(Direction::Resume),
            _ => None,
        }
    }

    pub fn job_kind(self) -> JobKind {
        match self {
            Direction::Suspend => JobKind::Suspend,
            Direction::Resume => JobKind::Resume,
        }
    }

    /// The status a tenant must have for the job to start (and keeps until the job completes).
    pub fn from_status(self) -> TenantStatus {
        match self {
            Direction::Suspend => TenantStatus::Active,
            Direction::Resume => TenantStatus::Suspended,
        }
    }

    /// The status the tenant has once the job completes.
    pub fn to_status(self) -> TenantStatus {
        match self {
            Direction::Suspend => TenantStatus::Suspended,
            Direction::Resume => TenantStatus::Active,
        }
    }

    /// Whether the job's resource phases turn resources on.
    fn enables(self) -> bool {
        self == Direction::Resume
    }

    fn suffix(self) -> &'static str {
        match self {
            Direction::Suspend => DISABLED_SUFFIX,
            Direction::Resume => ENABLED_SUFFIX,
        }
    }

    fn gerund(self) -> &'static str {
        match self {
            Direction::Suspend => "suspending",
            Direction::Resume => "resuming",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Direction::Suspend => "suspend",
            Direction::Resume => "resume",
        }
    }
}

/// The parameters of a suspend or resume job.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspendRequest {
    pub slug: Slug,
    /// Why the tenant is suspended (required to suspend, 1 to 500 characters; a resume takes none). Recorded in
    /// the job's parameters and in `TENANT_SUSPENDED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SuspendRequest {
    /// A suspension of `slug` for `reason`, checked: `E_INVALID_INPUT` for a reason that is empty, longer than
    /// 500 characters, or holds control characters other than a line break.
    pub fn suspend(slug: Slug, reason: &str) -> Result<SuspendRequest, CodedError> {
        Ok(SuspendRequest {
            slug,
            reason: Some(parse_reason(reason)?),
        })
    }

    pub fn resume(slug: Slug) -> SuspendRequest {
        SuspendRequest { slug, reason: None }
    }
}

/// A suspension's reason, trimmed.
pub fn parse_reason(reason: &str) -> Result<String, CodedError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(CodedError::invalid_input(
            "a suspension needs a reason (1 to 500 characters)",
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS
        || reason.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(CodedError::invalid_input(
            "the reason must be at most 500 characters of text",
        ));
    }
    Ok(reason.to_owned())
}

/// A phase of a suspend or resume job.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SuspendPhase {
    RequestValidated,
    /// `<kind>_disabled` or `<kind>_enabled` (as the job's direction says): one of the tenant's resources.
    Resource(String),
    Complete,
}

impl SuspendPhase {
    fn name(&self, direction: Direction) -> String {
        match self {
            SuspendPhase::RequestValidated => REQUEST_VALIDATED.to_owned(),
            SuspendPhase::Resource(kind) => format!("{kind}{}", direction.suffix()),
            SuspendPhase::Complete => COMPLETE.to_owned(),
        }
    }

    fn parse(platform: &Platform, direction: Direction, name: &str) -> Option<SuspendPhase> {
        match name {
            REQUEST_VALIDATED => Some(SuspendPhase::RequestValidated),
            COMPLETE => Some(SuspendPhase::Complete),
            _ => name
                .strip_suffix(direction.suffix())
                .filter(|kind| is_known_kind(platform, kind))
                .map(|kind| SuspendPhase::Resource(kind.to_owned())),
        }
    }
}

/// The phases of a job for a tenant with `resources`: one per resource of a kind tenantry knows. A suspend turns
/// the database off first, so the application loses its data before anything else; a resume turns it on last,
/// so the application comes back only once everything it uses works again.
pub fn suspend_phases(
    platform: &Platform,
    direction: Direction,
    resources: &[TenantResourceRecord],
) -> Vec<String> {
    // The registry lists a tenant's database first.
    let mut kinds: Vec<&str> = resources
        .iter()
        .map(|resource| resource.kind.as_str())
        .filter(|kind| is_known_kind(platform, kind))
        .collect();
    if direction == Direction::Resume {
        kinds.reverse();
    }
    std::iter::once(SuspendPhase::RequestValidated)
        .chain(
            kinds
                .into_iter()
                .map(|kind| SuspendPhase::Resource(kind.to_owned())),
        )
        .chain(std::iter::once(SuspendPhase::Complete))
        .map(|phase| phase.name(direction))
        .collect()
}

/// The tenant, checked before a job is created: registered (`E_NOT_FOUND`) and in the status the job starts from
/// (`E_CONFLICT`: a suspended tenant is not suspended again, an active one not resumed).
pub async fn validate_suspension(
    platform: &Platform,
    direction: Direction,
    request: &SuspendRequest,
) -> Result<TenantRecord, CodedError> {
    match (direction, &request.reason) {
        (Direction::Suspend, None) => {
            return Err(CodedError::invalid_input(
                "a suspension needs a reason (1 to 500 characters)",
            ))
        }
        (Direction::Suspend, Some(reason)) => {
            parse_reason(reason)?;
        }
        (Direction::Resume, Some(_)) => {
            return Err(CodedError::invalid_input("a resume takes no reason"))
        }
        (Direction::Resume, None) => {}
    }
    let tenant = platform
        .registry
        .get_tenant(request.slug.as_str())
        .await
        .map_err(registry_error)?
        .ok_or_else(|| {
            CodedError::new(
                ErrorCode::NotFound,
                format!("tenant {:?} is not registered", request.slug.as_str()),
            )
        })?;
    refuse_status(direction, &tenant)?;
    Ok(tenant)
}

fn refuse_status(direction: Direction, tenant: &TenantRecord) -> Result<(), CodedError> {
    if tenant.status == direction.from_status() {
        return Ok(());
    }
    Err(CodedError::new(
        ErrorCode::Conflict,
        format!(
            "tenant {:?} is {}; only an {} tenant can be {}d",
            tenant.slug,
            tenant.status,
            direction.from_status(),
            direction.verb()
        ),
    ))
}

/// Suspends or resumes one tenant.
pub struct SuspendWorkflow {
    platform: Platform,
    direction: Direction,
}

impl SuspendWorkflow {
    pub fn new(platform: Platform, direction: Direction) -> SuspendWorkflow {
        SuspendWorkflow {
            platform,
            direction,
        }
    }

    fn parse_phase(&self, phase: &str) -> Result<SuspendPhase, PhaseError> {
        SuspendPhase::parse(&self.platform, self.direction, phase)
            .ok_or_else(|| crate::phases::unknown_phase(self.direction.verb(), phase))
    }

    /// `request_validated`: the tenant is still in the status the job starts from (another job may have changed
    /// it between the submission and this run). It changes nothing, so running it twice is harmless.
    async fn request_validated(
        &self,
        context: &mut JobContext,
        request: &SuspendRequest,
    ) -> Result<(), PhaseError> {
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
        refuse_status(self.direction, &tenant).map_err(PhaseError::Fatal)?;
        // The job's page and log say why, next to what it did.
        let message = match &request.reason {
            Some(reason) => format!("suspending tenant {} because: {reason}", tenant.slug),
            None => format!("{} tenant {}", self.direction.gerund(), tenant.slug),
        };
        context.log("info", &message).await
    }

    /// Turns the tenant's resource of `kind` on or off, wherever the registry says it is.
    async fn switch(
        &self,
        context: &mut JobContext,
        request: &SuspendRequest,
        kind: &str,
        enabled: bool,
    ) -> Result<(), PhaseError> {
        let resource = self
            .platform
            .registry
            .tenant_resources(request.slug.as_str())
            .await?
            .into_iter()
            .find(|resource| resource.kind == kind)
            .ok_or_else(|| {
                PhaseError::fatal(
                    ErrorCode::PartialState,
                    format!(
                        "tenant {} has no {kind} in the registry any more",
                        request.slug.as_str()
                    ),
                )
            })?;
        let at = ResourceAt {
            kind,
            server_name: &resource.server_name,
        };
        // Another installation's object under the tenant's name cannot be locked or opened by this job: the
        // job fails rather than call the tenant suspended (or resumed) while it is not.
        switch_resource(
            &self.platform,
            context,
            &request.slug,
            at,
            enabled,
            true,
            OnForeign::Refuse,
        )
        .await
    }

    fn audit(&self, job: &JobRecord, event_type: &'static str) -> NewAuditEvent {
        let reason = job.params.get("reason").cloned();
        NewAuditEvent {
            actor: job.actor.clone(),
            event_type,
            tenant_slug: Some(job.tenant_slug.clone()),
            job_id: Some(job.id.clone()),
            details: match reason {
                Some(reason) => serde_json::json!({ "reason": reason }),
                None => serde_json::json!({}),
            },
        }
    }
}

impl Workflow for SuspendWorkflow {
    type Params = SuspendRequest;

    async fn apply(
        &self,
        context: &mut JobContext,
        request: &SuspendRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        match self.parse_phase(phase)? {
            SuspendPhase::RequestValidated => self.request_validated(context, request).await,
            SuspendPhase::Resource(kind) => {
                self.switch(context, request, &kind, self.direction.enables())
                    .await
            }
            // The status changes with the job's end (`on_complete`), in the transaction that finishes it.
            SuspendPhase::Complete => Ok(()),
        }
    }

    async fn undo(
        &self,
        context: &mut JobContext,
        request: &SuspendRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        match self.parse_phase(phase)? {
            // Nothing to undo: it only reads the registry.
            SuspendPhase::RequestValidated => Ok(()),
            // The other direction: a failed suspend leaves the tenant working, a failed resume locked out.
            SuspendPhase::Resource(kind) => {
                self.switch(context, request, &kind, !self.direction.enables())
                    .await
            }
            // Nothing to undo: it changes nothing outside the job record.
            SuspendPhase::Complete => Ok(()),
        }
    }

    fn undo_failed_advice(&self) -> Option<&str> {
        Some(crate::UNDO_FAILED_ADVICE)
    }

    fn on_complete(&self, job: &JobRecord) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        let event_type = match self.direction {
            Direction::Suspend => "TENANT_SUSPENDED",
            Direction::Resume => "TENANT_RESUMED",
        };
        (
            Some(self.direction.to_status()),
            vec![self.audit(job, event_type)],
        )
    }

    fn on_failure(
        &self,
        job: &JobRecord,
        error: &CodedError,
    ) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        let event_type = match self.direction {
            Direction::Suspend => "TENANT_SUSPEND_FAILED",
            Direction::Resume => "TENANT_RESUME_FAILED",
        };
        // A rolled-back job put every resource back as it was, so the tenant keeps its status. One whose undo
        // failed has resources in both states: doctor and the job's log say which.
        let mut audit = crate::failure_audit(job, event_type, true, error);
        if let Some(reason) = job.params.get("reason") {
            audit.details["reason"] = reason.clone();
        }
        (None, vec![audit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_one_to_five_hundred_characters_of_text() {
        assert_eq!(
            parse_reason("  unpaid invoice \n").unwrap(),
            "unpaid invoice"
        );
        assert_eq!(parse_reason("a\nb").unwrap(), "a\nb");
        for bad in ["", "   ", "tab\there", "nul\0"] {
            assert_eq!(
                parse_reason(bad).unwrap_err().code,
                ErrorCode::InvalidInput,
                "{bad:?}"
            );
        }
        assert!(parse_reason(&"é".repeat(MAX_REASON_CHARS)).is_ok());
        assert_eq!(
            parse_reason(&"é".repeat(MAX_REASON_CHARS + 1))
                .unwrap_err()
                .code,
            ErrorCode::InvalidInput
        );
    }

    #[test]
    fn directions_name_their_kinds_statuses_and_phases() {
        for direction in [Direction::Suspend, Direction::Resume] {
            assert_eq!(Direction::of(direction.job_kind()), Some(direction));
            assert_ne!(direction.from_status(), direction.to_status());
        }
        assert_eq!(
            Direction::Suspend.to_status(),
            Direction::Resume.from_status()
        );
        assert_eq!(Direction::of(JobKind::Provision), None);
        assert_eq!(
            SuspendPhase::Resource("cache".into()).name(Direction::Suspend),
            "cache_disabled"
        );
        assert_eq!(
            SuspendPhase::Resource("cache".into()).name(Direction::Resume),
            "cache_enabled"
        );
    }

    #[test]
    fn the_request_keeps_its_reason_and_refuses_unknown_fields() {
        let slug = Slug::parse("acme").unwrap();
        let request = SuspendRequest::suspend(slug.clone(), " unpaid ").unwrap();
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            serde_json::json!({ "slug": "acme", "reason": "unpaid" })
        );
        assert_eq!(
            serde_json::to_value(SuspendRequest::resume(slug)).unwrap(),
            serde_json::json!({ "slug": "acme" })
        );
        assert!(serde_json::from_value::<SuspendRequest>(
            serde_json::json!({ "slug": "acme", "purge": true })
        )
        .is_err());
    }
}
