//! `provision-tenant` and `offboard-tenant`: validate, record a job, run it here with live progress, report.

use crate::app::{cli_actor, App};
use crate::cli::{OffboardArgs, ProvisionArgs};
use crate::config::Config;
use crate::output::{print_json, progress_display};
use crate::{CommandResult, Failure};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;
use tenantry_core::PhaseStatus;
use tenantry_core::{
    DataSourceUrl, Error as CodedError, ErrorCode, JobKind, JobStatus, RawTenantSpec, Slug,
    SpecDefaults, TenantProfile, TenantSpec,
};
use tenantry_engine::{JobOutcome, JobView, Progress, ProgressSink, Runner};
use tenantry_registry::{Fence, JobRecord, NewLease};
use tenantry_server::api::tenants::CreateTenantRequest;
use tenantry_workflows::{
    drive_job, registry_error, run_job, submit_offboard_to_run, submit_provision_with_data_sources,
    submit_provision_with_data_sources_to_run, try_run_job, OffboardRequest, RunHere,
};

/// How often a job another process runs is looked at while this command follows it.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// A provisioning request from the command line: the file's (`--from-file`, the API's JSON body) with the flags
/// given beside it overriding, parsed into the spec and the data sources' URLs (for the secret store alone).
pub fn parse_request(
    config: &Config,
    args: &ProvisionArgs,
) -> Result<(TenantSpec, Vec<(String, DataSourceUrl)>), CodedError> {
    let mut request = match &args.from_file {
        Some(path) => read_request_file(path)?,
        None => CreateTenantRequest {
            slug: String::new(),
            display_name: String::new(),
            admin_email: String::new(),
            plan: None,
            region: None,
            server: None,
            dry_run: false,
            budget: None,
            description: None,
            contact_name: None,
            resource_tier: None,
            isolation: None,
            data_sources: Vec::new(),
            modules: None,
            security: Default::default(),
        },
    };
    let set = |target: &mut String, flag: &Option<String>| {
        if let Some(value) = flag {
            target.clone_from(value);
        }
    };
    set(&mut request.slug, &args.slug);
    set(&mut request.display_name, &args.display_name);
    set(&mut request.admin_email, &args.admin_email);
    let set_option = |target: &mut Option<String>, flag: &Option<String>| {
        if flag.is_some() {
            target.clone_from(flag);
        }
    };
    set_option(&mut request.plan, &args.plan);
    set_option(&mut request.region, &args.region);
    set_option(&mut request.server, &args.server);
    set_option(&mut request.description, &args.description);
    set_option(&mut request.contact_name, &args.contact_name);
    set_option(&mut request.resource_tier, &args.resource_tier);
    set_option(&mut request.isolation, &args.isolation);
    set_option(&mut request.security.auth_method, &args.auth_method);
    set_option(&mut request.security.mfa_policy, &args.mfa_policy);
    if !args.modules.is_empty() {
        request.modules = Some(args.modules.clone());
    }
    if !args.allow_cidrs.is_empty() {
        request.security.allowed_cidrs.clone_from(&args.allow_cidrs);
    }
    request.dry_run |= args.dry_run;
    if args.budget.is_some() {
        request.budget = args.budget;
    }
    let mut spec = TenantSpec::parse(
        RawTenantSpec {
            slug: &request.slug,
            display_name: &request.display_name,
            admin_email: &request.admin_email,
            plan: request.plan.as_deref(),
            region: request.region.as_deref(),
            server: request.server.as_deref(),
            budget: request.budget,
            dry_run: request.dry_run,
        },
        SpecDefaults {
            plan: &config.default_plan,
            region: &config.default_region,
        },
    )?;
    let parsed = TenantProfile::parse(&request.raw_profile(), &spec.slug).map_err(|failure| {
        CodedError::new(
            failure.error.code,
            format!("{}: {}", failure.field, failure.error.message),
        )
    })?;
    spec.profile = parsed.profile;
    Ok((spec, parsed.data_source_urls))
}

/// The API's JSON body from a file or stdin. A malformed file is named by position only: its text may hold a
/// data source's password.
fn read_request_file(path: &std::path::Path) -> Result<CreateTenantRequest, CodedError> {
    let text = if path == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|error| {
        CodedError::invalid_input(format!("cannot read {}: {error}", path.display()))
    })?;
    serde_json::from_str(&text).map_err(|error| {
        let what = match error.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "is not JSON",
            _ => "is not a provisioning request (the fields of POST /platform/tenants)",
        };
        CodedError::invalid_input(format!(
            "{} {what}: see line {} column {}",
            path.display(),
            error.line(),
            error.column()
        ))
    })
}

pub fn parse_offboard(args: &OffboardArgs) -> Result<OffboardRequest, CodedError> {
    Ok(OffboardRequest {
        slug: Slug::parse(&args.slug)?,
        purge: args.purge,
        no_backup: args.no_backup,
    })
}

pub async fn provision(
    app: &App,
    spec: TenantSpec,
    data_source_urls: &[(String, DataSourceUrl)],
    no_wait: bool,
    json: bool,
) -> CommandResult {
    // A live job for the same request is this command's own, interrupted: resume it instead of starting anew.
    let params = serde_json::to_value(&spec).map_err(|error| Failure::Other(error.into()))?;
    if let Some(live) = app
        .platform
        .registry
        .live_job_for_slug(spec.slug.as_str())
        .await
        .map_err(tenantry_workflows::registry_error)?
    {
        if live.kind == JobKind::Provision && live.params == params {
            if live.status == JobStatus::AwaitingApproval {
                return report_awaiting_approval(app, &live.id, json).await;
            }
            if !json {
                eprintln!("resuming job {} for tenant {}", live.id, spec.slug);
            }
            // Only an interrupted job is resumed: one that a live process runs is another request's, and this
            // one is refused (`E_CONFLICT`, naming the holder), as any second request for the slug is.
            return report(app, app.runner(), Run::Resume(&live.id), json).await;
        }
    }
    // A job this command will run is created holding this process's lease: a `serve` or `worker` on the same
    // registry cannot claim it in between, so its outcome and one-time secrets come back here.
    let runner = app.runner();
    let submitted = if no_wait {
        submit_provision_with_data_sources(
            &app.platform,
            &spec,
            data_source_urls,
            &cli_actor(),
            None,
        )
        .await?
    } else {
        submit_provision_with_data_sources_to_run(
            &app.platform,
            &spec,
            data_source_urls,
            &cli_actor(),
            lease_for(&runner),
        )
        .await?
    };
    let doing = format!("provisioning tenant {}", spec.slug);
    run_submitted(app, runner, submitted.job(), &doing, no_wait, json).await
}

/// The lease a job this process will run is created with.
pub fn lease_for(runner: &Runner) -> NewLease {
    NewLease {
        owner: runner.owner().to_owned(),
        ttl_millis: i64::try_from(runner.lease_ttl().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The fence of a job created leased to `runner`, if it was.
fn own_fence(runner: &Runner, job: &JobRecord) -> Option<Fence> {
    (job.status == JobStatus::InProgress && job.lease_owner.as_deref() == Some(runner.owner()))
        .then(|| Fence {
            job_id: job.id.clone(),
            token: job.lease_token,
        })
}

/// After a submission: says who must approve a job that waits, records one the caller will run later, or runs
/// it here (with the lease it was created with). `doing` completes "job <id> …" on the terminal.
pub async fn run_submitted(
    app: &App,
    runner: Runner,
    job: &JobRecord,
    doing: &str,
    no_wait: bool,
    json: bool,
) -> CommandResult {
    if job.status == JobStatus::AwaitingApproval {
        return report_awaiting_approval(app, &job.id, json).await;
    }
    if no_wait {
        return report_recorded(&job.id, json);
    }
    if !json {
        eprintln!("job {} {doing}", job.id);
    }
    match own_fence(&runner, job) {
        Some(fence) => report(app, runner, Run::Leased(fence), json).await,
        None => report(app, runner, Run::Claim(&job.id), json).await,
    }
}

pub async fn offboard(app: &App, request: OffboardRequest, json: bool) -> CommandResult {
    let runner = app.runner();
    let submitted =
        submit_offboard_to_run(&app.platform, &request, &cli_actor(), lease_for(&runner)).await?;
    let job = submitted.job();
    if !json {
        eprintln!(
            "job {} offboarding tenant {}{}",
            job.id,
            request.slug,
            if request.purge { " (purge)" } else { "" }
        );
    }
    match own_fence(&runner, job) {
        Some(fence) => report(app, runner, Run::Leased(fence), json).await,
        None => report(app, runner, Run::Claim(&job.id), json).await,
    }
}

/// A job that waits for approval is recorded, not failed: say who must act and how.
async fn report_awaiting_approval(app: &App, job_id: &str, json: bool) -> CommandResult {
    let registry = &app.platform.registry;
    let job = registry
        .get_job(job_id)
        .await
        .map_err(tenantry_workflows::registry_error)?;
    if json {
        print_json(&serde_json::json!({
            "job_id": job.id,
            "status": job.status,
            "approval_expires_at": job.approval_expires_at,
        }))?;
    } else {
        let reason = registry
            .job_events(job_id, 0)
            .await
            .map_err(tenantry_workflows::registry_error)?
            .into_iter()
            .map(|event| event.message)
            .find(|message| message.starts_with("waiting for approval"))
            .unwrap_or_else(|| "waiting for approval".into());
        println!("job {} is awaiting_approval: {reason}", job.id);
        println!(
            "another PLATFORM_ADMIN approves it with `tenantry jobs approve {}` (or rejects it with `tenantry jobs reject {}`), before {}",
            job.id,
            job.id,
            crate::output::when(job.approval_expires_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn report_recorded(job_id: &str, json: bool) -> CommandResult {
    if json {
        print_json(&serde_json::json!({ "job_id": job_id, "status": JobStatus::Pending }))?;
    } else {
        println!("job {job_id} recorded; run it with `tenantry jobs resume {job_id}`");
    }
    Ok(ExitCode::SUCCESS)
}

/// How this process comes to run a job.
enum Run<'a> {
    /// It claims an existing job; `E_CONFLICT` while another live process runs it.
    Claim(&'a str),
    /// As `Claim`, for a request that found its own interrupted job: a job another process ended meanwhile is
    /// that request's, and this one is told so, as if it had come after.
    Resume(&'a str),
    /// It claims an existing job (resumed, retried, approved), or follows it while another process runs it.
    ClaimOrFollow(&'a str),
    /// It created the job holding the lease.
    Leased(Fence),
}

/// Runs a job in this process with live progress, then prints its outcome. Exit status 0 only for `complete`.
/// While another process runs it, follows it to its end instead.
pub async fn run_and_report(app: &App, job_id: &str, json: bool) -> CommandResult {
    report(app, app.runner(), Run::ClaimOrFollow(job_id), json).await
}

async fn report(app: &App, runner: Runner, run: Run<'_>, json: bool) -> CommandResult {
    let mut runner = runner;
    let display = progress_display(json);
    if let Some((sink, _)) = &display {
        runner = runner.with_progress(sink.clone());
    }
    let sink = display.as_ref().map(|(sink, _)| sink.clone());
    let outcome: Result<JobOutcome, CodedError> = match run {
        Run::Claim(job_id) => run_job(&app.platform, &runner, job_id).await,
        Run::Resume(job_id) => match run_job(&app.platform, &runner, job_id).await {
            Ok(outcome) if outcome.ended_before => Err(ended_elsewhere(&outcome.job)),
            other => other,
        },
        Run::ClaimOrFollow(job_id) => run_or_follow(app, &runner, job_id, sink, json).await,
        Run::Leased(fence) => drive_job(&app.platform, &runner, fence).await,
    };
    if let Some((_, bar)) = display {
        bar.finish_and_clear();
    }
    // Whoever subscribed hears of the job's end from this process at once (a `serve` or `worker` retries
    // what fails; the outbox keeps it).
    if let Err(error) = tenantry_workflows::send_due(&app.platform, runner.owner()).await {
        tracing::warn!(error = %error.message, "notifications not sent now; a serve or worker will");
    }
    let outcome = outcome?;
    let job = &outcome.job;
    let events = app
        .platform
        .registry
        .job_events(&job.id, 0)
        .await
        .map_err(tenantry_workflows::registry_error)?;
    let view = JobView::build(job, &events);
    if json {
        let one_time: serde_json::Map<String, serde_json::Value> = outcome
            .reveals
            .iter()
            .map(|(label, value)| (label.clone(), serde_json::Value::String(value.clone())))
            .collect();
        let mut printed = serde_json::json!({ "job": view, "one_time": one_time });
        if outcome.reveals.is_empty() {
            if let Some(secret) = invitation_secret(job) {
                printed["invitation_secret"] = serde_json::Value::String(secret);
            }
        }
        print_json(&printed)?;
    } else {
        let total_ms: i64 = view
            .phases
            .iter()
            .filter_map(|phase| phase.duration_ms)
            .sum();
        println!(
            "job {} {} ({} phases, {} ms in phases)",
            job.id, job.status, view.total_phases, total_ms
        );
        if job.status == JobStatus::Complete {
            print_completion(app, job).await?;
            for (label, value) in &outcome.reveals {
                println!("{label}: {value}");
            }
            print_invitation(app, job, &outcome.reveals).await?;
        }
    }
    if job.status == JobStatus::Complete {
        Ok(ExitCode::SUCCESS)
    } else {
        // A stored code this version does not know (a newer process ended the job) exits as `E_INTERNAL`, and
        // the message names the stored code so that it is not taken for an ordinary internal error.
        let (code, unknown) = match job.error_code.as_deref().map(ErrorCode::parse) {
            Some(Ok(code)) => (code, None),
            Some(Err(unknown)) => (ErrorCode::Internal, Some(unknown)),
            None => (ErrorCode::Internal, None),
        };
        let message = job
            .error_message
            .clone()
            .unwrap_or_else(|| code.meaning().to_owned());
        let message = match unknown {
            Some(unknown) => format!("job {} {}: {unknown}: {message}", job.id, job.status),
            None => format!("job {} {}: {message}", job.id, job.status),
        };
        Err(CodedError::new(code, message).into())
    }
}

/// Runs the job here, or, while another live process runs it (a `serve` or `worker` claimed it first), follows
/// it to its end: its phases are shown as they end, its outcome and exit status are this command's, and the job
/// is taken over here if its runner goes away. The one-time secrets are then not this command's to show;
/// `print_completion` says where the invitation waits.
async fn run_or_follow(
    app: &App,
    runner: &Runner,
    job_id: &str,
    sink: Option<ProgressSink>,
    json: bool,
) -> Result<JobOutcome, CodedError> {
    let mut shown: HashMap<String, PhaseStatus> = HashMap::new();
    let mut announced = false;
    loop {
        match try_run_job(&app.platform, runner, job_id).await? {
            RunHere::Ran(outcome) => {
                if announced {
                    show_new_phases(&outcome.job, &mut shown, sink.as_ref());
                }
                return Ok(*outcome);
            }
            RunHere::HeldElsewhere { owner } => {
                if !announced && !json {
                    eprintln!("job {job_id} is being run by {owner}; following it to its end");
                }
                announced = true;
                let job = app
                    .platform
                    .registry
                    .get_job(job_id)
                    .await
                    .map_err(registry_error)?;
                show_new_phases(&job, &mut shown, sink.as_ref());
            }
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

/// Sends the phases that ended since the last look to the live display.
fn show_new_phases(
    job: &JobRecord,
    shown: &mut HashMap<String, PhaseStatus>,
    sink: Option<&ProgressSink>,
) {
    for phase in &job.phases {
        if shown.get(&phase.name) == Some(&phase.status) {
            continue;
        }
        shown.insert(phase.name.clone(), phase.status);
        if let Some(sink) = sink {
            let elapsed = phase
                .started_at
                .zip(phase.finished_at)
                .and_then(|(started, finished)| u64::try_from(finished - started).ok())
                .map(Duration::from_millis);
            sink(&Progress::Phase {
                name: phase.name.clone(),
                status: phase.status,
                elapsed,
            });
        }
    }
}

/// Where the first admin's invitation went: e-mailed (or being sent), or, with no SMTP server, the link itself
/// when this process ran the job (it goes nowhere else) and otherwise the secret where it waits.
async fn print_invitation(
    app: &App,
    job: &JobRecord,
    reveals: &[(String, String)],
) -> Result<(), Failure> {
    let Some(secret) = invitation_secret(job) else {
        return Ok(());
    };
    if let Some(state) =
        tenantry_workflows::invitation_state(&app.platform, &job.tenant_slug).await?
    {
        if state.status != "waiting_for_smtp" {
            let recipient = state.recipient.unwrap_or_default();
            match state.status.as_str() {
                "sent" => println!("invitation e-mailed to {recipient} (its link sets the first password)"),
                _ => println!(
                    "invitation to {recipient}: {}{} (a serve or worker retries; `tenantry tenants show {}`)",
                    state.status,
                    state
                        .last_error
                        .map(|error| format!(", last error: {error}"))
                        .unwrap_or_default(),
                    job.tenant_slug
                ),
            }
            return Ok(());
        }
    }
    if reveals.iter().any(|(label, _)| label == "invitation_url") {
        println!(
            "(no smtp_url is configured, so no e-mail is sent: hand the admin this link, which sets the first \
             password; it also waits in the secret store as {secret})"
        );
    } else {
        println!(
            "no smtp_url is configured and another process ran this job: the first-sign-in link waits in the \
             secret store as {secret} (`tenantry secrets show {secret}`)"
        );
    }
    Ok(())
}

/// The answer to a request whose job another process ended before this one could resume it.
fn ended_elsewhere(job: &JobRecord) -> CodedError {
    if job.status == JobStatus::Complete {
        CodedError::new(
            ErrorCode::AlreadyProvisioned,
            format!(
                "tenant {:?} already exists (job {} made it)",
                job.tenant_slug, job.id
            ),
        )
    } else {
        CodedError::new(
            ErrorCode::Conflict,
            format!(
                "job {} for tenant {:?} was run by another process and ended {}; run the command again",
                job.id, job.tenant_slug, job.status
            ),
        )
    }
}

/// The secret where a completed provisioning's invitation waits (`None` for other jobs and dry runs).
fn invitation_secret(job: &JobRecord) -> Option<String> {
    (job.kind == JobKind::Provision
        && job.status == JobStatus::Complete
        && job.state.get("would_create").is_none())
    .then(|| Slug::parse(&job.tenant_slug).ok())
    .flatten()
    .map(|slug| slug.invitation_secret_name())
}

async fn print_completion(app: &App, job: &tenantry_registry::JobRecord) -> Result<(), Failure> {
    if job.kind != JobKind::Provision {
        return Ok(());
    }
    if let Some(would_create) = job.state.get("would_create") {
        println!("dry run: nothing was created; would create:");
        if let Some(map) = would_create.as_object() {
            for (key, value) in map {
                println!("  {key}: {}", value.as_str().unwrap_or_default());
            }
        }
        return Ok(());
    }
    if let Some(tenant) = app
        .platform
        .registry
        .get_tenant(&job.tenant_slug)
        .await
        .map_err(tenantry_workflows::registry_error)?
    {
        println!(
            "tenant {} ({}) is {} on server {}: database {}, secret {}",
            tenant.slug,
            tenant.display_name,
            tenant.status,
            tenant.server_name,
            tenant.resource_name,
            tenant.secret_ref
        );
    }
    Ok(())
}
