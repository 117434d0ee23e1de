//! `tenants list|show` and `servers add|list|drain`.

use crate::app::{cli_actor, App};
use crate::cli::{ServersCommand, TenantsCommand};
use crate::output::{print_json, print_table, when};
use crate::CommandResult;
use std::io::Read;
use std::process::ExitCode;
use tenantry_core::{
    EngineKind, Error as CodedError, ServerName, ServerStatus, Slug, TenantStatus,
};
use tenantry_engine::JobView;
use tenantry_providers::credentials::{password_in_url, SecretString};
use tenantry_registry::JobFilter;
use tenantry_workflows::{
    add_server, harden_server, public_url_with_dns, registry_error, submit_move, submit_rotation,
    submit_suspension, Direction, DnsSettings, Hardening, MoveRequest, RotateRequest,
    ServerRequest, SuspendRequest,
};

/// `tenants rotate-credentials`, its arguments checked.
pub struct Rotation {
    request: RotateRequest,
    no_wait: bool,
}

/// The checked arguments of `tenants rotate-credentials` (`None` for the other `tenants` commands): the slug, the
/// kind, and a grace period in humantime's words (`90s`, `10m`) within its bounds.
pub fn parse_rotation(command: &TenantsCommand) -> Result<Option<Rotation>, CodedError> {
    let TenantsCommand::RotateCredentials {
        slug,
        kind,
        grace,
        no_wait,
    } = command
    else {
        return Ok(None);
    };
    let slug = Slug::parse(slug)?;
    let grace = grace.trim();
    let seconds = if grace.starts_with('-') {
        -1
    } else {
        let duration = humantime::parse_duration(grace).map_err(|error| {
            CodedError::invalid_input(format!(
                "--grace {grace:?} is not a duration such as 90s or 10m: {error}"
            ))
        })?;
        i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
    };
    Ok(Some(Rotation {
        request: RotateRequest::new(slug, kind.as_deref(), Some(seconds))?,
        no_wait: *no_wait,
    }))
}

/// `tenants rotate-credentials`: the job runs here with its phases printed as they end (the grace period
/// included), unless `--no-wait` leaves it to a worker.
pub async fn rotation(app: &App, rotation: Rotation, json: bool) -> CommandResult {
    let Rotation { request, no_wait } = rotation;
    let runner = app.runner();
    let lease = (!no_wait).then(|| super::provision::lease_for(&runner));
    let submitted = submit_rotation(&app.platform, &request, &cli_actor(), lease).await?;
    let doing = format!(
        "rotating the credentials of tenant {}",
        request.slug.as_str()
    );
    super::provision::run_submitted(app, runner, submitted.job(), &doing, no_wait, json).await
}

/// `tenants suspend` or `tenants resume`, its arguments checked.
pub struct Suspension {
    direction: Direction,
    request: SuspendRequest,
    no_wait: bool,
}

/// The checked arguments of `tenants suspend` and `tenants resume` (`None` for the other `tenants` commands).
pub fn parse_suspension(command: &TenantsCommand) -> Result<Option<Suspension>, CodedError> {
    Ok(match command {
        TenantsCommand::Suspend {
            slug,
            reason,
            no_wait,
        } => Some(Suspension {
            direction: Direction::Suspend,
            // A missing reason is refused like an empty one, with the product's code rather than clap's usage.
            request: SuspendRequest::suspend(Slug::parse(slug)?, reason.as_deref().unwrap_or(""))?,
            no_wait: *no_wait,
        }),
        TenantsCommand::Resume { slug, no_wait } => Some(Suspension {
            direction: Direction::Resume,
            request: SuspendRequest::resume(Slug::parse(slug)?),
            no_wait: *no_wait,
        }),
        _ => None,
    })
}

/// `tenants suspend` and `tenants resume`: the job runs here with its phases printed as they end, like
/// `tenants set-plan`, unless `--no-wait` leaves it to a worker.
pub async fn suspension(app: &App, suspension: Suspension, json: bool) -> CommandResult {
    let Suspension {
        direction,
        request,
        no_wait,
    } = suspension;
    let runner = app.runner();
    let lease = (!no_wait).then(|| super::provision::lease_for(&runner));
    let submitted =
        submit_suspension(&app.platform, direction, &request, &cli_actor(), lease).await?;
    let doing = match direction {
        Direction::Suspend => format!("suspending tenant {}", request.slug.as_str()),
        Direction::Resume => format!("resuming tenant {}", request.slug.as_str()),
    };
    super::provision::run_submitted(app, runner, submitted.job(), &doing, no_wait, json).await
}

pub async fn tenants(app: &App, command: TenantsCommand, json: bool) -> CommandResult {
    let registry = &app.platform.registry;
    match command {
        TenantsCommand::List {
            status,
            search,
            limit,
            offset,
        } => {
            let status = status.as_deref().map(TenantStatus::parse).transpose()?;
            let tenants = registry
                .list_tenants(search.as_deref(), status, limit, offset)
                .await
                .map_err(registry_error)?;
            if json {
                print_json(&tenants)?;
            } else if tenants.is_empty() {
                println!("No tenants yet — provision one with `tenantry provision-tenant --slug acme --display-name \"Acme\" --admin-email admin@acme.example`");
            } else {
                let rows: Vec<Vec<String>> = tenants
                    .iter()
                    .map(|tenant| {
                        vec![
                            tenant.slug.clone(),
                            tenant.display_name.clone(),
                            tenant.status.to_string(),
                            tenant.plan.clone(),
                            tenant.server_name.clone(),
                            when(Some(tenant.created_at)),
                        ]
                    })
                    .collect();
                print_table(
                    &["SLUG", "NAME", "STATUS", "PLAN", "SERVER", "CREATED"],
                    &rows,
                );
            }
        }
        TenantsCommand::SetPlan {
            slug,
            plan,
            budget,
            no_wait,
        } => return super::plans::set_plan(app, &slug, &plan, budget, no_wait, json).await,
        TenantsCommand::Clone { .. } => {
            if let Some(clone) = super::clone::parse_clone(&command)? {
                return super::clone::clone(app, clone, json).await;
            }
        }
        TenantsCommand::RotateCredentials { .. } => {
            if let Some(rotation) = parse_rotation(&command)? {
                return self::rotation(app, rotation, json).await;
            }
        }
        TenantsCommand::Move {
            slug,
            to_server,
            no_wait,
        } => {
            let request = MoveRequest {
                slug: Slug::parse(&slug)?,
                to_server,
            };
            let runner = app.runner();
            let lease = (!no_wait).then(|| super::provision::lease_for(&runner));
            let submitted = submit_move(&app.platform, &request, &cli_actor(), lease).await?;
            let doing = format!(
                "moving tenant {} to server {}",
                request.slug.as_str(),
                request.to_server
            );
            return super::provision::run_submitted(
                app,
                runner,
                submitted.job(),
                &doing,
                no_wait,
                json,
            )
            .await;
        }
        TenantsCommand::Suspend { .. } | TenantsCommand::Resume { .. } => {
            if let Some(suspension) = parse_suspension(&command)? {
                return self::suspension(app, suspension, json).await;
            }
        }
        TenantsCommand::Show { slug } => {
            let tenant = registry
                .require_tenant(&slug)
                .await
                .map_err(registry_error)?;
            let jobs = registry
                .list_jobs(&JobFilter {
                    tenant_slug: Some(slug.clone()),
                    status: None,
                    limit: 20,
                })
                .await
                .map_err(registry_error)?;
            let resources = registry
                .tenant_resources(&slug)
                .await
                .map_err(registry_error)?;
            // Its tenant schema against the files (pending migrations, drift); a read that fails says why.
            let schema = match tenantry_workflows::schema_plan(&app.platform, Some(&slug)).await {
                Ok(plan) => plan
                    .tenants
                    .into_iter()
                    .next()
                    .map(|state| serde_json::json!(state))
                    .unwrap_or(serde_json::Value::Null),
                Err(error) => {
                    serde_json::json!({ "state": "unreachable", "detail": error.message })
                }
            };
            let invitation = tenantry_workflows::invitation_state(&app.platform, &slug).await?;
            if json {
                let jobs: Vec<JobView> = jobs.iter().map(|job| JobView::build(job, &[])).collect();
                print_json(&serde_json::json!({
                    "tenant": tenant, "resources": resources, "schema": schema, "jobs": jobs,
                    "invitation": invitation,
                }))?;
            } else {
                println!("tenant      {}", tenant.slug);
                println!("name        {}", tenant.display_name);
                println!("status      {}", tenant.status);
                println!("plan        {}", tenant.plan);
                println!("region      {}", tenant.region);
                println!("server      {}", tenant.server_name);
                println!("database    {}", tenant.resource_name);
                println!("secret      {}", tenant.secret_ref);
                println!("admin       {}", tenant.admin_email);
                print_profile(&tenant.profile);
                println!("invitation  {}", invitation_line(invitation.as_ref()));
                println!("labels      {}", tenant.labels);
                println!("schema      {}", schema_line(&schema));
                if let Some(cost) = tenant.settings.get("monthly_cost") {
                    println!(
                        "monthly     {cost} {}",
                        tenant
                            .settings
                            .get("currency")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or_default()
                    );
                }
                println!("settings    {}", tenant.settings);
                println!("resources:");
                for resource in &resources {
                    println!(
                        "  {:<10} {} on {} ({}), secret {}",
                        resource.kind,
                        resource.name,
                        resource.server_name,
                        resource.status,
                        resource.secret_name.as_deref().unwrap_or("-")
                    );
                }
                println!("created     {}", when(Some(tenant.created_at)));
                println!("jobs:");
                for job in jobs {
                    println!(
                        "  {} {} {} {}",
                        job.id,
                        job.kind,
                        job.status,
                        job.error_code.unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_admin_url(admin_url: Option<String>, from_stdin: bool) -> Result<SecretString, CodedError> {
    if from_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| {
                CodedError::invalid_input(format!("cannot read the admin URL from stdin: {error}"))
            })?;
        return Ok(SecretString::new(text.trim().to_owned()));
    }
    let url = SecretString::new(admin_url.ok_or_else(|| {
        CodedError::invalid_input("give --admin-url (without a password) or --admin-url-stdin")
    })?);
    if password_in_url(&url).is_some_and(|password| !password.expose().is_empty()) {
        return Err(CodedError::invalid_input(
            "the admin URL holds a password; pass it on stdin with --admin-url-stdin so it stays out of process listings",
        ));
    }
    Ok(url)
}

pub async fn servers(app: &App, command: ServersCommand, json: bool) -> CommandResult {
    let registry = &app.platform.registry;
    match command {
        ServersCommand::Add {
            name,
            engine,
            admin_url,
            admin_url_stdin,
            capacity,
            region,
            public_url,
            zone,
            dns_target,
            dns_port,
            harden,
        } => {
            let name = ServerName::parse(&name)?;
            let engine = EngineKind::parse(&engine)?;
            let admin_url = read_admin_url(admin_url, admin_url_stdin)?;
            let dns = DnsSettings {
                zone,
                target: dns_target,
                port: dns_port,
            };
            let request = ServerRequest {
                name,
                engine,
                public_url: public_url_with_dns(engine, &admin_url, public_url, dns)?,
                admin_url,
                capacity,
                region: region.unwrap_or_else(|| app.config.default_region.clone()),
            };
            let added = add_server(&app.platform, &request, &cli_actor()).await?;
            for warning in &added.warnings {
                eprintln!("warning: {warning}");
            }
            let record = added.server;
            let hardening =
                harden_server(&app.platform, &record.name, harden, &cli_actor()).await?;
            if json {
                print_json(&record)?;
            } else {
                println!(
                    "server {} added ({}, region {}, capacity {})",
                    record.name, record.engine, record.region, record.capacity_hint
                );
                print_hardening(&hardening);
            }
        }
        ServersCommand::Harden { name, apply } => {
            let hardening = harden_server(&app.platform, &name, apply, &cli_actor()).await?;
            if json {
                print_json(&hardening)?;
            } else {
                print_hardening(&hardening);
            }
        }
        ServersCommand::List => {
            let servers = registry.list_servers().await.map_err(registry_error)?;
            if json {
                print_json(&servers)?;
            } else if servers.is_empty() {
                println!("No servers yet — add one with `tenantry servers add --name pg-1 --engine postgres --admin-url-stdin --capacity 100`");
            } else {
                let rows: Vec<Vec<String>> = servers
                    .iter()
                    .map(|server| {
                        vec![
                            server.name.clone(),
                            server.engine.to_string(),
                            server.region.clone(),
                            server.status.to_string(),
                            format!("{}/{}", server.tenant_count, server.capacity_hint),
                            server.free_room().to_string(),
                        ]
                    })
                    .collect();
                print_table(
                    &["NAME", "ENGINE", "REGION", "STATUS", "TENANTS", "FREE"],
                    &rows,
                );
            }
        }
        ServersCommand::Drain { name } => {
            let record = registry
                .set_server_status(
                    &name,
                    ServerStatus::Draining,
                    &cli_actor(),
                    "SERVER_DRAINED",
                )
                .await
                .map_err(registry_error)?;
            if json {
                print_json(&record)?;
            } else {
                println!(
                    "server {} is draining: no new tenants will be placed on it",
                    record.name
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `servers add` and `servers harden` say about the server's databases that admit PUBLIC.
fn print_hardening(hardening: &Hardening) {
    if !hardening.closed.is_empty() {
        println!(
            "closed to PUBLIC on server {}: {}",
            hardening.server,
            hardening.closed.join(", ")
        );
    }
    for kept in &hardening.kept {
        println!("left open on server {}: {kept}", hardening.server);
    }
    if !hardening.open_to_public.is_empty() {
        println!(
            "warning: on server {}, {} admit PUBLIC: every tenant role can log in to them and read what they hold.\n\
             tenantry leaves them open unless told, since other users of the server may rely on it. To close them\n\
             (REVOKE CONNECT, TEMPORARY ON DATABASE … FROM PUBLIC; grant CONNECT by name to roles that need them first):\n\
             tenantry servers harden {} --apply",
            hardening.server,
            hardening.open_to_public.join(", "),
            hardening.server
        );
    }
    if hardening.open_to_public.is_empty() && hardening.kept.is_empty() {
        println!(
            "server {}: no database but tenants' admits PUBLIC",
            hardening.server
        );
    }
}

/// A tenant's schema state in words: `version 3, at latest`, `version 2, pending 3, 4`, or what differs.
fn schema_line(schema: &serde_json::Value) -> String {
    let state = schema["state"].as_str().unwrap_or("unknown");
    let version = schema["version"].as_i64().unwrap_or(0);
    let detail = schema["detail"].as_str();
    match state {
        "latest" => format!("version {version}, at latest"),
        "pending" => format!(
            "version {version}, pending {} (`tenantry migrate apply`)",
            schema["pending"]
                .as_array()
                .map(|versions| versions
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        ),
        _ => format!("{state}: {}", detail.unwrap_or("")),
    }
}

/// The first admin's invitation in a line: where it stands, and why when it is not sent.
fn invitation_line(invitation: Option<&tenantry_workflows::InvitationView>) -> String {
    let Some(invitation) = invitation else {
        return "none queued (the tenant predates invitation e-mails)".into();
    };
    let to = invitation.recipient.as_deref().unwrap_or_default();
    match invitation.status.as_str() {
        "sent" => format!("sent to {to} {}", when(invitation.sent_at)),
        "waiting_for_smtp" => {
            "waiting: no smtp_url is configured; the link is in the secret store".into()
        }
        status => format!(
            "{status} to {to} after {} attempts{}",
            invitation.attempts,
            invitation
                .last_error
                .as_ref()
                .map(|error| format!(": {error}"))
                .unwrap_or_default()
        ),
    }
}

/// The tenant's profile from the wizard, one line a field; a data source as its name, kind, endpoint and the
/// secret that holds its URL (`tenantry secrets show` prints that, audited).
fn print_profile(profile: &tenantry_core::TenantProfile) {
    if let Some(description) = &profile.description {
        println!("description {}", description.as_str().replace('\n', " "));
    }
    if let Some(contact) = &profile.contact_name {
        println!("contact     {}", contact.as_str());
    }
    println!("tier        {}", profile.resource_tier);
    if let Some(isolation) = profile.isolation {
        println!("isolation   {}", isolation.as_str());
    }
    for source in &profile.data_sources {
        println!(
            "data source {} ({}) at {}, URL in secret {}",
            source.name.as_str(),
            source.kind,
            source.endpoint,
            source.secret
        );
    }
    if !profile.modules.is_empty() {
        let on: Vec<&str> = profile
            .modules
            .iter()
            .filter(|(_, on)| **on)
            .map(|(name, _)| name.as_str())
            .collect();
        println!("modules     {} (asked at provisioning)", on.join(", "));
    }
    let security = &profile.security;
    let cidrs: Vec<String> = security
        .allowed_cidrs
        .iter()
        .map(ToString::to_string)
        .collect();
    println!(
        "security    sign-in {}, MFA {}, from {}",
        security.auth_method.as_str(),
        security.mfa_policy.as_str(),
        if cidrs.is_empty() {
            "anywhere".to_owned()
        } else {
            cidrs.join(", ")
        }
    );
}
