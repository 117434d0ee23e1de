//! The `bucket` kind through the real binary against the suite's own SeaweedFS (`scripts/test-services`): a plan of
//! database and bucket provisioned (its bucket carries the labels, its key puts, gets and lists there and is
//! refused on another tenant's bucket), a bucket deleted by hand named by doctor and repaired by reconcile,
//! suspension and offboarding that lock the key out (the fleet's reconcile keeps it out) and a purge that empties and removes the bucket, `s3` servers refused with a
//! clear code (a wrong key, something that is not S3, a closed port), and an error and a crash at every phase.
//! What a person does by hand goes through curl's own Signature Version 4, the key on its standard input.

use crate::failures::assert_nothing_left;
use crate::harness::{passed, write_file, Engine, Fleet};
use crate::resources::unique;
use std::process::{Command, Stdio};

const BUCKET_PLANS: &str = r#"
[[plans]]
name = "starter"
connection_limit = 10
statement_timeout_ms = 30000

[[plans]]
name = "stored"
connection_limit = 10
statement_timeout_ms = 30000
cost_center = "storage"
resources = ["database", "bucket"]
"#;

/// The phases of a provisioning job for the stored plan, in order: `bucket_created` right after
/// `database_created`.
const STORED_PHASES: [&str; 12] = [
    "request_validated",
    "placement_resolved",
    "state_checked",
    "secret_set",
    "database_created",
    "bucket_created",
    "migrations_applied",
    "master_registered",
    "admin_seeded",
    "settings_applied",
    "checks_passed",
    "complete",
];

pub(crate) fn s3_url() -> String {
    std::env::var("TENANTRY_TEST_S3_URL")
        .expect("TENANTRY_TEST_S3_URL is set by scripts/test-services")
}

/// One request signed by curl with the key in `url` (`http://KEY:SECRET@host:port` or the tenant's
/// `s3://KEY:SECRET@host:port/bucket`): the HTTP status and the body.
fn curl(url: &str, service: &str, method: &str, path: &str, data: Option<&str>) -> (u16, String) {
    let url = url::Url::parse(url).unwrap();
    let endpoint = format!("http://{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut command = Command::new("curl");
    command.args(["-s", "--max-time", "10", "-w", "\n%{http_code}"]);
    // `-X HEAD` would wait for a body that never comes.
    if method == "HEAD" {
        command.arg("-I");
    } else {
        command.args(["-X", method]);
    }
    command
        .args(["--aws-sigv4", &format!("aws:amz:us-east-1:{service}")])
        .args(["-K", "-"]);
    if let Some(data) = data {
        command.args(["--data-binary", data]);
        command.args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]);
    }
    command.arg(format!("{endpoint}{path}"));
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(
            stdin,
            "user = \"{}:{}\"",
            url.username(),
            url.password().unwrap()
        )
        .unwrap();
    }
    let output = child.wait_with_output().expect("curl ends");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// A fleet with the `stored` plan and the suite's SeaweedFS as the `s3` server.
async fn bucket_fleet() -> Fleet {
    let fleet = Fleet::new(Engine::Sqlite).await;
    write_file(&fleet.scratch_dir.join("tenantry.toml"), BUCKET_PLANS);
    fleet
        .run_with_stdin(
            &[
                "servers",
                "add",
                "--name",
                "s3-a",
                "--engine",
                "s3",
                "--admin-url-stdin",
                "--capacity",
                "1000",
            ],
            &s3_url(),
        )
        .await
        .assert_ok();
    fleet
}

async fn provision_stored(fleet: &Fleet, slug: &str) {
    provision_stored_env(fleet, slug, &[]).await.assert_ok();
}

async fn provision_stored_env(
    fleet: &Fleet,
    slug: &str,
    env: &[(&str, &str)],
) -> crate::harness::Run {
    let mut args = Fleet::provision_args(slug);
    args.extend(["--plan".into(), "stored".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fleet.run_env(&args, env).await
}

/// Whether the tenant's bucket exists on the server.
pub(crate) fn bucket_exists(slug: &str) -> bool {
    let (status, body) = curl(&s3_url(), "s3", "HEAD", &format!("/tenant-{slug}"), None);
    assert!(
        matches!(status, 200 | 404),
        "HEAD tenant-{slug}: {status} {body}"
    );
    status == 200
}

/// Nothing of the tenant is left: no bucket, no user, no `tenant-bucket-` secret, nothing else.
async fn assert_stored_gone(fleet: &Fleet, slug: &str) {
    assert!(!bucket_exists(slug), "{slug}: bucket left");
    let (status, body) = curl(
        &s3_url(),
        "iam",
        "POST",
        "/",
        Some(&format!(
            "Action=GetUser&Version=2010-05-08&UserName=tenant-{slug}"
        )),
    );
    assert_eq!(status, 404, "{slug}: user left: {body}");
    assert_eq!(
        fleet.secret(&format!("tenant-bucket-{slug}")).await,
        None,
        "{slug}: bucket secret left"
    );
    assert_nothing_left(fleet, slug).await;
}

const BUCKET_CHECKS: [&str; 3] = [
    "bucket_read_write",
    "bucket_neighbour_refused",
    "bucket_cost_tags",
];

/// Every bucket check of `validate` passes.
async fn assert_bucket_valid(fleet: &Fleet, slug: &str) {
    let checks = fleet.validation(slug).await;
    for name in BUCKET_CHECKS {
        assert!(passed(&checks, name), "{slug}: {name} in {checks:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_tenant_is_isolated_repaired_and_purged() {
    let fleet = bucket_fleet().await;
    let (a, b) = (unique("bkt-a"), unique("bkt-b"));

    let mut args = Fleet::provision_args(&a);
    args.extend(["--plan".into(), "stored".into(), "--json".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let job = fleet.run(&args).await.assert_ok().json();
    let phases: Vec<&str> = job["job"]["phases"]
        .as_array()
        .or_else(|| job["phases"].as_array())
        .unwrap_or_else(|| panic!("no phases in {job}"))
        .iter()
        .map(|phase| phase["name"].as_str().unwrap())
        .collect();
    assert_eq!(phases, STORED_PHASES);
    provision_stored(&fleet, &b).await;

    // The bucket carries the labels; validate's checks pass; the tenant page and `plans` show the kind.
    let (_, tags) = curl(
        &s3_url(),
        "s3",
        "GET",
        &format!("/tenant-{a}?tagging="),
        None,
    );
    for tag in [
        format!("<Key>tenant</Key><Value>{a}</Value>"),
        "<Key>plan</Key><Value>stored</Value>".to_owned(),
        "<Key>cost_center</Key><Value>storage</Value>".to_owned(),
        "<Key>installation</Key><Value>".to_owned(),
    ] {
        assert!(tags.contains(&tag), "{tag} in {tags}");
    }
    assert_bucket_valid(&fleet, &a).await;
    let shown = fleet.json(&["tenants", "show", &a]).await;
    let kinds: Vec<&str> = shown["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{shown}"))
        .iter()
        .map(|resource| resource["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["database", "bucket"]);
    assert_eq!(
        shown["resources"][1]["secret_name"],
        format!("tenant-bucket-{a}")
    );
    let plans = fleet.run(&["plans", "--json"]).await;
    assert!(plans.assert_ok().stdout.contains("\"bucket\""), "{plans:?}");

    // The tenants' own keys: each works in its own bucket and is refused in the other's.
    let secret_a = fleet
        .secret(&format!("tenant-bucket-{a}"))
        .await
        .expect("A's secret");
    let secret_b = fleet
        .secret(&format!("tenant-bucket-{b}"))
        .await
        .expect("B's secret");
    assert!(secret_a.starts_with("s3://") && secret_a.ends_with(&format!("/tenant-{a}")));
    let (status, body) = curl(
        &secret_a,
        "s3",
        "PUT",
        &format!("/tenant-{a}/kept.txt"),
        Some("kept"),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = curl(
        &secret_a,
        "s3",
        "GET",
        &format!("/tenant-{a}/kept.txt"),
        None,
    );
    assert_eq!((status, body.as_str()), (200, "kept"));
    let (status, body) = curl(
        &secret_a,
        "s3",
        "GET",
        &format!("/tenant-{a}?list-type=2"),
        None,
    );
    assert!(
        status == 200 && body.contains("<Key>kept.txt</Key>"),
        "{body}"
    );
    for (method, path, data) in [
        ("GET", format!("/tenant-{a}/kept.txt"), None),
        ("GET", format!("/tenant-{a}?list-type=2"), None),
        ("PUT", format!("/tenant-{a}/from-b.txt"), Some("b")),
        ("DELETE", format!("/tenant-{a}/kept.txt"), None),
    ] {
        let (status, body) = curl(&secret_b, "s3", method, &path, data);
        assert_eq!(status, 403, "B's key on {method} {path}: {body}");
    }
    fleet.assert_doctor_clean().await;

    // By hand: B's bucket is deleted. Doctor names it with its fix, and reconcile makes it again.
    let (status, body) = curl(&s3_url(), "s3", "DELETE", &format!("/tenant-{b}"), None);
    assert_eq!(status, 204, "{body}");
    let doctor = fleet.run(&["doctor", "--json"]).await;
    assert_eq!(doctor.status, 1, "{doctor:?}");
    let findings = doctor.json()["findings"].as_array().unwrap().clone();
    let fix = format!("tenantry reconcile --slug {b} --kind bucket");
    assert!(
        findings
            .iter()
            .any(|found| found["kind"] == "missing" && found["fix"] == fix.as_str()),
        "doctor does not name B's missing bucket: {findings:?}"
    );
    fleet
        .run(&["reconcile", "--slug", &b, "--kind", "bucket"])
        .await
        .assert_ok();
    assert!(bucket_exists(&b));
    assert_bucket_valid(&fleet, &b).await;
    fleet.assert_doctor_clean().await;

    // Suspended, A's key opens nothing at once, and reconcile keeps it so; resumed, it reads its object again.
    fleet
        .run(&["tenants", "suspend", &a, "--reason", "unpaid invoice"])
        .await
        .assert_ok();
    let (status, _) = curl(
        &secret_a,
        "s3",
        "GET",
        &format!("/tenant-{a}/kept.txt"),
        None,
    );
    assert_eq!(status, 403, "a suspended tenant's key still reads");
    fleet.assert_doctor_clean().await;
    fleet
        .run(&["reconcile", "--kind", "bucket"])
        .await
        .assert_ok();
    let (status, _) = curl(
        &secret_a,
        "s3",
        "GET",
        &format!("/tenant-{a}/kept.txt"),
        None,
    );
    assert_eq!(status, 403, "reconcile let a suspended tenant's key in");
    fleet.run(&["tenants", "resume", &a]).await.assert_ok();
    let (status, body) = curl(
        &secret_a,
        "s3",
        "GET",
        &format!("/tenant-{a}/kept.txt"),
        None,
    );
    assert_eq!((status, body.as_str()), (200, "kept"));

    // Offboarded without purge: A's key opens nothing, and the object stays.
    fleet
        .run(&["offboard-tenant", "--slug", &a])
        .await
        .assert_ok();
    let (status, _) = curl(
        &secret_a,
        "s3",
        "GET",
        &format!("/tenant-{a}/kept.txt"),
        None,
    );
    assert_eq!(status, 403, "an offboarded tenant's key still reads");
    let (status, body) = curl(
        &s3_url(),
        "s3",
        "GET",
        &format!("/tenant-{a}/kept.txt"),
        None,
    );
    assert_eq!((status, body.as_str()), (200, "kept"));
    fleet.assert_doctor_clean().await;

    // Purged: A's bucket, which still holds an object, is emptied and deleted; nothing left of either.
    for slug in [&a, &b] {
        fleet
            .run(&["offboard-tenant", "--slug", slug, "--purge"])
            .await
            .assert_ok();
        assert_stored_gone(&fleet, slug).await;
    }
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_s3_servers_are_refused_and_nothing_is_stored() {
    let fleet = Fleet::new(Engine::Sqlite).await;
    let good = url::Url::parse(&s3_url()).unwrap();
    let mut wrong_key = good.clone();
    wrong_key.set_password(Some("hunter2wrongkey")).unwrap();
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    // PowerDNS's HTTP API: an HTTP server that is not S3.
    let pdns = url::Url::parse(
        &std::env::var("TENANTRY_TEST_PDNS_API_URL").expect("TENANTRY_TEST_PDNS_API_URL"),
    )
    .unwrap();
    let not_s3 = format!(
        "http://{}:hunter2wrongkey@{}:{}",
        good.username(),
        pdns.host_str().unwrap(),
        pdns.port().unwrap()
    );
    let cases: Vec<(String, &str, &str)> = vec![
        (
            wrong_key.to_string(),
            "E_ADMIN_CONN_UNRESOLVED",
            "credentials were refused",
        ),
        (
            not_s3,
            "E_ADMIN_CONN_UNRESOLVED",
            "does not answer as an S3 server",
        ),
        (
            format!(
                "http://{}:hunter2wrongkey@127.0.0.1:{closed_port}",
                good.username()
            ),
            "E_ADMIN_CONN_UNRESOLVED",
            "could not be reached",
        ),
        (
            format!(
                "https://{}:hunter2wrongkey@127.0.0.1:{closed_port}",
                good.username()
            ),
            "E_INVALID_INPUT",
            "must use http",
        ),
        (
            format!("http://127.0.0.1:{}", good.port().unwrap()),
            "E_INVALID_INPUT",
            "has no access key id and secret",
        ),
    ];
    for (admin_url, code, words) in cases {
        let run = fleet
            .run_with_stdin(
                &[
                    "servers",
                    "add",
                    "--name",
                    "s3-bad",
                    "--engine",
                    "s3",
                    "--admin-url-stdin",
                    "--capacity",
                    "10",
                ],
                &admin_url,
            )
            .await;
        assert_eq!(run.error_code().as_deref(), Some(code), "{run:?}");
        assert!(run.stderr.contains(words), "{words}: {run:?}");
        assert!(!run.stderr.contains("hunter2wrongkey"), "{run:?}");
    }
    // Nothing was registered or stored.
    let servers = fleet.json(&["servers", "list"]).await;
    assert!(
        servers
            .as_array()
            .unwrap()
            .iter()
            .all(|server| server["name"] != "s3-bad"),
        "{servers}"
    );
    assert_eq!(fleet.secret("server-admin-s3-bad").await, None);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_at_every_phase_unwinds_the_bucket_and_a_crash_at_every_phase_resumes() {
    let fleet = bucket_fleet().await;
    // An error before and after every phase, and inside bucket_created once its secret is stored: nothing is left.
    let failpoints = STORED_PHASES
        .iter()
        .flat_map(|phase| ["before", "after"].map(|boundary| format!("{phase}.{boundary}=error")))
        .chain(["bucket_created.credentials_stored=error".to_owned()]);
    for failpoint in failpoints {
        let slug = unique("unwind");
        let run = provision_stored_env(&fleet, &slug, &[("TENANTRY_FAILPOINTS", &failpoint)]).await;
        assert_eq!(
            run.error_code().as_deref(),
            Some("E_FAILPOINT"),
            "{failpoint}: {run:?}"
        );
        assert_stored_gone(&fleet, &slug).await;
    }

    // A crash before and after every phase, then the same command again: the tenant is whole.
    let mut slugs = Vec::new();
    for phase in STORED_PHASES {
        for boundary in ["before", "after"] {
            let slug = unique("crash");
            let failpoint = format!("{phase}.{boundary}=exit");
            let crashed =
                provision_stored_env(&fleet, &slug, &[("TENANTRY_FAILPOINTS", &failpoint)]).await;
            assert_eq!(crashed.status, 137, "{failpoint}: {crashed:?}");
            provision_stored(&fleet, &slug).await;
            assert_bucket_valid(&fleet, &slug).await;
            slugs.push(slug);
        }
    }

    // Every step twice converges, and every undo twice leaves nothing.
    let twice = unique("twice");
    provision_stored_env(&fleet, &twice, &[("TENANTRY_REPEAT_STEPS", "1")])
        .await
        .assert_ok();
    slugs.push(twice);
    let undo_twice = unique("undo-twice");
    let run = provision_stored_env(
        &fleet,
        &undo_twice,
        &[
            ("TENANTRY_REPEAT_STEPS", "1"),
            ("TENANTRY_FAILPOINTS", "complete.after=error"),
        ],
    )
    .await;
    assert_eq!(run.error_code().as_deref(), Some("E_FAILPOINT"), "{run:?}");
    assert_stored_gone(&fleet, &undo_twice).await;
    fleet.assert_doctor_clean().await;
    for slug in &slugs {
        fleet
            .run(&["offboard-tenant", "--slug", slug, "--purge"])
            .await
            .assert_ok();
        assert_stored_gone(&fleet, slug).await;
    }
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_adds_an_s3_server_and_never_shows_its_secret() {
    let fleet = Fleet::new(Engine::Sqlite).await;
    let server = fleet.serve(&[]).await;
    let token = fleet.token_for("ops@example.com", "PLATFORM_ADMIN").await;
    let response = server
        .post("/platform/servers", &token)
        .json(&serde_json::json!({ "name": "s3-api", "engine": "s3", "admin_url": s3_url(), "capacity": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let added: serde_json::Value = response.json().await.unwrap();
    assert_eq!(added["engine"], "s3");
    let secret = url::Url::parse(&s3_url())
        .unwrap()
        .password()
        .unwrap()
        .to_owned();
    assert!(!added.to_string().contains(&secret), "{added}");
    // A URL that is not S3's is refused before anything is stored.
    let response = server
        .post("/platform/servers", &token)
        .json(&serde_json::json!({ "name": "s3-odd", "engine": "s3", "admin_url": "s3://nothing", "capacity": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(fleet.secret("server-admin-s3-odd").await, None);
    server.terminate().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logging_never_shows_a_bucket_secret() {
    let fleet = bucket_fleet().await;
    let slug = unique("bkt-trace");
    let run = provision_stored_env(&fleet, &slug, &[("RUST_LOG", "trace")]).await;
    run.assert_ok();
    assert!(run.stderr.len() > 1000, "trace logging was on");
    let secret = fleet
        .secret(&format!("tenant-bucket-{slug}"))
        .await
        .expect("the bucket secret");
    let tenant_secret = url::Url::parse(&secret)
        .unwrap()
        .password()
        .unwrap()
        .to_owned();
    let admin_secret = url::Url::parse(&s3_url())
        .unwrap()
        .password()
        .unwrap()
        .to_owned();
    assert!(tenant_secret.len() >= 40);
    for shown in [&run.stdout, &run.stderr] {
        assert!(
            !shown.contains(&tenant_secret),
            "the tenant's secret key was shown"
        );
        assert!(
            !shown.contains(&admin_secret),
            "the admin's secret key was shown"
        );
    }
    let job_id = fleet.jobs().await[0]["job_id"].as_str().unwrap().to_owned();
    let job = fleet.run(&["jobs", "show", &job_id, "--json"]).await;
    let audit = fleet.run(&["audit", "list", "--json"]).await;
    for shown in [&job.stdout, &audit.stdout] {
        assert!(!shown.contains(&tenant_secret) && !shown.contains(&admin_secret));
    }
    fleet
        .run(&["offboard-tenant", "--slug", &slug, "--purge"])
        .await
        .assert_ok();
    assert_stored_gone(&fleet, &slug).await;
    fleet.cleanup().await;
}

/// One signed listing of the tenant's bucket with the key in `url`: whether it was allowed.
async fn lists_bucket(url: &str, slug: &str) -> bool {
    let (url, path) = (url.to_owned(), format!("/tenant-{slug}?list-type=2"));
    let (status, _) = tokio::task::spawn_blocking(move || curl(&url, "s3", "GET", &path, None))
        .await
        .unwrap();
    status == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_rotation_under_load_fails_no_request_and_refuses_the_old_key() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    const ROTATIONS: usize = 5;
    let fleet = Arc::new(bucket_fleet().await);
    let slug = unique("bkt-rot");
    provision_stored(&fleet, &slug).await;
    let secret_name = format!("tenant-bucket-{slug}");

    // A client listing the bucket with the key it holds, re-reading the secret when a request is refused, as
    // the rotation's contract asks of clients; only a refusal after the re-read counts as a failure.
    let stop = Arc::new(AtomicBool::new(false));
    let (requests, rereads, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let client = {
        let (fleet, slug, secret_name, stop) = (
            fleet.clone(),
            slug.clone(),
            secret_name.clone(),
            stop.clone(),
        );
        let (requests, rereads, failed) = (requests.clone(), rereads.clone(), failed.clone());
        tokio::spawn(async move {
            let mut url = fleet.secret(&secret_name).await.unwrap();
            while !stop.load(Ordering::SeqCst) {
                requests.fetch_add(1, Ordering::SeqCst);
                if !lists_bucket(&url, &slug).await {
                    rereads.fetch_add(1, Ordering::SeqCst);
                    url = fleet.secret(&secret_name).await.unwrap();
                    if !lists_bucket(&url, &slug).await {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };

    for rotation in 0..ROTATIONS {
        let old = fleet.secret(&secret_name).await.unwrap();
        fleet
            .run(&[
                "tenants",
                "rotate-credentials",
                &slug,
                "--kind",
                "bucket",
                "--grace",
                "1s",
            ])
            .await
            .assert_ok();
        let new = fleet.secret(&secret_name).await.unwrap();
        assert_ne!(old, new, "rotation {rotation}");
        // Once the job is over, the old key is refused and the new one works.
        assert!(
            !lists_bucket(&old, &slug).await,
            "rotation {rotation}: the old key still lists the bucket"
        );
        assert!(
            lists_bucket(&new, &slug).await,
            "rotation {rotation}: the new key is refused"
        );
    }
    stop.store(true, Ordering::SeqCst);
    client.await.unwrap();
    let (requests, rereads, failed) = (
        requests.load(Ordering::SeqCst),
        rereads.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst),
    );
    eprintln!("bucket: {requests} requests, {rereads} secret re-reads, {failed} failed");
    assert_eq!(failed, 0, "failed requests across {ROTATIONS} rotations");
    assert!(rereads >= ROTATIONS as u64, "only {rereads} re-reads");

    assert_eq!(fleet.secret(&format!("{secret_name}.previous")).await, None);
    assert_bucket_valid(&fleet, &slug).await;
    fleet.assert_doctor_clean().await;
    fleet
        .run(&["offboard-tenant", "--slug", &slug, "--purge", "--no-backup"])
        .await
        .assert_ok();
    assert_stored_gone(&fleet, &slug).await;
    Arc::into_inner(fleet).unwrap().cleanup().await;
}
