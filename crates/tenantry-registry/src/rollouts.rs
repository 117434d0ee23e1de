//! Fleet migrations: a rollout's shared record (its bounds and the operator's control) and one child row per
//! tenant, claimed with a lease and fenced by its token exactly as jobs are, so any number of workers share one
//! rollout and a crash of any of them loses nothing.

use crate::jobs::{check_fence, Fence};
use crate::store::{get, now_millis};
use crate::{Error, Registry, Result};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::BTreeMap;

/// The operator's say over a running rollout.
pub const ROLLOUT_RUN: &str = "run";
pub const ROLLOUT_PAUSED: &str = "paused";
pub const ROLLOUT_ABORTED: &str = "aborted";

/// A tenant's place in a rollout: `pending`, `running`, `applied`, `skipped` (nothing to apply, or left out by
/// the operator) or `failed`.
pub const CHILD_PENDING: &str = "pending";
pub const CHILD_RUNNING: &str = "running";
pub const CHILD_APPLIED: &str = "applied";
pub const CHILD_SKIPPED: &str = "skipped";
pub const CHILD_FAILED: &str = "failed";

/// The statuses a child can have, in the order reports list them.
pub const CHILD_STATUSES: [&str; 5] = [
    CHILD_PENDING,
    CHILD_RUNNING,
    CHILD_APPLIED,
    CHILD_SKIPPED,
    CHILD_FAILED,
];

/// A rollout to record with its children.
#[derive(Debug, Clone)]
pub struct NewRollout {
    pub id: String,
    pub schema_hash: String,
    pub target_version: i64,
    pub n_waves: i64,
    pub concurrency: i64,
    pub per_server: i64,
    pub max_failures: i64,
}

/// One tenant of a new rollout: `pending` with the versions it lacks, or `skipped` with why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewRolloutChild {
    pub tenant_slug: String,
    pub server_name: String,
    pub wave: i64,
    pub status: &'static str,
    pub pending_versions: Vec<i64>,
    pub note: Option<String>,
}

/// A rollout as its workers share it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RolloutRecord {
    pub id: String,
    pub schema_hash: String,
    pub target_version: i64,
    pub control: String,
    pub open_wave: i64,
    pub n_waves: i64,
    pub concurrency: i64,
    pub per_server: i64,
    pub max_failures: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One tenant's record in a rollout.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RolloutChild {
    pub tenant_slug: String,
    pub server_name: String,
    pub wave: i64,
    pub status: String,
    pub pending_versions: Vec<i64>,
    pub versions_applied: Vec<i64>,
    pub error: Option<String>,
    pub attempts: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub duration_ms: Option<i64>,
}

/// A child this worker now holds: migrate it, then finish it with `token`.
#[derive(Debug, Clone)]
pub struct ClaimedChild {
    pub rollout_id: String,
    pub tenant_slug: String,
    pub server_name: String,
    pub wave: i64,
    pub pending_versions: Vec<i64>,
    pub attempts: i64,
    pub token: i64,
}

/// A held child's outcome, to record with [`Registry::settle_rollout_children`].
#[derive(Debug, Clone)]
pub struct ChildOutcomeRecord {
    pub child: ClaimedChild,
    pub status: &'static str,
    pub versions_applied: Vec<i64>,
    pub error: Option<String>,
    /// When the tenant's migration ended (the time of the write when `None`).
    pub finished_at: Option<i64>,
}

/// How many children of one wave stand at each status.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WaveCounts {
    pub wave: i64,
    pub pending: i64,
    pub running: i64,
    pub applied: i64,
    pub skipped: i64,
    pub failed: i64,
}

impl WaveCounts {
    pub fn total(&self) -> i64 {
        self.pending + self.running + self.applied + self.skipped + self.failed
    }

    /// Children that will not change again unless an operator resumes the rollout.
    pub fn settled(&self) -> i64 {
        self.applied + self.skipped + self.failed
    }
}

/// How one claim may grow: the process's free slots, and owners whose leases can be taken at once (processes of
/// this host that are gone).
#[derive(Debug, Clone, Default)]
pub struct ClaimBounds {
    pub owner: String,
    pub lease_ttl_millis: i64,
    pub max_children: i64,
    pub dead_owners: Vec<String>,
}

const ROLLOUT_COLUMNS: &str =
    "id, schema_hash, target_version, control, open_wave, n_waves, concurrency, per_server,
    max_failures, created_at, updated_at";
const CHILD_COLUMNS: &str =
    "tenant_slug, server_name, wave, status, pending_versions, versions_applied, error,
    attempts, started_at, finished_at";

fn versions(row: &AnyRow, column: &str) -> Result<Vec<i64>> {
    let text: String = get(row, column)?;
    serde_json::from_str(&text).map_err(|error| Error::Corrupt(format!("{column}: {error}")))
}

impl RolloutRecord {
    fn from_row(row: &AnyRow) -> Result<RolloutRecord> {
        Ok(RolloutRecord {
            id: get(row, "id")?,
            schema_hash: get(row, "schema_hash")?,
            target_version: get(row, "target_version")?,
            control: get(row, "control")?,
            open_wave: get(row, "open_wave")?,
            n_waves: get(row, "n_waves")?,
            concurrency: get(row, "concurrency")?,
            per_server: get(row, "per_server")?,
            max_failures: get(row, "max_failures")?,
            created_at: get(row, "created_at")?,
            updated_at: get(row, "updated_at")?,
        })
    }
}

impl RolloutChild {
    fn from_row(row: &AnyRow) -> Result<RolloutChild> {
        let started_at: Option<i64> = get(row, "started_at")?;
        let finished_at: Option<i64> = get(row, "finished_at")?;
        let status: String = get(row, "status")?;
        Ok(RolloutChild {
            tenant_slug: get(row, "tenant_slug")?,
            server_name: get(row, "server_name")?,
            wave: get(row, "wave")?,
            pending_versions: versions(row, "pending_versions")?,
            versions_applied: versions(row, "versions_applied")?,
            error: get(row, "error")?,
            attempts: get(row, "attempts")?,
            duration_ms: match (started_at, finished_at, status.as_str()) {
                (Some(started), Some(finished), CHILD_APPLIED | CHILD_FAILED) => {
                    Some(finished - started)
                }
                _ => None,
            },
            status,
            started_at,
            finished_at,
        })
    }
}

impl Registry {
    /// Records a rollout's shared row and its children in one transaction: at submission, right after its job
    /// (no fence: nobody runs the job yet, or the submitter holds its lease), or by the job's `tenants_listed`
    /// phase (fenced by its lease) when the submitter crashed in between. A rollout recorded before is left as
    /// it is.
    pub async fn record_rollout(
        &self,
        fence: Option<&Fence>,
        rollout: &NewRollout,
        children: &[NewRolloutChild],
    ) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        if let Some(fence) = fence {
            check_fence(&mut transaction, fence).await?;
        }
        let now = now_millis();
        let inserted = sqlx::query(&format!(
            "INSERT INTO rollouts ({ROLLOUT_COLUMNS}) VALUES ($1, $2, $3, $4, -1, $5, $6, $7, $8, $9, $9)
             ON CONFLICT (id) DO NOTHING"
        ))
        .bind(&rollout.id)
        .bind(&rollout.schema_hash)
        .bind(rollout.target_version)
        .bind(ROLLOUT_RUN)
        .bind(rollout.n_waves)
        .bind(rollout.concurrency)
        .bind(rollout.per_server)
        .bind(rollout.max_failures)
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 1 {
            for child in children {
                sqlx::query(&format!(
                    "INSERT INTO rollout_tenants (rollout_id, {CHILD_COLUMNS}, lease_token)
                     VALUES ($1, $2, $3, $4, $5, $6, '[]', $7, 0, NULL, $8, 0)"
                ))
                .bind(&rollout.id)
                .bind(&child.tenant_slug)
                .bind(&child.server_name)
                .bind(child.wave)
                .bind(child.status)
                .bind(serde_json::to_string(&child.pending_versions).unwrap_or_default())
                .bind(&child.note)
                .bind((child.status != CHILD_PENDING).then_some(now))
                .execute(&mut *transaction)
                .await?;
            }
        }
        transaction.commit().await?;
        Ok(())
    }

    pub async fn get_rollout(&self, rollout_id: &str) -> Result<Option<RolloutRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE id = $1"
        ))
        .bind(rollout_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(RolloutRecord::from_row).transpose()
    }

    /// The newest rollouts first.
    pub async fn list_rollouts(&self, limit: i64) -> Result<Vec<RolloutRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts ORDER BY created_at DESC, id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(RolloutRecord::from_row).collect()
    }

    /// A rollout's children in wave and slug order, of one status if given.
    pub async fn rollout_children(
        &self,
        rollout_id: &str,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<RolloutChild>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHILD_COLUMNS} FROM rollout_tenants
             WHERE rollout_id = $1 AND (CAST($2 AS TEXT) IS NULL OR status = $2)
             ORDER BY wave, tenant_slug LIMIT $3 OFFSET $4"
        ))
        .bind(rollout_id)
        .bind(status)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(RolloutChild::from_row).collect()
    }

    /// How many children of each wave stand at each status, waves in order.
    pub async fn rollout_counts(&self, rollout_id: &str) -> Result<Vec<WaveCounts>> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT wave, status, COUNT(*) FROM rollout_tenants WHERE rollout_id = $1 GROUP BY wave, status",
        )
        .bind(rollout_id)
        .fetch_all(&self.pool)
        .await?;
        let mut waves: BTreeMap<i64, WaveCounts> = BTreeMap::new();
        for (wave, status, count) in rows {
            let counts = waves.entry(wave).or_insert_with(|| WaveCounts {
                wave,
                ..WaveCounts::default()
            });
            match status.as_str() {
                CHILD_PENDING => counts.pending += count,
                CHILD_RUNNING => counts.running += count,
                CHILD_APPLIED => counts.applied += count,
                CHILD_SKIPPED => counts.skipped += count,
                _ => counts.failed += count,
            }
        }
        Ok(waves.into_values().collect())
    }

    /// Lets workers claim the children of waves up to `wave`, fenced by the rollout job's lease.
    pub async fn open_rollout_wave(&self, fence: &Fence, wave: i64) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        check_fence(&mut transaction, fence).await?;
        sqlx::query(
            "UPDATE rollouts SET open_wave = $1, updated_at = $2 WHERE id = $3 AND open_wave < $1",
        )
        .bind(wave)
        .bind(now_millis())
        .bind(&fence.job_id)
        .execute(&mut *transaction)
        .await?;
        // Idle workers wake to help with the wave.
        crate::notify::notify(&mut transaction, crate::notify::JOBS_CHANNEL, &fence.job_id).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Sets the operator's control (`run`, `paused`, `aborted`). An aborted rollout stays aborted. Returns the
    /// rollout as it now stands, or `None` when there is no such rollout.
    pub async fn set_rollout_control(
        &self,
        rollout_id: &str,
        control: &str,
    ) -> Result<Option<RolloutRecord>> {
        let mut transaction = self.begin_write().await?;
        sqlx::query(
            "UPDATE rollouts SET control = $1, updated_at = $2 WHERE id = $3 AND control <> $4",
        )
        .bind(control)
        .bind(now_millis())
        .bind(rollout_id)
        .bind(ROLLOUT_ABORTED)
        .execute(&mut *transaction)
        .await?;
        crate::notify::notify(&mut transaction, crate::notify::JOBS_CHANNEL, rollout_id).await?;
        transaction.commit().await?;
        self.get_rollout(rollout_id).await
    }

    /// Puts a rollout's failed children back to `pending`, so resuming it tries them again. Returns how many.
    pub async fn retry_failed_children(&self, rollout_id: &str) -> Result<u64> {
        let mut transaction = self.begin_write().await?;
        let reset = sqlx::query(
            "UPDATE rollout_tenants SET status = 'pending', error = NULL, finished_at = NULL,
                 lease_owner = NULL, lease_expires_at = NULL, lease_token = lease_token + 1
             WHERE rollout_id = $1 AND status = 'failed'",
        )
        .bind(rollout_id)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(reset.rows_affected())
    }

    /// The owners of a rollout's running children, so a caller can tell which of them are gone.
    pub async fn rollout_child_owners(&self, rollout_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT lease_owner FROM rollout_tenants
             WHERE rollout_id = $1 AND status = 'running' AND lease_owner IS NOT NULL",
        )
        .bind(rollout_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Puts back to `pending` the running children whose holder is gone (its lease expired, or its owner is in
    /// `dead_owners`). A rollout that claims nothing more (paused, aborted, over its failure budget) would
    /// otherwise wait on them for ever. A holder that was only slow is fenced out by the token when it finishes.
    pub async fn release_lost_children(
        &self,
        rollout_id: &str,
        dead_owners: &[String],
    ) -> Result<u64> {
        let mut transaction = self.begin_write().await?;
        let release = "UPDATE rollout_tenants SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
                 lease_token = lease_token + 1
             WHERE rollout_id = $1 AND status = 'running'";
        let mut released = sqlx::query(&format!("{release} AND lease_expires_at < $2"))
            .bind(rollout_id)
            .bind(now_millis())
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        for owner in dead_owners {
            released += sqlx::query(&format!("{release} AND lease_owner = $2"))
                .bind(rollout_id)
                .bind(owner)
                .execute(&mut *transaction)
                .await?
                .rows_affected();
        }
        transaction.commit().await?;
        Ok(released)
    }

    /// The rollouts whose children may be claimed now: not paused or aborted, a wave open, children waiting.
    pub async fn claimable_rollouts(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT r.id FROM rollouts r
             WHERE r.control = 'run' AND r.open_wave >= 0
               AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = r.id AND j.status = 'in_progress')
               AND EXISTS (SELECT 1 FROM rollout_tenants c WHERE c.rollout_id = r.id AND c.wave <= r.open_wave
                           AND (c.status = 'pending' OR (c.status = 'running' AND c.lease_expires_at < $1)))
             ORDER BY r.created_at",
        )
        .bind(now_millis())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records the outcomes of children this worker held and claims up to `bounds.max_children` more, in one
    /// transaction: a worker's registry cost per tenant is one write, whatever the concurrency. An outcome
    /// whose child was taken over meanwhile (its token moved on) changes nothing; it is returned, so the caller
    /// can say so.
    pub async fn settle_rollout_children(
        &self,
        rollout_id: &str,
        outcomes: &[ChildOutcomeRecord],
        bounds: &ClaimBounds,
    ) -> Result<(Vec<ClaimedChild>, Vec<String>)> {
        let mut transaction = self.begin_write().await?;
        let now = now_millis();
        let mut taken_over = Vec::new();
        for outcome in outcomes {
            let finished = sqlx::query(
                "UPDATE rollout_tenants SET status = $1, versions_applied = $2, error = $3,
                     finished_at = CASE WHEN $1 = 'pending' THEN NULL ELSE $4 END,
                     lease_owner = NULL, lease_expires_at = NULL
                 WHERE rollout_id = $5 AND tenant_slug = $6 AND lease_token = $7 AND status = 'running'",
            )
            .bind(outcome.status)
            .bind(serde_json::to_string(&outcome.versions_applied).unwrap_or_default())
            .bind(&outcome.error)
            .bind(outcome.finished_at.unwrap_or(now))
            .bind(&outcome.child.rollout_id)
            .bind(&outcome.child.tenant_slug)
            .bind(outcome.child.token)
            .execute(&mut *transaction)
            .await?;
            if finished.rows_affected() != 1 {
                taken_over.push(outcome.child.tenant_slug.clone());
            }
        }
        let claimed = if bounds.max_children > 0 {
            claim_in(&mut transaction, self.dialect, rollout_id, bounds).await?
        } else {
            Vec::new()
        };
        transaction.commit().await?;
        Ok((claimed, taken_over))
    }

    /// Claims up to `bounds.max_children` children of an open wave, within the rollout's bounds across every
    /// worker: at most `concurrency` running in all and `per_server` on one server, and none once the failures
    /// reached `max_failures` or the operator paused or aborted it. A child whose lease expired (or whose owner
    /// is in `dead_owners`) is claimed again; its migrations are applied in the tenant's own transactions, so a
    /// second attempt applies only what the first did not record.
    pub async fn claim_rollout_children(
        &self,
        rollout_id: &str,
        bounds: &ClaimBounds,
    ) -> Result<Vec<ClaimedChild>> {
        Ok(self
            .settle_rollout_children(rollout_id, &[], bounds)
            .await?
            .0)
    }

    /// Extends the leases of every child `owner` holds in a rollout.
    pub async fn renew_rollout_children(
        &self,
        rollout_id: &str,
        owner: &str,
        lease_ttl_millis: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE rollout_tenants SET lease_expires_at = $1
             WHERE rollout_id = $2 AND lease_owner = $3 AND status = 'running'",
        )
        .bind(now_millis() + lease_ttl_millis)
        .bind(rollout_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The rollout (unfinished, or the newest) that lists this tenant, with the tenant's record in it.
    pub async fn tenant_rollout_child(
        &self,
        tenant_slug: &str,
    ) -> Result<Option<(String, RolloutChild)>> {
        let row = sqlx::query(&format!(
            "SELECT rollout_id, {CHILD_COLUMNS} FROM rollout_tenants c JOIN rollouts r ON r.id = c.rollout_id
             WHERE c.tenant_slug = $1 ORDER BY r.created_at DESC LIMIT 1"
        ))
        .bind(tenant_slug)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some((
                row.try_get("rollout_id")?,
                RolloutChild::from_row(&row)?,
            ))),
            None => Ok(None),
        }
    }
}

async fn claim_in(
    transaction: &mut sqlx::AnyConnection,
    dialect: crate::Dialect,
    rollout_id: &str,
    bounds: &ClaimBounds,
) -> Result<Vec<ClaimedChild>> {
    // Claims of one rollout take turns, so the bounds hold across workers (SQLite's writers take turns anyway).
    let lock = match dialect {
        crate::Dialect::Postgres => " FOR UPDATE",
        crate::Dialect::Sqlite => "",
    };
    let Some(row) = sqlx::query(&format!(
        "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE id = $1{lock}"
    ))
    .bind(rollout_id)
    .fetch_optional(&mut *transaction)
    .await?
    else {
        return Ok(Vec::new());
    };
    let rollout = RolloutRecord::from_row(&row)?;
    if rollout.control != ROLLOUT_RUN || rollout.open_wave < 0 {
        return Ok(Vec::new());
    }
    let now = now_millis();
    let failures: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM rollout_tenants WHERE rollout_id = $1 AND status = 'failed'",
    )
    .bind(rollout_id)
    .fetch_one(&mut *transaction)
    .await?;
    if failures >= rollout.max_failures {
        return Ok(Vec::new());
    }
    let running: Vec<(String, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT server_name, lease_owner, lease_expires_at FROM rollout_tenants
             WHERE rollout_id = $1 AND status = 'running'",
    )
    .bind(rollout_id)
    .fetch_all(&mut *transaction)
    .await?;
    let alive = |owner: &Option<String>, expires: &Option<i64>| {
        expires.is_some_and(|expires| expires >= now)
            && owner
                .as_ref()
                .is_some_and(|owner| !bounds.dead_owners.contains(owner))
    };
    let mut per_server: BTreeMap<String, i64> = BTreeMap::new();
    let mut n_running = 0;
    for (server, owner, expires) in &running {
        if alive(owner, expires) {
            *per_server.entry(server.clone()).or_default() += 1;
            n_running += 1;
        }
    }
    let room = (rollout.concurrency - n_running).min(bounds.max_children);
    if room <= 0 {
        return Ok(Vec::new());
    }
    let candidates = sqlx::query(
            "SELECT tenant_slug, server_name, wave, pending_versions, attempts, lease_owner, lease_expires_at, status
             FROM rollout_tenants
             WHERE rollout_id = $1 AND wave <= $2 AND status IN ('pending', 'running')
             ORDER BY wave, tenant_slug LIMIT $3",
        )
        .bind(rollout_id)
        .bind(rollout.open_wave)
        // Enough to fill the room past children of saturated servers, without reading the whole rollout.
        .bind(room * 4 + rollout.per_server * 4 + 16)
        .fetch_all(&mut *transaction)
        .await?;
    let mut claimed = Vec::new();
    for candidate in &candidates {
        if claimed.len() as i64 >= room {
            break;
        }
        let status: String = candidate.try_get("status")?;
        let owner: Option<String> = candidate.try_get("lease_owner")?;
        let expires: Option<i64> = candidate.try_get("lease_expires_at")?;
        if status == CHILD_RUNNING && alive(&owner, &expires) {
            continue;
        }
        let server: String = candidate.try_get("server_name")?;
        let on_server = per_server.entry(server.clone()).or_default();
        if *on_server >= rollout.per_server {
            continue;
        }
        let tenant_slug: String = candidate.try_get("tenant_slug")?;
        let token: i64 = sqlx::query_scalar(
                "UPDATE rollout_tenants SET status = 'running', lease_owner = $1, lease_expires_at = $2,
                     lease_token = lease_token + 1, attempts = attempts + 1, started_at = $3, error = NULL
                 WHERE rollout_id = $4 AND tenant_slug = $5
                 RETURNING lease_token",
            )
            .bind(&bounds.owner)
            .bind(now + bounds.lease_ttl_millis)
            .bind(now)
            .bind(rollout_id)
            .bind(&tenant_slug)
            .fetch_one(&mut *transaction)
            .await?;
        *on_server += 1;
        let attempts: i64 = candidate.try_get("attempts")?;
        claimed.push(ClaimedChild {
            rollout_id: rollout_id.to_owned(),
            tenant_slug,
            server_name: server,
            wave: candidate.try_get("wave")?,
            pending_versions: versions(candidate, "pending_versions")?,
            attempts: attempts + 1,
            token,
        });
    }
    Ok(claimed)
}
