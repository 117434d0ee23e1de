//! Change requests: a tenant admin asks for another plan or other module switches for their tenant, and a
//! PLATFORM_ADMIN other than the requester approves (the set-plan job is recorded in the same transaction as the
//! decision) or rejects it. Each decision is one conditional update, so two admins deciding at once cannot both
//! win, and the requester can never decide their own request.

use crate::audit::insert_audit;
use crate::jobs::insert_job;
use crate::records::NewAuditEvent;
use crate::store::{get, get_json, now_millis};
use crate::{Error, NewJob, Registry, Result};
use sqlx::any::AnyRow;
use std::collections::BTreeMap;

/// A change request's statuses.
pub const CHANGE_PENDING: &str = "pending";
pub const CHANGE_APPROVED: &str = "approved";
pub const CHANGE_REJECTED: &str = "rejected";

/// A change request as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeRequestRecord {
    pub id: String,
    pub tenant_slug: String,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    /// The plan asked for, if the request changes the plan.
    pub plan: Option<String>,
    /// Module switches asked for: module name to on (`true`) or off (`false`). Empty when only the plan changes.
    pub modules: BTreeMap<String, bool>,
    /// The resource tier asked for (`small`, `medium`, `large`), if the request changes it.
    pub resource_tier: Option<String>,
    /// Why the tenant admin asks.
    pub reason: String,
    /// The requester, as an audit actor (`user:<id>`).
    pub requested_by: String,
    pub decided_by: Option<String>,
    /// The decider's words (a rejection's reason).
    pub decision_reason: Option<String>,
    /// The set-plan job an approval started.
    pub job_id: Option<String>,
    pub created_at: i64,
    pub decided_at: Option<i64>,
}

const CHANGE_REQUEST_COLUMNS: &str =
    "id, tenant_slug, status, plan, modules, resource_tier, reason, requested_by, decided_by, \
     decision_reason, job_id, created_at, decided_at";

impl ChangeRequestRecord {
    fn from_row(row: &AnyRow) -> Result<ChangeRequestRecord> {
        Ok(ChangeRequestRecord {
            id: get(row, "id")?,
            tenant_slug: get(row, "tenant_slug")?,
            status: get(row, "status")?,
            plan: get(row, "plan")?,
            modules: serde_json::from_value(get_json(row, "modules")?)
                .map_err(|error| Error::Corrupt(format!("column modules: {error}")))?,
            resource_tier: get(row, "resource_tier")?,
            reason: get(row, "reason")?,
            requested_by: get(row, "requested_by")?,
            decided_by: get(row, "decided_by")?,
            decision_reason: get(row, "decision_reason")?,
            job_id: get(row, "job_id")?,
            created_at: get(row, "created_at")?,
            decided_at: get(row, "decided_at")?,
        })
    }
}

/// A change request to record (already validated by the caller).
#[derive(Debug, Clone)]
pub struct NewChangeRequest {
    pub id: String,
    pub tenant_slug: String,
    pub plan: Option<String>,
    pub modules: BTreeMap<String, bool>,
    pub resource_tier: Option<String>,
    pub reason: String,
    pub requested_by: String,
}

/// A PLATFORM_ADMIN's decision on a pending change request. An approval carries the job it starts.
#[derive(Debug, Clone)]
pub struct ChangeDecision {
    pub actor: String,
    pub reason: String,
    /// `Some` approves and records this job with the decision; `None` rejects.
    pub job: Option<NewJob>,
}

/// What became of a decision.
#[derive(Debug, Clone)]
pub enum ChangeOutcome {
    /// Recorded; the request as it is now.
    Decided(Box<ChangeRequestRecord>),
    /// The request was decided already: its status now.
    NotPending(String),
    /// The decider filed the request themselves.
    OwnRequest,
}

impl Registry {
    /// Records a pending change request, audited as `CHANGE_REQUESTED` (which queues the `change.requested`
    /// notification) in the same transaction.
    pub async fn create_change_request(
        &self,
        request: &NewChangeRequest,
    ) -> Result<ChangeRequestRecord> {
        let mut transaction = self.begin_write().await?;
        let modules = serde_json::to_string(&request.modules)
            .map_err(|error| Error::Corrupt(error.to_string()))?;
        sqlx::query(
            "INSERT INTO change_requests (id, tenant_slug, status, plan, modules, reason, requested_by, created_at,
             resource_tier)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&request.id)
        .bind(&request.tenant_slug)
        .bind(CHANGE_PENDING)
        .bind(&request.plan)
        .bind(&modules)
        .bind(&request.reason)
        .bind(&request.requested_by)
        .bind(now_millis())
        .bind(&request.resource_tier)
        .execute(&mut *transaction)
        .await?;
        insert_audit(
            &mut transaction,
            &NewAuditEvent {
                actor: request.requested_by.clone(),
                event_type: "CHANGE_REQUESTED",
                tenant_slug: Some(request.tenant_slug.clone()),
                job_id: None,
                details: serde_json::json!({
                    "change_request_id": request.id,
                    "plan": request.plan,
                    "modules": request.modules,
                    "reason": request.reason,
                }),
            },
        )
        .await?;
        transaction.commit().await?;
        self.require_change_request(&request.id).await
    }

    pub async fn get_change_request(&self, id: &str) -> Result<Option<ChangeRequestRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {CHANGE_REQUEST_COLUMNS} FROM change_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ChangeRequestRecord::from_row).transpose()
    }

    async fn require_change_request(&self, id: &str) -> Result<ChangeRequestRecord> {
        self.get_change_request(id)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("change request {id:?}"),
            })
    }

    /// Change requests, newest first, of one tenant and/or in one status when asked.
    pub async fn list_change_requests(
        &self,
        tenant_slug: Option<&str>,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ChangeRequestRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_REQUEST_COLUMNS} FROM change_requests
             WHERE (CAST($1 AS TEXT) IS NULL OR tenant_slug = $1) AND (CAST($2 AS TEXT) IS NULL OR status = $2)
             ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(tenant_slug)
        .bind(status)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ChangeRequestRecord::from_row).collect()
    }

    /// Approves (recording the decision's job with it) or rejects a pending change request, audited as
    /// `CHANGE_APPROVED` or `CHANGE_REJECTED`, all in one transaction: an approval whose job cannot be recorded
    /// (the tenant has an unfinished job: `Conflict`) leaves the request pending.
    pub async fn decide_change_request(
        &self,
        id: &str,
        decision: &ChangeDecision,
    ) -> Result<ChangeOutcome> {
        let request = self.require_change_request(id).await?;
        if request.status != CHANGE_PENDING {
            return Ok(ChangeOutcome::NotPending(request.status));
        }
        if request.requested_by == decision.actor {
            return Ok(ChangeOutcome::OwnRequest);
        }
        let (status, event_type) = match decision.job {
            Some(_) => (CHANGE_APPROVED, "CHANGE_APPROVED"),
            None => (CHANGE_REJECTED, "CHANGE_REJECTED"),
        };
        let job_id = decision.job.as_ref().map(|job| job.id.clone());
        let mut transaction = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE change_requests SET status = $1, decided_by = $2, decision_reason = $3, job_id = $4,
                 decided_at = $5
             WHERE id = $6 AND status = 'pending' AND requested_by <> $2",
        )
        .bind(status)
        .bind(&decision.actor)
        .bind(&decision.reason)
        .bind(&job_id)
        .bind(now_millis())
        .bind(id)
        .execute(&mut *transaction)
        .await?;
        if updated.rows_affected() == 0 {
            // Another decision got there first.
            drop(transaction);
            return Ok(ChangeOutcome::NotPending(
                self.require_change_request(id).await?.status,
            ));
        }
        if let Some(job) = &decision.job {
            insert_job(&mut transaction, job).await?;
        }
        insert_audit(
            &mut transaction,
            &NewAuditEvent {
                actor: decision.actor.clone(),
                event_type,
                tenant_slug: Some(request.tenant_slug.clone()),
                job_id: job_id.clone(),
                details: serde_json::json!({
                    "change_request_id": id,
                    "requested_by": request.requested_by,
                    "plan": request.plan,
                    "modules": request.modules,
                    "reason": decision.reason,
                }),
            },
        )
        .await?;
        transaction.commit().await?;
        Ok(ChangeOutcome::Decided(Box::new(
            self.require_change_request(id).await?,
        )))
    }
}
