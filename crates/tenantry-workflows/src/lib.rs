//! tenantry's operations as ordered phase lists over the providers and the registry: provisioning a tenant,
//! offboarding one, and the doctor that compares registry, servers and secret store.

mod doctor;
mod offboard;
mod platform;
mod provision;

pub use doctor::{run_doctor, DoctorReport, Finding};
pub use offboard::{OffboardRequest, OffboardWorkflow, OFFBOARD_PHASES, PURGE_PHASES};
pub use platform::{Platform, Settings, TenantSchema};
pub use provision::{ProvisionWorkflow, DRY_RUN_PHASES, PROVISION_PHASES};

use tenantry_core::{Error as CodedError, ErrorCode, JobKind};
use tenantry_engine::{JobOutcome, Runner};
use tenantry_registry::NewJob;

/// Runs a job of any kind with the workflow its kind names.
pub async fn run_job(
    platform: &Platform,
    runner: &Runner,
    job_id: &str,
) -> Result<JobOutcome, CodedError> {
    let job = platform
        .registry
        .get_job(job_id)
        .await
        .map_err(registry_error)?;
    let ran = match job.kind {
        JobKind::Provision => {
            runner
                .run_job(&ProvisionWorkflow::new(platform.clone()), job_id)
                .await
        }
        JobKind::Offboard => {
            runner
                .run_job(&OffboardWorkflow::new(platform.clone()), job_id)
                .await
        }
    };
    ran.map_err(engine_error)
}

/// Creates a job, or explains which job already holds the slug.
pub async fn create_job(
    platform: &Platform,
    job: &NewJob,
) -> Result<tenantry_registry::JobRecord, CodedError> {
    match platform.registry.create_job(job).await {
        Ok(record) => Ok(record),
        Err(tenantry_registry::Error::Conflict { .. }) => {
            let holder = platform
                .registry
                .live_job_for_slug(&job.tenant_slug)
                .await
                .map_err(registry_error)?;
            Err(CodedError::new(
                ErrorCode::Conflict,
                match holder {
                    Some(holder) => format!(
                        "tenant {:?} already has an unfinished {} job {} ({})",
                        job.tenant_slug, holder.kind, holder.id, holder.status
                    ),
                    None => format!("tenant {:?} already has an unfinished job", job.tenant_slug),
                },
            ))
        }
        Err(error) => Err(registry_error(error)),
    }
}

/// A registry failure as a coded error for the caller.
pub fn registry_error(error: tenantry_registry::Error) -> CodedError {
    match error {
        tenantry_registry::Error::NotFound { what } => {
            CodedError::new(ErrorCode::NotFound, format!("{what} not found"))
        }
        tenantry_registry::Error::Conflict { constraint } => CodedError::new(
            ErrorCode::Conflict,
            format!("conflicts with existing data ({constraint})"),
        ),
        tenantry_registry::Error::Unavailable(message) => CodedError::new(
            ErrorCode::ProvisioningUnavailable,
            format!("the registry is unavailable: {message}"),
        ),
        other => CodedError::new(ErrorCode::Internal, other.to_string()),
    }
}

/// A runtime failure as a coded error for the caller.
pub fn engine_error(error: tenantry_engine::Error) -> CodedError {
    match error {
        tenantry_engine::Error::Registry(error) => registry_error(error),
        busy @ tenantry_engine::Error::Busy { .. } => {
            CodedError::new(ErrorCode::Conflict, busy.to_string())
        }
        reopen @ tenantry_engine::Error::NotReopenable { .. } => {
            CodedError::new(ErrorCode::Conflict, reopen.to_string())
        }
    }
}
