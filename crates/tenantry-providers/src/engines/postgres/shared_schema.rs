//! The shared tier (`isolation = "schema"`): a tenant as a schema `tenant_<slug_>` and a login role of that name in
//! the server's one shared database `tenantry_shared_<installation>`, with row-level security on the plan's shared
//! tables. Everything else about a PostgreSQL tenant (login, quotas, suspension, sessions) is the role's, as for a
//! tenant with a database of its own, so `postgres.rs` hands over here only where the database itself differs.
//!
//! The access model: the shared database is owned by the installation's NOLOGIN owner role and admits no PUBLIC;
//! each tenant role gets CONNECT and TEMPORARY on it, USAGE and CREATE on its own schema (owned by the owner role,
//! so a tenant cannot open it to another), and SELECT, INSERT, UPDATE, DELETE on the shared tables, whose rows
//! carry a `tenant` column that a forced policy (`tenantry_tenant_rows`) matches against `current_user`. No tenant
//! may create in `public`. The role's `search_path` is its schema, then `public` (for the shared tables), so its migrations, its `_sqlx_migrations` table
//! and tenantry's `tenantry_settings` table land there.

use super::{
    connect, execute_batch, execute_converging, owner_role, PostgresServer, CREATE_PHASE,
    DROP_OPERATION,
};
use crate::credentials::SecretString;
use crate::engines::{
    foreign_error, quote_identifier, quote_literal, DatabaseOrigin, Inventory, LoginAttempt,
    Ownership, Reachable, TenantDatabaseSpec, TenantResource,
};
use crate::{failpoint, Error, Result};
use sha2::{Digest, Sha256};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, Postgres};
use sqlx::{Connection, Executor};

/// The name of the row-level security policy on every shared table; `drop_database` finds the shared tables by it.
const ROW_POLICY: &str = "tenantry_tenant_rows";

/// Taken (transaction-scoped) while the shared tables are made or changed, so concurrent provisionings agree.
const SHARED_TABLES_LOCK: i64 = 0x7465_6e61_6e74_7279; // "tenantry"

/// A PostgreSQL server handle that places tenants in its shared database: the plan's shared tables.
#[derive(Debug, Clone)]
pub(crate) struct SharedPlacement {
    pub(crate) tables: Vec<String>,
}

/// What a schema tenant sees of its neighbours, as the course module's test asks it: another tenant's schema,
/// and the other tenants' rows in each shared table.
#[derive(Debug, Clone)]
pub struct SharedIsolation {
    /// The neighbour schema read, and how the server answered (`None`: no other schema tenant to read).
    pub neighbour_schema: Option<(String, LoginAttempt)>,
    /// Per shared table: rows of other tenants the tenant could read, and how many such rows there are.
    pub shared_tables: Vec<(String, i64, i64)>,
}

impl PostgresServer {
    /// This handle, placing tenants in the server's shared database with `tables` as their shared tables.
    pub fn in_shared_schema(mut self, tables: Vec<String>) -> PostgresServer {
        self.shared = Some(SharedPlacement { tables });
        self
    }

    /// Whether this handle places tenants in the shared database.
    pub fn places_in_shared_schema(&self) -> bool {
        self.shared.is_some()
    }

    /// The installation's shared database on this server.
    pub fn shared_database(&self) -> String {
        format!("tenantry_shared_{}", self.installation.id())
    }

    /// The database a tenant named `resource_name` connects to.
    pub fn database_of(&self, resource_name: &str) -> String {
        match self.shared {
            Some(_) => self.shared_database(),
            None => resource_name.to_owned(),
        }
    }

    /// An admin session inside the shared database, from a pool of its own.
    async fn shared_admin_connection(&self) -> Result<PoolConnection<Postgres>> {
        let database = self.shared_database();
        let options = self.admin.clone().database(&database);
        // A pool of its own, keyed by the admin URL and the database together.
        let key: [u8; 32] = Sha256::new()
            .chain_update(self.admin_url_key)
            .chain_update(database.as_bytes())
            .finalize()
            .into();
        self.sessions
            .admin_pool(key, &options)
            .acquire()
            .await
            .map_err(|error| Error::from_server(&format!("cannot connect to {database}"), error))
    }

    /// Whether the shared database exists (checked first: connecting to a missing one is an error).
    async fn shared_database_exists(&self) -> Result<bool> {
        let mut connection = self.admin_connection().await?;
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(self.shared_database())
            .fetch_one(&mut *connection)
            .await
            .map_err(|error| Error::from_server("reading the server catalog", error))
    }

    /// Whether the schema `resource_name` exists in the shared database, and its mark (`None`: no shared database
    /// or no such schema).
    pub(super) async fn shared_schema_of(
        &self,
        resource_name: &str,
    ) -> Result<Option<Option<String>>> {
        if !self.shared_database_exists().await? {
            return Ok(None);
        }
        self.schema_in_shared_database(resource_name).await
    }

    /// [`PostgresServer::shared_schema_of`] where the shared database is known to exist.
    async fn schema_in_shared_database(
        &self,
        resource_name: &str,
    ) -> Result<Option<Option<String>>> {
        let mut connection = self.shared_admin_connection().await?;
        let found: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1",
        )
        .bind(resource_name)
        .fetch_optional(&mut *connection)
        .await
        .map_err(|error| Error::from_server("reading the shared database's catalog", error))?;
        Ok(found.map(|(mark,)| mark))
    }

    /// [`PostgresServer::inventory`] for a schema tenant: `database` is its schema.
    pub(super) async fn shared_inventory(&self, resource_name: &str) -> Result<Inventory> {
        Ok(self.shared_inventory_and_database(resource_name).await?.0)
    }

    /// [`PostgresServer::shared_inventory`], and whether the shared database exists: one read of the server's
    /// catalog answers both, so provisioning does not ask again before making the shared database.
    async fn shared_inventory_and_database(
        &self,
        resource_name: &str,
    ) -> Result<(Inventory, bool)> {
        let mut connection = self.admin_connection().await?;
        let (role, role_mark, shared_database): (bool, Option<String>, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1),
                    (SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1),
                    EXISTS (SELECT 1 FROM pg_database WHERE datname = $2)",
        )
        .bind(resource_name)
        .bind(self.shared_database())
        .fetch_one(&mut *connection)
        .await
        .map_err(|error| Error::from_server("reading the server catalog", error))?;
        drop(connection);
        let schema = match shared_database {
            true => self.schema_in_shared_database(resource_name).await?,
            false => None,
        };
        let pieces = schema
            .iter()
            .map(|mark| self.installation.judge_mark(mark.as_deref()))
            .chain(role.then(|| self.installation.judge_mark(role_mark.as_deref())));
        let inventory = Inventory {
            database: schema.is_some(),
            role,
            ownership: Ownership::combine(pieces),
        };
        Ok((inventory, shared_database))
    }

    /// Makes the shared database if it is missing (owned by the installation's owner role, closed to PUBLIC,
    /// marked), then, inside it, `public` closed to creation and each shared table with its forced policy.
    /// `exists`: whether a read of the catalog in this phase just found it.
    async fn ensure_shared_database(&self, tables: &[String], exists: bool) -> Result<()> {
        let database = self.shared_database();
        let quoted = quote_identifier(&database)?;
        let context = format!("making the shared database {database}");
        if !exists {
            let mut connection = self.admin_connection().await?;
            self.ensure_owner_role(&mut connection).await?;
            let owner = quote_identifier(&owner_role(&self.installation))?;
            execute_converging(
                &mut connection,
                &[
                    format!("CREATE DATABASE {quoted} OWNER {owner}"),
                    format!("REVOKE ALL ON DATABASE {quoted} FROM PUBLIC"),
                    format!(
                        "COMMENT ON DATABASE {quoted} IS {}",
                        quote_literal(&self.installation.mark("shared").to_string())
                    ),
                ],
                &context,
            )
            .await?;
        }
        // Almost always everything is in place already: one read says so, and no DDL (whose locks would make
        // concurrent provisionings wait on each other) runs.
        let mut connection = self.shared_admin_connection().await?;
        let in_place: bool = sqlx::query_scalar(
            "SELECT NOT has_schema_privilege('public', 'public', 'CREATE')
                AND (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = 'public' AND c.relname = ANY($1)
                       AND c.relrowsecurity AND c.relforcerowsecurity
                       AND EXISTS (SELECT 1 FROM pg_policies p WHERE p.schemaname = 'public'
                                     AND p.tablename = c.relname AND p.policyname = $2)) = cardinality($1)",
        )
        .bind(tables)
        .bind(ROW_POLICY)
        .fetch_one(&mut *connection)
        .await
        .map_err(|error| Error::from_server(&context, error))?;
        if in_place {
            return Ok(());
        }
        let mut statements = vec![
            format!("SELECT pg_advisory_xact_lock({SHARED_TABLES_LOCK})"),
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_owned(),
        ];
        for table in tables {
            let name = quote_identifier(table)?;
            let literal = quote_literal(table);
            statements.extend([
                format!(
                    "CREATE TABLE IF NOT EXISTS public.{name} (
                         id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                         tenant      NAME NOT NULL DEFAULT current_user,
                         data        JSONB NOT NULL DEFAULT '{{}}',
                         created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
                     )"
                ),
                // A table the operator made must carry the key the policy matches.
                format!(
                    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                         WHERE table_schema = 'public' AND table_name = {literal} AND column_name = 'tenant') THEN
                         RAISE EXCEPTION 'shared table {table} has no tenant column' USING ERRCODE = '42703';
                     END IF; END $$"
                ),
                format!("ALTER TABLE public.{name} ENABLE ROW LEVEL SECURITY"),
                format!("ALTER TABLE public.{name} FORCE ROW LEVEL SECURITY"),
                format!("REVOKE ALL ON public.{name} FROM PUBLIC"),
                format!(
                    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_policies
                         WHERE schemaname = 'public' AND tablename = {literal} AND policyname = '{ROW_POLICY}') THEN
                         CREATE POLICY {ROW_POLICY} ON public.{name}
                             USING (tenant = current_user) WITH CHECK (tenant = current_user);
                     END IF; END $$"
                ),
            ]);
        }
        let mut transaction = connection
            .begin()
            .await
            .map_err(|error| Error::from_server(&context, error))?;
        for statement in &statements {
            transaction
                .execute(statement.as_str())
                .await
                .map_err(|error| Error::from_server(&context, error))?;
        }
        transaction
            .commit()
            .await
            .map_err(|error| Error::from_server(&context, error))
    }

    /// The grants that place the existing role `name` in the shared database: its schema (made if missing), its
    /// search path, CONNECT, and the shared tables; `role_statements` (the role's login and quotas) go with the
    /// server-wide half. Each half is one batch, one round trip: none of these statements meets an object that
    /// may already exist (the schema's is `IF NOT EXISTS`), and a batch runs as one transaction, so a failure
    /// leaves that half as it was and the phase's retry starts it again.
    async fn place_in_shared_database(
        &self,
        name: &str,
        tables: &[String],
        role_statements: Vec<String>,
    ) -> Result<()> {
        let quoted = quote_identifier(name)?;
        let database = quote_identifier(&self.shared_database())?;
        let owner = quote_identifier(&owner_role(&self.installation))?;
        let context = format!("placing {name} in the shared database");
        let mut server_wide = role_statements;
        server_wide.extend([
            format!("ALTER ROLE {quoted} SET search_path = {quoted}, public"),
            format!("GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {quoted}"),
        ]);
        let mut connection = self.admin_connection().await?;
        execute_batch(&mut connection, &server_wide, &context).await?;
        drop(connection);
        let mut statements = vec![
            format!("CREATE SCHEMA IF NOT EXISTS {quoted} AUTHORIZATION {owner}"),
            format!(
                "COMMENT ON SCHEMA {quoted} IS {}",
                quote_literal(&self.installation.mark("tenant").to_string())
            ),
            format!("GRANT USAGE, CREATE ON SCHEMA {quoted} TO {quoted}"),
        ];
        for table in tables {
            statements.push(format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON public.{} TO {quoted}",
                quote_identifier(table)?
            ));
        }
        let mut connection = self.shared_admin_connection().await?;
        execute_batch(&mut connection, &statements, &context).await
    }

    /// [`PostgresServer::create_database`] for a schema tenant: the shared database and its tables, the role
    /// (marked in the transaction that makes it, with its login, password and quotas), then its schema and grants.
    pub(super) async fn create_shared_schema(
        &self,
        spec: &TenantDatabaseSpec,
        password: &SecretString,
    ) -> Result<DatabaseOrigin> {
        let placement = self
            .shared
            .clone()
            .unwrap_or(SharedPlacement { tables: Vec::new() });
        let name = quote_identifier(&spec.resource_name)?;
        let context = format!("creating {}", spec.resource_name);
        failpoint(CREATE_PHASE, "started").await?;
        let (inventory, shared_database) = self
            .shared_inventory_and_database(&spec.resource_name)
            .await?;
        if matches!(inventory.ownership, Ownership::Foreign(_))
            || (inventory.ownership == Ownership::Unmarked && inventory.any())
        {
            return Err(foreign_error(
                &format!("{} on this server", spec.resource_name),
                &inventory.ownership,
            ));
        }
        self.ensure_shared_database(&placement.tables, shared_database)
            .await?;
        failpoint(CREATE_PHASE, "looked_up").await?;
        if !inventory.role {
            let mut connection = self.admin_connection().await?;
            self.create_marked_role(&mut connection, &spec.resource_name, "tenant", &context)
                .await?;
            drop(connection);
            failpoint(CREATE_PHASE, "role_created").await?;
        }
        self.place_in_shared_database(
            &spec.resource_name,
            &placement.tables,
            Self::role_statements(&name, spec, Some(password)),
        )
        .await?;
        failpoint(CREATE_PHASE, "settled").await?;
        Ok(match inventory.database {
            true => DatabaseOrigin::Existing,
            false => DatabaseOrigin::SharedSchema {
                database: self.shared_database(),
            },
        })
    }

    /// [`PostgresServer::apply_plan_limits`] for a schema tenant: quotas, search path, grants, shared tables.
    pub(super) async fn shared_plan_limits(&self, spec: &TenantDatabaseSpec) -> Result<()> {
        let placement = self
            .shared
            .clone()
            .unwrap_or(SharedPlacement { tables: Vec::new() });
        let name = quote_identifier(&spec.resource_name)?;
        let inventory = self.shared_inventory(&spec.resource_name).await?;
        if inventory.ownership != Ownership::Ours {
            return Err(foreign_error(&spec.resource_name, &inventory.ownership));
        }
        if !inventory.database || !inventory.role {
            return Err(Error::Refused(format!(
                "{}: the schema or role is missing",
                spec.resource_name
            )));
        }
        // The schema was just found, so the shared database exists.
        self.ensure_shared_database(&placement.tables, true).await?;
        self.place_in_shared_database(
            &spec.resource_name,
            &placement.tables,
            vec![
                format!(
                    "ALTER ROLE {name} CONNECTION LIMIT {}",
                    spec.connection_limit
                ),
                format!(
                    "ALTER ROLE {name} SET statement_timeout = {}",
                    spec.statement_timeout_ms
                ),
            ],
        )
        .await
    }

    /// The shared-database half of dropping a tenant, whatever this handle's placement: its rows in every shared
    /// table (found by their policy), its schema, and its privileges there. Nothing to do without a shared
    /// database. Sessions are ended first, so no lock of the tenant's holds the drop up.
    pub(super) async fn drop_shared_schema(
        &self,
        resource_name: &str,
        role_exists: bool,
    ) -> Result<()> {
        if !self.shared_database_exists().await? {
            return Ok(());
        }
        if let Some(mark) = self.shared_schema_of(resource_name).await? {
            let ownership = self.installation.judge_mark(mark.as_deref());
            if let Ownership::Foreign(_) = ownership {
                return Err(foreign_error(
                    &format!("schema {resource_name}"),
                    &ownership,
                ));
            }
        }
        let name = quote_identifier(resource_name)?;
        let context = format!("dropping schema {resource_name}");
        let mut connection = self.shared_admin_connection().await?;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_policies WHERE schemaname = 'public' AND policyname = $1 ORDER BY 1",
        )
        .bind(ROW_POLICY)
        .fetch_all(&mut *connection)
        .await
        .map_err(|error| Error::from_server(&context, error))?;
        let mut statements = Vec::new();
        for table in &tables {
            statements.push(format!(
                "DELETE FROM public.{} WHERE tenant = {}",
                quote_identifier(table)?,
                quote_literal(resource_name)
            ));
        }
        statements.push(format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
        if role_exists {
            // Its grants here (tables, schema, the database's CONNECT), so that DROP ROLE finds nothing left.
            statements.push(format!("DROP OWNED BY {name}"));
        }
        for statement in statements {
            connection
                .execute(statement.as_str())
                .await
                .map_err(|error| Error::from_server(&context, error))?;
        }
        failpoint(DROP_OPERATION, "schema_dropped").await
    }

    /// [`PostgresServer::tenant_access`]'s other connectors for a schema tenant: who besides the tenant's role and
    /// the schema's owner may use its schema.
    pub(super) async fn shared_schema_users(&self, resource_name: &str) -> Result<Vec<String>> {
        if self.shared_schema_of(resource_name).await?.is_none() {
            return Ok(Vec::new());
        }
        let mut connection = self.shared_admin_connection().await?;
        sqlx::query_scalar(
            "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END
             FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) AS a
             WHERE n.nspname = $1 AND a.privilege_type = 'USAGE' AND a.grantee <> n.nspowner
               AND (a.grantee = 0 OR pg_get_userbyid(a.grantee) <> n.nspname)
             ORDER BY 1",
        )
        .bind(resource_name)
        .fetch_all(&mut *connection)
        .await
        .map_err(|error| Error::from_server("reading schema privileges", error))
    }

    /// Tenant schemas in the shared database, for `doctor` (kind `schema`), with drift: a schema others may use.
    pub(super) async fn list_shared_schemas(&self) -> Result<Vec<TenantResource>> {
        if !self.shared_database_exists().await? {
            return Ok(Vec::new());
        }
        let mut connection = self.shared_admin_connection().await?;
        let rows: Vec<(String, Option<String>, Vec<String>)> = sqlx::query_as(
            "SELECT n.nspname::text, obj_description(n.oid, 'pg_namespace'),
                    ARRAY(SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END
                          FROM aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) AS a
                          WHERE a.privilege_type = 'USAGE' AND a.grantee <> n.nspowner
                            AND (a.grantee = 0 OR pg_get_userbyid(a.grantee) <> n.nspname)
                          ORDER BY 1)
             FROM pg_namespace n WHERE n.nspname LIKE 'tenant\\_%' ORDER BY 1",
        )
        .fetch_all(&mut *connection)
        .await
        .map_err(|error| Error::from_server("reading the shared database's catalog", error))?;
        Ok(rows
            .into_iter()
            .map(|(name, mark, others)| TenantResource {
                ownership: self.installation.judge_mark(mark.as_deref()),
                drift: match others.is_empty() {
                    true => Vec::new(),
                    false => vec![format!("may be used by {}", others.join(", "))],
                },
                name,
                kind: "schema",
            })
            .collect())
    }

    /// [`PostgresServer::tenant_databases_open_to`] for a schema tenant: the other tenant schemas of the shared
    /// database its role may use (by the server's privilege rules, all at once).
    pub(super) async fn shared_schemas_open_to(&self, resource_name: &str) -> Result<Reachable> {
        let mut connection = self.shared_admin_connection().await?;
        let rows: Vec<(String, bool, bool)> = sqlx::query_as(
            "SELECT n.nspname::text,
                    has_schema_privilege('public', n.oid, 'USAGE'),
                    has_schema_privilege($1, n.oid, 'USAGE')
             FROM pg_namespace n WHERE n.nspname LIKE 'tenant\\_%' AND n.nspname <> $1 ORDER BY 1",
        )
        .bind(resource_name)
        .fetch_all(&mut *connection)
        .await
        .map_err(|error| Error::from_server("reading schema privileges", error))?;
        let mut reachable = Reachable {
            n_others: rows.len() as i64,
            ..Reachable::default()
        };
        for (name, public, may_use) in rows {
            // A schema open to PUBLIC is open to this tenant too: in the shared database that is a breach of
            // isolation, not a neighbour's own business (every role here is a tenant).
            if public || may_use {
                reachable.granted.push(name);
            }
        }
        Ok(reachable)
    }

    /// The course module's test, as the tenant of `tenant_url`: reading another tenant's schema must be refused,
    /// and no shared table may show it another tenant's rows.
    pub async fn shared_isolation(&self, tenant_url: &SecretString) -> Result<SharedIsolation> {
        let options = super::parse_url(tenant_url, "tenant's connection URL")?;
        let me = options.get_username().to_owned();
        let mut admin = self.shared_admin_connection().await?;
        let neighbour: Option<String> = sqlx::query_scalar(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'tenant\\_%' AND nspname <> $1
             ORDER BY nspname LIMIT 1",
        )
        .bind(&me)
        .fetch_optional(&mut *admin)
        .await
        .map_err(|error| Error::from_server("reading the shared database's catalog", error))?;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_policies WHERE schemaname = 'public' AND policyname = $1 ORDER BY 1",
        )
        .bind(ROW_POLICY)
        .fetch_all(&mut *admin)
        .await
        .map_err(|error| Error::from_server("reading the shared tables", error))?;
        let mut foreign_rows = Vec::new();
        for table in &tables {
            let count: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM public.{} WHERE tenant <> $1",
                quote_identifier(table)?
            ))
            .bind(&me)
            .fetch_one(&mut *admin)
            .await
            .map_err(|error| Error::from_server("counting shared rows", error))?;
            foreign_rows.push(count);
        }
        drop(admin);
        let mut connection: PgConnection = connect(&options, "tenant database").await?;
        let probed = async {
            let neighbour_schema = match neighbour {
                None => None,
                Some(schema) => {
                    // What the course module runs as tenant B: `SELECT * FROM tenant_a_schema.documents`. Any
                    // relation serves: the refusal is the schema's, before any table is looked up.
                    let statement = format!(
                        "SELECT 1 FROM {}._sqlx_migrations LIMIT 1",
                        quote_identifier(&schema)?
                    );
                    let outcome = match connection.execute(statement.as_str()).await {
                        Ok(_) => LoginAttempt::Allowed,
                        Err(error) if super::sqlstate(&error).as_deref() == Some("42501") => {
                            LoginAttempt::Refused(crate::error::describe(&error))
                        }
                        // A schema without that table still let the tenant in far enough to look.
                        Err(error) if super::sqlstate(&error).as_deref() == Some("42P01") => {
                            LoginAttempt::Allowed
                        }
                        Err(error) => {
                            return Err(Error::from_server("reading a neighbour's schema", error))
                        }
                    };
                    Some((schema, outcome))
                }
            };
            let mut shared_tables = Vec::new();
            for (table, present) in tables.iter().zip(&foreign_rows) {
                let visible: i64 = sqlx::query_scalar(&format!(
                    "SELECT count(*) FROM public.{} WHERE tenant <> current_user",
                    quote_identifier(table)?
                ))
                .fetch_one(&mut connection)
                .await
                .map_err(|error| {
                    Error::from_server(&format!("reading shared table {table}"), error)
                })?;
                shared_tables.push((table.clone(), visible, *present));
            }
            Ok(SharedIsolation {
                neighbour_schema,
                shared_tables,
            })
        }
        .await;
        let _ = connection.close().await;
        probed
    }

    /// [`PostgresServer::write_settings`] for a schema tenant: the table is `tenantry_settings` in the tenant's own
    /// schema (it may not create a schema of its own in the shared database), made by the tenant on first write,
    /// so no other tenant can read or change it.
    pub(super) async fn write_settings_in_schema(
        &self,
        tenant_url: &SecretString,
        settings: &[(String, String)],
        owned_prefixes: &[&str],
    ) -> Result<()> {
        let options = super::parse_url(tenant_url, "tenant's connection URL")?;
        let table = format!(
            "{}.tenantry_settings",
            quote_identifier(options.get_username())?
        );
        let mut connection = self.tenant_connection(tenant_url).await?;
        let keys: Vec<&str> = settings.iter().map(|(key, _)| key.as_str()).collect();
        let values: Vec<&str> = settings.iter().map(|(_, value)| value.as_str()).collect();
        let written = async {
            connection
                .execute(
                    format!(
                        "CREATE TABLE IF NOT EXISTS {table} (
                             key         TEXT PRIMARY KEY,
                             value       TEXT NOT NULL,
                             updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
                         )"
                    )
                    .as_str(),
                )
                .await?;
            sqlx::query(&format!(
                "WITH stale AS (
                     DELETE FROM {table}
                     WHERE EXISTS (SELECT 1 FROM unnest($3::text[]) AS owned (prefix) WHERE starts_with(key, prefix))
                       AND NOT (key = ANY($1))
                 )
                 INSERT INTO {table} AS stored (key, value, updated_at)
                 SELECT key, value, now() FROM UNNEST($1::text[], $2::text[]) AS given (key, value)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()
                 WHERE stored.value IS DISTINCT FROM excluded.value"
            ))
            .bind(&keys)
            .bind(&values)
            .bind(owned_prefixes)
            .execute(&mut connection)
            .await
        }
        .await;
        match written {
            Ok(_) => {
                self.sessions.park(tenant_url, connection);
                Ok(())
            }
            Err(error) => {
                let _ = connection.close().await;
                Err(Error::from_server("writing the tenant's settings", error))
            }
        }
    }
}
