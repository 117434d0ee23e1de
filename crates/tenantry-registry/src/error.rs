//! Registry errors, classified the same on every backend.

/// What went wrong talking to the registry. Both backends map their driver errors onto these variants.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} not found")]
    NotFound { what: String },
    /// A uniqueness or foreign-key rule refused the write; `constraint` names the rule where the backend says.
    #[error("conflict with existing data ({constraint})")]
    Conflict { constraint: String },
    /// The registry could not be reached, or it was busy for longer than we wait.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    /// The caller's lease on a job was taken over by another worker; the write was refused.
    #[error("lease on job {job_id} was taken over; this worker no longer owns it")]
    Fenced { job_id: String },
    #[error("registry data is not valid: {0}")]
    Corrupt(String),
    /// An existing registry file that cannot be read as a registry (empty, truncated, not SQLite, another
    /// program's database). It is left as it is.
    #[error("{0}")]
    NotARegistry(String),
    #[error("registry error: {0}")]
    Database(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether trying again later may succeed (the database was unreachable, busy or hit a serialization failure).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::RowNotFound => Error::NotFound { what: "row".into() },
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_)
            | sqlx::Error::Tls(_) => Error::Unavailable(error.to_string()),
            sqlx::Error::Database(database_error) => {
                let code = database_error
                    .code()
                    .map(|code| code.to_string())
                    .unwrap_or_default();
                let constraint = database_error.constraint().unwrap_or("unique").to_owned();
                match code.as_str() {
                    // PostgreSQL unique / foreign key / check; SQLite extended codes for the same.
                    "23505" | "23503" | "23514" | "2067" | "1555" | "787" | "275" => {
                        Error::Conflict { constraint }
                    }
                    // Serialization failure, deadlock, admin or crash shutdown, cannot connect now, too many
                    // connections; SQLite busy and locked.
                    "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300" | "5" | "6"
                    | "517" | "261" => Error::Unavailable(database_error.message().to_owned()),
                    // Connection exceptions (class 08) mean the server went away mid-conversation.
                    code if code.starts_with("08") => {
                        Error::Unavailable(database_error.message().to_owned())
                    }
                    _ => Error::Database(database_error.message().to_owned()),
                }
            }
            _ => Error::Database(error.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        match error {
            sqlx::migrate::MigrateError::Execute(inner) => Error::from(inner),
            other => Error::Database(other.to_string()),
        }
    }
}
