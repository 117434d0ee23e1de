//! Backups and restores. A backup job takes one logical dump per resource that holds data (`<kind>_backed_up`),
//! encrypted with a data key of its own kept in the secret store as `backup-<id>`, into the backup store, and
//! records sizes and checksums in the registry's `backups` row. The id of a backup is the id of the job that took
//! it: a backup job, or the offboard job whose purge took one first (`backup_taken`, which runs the same steps).
//! A restore into a new slug is a provisioning (job kind `restore`) whose `migrations_applied` restores the dump
//! instead of starting from an empty schema; the new tenant gets its own role and credentials like any other.

use crate::platform::{provider_error, secret_store_error, Platform};
use crate::{registry_error, Submitted};
use tenantry_core::{
    Error as CodedError, ErrorCode, JobKind, RawTenantSpec, Slug, SpecDefaults, TenantSpec,
    TenantStatus, DATABASE_RESOURCE,
};
use tenantry_engine::{JobContext, PhaseError, Workflow};
use tenantry_providers::backup::{self as store_io, BackupStore, FileSums};
use tenantry_providers::engines::TenantServer;
use tenantry_registry::{
    now_millis, BackupRecord, JobRecord, NewAuditEvent, NewLease, TenantRecord,
    TenantResourceRecord, BACKUP_COMPLETE, BACKUP_RUNNING,
};

pub const REQUEST_VALIDATED: &str = "request_validated";
/// The backup's data key made and its row recorded (`running`).
pub const KEY_CREATED: &str = "key_created";
/// `<kind>_backed_up`: one resource's dump written, encrypted and checksummed.
pub const BACKED_UP_SUFFIX: &str = "_backed_up";
pub const COMPLETE: &str = "complete";

const DAY_MILLIS: i64 = 24 * 3600 * 1000;

/// The parameters of a backup job.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    pub slug: Slug,
}

/// The secret that holds a backup's data key: deleting it makes the backup unreadable.
pub fn backup_key_name(backup_id: &str) -> String {
    format!("backup-{backup_id}")
}

/// The configured backup store.
pub fn backup_store(platform: &Platform) -> BackupStore {
    BackupStore::new(platform.settings.backups.directory.clone())
}

/// Whether a kind holds data a backup keeps: the database always; another kind when its provider says so.
pub(crate) fn holds_data(platform: &Platform, kind: &str) -> bool {
    kind == DATABASE_RESOURCE
        || platform
            .providers
            .get(kind)
            .is_some_and(|provider| provider.holds_data())
}

/// The phases of a backup of a tenant with `resources`: one `<kind>_backed_up` per resource holding data.
pub fn backup_phases(platform: &Platform, resources: &[TenantResourceRecord]) -> Vec<String> {
    std::iter::once(REQUEST_VALIDATED.to_owned())
        .chain(std::iter::once(KEY_CREATED.to_owned()))
        .chain(
            resources
                .iter()
                .filter(|resource| holds_data(platform, &resource.kind))
                .map(|resource| format!("{}{BACKED_UP_SUFFIX}", resource.kind)),
        )
        .chain(std::iter::once(COMPLETE.to_owned()))
        .collect()
}

/// The backup store can take a backup: its directory can be made and written. Checked before a backup job and
/// before a purge that must take one, so neither starts when the backup cannot be made.
pub fn check_backup_store(platform: &Platform) -> Result<(), CodedError> {
    backup_store(platform).check_writable().map_err(|error| {
        CodedError::new(
            ErrorCode::ProvisioningUnavailable,
            format!("no backup can be taken: {error}"),
        )
    })
}

/// A tenant that can be backed up: registered (`E_NOT_FOUND`), with a database (not still provisioning or
/// failed: `E_CONFLICT`), and a store that can be written.
pub async fn validate_backup(
    platform: &Platform,
    request: &BackupRequest,
) -> Result<TenantRecord, CodedError> {
    let tenant = platform
        .registry
        .get_tenant(request.slug.as_str())
        .await
        .map_err(registry_error)?
        .ok_or_else(|| {
            CodedError::new(
                ErrorCode::NotFound,
                format!("tenant {:?} is not registered", request.slug.as_str()),
            )
        })?;
    refuse_status(&tenant).map_err(|message| CodedError::new(ErrorCode::Conflict, message))?;
    check_backup_store(platform)?;
    check_engine_dumps(platform, &tenant).await?;
    Ok(tenant)
}

/// The tenant's database is on an engine tenantry can dump (`E_BACKUP_UNSUPPORTED` for MariaDB): checked before
/// a backup job and before a purge that must take one.
pub async fn check_engine_dumps(
    platform: &Platform,
    tenant: &TenantRecord,
) -> Result<(), CodedError> {
    let server = platform
        .registry
        .get_server(&tenant.server_name)
        .await
        .map_err(registry_error)?;
    if server.engine == tenantry_core::EngineKind::Mariadb {
        return Err(mariadb_backup_refused(&tenant.slug));
    }
    Ok(())
}

fn mariadb_backup_refused(what: &str) -> CodedError {
    CodedError::new(
        ErrorCode::BackupUnsupported,
        format!(
            "{what}: tenantry cannot back up a MariaDB database yet; dump it with mariadb-dump, and purge with \
             --no-backup once you hold a copy"
        ),
    )
}

fn refuse_status(tenant: &TenantRecord) -> Result<(), String> {
    match tenant.status {
        TenantStatus::Active
        | TenantStatus::Suspended
        | TenantStatus::Offboarding
        | TenantStatus::Offboarded => Ok(()),
        other => Err(format!(
            "tenant {:?} is {other}; only a provisioned tenant can be backed up",
            tenant.slug
        )),
    }
}

/// Records a backup job for a worker (or, with `lease`, for the caller) to run.
pub async fn submit_backup(
    platform: &Platform,
    request: &BackupRequest,
    actor: &str,
    lease: Option<NewLease>,
) -> Result<Submitted, CodedError> {
    let tenant = validate_backup(platform, request).await?;
    let resources = platform
        .registry
        .tenant_resources(&tenant.slug)
        .await
        .map_err(registry_error)?;
    let job = tenantry_registry::NewJob {
        id: uuid::Uuid::now_v7().to_string(),
        kind: JobKind::Backup,
        tenant_slug: tenant.slug.clone(),
        params: serde_json::to_value(request)
            .map_err(|error| CodedError::new(ErrorCode::Internal, error.to_string()))?,
        phases: backup_phases(platform, &resources),
        actor: actor.to_owned(),
        plan: Some(tenant.plan),
        idempotency: None,
        approval: None,
        lease,
    };
    crate::submit::submit_job(platform, job).await
}

fn backup_not_found(backup_id: &str) -> CodedError {
    CodedError::new(
        ErrorCode::NotFound,
        format!("backup {backup_id:?} does not exist"),
    )
}

fn corrupt(backup_id: &str, why: impl std::fmt::Display) -> CodedError {
    CodedError::new(
        ErrorCode::BackupCorrupt,
        format!("backup {backup_id}: {why}"),
    )
}

/// One resource's dump as a backup row records it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BackupFile {
    pub kind: String,
    pub engine: String,
    pub server: String,
    #[serde(flatten)]
    pub sums: FileSums,
}

fn backup_files(backup: &BackupRecord) -> Vec<BackupFile> {
    serde_json::from_value(backup.resources.clone()).unwrap_or_default()
}

/// Checks every file of a complete backup against the registry: present, of the recorded size and SHA-256, and
/// its data key still in the secret store (`E_NOT_FOUND` for no such backup, `E_BACKUP_CORRUPT` otherwise).
pub async fn verify_backup(
    platform: &Platform,
    backup_id: &str,
) -> Result<BackupRecord, CodedError> {
    check_backup(platform, backup_id, true).await
}

/// [`verify_backup`], reading and hashing each whole file only with `hash_files`; otherwise the sizes alone.
async fn check_backup(
    platform: &Platform,
    backup_id: &str,
    hash_files: bool,
) -> Result<BackupRecord, CodedError> {
    if backup_id.len() > 64 || backup_id.is_empty() {
        return Err(backup_not_found(backup_id));
    }
    let backup = platform
        .registry
        .get_backup(backup_id)
        .await
        .map_err(registry_error)?
        .ok_or_else(|| backup_not_found(backup_id))?;
    if backup.status != BACKUP_COMPLETE {
        return Err(CodedError::new(
            ErrorCode::Conflict,
            format!("backup {backup_id} is {}, not complete", backup.status),
        ));
    }
    let key = platform
        .secrets
        .get(&backup_key_name(backup_id))
        .await
        .map_err(|error| {
            CodedError::new(
                ErrorCode::ProvisioningUnavailable,
                format!("secret store: {error}"),
            )
        })?;
    if key.is_none() {
        return Err(corrupt(
            backup_id,
            "its data key is gone from the secret store",
        ));
    }
    let store = backup_store(platform);
    for file in backup_files(&backup) {
        let path = store
            .file_path(backup_id, &file.kind)
            .map_err(|error| corrupt(backup_id, error))?;
        if !hash_files {
            let size = std::fs::metadata(&path)
                .map_err(|error| corrupt(backup_id, format!("its {} file: {error}", file.kind)))?
                .len();
            if size != file.sums.stored_bytes {
                return Err(corrupt(
                    backup_id,
                    format!(
                        "the {} file's checksum cannot match: it has {size} bytes, the registry recorded {}",
                        file.kind, file.sums.stored_bytes
                    ),
                ));
            }
            continue;
        }
        let (size, sha256) = store_io::file_sha256(&path)
            .await
            .map_err(|error| corrupt(backup_id, error))?;
        if size != file.sums.stored_bytes || sha256 != file.sums.stored_sha256 {
            return Err(corrupt(
                backup_id,
                format!(
                    "the {} file's checksum is {sha256}, the registry recorded {}",
                    file.kind, file.sums.stored_sha256
                ),
            ));
        }
    }
    Ok(backup)
}

/// A restore into a new slug, checked: the backup exists and every file matches its checksum, the slug is valid
/// and free; the tenant gets the source's display name, plan and region, and its admin e-mail unless another is
/// given, on the server the backup came from unless another is named.
pub async fn restore_spec(
    platform: &Platform,
    backup_id: &str,
    to_slug: &str,
    admin_email: Option<&str>,
    server: Option<&str>,
) -> Result<TenantSpec, CodedError> {
    let slug = Slug::parse(to_slug)?;
    let backup = verify_backup(platform, backup_id).await?;
    let source = &backup.source;
    let text = |field: &str| {
        source
            .get(field)
            .and_then(|value| value.as_str())
            .unwrap_or_default()
    };
    let database = backup_files(&backup)
        .into_iter()
        .find(|file| file.kind == DATABASE_RESOURCE)
        .ok_or_else(|| corrupt(backup_id, "it holds no database"))?;
    let server = server.unwrap_or(database.server.as_str());
    let record = platform.registry.get_server(server).await.map_err(|_| {
        CodedError::new(
            ErrorCode::DbServerNotFound,
            format!("server {server:?} does not exist"),
        )
    })?;
    if record.engine.as_str() != database.engine {
        return Err(CodedError::invalid_input(format!(
            "backup {backup_id} is a {} dump; server {server:?} is {}",
            database.engine, record.engine
        )));
    }
    let mut spec = TenantSpec::parse(
        RawTenantSpec {
            slug: slug.as_str(),
            display_name: text("display_name"),
            admin_email: admin_email.unwrap_or(text("admin_email")),
            plan: Some(text("plan")),
            region: Some(text("region")),
            server: Some(server),
            budget: None,
            dry_run: false,
        },
        SpecDefaults {
            plan: &platform.settings.default_plan,
            region: &platform.settings.default_region,
        },
    )?;
    spec.restore_from = Some(backup.id);
    Ok(spec)
}

/// Runs a `backup_taken`-style backup of a tenant in one step, for a job that is not a backup job (an offboard's
/// purge): the same steps as a backup job's phases, each converging, so running it again finishes what a crash
/// left.
pub(crate) async fn take_backup(
    platform: &Platform,
    context: &mut JobContext,
    tenant: &TenantRecord,
) -> Result<String, PhaseError> {
    let backup_id = context.job.id.clone();
    begin_backup(platform, context, tenant, &backup_id).await?;
    let kinds: Vec<String> = platform
        .registry
        .tenant_resources(&tenant.slug)
        .await?
        .into_iter()
        .map(|resource| resource.kind)
        .filter(|kind| holds_data(platform, kind))
        .collect();
    for kind in kinds {
        back_up_resource(platform, context, &tenant.slug, &backup_id, &kind).await?;
    }
    finish_backup(platform, context, &backup_id).await?;
    Ok(backup_id)
}

/// The data key (made once: a second run finds it) and the `running` row with where the tenant came from and
/// when the backup expires under the tenant's plan.
async fn begin_backup(
    platform: &Platform,
    context: &mut JobContext,
    tenant: &TenantRecord,
    backup_id: &str,
) -> Result<(), PhaseError> {
    let key_name = backup_key_name(backup_id);
    if platform.read_secret(&key_name).await?.is_none() {
        platform
            .secrets
            .put_for_job(
                &context.fence,
                &key_name,
                &store_io::new_data_key(),
                &serde_json::json!({ "tenant_id": tenant.slug, "backup": backup_id }),
            )
            .await
            .map_err(|error| secret_store_error(&error))?;
    }
    if platform.registry.get_backup(backup_id).await?.is_some() {
        return Ok(());
    }
    let server = platform.registry.get_server(&tenant.server_name).await?;
    let retention_days = platform
        .settings
        .plan(&tenant.plan)
        .map_or(30, |plan| plan.backup_retention_days);
    let created_at = now_millis();
    let record = BackupRecord {
        id: backup_id.to_owned(),
        tenant_slug: tenant.slug.clone(),
        status: BACKUP_RUNNING.to_owned(),
        source: serde_json::json!({
            "display_name": tenant.display_name,
            "admin_email": tenant.admin_email,
            "plan": tenant.plan,
            "region": tenant.region,
            "server": tenant.server_name,
            "engine": server.engine,
        }),
        resources: serde_json::json!([]),
        job_id: context.job.id.clone(),
        created_at,
        completed_at: None,
        expires_at: Some(created_at + i64::from(retention_days) * DAY_MILLIS),
    };
    platform
        .registry
        .put_backup_for_job(&context.fence, &record)
        .await?;
    context
        .log(
            "info",
            &format!(
                "backup {backup_id} of tenant {} begun; kept {retention_days} days",
                tenant.slug
            ),
        )
        .await
}

async fn require_backup(platform: &Platform, backup_id: &str) -> Result<BackupRecord, PhaseError> {
    platform
        .registry
        .get_backup(backup_id)
        .await?
        .ok_or_else(|| {
            PhaseError::fatal(
                ErrorCode::PartialState,
                format!("backup {backup_id}'s row is gone"),
            )
        })
}

async fn require_key(
    platform: &Platform,
    backup_id: &str,
) -> Result<tenantry_providers::credentials::SecretString, PhaseError> {
    platform
        .read_secret(&backup_key_name(backup_id))
        .await?
        .ok_or_else(|| {
            PhaseError::Fatal(corrupt(
                backup_id,
                "its data key is gone from the secret store",
            ))
        })
}

/// Dumps the tenant's resource of `kind` into the store and records its sizes and checksums. Running it again
/// writes the file anew (under a temporary name, renamed when whole) and replaces the entry.
async fn back_up_resource(
    platform: &Platform,
    context: &mut JobContext,
    slug: &str,
    backup_id: &str,
    kind: &str,
) -> Result<(), PhaseError> {
    let resource = platform
        .registry
        .tenant_resources(slug)
        .await?
        .into_iter()
        .find(|resource| resource.kind == kind)
        .ok_or_else(|| {
            PhaseError::fatal(
                ErrorCode::PartialState,
                format!("tenant {slug} has no {kind} in the registry"),
            )
        })?;
    let key = require_key(platform, backup_id).await?;
    let store = backup_store(platform);
    let path = store
        .file_path(backup_id, kind)
        .map_err(|error| provider_error(ErrorCode::ProvisioningUnavailable, error))?;
    let aad = format!("{backup_id}/{kind}");
    let record = platform.registry.get_server(&resource.server_name).await?;
    if kind != DATABASE_RESOURCE {
        return Err(PhaseError::fatal(
            ErrorCode::Internal,
            format!("tenantry cannot dump a {kind} yet"),
        ));
    }
    let plan = platform
        .registry
        .get_tenant(slug)
        .await?
        .map(|tenant| tenant.plan)
        .unwrap_or_default();
    let server = platform
        .tenant_server_for(&record, &plan)
        .await
        .map_err(PhaseError::Fatal)?;
    let sums = match &server {
        TenantServer::Postgres(_) if server.isolation() == tenantry_core::Isolation::Schema => {
            let admin_url = platform
                .admin_url(&record)
                .await
                .map_err(PhaseError::Fatal)?;
            let bin_dir =
                store_io::postgres_bin_dir(platform.settings.backups.pg_bin_dir.as_deref());
            let database = server.database_of(&resource.name);
            store_io::dump_postgres_schema(
                &bin_dir,
                &admin_url,
                &database,
                &resource.name,
                &path,
                &key,
                &aad,
            )
            .await
        }
        TenantServer::Postgres(_) => {
            let admin_url = platform
                .admin_url(&record)
                .await
                .map_err(PhaseError::Fatal)?;
            let bin_dir =
                store_io::postgres_bin_dir(platform.settings.backups.pg_bin_dir.as_deref());
            store_io::dump_postgres(&bin_dir, &admin_url, &resource.name, &path, &key, &aad).await
        }
        TenantServer::Sqlite(sqlite) => {
            let file = sqlite
                .file(&resource.name)
                .map_err(|error| provider_error(ErrorCode::Internal, error))?;
            store_io::dump_sqlite(&file, &path, &key, &aad).await
        }
        TenantServer::Mariadb(_) => return Err(PhaseError::Fatal(mariadb_backup_refused(slug))),
    }
    .map_err(|error| provider_error(ErrorCode::ProvisioningUnavailable, error))?;
    let mut backup = require_backup(platform, backup_id).await?;
    let mut files: Vec<BackupFile> = backup_files(&backup)
        .into_iter()
        .filter(|file| file.kind != kind)
        .collect();
    let message = format!(
        "{kind} dumped: {} bytes, sha256 {}; stored encrypted: {} bytes, sha256 {}",
        sums.plain_bytes, sums.plain_sha256, sums.stored_bytes, sums.stored_sha256
    );
    files.push(BackupFile {
        kind: kind.to_owned(),
        engine: record.engine.as_str().to_owned(),
        server: record.name.clone(),
        sums,
    });
    backup.resources = serde_json::to_value(&files)
        .map_err(|error| PhaseError::fatal(ErrorCode::Internal, error.to_string()))?;
    platform
        .registry
        .put_backup_for_job(&context.fence, &backup)
        .await?;
    context.log("info", &message).await
}

/// Undoes [`back_up_resource`]: the file and its entry go.
async fn back_up_resource_undo(
    platform: &Platform,
    context: &mut JobContext,
    backup_id: &str,
    kind: &str,
) -> Result<(), PhaseError> {
    if let Ok(path) = backup_store(platform).file_path(backup_id, kind) {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(PhaseError::fatal(
                    ErrorCode::Internal,
                    format!("cannot remove {}: {error}", path.display()),
                ))
            }
        }
    }
    if let Some(mut backup) = platform.registry.get_backup(backup_id).await? {
        let files: Vec<BackupFile> = backup_files(&backup)
            .into_iter()
            .filter(|file| file.kind != kind)
            .collect();
        backup.resources = serde_json::json!(files);
        platform
            .registry
            .put_backup_for_job(&context.fence, &backup)
            .await?;
    }
    Ok(())
}

/// The row `complete` and the manifest (the row's content) beside the files.
async fn finish_backup(
    platform: &Platform,
    context: &mut JobContext,
    backup_id: &str,
) -> Result<(), PhaseError> {
    let mut backup = require_backup(platform, backup_id).await?;
    backup_store(platform)
        .write_manifest(
            backup_id,
            &serde_json::to_value(&backup).unwrap_or_default(),
        )
        .map_err(|error| provider_error(ErrorCode::ProvisioningUnavailable, error))?;
    if backup.status != BACKUP_COMPLETE {
        backup.status = BACKUP_COMPLETE.to_owned();
        backup.completed_at = Some(now_millis());
        platform
            .registry
            .put_backup_for_job(&context.fence, &backup)
            .await?;
    }
    context
        .log("info", &format!("backup {backup_id} complete"))
        .await
}

/// Removes every piece of a backup: the data key first (which alone makes the files unreadable), then the files,
/// then the row. Removing what is absent succeeds.
async fn discard_backup(
    platform: &Platform,
    context: &mut JobContext,
    backup_id: &str,
) -> Result<(), PhaseError> {
    platform
        .secrets
        .delete_for_job(&context.fence, &backup_key_name(backup_id))
        .await
        .map_err(|error| secret_store_error(&error))?;
    backup_store(platform)
        .remove(backup_id)
        .map_err(|error| provider_error(ErrorCode::Internal, error))?;
    platform
        .registry
        .delete_backup_for_job(&context.fence, backup_id)
        .await?;
    Ok(())
}

/// Undoes a one-step backup ([`take_backup`]) of this job.
pub(crate) async fn take_backup_undo(
    platform: &Platform,
    context: &mut JobContext,
) -> Result<(), PhaseError> {
    let backup_id = context.job.id.clone();
    discard_backup(platform, context, &backup_id).await
}

/// Restores a backup's database into a new tenant's database (provision's `migrations_applied` for a restore):
/// the file is checked against its recorded checksum first, and the restored plaintext's checksum after.
pub(crate) async fn restore_database(
    platform: &Platform,
    context: &mut JobContext,
    backup_id: &str,
    server: &TenantServer,
    tenant_url: &tenantry_providers::credentials::SecretString,
    resource_name: &str,
) -> Result<(), PhaseError> {
    // The submission hashed every file already. Here the sizes are checked, and the stream is its own proof:
    // every chunk is authenticated before its plaintext reaches pg_restore, which restores in one transaction,
    // and the plaintext's hash is compared at the end; so a file changed since fails the phase and leaves nothing,
    // without a second read of the whole file first.
    let backup = check_backup(platform, backup_id, false)
        .await
        .map_err(PhaseError::Fatal)?;
    let file = backup_files(&backup)
        .into_iter()
        .find(|file| file.kind == DATABASE_RESOURCE)
        .ok_or_else(|| PhaseError::Fatal(corrupt(backup_id, "it holds no database")))?;
    if server.isolation() == tenantry_core::Isolation::Schema {
        return Err(PhaseError::fatal(
            ErrorCode::InvalidInput,
            format!(
                "backup {backup_id} cannot be restored into a shared-tier (schema) tenant: tenantry restores into a \
                 database of its own only"
            ),
        ));
    }
    if file.engine != server.engine().as_str() {
        return Err(PhaseError::fatal(
            ErrorCode::InvalidInput,
            format!(
                "backup {backup_id} is a {} dump; this tenant's server is {}",
                file.engine,
                server.engine()
            ),
        ));
    }
    let key = require_key(platform, backup_id).await?;
    let path = backup_store(platform)
        .file_path(backup_id, DATABASE_RESOURCE)
        .map_err(|error| provider_error(ErrorCode::Internal, error))?;
    let aad = format!("{backup_id}/{DATABASE_RESOURCE}");
    let restored = match server {
        TenantServer::Postgres(_) => {
            let bin_dir =
                store_io::postgres_bin_dir(platform.settings.backups.pg_bin_dir.as_deref());
            store_io::restore_postgres(&bin_dir, tenant_url, resource_name, &path, &key, &aad).await
        }
        TenantServer::Sqlite(sqlite) => {
            let target = sqlite
                .file(resource_name)
                .map_err(|error| provider_error(ErrorCode::Internal, error))?;
            store_io::restore_sqlite(&target, &path, &key, &aad).await
        }
        TenantServer::Mariadb(_) => {
            return Err(PhaseError::Fatal(mariadb_backup_refused(resource_name)))
        }
    };
    let (plain_bytes, plain_sha256) = restored.map_err(|error| match error {
        corrupt_file if store_io::is_corrupt(&corrupt_file) => {
            PhaseError::Fatal(corrupt(backup_id, corrupt_file))
        }
        tenantry_providers::Error::Transient(message) => {
            PhaseError::retryable(ErrorCode::ProvisioningUnavailable, message)
        }
        other => PhaseError::fatal(
            ErrorCode::MigrationsFailed,
            format!("restoring backup {backup_id}: {other}"),
        ),
    })?;
    if plain_sha256 != file.sums.plain_sha256 || plain_bytes != file.sums.plain_bytes {
        return Err(PhaseError::Fatal(corrupt(
            backup_id,
            format!(
                "the restored dump's checksum is {plain_sha256}, the registry recorded {}",
                file.sums.plain_sha256
            ),
        )));
    }
    context
        .log(
            "info",
            &format!("restored backup {backup_id} of tenant {} ({plain_bytes} bytes, sha256 {plain_sha256} as recorded)", backup.tenant_slug),
        )
        .await
}

/// Backups whose retention has run out, removed (data key, files, row) with `BACKUP_PRUNED` each; the ids.
pub async fn prune_backups(platform: &Platform, actor: &str) -> Result<Vec<String>, CodedError> {
    let expired = platform
        .registry
        .expired_backups(now_millis())
        .await
        .map_err(registry_error)?;
    let store = backup_store(platform);
    let mut pruned = Vec::new();
    for backup in expired {
        platform
            .secrets
            .delete(&backup_key_name(&backup.id))
            .await
            .map_err(|error| {
                CodedError::new(
                    ErrorCode::ProvisioningUnavailable,
                    format!("secret store: {error}"),
                )
            })?;
        store
            .remove(&backup.id)
            .map_err(|error| CodedError::new(ErrorCode::Internal, error.to_string()))?;
        let audit = NewAuditEvent {
            actor: actor.to_owned(),
            event_type: "BACKUP_PRUNED",
            tenant_slug: Some(backup.tenant_slug.clone()),
            job_id: Some(backup.job_id.clone()),
            details: serde_json::json!({ "backup_id": backup.id, "expires_at": backup.expires_at }),
        };
        if platform
            .registry
            .delete_backup(&backup.id, &audit)
            .await
            .map_err(registry_error)?
        {
            pruned.push(backup.id);
        }
    }
    Ok(pruned)
}

/// A phase of a backup job.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BackupPhase {
    RequestValidated,
    KeyCreated,
    /// `<kind>_backed_up`: one resource holding data.
    BackedUp(String),
    Complete,
}

impl BackupPhase {
    fn parse(platform: &Platform, name: &str) -> Option<BackupPhase> {
        match name {
            REQUEST_VALIDATED => Some(BackupPhase::RequestValidated),
            KEY_CREATED => Some(BackupPhase::KeyCreated),
            COMPLETE => Some(BackupPhase::Complete),
            _ => name
                .strip_suffix(BACKED_UP_SUFFIX)
                .filter(|kind| holds_data(platform, kind))
                .map(|kind| BackupPhase::BackedUp(kind.to_owned())),
        }
    }
}

/// Backs up one tenant.
pub struct BackupWorkflow {
    platform: Platform,
}

impl BackupWorkflow {
    pub fn new(platform: Platform) -> BackupWorkflow {
        BackupWorkflow { platform }
    }

    async fn tenant(&self, request: &BackupRequest) -> Result<TenantRecord, PhaseError> {
        let tenant = self
            .platform
            .registry
            .get_tenant(request.slug.as_str())
            .await?
            .ok_or_else(|| {
                PhaseError::fatal(
                    ErrorCode::NotFound,
                    format!("tenant {:?} is not registered", request.slug.as_str()),
                )
            })?;
        refuse_status(&tenant)
            .map_err(|message| PhaseError::fatal(ErrorCode::Conflict, message))?;
        Ok(tenant)
    }
}

impl Workflow for BackupWorkflow {
    type Params = BackupRequest;

    async fn apply(
        &self,
        context: &mut JobContext,
        request: &BackupRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        let backup_id = context.job.id.clone();
        match BackupPhase::parse(&self.platform, phase)
            .ok_or_else(|| crate::phases::unknown_phase("backup", phase))?
        {
            // Reads only: the tenant is still there, and the store can be written.
            BackupPhase::RequestValidated => {
                self.tenant(request).await?;
                check_backup_store(&self.platform).map_err(PhaseError::Fatal)
            }
            BackupPhase::KeyCreated => {
                let tenant = self.tenant(request).await?;
                begin_backup(&self.platform, context, &tenant, &backup_id).await
            }
            BackupPhase::BackedUp(kind) => {
                back_up_resource(
                    &self.platform,
                    context,
                    request.slug.as_str(),
                    &backup_id,
                    &kind,
                )
                .await
            }
            BackupPhase::Complete => finish_backup(&self.platform, context, &backup_id).await,
        }
    }

    async fn undo(
        &self,
        context: &mut JobContext,
        _request: &BackupRequest,
        phase: &str,
    ) -> Result<(), PhaseError> {
        let backup_id = context.job.id.clone();
        match BackupPhase::parse(&self.platform, phase)
            .ok_or_else(|| crate::phases::unknown_phase("backup", phase))?
        {
            // Nothing to undo: it only reads.
            BackupPhase::RequestValidated => Ok(()),
            BackupPhase::KeyCreated => discard_backup(&self.platform, context, &backup_id).await,
            BackupPhase::BackedUp(kind) => {
                back_up_resource_undo(&self.platform, context, &backup_id, &kind).await
            }
            // Nothing of its own to undo: `key_created`'s undo removes the row and the manifest with the rest.
            BackupPhase::Complete => Ok(()),
        }
    }

    fn undo_failed_advice(&self) -> Option<&str> {
        Some(crate::UNDO_FAILED_ADVICE)
    }

    fn on_complete(&self, job: &JobRecord) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        let audit = NewAuditEvent {
            actor: job.actor.clone(),
            event_type: "BACKUP_CREATED",
            tenant_slug: Some(job.tenant_slug.clone()),
            job_id: Some(job.id.clone()),
            details: serde_json::json!({ "backup_id": job.id }),
        };
        (None, vec![audit])
    }

    fn on_failure(
        &self,
        job: &JobRecord,
        error: &CodedError,
    ) -> (Option<TenantStatus>, Vec<NewAuditEvent>) {
        // A backup changes nothing of the tenant, so its status stays.
        (
            None,
            vec![crate::failure_audit(job, "BACKUP_FAILED", true, error)],
        )
    }
}
