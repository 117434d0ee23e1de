//! Approval decisions on jobs waiting for a PLATFORM_ADMIN: grant (the job becomes `pending` for a worker),
//! reject or lapse (the job ends `cancelled`). Each decision is one conditional update, so two admins deciding at
//! once cannot both win, and the requester can never decide their own request.

use crate::audit::insert_audit;
use crate::jobs::insert_event;
use crate::records::{EventKind, JobRecord, NewAuditEvent};
use crate::store::now_millis;
use crate::{Registry, Result};
use tenantry_core::{ErrorCode, JobStatus};

/// An admin's decision on a waiting job.
#[derive(Debug, Clone)]
pub struct ApprovalDecision {
    pub actor: String,
    pub approve: bool,
    /// Free text kept in the job log and the audit event.
    pub reason: String,
}

/// What became of a decision.
#[derive(Debug, Clone)]
pub enum ApprovalOutcome {
    /// Recorded; the job as it is now (boxed: a job record is large beside the other outcomes).
    Decided(Box<JobRecord>),
    /// The job is not waiting for approval (any more): its status now.
    NotAwaiting(JobStatus),
    /// The decider asked for the job themselves.
    OwnRequest,
    /// The approval window had closed; the job is now cancelled with `E_APPROVAL_EXPIRED`.
    Expired,
}

impl Registry {
    /// Grants or rejects a job waiting for approval, with its log line and audit event, in one transaction.
    pub async fn decide_approval(
        &self,
        job_id: &str,
        decision: &ApprovalDecision,
    ) -> Result<ApprovalOutcome> {
        let job = self.get_job(job_id).await?;
        if job.status != JobStatus::AwaitingApproval {
            return Ok(ApprovalOutcome::NotAwaiting(job.status));
        }
        if job.actor == decision.actor {
            return Ok(ApprovalOutcome::OwnRequest);
        }
        let now = now_millis();
        if job
            .approval_expires_at
            .is_some_and(|expires_at| expires_at <= now)
        {
            self.expire_approvals().await?;
            return Ok(ApprovalOutcome::Expired);
        }
        let mut transaction = self.begin_write().await?;
        let (status, error_code, error_message, finished_at) = if decision.approve {
            (JobStatus::Pending, None, None, None)
        } else {
            (
                JobStatus::Cancelled,
                Some(ErrorCode::ApprovalRejected.as_str()),
                Some(format!(
                    "rejected by {}: {}",
                    decision.actor,
                    reason_or_none(&decision.reason)
                )),
                Some(now),
            )
        };
        let updated = sqlx::query(
            "UPDATE jobs SET status = $1, error_code = $2, error_message = $3, finished_at = $4,
                 approval_expires_at = NULL, updated_at = $5
             WHERE id = $6 AND status = 'awaiting_approval' AND actor <> $7 AND approval_expires_at > $5",
        )
        .bind(status.as_str())
        .bind(error_code)
        .bind(&error_message)
        .bind(finished_at)
        .bind(now)
        .bind(job_id)
        .bind(&decision.actor)
        .execute(&mut *transaction)
        .await?;
        if updated.rows_affected() == 0 {
            // Another decision (or the expiry sweep) got there first.
            drop(transaction);
            return Ok(ApprovalOutcome::NotAwaiting(
                self.get_job(job_id).await?.status,
            ));
        }
        let (event_type, message) = if decision.approve {
            (
                "APPROVAL_GRANTED",
                format!(
                    "approved by {}: {}",
                    decision.actor,
                    reason_or_none(&decision.reason)
                ),
            )
        } else {
            (
                "APPROVAL_REJECTED",
                error_message.clone().unwrap_or_default(),
            )
        };
        insert_event(
            &mut transaction,
            job_id,
            EventKind::Log,
            None,
            None,
            "info",
            &message,
        )
        .await?;
        insert_audit(
            &mut transaction,
            &NewAuditEvent {
                actor: decision.actor.clone(),
                event_type,
                tenant_slug: Some(job.tenant_slug.clone()),
                job_id: Some(job_id.to_owned()),
                details: serde_json::json!({ "requested_by": job.actor, "reason": decision.reason }),
            },
        )
        .await?;
        if decision.approve {
            // Wakes the workers: the job is theirs to claim now.
            crate::notify::notify(&mut transaction, crate::notify::JOBS_CHANNEL, job_id).await?;
        }
        transaction.commit().await?;
        Ok(ApprovalOutcome::Decided(Box::new(
            self.get_job(job_id).await?,
        )))
    }

    /// Cancels every job whose approval window has closed (`E_APPROVAL_EXPIRED`), each with its log line and
    /// audit event. Returns their ids. Safe to run from many processes at once.
    pub async fn expire_approvals(&self) -> Result<Vec<String>> {
        let now = now_millis();
        let due: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, tenant_slug FROM jobs WHERE status = 'awaiting_approval' AND approval_expires_at <= $1",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut expired = Vec::new();
        for (job_id, tenant_slug) in due {
            let mut transaction = self.begin_write().await?;
            let message = "nobody approved the request before its approval window closed";
            let updated = sqlx::query(
                "UPDATE jobs SET status = 'cancelled', error_code = $1, error_message = $2, finished_at = $3,
                     approval_expires_at = NULL, updated_at = $3
                 WHERE id = $4 AND status = 'awaiting_approval' AND approval_expires_at <= $3",
            )
            .bind(ErrorCode::ApprovalExpired.as_str())
            .bind(message)
            .bind(now)
            .bind(&job_id)
            .execute(&mut *transaction)
            .await?;
            if updated.rows_affected() == 0 {
                continue;
            }
            insert_event(
                &mut transaction,
                &job_id,
                EventKind::Log,
                None,
                None,
                "warn",
                &format!("job cancelled: {}: {message}", ErrorCode::ApprovalExpired),
            )
            .await?;
            insert_audit(
                &mut transaction,
                &NewAuditEvent {
                    actor: "system".into(),
                    event_type: "APPROVAL_EXPIRED",
                    tenant_slug: Some(tenant_slug),
                    job_id: Some(job_id.clone()),
                    details: serde_json::json!({}),
                },
            )
            .await?;
            transaction.commit().await?;
            expired.push(job_id);
        }
        Ok(expired)
    }
}

fn reason_or_none(reason: &str) -> &str {
    if reason.trim().is_empty() {
        "no reason given"
    } else {
        reason
    }
}
