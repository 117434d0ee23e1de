//! Live job streams (Server-Sent Events): how many may be open, and how long each may stay open.
//!
//! - **Caps.** At most `max_per_credential` streams per token or session and `max_total` in all; past either, a
//!   request gets 503 with `Retry-After` (`TENANTRY_SSE_MAX_STREAMS_PER_CREDENTIAL`, `TENANTRY_SSE_MAX_STREAMS`).
//! - **A stream lasts as long as its credential.** One watcher task per server re-checks every credential that
//!   has streams open, once per credential however many streams it has: at once when the registry's
//!   [`AccessWatch`](tenantry_registry::AccessWatch) says something was committed (SQLite), and every
//!   [`RECHECK_EVERY`] in any case (PostgreSQL has no such counter). A revoked or expired token, or a session
//!   that ended, ends its streams within seconds.
//! - **An idle stream costs nothing.** A stream reads the registry only when the job-change signal moves: a
//!   runner of this process recorded progress, a NOTIFY from another process arrived (PostgreSQL), or the watcher
//!   saw another connection commit (SQLite). No stream polls on its own.

use crate::auth::{Credential, Principal};
use crate::error::ApiError;
use crate::state::ServerState;
use axum::http::StatusCode;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenantry_core::ErrorCode;
use tenantry_registry::now_millis;
use tokio::sync::watch;

/// How often every credential with open streams is checked again, whatever the registry says.
pub const RECHECK_EVERY: Duration = Duration::from_secs(2);
/// How often the watcher reads the registry's change counter where there is one (a local read of microseconds).
const CHANGE_POLL: Duration = Duration::from_millis(250);
/// What a refused stream is told to wait.
const RETRY_AFTER_SECS: u64 = 5;

/// How a credential is checked again.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CredentialCheck {
    Token(String),
    /// The SHA-256 of the session cookie's value.
    Session(String),
}

#[derive(Debug)]
struct Holder {
    n_open: usize,
    check: CredentialCheck,
    ended: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_credential: HashMap<String, Holder>,
}

/// The open live streams of this server, by credential.
#[derive(Debug)]
pub struct LiveStreams {
    max_total: usize,
    max_per_credential: usize,
    open: Mutex<Open>,
    watcher_started: AtomicBool,
}

/// One open stream's place under the caps, given back when the stream is dropped (the client went away or the
/// stream ended). `ended` turns true when the credential stops being valid.
#[derive(Debug)]
pub struct StreamTicket {
    streams: Arc<LiveStreams>,
    key: String,
    pub ended: watch::Receiver<bool>,
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        self.streams.close(&self.key);
    }
}

fn too_many(message: String) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::RateLimited,
        message,
    );
    error.retry_after = Some(RETRY_AFTER_SECS);
    error
}

impl LiveStreams {
    pub fn new(max_total: usize, max_per_credential: usize) -> LiveStreams {
        LiveStreams {
            max_total: max_total.max(1),
            max_per_credential: max_per_credential.max(1),
            open: Mutex::new(Open::default()),
            watcher_started: AtomicBool::new(false),
        }
    }

    /// Takes a place for a new stream of `principal`, or refuses past a cap (503, `Retry-After`).
    pub fn open(self: &Arc<Self>, principal: &Principal) -> Result<StreamTicket, ApiError> {
        let key = principal.credential_key();
        let check = match &principal.credential {
            Credential::Token { token_id } => CredentialCheck::Token(token_id.clone()),
            Credential::Session { session_hash, .. } => {
                CredentialCheck::Session(session_hash.clone())
            }
        };
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if open.total >= self.max_total {
            return Err(too_many(format!(
                "the server has {} live streams open, its limit; follow the job with GET /platform/jobs/{{job_id}} meanwhile",
                self.max_total
            )));
        }
        let holder = open
            .by_credential
            .entry(key.clone())
            .or_insert_with(|| Holder {
                n_open: 0,
                check,
                ended: watch::channel(false).0,
            });
        if holder.n_open >= self.max_per_credential {
            return Err(too_many(format!(
                "this token or session has {} live streams open, its limit; close one first",
                self.max_per_credential
            )));
        }
        holder.n_open += 1;
        let ended = holder.ended.subscribe();
        open.total += 1;
        metrics::gauge!("tenantry_live_streams").set(open.total as f64);
        Ok(StreamTicket {
            streams: Arc::clone(self),
            key,
            ended,
        })
    }

    fn close(&self, key: &str) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(holder) = open.by_credential.get_mut(key) {
            holder.n_open = holder.n_open.saturating_sub(1);
            if holder.n_open == 0 {
                open.by_credential.remove(key);
            }
            open.total = open.total.saturating_sub(1);
        }
        metrics::gauge!("tenantry_live_streams").set(open.total as f64);
    }

    /// How many streams are open.
    pub fn n_open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .total
    }

    fn credentials(&self) -> Vec<(CredentialCheck, watch::Sender<bool>)> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .by_credential
            .values()
            .filter(|holder| !*holder.ended.borrow())
            .map(|holder| (holder.check.clone(), holder.ended.clone()))
            .collect()
    }

    /// Starts [`watch_credentials`] the first time a stream opens.
    pub fn start_watcher(&self, state: &ServerState) {
        if !self.watcher_started.swap(true, Ordering::SeqCst) {
            tokio::spawn(watch_credentials(state.clone()));
        }
    }
}

/// Whether a credential is still good. A registry that cannot be read keeps streams open: an outage of the
/// registry is not a revocation.
async fn still_valid(state: &ServerState, check: &CredentialCheck) -> bool {
    let registry = &state.platform.registry;
    match check {
        CredentialCheck::Token(token_id) => match state.tokens.lookup(registry, token_id).await {
            Ok(Some(known)) => known.is_usable(now_millis()),
            Ok(None) => false,
            Err(_) => true,
        },
        CredentialCheck::Session(session_hash) => {
            !matches!(registry.get_session_with_user(session_hash).await, Ok(None))
        }
    }
}

async fn recheck(state: &ServerState) {
    for (check, ended) in state.live_streams.credentials() {
        if !still_valid(state, &check).await {
            ended.send_replace(true);
        }
    }
}

/// Runs until shutdown: wakes the streams when another connection committed to the registry (SQLite), and
/// ends the streams of credentials that stopped being valid.
async fn watch_credentials(state: ServerState) {
    let access = state.platform.registry.access_watch();
    let mut version = access.version();
    let tick = if version.is_some() {
        CHANGE_POLL
    } else {
        RECHECK_EVERY
    };
    let mut last_recheck = Instant::now();
    let mut shutdown = state.shutdown.clone();
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            changed = shutdown.changed() => if changed.is_err() { return },
        }
        if *shutdown.borrow() {
            return;
        }
        let now_version = access.version();
        let changed = now_version.is_some() && now_version != version;
        version = now_version;
        if state.live_streams.n_open() == 0 {
            continue;
        }
        if changed {
            state.job_changed();
        }
        if changed || last_recheck.elapsed() >= RECHECK_EVERY {
            recheck(&state).await;
            last_recheck = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantry_core::PlatformRole;

    fn principal(token_id: &str) -> Principal {
        Principal {
            user_id: "u".into(),
            email: "u@example.com".into(),
            role: PlatformRole::ReadOnly,
            tenant_slug: None,
            credential: Credential::Token {
                token_id: token_id.into(),
            },
        }
    }

    #[test]
    fn caps_per_credential_and_in_all_and_gives_places_back() {
        let streams = Arc::new(LiveStreams::new(3, 2));
        let first = streams.open(&principal("a")).unwrap();
        let _second = streams.open(&principal("a")).unwrap();
        let refused = streams.open(&principal("a")).unwrap_err();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.retry_after, Some(RETRY_AFTER_SECS));
        let _third = streams.open(&principal("b")).unwrap();
        assert!(streams.open(&principal("c")).is_err(), "3 in all");
        drop(first);
        assert_eq!(streams.n_open(), 2);
        assert!(streams.open(&principal("c")).is_ok());
    }
}
