//! What every request handler shares: the platform, the job wake-up, the change signal for live events, the rate
//! limiters, the open live streams, the metrics recorder, the caches of finished jobs and of tokens, and the
//! settings of the server.

use crate::cache::{JobViewCache, TokenCache};
use crate::live::LiveStreams;
use crate::rate_limit::{RateLimiter, SignInThrottle};
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tenantry_engine::Runner;
use tenantry_workflows::Platform;
use tokio::sync::{watch, Notify};

/// Settings of the HTTP side.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Provisioning requests per principal per minute; 0 turns the limit off.
    pub provision_rate_limit: u32,
    /// Mark the session cookie `Secure` (set when served over HTTPS).
    pub secure_cookies: bool,
    /// Believe a proxy's `X-Forwarded-For` (last entry) and `X-Forwarded-Proto` (set when behind one).
    pub trust_proxy: bool,
    /// How long a console session lasts.
    pub session_ttl_secs: i64,
    /// Live job streams (SSE) open at once, in all and per credential.
    pub max_live_streams: usize,
    pub max_live_streams_per_credential: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            provision_rate_limit: 600,
            secure_cookies: false,
            trust_proxy: false,
            session_ttl_secs: 12 * 3600,
            max_live_streams: 1000,
            max_live_streams_per_credential: 20,
        }
    }
}

/// Shared by every handler. Cheap to clone.
#[derive(Clone)]
pub struct ServerState {
    pub platform: Platform,
    /// Runs retries and rollbacks' bookkeeping (reopen); jobs themselves run on the workers.
    pub runner: Runner,
    /// Wakes a worker when a job is submitted here.
    pub wake_workers: Arc<Notify>,
    /// Bumped whenever a job in this process records an event, so live streams look at once.
    pub job_changes: watch::Sender<u64>,
    pub rate_limiter: Arc<RateLimiter>,
    /// Counts failed sign-ins per account and per client address.
    pub sign_in_throttle: Arc<SignInThrottle>,
    /// The open live streams, by credential: their caps, and their end when the credential ends.
    pub live_streams: Arc<LiveStreams>,
    pub metrics: PrometheusHandle,
    pub settings: Arc<ServerSettings>,
    /// The JSON of complete and cancelled jobs, which never change again.
    pub job_views: Arc<JobViewCache>,
    /// Authenticated tokens, trusted only while the registry has not changed (see `cache::TokenCache`).
    pub tokens: Arc<TokenCache>,
    /// Turns true when the server shuts down; live streams end so connections can close.
    pub shutdown: watch::Receiver<bool>,
}

impl ServerState {
    pub fn new(
        platform: Platform,
        runner: Runner,
        settings: ServerSettings,
        shutdown: watch::Receiver<bool>,
    ) -> ServerState {
        let (job_changes, _) = watch::channel(0);
        let tokens = Arc::new(TokenCache::new(platform.registry.access_watch()));
        ServerState {
            platform,
            runner,
            wake_workers: Arc::new(Notify::new()),
            job_changes,
            rate_limiter: Arc::new(RateLimiter::new(settings.provision_rate_limit)),
            sign_in_throttle: Arc::new(SignInThrottle::default()),
            live_streams: Arc::new(LiveStreams::new(
                settings.max_live_streams,
                settings.max_live_streams_per_credential,
            )),
            metrics: crate::metrics::recorder_handle(),
            settings: Arc::new(settings),
            job_views: Arc::new(JobViewCache::default()),
            tokens,
            shutdown,
        }
    }

    /// Tells live streams that a job changed outside a runner (an approval decision).
    pub fn job_changed(&self) {
        self.job_changes
            .send_modify(|version| *version = version.wrapping_add(1));
    }

    /// A runner for workers in this process: its progress wakes the live event streams.
    pub fn worker_runner(&self) -> Runner {
        let changes = self.job_changes.clone();
        self.runner
            .clone()
            .with_progress(Arc::new(move |_progress: &tenantry_engine::Progress| {
                changes.send_modify(|version| *version = version.wrapping_add(1));
            }))
    }
}
