//! PostgreSQL sessions worth keeping: a pool of admin connections per server, and a tenant's session parked for a
//! moment between two phases of one provisioning job.
//!
//! Logging in costs about 7 ms on a local server (a new backend process plus SCRAM on both sides), more than most
//! of the statements tenantry sends, so a process keeps its admin sessions and reuses them.

use crate::credentials::SecretString;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::Connection;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

/// Admin connections one process keeps open to one server. Provisioning jobs hold one for a few statements at a
/// time, so a handful serves many concurrent jobs.
const ADMIN_POOL_SIZE: u32 = 8;
/// An admin connection unused this long is closed, so an idle control plane holds no sessions on its servers.
const ADMIN_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a tenant session waits for the next phase of its job before it is closed.
const PARKED_SESSION_TTL: Duration = Duration::from_secs(10);
/// At most this many tenant sessions are parked at once; the oldest is closed to make room.
const MAX_PARKED_SESSIONS: usize = 32;

/// The SHA-256 of a connection URL: a map key that does not keep the password in the clear.
pub(super) fn url_key(url: &SecretString) -> [u8; 32] {
    Sha256::digest(url.expose().as_bytes()).into()
}

/// Pools are keyed by runtime as well as by URL: a connection belongs to the runtime that opened it and dies with
/// it, and test binaries run one runtime per test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AdminPoolKey {
    runtime: tokio::runtime::Id,
    url: [u8; 32],
}

static ADMIN_POOLS: LazyLock<Mutex<HashMap<AdminPoolKey, PgPool>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// This process's pool of admin connections to the server at `url` (made on first use; connects lazily).
pub(super) fn admin_pool(url: [u8; 32], options: &PgConnectOptions) -> PgPool {
    let key = AdminPoolKey {
        runtime: tokio::runtime::Handle::current().id(),
        url,
    };
    let mut pools = ADMIN_POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    pools
        .entry(key)
        .or_insert_with(|| {
            PgPoolOptions::new()
                .max_connections(ADMIN_POOL_SIZE)
                .min_connections(0)
                .acquire_timeout(super::CONNECT_TIMEOUT)
                .idle_timeout(Some(ADMIN_IDLE_TIMEOUT))
                .connect_lazy_with(options.clone())
        })
        .clone()
}

/// A tenant session waiting for the next phase: open, or still logging in.
enum Waiting {
    Open(PgConnection),
    LoggingIn(tokio::task::JoinHandle<crate::Result<PgConnection>>),
}

impl Waiting {
    /// The session, once it is open (`None` if its login failed; the caller then logs in itself).
    async fn into_connection(self) -> Option<PgConnection> {
        match self {
            Waiting::Open(connection) => Some(connection),
            Waiting::LoggingIn(login) => login.await.ok()?.ok(),
        }
    }

    async fn close(self) {
        if let Some(connection) = self.into_connection().await {
            let _ = connection.close().await;
        }
    }
}

struct ParkedSession {
    id: u64,
    runtime: tokio::runtime::Id,
    url: [u8; 32],
    session: Waiting,
}

static PARKED_SESSIONS: LazyLock<Mutex<Vec<ParkedSession>>> =
    LazyLock::new(|| Mutex::new(Vec::new()));
static NEXT_PARKED_ID: AtomicU64 = AtomicU64::new(1);

/// A tenant session parked by an earlier phase of the same job (or a login it started), if one is waiting.
pub(super) async fn take_parked(url: &SecretString) -> Option<PgConnection> {
    let url = url_key(url);
    let runtime = tokio::runtime::Handle::current().id();
    let waiting = {
        let mut parked = PARKED_SESSIONS
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let index = parked
            .iter()
            .position(|session| session.url == url && session.runtime == runtime)?;
        parked.swap_remove(index).session
    };
    waiting.into_connection().await
}

/// Keeps a tenant session open for [`PARKED_SESSION_TTL`] so that the job's next phase can use it; then closes it.
pub(super) fn park(url: &SecretString, connection: PgConnection) {
    keep(url, Waiting::Open(connection));
}

/// Starts logging in as the tenant now, in the background, so that the job's next phase finds the session open:
/// a new session costs several milliseconds, which overlap with the job's bookkeeping between phases.
pub(super) fn log_in_ahead(url: &SecretString, options: PgConnectOptions) {
    let login = tokio::spawn(async move { super::connect(&options, "tenant database").await });
    keep(url, Waiting::LoggingIn(login));
}

fn keep(url: &SecretString, session: Waiting) {
    let id = NEXT_PARKED_ID.fetch_add(1, Ordering::Relaxed);
    let evicted = {
        let mut parked = PARKED_SESSIONS
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        parked.push(ParkedSession {
            id,
            runtime: tokio::runtime::Handle::current().id(),
            url: url_key(url),
            session,
        });
        (parked.len() > MAX_PARKED_SESSIONS).then(|| parked.remove(0))
    };
    if let Some(evicted) = evicted {
        tokio::spawn(evicted.session.close());
    }
    tokio::spawn(async move {
        tokio::time::sleep(PARKED_SESSION_TTL).await;
        let expired = {
            let mut parked = PARKED_SESSIONS
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            parked
                .iter()
                .position(|session| session.id == id)
                .map(|index| parked.swap_remove(index))
        };
        if let Some(expired) = expired {
            expired.session.close().await;
        }
    });
}
