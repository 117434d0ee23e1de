//! `serve` (API, console and workers) and `worker` (workers only), with a graceful shutdown on SIGTERM/SIGINT:
//! stop claiming, hand the jobs in hand back at their next phase boundary, close connections, exit 0.

use crate::app::App;
use crate::{CommandResult, Failure};
use std::process::ExitCode;
use tenantry_core::{Error as CodedError, ErrorCode};
use tenantry_server::{ServerSettings, ServerState};
use tenantry_workflows::run_workers;
use tokio::sync::watch;

/// A `TENANTRY_*` count from the environment, or the default.
fn env_count<T: std::str::FromStr>(name: &str, default: T, what: &str) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(raw) if !raw.is_empty() => raw
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={raw:?} is not a number of {what}")),
        _ => Ok(default),
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|value| value == "1" || value == "true")
}

fn server_settings() -> anyhow::Result<ServerSettings> {
    let defaults = ServerSettings::default();
    Ok(ServerSettings {
        provision_rate_limit: env_count(
            "TENANTRY_PROVISION_RATE_LIMIT",
            defaults.provision_rate_limit,
            "requests per minute",
        )?,
        secure_cookies: env_flag("TENANTRY_COOKIE_SECURE"),
        trust_proxy: env_flag("TENANTRY_TRUST_PROXY"),
        max_live_streams: env_count(
            "TENANTRY_SSE_MAX_STREAMS",
            defaults.max_live_streams,
            "live streams",
        )?,
        max_live_streams_per_credential: env_count(
            "TENANTRY_SSE_MAX_STREAMS_PER_CREDENTIAL",
            defaults.max_live_streams_per_credential,
            "live streams",
        )?,
        ..defaults
    })
}

/// Turns `true` on SIGTERM or SIGINT.
fn shutdown_signal() -> watch::Receiver<bool> {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    let (sender, receiver) = watch::channel(false);
    // The handlers are installed here, before the caller says it is listening or running: installed inside the
    // task, they could come after a SIGTERM sent as soon as the process says so, which the default action turns
    // into a kill instead of a graceful stop.
    let terminate = signal(SignalKind::terminate()).ok();
    let interrupt = signal(SignalKind::interrupt()).ok();
    async fn received(signal: Option<Signal>) {
        match signal {
            Some(mut signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    tokio::spawn(async move {
        tokio::select! {
            () = received(terminate) => {}
            () = received(interrupt) => {}
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
        // Its variables are the operator's input.
        server_settings().map_err(Failure::bad_input)?,
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
    // Delivers the outbox's webhooks.
    let sender = tokio::spawn(tenantry_workflows::run_sender(
        app.platform.clone(),
        app.runner().owner().to_owned(),
        shutdown.clone(),
    ));
    // Tests and scripts read this line to find the port.
    println!("tenantry listening on http://{address}");
    print_bootstrap_hint(&app).await?;
    let mut shutdown_for_http = shutdown.clone();
    // The peer's address is what sign-in throttling counts (unless a trusted proxy names the client).
    let service = tenantry_server::router(state)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            let _ = shutdown_for_http.wait_for(|stopping| *stopping).await;
        })
        .await
        .map_err(|error| {
            CodedError::new(ErrorCode::Internal, format!("the server stopped: {error}"))
        })?;
    let _ = workers.await;
    let _ = refill.await;
    let _ = sender.await;
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
    let sender = tokio::spawn(tenantry_workflows::run_sender(
        app.platform.clone(),
        app.runner().owner().to_owned(),
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
    let _ = sender.await;
    app.platform.registry.close().await;
    Ok(ExitCode::SUCCESS)
}
