//! `/platform/servers`: the fleet with its capacity, adding a server, draining one.

use super::ApiJson;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ProblemDetails};
use crate::state::ServerState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use tenantry_core::{EngineKind, ServerName, ServerStatus};
use tenantry_providers::credentials::SecretString;
use tenantry_registry::ServerRecord;
use tenantry_workflows::{add_server, public_url_with_dns, DnsSettings, ServerRequest};

/// What `POST /platform/servers` takes. The admin URL goes to the secret store and is never returned.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddServerRequest {
    #[schema(pattern = "^[a-z][a-z0-9-]{0,62}$", min_length = 1, max_length = 63)]
    pub name: String,
    /// `postgres`, `sqlite`, `redis`, `rabbitmq`, `powerdns`, `s3`, `mariadb` or `kubernetes` (an enum in the served
    /// document).
    pub engine: String,
    /// `postgres://user:password@host:port/db`, `sqlite:///absolute/directory` (under the data directory unless
    /// `sqlite_server_roots` allows more), `redis://user:password@host:6379`, or RabbitMQ's management API
    /// `http://user:password@host:15672`, PowerDNS's HTTP API `http://api:API_KEY@host:8081`, or an S3 endpoint
    /// `http://KEY_ID:SECRET@host:port` (an identity allowed to manage buckets and identities).
    pub admin_url: String,
    #[schema(minimum = 1)]
    pub capacity: i64,
    /// One of the configured regions (default: the default region).
    pub region: Option<String>,
    /// Where tenants connect when it is not the admin URL's host (RabbitMQ: `amqp://host:5672`); no credentials.
    pub public_url: Option<String>,
    /// `powerdns`: the zone tenants' names go in (the server must have it).
    pub zone: Option<String>,
    /// `powerdns`: where `<slug>.<zone>` points: an IPv4 or IPv6 address, or a host name (a CNAME).
    pub dns_target: Option<String>,
    /// `powerdns`: the DNS listener's port on the admin URL's host, where it is not 53.
    pub dns_port: Option<u16>,
}

/// List servers with their load.
#[utoipa::path(get, path = "/platform/servers", tag = "servers",
    responses((status = 200, body = Vec<ServerRecord>),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_servers(
    State(state): State<ServerState>,
) -> ApiResult<axum::Json<Vec<ServerRecord>>> {
    Ok(axum::Json(state.platform.registry.list_servers().await?))
}

/// Register a server (its admin connection is checked first).
#[utoipa::path(post, path = "/platform/servers", tag = "servers", request_body = AddServerRequest,
    responses((status = 201, body = ServerRecord),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The admin connection does not work", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create_server(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<AddServerRequest>,
) -> ApiResult<(StatusCode, axum::Json<ServerRecord>)> {
    let name = ServerName::parse(&body.name)?;
    let engine = EngineKind::parse(&body.engine)?;
    let admin_url = SecretString::new(body.admin_url);
    let dns = DnsSettings {
        zone: body.zone,
        target: body.dns_target,
        port: body.dns_port,
    };
    let request = ServerRequest {
        name,
        engine,
        public_url: public_url_with_dns(engine, &admin_url, body.public_url, dns)?,
        admin_url,
        capacity: body.capacity,
        region: body
            .region
            .unwrap_or_else(|| state.platform.settings.default_region.clone()),
    };
    let added = add_server(&state.platform, &request, &principal.actor()).await?;
    for warning in &added.warnings {
        tracing::warn!(server = %added.server.name, "{warning}");
    }
    Ok((StatusCode::CREATED, axum::Json(added.server)))
}

/// Stop placing new tenants on a server.
#[utoipa::path(post, path = "/platform/servers/{name}/drain", tag = "servers", params(("name" = String, Path, pattern = "^[a-z][a-z0-9-]{0,62}$")),
    responses((status = 200, body = ServerRecord),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn drain_server(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<ServerRecord>> {
    match state
        .platform
        .registry
        .set_server_status(
            &name,
            ServerStatus::Draining,
            &principal.actor(),
            "SERVER_DRAINED",
        )
        .await
    {
        Ok(record) => Ok(axum::Json(record)),
        Err(tenantry_registry::Error::NotFound { .. }) => {
            Err(ApiError::not_found(format!("server {name:?}")))
        }
        Err(error) => Err(error.into()),
    }
}
