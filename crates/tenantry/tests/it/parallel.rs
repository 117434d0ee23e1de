//! Phases side by side: a plan with all five kinds (`database`, `cache`, `queue`, `bucket`, `dns`) whose
//! `<kind>_created` phases run beside the database's own, through the real binary against the suite's servers
//! (its own Redis, the machine's RabbitMQ, the suite's SeaweedFS and PowerDNS, in a zone of this test's own).
//!
//! - Side by side, observed, not timed: with `secret_set` held at its `after` boundary (a `stall:` failpoint), the
//!   job record shows every resource phase applied while `secret_set` is still `running`; then the tenant is
//!   validated, offboarded and purged.
//! - A failure in one branch while another runs (held by `stall:`): no phase starts after it, the held one
//!   finishes, and the job unwinds to nothing; a crash in one branch while another is held resumes whole.
//! - The sweep: an error at every phase unwinds to nothing (every undo twice once), a crash at every boundary
//!   resumes to a valid tenant, every step twice converges. On both registries.
//!
//! The tests take resources.rs's `OWN_REDIS` lock (one of its tests restarts that Redis).

use crate::bucket::{bucket_exists, s3_url};
use crate::dns::{api_url, dns_port, Zone};
use crate::failures::assert_nothing_left;
use crate::for_each_engine;
use crate::harness::{eventually, write_file, Engine, Fleet, Run};
use crate::resources::{cache_user_exists, resource_fleet, unique, vhost_exists, RESOURCE_PLANS};
use serde_json::Value;
use tokio::sync::MutexGuard;

for_each_engine!(
    every_kind_runs_side_by_side_and_is_validated_offboarded_and_purged,
    a_failure_in_one_branch_stops_the_others_and_unwinds_everything,
    every_kind_unwinds_from_every_phase_and_resumes_from_every_crash,
);

const EVERYTHING_PLAN: &str = r#"
[[plans]]
name = "everything"
connection_limit = 10
statement_timeout_ms = 30000
resources = ["database", "cache", "queue", "bucket", "dns"]

[plans.quotas.queue]
max_connections = 5
max_queues = 10
"#;

const RESOURCE_KINDS: [&str; 4] = ["cache", "queue", "bucket", "dns"];

/// A fleet with every kind's server: the bundle's cache and queue, the suite's SeaweedFS, and PowerDNS serving a
/// zone made for this fleet alone.
struct EveryKind {
    fleet: Fleet,
    zone: Zone,
    _own_redis: MutexGuard<'static, ()>,
}

impl EveryKind {
    async fn new(engine: Engine) -> EveryKind {
        let (fleet, own_redis) = resource_fleet(engine).await;
        write_file(
            &fleet.scratch_dir.join("tenantry.toml"),
            &format!("{RESOURCE_PLANS}{EVERYTHING_PLAN}"),
        );
        let s3 = [
            "servers",
            "add",
            "--name",
            "s3-a",
            "--engine",
            "s3",
            "--admin-url-stdin",
            "--capacity",
            "1000",
        ];
        fleet.run_with_stdin(&s3, &s3_url()).await.assert_ok();
        let zone = Zone::new().await;
        let port = dns_port();
        let powerdns = [
            "servers",
            "add",
            "--name",
            "dns-a",
            "--engine",
            "powerdns",
            "--admin-url-stdin",
            "--capacity",
            "1000",
            "--zone",
            &zone.name,
            "--dns-target",
            "127.0.0.1",
            "--dns-port",
            &port,
        ];
        fleet
            .run_with_stdin(&powerdns, &api_url())
            .await
            .assert_ok();
        EveryKind {
            fleet,
            zone,
            _own_redis: own_redis,
        }
    }

    fn provision_args(slug: &str) -> Vec<String> {
        let mut args = Fleet::provision_args(slug);
        args.extend(["--plan".into(), "everything".into()]);
        args
    }

    async fn provision(&self, slug: &str, env: &[(&str, &str)]) -> Run {
        let args = EveryKind::provision_args(slug);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.fleet.run_env(&args, env).await
    }

    /// The provisioning, as a process of its own (for a test that holds it at a failpoint).
    fn spawn_provision(&self, slug: &str, failpoints: &str) -> crate::harness::Process {
        let args = EveryKind::provision_args(slug);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.fleet
            .spawn(&args, &[("TENANTRY_FAILPOINTS", failpoints)])
    }

    /// The slug's one job, once it exists.
    async fn only_job(&self, slug: &str) -> Value {
        let jobs = eventually(
            30,
            || format!("{slug}: no job"),
            || async {
                let jobs = self
                    .fleet
                    .json(&["jobs", "list", "--tenant", slug, "--limit", "10"])
                    .await;
                let jobs = jobs.as_array().cloned().unwrap_or_default();
                (!jobs.is_empty()).then_some(jobs)
            },
        )
        .await;
        assert_eq!(jobs.len(), 1, "{slug}: {jobs:?}");
        let job_id = jobs[0]["job_id"].as_str().unwrap().to_owned();
        self.fleet.json(&["jobs", "show", &job_id]).await
    }

    /// Waits until the slug's job shows `wanted` (phase name → status) for every phase named.
    async fn wait_for_phases(&self, slug: &str, wanted: &[(&str, &str)]) -> Value {
        let last_seen = std::sync::Mutex::new(Value::Null);
        eventually(
            60,
            || {
                format!(
                    "{slug}: phases never reached {wanted:?}; last seen {}",
                    last_seen.lock().unwrap()
                )
            },
            || async {
                let job = self.only_job(slug).await;
                *last_seen.lock().unwrap() = job.clone();
                wanted
                    .iter()
                    .all(|(name, status)| phase_status(&job, name) == *status)
                    .then_some(job)
            },
        )
        .await
    }

    /// Every check of each resource kind passes in `validate` (the database's own are other tests' concern: on
    /// a shared cluster some depend on what else is there).
    async fn assert_valid(&self, slug: &str) {
        let checks = self.fleet.validation(slug).await;
        for kind in RESOURCE_KINDS {
            let prefix = format!("{kind}_");
            let of_kind: Vec<&(String, bool)> = checks
                .iter()
                .filter(|(name, _)| name.starts_with(&prefix))
                .collect();
            assert!(!of_kind.is_empty(), "{slug}: no {kind} check in {checks:?}");
            assert!(
                of_kind.iter().all(|(_, passed)| *passed),
                "{slug}: a {kind} check failed: {checks:?}"
            );
        }
    }

    /// Nothing of the tenant is left of any kind: no cache user, vhost, bucket, record, secret or registry row.
    async fn assert_gone(&self, slug: &str, context: &str) {
        assert!(!cache_user_exists(slug).await, "{context}: cache user left");
        assert!(!vhost_exists(slug).await, "{context}: vhost left");
        assert!(!bucket_exists(slug), "{context}: bucket left");
        assert_eq!(
            self.zone.records_of(slug).await,
            vec![],
            "{context}: records left"
        );
        for kind in RESOURCE_KINDS {
            assert_eq!(
                self.fleet.secret(&format!("tenant-{kind}-{slug}")).await,
                None,
                "{context}: {kind} secret left"
            );
        }
        assert_nothing_left(&self.fleet, slug).await;
    }

    async fn purge(&self, slug: &str) {
        self.fleet
            .run(&["offboard-tenant", "--slug", slug, "--purge"])
            .await
            .assert_ok();
        self.assert_gone(slug, slug).await;
    }

    async fn cleanup(self) {
        self.zone.delete().await;
        self.fleet.cleanup().await;
    }
}

fn phase<'j>(job: &'j Value, name: &str) -> &'j Value {
    job["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|phase| phase["name"] == name)
        .unwrap_or_else(|| panic!("no phase {name} in {job}"))
}

fn phase_status<'j>(job: &'j Value, name: &str) -> &'j str {
    phase(job, name)["status"].as_str().unwrap()
}

fn phase_names(job: &Value) -> Vec<String> {
    job["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|phase| phase["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A file whose creation releases a `stall:` failpoint, in the fleet's scratch directory.
fn hold(fleet: &Fleet, name: &str) -> std::path::PathBuf {
    fleet.scratch_dir.join(format!("{name}-{}", unique("hold")))
}

async fn every_kind_runs_side_by_side_and_is_validated_offboarded_and_purged(engine: Engine) {
    let every = EveryKind::new(engine).await;
    let slug = unique("par");
    let held = hold(&every.fleet, "secret-set");
    let mut provisioning =
        every.spawn_provision(&slug, &format!("secret_set.after=stall:{}", held.display()));
    // Held after its apply, secret_set stays `running`, and every resource is made meanwhile.
    let mut wanted = vec![("secret_set", "running")];
    let created: Vec<String> = RESOURCE_KINDS
        .iter()
        .map(|kind| format!("{kind}_created"))
        .collect();
    wanted.extend(created.iter().map(|name| (name.as_str(), "applied")));
    let job = every.wait_for_phases(&slug, &wanted).await;
    assert_eq!(phase_status(&job, "database_created"), "pending", "{job}");
    assert_eq!(phase_status(&job, "master_registered"), "pending", "{job}");
    std::fs::write(&held, "").unwrap();
    let ended = provisioning.wait(120).await;
    assert!(ended.success(), "{}", provisioning.log());

    // Each phase keeps its own times: every resource ran inside secret_set's span, and registration came after
    // all of them.
    let job = every.only_job(&slug).await;
    assert_eq!(job["status"], "complete", "{job}");
    let secret_set = phase(&job, "secret_set");
    let registered = phase(&job, "master_registered");
    for name in &created {
        let resource = phase(&job, name);
        let (started, finished) = (
            resource["started_at"].as_str().unwrap(),
            resource["finished_at"].as_str().unwrap(),
        );
        assert!(
            started <= secret_set["finished_at"].as_str().unwrap()
                && finished <= secret_set["finished_at"].as_str().unwrap(),
            "{name} not beside secret_set: {job}"
        );
        assert!(
            finished <= registered["started_at"].as_str().unwrap(),
            "{name} after registration: {job}"
        );
    }
    // The text view lists them too, each with its duration.
    let shown = every
        .fleet
        .run(&["jobs", "show", job["job_id"].as_str().unwrap()])
        .await;
    for name in &created {
        assert!(
            shown.assert_ok().stdout.contains(name.as_str()),
            "{shown:?}"
        );
    }

    every.assert_valid(&slug).await;
    every.fleet.assert_doctor_clean().await;
    every
        .fleet
        .run(&["offboard-tenant", "--slug", &slug])
        .await
        .assert_ok();
    every.fleet.assert_doctor_clean().await;
    every.purge(&slug).await;
    every.cleanup().await;
}

async fn a_failure_in_one_branch_stops_the_others_and_unwinds_everything(engine: Engine) {
    let every = EveryKind::new(engine).await;
    // (held phase, failing phase): a resource fails while the database's branch is held, and the database's
    // branch fails while a resource is held.
    let cases = [
        ("secret_set", "cache_created"),
        ("secret_set", "bucket_created"),
        ("dns_created", "database_created"),
        ("queue_created", "secret_set"),
    ];
    for (held_phase, failing) in cases {
        let slug = unique("pfail");
        let held = hold(&every.fleet, held_phase);
        let failpoints = format!(
            "{held_phase}.after=stall:{},{failing}.before=error",
            held.display()
        );
        let mut provisioning = every.spawn_provision(&slug, &failpoints);
        let job = every
            .wait_for_phases(&slug, &[(held_phase, "running"), (failing, "failed")])
            .await;
        // Nothing that waits for everything started.
        assert_eq!(phase_status(&job, "master_registered"), "pending", "{job}");
        std::fs::write(&held, "").unwrap();
        let ended = provisioning.wait(120).await;
        assert!(!ended.success(), "{failpoints}: {}", provisioning.log());
        let job = every.only_job(&slug).await;
        assert_eq!(job["status"], "rolled_back", "{failpoints}: {job}");
        assert_eq!(job["error_code"], "E_FAILPOINT", "{failpoints}: {job}");
        // The held phase finished its apply, so it was undone like every other applied phase.
        assert_eq!(
            phase_status(&job, held_phase),
            "undone",
            "{failpoints}: {job}"
        );
        every.assert_gone(&slug, &failpoints).await;
    }

    // A crash in one branch while another is held: the job resumes whole.
    let slug = unique("pcrash");
    let held = hold(&every.fleet, "secret-set");
    let failpoints = format!(
        "secret_set.after=stall:{},bucket_created.after=exit",
        held.display()
    );
    let mut provisioning = every.spawn_provision(&slug, &failpoints);
    assert_eq!(provisioning.wait(120).await.code(), Some(137));
    every.provision(&slug, &[]).await.assert_ok();
    assert_eq!(every.only_job(&slug).await["status"], "complete");
    every.assert_valid(&slug).await;
    every.purge(&slug).await;
    every.cleanup().await;
}

async fn every_kind_unwinds_from_every_phase_and_resumes_from_every_crash(engine: Engine) {
    let every = EveryKind::new(engine).await;
    // The reference run names the phases.
    let reference = unique("psweep");
    every.provision(&reference, &[]).await.assert_ok();
    let phases = phase_names(&every.only_job(&reference).await);
    for kind in RESOURCE_KINDS {
        assert!(phases.contains(&format!("{kind}_created")), "{phases:?}");
    }
    every.assert_valid(&reference).await;
    let mut made = vec![reference];

    // An error at every phase, and after the last with every undo twice: nothing is left.
    let last = phases.last().unwrap();
    let mut failures: Vec<(String, bool)> = phases
        .iter()
        .map(|phase| (format!("{phase}.before=error"), false))
        .collect();
    failures.push((format!("{last}.after=error"), true));
    for (failpoint, twice) in failures {
        let slug = unique("perr");
        let mut env = vec![("TENANTRY_FAILPOINTS", failpoint.as_str())];
        if twice {
            env.push(("TENANTRY_REPEAT_STEPS", "1"));
        }
        let run = every.provision(&slug, &env).await;
        assert_eq!(
            run.error_code().as_deref(),
            Some("E_FAILPOINT"),
            "{failpoint}: {run:?}"
        );
        every.assert_gone(&slug, &failpoint).await;
    }

    // A crash before the first phase and after every phase, each resumed by the same command.
    let mut crashes = vec![format!("{}.before=exit", phases[0])];
    crashes.extend(phases.iter().map(|phase| format!("{phase}.after=exit")));
    for failpoint in crashes {
        let slug = unique("pcr");
        let crashed = every
            .provision(&slug, &[("TENANTRY_FAILPOINTS", &failpoint)])
            .await;
        assert_eq!(crashed.status, 137, "{failpoint}: {crashed:?}");
        let resumed = every.provision(&slug, &[]).await;
        resumed.assert_ok();
        assert!(
            resumed.stderr.contains("resuming job"),
            "{failpoint}: {resumed:?}"
        );
        assert_eq!(
            every.only_job(&slug).await["status"],
            "complete",
            "{failpoint}"
        );
        every.assert_valid(&slug).await;
        made.push(slug);
    }

    // Every step twice converges.
    let twice = unique("ptw");
    every
        .provision(&twice, &[("TENANTRY_REPEAT_STEPS", "1")])
        .await
        .assert_ok();
    every.assert_valid(&twice).await;
    made.push(twice);
    every.fleet.assert_doctor_clean().await;
    for slug in &made {
        every.purge(slug).await;
    }
    every.cleanup().await;
}
