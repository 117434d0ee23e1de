//! One function per command; each turns its arguments into validated values, then does the work.

mod backups;
mod bench;
mod change_requests;
mod clone;
mod fleet;
mod inspect;
mod jobs;
mod migrate;
mod notifications;
mod plans;
mod pool;
mod provision;
mod serve;
mod users;

use crate::app::App;
use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::{CommandResult, Failure};

pub async fn run(cli: Cli) -> CommandResult {
    // The configuration is the operator's input: what stops it loading is for them to correct.
    let config = Config::load(cli.config.as_deref()).map_err(Failure::bad_input)?;
    let json = cli.json;
    match cli.command {
        Command::Serve { listen, workers } => {
            serve::serve(App::open(config).await?, &listen, workers).await
        }
        Command::Worker { workers } => serve::worker(App::open(config).await?, workers).await,
        Command::Users(command) => users::run(&App::open(config).await?, command, json).await,
        Command::ProvisionTenant(args) => {
            // Arguments are checked before anything is opened, so bad input changes nothing.
            let (spec, data_source_urls) = provision::parse_request(&config, &args)?;
            let app = App::open(config).await?;
            provision::provision(&app, spec, &data_source_urls, args.no_wait, json).await
        }
        Command::OffboardTenant(args) => {
            let request = provision::parse_offboard(&args)?;
            let app = App::open(config).await?;
            provision::offboard(&app, request, json).await
        }
        Command::Jobs(command) => jobs::run(&App::open(config).await?, command, json).await,
        Command::Tenants(command) => {
            // Arguments are checked before anything is opened, so bad input changes nothing.
            if let Some(clone) = clone::parse_clone(&command)? {
                return clone::clone(&App::open(config).await?, clone, json).await;
            }
            if let Some(rotation) = fleet::parse_rotation(&command)? {
                return fleet::rotation(&App::open(config).await?, rotation, json).await;
            }
            match fleet::parse_suspension(&command)? {
                Some(suspension) => {
                    fleet::suspension(&App::open(config).await?, suspension, json).await
                }
                None => fleet::tenants(&App::open(config).await?, command, json).await,
            }
        }
        Command::Servers(command) => fleet::servers(&App::open(config).await?, command, json).await,
        Command::Backups(command) => {
            // Arguments are checked before anything is opened, so bad input changes nothing.
            let request = backups::parse(command)?;
            backups::run(&App::open(config).await?, request, json).await
        }
        Command::Audit(command) => inspect::audit(&App::open(config).await?, command, json).await,
        Command::Doctor => inspect::doctor(&App::open(config).await?, json).await,
        Command::Reconcile { slug, kind } => {
            plans::reconcile(
                &App::open(config).await?,
                slug.as_deref(),
                kind.as_deref(),
                json,
            )
            .await
        }
        Command::Webhooks(command) => {
            notifications::webhooks(&App::open(config).await?, command, json).await
        }
        Command::Notifications(command) => {
            notifications::notifications(&App::open(config).await?, command, json).await
        }
        Command::Invitations(command) => {
            notifications::invitations(&App::open(config).await?, command, json).await
        }
        Command::Migrate(command) => migrate::run(&App::open(config).await?, command, json).await,
        Command::Pool(command) => {
            let request = pool::parse(command)?;
            pool::run(&App::open(config).await?, request, json).await
        }
        Command::Bench(args) => {
            let app = App::open(config).await?;
            let request = bench::parse(&args, &app.platform)?;
            bench::run(&app, request, json).await
        }
        Command::Secrets(command) => {
            inspect::secrets(&App::open(config).await?, command, json).await
        }
        Command::Validate { slug } => {
            let slug = tenantry_core::Slug::parse(&slug)?;
            plans::validate(&App::open(config).await?, &slug, json).await
        }
        Command::Costs => plans::costs(&App::open(config).await?, json).await,
        Command::ChangeRequests(command) => {
            change_requests::run(&App::open(config).await?, command, json).await
        }
        Command::Plans { region } => plans::list(&config, region.as_deref(), json),
    }
}
