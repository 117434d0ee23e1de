//! What a move of a tenant database between two PostgreSQL servers does on each of them: a publication, a login
//! role for the subscriber and (made by the subscription) a replication slot on the source; a subscription on the
//! target; the catch-up, sequence and row-count reads that decide when the cut-over may happen. Every object a
//! move makes has one name, `tmove_<installation>_<slug_>`, which no slug produces (the tenant's names all start
//! `tenant_`), so `doctor` finds a leftover and knows whose it is.

use super::{quote_identifier, quote_literal, PostgresServer};
use crate::credentials::SecretString;
use crate::{Error, Result};
use sqlx::{Connection, Executor, PgConnection};
use std::collections::BTreeMap;

/// The first letters of every object a move makes (publication, slot, subscription, login role).
pub const MOVE_OBJECT_PREFIX: &str = "tmove_";

/// One sequence of a tenant database: its qualified name (quoted) and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SequenceState {
    pub name: String,
    pub last_value: Option<i64>,
}

/// An object a move made, found on a server: which kind (`slot`, `subscription`, `role`) and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveObject {
    pub kind: &'static str,
    pub name: String,
}

impl MoveObject {
    /// The slug part of the name when this installation made it (`None`: another installation's).
    pub fn slug_of(&self, installation_id: &str) -> Option<String> {
        self.name
            .strip_prefix(MOVE_OBJECT_PREFIX)?
            .strip_prefix(installation_id)?
            .strip_prefix('_')
            .map(|slug| slug.replace('_', "-"))
    }
}

impl PostgresServer {
    /// The name of everything a move of `resource_name` makes on either server.
    pub fn move_object_name(&self, resource_name: &str) -> Result<String> {
        let slug_part = resource_name
            .strip_prefix("tenant_")
            .ok_or_else(|| Error::Refused(format!("{resource_name} is not a tenant's name")))?;
        let name = format!("{MOVE_OBJECT_PREFIX}{}_{slug_part}", self.installation.id());
        quote_identifier(&name)?;
        Ok(name)
    }

    /// A fresh admin session inside the tenant's database (publications, subscriptions, tables live there).
    async fn tenant_database_session(&self, resource_name: &str) -> Result<PgConnection> {
        self.dedicated_admin_connection(Some(resource_name)).await
    }

    /// The server's `wal_level`: a source needs `logical`.
    pub async fn wal_level(&self) -> Result<String> {
        let mut connection = self.admin_connection().await?;
        sqlx::query_scalar("SELECT current_setting('wal_level')")
            .fetch_one(&mut *connection)
            .await
            .map_err(|error| Error::from_server("reading wal_level", error))
    }

    /// The tenant's tables that logical replication could not carry an UPDATE or DELETE of (no primary key and no
    /// replica identity): publishing them would make the tenant's own writes to them fail during the move.
    pub async fn tables_without_identity(&self, resource_name: &str) -> Result<Vec<String>> {
        let mut connection = self.tenant_database_session(resource_name).await?;
        let tables = sqlx::query_scalar(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_%'
               AND c.relreplident <> 'f'
               AND NOT (c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_index i
                        WHERE i.indrelid = c.oid AND i.indisprimary))
               AND NOT (c.relreplident = 'i' AND EXISTS (SELECT 1 FROM pg_index i
                        WHERE i.indrelid = c.oid AND i.indisreplident))
             ORDER BY 1",
        )
        .fetch_all(&mut connection)
        .await
        .map_err(|error| Error::from_server("reading the tenant's tables", error));
        let _ = connection.close().await;
        tables
    }

    /// On the source: a login role that may replicate and read the tenant's tables (a member of the tenant's
    /// role, so it reads what the tenant owns), with `password`, and a publication of every table. Returns the
    /// connection string a subscription on the target uses (it holds the password: a secret). Converges.
    pub async fn publish_for_move(
        &self,
        resource_name: &str,
        password: &SecretString,
    ) -> Result<SecretString> {
        let name = self.move_object_name(resource_name)?;
        let quoted = quote_identifier(&name)?;
        let tenant = quote_identifier(resource_name)?;
        let context = format!("publishing {resource_name} for its move");
        let mut admin = self.admin_connection().await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(&name)
                .fetch_one(&mut *admin)
                .await
                .map_err(|error| Error::from_server(&context, error))?;
        if !exists {
            super::execute_converging(
                &mut admin,
                &[format!(
                    "CREATE ROLE {quoted} NOLOGIN REPLICATION; COMMENT ON ROLE {quoted} IS {}",
                    quote_literal(&self.installation.mark("move").to_string())
                )],
                &context,
            )
            .await?;
        }
        // The password is a literal in a statement: it never reaches a log (sqlx logs no statements here) nor
        // a process's arguments.
        admin
            .execute(
                format!(
                    "ALTER ROLE {quoted} LOGIN REPLICATION PASSWORD {}; GRANT {tenant} TO {quoted}",
                    quote_literal(password.expose())
                )
                .as_str(),
            )
            .await
            .map_err(|error| Error::from_server(&context, error))?;
        drop(admin);
        let mut connection = self.tenant_database_session(resource_name).await?;
        let published: std::result::Result<bool, sqlx::Error> =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)")
                .bind(&name)
                .fetch_one(&mut connection)
                .await;
        let outcome = match published {
            Ok(true) => Ok(()),
            Ok(false) => connection
                .execute(format!("CREATE PUBLICATION {quoted} FOR ALL TABLES").as_str())
                .await
                .map(|_| ())
                .or_else(|error| match super::sqlstate(&error).as_deref() {
                    // Another runner of the phase made it meanwhile.
                    Some("42710") => Ok(()),
                    _ => Err(error),
                }),
            Err(error) => Err(error),
        };
        let _ = connection.close().await;
        outcome.map_err(|error| Error::from_server(&context, error))?;
        let host = self.admin.get_host();
        Ok(SecretString::new(format!(
            "host={} port={} dbname={} user={} password={} connect_timeout=5",
            conninfo_value(host),
            self.admin.get_port(),
            conninfo_value(resource_name),
            conninfo_value(&name),
            conninfo_value(password.expose()),
        )))
    }

    /// On the source, the undo of [`PostgresServer::publish_for_move`] and of the slot the subscription made:
    /// the slot (its walsender ended first), the publication, the role. Removing what is absent succeeds, and a
    /// tenant database that is gone (never the case while the move can be undone) only skips the publication.
    pub async fn unpublish_move(&self, resource_name: &str) -> Result<()> {
        let name = self.move_object_name(resource_name)?;
        let quoted = quote_identifier(&name)?;
        let context = format!("removing the move's publication of {resource_name}");
        let mut admin = self.admin_connection().await?;
        // A slot keeps WAL until the disk fills: it goes first, whatever else fails.
        for _ in 0..20 {
            let active: Option<Option<i32>> = sqlx::query_scalar(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            )
            .bind(&name)
            .fetch_optional(&mut *admin)
            .await
            .map_err(|error| Error::from_server(&context, error))?;
            match active {
                None => break,
                Some(Some(pid)) => {
                    sqlx::query("SELECT pg_terminate_backend($1)")
                        .bind(pid)
                        .execute(&mut *admin)
                        .await
                        .map_err(|error| Error::from_server(&context, error))?;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Some(None) => {
                    let dropped = sqlx::query("SELECT pg_drop_replication_slot($1)")
                        .bind(&name)
                        .execute(&mut *admin)
                        .await;
                    match dropped {
                        Ok(_) => break,
                        // Taken again by a subscriber that reconnected (55006), or gone meanwhile (42704).
                        Err(error)
                            if matches!(
                                super::sqlstate(&error).as_deref(),
                                Some("55006") | Some("42704")
                            ) =>
                        {
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await
                        }
                        Err(error) => return Err(Error::from_server(&context, error)),
                    }
                }
            }
        }
        let database: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(resource_name)
                .fetch_one(&mut *admin)
                .await
                .map_err(|error| Error::from_server(&context, error))?;
        if database {
            let mut connection = self.tenant_database_session(resource_name).await?;
            let dropped = connection
                .execute(format!("DROP PUBLICATION IF EXISTS {quoted}").as_str())
                .await;
            let _ = connection.close().await;
            dropped.map_err(|error| Error::from_server(&context, error))?;
        }
        admin
            .execute(
                format!(
                    "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {}) THEN
                         ALTER ROLE {quoted} NOLOGIN;
                     END IF; END $$",
                    quote_literal(&name)
                )
                .as_str(),
            )
            .await
            .map_err(|error| Error::from_server(&context, error))?;
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&name)
        .execute(&mut *admin)
        .await
        .map_err(|error| Error::from_server(&context, error))?;
        admin
            .execute(format!("DROP ROLE IF EXISTS {quoted}").as_str())
            .await
            .map_err(|error| Error::from_server(&context, error))?;
        Ok(())
    }

    /// On the target: a subscription to the source's publication, which makes the slot on the source and copies
    /// every table, then streams the changes. `conninfo` is what [`PostgresServer::publish_for_move`] returned.
    /// Converges: an existing subscription is kept.
    pub async fn subscribe_for_move(
        &self,
        resource_name: &str,
        conninfo: &SecretString,
    ) -> Result<()> {
        let name = self.move_object_name(resource_name)?;
        let quoted = quote_identifier(&name)?;
        let context = format!("subscribing {resource_name} to its source");
        let mut connection = self.tenant_database_session(resource_name).await?;
        let outcome = async {
            let exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)",
            )
            .bind(&name)
            .fetch_one(&mut connection)
            .await?;
            if !exists {
                // Not in a transaction block: CREATE SUBSCRIPTION makes the slot on the source.
                connection
                    .execute(
                        format!(
                            "CREATE SUBSCRIPTION {quoted} CONNECTION {} PUBLICATION {quoted}",
                            quote_literal(conninfo.expose())
                        )
                        .as_str(),
                    )
                    .await?;
            }
            Ok::<(), sqlx::Error>(())
        }
        .await;
        let _ = connection.close().await;
        outcome.map_err(|error| Error::from_server(&context, error))
    }

    /// On the target: whether the move's subscription of `resource_name` exists (then the source's publication
    /// and login exist too, with the password the subscription holds, which must not change).
    pub async fn has_move_subscription(&self, resource_name: &str) -> Result<bool> {
        let name = self.move_object_name(resource_name)?;
        let mut admin = self.admin_connection().await?;
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)")
            .bind(&name)
            .fetch_one(&mut *admin)
            .await
            .map_err(|error| Error::from_server("reading the subscriptions", error))
    }

    /// On the target, the undo of [`PostgresServer::subscribe_for_move`] (and the end of replication at the
    /// cut-over): the subscription, detached from its slot first so that dropping it needs no source (the source's
    /// [`PostgresServer::unpublish_move`] drops the slot). Removing what is absent succeeds.
    pub async fn unsubscribe_move(&self, resource_name: &str) -> Result<()> {
        let name = self.move_object_name(resource_name)?;
        let quoted = quote_identifier(&name)?;
        let context = format!("removing the move's subscription of {resource_name}");
        let mut admin = self.admin_connection().await?;
        let database: Option<String> = sqlx::query_scalar(
            "SELECT d.datname::text FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid
             WHERE s.subname = $1",
        )
        .bind(&name)
        .fetch_optional(&mut *admin)
        .await
        .map_err(|error| Error::from_server(&context, error))?;
        drop(admin);
        let Some(database) = database else {
            return Ok(());
        };
        let mut connection = self.dedicated_admin_connection(Some(&database)).await?;
        let outcome = async {
            for statement in [
                format!("ALTER SUBSCRIPTION {quoted} DISABLE"),
                format!("ALTER SUBSCRIPTION {quoted} SET (slot_name = NONE)"),
                format!("DROP SUBSCRIPTION IF EXISTS {quoted}"),
            ] {
                connection.execute(statement.as_str()).await?;
            }
            Ok::<(), sqlx::Error>(())
        }
        .await;
        let _ = connection.close().await;
        outcome.map_err(|error| Error::from_server(&context, error))
    }

    /// On the target: how many of the subscription's tables there are and how many finished their first copy
    /// and follow the stream (`ready`).
    pub async fn subscription_progress(&self, resource_name: &str) -> Result<(i64, i64)> {
        let name = self.move_object_name(resource_name)?;
        // pg_subscription_rel is per database (pg_subscription is shared): read inside the tenant's.
        let mut connection = self.tenant_database_session(resource_name).await?;
        let progress: std::result::Result<(i64, i64, bool), sqlx::Error> = sqlx::query_as(
            "SELECT COUNT(r.srrelid), COUNT(r.srrelid) FILTER (WHERE r.srsubstate = 'r'), COUNT(s.oid) > 0
             FROM pg_subscription s LEFT JOIN pg_subscription_rel r ON r.srsubid = s.oid WHERE s.subname = $1",
        )
        .bind(&name)
        .fetch_one(&mut connection)
        .await;
        let _ = connection.close().await;
        let (n_tables, n_ready, subscribed) = progress
            .map_err(|error| Error::from_server("reading the subscription's progress", error))?;
        if !subscribed {
            return Err(Error::Refused(format!(
                "the move's subscription of {resource_name} is gone"
            )));
        }
        Ok((n_tables, n_ready))
    }

    /// On the source: the WAL position now, as text (compared on the server, never parsed here).
    pub async fn current_wal_lsn(&self) -> Result<String> {
        let mut admin = self.admin_connection().await?;
        sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
            .fetch_one(&mut *admin)
            .await
            .map_err(|error| Error::from_server("reading the WAL position", error))
    }

    /// On the source: whether the subscriber confirmed, through the move's slot, that everything up to `lsn`
    /// is applied and flushed on its side. `None` when there is no slot.
    pub async fn move_slot_reached(&self, resource_name: &str, lsn: &str) -> Result<Option<bool>> {
        let name = self.move_object_name(resource_name)?;
        let mut admin = self.admin_connection().await?;
        sqlx::query_scalar(
            "SELECT COALESCE(confirmed_flush_lsn >= $2::pg_lsn, false) FROM pg_replication_slots
             WHERE slot_name = $1",
        )
        .bind(&name)
        .bind(lsn)
        .fetch_optional(&mut *admin)
        .await
        .map_err(|error| Error::from_server("reading the move's slot", error))
    }

    /// Every sequence of the tenant's database with its last value (logical replication carries no sequence).
    pub async fn sequence_states(&self, resource_name: &str) -> Result<Vec<SequenceState>> {
        let mut connection = self.tenant_database_session(resource_name).await?;
        let rows: std::result::Result<Vec<(String, Option<i64>)>, sqlx::Error> = sqlx::query_as(
            "SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        )
        .fetch_all(&mut connection)
        .await;
        let _ = connection.close().await;
        let rows = rows.map_err(|error| Error::from_server("reading the sequences", error))?;
        Ok(rows
            .into_iter()
            .map(|(name, last_value)| SequenceState { name, last_value })
            .collect())
    }

    /// Sets each sequence of the tenant's database to where the source's stands. A sequence never used on the
    /// source (`last_value` none) is left unused here too.
    pub async fn set_sequence_states(
        &self,
        resource_name: &str,
        sequences: &[SequenceState],
    ) -> Result<()> {
        let mut connection = self.tenant_database_session(resource_name).await?;
        let outcome = async {
            for sequence in sequences {
                if let Some(last_value) = sequence.last_value {
                    sqlx::query("SELECT setval($1::regclass, $2, true)")
                        .bind(&sequence.name)
                        .bind(last_value)
                        .execute(&mut connection)
                        .await?;
                }
            }
            Ok::<(), sqlx::Error>(())
        }
        .await;
        let _ = connection.close().await;
        outcome.map_err(|error| Error::from_server("setting the sequences", error))
    }

    /// The number of rows of every table of the tenant's database, by qualified name.
    pub async fn table_row_counts(&self, resource_name: &str) -> Result<BTreeMap<String, i64>> {
        let mut connection = self.tenant_database_session(resource_name).await?;
        let outcome = async {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
                 ORDER BY 1",
            )
            .fetch_all(&mut connection)
            .await?;
            let mut counts = BTreeMap::new();
            for table in tables {
                // The name comes from the catalog, quoted by format('%I').
                let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                    .fetch_one(&mut connection)
                    .await?;
                counts.insert(table, count);
            }
            Ok::<_, sqlx::Error>(counts)
        }
        .await;
        let _ = connection.close().await;
        outcome.map_err(|error| Error::from_server("counting the tenant's rows", error))
    }

    /// Every slot, subscription and login role on this server that a move made (any installation's).
    pub async fn move_objects(&self) -> Result<Vec<MoveObject>> {
        let mut admin = self.admin_connection().await?;
        let pattern = format!("{MOVE_OBJECT_PREFIX}%");
        let mut found = Vec::new();
        for (kind, query) in [
            (
                "slot",
                "SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE $1 ORDER BY 1",
            ),
            (
                "subscription",
                "SELECT subname::text FROM pg_subscription WHERE subname LIKE $1 ORDER BY 1",
            ),
            (
                "role",
                "SELECT rolname::text FROM pg_roles WHERE rolname LIKE $1 ORDER BY 1",
            ),
        ] {
            let names: Vec<String> = sqlx::query_scalar(query)
                .bind(&pattern)
                .fetch_all(&mut *admin)
                .await
                .map_err(|error| Error::from_server("listing the moves' objects", error))?;
            found.extend(names.into_iter().map(|name| MoveObject { kind, name }));
        }
        Ok(found)
    }
}

/// A libpq connection-string value, quoted (single quotes, with `\` and `'` escaped).
fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_values_are_quoted() {
        assert_eq!(conninfo_value("a b'c\\"), "'a b\\'c\\\\'");
    }

    #[test]
    fn a_move_object_names_its_installation_and_slug() {
        let object = MoveObject {
            kind: "slot",
            name: "tmove_0123456789abcdef_acme_health".into(),
        };
        assert_eq!(
            object.slug_of("0123456789abcdef").as_deref(),
            Some("acme-health")
        );
        assert_eq!(object.slug_of("fedcba9876543210"), None);
    }
}
