//! Wake-ups without polling on PostgreSQL: a new or reopened job and every job event send a NOTIFY inside the
//! transaction that records them (so it is delivered exactly when the change is visible); a listener relays them.
//! On SQLite these are no-ops and callers poll.

use crate::{Dialect, Error, Registry, Result};
use sqlx::postgres::PgListener;
use sqlx::AnyConnection;

/// Channel of job ids that a worker could claim now.
pub const JOBS_CHANNEL: &str = "tenantry_jobs";
/// Channel of job ids that recorded an event.
pub const JOB_EVENTS_CHANNEL: &str = "tenantry_job_events";

/// Sends a notification from inside a transaction (PostgreSQL only).
pub(crate) async fn notify(
    connection: &mut AnyConnection,
    channel: &str,
    job_id: &str,
) -> Result<()> {
    if connection.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(job_id)
            .execute(connection)
            .await?;
    }
    Ok(())
}

/// What a listener hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobNotification {
    /// A job became claimable.
    Claimable { job_id: String },
    /// A job recorded an event.
    Event { job_id: String },
}

/// A LISTEN connection on the job channels. It reconnects by itself after the server restarts (notifications sent
/// while it was away are lost, which is why workers also sweep now and then).
pub struct JobListener {
    listener: PgListener,
}

impl JobListener {
    /// The next notification; `Err` only when the connection cannot be re-established for now.
    pub async fn recv(&mut self) -> Result<JobNotification> {
        loop {
            let notification = self
                .listener
                .recv()
                .await
                .map_err(|error| Error::Unavailable(error.to_string()))?;
            let job_id = notification.payload().to_owned();
            match notification.channel() {
                JOBS_CHANNEL => return Ok(JobNotification::Claimable { job_id }),
                JOB_EVENTS_CHANNEL => return Ok(JobNotification::Event { job_id }),
                _ => continue,
            }
        }
    }
}

impl Registry {
    /// A listener on the job channels, or `None` on SQLite (which has no LISTEN).
    pub async fn listen_for_jobs(&self) -> Result<Option<JobListener>> {
        let (Dialect::Postgres, Some(url)) = (self.dialect, &self.postgres_url) else {
            return Ok(None);
        };
        let mut listener = PgListener::connect(url)
            .await
            .map_err(|error| Error::Unavailable(error.to_string()))?;
        listener
            .listen_all([JOBS_CHANNEL, JOB_EVENTS_CHANNEL])
            .await
            .map_err(|error| Error::Unavailable(error.to_string()))?;
        Ok(Some(JobListener { listener }))
    }
}
