//! `change-requests list|show|approve|reject`: tenant admins' requests for another plan or other modules, decided
//! at the shell by a platform operator (attributed to `os:<username>`, never the requester).

use super::jobs::follow_job;
use super::provision::run_and_report;
use crate::app::{cli_actor, App};
use crate::cli::ChangeRequestsCommand;
use crate::output::{print_json, print_table, when};
use crate::CommandResult;
use std::process::ExitCode;
use tenantry_core::{Error as CodedError, ErrorCode};
use tenantry_registry::ChangeRequestRecord;
use tenantry_workflows::{decide_change_request, registry_error};

/// What a request asks for, in words: "plan → enterprise; ml on, bi off".
fn summary(request: &ChangeRequestRecord) -> String {
    let mut parts = Vec::new();
    if let Some(plan) = &request.plan {
        parts.push(format!("plan → {plan}"));
    }
    let switches: Vec<String> = request
        .modules
        .iter()
        .map(|(name, on)| format!("{name} {}", if *on { "on" } else { "off" }))
        .collect();
    if !switches.is_empty() {
        parts.push(switches.join(", "));
    }
    parts.join("; ")
}

fn print_one(request: &ChangeRequestRecord) {
    println!("change request {}", request.id);
    println!("  tenant:    {}", request.tenant_slug);
    println!("  status:    {}", request.status);
    println!("  change:    {}", summary(request));
    println!("  reason:    {}", request.reason);
    println!(
        "  filed:     {} by {}",
        when(Some(request.created_at)),
        request.requested_by
    );
    if let Some(decided_by) = &request.decided_by {
        println!("  decided:   {} by {decided_by}", when(request.decided_at));
    }
    if let Some(reason) = request.decision_reason.as_deref().filter(|r| !r.is_empty()) {
        println!("  decision:  {reason}");
    }
    if let Some(job_id) = &request.job_id {
        println!("  job:       {job_id}");
    }
}

pub async fn run(app: &App, command: ChangeRequestsCommand, json: bool) -> CommandResult {
    let registry = &app.platform.registry;
    match command {
        ChangeRequestsCommand::List {
            tenant,
            status,
            limit,
        } => {
            let requests = registry
                .list_change_requests(tenant.as_deref(), status.as_deref(), limit.clamp(1, 500))
                .await
                .map_err(registry_error)?;
            if json {
                print_json(&requests)?;
            } else {
                let rows: Vec<Vec<String>> = requests
                    .iter()
                    .map(|request| {
                        vec![
                            request.id.clone(),
                            request.tenant_slug.clone(),
                            request.status.clone(),
                            summary(request),
                            request.requested_by.clone(),
                            when(Some(request.created_at)),
                        ]
                    })
                    .collect();
                print_table(
                    &["ID", "TENANT", "STATUS", "CHANGE", "REQUESTED BY", "FILED"],
                    &rows,
                );
            }
        }
        ChangeRequestsCommand::Show { change_request_id } => {
            let request = registry
                .get_change_request(&change_request_id)
                .await
                .map_err(registry_error)?
                .ok_or_else(|| {
                    CodedError::new(
                        ErrorCode::NotFound,
                        format!("no change request {change_request_id:?}"),
                    )
                })?;
            if json {
                print_json(&request)?;
            } else {
                print_one(&request);
            }
        }
        ChangeRequestsCommand::Approve {
            change_request_id,
            reason,
            no_wait,
        } => {
            let request = decide_change_request(
                &app.platform,
                &change_request_id,
                &cli_actor(),
                true,
                &reason,
            )
            .await?;
            let job_id = request.job_id.clone().unwrap_or_default();
            if no_wait {
                if json {
                    print_json(&request)?;
                } else {
                    println!("change request {change_request_id} approved; a worker runs job {job_id}, or run it here with `tenantry jobs resume {job_id}`");
                }
                return Ok(ExitCode::SUCCESS);
            }
            if !json {
                eprintln!("change request {change_request_id} approved; running job {job_id}");
            }
            return match run_and_report(app, &job_id, json).await {
                // A worker of `tenantry serve` claimed it first: watch it there instead.
                Err(crate::Failure::Coded(error)) if error.code == ErrorCode::Conflict => {
                    follow_job(app, &job_id, json).await
                }
                other => other,
            };
        }
        ChangeRequestsCommand::Reject {
            change_request_id,
            reason,
        } => {
            let request = decide_change_request(
                &app.platform,
                &change_request_id,
                &cli_actor(),
                false,
                &reason,
            )
            .await?;
            if json {
                print_json(&request)?;
            } else {
                print_one(&request);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
