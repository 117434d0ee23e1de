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

/// Whether a driver error may pass when the same work is tried again later: the database was unreachable, busy,
/// shutting down, or lost a race it reports as such. The one list, for the registry and for the providers' tenant
/// servers alike (on PostgreSQL and SQLite), so that both retry the same errors.
pub fn is_transient_sqlx_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(database_error) => match database_error.code().as_deref() {
            // Serialization failure, deadlock, admin or crash shutdown, cannot connect now, too many connections,
            // object in use (a database still has sessions while it is dropped or renamed); SQLite busy, locked,
            // busy snapshot and busy recovery.
            Some(
                "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300" | "55006" | "5" | "6"
                | "517" | "261",
            ) => true,
            // Connection exceptions (class 08) mean the server went away mid-conversation.
            Some(code) if code.starts_with("08") => true,
            // Two sessions changed one catalog row at once (two runners of one phase granting, altering or
            // commenting on the same database or role): PostgreSQL reports an internal error, and the same
            // statement passes when tried again.
            Some("XX000") => database_error.message() == "tuple concurrently updated",
            _ => false,
        },
        _ => false,
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        let message = match &error {
            sqlx::Error::RowNotFound => return Error::NotFound { what: "row".into() },
            sqlx::Error::Database(database_error) => {
                match database_error.code().as_deref() {
                    // PostgreSQL unique / foreign key / check; SQLite extended codes for the same.
                    Some("23505" | "23503" | "23514" | "2067" | "1555" | "787" | "275") => {
                        let constraint = database_error.constraint().unwrap_or("unique");
                        return Error::Conflict {
                            constraint: constraint.to_owned(),
                        };
                    }
                    _ => database_error.message().to_owned(),
                }
            }
            other => other.to_string(),
        };
        if is_transient_sqlx_error(&error) {
            Error::Unavailable(message)
        } else {
            Error::Database(message)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    /// A database's refusal with a chosen code and message, as either driver would report it.
    #[derive(Debug, thiserror::Error)]
    #[error("{message}")]
    struct Refusal {
        code: &'static str,
        message: &'static str,
    }

    impl sqlx::error::DatabaseError for Refusal {
        fn message(&self) -> &str {
            self.message
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.code))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn refusal(code: &'static str, message: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Refusal { code, message }))
    }

    #[test]
    fn transient_codes_are_transient_on_both_backends() {
        for code in [
            "40001", "40P01", "57P01", "57P02", "57P03", "53300", "55006", "08006", "08001", "5",
            "6", "517", "261",
        ] {
            assert!(is_transient_sqlx_error(&refusal(code, "busy")), "{code}");
            assert!(
                matches!(Error::from(refusal(code, "busy")), Error::Unavailable(message) if message == "busy"),
                "{code}"
            );
        }
        assert!(is_transient_sqlx_error(&refusal(
            "XX000",
            "tuple concurrently updated"
        )));
        assert!(is_transient_sqlx_error(&sqlx::Error::PoolTimedOut));
        assert!(is_transient_sqlx_error(&sqlx::Error::PoolClosed));
    }

    #[test]
    fn other_errors_are_not_transient() {
        for (code, message) in [
            ("XX000", "cache lookup failed"),
            ("42P01", "relation does not exist"),
            ("23505", "duplicate key"),
            ("1", "SQL logic error"),
        ] {
            assert!(!is_transient_sqlx_error(&refusal(code, message)), "{code}");
        }
        assert!(!is_transient_sqlx_error(&sqlx::Error::RowNotFound));
        assert!(matches!(
            Error::from(refusal("42P01", "relation does not exist")),
            Error::Database(_)
        ));
        assert!(matches!(
            Error::from(refusal("2067", "UNIQUE constraint failed")),
            Error::Conflict { constraint } if constraint == "unique"
        ));
    }
}
