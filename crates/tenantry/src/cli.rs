//! The command line, as clap types. Raw arguments become validated values in the commands before any work starts.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "tenantry",
    version,
    about = "Provision and keep tenant databases: durable, audited, reversible."
)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Path of the configuration file (default: $TENANTRY_CONFIG or ./tenantry.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API, the console and job workers.
    Serve {
        /// Address to listen on (port 0 picks a free port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// How many jobs run at once in this process.
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
    /// Run job workers only (no HTTP).
    Worker {
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
    /// Manage platform users and their API tokens.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Provision a tenant: database, role, credentials, schema, first admin.
    ProvisionTenant(ProvisionArgs),
    /// Offboard a tenant: disable login and keep the data, or remove everything with --purge.
    OffboardTenant(OffboardArgs),
    /// Inspect and steer jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Inspect tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Manage the fleet of servers that host tenant databases.
    #[command(subcommand)]
    Servers(ServersCommand),
    /// Back up tenants, list and restore backups, prune expired ones.
    #[command(subcommand)]
    Backups(BackupsCommand),
    /// Read the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Compare registry, servers and secret store; name every orphan and partial state with its fix.
    Doctor,
    /// Converge a tenant (or every tenant) on its plan and on tenantry's access model, as jobs: every resource
    /// missing or changed by hand is ensured again (one fleet job for all tenants' caches, queues, …), a database
    /// opened to PUBLIC is closed, a database its tenant owns is handed to the installation's owner role.
    Reconcile {
        #[arg(long)]
        slug: Option<String>,
        /// Only this kind of resource (database, cache, queue, …).
        #[arg(long)]
        kind: Option<String>,
    },
    /// Webhooks: signed deliveries of tenantry's events (Standard Webhooks, or Slack-compatible messages).
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// The outbox: every delivery (webhooks and invitation e-mails) with its attempts, status and last error.
    #[command(subcommand)]
    Notifications(NotificationsCommand),
    /// The first admin's invitation e-mail (its link sets the admin's first password).
    #[command(subcommand)]
    Invitations(InvitationsCommand),
    /// Fleet migrations: bring every tenant database to the tenant schema's latest version, in waves.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Template databases and the warm pool of tenant databases made ahead of time (PostgreSQL servers).
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Provision N tenants at concurrency C on a server three ways (warm pool, template, the naive script of
    /// createdb and psql), report latency and throughput, then remove them.
    Bench(BenchArgs),
    /// Read secrets (local operators only; every read is audited).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Run the validation suite against a tenant now and print each check.
    Validate {
        #[arg(long)]
        slug: String,
    },
    /// Monthly chargeback per tenant, plan, region and cost center.
    Costs,
    /// Tenant admins' requests for another plan or other modules: list, show, approve (not your own), reject.
    #[command(subcommand)]
    ChangeRequests(ChangeRequestsCommand),
    /// List the configured plans with their quotas, modules, flags and monthly estimate.
    Plans {
        /// Price the plans in this region (default: the default region).
        #[arg(long)]
        region: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    #[arg(long, required_unless_present = "from_file")]
    pub slug: Option<String>,
    #[arg(long, required_unless_present = "from_file")]
    pub display_name: Option<String>,
    #[arg(long, required_unless_present = "from_file")]
    pub admin_email: Option<String>,
    #[arg(long)]
    pub plan: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
    /// Place on this server instead of auto-placement.
    #[arg(long)]
    pub server: Option<String>,
    /// Check everything and list what would be created, creating nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Monthly budget (whole currency units); at or above the auto-approve threshold the job waits for another
    /// PLATFORM_ADMIN. Default: the plan's monthly estimate.
    #[arg(long)]
    pub budget: Option<u64>,
    /// What the tenant is for (at most 500 characters).
    #[arg(long)]
    pub description: Option<String>,
    /// The tenant's contact person.
    #[arg(long)]
    pub contact_name: Option<String>,
    /// small, medium (default) or large: the plan's limits, quotas and price halved, as written, or doubled.
    #[arg(long)]
    pub resource_tier: Option<String>,
    /// database or schema; must be the plan's isolation.
    #[arg(long)]
    pub isolation: Option<String>,
    /// A module to turn on (repeatable); given at all, the modules not named are off. Default: the plan's.
    #[arg(long = "module", value_name = "NAME")]
    pub modules: Vec<String>,
    /// password (default), oidc or saml: how the tenant's application signs its users in.
    #[arg(long)]
    pub auth_method: Option<String>,
    /// off, optional (default) or required.
    #[arg(long)]
    pub mfa_policy: Option<String>,
    /// A network the tenant's services may be reached from (repeatable; CIDR or one address). Default: anywhere.
    #[arg(long = "allow-cidr", value_name = "CIDR")]
    pub allow_cidrs: Vec<String>,
    /// The request as `POST /platform/tenants` takes it (JSON; `-` reads stdin): the only way to give data
    /// sources, whose URLs hold passwords and never belong on a command line. Flags given beside it override the
    /// file's fields (a repeatable flag replaces the file's list).
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<std::path::PathBuf>,
    /// Record the job and return its id without running it.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Args)]
pub struct OffboardArgs {
    #[arg(long)]
    pub slug: String,
    /// End sessions, take a backup, drop database and role, delete secrets, forget the tenant.
    #[arg(long)]
    pub purge: bool,
    /// With --purge: take no backup first (recorded in the purge's audit event).
    #[arg(long, requires = "purge")]
    pub no_backup: bool,
}

#[derive(Debug, Subcommand)]
pub enum BackupsCommand {
    /// Back up a tenant: one encrypted, checksummed dump per resource that holds data.
    Create {
        slug: String,
        /// Record the job for a worker and return at once.
        #[arg(long)]
        no_wait: bool,
    },
    /// List backups, newest first, of one tenant or of all.
    List { slug: Option<String> },
    /// Restore a backup into a new tenant (its own role and credentials), or with --in-place over the tenant it
    /// was taken of, after checking its checksums.
    Restore {
        /// The backup to restore (see `backups list`).
        #[arg(required_unless_present = "latest_of", conflicts_with = "latest_of")]
        backup_id: Option<String>,
        /// Instead of an id: the newest complete backup of this tenant (purged or not).
        #[arg(long)]
        latest_of: Option<String>,
        /// The new tenant's slug.
        #[arg(
            long,
            required_unless_present = "in_place",
            conflicts_with = "in_place"
        )]
        to: Option<String>,
        /// Instead of a new tenant: replace the data of the tenant the backup was taken of (it keeps its
        /// credentials). A safety backup of its data as it is comes first; undoing the job restores that.
        #[arg(long, conflicts_with_all = ["admin_email", "server"])]
        in_place: bool,
        /// The new tenant's first admin (default: the backed-up tenant's).
        #[arg(long)]
        admin_email: Option<String>,
        /// The server to restore onto (default: the one the backup came from; same engine).
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        no_wait: bool,
    },
    /// Delete backups whose plan's retention has run out (data key, files, row), each audited.
    Prune,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Show one job with its phases and log.
    Show {
        job_id: String,
        /// Keep printing events until the job ends.
        #[arg(long)]
        follow: bool,
    },
    /// List recent jobs.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Run an unfinished job here (one that was interrupted, or recorded with --no-wait).
    Resume { job_id: String },
    /// Run a failed or rolled-back job again from the phases not applied.
    Retry { job_id: String },
    /// Undo what a failed job applied.
    Rollback { job_id: String },
    /// Approve a job waiting for approval (not your own), then run it here unless --no-wait.
    Approve {
        job_id: String,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Reject a job waiting for approval (not your own); it ends cancelled.
    Reject {
        job_id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    List {
        #[arg(long)]
        status: Option<String>,
        /// Match slug or display name.
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    Show {
        slug: String,
    },
    /// Move a tenant to another plan: quotas, settings and labels, then the validation suite.
    SetPlan {
        slug: String,
        plan: String,
        /// Monthly budget for the new plan (see provision-tenant --budget).
        #[arg(long)]
        budget: Option<u64>,
        /// Record the job and return its id without running it.
        #[arg(long)]
        no_wait: bool,
    },
    /// Suspend a tenant: every resource's credentials refused and its sessions ended, the data kept.
    Suspend {
        slug: String,
        /// Why (required: 1 to 500 characters); kept in the job and the audit log.
        #[arg(long)]
        reason: Option<String>,
        /// Record the job and return its id without running it.
        #[arg(long)]
        no_wait: bool,
    },
    /// Resume a suspended tenant: every resource's credentials work again.
    Resume {
        slug: String,
        /// Record the job and return its id without running it.
        #[arg(long)]
        no_wait: bool,
    },
    /// New credentials for each of the tenant's resources, written to its secret; the old ones keep working for
    /// the grace period (so a client that re-reads the secret never fails a login), then are refused.
    RotateCredentials {
        slug: String,
        /// Only this kind's resource (database, cache, queue, …).
        #[arg(long)]
        kind: Option<String>,
        /// How long the old credentials keep working (e.g. 90s, 10m, 1h; at most 7 days).
        #[arg(long, default_value = "10m", allow_hyphen_values = true)]
        grace: String,
        /// Record the job and return its id without running it.
        #[arg(long)]
        no_wait: bool,
    },
    /// Move the tenant's PostgreSQL database to another PostgreSQL server, with logical replication: writes are
    /// refused only between the target catching up and the cut-over; an undo leaves the tenant on its source.
    Move {
        slug: String,
        /// The server the database moves to (active, PostgreSQL, not the one it is on).
        #[arg(long)]
        to_server: String,
        /// Record the job and return its id without running it.
        #[arg(long)]
        no_wait: bool,
    },
    /// A new tenant whose data is a copy of SLUG's at one instant (e.g. staging), with its own credentials,
    /// labels, resources and first admin, on SLUG's server. SLUG keeps serving during the copy.
    Clone {
        slug: String,
        /// The new tenant's slug.
        #[arg(long)]
        to: String,
        /// The new tenant's plan (default: SLUG's); its engine, if it names one, must be SLUG's.
        #[arg(long)]
        plan: Option<String>,
        /// The new tenant's first admin (default: SLUG's).
        #[arg(long)]
        admin_email: Option<String>,
        /// The new tenant's display name (default: SLUG's).
        #[arg(long)]
        display_name: Option<String>,
        /// Record the job and return its id without running it.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServersCommand {
    /// Register a server. A URL with a password must come on stdin (--admin-url-stdin), never as an argument.
    Add {
        #[arg(long)]
        name: String,
        /// postgres, sqlite (tenant databases), redis (caches), rabbitmq (queues), powerdns (DNS records) or s3
        /// (buckets).
        #[arg(long)]
        engine: String,
        /// Admin connection URL without a password (postgres://user@host:port/db, sqlite:///dir,
        /// redis://host:6379, RabbitMQ's management API http://host:15672, PowerDNS's HTTP API
        /// http://api:API_KEY@host:8081, or an S3 endpoint http://KEY_ID:SECRET@host:port); a URL with a password
        /// (or API key) belongs on standard input.
        #[arg(long, conflicts_with = "admin_url_stdin")]
        admin_url: Option<String>,
        /// Read the admin connection URL from standard input.
        #[arg(long)]
        admin_url_stdin: bool,
        #[arg(long)]
        capacity: i64,
        #[arg(long)]
        region: Option<String>,
        /// Where tenants connect when it is not the admin URL's host (RabbitMQ: amqp://host:5672).
        #[arg(long)]
        public_url: Option<String>,
        /// powerdns: the zone tenants' names go in (tenants.example.); the server must have it.
        #[arg(long)]
        zone: Option<String>,
        /// powerdns: where `<slug>.<zone>` points: an IPv4 or IPv6 address (A, AAAA) or a host name (CNAME).
        #[arg(long)]
        dns_target: Option<String>,
        /// powerdns: the port of its DNS listener on the admin URL's host, where it is not 53.
        #[arg(long)]
        dns_port: Option<u16>,
        /// Also close the server's other databases to PUBLIC (see `servers harden`).
        #[arg(long)]
        harden: bool,
    },
    List,
    /// Stop placing new tenants on a server.
    Drain {
        name: String,
    },
    /// Name the server's databases that are not tenants' yet admit PUBLIC (every tenant role can log in to them),
    /// and with --apply take CONNECT and TEMPORARY on them away from PUBLIC (the admin URL's own database stays).
    Harden {
        name: String,
        #[arg(long)]
        apply: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit chain; exits non-zero and names every event changed, deleted or added by hand.
    Verify,
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        event_type: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user; a generated password is printed once (or set one with --password-stdin).
    Add {
        #[arg(long)]
        email: String,
        /// PLATFORM_ADMIN, PLATFORM_SUPPORT, PLATFORM_READONLY, or TENANT_ADMIN (with --tenant).
        #[arg(long)]
        role: String,
        /// The one tenant a TENANT_ADMIN sees and files change requests for (required with that role alone).
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Issue an API token for a user; it is printed once.
    Token {
        #[arg(long)]
        email: String,
        /// A label to recognise the token by.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Days until the token stops working (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke an API token by its id (the part between `tnt_` and the dot).
    RevokeToken { token_id: String },
    /// List users and their tokens.
    List,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Print a secret's value (audited as SECRET_READ).
    Show { name: String },
    /// Set an operator's secret from standard input, never the command line (audited as SECRET_SET). The one
    /// such secret is `smtp-password`, the password of smtp_url's user.
    Set { name: String },
}

#[derive(Debug, Subcommand)]
pub enum InvitationsCommand {
    /// Send the tenant's first admin a fresh link; the old one stops working (and any password set through
    /// it: the new link sets one again).
    Resend {
        #[arg(long)]
        slug: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Make pool databases now, up to --size (default: warm_pool_size); builds the schema's template if needed.
    Fill {
        #[arg(long)]
        server: String,
        #[arg(long)]
        size: Option<u32>,
    },
    /// Show each server's template and pool databases.
    Status {
        #[arg(long)]
        server: Option<String>,
    },
    /// Drop templates and pool databases of older tenant schemas and leftovers of interrupted builds.
    Prune {
        #[arg(long)]
        server: String,
        /// Drop the current schema's pool databases and template too.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The PostgreSQL server to provision on (its capacity must hold the tenants).
    #[arg(long)]
    pub server: String,
    /// Tenants per path.
    #[arg(long, default_value_t = 100)]
    pub tenants: usize,
    /// Jobs (or scripts) running at once.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Also provision the tenants with this plan, whose resources go beyond the database (e.g. database, cache
    /// and queue), through the warm pool, to compare with the database-only warm-pool path.
    #[arg(long)]
    pub resources_plan: Option<String>,
    /// With --resources-plan: provision that plan a second time with its phases one after another (as
    /// `TENANTRY_SEQUENTIAL_PHASES=1` runs them), to compare with them side by side.
    #[arg(long)]
    pub sequential_phases: bool,
    /// Also provision the tenants with this shared-tier plan (`isolation = "schema"`): each a schema in the
    /// server's shared database, to compare with the dedicated paths.
    #[arg(long)]
    pub schema_plan: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Each tenant against the tenant schema's files: at latest, pending (which versions), edited (checksum
    /// differs), unknown version, failed; and the count per state. Changes nothing.
    Plan,
    /// Start a rollout of the tenant schema's new migrations to every tenant: a canary, then waves.
    Apply(MigrateApplyArgs),
    /// A rollout's waves and tenants (the newest rollouts without ROLLOUT). A bar per wave on a terminal.
    Status {
        rollout: Option<String>,
        /// Keep showing progress until the rollout ends.
        #[arg(long)]
        follow: bool,
        /// Only tenants of this status (pending, running, applied, skipped, failed).
        #[arg(long)]
        status: Option<String>,
    },
    /// Let tenants in hand finish and start no new one.
    Pause { rollout: String },
    /// Go on with a paused rollout, or retry the failed tenants of a stopped one.
    Resume {
        rollout: String,
        /// Return at once instead of running the rollout here.
        #[arg(long)]
        no_wait: bool,
    },
    /// Stop for good: tenants in hand finish, the rest stay at the version they recorded.
    Abort { rollout: String },
}

#[derive(Debug, Args)]
pub struct MigrateApplyArgs {
    /// How many tenants the canary wave migrates first (default 1).
    #[arg(long, conflicts_with = "canary_tenants")]
    pub canary: Option<usize>,
    /// The canary's tenants, by slug (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub canary_tenants: Vec<String>,
    /// Waves of this many tenants after the canary.
    #[arg(long, conflicts_with = "waves")]
    pub wave_size: Option<usize>,
    /// Waves ending at these cumulative percentages of the tenants after the canary, e.g. 10%,50%,100%.
    #[arg(long)]
    pub waves: Option<String>,
    /// Tenants migrated at once, across every worker (default 8).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Tenants migrated at once on one server (default: the concurrency).
    #[arg(long)]
    pub per_server: Option<usize>,
    /// Stop once this many tenants failed (default 1).
    #[arg(long)]
    pub max_failures: Option<usize>,
    /// Leave out tenants whose records differ from the files (edited, unknown, failed) instead of refusing.
    #[arg(long)]
    pub skip_drifted: bool,
    /// Print the plan and the waves; record and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Record the rollout and return; a `tenantry serve` or `worker` runs it.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Subscribe a URL to events; prints the signing secret (whsec_…) once.
    Add {
        /// https://, or http:// to a loopback address; never one that resolves inside the network unless
        /// webhook_allow_internal is set.
        #[arg(long)]
        url: String,
        /// Comma-separated: tenant.provisioned, tenant.provision_failed, tenant.offboarded, approval.requested,
        /// approval.decided, job.failed.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// `standard` (Standard Webhooks JSON, the default) or `slack` (a Slack-compatible message).
        #[arg(long)]
        format: Option<String>,
    },
    List,
    /// Remove a webhook and its secret; its deliveries not yet sent end dead.
    Remove {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotificationsCommand {
    /// Deliveries, newest first.
    List {
        /// pending, sent or dead.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Send a dead delivery again (same id).
    Retry { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ChangeRequestsCommand {
    /// List change requests, newest first.
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// pending, approved or rejected.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show one change request.
    Show { change_request_id: String },
    /// Approve a pending change request (not your own): its set-plan job is recorded, then run here unless
    /// --no-wait.
    Approve {
        change_request_id: String,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Reject a pending change request (not your own), with a reason.
    Reject {
        change_request_id: String,
        #[arg(long)]
        reason: String,
    },
}
