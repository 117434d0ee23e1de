//! `migrate plan | apply | status | pause | resume | abort`: fleet migrations from the command line. `apply`
//! records a rollout and runs it in this process (other `serve`/`worker` processes help), showing a bar per
//! wave on a terminal and one line per change elsewhere.

use crate::app::{cli_actor, App};
use crate::cli::{MigrateApplyArgs, MigrateCommand};
use crate::commands::provision::lease_for;
use crate::output::{print_json, print_table, when};
use crate::CommandResult;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;
use tenantry_core::{Error as CodedError, JobStatus};
use tenantry_registry::{Fence, WaveCounts};
use tenantry_workflows::{
    control_rollout, drive_job, list_rollouts, plan_rollout, rollout_summary, rollout_view,
    run_job, schema_plan, submit_rollout, RolloutControl, RolloutOptions, RolloutSubmission,
    RolloutView,
};

/// How often a followed rollout is read.
const FOLLOW_POLL: Duration = Duration::from_millis(250);
/// How many failed tenants a text report names.
const FAILED_SHOWN: i64 = 20;

pub async fn run(app: &App, command: MigrateCommand, json: bool) -> CommandResult {
    match command {
        MigrateCommand::Plan => plan(app, json).await,
        MigrateCommand::Apply(args) => apply(app, args, json).await,
        MigrateCommand::Status {
            rollout,
            follow,
            status,
        } => match rollout {
            Some(rollout) => status_of(app, &rollout, follow, status.as_deref(), json).await,
            None => list(app, json).await,
        },
        MigrateCommand::Pause { rollout } => {
            control(app, &rollout, RolloutControl::Pause, true, json).await
        }
        MigrateCommand::Resume { rollout, no_wait } => {
            control(app, &rollout, RolloutControl::Resume, no_wait, json).await
        }
        MigrateCommand::Abort { rollout } => {
            control(app, &rollout, RolloutControl::Abort, true, json).await
        }
    }
}

fn options(args: &MigrateApplyArgs) -> RolloutOptions {
    RolloutOptions {
        canary: args.canary,
        canary_tenants: args.canary_tenants.clone(),
        wave_size: args.wave_size,
        waves: args.waves.iter().cloned().collect(),
        concurrency: args.concurrency,
        per_server: args.per_server,
        max_failures: args.max_failures,
        skip_drifted: args.skip_drifted,
    }
}

async fn plan(app: &App, json: bool) -> CommandResult {
    let plan = schema_plan(&app.platform, None).await?;
    if json {
        print_json(&plan)?;
    } else {
        let rows: Vec<Vec<String>> = plan
            .tenants
            .iter()
            .map(|tenant| {
                let pending = tenant
                    .standing
                    .pending
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                vec![
                    tenant.slug.clone(),
                    tenant.server.clone(),
                    tenant.state.clone(),
                    tenant.standing.version.to_string(),
                    pending,
                    tenant.detail.clone().unwrap_or_default(),
                ]
            })
            .collect();
        print_table(
            &["TENANT", "SERVER", "STATE", "VERSION", "PENDING", "DETAIL"],
            &rows,
        );
        let latest = plan
            .latest
            .iter()
            .map(|(engine, version)| format!("{engine} {version}"))
            .collect::<Vec<_>>()
            .join(", ");
        let counts = counts_line(&plan.counts);
        println!(
            "\nlatest in the files: {latest}\n{} tenant(s): {counts}",
            plan.tenants.len()
        );
    }
    // Drift is what the operator must act on before a rollout: say so in the exit status.
    let drifted = plan.tenants.iter().any(|tenant| tenant.standing.drifted());
    Ok(if drifted {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn apply(app: &App, args: MigrateApplyArgs, json: bool) -> CommandResult {
    if args.dry_run {
        let (request, plan, children) = plan_rollout(&app.platform, options(&args)).await?;
        if json {
            print_json(&serde_json::json!({
                "dry_run": true,
                "request": request,
                "counts": plan.counts,
                "tenants": children,
            }))?;
        } else {
            let mut waves: BTreeMap<i64, (usize, usize)> = BTreeMap::new();
            for child in &children {
                let entry = waves.entry(child.wave).or_default();
                if child.status == tenantry_registry::CHILD_PENDING {
                    entry.0 += 1;
                } else {
                    entry.1 += 1;
                }
            }
            for (wave, (to_migrate, left)) in waves {
                println!(
                    "{}: {to_migrate} to migrate, {left} left as they are",
                    wave_name(wave)
                );
            }
            println!("dry run: nothing was recorded or changed");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let runner = app.runner();
    let lease = (!args.no_wait).then(|| lease_for(&runner));
    let submitted = match submit_rollout(&app.platform, options(&args), &cli_actor(), lease).await?
    {
        RolloutSubmission::Recorded(submitted) => submitted,
        RolloutSubmission::NothingToMigrate(plan) => {
            if json {
                print_json(&serde_json::json!({ "rollout": null, "counts": plan.counts }))?;
            } else {
                let counts = counts_line(&plan.counts);
                println!(
                    "nothing to migrate: {} tenant(s) ({counts}); no rollout recorded",
                    plan.tenants.len()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    let job = submitted.job().clone();
    if args.no_wait {
        if json {
            print_json(&serde_json::json!({ "rollout": job.id, "status": job.status }))?;
        } else {
            println!(
                "rollout {} recorded; `tenantry migrate status {} --follow` shows it",
                job.id, job.id
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        eprintln!("rollout {} started", job.id);
    }
    let fence = Fence {
        job_id: job.id.clone(),
        token: job.lease_token,
    };
    let platform = app.platform.clone();
    let driving = tokio::spawn(async move { drive_job(&platform, &runner, fence).await });
    finish_following(app, &job.id, driving, json).await
}

/// Follows a rollout this process runs in `driving` until it ends, then reports it.
async fn finish_following(
    app: &App,
    rollout_id: &str,
    driving: tokio::task::JoinHandle<Result<tenantry_engine::JobOutcome, CodedError>>,
    json: bool,
) -> CommandResult {
    let display = WaveDisplay::new(json);
    let mut driving = driving;
    let outcome = loop {
        tokio::select! {
            outcome = &mut driving => break outcome,
            () = tokio::time::sleep(FOLLOW_POLL) => {
                if let Ok(view) = rollout_view(&app.platform, rollout_id, None, 0, 0).await {
                    display.show(&view);
                }
            }
        }
    };
    let view = rollout_view(&app.platform, rollout_id, None, 0, 0).await?;
    display.show(&view);
    display.finish();
    match outcome {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => return Err(error.into()),
        Err(panicked) => return Err(anyhow::anyhow!("the rollout's task ended: {panicked}").into()),
    }
    report(app, rollout_id, None, json).await
}

async fn status_of(
    app: &App,
    rollout_id: &str,
    follow: bool,
    status: Option<&str>,
    json: bool,
) -> CommandResult {
    if follow {
        let display = WaveDisplay::new(json);
        loop {
            let view = rollout_view(&app.platform, rollout_id, None, 0, 0).await?;
            display.show(&view);
            if is_finished(&view) {
                break;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
        display.finish();
    }
    report(app, rollout_id, status, json).await
}

fn is_finished(view: &RolloutView) -> bool {
    view.status.is_terminal()
}

/// Prints a rollout: JSON with every tenant (of `status` if given), or its waves and its failed tenants.
async fn report(app: &App, rollout_id: &str, status: Option<&str>, json: bool) -> CommandResult {
    let view = if json {
        rollout_view(&app.platform, rollout_id, status, i64::MAX, 0).await?
    } else {
        rollout_view(
            &app.platform,
            rollout_id,
            Some(status.unwrap_or("failed")),
            FAILED_SHOWN,
            0,
        )
        .await?
    };
    if json {
        print_json(&view)?;
    } else {
        println!(
            "rollout {}: {}{} (target version {}, concurrency {}, per server {}, max failures {})",
            view.id,
            view.status,
            if view.control.is_empty() || view.control == "run" {
                String::new()
            } else {
                format!(", {}", view.control)
            },
            view.target_version,
            view.concurrency,
            view.per_server,
            view.max_failures
        );
        for wave in &view.waves {
            println!("  {}", rollout_summary(std::slice::from_ref(wave)));
        }
        if let (Some(code), Some(message)) = (&view.error_code, &view.error_message) {
            println!("{code}: {message}");
        }
        if !view.tenants.is_empty() {
            println!();
            let rows: Vec<Vec<String>> = view
                .tenants
                .iter()
                .map(|tenant| {
                    vec![
                        tenant.tenant_slug.clone(),
                        wave_name(tenant.wave),
                        tenant.status.clone(),
                        tenant.attempts.to_string(),
                        tenant
                            .duration_ms
                            .map(|ms| format!("{ms} ms"))
                            .unwrap_or_default(),
                        tenant.error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(
                &["TENANT", "WAVE", "STATUS", "ATTEMPTS", "DURATION", "ERROR"],
                &rows,
            );
        }
    }
    Ok(match view.status {
        JobStatus::Complete | JobStatus::InProgress | JobStatus::Pending => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

async fn list(app: &App, json: bool) -> CommandResult {
    let views = list_rollouts(&app.platform, 20).await?;
    if json {
        print_json(&views)?;
    } else {
        let rows: Vec<Vec<String>> = views
            .iter()
            .map(|view| {
                vec![
                    view.id.clone(),
                    view.status.to_string(),
                    view.control.clone(),
                    view.target_version.to_string(),
                    view.counts
                        .iter()
                        .filter(|(_, count)| **count > 0)
                        .map(|(status, count)| format!("{count} {status}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    when(Some(view.created_at)),
                ]
            })
            .collect();
        print_table(
            &[
                "ROLLOUT", "STATUS", "CONTROL", "TARGET", "TENANTS", "CREATED",
            ],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn control(
    app: &App,
    rollout_id: &str,
    what: RolloutControl,
    no_wait: bool,
    json: bool,
) -> CommandResult {
    let runner = app.runner();
    let job = control_rollout(&app.platform, &runner, rollout_id, what, &cli_actor()).await?;
    // A stopped rollout that was resumed is a reopened job: run it here unless told not to.
    if what == RolloutControl::Resume
        && !no_wait
        && job.lease_owner.is_none()
        && !job.status.is_terminal()
    {
        let platform = app.platform.clone();
        let rollout_id_owned = rollout_id.to_owned();
        let driving =
            tokio::spawn(async move { run_job(&platform, &runner, &rollout_id_owned).await });
        return finish_following(app, rollout_id, driving, json).await;
    }
    let view = rollout_view(&app.platform, rollout_id, None, 0, 0).await?;
    if json {
        print_json(&view)?;
    } else {
        let done = match what {
            RolloutControl::Pause => "paused: tenants in hand finish, no new one starts",
            RolloutControl::Resume => "resumed",
            RolloutControl::Abort => {
                "aborting: tenants in hand finish, the rest stay where they are"
            }
        };
        println!("rollout {rollout_id} {done}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Tenants per schema state in words: `998 latest, 2 pending`.
fn counts_line(counts: &BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .map(|(state, count)| format!("{count} {state}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn wave_name(wave: i64) -> String {
    if wave == 0 {
        "canary".to_owned()
    } else {
        format!("wave {wave}")
    }
}

/// A rollout's progress on stderr: a bar per wave on a terminal; elsewhere one line whenever the counts change.
/// Nothing for JSON output (the final report is the JSON).
struct WaveDisplay {
    bars: Option<(MultiProgress, std::sync::Mutex<BTreeMap<i64, ProgressBar>>)>,
    json: bool,
    last_line: std::sync::Mutex<String>,
}

impl WaveDisplay {
    fn new(json: bool) -> WaveDisplay {
        let bars = (!json && std::io::stderr().is_terminal())
            .then(|| (MultiProgress::new(), std::sync::Mutex::new(BTreeMap::new())));
        WaveDisplay {
            bars,
            json,
            last_line: std::sync::Mutex::new(String::new()),
        }
    }

    fn show(&self, view: &RolloutView) {
        if self.json {
            return;
        }
        match &self.bars {
            Some((multi, bars)) => {
                let Ok(mut bars) = bars.lock() else { return };
                for wave in &view.waves {
                    let bar = bars.entry(wave.wave).or_insert_with(|| {
                        let bar = multi.add(ProgressBar::new(wave.total() as u64));
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{prefix:>8} [{bar:30}] {pos}/{len} {msg}",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                        );
                        bar.set_prefix(wave_name(wave.wave));
                        bar
                    });
                    bar.set_length(wave.total() as u64);
                    bar.set_position(wave.settled() as u64);
                    bar.set_message(wave_message(wave, &view.control));
                }
            }
            None => {
                let line = rollout_summary(&view.waves);
                let Ok(mut last) = self.last_line.lock() else {
                    return;
                };
                if *last != line && !line.is_empty() {
                    eprintln!("{line}");
                    *last = line;
                }
            }
        }
    }

    fn finish(&self) {
        if let Some((_, bars)) = &self.bars {
            if let Ok(bars) = bars.lock() {
                for bar in bars.values() {
                    bar.finish();
                }
            }
        }
    }
}

fn wave_message(wave: &WaveCounts, control: &str) -> String {
    let mut parts = vec![format!("{} applied", wave.applied)];
    for (count, word) in [
        (wave.skipped, "skipped"),
        (wave.running, "running"),
        (wave.failed, "failed"),
    ] {
        if count > 0 {
            parts.push(format!("{count} {word}"));
        }
    }
    if control == tenantry_registry::ROLLOUT_PAUSED {
        parts.push("paused".into());
    }
    parts.join(", ")
}
