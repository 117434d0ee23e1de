//! `jobs show|list|resume|retry|rollback`.

use super::provision::run_and_report;
use crate::app::{cli_actor, App};
use crate::cli::JobsCommand;
use crate::output::{print_json, print_table, when};
use crate::CommandResult;
use std::process::ExitCode;
use std::time::Duration;
use tenantry_core::{ErrorCode, JobStatus};
use tenantry_engine::JobView;
use tenantry_registry::{EventKind, JobFilter};
use tenantry_workflows::{decide_approval, engine_error, registry_error};

pub async fn run(app: &App, command: JobsCommand, json: bool) -> CommandResult {
    let registry = &app.platform.registry;
    match command {
        JobsCommand::Show { job_id, follow } => {
            if follow {
                return follow_job(app, &job_id, json).await;
            }
            let job = registry.get_job(&job_id).await.map_err(registry_error)?;
            let events = registry
                .job_events(&job_id, 0)
                .await
                .map_err(registry_error)?;
            let view = JobView::build(&job, &events);
            if json {
                print_json(&view)?;
            } else {
                println!(
                    "job {} ({}) tenant {}: {} — phase {}/{} {} ({}%)",
                    view.job_id,
                    view.kind,
                    view.tenant_slug,
                    view.status,
                    view.current_phase,
                    view.total_phases,
                    view.phase_name.clone().unwrap_or_default(),
                    view.progress_percentage
                );
                if let (Some(code), Some(message)) = (&view.error_code, &view.error_message) {
                    println!("error {code}: {message}");
                }
                let rows: Vec<Vec<String>> = view
                    .phases
                    .iter()
                    .map(|phase| {
                        vec![
                            phase.name.clone(),
                            phase.status.to_string(),
                            phase
                                .duration_ms
                                .map(|ms| format!("{ms} ms"))
                                .unwrap_or_default(),
                            phase.started_at.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print_table(&["PHASE", "STATUS", "DURATION", "STARTED"], &rows);
                for log in &view.logs {
                    println!("{} {:<5} {}", log.at, log.level, log.message);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::List {
            tenant,
            status,
            limit,
        } => {
            let status = status.as_deref().map(JobStatus::parse).transpose()?;
            let jobs = registry
                .list_jobs(&JobFilter {
                    tenant_slug: tenant,
                    status,
                    limit,
                })
                .await
                .map_err(registry_error)?;
            if json {
                let views: Vec<JobView> = jobs.iter().map(|job| JobView::build(job, &[])).collect();
                print_json(&views)?;
            } else {
                let rows: Vec<Vec<String>> = jobs
                    .iter()
                    .map(|job| {
                        vec![
                            job.id.clone(),
                            job.kind.to_string(),
                            job.tenant_slug.clone(),
                            job.status.to_string(),
                            job.error_code.clone().unwrap_or_default(),
                            when(Some(job.created_at)),
                        ]
                    })
                    .collect();
                print_table(
                    &["JOB", "KIND", "TENANT", "STATUS", "ERROR", "CREATED"],
                    &rows,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Resume { job_id } => run_and_report(app, &job_id, json).await,
        JobsCommand::Retry { job_id } => {
            app.runner()
                .reopen(&job_id, &cli_actor(), false)
                .await
                .map_err(engine_error)?;
            run_and_report(app, &job_id, json).await
        }
        JobsCommand::Rollback { job_id } => {
            app.runner()
                .reopen(&job_id, &cli_actor(), true)
                .await
                .map_err(engine_error)?;
            run_and_report(app, &job_id, json).await
        }
        JobsCommand::Approve {
            job_id,
            reason,
            no_wait,
        } => {
            decide_approval(&app.platform, &job_id, &cli_actor(), true, &reason).await?;
            if no_wait {
                if !json {
                    println!("job {job_id} approved; a worker runs it, or run it here with `tenantry jobs resume {job_id}`");
                } else {
                    print_json(
                        &serde_json::json!({ "job_id": job_id, "status": JobStatus::Pending }),
                    )?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            if !json {
                eprintln!("job {job_id} approved; running it");
            }
            match run_and_report(app, &job_id, json).await {
                // A worker of `tenantry serve` claimed it first: watch it there instead.
                Err(crate::Failure::Coded(error)) if error.code == ErrorCode::Conflict => {
                    follow_job(app, &job_id, json).await
                }
                other => other,
            }
        }
        JobsCommand::Reject { job_id, reason } => {
            let job = decide_approval(&app.platform, &job_id, &cli_actor(), false, &reason).await?;
            if json {
                print_json(&JobView::build(&job, &[]))?;
            } else {
                println!(
                    "job {} {}: {}",
                    job.id,
                    job.status,
                    job.error_message.unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints a job's events as they are recorded (by whichever process runs it) until the job ends.
pub(super) async fn follow_job(app: &App, job_id: &str, json: bool) -> CommandResult {
    let registry = &app.platform.registry;
    let mut last_event = 0;
    loop {
        let job = registry.get_job(job_id).await.map_err(registry_error)?;
        for event in registry
            .job_events(job_id, last_event)
            .await
            .map_err(registry_error)?
        {
            last_event = event.id;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&event)
                        .map_err(|error| crate::Failure::Other(error.into()))?
                );
            } else {
                let subject = match event.kind {
                    EventKind::Phase => format!(
                        "{} {}",
                        event.phase.clone().unwrap_or_default(),
                        event.status.clone().unwrap_or_default()
                    ),
                    EventKind::Log => event.level.clone(),
                };
                println!("{} {subject}: {}", when(Some(event.at)), event.message);
            }
        }
        if job.status.is_terminal() {
            return Ok(if job.status == JobStatus::Complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
