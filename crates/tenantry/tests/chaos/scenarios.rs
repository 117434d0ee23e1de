//! The chaos scenarios. Each builds its own fleet (a fresh PostgreSQL registry on the suite's chaos cluster and
//! the suite's password-checking tenant cluster), runs real `tenantry` processes against it, breaks something,
//! and checks what must still hold. Only those two clusters, both made by `scripts/test-services`, are touched.

use crate::harness::{Engine, Fleet, Process, PROVISION_PHASES};
use crate::proxy::BlackholeProxy;
use crate::Outcome;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The lease TTL the suite runs with, short so that takeovers happen within the test's patience.
const LEASE_TTL_SECS: &str = "2";

fn ensure(condition: bool, violation: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(violation())
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_millis() as i64)
        .unwrap_or(0)
}

/// The admin URL of the suite's own trust-auth cluster, which the scenarios may restart and blackhole.
fn chaos_cluster_url() -> String {
    std::env::var("TENANTRY_TEST_CHAOS_PG_URL").expect("checked in main")
}

/// `host:port` of the chaos cluster, for the proxy in front of it.
fn chaos_cluster_address() -> Result<String, String> {
    let url = chaos_cluster_url();
    // postgres://user@host:port/database
    url.rsplit_once('@')
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(address, _)| address.to_owned())
        .filter(|address| address.contains(':'))
        .ok_or_else(|| format!("TENANTRY_TEST_CHAOS_PG_URL has no host:port: {url}"))
}

async fn chaos_fleet() -> Fleet {
    // Room for the largest scenario: capacity is not what these scenarios test.
    let mut fleet =
        Fleet::with_registry_cluster(Engine::Postgres, Some(1000), chaos_cluster_url()).await;
    fleet.set_env("TENANTRY_LEASE_TTL_SECS", LEASE_TTL_SECS);
    fleet.set_env("TENANTRY_RETRY_INITIAL_DELAY_MS", "50");
    fleet
}

async fn registry(fleet: &Fleet) -> Result<PgConnection, String> {
    let url = fleet
        .registry_url()
        .ok_or("the chaos fleet has a PostgreSQL registry")?;
    PgConnection::connect(&url)
        .await
        .map_err(|error| format!("registry: {error}"))
}

/// Records a provisioning job without running it; returns its id.
async fn submit(fleet: &Fleet, slug: &str, extra: &[&str]) -> Result<String, String> {
    let mut args = Fleet::provision_args(slug);
    args.push("--no-wait".into());
    args.push("--json".into());
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fleet.run(&args).await;
    if run.status != 0 {
        return Err(format!("submitting {slug} failed: {}", run.stderr.trim()));
    }
    run.json()["job_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no job id".to_owned())
}

async fn job(fleet: &Fleet, job_id: &str) -> Result<Value, String> {
    let run = fleet.run(&["jobs", "show", job_id, "--json"]).await;
    if run.status != 0 {
        return Err(format!("jobs show {job_id}: {}", run.stderr.trim()));
    }
    Ok(run.json())
}

/// Polls until `check` holds, at most `seconds`.
async fn wait_until<F, Fut>(seconds: u64, what: &str, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {seconds} s waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_terminal(fleet: &Fleet, job_id: &str, seconds: u64) -> Result<Value, String> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let current = job(fleet, job_id).await?;
        if matches!(
            current["status"].as_str(),
            Some("complete" | "rolled_back" | "failed" | "cancelled")
        ) {
            return Ok(current);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "job {job_id} did not end within {seconds} s (status {})",
                current["status"]
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Counts jobs by status straight from the registry (tolerating a registry that is restarting).
async fn status_counts(fleet: &Fleet) -> Result<BTreeMap<String, i64>, String> {
    let mut connection = registry(fleet).await?;
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM jobs GROUP BY status")
            .fetch_all(&mut connection)
            .await
            .map_err(|error| error.to_string())?;
    Ok(rows.into_iter().collect())
}

/// Doctor is clean, and every ended job has the audit events of its end.
async fn check_fleet(fleet: &Fleet) -> Result<(), String> {
    let doctor = fleet.run(&["doctor"]).await;
    ensure(doctor.status == 0, || {
        format!("doctor is not clean: {}", doctor.stdout.trim())
    })?;
    let mut connection = registry(fleet).await?;
    let jobs: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT id, kind, status, params FROM jobs")
            .fetch_all(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
    let audit: Vec<(Option<String>, String)> =
        sqlx::query_as("SELECT job_id, event_type FROM audit_events")
            .fetch_all(&mut connection)
            .await
            .map_err(|error| error.to_string())?;
    let audited: BTreeSet<(String, String)> = audit
        .into_iter()
        .filter_map(|(job_id, event_type)| job_id.map(|job_id| (job_id, event_type)))
        .collect();
    for (job_id, kind, status, params) in jobs {
        let dry_run = params.contains("\"dry_run\":true");
        let mut expected = vec!["JOB_CREATED"];
        match (kind.as_str(), status.as_str()) {
            ("provision", "complete") if !dry_run => {
                expected.extend(["TENANT_REGISTERED", "TENANT_PROVISIONED"])
            }
            ("provision", "rolled_back" | "failed") => expected.push("TENANT_PROVISION_FAILED"),
            _ => {}
        }
        for event_type in expected {
            ensure(
                audited.contains(&(job_id.clone(), event_type.to_owned())),
                || format!("{kind} job {job_id} ({status}) has no {event_type} audit event"),
            )?;
        }
    }
    Ok(())
}

/// A worker dies at a phase boundary (failpoint `exit`); a standing worker resumes the job to `complete`.
pub async fn crash_and_resume(phase: &str, boundary: &str) -> Outcome {
    let fleet = chaos_fleet().await;
    let outcome = crash_and_resume_in(&fleet, phase, boundary).await;
    fleet.cleanup().await;
    outcome
}

async fn crash_and_resume_in(fleet: &Fleet, phase: &str, boundary: &str) -> Outcome {
    let slug = format!("c-{}-{boundary}", phase.replace('_', "-"));
    let job_id = submit(fleet, &slug, &[]).await?;
    let failpoint = format!("{phase}.{boundary}=exit");
    let mut crashing = fleet.spawn(
        &["worker", "--workers", "1"],
        &[("TENANTRY_FAILPOINTS", &failpoint)],
    );
    wait_until(30, "the first worker to claim the job", || async {
        Ok(job(fleet, &job_id).await?["status"] != "pending")
    })
    .await?;
    // The resuming worker stands by while the first one holds the lease.
    let mut resuming = fleet.spawn(&["worker", "--workers", "1"], &[]);
    let status = crashing.wait(30).await;
    let crashed_at = now_millis();
    ensure(status.code() == Some(137), || {
        format!("the worker was to exit abruptly (137), got {status:?}")
    })?;
    let ended = wait_terminal(fleet, &job_id, 60).await?;
    resuming.signal("TERM");
    resuming.wait(30).await;
    ensure(ended["status"] == "complete", || {
        format!("job ended {}: {}", ended["status"], ended["error_message"])
    })?;
    let mut connection = registry(fleet).await?;
    let resumed_at: Option<i64> =
        sqlx::query_scalar("SELECT MIN(at) FROM job_events WHERE job_id = $1 AND at >= $2")
            .bind(&job_id)
            .bind(crashed_at)
            .fetch_one(&mut connection)
            .await
            .map_err(|error| error.to_string())?;
    check_fleet(fleet).await?;
    Ok(format!(
        "complete; resumed {} ms after the crash",
        resumed_at
            .map(|at| (at - crashed_at).to_string())
            .unwrap_or_else(|| "?".into())
    ))
}

/// Many requests for one slug across three replicas make one tenant, one database, one role, one secret.
pub async fn one_slug_many_requests(n_requests: usize) -> Outcome {
    let fleet = chaos_fleet().await;
    let outcome = async {
        let token = fleet.token_for("ops@example.com", "PLATFORM_ADMIN").await;
        let replicas = [fleet.serve(&[]).await, fleet.serve(&[]).await, fleet.serve(&[]).await];
        let body = serde_json::json!({ "slug": "contested", "display_name": "Contested Co", "admin_email": "a@contested.example" });
        let requests = (0..n_requests).map(|index| {
            let replica = &replicas[index % replicas.len()];
            replica.post("/platform/tenants", &token).json(&body).send()
        });
        let responses = futures_util::future::join_all(requests).await;
        let mut accepted = Vec::new();
        let mut codes: BTreeMap<String, usize> = BTreeMap::new();
        for response in responses {
            let response = response.map_err(|error| error.to_string())?;
            let status = response.status().as_u16();
            let body: Value = response.json().await.map_err(|error| error.to_string())?;
            if status == 202 {
                accepted.push(body["job_id"].as_str().unwrap_or_default().to_owned());
            } else {
                *codes.entry(body["error_code"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
            }
        }
        ensure(accepted.len() == 1, || format!("{} requests were accepted: {accepted:?}", accepted.len()))?;
        ensure(codes.keys().all(|code| code == "E_CONFLICT" || code == "E_ALREADY_PROVISIONED"), || format!("unexpected refusals: {codes:?}"))?;
        let ended = wait_terminal(&fleet, &accepted[0], 60).await?;
        ensure(ended["status"] == "complete", || format!("the job ended {}", ended["status"]))?;
        for replica in replicas {
            replica.terminate().await;
        }
        ensure(fleet.tenants().await.len() == 1, || "not exactly one tenant".into())?;
        ensure(fleet.n_tenant_databases().await == 1, || "not exactly one tenant database".into())?;
        ensure(fleet.server_has("contested").await == (true, true), || "database or role missing".into())?;
        ensure(fleet.secret("tenant-db-contested").await.is_some(), || "secret missing".into())?;
        check_fleet(&fleet).await?;
        Ok(format!("1 accepted, refused: {codes:?}; 1 tenant, 1 database, 1 role, 1 secret"))
    }
    .await;
    fleet.cleanup().await;
    outcome
}

/// Three worker processes provision many tenants; every phase of every job is applied exactly once.
pub async fn many_tenants_three_workers(n_tenants: usize) -> Outcome {
    let fleet = chaos_fleet().await;
    let outcome = async {
        let mut workers: Vec<Process> = (0..3).map(|_| fleet.spawn(&["worker", "--workers", "2"], &[])).collect();
        let started = Instant::now();
        let slugs: Vec<String> = (0..n_tenants).map(|index| format!("bulk-{index}")).collect();
        for batch in slugs.chunks(16) {
            let submissions = batch.iter().map(|slug| submit(&fleet, slug, &[]));
            for submitted in futures_util::future::join_all(submissions).await {
                submitted?;
            }
        }
        wait_until(600, "every job to end", || async {
            let counts = status_counts(&fleet).await.unwrap_or_default();
            Ok(["pending", "in_progress"].iter().all(|status| counts.get(*status).copied().unwrap_or(0) == 0)
                && counts.values().sum::<i64>() == n_tenants as i64)
        })
        .await?;
        let elapsed = started.elapsed().as_secs_f64();
        for worker in &workers {
            worker.signal("TERM");
        }
        for worker in &mut workers {
            worker.wait(30).await;
        }
        let counts = status_counts(&fleet).await?;
        ensure(counts.get("complete").copied() == Some(n_tenants as i64), || format!("not all complete: {counts:?}"))?;
        let mut connection = registry(&fleet).await?;
        let repeated: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT job_id, phase, COUNT(*) FROM job_events WHERE kind = 'phase' AND status = 'applied'
             GROUP BY job_id, phase HAVING COUNT(*) <> 1",
        )
        .fetch_all(&mut connection)
        .await
        .map_err(|error| error.to_string())?;
        ensure(repeated.is_empty(), || format!("phases applied more than once: {repeated:?}"))?;
        let n_applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_events WHERE kind = 'phase' AND status = 'applied'")
            .fetch_one(&mut connection)
            .await
            .map_err(|error| error.to_string())?;
        ensure(n_applied == (n_tenants * PROVISION_PHASES.len()) as i64, || format!("{n_applied} phase applications"))?;
        ensure(fleet.n_tenant_databases().await == n_tenants as i64, || "tenant databases missing".into())?;
        check_fleet(&fleet).await?;
        Ok(format!(
            "{n_tenants} complete in {elapsed:.1} s ({:.1} tenants/s); each phase applied once",
            n_tenants as f64 / elapsed
        ))
    }
    .await;
    fleet.cleanup().await;
    outcome
}

/// A worker stopped (SIGSTOP) past its lease: another takes the job over and finishes it; when the first is
/// resumed (SIGCONT) its writes are refused and it says so.
pub async fn stalled_worker_is_fenced() -> Outcome {
    let fleet = chaos_fleet().await;
    let outcome = async {
        let job_id = submit(&fleet, "stalled", &[]).await?;
        // The first worker stalls right before `secret_set` until the release file exists: it is stopped there,
        // at that exact point, every run.
        let release = fleet.scratch_dir.join("release-stalled-worker");
        let failpoint = format!("secret_set.before=stall:{}", release.display());
        let mut stalled = fleet.spawn(&["worker", "--workers", "1"], &[("TENANTRY_FAILPOINTS", failpoint.as_str())]);
        let reached = PathBuf::from(format!("{}.reached", release.display()));
        wait_until(30, "the first worker to stall before secret_set", || async { Ok(reached.exists()) }).await?;
        stalled.signal("STOP");
        let mut connection = registry(&fleet).await?;
        wait_until(30, "the stopped worker's lease to expire", || async {
            let expires_at: Option<i64> = sqlx::query_scalar("SELECT lease_expires_at FROM jobs WHERE id = $1")
                .bind(&job_id)
                .fetch_one(&mut registry(&fleet).await?)
                .await
                .map_err(|error| error.to_string())?;
            Ok(expires_at.is_some_and(|expires_at| expires_at < now_millis()))
        })
        .await?;
        let expired_at = now_millis();
        let mut taking_over = fleet.spawn(&["worker", "--workers", "1"], &[]);
        let ended = wait_terminal(&fleet, &job_id, 60).await?;
        ensure(ended["status"] == "complete", || format!("the job ended {}", ended["status"]))?;
        let taken_over_at: Option<i64> = sqlx::query_scalar("SELECT MIN(at) FROM job_events WHERE job_id = $1 AND at >= $2")
            .bind(&job_id)
            .bind(expired_at)
            .fetch_one(&mut connection)
            .await
            .map_err(|error| error.to_string())?;
        let n_events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_events WHERE job_id = $1")
            .bind(&job_id)
            .fetch_one(&mut connection)
            .await
            .map_err(|error| error.to_string())?;
        std::fs::write(&release, b"").map_err(|error| error.to_string())?;
        stalled.signal("CONT");
        wait_until(30, "the resumed worker to notice it lost the lease", || async {
            Ok(stalled.log().contains("taken over"))
        })
        .await?;
        let n_events_after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_events WHERE job_id = $1")
            .bind(&job_id)
            .fetch_one(&mut connection)
            .await
            .map_err(|error| error.to_string())?;
        ensure(n_events_after == n_events, || format!("the fenced worker wrote {} events", n_events_after - n_events))?;
        // The secret still opens the tenant's database: nothing replaced it behind the new owner's back.
        let url = fleet.secret("tenant-db-stalled").await.ok_or("secret missing")?;
        PgConnection::connect(&url).await.map_err(|error| format!("tenant credentials broken: {error}"))?;
        stalled.signal("TERM");
        stalled.wait(30).await;
        taking_over.signal("TERM");
        taking_over.wait(30).await;
        check_fleet(&fleet).await?;
        Ok(format!(
            "lease TTL {LEASE_TTL_SECS} s; taken over {} ms after expiry; stale worker's writes refused",
            taken_over_at.map(|at| (at - expired_at).to_string()).unwrap_or_else(|| "?".into())
        ))
    }
    .await;
    fleet.cleanup().await;
    outcome
}

/// The registry's PostgreSQL restarts (immediate mode) while workers are busy: no job is lost.
pub async fn registry_restart_mid_run(n_jobs: usize) -> Outcome {
    let fleet = chaos_fleet().await;
    let outcome = async {
        let mut workers: Vec<Process> = (0..2)
            .map(|_| fleet.spawn(&["worker", "--workers", "2"], &[]))
            .collect();
        let fleet_ref = &fleet;
        for batch in (0..n_jobs).collect::<Vec<_>>().chunks(10) {
            let submissions = batch.iter().map(|index| {
                let slug = format!("restart-{index}");
                async move { submit(fleet_ref, &slug, &[]).await }
            });
            for submitted in futures_util::future::join_all(submissions).await {
                submitted?;
            }
        }
        wait_until(120, "some jobs to complete", || async {
            Ok(status_counts(&fleet)
                .await?
                .get("complete")
                .copied()
                .unwrap_or(0)
                >= 3)
        })
        .await?;
        // A crash of the suite's own cluster, through the one script scripts/test-services wrote for it.
        let restarted = std::process::Command::new(
            std::env::var("TENANTRY_TEST_CHAOS_CRASH").map_err(|error| error.to_string())?,
        )
        .output()
        .map_err(|error| error.to_string())?;
        ensure(restarted.status.success(), || {
            format!(
                "restart failed: {}",
                String::from_utf8_lossy(&restarted.stderr)
            )
        })?;
        wait_until(300, "every job to end after the restart", || async {
            let Ok(counts) = status_counts(&fleet).await else {
                return Ok(false);
            };
            Ok(["pending", "in_progress"]
                .iter()
                .all(|status| counts.get(*status).copied().unwrap_or(0) == 0))
        })
        .await?;
        for worker in &workers {
            worker.signal("TERM");
        }
        for worker in &mut workers {
            worker.wait(60).await;
        }
        let counts = status_counts(&fleet).await?;
        if counts.get("complete").copied() != Some(n_jobs as i64) {
            let failures: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT status, error_code, error_message FROM jobs WHERE status <> 'complete'",
            )
            .fetch_all(&mut registry(&fleet).await?)
            .await
            .map_err(|error| error.to_string())?;
            return Err(format!("jobs lost or failed: {counts:?}: {failures:?}"));
        }
        check_fleet(&fleet).await?;
        Ok(format!(
            "{n_jobs} of {n_jobs} complete after an immediate restart"
        ))
    }
    .await;
    fleet.cleanup().await;
    outcome
}

/// A tenant server that stops answering: bounded retries, then a clear error and rollback; nothing left behind,
/// and a job on another server carries on meanwhile.
pub async fn blackholed_tenant_server() -> Outcome {
    let fleet = chaos_fleet().await;
    let outcome = async {
        let proxy = BlackholeProxy::start(&chaos_cluster_address()?).await;
        let admin_url = format!("postgres://postgres@127.0.0.1:{}/postgres", proxy.port);
        let added = fleet
            .run(&["servers", "add", "--name", "proxied", "--engine", "postgres", "--admin-url", &admin_url, "--capacity", "10"])
            .await;
        ensure(added.status == 0, || format!("servers add: {}", added.stderr))?;
        let mut workers = fleet.spawn(&["worker", "--workers", "2"], &[("TENANTRY_RETRY_MAX_ELAPSED_SECS", "8")]);
        proxy.blackhole(true);
        let started = Instant::now();
        let cut_off = submit(&fleet, "cut-off", &["--server", "proxied"]).await?;
        let elsewhere = submit(&fleet, "elsewhere", &["--server", "pg"]).await?;
        let other = wait_terminal(&fleet, &elsewhere, 60).await?;
        ensure(other["status"] == "complete", || format!("the job on the healthy server ended {}", other["status"]))?;
        let ended = wait_terminal(&fleet, &cut_off, 120).await?;
        let gave_up_after = started.elapsed().as_secs_f64();
        ensure(ended["status"] == "rolled_back", || format!("the cut-off job ended {}", ended["status"]))?;
        let code = ended["error_code"].as_str().unwrap_or_default().to_owned();
        let retries = ended["logs"].as_array().map(|logs| logs.iter().filter(|log| log["message"].as_str().unwrap_or_default().contains("retrying")).count()).unwrap_or(0);
        ensure(retries >= 1, || "no retry was logged".into())?;
        ensure(fleet.secret("tenant-db-cut-off").await.is_none(), || "a secret was left behind".into())?;
        proxy.blackhole(false);
        check_fleet(&fleet).await?;
        workers.signal("TERM");
        workers.wait(60).await;
        drop(proxy);
        Ok(format!("{code} after {retries} retries in {gave_up_after:.1} s, rolled back; the other job completed"))
    }
    .await;
    fleet.cleanup().await;
    outcome
}

/// Concurrent purges on one server are spaced out (each DROP DATABASE forces a checkpoint other tenants feel).
pub async fn purges_are_paced(n_tenants: usize) -> Outcome {
    const INTERVAL_MS: i64 = 500;
    let mut fleet = chaos_fleet().await;
    fleet.set_env("TENANTRY_PURGE_MIN_INTERVAL_MS", &INTERVAL_MS.to_string());
    let outcome = async {
        let slugs: Vec<String> = (0..n_tenants)
            .map(|index| format!("leaving-{index}"))
            .collect();
        for slug in &slugs {
            let run = fleet.provision(slug, &[]).await;
            ensure(run.status == 0, || {
                format!("provisioning {slug}: {}", run.stderr)
            })?;
        }
        let fleet_ref = &fleet;
        let purges = slugs.iter().map(|slug| async move {
            fleet_ref
                .run(&["offboard-tenant", "--slug", slug, "--purge"])
                .await
        });
        let runs = futures_util::future::join_all(purges).await;
        ensure(runs.iter().all(|run| run.status == 0), || {
            "a purge failed".into()
        })?;
        let mut connection = registry(&fleet).await?;
        // When each purge's drop was done: the phase is marked running before it waits for its slot, so its start
        // says nothing about pacing; its end comes right after the paced DROP.
        let mut dropped: Vec<i64> = sqlx::query_scalar(
            "SELECT p.finished_at FROM job_phases p JOIN jobs j ON j.id = p.job_id
             WHERE j.kind = 'offboard' AND p.name = 'database_dropped' AND p.status = 'applied'",
        )
        .fetch_all(&mut connection)
        .await
        .map_err(|error| error.to_string())?;
        dropped.sort_unstable();
        ensure(dropped.len() == n_tenants, || {
            format!("{} purges recorded", dropped.len())
        })?;
        let span = dropped.last().copied().unwrap_or(0) - dropped.first().copied().unwrap_or(0);
        // n purges through one slot every INTERVAL_MS cannot all start within less than (n - 1) intervals,
        // less the slot reservation happening just before the phase is marked running.
        let least_span = (n_tenants as i64 - 1) * INTERVAL_MS - INTERVAL_MS / 2;
        ensure(span >= least_span, || {
            format!(
                "{n_tenants} purges finished within {span} ms; at least {least_span} ms expected"
            )
        })?;
        ensure(fleet.n_tenant_databases().await == 0, || {
            "databases left".into()
        })?;
        check_fleet(&fleet).await?;
        Ok(format!(
            "{n_tenants} concurrent purges spread over {span} ms (interval {INTERVAL_MS} ms)"
        ))
    }
    .await;
    fleet.cleanup().await;
    outcome
}
