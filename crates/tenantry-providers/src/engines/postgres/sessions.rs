//! PostgreSQL sessions worth keeping: a pool of admin connections per server, and a tenant's session parked for a
//! moment between two phases of one provisioning job.
//!
//! Logging in costs about 7 ms on a local server (a new backend process plus SCRAM on both sides), more than most
//! of the statements tenantry sends, so a platform keeps its admin sessions and reuses them. They live in a
//! [`PostgresSessions`] the platform owns, not in process-wide statics, so two platforms in one process (tests)
//! never hand each other a session.

use crate::credentials::SecretString;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::Connection;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

/// Admin connections one platform keeps open to one server. Provisioning jobs hold one for a few statements at a
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
/// it, and a platform may be used from more than one runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AdminPoolKey {
    runtime: tokio::runtime::Id,
    url: [u8; 32],
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

/// The PostgreSQL sessions one platform keeps between calls: admin pools per server, and tenant sessions parked
/// between the phases of a job. Shared (through an `Arc`) by every [`super::PostgresServer`] the platform makes.
#[derive(Default)]
pub struct PostgresSessions {
    admin_pools: Mutex<HashMap<AdminPoolKey, PgPool>>,
    parked: Mutex<Vec<ParkedSession>>,
    next_parked_id: AtomicU64,
}

impl std::fmt::Debug for PostgresSessions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n_pools = self
            .admin_pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        let n_parked = self
            .parked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        write!(
            formatter,
            "PostgresSessions({n_pools} admin pools, {n_parked} parked)"
        )
    }
}

impl PostgresSessions {
    /// This platform's pool of admin connections to the server at `url` (made on first use; connects lazily).
    pub(super) fn admin_pool(&self, url: [u8; 32], options: &PgConnectOptions) -> PgPool {
        let key = AdminPoolKey {
            runtime: tokio::runtime::Handle::current().id(),
            url,
        };
        let mut pools = self
            .admin_pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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

    /// A tenant session parked by an earlier phase of the same job (or a login it started), if one is waiting.
    pub(super) async fn take_parked(&self, url: &SecretString) -> Option<PgConnection> {
        let url = url_key(url);
        let runtime = tokio::runtime::Handle::current().id();
        let waiting = {
            let mut parked = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
            let index = parked
                .iter()
                .position(|session| session.url == url && session.runtime == runtime)?;
            parked.swap_remove(index).session
        };
        waiting.into_connection().await
    }

    /// Keeps a tenant session open for [`PARKED_SESSION_TTL`] so that the job's next phase can use it; then closes
    /// it.
    pub(super) fn park(self: &Arc<Self>, url: &SecretString, connection: PgConnection) {
        self.keep(url, Waiting::Open(connection));
    }

    /// Starts logging in as the tenant now, in the background, so that the job's next phase finds the session
    /// open: a new session costs several milliseconds, which overlap with the job's bookkeeping between phases.
    pub(super) fn log_in_ahead(self: &Arc<Self>, url: &SecretString, options: PgConnectOptions) {
        let login = tokio::spawn(async move { super::connect(&options, "tenant database").await });
        self.keep(url, Waiting::LoggingIn(login));
    }

    fn keep(self: &Arc<Self>, url: &SecretString, session: Waiting) {
        let id = self.next_parked_id.fetch_add(1, Ordering::Relaxed);
        let evicted = {
            let mut parked = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
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
        // Weak: a platform dropped meanwhile drops its parked sessions with it; the timer keeps nothing alive.
        let sessions: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(PARKED_SESSION_TTL).await;
            let Some(sessions) = sessions.upgrade() else {
                return;
            };
            let expired = {
                let mut parked = sessions
                    .parked
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn parked_count(sessions: &PostgresSessions) -> usize {
        sessions
            .parked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    #[tokio::test]
    async fn one_platform_reuses_its_pool_and_another_has_its_own() {
        // Lazy pools: nothing is contacted, so no server is needed.
        let url = SecretString::new("postgres://admin@127.0.0.1:1/postgres".into());
        let options = PgConnectOptions::from_str(url.expose()).unwrap();
        let ours = PostgresSessions::default();
        let theirs = PostgresSessions::default();
        ours.admin_pool(url_key(&url), &options);
        ours.admin_pool(url_key(&url), &options);
        assert_eq!(ours.admin_pools.lock().unwrap().len(), 1);
        assert!(theirs.admin_pools.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_parked_session_is_found_only_by_the_platform_that_parked_it() {
        let url = SecretString::new("postgres://tenant@127.0.0.1:1/tenant".into());
        let ours = Arc::new(PostgresSessions::default());
        let theirs = Arc::new(PostgresSessions::default());
        // A login that failed: what is parked is enough to tell whose it is.
        let login = tokio::spawn(async { Err(crate::Error::Transient("no server".into())) });
        ours.keep(&url, Waiting::LoggingIn(login));
        assert!(theirs.take_parked(&url).await.is_none());
        assert_eq!(parked_count(&ours), 1);
        // Taken (its failed login gives no connection, so the caller logs in itself): nothing stays parked.
        assert!(ours.take_parked(&url).await.is_none());
        assert_eq!(parked_count(&ours), 0);
    }
}
