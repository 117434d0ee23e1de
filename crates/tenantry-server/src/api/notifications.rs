//! `/platform/notifications` and `/platform/webhooks`: the webhook outbox over HTTP. Deliveries newest first
//! with their target, a dead one retried; subscriptions listed, added (the signing secret answered this once)
//! and removed.

use super::{page_limit, ApiJson, ApiQuery};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ProblemDetails};
use crate::state::ServerState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tenantry_core::Error as CodedError;
use tenantry_registry::{
    NotificationRecord, WebhookRecord, DELIVERY_DEAD, DELIVERY_PENDING, DELIVERY_SENT,
};
use tenantry_workflows::WebhookRequest;

/// A delivery's status, as a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Sent,
    Dead,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Sent,
        DeliveryStatus::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => DELIVERY_PENDING,
            DeliveryStatus::Sent => DELIVERY_SENT,
            DeliveryStatus::Dead => DELIVERY_DEAD,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NotificationQuery {
    /// Only deliveries in this status.
    #[param(inline)]
    pub status: Option<DeliveryStatus>,
    /// How many deliveries, newest first (default 100, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// One delivery of one event: to a webhook, or the first admin's invitation e-mail.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// The delivery's id, sent as `webhook-id` (or as the e-mail's Message-ID, at the sender's domain) on every
    /// attempt.
    pub id: String,
    /// `webhook` or `email`.
    pub channel: String,
    /// The event: `tenant.provisioned`, `job.failed`, … (`tenant.invitation` for an e-mail).
    pub event: String,
    /// The subscription (empty for an e-mail).
    pub webhook_id: String,
    /// Where a webhook delivery goes; null once the webhook was removed, and for an e-mail.
    pub url: Option<String>,
    /// The tenant an e-mail is about.
    pub tenant: Option<String>,
    /// Where an e-mail goes.
    pub recipient: Option<String>,
    /// `pending`, `sent` or `dead`.
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// When the next attempt is due (Unix milliseconds); only for a pending delivery.
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

impl DeliveryView {
    fn of(delivery: NotificationRecord, urls: &BTreeMap<String, String>) -> DeliveryView {
        DeliveryView {
            url: urls.get(&delivery.webhook_id).cloned(),
            next_attempt_at: (delivery.status == DELIVERY_PENDING)
                .then_some(delivery.next_attempt_at),
            id: delivery.id,
            channel: delivery.channel,
            event: delivery.event_type,
            webhook_id: delivery.webhook_id,
            tenant: delivery.tenant_slug,
            recipient: delivery.recipient,
            status: delivery.status,
            attempts: delivery.attempts,
            last_error: delivery.last_error,
            created_at: delivery.created_at,
            sent_at: delivery.sent_at,
        }
    }
}

/// A webhook subscription (never its secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    /// `standard` (Standard Webhooks JSON) or `slack` (a Slack-compatible message).
    pub format: String,
    pub created_by: String,
    pub created_at: i64,
}

impl From<WebhookRecord> for WebhookView {
    fn from(webhook: WebhookRecord) -> WebhookView {
        WebhookView {
            id: webhook.id,
            url: tenantry_registry::shown_url(&webhook.url),
            events: webhook.events,
            format: webhook.format,
            created_by: webhook.created_by,
            created_at: webhook.created_at,
        }
    }
}

/// What `POST /platform/webhooks` takes.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// `https://…`, or `http://` to a loopback address. An address inside the network is refused unless the
    /// server's `webhook_allow_internal` is set; the name is resolved and judged again at every send.
    pub url: String,
    /// The events to send (at least one).
    #[schema(min_items = 1)]
    pub events: Vec<String>,
    /// `standard` (default) or `slack`.
    pub format: Option<String>,
}

/// A new webhook with its signing secret, which is shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookCreated {
    pub webhook: WebhookView,
    /// `whsec_…`: verify each delivery's `webhook-signature` with it. Not shown again.
    pub secret: String,
}

/// Deliveries newest first, each joined with its webhook's URL.
pub async fn read_deliveries(
    state: &ServerState,
    status: Option<&str>,
    limit: Option<i64>,
) -> ApiResult<Vec<DeliveryView>> {
    let registry = &state.platform.registry;
    let urls: BTreeMap<String, String> = registry
        .list_webhooks()
        .await?
        .into_iter()
        .map(|webhook| (webhook.id, tenantry_registry::shown_url(&webhook.url)))
        .collect();
    let deliveries = registry
        .list_notifications(status, page_limit(limit))
        .await?;
    Ok(deliveries
        .into_iter()
        .map(|delivery| DeliveryView::of(delivery, &urls))
        .collect())
}

/// Puts a dead delivery back to pending and sends what is due at once, as the server's runner.
pub async fn retry_delivery(state: &ServerState, notification_id: &str) -> ApiResult<()> {
    let platform = &state.platform;
    if !platform
        .registry
        .retry_notification(notification_id)
        .await?
    {
        return Err(ApiError::not_found(format!(
            "dead delivery {notification_id} of an existing webhook"
        )));
    }
    // The sender polls and would take it soon; sending now lets the caller see the outcome right away.
    if let Err(error) = tenantry_workflows::send_due(platform, state.runner.owner()).await {
        tracing::warn!(%error, "sending after a retry failed; the sender tries again");
    }
    Ok(())
}

/// Adds a webhook as `principal`; bad input (`E_INVALID_INPUT`) stores nothing.
pub async fn create(
    state: &ServerState,
    principal: &Principal,
    body: WebhookBody,
) -> Result<WebhookCreated, CodedError> {
    let request = WebhookRequest {
        url: body.url,
        events: body.events,
        format: body.format,
    };
    let (webhook, secret) =
        tenantry_workflows::add_webhook(&state.platform, &request, &principal.actor()).await?;
    Ok(WebhookCreated {
        webhook: webhook.into(),
        secret: secret.expose().to_owned(),
    })
}

/// Every webhook, oldest first.
pub async fn read_webhooks(state: &ServerState) -> ApiResult<Vec<WebhookView>> {
    Ok(state
        .platform
        .registry
        .list_webhooks()
        .await?
        .into_iter()
        .map(WebhookView::from)
        .collect())
}

/// Webhook deliveries, newest first: the event, the webhook and its URL, the attempts, the status, the last
/// error and, for a pending one, when it is tried next.
#[utoipa::path(get, path = "/platform/notifications", tag = "notifications", params(NotificationQuery),
    responses((status = 200, body = Vec<DeliveryView>),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_notifications(
    State(state): State<ServerState>,
    ApiQuery(query): ApiQuery<NotificationQuery>,
) -> ApiResult<axum::Json<Vec<DeliveryView>>> {
    Ok(axum::Json(
        read_deliveries(
            &state,
            query.status.map(DeliveryStatus::as_str),
            query.limit,
        )
        .await?,
    ))
}

/// Send a dead delivery again: it goes back to pending with the same id, and is sent at once.
#[utoipa::path(post, path = "/platform/notifications/{notification_id}/retry", tag = "notifications",
    params(("notification_id" = String, Path)),
    responses((status = 204, description = "Pending again, and sent if the receiver answered"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No dead delivery with this id, or its webhook was removed", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn retry_notification(
    State(state): State<ServerState>,
    Path(notification_id): Path<String>,
) -> ApiResult<StatusCode> {
    retry_delivery(&state, &notification_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every webhook subscription (never a secret).
#[utoipa::path(get, path = "/platform/webhooks", tag = "notifications",
    responses((status = 200, body = Vec<WebhookView>),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_webhooks(
    State(state): State<ServerState>,
) -> ApiResult<axum::Json<Vec<WebhookView>>> {
    Ok(axum::Json(read_webhooks(&state).await?))
}

/// Subscribe a URL to events. The answer holds the signing secret, which is not shown again.
#[utoipa::path(post, path = "/platform/webhooks", tag = "notifications",
    request_body = WebhookBody,
    responses((status = 201, body = WebhookCreated,
            headers(("location" = String, description = "The webhook's URL"))),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "A URL the request-forgery guard refuses, an unknown event or format, or no event", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The secret store is unavailable", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create_webhook(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<WebhookBody>,
) -> ApiResult<Response> {
    let created = create(&state, &principal, body).await?;
    let location = format!("/platform/webhooks/{}", created.webhook.id);
    let mut response = (StatusCode::CREATED, axum::Json(created)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Remove a webhook and its secret; its deliveries not sent yet end dead.
#[utoipa::path(delete, path = "/platform/webhooks/{webhook_id}", tag = "notifications",
    params(("webhook_id" = String, Path)),
    responses((status = 204, description = "Removed"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn delete_webhook(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(webhook_id): Path<String>,
) -> ApiResult<StatusCode> {
    tenantry_workflows::remove_webhook(&state.platform, &webhook_id, &principal.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::DeliveryStatus;

    #[test]
    fn the_status_filter_is_the_outboxs_statuses() {
        for status in DeliveryStatus::ALL {
            let parsed: DeliveryStatus = serde_json::from_value(status.as_str().into()).unwrap();
            assert_eq!(parsed, status);
        }
    }
}
