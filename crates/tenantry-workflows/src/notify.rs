//! Delivering the outbox: webhooks added by operators, and the sender that `serve` and `worker` run (and the
//! CLI, once, for the job it ran). Each delivery is claimed with a lease, sent with its own id (a webhook with
//! its subscription's signature, an invitation e-mail over SMTP, see `crate::invitations`), and recorded: sent, retried later with exponential backoff, or dead once its
//! attempts are used up (an operator can retry a dead one).

use crate::invitations::SendFailure;
use crate::platform::Platform;
use crate::registry_error;
use std::time::Duration;
use tenantry_core::{Error as CodedError, ErrorCode};
use tenantry_engine::owner_is_dead_local_process;
use tenantry_providers::credentials::SecretString;
use tenantry_providers::webhooks;
use tenantry_registry::{
    AttemptOutcome, NotificationRecord, WebhookRecord, CHANNEL_EMAIL, NOTIFICATION_EVENTS,
};
use tokio::sync::watch;

/// How often an idle sender looks for due deliveries.
pub const SENDER_POLL: Duration = Duration::from_millis(250);
/// How long a sender holds a delivery before another may take it.
const DELIVERY_LEASE: Duration = Duration::from_secs(30);
/// Deliveries sent at once by one sender.
const SEND_BATCH: i64 = 16;
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The formats a webhook's body can take.
pub const WEBHOOK_FORMATS: [&str; 2] = ["standard", "slack"];

/// The secret store's name of a webhook's signing secret.
pub fn webhook_secret_name(webhook_id: &str) -> String {
    format!("webhook-{webhook_id}")
}

/// A webhook as an operator asks for it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    pub url: String,
    pub events: Vec<String>,
    #[serde(default)]
    pub format: Option<String>,
}

/// Adds a webhook: the URL checked against the forgery guard, the events known, a signing secret made and kept
/// in the secret store. Returns the webhook and its secret, which is shown this once. Bad input changes nothing.
pub async fn add_webhook(
    platform: &Platform,
    request: &WebhookRequest,
    actor: &str,
) -> Result<(WebhookRecord, SecretString), CodedError> {
    let format = request.format.clone().unwrap_or_else(|| "standard".into());
    if !WEBHOOK_FORMATS.contains(&format.as_str()) {
        return Err(CodedError::invalid_input(format!(
            "format must be one of {}",
            WEBHOOK_FORMATS.join(", ")
        )));
    }
    let known: Vec<&str> = NOTIFICATION_EVENTS
        .iter()
        .map(|(event, _)| *event)
        .collect();
    let mut events: Vec<String> = Vec::new();
    for event in request.events.iter().map(|event| event.trim()) {
        if !known.contains(&event) {
            return Err(CodedError::invalid_input(format!(
                "unknown event {event:?}; the events are {}",
                known.join(", ")
            )));
        }
        if !events.iter().any(|seen| seen == event) {
            events.push(event.to_owned());
        }
    }
    if events.is_empty() {
        return Err(CodedError::invalid_input(format!(
            "name at least one event: {}",
            known.join(", ")
        )));
    }
    webhooks::check_url(&request.url, platform.settings.notifications.allow_internal)
        .await
        .map_err(|error| CodedError::invalid_input(error.to_string()))?;
    let webhook = WebhookRecord {
        id: format!("wh_{}", uuid::Uuid::now_v7().simple()),
        url: request.url.clone(),
        events,
        format,
        created_by: actor.to_owned(),
        created_at: tenantry_registry::now_millis(),
    };
    let secret = webhooks::new_signing_secret();
    // The secret first: a webhook whose secret is missing could not sign; a secret without its webhook is
    // an orphan `doctor` names.
    platform
        .secrets
        .put(&webhook_secret_name(&webhook.id), &secret)
        .await
        .map_err(|error| {
            CodedError::new(
                ErrorCode::ProvisioningUnavailable,
                format!("secret store: {error}"),
            )
        })?;
    platform
        .registry
        .add_webhook(&webhook)
        .await
        .map_err(registry_error)?;
    audit_webhook(platform, "WEBHOOK_ADDED", &webhook, actor).await?;
    Ok((webhook, secret))
}

/// Audits a subscription's change with who made it: the webhook's id, shown URL, events and format.
async fn audit_webhook(
    platform: &Platform,
    event_type: &'static str,
    webhook: &WebhookRecord,
    actor: &str,
) -> Result<(), CodedError> {
    platform
        .registry
        .record_audit(&tenantry_registry::NewAuditEvent {
            actor: actor.to_owned(),
            event_type,
            tenant_slug: None,
            job_id: None,
            details: serde_json::json!({
                "webhook": webhook.id,
                "url": tenantry_registry::shown_url(&webhook.url),
                "events": webhook.events,
                "format": webhook.format,
            }),
        })
        .await
        .map_err(registry_error)
}

/// Removes a webhook and its secret, audited with `actor`; its deliveries not sent yet end dead. `E_NOT_FOUND`
/// when there is none.
pub async fn remove_webhook(platform: &Platform, id: &str, actor: &str) -> Result<(), CodedError> {
    let webhook = platform
        .registry
        .get_webhook(id)
        .await
        .map_err(registry_error)?;
    if !platform
        .registry
        .remove_webhook(id)
        .await
        .map_err(registry_error)?
    {
        return Err(CodedError::new(
            ErrorCode::NotFound,
            format!("webhook {id} not found"),
        ));
    }
    let _ = platform.secrets.delete(&webhook_secret_name(id)).await;
    if let Some(webhook) = webhook {
        audit_webhook(platform, "WEBHOOK_REMOVED", &webhook, actor).await?;
    }
    Ok(())
}

/// The delay before attempt `attempts + 1`, after `attempts` failed ones: the base, doubled each time.
fn backoff(base: Duration, attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    base.saturating_mul(2u32.saturating_pow(doublings))
        .min(MAX_BACKOFF)
}

/// The body a subscription in `format` gets.
fn body_for(format: &str, delivery: &NotificationRecord) -> Vec<u8> {
    match format {
        "slack" => {
            let data = &delivery.payload["data"];
            let mut text = format!("*{}*", delivery.event_type);
            if let Some(tenant) = data["tenant"].as_str() {
                text.push_str(&format!(" tenant `{tenant}`"));
            }
            if let Some(job) = data["job_id"].as_str() {
                text.push_str(&format!(" job `{job}`"));
            }
            if let Some(code) = data["details"]["error_code"].as_str() {
                text.push_str(&format!(": {code}"));
            }
            serde_json::json!({ "text": text }).to_string().into_bytes()
        }
        _ => delivery.payload.to_string().into_bytes(),
    }
}

/// What one attempt came to, before it is recorded.
struct Attempted {
    outcome: AttemptOutcome,
    /// An invitation link that was sent: forgotten once the send is recorded.
    sent_link: Option<SecretString>,
}

/// Sends one claimed delivery, by its channel, and says how it went.
async fn attempt(platform: &Platform, delivery: &NotificationRecord) -> Attempted {
    let settings = &platform.settings.notifications;
    let sent = match delivery.channel.as_str() {
        CHANNEL_EMAIL => crate::invitations::send_invitation(platform, delivery)
            .await
            .map(Some),
        _ => send_webhook(platform, delivery).await.map(|()| None),
    };
    let outcome = match &sent {
        Ok(_) => AttemptOutcome::Sent,
        Err(SendFailure::Permanent(error)) => AttemptOutcome::Dead {
            error: error.clone(),
        },
        Err(SendFailure::Retry(error))
            if delivery.attempts + 1 >= i64::from(settings.max_attempts) =>
        {
            AttemptOutcome::Dead {
                error: format!("{error} (gave up after {} attempts)", delivery.attempts + 1),
            }
        }
        Err(SendFailure::Retry(error)) => {
            let delay = backoff(settings.retry_base, delivery.attempts + 1);
            AttemptOutcome::Retry {
                at: tenantry_registry::now_millis()
                    + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
                error: error.clone(),
            }
        }
    };
    Attempted {
        outcome,
        sent_link: sent.ok().flatten(),
    }
}

/// Sends one webhook delivery, signed with its subscription's secret.
async fn send_webhook(
    platform: &Platform,
    delivery: &NotificationRecord,
) -> Result<(), SendFailure> {
    let settings = &platform.settings.notifications;
    let webhook = match platform.registry.get_webhook(&delivery.webhook_id).await {
        Ok(Some(webhook)) => webhook,
        Ok(None) => return Err(SendFailure::Permanent("the webhook was removed".into())),
        Err(error) => return Err(SendFailure::Retry(format!("registry: {error}"))),
    };
    let secret = match platform
        .secrets
        .get(&webhook_secret_name(&webhook.id))
        .await
    {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return Err(SendFailure::Permanent(
                "the webhook's signing secret is missing".into(),
            ))
        }
        Err(error) => return Err(SendFailure::Retry(format!("secret store: {error}"))),
    };
    // Judged again now: what the name resolves to may have changed since the webhook was added.
    let checked = webhooks::check_url(&webhook.url, settings.allow_internal)
        .await
        .map_err(|error| SendFailure::Retry(error.to_string()))?;
    let body = body_for(&webhook.format, delivery);
    let timestamp = tenantry_registry::now_millis() / 1000;
    let signature = webhooks::sign(&secret, &delivery.id, timestamp, &body)
        .map_err(|error| SendFailure::Permanent(error.to_string()))?;
    webhooks::deliver(&checked, &delivery.id, timestamp, &signature, body)
        .await
        .map_err(SendFailure::Retry)
}

/// One round: claims the due deliveries (up to a batch), sends them at once, records each. Returns how many
/// were attempted.
pub async fn send_due(platform: &Platform, owner: &str) -> Result<usize, CodedError> {
    let registry = &platform.registry;
    let dead_owners: Vec<String> = registry
        .notification_lease_owners()
        .await
        .map_err(registry_error)?
        .into_iter()
        .filter(|owner| owner_is_dead_local_process(owner))
        .collect();
    let claimed = registry
        .claim_due_notifications(
            owner,
            i64::try_from(DELIVERY_LEASE.as_millis()).unwrap_or(30_000),
            SEND_BATCH,
            &dead_owners,
            platform.settings.invitations.smtp.is_some(),
        )
        .await
        .map_err(registry_error)?;
    let n_claimed = claimed.len();
    let attempts = futures_util::future::join_all(claimed.iter().map(|delivery| async move {
        let Attempted { outcome, sent_link } = attempt(platform, delivery).await;
        if let Err(fired) = tenantry_core::failpoints::check("notification", "after_send").await {
            tracing::warn!(%fired, "not recording the delivery");
            return;
        }
        let counter = match &outcome {
            AttemptOutcome::Sent => "tenantry_notifications_sent_total",
            AttemptOutcome::Retry { .. } => "tenantry_notifications_retried_total",
            AttemptOutcome::Dead { .. } => "tenantry_notifications_dead_total",
        };
        metrics::counter!(counter, "event" => delivery.event_type.clone()).increment(1);
        if let AttemptOutcome::Retry { error, .. } | AttemptOutcome::Dead { error } = &outcome {
            tracing::warn!(delivery = %delivery.id, channel = %delivery.channel, event = %delivery.event_type, %error, "delivery failed");
        }
        match platform.registry.record_attempt(&delivery.id, owner, &outcome).await {
            Ok(true) => {
                if let (Some(link), Some(slug)) = (&sent_link, &delivery.tenant_slug) {
                    crate::invitations::forget_sent_link(platform, slug, link).await;
                }
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(delivery = %delivery.id, %error, "could not record a delivery attempt; it will be sent again with the same id");
            }
        }
    }));
    attempts.await;
    Ok(n_claimed)
}

/// The sender of `serve` and `worker`: sends what is due until `shutdown`.
pub async fn run_sender(platform: Platform, owner: String, mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        let busy = match send_due(&platform, &owner).await {
            Ok(n_sent) => n_sent > 0,
            Err(error) => {
                tracing::warn!(error = %error.message, "cannot send notifications now");
                false
            }
        };
        if !busy {
            // The poll finds what another process queued; the wake, what this one did, at once.
            tokio::select! {
                () = tokio::time::sleep(SENDER_POLL) => {}
                () = platform.outbox_wake.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_five_minutes() {
        let base = Duration::from_secs(1);
        let delays: Vec<u64> = (1..=12).map(|n| backoff(base, n).as_secs()).collect();
        assert_eq!(
            delays,
            vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
        );
    }
}
