//! The servers page: the fleet with capacity bars, and for admins the add form and Drain. The admin URL typed
//! into the form goes to the secret store and is never shown again, not even when the form comes back with an error.

use super::errors::{OrPage, PageError};
use super::layout::{
    empty_state, html_response, page_header, pill, query_escape, see_other, select_field, shell,
    Field, Section, Viewer,
};
use crate::api::ApiForm;
use crate::auth::Principal;
use crate::state::ServerState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;
use tenantry_core::{EngineKind, ErrorCode, ServerName, ServerStatus};
use tenantry_providers::credentials::SecretString;
use tenantry_registry::ServerRecord;
use tenantry_workflows::{add_server, ServerRequest};

/// What the add form holds (never the admin URL on the way back) and the errors to show at each field.
#[derive(Debug, Default)]
struct AddForm {
    name: String,
    engine: String,
    capacity: String,
    region: String,
    errors: Vec<(&'static str, String)>,
}

impl AddForm {
    fn error(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(name, _)| *name == field)
            .map(|(_, message)| message.as_str())
    }
}

fn capacity_cell(server: &ServerRecord) -> Markup {
    let capacity = server.capacity_hint.max(1);
    html! {
        div.capacity {
            meter min="0" max=(capacity) value=(server.tenant_count)
                low=((capacity * 7) / 10) high=((capacity * 9) / 10) optimum="0"
                aria-label={ "Capacity of " (server.name) } {}
            span.capacity-text {
                (server.tenant_count) " / " (server.capacity_hint)
                span.muted { " · " (server.free_room()) " free" }
            }
        }
    }
}

fn add_server_form(viewer: &Viewer, regions: &[String], form: &AddForm) -> Markup {
    let engines = [
        ("postgres".to_owned(), "postgres".to_owned(), false),
        ("sqlite".to_owned(), "sqlite".to_owned(), false),
    ];
    let region_options: Vec<(String, String, bool)> = regions
        .iter()
        .map(|region| (region.clone(), region.clone(), false))
        .collect();
    let name_field = Field {
        hint: Some("Lowercase letters, digits and hyphens, starting with a letter."),
        error: form.error("name"),
        autocomplete: Some("off"),
        ..Field::text("name", "Name", &form.name)
    };
    let url_field = Field {
        input_type: "password",
        hint: Some("postgres://user:password@host:5432/postgres, or sqlite:///absolute/directory under the data directory. Kept in the secret store, never shown again."),
        error: form.error("admin_url"),
        autocomplete: Some("off"),
        ..Field::text("admin_url", "Admin URL", "")
    };
    let capacity_field = Field {
        input_type: "number",
        hint: Some("How many tenants it should hold at most."),
        error: form.error("capacity"),
        ..Field::text("capacity", "Capacity", &form.capacity)
    };
    html! {
        section.panel #add-server {
            h2 { "Add a server" }
            @if let Some(error) = form.error("form") { p.form-error role="alert" { (error) } }
            form.grid-form method="post" action="/platform/servers" {
                (viewer.csrf_field())
                (name_field.render())
                (select_field("engine", "Engine", &engines, if form.engine.is_empty() { "postgres" } else { &form.engine }, form.error("engine")))
                (url_field.render())
                (capacity_field.render())
                (select_field("region", "Region", &region_options, &form.region, form.error("region")))
                div.form-actions { button.primary type="submit" { "Add server" } }
            }
        }
    }
}

async fn render_servers(
    state: &ServerState,
    viewer: &Viewer,
    form: &AddForm,
    status: StatusCode,
) -> Result<Response, PageError> {
    let servers = state
        .platform
        .registry
        .list_servers()
        .await
        .or_page(viewer)?;
    let body = html! {
        (page_header(
            html! { "Servers" },
            Some(html! { "The fleet that hosts tenant databases, and how full each server is." }),
            html! { @if viewer.is_admin() { a.button href="#add-server" { "Add server" } } },
        ))
        @if servers.is_empty() {
            (empty_state("No servers yet.", html! {
                @if viewer.is_admin() { "Add one with the form below, or from a shell: " } @else { "An admin adds one, for example: " }
                code { "tenantry servers add --name pg-1 --engine postgres --admin-url-stdin --capacity 200" }
            }))
        } @else {
            div.table-wrap {
                table {
                    thead { tr {
                        th { "Name" } th.wide-only { "Engine" } th.wide-only { "Region" } th { "Status" } th { "Capacity" }
                        @if viewer.is_admin() { th { span.visually-hidden { "Actions" } } }
                    } }
                    tbody {
                        @for server in &servers {
                            tr {
                                td { (server.name) }
                                td.wide-only { (server.engine.as_str()) }
                                td.wide-only { (server.region) }
                                td { (pill(server.status.as_str())) }
                                td { (capacity_cell(server)) }
                                @if viewer.is_admin() {
                                    td.actions {
                                        @if server.status == ServerStatus::Active {
                                            form method="post" action={ "/platform/servers/" (query_escape(&server.name)) "/drain" } {
                                                (viewer.csrf_field())
                                                button.small type="submit" aria-label={ "Drain " (server.name) } { "Drain" }
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
        @if viewer.is_admin() {
            (add_server_form(viewer, &state.platform.settings.regions, form))
        }
    };
    Ok(html_response(
        status,
        shell(Some(viewer), Section::Servers, "Servers", body),
    ))
}

/// `GET /platform/servers` for a browser.
pub async fn servers_page(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, PageError> {
    let viewer = Viewer::new(&principal);
    let form = AddForm {
        region: state.platform.settings.default_region.clone(),
        ..AddForm::default()
    };
    render_servers(&state, &viewer, &form, StatusCode::OK).await
}

/// The add form as posted.
#[derive(Deserialize)]
pub struct AddServerFields {
    #[serde(default)]
    name: String,
    #[serde(default)]
    engine: String,
    #[serde(default)]
    admin_url: String,
    #[serde(default)]
    capacity: String,
    #[serde(default)]
    region: String,
}

/// Which field an error from adding a server concerns.
fn field_for(code: ErrorCode, message: &str) -> &'static str {
    match code {
        ErrorCode::Conflict => "name",
        ErrorCode::AdminConnUnresolved => "admin_url",
        ErrorCode::InvalidInput if message.starts_with("capacity") => "capacity",
        ErrorCode::InvalidInput if message.starts_with("region") => "region",
        ErrorCode::InvalidInput => "admin_url",
        _ => "form",
    }
}

/// `POST /platform/servers` from the add form: register and go back to the list, or show the form's errors.
pub async fn add_server_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    ApiForm(fields): ApiForm<AddServerFields>,
) -> Response {
    let viewer = Viewer::new(&principal);
    let mut form = AddForm {
        name: fields.name.trim().to_owned(),
        engine: fields.engine.clone(),
        capacity: fields.capacity.trim().to_owned(),
        region: fields.region.clone(),
        errors: Vec::new(),
    };
    let name = ServerName::parse(&form.name)
        .map_err(|error| form.errors.push(("name", error.message)))
        .ok();
    let engine = EngineKind::parse(&form.engine)
        .map_err(|error| form.errors.push(("engine", error.message)))
        .ok();
    let capacity = form
        .capacity
        .parse::<i64>()
        .ok()
        .filter(|capacity| *capacity >= 1);
    if capacity.is_none() {
        form.errors.push((
            "capacity",
            "capacity must be a whole number of at least 1".to_owned(),
        ));
    }
    if fields.admin_url.trim().is_empty() {
        form.errors
            .push(("admin_url", "the admin URL is required".to_owned()));
    }
    if let (Some(name), Some(engine), Some(capacity), true) =
        (name, engine, capacity, form.errors.is_empty())
    {
        let request = ServerRequest {
            name,
            engine,
            admin_url: SecretString::new(fields.admin_url.trim().to_owned()),
            capacity,
            region: form.region.clone(),
            public_url: None,
        };
        match add_server(&state.platform, &request, &principal.actor()).await {
            Ok(_) => return see_other("/platform/servers"),
            Err(error) => {
                let field = field_for(error.code, &error.message);
                form.errors
                    .push((field, format!("{}: {}", error.code, error.message)));
            }
        }
    }
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    render_servers(&state, &viewer, &form, status)
        .await
        .into_response()
}

/// `POST /platform/servers/{name}/drain` from the Drain button.
pub async fn drain_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    let viewer = Viewer::new(&principal);
    match crate::api::servers::drain_server(State(state), Extension(principal), Path(name)).await {
        Ok(_) => see_other("/platform/servers"),
        Err(error) => PageError::new(&viewer, error).into_response(),
    }
}
