//! The baseline `tenantry bench` measures against: what a shell script does to make a tenant on PostgreSQL —
//! `createdb`, then `psql -f` for each migration file, then the first admin's insert through `psql` — one client
//! process per step, each logging in anew.
//!
//! The admin password reaches the processes as `PGPASSWORD` in their environment, never as an argument, and the
//! admin insert goes through standard input, so nothing but host, port, user and database names shows in `ps`.

use anyhow::{anyhow, Result};
use percent_encoding::percent_decode_str;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tenantry_providers::credentials::SecretString;
use tenantry_providers::engines::AdminSeed;
use tokio::io::AsyncWriteExt;

/// How to reach a server with PostgreSQL's own client programs.
#[derive(Clone)]
pub(super) struct NaiveScript {
    host: String,
    port: u16,
    user: String,
    password: Option<SecretString>,
    maintenance_database: String,
}

impl std::fmt::Debug for NaiveScript {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "NaiveScript({}:{})", self.host, self.port)
    }
}

fn decoded(text: &str) -> Result<String> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| anyhow!("the admin URL is not valid UTF-8"))
}

/// Refuses a database name that is not a plain lowercase identifier, as the engines do before they quote one.
fn check_identifier(name: &str) -> Result<()> {
    let safe = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !safe {
        return Err(anyhow!("{name:?} is not a valid tenant identifier"));
    }
    Ok(())
}

/// `text` as a single-quoted SQL literal.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl NaiveScript {
    /// Reads host, port, user, password and database from a server's `postgres://` admin URL.
    pub(super) fn from_admin_url(admin_url: &SecretString) -> Result<NaiveScript> {
        let invalid = || anyhow!("the server's admin URL is not a valid postgres:// URL");
        let url = url::Url::parse(admin_url.expose()).map_err(|_| invalid())?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(invalid());
        }
        let host = url.host_str().ok_or_else(invalid)?;
        let database = url.path().trim_start_matches('/');
        Ok(NaiveScript {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: url.port().unwrap_or(5432),
            user: decoded(url.username())?,
            password: url
                .password()
                .map(decoded)
                .transpose()?
                .map(SecretString::new),
            maintenance_database: if database.is_empty() {
                "postgres".to_owned()
            } else {
                decoded(database)?
            },
        })
    }

    fn command(&self, program: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(program);
        command
            .env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &self.user)
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGSERVICE")
            .env_remove("PGPASSFILE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        match &self.password {
            Some(password) => command.env("PGPASSWORD", password.expose()),
            None => command.env_remove("PGPASSWORD"),
        };
        command
    }

    async fn run(
        mut command: tokio::process::Command,
        what: &str,
        stdin: Option<String>,
    ) -> Result<()> {
        if stdin.is_some() {
            command.stdin(Stdio::piped());
        }
        let mut child = command
            .spawn()
            .map_err(|error| anyhow!("cannot start {what}: {error}"))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .await
                .map_err(|error| anyhow!("{what}: cannot write its input: {error}"))?;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|error| anyhow!("{what}: {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(anyhow!(
                "{what} failed: {}",
                stderr.lines().next().unwrap_or("no message")
            ))
        }
    }

    /// The migration files a script would loop over: `*.sql` in name order, without down migrations.
    fn migration_files(directory: &Path) -> Result<Vec<PathBuf>> {
        let entries = std::fs::read_dir(directory)
            .map_err(|error| anyhow!("cannot read {}: {error}", directory.display()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| {
                let name = path
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default();
                name.ends_with(".sql") && !name.ends_with(".down.sql")
            })
            .collect();
        files.sort();
        Ok(files)
    }

    /// Makes one tenant database the naive way: `createdb`, `psql -f` per migration, `psql` for the admin insert
    /// (the seed statement with its parameters written in as literals).
    pub(super) async fn provision(
        &self,
        database: &str,
        migrations: &Path,
        seed: &AdminSeed<'_>,
    ) -> Result<()> {
        check_identifier(database)?;
        let mut createdb = self.command("createdb");
        createdb
            .arg("--maintenance-db")
            .arg(&self.maintenance_database)
            .arg(database);
        Self::run(createdb, "createdb", None).await?;
        for file in Self::migration_files(migrations)? {
            let mut psql = self.command("psql");
            psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database, "-f"])
                .arg(&file);
            Self::run(psql, "psql (migration)", None).await?;
        }
        let insert = with_literals(
            seed.sql,
            &[seed.email, seed.password_hash, seed.invitation_token_hash],
        );
        let mut psql = self.command("psql");
        psql.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            database,
            "-f",
            "-",
        ]);
        Self::run(psql, "psql (admin insert)", Some(format!("{insert};\n"))).await
    }
}

/// The statement with each `$n` written out as the quoted literal `values[n - 1]`, as a script would template it.
/// One pass, so a value that itself holds `$1` (an argon2 hash may) is not rewritten again.
fn with_literals(sql: &str, values: &[&str]) -> String {
    let mut written = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(dollar) = rest.find('$') {
        written.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let value = after[..digits]
            .parse::<usize>()
            .ok()
            .and_then(|number| number.checked_sub(1))
            .and_then(|index| values.get(index));
        match value {
            Some(value) => {
                written.push_str(&quote_literal(value));
                rest = &after[digits..];
            }
            None => {
                written.push('$');
                rest = after;
            }
        }
    }
    written.push_str(rest);
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_literals_once() {
        assert_eq!(
            with_literals(
                "INSERT INTO t VALUES ($1, $2, $3, '$4') -- $",
                &["a@b.example", "$argon2id$v=19$1$2", "o'k"]
            ),
            "INSERT INTO t VALUES ('a@b.example', '$argon2id$v=19$1$2', 'o''k', '$4') -- $"
        );
    }

    #[test]
    fn the_admin_url_is_taken_apart_and_decoded() {
        let script = NaiveScript::from_admin_url(&SecretString::new(
            "postgres://admin:p%40ss@db.example:5433/ops".into(),
        ))
        .unwrap();
        assert_eq!(script.host, "db.example");
        assert_eq!(script.port, 5433);
        assert_eq!(script.user, "admin");
        assert_eq!(
            script.password.as_ref().map(SecretString::expose),
            Some("p@ss")
        );
        assert_eq!(script.maintenance_database, "ops");
        assert_eq!(format!("{script:?}"), "NaiveScript(db.example:5433)");
    }
}
