//! The audit page: who did what to which tenant, newest first, filtered by tenant, event type and actor.

use super::errors::{OrPage, PageError};
use super::layout::{
    empty_state, html_response, page_header, query_escape, shell, short_id, time_ago, Field,
    Section, Viewer,
};
use crate::api::system::{list_audit, AuditQuery};
use crate::api::ApiQuery;
use crate::auth::Principal;
use crate::state::ServerState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use tenantry_registry::{AuditEvent, AuditFilter, Registry};

/// How many events the page shows.
const AUDIT_PAGE_SIZE: i64 = 200;

#[derive(Debug, Default, Deserialize)]
pub struct AuditPageQuery {
    tenant: Option<String>,
    event_type: Option<String>,
    actor: Option<String>,
}

fn details_text(details: &serde_json::Value) -> String {
    match details.as_object() {
        Some(fields) if fields.is_empty() => String::new(),
        Some(fields) => fields
            .iter()
            .map(|(key, value)| match value.as_str() {
                Some(text) => format!("{key}={text}"),
                None => format!("{key}={value}"),
            })
            .collect::<Vec<_>>()
            .join("  "),
        None if details.is_null() => String::new(),
        None => details.to_string(),
    }
}

/// Who the actors are, for people: `user:<id>` becomes the user's email; `os:<name>` and others stay as they are.
pub async fn actor_names<'a>(
    registry: &Registry,
    actors: impl IntoIterator<Item = &'a str>,
) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for actor in actors.into_iter().collect::<BTreeSet<_>>() {
        if let Some(user_id) = actor.strip_prefix("user:") {
            // An actor that cannot be looked up is shown as recorded; a page never fails over a name.
            if let Ok(Some(user)) = registry.get_user(user_id).await {
                names.insert(actor.to_owned(), user.email);
            }
        }
    }
    names
}

/// An actor by name, with the recorded actor on hover.
pub fn actor(names: &HashMap<String, String>, recorded: &str) -> Markup {
    html! {
        span title=(recorded) { (names.get(recorded).map(String::as_str).unwrap_or(recorded)) }
    }
}

/// Audit events as a table; `show_tenant` adds the tenant column (the tenant page leaves it out).
pub fn audit_table(
    events: &[AuditEvent],
    names: &HashMap<String, String>,
    show_tenant: bool,
) -> Markup {
    html! {
        div.table-wrap {
            table.audit {
                thead { tr {
                    th { "When" } th { "Event" }
                    @if show_tenant { th { "Tenant" } }
                    th { "Actor" } th.wide-only { "Job" } th.wide-only { "Details" }
                } }
                tbody {
                    @for event in events {
                        tr {
                            td { (time_ago(event.at)) }
                            td { code { (event.event_type) } }
                            @if show_tenant {
                                td.tenant-cell { @if let Some(slug) = &event.tenant_slug {
                                    a href={ "/platform/tenants/" (query_escape(slug)) } { (slug) }
                                } }
                            }
                            td.muted.actor { (actor(names, &event.actor)) }
                            td.wide-only { @if let Some(job_id) = &event.job_id {
                                a href={ "/platform/jobs/" (query_escape(job_id)) } { code { (short_id(job_id)) } }
                            } }
                            td.wide-only.details-cell { (details_text(&event.details)) }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /platform/audit` for a browser.
pub async fn audit_page(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<AuditPageQuery>,
) -> Result<Response, PageError> {
    let viewer = Viewer::new(&principal);
    let non_empty = |value: Option<String>| {
        value
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    };
    let tenant = non_empty(query.tenant);
    let event_type = non_empty(query.event_type);
    let actor = non_empty(query.actor);
    let filtered = tenant.is_some() || event_type.is_some() || actor.is_some();
    let axum::Json(events) = list_audit(
        State(state.clone()),
        ApiQuery(AuditQuery {
            tenant: tenant.clone(),
            event_type: event_type.clone(),
            actor: actor.clone(),
            since: None,
            until: None,
            limit: Some(AUDIT_PAGE_SIZE),
        }),
    )
    .await
    .or_page(&viewer)?;
    // Offer the event types and actors seen recently, so filters need no guessing.
    let recent = state
        .platform
        .registry
        .list_audit(&AuditFilter {
            tenant_slug: None,
            event_type: None,
            actor: None,
            since_millis: None,
            until_millis: None,
            limit: 500,
        })
        .await
        .or_page(&viewer)?;
    let known_types: BTreeSet<&str> = recent
        .iter()
        .map(|event| event.event_type.as_str())
        .collect();
    let known_actors: BTreeSet<&str> = recent.iter().map(|event| event.actor.as_str()).collect();
    let names = actor_names(
        &state.platform.registry,
        events.iter().map(|event| event.actor.as_str()),
    )
    .await;
    let event_type_field = Field {
        list: Some("event-types"),
        ..Field::text(
            "event_type",
            "Event type",
            event_type.as_deref().unwrap_or(""),
        )
    };
    let actor_field = Field {
        list: Some("actors"),
        ..Field::text("actor", "Actor", actor.as_deref().unwrap_or(""))
    };
    let body = html! {
        (page_header(html! { "Audit" }, Some(html! { "Every change, who made it, and when. Newest first." }), html! {}))
        form.filters method="get" action="/platform/audit" {
            (Field::text("tenant", "Tenant", tenant.as_deref().unwrap_or("")).render())
            (event_type_field.render())
            (actor_field.render())
            datalist #event-types { @for known in &known_types { option value=(known) {} } }
            datalist #actors { @for known in &known_actors { option value=(known) {} } }
            div.filter-actions {
                button type="submit" { "Filter" }
                @if filtered { a href="/platform/audit" { "Clear" } }
            }
        }
        @if events.is_empty() {
            @if filtered {
                (empty_state("No audit events match these filters.", html! { a href="/platform/audit" { "Clear the filters" } "." }))
            } @else {
                (empty_state("No audit events yet.", html! { "Adding a server, a user or a tenant records one." }))
            }
        } @else {
            (audit_table(&events, &names, true))
        }
    };
    Ok(html_response(
        StatusCode::OK,
        shell(Some(&viewer), Section::Audit, "Audit", body),
    ))
}
