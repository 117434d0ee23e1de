//! `serve` (API, console and workers) and `worker` (workers only), with a graceful shutdown on SIGTERM/SIGINT:
//! stop claiming, hand the jobs in hand back at their next phase boundary, close connections, exit 0.

use crate::app::App;
use crate::{CommandResult, Failure};
use std::process::ExitCode;
use tenantry_core::{Error as CodedError, ErrorCode};
use tenantry_server::{ServerSettings, ServerState};
use tenantry_workflows::run_workers;
use tokio::sync::watch;

fn server_settings() -> anyhow::Result<ServerSettings> {
    let defaults = ServerSettings::default();
    let provision_rate_limit = match std::env::var("TENANTRY_PROVISION_RATE_LIMIT") {
        Ok(raw) if !raw.is_empty() => raw.parse().map_err(|_| {
            anyhow::anyhow!(
                "TENANTRY_PROVISION_RATE_LIMIT={raw:?} is not a number of requests per minute"
            )
        })?,
        _ => defaults.provision_rate_limit,
    };
    Ok(ServerSettings {
        provision_rate_limit,
        secure_cookies: std::env::var("TENANTRY_COOKIE_SECURE")
            .is_ok_and(|value| value == "1" || value == "true"),
        ..defaults
    })
}

/// Turns `true` on SIGTERM or SIGINT.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        tracing::info!("shutting down: no new jobs are claimed; jobs in hand are handed back");
        let _ = sender.send(true);
    });
    receiver
}

async fn print_bootstrap_hint(app: &App) -> Result<(), Failure> {
    let n_users = app
        .platform
        .registry
        .count_users()
        .await
        .map_err(tenantry_workflows::registry_error)?;
    if n_users == 0 {
        println!(
            "No platform users yet. Create the first admin, then sign in or make an API token:"
        );
        println!("  tenantry users add --email you@example.com --role PLATFORM_ADMIN");
        println!("  tenantry users token --email you@example.com");
    }
    Ok(())
}

pub async fn serve(app: App, listen: &str, n_workers: usize) -> CommandResult {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| {
            CodedError::invalid_input(format!("cannot listen on {listen}: {error}"))
        })?;
    let address = listener
        .local_addr()
        .map_err(|error| CodedError::new(ErrorCode::Internal, error.to_string()))?;
    let shutdown = shutdown_signal();
    let state = ServerState::new(
        app.platform.clone(),
        app.runner(),
        server_settings()?,
        shutdown.clone(),
    );
    // Events of jobs run by other processes wake this server's live streams too.
    let job_changes = state.job_changes.clone();
    let on_job_event: tenantry_workflows::JobEventHook =
        std::sync::Arc::new(move |_job_id: &str| {
            job_changes.send_modify(|version| *version = version.wrapping_add(1));
        });
    let workers = tokio::spawn(run_workers(
        app.platform.clone(),
        state.worker_runner(),
        n_workers,
        state.wake_workers.clone(),
        shutdown.clone(),
        Some(on_job_event),
    ));
    // Keeps each PostgreSQL server's warm pool topped up (a no-op when TENANTRY_WARM_POOL_SIZE is 0).
    let refill = tokio::spawn(tenantry_workflows::run_warm_pool_refill(
        app.platform.clone(),
        shutdown.clone(),
    ));
    // Tests and scripts read this line to find the port.
    println!("tenantry listening on http://{address}");
    print_bootstrap_hint(&app).await?;
    let mut shutdown_for_http = shutdown.clone();
    axum::serve(listener, tenantry_server::router(state))
        .with_graceful_shutdown(async move {
            let _ = shutdown_for_http.wait_for(|stopping| *stopping).await;
        })
        .await
        .map_err(|error| {
            CodedError::new(ErrorCode::Internal, format!("the server stopped: {error}"))
        })?;
    let _ = workers.await;
    let _ = refill.await;
    app.platform.registry.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn worker(app: App, n_workers: usize) -> CommandResult {
    let shutdown = shutdown_signal();
    println!("tenantry worker running {n_workers} worker(s); stop with SIGTERM");
    let refill = tokio::spawn(tenantry_workflows::run_warm_pool_refill(
        app.platform.clone(),
        shutdown.clone(),
    ));
    run_workers(
        app.platform.clone(),
        app.runner(),
        n_workers,
        std::sync::Arc::new(tokio::sync::Notify::new()),
        shutdown,
        None,
    )
    .await;
    let _ = refill.await;
    app.platform.registry.close().await;
    Ok(ExitCode::SUCCESS)
}
