//! `tenantry backups create | list | restore [--in-place] | prune`: backups as jobs run here (phases printed as they end),
//! the list from the registry, and the prune of expired backups.

use super::provision::{lease_for, run_submitted};
use crate::app::cli_actor;
use crate::app::App;
use crate::cli::BackupsCommand;
use crate::output::{print_json, print_table, when};
use crate::CommandResult;
use tenantry_core::{Error as CodedError, Slug};
use tenantry_workflows::{
    prune_backups, registry_error, restore_in_place_request, restore_spec, submit_backup,
    submit_provision, submit_provision_to_run, submit_restore_in_place, BackupFile, BackupRequest,
};

/// Which backup a restore takes: one by id, or the newest complete one of a tenant.
pub enum BackupChoice {
    Id(String),
    LatestOf(Slug),
}

/// `backups …`, its arguments checked.
pub enum BackupsRequest {
    Create {
        request: BackupRequest,
        no_wait: bool,
    },
    List {
        slug: Option<Slug>,
    },
    Restore {
        backup: BackupChoice,
        /// The new tenant; `None`: in place, over the tenant the backup was taken of.
        to: Option<Slug>,
        admin_email: Option<String>,
        server: Option<String>,
        no_wait: bool,
    },
    Prune,
}

pub fn parse(command: BackupsCommand) -> Result<BackupsRequest, CodedError> {
    Ok(match command {
        BackupsCommand::Create { slug, no_wait } => BackupsRequest::Create {
            request: BackupRequest {
                slug: Slug::parse(&slug)?,
            },
            no_wait,
        },
        BackupsCommand::List { slug } => BackupsRequest::List {
            slug: slug.as_deref().map(Slug::parse).transpose()?,
        },
        BackupsCommand::Restore {
            backup_id,
            latest_of,
            to,
            in_place,
            admin_email,
            server,
            no_wait,
        } => BackupsRequest::Restore {
            backup: match (backup_id, latest_of) {
                (Some(id), _) => BackupChoice::Id(id),
                (None, Some(slug)) => BackupChoice::LatestOf(Slug::parse(&slug)?),
                (None, None) => {
                    return Err(CodedError::invalid_input(
                        "name a backup: BACKUP_ID or --latest-of SLUG",
                    ))
                }
            },
            to: match (to, in_place) {
                (Some(to), false) => Some(Slug::parse(&to)?),
                (None, true) => None,
                _ => {
                    return Err(CodedError::invalid_input(
                        "name where the data goes: --to NEW_SLUG or --in-place",
                    ))
                }
            },
            admin_email,
            server,
            no_wait,
        },
        BackupsCommand::Prune => BackupsRequest::Prune,
    })
}

pub async fn run(app: &App, request: BackupsRequest, json: bool) -> CommandResult {
    match request {
        BackupsRequest::Create { request, no_wait } => {
            let runner = app.runner();
            let lease = (!no_wait).then(|| lease_for(&runner));
            let submitted = submit_backup(&app.platform, &request, &cli_actor(), lease).await?;
            let doing = format!("backing up tenant {}", request.slug.as_str());
            run_submitted(app, runner, submitted.job(), &doing, no_wait, json).await
        }
        BackupsRequest::List { slug } => {
            let backups = app
                .platform
                .registry
                .list_backups(slug.as_ref().map(Slug::as_str))
                .await
                .map_err(registry_error)?;
            if json {
                print_json(&backups)?;
            } else if backups.is_empty() {
                println!("No backups yet — take one with `tenantry backups create SLUG`");
            } else {
                let rows: Vec<Vec<String>> = backups
                    .iter()
                    .map(|backup| {
                        let files: Vec<BackupFile> =
                            serde_json::from_value(backup.resources.clone()).unwrap_or_default();
                        let bytes: u64 = files.iter().map(|file| file.sums.stored_bytes).sum();
                        vec![
                            backup.id.clone(),
                            backup.tenant_slug.clone(),
                            backup.status.clone(),
                            files
                                .iter()
                                .map(|file| file.kind.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                            bytes.to_string(),
                            when(Some(backup.created_at)),
                            when(backup.expires_at),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "ID",
                        "TENANT",
                        "STATUS",
                        "RESOURCES",
                        "BYTES",
                        "CREATED",
                        "EXPIRES",
                    ],
                    &rows,
                );
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        BackupsRequest::Restore {
            backup,
            to,
            admin_email,
            server,
            no_wait,
        } => {
            let backup_id = match backup {
                BackupChoice::Id(id) => id,
                BackupChoice::LatestOf(slug) => app
                    .platform
                    .registry
                    .list_backups(Some(slug.as_str()))
                    .await
                    .map_err(registry_error)?
                    .into_iter()
                    .find(|backup| backup.status == tenantry_registry::BACKUP_COMPLETE)
                    .map(|backup| backup.id)
                    .ok_or_else(|| {
                        CodedError::new(
                            tenantry_core::ErrorCode::NotFound,
                            format!("tenant {:?} has no complete backup", slug.as_str()),
                        )
                    })?,
            };
            let Some(to) = to else {
                let request = restore_in_place_request(&app.platform, &backup_id).await?;
                let runner = app.runner();
                let lease = (!no_wait).then(|| lease_for(&runner));
                let submitted =
                    submit_restore_in_place(&app.platform, &request, &cli_actor(), lease).await?;
                let doing = format!(
                    "restoring backup {backup_id} over tenant {}",
                    request.slug.as_str()
                );
                return run_submitted(app, runner, submitted.job(), &doing, no_wait, json).await;
            };
            let spec = restore_spec(
                &app.platform,
                &backup_id,
                to.as_str(),
                admin_email.as_deref(),
                server.as_deref(),
            )
            .await?;
            let runner = app.runner();
            let submitted = if no_wait {
                submit_provision(&app.platform, &spec, &cli_actor(), None).await?
            } else {
                submit_provision_to_run(&app.platform, &spec, &cli_actor(), lease_for(&runner))
                    .await?
            };
            let doing = format!("restoring backup {backup_id} into tenant {}", to.as_str());
            run_submitted(app, runner, submitted.job(), &doing, no_wait, json).await
        }
        BackupsRequest::Prune => {
            let pruned = prune_backups(&app.platform, &cli_actor()).await?;
            if json {
                print_json(&serde_json::json!({ "pruned": pruned }))?;
            } else if pruned.is_empty() {
                println!("no backup has expired");
            } else {
                for id in &pruned {
                    println!("pruned backup {id}");
                }
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
