//! Runs one conformance case on a fresh registry of each backend, cleans up after it, and builds test fixtures.

use anyhow::{bail, Context};
use sqlx::{Connection, Executor, PgConnection, SqliteConnection};
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tenantry_core::{EngineKind, JobKind, PhaseStatus, TenantStatus};
use tenantry_registry::{
    now_millis, Fence, JobLogLine, JobRecord, NewAuditEvent, NewJob, NewServer, PhaseTransition,
    Registry, RegistryLocation, TenantRecord,
};

/// Enough connections for the concurrent-placement case to have every worker in a transaction at once.
const MAX_CONNECTIONS: u32 = 10;

/// The administrative connection used to create and drop each test's PostgreSQL database.
const DEFAULT_TEST_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How long a wait for a condition may take before the test fails instead of hanging.
const WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A fresh directory under the system temp dir, removed (with the SQLite files in it) when dropped.
struct TempDirectory {
    path: PathBuf,
}

impl TempDirectory {
    fn create() -> anyhow::Result<TempDirectory> {
        let path = std::env::temp_dir().join(format!(
            "tenantry-registry-it-{}",
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDirectory { path })
    }
}

impl Drop for TempDirectory {
    fn drop(&mut self) {
        // Dropping also runs while a failed case unwinds, where a second panic would abort; so only report.
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            eprintln!("could not remove {}: {error}", self.path.display());
        }
    }
}

/// Runs `case` on a registry in a new SQLite file, then closes the registry and deletes its directory.
pub async fn run_on_sqlite<Case, CaseFuture>(case: Case) -> anyhow::Result<()>
where
    Case: FnOnce(Registry, RegistryLocation) -> CaseFuture,
    CaseFuture: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let directory = TempDirectory::create()?;
    let location = RegistryLocation::Sqlite(directory.path.join("registry.db"));
    let registry = Registry::open(&location, MAX_CONNECTIONS).await?;
    // The case runs as its own task so that a failed assertion comes back here as a JoinError and the
    // cleanup below still happens before the panic is passed on.
    let outcome = tokio::spawn(case(registry.clone(), location)).await;
    registry.close().await;
    drop(directory);
    case_result(outcome)
}

/// Runs `case` on a registry in a new PostgreSQL database, then closes the registry and drops the database.
pub async fn run_on_postgres<Case, CaseFuture>(case: Case) -> anyhow::Result<()>
where
    Case: FnOnce(Registry, RegistryLocation) -> CaseFuture,
    CaseFuture: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let admin_url =
        std::env::var("TENANTRY_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_TEST_PG_URL.to_owned());
    let database_name = format!("tenantry_registry_it_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&admin_url).await.with_context(|| {
        format!("connecting to PostgreSQL for tests (set TENANTRY_TEST_PG_URL); {admin_url}")
    })?;
    admin
        .execute(format!(r#"CREATE DATABASE "{database_name}""#).as_str())
        .await
        .with_context(|| format!("creating database {database_name}"))?;
    let location = RegistryLocation::Postgres(database_url(&admin_url, &database_name)?);
    let outcome = match Registry::open(&location, MAX_CONNECTIONS).await {
        Ok(registry) => {
            let outcome = tokio::spawn(case(registry.clone(), location)).await;
            registry.close().await;
            Ok(outcome)
        }
        Err(error) => Err(error),
    };
    // FORCE ends any connection a case left open, so the database is dropped whatever the case did.
    admin
        .execute(format!(r#"DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)"#).as_str())
        .await
        .with_context(|| format!("dropping database {database_name}"))?;
    admin.close().await?;
    case_result(outcome.context("opening the registry on a fresh PostgreSQL database")?)
}

/// The case's own result, or its panic resumed on the test's thread so the test reports the failed assertion.
fn case_result(outcome: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    match outcome {
        Ok(result) => result,
        Err(join_error) if join_error.is_panic() => {
            std::panic::resume_unwind(join_error.into_panic())
        }
        Err(join_error) => Err(join_error.into()),
    }
}

/// `admin_url` with its database replaced by `database_name`, keeping user, host, port and query options.
fn database_url(admin_url: &str, database_name: &str) -> anyhow::Result<String> {
    let (without_query, query) = match admin_url.split_once('?') {
        Some((without_query, query)) => (without_query, Some(query)),
        None => (admin_url, None),
    };
    let authority_start = without_query
        .find("://")
        .with_context(|| format!("TENANTRY_TEST_PG_URL is not a URL: {admin_url}"))?
        + "://".len();
    let server_part = match without_query[authority_start..].find('/') {
        Some(slash) => &without_query[..authority_start + slash],
        None => without_query,
    };
    Ok(match query {
        Some(query) => format!("{server_part}/{database_name}?{query}"),
        None => format!("{server_part}/{database_name}"),
    })
}

/// The schema versions sqlx recorded as applied, read with a connection of the backend's own driver.
pub async fn applied_migration_versions(location: &RegistryLocation) -> anyhow::Result<Vec<i64>> {
    const QUERY: &str = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";
    let versions = match location {
        RegistryLocation::Sqlite(path) => {
            let mut connection =
                SqliteConnection::connect(&format!("sqlite://{}", path.display())).await?;
            let versions = sqlx::query_scalar(QUERY).fetch_all(&mut connection).await?;
            connection.close().await?;
            versions
        }
        RegistryLocation::Postgres(url) => {
            let mut connection = PgConnection::connect(url).await?;
            let versions = sqlx::query_scalar(QUERY).fetch_all(&mut connection).await?;
            connection.close().await?;
            versions
        }
    };
    Ok(versions)
}

/// Waits until the registry's clock has moved past `at`, so the next write gets a strictly later timestamp.
pub async fn wait_until_clock_passes(at: i64) -> anyhow::Result<()> {
    let started = Instant::now();
    while now_millis() <= at {
        if started.elapsed() > WAIT_TIMEOUT {
            bail!("the clock did not pass {at} within {WAIT_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// The phases every test job has, in order.
pub const PHASES: [&str; 4] = [
    "reserve_slug",
    "place",
    "create_database",
    "register_tenant",
];

pub fn new_server(name: &str, engine: EngineKind, region: &str, capacity_hint: i64) -> NewServer {
    NewServer {
        name: name.to_owned(),
        engine,
        region: region.to_owned(),
        admin_secret_ref: format!("servers/{name}/admin"),
        capacity_hint,
        public_url: None,
    }
}

/// Adds a PostgreSQL server in region `eu`.
pub async fn add_postgres_server(
    registry: &Registry,
    name: &str,
    capacity_hint: i64,
) -> anyhow::Result<()> {
    registry
        .add_server(
            &new_server(name, EngineKind::Postgres, "eu", capacity_hint),
            "test",
        )
        .await?;
    Ok(())
}

pub fn new_job(kind: JobKind, tenant_slug: &str) -> NewJob {
    NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        kind,
        tenant_slug: tenant_slug.to_owned(),
        params: serde_json::json!({ "slug": tenant_slug, "plan": "starter" }),
        phases: PHASES.iter().map(|phase| (*phase).to_owned()).collect(),
        actor: "alice".to_owned(),
        plan: Some("starter".to_owned()),
        idempotency: None,
        approval: None,
        lease: None,
    }
}

/// Creates a provisioning job for `tenant_slug` and claims it for a minute as `worker-1`.
pub async fn claimed_provision_job(
    registry: &Registry,
    tenant_slug: &str,
) -> anyhow::Result<(JobRecord, Fence)> {
    let job = registry
        .create_job(&new_job(JobKind::Provision, tenant_slug))
        .await?;
    let fence = registry
        .claim_job(&job.id, "worker-1", 60_000, None)
        .await?
        .context("a new job must be claimable")?;
    Ok((job, fence))
}

pub fn tenant_record(
    slug: &str,
    display_name: &str,
    server_name: &str,
    status: TenantStatus,
) -> TenantRecord {
    TenantRecord {
        slug: slug.to_owned(),
        display_name: display_name.to_owned(),
        admin_email: format!("admin@{slug}.example"),
        plan: "starter".to_owned(),
        region: "eu".to_owned(),
        server_name: server_name.to_owned(),
        resource_name: format!("t_{}", slug.replace('-', "_")),
        secret_ref: format!("tenants/{slug}/db"),
        status,
        labels: serde_json::json!({ "team": "platform", "tier": 1 }),
        settings: serde_json::json!({ "plan": "starter", "monthly_cost": 49.0 }),
        profile: Default::default(),
        created_at: 0,
        updated_at: 0,
    }
}

pub fn audit_event(
    actor: &str,
    event_type: &'static str,
    tenant_slug: Option<&str>,
    job_id: Option<&str>,
) -> NewAuditEvent {
    NewAuditEvent {
        actor: actor.to_owned(),
        event_type,
        tenant_slug: tenant_slug.map(str::to_owned),
        job_id: job_id.map(str::to_owned),
        details: serde_json::json!({ "reason": format!("{event_type} by {actor}") }),
    }
}

/// Registers `slug` on `server_name` for the job holding `fence`, audited as `TENANT_REGISTERED`.
pub async fn register_tenant_on(
    registry: &Registry,
    fence: &Fence,
    slug: &str,
    server_name: &str,
) -> anyhow::Result<()> {
    registry
        .register_tenant(
            fence,
            &tenant_record(slug, slug, server_name, TenantStatus::Provisioning),
            &[],
            &audit_event(
                "worker-1",
                "TENANT_REGISTERED",
                Some(slug),
                Some(&fence.job_id),
            ),
        )
        .await?;
    Ok(())
}

/// How many audit events of `event_type` mention `tenant_slug` (any tenant when `None`).
pub async fn count_audit(
    registry: &Registry,
    event_type: &str,
    tenant_slug: Option<&str>,
) -> anyhow::Result<usize> {
    let events = registry
        .list_audit(&tenantry_registry::AuditFilter {
            event_type: Some(event_type.to_owned()),
            tenant_slug: tenant_slug.map(str::to_owned),
            limit: 1000,
            ..Default::default()
        })
        .await?;
    Ok(events.len())
}

/// One change at a time, for cases that test a single kind of write: each is a `record_progress` call (the one
/// write the runner makes) with only that part filled in.
pub trait ProgressShortcuts {
    async fn set_phase_status(
        &self,
        fence: &Fence,
        position: i64,
        status: PhaseStatus,
        message: &str,
    ) -> tenantry_registry::Result<()>;
    async fn append_job_log(
        &self,
        fence: &Fence,
        phase: Option<&str>,
        level: &str,
        message: &str,
    ) -> tenantry_registry::Result<()>;
    async fn set_job_state(
        &self,
        fence: &Fence,
        state: &serde_json::Value,
    ) -> tenantry_registry::Result<()>;
}

impl ProgressShortcuts for Registry {
    async fn set_phase_status(
        &self,
        fence: &Fence,
        position: i64,
        status: PhaseStatus,
        message: &str,
    ) -> tenantry_registry::Result<()> {
        let transition = PhaseTransition {
            position,
            status,
            message: message.to_owned(),
        };
        self.record_progress(fence, &[], &[transition], None).await
    }

    async fn append_job_log(
        &self,
        fence: &Fence,
        phase: Option<&str>,
        level: &str,
        message: &str,
    ) -> tenantry_registry::Result<()> {
        let line = JobLogLine {
            at: now_millis(),
            phase: phase.map(str::to_owned),
            level: level.to_owned(),
            message: message.to_owned(),
        };
        self.record_progress(fence, &[line], &[], None).await
    }

    async fn set_job_state(
        &self,
        fence: &Fence,
        state: &serde_json::Value,
    ) -> tenantry_registry::Result<()> {
        self.record_progress(fence, &[], &[], Some(state)).await
    }
}

/// Runs SQL on the registry behind tenantry's back, with a connection of the backend's own driver, as someone
/// with write access to the registry could. Returns the rows it changed.
pub async fn execute_behind_tenantry(
    location: &RegistryLocation,
    statement: &str,
) -> anyhow::Result<u64> {
    let rows_affected = match location {
        RegistryLocation::Sqlite(path) => {
            let mut connection =
                SqliteConnection::connect(&format!("sqlite://{}", path.display())).await?;
            let done = connection.execute(statement).await?;
            connection.close().await?;
            done.rows_affected()
        }
        RegistryLocation::Postgres(url) => {
            let mut connection = PgConnection::connect(url).await?;
            let done = connection.execute(statement).await?;
            connection.close().await?;
            done.rows_affected()
        }
    };
    Ok(rows_affected)
}
