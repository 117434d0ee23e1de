//! Drift repair of tenants' resources beyond their databases: each resource is observed and, when it is missing
//! or differs from what its tenant's plan and status want, ensured again. One fleet-wide job does every tenant
//! at once (a Redis restart loses every ACL user on it); a tenant's own reconcile (a set-plan job to its plan)
//! runs the same step for that tenant.

use crate::phases::{phases, unknown_phase};
use crate::platform::{provider_error, Platform};
use crate::resources::{require_provider, resource_server, wanted};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use std::collections::BTreeMap;
use tenantry_core::{Error as CodedError, ErrorCode, Slug, TenantStatus};
use tenantry_engine::{JobContext, PhaseError, Workflow};
use tenantry_providers::engines::Ownership;
use tenantry_providers::resources::{Observed, ResourceServer};
use tenantry_registry::{JobRecord, NewAuditEvent, TenantResourceRecord, RESOURCE_ACTIVE};

phases! {
    /// The phases of a fleet reconcile.
    enum ReconcilePhase {
        RequestValidated = "request_validated",
        ResourcesEnsured = "resources_ensured",
        Complete = "complete",
    }
}

/// The phases of a fleet reconcile. Their names are API.
pub const RECONCILE_PHASES: [&str; 3] = ReconcilePhase::names(ReconcilePhase::ALL);

/// What a fleet reconcile job is recorded under in place of a tenant: not a valid slug, so no tenant's job waits
/// for it, and two fleet reconciles never run at once (one live job per subject).
pub const FLEET_SUBJECT: &str = "*fleet";

/// How many resources are observed and ensured at once.
const CONCURRENCY: usize = 32;

/// The parameters of a fleet reconcile job.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    /// Only resources of this kind (every kind beyond the database when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// One resource brought back in line.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Repair {
    pub tenant: String,
    pub kind: String,
    pub server: String,
    /// What observe saw: `missing`, or the differences.
    pub found: String,
}

/// Observes each of `resources` and ensures those missing or different. Returns what was repaired; another
/// installation's object under a tenant's name is left alone and reported in the log.
/// Each resource comes with the plan whose quotas it should have.
pub(crate) async fn ensure_resources(
    platform: &Platform,
    context: &mut JobContext,
    resources: Vec<(TenantResourceRecord, String)>,
) -> Result<Vec<Repair>, PhaseError> {
    let mut servers: BTreeMap<String, ResourceServer> = BTreeMap::new();
    for (resource, _) in &resources {
        if !servers.contains_key(&resource.server_name) {
            let record = platform.registry.get_server(&resource.server_name).await?;
            let server = resource_server(platform, &record)
                .await
                .map_err(PhaseError::Fatal)?;
            servers.insert(resource.server_name.clone(), server);
        }
    }
    let outcomes: Vec<Result<Option<Repair>, String>> = stream::iter(resources)
        .map(|(resource, plan_name)| {
            let server = &servers[&resource.server_name];
            async move { ensure_one(platform, server, &plan_name, &resource).await }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let mut repairs = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(Some(repair)) => {
                context
                    .log(
                        "info",
                        &format!(
                            "{} of tenant {} on server {}: {}; ensured",
                            repair.kind, repair.tenant, repair.server, repair.found
                        ),
                    )
                    .await?;
                repairs.push(repair);
            }
            Ok(None) => {}
            Err(left_alone) => context.log("warn", &left_alone).await?,
        }
    }
    Ok(repairs)
}

/// One resource: `Ok(Some)` repaired, `Ok(None)` already right, `Err` left alone (not this installation's).
async fn ensure_one(
    platform: &Platform,
    server: &ResourceServer,
    plan_name: &str,
    resource: &TenantResourceRecord,
) -> Result<Result<Option<Repair>, String>, PhaseError> {
    let provider = require_provider(platform, &resource.kind).map_err(PhaseError::Fatal)?;
    let slug = Slug::parse(&resource.tenant_slug).map_err(PhaseError::Fatal)?;
    // The tenant's tier scales the quotas its resources should have.
    let tier = platform
        .registry
        .get_tenant(&resource.tenant_slug)
        .await?
        .map(|tenant| tenant.profile.resource_tier)
        .unwrap_or_default();
    let plan = crate::plans::tenant_plan(&platform.settings, plan_name, tier)
        .map_err(PhaseError::Fatal)?;
    let wanted = wanted(
        &slug,
        &plan,
        &resource.kind,
        resource.status == RESOURCE_ACTIVE,
    );
    let secret_name = provider.secret_name(&slug);
    let credentials = if provider.has_secret() {
        platform.read_secret(&secret_name).await?.ok_or_else(|| {
            PhaseError::fatal(
                ErrorCode::PartialState,
                format!("secret {secret_name} of tenant {slug} is missing; it cannot be made again without new credentials"),
            )
        })?
    } else {
        provider
            .new_credentials(server, &wanted)
            .map_err(|error| provider_error(ErrorCode::Internal, error))?
    };
    let observed = provider
        .observe(server, &wanted, Some(&credentials))
        .await
        .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
    let found = match observed {
        Observed::Absent => "missing".to_owned(),
        Observed::Present { ownership, .. } if ownership != Ownership::Ours => {
            return Ok(Err(format!(
                "{} {} on server {} is not this installation's; left alone",
                resource.kind, resource.name, server.name
            )))
        }
        Observed::Present { differences, .. } if differences.is_empty() => return Ok(Ok(None)),
        Observed::Present { differences, .. } => differences.join("; "),
    };
    provider
        .ensure(server, &wanted, &credentials)
        .await
        .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
    Ok(Ok(Some(Repair {
        tenant: resource.tenant_slug.clone(),
        kind: resource.kind.clone(),
        server: server.name.clone(),
        found,
    })))
}

/// The resources a reconcile works on, each with its tenant's plan: every registered tenant's resources of a
/// provided kind (or of `kind`), except tenants a job is changing (provisioning, offboarding) or that failed.
pub(crate) async fn reconcilable(
    platform: &Platform,
    slug: Option<&str>,
    kind: Option<&str>,
) -> Result<Vec<(TenantResourceRecord, String)>, PhaseError> {
    let resources = match slug {
        Some(slug) => platform.registry.tenant_resources(slug).await?,
        None => platform.registry.list_resources(kind).await?,
    };
    let tenants: BTreeMap<String, (TenantStatus, String)> = match slug {
        Some(slug) => platform
            .registry
            .get_tenant(slug)
            .await?
            .into_iter()
            .map(|tenant| (tenant.slug, (tenant.status, tenant.plan)))
            .collect(),
        None => platform
            .registry
            .list_tenants(None, None, i64::MAX, 0)
            .await?
            .into_iter()
            .map(|tenant| (tenant.slug, (tenant.status, tenant.plan)))
            .collect(),
    };
    Ok(resources
        .into_iter()
        .filter(|resource| platform.providers.get(&resource.kind).is_some())
        .filter(|resource| kind.is_none_or(|kind| resource.kind == kind))
        .filter_map(|resource| {
            let (status, plan) = tenants.get(&resource.tenant_slug)?;
            matches!(
                status,
                TenantStatus::Active | TenantStatus::Suspended | TenantStatus::Offboarded
            )
            .then(|| (resource, plan.clone()))
        })
        .collect())
}

/// Checks a reconcile's kind before a job is made.
pub fn validate_kind(platform: &Platform, kind: Option<&str>) -> Result<(), CodedError> {
    match kind {
        None | Some(tenantry_core::DATABASE_RESOURCE) => Ok(()),
        Some(kind) => require_provider(platform, kind).map(|_| ()),
    }
}

/// Brings every tenant's resources (of one kind, or of every kind beyond the database) back in line.
pub struct ReconcileWorkflow {
    platform: Platform,
}

impl ReconcileWorkflow {
    pub fn new(platform: Platform) -> ReconcileWorkflow {
        ReconcileWorkflow { platform }
    }
}

impl Workflow for ReconcileWorkflow {
    type Params = ReconcileRequest;

    async fn apply(
        &self,
        context: &mut JobContext,
        request: &ReconcileRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        let phase =
            ReconcilePhase::parse(phase).ok_or_else(|| unknown_phase("reconcile", phase))?;
        match phase {
            ReconcilePhase::RequestValidated => {
                validate_kind(&self.platform, request.kind.as_deref()).map_err(PhaseError::Fatal)
            }
            ReconcilePhase::ResourcesEnsured => {
                let resources = reconcilable(&self.platform, None, request.kind.as_deref()).await?;
                let n_resources = resources.len();
                let repairs = ensure_resources(&self.platform, context, resources).await?;
                context.set_output("repaired", serde_json::json!(repairs));
                context
                    .log(
                        "info",
                        &format!(
                            "{n_resources} resource(s) observed, {} repaired",
                            repairs.len()
                        ),
                    )
                    .await
            }
            ReconcilePhase::Complete => Ok(()),
        }
    }

    async fn undo(
        &self,
        _context: &mut JobContext,
        _request: &ReconcileRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        let phase =
            ReconcilePhase::parse(phase).ok_or_else(|| unknown_phase("reconcile", phase))?;
        match phase {
            // Nothing to undo: it only reads the request.
            ReconcilePhase::RequestValidated => Ok(()),
            // Nothing to undo: a repair brings a resource back to what the registry says it is, and undoing it
            // would break the resource again.
            ReconcilePhase::ResourcesEnsured => Ok(()),
            // Nothing to undo: it changes nothing outside the job record.
            ReconcilePhase::Complete => Ok(()),
        }
    }

    fn undo_failed_advice(&self) -> Option<&str> {
        Some(crate::UNDO_FAILED_ADVICE)
    }

    fn on_complete(&self, job: &JobRecord) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        let repairs: Vec<Repair> = job
            .state
            .get("repaired")
            .and_then(|repaired| serde_json::from_value(repaired.clone()).ok())
            .unwrap_or_default();
        let mut by_tenant: BTreeMap<&str, Vec<&Repair>> = BTreeMap::new();
        for repair in &repairs {
            by_tenant.entry(&repair.tenant).or_default().push(repair);
        }
        let audits = by_tenant
            .into_iter()
            .map(|(tenant, repairs)| NewAuditEvent {
                actor: job.actor.clone(),
                event_type: "TENANT_RECONCILED",
                tenant_slug: Some(tenant.to_owned()),
                job_id: Some(job.id.clone()),
                details: serde_json::json!({ "repaired": repairs }),
            })
            .collect();
        (None, audits)
    }

    fn on_failure(
        &self,
        job: &JobRecord,
        error: &CodedError,
    ) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        let audit = crate::failure_audit(job, "FLEET_RECONCILE_FAILED", false, error);
        (None, vec![audit])
    }
}
