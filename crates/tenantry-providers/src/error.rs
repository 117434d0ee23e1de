//! Provider errors, split into what may pass on retry and what will not.

/// What went wrong creating, inspecting or removing something outside the registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached or was busy; trying again later may succeed.
    #[error("{0}")]
    Transient(String),
    /// The server's admin connection is missing, malformed or was refused.
    #[error("{0}")]
    AdminConnection(String),
    /// A tenant schema migration failed.
    #[error("{0}")]
    Migration(String),
    /// The secret store could not be read or written.
    #[error("{0}")]
    SecretStore(String),
    /// Anything else the server refused.
    #[error("{0}")]
    Refused(String),
    /// The object is marked as another installation's, or carries no mark where one is required: not touched.
    #[error("{0}")]
    Foreign(String),
    /// A statement from the operator's configuration (the admin seed, the admin check) does not fit the tenant
    /// schema: the database could not even prepare it.
    #[error("{0}")]
    SchemaMismatch(String),
    /// The admin seed was prepared but the tenant database refused to run it (a constraint, say).
    #[error("{0}")]
    SeedFailed(String),
    /// The job's lease was taken over by another worker; the write was refused.
    #[error("{0}")]
    Fenced(String),
    /// A test failpoint set to `error` fired between two statements (failpoints builds only).
    #[error("{0}")]
    Failpoint(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient(_))
    }

    /// Classifies a driver error met while working on a tenant server.
    pub(crate) fn from_server(context: &str, error: sqlx::Error) -> Error {
        let message = format!("{context}: {}", describe(&error));
        // The registry's classifier: one list of what may pass on retry, for the registry and tenant servers.
        if tenantry_registry::is_transient_sqlx_error(&error) {
            Error::Transient(message)
        } else {
            Error::Refused(message)
        }
    }
}

/// A driver error as one line, without the connection URL (which may hold a password).
pub(crate) fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(database_error) => database_error.message().to_owned(),
        sqlx::Error::Configuration(_) => "the connection URL is not valid".to_owned(),
        other => other.to_string(),
    }
}

impl From<tenantry_registry::Error> for Error {
    fn from(error: tenantry_registry::Error) -> Self {
        if matches!(error, tenantry_registry::Error::Fenced { .. }) {
            Error::Fenced(error.to_string())
        } else if error.is_transient() {
            Error::Transient(error.to_string())
        } else {
            Error::SecretStore(error.to_string())
        }
    }
}
