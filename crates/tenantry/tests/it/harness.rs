//! A fleet for one test: a fresh data directory and registry, a tenant server of the engine under test, and
//! helpers that run the real `tenantry` binary and look at the servers directly; a webhook receiver and an SMTP
//! server (aiosmtpd) of the test's own.
//!
//! SQLite engine tests use a SQLite registry and the bundled `local` server. PostgreSQL engine tests use a fresh
//! PostgreSQL registry database and the password-checking cluster from `scripts/test-services` as tenant server.
//! That cluster is shared, and `doctor` rightly reports every `tenant_*` database on it, so PostgreSQL engine
//! tests take one lock and start from an empty cluster.

use serde_json::Value;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Mutex, MutexGuard};

/// The provision phases, written out here on purpose: their names are API, and a test must notice a rename.
pub const PROVISION_PHASES: [&str; 11] = [
    "request_validated",
    "placement_resolved",
    "state_checked",
    "secret_set",
    "database_created",
    "migrations_applied",
    "master_registered",
    "admin_seeded",
    "settings_applied",
    "checks_passed",
    "complete",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

static TENANT_CLUSTER: Mutex<()> = Mutex::const_new(());

pub fn registry_admin_url() -> String {
    std::env::var("TENANTRY_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn tenant_cluster_url() -> String {
    std::env::var("TENANTRY_TEST_SCRAM_URL")
        .expect("TENANTRY_TEST_SCRAM_URL is set by scripts/test (run the suite through it)")
}

/// A URL's database swapped for another.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("URL has a path");
    format!("{base}/{database}")
}

pub struct Fleet {
    pub engine: Engine,
    /// The test's own directory: the commands' working directory, and room for files the test writes.
    pub scratch_dir: PathBuf,
    /// `TENANTRY_DATA_DIR`, inside the scratch directory; tenantry creates it.
    pub data_dir: PathBuf,
    /// The PostgreSQL registry database of this fleet, when the registry is on PostgreSQL.
    pub registry_database: Option<String>,
    /// The admin URL of the PostgreSQL cluster that holds the registry database.
    registry_admin: String,
    extra_env: Vec<(String, String)>,
    _cluster_guard: Option<MutexGuard<'static, ()>>,
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from_output(output: Output) -> Run {
        Run {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {self:?}"))
    }

    /// The error code printed on stderr (`error: CODE: message`).
    pub fn error_code(&self) -> Option<String> {
        self.stderr
            .lines()
            .find_map(|line| line.strip_prefix("error: "))
            .and_then(|rest| rest.split(':').next())
            .map(str::to_owned)
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Run {
        assert_eq!(self.status, 0, "command failed: {self:?}");
        self
    }
}

impl Fleet {
    pub async fn new(engine: Engine) -> Fleet {
        Fleet::with_capacity(engine, None).await
    }

    /// A fleet whose one tenant server takes `capacity` tenants (`None`: the defaults, 1000 or 100).
    pub async fn with_capacity(engine: Engine, capacity: Option<u32>) -> Fleet {
        Fleet::with_registry_cluster(engine, capacity, registry_admin_url()).await
    }

    /// Like `with_capacity`, with a PostgreSQL registry on the cluster of `registry_admin` (an admin URL): the
    /// chaos suite keeps its registries on a cluster of its own, because it restarts that cluster.
    pub async fn with_registry_cluster(
        engine: Engine,
        capacity: Option<u32>,
        registry_admin: String,
    ) -> Fleet {
        let mut fleet = Fleet::bare(engine, registry_admin);
        if engine == Engine::Postgres {
            fleet._cluster_guard = Some(TENANT_CLUSTER.lock().await);
            wipe_tenant_cluster().await;
            fleet.add_postgres_registry(capacity.unwrap_or(100)).await;
        } else if let Some(capacity) = capacity {
            // Instead of the bundled `local` server (capacity 1000), one SQLite server in the same directory.
            fleet.set_env("TENANTRY_BOOTSTRAP_LOCAL_SERVER", "false");
            let directory = format!("sqlite://{}", fleet.data_path("tenants").display());
            let capacity = capacity.to_string();
            let args = [
                "servers",
                "add",
                "--name",
                "small",
                "--engine",
                "sqlite",
                "--admin-url",
                &directory,
                "--capacity",
                &capacity,
            ];
            fleet.run(&args).await.assert_ok();
        }
        fleet
    }

    /// A fleet on `registry`'s registry (a SQLite file, or a PostgreSQL database) that has the tenant cluster
    /// registered as server `pg` either way, under the cluster's lock: for PostgreSQL-only features (the shared
    /// tier) tested on both registries.
    pub async fn with_tenant_cluster(registry: Engine) -> Fleet {
        if registry == Engine::Postgres {
            return Fleet::new(Engine::Postgres).await;
        }
        let mut fleet = Fleet::bare(Engine::Sqlite, registry_admin_url());
        fleet._cluster_guard = Some(TENANT_CLUSTER.lock().await);
        wipe_tenant_cluster().await;
        let args = [
            "servers",
            "add",
            "--name",
            "pg",
            "--engine",
            "postgres",
            "--admin-url-stdin",
            "--capacity",
            "100",
        ];
        fleet
            .run_with_stdin(&args, &tenant_cluster_url())
            .await
            .assert_ok();
        fleet
    }

    /// A second tenantry installation (its own PostgreSQL registry, so its own installation id) whose server
    /// `pg` is this fleet's tenant cluster: two installations sharing one server. Shares this fleet's hold on the
    /// cluster; clean it up before this fleet.
    pub async fn another_installation(&self) -> Fleet {
        assert_eq!(self.engine, Engine::Postgres, "a PostgreSQL fleet");
        let mut other = Fleet::bare(Engine::Postgres, self.registry_admin.clone());
        other.extra_env = self.extra_env.clone();
        other.add_postgres_registry(100).await;
        other
    }

    /// A fleet with its own scratch and data directories, and nothing registered yet.
    fn bare(engine: Engine, registry_admin: String) -> Fleet {
        let scratch_dir =
            std::env::temp_dir().join(format!("tenantry-it-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&scratch_dir).expect("temp dir");
        Fleet {
            engine,
            data_dir: scratch_dir.join("data"),
            scratch_dir,
            registry_database: None,
            registry_admin,
            extra_env: Vec::new(),
            _cluster_guard: None,
        }
    }

    /// A fresh PostgreSQL registry database for this fleet, and the tenant cluster registered in it as `pg`.
    async fn add_postgres_registry(&mut self, capacity: u32) {
        let database = format!("tenantry_it_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(&self.registry_admin)
            .await
            .expect("registry PostgreSQL");
        admin
            .execute(format!("CREATE DATABASE \"{database}\"").as_str())
            .await
            .expect("create registry database");
        self.registry_database = Some(database);
        let capacity = capacity.to_string();
        let args = [
            "servers",
            "add",
            "--name",
            "pg",
            "--engine",
            "postgres",
            "--admin-url-stdin",
            "--capacity",
            &capacity,
        ];
        self.run_with_stdin(&args, &tenant_cluster_url())
            .await
            .assert_ok();
    }

    /// An extra environment variable for every later run.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.extra_env.push((name.to_owned(), value.to_owned()));
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"));
        command
            .args(args)
            .current_dir(&self.scratch_dir)
            .env_remove("RUST_LOG")
            .env_remove("TENANTRY_FAILPOINTS")
            .env_remove("TENANTRY_REPEAT_STEPS")
            .env_remove("TENANTRY_CONFIG")
            .env_remove("TENANTRY_TENANT_MIGRATIONS")
            .env_remove("TENANTRY_ADMIN_SEED")
            .env_remove("TENANTRY_ADMIN_CHECK")
            .env_remove("TENANTRY_WARM_POOL_SIZE")
            .env_remove("TENANTRY_WARM_POOL_REFILL_BATCH")
            .env("USER", "tester")
            .env("TENANTRY_DATA_DIR", &self.data_dir)
            .env("TENANTRY_RETRY_INITIAL_DELAY_MS", "20")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        match &self.registry_database {
            Some(database) => {
                command
                    .env(
                        "TENANTRY_REGISTRY_URL",
                        with_database(&self.registry_admin, database),
                    )
                    .env("TENANTRY_BOOTSTRAP_LOCAL_SERVER", "false");
            }
            None => {
                command.env_remove("TENANTRY_REGISTRY_URL");
            }
        }
        for (name, value) in &self.extra_env {
            command.env(name, value);
        }
        command
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[]).await
    }

    pub async fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = self.command(args);
        for (name, value) in env {
            command.env(name, value);
        }
        Run::from_output(command.output().await.expect("spawn tenantry"))
    }

    /// Runs with these variables removed from the environment the harness gives every run.
    pub async fn run_without_env(&self, args: &[&str], removed: &[&str]) -> Run {
        let mut command = self.command(args);
        for name in removed {
            command.env_remove(name);
        }
        Run::from_output(command.output().await.expect("spawn tenantry"))
    }

    /// Runs SQL on this fleet's registry behind tenantry's back, as anyone with write access to it could.
    pub async fn registry_sql(&self, statement: &str) -> u64 {
        match &self.registry_database {
            Some(database) => {
                let url = with_database(&registry_admin_url(), database);
                let mut connection = PgConnection::connect(&url).await.expect("registry");
                let done = connection.execute(statement).await.expect(statement);
                done.rows_affected()
            }
            None => {
                let url = format!("sqlite://{}", self.data_path("registry.db").display());
                let mut connection = sqlx::sqlite::SqliteConnection::connect(&url)
                    .await
                    .expect("registry");
                let done = connection.execute(statement).await.expect(statement);
                connection.close().await.expect("close");
                done.rows_affected()
            }
        }
    }

    pub async fn run_with_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut command = self.command(args);
        command.stdin(Stdio::piped());
        let mut child = command.spawn().expect("spawn tenantry");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.as_bytes())
            .await
            .expect("write stdin");
        drop(stdin);
        Run::from_output(child.wait_with_output().await.expect("wait tenantry"))
    }

    pub fn provision_args(slug: &str) -> Vec<String> {
        vec![
            "provision-tenant".into(),
            "--slug".into(),
            slug.into(),
            "--display-name".into(),
            format!("Tenant {slug}"),
            "--admin-email".into(),
            format!("admin@{slug}.example"),
        ]
    }

    pub async fn provision(&self, slug: &str, env: &[(&str, &str)]) -> Run {
        let args = Fleet::provision_args(slug);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run_env(&args, env).await
    }

    /// `provision-tenant` for `slug` on `plan`.
    pub async fn provision_on_plan(&self, slug: &str, plan: &str) -> Run {
        let mut args = Fleet::provision_args(slug);
        args.extend(["--plan".into(), plan.into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args).await
    }

    pub async fn json(&self, args: &[&str]) -> Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        self.run(&with_json).await.assert_ok().json()
    }

    /// Asserts `doctor` finds nothing.
    pub async fn assert_doctor_clean(&self) {
        let run = self.run(&["doctor", "--json"]).await;
        assert_eq!(run.status, 0, "doctor is not clean: {}", run.stdout);
    }

    /// The tenant's database file (SQLite) or database and role (PostgreSQL) as found on the server.
    pub async fn server_has(&self, slug: &str) -> (bool, bool) {
        let resource = format!("tenant_{}", slug.replace('-', "_"));
        match self.engine {
            Engine::Sqlite => (self.sqlite_file(slug).exists(), false),
            Engine::Postgres => {
                let mut admin = PgConnection::connect(&tenant_cluster_url())
                    .await
                    .expect("tenant cluster");
                sqlx::query_as(
                    "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1), EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
                )
                .bind(&resource)
                .fetch_one(&mut admin)
                .await
                .expect("catalog")
            }
        }
    }

    /// How many tenant databases (files) the server holds.
    pub async fn n_tenant_databases(&self) -> i64 {
        match self.engine {
            Engine::Sqlite => std::fs::read_dir(self.data_dir.join("tenants"))
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter(|entry| {
                            let name = entry.file_name().to_string_lossy().into_owned();
                            name.starts_with("tenant_") && name.ends_with(".db")
                        })
                        .count() as i64
                })
                .unwrap_or(0),
            Engine::Postgres => {
                let mut admin = PgConnection::connect(&tenant_cluster_url())
                    .await
                    .expect("tenant cluster");
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_database WHERE datname LIKE 'tenant\\_%'",
                )
                .fetch_one(&mut admin)
                .await
                .expect("catalog")
            }
        }
    }

    pub fn sqlite_file(&self, slug: &str) -> PathBuf {
        self.data_dir
            .join("tenants")
            .join(format!("tenant_{}.db", slug.replace('-', "_")))
    }

    /// Whether the secret store holds `name` (read through the CLI; the read is audited).
    pub async fn secret(&self, name: &str) -> Option<String> {
        let run = self.run(&["secrets", "show", name, "--json"]).await;
        if run.status == 0 {
            run.json()["value"].as_str().map(str::to_owned)
        } else {
            assert_eq!(run.error_code().as_deref(), Some("E_NOT_FOUND"), "{run:?}");
            None
        }
    }

    pub async fn tenants(&self) -> Vec<Value> {
        self.json(&["tenants", "list"])
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn jobs(&self) -> Vec<Value> {
        self.json(&["jobs", "list"])
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn audit_types(&self, slug: &str) -> Vec<String> {
        self.json(&["audit", "list", "--tenant", slug])
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|event| event["event_type"].as_str().map(str::to_owned))
            .collect()
    }

    /// Removes everything the test made.
    pub async fn cleanup(mut self) {
        if let Some(database) = self.registry_database.take() {
            let mut admin = PgConnection::connect(&self.registry_admin)
                .await
                .expect("registry PostgreSQL");
            admin
                .execute(format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)").as_str())
                .await
                .expect("drop registry database");
            wipe_tenant_cluster().await;
        } else if self._cluster_guard.is_some() {
            wipe_tenant_cluster().await;
        }
        let _ = std::fs::remove_dir_all(&self.scratch_dir);
    }

    /// Starts `tenantry serve` on a free port with these extra variables, and waits until it listens.
    pub async fn serve(&self, env: &[(&str, &str)]) -> Server {
        use tokio::io::AsyncBufReadExt;
        let log_path = self
            .scratch_dir
            .join(format!("serve-{}.log", uuid::Uuid::now_v7().simple()));
        let log_file = std::fs::File::create(&log_path).expect("log file");
        let mut command = self.command(&["serve", "--listen", "127.0.0.1:0", "--workers", "2"]);
        command.stderr(log_file);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn tenantry serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let base_url = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(url) = line.strip_prefix("tenantry listening on ") {
                    return url.to_owned();
                }
            }
            panic!(
                "tenantry serve exited before listening: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        })
        .await
        .expect("tenantry serve did not start listening within 30 s");
        // Keep reading stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server {
            child,
            base_url,
            log_path,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
        }
    }

    /// Starts a long-running `tenantry` process (a worker, say) with extra variables; its stderr goes to a log.
    #[allow(
        dead_code,
        reason = "used by the chaos suite, which shares this harness"
    )]
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Process {
        let log_path =
            self.scratch_dir
                .join(format!("{}-{}.log", args[0], uuid::Uuid::now_v7().simple()));
        let log_file = std::fs::File::create(&log_path).expect("log file");
        let mut command = self.command(args);
        command.stdout(Stdio::null()).stderr(log_file);
        for (name, value) in env {
            command.env(name, value);
        }
        Process {
            child: command.spawn().expect("spawn tenantry"),
            log_path,
        }
    }

    /// The registry's URL, when the registry is on PostgreSQL.
    #[allow(
        dead_code,
        reason = "used by the chaos suite, which shares this harness"
    )]
    pub fn registry_url(&self) -> Option<String> {
        self.registry_database
            .as_ref()
            .map(|database| with_database(&self.registry_admin, database))
    }

    /// Adds a user with `role` and returns an API token for it.
    pub async fn token_for(&self, email: &str, role: &str) -> String {
        self.run(&["users", "add", "--email", email, "--role", role])
            .await
            .assert_ok();
        let token = self.run(&["users", "token", "--email", email]).await;
        token.assert_ok();
        token.stdout.trim().to_owned()
    }

    /// The names of the checks `validate` ran for `slug` and whether each passed.
    pub async fn validation(&self, slug: &str) -> Vec<(String, bool)> {
        let run = self.run(&["validate", "--slug", slug, "--json"]).await;
        run.json()["checks"]
            .as_array()
            .unwrap_or_else(|| panic!("{run:?}"))
            .iter()
            .map(|check| {
                (
                    check["name"]
                        .as_str()
                        .expect("a check has a name")
                        .to_owned(),
                    check["status"] == "passed",
                )
            })
            .collect()
    }

    pub fn data_path(&self, relative: &str) -> PathBuf {
        self.data_dir.join(relative)
    }

    /// Adds a user with `role` and a password, signs it in to the console of `server`, and returns the session
    /// cookie (`name=value`).
    pub async fn console_session(&self, server: &Server, email: &str, role: &str) -> String {
        const PASSWORD: &str = "correct horse battery staple";
        let add = [
            "users",
            "add",
            "--email",
            email,
            "--role",
            role,
            "--password-stdin",
        ];
        self.run_with_stdin(&add, PASSWORD).await.assert_ok();
        let signed_in = server
            .http
            .post(server.url("/platform/login"))
            .form(&[("email", email), ("password", PASSWORD)])
            .send()
            .await
            .expect("sign-in");
        assert_eq!(signed_in.status(), 303, "{email} signs in");
        let cookie = signed_in.headers()["set-cookie"]
            .to_str()
            .expect("a cookie");
        cookie.split(';').next().unwrap_or_default().to_owned()
    }
}

/// A running `tenantry` process other than `serve` (used by the chaos suite, which shares this harness).
#[allow(dead_code)]
pub struct Process {
    pub child: tokio::process::Child,
    pub log_path: PathBuf,
}

#[allow(dead_code)]
impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("process is running")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends a signal (`TERM`, `STOP`, `CONT`, …) with kill(1).
    pub fn signal(&self, name: &str) {
        let sent = std::process::Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{name}");
    }

    /// Waits for the process to end, at most `seconds`.
    pub async fn wait(&mut self, seconds: u64) -> std::process::ExitStatus {
        tokio::time::timeout(std::time::Duration::from_secs(seconds), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("process did not end within {seconds} s"))
            .expect("wait")
    }
}

/// A running `tenantry serve`.
pub struct Server {
    child: tokio::process::Child,
    pub base_url: String,
    log_path: PathBuf,
    pub http: reqwest::Client,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn get(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(token)
    }

    pub fn post(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(token)
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("server pid");
        let signalled = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(signalled.success());
        tokio::time::timeout(std::time::Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server stops within 30 s of SIGTERM")
            .expect("wait")
    }
}

/// Drops every tenant database and role on the shared tenant cluster, and the templates and warm pool.
pub async fn wipe_tenant_cluster() {
    let mut admin = PgConnection::connect(&tenant_cluster_url())
        .await
        .expect("tenant cluster");
    let databases: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname LIKE 'tenant\\_%'
                OR datname LIKE 'tenantry\\_pool\\_%' OR datname LIKE 'tenantry\\_template\\_%'
                OR datname LIKE 'tenantry\\_build\\_%' OR datname LIKE 'tenantry\\_shared\\_%'",
    )
    .fetch_all(&mut admin)
    .await
    .expect("catalog");
    for database in databases {
        admin
            .execute(format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)").as_str())
            .await
            .expect("drop tenant database");
    }
    let roles: Vec<String> = sqlx::query_scalar(
        "SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'tenant\\_%'
                OR rolname LIKE 'tenantry\\_pool\\_%' OR rolname = 'tenantry_template_owner'
                OR rolname LIKE 'tenantry\\_owner\\_%'",
    )
    .fetch_all(&mut admin)
    .await
    .expect("catalog");
    for role in roles {
        admin
            .execute(format!("DROP ROLE IF EXISTS \"{role}\"").as_str())
            .await
            .expect("drop tenant role");
    }
}

/// Polls `check` every 50 ms until it returns a value: for what another process does in its own time. After
/// `seconds` it panics with `describe()`, made then, so a log in it is complete.
pub async fn eventually<T, F, Fut>(
    seconds: u64,
    describe: impl FnOnce() -> String,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let reached = tokio::time::timeout(std::time::Duration::from_secs(seconds), async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    reached.unwrap_or_else(|_| panic!("not within {seconds} s: {}", describe()))
}

pub fn write_file(path: &Path, contents: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, contents).expect("write");
}

/// Generates one test per engine from `async fn name(engine: Engine)`.
#[macro_export]
macro_rules! for_each_engine {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::harness::Engine::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::harness::Engine::Postgres).await;
                }
            }
        )+
    };
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// An HTTP receiver on 127.0.0.1: answers each request with the next status of its script (200 once the script
/// is used up) and keeps what it got.
pub struct Receiver {
    pub url: String,
    received: Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn start(statuses: Vec<u16>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let url = format!(
            "http://{}/hooks/tenantry",
            listener.local_addr().expect("its address")
        );
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = received.clone();
        let script = Arc::new(std::sync::Mutex::new(statuses.into_iter()));
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let kept = kept.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (headers, body_start) = loop {
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                            let headers: BTreeMap<String, String> = head
                                .lines()
                                .skip(1)
                                .filter_map(|line| line.split_once(':'))
                                .map(|(name, value)| {
                                    (name.trim().to_ascii_lowercase(), value.trim().to_owned())
                                })
                                .collect();
                            break (headers, end + 4);
                        }
                    };
                    let length: usize = headers
                        .get("content-length")
                        .and_then(|length| length.parse().ok())
                        .unwrap_or(0);
                    while buffer.len() < body_start + length {
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                    }
                    let body = buffer[body_start..].to_vec();
                    kept.lock()
                        .expect("not poisoned")
                        .push(Received { headers, body });
                    let status = script.lock().expect("not poisoned").next().unwrap_or(200);
                    let answer = format!(
                        "HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        Receiver { url, received }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("not poisoned").clone()
    }
}

/// One message an SMTP server received, parsed as a mail client would.
#[derive(Debug, Clone)]
pub struct Mail {
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The whole message as it arrived (headers and body).
    pub raw: String,
}

/// A real SMTP server of the test's own (aiosmtpd, from the suite's virtual environment): on a loopback port of
/// its own, writing every message it accepts into a Maildir the test reads. It can be stopped and started again
/// on the same port, to be an SMTP server that is down for a while.
pub struct MailServer {
    pub port: u16,
    maildir: PathBuf,
    child: Option<tokio::process::Child>,
}

impl MailServer {
    pub async fn start() -> MailServer {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("its address").port()
        };
        let maildir =
            std::env::temp_dir().join(format!("tenantry-mail-{}", uuid::Uuid::now_v7().simple()));
        let mut server = MailServer {
            port,
            maildir,
            child: None,
        };
        server.resume().await;
        server
    }

    /// The `smtp_url` that reaches it.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port, and waits until it greets.
    pub async fn resume(&mut self) {
        let python = std::env::var("TENANTRY_TEST_SMTPD_PYTHON").expect(
            "TENANTRY_TEST_SMTPD_PYTHON: run the tests through scripts/test (it installs aiosmtpd)",
        );
        let child = tokio::process::Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&self.maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start aiosmtpd");
        self.child = Some(child);
        let port = self.port;
        eventually(
            30,
            || format!("aiosmtpd did not greet on 127.0.0.1:{port}"),
            || async move {
                let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()?;
                let mut greeting = [0u8; 3];
                stream.read_exact(&mut greeting).await.ok()?;
                let _ = stream.write_all(b"QUIT\r\n").await;
                (&greeting == b"220").then_some(())
            },
        )
        .await;
    }

    /// Stops the server: connections to its port are refused until `resume`.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("stop aiosmtpd");
        }
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<Mail> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = ["new", "cur"]
            .iter()
            .filter_map(|folder| std::fs::read_dir(self.maildir.join(folder)).ok())
            .flatten()
            .filter_map(|entry| entry.ok())
            .map(|entry| {
                let modified = entry
                    .metadata()
                    .and_then(|metadata| metadata.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (modified, entry.path())
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, path)| {
                let raw = std::fs::read(&path).expect("read a delivered message");
                let parsed = mail_parser::MessageParser::default()
                    .parse(&raw)
                    .expect("a parsable message");
                let address = |list: Option<&mail_parser::Address>| {
                    list.and_then(|list| list.first())
                        .and_then(|addr| addr.address())
                        .unwrap_or_default()
                        .to_owned()
                };
                Mail {
                    message_id: parsed.message_id().unwrap_or_default().to_owned(),
                    from: address(parsed.from()),
                    to: address(parsed.to()),
                    subject: parsed.subject().unwrap_or_default().to_owned(),
                    text: parsed
                        .body_text(0)
                        .map(|text| text.into_owned())
                        .unwrap_or_default(),
                    html: parsed
                        .body_html(0)
                        .map(|html| html.into_owned())
                        .unwrap_or_default(),
                    raw: String::from_utf8_lossy(&raw).into_owned(),
                }
            })
            .collect()
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

/// Whether the check `name` passed among `checks` (from [`Fleet::validation`]); a missing check fails the test.
pub fn passed(checks: &[(String, bool)], name: &str) -> bool {
    checks
        .iter()
        .find(|(check, _)| check == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:?}"))
        .1
}
