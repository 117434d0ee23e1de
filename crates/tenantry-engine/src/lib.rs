//! The durable job runtime. A job and its phases are in the registry before any side effect; a [`Runner`]
//! holds the job's lease (renewed by heartbeat), applies phases in order (or side by side, where the workflow's
//! graph lets them: [`Workflow::depends_on`]) with bounded exponential backoff on transient errors, and on a fatal
//! error undoes the applied phases in reverse. Every phase change and log line
//! is a timestamped job event. A job interrupted by a crash resumes where its records say it stood.

mod failpoints;
mod runner;
mod view;
mod workflow;

pub use failpoints::{check as failpoint, Boundary};
pub use runner::{JobOutcome, Progress, ProgressSink, RetryPolicy, Runner, SEQUENTIAL_PHASES_ENV};
pub use view::{format_millis, JobView, LogView, PhaseView};
pub use workflow::{JobContext, PhaseError, Workflow};

/// What can stop the runtime itself (as opposed to a phase failing, which ends the job).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Registry(#[from] tenantry_registry::Error),
    #[error("job {job_id} is held by {owner}; it was not started here")]
    Busy { job_id: String, owner: String },
    #[error("job {job_id} was handed back unfinished because this worker is shutting down")]
    HandedBack { job_id: String },
    #[error("job {job_id} is {status}; only a failed job can be {action}")]
    NotReopenable {
        job_id: String,
        status: tenantry_core::JobStatus,
        action: &'static str,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The lease owner string of this process: `host:pid:start-time`, so that a later process on the same host can
/// tell whether the owner is still running (a reused pid has another start time).
pub fn process_owner_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    let pid = std::process::id();
    format!("{host}:{pid}:{}", process_start_time(pid).unwrap_or(0))
}

fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields after the closing parenthesis are positional. Field 22 is starttime.
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(19)?.parse().ok()
}

/// Whether a lease owner recorded by [`process_owner_id`] on this host has exited.
pub fn owner_is_dead_local_process(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, ':');
    let (Some(start_time), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let this_host = process_owner_id();
    if !this_host.starts_with(&format!("{host}:")) {
        return false;
    }
    let (Ok(pid), Ok(start_time)) = (pid.parse::<u32>(), start_time.parse::<u64>()) else {
        return false;
    };
    process_start_time(pid) != Some(start_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        let owner = process_owner_id();
        assert!(!owner_is_dead_local_process(&owner));
        let host = owner.split(':').next().unwrap();
        assert!(owner_is_dead_local_process(&format!(
            "{host}:{}:1",
            u32::MAX - 1
        )));
        assert!(!owner_is_dead_local_process("elsewhere:1:1"));
    }
}
