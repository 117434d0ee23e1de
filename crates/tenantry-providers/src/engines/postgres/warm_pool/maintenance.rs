//! Keeping the fast paths up: the maintenance lock, filling the warm pool, pruning, and the inventory for
//! `pool status` and `doctor`.

use super::names::{
    parse_name, pool_build_name, pool_name, pool_pattern, template_name, FastPathName,
};
use super::{
    CatalogObject, FillReport, LockWait, PruneReport, PruneScope, WarmPoolInventory, TEMPLATE_OWNER,
};
use crate::engines::postgres::{execute_converging, owner_role, sqlstate, PostgresServer};
use crate::engines::{quote_identifier, quote_literal, Ownership, SchemaVersion};
use crate::{Error, Result};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};
use std::collections::BTreeSet;

/// The advisory lock (two-key form, on the admin database) held while building, filling or pruning.
const MAINTENANCE_LOCK: (i32, i32) = (0x7465_6e74, 6);
/// How long a job waits for another process's template build before it reports the server busy (retryable).
const MAINTENANCE_LOCK_TIMEOUT_MS: u32 = 60_000;

impl WarmPoolInventory {
    fn from_catalog(
        databases: &[String],
        pool_roles: &[String],
        current: Option<&str>,
        build_in_progress: bool,
    ) -> WarmPoolInventory {
        let mut inventory = WarmPoolInventory {
            schema_hash: current.map(str::to_owned),
            build_in_progress,
            ..WarmPoolInventory::default()
        };
        let is_current = |hash: &str| current == Some(hash);
        let mut stale = BTreeSet::new();
        for name in databases {
            match parse_name(name) {
                Some(FastPathName::Template { hash }) => {
                    inventory.n_templates += 1;
                    if is_current(&hash) {
                        inventory.template_ready = true;
                    } else if current.is_some() {
                        stale.insert(CatalogObject::database(name));
                    }
                }
                Some(FastPathName::Pool { hash, .. }) => {
                    inventory.n_pool_databases += 1;
                    if is_current(&hash) {
                        inventory.n_ready += 1;
                    } else if current.is_some() {
                        stale.insert(CatalogObject::database(name));
                    }
                }
                Some(FastPathName::Build { .. }) if !build_in_progress => {
                    stale.insert(CatalogObject::database(name));
                }
                _ => {}
            }
        }
        let database_names: BTreeSet<&str> = databases.iter().map(String::as_str).collect();
        for role in pool_roles {
            let Some(FastPathName::Pool { hash, .. }) = parse_name(role) else {
                continue;
            };
            let stale_version = current.is_some() && !is_current(&hash);
            // A role is made just before its database is built, so without a build in progress a role with no
            // database of its name is a leftover.
            let lone = !database_names.contains(role.as_str()) && !build_in_progress;
            if stale_version || lone {
                stale.insert(CatalogObject::role(role));
            }
        }
        inventory.stale = stale.into_iter().collect();
        inventory
    }
}

/// The fast-path objects on a server, split by whose they are.
#[derive(Default)]
struct FastPathCatalog {
    /// This installation's template, pool and build databases.
    databases: Vec<String>,
    /// This installation's pool roles.
    pool_roles: Vec<String>,
    /// Everyone else's.
    foreign: Vec<CatalogObject>,
}

impl PostgresServer {
    /// A dedicated admin session holding the maintenance lock, or `None` when `wait` is `Skip` and another process
    /// holds it. The lock ends with the session.
    pub(super) async fn maintenance_session(&self, wait: LockWait) -> Result<Option<PgConnection>> {
        let mut connection = self.dedicated_admin_connection(None).await?;
        let locked = match wait {
            LockWait::Wait => {
                connection
                    .execute(format!("SET lock_timeout = {MAINTENANCE_LOCK_TIMEOUT_MS}").as_str())
                    .await
                    .map_err(|error| Error::from_server("preparing the admin session", error))?;
                match sqlx::query("SELECT pg_advisory_lock($1, $2)")
                    .bind(MAINTENANCE_LOCK.0)
                    .bind(MAINTENANCE_LOCK.1)
                    .execute(&mut connection)
                    .await
                {
                    Ok(_) => true,
                    Err(error) if sqlstate(&error).as_deref() == Some("55P03") => {
                        let _ = connection.close().await;
                        return Err(Error::Transient(
                            "another process has been building templates or pool databases on this server for a minute".into(),
                        ));
                    }
                    Err(error) => {
                        let _ = connection.close().await;
                        return Err(Error::from_server("waiting for the template lock", error));
                    }
                }
            }
            LockWait::Skip => sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                .bind(MAINTENANCE_LOCK.0)
                .bind(MAINTENANCE_LOCK.1)
                .fetch_one(&mut connection)
                .await
                .map_err(|error| Error::from_server("taking the template lock", error))?,
        };
        if locked {
            Ok(Some(connection))
        } else {
            let _ = connection.close().await;
            Ok(None)
        }
    }

    /// Fills the pool of the current schema up to `target` databases, making at most `max_creations` in this call
    /// (builds the template first when needed).
    pub async fn fill_warm_pool(
        &self,
        schema: &SchemaVersion,
        target: usize,
        max_creations: usize,
        wait: LockWait,
    ) -> Result<FillReport> {
        let Some(mut session) = self.maintenance_session(wait).await? else {
            return Ok(FillReport {
                busy: true,
                ..FillReport::default()
            });
        };
        let filled = self
            .fill_locked(&mut session, schema, target, max_creations)
            .await;
        let _ = session.close().await;
        filled
    }

    async fn fill_locked(
        &self,
        session: &mut PgConnection,
        schema: &SchemaVersion,
        target: usize,
        max_creations: usize,
    ) -> Result<FillReport> {
        let mut report = FillReport::default();
        let used_numbers = Self::pool_numbers(session, &schema.hash).await?;
        report.n_ready = used_numbers.len();
        if report.n_ready >= target || max_creations == 0 {
            return Ok(report);
        }
        report.template_built = self.ensure_template_locked(session, schema).await?;
        let mut numbers = (1..).filter(|number| !used_numbers.contains(number));
        while report.n_ready < target && report.n_created < max_creations {
            let Some(number) = numbers.next() else {
                break;
            };
            self.create_pool_database(session, schema, number).await?;
            report.n_created += 1;
            report.n_ready += 1;
        }
        Ok(report)
    }

    /// The numbers of the pool databases of `hash` that are ready. A `tenantry_build_<hash>_<n>` does not take its
    /// number: under the maintenance lock a build database is what a crashed fill left, and making that number
    /// again drops it first, so the next fill replaces the leftover.
    async fn pool_numbers(session: &mut PgConnection, hash: &str) -> Result<BTreeSet<u64>> {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE $1")
                .bind(pool_pattern(hash))
                .fetch_all(&mut *session)
                .await
                .map_err(|error| Error::from_server("reading the server catalog", error))?;
        Ok(names
            .iter()
            .filter_map(|name| match parse_name(name) {
                Some(FastPathName::Pool { hash: of, number }) if of == hash => Some(number),
                _ => None,
            })
            .collect())
    }

    /// Copies the template into `tenantry_build_<hash>_<n>`, hands its objects to the pool role of the same
    /// number (NOLOGIN, marked as this installation's, in the same transaction that makes it), and renames it into
    /// the pool.
    async fn create_pool_database(
        &self,
        session: &mut PgConnection,
        schema: &SchemaVersion,
        number: u64,
    ) -> Result<()> {
        let pool = pool_name(&schema.hash, number);
        let pool_quoted = quote_identifier(&pool)?;
        let build_name = pool_build_name(&schema.hash, number);
        let build = quote_identifier(&build_name)?;
        let database_owner = quote_identifier(&owner_role(&self.installation))?;
        let context = format!("making warm-pool database {pool}");
        self.create_marked_role(session, &pool, "warm_pool", &context)
            .await?;
        execute_converging(
            session,
            &[
                format!("DROP DATABASE IF EXISTS {build} WITH (FORCE)"),
                // Born closed, opened only together with the revoke: PUBLIC is never admitted.
                format!(
                    "CREATE DATABASE {build} TEMPLATE {} OWNER {database_owner} ALLOW_CONNECTIONS false",
                    quote_identifier(&template_name(&schema.hash))?
                ),
                format!("REVOKE CONNECT, TEMPORARY ON DATABASE {build} FROM PUBLIC; ALTER DATABASE {build} ALLOW_CONNECTIONS true"),
            ],
            &context,
        )
        .await?;
        self.hand_over_template_objects(&build_name, &pool_quoted)
            .await?;
        let mut label = self.installation.mark("warm_pool");
        label["schema"] = serde_json::json!(schema.hash);
        let finish = format!(
            "ALTER DATABASE {build} RENAME TO {pool_quoted};\nCOMMENT ON DATABASE {pool_quoted} IS {};",
            quote_literal(&label.to_string())
        );
        session
            .execute(finish.as_str())
            .await
            .map_err(|error| Error::from_server(&context, error))?;
        Ok(())
    }

    /// Gives the tenant role everything in its database that came from the template.
    async fn hand_over_template_objects(
        &self,
        resource_name: &str,
        quoted_name: &str,
    ) -> Result<()> {
        let mut connection = self.dedicated_admin_connection(Some(resource_name)).await?;
        let handed_over = connection
            .execute(
                format!(
                    "REASSIGN OWNED BY {} TO {quoted_name}",
                    quote_identifier(TEMPLATE_OWNER)?
                )
                .as_str(),
            )
            .await
            .map_err(|error| {
                Error::from_server(
                    &format!("handing the template's objects to {resource_name}"),
                    error,
                )
            });
        let _ = connection.close().await;
        handed_over.map(|_| ())
    }

    /// The server's templates and pool databases, judged against the current schema version.
    pub async fn warm_pool_inventory(
        &self,
        schema: Option<&SchemaVersion>,
    ) -> Result<WarmPoolInventory> {
        let mut connection = self.admin_connection().await?;
        self.inventory_of(&mut connection, schema, None).await
    }

    /// The fast-path databases and pool roles on the server: this installation's (databases its owner role owns,
    /// roles with its mark), and everyone else's.
    async fn fast_path_catalog(&self, connection: &mut PgConnection) -> Result<FastPathCatalog> {
        let catalog = |error| Error::from_server("reading the server catalog", error);
        let databases: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT datname::text, pg_get_userbyid(datdba)::text FROM pg_database
             WHERE datname LIKE 'tenantry\\_%' ORDER BY 1",
        )
        .fetch_all(&mut *connection)
        .await
        .map_err(catalog)?;
        let pool_roles: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT rolname::text, shobj_description(oid, 'pg_authid') FROM pg_roles
             WHERE rolname LIKE 'tenantry\\_pool\\_%' ORDER BY 1",
        )
        .fetch_all(&mut *connection)
        .await
        .map_err(catalog)?;
        let ours = owner_role(&self.installation);
        let mut found = FastPathCatalog::default();
        for (name, owner) in databases {
            if parse_name(&name).is_none() {
                continue;
            }
            if owner.as_deref() == Some(ours.as_str()) {
                found.databases.push(name);
            } else {
                found.foreign.push(CatalogObject::database(&name));
            }
        }
        for (name, mark) in pool_roles {
            if parse_name(&name).is_none() {
                continue;
            }
            match self.installation.judge_mark(mark.as_deref()) {
                Ownership::Ours => found.pool_roles.push(name),
                _ => found.foreign.push(CatalogObject::role(&name)),
            }
        }
        Ok(found)
    }

    /// `build_in_progress`: `None` to look at the lock, `Some` when the caller knows (it holds the lock itself).
    async fn inventory_of(
        &self,
        connection: &mut PgConnection,
        schema: Option<&SchemaVersion>,
        build_in_progress: Option<bool>,
    ) -> Result<WarmPoolInventory> {
        let catalog = |error| Error::from_server("reading the server catalog", error);
        let found = self.fast_path_catalog(connection).await?;
        let build_in_progress = match build_in_progress {
            Some(known) => known,
            None => sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                    AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 2
                    AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
            )
            .bind(i64::from(MAINTENANCE_LOCK.0))
            .bind(i64::from(MAINTENANCE_LOCK.1))
            .fetch_one(&mut *connection)
            .await
            .map_err(catalog)?,
        };
        let mut inventory = WarmPoolInventory::from_catalog(
            &found.databases,
            &found.pool_roles,
            schema.map(|schema| schema.hash.as_str()),
            build_in_progress,
        );
        inventory.foreign = found.foreign;
        Ok(inventory)
    }

    /// Drops what `scope` names, waiting for any build in progress to end first.
    pub async fn prune_warm_pool(
        &self,
        schema: Option<&SchemaVersion>,
        scope: PruneScope,
    ) -> Result<PruneReport> {
        let Some(mut session) = self.maintenance_session(LockWait::Wait).await? else {
            return Err(Error::Transient(
                "the template lock is held elsewhere".into(),
            ));
        };
        let pruned = self.prune_locked(&mut session, schema, scope).await;
        let _ = session.close().await;
        pruned
    }

    /// Only this installation's databases and roles are dropped; others' are never looked at twice.
    async fn prune_locked(
        &self,
        session: &mut PgConnection,
        schema: Option<&SchemaVersion>,
        scope: PruneScope,
    ) -> Result<PruneReport> {
        let inventory = self.inventory_of(session, schema, Some(false)).await?;
        let found = self.fast_path_catalog(session).await?;
        let databases = found.databases;
        let mut doomed: BTreeSet<String> = inventory
            .stale
            .iter()
            .filter(|object| object.kind == "database")
            .map(|object| object.name.clone())
            .collect();
        for name in &databases {
            let extra = matches!(
                (parse_name(name), scope),
                (Some(FastPathName::Pool { .. }), PruneScope::Pool)
                    | (Some(_), PruneScope::Everything)
            );
            if extra {
                doomed.insert(name.clone());
            }
        }
        let mut report = PruneReport::default();
        // Databases first: a pool role owns its database and cannot be dropped before it.
        for name in doomed.iter().filter(|name| databases.contains(name)) {
            let statement = format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_identifier(name)?
            );
            match session.execute(statement.as_str()).await {
                Ok(_) => report.dropped.push(format!("database {name}")),
                Err(error) => report.kept.push(format!(
                    "database {name}: {}",
                    crate::error::describe(&error)
                )),
            }
        }
        // A pool role whose database is gone (dropped above, or never made).
        let remaining = self.fast_path_catalog(session).await?.databases;
        let mut roles: Vec<String> = found
            .pool_roles
            .into_iter()
            .filter(|role| matches!(parse_name(role), Some(FastPathName::Pool { .. })))
            .filter(|role| !remaining.contains(role))
            .collect();
        if scope == PruneScope::Everything {
            // Shared by every installation on the server: it goes only once it owns nothing anywhere.
            roles.push(TEMPLATE_OWNER.to_owned());
        }
        for role in roles {
            let statement = format!("DROP ROLE IF EXISTS {}", quote_identifier(&role)?);
            match session.execute(statement.as_str()).await {
                Ok(_) => report.dropped.push(format!("role {role}")),
                // Another installation's templates still use it.
                Err(error)
                    if role == TEMPLATE_OWNER && sqlstate(&error).as_deref() == Some("2BP01") => {}
                Err(error) => report
                    .kept
                    .push(format!("role {role}: {}", crate::error::describe(&error))),
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CURRENT: &str = "0123456789abcdef";
    const OLD: &str = "fedcba9876543210";

    #[test]
    fn stale_means_another_schema_or_an_abandoned_build() {
        let databases = vec![
            template_name(CURRENT),
            template_name(OLD),
            pool_name(CURRENT, 1),
            pool_name(OLD, 1),
            pool_build_name(CURRENT, 2),
            "tenantry_something_else".to_owned(),
        ];
        let roles = vec![
            pool_name(CURRENT, 1),
            pool_name(CURRENT, 2),
            pool_name(OLD, 1),
        ];
        let idle = WarmPoolInventory::from_catalog(&databases, &roles, Some(CURRENT), false);
        assert!(idle.template_ready);
        assert_eq!(
            (idle.n_ready, idle.n_templates, idle.n_pool_databases),
            (1, 2, 2)
        );
        let database = |name: String| CatalogObject::database(&name);
        let role = |name: String| CatalogObject::role(&name);
        assert_eq!(
            idle.stale,
            vec![
                database(pool_build_name(CURRENT, 2)),
                database(pool_name(OLD, 1)),
                database(template_name(OLD)),
                role(pool_name(CURRENT, 2)),
                role(pool_name(OLD, 1)),
            ]
        );
        let building = WarmPoolInventory::from_catalog(&databases, &roles, Some(CURRENT), true);
        assert_eq!(
            building.stale,
            vec![
                database(pool_name(OLD, 1)),
                database(template_name(OLD)),
                role(pool_name(OLD, 1)),
            ]
        );
        let unknown = WarmPoolInventory::from_catalog(&databases, &roles, None, false);
        assert_eq!(
            unknown.stale,
            vec![
                database(pool_build_name(CURRENT, 2)),
                role(pool_name(CURRENT, 2)),
            ]
        );
    }
}
