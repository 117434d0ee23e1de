//! What the API remembers between requests, and why none of it is ever stale: the JSON of finished jobs, which are
//! never written again, and authenticated tokens, trusted only while the registry's change watch reads the same.
//!
//! Both exist for `GET /platform/jobs/{job_id}` under polling: each registry query through sqlx's SQLite driver hops
//! to a worker thread and back (twice, with the pool's ping), and those hops, not SQLite, were nearly all of the
//! request's cost. See BENCHMARKS.md.

use axum::body::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tenantry_core::{JobStatus, PlatformRole};
use tenantry_registry::{AccessWatch, Registry};

/// At most this many bytes of job JSON are remembered; the oldest entries go first.
const JOB_VIEW_BUDGET_BYTES: usize = 8 * 1024 * 1024;
/// A view larger than this is built afresh each time instead of crowding out the others.
const JOB_VIEW_MAX_BYTES: usize = 256 * 1024;
/// At most this many tokens are remembered; when full, all are forgotten and the cache refills from the registry.
const MAX_TOKENS: usize = 10_000;

/// The API's JSON of jobs that will never change again.
#[derive(Debug, Default)]
pub struct JobViewCache {
    inner: Mutex<JobViews>,
}

#[derive(Debug, Default)]
struct JobViews {
    by_id: HashMap<String, Bytes>,
    /// Insertion order, for eviction.
    order: VecDeque<String>,
    bytes: usize,
}

impl JobViewCache {
    /// Whether a job in this status may be remembered. A complete or cancelled job is never written again: every
    /// write to a job is fenced by its lease, which finishing gives up, and reopening takes only failed and
    /// rolled-back jobs. A failed job can still be retried, so it is read afresh like a running one.
    pub fn is_final(status: JobStatus) -> bool {
        matches!(status, JobStatus::Complete | JobStatus::Cancelled)
    }

    pub fn get(&self, job_id: &str) -> Option<Bytes> {
        self.inner.lock().ok()?.by_id.get(job_id).cloned()
    }

    /// Remembers the JSON of a job whose status [`JobViewCache::is_final`] accepted.
    pub fn insert(&self, job_id: &str, body: Bytes) {
        if body.len() > JOB_VIEW_MAX_BYTES {
            return;
        }
        let Ok(mut views) = self.inner.lock() else {
            return;
        };
        if views.by_id.contains_key(job_id) {
            return;
        }
        while views.bytes + body.len() > JOB_VIEW_BUDGET_BYTES {
            let Some(oldest) = views.order.pop_front() else {
                break;
            };
            if let Some(evicted) = views.by_id.remove(&oldest) {
                views.bytes -= evicted.len();
            }
        }
        views.bytes += body.len();
        views.order.push_back(job_id.to_owned());
        views.by_id.insert(job_id.to_owned(), body);
    }

    /// How many views are remembered (for tests).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .map(|views| views.by_id.len())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What authentication needs of a token and its owner. The owner's password hash is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownToken {
    pub token_id: String,
    pub secret_hash: String,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub user_id: String,
    pub email: String,
    pub role: PlatformRole,
    /// The tenant a `TENANT_ADMIN` is scoped to.
    pub tenant_slug: Option<String>,
}

impl KnownToken {
    /// Whether the token may be used at `now` (not revoked, not expired): checked on every request, so expiry
    /// needs no invalidation.
    pub fn is_usable(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expires_at| expires_at > now)
    }
}

/// API tokens as last read from the registry, trusted only while the registry has not changed since.
///
/// Why a revocation still takes effect at once, from any process: every lookup first reads the registry's change
/// counter ([`AccessWatch::version`]). If it differs from the one the remembered tokens were read under, they are
/// all forgotten before anything is trusted. A token read from the registry is remembered under the counter read
/// *before* the query, so a commit that lands between that reading and the query (or after it) moves the counter
/// and is seen by the very next request. Any commit at all counts, not only revocations, so this errs towards
/// reading again; an idle registry, the case that matters for polling, commits nothing. Where the registry offers no
/// such counter (PostgreSQL), nothing is remembered and every request reads the token, as it did before.
#[derive(Debug)]
pub struct TokenCache {
    watch: AccessWatch,
    inner: Mutex<Tokens>,
}

#[derive(Debug, Default)]
struct Tokens {
    /// The change counter the remembered tokens were read under.
    version: Option<i64>,
    by_id: HashMap<String, Arc<KnownToken>>,
}

impl TokenCache {
    pub fn new(watch: AccessWatch) -> TokenCache {
        TokenCache {
            watch,
            inner: Mutex::new(Tokens::default()),
        }
    }

    /// The token with this id and its owner, as the registry holds them now; `None` when there is no such token.
    pub async fn lookup(
        &self,
        registry: &Registry,
        token_id: &str,
    ) -> Result<Option<Arc<KnownToken>>, tenantry_registry::Error> {
        let version = self.watch.version();
        if let Some(version) = version {
            if let Some(known) = self.remembered(version, token_id) {
                return Ok(Some(known));
            }
        }
        let Some((token, user)) = registry.get_token_with_owner(token_id).await? else {
            return Ok(None);
        };
        let known = Arc::new(KnownToken {
            token_id: token.id,
            secret_hash: token.secret_hash,
            expires_at: token.expires_at,
            revoked_at: token.revoked_at,
            user_id: user.id,
            email: user.email,
            role: user.role,
            tenant_slug: user.tenant_slug,
        });
        if let Some(version) = version {
            self.remember(version, token_id, &known);
        }
        Ok(Some(known))
    }

    /// The remembered token, after forgetting everything if the registry changed since it was read.
    fn remembered(&self, version: i64, token_id: &str) -> Option<Arc<KnownToken>> {
        let mut tokens = self.inner.lock().ok()?;
        if tokens.version != Some(version) {
            tokens.by_id.clear();
            tokens.version = Some(version);
            return None;
        }
        tokens.by_id.get(token_id).cloned()
    }

    /// Remembers a token read after the counter read `version`, unless a later reading has already moved on.
    fn remember(&self, version: i64, token_id: &str, known: &Arc<KnownToken>) {
        let Ok(mut tokens) = self.inner.lock() else {
            return;
        };
        if tokens.version != Some(version) {
            return;
        }
        if tokens.by_id.len() >= MAX_TOKENS {
            tokens.by_id.clear();
        }
        tokens.by_id.insert(token_id.to_owned(), Arc::clone(known));
    }

    /// How many tokens are remembered (for tests).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .map(|tokens| tokens.by_id.len())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantry_registry::{ApiToken, PlatformUser, RegistryLocation};

    /// A SQLite registry in a fresh directory, opened twice: `server` is this process's handle, `other` stands for
    /// another process (the CLI): its own pool, its own connections.
    struct TwoHandles {
        directory: std::path::PathBuf,
        server: Registry,
        other: Registry,
    }

    impl TwoHandles {
        async fn open() -> TwoHandles {
            let directory =
                std::env::temp_dir().join(format!("tenantry-cache-{}", uuid::Uuid::now_v7()));
            let location = RegistryLocation::Sqlite(directory.join("registry.db"));
            let server = Registry::open(&location, 2).await.unwrap();
            let other = Registry::open(&location, 2).await.unwrap();
            TwoHandles {
                directory,
                server,
                other,
            }
        }

        async fn close(self) {
            self.server.close().await;
            self.other.close().await;
            std::fs::remove_dir_all(&self.directory).unwrap();
        }
    }

    async fn add_token(registry: &Registry, token_id: &str) {
        let user = PlatformUser {
            id: format!("user-{token_id}"),
            email: format!("{token_id}@example.com"),
            role: PlatformRole::Admin,
            password_hash: String::new(),
            created_at: 0,
            tenant_slug: None,
        };
        registry.add_user(&user, "test").await.unwrap();
        let token = ApiToken {
            id: token_id.to_owned(),
            user_id: user.id,
            name: "test".into(),
            secret_hash: "hash".into(),
            created_at: 0,
            expires_at: None,
            revoked_at: None,
        };
        registry.add_token(&token, "test").await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revocation_by_another_process_is_seen_by_the_next_lookup() {
        let handles = TwoHandles::open().await;
        add_token(&handles.other, "first").await;
        let cache = TokenCache::new(handles.server.access_watch());
        assert!(cache.watch.version().is_some(), "SQLite offers a counter");

        let version = cache.watch.version();
        let known = cache.lookup(&handles.server, "first").await.unwrap();
        assert!(known.unwrap().is_usable(0));
        assert_eq!(cache.len(), 1, "the token is remembered");
        assert_eq!(cache.watch.version(), version, "reading changes nothing");
        let again = cache.lookup(&handles.server, "first").await.unwrap();
        assert!(again.unwrap().is_usable(0));
        assert_eq!(cache.len(), 1);

        handles.other.revoke_token("first", "test").await.unwrap();
        let revoked = cache.lookup(&handles.server, "first").await.unwrap();
        assert!(
            !revoked.unwrap().is_usable(0),
            "the revocation is seen at once"
        );

        // A write through this process's own pool is another connection too.
        add_token(&handles.server, "second").await;
        cache.lookup(&handles.server, "second").await.unwrap();
        handles.server.revoke_token("second", "test").await.unwrap();
        let revoked = cache.lookup(&handles.server, "second").await.unwrap();
        assert!(!revoked.unwrap().is_usable(0));
        handles.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revocation_between_reading_the_counter_and_remembering_is_not_missed() {
        let handles = TwoHandles::open().await;
        add_token(&handles.other, "raced").await;
        let cache = TokenCache::new(handles.server.access_watch());
        // The steps of `lookup`, with the revocation landing after the token was read and before it is remembered.
        let version = cache.watch.version().unwrap();
        assert!(cache.remembered(version, "raced").is_none());
        let (token, user) = handles
            .server
            .get_token_with_owner("raced")
            .await
            .unwrap()
            .unwrap();
        handles.other.revoke_token("raced", "test").await.unwrap();
        let stale = Arc::new(KnownToken {
            token_id: token.id,
            secret_hash: token.secret_hash,
            expires_at: token.expires_at,
            revoked_at: token.revoked_at,
            user_id: user.id,
            email: user.email,
            role: user.role,
            tenant_slug: user.tenant_slug,
        });
        assert!(stale.is_usable(0));
        cache.remember(version, "raced", &stale);
        assert_eq!(cache.len(), 1);

        let next = cache.lookup(&handles.server, "raced").await.unwrap();
        assert!(
            !next.unwrap().is_usable(0),
            "the stale token is not trusted"
        );
        handles.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unknown_token_is_not_remembered() {
        let handles = TwoHandles::open().await;
        let cache = TokenCache::new(handles.server.access_watch());
        assert!(cache
            .lookup(&handles.server, "nobody")
            .await
            .unwrap()
            .is_none());
        assert!(cache.is_empty());
        // Issued later by another process, it is found.
        add_token(&handles.other, "nobody").await;
        assert!(cache
            .lookup(&handles.server, "nobody")
            .await
            .unwrap()
            .is_some());
        handles.close().await;
    }

    #[test]
    fn expiry_is_checked_on_every_use() {
        let known = KnownToken {
            token_id: "t".into(),
            secret_hash: "h".into(),
            expires_at: Some(1_000),
            revoked_at: None,
            user_id: "u".into(),
            email: "u@example.com".into(),
            role: PlatformRole::ReadOnly,
            tenant_slug: None,
        };
        assert!(known.is_usable(999));
        assert!(!known.is_usable(1_000));
    }

    #[test]
    fn only_jobs_that_cannot_change_are_remembered() {
        assert!(JobViewCache::is_final(JobStatus::Complete));
        assert!(JobViewCache::is_final(JobStatus::Cancelled));
        for status in [
            JobStatus::Pending,
            JobStatus::AwaitingApproval,
            JobStatus::InProgress,
            // Retry and rollback reopen these.
            JobStatus::Failed,
            JobStatus::RolledBack,
        ] {
            assert!(!JobViewCache::is_final(status), "{status:?}");
        }
    }

    #[test]
    fn job_views_stay_within_their_budget() {
        let cache = JobViewCache::default();
        let view = Bytes::from(vec![b'x'; JOB_VIEW_MAX_BYTES]);
        let fits = JOB_VIEW_BUDGET_BYTES / JOB_VIEW_MAX_BYTES;
        for index in 0..fits + 3 {
            cache.insert(&format!("job-{index}"), view.clone());
        }
        assert_eq!(cache.len(), fits);
        assert!(cache.get("job-0").is_none(), "the oldest went first");
        assert!(cache.get(&format!("job-{}", fits + 2)).is_some());
        cache.insert("too-big", Bytes::from(vec![b'x'; JOB_VIEW_MAX_BYTES + 1]));
        assert!(cache.get("too-big").is_none());
    }
}
