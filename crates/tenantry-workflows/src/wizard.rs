//! The provisioning wizard's later fields beyond what every provisioning takes: submitting a request whose
//! profile names data sources (their URLs go to the secret store, never into the job), and checking that a data
//! source can be reached before the request is sent.

use crate::plans::require_plan;
use crate::submit::{submit_provision_with, IdempotencyRequest, Submitted};
use crate::{registry_error, Platform};
use std::time::{Duration, Instant};
use tenantry_core::{DataSourceKind, DataSourceUrl, Error as CodedError, ErrorCode, TenantSpec};
use tenantry_providers::credentials::SecretString;
use tenantry_registry::NewLease;

/// How long a reachability check waits for a TCP connection: long enough for a remote network, short enough for
/// a person waiting at the wizard.
pub const DATA_SOURCE_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What a reachability check found. It never holds the URL (which may carry a password): only the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DataSourceCheck {
    /// Whether a TCP connection to the endpoint was accepted within the timeout.
    pub reachable: bool,
    /// `scheme://host:port`, without credentials, path or query.
    pub endpoint: String,
    /// What happened, for a person: "connected", "connection refused", "timed out after 3 s", …
    pub detail: String,
    /// How long the check took, in milliseconds.
    pub millis: u64,
}

/// Whether the data source's host accepts a TCP connection on its port (within
/// [`DATA_SOURCE_CHECK_TIMEOUT`]). It sends nothing: a connection says the network path is open, not that the
/// credentials work.
pub async fn check_data_source(kind: DataSourceKind, url: &DataSourceUrl) -> DataSourceCheck {
    let endpoint = url.endpoint();
    let started = Instant::now();
    let connect = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port));
    let (reachable, detail) = match tokio::time::timeout(DATA_SOURCE_CHECK_TIMEOUT, connect).await {
        Ok(Ok(_stream)) => (true, format!("connected to the {kind} data source")),
        Ok(Err(error)) => (false, connect_failure(&error)),
        Err(_) => (
            false,
            format!("no answer within {} s", DATA_SOURCE_CHECK_TIMEOUT.as_secs()),
        ),
    };
    DataSourceCheck {
        reachable,
        endpoint: endpoint.to_string(),
        detail,
        millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// A connection failure in words; the OS's message names neither the URL nor its credentials.
fn connect_failure(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        _ => format!("cannot connect: {error}"),
    }
}

/// [`crate::submit_provision`] for a request with a profile: the profile is checked against the plan (`isolation`,
/// `modules`; `E_INVALID_INPUT`), and each data source's URL is stored in the secret store under its name
/// (`tenant-ds-<slug>-<name>`, [`tenantry_core::data_source_secret_name`]).
///
/// The secret store may be another system than the registry (Vault), so the secrets and the job cannot share a
/// transaction. Instead: everything that can refuse the request is checked first; the secrets are written; then
/// the job is recorded, and if recording fails the secrets just written are deleted again. A repeated request
/// (same idempotency key and parameters — the URLs are not among them) gets the first job and writes nothing: the
/// first request's URLs stay.
pub async fn submit_provision_with_data_sources(
    platform: &Platform,
    spec: &TenantSpec,
    data_source_urls: &[(String, DataSourceUrl)],
    actor: &str,
    idempotency: Option<IdempotencyRequest>,
) -> Result<Submitted, CodedError> {
    submit_profiled(platform, spec, data_source_urls, actor, idempotency, None).await
}

/// [`submit_provision_with_data_sources`] with the job recorded already leased to the caller's runner (the CLI,
/// as `submit_provision_to_run`).
pub async fn submit_provision_with_data_sources_to_run(
    platform: &Platform,
    spec: &TenantSpec,
    data_source_urls: &[(String, DataSourceUrl)],
    actor: &str,
    lease: NewLease,
) -> Result<Submitted, CodedError> {
    submit_profiled(platform, spec, data_source_urls, actor, None, Some(lease)).await
}

async fn submit_profiled(
    platform: &Platform,
    spec: &TenantSpec,
    data_source_urls: &[(String, DataSourceUrl)],
    actor: &str,
    idempotency: Option<IdempotencyRequest>,
    lease: Option<NewLease>,
) -> Result<Submitted, CodedError> {
    let submit_provision =
        |idempotency| submit_provision_with(platform, spec, actor, idempotency, lease.clone());
    let plan = require_plan(&platform.settings, &spec.plan)?;
    spec.profile.check_against(plan)?;
    let referenced: Vec<&str> = spec
        .profile
        .data_sources
        .iter()
        .map(|source| source.secret.as_str())
        .collect();
    let given: Vec<&str> = data_source_urls
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    if referenced != given {
        return Err(CodedError::new(
            ErrorCode::Internal,
            "the data source URLs do not match the profile's data sources",
        ));
    }
    if data_source_urls.is_empty() || spec.dry_run {
        // A dry run creates nothing, its secrets included.
        return submit_provision(idempotency).await;
    }
    // A live job on the slug would have its secrets overwritten below; refuse before writing anything.
    if let Some(holder) = platform
        .registry
        .live_job_for_slug(spec.slug.as_str())
        .await
        .map_err(registry_error)?
    {
        if idempotency.is_none() {
            return Err(CodedError::new(
                ErrorCode::Conflict,
                format!(
                    "tenant {:?} already has an unfinished {} job {} ({})",
                    spec.slug.as_str(),
                    holder.kind,
                    holder.id,
                    holder.status
                ),
            ));
        }
        // With a key this may be the same request again: submit answers it with its job, or refuses it.
        return submit_provision(idempotency).await;
    }
    if platform
        .registry
        .get_tenant(spec.slug.as_str())
        .await
        .map_err(registry_error)?
        .is_some()
    {
        // Already provisioned (or a repeat of the request that provisioned it): submit says which.
        return submit_provision(idempotency).await;
    }
    crate::ProvisionWorkflow::validate(platform, spec)?;
    let mut written = Vec::new();
    for (name, url) in data_source_urls {
        let value = SecretString::new(url.expose_secret().to_owned());
        if let Err(error) = platform.secrets.put(name, &value).await {
            forget(platform, &written).await;
            return Err(CodedError::new(
                ErrorCode::ProvisioningUnavailable,
                format!("cannot store data source secret {name:?}: {error}"),
            ));
        }
        written.push(name.clone());
    }
    let submitted = submit_provision(idempotency).await;
    if submitted.is_err() {
        forget(platform, &written).await;
    }
    submitted
}

/// Deletes data source secrets written for a request that was then refused. A failure here leaves a secret
/// whose tenant does not exist, which `doctor` names.
async fn forget(platform: &Platform, names: &[String]) {
    for name in names {
        if let Err(error) = platform.secrets.delete(name).await {
            tracing::warn!(secret = %name, %error, "could not delete the data source secret of a refused request");
        }
    }
}

/// The data source secrets (`tenant-ds-<slug>-<name>`) stored for tenant `slug`: those its registered profile
/// names, and any other of that form no other registered tenant's profile names (left by a provisioning that did
/// not finish). A name alone cannot say whose it is (`tenant-ds-a-b-c` may be tenant `a`'s source `b-c` or tenant
/// `a-b`'s source `c`), so the registered profiles decide.
pub(crate) async fn data_source_secrets_of(
    platform: &Platform,
    slug: &tenantry_core::Slug,
) -> Result<Vec<String>, CodedError> {
    let tenants = platform
        .registry
        .list_tenants(None, None, i64::MAX, 0)
        .await
        .map_err(registry_error)?;
    let mut names: Vec<String> = tenants
        .iter()
        .filter(|tenant| tenant.slug == slug.as_str())
        .flat_map(|tenant| tenant.profile.data_sources.iter())
        .map(|source| source.secret.clone())
        .collect();
    let others: std::collections::BTreeSet<&str> = tenants
        .iter()
        .filter(|tenant| tenant.slug != slug.as_str())
        .flat_map(|tenant| tenant.profile.data_sources.iter())
        .map(|source| source.secret.as_str())
        .collect();
    let prefix = format!("tenant-ds-{}-", slug.as_str());
    let stored = platform.secrets.list_names().await.map_err(|error| {
        CodedError::new(
            ErrorCode::ProvisioningUnavailable,
            format!("secret store: {error}"),
        )
    })?;
    for name in stored {
        let is_form = name
            .strip_prefix(&prefix)
            .is_some_and(|rest| tenantry_core::DataSourceName::parse(rest).is_ok());
        if is_form && !others.contains(name.as_str()) && !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// The tenants a data source secret's name could belong to (every split of `tenant-ds-<slug>-<name>` into a
/// valid slug and a valid data source name), shortest slug first; empty when the name is not of that form.
pub(crate) fn data_source_secret_slugs(name: &str) -> Vec<String> {
    let Some(rest) = name.strip_prefix("tenant-ds-") else {
        return Vec::new();
    };
    rest.match_indices('-')
        .map(|(index, _)| (&rest[..index], &rest[index + 1..]))
        .filter(|(slug, source)| {
            tenantry_core::Slug::parse(slug).is_ok()
                && tenantry_core::DataSourceName::parse(source).is_ok()
        })
        .map(|(slug, _)| slug.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::data_source_secret_slugs;

    #[test]
    fn a_data_source_secret_names_every_tenant_it_could_belong_to() {
        assert_eq!(
            data_source_secret_slugs("tenant-ds-acme-warehouse"),
            ["acme"]
        );
        assert_eq!(
            data_source_secret_slugs("tenant-ds-acme-x-foo"),
            ["acme", "acme-x"]
        );
        assert!(data_source_secret_slugs("tenant-db-acme").is_empty());
    }
}
