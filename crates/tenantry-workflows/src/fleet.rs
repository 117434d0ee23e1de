//! Fleet changes shared by every way in: registering a server (its admin URL goes to the secret store).

use crate::{registry_error, Platform};
use std::path::{Component, Path, PathBuf};
use tenantry_core::{EngineKind, Error as CodedError, ErrorCode, ServerName};
use tenantry_providers::credentials::SecretString;
use tenantry_providers::engines::TenantServer;
use tenantry_providers::resources::PowerDns;
use tenantry_registry::{NewServer, ServerRecord};

/// A server to register, validated.
#[derive(Debug, Clone)]
pub struct ServerRequest {
    pub name: ServerName,
    pub engine: EngineKind,
    pub admin_url: SecretString,
    pub capacity: i64,
    pub region: String,
    /// Where tenants connect when it is not the admin URL's host (RabbitMQ: `amqp://host:5672`; PowerDNS: its
    /// DNS listener, zone and target, made by [`public_url_with_dns`]).
    pub public_url: Option<String>,
}

/// A `powerdns` server's zone, the target its tenants' names point at (an IPv4 or IPv6 address, or a host name
/// for a CNAME) and its DNS listener's port where it is not 53: `servers add --zone --dns-target --dns-port`, and
/// the API's `zone`, `dns_target`, `dns_port`. They are kept as the server's public URL.
#[derive(Debug, Clone, Default)]
pub struct DnsSettings {
    pub zone: Option<String>,
    pub target: Option<String>,
    pub port: Option<u16>,
}

/// The public URL to register: the one given, or for a `powerdns` server the one its [`DnsSettings`] make
/// (`dns://host:port/zone?target=…`). Settings for another engine, or given twice, are bad input.
pub fn public_url_with_dns(
    engine: EngineKind,
    admin_url: &SecretString,
    public_url: Option<String>,
    dns: DnsSettings,
) -> Result<Option<String>, CodedError> {
    if dns.zone.is_none() && dns.target.is_none() && dns.port.is_none() {
        return Ok(public_url);
    }
    if engine != EngineKind::Powerdns {
        return Err(CodedError::invalid_input(format!(
            "a zone, a DNS target and a DNS port are settings of powerdns servers, not {engine}"
        )));
    }
    if public_url.is_some() {
        return Err(CodedError::invalid_input(
            "give a powerdns server's zone and target, or its public URL, not both",
        ));
    }
    let (Some(zone), Some(target)) = (dns.zone, dns.target) else {
        return Err(CodedError::invalid_input(
            "a powerdns server needs both a zone and a DNS target",
        ));
    };
    PowerDns::settings_url(admin_url, &zone, &target, dns.port)
        .map(Some)
        .map_err(|error| CodedError::invalid_input(error.to_string()))
}

/// A server just registered, and what a person should know about it.
#[derive(Debug, Clone)]
pub struct AddedServer {
    pub server: ServerRecord,
    /// Weaknesses found while checking it (e.g. a Redis whose `default` user needs no password).
    pub warnings: Vec<String>,
}

/// The name of the secret holding a server's admin connection.
pub fn admin_secret_name(server_name: &str) -> String {
    format!("server-admin-{server_name}")
}

/// Refuses a SQLite server directory outside every allowed root (`sqlite_server_roots`), before anything is
/// created: registering a server creates its directory, and tenant files are written there. Symbolic links
/// are resolved for the part of the path that exists, so a link inside a root cannot lead outside it.
fn require_under_roots(directory: &Path, roots: &[PathBuf]) -> Result<(), CodedError> {
    let shown = directory.display();
    if directory
        .components()
        .any(|component| matches!(component, Component::ParentDir | Component::CurDir))
    {
        return Err(CodedError::invalid_input(format!(
            "the SQLite server directory {shown} may not contain `.` or `..`"
        )));
    }
    let resolved = resolve_existing_prefix(directory);
    if roots
        .iter()
        .any(|root| resolved.starts_with(resolve_existing_prefix(root)))
    {
        return Ok(());
    }
    let allowed: Vec<String> = roots
        .iter()
        .map(|root| root.display().to_string())
        .collect();
    Err(CodedError::invalid_input(format!(
        "the SQLite server directory {shown} is not under an allowed directory ({}); allow more with the \
         setting sqlite_server_roots (TENANTRY_SQLITE_SERVER_ROOTS)",
        allowed.join(", ")
    )))
}

/// The path with its longest existing ancestor replaced by that ancestor's canonical form.
fn resolve_existing_prefix(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = existing.canonicalize() {
            return rest
                .iter()
                .rev()
                .fold(canonical, |resolved, part| resolved.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Checks the request, checks the admin connection works, stores it as a secret, and registers the server.
pub async fn add_server(
    platform: &Platform,
    request: &ServerRequest,
    actor: &str,
) -> Result<AddedServer, CodedError> {
    if request.capacity < 1 {
        return Err(CodedError::invalid_input("capacity must be at least 1"));
    }
    if !platform.settings.regions.contains(&request.region) {
        return Err(CodedError::invalid_input(format!(
            "region {:?} does not exist; known regions: {}",
            request.region,
            platform.settings.regions.join(", ")
        )));
    }
    if let Some(public_url) = &request.public_url {
        let parsed = url::Url::parse(public_url).map_err(|_| {
            CodedError::invalid_input(format!("the public URL {public_url:?} is not a URL"))
        })?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(CodedError::invalid_input(
                "the public URL may not hold credentials: every tenant gets its own",
            ));
        }
    }
    if !request.engine.hosts_databases() {
        return add_resource_server(platform, request, actor).await;
    }
    let server = TenantServer::from_admin_url(
        request.engine,
        &request.admin_url,
        &platform.installation().await?,
        &platform.sessions,
    )
    .map_err(|error| CodedError::invalid_input(error.to_string()))?;
    if let TenantServer::Sqlite(sqlite) = &server {
        require_under_roots(sqlite.directory(), &platform.settings.sqlite_server_roots)?;
    }
    refuse_taken_name(platform, request).await?;
    server.check_admin_connection().await.map_err(|error| {
        CodedError::new(
            ErrorCode::AdminConnUnresolved,
            format!("server {}: {error}", request.name),
        )
    })?;
    refuse_same_cluster_twice(platform, request, &server).await?;
    record_server(platform, request, actor, Vec::new()).await
}

/// `E_CONFLICT` when a server of that name is registered, before anything is checked or stored.
async fn refuse_taken_name(platform: &Platform, request: &ServerRequest) -> Result<(), CodedError> {
    if platform
        .registry
        .get_server(request.name.as_str())
        .await
        .is_ok()
    {
        return Err(CodedError::new(
            ErrorCode::Conflict,
            format!("server {} already exists", request.name),
        ));
    }
    Ok(())
}

/// Stores the admin URL and records the server.
async fn record_server(
    platform: &Platform,
    request: &ServerRequest,
    actor: &str,
    warnings: Vec<String>,
) -> Result<AddedServer, CodedError> {
    let secret_ref = admin_secret_name(request.name.as_str());
    platform
        .secrets
        .put(&secret_ref, &request.admin_url)
        .await
        .map_err(|error| CodedError::new(ErrorCode::ProvisioningUnavailable, error.to_string()))?;
    let server = platform
        .registry
        .add_server(
            &NewServer {
                name: request.name.as_str().to_owned(),
                engine: request.engine,
                region: request.region.clone(),
                admin_secret_ref: secret_ref,
                capacity_hint: request.capacity,
                public_url: request.public_url.clone(),
            },
            actor,
        )
        .await
        .map_err(registry_error)?;
    Ok(AddedServer { server, warnings })
}

/// Registers a server of a resource kind other than the database: its kind's provider checks it first.
async fn add_resource_server(
    platform: &Platform,
    request: &ServerRequest,
    actor: &str,
) -> Result<AddedServer, CodedError> {
    let provider = platform
        .providers
        .for_engine(request.engine)
        .ok_or_else(|| {
            CodedError::invalid_input(format!(
                "no resource kind is served by {} servers in this build",
                request.engine
            ))
        })?;
    refuse_taken_name(platform, request).await?;
    let server = tenantry_providers::resources::ResourceServer {
        name: request.name.as_str().to_owned(),
        engine: request.engine,
        admin_url: request.admin_url.clone(),
        public_url: request.public_url.clone(),
        installation: platform.installation().await?,
    };
    let warnings = provider
        .check_server(&server)
        .await
        .map_err(|error| match error {
            // The URL itself is wrong (malformed, another scheme): bad input, not an unreachable server.
            tenantry_providers::Error::Refused(why) => {
                CodedError::invalid_input(format!("server {}: {why}", request.name))
            }
            other => CodedError::new(
                ErrorCode::AdminConnUnresolved,
                format!("server {}: {other}", request.name),
            ),
        })?;
    record_server(platform, request, actor, warnings).await
}

/// Two fleet members that are one cluster would double its capacity and make each other's tenants look like
/// orphans: a server whose identity (PostgreSQL's `system_identifier`, a SQLite directory's real path) matches a
/// registered server's is refused. A registered server that cannot be reached is passed over.
async fn refuse_same_cluster_twice(
    platform: &Platform,
    request: &ServerRequest,
    server: &TenantServer,
) -> Result<(), CodedError> {
    let identity = server.cluster_identity().await.map_err(|error| {
        CodedError::new(
            ErrorCode::AdminConnUnresolved,
            format!("server {}: {error}", request.name),
        )
    })?;
    for record in platform
        .registry
        .list_servers()
        .await
        .map_err(registry_error)?
        .into_iter()
        .filter(|record| record.engine == request.engine)
    {
        let Ok(existing) = platform.tenant_server(&record).await else {
            continue;
        };
        if let Ok(existing_identity) = existing.cluster_identity().await {
            if existing_identity == identity {
                return Err(CodedError::new(
                    ErrorCode::Conflict,
                    format!(
                        "server {} is already registered as {} ({identity}); one cluster is one fleet member",
                        request.name, record.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// What `harden_server` found and did on one server.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Hardening {
    pub server: String,
    /// Databases, not tenants' nor tenantry's, that still admit PUBLIC.
    pub open_to_public: Vec<String>,
    /// Those this call closed to PUBLIC.
    pub closed: Vec<String>,
    /// Those left open on purpose or that could not be closed, with why.
    pub kept: Vec<String>,
}

/// Names the server's databases that are not tenants' yet admit PUBLIC (on PostgreSQL, `postgres` and `template1`
/// by default: every tenant role could log in to them) and, with `apply`, takes CONNECT and TEMPORARY on them away
/// from PUBLIC, audited `SERVER_HARDENED`. The admin URL's own database is left open: tenantry connects to it, and
/// the admin may need PUBLIC's CONNECT there.
pub async fn harden_server(
    platform: &Platform,
    server_name: &str,
    apply: bool,
    actor: &str,
) -> Result<Hardening, CodedError> {
    let record = platform
        .registry
        .get_server(server_name)
        .await
        .map_err(registry_error)?;
    if !record.engine.hosts_databases() {
        // Hardening closes databases to PUBLIC; a server of another kind has none.
        return Ok(Hardening {
            server: record.name.clone(),
            ..Hardening::default()
        });
    }
    let server = platform.tenant_server(&record).await?;
    let unreachable = |error: tenantry_providers::Error| {
        CodedError::new(
            ErrorCode::AdminConnUnresolved,
            format!("server {server_name}: {error}"),
        )
    };
    let mut hardening = Hardening {
        server: record.name.clone(),
        ..Hardening::default()
    };
    let Some(open) = server
        .databases_open_to_public()
        .await
        .map_err(unreachable)?
    else {
        return Ok(hardening);
    };
    let admin_database = server.admin_database();
    for database in open {
        if !apply {
            hardening.open_to_public.push(database);
        } else if admin_database.as_deref() == Some(database.as_str()) {
            hardening
                .kept
                .push(format!("{database} (the admin connection's own database)"));
        } else {
            match server.revoke_public_connect(&database).await {
                Ok(()) => hardening.closed.push(database),
                Err(error) => hardening.kept.push(format!("{database}: {error}")),
            }
        }
    }
    if !hardening.closed.is_empty() {
        platform
            .registry
            .record_audit(&tenantry_registry::NewAuditEvent {
                actor: actor.to_owned(),
                event_type: "SERVER_HARDENED",
                tenant_slug: None,
                job_id: None,
                details: serde_json::json!({ "server": record.name, "closed_to_public": hardening.closed }),
            })
            .await
            .map_err(registry_error)?;
    }
    Ok(hardening)
}
