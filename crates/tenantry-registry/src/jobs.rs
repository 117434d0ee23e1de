//! Durable jobs: creation with their phases, leases with fencing tokens, phase and log events, placement, finish.
//!
//! Every write made on behalf of a running job carries its [`Fence`]: the job id and the lease token the worker
//! got when it claimed the job. A write whose token is no longer current changes nothing and fails with
//! [`Error::Fenced`], so a worker whose lease was taken over cannot disturb the new owner.

use crate::audit::{insert_audit, insert_audits};
use crate::records::{EventKind, JobEvent, JobRecord, NewAuditEvent, PhaseRecord, ServerRecord};
use crate::store::now_millis;
use crate::{Error, Registry, Result};
use sqlx::AnyConnection;
use tenantry_core::{EngineKind, JobKind, JobStatus, PhaseStatus, ServerStatus, TenantStatus};

/// The status a finished job gives its subject. A job is recorded under a subject (`jobs.tenant_slug`), which is a
/// tenant: the registry says so, so that the runtime that ends jobs need not.
pub type SubjectStatus = TenantStatus;

/// Proof of holding a job's lease, carried by every write a worker makes for that job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub job_id: String,
    pub token: i64,
}

/// A job to create, with the names of its phases in order.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub kind: JobKind,
    pub tenant_slug: String,
    pub params: serde_json::Value,
    pub phases: Vec<String>,
    pub actor: String,
    /// The plan the job works for, so estimates can use recent jobs of the same plan.
    pub plan: Option<String>,
    /// An `Idempotency-Key` to remember with the job, in the same transaction.
    pub idempotency: Option<IdempotencyKey>,
    /// Set when the job must wait for a PLATFORM_ADMIN before any phase runs.
    pub approval: Option<ApprovalRequest>,
    /// Set when the process that records the job will run it: the job is created holding this lease, so no
    /// worker can claim it first. Ignored for a job that waits for approval (nobody may run it yet).
    pub lease: Option<NewLease>,
}

/// The lease a job is created with, for the process that will run it.
#[derive(Debug, Clone)]
pub struct NewLease {
    /// The runner's owner id (`host:pid:start-time`).
    pub owner: String,
    pub ttl_millis: i64,
}

/// Why a new job waits for approval, and until when.
#[derive(Debug, Clone)]
pub struct ApprovalRequest {
    /// Unix milliseconds after which the request lapses (`E_APPROVAL_EXPIRED`).
    pub expires_at: i64,
    /// Recorded in the `APPROVAL_REQUESTED` audit event (budget, threshold, plan rule).
    pub details: serde_json::Value,
    /// The job log's first line: why it waits, in words.
    pub reason: String,
}

/// A client's `Idempotency-Key`, scoped to who sent it, with a hash of the request it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub principal: String,
    pub key: String,
    pub request_hash: String,
}

/// Which jobs to list.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub tenant_slug: Option<String>,
    pub status: Option<JobStatus>,
    pub limit: i64,
}

/// Where a provisioning job asks to be placed.
#[derive(Debug, Clone)]
pub enum PlacementRequest {
    /// This server, if it is active and has room.
    Named(String),
    /// The active server of this engine (any engine when `None`) in this region with the most free room.
    Auto {
        engine: Option<EngineKind>,
        region: String,
    },
}

/// The outcome of a placement.
#[derive(Debug, Clone)]
pub enum Placement {
    Placed(ServerRecord),
    /// The named server does not exist or is not active.
    ServerUnavailable,
    /// No eligible server has room below its capacity hint (`candidates` counts the eligible servers).
    NoCapacity {
        candidates: usize,
    },
}

const JOB_COLUMNS: &str =
    "id, kind, tenant_slug, status, params, state, placed_server, error_code, error_message, actor, plan,
    lease_owner, lease_token, lease_expires_at, approval_expires_at, created_at, started_at, finished_at, updated_at";

pub(crate) const LIVE_STATUSES: &str = "('pending', 'awaiting_approval', 'in_progress')";

/// Checks, inside a transaction, that the fence still holds the job's lease. On PostgreSQL the update also
/// locks the job row until commit, so no takeover can slip in between this check and the transaction's writes.
pub(crate) async fn check_fence(connection: &mut AnyConnection, fence: &Fence) -> Result<()> {
    let touched = sqlx::query("UPDATE jobs SET updated_at = $1 WHERE id = $2 AND lease_token = $3")
        .bind(now_millis())
        .bind(&fence.job_id)
        .bind(fence.token)
        .execute(connection)
        .await?;
    if touched.rows_affected() == 1 {
        Ok(())
    } else {
        Err(Error::Fenced {
            job_id: fence.job_id.clone(),
        })
    }
}

/// Records a job (its phases, its `JOB_CREATED` audit event, its approval request) inside the caller's
/// transaction: what `create_job` does, and what a decision that starts a job (a change request's approval) does
/// together with the decision.
pub(crate) async fn insert_job(connection: &mut AnyConnection, job: &NewJob) -> Result<()> {
    let now = now_millis();
    if let Some(idempotency) = &job.idempotency {
        let remembered = sqlx::query(
                "INSERT INTO idempotency_keys (principal, key, request_hash, job_id, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&idempotency.principal)
            .bind(&idempotency.key)
            .bind(&idempotency.request_hash)
            .bind(&job.id)
            .bind(now)
            .execute(&mut *connection)
            .await;
        match remembered.map_err(Error::from) {
            Ok(_) => {}
            Err(Error::Conflict { .. }) => {
                return Err(Error::Conflict {
                    constraint: "idempotency_key".into(),
                })
            }
            Err(other) => return Err(other),
        }
    }
    // A job created leased is claimed in the same transaction, exactly as `claim_job` would claim it: in
    // progress, started, lease token 1. Until its lease expires no worker's claim matches it.
    let lease = job.lease.as_ref().filter(|_| job.approval.is_none());
    let status = if job.approval.is_some() {
        JobStatus::AwaitingApproval
    } else if lease.is_some() {
        JobStatus::InProgress
    } else {
        JobStatus::Pending
    };
    sqlx::query(
            "INSERT INTO jobs (id, kind, tenant_slug, status, params, state, actor, plan, approval_expires_at,
                               lease_owner, lease_token, lease_expires_at, started_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, '{}', $6, $7, $8, $9, $10, $11, $12, $13, $13)",
        )
        .bind(&job.id)
        .bind(job.kind.as_str())
        .bind(&job.tenant_slug)
        .bind(status.as_str())
        .bind(job.params.to_string())
        .bind(&job.actor)
        .bind(&job.plan)
        .bind(job.approval.as_ref().map(|approval| approval.expires_at))
        .bind(lease.map(|lease| lease.owner.clone()))
        .bind(if lease.is_some() { 1_i64 } else { 0 })
        .bind(lease.map(|lease| now + lease.ttl_millis))
        .bind(lease.map(|_| now))
        .bind(now)
        .execute(&mut *connection)
        .await?;
    // One statement for all the phases (a workflow has about a dozen): on SQLite each statement is a round trip
    // to the connection's thread.
    let rows: Vec<String> = (0..job.phases.len())
        .map(|position| format!("($1, {position}, ${}, $2)", position + 3))
        .collect();
    let statement = format!(
        "INSERT INTO job_phases (job_id, position, name, status) VALUES {}",
        rows.join(", ")
    );
    let mut insert_phases = sqlx::query(&statement)
        .bind(&job.id)
        .bind(PhaseStatus::Pending.as_str());
    for name in &job.phases {
        insert_phases = insert_phases.bind(name);
    }
    if !job.phases.is_empty() {
        insert_phases.execute(&mut *connection).await?;
    }
    crate::notify::notify(connection, crate::notify::JOBS_CHANNEL, &job.id).await?;
    insert_audit(
        connection,
        &NewAuditEvent {
            actor: job.actor.clone(),
            event_type: "JOB_CREATED",
            tenant_slug: Some(job.tenant_slug.clone()),
            job_id: Some(job.id.clone()),
            details: serde_json::json!({ "kind": job.kind }),
        },
    )
    .await?;
    if let Some(approval) = &job.approval {
        insert_event(
            connection,
            &job.id,
            EventKind::Log,
            None,
            None,
            "info",
            &approval.reason,
        )
        .await?;
        insert_audit(
            connection,
            &NewAuditEvent {
                actor: job.actor.clone(),
                event_type: "APPROVAL_REQUESTED",
                tenant_slug: Some(job.tenant_slug.clone()),
                job_id: Some(job.id.clone()),
                details: approval.details.clone(),
            },
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn insert_event(
    connection: &mut AnyConnection,
    job_id: &str,
    kind: EventKind,
    phase: Option<&str>,
    status: Option<&str>,
    level: &str,
    message: &str,
) -> Result<()> {
    insert_events(
        connection,
        job_id,
        &[NewJobEvent {
            at: now_millis(),
            kind,
            phase,
            status,
            level,
            message,
        }],
    )
    .await
}

/// One row of `job_events`, for [`insert_events`] (the one writer of that table).
struct NewJobEvent<'a> {
    at: i64,
    kind: EventKind,
    phase: Option<&'a str>,
    status: Option<&'a str>,
    level: &'a str,
    message: &'a str,
}

/// Rows per `INSERT` in [`insert_events`]: at 6 bound values a row, far below the bound-parameter limits of both
/// databases (SQLite 32,766, PostgreSQL 65,535).
const EVENTS_PER_INSERT: usize = 256;

/// Writes a job's events in order, many rows per statement. On SQLite every statement is a round trip to the
/// connection's thread, so a phase's end (its log lines and two transitions) costs one statement instead of three or
/// more. The ids keep the order given: rows of one `INSERT` take ids in the order of its `VALUES`.
async fn insert_events(
    connection: &mut AnyConnection,
    job_id: &str,
    events: &[NewJobEvent<'_>],
) -> Result<()> {
    for chunk in events.chunks(EVENTS_PER_INSERT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|row| {
                let first = 2 + row * 6;
                format!(
                    "($1, ${}, ${}, ${}, ${}, ${}, ${})",
                    first,
                    first + 1,
                    first + 2,
                    first + 3,
                    first + 4,
                    first + 5
                )
            })
            .collect();
        let statement = format!(
            "INSERT INTO job_events (job_id, at, kind, phase, status, level, message) VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(&statement).bind(job_id);
        for event in chunk {
            let kind = match event.kind {
                EventKind::Phase => "phase",
                EventKind::Log => "log",
            };
            query = query
                .bind(event.at)
                .bind(kind)
                .bind(event.phase)
                .bind(event.status)
                .bind(event.level)
                .bind(event.message);
        }
        query.execute(&mut *connection).await?;
    }
    if events.is_empty() {
        return Ok(());
    }
    crate::notify::notify(connection, crate::notify::JOB_EVENTS_CHANNEL, job_id).await
}

/// A log line a run wrote, waiting to go to the registry with the run's next write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLogLine {
    /// When it was logged (milliseconds since the epoch).
    pub at: i64,
    pub phase: Option<String>,
    pub level: String,
    pub message: String,
}

/// One phase's move to a new status, with the event message that records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseTransition {
    pub position: i64,
    pub status: PhaseStatus,
    pub message: String,
}

impl Registry {
    /// Records a job and its phases before any side effect. `Conflict { constraint: "idempotency_key" }` when the
    /// key was used meanwhile; `Conflict` on the slug when it already has an unfinished job.
    pub async fn create_job(&self, job: &NewJob) -> Result<JobRecord> {
        let mut transaction = self.begin_write().await?;
        insert_job(&mut transaction, job).await?;
        transaction.commit().await?;
        self.get_job(&job.id).await
    }

    pub async fn get_job(&self, job_id: &str) -> Result<JobRecord> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("job {job_id:?}"),
            })?;
        let phases = self.job_phases(job_id).await?;
        JobRecord::from_row(&row, phases)
    }

    async fn job_phases(&self, job_id: &str) -> Result<Vec<PhaseRecord>> {
        let rows = sqlx::query(
            "SELECT position, name, status, attempts, started_at, finished_at FROM job_phases
             WHERE job_id = $1 ORDER BY position",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(PhaseRecord::from_row).collect()
    }

    /// What a schedule of one job kind needs: per tenant, when a job of `kind` last completed for it (Unix
    /// milliseconds), and how many jobs of `kind` are unfinished now (so a schedule starts only so many at once).
    pub async fn job_kind_schedule(
        &self,
        kind: JobKind,
    ) -> Result<(std::collections::HashMap<String, i64>, i64)> {
        let rows = sqlx::query(
            "SELECT tenant_slug, MAX(finished_at) AS last_finished FROM jobs
             WHERE kind = $1 AND status = 'complete' AND finished_at IS NOT NULL GROUP BY tenant_slug",
        )
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut last = std::collections::HashMap::new();
        for row in &rows {
            last.insert(
                crate::store::get::<String>(row, "tenant_slug")?,
                crate::store::get::<i64>(row, "last_finished")?,
            );
        }
        let row = sqlx::query(
            "SELECT COUNT(*) AS n_live FROM jobs WHERE kind = $1 AND status IN ('pending', 'in_progress')",
        )
        .bind(kind.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok((last, crate::store::get::<i64>(&row, "n_live")?))
    }

    /// Jobs, newest first, each with its phases.
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs
             WHERE (CAST($1 AS TEXT) IS NULL OR tenant_slug = $1) AND (CAST($2 AS TEXT) IS NULL OR status = $2)
             ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(&filter.tenant_slug)
        .bind(filter.status.map(JobStatus::as_str))
        .bind(if filter.limit > 0 { filter.limit } else { 50 })
        .fetch_all(&self.pool)
        .await?;
        let job_ids = rows
            .iter()
            .map(|row| crate::store::get::<String>(row, "id"))
            .collect::<Result<Vec<_>>>()?;
        let mut phases_by_job = self.phases_of_jobs(&job_ids).await?;
        rows.iter()
            .zip(&job_ids)
            .map(|(row, job_id)| {
                JobRecord::from_row(row, phases_by_job.remove(job_id).unwrap_or_default())
            })
            .collect()
    }

    /// The phases of many jobs in a few queries (one per chunk of ids), rather than one query per job.
    async fn phases_of_jobs(
        &self,
        job_ids: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<PhaseRecord>>> {
        // Well below both backends' limit on bound parameters.
        const IDS_PER_QUERY: usize = 500;
        let mut phases_by_job: std::collections::HashMap<String, Vec<PhaseRecord>> =
            std::collections::HashMap::new();
        for chunk in job_ids.chunks(IDS_PER_QUERY) {
            let placeholders: Vec<String> =
                (1..=chunk.len()).map(|index| format!("${index}")).collect();
            let sql = format!(
                "SELECT job_id, position, name, status, attempts, started_at, finished_at FROM job_phases
                 WHERE job_id IN ({}) ORDER BY job_id, position",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for job_id in chunk {
                query = query.bind(job_id);
            }
            for row in query.fetch_all(&self.pool).await? {
                let job_id: String = crate::store::get(&row, "job_id")?;
                phases_by_job
                    .entry(job_id)
                    .or_default()
                    .push(PhaseRecord::from_row(&row)?);
            }
        }
        Ok(phases_by_job)
    }

    /// The unfinished job holding a slug, if any.
    pub async fn live_job_for_slug(&self, tenant_slug: &str) -> Result<Option<JobRecord>> {
        let job_id: Option<String> = sqlx::query_scalar(&format!(
            "SELECT id FROM jobs WHERE tenant_slug = $1 AND status IN {LIVE_STATUSES}"
        ))
        .bind(tenant_slug)
        .fetch_optional(&self.pool)
        .await?;
        match job_id {
            Some(job_id) => Ok(Some(self.get_job(&job_id).await?)),
            None => Ok(None),
        }
    }

    /// Takes the lease on an unfinished job: when nobody holds it, when the lease expired, or when the caller
    /// has established that `dead_owner` (the recorded owner) is gone. Returns the new fence, or `None`.
    pub async fn claim_job(
        &self,
        job_id: &str,
        owner: &str,
        lease_ttl_millis: i64,
        dead_owner: Option<&str>,
    ) -> Result<Option<Fence>> {
        let now = now_millis();
        let token: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE jobs SET lease_owner = $1, lease_token = lease_token + 1, lease_expires_at = $2,
                 status = CASE WHEN status = 'pending' THEN 'in_progress' ELSE status END,
                 started_at = COALESCE(started_at, $3), updated_at = $3
             WHERE id = $4 AND status IN {LIVE_STATUSES} AND status <> 'awaiting_approval'
               AND (lease_owner IS NULL OR lease_expires_at < $3 OR lease_owner = CAST($5 AS TEXT))
             RETURNING lease_token"
        ))
        .bind(owner)
        .bind(now + lease_ttl_millis)
        .bind(now)
        .bind(job_id)
        .bind(dead_owner)
        .fetch_optional(&self.pool)
        .await?;
        Ok(token.map(|token| Fence {
            job_id: job_id.to_owned(),
            token,
        }))
    }

    /// Claims the oldest job that is waiting or whose lease expired, for a worker. Workers on PostgreSQL skip
    /// rows another worker is claiming (`FOR UPDATE SKIP LOCKED`); on SQLite the statement itself is atomic.
    pub async fn claim_next_job(
        &self,
        owner: &str,
        lease_ttl_millis: i64,
    ) -> Result<Option<Fence>> {
        let now = now_millis();
        let skip_locked = match self.dialect {
            crate::Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            crate::Dialect::Sqlite => "",
        };
        let claimed: Option<(String, i64)> = sqlx::query_as(&format!(
            "UPDATE jobs SET lease_owner = $1, lease_token = lease_token + 1, lease_expires_at = $2,
                 status = CASE WHEN status = 'pending' THEN 'in_progress' ELSE status END,
                 started_at = COALESCE(started_at, $3), updated_at = $3
             WHERE id = (SELECT id FROM jobs
                         WHERE status IN ('pending', 'in_progress') AND (lease_owner IS NULL OR lease_expires_at < $3)
                         ORDER BY created_at LIMIT 1{skip_locked})
             RETURNING id, lease_token"
        ))
        .bind(owner)
        .bind(now + lease_ttl_millis)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(claimed.map(|(job_id, token)| Fence { job_id, token }))
    }

    /// Jobs in progress whose lease is still current (their owner may have died without its lease expiring yet).
    pub async fn leased_jobs(&self) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT id, lease_owner FROM jobs WHERE status = 'in_progress' AND lease_owner IS NOT NULL AND lease_expires_at >= $1",
        )
        .bind(now_millis())
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many jobs there are of each kind and status.
    pub async fn job_counts(&self) -> Result<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT kind, status, COUNT(*) FROM jobs GROUP BY kind, status ORDER BY kind, status",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many jobs ended with each error code.
    pub async fn failure_counts(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT error_code, COUNT(*) FROM jobs WHERE error_code IS NOT NULL GROUP BY error_code ORDER BY error_code",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// How long each job of `kind` that completed at or after `since` (Unix millis) took from its first claim to
    /// its end, in milliseconds, with its plan (empty when it has none), by plan and then duration. The console
    /// works out the percentiles: the two backends share no percentile function.
    pub async fn completed_job_durations(
        &self,
        kind: JobKind,
        since: i64,
    ) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT COALESCE(plan, ''), finished_at - started_at FROM jobs
             WHERE kind = $1 AND status = 'complete' AND finished_at >= $2 AND started_at IS NOT NULL
             ORDER BY 1, 2",
        )
        .bind(kind.as_str())
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many jobs of `kind` that ended at or after `since` (Unix millis) failed or were rolled back, by error
    /// code, the most common first. A cancelled job (rejected, or its approval lapsed) is a decision, not a failure.
    pub async fn failure_counts_since(
        &self,
        kind: JobKind,
        since: i64,
    ) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT error_code, COUNT(*) FROM jobs
             WHERE kind = $1 AND status IN ('failed', 'rolled_back') AND error_code IS NOT NULL AND finished_at >= $2
             GROUP BY error_code ORDER BY COUNT(*) DESC, error_code",
        )
        .bind(kind.as_str())
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The mean duration of each phase over the last `n_jobs` completed jobs of this kind (and plan, if given).
    pub async fn recent_phase_durations(
        &self,
        kind: &str,
        plan: Option<&str>,
        n_jobs: i64,
    ) -> Result<Vec<(String, f64)>> {
        Ok(sqlx::query_as(
            "SELECT p.name, CAST(AVG(p.finished_at - p.started_at) AS DOUBLE PRECISION)
             FROM job_phases p
             JOIN (SELECT id FROM jobs WHERE kind = $1 AND status = 'complete' AND (CAST($2 AS TEXT) IS NULL OR plan = $2)
                   ORDER BY finished_at DESC LIMIT $3) recent ON recent.id = p.job_id
             WHERE p.status = 'applied' AND p.started_at IS NOT NULL AND p.finished_at IS NOT NULL
             GROUP BY p.name",
        )
        .bind(kind)
        .bind(plan)
        .bind(n_jobs)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Extends the lease; `Fenced` when it was taken over.
    pub async fn renew_lease(&self, fence: &Fence, lease_ttl_millis: i64) -> Result<()> {
        let renewed =
            sqlx::query("UPDATE jobs SET lease_expires_at = $1 WHERE id = $2 AND lease_token = $3")
                .bind(now_millis() + lease_ttl_millis)
                .bind(&fence.job_id)
                .bind(fence.token)
                .execute(&self.pool)
                .await?;
        if renewed.rows_affected() == 1 {
            Ok(())
        } else {
            Err(Error::Fenced {
                job_id: fence.job_id.clone(),
            })
        }
    }

    /// Gives the lease back without finishing the job (a worker shutting down), so another can take it at once.
    /// Like finishing and reopening, it advances the token, so the old fence stops working at once.
    pub async fn release_lease(&self, fence: &Fence) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        sqlx::query(
            "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL, lease_token = lease_token + 1
             WHERE id = $1 AND lease_token = $2",
        )
        .bind(&fence.job_id)
        .bind(fence.token)
        .execute(&mut *transaction)
        .await?;
        crate::notify::notify(&mut transaction, crate::notify::JOBS_CHANNEL, &fence.job_id).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// A run's bookkeeping in one transaction: log lines written since the last write (each with the time it was
    /// logged), then the phase transitions in order, then the job's new state. The runner folds "phase N applied"
    /// and "phase N+1 running" into one call, with N's log lines: one registry write per phase instead of three or
    /// four, which is most of what a fast job spends on its records.
    pub async fn record_progress(
        &self,
        fence: &Fence,
        logs: &[JobLogLine],
        transitions: &[PhaseTransition],
        state: Option<&serde_json::Value>,
    ) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        let now = now_millis();
        let mut phase_names = Vec::with_capacity(transitions.len());
        for transition in transitions {
            let status = transition.status.as_str();
            let name: String = sqlx::query_scalar(
                "UPDATE job_phases SET status = $1,
                     attempts = attempts + CASE WHEN $1 = 'running' THEN 1 ELSE 0 END,
                     started_at = CASE WHEN $1 IN ('running', 'undoing') THEN $2 ELSE started_at END,
                     finished_at = CASE WHEN $1 IN ('running', 'undoing') THEN NULL ELSE $2 END
                 WHERE job_id = $3 AND position = $4 RETURNING name",
            )
            .bind(status)
            .bind(now)
            .bind(&fence.job_id)
            .bind(transition.position)
            .fetch_one(&mut *transaction)
            .await?;
            phase_names.push(name);
        }
        // The log lines first: they were written while the phase ran, before it ended.
        let events: Vec<NewJobEvent> = logs
            .iter()
            .map(|line| NewJobEvent {
                at: line.at,
                kind: EventKind::Log,
                phase: line.phase.as_deref(),
                status: None,
                level: &line.level,
                message: &line.message,
            })
            .chain(
                transitions
                    .iter()
                    .zip(&phase_names)
                    .map(|(transition, name)| NewJobEvent {
                        at: now,
                        kind: EventKind::Phase,
                        phase: Some(name),
                        status: Some(transition.status.as_str()),
                        level: "info",
                        message: &transition.message,
                    }),
            )
            .collect();
        insert_events(&mut transaction, &fence.job_id, &events).await?;
        if let Some(state) = state {
            sqlx::query("UPDATE jobs SET state = $1 WHERE id = $2")
                .bind(state.to_string())
                .bind(&fence.job_id)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Ends a job: its status and error, its subject's new status if any, and the audit events, in one
    /// transaction.
    pub async fn finish_job(
        &self,
        fence: &Fence,
        status: JobStatus,
        error: Option<(&str, &str)>,
        subject_status: Option<SubjectStatus>,
        audit_events: &[NewAuditEvent],
    ) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        let now = now_millis();
        let tenant_slug: String = sqlx::query_scalar(
            "UPDATE jobs SET status = $1, error_code = $2, error_message = $3, finished_at = $4,
                 lease_owner = NULL, lease_expires_at = NULL, lease_token = lease_token + 1, updated_at = $4
             WHERE id = $5 RETURNING tenant_slug",
        )
        .bind(status.as_str())
        .bind(error.map(|(code, _)| code))
        .bind(error.map(|(_, message)| message))
        .bind(now)
        .bind(&fence.job_id)
        .fetch_one(&mut *transaction)
        .await?;
        if let Some(subject_status) = subject_status {
            sqlx::query("UPDATE tenants SET status = $1, updated_at = $2 WHERE slug = $3")
                .bind(subject_status.as_str())
                .bind(now)
                .bind(&tenant_slug)
                .execute(&mut *transaction)
                .await?;
        }
        let message = match error {
            Some((code, message)) => format!("job {status}: {code}: {message}"),
            None => format!("job {status}"),
        };
        insert_event(
            &mut transaction,
            &fence.job_id,
            EventKind::Log,
            None,
            None,
            "info",
            &message,
        )
        .await?;
        insert_audits(&mut transaction, audit_events).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Puts a finished job back in progress so an operator can retry it or roll it back. `Conflict` when another
    /// job holds the slug now; `NotFound` when the job is not in a state that allows it.
    pub async fn reopen_job(
        &self,
        job_id: &str,
        actor: &str,
        event_type: &'static str,
        state: &serde_json::Value,
        reset_unapplied_phases: bool,
    ) -> Result<JobRecord> {
        let mut transaction = self.begin_write().await?;
        let reopened = sqlx::query(
            "UPDATE jobs SET status = 'in_progress', error_code = NULL, error_message = NULL, finished_at = NULL,
                 lease_owner = NULL, lease_expires_at = NULL, lease_token = lease_token + 1, state = $3, updated_at = $1
             WHERE id = $2 AND status IN ('failed', 'rolled_back')",
        )
        .bind(now_millis())
        .bind(job_id)
        .bind(state.to_string())
        .execute(&mut *transaction)
        .await?;
        if reopened.rows_affected() == 0 {
            return Err(Error::NotFound {
                what: format!("failed job {job_id:?}"),
            });
        }
        if reset_unapplied_phases {
            sqlx::query("UPDATE job_phases SET status = 'pending' WHERE job_id = $1 AND status NOT IN ('applied', 'skipped')")
                .bind(job_id)
                .execute(&mut *transaction)
                .await?;
        }
        let tenant_slug: String = sqlx::query_scalar("SELECT tenant_slug FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_one(&mut *transaction)
            .await?;
        crate::notify::notify(&mut transaction, crate::notify::JOBS_CHANNEL, job_id).await?;
        insert_audit(
            &mut transaction,
            &NewAuditEvent {
                actor: actor.to_owned(),
                event_type,
                tenant_slug: Some(tenant_slug),
                job_id: Some(job_id.to_owned()),
                details: serde_json::json!({}),
            },
        )
        .await?;
        transaction.commit().await?;
        self.get_job(job_id).await
    }

    /// Job events after `after_id` (0 for all), oldest first.
    pub async fn job_events(&self, job_id: &str, after_id: i64) -> Result<Vec<JobEvent>> {
        let rows = sqlx::query(
            "SELECT id, job_id, at, kind, phase, status, level, message FROM job_events
             WHERE job_id = $1 AND id > $2 ORDER BY id",
        )
        .bind(job_id)
        .bind(after_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(JobEvent::from_row).collect()
    }

    /// Chooses a server for a provisioning job and reserves room on it, atomically with every other placement:
    /// a server's load is its tenants plus the unfinished provisioning jobs placed on it, so concurrent jobs
    /// never overbook it. Placing an already placed job again returns its server.
    pub async fn place_job(&self, fence: &Fence, request: &PlacementRequest) -> Result<Placement> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        let already_placed: Option<String> =
            sqlx::query_scalar("SELECT placed_server FROM jobs WHERE id = $1")
                .bind(&fence.job_id)
                .fetch_one(&mut *transaction)
                .await?;
        if let Some(server_name) = already_placed {
            transaction.commit().await?;
            return Ok(Placement::Placed(self.get_server(&server_name).await?));
        }
        let (named, engine, region) = match request {
            PlacementRequest::Named(name) => (Some(name.as_str()), None, None),
            PlacementRequest::Auto { engine, region } => {
                (None, engine.map(EngineKind::as_str), Some(region.as_str()))
            }
        };
        let lock_clause = match self.dialect {
            // Serialise placements on the candidate servers; SQLite's BEGIN IMMEDIATE already did.
            crate::Dialect::Postgres => " FOR UPDATE",
            crate::Dialect::Sqlite => "",
        };
        let candidates: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT name, engine FROM servers
             WHERE status = $1 AND (CAST($2 AS TEXT) IS NULL OR name = $2)
               AND (CAST($3 AS TEXT) IS NULL OR engine = $3) AND (CAST($4 AS TEXT) IS NULL OR region = $4)
             ORDER BY name{lock_clause}"
        ))
        .bind(ServerStatus::Active.as_str())
        .bind(named)
        .bind(engine)
        .bind(region)
        .fetch_all(&mut *transaction)
        .await?;
        // Auto-placement of a database looks only at servers that host databases (a named server of another
        // engine is the workflow's to refuse, with its name).
        let candidate_names: Vec<String> = candidates
            .into_iter()
            .filter(|(_, engine)| {
                named.is_some() || EngineKind::parse(engine).is_ok_and(EngineKind::hosts_databases)
            })
            .map(|(name, _)| name)
            .collect();
        if candidate_names.is_empty() {
            transaction.commit().await?;
            return Ok(match request {
                PlacementRequest::Named(_) => Placement::ServerUnavailable,
                PlacementRequest::Auto { .. } => Placement::NoCapacity { candidates: 0 },
            });
        }
        let mut free_rooms = Vec::with_capacity(candidate_names.len());
        for name in &candidate_names {
            let (capacity_hint, load): (i64, i64) = sqlx::query_as(&format!(
                "SELECT s.capacity_hint,
                     (SELECT COUNT(*) FROM tenants t WHERE t.server_name = s.name)
                     + (SELECT COUNT(*) FROM jobs j WHERE j.placed_server = s.name AND j.kind = 'provision'
                          AND j.status IN {LIVE_STATUSES} AND j.id <> $2
                          AND NOT EXISTS (SELECT 1 FROM tenants t2 WHERE t2.slug = j.tenant_slug))
                 FROM servers s WHERE s.name = $1"
            ))
            .bind(name)
            .bind(&fence.job_id)
            .fetch_one(&mut *transaction)
            .await?;
            free_rooms.push((name.clone(), capacity_hint - load));
        }
        let Some(chosen) = most_free_room(free_rooms) else {
            transaction.commit().await?;
            return Ok(Placement::NoCapacity {
                candidates: candidate_names.len(),
            });
        };
        sqlx::query("UPDATE jobs SET placed_server = $1 WHERE id = $2")
            .bind(&chosen)
            .bind(&fence.job_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(Placement::Placed(self.get_server(&chosen).await?))
    }

    /// Forgets a job's placement (the undo of placement), releasing the room it reserved.
    pub async fn clear_placement(&self, fence: &Fence) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        sqlx::query("UPDATE jobs SET placed_server = NULL WHERE id = $1")
            .bind(&fence.job_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }
}

/// The candidate with the most room left (some at all), of `(name, free room)` pairs sorted by name: a strict
/// comparison breaks ties by name.
pub(crate) fn most_free_room(free_rooms: Vec<(String, i64)>) -> Option<String> {
    let mut best: Option<(String, i64)> = None;
    for (name, free_room) in free_rooms {
        if free_room > 0
            && best
                .as_ref()
                .is_none_or(|(_, best_room)| free_room > *best_room)
        {
            best = Some((name, free_room));
        }
    }
    best.map(|(name, _)| name)
}
