//! `tenantry tenants clone SLUG --to NEW_SLUG`: the clone job run here, its phases printed as they end (and the
//! new tenant's one-time secrets shown to whoever typed the command, as provisioning does).

use super::provision::{lease_for, run_submitted};
use crate::app::{cli_actor, App};
use crate::cli::TenantsCommand;
use crate::CommandResult;
use tenantry_core::{Error as CodedError, Slug};
use tenantry_workflows::{clone_request, submit_clone, RawClone};

/// `tenants clone`, its arguments checked as far as they can be without the registry.
pub struct CloneCommand {
    source: Slug,
    to: Slug,
    plan: Option<String>,
    admin_email: Option<String>,
    display_name: Option<String>,
    no_wait: bool,
}

/// The checked arguments of `tenants clone` (`None` for the other `tenants` commands): both slugs valid.
pub fn parse_clone(command: &TenantsCommand) -> Result<Option<CloneCommand>, CodedError> {
    let TenantsCommand::Clone {
        slug,
        to,
        plan,
        admin_email,
        display_name,
        no_wait,
    } = command
    else {
        return Ok(None);
    };
    Ok(Some(CloneCommand {
        source: Slug::parse(slug)?,
        to: Slug::parse(to)?,
        plan: plan.clone(),
        admin_email: admin_email.clone(),
        display_name: display_name.clone(),
        no_wait: *no_wait,
    }))
}

pub async fn clone(app: &App, command: CloneCommand, json: bool) -> CommandResult {
    let request = clone_request(
        &app.platform,
        RawClone {
            source: command.source.as_str(),
            to: command.to.as_str(),
            plan: command.plan.as_deref(),
            admin_email: command.admin_email.as_deref(),
            display_name: command.display_name.as_deref(),
        },
    )
    .await?;
    let runner = app.runner();
    let lease = (!command.no_wait).then(|| lease_for(&runner));
    let submitted = submit_clone(&app.platform, &request, &cli_actor(), lease).await?;
    let doing = format!(
        "cloning tenant {} into {}",
        command.source.as_str(),
        command.to.as_str()
    );
    run_submitted(app, runner, submitted.job(), &doing, command.no_wait, json).await
}
