//! The chaos suite: several workers on one PostgreSQL registry, under crashes, stalls, restarts and a tenant
//! server that stops answering. It prints a table of scenario × outcome and exits non-zero on any violation.
//! Every scenario ends by checking that `doctor` finds a clean fleet and that every job's end has its audit event.
//! What the scenarios break (restarts, a blackholed link) is the suite's own cluster from `scripts/test-services`
//! (`TENANTRY_TEST_CHAOS_PG_URL`); a bystander on the machine's PostgreSQL checks that it is left alone.
//! Run by `scripts/test` (through `cargo test`); alone: `cargo test -p tenantry --features failpoints --test chaos`.

mod bystander;
#[allow(dead_code, unused_macros)]
#[path = "../it/harness.rs"]
mod harness;
mod proxy;
mod scenarios;

use std::time::Instant;

/// What one scenario found: its outcome line, or the violation that fails the suite.
pub type Outcome = Result<String, String>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    for variable in [
        "TENANTRY_TEST_SCRAM_URL",
        "TENANTRY_TEST_CHAOS_PG_URL",
        "TENANTRY_TEST_CHAOS_CRASH",
    ] {
        if std::env::var(variable).is_err() {
            eprintln!("chaos: {variable} is not set; run through scripts/test, or eval \"$(scripts/test-services)\" first");
            std::process::exit(2);
        }
    }
    let started = Instant::now();
    let mut rows: Vec<(String, Outcome, f64)> = Vec::new();
    let bystander = match bystander::Bystander::arrive().await {
        Ok(bystander) => bystander,
        Err(error) => {
            eprintln!("chaos: {error}");
            std::process::exit(2);
        }
    };
    macro_rules! run {
        ($name:expr, $scenario:expr) => {{
            let scenario_started = Instant::now();
            let outcome = $scenario.await;
            let seconds = scenario_started.elapsed().as_secs_f64();
            let mark = if outcome.is_ok() { "ok" } else { "VIOLATION" };
            eprintln!("chaos: {:<58} {mark} ({seconds:.1} s)", $name);
            rows.push(($name.to_string(), outcome, seconds));
        }};
    }
    for phase in harness::PROVISION_PHASES {
        for boundary in ["before", "after"] {
            run!(
                format!("worker exits at {phase}.{boundary}; another resumes"),
                scenarios::crash_and_resume(phase, boundary)
            );
        }
    }
    run!(
        "64 concurrent provisions of one slug (3 replicas)",
        scenarios::one_slug_many_requests(64)
    );
    run!(
        "3 workers x 200 tenants",
        scenarios::many_tenants_three_workers(200)
    );
    run!(
        "worker stopped past its lease, then resumed",
        scenarios::stalled_worker_is_fenced()
    );
    run!(
        "registry PostgreSQL restarted mid-run",
        scenarios::registry_restart_mid_run(30)
    );
    run!(
        "tenant server blackholed behind a TCP proxy",
        scenarios::blackholed_tenant_server()
    );
    run!(
        "4 concurrent purges on one server",
        scenarios::purges_are_paced(4)
    );
    run!(
        "another installation's tenant on the machine's PostgreSQL",
        bystander.leave()
    );

    let n_violations = rows
        .iter()
        .filter(|(_, outcome, _)| outcome.is_err())
        .count();
    println!();
    println!(
        "{:<58} | {:<9} | {:>7} | detail",
        "scenario", "outcome", "seconds"
    );
    println!("{}", "-".repeat(130));
    for (name, outcome, seconds) in &rows {
        let (mark, detail) = match outcome {
            Ok(detail) => ("ok", detail.as_str()),
            Err(violation) => ("VIOLATION", violation.as_str()),
        };
        println!("{name:<58} | {mark:<9} | {seconds:>7.1} | {detail}");
    }
    println!();
    println!(
        "chaos: {} passed, {} failed ({:.0} s)",
        rows.len() - n_violations,
        n_violations,
        started.elapsed().as_secs_f64()
    );
    if n_violations > 0 {
        std::process::exit(1);
    }
}
