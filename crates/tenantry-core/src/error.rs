//! The stable error codes of tenantry, declared once in one table, and the coded error that carries them.

use std::fmt;
use std::str::FromStr;

/// Declares every error code once: its variant, wire string, HTTP status, meaning and remedy. Everything else
/// about a code (the enum, `ALL`, the string both ways, serde, the docs a person reads) is derived from this one
/// row, so a code cannot be half added: one left out of `ALL` once read back silently as `E_INTERNAL`.
macro_rules! error_codes {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident = $wire:literal, $status:literal,
            meaning: $meaning:literal,
            remedy: $remedy:literal;
    )+) => {
        /// Every client-visible error code. The strings are API: add codes, never rename one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $variant, )+
        }

        impl ErrorCode {
            /// Every code, in the order of the table (and of the README's table).
            pub const ALL: [ErrorCode; 0 $(+ error_codes!(@one $variant))+] = [$(ErrorCode::$variant),+];

            /// The stored, wire-visible string.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $wire,)+ }
            }

            /// Parses a stored or received code. A string this version does not know is an error the caller
            /// sees (a newer tenantry may have written it), never quietly another code.
            pub fn parse(code: &str) -> Result<ErrorCode, UnknownErrorCode> {
                match code {
                    $($wire => Ok(ErrorCode::$variant),)+
                    unknown => Err(UnknownErrorCode { code: unknown.to_owned() }),
                }
            }

            /// The HTTP status a request failing with this code answers with. It is a number here, in the
            /// table, so that a code is declared on one line; only `tenantry-server` turns it into HTTP.
            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)+ }
            }

            /// What the code means, in one line.
            pub fn meaning(self) -> &'static str {
                match self { $(ErrorCode::$variant => $meaning,)+ }
            }

            /// What an operator should do about it (the runbook's troubleshooting table).
            pub fn remedy(self) -> &'static str {
                match self { $(ErrorCode::$variant => $remedy,)+ }
            }
        }
    };
    (@one $variant:ident) => { 1 };
}

// Statuses: 422 for input a person can correct, 409 for a clash with the current state (and for outcomes of
// jobs, which a request meets only when it acts on such a job), 503 for what may pass once a dependency is back,
// 500 for failures no request can fix.
error_codes! {
    InvalidSlug = "E_INVALID_SLUG", 422,
        meaning: "the slug must match ^[a-z][a-z0-9-]{2,39}$",
        remedy: "Pick a valid slug: lowercase letters, digits and hyphens, 3 to 40 characters, starting with a letter.";
    InvalidInput = "E_INVALID_INPUT", 422,
        meaning: "a field of the request is not valid",
        remedy: "Correct the field named in the message and submit again.";
    AlreadyProvisioned = "E_ALREADY_PROVISIONED", 409,
        meaning: "the registry already has a tenant with this slug",
        remedy: "Pick a different slug, or offboard the existing tenant first.";
    PartialState = "E_PARTIAL_STATE", 409,
        meaning: "registry, servers and secret store disagree about this slug",
        remedy: "Run `tenantry offboard-tenant --slug <slug> --purge`, then retry.";
    NoCapacity = "E_NO_CAPACITY", 409,
        meaning: "every eligible server is at its capacity_hint",
        remedy: "Add a server (`tenantry servers add`) or raise a server's capacity after a budget check.";
    DbServerNotFound = "E_DB_SERVER_NOT_FOUND", 422,
        meaning: "the chosen server is missing or not active",
        remedy: "Refresh the server list (`tenantry servers list`) and pick an active server.";
    AdminConnUnresolved = "E_ADMIN_CONN_UNRESOLVED", 503,
        meaning: "the server's admin connection could not be resolved or reached",
        remedy: "Check the server's admin URL and that the server is reachable, then retry the job.";
    MigrationsFailed = "E_MIGRATIONS_FAILED", 500,
        meaning: "a tenant schema migration failed",
        remedy: "Fix the failing migration in the tenant schema directory (or the tenant data it trips on), then provision again; a stopped rollout goes on with `tenantry migrate resume ROLLOUT`.";
    // The one code without the E_ prefix: DESIGN.md fixed it so, and codes are never renamed.
    ProvisioningUnavailable = "PROVISIONING_UNAVAILABLE", 503,
        meaning: "the secret store or registry is unavailable",
        remedy: "Check the registry and secret store are reachable, then retry the job.";
    Unauthenticated = "E_UNAUTHENTICATED", 401,
        meaning: "no valid credentials were presented",
        remedy: "Sign in again or present a valid API token.";
    Forbidden = "E_FORBIDDEN", 403,
        meaning: "the caller's role does not allow this",
        remedy: "Ask a PLATFORM_ADMIN to do this.";
    NotFound = "E_NOT_FOUND", 404,
        meaning: "no such object",
        remedy: "Check the identifier.";
    Conflict = "E_CONFLICT", 409,
        meaning: "the request conflicts with the current state",
        remedy: "Reload the current state and try again.";
    RateLimited = "E_RATE_LIMITED", 429,
        meaning: "too many requests; slow down",
        remedy: "Wait a minute and try again.";
    /// A step failed in a way no other code describes (a bug, or an outside system misbehaving).
    Internal = "E_INTERNAL", 500,
        meaning: "an unexpected internal error",
        remedy: "Look at the job log and the server log; run `tenantry doctor`.";
    /// A phase was stopped on purpose by a test failpoint.
    Failpoint = "E_FAILPOINT", 500,
        meaning: "a test failpoint stopped the job",
        remedy: "Unset TENANTRY_FAILPOINTS and retry the job.";
    /// A critical post-provisioning check failed; the job rolled back.
    ValidationFailed = "E_VALIDATION_FAILED", 500,
        meaning: "a critical post-provisioning check failed",
        remedy: "Read the failed check in the job log (`tenantry validate` runs the suite alone), fix its cause, then provision again.";
    /// A PLATFORM_ADMIN rejected the request waiting for approval.
    ApprovalRejected = "E_APPROVAL_REJECTED", 409,
        meaning: "a platform admin rejected the request",
        remedy: "Read the rejection reason in the job log; submit a revised request.";
    /// Nobody approved the request before its approval window closed.
    ApprovalExpired = "E_APPROVAL_EXPIRED", 409,
        meaning: "nobody approved the request in time",
        remedy: "Submit the request again and ask another PLATFORM_ADMIN to approve it in time.";
    /// The object belongs to another tenantry installation (or carries no installation mark): left untouched.
    ForeignObject = "E_FOREIGN_OBJECT", 409,
        meaning: "the object is not this installation's: another tenantry registry made it, or none is known to",
        remedy: "Leave it to the installation that owns it (`tenantry doctor` lists foreign objects with their installation id); pick another slug or server.";
    /// The configured admin seed or admin check names what the tenant schema does not have.
    TenantSchemaMismatch = "E_TENANT_SCHEMA_MISMATCH", 500,
        meaning: "the configured admin seed or admin check does not fit the tenant schema",
        remedy: "Adapt admin_seed / admin_check (TENANTRY_ADMIN_SEED, TENANTRY_ADMIN_CHECK) to the tables and columns of your tenant migrations; the message names the statement and the database's error.";
    /// The admin seed fits the tenant schema, but the tenant database refused to run it.
    AdminSeedFailed = "E_ADMIN_SEED_FAILED", 500,
        meaning: "the tenant database refused the configured admin seed",
        remedy: "Read the database's error in the message and fix the admin seed (TENANTRY_ADMIN_SEED): it must be one upsert that fills every required column, with $1 email, $2 password hash, $3 invitation token hash.";
    /// An existing registry file cannot be read as a registry (empty, truncated, not SQLite); it was left as it is.
    RegistryUnreadable = "E_REGISTRY_UNREADABLE", 503,
        meaning: "the registry file cannot be read as a registry",
        remedy: "Restore the registry file from a backup, or move it away to start an empty registry.";
    /// The master key does not open this registry's secrets.
    MasterKeyMismatch = "E_MASTER_KEY_MISMATCH", 503,
        meaning: "the master key does not open this registry's secrets",
        remedy: "Set TENANTRY_MASTER_KEY (or master.key in the data directory) to the key this registry's secrets were written with.";
    /// A tenant database records a migration the tenant schema's files do not have, or with another checksum.
    MigrationDrift = "E_MIGRATION_DRIFT", 409,
        meaning: "a tenant database records a migration that differs from the tenant schema's files (edited, unknown or failed)",
        remedy: "Restore the migration file the tenants recorded (`tenantry migrate plan` names each tenant and version), or run `tenantry migrate apply --skip-drifted` to leave those tenants out.";
    /// An operator aborted a rollout: every tenant stays at a version it recorded.
    RolloutAborted = "E_ROLLOUT_ABORTED", 409,
        meaning: "an operator aborted the rollout; every tenant stays at a version it recorded",
        remedy: "Read `tenantry migrate status ROLLOUT` for where each tenant stands, then start a new rollout with `tenantry migrate apply`.";
    /// `audit verify` found audit events changed, deleted or added behind tenantry's back.
    AuditChainBroken = "E_AUDIT_CHAIN_BROKEN", 500,
        meaning: "audit events were changed, deleted or added outside tenantry",
        remedy: "Treat the named events as tampered with: compare them with a backup of the registry and find who had write access.";
    /// A backup's file does not match the checksum the registry recorded, or does not decrypt: nothing is restored.
    BackupCorrupt = "E_BACKUP_CORRUPT", 422,
        meaning: "a backup file does not match its recorded checksum or does not decrypt",
        remedy: "Restore from another backup (`tenantry backups list SLUG`); treat this one's file as tampered with or damaged.";
    /// tenantry cannot dump the tenant's database engine yet (MariaDB): nothing was started.
    BackupUnsupported = "E_BACKUP_UNSUPPORTED", 422,
        meaning: "tenantry cannot back up a database on this engine yet (MariaDB)",
        remedy: "Dump the tenant's database with the engine's own tool (mariadb-dump); purge it with `offboard-tenant --purge --no-backup` once you hold a copy.";
}

/// A code string this version of tenantry does not know: written by a newer version, or not a code at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code {code:?} (not in this version's table; a newer tenantry may have written it)")]
pub struct UnknownErrorCode {
    pub code: String,
}

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        ErrorCode::parse(code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

// By hand rather than derived, so that the wire strings come from the table and an unknown one is refused
// with its own message.
impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        ErrorCode::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// An error with a stable code and a message a person understands. The message never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::InvalidInput, message)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn codes_round_trip_through_their_strings() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Ok(code));
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn an_unknown_code_is_an_error_not_e_internal() {
        let unknown = ErrorCode::parse("E_FROM_THE_FUTURE").unwrap_err();
        assert_eq!(unknown.code, "E_FROM_THE_FUTURE");
        assert!(unknown.to_string().contains("E_FROM_THE_FUTURE"));
        // Case matters: the strings are API, compared exactly.
        assert!(ErrorCode::parse("e_internal").is_err());
        assert!(ErrorCode::parse("").is_err());
        let error = serde_json::from_str::<ErrorCode>("\"E_FROM_THE_FUTURE\"").unwrap_err();
        assert!(error.to_string().contains("E_FROM_THE_FUTURE"), "{error}");
    }

    #[test]
    fn every_code_is_listed_once_with_a_status_and_text() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} is listed twice");
            assert!(
                (400..600).contains(&code.http_status()),
                "{code} has status {}",
                code.http_status()
            );
            assert!(!code.meaning().is_empty() && !code.remedy().is_empty());
        }
        assert_eq!(
            ErrorCode::ProvisioningUnavailable.as_str(),
            "PROVISIONING_UNAVAILABLE"
        );
    }

    /// The README's `## Error codes` table as code → (meaning, what to do), or why it cannot be read.
    fn readme_error_table(
        readme: &str,
    ) -> std::result::Result<BTreeMap<String, (String, String)>, String> {
        let section = readme
            .split("\n## Error codes\n")
            .nth(1)
            .ok_or("README.md has no `## Error codes` section")?;
        let section = section.split("\n## ").next().unwrap_or(section);
        let mut rows = BTreeMap::new();
        // Backticks are markdown, not text: `tenantry doctor` in the README is tenantry doctor in the table.
        let plain = |cell: &str| cell.trim().replace('`', "");
        for line in section.lines().filter(|line| line.starts_with('|')).skip(2) {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
            let [code, meaning, remedy] = cells[..] else {
                return Err(format!("a row without exactly three cells: {line}"));
            };
            if rows
                .insert(plain(code), (plain(meaning), plain(remedy)))
                .is_some()
            {
                return Err(format!("a code listed twice: {line}"));
            }
        }
        Ok(rows)
    }

    fn expected_readme_rows() -> String {
        ErrorCode::ALL
            .into_iter()
            .map(|code| format!("| `{code}` | {} | {} |\n", code.meaning(), code.remedy()))
            .collect()
    }

    #[test]
    fn the_readme_lists_every_code_with_its_meaning_and_remedy() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let rows = readme_error_table(&readme).unwrap();
        let hint = format!(
            "the rows the table should have:\n{}",
            expected_readme_rows()
        );
        for code in ErrorCode::ALL {
            let Some((meaning, remedy)) = rows.get(code.as_str()) else {
                panic!("the README's error table lacks {code}; {hint}");
            };
            assert_eq!(
                meaning,
                &code.meaning().replace('`', ""),
                "meaning of {code}; {hint}"
            );
            assert_eq!(
                remedy,
                &code.remedy().replace('`', ""),
                "remedy of {code}; {hint}"
            );
        }
        for listed in rows.keys() {
            assert!(
                ErrorCode::parse(listed).is_ok(),
                "the README's error table lists {listed}, which is no code; {hint}"
            );
        }
    }
}
