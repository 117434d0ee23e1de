//! What operators look at: the Grafana dashboard in `dashboards/grafana/tenantry.json` is importable JSON with a
//! query in every panel, and every metric those queries name is on a real `tenantry serve`'s public `/metrics`
//! once it has provisioned a tenant, failed a job and delivered webhooks (so a panel over a metric that does not
//! exist fails here, not on an operator's screen); and the console's Jobs page charts the last day's provisioning
//! time by plan and failures by error code, or says that nothing finished.

use crate::harness::{eventually, Engine, Fleet, Receiver, Server};
use serde_json::{json, Value};
use std::collections::BTreeSet;

const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

fn dashboard() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../dashboards/grafana/tenantry.json"
    );
    let text = std::fs::read_to_string(path).expect("the dashboard's JSON is in the repository");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every panel that shows data, including those inside collapsed rows (rows themselves hold no query).
fn data_panels(dashboard: &Value) -> Vec<&Value> {
    fn collect<'a>(panels: &'a Value, into: &mut Vec<&'a Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            if panel["type"] == "row" {
                collect(&panel["panels"], into);
            } else {
                into.push(panel);
            }
        }
    }
    let mut panels = Vec::new();
    collect(&dashboard["panels"], &mut panels);
    panels
}

/// The names `tenantry_[a-z0-9_]+` in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("tenantry_") {
        let preceded_by_name = rest[..start]
            .chars()
            .next_back()
            .is_some_and(|before| before.is_ascii_alphanumeric() || before == '_');
        let name: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if !preceded_by_name {
            names.push(name.clone());
        }
        rest = &rest[start + name.len()..];
    }
    names
}

/// Every metric name any panel's queries use.
fn queried_metrics(dashboard: &Value) -> BTreeSet<String> {
    data_panels(dashboard)
        .into_iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .flat_map(|target| metric_names(target["expr"].as_str().unwrap_or_default()))
        .collect()
}

/// The names of the samples in a Prometheus text scrape. A histogram's samples are its `_bucket`, `_sum` and
/// `_count` series, so those are what a query over it names.
fn scraped_metrics(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_dashboard_is_grafana_json_with_a_query_in_every_panel() {
    let dashboard = dashboard();
    assert_eq!(dashboard["title"], "tenantry");
    assert!(dashboard["uid"].as_str().is_some_and(|uid| !uid.is_empty()));
    // Importable anywhere: the datasource is asked for at import, never a uid from one Grafana.
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    let panels = data_panels(&dashboard);
    assert!(panels.len() >= 6, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title: {panel}");
        assert!(ids.insert(panel["id"].as_i64()), "{title}: its id is taken");
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(
                !metric_names(expr).is_empty(),
                "{title}: a query over no tenantry metric: {expr:?}"
            );
            assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        }
    }
    for wanted in [
        "tenantry_job_duration_seconds_bucket",
        "tenantry_job_failures_total",
        "tenantry_job_queue_depth",
        "tenantry_notifications_sent_total",
        "tenantry_notifications_retried_total",
        "tenantry_notifications_dead_total",
    ] {
        assert!(
            queried_metrics(&dashboard).contains(wanted),
            "the dashboard shows {wanted}"
        );
    }
    assert_eq!(
        metric_names("sum(rate(tenantry_a_total[5m])) / x_tenantry_b + tenantry_c{kind=\"p\"}"),
        vec!["tenantry_a_total", "tenantry_c"]
    );
}

/// The job the server ran for `slug`, once it has ended.
async fn ended_job(server: &Server, token: &str, slug: &str) -> Value {
    eventually(
        60,
        || server.log(),
        || async {
            let jobs: Vec<Value> = server
                .get(&format!("/platform/jobs?tenant={slug}"), token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            jobs.into_iter().find(|job| {
                matches!(
                    job["status"].as_str(),
                    Some("complete" | "failed" | "rolled_back")
                )
            })
        },
    )
    .await
}

async fn deliveries(server: &Server, token: &str) -> Vec<Value> {
    let response = server
        .get("/platform/notifications", token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The webhook deliveries: with no SMTP server here, each tenant's invitation e-mail waits, pending.
    let listed: Vec<Value> = response.json().await.unwrap();
    listed
        .into_iter()
        .filter(|delivery| delivery["channel"] == "webhook")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_on_metrics() {
    let fleet = Fleet::new(Engine::Sqlite).await;
    let admin = fleet.token_for("admin@example.com", "PLATFORM_ADMIN").await;
    // The first delivery fails twice (retried, then dead at its second attempt); the next is sent.
    let receiver = Receiver::start(vec![500, 500]).await;
    let server = fleet
        .serve(&[
            // Only offboarding has this phase, so provisioning completes and offboarding fails.
            ("TENANTRY_FAILPOINTS", "login_disabled.before=error"),
            ("TENANTRY_NOTIFY_MAX_ATTEMPTS", "2"),
            ("TENANTRY_NOTIFY_RETRY_BASE_MS", "10"),
        ])
        .await;
    let subscribed = server
        .post("/platform/webhooks", &admin)
        .json(&json!({ "url": receiver.url, "events": ["tenant.provisioned"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(subscribed.status(), 201);

    for slug in ["metered-1", "metered-2"] {
        let provision = server
            .post("/platform/tenants", &admin)
            .json(&json!({ "slug": slug, "display_name": "Metered Co", "admin_email": "admin@metered.example" }))
            .send()
            .await
            .unwrap();
        assert_eq!(provision.status(), 202);
        assert_eq!(ended_job(&server, &admin, slug).await["status"], "complete");
        // One delivery at a time, so the receiver's script meets them in order.
        eventually(
            30,
            || server.log(),
            || async {
                let listed = deliveries(&server, &admin).await;
                listed
                    .iter()
                    .all(|delivery| delivery["status"] != "pending")
                    .then_some(())
            },
        )
        .await;
    }
    let statuses: BTreeSet<String> = deliveries(&server, &admin)
        .await
        .iter()
        .map(|delivery| delivery["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        statuses,
        BTreeSet::from(["dead".to_owned(), "sent".to_owned()])
    );
    let offboard = server
        .post("/platform/tenants/metered-1/offboard", &admin)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(offboard.status(), 202);
    eventually(
        60,
        || server.log(),
        || async {
            let jobs: Vec<Value> = server
                .get("/platform/jobs?tenant=metered-1", &admin)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            jobs.iter()
                .any(|job| job["kind"] == "offboard" && job["status"] == "rolled_back")
                .then_some(())
        },
    )
    .await;

    // The public scrape, as a Prometheus without a token sees it: the dashboard needs no per-tenant series.
    let scrape = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scraped = scraped_metrics(&scrape);
    let missing: Vec<String> = queried_metrics(&dashboard())
        .into_iter()
        .filter(|name| !scraped.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which /metrics does not have:\n{scrape}"
    );
    // The failure is counted where it happened, with bounded labels: no slug, no job id.
    assert!(
        scrape.contains(
            "tenantry_job_failures_total{kind=\"offboard\",phase=\"login_disabled\",error_code=\"E_FAILPOINT\"} 1"
        ),
        "{scrape}"
    );
    assert!(!scrape.contains("metered-"), "{scrape}");
    server.terminate().await;
    fleet.cleanup().await;
}

/// The Jobs page as a browser gets it.
async fn jobs_page(server: &Server, token: &str) -> String {
    let page = server
        .get("/platform/jobs", token)
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    page.text().await.unwrap()
}

/// The part of `html` from the element with this id to the end of its SVG.
fn svg_by_id<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let end = html[start..].find("</svg>").expect("the SVG ends");
    &html[start..start + end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_page_charts_the_last_days_provisioning() {
    let fleet = Fleet::new(Engine::Sqlite).await;
    let admin = fleet.token_for("admin@example.com", "PLATFORM_ADMIN").await;
    let server = fleet.serve(&[]).await;
    let empty = jobs_page(&server, &admin).await;
    assert!(
        empty.contains("No provisioning finished in the last day."),
        "{empty}"
    );
    assert!(empty.contains("No provisioning failed in the last day."));
    assert!(!empty.contains("<svg"), "no chart without data");

    fleet.provision("charted", &[]).await.assert_ok();
    let failed = fleet
        .provision(
            "uncharted",
            &[("TENANTRY_FAILPOINTS", "migrations_applied.before=error")],
        )
        .await;
    assert_eq!(failed.error_code().as_deref(), Some("E_FAILPOINT"));
    let tenants = fleet.tenants().await;
    let plan = tenants
        .iter()
        .find(|tenant| tenant["slug"] == "charted")
        .and_then(|tenant| tenant["plan"].as_str())
        .unwrap_or_else(|| panic!("the provisioned tenant names its plan: {tenants:?}"));

    let html = jobs_page(&server, &admin).await;
    let times = svg_by_id(&html, "chart-times");
    assert!(times.contains("role=\"img\""), "{times}");
    assert!(
        times.contains("<title id=\"chart-times-title\">Provisioning time by plan"),
        "{times}"
    );
    assert!(
        times.contains(&format!("data-label=\"{plan}\"")),
        "a bar for {plan}: {times}"
    );
    assert!(times.contains("class=\"chart-bar-p50\""), "{times}");
    assert!(times.contains(" · 1 job</text>"), "{times}");
    let failures = svg_by_id(&html, "chart-failures");
    assert!(
        failures.contains("data-label=\"E_FAILPOINT\""),
        "{failures}"
    );
    assert!(failures.contains("E_FAILPOINT: 1 job."), "{failures}");
    assert!(!html.contains("No provisioning finished in the last day."));
    server.terminate().await;
    fleet.cleanup().await;
}
