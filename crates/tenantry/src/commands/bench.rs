//! `bench`: provisions N tenants at concurrency C on one PostgreSQL server three ways, and reports each way's
//! latency percentiles and throughput:
//! - `warm_pool`: real provisioning jobs (the same `submit_provision`, `Runner` and `ProvisionWorkflow` as every
//!   other way in), with the pool filled beforehand (untimed);
//! - `template`: the same jobs with the pool empty, so each database is a copy of the schema's template;
//! - `resources` (with `--resources-plan`): the warm-pool path with a plan whose resources go beyond the
//!   database (a cache, a queue, …), so the cost of those resources shows beside the database-only path;
//! - `resources_sequential` (with `--sequential-phases` too): the same plan with its phases one after another
//!   instead of side by side, so the gain of running a tenant's resources concurrently shows (each resource
//!   path also reports every phase's mean time, each kind's `<kind>_created` among them);
//! - `schema` (with `--schema-plan`): real jobs for a shared-tier plan, each tenant a schema and a role in the
//!   server's shared database instead of a database of its own;
//! - `baseline`: what a shell script does — `createdb`, `psql -f` per migration file, `psql` for the admin insert,
//!   one process per step — with no registry, secret or role at all.
//!
//! A tenant's latency runs from the submission of its job to the job's completion (for the baseline, from the
//! script's first command to its last). Afterwards every bench tenant is purged through offboard jobs, the
//! baseline's databases are dropped, the pool is emptied, and `doctor` must find the fleet clean.

mod naive_script;

use crate::app::{cli_actor, App};
use crate::cli::BenchArgs;
use crate::output::{print_json, print_table};
use crate::CommandResult;
use naive_script::NaiveScript;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantry_core::{
    EngineKind, Error as CodedError, ErrorCode, JobStatus, RawTenantSpec, ServerName, ServerStatus,
    Slug, SpecDefaults, TenantSpec,
};
use tenantry_engine::Runner;
use tenantry_providers::credentials;
use tenantry_providers::engines::{AdminSeed, PruneScope, SchemaVersion, TenantServer};
use tenantry_workflows::{
    fill_warm_pool, prune_warm_pool, registry_error, run_doctor, run_job, submit_offboard,
    submit_provision, OffboardRequest, Platform, ProvisionWorkflow,
};

/// Validated arguments.
#[derive(Debug, Clone)]
pub struct BenchRequest {
    server: ServerName,
    n_tenants: usize,
    concurrency: usize,
    /// A plan with resources beyond the database, for the `resources` path.
    resources_plan: Option<String>,
    /// Also the `resources_sequential` path.
    sequential_phases: bool,
    /// A shared-tier plan, for the `schema` path.
    schema_plan: Option<String>,
}

/// More tenants than this per path would hold the registry and the server for a long time: split the run.
const MAX_TENANTS: usize = 10_000;
const MAX_CONCURRENCY: usize = 64;
/// Purges and drops run this many at a time whatever the bench's concurrency: on PostgreSQL 15 each
/// `DROP DATABASE` waits for a checkpoint, and drops waiting together share one.
const CLEANUP_CONCURRENCY: usize = 8;

pub fn parse(args: &BenchArgs, platform: &Platform) -> Result<BenchRequest, CodedError> {
    if let Some(name) = &args.resources_plan {
        let plan = platform.settings.plan(name).ok_or_else(|| {
            CodedError::invalid_input(format!("--resources-plan: plan {name:?} does not exist"))
        })?;
        if tenantry_workflows::extra_kinds(plan).next().is_none() {
            return Err(CodedError::invalid_input(format!(
                "--resources-plan: plan {name:?} has no resource beyond the database"
            )));
        }
    }
    if args.sequential_phases && args.resources_plan.is_none() {
        return Err(CodedError::invalid_input(
            "--sequential-phases compares a --resources-plan's phases; name the plan",
        ));
    }
    if let Some(name) = &args.schema_plan {
        let plan = platform.settings.plan(name).ok_or_else(|| {
            CodedError::invalid_input(format!("--schema-plan: plan {name:?} does not exist"))
        })?;
        if plan.isolation != tenantry_core::Isolation::Schema {
            return Err(CodedError::invalid_input(format!(
                "--schema-plan: plan {name:?} does not have isolation = \"schema\""
            )));
        }
    }
    if !(1..=MAX_TENANTS).contains(&args.tenants) {
        return Err(CodedError::invalid_input(format!(
            "--tenants must be between 1 and {MAX_TENANTS}"
        )));
    }
    if !(1..=MAX_CONCURRENCY).contains(&args.concurrency) {
        return Err(CodedError::invalid_input(format!(
            "--concurrency must be between 1 and {MAX_CONCURRENCY}"
        )));
    }
    Ok(BenchRequest {
        server: ServerName::parse(&args.server)?,
        n_tenants: args.tenants,
        concurrency: args.concurrency,
        resources_plan: args.resources_plan.clone(),
        sequential_phases: args.sequential_phases,
        schema_plan: args.schema_plan.clone(),
    })
}

/// The ways to a tenant that the bench compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum BenchPath {
    WarmPool,
    Resources,
    ResourcesSequential,
    Template,
    Schema,
    Baseline,
}

impl BenchPath {
    fn as_str(self) -> &'static str {
        match self {
            BenchPath::WarmPool => "warm_pool",
            BenchPath::Resources => "resources",
            BenchPath::ResourcesSequential => "resources_sequential",
            BenchPath::Template => "template",
            BenchPath::Schema => "schema",
            BenchPath::Baseline => "baseline",
        }
    }

    /// The letter in the path's slugs, so that every tenant of a run has its own name.
    fn slug_letter(self) -> char {
        match self {
            BenchPath::WarmPool => 'p',
            BenchPath::Resources => 'r',
            BenchPath::ResourcesSequential => 's',
            BenchPath::Template => 't',
            BenchPath::Schema => 'h',
            BenchPath::Baseline => 'b',
        }
    }
}

/// One path's figures.
#[derive(Debug, Clone, serde::Serialize)]
struct PathResult {
    path: BenchPath,
    n_tenants: usize,
    n_failed: usize,
    /// Warm pool only: how many databases came from the pool (the rest fell back to the template).
    #[serde(skip_serializing_if = "Option::is_none")]
    n_from_pool: Option<usize>,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    wall_seconds: f64,
    tenants_per_second: f64,
    /// Job paths: each phase's mean time over the path's jobs, in milliseconds (phases that run side by side
    /// each count their own time).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    phase_mean_ms: std::collections::BTreeMap<String, f64>,
    /// The first failures, for the reader to look into.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failures: Vec<String>,
}

/// Nearest-rank percentile of sorted milliseconds.
fn percentile(sorted_ms: &[f64], percent: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    let rank = (percent / 100.0 * sorted_ms.len() as f64).ceil() as usize;
    sorted_ms[rank.clamp(1, sorted_ms.len()) - 1]
}

fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// What each bench tenant is called: `b<run>-<path letter>-<index>`.
fn bench_slug(run_id: &str, path: BenchPath, index: usize) -> Result<Slug, CodedError> {
    Slug::parse(&format!("b{run_id}-{}-{index}", path.slug_letter()))
}

/// Runs `make(index)` for every index in `0..n` with at most `concurrency` at once, and times each.
async fn timed_concurrently<F, Fut>(
    n: usize,
    concurrency: usize,
    make: F,
) -> (Vec<Result<Duration, String>>, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(n) {
        let make = make.clone();
        let next = next.clone();
        workers.spawn(async move {
            let mut results = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= n {
                    return results;
                }
                let one_started = Instant::now();
                let outcome = make(index).await;
                results.push(outcome.map(|()| one_started.elapsed()));
            }
        });
    }
    let mut results = Vec::with_capacity(n);
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(mut some) => results.append(&mut some),
            Err(error) => results.push(Err(format!("a bench task stopped: {error}"))),
        }
    }
    (results, started.elapsed())
}

fn summarise(
    path: BenchPath,
    results: Vec<Result<Duration, String>>,
    wall: Duration,
) -> PathResult {
    let mut sorted_ms: Vec<f64> = results
        .iter()
        .filter_map(|result| result.as_ref().ok().copied().map(milliseconds))
        .collect();
    sorted_ms.sort_by(f64::total_cmp);
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    PathResult {
        path,
        n_tenants: sorted_ms.len() + failures.len(),
        n_failed: failures.len(),
        n_from_pool: None,
        phase_mean_ms: std::collections::BTreeMap::new(),
        p50_ms: percentile(&sorted_ms, 50.0),
        p95_ms: percentile(&sorted_ms, 95.0),
        p99_ms: percentile(&sorted_ms, 99.0),
        max_ms: sorted_ms.last().copied().unwrap_or(0.0),
        wall_seconds: wall.as_secs_f64(),
        tenants_per_second: if wall.is_zero() {
            0.0
        } else {
            sorted_ms.len() as f64 / wall.as_secs_f64()
        },
        failures: failures.into_iter().take(5).collect(),
    }
}

/// One real provisioning job, submitted and run in this process.
async fn provision_one(
    platform: &Platform,
    runner: &Runner,
    server: &ServerName,
    slug: Slug,
    plan: &str,
    phase_times: &PhaseTimes,
) -> Result<(), String> {
    let spec = TenantSpec::parse(
        RawTenantSpec {
            slug: slug.as_str(),
            display_name: &format!("Bench {slug}"),
            admin_email: &format!("admin@{slug}.example"),
            server: Some(server.as_str()),
            // Benchmark tenants exist for seconds: no budget to approve.
            budget: Some(0),
            ..RawTenantSpec::default()
        },
        SpecDefaults {
            plan,
            region: &platform.settings.default_region,
        },
    )
    .map_err(|error| error.message)?;
    let submitted = submit_provision(platform, &spec, &cli_actor(), None)
        .await
        .map_err(|error| format!("{}: {}", error.code, error.message))?;
    let outcome = runner
        .run_job(
            &ProvisionWorkflow::new(platform.clone()),
            &submitted.job().id,
        )
        .await
        .map_err(|error| error.to_string())?;
    if outcome.job.status == JobStatus::Complete {
        let mut times = phase_times
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for phase in &outcome.job.phases {
            if let (Some(started), Some(finished)) = (phase.started_at, phase.finished_at) {
                times
                    .entry(phase.name.clone())
                    .or_default()
                    .push((finished - started) as f64);
            }
        }
        Ok(())
    } else {
        Err(format!(
            "job {} {}: {}",
            outcome.job.id,
            outcome.job.status,
            outcome.job.error_message.unwrap_or_default()
        ))
    }
}

/// Each phase's times over a path's jobs, in milliseconds.
type PhaseTimes = std::sync::Mutex<std::collections::BTreeMap<String, Vec<f64>>>;

/// Everything the naive script needs, shared by its runs.
struct Baseline {
    script: NaiveScript,
    migrations: std::path::PathBuf,
    seed_sql: String,
}

impl Baseline {
    async fn provision_one(&self, slug: &Slug) -> Result<(), String> {
        let one_time_password = credentials::random_token(18);
        let password_hash = credentials::hash_generated_password(&one_time_password)?;
        let invitation_token = credentials::random_token(32);
        let email = format!("admin@{slug}.example");
        self.script
            .provision(
                &slug.resource_name(),
                &self.migrations,
                &AdminSeed {
                    sql: &self.seed_sql,
                    email: &email,
                    password_hash: &password_hash,
                    invitation_token_hash: &credentials::hash_token(&invitation_token),
                },
            )
            .await
            .map_err(|error| error.to_string())
    }
}

async fn n_ready_in_pool(
    server: &TenantServer,
    schema: &SchemaVersion,
) -> Result<usize, CodedError> {
    Ok(server
        .warm_pool_inventory(Some(schema))
        .await
        .map_err(|error| CodedError::new(ErrorCode::AdminConnUnresolved, error.to_string()))?
        .map(|inventory| inventory.n_ready)
        .unwrap_or(0))
}

/// The figures a run produced, as printed.
#[derive(Debug, serde::Serialize)]
struct BenchReport {
    server: String,
    n_tenants: usize,
    concurrency: usize,
    schema_hash: String,
    paths: Vec<PathResult>,
    /// Each path's throughput divided by the baseline's.
    throughput_vs_baseline: serde_json::Map<String, serde_json::Value>,
    /// The `resources` path's p50 divided by the database-only warm-pool path's (target: at most 1.5).
    #[serde(skip_serializing_if = "Option::is_none")]
    resources_p50_vs_database: Option<f64>,
    /// The `resources` path's p50 (phases side by side) divided by `resources_sequential`'s (target: at most 0.6).
    #[serde(skip_serializing_if = "Option::is_none")]
    side_by_side_p50_vs_sequential: Option<f64>,
    /// The `schema` path's p50 divided by each dedicated path's (target: at most 0.5).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    schema_p50_vs_dedicated: serde_json::Map<String, serde_json::Value>,
    cleanup: CleanupReport,
}

#[derive(Debug, Default, serde::Serialize)]
struct CleanupReport {
    n_tenants_purged: usize,
    n_baseline_databases_dropped: usize,
    n_pool_databases_dropped: usize,
    problems: Vec<String>,
    doctor_clean: bool,
}

pub async fn run(app: &App, request: BenchRequest, json: bool) -> CommandResult {
    let platform = &app.platform;
    let record = platform
        .registry
        .get_server(request.server.as_str())
        .await
        .map_err(registry_error)?;
    if record.engine != EngineKind::Postgres || record.status != ServerStatus::Active {
        return Err(CodedError::invalid_input(format!(
            "bench needs an active postgres server; {} is a {} server, {}",
            record.name, record.engine, record.status
        ))
        .into());
    }
    let n_paths = 2
        + usize::from(request.resources_plan.is_some())
        + usize::from(request.sequential_phases)
        + usize::from(request.schema_plan.is_some());
    let n_jobs = i64::try_from(n_paths * request.n_tenants).unwrap_or(i64::MAX);
    if record.free_room() < n_jobs {
        return Err(CodedError::new(
            ErrorCode::NoCapacity,
            format!(
                "server {} has room for {} more tenants; the bench registers {n_jobs} (raise its capacity)",
                record.name,
                record.free_room()
            ),
        )
        .into());
    }
    let server = platform.tenant_server(&record).await?;
    let schema = platform.schema_version(EngineKind::Postgres).await?;
    let admin_url = platform
        .secrets
        .get(&record.admin_secret_ref)
        .await
        .map_err(|error| CodedError::new(ErrorCode::ProvisioningUnavailable, error.to_string()))?
        .ok_or_else(|| {
            CodedError::new(
                ErrorCode::AdminConnUnresolved,
                format!("secret {:?} does not exist", record.admin_secret_ref),
            )
        })?;
    let baseline = Arc::new(Baseline {
        script: NaiveScript::from_admin_url(&admin_url)
            .map_err(|error| CodedError::new(ErrorCode::AdminConnUnresolved, error.to_string()))?,
        migrations: schema.directory.clone(),
        seed_sql: std::fs::read_to_string(
            platform
                .settings
                .tenant_schema
                .admin_seed_for(EngineKind::Postgres),
        )
        .map_err(|error| {
            CodedError::invalid_input(format!("cannot read the admin seed: {error}"))
        })?,
    });
    drop(admin_url);
    let run_id: String = uuid::Uuid::now_v7()
        .simple()
        .to_string()
        .chars()
        .rev()
        .take(5)
        .collect();
    let progress = |message: &str| {
        if !json {
            eprintln!("bench: {message}");
        }
    };

    // Untimed preparation: the schema's template, then the pool filled for every warm-pool tenant.
    progress("building the template and filling the warm pool (untimed)");
    server
        .ensure_template(&schema)
        .await
        .map_err(|error| CodedError::new(ErrorCode::MigrationsFailed, error.to_string()))?;
    let pool_size = u32::try_from(request.n_tenants).unwrap_or(u32::MAX);
    fill_warm_pool(platform, request.server.as_str(), Some(pool_size)).await?;

    let runner = app.runner();
    let mut paths = Vec::new();
    let with_resources = request.resources_plan.is_some();
    for path in [
        BenchPath::WarmPool,
        BenchPath::Resources,
        BenchPath::ResourcesSequential,
        BenchPath::Template,
        BenchPath::Schema,
    ] {
        let resource_path = matches!(path, BenchPath::Resources | BenchPath::ResourcesSequential);
        if (resource_path && !with_resources)
            || (path == BenchPath::ResourcesSequential && !request.sequential_phases)
        {
            continue;
        }
        if path == BenchPath::Schema && request.schema_plan.is_none() {
            continue;
        }
        if resource_path {
            progress("refilling the warm pool (untimed)");
            fill_warm_pool(platform, request.server.as_str(), Some(pool_size)).await?;
        }
        if path == BenchPath::Template {
            prune_warm_pool(platform, request.server.as_str(), PruneScope::Pool).await?;
        }
        let plan = match path {
            BenchPath::Resources | BenchPath::ResourcesSequential => {
                request.resources_plan.clone().unwrap_or_default()
            }
            BenchPath::Schema => request.schema_plan.clone().unwrap_or_default(),
            _ => platform.settings.default_plan.clone(),
        };
        let ready_before = n_ready_in_pool(&server, &schema).await?;
        progress(&format!(
            "{}: {} tenants at concurrency {}",
            path.as_str(),
            request.n_tenants,
            request.concurrency
        ));
        let runner_for_jobs = match path {
            BenchPath::ResourcesSequential => runner.clone().with_sequential_phases(true),
            BenchPath::Resources => runner.clone().with_sequential_phases(false),
            _ => runner.clone(),
        };
        let phase_times = Arc::new(PhaseTimes::default());
        let (platform_for_jobs, times_for_jobs) = (platform.clone(), phase_times.clone());
        let (server_name, run) = (request.server.clone(), run_id.clone());
        let (results, wall) =
            timed_concurrently(request.n_tenants, request.concurrency, move |index| {
                let (platform, runner, server_name, plan, times) = (
                    platform_for_jobs.clone(),
                    runner_for_jobs.clone(),
                    server_name.clone(),
                    plan.clone(),
                    times_for_jobs.clone(),
                );
                let slug = bench_slug(&run, path, index);
                async move {
                    let slug = slug.map_err(|error| error.message)?;
                    provision_one(&platform, &runner, &server_name, slug, &plan, &times).await
                }
            })
            .await;
        let mut result = summarise(path, results, wall);
        // Every job path reports its phases' means: where a path's time goes is what the comparisons are about.
        {
            let times = phase_times
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            result.phase_mean_ms = times
                .iter()
                .map(|(name, times)| {
                    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
                    (name.clone(), (mean * 10.0).round() / 10.0)
                })
                .collect();
        }
        if !matches!(path, BenchPath::Template | BenchPath::Schema) {
            let ready_after = n_ready_in_pool(&server, &schema).await?;
            result.n_from_pool = Some(ready_before.saturating_sub(ready_after));
        }
        paths.push(result);
    }
    progress(&format!(
        "baseline: {} naive scripts at concurrency {}",
        request.n_tenants, request.concurrency
    ));
    let run = run_id.clone();
    let script = baseline.clone();
    let (results, wall) =
        timed_concurrently(request.n_tenants, request.concurrency, move |index| {
            let slug = bench_slug(&run, BenchPath::Baseline, index);
            let script = script.clone();
            async move {
                let slug = slug.map_err(|error| error.message)?;
                script.provision_one(&slug).await
            }
        })
        .await;
    paths.push(summarise(BenchPath::Baseline, results, wall));

    progress("cleaning up: purging bench tenants, dropping baseline databases, emptying the pool");
    let cleanup = clean_up(app, &server, &request, &run_id).await;

    let baseline_throughput = paths
        .iter()
        .find(|result| result.path == BenchPath::Baseline)
        .map(|result| result.tenants_per_second)
        .unwrap_or(0.0);
    let throughput_vs_baseline = paths
        .iter()
        .filter(|result| result.path != BenchPath::Baseline && baseline_throughput > 0.0)
        .map(|result| {
            (
                result.path.as_str().to_owned(),
                serde_json::json!(
                    (result.tenants_per_second / baseline_throughput * 100.0).round() / 100.0
                ),
            )
        })
        .collect();
    let p50_of = |wanted: BenchPath| {
        paths
            .iter()
            .find(|result| result.path == wanted && result.n_failed == 0)
            .map(|result| result.p50_ms)
    };
    let resources_p50_vs_database =
        match (p50_of(BenchPath::Resources), p50_of(BenchPath::WarmPool)) {
            (Some(resources), Some(database)) if database > 0.0 => {
                Some((resources / database * 100.0).round() / 100.0)
            }
            _ => None,
        };
    let side_by_side_p50_vs_sequential = match (
        p50_of(BenchPath::Resources),
        p50_of(BenchPath::ResourcesSequential),
    ) {
        (Some(side_by_side), Some(sequential)) if sequential > 0.0 => {
            Some((side_by_side / sequential * 100.0).round() / 100.0)
        }
        _ => None,
    };
    let schema_p50_vs_dedicated = [BenchPath::WarmPool, BenchPath::Template]
        .into_iter()
        .filter_map(
            |dedicated| match (p50_of(BenchPath::Schema), p50_of(dedicated)) {
                (Some(schema), Some(database)) if database > 0.0 => Some((
                    dedicated.as_str().to_owned(),
                    serde_json::json!((schema / database * 100.0).round() / 100.0),
                )),
                _ => None,
            },
        )
        .collect();
    let report = BenchReport {
        resources_p50_vs_database,
        side_by_side_p50_vs_sequential,
        schema_p50_vs_dedicated,
        server: record.name.clone(),
        n_tenants: request.n_tenants,
        concurrency: request.concurrency,
        schema_hash: schema.hash.clone(),
        paths,
        throughput_vs_baseline,
        cleanup,
    };
    if json {
        print_json(&report)?;
    } else {
        print_report(&report);
    }
    let all_fine = report.paths.iter().all(|result| result.n_failed == 0)
        && report.cleanup.problems.is_empty()
        && report.cleanup.doctor_clean;
    Ok(if all_fine {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(report: &BenchReport) {
    println!(
        "server {}: {} tenants per path at concurrency {} (tenant schema {})",
        report.server, report.n_tenants, report.concurrency, report.schema_hash
    );
    let rows: Vec<Vec<String>> = report
        .paths
        .iter()
        .map(|result| {
            vec![
                result.path.as_str().to_owned(),
                (result.n_tenants - result.n_failed).to_string(),
                result.n_failed.to_string(),
                format!("{:.1}", result.p50_ms),
                format!("{:.1}", result.p95_ms),
                format!("{:.1}", result.p99_ms),
                format!("{:.1}", result.tenants_per_second),
                report
                    .throughput_vs_baseline
                    .get(result.path.as_str())
                    .map(|ratio| format!("{ratio}×"))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(
        &[
            "PATH",
            "OK",
            "FAILED",
            "P50 MS",
            "P95 MS",
            "P99 MS",
            "TENANTS/S",
            "VS BASELINE",
        ],
        &rows,
    );
    for result in &report.paths {
        if let Some(n_from_pool) = result.n_from_pool {
            println!(
                "{}: {n_from_pool} of {} databases came from the pool",
                result.path.as_str(),
                result.n_tenants
            );
        }
        for failure in &result.failures {
            println!("{} failure: {failure}", result.path.as_str());
        }
    }
    for result in &report.paths {
        if !result.phase_mean_ms.is_empty() {
            let phases: Vec<String> = result
                .phase_mean_ms
                .iter()
                .map(|(name, mean)| format!("{name} {mean:.1}"))
                .collect();
            println!(
                "{} mean phase ms: {}",
                result.path.as_str(),
                phases.join(", ")
            );
        }
    }
    if let Some(ratio) = report.side_by_side_p50_vs_sequential {
        println!(
            "side by side: p50 is {ratio}× the p50 with phases one after another (target: at most 0.6×)"
        );
    }
    if let Some(ratio) = report.resources_p50_vs_database {
        println!(
            "resources: p50 is {ratio}× the database-only warm-pool p50 (target: at most 1.5×)"
        );
    }
    for (dedicated, ratio) in &report.schema_p50_vs_dedicated {
        println!("schema: p50 is {ratio}× the dedicated {dedicated} p50 (target: at most 0.5×)");
    }
    let cleanup = &report.cleanup;
    println!(
        "cleanup: purged {} tenants, dropped {} baseline and {} pool databases; doctor {}",
        cleanup.n_tenants_purged,
        cleanup.n_baseline_databases_dropped,
        cleanup.n_pool_databases_dropped,
        if cleanup.doctor_clean {
            "clean"
        } else {
            "NOT clean"
        }
    );
    for problem in &cleanup.problems {
        println!("cleanup problem: {problem}");
    }
}

/// Removes what the run made: bench tenants through offboard jobs (purge), the baseline's databases, and any
/// pool database left; then asks `doctor`.
async fn clean_up(
    app: &App,
    server: &TenantServer,
    request: &BenchRequest,
    run_id: &str,
) -> CleanupReport {
    let platform = app.platform.clone();
    let mut report = CleanupReport::default();
    let runner = app.runner();
    let prefix = format!("b{run_id}-");
    let slugs: Vec<String> = match platform
        .registry
        .list_tenants(Some(&prefix), None, i64::MAX, 0)
        .await
    {
        Ok(tenants) => tenants
            .into_iter()
            .map(|tenant| tenant.slug)
            .filter(|slug| slug.starts_with(&prefix))
            .collect(),
        Err(error) => {
            report
                .problems
                .push(format!("cannot list bench tenants: {error}"));
            Vec::new()
        }
    };
    let slugs = Arc::new(slugs);
    let (purge_platform, purge_slugs) = (platform.clone(), slugs.clone());
    let (purged, _) = timed_concurrently(slugs.len(), CLEANUP_CONCURRENCY, move |index| {
        let (platform, runner, slug) = (
            purge_platform.clone(),
            runner.clone(),
            purge_slugs[index].clone(),
        );
        async move {
            let slug = Slug::parse(&slug).map_err(|error| error.message)?;
            let request = OffboardRequest {
                slug,
                purge: true,
                no_backup: true,
            };
            let submitted = submit_offboard(&platform, &request, &cli_actor())
                .await
                .map_err(|error| format!("{}: {}", error.code, error.message))?;
            let outcome = run_job(&platform, &runner, &submitted.job().id)
                .await
                .map_err(|error| error.message)?;
            if outcome.job.status == JobStatus::Complete {
                Ok(())
            } else {
                Err(format!(
                    "purge job {} {}",
                    outcome.job.id, outcome.job.status
                ))
            }
        }
    })
    .await;
    for outcome in purged {
        match outcome {
            Ok(_) => report.n_tenants_purged += 1,
            Err(why) => report.problems.push(why),
        }
    }
    let (server_for_drops, run) = (server.clone(), run_id.to_owned());
    let (dropped, _) = timed_concurrently(request.n_tenants, CLEANUP_CONCURRENCY, move |index| {
        let (server, slug) = (
            server_for_drops.clone(),
            bench_slug(&run, BenchPath::Baseline, index),
        );
        async move {
            let slug = slug.map_err(|error| error.message)?;
            server
                .drop_database(&slug.resource_name())
                .await
                .map_err(|error| error.to_string())
        }
    })
    .await;
    for outcome in dropped {
        match outcome {
            Ok(_) => report.n_baseline_databases_dropped += 1,
            Err(why) => report.problems.push(why),
        }
    }
    match prune_warm_pool(&platform, request.server.as_str(), PruneScope::Pool).await {
        Ok(pruned) => {
            report.n_pool_databases_dropped = pruned
                .dropped
                .iter()
                .filter(|dropped| dropped.starts_with("database "))
                .count();
            report.problems.extend(pruned.kept);
        }
        Err(error) => report.problems.push(error.message),
    }
    match run_doctor(&platform).await {
        Ok(doctor) => {
            report.doctor_clean = doctor.is_clean();
            report
                .problems
                .extend(doctor.findings.iter().map(|finding| {
                    format!(
                        "doctor: {} {}: {}",
                        finding.kind, finding.subject, finding.detail
                    )
                }));
        }
        Err(error) => report.problems.push(format!("doctor: {}", error.message)),
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 50.0), 50.0);
        assert_eq!(percentile(&sorted, 95.0), 95.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn bench_slugs_are_valid_and_distinct() {
        let slugs: Vec<String> = [
            BenchPath::WarmPool,
            BenchPath::Template,
            BenchPath::Baseline,
        ]
        .iter()
        .map(|path| {
            bench_slug("a1b2c", *path, 9_999)
                .unwrap()
                .as_str()
                .to_owned()
        })
        .collect();
        assert_eq!(slugs, ["ba1b2c-p-9999", "ba1b2c-t-9999", "ba1b2c-b-9999"]);
    }
}
