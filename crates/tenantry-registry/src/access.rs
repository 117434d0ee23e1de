//! Who may use the platform: users, API tokens (stored as hashes), console sessions, idempotency keys, and the
//! change watch that lets the server keep tokens in memory without delaying a revocation.

use crate::audit::insert_audit;
use crate::records::NewAuditEvent;
use crate::store::{get, now_millis};
use crate::{Error, Registry, Result};
use serde::Serialize;
use sqlx::any::AnyRow;
use tenantry_core::PlatformRole;

/// A platform user. The password hash never leaves the registry crate's callers in a serialized form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlatformUser {
    pub id: String,
    pub email: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub role: PlatformRole,
    #[serde(skip)]
    pub password_hash: String,
    pub created_at: i64,
    /// The one tenant a `TENANT_ADMIN` is scoped to; `None` for the platform roles.
    pub tenant_slug: Option<String>,
}

impl PlatformUser {
    fn from_row(row: &AnyRow) -> Result<PlatformUser> {
        Ok(PlatformUser {
            id: get(row, "id")?,
            email: get(row, "email")?,
            role: PlatformRole::parse(&get::<String>(row, "role")?)
                .map_err(|error| Error::Corrupt(error.message))?,
            password_hash: get(row, "password_hash")?,
            created_at: get(row, "created_at")?,
            tenant_slug: get(row, "tenant_slug")?,
        })
    }

    /// The user of a joined row, whose columns are named `user_*` ([`OWNER_COLUMNS`]).
    fn from_owner_columns(row: &AnyRow) -> Result<PlatformUser> {
        Ok(PlatformUser {
            id: get(row, "user_id")?,
            email: get(row, "user_email")?,
            role: PlatformRole::parse(&get::<String>(row, "user_role")?)
                .map_err(|error| Error::Corrupt(error.message))?,
            password_hash: get(row, "user_password_hash")?,
            created_at: get(row, "user_created_at")?,
            tenant_slug: get(row, "user_tenant_slug")?,
        })
    }
}

/// The owning user's columns in a query that joins `platform_users u`, renamed so they cannot clash.
const OWNER_COLUMNS: &str = "u.email AS user_email, u.role AS user_role,
    u.password_hash AS user_password_hash, u.created_at AS user_created_at, u.tenant_slug AS user_tenant_slug";

/// An API token as stored: its secret only as a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    pub id: String,
    pub user_id: String,
    pub name: String,
    #[serde(skip)]
    pub secret_hash: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl ApiToken {
    fn from_row(row: &AnyRow) -> Result<ApiToken> {
        Ok(ApiToken {
            id: get(row, "id")?,
            user_id: get(row, "user_id")?,
            name: get(row, "name")?,
            secret_hash: get(row, "secret_hash")?,
            created_at: get(row, "created_at")?,
            expires_at: get(row, "expires_at")?,
            revoked_at: get(row, "revoked_at")?,
        })
    }

    /// Whether the token may be used at `now` (not revoked, not expired).
    pub fn is_usable(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expires_at| expires_at > now)
    }
}

/// A console session, looked up by the hash of its cookie value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub user_id: String,
    /// Sent with every form; a request whose token differs is refused (CSRF).
    pub csrf_token: String,
    pub expires_at: i64,
}

/// A remembered `Idempotency-Key`: which request it came with and which job it made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub request_hash: String,
    pub job_id: String,
}

/// Tells, cheaply and across processes, whether the registry may have changed since the last look: what lets the
/// server remember authenticated tokens without letting a revoked one work a moment longer.
///
/// On SQLite it is `PRAGMA data_version` on a connection of its own, which never writes. SQLite documents that two
/// readings on one connection differ when any other connection, in this process or another (`tenantry users
/// revoke-token`), committed a change in between. A caller that reads the version before reading a token, and reads
/// it again before trusting what it read, therefore never trusts a token row older than the last commit. The read
/// is synchronous and local (the WAL index in shared memory): microseconds, where a query through the pool hops to
/// sqlx's worker thread and back.
///
/// PostgreSQL has no such local counter: a revocation's NOTIFY arrives a moment after the revoking command has
/// returned, and asking the server is a round trip like the token query itself. There [`AccessWatch::version`] is
/// always `None`, and callers read the registry on every request.
pub struct AccessWatch {
    connection: Option<std::sync::Mutex<rusqlite::Connection>>,
}

impl std::fmt::Debug for AccessWatch {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AccessWatch")
            .field("watching", &self.connection.is_some())
            .finish()
    }
}

impl AccessWatch {
    /// The registry's change counter now. `None` when there is none to read (PostgreSQL), or it could not be read
    /// this time: then nothing remembered may be trusted, and the caller reads the registry.
    pub fn version(&self) -> Option<i64> {
        let connection = self.connection.as_ref()?.lock().ok()?;
        let mut statement = connection.prepare_cached("PRAGMA data_version").ok()?;
        statement.query_row([], |row| row.get::<_, i64>(0)).ok()
    }
}

const USER_COLUMNS: &str = "id, email, role, password_hash, created_at, tenant_slug";
const TOKEN_COLUMNS: &str = "id, user_id, name, secret_hash, created_at, expires_at, revoked_at";

impl Registry {
    /// A change watch on this registry (see [`AccessWatch`]). When the SQLite file cannot be opened a second time,
    /// the watch reports no version and callers read the registry every time.
    pub fn access_watch(&self) -> AccessWatch {
        if self.dialect != crate::Dialect::Sqlite {
            return AccessWatch { connection: None };
        }
        let opened = sqlx::sqlite::SqliteConnectOptions::try_from(&*self.pool.connect_options())
            .map_err(|error| error.to_string())
            .and_then(|options| {
                rusqlite::Connection::open_with_flags(
                    options.get_filename(),
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|error| error.to_string())
            })
            // Never wait for a lock on a request's path: a busy reading is no reading, and the caller queries.
            .and_then(|connection| {
                connection
                    .busy_timeout(std::time::Duration::ZERO)
                    .map(|()| connection)
                    .map_err(|error| error.to_string())
            });
        match opened {
            Ok(connection) => AccessWatch {
                connection: Some(std::sync::Mutex::new(connection)),
            },
            Err(error) => {
                tracing::warn!(%error, "cannot watch the registry for changes; tokens are read on every request");
                AccessWatch { connection: None }
            }
        }
    }

    /// Adds a user; `Conflict` when the email is taken.
    pub async fn add_user(&self, user: &PlatformUser, actor: &str) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        let now = now_millis();
        sqlx::query(
            "INSERT INTO platform_users (id, email, role, password_hash, created_at, updated_at, tenant_slug)
             VALUES ($1, $2, $3, $4, $5, $5, $6)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(user.role.as_str())
        .bind(&user.password_hash)
        .bind(now)
        .bind(&user.tenant_slug)
        .execute(&mut *transaction)
        .await?;
        insert_audit(
            &mut transaction,
            &NewAuditEvent {
                actor: actor.to_owned(),
                event_type: "USER_ADDED",
                tenant_slug: None,
                job_id: None,
                details: serde_json::json!({
                    "user_id": user.id, "email": user.email, "role": user.role, "tenant": user.tenant_slug,
                }),
            },
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    pub async fn get_user(&self, id: &str) -> Result<Option<PlatformUser>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM platform_users WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(PlatformUser::from_row).transpose()
    }

    pub async fn get_user_by_email(&self, email: &str) -> Result<Option<PlatformUser>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM platform_users WHERE email = $1"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(PlatformUser::from_row).transpose()
    }

    pub async fn list_users(&self) -> Result<Vec<PlatformUser>> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM platform_users ORDER BY email"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(PlatformUser::from_row).collect()
    }

    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM platform_users")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Records a new token (its secret only as a hash), audited as `TOKEN_ISSUED`.
    pub async fn add_token(&self, token: &ApiToken, actor: &str) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, secret_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&token.id)
        .bind(&token.user_id)
        .bind(&token.name)
        .bind(&token.secret_hash)
        .bind(now_millis())
        .bind(token.expires_at)
        .execute(&mut *transaction)
        .await?;
        insert_audit(
            &mut transaction,
            &NewAuditEvent {
                actor: actor.to_owned(),
                event_type: "TOKEN_ISSUED",
                tenant_slug: None,
                job_id: None,
                details: serde_json::json!({ "token_id": token.id, "user_id": token.user_id, "expires_at": token.expires_at }),
            },
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// A token and the user it belongs to, in one query: what every API request authenticates with.
    pub async fn get_token_with_owner(&self, id: &str) -> Result<Option<(ApiToken, PlatformUser)>> {
        let row = sqlx::query(&format!(
            "SELECT t.id, t.user_id, t.name, t.secret_hash, t.created_at, t.expires_at, t.revoked_at, {OWNER_COLUMNS}
             FROM api_tokens t JOIN platform_users u ON u.id = t.user_id WHERE t.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|row| {
                Ok((
                    ApiToken::from_row(row)?,
                    PlatformUser::from_owner_columns(row)?,
                ))
            })
            .transpose()
    }

    pub async fn list_tokens(&self, user_id: &str) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY created_at"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ApiToken::from_row).collect()
    }

    /// Revokes a token, audited as `TOKEN_REVOKED`; `NotFound` when there is no such unrevoked token.
    pub async fn revoke_token(&self, id: &str, actor: &str) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        let revoked = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now_millis())
        .bind(id)
        .execute(&mut *transaction)
        .await?;
        if revoked.rows_affected() == 0 {
            return Err(Error::NotFound {
                what: format!("active token {id:?}"),
            });
        }
        insert_audit(
            &mut transaction,
            &NewAuditEvent {
                actor: actor.to_owned(),
                event_type: "TOKEN_REVOKED",
                tenant_slug: None,
                job_id: None,
                details: serde_json::json!({ "token_id": id }),
            },
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Opens a console session (audited as `USER_SIGNED_IN`).
    pub async fn create_session(
        &self,
        id_hash: &str,
        user_id: &str,
        csrf_token: &str,
        expires_at: i64,
    ) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, user_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(now_millis())
        .bind(expires_at)
        .execute(&mut *transaction)
        .await?;
        insert_audit(
            &mut transaction,
            &NewAuditEvent {
                actor: format!("user:{user_id}"),
                event_type: "USER_SIGNED_IN",
                tenant_slug: None,
                job_id: None,
                details: serde_json::json!({}),
            },
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// The unexpired session with this cookie hash.
    /// A live console session and its user, in one query: what every console request authenticates with.
    pub async fn get_session_with_user(
        &self,
        id_hash: &str,
    ) -> Result<Option<(ConsoleSession, PlatformUser)>> {
        let row = sqlx::query(&format!(
            "SELECT s.user_id, s.csrf_token, s.expires_at, {OWNER_COLUMNS}
             FROM console_sessions s JOIN platform_users u ON u.id = s.user_id
             WHERE s.id_hash = $1 AND s.expires_at > $2"
        ))
        .bind(id_hash)
        .bind(now_millis())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let session = ConsoleSession {
                user_id: get(&row, "user_id")?,
                csrf_token: get(&row, "csrf_token")?,
                expires_at: get(&row, "expires_at")?,
            };
            Ok((session, PlatformUser::from_owner_columns(&row)?))
        })
        .transpose()
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1 OR expires_at <= $2")
            .bind(id_hash)
            .bind(now_millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The job an `Idempotency-Key` of this principal already made, with the hash of its request.
    pub async fn get_idempotency(
        &self,
        principal: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>> {
        let row = sqlx::query(
            "SELECT request_hash, job_id FROM idempotency_keys WHERE principal = $1 AND key = $2",
        )
        .bind(principal)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(IdempotencyRecord {
                request_hash: get(&row, "request_hash")?,
                job_id: get(&row, "job_id")?,
            })
        })
        .transpose()
    }
}
