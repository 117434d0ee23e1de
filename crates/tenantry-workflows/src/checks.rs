//! The validation suite: what must be true of a tenant after provisioning (and after a plan change), judged
//! with the tenant's own credentials. Critical checks fail the job, which then rolls back; the others become
//! warnings in the job log. `tenantry validate` runs the same suite on demand.

use crate::costs::render_tenant_metrics;
use crate::plans::cost_labels;
use crate::platform::Platform;
use std::future::Future;
use std::time::{Duration, Instant};
use tenantry_core::{Error as CodedError, ErrorCode, TenantStatus};
use tenantry_providers::credentials::SecretString;
use tenantry_providers::engines::{
    alternate_login, tenant_login_elsewhere, tenant_logins, LoginAttempt, TenantProbe, TenantServer,
};
use tenantry_registry::TenantRecord;

/// How many other tenants' databases the isolation check tries to log in to, beyond reading the server's privileges
/// for all of them: none in a job (each refused login costs the server a backend and a password exchange, and the
/// privilege check already covers every database), three when an operator asks (`tenantry validate`).
pub const NEIGHBOURS_IN_JOB: usize = 0;
pub const NEIGHBOURS_ON_DEMAND: usize = 3;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Passed,
    /// A critical check failed: the tenant is not fit for use.
    Failed,
    /// A non-critical check failed.
    Warning,
    /// The check does not apply here (the engine has no roles, nothing to compare with, …).
    Skipped,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passed => "passed",
            CheckStatus::Failed => "failed",
            CheckStatus::Warning => "warning",
            CheckStatus::Skipped => "skipped",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckResult {
    /// Stable: the database's checks by their own names, another resource's prefixed with its kind.
    pub name: String,
    pub critical: bool,
    pub status: CheckStatus,
    /// What was seen, in words (never a secret).
    pub detail: String,
    pub duration_ms: f64,
}

/// The whole suite's results for one tenant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckReport {
    pub tenant_slug: String,
    pub checks: Vec<CheckResult>,
}

impl CheckReport {
    pub fn critical_failures(&self) -> Vec<&CheckResult> {
        self.checks
            .iter()
            .filter(|check| check.status == CheckStatus::Failed)
            .collect()
    }

    pub fn warnings(&self) -> Vec<&CheckResult> {
        self.checks
            .iter()
            .filter(|check| check.status == CheckStatus::Warning)
            .collect()
    }

    /// "9 passed, 1 skipped" and the like.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for status in [
            CheckStatus::Passed,
            CheckStatus::Failed,
            CheckStatus::Warning,
            CheckStatus::Skipped,
        ] {
            let count = self
                .checks
                .iter()
                .filter(|check| check.status == status)
                .count();
            if count > 0 {
                parts.push(format!("{count} {}", status.as_str()));
            }
        }
        format!("{} checks: {}", self.checks.len(), parts.join(", "))
    }
}

/// Each of the tenant's other resources judged by its provider's `verify`, with the tenant's own credentials:
/// every check is critical. A server that does not answer is no verdict on the tenant (a job retries).
async fn verify_other_resources(
    platform: &Platform,
    tenant: &TenantRecord,
    suite: &mut Suite,
) -> Result<(), CodedError> {
    let slug = tenantry_core::Slug::parse(&tenant.slug)?;
    let plan = crate::plans::registered_plan(&platform.settings, tenant);
    for resource in platform
        .registry
        .tenant_resources(&tenant.slug)
        .await
        .map_err(crate::registry_error)?
    {
        let Some(provider) = platform.providers.get(&resource.kind) else {
            continue;
        };
        let started = Instant::now();
        let failed = |why: String| Verdict::Fail(why);
        let check_name = format!("{}_verified", resource.kind);
        let Some(plan) = &plan else {
            suite.record(
                check_name,
                true,
                started.elapsed(),
                failed(format!("plan {:?} no longer exists", tenant.plan)),
            );
            continue;
        };
        let enabled = resource.status == tenantry_registry::RESOURCE_ACTIVE;
        let wanted = crate::resources::wanted(&slug, plan, &resource.kind, enabled);
        let record = platform
            .registry
            .get_server(&resource.server_name)
            .await
            .map_err(crate::registry_error)?;
        let server = crate::resources::resource_server(platform, &record).await?;
        let stored = if provider.has_secret() {
            platform.secrets.get(&provider.secret_name(&slug)).await
        } else {
            // A kind that keeps no secret has its credentials made again, from the server and the resource.
            match provider.new_credentials(&server, &wanted) {
                Ok(credentials) => Ok(Some(credentials)),
                Err(error) => {
                    suite.record(
                        check_name,
                        true,
                        started.elapsed(),
                        failed(error.to_string()),
                    );
                    continue;
                }
            }
        };
        let credentials = match stored {
            Ok(Some(credentials)) => credentials,
            Ok(None) => {
                suite.record(
                    check_name,
                    true,
                    started.elapsed(),
                    failed(format!(
                        "secret {} does not exist",
                        provider.secret_name(&slug)
                    )),
                );
                continue;
            }
            Err(error) => {
                return Err(CodedError::new(
                    ErrorCode::ProvisioningUnavailable,
                    format!("the secret store did not answer: {error}"),
                ))
            }
        };
        let neighbour = neighbour_of(platform, &resource).await?;
        let neighbour = crate::resources::wanted(&neighbour, plan, &resource.kind, true);
        match provider
            .verify(&server, &wanted, &credentials, &neighbour)
            .await
        {
            Ok(verifications) => {
                let took = started.elapsed();
                for verification in verifications {
                    let verdict = if verification.passed {
                        Verdict::Pass(verification.detail)
                    } else {
                        Verdict::Fail(verification.detail)
                    };
                    suite.record(verification.name, true, took, verdict);
                }
            }
            Err(error) if error.is_transient() => {
                return Err(CodedError::new(
                    ErrorCode::ProvisioningUnavailable,
                    format!("server {} did not answer: {error}", record.name),
                ))
            }
            Err(error) => suite.record(
                check_name,
                true,
                started.elapsed(),
                failed(error.to_string()),
            ),
        }
    }
    Ok(())
}

/// Another tenant whose resource of the same kind shares the server, to be refused at its namespace; when there
/// is none, a slug no tenant can have here (the refusal then shows the confinement, not a neighbour's lock).
async fn neighbour_of(
    platform: &Platform,
    resource: &tenantry_registry::TenantResourceRecord,
) -> Result<tenantry_core::Slug, CodedError> {
    let neighbour = platform
        .registry
        .neighbour_on_server(&resource.kind, &resource.server_name, &resource.tenant_slug)
        .await
        .map_err(crate::registry_error)?;
    tenantry_core::Slug::parse(neighbour.as_deref().unwrap_or("tenantry-no-such-tenant"))
}

/// What a check function returns before timing: its status (pass/fail decided by criticality) and detail.
enum Verdict {
    Pass(String),
    Fail(String),
    Skip(String),
}

struct Suite {
    results: Vec<CheckResult>,
}

impl Suite {
    fn record(
        &mut self,
        name: impl Into<String>,
        critical: bool,
        took: Duration,
        verdict: Verdict,
    ) {
        let (status, detail) = match verdict {
            Verdict::Pass(detail) => (CheckStatus::Passed, detail),
            Verdict::Fail(detail) if critical => (CheckStatus::Failed, detail),
            Verdict::Fail(detail) => (CheckStatus::Warning, detail),
            Verdict::Skip(detail) => (CheckStatus::Skipped, detail),
        };
        self.results.push(CheckResult {
            name: name.into(),
            critical,
            status,
            detail,
            duration_ms: (took.as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
        });
    }
}

/// Runs every check against `tenant`. An error means the suite itself could not run (the registry or the
/// server's admin connection is unavailable); a check that fails is a result, not an error.
pub async fn run_checks(
    platform: &Platform,
    tenant: &TenantRecord,
    neighbours: usize,
) -> Result<CheckReport, CodedError> {
    let server_record = platform
        .registry
        .get_server(&tenant.server_name)
        .await
        .map_err(crate::registry_error)?;
    let server = platform
        .tenant_server_for(&server_record, &tenant.plan)
        .await?;
    let mut suite = Suite {
        results: Vec::new(),
    };

    let (read, took) = timed(platform.secrets.get(&tenant.secret_ref)).await;
    let (url, verdict) = match read {
        Ok(Some(url)) => {
            let verdict = match secret_names_tenant(&url, &server, &tenant.resource_name) {
                Ok(()) => Verdict::Pass(format!(
                    "secret {} decrypts to a {} URL for {}",
                    tenant.secret_ref,
                    server.engine(),
                    tenant.resource_name
                )),
                Err(why) => Verdict::Fail(why),
            };
            (Some(url), verdict)
        }
        Ok(None) => (
            None,
            Verdict::Fail(format!("secret {} does not exist", tenant.secret_ref)),
        ),
        // An unreachable store says nothing about the tenant: the suite cannot run now (a job retries it).
        Err(error) if error.is_transient() => {
            return Err(CodedError::new(
                ErrorCode::ProvisioningUnavailable,
                format!("the secret store did not answer: {error}"),
            ))
        }
        Err(error) => (
            None,
            Verdict::Fail(format!(
                "secret {} cannot be read: {error}",
                tenant.secret_ref
            )),
        ),
    };
    suite.record("secret_resolves", true, took, verdict);

    // Everything below needs at most the URL, so the logins and reads run at once: the suite takes as long as
    // its slowest check, not their sum.
    let admin_check = admin_check_sql(platform, &server)?;
    let admin_check = admin_check
        .as_deref()
        .map(|sql| (sql, tenant.admin_email.as_str()));
    let (probed, other_tenants, registry_login, labels, metrics) = tokio::join!(
        timed(async {
            match &url {
                Some(url) => Some(server.probe_tenant(url, admin_check).await),
                None => None,
            }
        }),
        timed(async {
            match &url {
                Some(url) => {
                    other_tenants_verdict(platform, &server, tenant, url, neighbours).await
                }
                None => Ok(Verdict::Fail("not judged: no credentials".into())),
            }
        }),
        timed(registry_verdict(platform, &server, url.as_ref())),
        timed(labels_verdict(platform, &server, tenant)),
        timed(metrics_verdict(platform, tenant)),
    );

    let (probed, probe_took) = probed;
    if let Some(Err(error)) = &probed {
        if error.is_transient() {
            // The server did not answer (or was busy): that is not a verdict on the tenant.
            return Err(CodedError::new(
                ErrorCode::ProvisioningUnavailable,
                format!("the tenant's server did not answer: {error}"),
            ));
        }
    }
    let probe = match probed {
        Some(Ok(probe)) => {
            let verdict = login_verdict(&probe, tenant, &server.database_of(&tenant.resource_name));
            let usable = matches!(verdict, Verdict::Pass(_));
            suite.record("tenant_login", true, probe_took, verdict);
            usable.then_some(probe)
        }
        Some(Err(error)) => {
            suite.record(
                "tenant_login",
                true,
                probe_took,
                Verdict::Fail(format!(
                    "cannot log in with the tenant's credentials: {error}"
                )),
            );
            None
        }
        None => {
            suite.record(
                "tenant_login",
                true,
                probe_took,
                Verdict::Fail("no credentials to log in with".into()),
            );
            None
        }
    };

    // These judge what the probe read; their time is the probe's.
    let verdict = match probe
        .as_ref()
        .map(|probe| probe.elevated_privileges.as_ref())
    {
        None => Verdict::Fail("not judged: the tenant could not log in".into()),
        Some(None) => Verdict::Skip(format!("{} has no roles", server.engine())),
        Some(Some(elevated)) if elevated.is_empty() => {
            Verdict::Pass("no superuser, createdb, createrole or bypassrls".into())
        }
        Some(Some(elevated)) => {
            Verdict::Fail(format!("the tenant role holds {}", elevated.join(", ")))
        }
    };
    suite.record("role_privileges", true, Duration::ZERO, verdict);

    let (verdict, took) = other_tenants;
    suite.record("isolation_other_tenants", true, took, verdict?);
    let (verdict, took) = registry_login;
    suite.record("isolation_registry", true, took, verdict);
    if server.isolation() == tenantry_core::Isolation::Schema {
        let (verdict, took) = timed(shared_schema_verdict(&server, url.as_ref())).await;
        suite.record("isolation_shared_schema", true, took, verdict);
    }

    let started = Instant::now();
    let verdict = match &probe {
        None => Verdict::Fail("not judged: the tenant could not log in".into()),
        Some(probe) => {
            let latest = platform.schema_version(server.engine()).await?.latest;
            match probe.schema_version {
                Some(version) if version == latest => {
                    Verdict::Pass(format!("at version {version}, the latest"))
                }
                Some(version) => {
                    Verdict::Fail(format!("at version {version}; the latest is {latest}"))
                }
                None => Verdict::Fail(format!("no migration recorded; the latest is {latest}")),
            }
        }
    };
    suite.record("migrations_latest", true, started.elapsed(), verdict);

    let verdict = match probe.as_ref().map(|probe| probe.admin_ready.clone()) {
        None => Verdict::Fail("not judged: the tenant could not log in".into()),
        Some(None) => Verdict::Skip("no admin check query is configured".into()),
        Some(Some(Ok(true))) => Verdict::Pass(format!(
            "admin {} exists and must reset the password",
            tenant.admin_email
        )),
        Some(Some(Err(why))) => Verdict::Fail(format!(
            "the admin check query failed: {why} (the admin check must fit the tenant schema)"
        )),
        Some(Some(Ok(false))) => Verdict::Fail(format!(
            "no admin {} with a forced password reset",
            tenant.admin_email
        )),
    };
    suite.record("admin_seeded", true, Duration::ZERO, verdict);

    let sla_ms = query_sla_ms(platform, tenant);
    let (verdict, took) = match &probe {
        None => (
            Verdict::Fail("not judged: the tenant could not log in".into()),
            Duration::ZERO,
        ),
        Some(probe) => {
            let latency_ms = probe.query_latency.as_secs_f64() * 1000.0;
            let verdict = if probe.query_latency.as_micros() <= u128::from(sla_ms) * 1000 {
                Verdict::Pass(format!("{latency_ms:.2} ms, within the {sla_ms} ms SLA"))
            } else {
                Verdict::Fail(format!(
                    "{latency_ms:.2} ms, over the plan's {sla_ms} ms SLA"
                ))
            };
            (verdict, probe.query_latency)
        }
    };
    suite.record("query_latency", true, took, verdict);

    let (verdict, took) = labels;
    suite.record("cost_labels", false, took, verdict);
    let (verdict, took) = metrics;
    suite.record("metrics_visible", false, took, verdict);

    verify_other_resources(platform, tenant, &mut suite).await?;

    Ok(CheckReport {
        tenant_slug: tenant.slug.clone(),
        checks: suite.results,
    })
}

/// The course module's test for a shared-tier tenant, as the tenant: reading another tenant's schema is refused,
/// and no shared table shows it another tenant's rows (row-level security).
async fn shared_schema_verdict(server: &TenantServer, url: Option<&SecretString>) -> Verdict {
    let Some(url) = url else {
        return Verdict::Fail("not judged: no credentials".into());
    };
    let isolation = match server.shared_isolation(url).await {
        Ok(Some(isolation)) => isolation,
        Ok(None) => return Verdict::Skip("the tenant has a database of its own".into()),
        Err(error) => return Verdict::Fail(format!("could not run the isolation test: {error}")),
    };
    let mut passed = Vec::new();
    match isolation.neighbour_schema {
        Some((schema, LoginAttempt::Allowed)) => {
            return Verdict::Fail(format!("the tenant can read schema {schema}"))
        }
        Some((schema, LoginAttempt::Refused(why))) => {
            passed.push(format!("reading schema {schema} refused: {why}"))
        }
        None => passed.push("no other schema tenant to read".into()),
    }
    for (table, visible, present) in isolation.shared_tables {
        if visible > 0 {
            return Verdict::Fail(format!(
                "shared table {table} shows the tenant {visible} row(s) of other tenants"
            ));
        }
        passed.push(format!(
            "{table}: 0 of {present} other tenants' row(s) visible"
        ));
    }
    Verdict::Pass(passed.join("; "))
}

/// Runs `work`, returning what it gave and how long it took.
async fn timed<T>(work: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let output = work.await;
    (output, started.elapsed())
}

/// A login to the registry's PostgreSQL database with the tenant's credentials must be refused.
async fn registry_verdict(
    platform: &Platform,
    server: &TenantServer,
    url: Option<&SecretString>,
) -> Verdict {
    match (url, &platform.settings.registry_postgres_url) {
        (None, _) => Verdict::Fail("not judged: no credentials".into()),
        (Some(_), None) => Verdict::Pass(
            "the registry is a SQLite file of the control plane; no tenant login reaches it".into(),
        ),
        (Some(_), Some(_)) if server.engine() == tenantry_core::EngineKind::Mariadb => {
            Verdict::Pass(
                "the tenant's login is a MariaDB account; the registry is on PostgreSQL, where it is no role"
                    .into(),
            )
        }
        (Some(_), Some(_)) if server.engine() != tenantry_core::EngineKind::Postgres => {
            Verdict::Skip(format!("{} tenants have no database login", server.engine()))
        }
        (Some(url), Some(registry_url)) => match tenant_login_elsewhere(url, registry_url).await {
            Ok(LoginAttempt::Refused(why)) => {
                Verdict::Pass(format!("login to the registry refused: {why}"))
            }
            Ok(LoginAttempt::Allowed) => Verdict::Fail(
                "the tenant's credentials log in to the registry database; run REVOKE CONNECT ON DATABASE <registry> FROM PUBLIC".into(),
            ),
            Err(error) => Verdict::Fail(format!("could not try the registry login: {error}")),
        },
    }
}

/// The tenant's registry row, read now, renders into the `/metrics` series with its plan and cost center.
async fn metrics_verdict(platform: &Platform, tenant: &TenantRecord) -> Verdict {
    match platform.registry.get_tenant(&tenant.slug).await {
        Ok(Some(current)) => {
            let text = render_tenant_metrics(std::slice::from_ref(&current));
            let series = format!(
                "tenantry_tenant_info{{tenant=\"{}\",plan=\"{}\"",
                current.slug, current.plan
            );
            if text.contains(&series) && !text.contains("cost_center=\"\"") {
                Verdict::Pass("listed in tenantry_tenant_info on /metrics".into())
            } else {
                Verdict::Fail("its /metrics series lacks the plan or cost center".into())
            }
        }
        Ok(None) => Verdict::Fail("not in the registry, so not on /metrics".into()),
        Err(error) => Verdict::Fail(format!("cannot read the registry: {error}")),
    }
}

/// The secret's URL must name this tenant's role and database on this server's engine.
fn secret_names_tenant(
    url: &SecretString,
    server: &TenantServer,
    resource_name: &str,
) -> Result<(), String> {
    let text = url.expose();
    let scheme = format!("{}://", server.url_scheme());
    if !text.starts_with(&scheme) && !text.starts_with("postgresql://") {
        return Err(format!("the secret is not a {} URL", server.engine()));
    }
    let parsed = url::Url::parse(text).map_err(|_| "the secret is not a valid URL".to_owned())?;
    let database = parsed.path().trim_start_matches('/');
    let database = database.strip_suffix(".db").unwrap_or(database);
    let database = database.rsplit('/').next().unwrap_or(database);
    let expected = server.database_of(resource_name);
    if database != expected {
        return Err(format!(
            "the secret names database {database:?}, not {expected}"
        ));
    }
    if server.uses_passwords() {
        // Either of the tenant's logins: after a rotation the secret names the alternate (`tenant_x.b`).
        if !tenant_logins(resource_name).contains(&parsed.username().to_owned()) {
            return Err(format!(
                "the secret logs in as {:?}, not {resource_name} or {}",
                parsed.username(),
                alternate_login(resource_name)
            ));
        }
        if parsed.password().is_none_or(str::is_empty) {
            return Err("the secret holds no password".into());
        }
    }
    Ok(())
}

fn login_verdict(probe: &TenantProbe, tenant: &TenantRecord, database: &str) -> Verdict {
    if probe.current_database != database {
        return Verdict::Fail(format!(
            "logged in to {:?}, not {database}",
            probe.current_database
        ));
    }
    match &probe.current_user {
        Some(user) if user != &tenant.resource_name => Verdict::Fail(format!(
            "logged in as {user:?}, not {}",
            tenant.resource_name
        )),
        Some(user) => Verdict::Pass(format!("logged in as {user} to {}", probe.current_database)),
        None => Verdict::Pass(format!("opened {}", probe.current_database)),
    }
}

fn admin_check_sql(
    platform: &Platform,
    server: &TenantServer,
) -> Result<Option<String>, CodedError> {
    let Some(path) = platform
        .settings
        .tenant_schema
        .admin_check_for(server.engine())
    else {
        return Ok(None);
    };
    std::fs::read_to_string(&path).map(Some).map_err(|error| {
        CodedError::new(
            ErrorCode::Internal,
            format!("cannot read the admin check {}: {error}", path.display()),
        )
    })
}

fn query_sla_ms(platform: &Platform, tenant: &TenantRecord) -> u64 {
    platform
        .settings
        .plan(&tenant.plan)
        .map(|plan| plan.query_sla_ms)
        .or_else(|| {
            tenant
                .settings
                .get("query_sla_ms")
                .and_then(serde_json::Value::as_u64)
        })
        .unwrap_or(500)
}

/// No other tenant database on the server admits the tenant's role: by the server's own privilege rules, for all of
/// them at once (a role without CONNECT is refused whatever pg_hba says), and by real login attempts with the
/// tenant's credentials to up to `sample` of them.
async fn other_tenants_verdict(
    platform: &Platform,
    server: &TenantServer,
    tenant: &TenantRecord,
    url: &SecretString,
    sample: usize,
) -> Result<Verdict, CodedError> {
    let reachable = match server.tenant_databases_open_to(&tenant.resource_name).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Ok(Verdict::Pass(format!(
                "{} tenants are files only the control plane opens",
                server.engine()
            )))
        }
        Err(error) => {
            return Ok(Verdict::Fail(format!(
                "cannot read the server's database privileges: {error}"
            )))
        }
    };
    if !reachable.granted.is_empty() {
        return Ok(Verdict::Fail(format!(
            "the tenant's role has been granted CONNECT on {}",
            reachable.granted.join(", ")
        )));
    }
    let total = reachable.n_others;
    if total == 0 {
        return Ok(Verdict::Skip(format!(
            "no other tenant on server {} to be isolated from",
            tenant.server_name
        )));
    }
    let mut detail = format!("none of the {total} other tenant databases grants CONNECT to it");
    // A neighbour that admits PUBLIC opened itself: every role on the server can enter it, this one no more than
    // any. It is that neighbour's finding (`doctor` names it, with the fix), not a failure of this tenant.
    if !reachable.open_to_public.is_empty() {
        detail.push_str(&format!(
            "; {} admit PUBLIC (their own finding: run `tenantry doctor`)",
            reachable.open_to_public.join(", ")
        ));
    }
    if sample == 0 {
        return Ok(Verdict::Pass(detail));
    }
    let neighbours = platform
        .registry
        // A few more than needed: the tenant itself and offboarded ones are passed over.
        .tenants_on_server(&tenant.server_name, sample as i64 * 4)
        .await
        .map_err(crate::registry_error)?;
    let targets: Vec<&TenantRecord> = neighbours
        .iter()
        .filter(|other| other.slug != tenant.slug && other.status != TenantStatus::Offboarded)
        .filter(|other| !reachable.open_to_public.contains(&other.resource_name))
        .take(sample)
        .collect();
    // Each attempt is a full password exchange on the server: try them all at once.
    let mut attempts = tokio::task::JoinSet::new();
    for other in targets {
        let (server, url, database) = (server.clone(), url.clone(), other.resource_name.clone());
        attempts.spawn(async move {
            // A busy server (a timeout, a connection limit) says nothing about isolation: tried up to three
            // times before it counts.
            let mut attempt = server.tenant_login_to(&url, &database).await;
            for _ in 0..2 {
                match &attempt {
                    Err(error) if error.is_transient() => {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        attempt = server.tenant_login_to(&url, &database).await;
                    }
                    _ => break,
                }
            }
            (database, attempt)
        });
    }
    let mut refused = Vec::new();
    while let Some(joined) = attempts.join_next().await {
        let Ok((database, attempt)) = joined else {
            return Ok(Verdict::Fail("a login attempt was cancelled".into()));
        };
        match attempt {
            Ok(None) => {}
            Ok(Some(LoginAttempt::Refused(_))) => refused.push(database),
            Ok(Some(LoginAttempt::Allowed)) => {
                return Ok(Verdict::Fail(format!(
                    "the tenant's credentials log in to {database}"
                )))
            }
            Err(error) => return Ok(Verdict::Fail(format!("could not try {database}: {error}"))),
        }
    }
    refused.sort();
    if !refused.is_empty() {
        detail.push_str(&format!("; login refused to {}", refused.join(", ")));
    }
    Ok(Verdict::Pass(detail))
}

/// Every resource tenantry made for the tenant carries `{tenant_id, plan, cost_center}` matching the plan.
async fn labels_verdict(
    platform: &Platform,
    server: &TenantServer,
    tenant: &TenantRecord,
) -> Verdict {
    let Some(plan) = platform.settings.plan(&tenant.plan) else {
        return Verdict::Fail(format!("plan {:?} is no longer configured", tenant.plan));
    };
    let expected = cost_labels(&tenant.slug, plan);
    let mut labelled: Vec<(String, Option<serde_json::Value>)> =
        vec![("registry row".into(), Some(tenant.labels.clone()))];
    // The invitation link is not among them: it is a message waiting to be sent (gone once it is), and a resent
    // one is stored outside any job.
    let secret = &tenant.secret_ref;
    match platform.secrets.labels(secret).await {
        Ok(Some(labels)) => labelled.push((format!("secret {secret}"), Some(labels))),
        Ok(None) => {}
        Err(error) => {
            return Verdict::Fail(format!("cannot read labels of secret {secret}: {error}"))
        }
    }
    match server.resource_labels(&tenant.resource_name).await {
        Ok(resources) => {
            for (kind, labels) in resources {
                labelled.push((format!("{kind} {}", tenant.resource_name), labels));
            }
        }
        Err(error) => return Verdict::Fail(format!("cannot read the server's labels: {error}")),
    }
    let mut missing = Vec::new();
    for (what, labels) in &labelled {
        let complete = ["tenant_id", "plan", "cost_center"]
            .iter()
            .all(|key| labels.as_ref().and_then(|labels| labels.get(key)) == expected.get(key));
        if !complete {
            missing.push(what.clone());
        }
    }
    if missing.is_empty() {
        Verdict::Pass(format!(
            "tenant_id, plan, cost_center on {} resources",
            labelled.len()
        ))
    } else {
        Verdict::Fail(format!("labels missing or stale on {}", missing.join(", ")))
    }
}
