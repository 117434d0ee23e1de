//! `webhooks add | list | remove`, `notifications list | retry` and `invitations resend`: the outbox from the
//! command line.

use crate::app::{cli_actor, App};
use crate::cli::{InvitationsCommand, NotificationsCommand, WebhooksCommand};
use crate::output::{print_json, print_table, when};
use crate::CommandResult;
use std::process::ExitCode;
use tenantry_core::{Error as CodedError, ErrorCode, Slug};
use tenantry_registry::{DELIVERY_DEAD, DELIVERY_PENDING, DELIVERY_SENT};
use tenantry_workflows::{add_webhook, registry_error, remove_webhook, WebhookRequest};

pub async fn webhooks(app: &App, command: WebhooksCommand, json: bool) -> CommandResult {
    match command {
        WebhooksCommand::Add {
            url,
            events,
            format,
        } => {
            let request = WebhookRequest {
                url,
                events,
                format,
            };
            let (webhook, secret) = add_webhook(&app.platform, &request, &cli_actor()).await?;
            if json {
                print_json(&serde_json::json!({ "webhook": webhook, "secret": secret.expose() }))?;
            } else {
                println!(
                    "webhook {} added for {}",
                    webhook.id,
                    webhook.events.join(", ")
                );
                println!("signing secret (shown once; verify each delivery's webhook-signature with it):");
                println!("{}", secret.expose());
            }
        }
        WebhooksCommand::List => {
            let webhooks = app
                .platform
                .registry
                .list_webhooks()
                .await
                .map_err(registry_error)?;
            if json {
                print_json(&webhooks)?;
            } else {
                let rows: Vec<Vec<String>> = webhooks
                    .iter()
                    .map(|webhook| {
                        vec![
                            webhook.id.clone(),
                            tenantry_registry::shown_url(&webhook.url),
                            webhook.format.clone(),
                            webhook.events.join(","),
                            webhook.created_by.clone(),
                        ]
                    })
                    .collect();
                print_table(&["ID", "URL", "FORMAT", "EVENTS", "ADDED BY"], &rows);
            }
        }
        WebhooksCommand::Remove { id } => {
            remove_webhook(&app.platform, &id, &cli_actor()).await?;
            if json {
                print_json(&serde_json::json!({ "removed": id }))?;
            } else {
                println!("webhook {id} removed");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn notifications(app: &App, command: NotificationsCommand, json: bool) -> CommandResult {
    match command {
        NotificationsCommand::List { status, limit } => {
            let statuses = [DELIVERY_PENDING, DELIVERY_SENT, DELIVERY_DEAD];
            if let Some(status) = &status {
                if !statuses.contains(&status.as_str()) {
                    return Err(CodedError::invalid_input(format!(
                        "status must be one of {}",
                        statuses.join(", ")
                    ))
                    .into());
                }
            }
            let deliveries = app
                .platform
                .registry
                .list_notifications(status.as_deref(), limit.clamp(1, 1000))
                .await
                .map_err(registry_error)?;
            if json {
                print_json(&deliveries)?;
            } else {
                let rows: Vec<Vec<String>> = deliveries
                    .iter()
                    .map(|delivery| {
                        vec![
                            delivery.id.clone(),
                            delivery.event_type.clone(),
                            delivery
                                .recipient
                                .clone()
                                .unwrap_or_else(|| delivery.webhook_id.clone()),
                            delivery.status.clone(),
                            delivery.attempts.to_string(),
                            if delivery.status == DELIVERY_PENDING {
                                when(Some(delivery.next_attempt_at))
                            } else {
                                String::new()
                            },
                            delivery.last_error.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "ID",
                        "EVENT",
                        "TO",
                        "STATUS",
                        "ATTEMPTS",
                        "NEXT TRY",
                        "LAST ERROR",
                    ],
                    &rows,
                );
            }
        }
        NotificationsCommand::Retry { id } => {
            if !app
                .platform
                .registry
                .retry_notification(&id)
                .await
                .map_err(registry_error)?
            {
                return Err(CodedError::new(
                    ErrorCode::NotFound,
                    format!(
                        "no dead delivery {id} (of an existing webhook, or an invitation e-mail)"
                    ),
                )
                .into());
            }
            let runner = app.runner();
            tenantry_workflows::send_due(&app.platform, runner.owner()).await?;
            if json {
                print_json(&serde_json::json!({ "retried": id }))?;
            } else {
                println!("delivery {id} sent again (see `tenantry notifications list`)");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn invitations(app: &App, command: InvitationsCommand, json: bool) -> CommandResult {
    let InvitationsCommand::Resend { slug } = command;
    let slug = Slug::parse(&slug)?;
    let resent = tenantry_workflows::resend_invitation(&app.platform, &slug, &cli_actor()).await?;
    // Sent from here at once when an SMTP server is configured (a serve or worker retries what fails).
    let runner = app.runner();
    if let Err(error) = tenantry_workflows::send_due(&app.platform, runner.owner()).await {
        tracing::warn!(error = %error.message, "the invitation is not sent now; a serve or worker will");
    }
    let state = tenantry_workflows::invitation_state(&app.platform, slug.as_str()).await?;
    if json {
        print_json(&serde_json::json!({ "resent": resent, "invitation": state }))?;
    } else if resent.emailed {
        let status = state
            .as_ref()
            .map_or("pending", |state| state.status.as_str());
        println!(
            "a fresh invitation for {} is {status}; the old link no longer works",
            resent.recipient
        );
        if let Some(error) = state.as_ref().and_then(|state| state.last_error.as_ref()) {
            println!("last error: {error} (retried by a serve or worker)");
        }
    } else {
        println!(
            "a fresh link for {} waits in the secret store as {} (no smtp_url is configured, so no e-mail is \
             sent: `tenantry secrets show {}`); the old link no longer works",
            resent.recipient, resent.secret, resent.secret
        );
    }
    Ok(ExitCode::SUCCESS)
}
