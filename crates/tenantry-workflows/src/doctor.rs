//! `doctor`: compares the registry, every server's catalog and the secret store, and names each orphan or
//! partial state with the command that fixes it.

use crate::platform::Platform;
use crate::pool::prune_fix;
use crate::registry_error;
use std::collections::{BTreeMap, BTreeSet};
use tenantry_core::{EngineKind, Error as CodedError, JobStatus, TenantStatus};
use tenantry_engine::owner_is_dead_local_process;
use tenantry_providers::engines::Ownership;
use tenantry_registry::{now_millis, JobFilter, JobRecord};

/// One disagreement between the registry, a server and the secret store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// `orphan`, `partial`, `missing`, `drift`, `interrupted`, `unreachable`, `stale`, `leftover` or `insecure`.
    pub kind: &'static str,
    pub subject: String,
    pub detail: String,
    pub fix: String,
}

/// What doctor saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DoctorReport {
    pub n_servers: usize,
    pub n_tenants: usize,
    pub n_secrets: usize,
    pub n_jobs_in_flight: usize,
    /// Template databases on the servers (of any tenant schema version); not tenants.
    pub n_templates: usize,
    /// Warm-pool databases on the servers (of any tenant schema version); not tenants.
    pub n_pool_databases: usize,
    pub findings: Vec<Finding>,
    /// Objects on the servers that are not this installation's: another installation's (by their mark), or
    /// unmarked ones this registry knows nothing of. Listed, never fixed from here.
    pub foreign: Vec<ForeignObject>,
    /// This registry's installation id, which marks what it makes.
    pub installation: String,
}

/// An object on a server that belongs to another tenantry installation, or to none this registry knows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ForeignObject {
    pub subject: String,
    /// The installation whose mark it carries (`None`: no mark).
    pub installation: Option<String>,
}

impl DoctorReport {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// The slug a `tenant_*` resource name stands for (slugs have no `_`, so the mapping back is unique). A tenant's
/// alternate login (`tenant_x.b`, made by a rotation) stands for the same slug: a `.` never comes from one.
fn slug_of_resource(name: &str) -> Option<String> {
    name.strip_prefix("tenant_")
        .map(|rest| rest.split('.').next().unwrap_or(rest).replace('_', "-"))
}

/// Whether an object on a server is this installation's: marked as ours, or unmarked (made before installation
/// ids) of a slug this registry worked on. Any other is listed as `foreign`, never judged or fixed from here.
fn ours_or_listed_foreign(
    ownership: &Ownership,
    slug: &str,
    subject: &str,
    known_slugs: &BTreeSet<String>,
    foreign: &mut Vec<ForeignObject>,
) -> bool {
    let installation = match ownership {
        Ownership::Ours => return true,
        Ownership::Unmarked if known_slugs.contains(slug) => return true,
        Ownership::Foreign(id) => Some(id.clone()),
        Ownership::Unmarked => None,
    };
    foreign.push(ForeignObject {
        subject: subject.to_owned(),
        installation,
    });
    false
}

fn purge_fix(slug: &str) -> String {
    format!("tenantry offboard-tenant --slug {slug} --purge")
}

/// The SQL that removes what a move left (run as the server's admin; in the tenant's database for a
/// subscription).
fn move_leftover_fix(kind: &str, name: &str) -> String {
    match kind {
        "slot" => format!("SELECT pg_drop_replication_slot('{name}')"),
        "subscription" => format!(
            "ALTER SUBSCRIPTION {name} DISABLE; ALTER SUBSCRIPTION {name} SET (slot_name = NONE); DROP SUBSCRIPTION {name}"
        ),
        _ => format!("DROP ROLE {name}"),
    }
}

fn is_interrupted(job: &JobRecord) -> bool {
    job.status == JobStatus::InProgress
        && match (&job.lease_owner, job.lease_expires_at) {
            (None, _) => true,
            (Some(owner), expires_at) => {
                expires_at.is_some_and(|expires_at| expires_at < now_millis())
                    || owner_is_dead_local_process(owner)
            }
        }
}

pub async fn run_doctor(platform: &Platform) -> Result<DoctorReport, CodedError> {
    let registry = &platform.registry;
    let mut findings = Vec::new();
    let tenants = registry
        .list_tenants(None, None, i64::MAX, 0)
        .await
        .map_err(registry_error)?;
    let tenants_by_slug: BTreeMap<&str, _> = tenants
        .iter()
        .map(|tenant| (tenant.slug.as_str(), tenant))
        .collect();
    let mut live_jobs = Vec::new();
    for status in JobStatus::LIVE {
        live_jobs.extend(
            registry
                .list_jobs(&JobFilter {
                    tenant_slug: None,
                    status: Some(status),
                    limit: i64::MAX,
                })
                .await
                .map_err(registry_error)?,
        );
    }
    let live_slugs: BTreeSet<&str> = live_jobs
        .iter()
        .map(|job| job.tenant_slug.as_str())
        .collect();
    // Every slug this registry ever worked on: an unmarked object (made before installation ids) of one of these
    // is this installation's; of any other slug, nobody here can say.
    let known_slugs: BTreeSet<String> = registry
        .list_jobs(&JobFilter {
            tenant_slug: None,
            status: None,
            limit: i64::MAX,
        })
        .await
        .map_err(registry_error)?
        .into_iter()
        .map(|job| job.tenant_slug)
        .chain(tenants.iter().map(|tenant| tenant.slug.clone()))
        .collect();
    let installation = platform.installation().await?;
    let mut foreign = Vec::new();
    let mut drifted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for job in live_jobs.iter().filter(|job| is_interrupted(job)) {
        findings.push(Finding {
            kind: "interrupted",
            subject: format!("job {}", job.id),
            detail: match job.tenant_slug.starts_with('*') {
                // A fleet job (a reconcile, a rollout) has no tenant of its own.
                true => format!("{} job stopped mid-way (its worker is gone); it resumes from its records", job.kind),
                false => format!(
                    "{} job for tenant {} stopped mid-way (its worker is gone); its pieces are in flight",
                    job.kind, job.tenant_slug
                ),
            },
            fix: format!("tenantry jobs resume {}", job.id),
        });
    }

    let servers = registry.list_servers().await.map_err(registry_error)?;
    let mut seen_on_server: BTreeSet<(String, String, &'static str)> = BTreeSet::new();
    // Templates and pool databases are judged against the current tenant schema; if it cannot be read, only
    // leftovers of interrupted builds can be called stale.
    let schema = platform.schema_version(EngineKind::Postgres).await.ok();
    let mut n_templates = 0;
    let mut n_pool_databases = 0;
    for server_record in servers
        .iter()
        .filter(|record| record.engine.hosts_databases())
    {
        let server = platform.tenant_server(server_record).await;
        let resources = match &server {
            Ok(server) => server
                .list_tenant_resources()
                .await
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.message.clone()),
        };
        let resources = match resources {
            Ok(resources) => resources,
            Err(why) => {
                findings.push(Finding {
                    kind: "unreachable",
                    subject: format!("server {}", server_record.name),
                    detail: format!("its catalog could not be read: {why}"),
                    fix: format!(
                        "check the admin connection of server {} and run doctor again",
                        server_record.name
                    ),
                });
                continue;
            }
        };
        for resource in resources {
            let Some(slug) = slug_of_resource(&resource.name) else {
                continue;
            };
            let subject = format!(
                "{} {} on server {}",
                resource.kind, resource.name, server_record.name
            );
            if !ours_or_listed_foreign(
                &resource.ownership,
                &slug,
                &subject,
                &known_slugs,
                &mut foreign,
            ) {
                continue;
            }
            if !resource.drift.is_empty() && tenants_by_slug.contains_key(slug.as_str()) {
                drifted.entry(slug.clone()).or_default().extend(
                    resource
                        .drift
                        .iter()
                        .map(|drift| format!("{subject}: {drift}")),
                );
            }
            seen_on_server.insert((server_record.name.clone(), slug.clone(), resource.kind));
            let registered_here = tenants_by_slug
                .get(slug.as_str())
                .is_some_and(|tenant| tenant.server_name == server_record.name);
            if !registered_here && !live_slugs.contains(slug.as_str()) {
                findings.push(Finding {
                    kind: "orphan",
                    subject: format!("{} {} on server {}", resource.kind, resource.name, server_record.name),
                    detail: format!("no tenant {slug:?} is registered on this server and no job is working on it"),
                    fix: purge_fix(&slug),
                });
            }
        }
        // A move's slot keeps the source's WAL until it is dropped, so one that no live job owns is named.
        if let Some(postgres) = server.as_ref().ok().and_then(|server| server.as_postgres()) {
            match postgres.move_objects().await {
                Ok(objects) => {
                    for object in objects {
                        let subject = format!(
                            "move {} {} on server {}",
                            object.kind, object.name, server_record.name
                        );
                        match object.slug_of(installation.id()) {
                            None => foreign.push(ForeignObject {
                                subject,
                                installation: None,
                            }),
                            Some(slug) if live_slugs.contains(slug.as_str()) => {}
                            Some(slug) => findings.push(Finding {
                                kind: "leftover",
                                subject,
                                detail: format!(
                                    "made by a move of tenant {slug:?} that no job is running{}",
                                    if object.kind == "slot" {
                                        "; the slot keeps the server's WAL until it is dropped"
                                    } else {
                                        ""
                                    }
                                ),
                                fix: move_leftover_fix(object.kind, &object.name),
                            }),
                        }
                    }
                }
                Err(error) => findings.push(Finding {
                    kind: "unreachable",
                    subject: format!("server {}", server_record.name),
                    detail: format!("its replication slots could not be read: {error}"),
                    fix: format!(
                        "check the admin connection of server {} and run doctor again",
                        server_record.name
                    ),
                }),
            }
        }
        if let Ok(server) = &server {
            match server.warm_pool_inventory(schema.as_ref()).await {
                Ok(Some(inventory)) => {
                    for object in &inventory.foreign {
                        foreign.push(ForeignObject {
                            subject: format!("{object} on server {}", server_record.name),
                            installation: None,
                        });
                    }
                    n_templates += inventory.n_templates;
                    n_pool_databases += inventory.n_pool_databases;
                    for object in inventory.stale {
                        findings.push(Finding {
                            kind: "stale",
                            subject: format!("{object} on server {}", server_record.name),
                            detail: "a template or warm-pool database of another tenant schema version, or left half-built; provisioning no longer uses it".into(),
                            fix: prune_fix(&server_record.name),
                        });
                    }
                }
                Ok(None) => {}
                Err(error) => findings.push(Finding {
                    kind: "unreachable",
                    subject: format!("server {}", server_record.name),
                    detail: format!("its templates and warm pool could not be read: {error}"),
                    fix: format!(
                        "check the admin connection of server {} and run doctor again",
                        server_record.name
                    ),
                }),
            }
        }
    }

    let secret_names = platform.secrets.list_names().await.map_err(|error| {
        CodedError::new(
            tenantry_core::ErrorCode::ProvisioningUnavailable,
            error.to_string(),
        )
    })?;
    let secret_set: BTreeSet<&str> = secret_names.iter().map(String::as_str).collect();
    let secret_prefixes: Vec<String> = ["tenant-db-".to_owned(), "tenant-invite-".to_owned()]
        .into_iter()
        .chain(
            platform
                .providers
                .iter()
                .map(|provider| format!("tenant-{}-", provider.kind())),
        )
        .collect();
    for name in &secret_names {
        let slug = secret_prefixes
            .iter()
            .find_map(|prefix| name.strip_prefix(prefix.as_str()));
        // A copy of credentials a rotation replaced (`<secret>.previous`) lives only while its job does: one
        // left after the job ended is named, with what clears it.
        if let Some(slug) = slug.and_then(|slug| slug.strip_suffix(crate::PREVIOUS_SUFFIX)) {
            if !live_slugs.contains(slug) {
                let kind = name
                    .strip_prefix("tenant-")
                    .and_then(|rest| rest.split_once('-'))
                    .map(|(kind, _)| if kind == "db" { "database" } else { kind })
                    .unwrap_or("database");
                let fix = if tenants_by_slug.contains_key(slug) {
                    format!("tenantry tenants rotate-credentials {slug} --kind {kind} (it replaces the copy and removes it)")
                } else {
                    purge_fix(slug)
                };
                findings.push(Finding {
                    kind: "leftover",
                    subject: format!("secret {name}"),
                    detail: "a copy of credentials a rotation replaced, left after its job ended"
                        .to_owned(),
                    fix,
                });
            }
            continue;
        }
        if let Some(slug) = slug {
            if !tenants_by_slug.contains_key(slug) && !live_slugs.contains(slug) {
                findings.push(Finding {
                    kind: "orphan",
                    subject: format!("secret {name}"),
                    detail: format!("no tenant {slug:?} is registered and no job is working on it"),
                    fix: purge_fix(slug),
                });
            }
        }
    }

    // A data source's URL (`tenant-ds-<slug>-<name>`) belongs to the tenant whose profile names it; one no
    // registered tenant names and no job is provisioning is left from a tenant that is gone.
    let named_sources: BTreeSet<&str> = tenants
        .iter()
        .flat_map(|tenant| tenant.profile.data_sources.iter())
        .map(|source| source.secret.as_str())
        .collect();
    for name in &secret_names {
        let candidates = crate::wizard::data_source_secret_slugs(name);
        if candidates.is_empty()
            || named_sources.contains(name.as_str())
            || candidates
                .iter()
                .any(|slug| live_slugs.contains(slug.as_str()))
        {
            continue;
        }
        findings.push(Finding {
            kind: "orphan",
            subject: format!("secret {name}"),
            detail: format!(
                "a data source's URL of tenant {:?}, which is not registered, and no job is working on it",
                candidates[0]
            ),
            fix: purge_fix(&candidates[0]),
        });
    }

    // An invitation link outlives its e-mail only when the sender stopped between recording the send and
    // deleting the link: the link still works, so it is named.
    for tenant in &tenants {
        let Ok(slug) = tenantry_core::Slug::parse(&tenant.slug) else {
            continue;
        };
        let name = slug.invitation_secret_name();
        if !secret_set.contains(name.as_str()) {
            continue;
        }
        let latest = platform
            .registry
            .latest_invitation(&tenant.slug)
            .await
            .map_err(crate::registry_error)?;
        if let Some(sent) =
            latest.filter(|invitation| invitation.status == tenantry_registry::DELIVERY_SENT)
        {
            findings.push(Finding {
                kind: "stale",
                subject: format!("secret {name}"),
                detail: format!(
                    "the invitation e-mail {} was sent, but its first-sign-in link is still in the secret store",
                    sent.id
                ),
                fix: format!(
                    "`tenantry invitations resend --slug {}` (a fresh link, sent and then deleted; the kept one stops working)",
                    tenant.slug
                ),
            });
        }
    }

    let servers_by_name: BTreeMap<&str, _> = servers
        .iter()
        .map(|server| (server.name.as_str(), server))
        .collect();
    let unreachable: BTreeSet<String> = findings
        .iter()
        .filter(|finding| finding.kind == "unreachable")
        .map(|finding| finding.subject.clone())
        .collect();
    for tenant in &tenants {
        if live_slugs.contains(tenant.slug.as_str()) {
            continue;
        }
        let mut missing = Vec::new();
        if !secret_set.contains(tenant.secret_ref.as_str()) {
            missing.push(format!("secret {}", tenant.secret_ref));
        }
        if !unreachable.contains(&format!("server {}", tenant.server_name)) {
            let expected = match servers_by_name
                .get(tenant.server_name.as_str())
                .map(|server| server.engine)
            {
                Some(EngineKind::Postgres) => {
                    // A shared-tier tenant is a schema in the server's shared database and a role.
                    let shared = platform
                        .settings
                        .plan(&tenant.plan)
                        .is_some_and(|plan| plan.isolation == tenantry_core::Isolation::Schema);
                    vec![if shared { "schema" } else { "database" }, "role"]
                }
                Some(EngineKind::Mariadb) => vec!["database", "user"],
                _ => vec!["file"],
            };
            for kind in expected {
                if !seen_on_server.contains(&(
                    tenant.server_name.clone(),
                    tenant.slug.clone(),
                    kind,
                )) {
                    missing.push(format!(
                        "{kind} {} on server {}",
                        tenant.resource_name, tenant.server_name
                    ));
                }
            }
        }
        if !missing.is_empty() {
            findings.push(Finding {
                kind: "partial",
                subject: format!("tenant {}", tenant.slug),
                detail: format!(
                    "registered ({}) but missing: {}",
                    tenant.status,
                    missing.join(", ")
                ),
                fix: purge_fix(&tenant.slug),
            });
        } else if matches!(
            tenant.status,
            TenantStatus::Failed | TenantStatus::Provisioning | TenantStatus::Offboarding
        ) {
            findings.push(Finding {
                kind: "partial",
                subject: format!("tenant {}", tenant.slug),
                detail: format!("status {} with no job working on it", tenant.status),
                fix: purge_fix(&tenant.slug),
            });
        }
    }

    check_other_resources(
        platform,
        &servers,
        &tenants_by_slug,
        &live_slugs,
        &known_slugs,
        &mut findings,
        &mut foreign,
    )
    .await?;

    // A tenant whose database records migrations the files do not (edited after they ran, or unknown to them)
    // would stop the next rollout; a live rollout reads the same records, so it is skipped like any live job.
    if !live_slugs.contains(crate::ROLLOUT_SUBJECT) {
        match crate::schema_plan(platform, None).await {
            Ok(plan) => {
                for tenant in plan
                    .tenants
                    .iter()
                    .filter(|tenant| tenant.standing.drifted())
                {
                    if live_slugs.contains(tenant.slug.as_str()) {
                        continue;
                    }
                    findings.push(Finding {
                        kind: "drift",
                        subject: format!("tenant {}", tenant.slug),
                        detail: format!(
                            "its tenant schema records differ from the files: {}",
                            tenant.standing.drift_description()
                        ),
                        fix: "restore the migration files the tenant recorded, or `tenantry migrate apply --skip-drifted` to leave it out".into(),
                    });
                }
            }
            Err(error) => findings.push(Finding {
                kind: "unreachable",
                subject: "tenant schema".into(),
                detail: format!(
                    "the tenants' migration records could not be judged: {}",
                    error.message
                ),
                fix: "check TENANTRY_TENANT_MIGRATIONS".into(),
            }),
        }
    }

    for (slug, drift) in drifted {
        if live_slugs.contains(slug.as_str()) {
            continue;
        }
        findings.push(Finding {
            kind: "drift",
            subject: format!("tenant {slug}"),
            detail: drift.join("; "),
            fix: format!("tenantry reconcile --slug {slug}"),
        });
    }

    let live_job_ids: BTreeSet<&str> = live_jobs.iter().map(|job| job.id.as_str()).collect();
    findings.extend(backup_findings(platform, &live_job_ids, &secret_names).await?);

    Ok(DoctorReport {
        installation: installation.id().to_owned(),
        foreign,
        n_servers: servers.len(),
        n_tenants: tenants.len(),
        n_secrets: secret_names.len(),
        n_jobs_in_flight: live_jobs.len(),
        n_templates,
        n_pool_databases,
        findings,
    })
}

/// The backup store against the registry's `backups` rows and the secret store's `backup-<id>` keys: a row
/// whose file or key is gone (it cannot be restored), a row left `running` by a job that ended, and a directory
/// with no row. A live job's backup is still being written and is left alone.
async fn backup_findings(
    platform: &Platform,
    live_job_ids: &BTreeSet<&str>,
    secret_names: &[String],
) -> Result<Vec<Finding>, CodedError> {
    let mut findings = Vec::new();
    let rows = platform
        .registry
        .list_backups(None)
        .await
        .map_err(registry_error)?;
    let store = crate::backup::backup_store(platform);
    let directories = match store.list_ids() {
        Ok(ids) => ids,
        Err(error) => {
            findings.push(Finding {
                kind: "unreachable",
                subject: format!("backup store {}", store.directory().display()),
                detail: error.to_string(),
                fix: "check backup_dir".into(),
            });
            return Ok(findings);
        }
    };
    let row_ids: BTreeSet<&str> = rows.iter().map(|row| row.id.as_str()).collect();
    for row in &rows {
        if live_job_ids.contains(row.job_id.as_str()) {
            continue;
        }
        let subject = format!("backup {} of tenant {}", row.id, row.tenant_slug);
        if row.status != tenantry_registry::BACKUP_COMPLETE {
            findings.push(Finding {
                kind: "partial",
                subject,
                detail: format!("left {} by job {}, which has ended", row.status, row.job_id),
                fix: format!("tenantry jobs rollback {}", row.job_id),
            });
            continue;
        }
        let mut missing = Vec::new();
        if !secret_names.contains(&crate::backup::backup_key_name(&row.id)) {
            missing.push(format!(
                "its data key {}",
                crate::backup::backup_key_name(&row.id)
            ));
        }
        let files: Vec<crate::backup::BackupFile> =
            serde_json::from_value(row.resources.clone()).unwrap_or_default();
        for file in files {
            let present = store
                .file_path(&row.id, &file.kind)
                .map(|path| path.exists())
                .unwrap_or(false);
            if !present {
                missing.push(format!("its {} file", file.kind));
            }
        }
        if !missing.is_empty() {
            findings.push(Finding {
                kind: "missing",
                subject,
                detail: format!("{} gone: it cannot be restored", missing.join(" and ")),
                fix: format!("tenantry backups create {} (a new backup)", row.tenant_slug),
            });
        }
    }
    for id in directories {
        if row_ids.contains(id.as_str()) || live_job_ids.contains(id.as_str()) {
            continue;
        }
        findings.push(Finding {
            kind: "orphan",
            subject: format!("backup directory {}", store.directory().join(&id).display()),
            detail: "no backup of the registry has this id".into(),
            fix: format!("rm -r {}", store.directory().join(&id).display()),
        });
    }
    Ok(findings)
}

/// How many resources doctor observes at once.
const OBSERVE_CONCURRENCY: usize = 32;

/// The resources beyond the databases: each server of each kind is checked (its own weaknesses) and listed
/// (orphans, other installations' objects), and each registered resource is observed: `missing` (a Redis that
/// restarted without its ACL users, a vhost deleted by hand) or `drift` (a user widened by hand), each with the
/// reconcile that repairs it.
#[allow(clippy::too_many_arguments)]
async fn check_other_resources(
    platform: &Platform,
    servers: &[tenantry_registry::ServerRecord],
    tenants_by_slug: &BTreeMap<&str, &tenantry_registry::TenantRecord>,
    live_slugs: &BTreeSet<&str>,
    known_slugs: &BTreeSet<String>,
    findings: &mut Vec<Finding>,
    foreign: &mut Vec<ForeignObject>,
) -> Result<(), CodedError> {
    use futures_util::stream::{self, StreamExt};
    use tenantry_providers::resources::Observed;

    let registered = platform
        .registry
        .list_resources(None)
        .await
        .map_err(registry_error)?;
    for provider in platform.providers.iter() {
        let kind = provider.kind();
        for record in servers
            .iter()
            .filter(|record| provider.engines().contains(&record.engine))
        {
            let unreachable = |why: String| Finding {
                kind: "unreachable",
                subject: format!("server {}", record.name),
                detail: format!("its {kind} resources could not be read: {why}"),
                fix: format!(
                    "check the admin connection of server {} and run doctor again",
                    record.name
                ),
            };
            let server = match crate::resources::resource_server(platform, record).await {
                Ok(server) => server,
                Err(error) => {
                    findings.push(unreachable(error.message));
                    continue;
                }
            };
            match provider.check_server(&server).await {
                Ok(warnings) => findings.extend(warnings.into_iter().map(|warning| Finding {
                    kind: "insecure",
                    subject: format!("server {}", record.name),
                    detail: warning,
                    fix: format!(
                        "change the settings of server {} as the detail says",
                        record.name
                    ),
                })),
                Err(error) => {
                    findings.push(unreachable(error.to_string()));
                    continue;
                }
            }
            let inventory = match provider.inventory(&server).await {
                Ok(inventory) => inventory,
                Err(error) => {
                    findings.push(unreachable(error.to_string()));
                    continue;
                }
            };
            let here: Vec<&tenantry_registry::TenantResourceRecord> = registered
                .iter()
                .filter(|resource| resource.kind == kind && resource.server_name == record.name)
                .collect();
            for item in &inventory {
                let Some(slug) = slug_of_resource(&item.name) else {
                    continue;
                };
                let subject = format!("{kind} {} on server {}", item.name, record.name);
                if !ours_or_listed_foreign(&item.ownership, &slug, &subject, known_slugs, foreign) {
                    continue;
                }
                let is_registered = here.iter().any(|resource| resource.name == item.name);
                if !is_registered && !live_slugs.contains(slug.as_str()) {
                    findings.push(Finding {
                        kind: "orphan",
                        subject,
                        detail: format!(
                            "no tenant {slug:?} has a {kind} on this server and no job is working on it"
                        ),
                        fix: purge_fix(&slug),
                    });
                }
            }
            let observed: Vec<(String, Result<Observed, String>)> = stream::iter(here)
                .filter(|resource| {
                    std::future::ready(!live_slugs.contains(resource.tenant_slug.as_str()))
                })
                .map(|resource| {
                    let server = &server;
                    async move {
                        let outcome = observe_registered(
                            platform,
                            provider.as_ref(),
                            server,
                            tenants_by_slug,
                            resource,
                        )
                        .await;
                        (resource.tenant_slug.clone(), outcome)
                    }
                })
                .buffer_unordered(OBSERVE_CONCURRENCY)
                .collect()
                .await;
            let mut observed = observed;
            observed.sort_by(|(left, _), (right, _)| left.cmp(right));
            for (slug, outcome) in observed {
                let subject = format!(
                    "{kind} tenant_{} on server {}",
                    slug.replace('-', "_"),
                    record.name
                );
                // A tenant's own reconcile is a set-plan job, for active tenants; the fleet job also repairs the
                // resources of suspended and offboarded ones (keeping them disabled).
                let active = tenants_by_slug
                    .get(slug.as_str())
                    .is_some_and(|tenant| tenant.status == TenantStatus::Active);
                let fix = if active {
                    format!("tenantry reconcile --slug {slug} --kind {kind}")
                } else {
                    format!("tenantry reconcile --kind {kind}")
                };
                match outcome {
                    Ok(Observed::Absent) => findings.push(Finding {
                        kind: "missing",
                        subject,
                        detail: format!("tenant {slug}'s {kind} is registered but not on the server"),
                        fix,
                    }),
                    Ok(Observed::Present { ownership, .. }) if ownership != Ownership::Ours => {
                        findings.push(Finding {
                            kind: "drift",
                            subject,
                            detail: format!("it is not this installation's any more ({ownership:?})"),
                            fix: "rename or remove the other installation's object by hand, then reconcile".into(),
                        })
                    }
                    Ok(Observed::Present { differences, .. }) if !differences.is_empty() => {
                        findings.push(Finding {
                            kind: "drift",
                            subject,
                            detail: differences.join("; "),
                            fix,
                        })
                    }
                    Ok(Observed::Present { .. }) => {}
                    Err(why) => findings.push(Finding {
                        kind: "unreachable",
                        subject,
                        detail: why,
                        fix: format!("check server {} and run doctor again", record.name),
                    }),
                }
            }
        }
    }
    Ok(())
}

/// Observes one registered resource against its tenant's plan and status.
async fn observe_registered(
    platform: &Platform,
    provider: &dyn tenantry_providers::resources::ResourceProvider,
    server: &tenantry_providers::resources::ResourceServer,
    tenants_by_slug: &BTreeMap<&str, &tenantry_registry::TenantRecord>,
    resource: &tenantry_registry::TenantResourceRecord,
) -> Result<tenantry_providers::resources::Observed, String> {
    let slug = tenantry_core::Slug::parse(&resource.tenant_slug).map_err(|error| error.message)?;
    let plan = tenants_by_slug
        .get(resource.tenant_slug.as_str())
        .and_then(|tenant| crate::plans::registered_plan(&platform.settings, tenant))
        .ok_or_else(|| format!("tenant {slug}'s plan is not configured"))?;
    let wanted = crate::resources::wanted(
        &slug,
        &plan,
        &resource.kind,
        resource.status == tenantry_registry::RESOURCE_ACTIVE,
    );
    let credentials = platform
        .secrets
        .get(&provider.secret_name(&slug))
        .await
        .map_err(|error| error.to_string())?;
    provider
        .observe(server, &wanted, credentials.as_ref())
        .await
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::slug_of_resource;

    #[test]
    fn a_tenants_alternate_login_stands_for_its_slug() {
        assert_eq!(
            slug_of_resource("tenant_acme_co").as_deref(),
            Some("acme-co")
        );
        assert_eq!(
            slug_of_resource("tenant_acme_co.b").as_deref(),
            Some("acme-co")
        );
        assert_eq!(slug_of_resource("tenantry_owner_x"), None);
    }
}
