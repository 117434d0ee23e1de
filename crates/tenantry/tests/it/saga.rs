//! One saga harness for every workflow: a job as the binary runs it fails at every phase, runs every step twice
//! and crashes at every boundary, and each time the world must end where the workflow promises.
//!
//! A [`Scenario`] says how to set the world up (nothing, or a tenant on a plan, then perhaps a command such as a
//! suspension before a resume), which command makes the job, whether re-running that command resumes an
//! interrupted job (provision does; offboard, set-plan, suspend and resume are resumed with
//! `tenantry jobs resume <id>`), and what a failed job leaves ([`AfterFailure`]). The phases come from the
//! job record of an uncrashed run (`jobs show <id> --json`), never from a list written here, so a phase added to a
//! workflow is failed and crashed at without touching this file.
//!
//! The end state is a [`Snapshot`]: the registry's view of the tenant (`tenants show --json` without its jobs and
//! timestamps, with its resources), the secrets of the slug (names, labels and, within one slug, values), and the
//! world: whether the database, cache user and vhost exist, whether the tenant's own credentials log in to each,
//! the settings in the tenant's database and (PostgreSQL) its role's connection limit. `doctor` must be clean
//! wherever the workflow promises a consistent fleet.
//!
//! What runs, per scenario and registry, and why that much and no more (the suite runs on 2 cores):
//! - one uncrashed run: the reference end state, and the phases;
//! - every apply and every undo twice (`TENANTRY_REPEAT_STEPS=1`): once to completion (the reference state), once
//!   failing after the last phase so that every undo runs twice (the state before the job);
//! - an error at every phase's `before` boundary, and after the last phase. An error *before* phase N makes the
//!   runner undo phase N (whose apply never ran: an undo of nothing) and every phase before it (applied and
//!   recorded). An error *after* phase N-1 would undo the same phases with N-1's apply done but not recorded, which
//!   the runner treats exactly as a failed phase N-1: the world differs in no way an undo can see, so `after` is
//!   only needed where no later `before` exists, at the last phase. This halves the error runs;
//! - a crash at every phase's `after` boundary (the apply done, not recorded: the resume must re-apply a step
//!   that already happened, the hard case), and before the first phase (the job recorded, nothing done). A crash
//!   *before* phase N leaves phase N-1 recorded applied and N marked running but not started, which resumes like
//!   an ordinary apply of N, so those crashes are left out.
//!
//! Scenarios that use the bundle plan take resources.rs's `OWN_REDIS` lock, and every slug is unique per run
//! (`unique()`), because RabbitMQ is the machine's and outlives this fleet.

use crate::for_each_engine;
use crate::harness::{tenant_cluster_url, Engine, Fleet, Run};
use crate::resources::{
    amqp_login_works, cache_login_works, cache_user_exists, resource_fleet, resource_name, unique,
    vhost_exists,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;

for_each_engine!(
    provision_default_plan,
    provision_bundle_plan,
    offboard_keeping_data,
    offboard_with_purge,
    set_plan_to_same_resources,
    set_plan_adding_cache_and_queue,
    suspend_every_kind,
    resume_every_kind,
    rotate_every_kind,
    backup_every_resource,
    restore_into_a_new_slug,
    clone_into_a_new_slug,
    restore_in_place_over_the_tenant,
    provision_schema_tenant,
);

/// The move scenario on PostgreSQL (a move is between PostgreSQL servers), in its own function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_to_another_server_postgres() {
    move_to_another_server(Engine::Postgres).await;
}

/// A tenant on a MariaDB-engine plan, on the machine's MariaDB (a SQLite registry: the registry is not what this
/// scenario is about). MariaDB commits each DDL statement at once, so this is where "every step converges when
/// repeated" is proved for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_mariadb_plan() {
    let saga = Saga {
        fleet: crate::mariadb::mariadb_fleet().await,
        scenario: Scenario {
            prefix: "sg-pm",
            bundle: false,
            setup_plan: None,
            setup_command: None,
            prepare: None,
            command: provision_command,
            resumes_itself: true,
            after_failure: AfterFailure::Restored,
        },
        slugs: BTreeSet::new(),
        _own_redis: None,
        mariadb: true,
    };
    run_saga_in(saga).await;
}

/// What a job that failed (an error, not a crash) leaves behind, as the workflow documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterFailure {
    /// Rolled back, and the world is exactly as before the job.
    Restored,
    /// Rolled back, and the world is as before except that the tenant's logins stay disabled: offboard's
    /// `login_disabled` undo leaves them off on purpose (re-enabling is an operator's deliberate act).
    RestoredButLoginsMayStayDisabled,
    /// Rolled back, exactly as before the job, unless the failure came after the last phase (a move's
    /// `complete`, which removes the source): then the cut-over cannot be undone, the job ends `failed` with
    /// `E_PARTIAL_STATE` while the tenant works on the target, and `jobs retry` finishes the move.
    RestoredOrFinishedByRetry,
    /// As `RestoredButLoginsMayStayDisabled` until the data is dropped; after that nothing can bring it back: the
    /// job ends `failed` with `E_PARTIAL_STATE`, `doctor` must name the leftovers with the purge as their fix,
    /// and re-running the purge must finish it.
    RestoredOrFinishedByRerun,
    /// Rolled back: before the first old credentials are retired, exactly as before the job; after that, as
    /// before except that the retired kinds' secrets hold the new credentials (which work: the snapshot's login
    /// probes say so), since bringing back refused credentials would help no client.
    RestoredOrRotated,
}

#[derive(Debug, Clone, Copy)]
struct Scenario {
    /// The slug prefix (kept short: a slug has at most 40 characters).
    prefix: &'static str,
    /// Needs the bundle plan: a fleet with a cache server and a queue server, under `OWN_REDIS`.
    bundle: bool,
    /// The plan of a tenant provisioned before the job; `None`: the job starts from nothing.
    setup_plan: Option<&'static str>,
    /// A command run on that tenant before the job (resume needs a suspended tenant).
    setup_command: Option<fn(&str) -> Vec<String>>,
    /// Commands run once, before any slug: a restore's source tenant and its backup.
    prepare: Option<fn() -> Vec<Vec<String>>>,
    /// The command that makes the job, for a slug.
    command: fn(&str) -> Vec<String>,
    /// Re-running the command resumes its interrupted job (otherwise: `tenantry jobs resume <id>`).
    resumes_itself: bool,
    after_failure: AfterFailure,
}

fn provision_command(slug: &str) -> Vec<String> {
    Fleet::provision_args(slug)
}

fn provision_bundle_command(slug: &str) -> Vec<String> {
    let mut args = Fleet::provision_args(slug);
    args.extend(["--plan".into(), "bundle".into()]);
    args
}

fn offboard_command(slug: &str) -> Vec<String> {
    vec!["offboard-tenant".into(), "--slug".into(), slug.into()]
}

fn purge_command(slug: &str) -> Vec<String> {
    let mut args = offboard_command(slug);
    args.push("--purge".into());
    args
}

fn set_plan_professional_command(slug: &str) -> Vec<String> {
    vec![
        "tenants".into(),
        "set-plan".into(),
        slug.into(),
        "professional".into(),
    ]
}

fn set_plan_bundle_command(slug: &str) -> Vec<String> {
    vec![
        "tenants".into(),
        "set-plan".into(),
        slug.into(),
        "bundle".into(),
    ]
}

fn suspend_command(slug: &str) -> Vec<String> {
    vec![
        "tenants".into(),
        "suspend".into(),
        slug.into(),
        "--reason".into(),
        "saga".into(),
    ]
}

fn rotate_command(slug: &str) -> Vec<String> {
    vec![
        "tenants".into(),
        "rotate-credentials".into(),
        slug.into(),
        "--grace".into(),
        "1s".into(),
    ]
}

fn resume_command(slug: &str) -> Vec<String> {
    vec!["tenants".into(), "resume".into(), slug.into()]
}

async fn provision_default_plan(engine: Engine) {
    run_saga(
        engine,
        Scenario {
            prefix: "sg-pd",
            bundle: false,
            setup_plan: None,
            setup_command: None,
            prepare: None,
            command: provision_command,
            resumes_itself: true,
            after_failure: AfterFailure::Restored,
        },
    )
    .await;
}

async fn provision_bundle_plan(engine: Engine) {
    run_saga(
        engine,
        Scenario {
            prefix: "sg-pb",
            bundle: true,
            setup_plan: None,
            setup_command: None,
            prepare: None,
            command: provision_bundle_command,
            resumes_itself: true,
            after_failure: AfterFailure::Restored,
        },
    )
    .await;
}

async fn offboard_keeping_data(engine: Engine) {
    run_saga(
        engine,
        Scenario {
            prefix: "sg-ok",
            bundle: false,
            setup_plan: Some("starter"),
            setup_command: None,
            prepare: None,
            command: offboard_command,
            resumes_itself: false,
            after_failure: AfterFailure::RestoredButLoginsMayStayDisabled,
        },
    )
    .await;
}

async fn offboard_with_purge(engine: Engine) {
    run_saga(
        engine,
        Scenario {
            prefix: "sg-op",
            bundle: false,
            setup_plan: Some("starter"),
            setup_command: None,
            prepare: None,
            command: purge_command,
            resumes_itself: false,
            after_failure: AfterFailure::RestoredOrFinishedByRerun,
        },
    )
    .await;
}

async fn set_plan_to_same_resources(engine: Engine) {
    run_saga(
        engine,
        Scenario {
            prefix: "sg-sp",
            bundle: false,
            setup_plan: Some("starter"),
            setup_command: None,
            prepare: None,
            command: set_plan_professional_command,
            resumes_itself: false,
            after_failure: AfterFailure::Restored,
        },
    )
    .await;
}

async fn set_plan_adding_cache_and_queue(engine: Engine) {
    run_saga(
        engine,
        Scenario {
            prefix: "sg-sb",
            bundle: true,
            setup_plan: Some("starter"),
            setup_command: None,
            prepare: None,
            command: set_plan_bundle_command,
            resumes_itself: false,
            after_failure: AfterFailure::Restored,
        },
    )
    .await;
}

async fn suspend_every_kind(engine: Engine) {
    run_saga(
        engine,
        Scenario {
            prefix: "sg-su",
            bundle: true,
            setup_plan: Some("bundle"),
            setup_command: None,
            prepare: None,
            command: suspend_command,
            resumes_itself: false,
            after_failure: AfterFailure::Restored,
        },
    )
    .await;
}

async fn resume_every_kind(engine: Engine) {
    run_saga(
        engine,
        Scenario {
            prefix: "sg-re",
            bundle: true,
            setup_plan: Some("bundle"),
            setup_command: Some(suspend_command),
            prepare: None,
            command: resume_command,
            resumes_itself: false,
            after_failure: AfterFailure::Restored,
        },
    )
    .await;
}

async fn rotate_every_kind(engine: Engine) {
    run_saga(
        engine,
        Scenario {
            prefix: "sg-ro",
            bundle: true,
            setup_plan: Some("bundle"),
            setup_command: None,
            prepare: None,
            command: rotate_command,
            resumes_itself: false,
            after_failure: AfterFailure::RestoredOrRotated,
        },
    )
    .await;
}

fn backup_command(slug: &str) -> Vec<String> {
    vec!["backups".into(), "create".into(), slug.into()]
}

async fn backup_every_resource(engine: Engine) {
    run_saga(
        engine,
        Scenario {
            prefix: "sg-bk",
            bundle: true,
            setup_plan: Some("bundle"),
            setup_command: None,
            prepare: None,
            command: backup_command,
            resumes_itself: false,
            after_failure: AfterFailure::Restored,
        },
    )
    .await;
}

/// The source of every restore in the restore scenario, in its fleet.
const RESTORE_SOURCE: &str = "sg-rs-source";

fn restore_prepare() -> Vec<Vec<String>> {
    let provision = Fleet::provision_args(RESTORE_SOURCE);
    vec![
        provision,
        vec!["backups".into(), "create".into(), RESTORE_SOURCE.into()],
    ]
}

fn restore_command(slug: &str) -> Vec<String> {
    vec![
        "backups".into(),
        "restore".into(),
        "--latest-of".into(),
        RESTORE_SOURCE.into(),
        "--to".into(),
        slug.into(),
    ]
}

async fn restore_into_a_new_slug(engine: Engine) {
    run_saga(
        engine,
        Scenario {
            prefix: "sg-rs",
            bundle: false,
            setup_plan: None,
            setup_command: None,
            prepare: Some(restore_prepare),
            command: restore_command,
            resumes_itself: false,
            after_failure: AfterFailure::Restored,
        },
    )
    .await;
}

/// The move scenario's second server: the suite's logical-replication cluster, the tenants' source.
fn move_prepare() -> Vec<Vec<String>> {
    vec![[
        "servers",
        "add",
        "--name",
        "logical",
        "--engine",
        "postgres",
        "--admin-url-stdin",
        "--capacity",
        "100",
    ]
    .map(String::from)
    .to_vec()]
}

fn provision_on_logical_command(slug: &str) -> Vec<String> {
    let mut args = Fleet::provision_args(slug);
    args.extend(["--server".into(), "logical".into()]);
    args
}

fn move_command(slug: &str) -> Vec<String> {
    vec![
        "tenants".into(),
        "move".into(),
        slug.into(),
        "--to-server".into(),
        "pg".into(),
    ]
}

async fn move_to_another_server(engine: Engine) {
    run_saga(
        engine,
        Scenario {
            prefix: "sg-mv",
            bundle: false,
            setup_plan: None,
            setup_command: Some(provision_on_logical_command),
            prepare: Some(move_prepare),
            command: move_command,
            resumes_itself: false,
            after_failure: AfterFailure::RestoredOrFinishedByRetry,
        },
    )
    .await;
    crate::moves::clean_logical_prefix("sg-mv").await;
}

/// The admin URL a prepared `servers add … --admin-url-stdin` reads: the only server a scenario registers is the
/// suite's logical-replication cluster (`TENANTRY_TEST_LOGICAL_URL`).
fn admin_url_for(command: &[String]) -> Option<String> {
    command
        .iter()
        .any(|argument| argument == "--admin-url-stdin")
        .then(|| std::env::var("TENANTRY_TEST_LOGICAL_URL").expect("TENANTRY_TEST_LOGICAL_URL"))
}

/// The source of every clone in the clone scenario, in its fleet.
const CLONE_SOURCE: &str = "sg-cl-source";

fn clone_prepare() -> Vec<Vec<String>> {
    vec![Fleet::provision_args(CLONE_SOURCE)]
}

fn clone_command(slug: &str) -> Vec<String> {
    vec![
        "tenants".into(),
        "clone".into(),
        CLONE_SOURCE.into(),
        "--to".into(),
        slug.into(),
    ]
}

async fn clone_into_a_new_slug(engine: Engine) {
    run_saga(
        engine,
        Scenario {
            prefix: "sg-cl",
            bundle: false,
            setup_plan: None,
            setup_command: None,
            prepare: Some(clone_prepare),
            command: clone_command,
            resumes_itself: false,
            after_failure: AfterFailure::Restored,
        },
    )
    .await;
}

fn restore_in_place_command(slug: &str) -> Vec<String> {
    vec![
        "backups".into(),
        "restore".into(),
        "--latest-of".into(),
        slug.into(),
        "--in-place".into(),
    ]
}

/// A tenant with a backup restored over itself: a failed job leaves its data and its backups as they were (the
/// safety backup restored and removed); a completed one keeps the safety backup beside the restored one.
async fn restore_in_place_over_the_tenant(engine: Engine) {
    run_saga(
        engine,
        Scenario {
            prefix: "sg-ri",
            bundle: false,
            setup_plan: Some("starter"),
            setup_command: Some(backup_command),
            prepare: None,
            command: restore_in_place_command,
            resumes_itself: false,
            after_failure: AfterFailure::Restored,
        },
    )
    .await;
}

fn provision_free_command(slug: &str) -> Vec<String> {
    let mut args = Fleet::provision_args(slug);
    args.extend(["--plan".into(), "free".into()]);
    args
}

/// The shared tier (`schema_isolation.rs`): a schema tenant's provisioning fails at every phase and unwinds, runs
/// every step twice, and resumes from a crash at every boundary, on both registries.
async fn provision_schema_tenant(engine: Engine) {
    let scenario = Scenario {
        prefix: "sg-sc",
        bundle: false,
        setup_plan: None,
        setup_command: None,
        prepare: None,
        command: provision_free_command,
        resumes_itself: true,
        after_failure: AfterFailure::Restored,
    };
    let fleet = crate::schema_isolation::schema_fleet(engine).await;
    run_saga_in(Saga::with_fleet(fleet, scenario)).await;
}

/// Everything a scenario observes of one slug. `view` is comparable across slugs (the slug is replaced by a
/// placeholder); `secret_values` only within one slug (passwords differ between tenants).
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    view: Value,
    secret_values: BTreeMap<String, Option<String>>,
}

impl Snapshot {
    /// The view with every login probe blanked: for the outcomes where a disabled login is documented.
    fn without_logins(&self) -> Snapshot {
        let mut snapshot = self.clone();
        for kind in ["database", "cache", "queue"] {
            if let Some(resource) = snapshot.view.get_mut(kind).and_then(Value::as_object_mut) {
                resource.remove("login");
            }
        }
        snapshot
    }
}

/// The world of one scenario run: a fleet (with the bundle's servers when asked), and the slugs it made.
struct Saga {
    fleet: Fleet,
    scenario: Scenario,
    slugs: BTreeSet<String>,
    _own_redis: Option<tokio::sync::MutexGuard<'static, ()>>,
    /// The tenant server is the machine's MariaDB (the fleet's engine is then its registry's).
    mariadb: bool,
}

impl Saga {
    async fn new(engine: Engine, scenario: Scenario) -> Saga {
        let (fleet, own_redis) = if scenario.bundle {
            let (fleet, guard) = resource_fleet(engine).await;
            (fleet, Some(guard))
        } else {
            (Fleet::new(engine).await, None)
        };
        Saga {
            fleet,
            scenario,
            slugs: BTreeSet::new(),
            _own_redis: own_redis,
            mariadb: false,
        }
    }

    /// A saga in `fleet`, which the scenario set up itself (e.g. with plans of its own).
    fn with_fleet(fleet: Fleet, scenario: Scenario) -> Saga {
        Saga {
            fleet,
            scenario,
            slugs: BTreeSet::new(),
            _own_redis: None,
            mariadb: false,
        }
    }

    /// A new slug with the scenario's starting world made for it.
    async fn fresh_slug(&mut self) -> String {
        let slug = unique(self.scenario.prefix);
        self.slugs.insert(slug.clone());
        if let Some(plan) = self.scenario.setup_plan {
            let mut args = Fleet::provision_args(&slug);
            args.extend(["--plan".into(), plan.into()]);
            self.run(&args, &[]).await.assert_ok();
        }
        if let Some(command) = self.scenario.setup_command {
            self.run(&command(&slug), &[]).await.assert_ok();
        }
        slug
    }

    async fn run(&self, args: &[String], env: &[(&str, &str)]) -> Run {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.fleet.run_env(&args, env).await
    }

    async fn run_command(&self, slug: &str, env: &[(&str, &str)]) -> Run {
        self.run(&(self.scenario.command)(slug), env).await
    }

    async fn job_ids(&self, slug: &str) -> BTreeSet<String> {
        self.fleet
            .json(&["jobs", "list", "--tenant", slug, "--limit", "1000"])
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|job| job["job_id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The one job of `slug` that is not among `before`: the job the command just made.
    async fn new_job(&self, slug: &str, before: &BTreeSet<String>) -> Value {
        let made: Vec<String> = self
            .job_ids(slug)
            .await
            .difference(before)
            .cloned()
            .collect();
        assert_eq!(made.len(), 1, "{slug}: one new job expected, got {made:?}");
        self.fleet.json(&["jobs", "show", &made[0]]).await
    }

    async fn snapshot(&self, slug: &str) -> Snapshot {
        let fleet = &self.fleet;
        let shown = fleet.run(&["tenants", "show", slug, "--json"]).await;
        let registry = if shown.status == 0 {
            let mut shown = shown.json();
            shown.as_object_mut().unwrap().remove("jobs");
            // Read with the tenant's own login, which a rolled-back offboard leaves off on purpose; the
            // database's own facts are compared below.
            shown.as_object_mut().unwrap().remove("schema");
            // The invitation's delivery is one per tenant: its id and times differ between slugs, its status
            // and attempts are compared.
            if let Some(invitation) = shown["invitation"].as_object_mut() {
                for key in ["delivery_id", "queued_at", "sent_at", "next_attempt_at"] {
                    invitation.remove(key);
                }
            }
            without_timestamps(shown)
        } else {
            assert_eq!(
                shown.error_code().as_deref(),
                Some("E_NOT_FOUND"),
                "{shown:?}"
            );
            Value::Null
        };

        let mut secrets = Vec::new();
        let mut secret_values = BTreeMap::new();
        for (name, labels) in secret_records(fleet, slug).await {
            secret_values.insert(name.clone(), fleet.secret(&name).await);
            secrets.push(json!({ "name": name, "labels": labels }));
        }
        let secret = |kind: &str| secret_values.get(&format!("tenant-{kind}-{slug}")).cloned();

        let database = if self.mariadb {
            crate::mariadb::database_facts(slug, secret("db").flatten()).await
        } else {
            database_facts(fleet, slug, secret("db").flatten()).await
        };
        let backups = backup_facts(fleet, slug).await;
        let mut view = json!({
            "registry": registry,
            "secrets": secrets,
            "database": database,
            "backups": backups,
        });
        if self.scenario.bundle {
            let cache_login = match secret("cache").flatten() {
                Some(url) => cache_login_works(&url).await,
                None => false,
            };
            let queue_login = match secret("queue").flatten() {
                Some(url) => amqp_login_works(&url).await,
                None => false,
            };
            view["cache"] =
                json!({ "exists": cache_user_exists(slug).await, "login": cache_login });
            view["queue"] = json!({ "exists": vhost_exists(slug).await, "login": queue_login });
        }
        // The slug and the names made from it become placeholders, so that two tenants' states compare.
        let text = serde_json::to_string(&view)
            .unwrap()
            .replace(&resource_name(slug), "tenant_<slug>")
            .replace(slug, "<slug>");
        Snapshot {
            view: serde_json::from_str(&text).unwrap(),
            secret_values,
        }
    }

    async fn doctor(&self) -> Run {
        self.fleet.run(&["doctor", "--json"]).await
    }

    async fn assert_doctor_clean(&self, context: &str) {
        let doctor = self.doctor().await;
        assert_eq!(
            doctor.status, 0,
            "{context}: doctor is not clean: {doctor:?}"
        );
    }

    /// Removes what lives outside the fleet (cache users and vhosts on shared servers), then the fleet.
    async fn cleanup(self) {
        if self.scenario.bundle || self.mariadb {
            for slug in &self.slugs {
                let mut purge = vec!["offboard-tenant", "--slug", slug, "--purge"];
                if self.mariadb {
                    // tenantry cannot back a MariaDB database up yet (E_BACKUP_UNSUPPORTED).
                    purge.push("--no-backup");
                }
                let purged = self.fleet.run(&purge).await;
                assert!(
                    purged.status == 0 || purged.error_code().as_deref() == Some("E_NOT_FOUND"),
                    "{slug}: {purged:?}"
                );
            }
        }
        self.fleet.cleanup().await;
    }
}

/// The registry's secret records of `slug` (name and labels), read from the registry's table: the CLI reads one
/// secret by name, and a snapshot must also see secrets nobody expected.
async fn secret_records(fleet: &Fleet, slug: &str) -> Vec<(String, Value)> {
    use sqlx::Connection;
    const QUERY: &str = "SELECT name, labels FROM secrets ORDER BY name";
    let rows: Vec<(String, String)> = match &fleet.registry_database {
        Some(database) => {
            let url =
                crate::harness::with_database(&crate::harness::registry_admin_url(), database);
            let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_as(QUERY)
                .fetch_all(&mut connection)
                .await
                .unwrap()
        }
        None => {
            let url = format!("sqlite://{}", fleet.data_path("registry.db").display());
            let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let rows = sqlx::query_as(QUERY)
                .fetch_all(&mut connection)
                .await
                .unwrap();
            connection.close().await.unwrap();
            rows
        }
    };
    let suffix = format!("-{slug}");
    rows.into_iter()
        .filter(|(name, _)| name.ends_with(&suffix))
        .map(|(name, labels)| (name, serde_json::from_str(&labels).unwrap()))
        .collect()
}

/// The slug's backups as the registry, the secret store and the backup store hold them: per backup (oldest
/// first) its status, the kinds it holds, whether its data key and its directory exist. Ids differ between slugs
/// and are left out.
async fn backup_facts(fleet: &Fleet, slug: &str) -> Value {
    let listed = fleet.json(&["backups", "list", slug]).await;
    let mut facts = Vec::new();
    for backup in listed.as_array().unwrap().iter().rev() {
        let id = backup["id"].as_str().unwrap();
        let kinds: Vec<&str> = backup["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|file| file["kind"].as_str().unwrap())
            .collect();
        facts.push(json!({
            "status": backup["status"],
            "kinds": kinds,
            "key": fleet.secret(&format!("backup-{id}")).await.is_some(),
            "files": fleet.data_path(&format!("backups/{id}")).exists(),
        }));
    }
    Value::Array(facts)
}

/// The tenant's database as its server holds it: there, reachable with the tenant's own credentials, its
/// settings table, and (PostgreSQL) its role's connection limit.
async fn database_facts(fleet: &Fleet, slug: &str, url: Option<String>) -> Value {
    use sqlx::Connection;
    if let Some(facts) = crate::schema_isolation::schema_facts(fleet, slug, url.as_deref()).await {
        return facts;
    }
    let (exists, role_exists) = fleet.server_has(slug).await;
    if !exists {
        return json!({ "exists": false, "role": role_exists });
    }
    let settings = crate::plans::tenant_settings(fleet, slug).await;
    match fleet.engine {
        Engine::Sqlite => {
            // A SQLite tenant "logs in" by opening its file; offboarding takes the write bit away.
            let mode = std::fs::metadata(fleet.sqlite_file(slug))
                .unwrap()
                .permissions()
                .mode();
            json!({ "exists": true, "login": mode & 0o200 != 0, "settings": settings })
        }
        Engine::Postgres => {
            let login = match &url {
                Some(url) => sqlx::PgConnection::connect(url).await.is_ok(),
                None => false,
            };
            // The tenant's logins (its role, and after a rotation the alternate `.b`) other than the one the
            // secret names that can still log in: none, in every settled state (a rotation retires the other).
            let secret_login = url
                .as_deref()
                .and_then(|url| url::Url::parse(url).ok())
                .map(|url| url.username().to_owned())
                .unwrap_or_default();
            let mut admin = sqlx::PgConnection::connect(&tenant_cluster_url())
                .await
                .unwrap();
            let connection_limit: Option<i32> =
                sqlx::query_scalar("SELECT rolconnlimit FROM pg_roles WHERE rolname = $1")
                    .bind(resource_name(slug))
                    .fetch_optional(&mut admin)
                    .await
                    .unwrap();
            let other_logins_open: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_roles WHERE rolname IN ($1, $1 || '.b') AND rolname <> $2 AND rolcanlogin",
            )
            .bind(resource_name(slug))
            .bind(&secret_login)
            .fetch_one(&mut admin)
            .await
            .unwrap();
            json!({
                "exists": true,
                "role": role_exists,
                "login": login,
                "other_logins_open": other_logins_open,
                "settings": settings,
                "connection_limit": connection_limit,
            })
        }
    }
}

/// `created_at` and `updated_at` removed at every depth: a restored row is rewritten, not untouched.
fn without_timestamps(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(key, _)| key != "created_at" && key != "updated_at")
                .map(|(key, value)| (key, without_timestamps(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_timestamps).collect()),
        other => other,
    }
}

/// Where two values differ, one line per differing leaf, so that a failed comparison says what was left.
fn differences(path: &str, left: &Value, right: &Value, found: &mut Vec<String>) {
    match (left, right) {
        (Value::Object(left_map), Value::Object(right_map)) => {
            let keys: BTreeSet<&String> = left_map.keys().chain(right_map.keys()).collect();
            for key in keys {
                differences(
                    &format!("{path}.{key}"),
                    left_map.get(key).unwrap_or(&Value::Null),
                    right_map.get(key).unwrap_or(&Value::Null),
                    found,
                );
            }
        }
        (Value::Array(left_items), Value::Array(right_items))
            if left_items.len() == right_items.len() =>
        {
            for (index, (left, right)) in left_items.iter().zip(right_items).enumerate() {
                differences(&format!("{path}[{index}]"), left, right, found);
            }
        }
        _ if left != right => found.push(format!("{path}: {left} (now) vs {right} (expected)")),
        _ => {}
    }
}

#[track_caller]
fn assert_same(now: &Snapshot, expected: &Snapshot, context: &str) {
    assert_same_view(&now.view, &expected.view, context);
    assert_eq!(
        now.secret_values, expected.secret_values,
        "{context}: secret values"
    );
}

#[track_caller]
fn assert_same_view(now: &Value, expected: &Value, context: &str) {
    let mut found = Vec::new();
    differences("", now, expected, &mut found);
    assert!(found.is_empty(), "{context}:\n  {}", found.join("\n  "));
}

fn phase_names(job: &Value) -> Vec<String> {
    job["phases"]
        .as_array()
        .unwrap_or_else(|| panic!("no phases in {job}"))
        .iter()
        .map(|phase| phase["name"].as_str().unwrap().to_owned())
        .collect()
}

#[track_caller]
fn assert_complete(job: &Value, context: &str) {
    assert_eq!(job["status"], "complete", "{context}: {job}");
    assert!(
        job["phases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|phase| phase["status"] == "applied"),
        "{context}: {job}"
    );
}

async fn run_saga(engine: Engine, scenario: Scenario) {
    run_saga_in(Saga::new(engine, scenario).await).await;
}

/// [`run_saga`] in a fleet the scenario made itself.
async fn run_saga_in(mut saga: Saga) {
    let scenario = saga.scenario;
    if let Some(prepare) = scenario.prepare {
        for command in prepare() {
            match admin_url_for(&command) {
                Some(url) => {
                    let args: Vec<&str> = command.iter().map(String::as_str).collect();
                    saga.fleet.run_with_stdin(&args, &url).await.assert_ok();
                }
                None => {
                    saga.run(&command, &[]).await.assert_ok();
                }
            }
        }
    }

    // The reference: one uncrashed run. Its job record names the phases everything below fails and crashes at.
    let slug = saga.fresh_slug().await;
    let jobs_before = saga.job_ids(&slug).await;
    saga.run_command(&slug, &[]).await.assert_ok();
    let job = saga.new_job(&slug, &jobs_before).await;
    assert_complete(&job, "uncrashed run");
    let phases = phase_names(&job);
    let reference = saga.snapshot(&slug).await.view;
    saga.assert_doctor_clean("uncrashed run").await;

    // Every apply twice: the same end state as one run.
    let slug = saga.fresh_slug().await;
    saga.run_command(&slug, &[("TENANTRY_REPEAT_STEPS", "1")])
        .await
        .assert_ok();
    assert_same_view(
        &saga.snapshot(&slug).await.view,
        &reference,
        "every step run twice",
    );
    saga.assert_doctor_clean("every step run twice").await;

    // Every undo twice, then an error at every phase. A restored slug is used again: the next job starts from
    // the same state, and provisioning checks that a rolled-back slug is free.
    let last = phases.last().unwrap();
    let mut failpoints = vec![(format!("{last}.after=error"), true)];
    failpoints.extend(
        phases
            .iter()
            .map(|phase| (format!("{phase}.before=error"), false)),
    );
    failpoints.push((format!("{last}.after=error"), false));
    let mut reusable: Option<String> = None;
    for (failpoint, twice) in failpoints {
        let slug = match reusable.take() {
            Some(slug) => slug,
            None => saga.fresh_slug().await,
        };
        let context = format!(
            "{failpoint}{}",
            if twice { " with every step twice" } else { "" }
        );
        let before = saga.snapshot(&slug).await;
        let jobs_before = saga.job_ids(&slug).await;
        let mut env = vec![("TENANTRY_FAILPOINTS", failpoint.as_str())];
        if twice {
            env.push(("TENANTRY_REPEAT_STEPS", "1"));
        }
        let run = saga.run_command(&slug, &env).await;
        let job = saga.new_job(&slug, &jobs_before).await;
        let after = saga.snapshot(&slug).await;
        if scenario.after_failure == AfterFailure::RestoredOrFinishedByRerun
            && job["status"] == "failed"
        {
            // The purge failed after it removed data: the job says so (no rollback is claimed), doctor names
            // what is left, and the purge run again finishes it.
            assert_eq!(job["error_code"], "E_PARTIAL_STATE", "{context}: {job}");
            assert!(run.status != 0, "{context}: {run:?}");
            if after.view != reference {
                finish_by_rerun(&saga, &slug, &reference, &context).await;
            }
            saga.assert_doctor_clean(&context).await;
            continue;
        }
        if scenario.after_failure == AfterFailure::RestoredOrFinishedByRetry
            && failpoint.starts_with(&format!("{last}.after"))
        {
            // The source is gone: the cut-over stands, the job says so, and a retry finishes it.
            assert_eq!(job["status"], "failed", "{context}: {job}");
            assert_eq!(job["error_code"], "E_PARTIAL_STATE", "{context}: {job}");
            let job_id = job["job_id"].as_str().unwrap();
            saga.fleet.run(&["jobs", "retry", job_id]).await.assert_ok();
            assert_same_view(
                &saga.snapshot(&slug).await.view,
                &reference,
                &format!("{context}: retried, the end state differs from an uncrashed run's"),
            );
            saga.assert_doctor_clean(&context).await;
            continue;
        }
        assert_eq!(
            run.error_code().as_deref(),
            Some("E_FAILPOINT"),
            "{context}: {run:?}"
        );
        assert_eq!(job["status"], "rolled_back", "{context}: {job}");
        assert_eq!(job["error_code"], "E_FAILPOINT", "{context}: {job}");
        let restored = match scenario.after_failure {
            AfterFailure::Restored | AfterFailure::RestoredOrFinishedByRetry => {
                assert_same(
                    &after,
                    &before,
                    &format!("{context}: not as before the job"),
                );
                true
            }
            AfterFailure::RestoredButLoginsMayStayDisabled => {
                assert_same(
                    &after.without_logins(),
                    &before.without_logins(),
                    &format!("{context}: not as before the job"),
                );
                after == before
            }
            AfterFailure::RestoredOrRotated => {
                assert_same_view(
                    &after.view,
                    &before.view,
                    &format!("{context}: not as before the job"),
                );
                // Nothing was retired yet: every secret holds its old value again.
                let failed_phase = failpoint.split('.').next().unwrap();
                let first_retired = phases
                    .iter()
                    .position(|phase| phase.ends_with("_old_credentials_retired"));
                let failed_at = phases.iter().position(|phase| phase == failed_phase);
                if failpoint.ends_with(".before=error") && failed_at <= first_retired {
                    assert_same(
                        &after,
                        &before,
                        &format!("{context}: not as before the job"),
                    );
                }
                true
            }
            AfterFailure::RestoredOrFinishedByRerun => {
                if after.without_logins() != before.without_logins() && after.view != reference {
                    finish_by_rerun(&saga, &slug, &reference, &context).await;
                }
                false
            }
        };
        saga.assert_doctor_clean(&context).await;
        if restored {
            reusable = Some(slug);
        }
    }

    // A crash before the first phase and after every phase, each resumed to the uncrashed end state.
    let mut crashes = vec![format!("{}.before=exit", phases[0])];
    crashes.extend(phases.iter().map(|phase| format!("{phase}.after=exit")));
    for failpoint in crashes {
        let slug = saga.fresh_slug().await;
        let jobs_before = saga.job_ids(&slug).await;
        let crashed = saga
            .run_command(&slug, &[("TENANTRY_FAILPOINTS", &failpoint)])
            .await;
        assert_eq!(
            crashed.status, 137,
            "{failpoint} ends the process abruptly: {crashed:?}"
        );
        let job_id = saga.new_job(&slug, &jobs_before).await["job_id"]
            .as_str()
            .unwrap()
            .to_owned();
        // While it lies interrupted, doctor names the job and how to finish it.
        let doctor = saga.doctor().await;
        assert_eq!(doctor.status, 1, "{failpoint}: {doctor:?}");
        assert!(
            doctor
                .stdout
                .contains(&format!("tenantry jobs resume {job_id}")),
            "{failpoint}: {}",
            doctor.stdout
        );
        if scenario.resumes_itself {
            let resumed = saga.run_command(&slug, &[]).await;
            resumed.assert_ok();
            assert!(
                resumed.stderr.contains(&format!("resuming job {job_id}")),
                "{failpoint}: {resumed:?}"
            );
        } else {
            saga.fleet
                .run(&["jobs", "resume", &job_id])
                .await
                .assert_ok();
        }
        assert_complete(
            &saga.fleet.json(&["jobs", "show", &job_id]).await,
            &failpoint,
        );
        assert_same_view(
            &saga.snapshot(&slug).await.view,
            &reference,
            &format!("{failpoint}: resumed, the end state differs from an uncrashed run's"),
        );
        saga.assert_doctor_clean(&failpoint).await;
    }
    saga.cleanup().await;
}

/// For a purge that failed after the data was gone: doctor names what is left with the purge as its fix, and the
/// purge run again ends where an uncrashed one does.
async fn finish_by_rerun(saga: &Saga, slug: &str, reference: &Value, context: &str) {
    let doctor = saga.doctor().await;
    assert_eq!(
        doctor.status, 1,
        "{context}: the purge left pieces that doctor does not name: {doctor:?}"
    );
    let fix = (saga.scenario.command)(slug).join(" ");
    assert!(
        doctor.stdout.contains(&format!("tenantry {fix}")),
        "{context}: doctor does not give `tenantry {fix}` as the fix: {}",
        doctor.stdout
    );
    saga.run_command(slug, &[]).await.assert_ok();
    assert_same_view(
        &saga.snapshot(slug).await.view,
        reference,
        &format!("{context}: the purge run again ends elsewhere than an uncrashed purge"),
    );
}

// Phases side by side. A scenario whose workflow runs phases concurrently (the bundle plan's `cache_created` and
// `queue_created` beside the database's phases) is also driven through the interleavings only concurrency makes:
// which phases ran side by side comes from the uncrashed run's job record (their spans overlap), never from a
// list here. For each phase B that ran beside another phase A: A is held at its `after` boundary (`stall:`) while
// B fails at `before`; the job must show B `failed` with A still `running`, and once A is released, end rolled
// back with the world as before. Then A held while B crashes after its apply (two phases in flight at the
// crash): the command run again must end where the uncrashed run did.

for_each_engine!(provision_bundle_side_by_side);

async fn provision_bundle_side_by_side(engine: Engine) {
    run_side_by_side_saga(
        engine,
        Scenario {
            prefix: "sg-ps",
            bundle: true,
            setup_plan: None,
            setup_command: None,
            prepare: None,
            command: provision_bundle_command,
            resumes_itself: true,
            after_failure: AfterFailure::Restored,
        },
    )
    .await;
}

/// Each phase of `job` that ran beside another, with one phase it ran beside (the first in the job's order).
fn side_by_side_pairs(job: &Value) -> Vec<(String, String)> {
    let phases = job["phases"].as_array().unwrap();
    let span = |phase: &Value| {
        (
            phase["started_at"].as_str().unwrap().to_owned(),
            phase["finished_at"].as_str().unwrap().to_owned(),
        )
    };
    let mut pairs = Vec::new();
    for failing in phases {
        let (failing_start, failing_end) = span(failing);
        let beside = phases.iter().find(|held| {
            let (held_start, held_end) = span(held);
            held["name"] != failing["name"] && held_start < failing_end && failing_start < held_end
        });
        if let Some(held) = beside {
            pairs.push((
                held["name"].as_str().unwrap().to_owned(),
                failing["name"].as_str().unwrap().to_owned(),
            ));
        }
    }
    pairs
}

async fn run_side_by_side_saga(engine: Engine, scenario: Scenario) {
    let mut saga = Saga::new(engine, scenario).await;
    let slug = saga.fresh_slug().await;
    let jobs_before = saga.job_ids(&slug).await;
    saga.run_command(&slug, &[]).await.assert_ok();
    let job = saga.new_job(&slug, &jobs_before).await;
    assert_complete(&job, "uncrashed run");
    let reference = saga.snapshot(&slug).await.view;
    let pairs = side_by_side_pairs(&job);
    assert!(
        !pairs.is_empty(),
        "no phases ran side by side in the uncrashed run: {job}"
    );

    for (held_phase, failing) in &pairs {
        let slug = saga.fresh_slug().await;
        let before = saga.snapshot(&slug).await;
        let jobs_before = saga.job_ids(&slug).await;
        let release = saga
            .fleet
            .scratch_dir
            .join(format!("release-{}", unique("held")));
        let failpoints = format!(
            "{held_phase}.after=stall:{},{failing}.before=error",
            release.display()
        );
        let args = (scenario.command)(&slug);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut process = saga
            .fleet
            .spawn(&args, &[("TENANTRY_FAILPOINTS", failpoints.as_str())]);
        crate::harness::eventually(
            60,
            || format!("{failpoints}: {failing} never failed beside a running {held_phase}"),
            || async {
                let made: Vec<String> = saga
                    .job_ids(&slug)
                    .await
                    .difference(&jobs_before)
                    .cloned()
                    .collect();
                let [job_id] = made.as_slice() else {
                    return None;
                };
                let job = saga.fleet.json(&["jobs", "show", job_id]).await;
                let status = |name: &str| {
                    job["phases"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|phase| phase["name"] == name)
                        .map(|phase| phase["status"].clone())
                };
                (status(held_phase) == Some(json!("running"))
                    && status(failing) == Some(json!("failed")))
                .then_some(())
            },
        )
        .await;
        std::fs::write(&release, "").unwrap();
        let ended = process.wait(120).await;
        assert!(!ended.success(), "{failpoints}: {}", process.log());
        let job = saga.new_job(&slug, &jobs_before).await;
        assert_eq!(job["status"], "rolled_back", "{failpoints}: {job}");
        assert_eq!(job["error_code"], "E_FAILPOINT", "{failpoints}: {job}");
        assert_same(
            &saga.snapshot(&slug).await,
            &before,
            &format!("{failpoints}: not as before the job"),
        );
        saga.assert_doctor_clean(&failpoints).await;

        // A crash in one branch while the other is held, then the command again.
        let slug = saga.fresh_slug().await;
        let release = saga
            .fleet
            .scratch_dir
            .join(format!("release-{}", unique("held")));
        let failpoints = format!(
            "{held_phase}.after=stall:{},{failing}.after=exit",
            release.display()
        );
        let args = (scenario.command)(&slug);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut process = saga
            .fleet
            .spawn(&args, &[("TENANTRY_FAILPOINTS", failpoints.as_str())]);
        assert_eq!(
            process.wait(120).await.code(),
            Some(137),
            "{failpoints}: {}",
            process.log()
        );
        saga.run_command(&slug, &[]).await.assert_ok();
        assert_same_view(
            &saga.snapshot(&slug).await.view,
            &reference,
            &format!("{failpoints}: resumed, the end state differs from an uncrashed run's"),
        );
        saga.assert_doctor_clean(&failpoints).await;
    }
    saga.cleanup().await;
}
