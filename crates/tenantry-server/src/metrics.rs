//! `/metrics` in Prometheus text: phase and job durations, job failures and webhook sends recorded in this
//! process, and counts (jobs, webhook deliveries by status) and per-tenant info and cost read from the registry at
//! scrape time, so every replica reports the same numbers. `dashboards/grafana/tenantry.json` is built on these
//! names; a test checks that every one it queries is here.
//! The per-tenant series name customers (slug, plan, cost center, cost), so they are rendered only for a caller
//! with a platform role ([`Scope::WithTenants`]); the public scrape carries no customer name.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::fmt::Write as _;
use std::sync::OnceLock;
use tenantry_registry::{
    Registry, CHANNEL_EMAIL, CHANNEL_WEBHOOK, DELIVERY_DEAD, DELIVERY_PENDING, DELIVERY_SENT,
};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder (installed once; later servers in the same process share it).
pub fn recorder_handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
                // A whole job takes longer than one phase (a rollout's can take minutes), so its buckets reach
                // further: the dashboard's p95 stays a number instead of the last bucket's bound.
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full("tenantry_job_duration_seconds".into()),
                        &[
                            0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                            1800.0,
                        ],
                    )
                })
                .map(|builder| builder.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a metrics recorder was already installed; phase histograms go there"
                );
            }
            handle
        })
        .clone()
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What a scrape may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Anyone: the platform's own series.
    Public,
    /// A caller with a platform role: also one series per tenant.
    WithTenants,
}

/// The whole scrape: recorded metrics, then registry counts, then (for [`Scope::WithTenants`]) the tenants.
pub async fn render(
    handle: &PrometheusHandle,
    registry: &Registry,
    scope: Scope,
) -> Result<String, tenantry_registry::Error> {
    let mut text = handle.render();
    let job_counts = registry.job_counts().await?;
    let failures = registry.failure_counts().await?;
    let _ = writeln!(
        text,
        "# HELP tenantry_jobs Jobs in the registry by kind and status."
    );
    let _ = writeln!(text, "# TYPE tenantry_jobs gauge");
    let mut queue_depth = 0;
    for (kind, status, count) in &job_counts {
        let _ = writeln!(
            text,
            "tenantry_jobs{{kind=\"{}\",status=\"{}\"}} {count}",
            escape_label(kind),
            escape_label(status)
        );
        if status == "pending" {
            queue_depth += count;
        }
    }
    let _ = writeln!(
        text,
        "# HELP tenantry_job_failures Jobs that ended with an error, by error code."
    );
    let _ = writeln!(text, "# TYPE tenantry_job_failures gauge");
    for (error_code, count) in &failures {
        let _ = writeln!(
            text,
            "tenantry_job_failures{{error_code=\"{}\"}} {count}",
            escape_label(error_code)
        );
    }
    let _ = writeln!(
        text,
        "# HELP tenantry_job_queue_depth Jobs waiting for a worker."
    );
    let _ = writeln!(text, "# TYPE tenantry_job_queue_depth gauge");
    let _ = writeln!(text, "tenantry_job_queue_depth {queue_depth}");
    // Read here rather than counted by the sender: the `_total` counters appear only once this process has
    // sent something, and only for what it sent; these are the outbox's, the same from every replica.
    let _ = writeln!(
        text,
        "# HELP tenantry_notifications Deliveries in the outbox (webhooks, invitation e-mails) by channel and status."
    );
    let _ = writeln!(text, "# TYPE tenantry_notifications gauge");
    let delivery_counts = registry.notification_counts().await?;
    for channel in [CHANNEL_WEBHOOK, CHANNEL_EMAIL] {
        for status in [DELIVERY_PENDING, DELIVERY_SENT, DELIVERY_DEAD] {
            let count = delivery_counts
                .iter()
                .find(|(counted_channel, counted, _)| {
                    counted_channel == channel && counted == status
                })
                .map_or(0, |(_, _, count)| *count);
            let _ = writeln!(
                text,
                "tenantry_notifications{{channel=\"{channel}\",status=\"{status}\"}} {count}"
            );
        }
    }
    // The validation suite's `metrics_visible` check reads the same lines.
    if scope == Scope::WithTenants {
        text.push_str(&tenantry_workflows::tenant_metrics_text(registry).await?);
    }
    Ok(text)
}
