//! A tenant's resources beyond its database, as the workflows use them: reaching a resource's server, what a
//! plan wants of each kind, and the phases (`<kind>_created`) and steps every workflow shares. Nothing here
//! names a kind: the plan lists them and [`Providers`] serves them.

use crate::plans::cost_labels;
use crate::platform::{provider_error, secret_store_error, unless_foreign, Platform};
use std::sync::Arc;
use tenantry_core::{Error as CodedError, ErrorCode, Plan, Slug, DATABASE_RESOURCE};
use tenantry_engine::{JobContext, PhaseError};
use tenantry_providers::resources::{
    Observed, ResourceProvider, ResourceServer, TenantDatabases, WantedResource,
};
use tenantry_registry::{
    Placement, ServerRecord, TenantResourceRecord, RESOURCE_ACTIVE, RESOURCE_DISABLED,
};

/// The suffix of the provisioning phase that makes a resource of one kind: `cache_created`.
pub const CREATED_SUFFIX: &str = "_created";

/// The kinds `plan` gives a tenant besides its database, in the order they are made.
pub fn extra_kinds(plan: &Plan) -> impl Iterator<Item = &str> {
    plan.resources
        .iter()
        .map(String::as_str)
        .filter(|kind| *kind != DATABASE_RESOURCE)
}

/// The phase that makes `kind`'s resource.
pub fn created_phase(kind: &str) -> String {
    format!("{kind}{CREATED_SUFFIX}")
}

/// The kind a `<kind>_created` phase makes, if `phase` is one for a registered kind.
pub fn kind_of_phase<'p>(platform: &Platform, phase: &'p str) -> Option<&'p str> {
    phase
        .strip_suffix(CREATED_SUFFIX)
        .filter(|kind| platform.providers.get(kind).is_some())
}

/// What the tenant's resource of `kind` should be under `plan`.
pub fn wanted(slug: &Slug, plan: &Plan, kind: &str, enabled: bool) -> WantedResource {
    let mut wanted = WantedResource::new(
        slug,
        plan.quotas
            .get(kind)
            .cloned()
            .unwrap_or_else(|| serde_json::json!({})),
    );
    wanted.enabled = enabled;
    wanted.labels = cost_labels(slug.as_str(), plan);
    // The database's provider places a shared-tier tenant in the server's shared database.
    if kind == tenantry_core::DATABASE_RESOURCE
        && plan.isolation == tenantry_core::Isolation::Schema
    {
        if !wanted.quotas.is_object() {
            wanted.quotas = serde_json::json!({});
        }
        wanted.quotas["isolation"] = serde_json::json!(plan.isolation);
        wanted.quotas["shared_tables"] = serde_json::json!(plan.shared_tables);
    }
    wanted
}

/// A resource's labels: the tenant's cost labels and the installation that made it.
pub fn labels(slug: &Slug, plan: &Plan, installation_id: &str) -> serde_json::Value {
    let mut labels = cost_labels(slug.as_str(), plan);
    labels["installation"] = serde_json::json!(installation_id);
    labels
}

pub(crate) fn require_provider<'p>(
    platform: &'p Platform,
    kind: &str,
) -> Result<&'p Arc<dyn ResourceProvider>, CodedError> {
    platform
        .providers
        .require(kind)
        .map_err(|error| CodedError::new(ErrorCode::InvalidInput, error.to_string()))
}

/// The provider of any kind a tenant can have, the database included: the database's provider is not registered
/// (provisioning makes the database through its own named phases), but suspension and resumption treat every
/// resource alike.
pub(crate) fn any_provider(
    platform: &Platform,
    kind: &str,
) -> Result<Arc<dyn ResourceProvider>, CodedError> {
    if kind == DATABASE_RESOURCE {
        return Ok(Arc::new(TenantDatabases::new(platform.sessions.clone())));
    }
    require_provider(platform, kind).cloned()
}

/// Whether `kind` is one [`any_provider`] serves.
pub(crate) fn is_known_kind(platform: &Platform, kind: &str) -> bool {
    kind == DATABASE_RESOURCE || platform.providers.get(kind).is_some()
}

/// A resource's provider and its server, by the kind and the server's name.
pub(crate) async fn reach_resource(
    platform: &Platform,
    kind: &str,
    server_name: &str,
) -> Result<(Arc<dyn ResourceProvider>, ResourceServer), PhaseError> {
    let provider = any_provider(platform, kind).map_err(PhaseError::Fatal)?;
    let record = platform.registry.get_server(server_name).await?;
    let server = resource_server(platform, &record)
        .await
        .map_err(PhaseError::Fatal)?;
    Ok((provider, server))
}

/// What to do when the object under a tenant's name is another installation's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnForeign {
    /// Leave it in place and say so in the job log (offboarding: nothing of ours is there to lock).
    LeaveInPlace,
    /// Fail with `E_FOREIGN_OBJECT` (suspension: a tenant that cannot be locked out is not suspended).
    Refuse,
}

/// Where a tenant's resource is: its kind and its server's name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResourceAt<'a> {
    pub kind: &'a str,
    pub server_name: &'a str,
}

/// Turns a tenant's resource off (its credentials stop working and its sessions end, its data stays) or back on,
/// and records its status in `tenant_resources` when `registered`. Both directions converge when repeated, so
/// the same call is an apply and the other one its undo.
pub(crate) async fn switch_resource(
    platform: &Platform,
    context: &mut JobContext,
    slug: &Slug,
    at: ResourceAt<'_>,
    enabled: bool,
    registered: bool,
    on_foreign: OnForeign,
) -> Result<(), PhaseError> {
    let ResourceAt { kind, server_name } = at;
    let (provider, server) = reach_resource(platform, kind, server_name).await?;
    let name = slug.resource_name();
    let outcome = if enabled {
        provider.enable(&server, &name).await
    } else {
        provider.disable(&server, &name).await
    };
    let switched = match on_foreign {
        OnForeign::LeaveInPlace => unless_foreign(context, outcome).await?,
        OnForeign::Refuse => {
            outcome.map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
            true
        }
    };
    if !switched {
        return Ok(());
    }
    if registered {
        let status = if enabled {
            RESOURCE_ACTIVE
        } else {
            RESOURCE_DISABLED
        };
        platform
            .registry
            .set_resource_status(&context.fence, slug.as_str(), kind, status)
            .await?;
    }
    context
        .log(
            "info",
            &format!(
                "{kind} {name} on server {server_name}: credentials {}",
                if enabled {
                    "enabled"
                } else {
                    "disabled and sessions ended"
                }
            ),
        )
        .await
}

/// Reaches a resource's server as its provider does.
pub async fn resource_server(
    platform: &Platform,
    record: &ServerRecord,
) -> Result<ResourceServer, CodedError> {
    let admin_url = platform.admin_url(record).await?;
    Ok(ResourceServer {
        name: record.name.clone(),
        engine: record.engine,
        admin_url,
        public_url: record.public_url.clone(),
        installation: platform.installation().await?,
    })
}

/// The steps of `<kind>_created`: place the resource on a server of its kind in the tenant's region, store its
/// credentials, and ensure it. Every step converges when run again after a crash.
pub(crate) async fn create_resource(
    platform: &Platform,
    context: &mut JobContext,
    slug: &Slug,
    plan: &Plan,
    region: &str,
    kind: &str,
) -> Result<(), PhaseError> {
    let provider = require_provider(platform, kind).map_err(PhaseError::Fatal)?;
    let placement = platform
        .registry
        .place_resource(&context.fence, kind, provider.engines(), region)
        .await?;
    let record = match placement {
        Placement::Placed(record) => record,
        Placement::ServerUnavailable | Placement::NoCapacity { .. } => {
            let engines: Vec<&str> = provider
                .engines()
                .iter()
                .map(|engine| engine.as_str())
                .collect();
            return Err(PhaseError::fatal(
                ErrorCode::NoCapacity,
                format!(
                    "no room for the tenant's {kind}: no active {} server in region {region:?} has room",
                    engines.join(" or ")
                ),
            ));
        }
    };
    let server = resource_server(platform, &record)
        .await
        .map_err(PhaseError::Fatal)?;
    let wanted = wanted(slug, plan, kind, true);
    let secret_name = provider.secret_name(slug);
    let stored = if provider.has_secret() {
        platform.read_secret(&secret_name).await?
    } else {
        // Nothing secret to keep: the credentials follow from the server and the resource, and what stands on the
        // server under this installation's mark is converged below like anything else of ours.
        Some(
            provider
                .new_credentials(&server, &wanted)
                .map_err(|error| provider_error(ErrorCode::Internal, error))?,
        )
    };
    let credentials = match stored {
        // An earlier run of this phase stored it (state_checked found none before the job began).
        Some(credentials) => credentials,
        None => {
            // No credentials yet, so nothing of this job's stands on the server: what does is a leftover.
            if let Observed::Present { .. } = provider
                .observe(&server, &wanted, None)
                .await
                .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?
            {
                return Err(PhaseError::fatal(
                    ErrorCode::PartialState,
                    format!(
                        "{kind} {} already exists on server {} without a registry row; clear it with \
                         `tenantry offboard-tenant --slug {} --purge`",
                        wanted.name,
                        record.name,
                        slug.as_str()
                    ),
                ));
            }
            let credentials = provider
                .new_credentials(&server, &wanted)
                .map_err(|error| provider_error(ErrorCode::Internal, error))?;
            let installation_id = server.installation.id().to_owned();
            platform
                .secrets
                .put_for_job(
                    &context.fence,
                    &secret_name,
                    &credentials,
                    &labels(slug, plan, &installation_id),
                )
                .await
                .map_err(|error| secret_store_error(&error))?;
            credentials
        }
    };
    tenantry_engine::failpoint(&created_phase(kind), "credentials_stored").await?;
    provider
        .ensure(&server, &wanted, &credentials)
        .await
        .map_err(|error| provider_error(ErrorCode::AdminConnUnresolved, error))?;
    let kept = if provider.has_secret() {
        format!("credentials in secret {secret_name}")
    } else {
        "no credentials to keep".to_owned()
    };
    context
        .log(
            "info",
            &format!(
                "{kind} {} ready on server {} ({}); {kept}",
                wanted.name, record.name, record.engine
            ),
        )
        .await
}

/// The undo of `<kind>_created`: remove the resource and its secret, and free its room.
pub(crate) async fn undo_create_resource(
    platform: &Platform,
    context: &mut JobContext,
    slug: &Slug,
    kind: &str,
) -> Result<(), PhaseError> {
    let provider = require_provider(platform, kind).map_err(PhaseError::Fatal)?;
    if let Some(server_name) = platform
        .registry
        .resource_placement(&context.fence.job_id, kind)
        .await?
    {
        let record = platform.registry.get_server(&server_name).await?;
        let server = resource_server(platform, &record)
            .await
            .map_err(PhaseError::Fatal)?;
        let removed = provider.remove(&server, &slug.resource_name()).await;
        unless_foreign(context, removed).await?;
    }
    platform
        .secrets
        .delete_for_job(&context.fence, &provider.secret_name(slug))
        .await
        .map_err(|error| secret_store_error(&error))?;
    platform
        .registry
        .clear_resource_placement(&context.fence, kind)
        .await?;
    Ok(())
}

/// The registry rows of the resources a provisioning job made besides the database.
pub(crate) async fn placed_resources(
    platform: &Platform,
    context: &JobContext,
    slug: &Slug,
    plan: &Plan,
) -> Result<Vec<TenantResourceRecord>, PhaseError> {
    let kinds: Vec<String> = extra_kinds(plan).map(str::to_owned).collect();
    placed_resources_of(platform, context, slug, plan, &kinds).await
}

/// The registry rows of the resources of `kinds` a job placed and made.
pub(crate) async fn placed_resources_of(
    platform: &Platform,
    context: &JobContext,
    slug: &Slug,
    plan: &Plan,
    kinds: &[String],
) -> Result<Vec<TenantResourceRecord>, PhaseError> {
    let installation = platform.installation().await.map_err(PhaseError::Fatal)?;
    let mut records = Vec::new();
    for kind in kinds {
        let kind = kind.as_str();
        let provider = require_provider(platform, kind).map_err(PhaseError::Fatal)?;
        let server_name = platform
            .registry
            .resource_placement(&context.fence.job_id, kind)
            .await?
            .ok_or_else(|| {
                PhaseError::fatal(
                    ErrorCode::Internal,
                    format!("the job placed no {kind} before registering the tenant"),
                )
            })?;
        records.push(TenantResourceRecord {
            tenant_slug: slug.as_str().to_owned(),
            kind: kind.to_owned(),
            server_name,
            name: slug.resource_name(),
            secret_name: provider.has_secret().then(|| provider.secret_name(slug)),
            status: RESOURCE_ACTIVE.to_owned(),
            labels: labels(slug, plan, installation.id()),
            created_at: 0,
            updated_at: 0,
        });
    }
    Ok(records)
}

/// One resource's manifests, as `tenants manifests` prints them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResourceManifests {
    pub kind: String,
    pub server: String,
    /// YAML documents, each opening with `---`.
    pub manifests: String,
}

/// The manifests of each of a tenant's resources whose kind has them: the very objects `ensure` applies for the
/// tenant's plan and state, for an operator to apply or diff by hand.
pub async fn tenant_manifests(
    platform: &Platform,
    slug: &Slug,
) -> Result<Vec<ResourceManifests>, CodedError> {
    let tenant = platform
        .registry
        .require_tenant(slug.as_str())
        .await
        .map_err(crate::registry_error)?;
    let plan = crate::plans::require_plan(&platform.settings, &tenant.plan)?;
    let resources = platform
        .registry
        .tenant_resources(slug.as_str())
        .await
        .map_err(crate::registry_error)?;
    let mut found = Vec::new();
    for resource in resources {
        let Some(provider) = platform.providers.get(&resource.kind) else {
            continue;
        };
        let record = platform
            .registry
            .get_server(&resource.server_name)
            .await
            .map_err(crate::registry_error)?;
        let server = resource_server(platform, &record).await?;
        let wanted = wanted(
            slug,
            plan,
            &resource.kind,
            resource.status == RESOURCE_ACTIVE,
        );
        let manifests = provider
            .manifests(&server, &wanted)
            .map_err(|error| CodedError::new(ErrorCode::InvalidInput, error.to_string()))?;
        if let Some(manifests) = manifests {
            found.push(ResourceManifests {
                kind: resource.kind,
                server: resource.server_name,
                manifests,
            });
        }
    }
    Ok(found)
}
