//! A tenant database from the fast paths: claiming a warm-pool database, or copying the schema's template.

use super::names::{parse_name, pool_pattern, template_name, FastPathName};
use super::{DatabaseOrigin, TEMPLATE_OWNER};
use crate::credentials::SecretString;
use crate::engines::postgres::{
    already_exists, owner_role, sqlstate, PostgresServer, CREATE_PHASE,
};
use crate::engines::{quote_identifier, Ownership, SchemaVersion, TenantDatabaseSpec};
use crate::{failpoint, Error, Result};
use sqlx::Executor;

/// How many pool databases a job tries before it falls back to the template.
const CLAIM_CANDIDATES: i64 = 8;

/// What `create_database` needs to know before it starts, in one round trip.
pub(in crate::engines::postgres) struct CreationLookup {
    pub database: bool,
    pub role: bool,
    /// Of the tenant's database and role, where they exist.
    pub ownership: Ownership,
    pub template_owner: bool,
    /// Whether the installation's owner role exists.
    pub owner_role: bool,
    /// This installation's pool databases of the schema, in random order so that concurrent jobs try different
    /// ones first.
    pub candidates: Vec<String>,
}

impl PostgresServer {
    pub(in crate::engines::postgres) async fn creation_lookup(
        &self,
        resource_name: &str,
        schema: Option<&SchemaVersion>,
    ) -> Result<CreationLookup> {
        let mut connection = self.admin_connection().await?;
        let owner = owner_role(&self.installation);
        let (database, database_owner, role, role_mark, template_owner, owner_exists, candidates): (
            bool,
            Option<String>,
            bool,
            Option<String>,
            bool,
            bool,
            Vec<String>,
        ) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1),
                    (SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1),
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1),
                    (SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1),
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $2),
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $5),
                    ARRAY(SELECT datname::text FROM pg_database
                          WHERE datname LIKE $3 AND pg_get_userbyid(datdba) = $5
                          ORDER BY random() LIMIT $4)",
        )
        .bind(resource_name)
        .bind(TEMPLATE_OWNER)
        .bind(schema.map(|schema| pool_pattern(&schema.hash)))
        .bind(CLAIM_CANDIDATES)
        .bind(&owner)
        .fetch_one(&mut *connection)
        .await
        .map_err(|error| Error::from_server("reading the server catalog", error))?;
        Ok(CreationLookup {
            database,
            role,
            ownership: self.judge_tenant(
                database.then_some(database_owner.as_deref()),
                role.then_some(role_mark.as_deref()),
            ),
            template_owner,
            owner_role: owner_exists,
            candidates,
        })
    }

    /// Claims one warm-pool database for the tenant, or returns `None` when none could be had. The role gets
    /// `password`.
    pub(in crate::engines::postgres) async fn claim_pool_database(
        &self,
        spec: &TenantDatabaseSpec,
        password: &SecretString,
        lookup: &CreationLookup,
    ) -> Result<Option<DatabaseOrigin>> {
        if lookup.candidates.is_empty() {
            return Ok(None);
        }
        let name = quote_identifier(&spec.resource_name)?;
        let access = self.access_statements(&name, spec)?;
        failpoint(CREATE_PHASE, "claiming").await?;
        let mut connection = self.admin_connection().await?;
        for candidate in &lookup.candidates {
            if !matches!(parse_name(candidate), Some(FastPathName::Pool { .. })) {
                continue;
            }
            let pool_database = quote_identifier(candidate)?;
            // One simple-protocol message runs as one implicit transaction: the claim happens whole or not at all.
            let claim = [
                format!("ALTER DATABASE {pool_database} RENAME TO {name}"),
                format!("ALTER ROLE {pool_database} RENAME TO {name}"),
            ]
            .into_iter()
            .chain(Self::role_statements(&name, spec, Some(password)))
            .chain(access.iter().cloned())
            .map(|statement| format!("{statement};"))
            .collect::<Vec<_>>()
            .join("\n");
            match connection.execute(claim.as_str()).await {
                Ok(_) => {
                    self.log_in_ahead(&spec.resource_name, password);
                    return Ok(Some(DatabaseOrigin::WarmPool {
                        database: candidate.clone(),
                    }));
                }
                // Claimed by another job a moment ago (3D000), a session on it (55006), or a leftover without its
                // role (42704): try the next one.
                Err(error)
                    if matches!(
                        sqlstate(&error).as_deref(),
                        Some("3D000" | "55006" | "42704")
                    ) => {}
                // The tenant's own database or role appeared meanwhile (made, or being made, by another runner of
                // this phase): not a pool matter any more; the caller adopts what is there.
                Err(error) if already_exists(&error) => return Ok(None),
                Err(error) => {
                    return Err(Error::from_server(
                        &format!("claiming a warm-pool database for {}", spec.resource_name),
                        error,
                    ))
                }
            }
        }
        Ok(None)
    }

    /// Creates the tenant database as a copy of the schema's template (built first if missing), or empty when
    /// there is no schema or its template cannot be built.
    pub(in crate::engines::postgres) async fn create_from_template(
        &self,
        spec: &TenantDatabaseSpec,
        schema: Option<&SchemaVersion>,
    ) -> Result<DatabaseOrigin> {
        let name = quote_identifier(&spec.resource_name)?;
        let context = format!("creating {}", spec.resource_name);
        // A new database admits PUBLIC, so it is born closed to everyone (ALLOW_CONNECTIONS false) and opened only
        // once PUBLIC's CONNECT is gone: no moment in which another tenant's role could enter it.
        let owner = quote_identifier(&owner_role(&self.installation))?;
        let plain = format!(
            "CREATE DATABASE {name} OWNER {owner} CONNECTION LIMIT {} ALLOW_CONNECTIONS false",
            spec.connection_limit
        );
        let Some(schema) = schema else {
            let origin = self
                .create_plain(&spec.resource_name, &plain, &context, None)
                .await?;
            return Ok(origin);
        };
        let from_template = format!(
            "CREATE DATABASE {name} TEMPLATE {} OWNER {owner} CONNECTION LIMIT {} ALLOW_CONNECTIONS false",
            quote_identifier(&template_name(&schema.hash))?,
            spec.connection_limit
        );
        for attempt in 0..2 {
            let mut connection = self.admin_connection().await?;
            match connection.execute(from_template.as_str()).await {
                Ok(_) => {
                    drop(connection);
                    failpoint(CREATE_PHASE, "database_created").await?;
                    self.open_to_owner_only(&name, &context).await?;
                    failpoint(CREATE_PHASE, "opened").await?;
                    return Ok(DatabaseOrigin::Template);
                }
                Err(error) if already_exists(&error) => {
                    // An earlier attempt, or another runner of this phase right now, made it, and may not have
                    // opened it yet.
                    drop(connection);
                    self.adopt_database(&spec.resource_name).await?;
                    self.open_to_owner_only(&name, &context).await?;
                    return Ok(DatabaseOrigin::Existing);
                }
                // The template does not exist (yet, or any more): build it, then copy it.
                Err(error) if sqlstate(&error).as_deref() == Some("3D000") && attempt == 0 => {
                    drop(connection);
                    match self.ensure_template(schema).await {
                        Ok(_) => {}
                        // The template is only a shortcut. If it cannot be built (the migrations fail, or the admin
                        // may not act as the template owner), the database starts empty, `migrations_applied`
                        // runs the migrations as the tenant and reports any failure where it belongs, and the
                        // job log says why the template was not used.
                        Err(Error::Migration(why) | Error::Refused(why)) => {
                            return self
                                .create_plain(&spec.resource_name, &plain, &context, Some(why))
                                .await;
                        }
                        Err(other) => return Err(other),
                    }
                }
                Err(error) => return Err(Error::from_server(&context, error)),
            }
        }
        Err(Error::Transient(format!(
            "the template for schema {} vanished while {} was being created",
            schema.hash, spec.resource_name
        )))
    }

    /// Creates the empty tenant database with `statement` and opens it, or adopts and opens one that is there
    /// already (`Existing`).
    async fn create_plain(
        &self,
        resource_name: &str,
        statement: &str,
        context: &str,
        why: Option<String>,
    ) -> Result<DatabaseOrigin> {
        let name = quote_identifier(resource_name)?;
        let mut connection = self.admin_connection().await?;
        let origin = match connection.execute(statement).await {
            Ok(_) => DatabaseOrigin::Plain { why },
            Err(error) if already_exists(&error) => {
                drop(connection);
                self.adopt_database(resource_name).await?;
                DatabaseOrigin::Existing
            }
            Err(error) => return Err(Error::from_server(context, error)),
        };
        failpoint(CREATE_PHASE, "database_created").await?;
        self.open_to_owner_only(&name, context).await?;
        failpoint(CREATE_PHASE, "opened").await?;
        Ok(origin)
    }

    /// Takes PUBLIC's CONNECT and TEMPORARY away from a new database, then lets connections in: one query
    /// string, which PostgreSQL runs as one implicit transaction (both or neither). Opening an open database
    /// changes nothing, so this is also how a resumed or concurrent runner makes sure of it.
    pub(in crate::engines::postgres) async fn open_to_owner_only(
        &self,
        quoted_name: &str,
        context: &str,
    ) -> Result<()> {
        let mut connection = self.admin_connection().await?;
        connection
            .execute(
                format!(
                    "REVOKE CONNECT, TEMPORARY ON DATABASE {quoted_name} FROM PUBLIC;
                     ALTER DATABASE {quoted_name} ALLOW_CONNECTIONS true"
                )
                .as_str(),
            )
            .await
            .map_err(|error| Error::from_server(context, error))?;
        Ok(())
    }
}
