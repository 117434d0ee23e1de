//! The credential rotation workflow: new credentials for each of a tenant's resources with no failed login for a
//! client that re-reads the secret. For every kind whose provider rotates, `<kind>_credentials_added` makes new
//! credentials that work alongside the old ones and writes them to the resource's secret; `grace_elapsed` waits
//! (its deadline in the job's state, so a resumed job keeps it); `<kind>_old_credentials_retired` then makes the
//! old ones refused. No kind is named here: each provider decides how two credentials coexist.

use crate::platform::{provider_error, secret_store_error};
use crate::resources::{any_provider, is_known_kind, reach_resource};
use crate::{registry_error, Platform};
use std::time::Duration;
use tenantry_core::{Error as CodedError, ErrorCode, Slug, TenantStatus};
use tenantry_engine::{JobContext, PhaseError, Workflow};
use tenantry_providers::credentials::SecretString;
use tenantry_providers::resources::WantedResource;
use tenantry_registry::{JobRecord, NewAuditEvent, TenantRecord, TenantResourceRecord};

/// The first phase: the tenant is still active and has what the job rotates.
pub const REQUEST_VALIDATED: &str = "request_validated";
/// `<kind>_credentials_added`: new credentials work alongside the old ones, and the secret holds them.
pub const ADDED_SUFFIX: &str = "_credentials_added";
/// The wait between the two halves, so every client re-reads the secret before the old credentials go.
pub const GRACE_ELAPSED: &str = "grace_elapsed";
/// `<kind>_old_credentials_retired`: only the secret's credentials work.
pub const RETIRED_SUFFIX: &str = "_old_credentials_retired";
/// The last phase.
pub const COMPLETE: &str = "complete";

/// The grace period when none is asked for: long enough for clients that re-read their secret on a timer.
pub const DEFAULT_GRACE_SECONDS: u64 = 600;
/// The longest grace period: the old credentials stay valid this long at most.
pub const MAX_GRACE_SECONDS: u64 = 7 * 24 * 3600;

/// The job state key holding when the grace period ends (Unix milliseconds; not a secret).
const GRACE_DEADLINE: &str = "grace_deadline_ms";
/// How often the grace phase looks at the clock and the shutdown signal.
const GRACE_TICK: Duration = Duration::from_millis(200);

/// The secret that holds a resource's credentials from before the rotation until the old ones are retired, so an
/// undo can put them back. It lives in the secret store, encrypted like every secret, never in the job record.
/// A `.` never appears in a secret name made from a slug, so it is never another tenant's secret.
pub fn previous_secret_name(secret_name: &str) -> String {
    format!("{secret_name}{PREVIOUS_SUFFIX}")
}

/// The ending of [`previous_secret_name`] (doctor names a leftover one).
pub const PREVIOUS_SUFFIX: &str = ".previous";

/// The parameters of a rotation job.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    pub slug: Slug,
    /// Only this kind's resource (`None`: every resource whose kind rotates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// How long the old credentials keep working after the new ones are in the secret.
    pub grace_seconds: u64,
}

impl RotateRequest {
    /// A rotation, checked: `E_INVALID_INPUT` for a grace period over seven days or an empty kind.
    pub fn new(
        slug: Slug,
        kind: Option<&str>,
        grace_seconds: Option<i64>,
    ) -> Result<RotateRequest, CodedError> {
        let grace_seconds = match grace_seconds {
            None => DEFAULT_GRACE_SECONDS,
            Some(seconds) if seconds < 0 => {
                return Err(CodedError::invalid_input(
                    "the grace period cannot be negative",
                ))
            }
            Some(seconds) if seconds as u64 > MAX_GRACE_SECONDS => {
                return Err(CodedError::invalid_input(format!(
                    "the grace period is at most {MAX_GRACE_SECONDS} seconds (7 days)"
                )))
            }
            Some(seconds) => seconds as u64,
        };
        let kind = match kind.map(str::trim) {
            Some("") => return Err(CodedError::invalid_input("the kind cannot be empty")),
            other => other.map(str::to_owned),
        };
        Ok(RotateRequest {
            slug,
            kind,
            grace_seconds,
        })
    }
}

/// The actor of the rotations the schedule submits.
pub const SCHEDULE_ACTOR: &str = "system:rotation-schedule";
/// The most scheduled rotations unfinished at once across the fleet: each holds a worker through its grace
/// period, and the schedule must not crowd out jobs people asked for.
pub const SCHEDULED_AT_ONCE: i64 = 4;

/// Submits rotations for active tenants whose plan sets `rotation_days` and whose last completed rotation (or,
/// with none, their creation) is older than that, oldest first, while fewer than [`SCHEDULED_AT_ONCE`] rotations
/// are unfinished. Each goes through [`crate::submit_rotation`], so a tenant with another live job is skipped
/// (`E_CONFLICT`) and tried again at the next sweep. Returns how many it submitted.
pub async fn submit_scheduled_rotations(platform: &Platform) -> Result<usize, CodedError> {
    let scheduled: Vec<(&str, u32, Option<u32>)> = platform
        .settings
        .plans
        .iter()
        .filter_map(|plan| {
            plan.rotation_days
                .map(|days| (plan.name.as_str(), days, plan.rotation_grace_seconds))
        })
        .collect();
    if scheduled.is_empty() {
        return Ok(0);
    }
    let (last_rotated, n_live) = platform
        .registry
        .job_kind_schedule(tenantry_core::JobKind::RotateCredentials)
        .await
        .map_err(registry_error)?;
    let mut room = SCHEDULED_AT_ONCE - n_live;
    if room <= 0 {
        return Ok(0);
    }
    let now = tenantry_registry::now_millis();
    let mut due: Vec<(i64, Option<u32>, TenantRecord)> = Vec::new();
    let page = 500;
    let mut offset = 0;
    loop {
        let tenants = platform
            .registry
            .list_tenants(None, Some(TenantStatus::Active), page, offset)
            .await
            .map_err(registry_error)?;
        let n_read = tenants.len() as i64;
        for tenant in tenants {
            let Some((_, days, grace)) = scheduled.iter().find(|(plan, ..)| *plan == tenant.plan)
            else {
                continue;
            };
            let since = last_rotated
                .get(&tenant.slug)
                .copied()
                .unwrap_or(tenant.created_at)
                .max(tenant.created_at);
            if since + i64::from(*days) * 86_400_000 <= now {
                due.push((since, *grace, tenant));
            }
        }
        if n_read < page {
            break;
        }
        offset += page;
    }
    due.sort_by_key(|(since, ..)| *since);
    let mut submitted = 0;
    for (_, grace, tenant) in due {
        if room <= 0 {
            break;
        }
        let Ok(slug) = Slug::parse(&tenant.slug) else {
            continue;
        };
        let request = RotateRequest::new(slug, None, grace.map(i64::from))?;
        match crate::submit_rotation(platform, &request, SCHEDULE_ACTOR, None).await {
            Ok(_) => {
                submitted += 1;
                room -= 1;
            }
            // Busy with another job, or nothing of it rotates: the next sweep looks again.
            Err(error) if matches!(error.code, ErrorCode::Conflict | ErrorCode::InvalidInput) => {
                tracing::debug!(slug = %tenant.slug, %error, "scheduled rotation not submitted");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(submitted)
}

/// A phase of a rotation job.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RotatePhase {
    RequestValidated,
    Added(String),
    GraceElapsed,
    Retired(String),
    Complete,
}

impl RotatePhase {
    fn name(&self) -> String {
        match self {
            RotatePhase::RequestValidated => REQUEST_VALIDATED.to_owned(),
            RotatePhase::Added(kind) => format!("{kind}{ADDED_SUFFIX}"),
            RotatePhase::GraceElapsed => GRACE_ELAPSED.to_owned(),
            RotatePhase::Retired(kind) => format!("{kind}{RETIRED_SUFFIX}"),
            RotatePhase::Complete => COMPLETE.to_owned(),
        }
    }

    fn parse(platform: &Platform, name: &str) -> Option<RotatePhase> {
        let known = |kind: &&str| is_known_kind(platform, kind);
        match name {
            REQUEST_VALIDATED => Some(RotatePhase::RequestValidated),
            GRACE_ELAPSED => Some(RotatePhase::GraceElapsed),
            COMPLETE => Some(RotatePhase::Complete),
            _ => {
                if let Some(kind) = name.strip_suffix(RETIRED_SUFFIX).filter(known) {
                    Some(RotatePhase::Retired(kind.to_owned()))
                } else {
                    name.strip_suffix(ADDED_SUFFIX)
                        .filter(known)
                        .map(|kind| RotatePhase::Added(kind.to_owned()))
                }
            }
        }
    }
}

/// The phases of a rotation of `kinds` (in the tenant's resource order): every addition, one wait, every
/// retirement. The additions all come before the one wait, so the job waits once however many kinds it rotates.
pub fn rotate_phases(kinds: &[String]) -> Vec<String> {
    std::iter::once(RotatePhase::RequestValidated)
        .chain(kinds.iter().cloned().map(RotatePhase::Added))
        .chain(std::iter::once(RotatePhase::GraceElapsed))
        .chain(kinds.iter().cloned().map(RotatePhase::Retired))
        .chain(std::iter::once(RotatePhase::Complete))
        .map(|phase| phase.name())
        .collect()
}

/// What a rotation of a tenant covers: the kinds it rotates, and the resources it leaves out with why.
#[derive(Debug, Clone)]
pub struct RotationScope {
    pub tenant: TenantRecord,
    pub kinds: Vec<String>,
    pub skipped: Vec<String>,
}

/// The request checked against the registry before a job is created: the tenant is registered (`E_NOT_FOUND`)
/// and active (`E_CONFLICT`: a suspended tenant's credentials are off), the kind is one tenantry knows and the
/// tenant has (`E_INVALID_INPUT`), and something has credentials to rotate (`E_INVALID_INPUT`).
pub async fn validate_rotation(
    platform: &Platform,
    request: &RotateRequest,
) -> Result<RotationScope, CodedError> {
    if request.grace_seconds > MAX_GRACE_SECONDS {
        return Err(CodedError::invalid_input(format!(
            "the grace period is at most {MAX_GRACE_SECONDS} seconds (7 days)"
        )));
    }
    if let Some(kind) = &request.kind {
        if !is_known_kind(platform, kind) {
            let mut kinds = vec![tenantry_core::DATABASE_RESOURCE];
            kinds.extend(platform.providers.kinds());
            return Err(CodedError::invalid_input(format!(
                "unknown resource kind {kind:?}; known kinds: {}",
                kinds.join(", ")
            )));
        }
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
    refuse_status(&tenant)?;
    let resources = platform
        .registry
        .tenant_resources(&tenant.slug)
        .await
        .map_err(registry_error)?;
    let resources: Vec<&TenantResourceRecord> = resources
        .iter()
        .filter(|resource| is_known_kind(platform, &resource.kind))
        .filter(|resource| {
            request
                .kind
                .as_ref()
                .is_none_or(|kind| *kind == resource.kind)
        })
        .collect();
    if let (Some(kind), true) = (&request.kind, resources.is_empty()) {
        return Err(CodedError::invalid_input(format!(
            "tenant {:?} has no {kind}",
            tenant.slug
        )));
    }
    let mut kinds = Vec::new();
    let mut skipped = Vec::new();
    for resource in resources {
        let provider = any_provider(platform, &resource.kind)?;
        let server = platform
            .registry
            .get_server(&resource.server_name)
            .await
            .map_err(registry_error)?;
        if provider.rotates(server.engine) {
            kinds.push(resource.kind.clone());
        } else {
            skipped.push(format!(
                "{} on {} server {}: no credentials to rotate",
                resource.kind, server.engine, server.name
            ));
        }
    }
    if kinds.is_empty() {
        return Err(CodedError::invalid_input(format!(
            "tenant {:?} has nothing whose credentials rotate ({})",
            tenant.slug,
            skipped.join("; ")
        )));
    }
    Ok(RotationScope {
        tenant,
        kinds,
        skipped,
    })
}

fn refuse_status(tenant: &TenantRecord) -> Result<(), CodedError> {
    if tenant.status == TenantStatus::Active {
        return Ok(());
    }
    Err(CodedError::new(
        ErrorCode::Conflict,
        format!(
            "tenant {:?} is {}; only an active tenant's credentials are rotated",
            tenant.slug, tenant.status
        ),
    ))
}

/// Rotates one tenant's credentials.
pub struct RotateWorkflow {
    platform: Platform,
}

/// One resource as a rotation phase reaches it.
struct Target {
    provider: std::sync::Arc<dyn tenantry_providers::resources::ResourceProvider>,
    server: tenantry_providers::resources::ResourceServer,
    wanted: WantedResource,
    secret_name: String,
    labels: serde_json::Value,
}

impl RotateWorkflow {
    pub fn new(platform: Platform) -> RotateWorkflow {
        RotateWorkflow { platform }
    }

    fn parse_phase(&self, phase: &str) -> Result<RotatePhase, PhaseError> {
        RotatePhase::parse(&self.platform, phase)
            .ok_or_else(|| crate::phases::unknown_phase("rotation", phase))
    }

    async fn target(&self, slug: &Slug, kind: &str) -> Result<Target, PhaseError> {
        let tenant = self
            .platform
            .registry
            .get_tenant(slug.as_str())
            .await?
            .ok_or_else(|| {
                PhaseError::fatal(
                    ErrorCode::PartialState,
                    format!("tenant {} is not registered any more", slug.as_str()),
                )
            })?;
        let resource = self
            .platform
            .registry
            .tenant_resources(slug.as_str())
            .await?
            .into_iter()
            .find(|resource| resource.kind == kind)
            .ok_or_else(|| {
                PhaseError::fatal(
                    ErrorCode::PartialState,
                    format!(
                        "tenant {} has no {kind} in the registry any more",
                        slug.as_str()
                    ),
                )
            })?;
        let (provider, server) =
            reach_resource(&self.platform, kind, &resource.server_name).await?;
        let secret_name = resource
            .secret_name
            .clone()
            .unwrap_or_else(|| provider.secret_name(slug));
        let installation_id = server.installation.id().to_owned();
        // The labels the secret has (provisioning gave them, set-plan keeps them current), so a rewrite changes
        // the value only; the plan's labels for a secret that is somehow absent.
        let labels = match self.platform.registry.secret_labels(&secret_name).await? {
            Some(labels) => labels,
            None => match self.platform.settings.plan(&tenant.plan) {
                Some(plan) => crate::resources::labels(slug, plan, &installation_id),
                None => resource.labels.clone(),
            },
        };
        Ok(Target {
            provider,
            server,
            wanted: WantedResource::new(slug, serde_json::json!({})),
            secret_name,
            labels,
        })
    }

    async fn read(&self, name: &str) -> Result<Option<SecretString>, PhaseError> {
        self.platform.read_secret(name).await
    }

    async fn put(
        &self,
        context: &JobContext,
        name: &str,
        value: &SecretString,
        labels: &serde_json::Value,
    ) -> Result<(), PhaseError> {
        self.platform
            .secrets
            .put_for_job(&context.fence, name, value, labels)
            .await
            .map_err(|error| secret_store_error(&error))
    }

    /// `request_validated`: the tenant is still active (a suspension may have come between the submission and
    /// this run), and the wait of a job run again from the start is measured anew.
    async fn request_validated(
        &self,
        context: &mut JobContext,
        request: &RotateRequest,
    ) -> Result<(), PhaseError> {
        let scope = validate_rotation(&self.platform, request)
            .await
            .map_err(PhaseError::Fatal)?;
        for skipped in &scope.skipped {
            context.log("info", &format!("skipped {skipped}")).await?;
        }
        context
            .set_state(GRACE_DEADLINE, serde_json::Value::Null)
            .await?;
        context
            .log(
                "info",
                &format!(
                    "rotating the credentials of tenant {} ({}); the old ones stay valid {} s after the new ones \
                     are in the secrets",
                    scope.tenant.slug,
                    scope.kinds.join(", "),
                    request.grace_seconds
                ),
            )
            .await
    }

    /// `<kind>_credentials_added`: the secret's credentials are kept as `<secret>.previous`, new ones are made
    /// (working alongside the old, checked by logging in) and written to the secret. Run again, it finds the
    /// secret already changed and does nothing; a run that stopped before writing the secret makes other new
    /// credentials, and the retirement clears every credential but the secret's.
    async fn add(
        &self,
        context: &mut JobContext,
        request: &RotateRequest,
        kind: &str,
    ) -> Result<(), PhaseError> {
        let target = self.target(&request.slug, kind).await?;
        let previous_name = previous_secret_name(&target.secret_name);
        let current = self.read(&target.secret_name).await?.ok_or_else(|| {
            PhaseError::fatal(
                ErrorCode::PartialState,
                format!(
                    "the secret {} is missing; `tenantry doctor` names what is wrong",
                    target.secret_name
                ),
            )
        })?;
        // This job's copy only: one left by an older job that failed is stale, and is replaced.
        let saved_key = format!("{kind}_previous_saved");
        let saved = context.job.state.get(&saved_key) == Some(&serde_json::json!(true));
        let previous = match (saved, self.read(&previous_name).await?) {
            (true, Some(previous)) => previous,
            _ => {
                self.put(context, &previous_name, &current, &target.labels)
                    .await?;
                context
                    .set_state(&saved_key, serde_json::json!(true))
                    .await?;
                current.clone()
            }
        };
        if current.expose() != previous.expose() {
            context
                .log(
                    "info",
                    &format!(
                        "{kind}: the secret {} already holds the new credentials",
                        target.secret_name
                    ),
                )
                .await?;
            return Ok(());
        }
        let new_credentials = target
            .provider
            .rotate_add(&target.server, &target.wanted, &previous)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        tenantry_engine::failpoint(&format!("{kind}{ADDED_SUFFIX}"), "credentials_added").await?;
        self.put(
            context,
            &target.secret_name,
            &new_credentials,
            &target.labels,
        )
        .await?;
        context
            .log(
                "info",
                &format!(
                    "{kind} {} on server {}: new credentials work alongside the old ones and are in secret {}",
                    target.wanted.name, target.server.name, target.secret_name
                ),
            )
            .await
    }

    /// The undo of `<kind>_credentials_added`: the old credentials back in the secret, then only they work, then
    /// the copy goes. Without a copy there is nothing to put back: the addition never began, or was undone, or
    /// the old credentials were retired already (then the new ones stand: they work, and reviving refused
    /// credentials would help no client).
    async fn add_undo(
        &self,
        context: &mut JobContext,
        request: &RotateRequest,
        kind: &str,
    ) -> Result<(), PhaseError> {
        let target = self.target(&request.slug, kind).await?;
        let previous_name = previous_secret_name(&target.secret_name);
        let saved = context.job.state.get(format!("{kind}_previous_saved"))
            == Some(&serde_json::json!(true));
        let Some(previous) = self.read(&previous_name).await?.filter(|_| saved) else {
            return Ok(());
        };
        self.put(context, &target.secret_name, &previous, &target.labels)
            .await?;
        target
            .provider
            .rotate_retire(&target.server, &target.wanted, &previous)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        self.platform
            .secrets
            .delete_for_job(&context.fence, &previous_name)
            .await
            .map_err(|error| secret_store_error(&error))?;
        context
            .log(
                "info",
                &format!(
                    "{kind}: the old credentials are back in secret {}",
                    target.secret_name
                ),
            )
            .await
    }

    /// `grace_elapsed`: waits until the deadline recorded in the job's state (recorded on the first run, so a
    /// resumed job waits only what is left). The worker's heartbeat keeps the lease while it sleeps; a shutdown
    /// hands the job back, and whoever takes it waits out the same deadline.
    async fn grace_elapsed(
        &self,
        context: &mut JobContext,
        request: &RotateRequest,
    ) -> Result<(), PhaseError> {
        let deadline = match context
            .job
            .state
            .get(GRACE_DEADLINE)
            .and_then(serde_json::Value::as_i64)
        {
            Some(deadline) => deadline,
            None => {
                let deadline =
                    tenantry_registry::now_millis() + (request.grace_seconds as i64) * 1000;
                context
                    .log(
                        "info",
                        &format!(
                            "waiting {} s for clients to re-read their secrets before the old credentials are refused",
                            request.grace_seconds
                        ),
                    )
                    .await?;
                context
                    .set_state(GRACE_DEADLINE, serde_json::json!(deadline))
                    .await?;
                deadline
            }
        };
        loop {
            let left = deadline - tenantry_registry::now_millis();
            if left <= 0 {
                return Ok(());
            }
            if context.stop_requested() {
                return Err(PhaseError::HandBack);
            }
            tokio::time::sleep(GRACE_TICK.min(Duration::from_millis(left as u64))).await;
        }
    }

    /// `<kind>_old_credentials_retired`: only the secret's credentials work, and the copy of the old ones goes.
    async fn retire(
        &self,
        context: &mut JobContext,
        request: &RotateRequest,
        kind: &str,
    ) -> Result<(), PhaseError> {
        let target = self.target(&request.slug, kind).await?;
        let current = self.read(&target.secret_name).await?.ok_or_else(|| {
            PhaseError::fatal(
                ErrorCode::PartialState,
                format!("the secret {} is missing", target.secret_name),
            )
        })?;
        target
            .provider
            .rotate_retire(&target.server, &target.wanted, &current)
            .await
            .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
        self.platform
            .secrets
            .delete_for_job(&context.fence, &previous_secret_name(&target.secret_name))
            .await
            .map_err(|error| secret_store_error(&error))?;
        context
            .log(
                "info",
                &format!(
                    "{kind} {} on server {}: the old credentials are refused",
                    target.wanted.name, target.server.name
                ),
            )
            .await
    }

    fn rotated_kinds(job: &JobRecord) -> Vec<String> {
        job.phases
            .iter()
            .filter_map(|phase| phase.name.strip_suffix(ADDED_SUFFIX))
            .map(str::to_owned)
            .collect()
    }
}

impl Workflow for RotateWorkflow {
    type Params = RotateRequest;

    async fn apply(
        &self,
        context: &mut JobContext,
        request: &RotateRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        match self.parse_phase(phase)? {
            RotatePhase::RequestValidated => self.request_validated(context, request).await,
            RotatePhase::Added(kind) => self.add(context, request, &kind).await,
            RotatePhase::GraceElapsed => self.grace_elapsed(context, request).await,
            RotatePhase::Retired(kind) => self.retire(context, request, &kind).await,
            // Nothing left to do: the audit event is written with the job's end.
            RotatePhase::Complete => Ok(()),
        }
    }

    async fn undo(
        &self,
        context: &mut JobContext,
        request: &RotateRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        match self.parse_phase(phase)? {
            // Nothing to undo: it reads the registry and clears the job's own deadline.
            RotatePhase::RequestValidated => Ok(()),
            RotatePhase::Added(kind) => self.add_undo(context, request, &kind).await,
            // Nothing to undo: waiting changes nothing.
            RotatePhase::GraceElapsed => Ok(()),
            // Nothing to undo: the secret's credentials work, and the old ones stay refused (a client that
            // re-reads the secret gets working ones; bringing refused credentials back helps none).
            RotatePhase::Retired(_) => Ok(()),
            // Nothing to undo: it changes nothing outside the job record.
            RotatePhase::Complete => Ok(()),
        }
    }

    fn undo_failed_advice(&self) -> Option<&str> {
        Some(crate::UNDO_FAILED_ADVICE)
    }

    fn on_complete(&self, job: &JobRecord) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        // Which kinds and how long the old credentials stayed valid; never a credential.
        let audit = NewAuditEvent {
            actor: job.actor.clone(),
            event_type: "CREDENTIALS_ROTATED",
            tenant_slug: Some(job.tenant_slug.clone()),
            job_id: Some(job.id.clone()),
            details: serde_json::json!({
                "kinds": Self::rotated_kinds(job),
                "grace_seconds": job.params.get("grace_seconds"),
            }),
        };
        (None, vec![audit])
    }

    fn on_failure(
        &self,
        job: &JobRecord,
        error: &CodedError,
    ) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        let mut audit = crate::failure_audit(job, "CREDENTIALS_ROTATION_FAILED", true, error);
        audit.details["kinds"] = serde_json::json!(Self::rotated_kinds(job));
        (None, vec![audit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_every_kind_wait_once_then_retire_every_kind() {
        assert_eq!(
            rotate_phases(&["cache".into(), "queue".into()]),
            [
                "request_validated",
                "cache_credentials_added",
                "queue_credentials_added",
                "grace_elapsed",
                "cache_old_credentials_retired",
                "queue_old_credentials_retired",
                "complete"
            ]
        );
    }

    #[test]
    fn the_grace_period_is_bounded_and_defaults_to_ten_minutes() {
        let slug = Slug::parse("acme").unwrap();
        assert_eq!(
            RotateRequest::new(slug.clone(), None, None)
                .unwrap()
                .grace_seconds,
            DEFAULT_GRACE_SECONDS
        );
        assert_eq!(
            RotateRequest::new(slug.clone(), Some("cache"), Some(0))
                .unwrap()
                .grace_seconds,
            0
        );
        for bad in [-1, MAX_GRACE_SECONDS as i64 + 1] {
            assert_eq!(
                RotateRequest::new(slug.clone(), None, Some(bad))
                    .unwrap_err()
                    .code,
                ErrorCode::InvalidInput
            );
        }
        assert_eq!(
            RotateRequest::new(slug, Some(" "), None).unwrap_err().code,
            ErrorCode::InvalidInput
        );
    }

    #[test]
    fn the_previous_secret_cannot_be_a_tenants_secret() {
        let name = previous_secret_name("tenant-cache-acme");
        assert_eq!(name, "tenant-cache-acme.previous");
        assert!(Slug::parse(name.trim_start_matches("tenant-cache-")).is_err());
    }
}
