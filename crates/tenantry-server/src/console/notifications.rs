//! The notifications page: webhook deliveries newest first (Retry on a dead one, for admins), the webhooks with
//! Remove, and the add form, whose result page shows the new signing secret this once.

use super::errors::{OrPage, PageError};
use super::layout::{
    empty_state, html_response, page_header, pill, query_escape, see_other, select_field, shell,
    time_ago, Field, Section, Viewer,
};
use crate::api::notifications::{
    self as api_notifications, DeliveryView, WebhookBody, WebhookCreated,
};
use crate::api::ApiForm;
use crate::auth::Principal;
use crate::state::ServerState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use tenantry_registry::{CHANNEL_EMAIL, DELIVERY_DEAD, DELIVERY_PENDING, NOTIFICATION_EVENTS};
use tenantry_workflows::WEBHOOK_FORMATS;

/// How many deliveries the page shows.
const DELIVERIES_SHOWN: i64 = 100;

/// What the add form holds on its way back with an error.
#[derive(Debug, Default)]
struct AddForm {
    url: String,
    events: Vec<String>,
    format: String,
    error: Option<String>,
}

fn delivery_row(delivery: &DeliveryView, viewer: &Viewer) -> Markup {
    html! {
        tr {
            td { code { (delivery.event) } }
            td.target {
                @match (&delivery.url, &delivery.recipient) {
                    (Some(url), _) => code { (url) },
                    (None, Some(recipient)) => {
                        "e-mail to " (recipient)
                        @if let Some(tenant) = &delivery.tenant {
                            " (" a href={ "/platform/tenants/" (query_escape(tenant)) } { (tenant) } ")"
                        }
                    }
                    (None, None) => span.muted { "removed webhook" },
                }
            }
            td.num { (delivery.attempts) }
            td { (pill(&delivery.status)) }
            td.details-cell { (delivery.last_error.as_deref().unwrap_or("")) }
            td {
                @if delivery.status == DELIVERY_PENDING {
                    @if let Some(at) = delivery.next_attempt_at { (time_ago(at)) }
                }
            }
            @if viewer.is_admin() {
                td.actions {
                    @if delivery.status == DELIVERY_DEAD && (delivery.url.is_some() || delivery.channel == CHANNEL_EMAIL) {
                        form method="post" action={ "/platform/notifications/" (query_escape(&delivery.id)) "/retry" } {
                            (viewer.csrf_field())
                            button.small type="submit" aria-label={ "Retry delivery " (delivery.id) } { "Retry" }
                        }
                    }
                }
            }
        }
    }
}

fn add_webhook_form(viewer: &Viewer, form: &AddForm) -> Markup {
    let formats: Vec<(String, String, bool)> = WEBHOOK_FORMATS
        .iter()
        .map(|format| ((*format).to_owned(), (*format).to_owned(), false))
        .collect();
    let url_field = Field {
        input_type: "url",
        hint: Some("https://…, or http:// to a loopback address. Addresses inside the network are refused."),
        autocomplete: Some("off"),
        required: true,
        ..Field::text("url", "URL", &form.url)
    };
    html! {
        section.panel #add-webhook {
            h2 { "Add a webhook" }
            @if let Some(error) = &form.error { p.form-error role="alert" { (error) } }
            form.grid-form method="post" action="/platform/webhooks" {
                (viewer.csrf_field())
                (url_field.render())
                fieldset.events {
                    legend { "Events" }
                    @for (event, _) in NOTIFICATION_EVENTS {
                        @let id = format!("event-{}", event.replace('.', "-"));
                        div.checkbox-field {
                            input id=(id) type="checkbox" name="events" value=(event)
                                checked[form.events.iter().any(|chosen| chosen == event)];
                            label for=(id) { code { (event) } }
                        }
                    }
                }
                (select_field("format", "Format", &formats, if form.format.is_empty() { "standard" } else { &form.format }, None))
                div.form-actions { button.primary type="submit" { "Add webhook" } }
            }
        }
    }
}

fn webhooks_table(webhooks: &[api_notifications::WebhookView], viewer: &Viewer) -> Markup {
    html! {
        div.table-wrap {
            table.webhooks {
                thead { tr {
                    th { "URL" } th { "Events" } th.wide-only { "Format" } th.wide-only { "Added" }
                    @if viewer.is_admin() { th { span.visually-hidden { "Actions" } } }
                } }
                tbody {
                    @for webhook in webhooks {
                        tr {
                            td.target { code { (webhook.url) } }
                            td { (webhook.events.join(", ")) }
                            td.wide-only { (webhook.format) }
                            td.wide-only { (time_ago(webhook.created_at)) }
                            @if viewer.is_admin() {
                                td.actions {
                                    form method="post" action={ "/platform/webhooks/" (query_escape(&webhook.id)) "/remove" } {
                                        (viewer.csrf_field())
                                        button.small.danger type="submit" aria-label={ "Remove webhook " (webhook.url) } { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn render_notifications(
    state: &ServerState,
    viewer: &Viewer,
    form: &AddForm,
    status: StatusCode,
) -> Result<Response, PageError> {
    let deliveries = api_notifications::read_deliveries(state, None, Some(DELIVERIES_SHOWN))
        .await
        .or_page(viewer)?;
    let webhooks = api_notifications::read_webhooks(state)
        .await
        .or_page(viewer)?;
    let body = html! {
        (page_header(
            html! { "Notifications" },
            Some(html! { "Webhook deliveries of the platform's events, newest first, and where they go." }),
            html! { @if viewer.is_admin() { a.button href="#add-webhook" { "Add webhook" } } },
        ))
        h2 { "Deliveries" }
        @if deliveries.is_empty() {
            (empty_state("No deliveries yet.", html! {
                "Each event a webhook subscribes to (a tenant provisioned, a job failed, …) is delivered from here."
            }))
        } @else {
            div.table-wrap {
                table.deliveries {
                    thead { tr {
                        th { "Event" } th { "Target" } th.num { "Attempts" } th { "Status" } th { "Last error" }
                        th { "Next try" }
                        @if viewer.is_admin() { th { span.visually-hidden { "Actions" } } }
                    } }
                    tbody {
                        @for delivery in &deliveries { (delivery_row(delivery, viewer)) }
                    }
                }
            }
        }
        h2 { "Webhooks" }
        @if webhooks.is_empty() {
            (empty_state("No webhooks yet.", html! {
                @if viewer.is_admin() { "Add one with the form below, or from a shell: " } @else { "An admin adds one, for example: " }
                code { "tenantry webhooks add --url https://hooks.example.com/tenantry --events tenant.provisioned" }
            }))
        } @else {
            (webhooks_table(&webhooks, viewer))
        }
        @if viewer.is_admin() { (add_webhook_form(viewer, form)) }
    };
    Ok(html_response(
        status,
        shell(Some(viewer), Section::Notifications, "Notifications", body),
    ))
}

/// `GET /platform/notifications` for a browser.
pub async fn notifications_page(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, PageError> {
    let viewer = Viewer::new(&principal);
    render_notifications(&state, &viewer, &AddForm::default(), StatusCode::OK).await
}

/// `POST /platform/notifications/{notification_id}/retry` from a dead delivery's Retry button.
pub async fn retry_notification_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(notification_id): Path<String>,
) -> Response {
    let viewer = Viewer::new(&principal);
    match api_notifications::retry_delivery(&state, &notification_id).await {
        Ok(()) => see_other("/platform/notifications"),
        Err(error) => PageError::new(&viewer, error).into_response(),
    }
}

/// The page that shows a new webhook's secret, the one time it is shown.
fn created_page(viewer: &Viewer, created: &WebhookCreated) -> Response {
    let body = html! {
        (page_header(
            html! { "Webhook added" },
            Some(html! { code { (created.webhook.url) } " gets " (created.webhook.events.join(", ")) }),
            html! { a.button href="/platform/notifications" { "Back to notifications" } },
        ))
        section.panel.secret-once {
            h2 { "Signing secret" }
            p { "Copy it now: it is not shown again. Verify each delivery's " code { "webhook-signature" } " with it." }
            pre.secret { code { (created.secret) } }
        }
    };
    html_response(
        StatusCode::CREATED,
        shell(Some(viewer), Section::Notifications, "Webhook added", body),
    )
}

/// `POST /platform/webhooks` from the add form: the new secret on a page of its own, or the form with its error.
pub async fn add_webhook_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    ApiForm(fields): ApiForm<Vec<(String, String)>>,
) -> Response {
    let viewer = Viewer::new(&principal);
    let mut form = AddForm::default();
    for (name, value) in fields {
        match name.as_str() {
            "url" => form.url = value.trim().to_owned(),
            "events" => form.events.push(value),
            "format" => form.format = value,
            _ => {}
        }
    }
    let body = WebhookBody {
        url: form.url.clone(),
        events: form.events.clone(),
        format: (!form.format.is_empty()).then(|| form.format.clone()),
    };
    let error = match api_notifications::create(&state, &principal, body).await {
        Ok(created) => return created_page(&viewer, &created),
        Err(error) => error,
    };
    let status = crate::error::status_for(error.code);
    if status.is_server_error() {
        return PageError::new(&viewer, error).into_response();
    }
    form.error = Some(format!("{}: {}", error.code, error.message));
    render_notifications(&state, &viewer, &form, StatusCode::UNPROCESSABLE_ENTITY)
        .await
        .into_response()
}

/// `POST /platform/webhooks/{webhook_id}/remove` from a webhook's Remove button (a form cannot send DELETE).
pub async fn remove_webhook_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(webhook_id): Path<String>,
) -> Response {
    let viewer = Viewer::new(&principal);
    match tenantry_workflows::remove_webhook(&state.platform, &webhook_id, &principal.actor()).await
    {
        Ok(()) => see_other("/platform/notifications"),
        Err(error) => PageError::new(&viewer, error).into_response(),
    }
}
