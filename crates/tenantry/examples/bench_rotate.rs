//! The rotation benchmark's client side, run by `scripts/bench-rotate` against a fleet it set up: while clients of
//! the PostgreSQL database, the cache and the queue log in anew every few milliseconds (re-reading the secret when a login fails), it runs
//! N rotations through the binary and measures, per rotation and kind, the time from the job's start to the old
//! credentials being refused, and counts the queries that failed even after a re-read.
//!
//! Usage: `bench_rotate BINARY SLUG ROTATIONS GRACE_SECONDS` with the fleet's `TENANTRY_*` variables set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn secret(binary: &str, name: &str) -> String {
    let output = Command::new(binary)
        .args(["secrets", "show", name, "--json"])
        .output()
        .expect("run tenantry");
    assert!(output.status.success(), "secrets show {name}: {output:?}");
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    value["value"].as_str().unwrap().to_owned()
}

/// The secret holding `kind`'s credentials (the database's keeps its name from before resources).
fn secret_name(kind: &str, slug: &str) -> String {
    match kind {
        "database" => format!("tenant-db-{slug}"),
        _ => format!("tenant-{kind}-{slug}"),
    }
}

async fn login(kind: &str, url: &str) -> bool {
    if kind == "database" {
        use sqlx::Connection;
        let Ok(mut connection) = sqlx::PgConnection::connect(url).await else {
            return false;
        };
        let answered = sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&mut connection)
            .await
            .is_ok();
        let _ = connection.close().await;
        answered
    } else if kind == "cache" {
        let Ok(client) = redis::Client::open(url) else {
            return false;
        };
        match client.get_multiplexed_async_connection().await {
            Ok(mut connection) => redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .is_ok(),
            Err(_) => false,
        }
    } else {
        use amqprs::connection::{Connection, OpenConnectionArguments};
        let parsed = url::Url::parse(url).unwrap();
        let decode = |text: &str| {
            url::form_urlencoded::parse(format!("x={text}").as_bytes())
                .next()
                .map(|(_, value)| value.into_owned())
                .unwrap_or_default()
        };
        let arguments = OpenConnectionArguments::new(
            parsed.host_str().unwrap(),
            parsed.port().unwrap_or(5672),
            &decode(parsed.username()),
            &decode(parsed.password().unwrap_or("")),
        )
        .virtual_host(&decode(parsed.path().trim_start_matches('/')))
        .finish();
        match tokio::time::timeout(Duration::from_secs(5), Connection::open(&arguments)).await {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                true
            }
            _ => false,
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (binary, slug) = (args[1].clone(), args[2].clone());
    let rotations: usize = args[3].parse().unwrap();
    let grace: u64 = args[4].parse().unwrap();
    let kinds = ["database", "cache", "queue"];

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    let counters: Vec<(Arc<AtomicU64>, Arc<AtomicU64>)> = kinds
        .iter()
        .map(|_| (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))))
        .collect();
    for (kind, (queries, failed)) in kinds.iter().zip(&counters) {
        let (binary, kind, stop) = (binary.clone(), *kind, stop.clone());
        let name = secret_name(kind, &slug);
        let (queries, failed) = (queries.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let mut url = secret(&binary, &name);
            while !stop.load(Ordering::SeqCst) {
                queries.fetch_add(1, Ordering::SeqCst);
                if !login(kind, &url).await {
                    url = secret(&binary, &name);
                    if !login(kind, &url).await {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    // Per kind: milliseconds from the job's start to the old credentials' first refusal.
    let mut refused_after: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let mut learnt_after: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let mut job_ms = Vec::new();
    for _ in 0..rotations {
        let old: Vec<String> = kinds
            .iter()
            .map(|kind| secret(&binary, &secret_name(kind, &slug)))
            .collect();
        let started = Instant::now();
        let probes: Vec<_> = kinds
            .iter()
            .zip(old)
            .map(|(kind, url)| {
                let kind = *kind;
                tokio::spawn(async move {
                    // The old credentials work until the retirement; the first refusal ends the probe.
                    let deadline = Instant::now() + Duration::from_secs(grace + 120);
                    while Instant::now() < deadline {
                        // When the refused attempt began: RabbitMQ answers a failed login only after its
                        // silent-close delay (3 s), so the attempt's end says when the client learnt it, later.
                        let attempt = started.elapsed().as_secs_f64() * 1000.0;
                        if !login(kind, &url).await {
                            let learnt = started.elapsed().as_secs_f64() * 1000.0;
                            return Some((attempt, learnt));
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    None
                })
            })
            .collect();
        let grace_arg = format!("{grace}s");
        let binary = binary.clone();
        let slug = slug.clone();
        let ran = tokio::task::spawn_blocking(move || {
            Command::new(&binary)
                .args([
                    "tenants",
                    "rotate-credentials",
                    &slug,
                    "--grace",
                    &grace_arg,
                ])
                .output()
                .expect("run tenantry")
        })
        .await
        .unwrap();
        assert!(ran.status.success(), "rotation failed: {ran:?}");
        job_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        for (index, probe) in probes.into_iter().enumerate() {
            let (refused, learnt) = probe
                .await
                .unwrap()
                .expect("the old credentials were never refused");
            refused_after[index].push(refused);
            learnt_after[index].push(learnt);
        }
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }

    let summary = |values: &mut Vec<f64>| {
        values.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let p50 = values[values.len() / 2];
        let max = values[values.len() - 1];
        (p50, max)
    };
    let (job_p50, job_max) = summary(&mut job_ms);
    println!(
        "rotate: {rotations} rotations, grace {grace} s; the command (job start to end) p50 {job_p50:.0} ms, max {job_max:.0} ms"
    );
    for (index, kind) in kinds.iter().enumerate() {
        let (p50, max) = summary(&mut refused_after[index]);
        let (learnt_p50, _) = summary(&mut learnt_after[index]);
        let queries = counters[index].0.load(Ordering::SeqCst);
        let failed = counters[index].1.load(Ordering::SeqCst);
        println!(
            "rotate: {kind:<8} job start -> old credentials refused p50 {p50:.0} ms, max {max:.0} ms \
             (grace {} ms; the refusal reached the client at p50 {learnt_p50:.0} ms); {queries} client queries, \
             {failed} failed",
            grace * 1000,
        );
    }
}
