//! `audit list`, `doctor` and `secrets show`.

use crate::app::{cli_actor, App};
use crate::cli::{AuditCommand, SecretsCommand};
use crate::output::{print_json, print_table, when};
use crate::CommandResult;
use std::process::ExitCode;
use tenantry_core::{Error as CodedError, ErrorCode};
use tenantry_providers::credentials::SecretString;
use tenantry_registry::{AuditFilter, NewAuditEvent};
use tenantry_workflows::{registry_error, run_doctor};

pub async fn audit(app: &App, command: AuditCommand, json: bool) -> CommandResult {
    let (tenant, event_type, actor, limit) = match command {
        AuditCommand::Verify => return verify_audit(app, json).await,
        AuditCommand::List {
            tenant,
            event_type,
            actor,
            limit,
        } => (tenant, event_type, actor, limit),
    };
    let events = app
        .platform
        .registry
        .list_audit(&AuditFilter {
            tenant_slug: tenant,
            event_type,
            actor,
            since_millis: None,
            until_millis: None,
            limit,
        })
        .await
        .map_err(registry_error)?;
    if json {
        print_json(&events)?;
    } else {
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|event| {
                vec![
                    when(Some(event.at)),
                    event.event_type.clone(),
                    event.actor.clone(),
                    event.tenant_slug.clone().unwrap_or_default(),
                    event.job_id.clone().unwrap_or_default(),
                    event.details.to_string(),
                ]
            })
            .collect();
        print_table(&["AT", "EVENT", "ACTOR", "TENANT", "JOB", "DETAILS"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit verify`: the chain recomputed. Intact: exit 0. Otherwise every finding, then `E_AUDIT_CHAIN_BROKEN`
/// naming the first (with `--json`, the report alone, its `error_code` set), and a non-zero exit.
async fn verify_audit(app: &App, json: bool) -> CommandResult {
    let report = app
        .platform
        .registry
        .verify_audit_chain()
        .await
        .map_err(registry_error)?;
    let first_finding = report
        .findings
        .first()
        .map(|finding| finding.detail.clone());
    if json {
        let mut body = serde_json::to_value(&report).map_err(anyhow::Error::from)?;
        if !report.intact {
            body["error_code"] = ErrorCode::AuditChainBroken.as_str().into();
        }
        print_json(&body)?;
        return Ok(if report.intact {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    println!(
        "checked {} audit event(s); chain head #{} {}",
        report.n_events, report.head_chain_seq, report.head_hash
    );
    for finding in &report.findings {
        println!(
            "{:<10} {}",
            format!("{:?}", finding.fault).to_lowercase(),
            finding.detail
        );
    }
    match first_finding {
        None => {
            println!("the audit chain is intact");
            Ok(ExitCode::SUCCESS)
        }
        Some(first) => Err(CodedError::new(
            ErrorCode::AuditChainBroken,
            format!(
                "{} broken or missing link(s) in the audit chain; the first: {first}",
                report.findings.len()
            ),
        )
        .into()),
    }
}

pub async fn doctor(app: &App, json: bool) -> CommandResult {
    let report = run_doctor(&app.platform).await?;
    if json {
        print_json(&report)?;
    } else {
        println!(
            "checked {} server(s), {} tenant(s), {} secret(s), {} job(s) in flight",
            report.n_servers, report.n_tenants, report.n_secrets, report.n_jobs_in_flight
        );
        if report.n_templates + report.n_pool_databases > 0 {
            println!(
                "the servers also hold {} template(s) and {} warm-pool database(s), which are not tenants",
                report.n_templates, report.n_pool_databases
            );
        }
        if report.is_clean() {
            println!("the fleet is clean: registry, servers and secret store agree");
        }
        for finding in &report.findings {
            println!(
                "{:<12} {}: {}\n             fix: {}",
                finding.kind, finding.subject, finding.detail, finding.fix
            );
        }
        if !report.foreign.is_empty() {
            println!(
                "not this installation's ({}), left alone: {} object(s)",
                report.installation,
                report.foreign.len()
            );
            for object in &report.foreign {
                match &object.installation {
                    Some(id) => println!("foreign      {} (installation {id})", object.subject),
                    None => println!(
                        "foreign      {} (no installation mark; not made by this registry)",
                        object.subject
                    ),
                }
            }
        }
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The secrets an operator sets by hand (the rest are tenantry's own, made by jobs).
const OPERATOR_SECRETS: [&str; 1] = [tenantry_workflows::SMTP_PASSWORD_SECRET];

pub async fn secrets(app: &App, command: SecretsCommand, json: bool) -> CommandResult {
    let name = match command {
        SecretsCommand::Show { name } => name,
        SecretsCommand::Set { name } => return set_secret(app, &name, json).await,
    };
    let value = app
        .platform
        .secrets
        .get(&name)
        .await
        .map_err(|error| CodedError::new(ErrorCode::ProvisioningUnavailable, error.to_string()))?
        .ok_or_else(|| {
            CodedError::new(ErrorCode::NotFound, format!("secret {name:?} not found"))
        })?;
    let tenant_slug = name
        .strip_prefix("tenant-db-")
        .or_else(|| name.strip_prefix("tenant-invite-"))
        .map(str::to_owned);
    app.platform
        .registry
        .record_audit(&NewAuditEvent {
            actor: cli_actor(),
            event_type: "SECRET_READ",
            tenant_slug,
            job_id: None,
            details: serde_json::json!({ "secret": name }),
        })
        .await
        .map_err(registry_error)?;
    if json {
        print_json(&serde_json::json!({ "name": name, "value": value.expose() }))?;
    } else {
        println!("{}", value.expose());
    }
    Ok(ExitCode::SUCCESS)
}

/// `secrets set NAME`: the value from standard input (one line, its newline dropped), so it is never in a command
/// line, a shell history or a process list.
async fn set_secret(app: &App, name: &str, json: bool) -> CommandResult {
    if !OPERATOR_SECRETS.contains(&name) {
        return Err(CodedError::invalid_input(format!(
            "{name:?} is not a secret an operator sets; the one such secret is {}",
            OPERATOR_SECRETS.join(", ")
        ))
        .into());
    }
    let mut value = String::new();
    std::io::stdin().read_line(&mut value).map_err(|error| {
        CodedError::invalid_input(format!("cannot read standard input: {error}"))
    })?;
    let value = value.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(CodedError::invalid_input(format!(
            "standard input was empty: pipe the value of {name} in (`tenantry secrets set {name} < file`)"
        ))
        .into());
    }
    app.platform
        .secrets
        .put(name, &SecretString::new(value.to_owned()))
        .await
        .map_err(|error| CodedError::new(ErrorCode::ProvisioningUnavailable, error.to_string()))?;
    app.platform
        .registry
        .record_audit(&NewAuditEvent {
            actor: cli_actor(),
            event_type: "SECRET_SET",
            tenant_slug: None,
            job_id: None,
            details: serde_json::json!({ "secret": name }),
        })
        .await
        .map_err(registry_error)?;
    if json {
        print_json(&serde_json::json!({ "set": name }))?;
    } else {
        println!("secret {name} set");
    }
    Ok(ExitCode::SUCCESS)
}
