//! The notification outbox: webhook subscriptions, and one delivery row per event and subscription, written in
//! the same transaction as the audit event that reports the change, so a crash between the change and the send
//! loses nothing. Senders claim due deliveries with a lease; a delivery's id is its idempotency id on every
//! attempt, so one sent twice (a crash after the send, before it was recorded) carries the same id. The first
//! admin's invitation e-mail is a delivery too (channel `email`), queued by the audit event that completes a
//! provisioning or resends an invitation.

use crate::records::NewAuditEvent;
use crate::store::{get, now_millis};
use crate::{Error, Registry, Result};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

/// Delivery statuses.
pub const DELIVERY_PENDING: &str = "pending";
pub const DELIVERY_SENT: &str = "sent";
pub const DELIVERY_DEAD: &str = "dead";

/// The events a webhook can subscribe to, each with the audit events that raise it.
pub const NOTIFICATION_EVENTS: [(&str, &[&str]); 8] = [
    ("tenant.provisioned", &["TENANT_PROVISIONED"]),
    ("tenant.provision_failed", &["TENANT_PROVISION_FAILED"]),
    ("tenant.offboarded", &["TENANT_OFFBOARDED"]),
    ("approval.requested", &["APPROVAL_REQUESTED"]),
    (
        "approval.decided",
        &["APPROVAL_GRANTED", "APPROVAL_REJECTED", "APPROVAL_EXPIRED"],
    ),
    // A tenant admin asked for a plan or module change, and a PLATFORM_ADMIN decided it.
    ("change.requested", &["CHANGE_REQUESTED"]),
    ("change.decided", &["CHANGE_APPROVED", "CHANGE_REJECTED"]),
    (
        "job.failed",
        &[
            "TENANT_PROVISION_FAILED",
            "TENANT_OFFBOARD_FAILED",
            "TENANT_PLAN_CHANGE_FAILED",
            "FLEET_RECONCILE_FAILED",
            "ROLLOUT_STOPPED",
            "TENANT_SUSPEND_FAILED",
            "TENANT_RESUME_FAILED",
            "CREDENTIALS_ROTATION_FAILED",
            "BACKUP_FAILED",
            "BACKUP_RESTORE_FAILED",
            "TENANT_MOVE_FAILED",
        ],
    ),
];

/// Delivery channels.
pub const CHANNEL_WEBHOOK: &str = "webhook";
pub const CHANNEL_EMAIL: &str = "email";

/// The event type of an invitation e-mail.
pub const INVITATION_EVENT: &str = "tenant.invitation";
/// The audit events that queue the first admin's invitation e-mail: the tenant is ready, or a fresh link was made.
pub const INVITATION_RAISED_BY: [&str; 2] = ["TENANT_PROVISIONED", "INVITATION_RESENT"];

/// The notification events an audit event raises.
pub fn events_raised_by(audit_event_type: &str) -> impl Iterator<Item = &'static str> + '_ {
    NOTIFICATION_EVENTS
        .iter()
        .filter(move |(_, raised_by)| raised_by.contains(&audit_event_type))
        .map(|(event, _)| *event)
}

/// A webhook subscription.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WebhookRecord {
    pub id: String,
    /// Where deliveries go. Serialized as [`shown_url`]: a URL's path can be its credential (a Slack incoming
    /// webhook's is), so only the sender reads it whole.
    #[serde(serialize_with = "serialize_shown_url")]
    pub url: String,
    pub events: Vec<String>,
    /// `standard` (Standard Webhooks JSON) or `slack` (a Slack-compatible message).
    pub format: String,
    pub created_by: String,
    pub created_at: i64,
}

/// A webhook URL as people and programs are shown it: the scheme, host and port, and `/…` for whatever follows
/// (a path or query may carry the receiver's secret).
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "…".into();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // Credentials in the authority are refused when a webhook is added; drop them anyway.
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if tail.is_empty() || tail == "/" {
        format!("{scheme}://{host}/")
    } else {
        format!("{scheme}://{host}/…")
    }
}

fn serialize_shown_url<S: serde::Serializer>(
    url: &str,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(&shown_url(url))
}

/// One delivery of one event to one webhook.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NotificationRecord {
    /// The idempotency id (`webhook-id`, or the e-mail's `Message-ID`), the same on every attempt.
    pub id: String,
    /// `webhook` or `email`.
    pub channel: String,
    /// The subscription a webhook delivery goes to (empty for an e-mail).
    pub webhook_id: String,
    /// The tenant an e-mail is about.
    pub tenant_slug: Option<String>,
    /// Where an e-mail goes.
    pub recipient: Option<String>,
    pub event_type: String,
    /// The JSON body, as sent (never a secret).
    pub payload: serde_json::Value,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub enum AttemptOutcome {
    Sent,
    /// Failed; try again at this time.
    Retry {
        at: i64,
        error: String,
    },
    /// Failed for good (attempts used up, or the webhook is gone).
    Dead {
        error: String,
    },
}

const NOTIFICATION_COLUMNS: &str =
    "id, webhook_id, event_type, payload, status, attempts, next_attempt_at, last_error,
    created_at, sent_at, channel, tenant_slug, recipient";

impl WebhookRecord {
    fn from_row(row: &AnyRow) -> Result<WebhookRecord> {
        let events: String = get(row, "events")?;
        Ok(WebhookRecord {
            id: get(row, "id")?,
            url: get(row, "url")?,
            events: serde_json::from_str(&events)
                .map_err(|error| Error::Corrupt(format!("webhook events: {error}")))?,
            format: get(row, "format")?,
            created_by: get(row, "created_by")?,
            created_at: get(row, "created_at")?,
        })
    }
}

impl NotificationRecord {
    fn from_row(row: &AnyRow) -> Result<NotificationRecord> {
        let payload: String = get(row, "payload")?;
        Ok(NotificationRecord {
            id: get(row, "id")?,
            channel: get(row, "channel")?,
            webhook_id: get(row, "webhook_id")?,
            tenant_slug: get(row, "tenant_slug")?,
            recipient: get(row, "recipient")?,
            event_type: get(row, "event_type")?,
            payload: serde_json::from_str(&payload)
                .map_err(|error| Error::Corrupt(format!("notification payload: {error}")))?,
            status: get(row, "status")?,
            attempts: get(row, "attempts")?,
            next_attempt_at: get(row, "next_attempt_at")?,
            last_error: get(row, "last_error")?,
            created_at: get(row, "created_at")?,
            sent_at: get(row, "sent_at")?,
        })
    }
}

/// The body a webhook gets for an audit event: the event type, when, and the objects concerned (the audit
/// event's own fields, which never hold a secret).
fn payload(event_type: &str, at: i64, audit: &NewAuditEvent) -> serde_json::Value {
    serde_json::json!({
        "type": event_type,
        "timestamp": at,
        "data": {
            "tenant": audit.tenant_slug,
            "job_id": audit.job_id,
            "actor": audit.actor,
            "audit_event": audit.event_type,
            "details": audit.details,
        }
    })
}

/// Queues a delivery to every webhook subscribed to an event these audit events raise, inside the caller's
/// transaction (the one that writes the audit events).
pub(crate) async fn enqueue_for_audits(
    connection: &mut AnyConnection,
    audits: &[NewAuditEvent],
    at: i64,
) -> Result<()> {
    for audit in audits {
        if INVITATION_RAISED_BY.contains(&audit.event_type) {
            enqueue_invitation(connection, audit, at).await?;
        }
    }
    let raised: Vec<(&'static str, &NewAuditEvent)> = audits
        .iter()
        .flat_map(|audit| events_raised_by(audit.event_type).map(move |event| (event, audit)))
        .collect();
    if raised.is_empty() {
        return Ok(());
    }
    let webhooks: Vec<(String, String)> = sqlx::query_as("SELECT id, events FROM webhooks")
        .fetch_all(&mut *connection)
        .await?;
    for (webhook_id, events) in webhooks {
        let events: Vec<String> = serde_json::from_str(&events).unwrap_or_default();
        for (event, audit) in &raised {
            if !events.iter().any(|subscribed| subscribed == event) {
                continue;
            }
            sqlx::query(&format!(
                "INSERT INTO notifications ({NOTIFICATION_COLUMNS})
                 VALUES ($1, $2, $3, $4, 'pending', 0, $5, NULL, $5, NULL, 'webhook', NULL, NULL)"
            ))
            .bind(format!("msg_{}", uuid::Uuid::now_v7().simple()))
            .bind(&webhook_id)
            .bind(*event)
            .bind(payload(event, at, audit).to_string())
            .bind(at)
            .execute(&mut *connection)
            .await?;
        }
    }
    Ok(())
}

/// Queues the invitation e-mail to the tenant's first admin, and ends any older one not sent yet (it would carry
/// a link that no longer works). The link is read from the secret store when the e-mail is sent.
async fn enqueue_invitation(
    connection: &mut AnyConnection,
    audit: &NewAuditEvent,
    at: i64,
) -> Result<()> {
    let Some(slug) = audit.tenant_slug.as_deref() else {
        return Ok(());
    };
    let admin_email: Option<String> =
        sqlx::query_scalar("SELECT admin_email FROM tenants WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&mut *connection)
            .await?;
    let Some(admin_email) = admin_email else {
        return Ok(());
    };
    sqlx::query(
        "UPDATE notifications SET status = 'dead', last_error = 'superseded by a newer invitation',
             lease_owner = NULL, lease_expires_at = NULL
         WHERE channel = 'email' AND tenant_slug = $1 AND status = 'pending'",
    )
    .bind(slug)
    .execute(&mut *connection)
    .await?;
    let body = serde_json::json!({
        "type": INVITATION_EVENT,
        "timestamp": at,
        "data": { "tenant": slug, "job_id": audit.job_id, "actor": audit.actor, "admin_email": admin_email },
    });
    sqlx::query(&format!(
        "INSERT INTO notifications ({NOTIFICATION_COLUMNS})
         VALUES ($1, '', $2, $3, 'pending', 0, $4, NULL, $4, NULL, 'email', $5, $6)"
    ))
    .bind(format!("msg_{}", uuid::Uuid::now_v7().simple()))
    .bind(INVITATION_EVENT)
    .bind(body.to_string())
    .bind(at)
    .bind(slug)
    .bind(&admin_email)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

impl Registry {
    pub async fn add_webhook(&self, webhook: &WebhookRecord) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO webhooks (id, url, events, format, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&webhook.id)
        .bind(&webhook.url)
        .bind(serde_json::to_string(&webhook.events).unwrap_or_default())
        .bind(&webhook.format)
        .bind(&webhook.created_by)
        .bind(webhook.created_at)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    pub async fn list_webhooks(&self) -> Result<Vec<WebhookRecord>> {
        let rows = sqlx::query(
            "SELECT id, url, events, format, created_by, created_at FROM webhooks ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(WebhookRecord::from_row).collect()
    }

    pub async fn get_webhook(&self, id: &str) -> Result<Option<WebhookRecord>> {
        let row = sqlx::query(
            "SELECT id, url, events, format, created_by, created_at FROM webhooks WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(WebhookRecord::from_row).transpose()
    }

    /// Removes a subscription; its deliveries not yet sent end `dead`. `false` when there was none.
    pub async fn remove_webhook(&self, id: &str) -> Result<bool> {
        let mut transaction = self.begin_write().await?;
        let removed = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(&mut *transaction)
            .await?;
        sqlx::query(
            "UPDATE notifications SET status = 'dead', last_error = 'the webhook was removed', lease_owner = NULL
             WHERE webhook_id = $1 AND status = 'pending'",
        )
        .bind(id)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(removed.rows_affected() == 1)
    }

    /// Deliveries, newest first, of one status if given.
    pub async fn list_notifications(
        &self,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<NotificationRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE (CAST($1 AS TEXT) IS NULL OR status = $1)
             ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(status)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(NotificationRecord::from_row).collect()
    }

    /// Claims up to `limit` deliveries that are due (pending, their time come, nobody's lease current, or the
    /// lease of an owner in `dead_owners`) for `owner`. E-mails only when `with_email` (a sender with no SMTP
    /// server leaves them waiting for one that has).
    pub async fn claim_due_notifications(
        &self,
        owner: &str,
        lease_ttl_millis: i64,
        limit: i64,
        dead_owners: &[String],
        with_email: bool,
    ) -> Result<Vec<NotificationRecord>> {
        let mut transaction = self.begin_write().await?;
        let now = now_millis();
        let skip_locked = match self.dialect {
            crate::Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            crate::Dialect::Sqlite => "",
        };
        let candidates: Vec<(String, Option<String>, Option<i64>)> = sqlx::query_as(&format!(
            "SELECT id, lease_owner, lease_expires_at FROM notifications
             WHERE status = 'pending' AND next_attempt_at <= $1 AND (channel = 'webhook' OR $3 = 1)
             ORDER BY next_attempt_at, id LIMIT $2{skip_locked}"
        ))
        .bind(now)
        .bind(limit * 4)
        .bind(i64::from(with_email))
        .fetch_all(&mut *transaction)
        .await?;
        let mut claimed = Vec::new();
        for (id, lease_owner, lease_expires_at) in candidates {
            if claimed.len() as i64 >= limit {
                break;
            }
            let free = match (&lease_owner, lease_expires_at) {
                (None, _) => true,
                (Some(holder), expires) => {
                    expires.is_none_or(|expires| expires < now) || dead_owners.contains(holder)
                }
            };
            if !free {
                continue;
            }
            let row = sqlx::query(&format!(
                "UPDATE notifications SET lease_owner = $1, lease_expires_at = $2 WHERE id = $3
                 RETURNING {NOTIFICATION_COLUMNS}"
            ))
            .bind(owner)
            .bind(now + lease_ttl_millis)
            .bind(&id)
            .fetch_one(&mut *transaction)
            .await?;
            claimed.push(NotificationRecord::from_row(&row)?);
        }
        transaction.commit().await?;
        Ok(claimed)
    }

    /// The owners of deliveries being sent now, so a sender can tell which of them are gone.
    pub async fn notification_lease_owners(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT lease_owner FROM notifications WHERE status = 'pending' AND lease_owner IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records an attempt of a delivery `owner` holds. `false` when it no longer holds it.
    pub async fn record_attempt(
        &self,
        id: &str,
        owner: &str,
        outcome: &AttemptOutcome,
    ) -> Result<bool> {
        let mut transaction = self.begin_write().await?;
        let now = now_millis();
        let (status, next_at, error, sent_at) = match outcome {
            AttemptOutcome::Sent => (DELIVERY_SENT, now, None, Some(now)),
            AttemptOutcome::Retry { at, error } => {
                (DELIVERY_PENDING, *at, Some(error.as_str()), None)
            }
            AttemptOutcome::Dead { error } => (DELIVERY_DEAD, now, Some(error.as_str()), None),
        };
        let recorded = sqlx::query(
            "UPDATE notifications SET status = $1, next_attempt_at = $2, last_error = COALESCE($3, last_error),
                 sent_at = $4, attempts = attempts + 1, lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $5 AND lease_owner = $6 AND status = 'pending'",
        )
        .bind(status)
        .bind(next_at)
        .bind(error)
        .bind(sent_at)
        .bind(id)
        .bind(owner)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(recorded.rows_affected() == 1)
    }

    /// Puts a dead delivery back to pending, due now. `false` when there is no dead delivery with this id.
    pub async fn retry_notification(&self, id: &str) -> Result<bool> {
        let mut transaction = self.begin_write().await?;
        let retried = sqlx::query(
            "UPDATE notifications SET status = 'pending', next_attempt_at = $1, lease_owner = NULL,
                 lease_expires_at = NULL
             WHERE id = $2 AND status = 'dead'
               AND (channel = 'email' OR EXISTS (SELECT 1 FROM webhooks w WHERE w.id = notifications.webhook_id))",
        )
        .bind(now_millis())
        .bind(id)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(retried.rows_affected() == 1)
    }

    /// A tenant's newest invitation e-mail, if one was ever queued.
    pub async fn latest_invitation(&self, slug: &str) -> Result<Option<NotificationRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE channel = 'email' AND tenant_slug = $1
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .bind(slug)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(NotificationRecord::from_row).transpose()
    }

    /// How many deliveries stand at each status, per channel.
    pub async fn notification_counts(&self) -> Result<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT channel, status, COUNT(*) FROM notifications GROUP BY channel, status ORDER BY channel, status",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::shown_url;

    #[test]
    fn a_shown_url_keeps_no_path_or_query() {
        for (url, shown) in [
            (
                "https://hooks.slack.com/services/T000/B000/XXXX",
                "https://hooks.slack.com/…",
            ),
            (
                "https://example.com/hook?token=abc",
                "https://example.com/…",
            ),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/"),
            ("https://example.com", "https://example.com/"),
            ("https://user:pw@example.com/x", "https://example.com/…"),
            ("not a url", "…"),
        ] {
            assert_eq!(shown_url(url), shown, "{url}");
        }
    }
}
