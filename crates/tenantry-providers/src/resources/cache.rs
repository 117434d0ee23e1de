//! The `cache` kind: one Redis ACL user per tenant, confined to its own keys and channels (`tenant:<slug>:*`),
//! and marked as this installation's by an admin-only owner key, since Redis users carry no comments.

use super::{
    InventoryItem, Observed, ResourceProvider, ResourceServer, Verification, WantedResource,
};
use crate::credentials::{self, SecretString};
use crate::engines::Ownership;
use crate::{Error, Result};
use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, RedisError, Value};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tenantry_core::{EngineKind, Slug};

/// How long a connection attempt may take before the server counts as unreachable.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one command may take; a Redis command that takes longer is a server in trouble.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Where the installation id of each tenant user is kept. Tenants' keys are confined to `tenant:<slug>:*`, so
/// no tenant can read or forge it.
const OWNER_KEY_PREFIX: &str = "tenantry:owner:";
const TENANT_USER_PREFIX: &str = "tenant_";
/// What every tenant user may run before the plan's denied commands: everything but administration and the
/// commands Redis itself calls dangerous (KEYS, FLUSHALL, DEBUG, …), and the few others that reach past a key
/// prefix: SCAN, RANDOMKEY and PUBSUB CHANNELS list every tenant's key and channel names (Redis does not filter
/// them by pattern), and SCRIPT FLUSH and FUNCTION change the script cache and libraries every tenant shares.
const BASE_COMMAND_RULES: [&str; 8] = [
    "+@all",
    "-@admin",
    "-@dangerous",
    "-scan",
    "-randomkey",
    "-pubsub",
    "-script|flush",
    "-function",
];
/// A user that exists only inside one MULTI/EXEC, to learn how the server writes a set of command rules.
const RULES_PROBE_USER: &str = "tenantry-rules-probe";
/// Keys per SCAN step and per UNLINK when a tenant's keys are deleted.
const SCAN_BATCH: usize = 1000;

/// The `cache` kind's provider. It keeps one multiplexed admin connection per server, so a reconcile of a
/// thousand tenants costs a pipeline per tenant, not a connection.
#[derive(Default)]
pub struct RedisCache {
    admin_connections: Mutex<HashMap<String, AdminConnection>>,
    /// How each server writes a set of command rules in `ACL GETUSER` (it folds rules another one covers:
    /// `-@admin` disappears behind `-@dangerous`), by server name and the rules as tenantry states them.
    written_command_rules: Mutex<HashMap<(String, String), String>>,
}

#[derive(Clone)]
struct AdminConnection {
    /// The SHA-256 of the admin URL it was opened with: a changed URL gets a new connection.
    admin_url_digest: String,
    connection: MultiplexedConnection,
}

impl RedisCache {
    pub fn new() -> RedisCache {
        RedisCache::default()
    }

    async fn admin_connection(&self, server: &ResourceServer) -> Result<MultiplexedConnection> {
        let admin_url_digest = credentials::sha256_hex(server.admin_url.expose());
        if let Some(cached) = lock(&self.admin_connections).get(&server.name) {
            if cached.admin_url_digest == admin_url_digest {
                return Ok(cached.connection.clone());
            }
        }
        let connection = connect(&server.admin_url)
            .await
            .map_err(|error| unreachable_admin(server, &error, false))?;
        lock(&self.admin_connections).insert(
            server.name.clone(),
            AdminConnection {
                admin_url_digest,
                connection: connection.clone(),
            },
        );
        Ok(connection)
    }

    fn forget_admin_connection(&self, server: &ResourceServer) {
        lock(&self.admin_connections).remove(&server.name);
        lock(&self.written_command_rules).retain(|(server_name, _), _| *server_name != server.name);
    }

    /// Runs `operation` on the server's admin connection. A cached connection the server has closed (a restart,
    /// an idle timeout) is replaced and the operation run once more: every operation is idempotent.
    async fn with_admin<T, F, Fut>(&self, server: &ResourceServer, operation: F) -> Result<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut retried = false;
        loop {
            let connection = self.admin_connection(server).await?;
            match operation(connection).await {
                Ok(value) => return Ok(value),
                Err(Failure::Redis { error, .. }) if !retried && connection_lost(&error) => {
                    self.forget_admin_connection(server);
                    retried = true;
                }
                Err(failure) => {
                    if matches!(&failure, Failure::Redis { error, .. } if connection_lost(error)) {
                        self.forget_admin_connection(server);
                    }
                    return Err(failure.into_admin_error(server));
                }
            }
        }
    }

    /// How the server writes `command_rules` in `ACL GETUSER`, learnt once per server from a user that exists
    /// only inside one transaction. Comparing with tenantry's own spelling would see drift where there is none.
    async fn written_command_rules(
        &self,
        server: &ResourceServer,
        connection: &mut MultiplexedConnection,
        command_rules: &[String],
    ) -> Result<String, Failure> {
        let cache_key = (server.name.clone(), command_rules.join(" "));
        if let Some(written) = lock(&self.written_command_rules).get(&cache_key) {
            return Ok(written.clone());
        }
        let (probe,): (Value,) = redis::pipe()
            .atomic()
            .cmd("ACL")
            .arg("SETUSER")
            .arg(RULES_PROBE_USER)
            .arg("reset")
            .arg("off")
            .arg(command_rules)
            .ignore()
            .cmd("ACL")
            .arg("GETUSER")
            .arg(RULES_PROBE_USER)
            .cmd("ACL")
            .arg("DELUSER")
            .arg(RULES_PROBE_USER)
            .ignore()
            .query_async(connection)
            .await
            .map_err(failure("checking the plan's command rules"))?;
        let written = AclUser::parse(probe)?
            .map(|probe_user| probe_user.commands)
            .ok_or_else(|| {
                Error::Refused("Redis did not show the command rules it was given".into())
            })?;
        lock(&self.written_command_rules).insert(cache_key, written.clone());
        Ok(written)
    }

    async fn observe_on(
        &self,
        mut connection: MultiplexedConnection,
        server: &ResourceServer,
        wanted: &WantedResource,
        credentials: Option<&SecretString>,
    ) -> Result<Observed, Failure> {
        let (user, owner) = read_user(&mut connection, &wanted.name).await?;
        let Some(user) = user else {
            return Ok(Observed::Absent);
        };
        let command_rules = command_rules(wanted)?;
        let written_commands = self
            .written_command_rules(server, &mut connection, &command_rules)
            .await?;
        Ok(Observed::Present {
            ownership: server.installation.judge_id(owner.as_deref()),
            differences: user.differences(wanted, &written_commands, credentials),
        })
    }

    async fn ensure_on(
        &self,
        mut connection: MultiplexedConnection,
        server: &ResourceServer,
        wanted: &WantedResource,
        credentials: &SecretString,
    ) -> Result<(), Failure> {
        let password = credentials::password_in_url(credentials).ok_or_else(|| {
            Error::Refused(format!(
                "the credentials for {} hold no password",
                wanted.name
            ))
        })?;
        // Checked (and the server's spelling learnt) before anything is written, so a bad plan changes nothing.
        let command_rules = command_rules(wanted)?;
        let written_commands = self
            .written_command_rules(server, &mut connection, &command_rules)
            .await?;
        let (user, owner) = read_user(&mut connection, &wanted.name).await?;
        match (&user, server.installation.judge_id(owner.as_deref())) {
            (_, Ownership::Foreign(installation)) => {
                return Err(foreign(server, &wanted.name, &installation).into())
            }
            (Some(_), Ownership::Unmarked) => return Err(unmarked(server, &wanted.name).into()),
            (None, Ownership::Unmarked) => {
                claim_name(&mut connection, server, &wanted.name).await?
            }
            (_, Ownership::Ours) => {}
        }
        if let Some(user) = &user {
            // A matching user is left alone: restating it would gain nothing and costs a write per tenant on
            // every reconcile.
            if user
                .differences(wanted, &written_commands, Some(credentials))
                .is_empty()
            {
                return Ok(());
            }
        }
        let set_user: redis::RedisResult<()> = redis::pipe()
            .atomic()
            .cmd("ACL")
            .arg("SETUSER")
            .arg(&wanted.name)
            .arg("reset")
            .arg(if wanted.enabled { "on" } else { "off" })
            .arg(format!(">{}", password.expose()))
            .arg(key_pattern(&wanted.slug))
            .arg(channel_pattern(&wanted.slug))
            .arg(&command_rules)
            .ignore()
            .cmd("SET")
            .arg(owner_key(&wanted.name))
            .arg(server.installation.id())
            .ignore()
            .query_async(&mut connection)
            .await;
        set_user.map_err(|error| Failure::Redis {
            doing: format!("setting up the Redis user {}", wanted.name),
            // Redis quotes a rule it refuses in its error, and one rule holds the password.
            secrets: vec![password.expose().to_owned()],
            error,
        })
    }

    async fn remove_on(
        &self,
        mut connection: MultiplexedConnection,
        server: &ResourceServer,
        name: &str,
        slug: &Slug,
    ) -> Result<(), Failure> {
        let (user, owner) = read_user(&mut connection, name).await?;
        match (&user, server.installation.judge_id(owner.as_deref())) {
            // Not this installation's to remove, and nothing of ours is there.
            (None, Ownership::Foreign(_) | Ownership::Unmarked) => return Ok(()),
            (Some(_), Ownership::Foreign(installation)) => {
                return Err(foreign(server, name, &installation).into())
            }
            (Some(_), Ownership::Unmarked) => return Err(unmarked(server, name).into()),
            (_, Ownership::Ours) => {}
        }
        // The user first, so nobody writes while its keys go; the owner key last, so a removal that stops
        // half-way is finished by the next one.
        if user.is_some() {
            redis::cmd("ACL")
                .arg("DELUSER")
                .arg(name)
                .query_async::<()>(&mut connection)
                .await
                .map_err(failure(format!("deleting the Redis user {name}")))?;
        }
        // Redis 7's DELUSER ends the user's sessions itself; the explicit kill states the promise (no session
        // outlives its user) rather than leaning on that.
        kill_clients(&mut connection, name).await?;
        let pattern = key_pattern(slug).trim_start_matches('~').to_owned();
        let mut cursor: u64 = 0;
        loop {
            let (next_cursor, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH)
                .query_async(&mut connection)
                .await
                .map_err(failure(format!("listing the keys of {name}")))?;
            if !keys.is_empty() {
                redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<()>(&mut connection)
                    .await
                    .map_err(failure(format!("deleting the keys of {name}")))?;
            }
            if next_cursor == 0 {
                break;
            }
            cursor = next_cursor;
        }
        redis::cmd("DEL")
            .arg(owner_key(name))
            .query_async::<()>(&mut connection)
            .await
            .map_err(failure(format!("deleting the owner key of {name}")))
    }

    async fn disable_on(
        &self,
        mut connection: MultiplexedConnection,
        server: &ResourceServer,
        name: &str,
    ) -> Result<(), Failure> {
        if !require_ours(&mut connection, server, name).await? {
            // Nobody can log in as a user that does not exist; `SETUSER off` would create one.
            return Ok(());
        }
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(name)
            .arg("off")
            .query_async::<()>(&mut connection)
            .await
            .map_err(failure(format!("disabling the Redis user {name}")))?;
        // `off` refuses new logins only: the sessions already open are ended here.
        kill_clients(&mut connection, name).await
    }

    async fn enable_on(
        &self,
        mut connection: MultiplexedConnection,
        server: &ResourceServer,
        name: &str,
    ) -> Result<(), Failure> {
        if !require_ours(&mut connection, server, name).await? {
            return Err(Error::Refused(format!(
                "there is no Redis user {name} on {} to enable; ensuring the resource creates it",
                server.name
            ))
            .into());
        }
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(name)
            .arg("on")
            .query_async::<()>(&mut connection)
            .await
            .map_err(failure(format!("enabling the Redis user {name}")))
    }

    /// Adds a second password to the user: Redis ACL users accept several (`>password` adds one), so the
    /// credentials in the secret and the new ones both log in until the retirement.
    async fn rotate_add_on(
        &self,
        mut connection: MultiplexedConnection,
        server: &ResourceServer,
        wanted: &WantedResource,
        new_credentials: &SecretString,
    ) -> Result<(), Failure> {
        let password = credentials::password_in_url(new_credentials)
            .ok_or_else(|| Error::Refused("the new cache credentials hold no password".into()))?;
        if !require_ours(&mut connection, server, &wanted.name).await? {
            return Err(Error::Refused(format!(
                "there is no Redis user {} on {} to rotate; `tenantry reconcile --kind cache` makes it",
                wanted.name, server.name
            ))
            .into());
        }
        let added: redis::RedisResult<()> = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&wanted.name)
            .arg(format!(">{}", password.expose()))
            .query_async(&mut connection)
            .await;
        added.map_err(|error| Failure::Redis {
            doing: format!("adding a password to the Redis user {}", wanted.name),
            secrets: vec![password.expose().to_owned()],
            error,
        })
    }

    /// Leaves `keep`'s password as the user's only one, in one `ACL SETUSER` (`resetpass` then `>keep`), so
    /// there is no moment at which no password works.
    async fn rotate_retire_on(
        &self,
        mut connection: MultiplexedConnection,
        server: &ResourceServer,
        wanted: &WantedResource,
        keep: &SecretString,
    ) -> Result<(), Failure> {
        let password = credentials::password_in_url(keep)
            .ok_or_else(|| Error::Refused("the cache credentials hold no password".into()))?;
        if !require_ours(&mut connection, server, &wanted.name).await? {
            return Err(Error::Refused(format!(
                "there is no Redis user {} on {} to retire credentials of; `tenantry reconcile --kind cache` \
                 makes it",
                wanted.name, server.name
            ))
            .into());
        }
        let retired: redis::RedisResult<()> = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&wanted.name)
            .arg("resetpass")
            .arg(format!(">{}", password.expose()))
            .query_async(&mut connection)
            .await;
        retired.map_err(|error| Failure::Redis {
            doing: format!(
                "retiring the old passwords of the Redis user {}",
                wanted.name
            ),
            secrets: vec![password.expose().to_owned()],
            error,
        })
    }

    async fn inventory_on(
        &self,
        mut connection: MultiplexedConnection,
        server: &ResourceServer,
    ) -> Result<Vec<InventoryItem>, Failure> {
        let users: Vec<String> = redis::cmd("ACL")
            .arg("USERS")
            .query_async(&mut connection)
            .await
            .map_err(failure("listing the Redis users"))?;
        let tenant_users: Vec<String> = users
            .into_iter()
            .filter(|user| user.starts_with(TENANT_USER_PREFIX))
            .collect();
        if tenant_users.is_empty() {
            return Ok(Vec::new());
        }
        let owner_keys: Vec<String> = tenant_users.iter().map(|user| owner_key(user)).collect();
        let owners: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&owner_keys)
            .query_async(&mut connection)
            .await
            .map_err(failure("reading the owner keys"))?;
        Ok(tenant_users
            .into_iter()
            .zip(owners)
            .map(|(name, owner)| InventoryItem {
                ownership: server.installation.judge_id(owner.as_deref()),
                name,
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl ResourceProvider for RedisCache {
    fn kind(&self) -> &'static str {
        "cache"
    }

    fn engines(&self) -> &'static [EngineKind] {
        &[EngineKind::Redis]
    }

    async fn check_server(&self, server: &ResourceServer) -> Result<Vec<String>> {
        // A connection of its own, not the cache: a server being added must be reached now, and any failure to
        // is the admin connection's fault as far as the person adding it is concerned.
        let mut connection = connect(&server.admin_url)
            .await
            .map_err(|error| unreachable_admin(server, &error, true))?;
        let admin_error = |doing: &str, error: RedisError| {
            Failure::Redis {
                doing: doing.to_owned(),
                secrets: Vec::new(),
                error,
            }
            .into_admin_error(server)
        };
        let who: String = redis::cmd("ACL")
            .arg("WHOAMI")
            .query_async(&mut connection)
            .await
            .map_err(|error| admin_error("asking who the admin connection is", error))?;
        let acl_list: Vec<String> = redis::cmd("ACL")
            .arg("LIST")
            .query_async(&mut connection)
            .await
            .map_err(|error| match admin_error("listing the Redis users", error) {
                Error::AdminConnection(message) => Error::AdminConnection(format!(
                    "{message} (the admin connection logs in as {who:?}, which must be allowed ACL commands)"
                )),
                other => other,
            })?;
        let server_info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut connection)
            .await
            .map_err(|error| admin_error("reading the server's version", error))?;
        if let Some(version) = redis_version(&server_info) {
            let major = version
                .split('.')
                .next()
                .and_then(|major| major.parse::<u32>().ok());
            if major.is_some_and(|major| major < 7) {
                return Err(Error::Refused(format!(
                    "Redis server {} runs Redis {version}; the cache kind needs Redis 7 or newer (ACL GETUSER's \
                     format and selectors)",
                    server.name
                )));
            }
        }
        Ok(default_user_warning(&acl_list).into_iter().collect())
    }

    fn new_credentials(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
    ) -> Result<SecretString> {
        let admin_url =
            url::Url::parse(server.admin_url.expose()).map_err(|_| invalid_admin_url(server))?;
        let tenant_facing = match &server.public_url {
            Some(public_url) => url::Url::parse(public_url).map_err(|_| {
                Error::Refused(format!(
                    "the public URL of Redis server {} is not a valid URL",
                    server.name
                ))
            })?,
            None => admin_url.clone(),
        };
        let host = tenant_facing.host_str().ok_or_else(|| {
            Error::Refused(format!(
                "the URL tenants use for Redis server {} names no host",
                server.name
            ))
        })?;
        let port = tenant_facing.port().unwrap_or(6379);
        // The admin URL's database number, so the tenant's keys are where removal looks for them.
        let database = match admin_url.path() {
            "" | "/" => String::new(),
            path => path.to_owned(),
        };
        // URL-safe, so it sits in the URL unescaped.
        let password = credentials::generate_database_password();
        Ok(SecretString::new(format!(
            "redis://{}:{}@{host}:{port}{database}",
            wanted.name,
            password.expose()
        )))
    }

    async fn observe(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        credentials: Option<&SecretString>,
    ) -> Result<Observed> {
        self.with_admin(server, |connection| {
            self.observe_on(connection, server, wanted, credentials)
        })
        .await
    }

    async fn ensure(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        credentials: &SecretString,
    ) -> Result<()> {
        self.with_admin(server, |connection| {
            self.ensure_on(connection, server, wanted, credentials)
        })
        .await
    }

    async fn remove(&self, server: &ResourceServer, name: &str) -> Result<()> {
        let slug = slug_of(name)?;
        self.with_admin(server, |connection| {
            self.remove_on(connection, server, name, &slug)
        })
        .await
    }

    async fn disable(&self, server: &ResourceServer, name: &str) -> Result<()> {
        slug_of(name)?;
        self.with_admin(server, |connection| {
            self.disable_on(connection, server, name)
        })
        .await
    }

    async fn enable(&self, server: &ResourceServer, name: &str) -> Result<()> {
        slug_of(name)?;
        self.with_admin(server, |connection| {
            self.enable_on(connection, server, name)
        })
        .await
    }

    fn rotates(&self, _engine: EngineKind) -> bool {
        true
    }

    async fn rotate_add(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        current: &SecretString,
    ) -> Result<SecretString> {
        let new_credentials = self.new_credentials(server, wanted)?;
        self.with_admin(server, |connection| {
            self.rotate_add_on(connection, server, wanted, &new_credentials)
        })
        .await?;
        // Both must log in now: the new ones before anyone is given them, the old ones because clients still
        // hold them until they re-read the secret.
        for (which, credentials) in [("new", &new_credentials), ("current", current)] {
            let mut tenant = connect(credentials)
                .await
                .map_err(|error| login_error(which, wanted, credentials, &error))?;
            redis::cmd("PING")
                .query_async::<String>(&mut tenant)
                .await
                .map_err(|error| login_error(which, wanted, credentials, &error))?;
        }
        Ok(new_credentials)
    }

    async fn rotate_retire(
        &self,
        server: &ResourceServer,
        wanted: &WantedResource,
        keep: &SecretString,
    ) -> Result<()> {
        self.with_admin(server, |connection| {
            self.rotate_retire_on(connection, server, wanted, keep)
        })
        .await
    }

    async fn verify(
        &self,
        _server: &ResourceServer,
        wanted: &WantedResource,
        credentials: &SecretString,
        neighbour: &WantedResource,
    ) -> Result<Vec<Verification>> {
        let secrets: Vec<String> = credentials::password_in_url(credentials)
            .map(|password| password.expose().to_owned())
            .into_iter()
            .collect();
        let tenant_error = |doing: &str, error: RedisError| {
            let message = scrub(
                format!("{doing} as {}: {}", wanted.name, describe(&error)),
                &secrets,
            );
            if is_transient(&error) {
                Error::Transient(message)
            } else {
                Error::Refused(message)
            }
        };
        let mut connection = match connect(credentials).await {
            Ok(connection) => connection,
            Err(error) if is_login_refusal(&error) => {
                return Ok(failed_login(&format!(
                    "Redis refused the login as {} ({})",
                    wanted.name,
                    scrub(describe(&error), &secrets)
                )))
            }
            Err(error) => return Err(tenant_error("connecting to Redis", error)),
        };
        // A login that failed but left the connection acting as `default` (an old server, a client that falls
        // back to a password-only AUTH) must not pass as the tenant's.
        let who: String = match redis::cmd("ACL")
            .arg("WHOAMI")
            .query_async(&mut connection)
            .await
        {
            Ok(who) => who,
            Err(error) if is_transient(&error) => {
                return Err(tenant_error("asking who the connection is", error))
            }
            Err(error) => {
                return Ok(failed_login(&format!(
                    "the connection could not say who it is ({})",
                    scrub(describe(&error), &secrets)
                )))
            }
        };
        if who != wanted.name {
            return Ok(failed_login(&format!(
                "the credentials act as Redis user {who:?}, not {}",
                wanted.name
            )));
        }
        let mut checks = vec![Verification {
            name: "cache_login".into(),
            passed: true,
            detail: format!("logged in as {who}"),
        }];

        let probe_key = format!("tenant:{}:tenantry-verify", wanted.slug.as_str());
        let probe_value = credentials::random_token(12);
        let round_trip: redis::RedisResult<(Option<String>,)> = redis::pipe()
            .cmd("SET")
            .arg(&probe_key)
            .arg(probe_value.expose())
            .arg("EX")
            .arg(60)
            .ignore()
            .cmd("GET")
            .arg(&probe_key)
            .cmd("UNLINK")
            .arg(&probe_key)
            .ignore()
            .query_async(&mut connection)
            .await;
        checks.push(match round_trip {
            Ok((Some(read),)) if read == probe_value.expose() => Verification {
                name: "cache_prefix_usable".into(),
                passed: true,
                detail: format!("wrote and read back {probe_key}"),
            },
            Ok(_) => Verification {
                name: "cache_prefix_usable".into(),
                passed: false,
                detail: format!("{probe_key} did not read back what was written"),
            },
            Err(error) if is_transient(&error) => {
                return Err(tenant_error("writing a key in its prefix", error))
            }
            Err(error) => Verification {
                name: "cache_prefix_usable".into(),
                passed: false,
                detail: format!("writing {probe_key} failed: {}", describe(&error)),
            },
        });

        let outside_key = "tenantry-verify-outside";
        let neighbour_key = format!("tenant:{}:tenantry-verify", neighbour.slug.as_str());
        for (check_name, key) in [
            ("cache_outside_refused", outside_key),
            ("cache_neighbour_refused", neighbour_key.as_str()),
        ] {
            let read: redis::RedisResult<Option<Vec<u8>>> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut connection)
                .await;
            checks.push(match read {
                Err(error) if error.code() == Some("NOPERM") => Verification {
                    name: check_name.into(),
                    passed: true,
                    detail: format!("reading {key} is refused"),
                },
                Err(error) if is_transient(&error) => {
                    return Err(tenant_error(&format!("reading {key}"), error))
                }
                Err(error) => Verification {
                    name: check_name.into(),
                    passed: false,
                    detail: format!(
                        "reading {key} failed, but not for want of permission: {}",
                        describe(&error)
                    ),
                },
                Ok(_) => Verification {
                    name: check_name.into(),
                    passed: false,
                    detail: format!("the tenant can read {key}"),
                },
            });
        }
        Ok(checks)
    }

    async fn inventory(&self, server: &ResourceServer) -> Result<Vec<InventoryItem>> {
        self.with_admin(server, |connection| self.inventory_on(connection, server))
            .await
    }
}

/// A Redis user as `ACL GETUSER` shows it (Redis 7: keys, channels and commands as one string each).
#[derive(Debug, Default)]
struct AclUser {
    flags: Vec<String>,
    /// SHA-256 hex of each password.
    passwords: Vec<String>,
    commands: String,
    keys: String,
    channels: String,
    /// Each selector's rules, as one string.
    selectors: Vec<String>,
}

impl AclUser {
    /// `None`: no such user.
    fn parse(reply: Value) -> Result<Option<AclUser>, Failure> {
        let fields: Vec<(Value, Value)> = match reply {
            Value::Nil => return Ok(None),
            Value::Map(pairs) => pairs,
            Value::Array(items) => pairs_of(items),
            _ => {
                return Err(
                    Error::Refused("Redis answered ACL GETUSER in an unknown form".into()).into(),
                )
            }
        };
        let mut user = AclUser::default();
        for (field, value) in fields {
            match words(&field).join(" ").as_str() {
                "flags" => user.flags = words(&value),
                "passwords" => user.passwords = words(&value),
                "commands" => user.commands = words(&value).join(" "),
                "keys" => user.keys = words(&value).join(" "),
                "channels" => user.channels = words(&value).join(" "),
                "selectors" => {
                    if let Value::Array(selectors) = value {
                        user.selectors = selectors
                            .into_iter()
                            .map(|selector| match selector {
                                Value::Array(items) => pairs_of(items)
                                    .iter()
                                    .flat_map(|(_, rules)| words(rules))
                                    .filter(|rule| !rule.is_empty())
                                    .collect::<Vec<_>>()
                                    .join(" "),
                                other => words(&other).join(" "),
                            })
                            .collect();
                    }
                }
                _ => {}
            }
        }
        Ok(Some(user))
    }

    /// How this user differs from `wanted`, one plain sentence each.
    fn differences(
        &self,
        wanted: &WantedResource,
        written_commands: &str,
        credentials: Option<&SecretString>,
    ) -> Vec<String> {
        let mut differences = Vec::new();
        let on = self.flags.iter().any(|flag| flag == "on");
        if wanted.enabled && !on {
            differences.push("user is off".to_owned());
        }
        if !wanted.enabled && on {
            differences.push("user is on".to_owned());
        }
        if self.flags.iter().any(|flag| flag == "nopass") {
            differences.push("user accepts any password (nopass)".to_owned());
        }
        let wanted_keys = key_pattern(&wanted.slug);
        if self.keys != wanted_keys {
            differences.push(format!(
                "keys are {} instead of {wanted_keys}",
                shown(&self.keys)
            ));
        }
        let wanted_channels = channel_pattern(&wanted.slug);
        if self.channels != wanted_channels {
            differences.push(format!(
                "channels are {} instead of {wanted_channels}",
                shown(&self.channels)
            ));
        }
        if self.commands != written_commands {
            differences.push(format!(
                "commands are {} instead of {written_commands}",
                shown(&self.commands)
            ));
        }
        for selector in &self.selectors {
            differences.push(format!("user has a selector granting more: ({selector})"));
        }
        if let Some(credentials) = credentials {
            let parsed = url::Url::parse(credentials.expose()).ok();
            let username = parsed.as_ref().map(|url| url.username()).unwrap_or("");
            if username != wanted.name {
                differences.push(format!(
                    "the secret logs in as {username:?}, not {}",
                    wanted.name
                ));
            }
            match credentials::password_in_url(credentials) {
                None => differences.push("the secret holds no password".to_owned()),
                Some(password) => {
                    let secret_digest = credentials::sha256_hex(password.expose());
                    if !self.passwords.contains(&secret_digest) {
                        differences.push("password does not match the secret".to_owned());
                    } else if self.passwords.len() > 1 {
                        differences.push(format!(
                            "user accepts {} passwords, not only the secret's",
                            self.passwords.len()
                        ));
                    }
                }
            }
        }
        differences
    }
}

/// Why an operation on the admin connection failed, before it is classified.
enum Failure {
    Redis {
        doing: String,
        /// Values to cut out of the server's words (Redis quotes a refused ACL rule, which may be a password).
        secrets: Vec<String>,
        error: RedisError,
    },
    Provider(Error),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Provider(error)
    }
}

impl Failure {
    fn into_admin_error(self, server: &ResourceServer) -> Error {
        let (doing, mut secrets, error) = match self {
            Failure::Provider(error) => return error,
            Failure::Redis {
                doing,
                secrets,
                error,
            } => (doing, secrets, error),
        };
        secrets.extend(
            credentials::password_in_url(&server.admin_url)
                .map(|password| password.expose().to_owned()),
        );
        let message = scrub(
            format!(
                "{doing} on Redis server {}: {}",
                server.name,
                describe(&error)
            ),
            &secrets,
        );
        if is_transient(&error) {
            Error::Transient(message)
        } else if is_login_refusal(&error) || error.code() == Some("NOPERM") {
            Error::AdminConnection(message)
        } else {
            Error::Refused(message)
        }
    }
}

/// Wraps a redis error met while `doing` something.
fn failure(doing: impl Into<String>) -> impl FnOnce(RedisError) -> Failure {
    let doing = doing.into();
    move |error| Failure::Redis {
        doing,
        secrets: Vec::new(),
        error,
    }
}

/// Opens a connection with `url` (the admin's or a tenant's), with timeouts.
async fn connect(url: &SecretString) -> redis::RedisResult<MultiplexedConnection> {
    let client = redis::Client::open(url.expose())?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(CONNECTION_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// A login with rotated credentials that failed, without the password in the message.
fn login_error(
    which: &str,
    wanted: &WantedResource,
    credentials: &SecretString,
    error: &RedisError,
) -> Error {
    let secrets: Vec<String> = credentials::password_in_url(credentials)
        .map(|password| password.expose().to_owned())
        .into_iter()
        .collect();
    let message = scrub(
        format!(
            "logging in to Redis as {} with the {which} credentials: {}",
            wanted.name,
            describe(error)
        ),
        &secrets,
    );
    if is_transient(error) {
        Error::Transient(message)
    } else {
        Error::Refused(message)
    }
}

/// The user `name` and the installation id in its owner key, in one round trip.
async fn read_user(
    connection: &mut MultiplexedConnection,
    name: &str,
) -> Result<(Option<AclUser>, Option<String>), Failure> {
    let (user, owner): (Value, Option<String>) = redis::pipe()
        .cmd("ACL")
        .arg("GETUSER")
        .arg(name)
        .cmd("GET")
        .arg(owner_key(name))
        .query_async(connection)
        .await
        .map_err(failure(format!("reading the Redis user {name}")))?;
    Ok((AclUser::parse(user)?, owner))
}

/// Whether the user `name` exists; refuses one that is not this installation's.
async fn require_ours(
    connection: &mut MultiplexedConnection,
    server: &ResourceServer,
    name: &str,
) -> Result<bool, Failure> {
    let (user, owner) = read_user(connection, name).await?;
    match (user, server.installation.judge_id(owner.as_deref())) {
        (None, _) => Ok(false),
        (Some(_), Ownership::Ours) => Ok(true),
        (Some(_), Ownership::Foreign(installation)) => {
            Err(foreign(server, name, &installation).into())
        }
        (Some(_), Ownership::Unmarked) => Err(unmarked(server, name).into()),
    }
}

/// Writes this installation's owner key for a user about to be made, unless another installation got there
/// first: two installations creating one name at once must not both take it.
async fn claim_name(
    connection: &mut MultiplexedConnection,
    server: &ResourceServer,
    name: &str,
) -> Result<(), Failure> {
    let (claimed, owner): (Option<String>, Option<String>) = redis::pipe()
        .cmd("SET")
        .arg(owner_key(name))
        .arg(server.installation.id())
        .arg("NX")
        .cmd("GET")
        .arg(owner_key(name))
        .query_async(connection)
        .await
        .map_err(failure(format!("claiming the name {name}")))?;
    match server.installation.judge_id(owner.as_deref()) {
        Ownership::Ours => Ok(()),
        Ownership::Foreign(installation) => Err(foreign(server, name, &installation).into()),
        Ownership::Unmarked => Err(Error::Refused(format!(
            "the owner key of {name} on {} vanished while it was claimed ({})",
            server.name,
            if claimed.is_some() {
                "after SET"
            } else {
                "before SET"
            }
        ))
        .into()),
    }
}

/// Ends the sessions of user `name`; a user that no longer exists has none.
async fn kill_clients(connection: &mut MultiplexedConnection, name: &str) -> Result<(), Failure> {
    let killed: redis::RedisResult<i64> = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg(name)
        .query_async(connection)
        .await;
    match killed {
        Ok(_) => Ok(()),
        Err(error)
            if error
                .detail()
                .is_some_and(|detail| detail.contains("No such user")) =>
        {
            Ok(())
        }
        Err(error) => Err(failure(format!("ending the sessions of {name}"))(error)),
    }
}

/// The plan's command rules for this tenant: the base rules, then `-<command>` per denied command.
fn command_rules(wanted: &WantedResource) -> Result<Vec<String>> {
    let mut rules: Vec<String> = BASE_COMMAND_RULES
        .iter()
        .map(|rule| (*rule).to_owned())
        .collect();
    let denied = match wanted.quotas.get("denied_commands") {
        None | Some(serde_json::Value::Null) => return Ok(rules),
        Some(serde_json::Value::Array(denied)) => denied,
        Some(_) => {
            return Err(Error::Refused(
                "the plan's cache quota denied_commands must be a list of command names".into(),
            ))
        }
    };
    for command in denied {
        let command = command
            .as_str()
            .filter(|command| {
                !command.is_empty()
                    && command
                        .chars()
                        .all(|c| c.is_ascii_alphabetic() || matches!(c, '|' | '_' | '-'))
            })
            .ok_or_else(|| {
                Error::Refused(format!(
                    "the plan's cache quota denied_commands holds {command}, which is not a command name \
                     (^[A-Za-z|_-]+$)"
                ))
            })?;
        rules.push(format!("-{}", command.to_ascii_lowercase()));
    }
    Ok(rules)
}

fn key_pattern(slug: &Slug) -> String {
    format!("~tenant:{}:*", slug.as_str())
}

fn channel_pattern(slug: &Slug) -> String {
    format!("&tenant:{}:*", slug.as_str())
}

fn owner_key(name: &str) -> String {
    format!("{OWNER_KEY_PREFIX}{name}")
}

/// The slug behind a user name (`tenant_acme_eu` → `acme-eu`: slugs hold no underscores, so the mapping is
/// one to one).
fn slug_of(name: &str) -> Result<Slug> {
    name.strip_prefix(TENANT_USER_PREFIX)
        .and_then(|rest| Slug::parse(&rest.replace('_', "-")).ok())
        .filter(|slug| slug.resource_name() == name)
        .ok_or_else(|| Error::Refused(format!("{name:?} is not a tenant's Redis user name")))
}

fn foreign(server: &ResourceServer, name: &str, installation: &str) -> Error {
    Error::Foreign(format!(
        "the Redis user {name} on {} belongs to installation {installation}; it was not touched",
        server.name
    ))
}

fn unmarked(server: &ResourceServer, name: &str) -> Error {
    Error::Foreign(format!(
        "a Redis user {name} exists on {} without tenantry's owner key, so it is someone else's user of that \
         name; it was not touched",
        server.name
    ))
}

/// Refused, not an admin connection failure: the URL is bad input, whatever the server would say.
fn invalid_admin_url(server: &ResourceServer) -> Error {
    Error::Refused(format!(
        "the admin URL of Redis server {} is not a valid Redis URL",
        server.name
    ))
}

/// The admin connection could not be opened. `adding`: the server is being checked before it is recorded, so
/// even an unreachable one is the admin connection's problem.
fn unreachable_admin(server: &ResourceServer, error: &RedisError, adding: bool) -> Error {
    let Ok(admin_url) = url::Url::parse(server.admin_url.expose()) else {
        return invalid_admin_url(server);
    };
    let address = format!(
        "{}:{}",
        admin_url.host_str().unwrap_or("?"),
        admin_url.port().unwrap_or(6379)
    );
    let secrets: Vec<String> = credentials::password_in_url(&server.admin_url)
        .map(|password| password.expose().to_owned())
        .into_iter()
        .collect();
    let message = scrub(
        format!(
            "cannot open the admin connection to Redis server {} at {address}: {}",
            server.name,
            describe(error)
        ),
        &secrets,
    );
    if is_transient(error) && !adding {
        Error::Transient(message)
    } else {
        Error::AdminConnection(message)
    }
}

fn failed_login(detail: &str) -> Vec<Verification> {
    let mut checks = vec![Verification {
        name: "cache_login".into(),
        passed: false,
        detail: detail.to_owned(),
    }];
    for name in [
        "cache_prefix_usable",
        "cache_outside_refused",
        "cache_neighbour_refused",
    ] {
        checks.push(Verification {
            name: name.into(),
            passed: false,
            detail: "not checked: the login failed".into(),
        });
    }
    checks
}

/// The warning for a `default` user that is on without a password, from `ACL LIST`'s lines.
fn default_user_warning(acl_list: &[String]) -> Option<String> {
    let default_is_open = acl_list.iter().any(|line| {
        let rules: Vec<&str> = line.split_whitespace().collect();
        rules.get(1) == Some(&"default") && rules.contains(&"on") && rules.contains(&"nopass")
    });
    default_is_open.then(|| {
        "the server's default user is enabled without a password: a client whose login fails may still act as \
         default; run `ACL SETUSER default off` or give it a password"
            .to_owned()
    })
}

fn redis_version(server_info: &str) -> Option<&str> {
    server_info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(str::trim)
}

/// The server closed or lost the connection (or never answered): a new connection may succeed.
fn connection_lost(error: &RedisError) -> bool {
    error.is_io_error() || error.kind() == ErrorKind::ParseError
}

fn is_transient(error: &RedisError) -> bool {
    error.is_io_error()
        || matches!(
            error.kind(),
            ErrorKind::BusyLoadingError
                | ErrorKind::TryAgain
                | ErrorKind::MasterDown
                | ErrorKind::ClusterDown
        )
}

fn is_login_refusal(error: &RedisError) -> bool {
    error.kind() == ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("WRONGPASS" | "NOAUTH"))
}

/// A redis error as one line, without the connection URL: the library's own descriptions of a URL it cannot
/// use may quote it.
fn describe(error: &RedisError) -> String {
    match error.kind() {
        ErrorKind::InvalidClientConfig => "the URL is not a usable Redis URL".to_owned(),
        ErrorKind::IoError => error.to_string(),
        _ => match (error.code(), error.detail()) {
            (Some(code), Some(detail)) => format!("{code} {detail}"),
            _ => error.category().to_owned(),
        },
    }
}

/// `message` with every secret in it replaced by `***`.
fn scrub(mut message: String, secrets: &[String]) -> String {
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        message = message.replace(secret.as_str(), "***");
    }
    message
}

fn shown(rules: &str) -> &str {
    if rules.is_empty() {
        "(none)"
    } else {
        rules
    }
}

/// The words of a reply: a string is one, an array is each of its items' words.
fn words(value: &Value) -> Vec<String> {
    match value {
        Value::BulkString(bytes) => vec![String::from_utf8_lossy(bytes).into_owned()],
        Value::SimpleString(text) => vec![text.clone()],
        Value::VerbatimString { text, .. } => vec![text.clone()],
        Value::Okay => vec!["OK".to_owned()],
        Value::Int(number) => vec![number.to_string()],
        Value::Array(items) | Value::Set(items) => items.iter().flat_map(words).collect(),
        _ => Vec::new(),
    }
}

/// `[k1, v1, k2, v2, …]` as pairs (RESP2's way of sending a map).
fn pairs_of(items: Vec<Value>) -> Vec<(Value, Value)> {
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(field), Some(value)) = (items.next(), items.next()) {
        pairs.push((field, value));
    }
    pairs
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves a map that is still whole: carry on with it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(quotas: serde_json::Value) -> WantedResource {
        WantedResource::new(&Slug::parse("acme-eu").unwrap(), quotas)
    }

    #[test]
    fn denied_commands_become_rules_and_anything_else_is_refused() {
        assert_eq!(
            command_rules(&wanted(serde_json::json!({}))).unwrap(),
            BASE_COMMAND_RULES
        );
        assert_eq!(
            command_rules(&wanted(
                serde_json::json!({"denied_commands": ["KEYS", "client|kill"]})
            ))
            .unwrap(),
            [&BASE_COMMAND_RULES[..], &["-keys", "-client|kill"]].concat()
        );
        for bad in [
            serde_json::json!({"denied_commands": ["GET +@all"]}),
            serde_json::json!({"denied_commands": ["~*"]}),
            serde_json::json!({"denied_commands": [""]}),
            serde_json::json!({"denied_commands": [3]}),
            serde_json::json!({"denied_commands": "KEYS"}),
        ] {
            assert!(
                matches!(command_rules(&wanted(bad.clone())), Err(Error::Refused(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn user_names_map_back_to_their_slug_and_nothing_else_does() {
        assert_eq!(slug_of("tenant_acme_eu").unwrap().as_str(), "acme-eu");
        for bad in [
            "acme",
            "tenant_",
            "tenant_Acme",
            "tenant_acme-eu",
            "default",
            "tenant_a",
        ] {
            assert!(slug_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_an_open_default_user_is_warned_about() {
        let line = |text: &str| vec![text.to_owned()];
        assert!(default_user_warning(&line("user default on nopass ~* &* +@all")).is_some());
        assert!(default_user_warning(&line("user default off nopass ~* &* +@all")).is_none());
        assert!(default_user_warning(&line("user default on #ab12 ~* &* +@all")).is_none());
        assert!(default_user_warning(&line("user tenant_x on nopass ~* &* +@all")).is_none());
    }

    #[test]
    fn secrets_are_cut_out_of_messages() {
        assert_eq!(
            scrub("ERR modifier '>s3cret' bad".into(), &["s3cret".into()]),
            "ERR modifier '>***' bad"
        );
        assert_eq!(scrub("nothing".into(), &[String::new()]), "nothing");
    }

    #[test]
    fn a_getuser_reply_is_read_and_compared_in_plain_words() {
        let bulk = |text: &str| Value::BulkString(text.as_bytes().to_vec());
        let reply = Value::Array(vec![
            bulk("flags"),
            Value::Array(vec![bulk("off"), bulk("sanitize-payload")]),
            bulk("passwords"),
            Value::Array(vec![bulk(&credentials::sha256_hex("other"))]),
            bulk("commands"),
            bulk("+@all -@dangerous"),
            bulk("keys"),
            bulk("~*"),
            bulk("channels"),
            bulk("&tenant:acme-eu:*"),
            bulk("selectors"),
            Value::Array(vec![]),
        ]);
        let user = AclUser::parse(reply).ok().flatten().unwrap();
        let credentials = SecretString::new("redis://tenant_acme_eu:pw@h:6379".into());
        let differences = user.differences(
            &wanted(serde_json::json!({})),
            "+@all -@dangerous",
            Some(&credentials),
        );
        assert_eq!(
            differences,
            [
                "user is off",
                "keys are ~* instead of ~tenant:acme-eu:*",
                "password does not match the secret"
            ]
        );
        assert!(AclUser::parse(Value::Nil).ok().unwrap().is_none());
    }
}
