//! `pool fill|status|prune`: the template databases and warm pool of PostgreSQL servers.

use crate::app::App;
use crate::cli::PoolCommand;
use crate::output::{print_json, print_table};
use crate::CommandResult;
use std::process::ExitCode;
use tenantry_core::{Error as CodedError, ServerName};
use tenantry_providers::engines::PruneScope;
use tenantry_workflows::{fill_warm_pool, prune_warm_pool, warm_pool_status};

/// A pool command with its server name checked, before anything is opened.
#[derive(Debug)]
pub enum PoolRequest {
    Fill {
        server: ServerName,
        size: Option<u32>,
    },
    Status {
        server: Option<ServerName>,
    },
    Prune {
        server: ServerName,
        scope: PruneScope,
    },
}

pub fn parse(command: PoolCommand) -> Result<PoolRequest, CodedError> {
    Ok(match command {
        PoolCommand::Fill { server, size } => PoolRequest::Fill {
            server: ServerName::parse(&server)?,
            size,
        },
        PoolCommand::Status { server } => PoolRequest::Status {
            server: server.as_deref().map(ServerName::parse).transpose()?,
        },
        PoolCommand::Prune { server, all } => PoolRequest::Prune {
            server: ServerName::parse(&server)?,
            scope: if all {
                PruneScope::Everything
            } else {
                PruneScope::Stale
            },
        },
    })
}

pub async fn run(app: &App, request: PoolRequest, json: bool) -> CommandResult {
    let platform = &app.platform;
    match request {
        PoolRequest::Fill { server, size } => {
            let report = fill_warm_pool(platform, server.as_str(), size).await?;
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "server {server}: made {} pool database(s), {} ready{}",
                    report.n_created,
                    report.n_ready,
                    if report.template_built {
                        " (built the schema template first)"
                    } else {
                        ""
                    }
                );
            }
        }
        PoolRequest::Status { server } => {
            let statuses =
                warm_pool_status(platform, server.as_ref().map(ServerName::as_str)).await?;
            if json {
                print_json(&statuses)?;
            } else if statuses.is_empty() {
                println!("No PostgreSQL servers — add one with `tenantry servers add --engine postgres …`");
            } else {
                let rows: Vec<Vec<String>> = statuses
                    .iter()
                    .map(|status| {
                        let inventory = &status.inventory;
                        vec![
                            status.server.clone(),
                            inventory.schema_hash.clone().unwrap_or_else(|| "?".into()),
                            if inventory.template_ready {
                                "ready"
                            } else {
                                "-"
                            }
                            .into(),
                            inventory.n_ready.to_string(),
                            status.target_size.to_string(),
                            inventory.stale.len().to_string(),
                        ]
                    })
                    .collect();
                print_table(
                    &["SERVER", "SCHEMA", "TEMPLATE", "READY", "TARGET", "STALE"],
                    &rows,
                );
                for status in statuses
                    .iter()
                    .filter(|status| !status.inventory.stale.is_empty())
                {
                    println!(
                        "server {} holds stale databases or roles; clear them with `tenantry pool prune --server {}`",
                        status.server, status.server
                    );
                }
            }
        }
        PoolRequest::Prune { server, scope } => {
            let report = prune_warm_pool(platform, server.as_str(), scope).await?;
            if json {
                print_json(&report)?;
            } else {
                if report.dropped.is_empty() {
                    println!("server {server}: nothing to prune");
                }
                for dropped in &report.dropped {
                    println!("dropped {dropped}");
                }
                for kept in &report.kept {
                    println!("kept {kept}");
                }
            }
            if !report.kept.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
