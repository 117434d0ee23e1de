//! Backups outside the registry: the backup store (a directory of 0600 files), the chunked AES-256-GCM that
//! encrypts each dump as it streams in, and the engines' dump and restore (PostgreSQL's `pg_dump -Fc` and
//! `pg_restore` as child processes, SQLite's `VACUUM INTO`).
//!
//! A stored file is `MAGIC`, then chunks of at most `CHUNK_BYTES` of plaintext, each
//! `[u32 BE sealed length][12-byte nonce][ciphertext + tag]`, sealed with the backup's data key and, as associated
//! data, the backup id, the resource kind, the chunk's index and whether it is the last one. So a chunk moved,
//! dropped, or copied from another backup or resource does not open, and a file cut short lacks its last chunk.
//! A 1 GB dump is never held in memory: one chunk at a time is.

use crate::credentials::SecretString;
use crate::{Error, Result};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Plaintext per chunk: large enough that the per-chunk cost (a nonce, a tag, a length) is noise, small enough
/// that memory stays flat.
pub const CHUNK_BYTES: usize = 1 << 20;
const MAGIC: &[u8; 8] = b"TNTYBK01";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// A stored file's sizes and SHA-256 checksums (hex): of the plaintext dump and of the encrypted file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileSums {
    pub plain_bytes: u64,
    pub plain_sha256: String,
    pub stored_bytes: u64,
    pub stored_sha256: String,
}

/// Where backups are kept: `<directory>/<backup id>/<kind>.dump` and a `manifest.json` per backup.
#[derive(Debug, Clone)]
pub struct BackupStore {
    directory: PathBuf,
}

fn io_error(what: &str, path: &Path, error: std::io::Error) -> Error {
    Error::Refused(format!(
        "backup store: cannot {what} {}: {error}",
        path.display()
    ))
}

/// A backup id or a resource kind used as a file name: letters, digits and `-` only, so no name escapes its
/// directory.
fn checked_name(name: &str) -> Result<&str> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::Refused(format!(
            "{name:?} is not a backup id or kind"
        )));
    }
    Ok(name)
}

impl BackupStore {
    pub fn new(directory: PathBuf) -> BackupStore {
        BackupStore { directory }
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    fn backup_directory(&self, backup_id: &str) -> Result<PathBuf> {
        Ok(self.directory.join(checked_name(backup_id)?))
    }

    /// The file that holds one resource's dump.
    pub fn file_path(&self, backup_id: &str, kind: &str) -> Result<PathBuf> {
        Ok(self
            .backup_directory(backup_id)?
            .join(format!("{}.dump", checked_name(kind)?)))
    }

    /// Makes the store's directories (0700) and proves a file can be written there, so a purge that needs a
    /// backup is refused before anything is dropped rather than after.
    pub fn check_writable(&self) -> Result<()> {
        create_private_dir(&self.directory)?;
        let probe = self
            .directory
            .join(format!(".probe-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .map_err(|error| io_error("write to", &self.directory, error))?;
        std::fs::remove_file(&probe).map_err(|error| io_error("remove", &probe, error))
    }

    /// Writes a backup's manifest (its row's content, so the store can be understood without the registry).
    pub fn write_manifest(&self, backup_id: &str, manifest: &serde_json::Value) -> Result<()> {
        let directory = self.backup_directory(backup_id)?;
        create_private_dir(&directory)?;
        let path = directory.join("manifest.json");
        write_private(&path, manifest.to_string().as_bytes())
    }

    /// Removes a backup's directory and everything in it; removing what is absent succeeds.
    pub fn remove(&self, backup_id: &str) -> Result<()> {
        let directory = self.backup_directory(backup_id)?;
        match std::fs::remove_dir_all(&directory) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(io_error("remove", &directory, error)),
        }
    }

    /// Every backup id with a directory in the store (for doctor).
    pub fn list_ids(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error("list", &self.directory, error)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().is_dir())
            .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
            .filter(|name| checked_name(name).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

fn create_private_dir(directory: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(directory)
        .map_err(|error| io_error("create", directory, error))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| io_error("create", path, error))?;
    file.write_all(bytes)
        .map_err(|error| io_error("write", path, error))
}

async fn create_private_file(path: &Path) -> Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(|error| io_error("create", path, error))
}

/// A fresh data key for one backup, as the secret store keeps it (base64 of 32 random bytes).
pub fn new_data_key() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::new(STANDARD.encode(bytes))
}

fn key_bytes(key: &SecretString) -> Result<[u8; 32]> {
    STANDARD
        .decode(key.expose().trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| Error::SecretStore("a backup's data key must be 32 bytes of base64".into()))
}

fn chunk_aad(aad: &str, index: u64, last: bool) -> Vec<u8> {
    format!("{aad}/{index}/{}", if last { "last" } else { "more" }).into_bytes()
}

fn hex(digest: impl AsRef<[u8]>) -> String {
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Reads until `buffer` is full or the input ends; the number of bytes read.
async fn fill<R: AsyncRead + Unpin>(reader: &mut R, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        let read = reader.read(&mut buffer[filled..]).await?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    Ok(filled)
}

/// Encrypts everything `reader` yields into `path` (0600, written under a temporary name and renamed when
/// whole), chunk by chunk; `aad` names the backup and resource.
pub async fn seal_stream<R: AsyncRead + Unpin>(
    reader: &mut R,
    path: &Path,
    key: &SecretString,
    aad: &str,
) -> Result<FileSums> {
    let cipher = Aes256Gcm::new((&key_bytes(key)?).into());
    if let Some(parent) = path.parent() {
        create_private_dir(parent)?;
    }
    let partial = path.with_extension("part");
    let mut file = tokio::io::BufWriter::new(create_private_file(&partial).await?);
    let mut plain_hash = Sha256::new();
    let mut stored_hash = Sha256::new();
    let (mut plain_bytes, mut stored_bytes) = (0u64, 0u64);
    let write_error = |error| io_error("write", &partial, error);
    file.write_all(MAGIC).await.map_err(write_error)?;
    stored_hash.update(MAGIC);
    stored_bytes += MAGIC.len() as u64;
    // One chunk is read ahead, so the last chunk is known to be last when it is sealed.
    let mut current = vec![0u8; CHUNK_BYTES];
    let mut next = vec![0u8; CHUNK_BYTES];
    let read_error = |error: std::io::Error| Error::Refused(format!("reading the dump: {error}"));
    let mut current_len = fill(reader, &mut current).await.map_err(read_error)?;
    for index in 0u64.. {
        let next_len = if current_len == CHUNK_BYTES {
            fill(reader, &mut next).await.map_err(read_error)?
        } else {
            0
        };
        let last = next_len == 0;
        let plain = &current[..current_len];
        plain_hash.update(plain);
        plain_bytes += current_len as u64;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &chunk_aad(aad, index, last),
                },
            )
            .map_err(|_| Error::Refused("encrypting a backup chunk failed".into()))?;
        let length = u32::try_from(sealed.len())
            .map_err(|_| Error::Refused("a backup chunk is too large".into()))?
            .to_be_bytes();
        for piece in [&length[..], &nonce[..], &sealed[..]] {
            file.write_all(piece).await.map_err(write_error)?;
            stored_hash.update(piece);
            stored_bytes += piece.len() as u64;
        }
        if last {
            break;
        }
        std::mem::swap(&mut current, &mut next);
        current_len = next_len;
    }
    file.flush().await.map_err(write_error)?;
    file.get_ref().sync_all().await.map_err(write_error)?;
    drop(file);
    tokio::fs::rename(&partial, path)
        .await
        .map_err(|error| io_error("rename", &partial, error))?;
    Ok(FileSums {
        plain_bytes,
        plain_sha256: hex(plain_hash.finalize()),
        stored_bytes,
        stored_sha256: hex(stored_hash.finalize()),
    })
}

/// The size and SHA-256 of a stored file, as it is on disk.
pub async fn file_sha256(path: &Path) -> Result<(u64, String)> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|error| io_error("open", path, error))?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut total = 0u64;
    loop {
        let read = file
            .read(&mut buffer)
            .await
            .map_err(|error| io_error("read", path, error))?;
        if read == 0 {
            break;
        }
        hash.update(&buffer[..read]);
        total += read as u64;
    }
    Ok((total, hex(hash.finalize())))
}

/// Whether an error of [`open_stream`] says the stored file itself is wrong (changed, cut short, another key),
/// rather than that the data could not be written on.
pub fn is_corrupt(error: &Error) -> bool {
    matches!(error, Error::Refused(message) if message.starts_with(CORRUPT_PREFIX))
}

const CORRUPT_PREFIX: &str = "backup file ";

/// Decrypts `path` chunk by chunk into `writer`; the plaintext's size and SHA-256. A chunk that does not open (a
/// changed byte, another key, a chunk moved) or a file without its last chunk is refused.
pub async fn open_stream<W: AsyncWrite + Unpin>(
    path: &Path,
    key: &SecretString,
    aad: &str,
    writer: &mut W,
) -> Result<(u64, String)> {
    let cipher = Aes256Gcm::new((&key_bytes(key)?).into());
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|error| io_error("open", path, error))?;
    let mut file = tokio::io::BufReader::new(file);
    let corrupt = |why: &str| Error::Refused(format!("{CORRUPT_PREFIX}{} {why}", path.display()));
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic)
        .await
        .map_err(|_| corrupt("is too short"))?;
    if &magic != MAGIC {
        return Err(corrupt("is not a tenantry backup file"));
    }
    let mut hash = Sha256::new();
    let mut total = 0u64;
    let mut sealed = Vec::with_capacity(CHUNK_BYTES + TAG_LEN);
    for index in 0u64.. {
        let mut length = [0u8; 4];
        file.read_exact(&mut length)
            .await
            .map_err(|_| corrupt("ends before its last chunk"))?;
        let length = u32::from_be_bytes(length) as usize;
        if !(TAG_LEN..=CHUNK_BYTES + TAG_LEN).contains(&length) {
            return Err(corrupt("has a chunk of an impossible size"));
        }
        let mut nonce = [0u8; NONCE_LEN];
        file.read_exact(&mut nonce)
            .await
            .map_err(|_| corrupt("ends inside a chunk"))?;
        sealed.resize(length, 0);
        file.read_exact(&mut sealed)
            .await
            .map_err(|_| corrupt("ends inside a chunk"))?;
        // A chunk opens under exactly one of the two associated data: which says whether it was the last.
        let mut last = false;
        let mut plain = None;
        for is_last in [false, true] {
            if let Ok(opened) = cipher.decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: &chunk_aad(aad, index, is_last),
                },
            ) {
                last = is_last;
                plain = Some(opened);
                break;
            }
        }
        let plain = plain.ok_or_else(|| corrupt(&format!("chunk {index} does not decrypt")))?;
        hash.update(&plain);
        total += plain.len() as u64;
        writer
            .write_all(&plain)
            .await
            .map_err(|error| Error::Refused(format!("writing the restored data: {error}")))?;
        if last {
            let mut rest = [0u8; 1];
            if file.read(&mut rest).await.unwrap_or(0) != 0 {
                return Err(corrupt("has data after its last chunk"));
            }
            break;
        }
    }
    writer
        .flush()
        .await
        .map_err(|error| Error::Refused(format!("writing the restored data: {error}")))?;
    Ok((total, hex(hash.finalize())))
}

/// Where PostgreSQL's client programs are: `configured`, or the newest `/usr/lib/postgresql/<version>/bin` that
/// has `pg_dump`, or the `PATH` (an empty directory).
pub fn postgres_bin_dir(configured: Option<&Path>) -> PathBuf {
    if let Some(directory) = configured {
        return directory.to_path_buf();
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_dump").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_default()
}

/// The libpq environment for a `postgres://` URL. The password goes into `PGPASSWORD`, never an argument, so
/// `ps` shows none.
fn libpq_environment(url: &SecretString, database: &str) -> Result<Vec<(&'static str, String)>> {
    let parsed = url::Url::parse(url.expose())
        .map_err(|_| Error::AdminConnection("a PostgreSQL URL does not parse".into()))?;
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut environment = vec![
        ("PGDATABASE", database.to_owned()),
        ("PGCONNECT_TIMEOUT", "5".into()),
    ];
    if let Some(host) = parsed.host_str().filter(|host| !host.is_empty()) {
        environment.push((
            "PGHOST",
            decode(host.trim_start_matches('[').trim_end_matches(']')),
        ));
    }
    if let Some(port) = parsed.port() {
        environment.push(("PGPORT", port.to_string()));
    }
    if !parsed.username().is_empty() {
        environment.push(("PGUSER", decode(parsed.username())));
    }
    if let Some(password) = parsed.password() {
        environment.push(("PGPASSWORD", decode(password)));
    }
    for (name, value) in parsed.query_pairs() {
        match name.as_ref() {
            "host" => environment.push(("PGHOST", value.into_owned())),
            "port" => environment.push(("PGPORT", value.into_owned())),
            "user" => environment.push(("PGUSER", value.into_owned())),
            "sslmode" => environment.push(("PGSSLMODE", value.into_owned())),
            _ => {}
        }
    }
    Ok(environment)
}

fn postgres_command(
    bin_dir: &Path,
    program: &str,
    url: &SecretString,
    database: &str,
) -> Result<tokio::process::Command> {
    let path = if bin_dir.as_os_str().is_empty() {
        PathBuf::from(program)
    } else {
        bin_dir.join(program)
    };
    let mut command = tokio::process::Command::new(path);
    // Nothing of the caller's libpq settings leaks in: the URL says everything.
    for name in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "PGSERVICE",
        "PGPASSFILE",
        "PGOPTIONS",
    ] {
        command.env_remove(name);
    }
    command.envs(libpq_environment(url, database)?);
    command.kill_on_drop(true);
    Ok(command)
}

/// Reads a child's standard error (at most 4 KiB of it is kept, for the error message).
async fn read_stderr(stderr: Option<tokio::process::ChildStderr>) -> String {
    let mut text = Vec::new();
    if let Some(mut stderr) = stderr {
        let mut buffer = [0u8; 4096];
        while let Ok(read) = stderr.read(&mut buffer).await {
            if read == 0 {
                break;
            }
            if text.len() < 4096 {
                text.extend_from_slice(&buffer[..read.min(4096 - text.len())]);
            }
        }
    }
    String::from_utf8_lossy(&text).trim().to_owned()
}

/// Dumps `database` with `pg_dump -Fc` over `url` (the server's admin connection, so a suspended or offboarded
/// tenant whose login is refused can still be backed up) straight into the store, encrypted as it streams.
pub async fn dump_postgres(
    bin_dir: &Path,
    url: &SecretString,
    database: &str,
    path: &Path,
    key: &SecretString,
    aad: &str,
) -> Result<FileSums> {
    dump_postgres_part(bin_dir, url, database, None, path, key, aad).await
}

/// [`dump_postgres`] of one schema of `database` (`pg_dump -n`): a shared-tier tenant's schema in the shared
/// database. Its rows in the shared tables are not in it (they sit in `public`, among other tenants').
pub async fn dump_postgres_schema(
    bin_dir: &Path,
    url: &SecretString,
    database: &str,
    schema: &str,
    path: &Path,
    key: &SecretString,
    aad: &str,
) -> Result<FileSums> {
    dump_postgres_part(bin_dir, url, database, Some(schema), path, key, aad).await
}

async fn dump_postgres_part(
    bin_dir: &Path,
    url: &SecretString,
    database: &str,
    schema: Option<&str>,
    path: &Path,
    key: &SecretString,
    aad: &str,
) -> Result<FileSums> {
    let mut command = postgres_command(bin_dir, "pg_dump", url, database)?;
    command.args(["--format=custom", "--no-password"]);
    if let Some(schema) = schema {
        // `-n` takes a pattern: a tenant schema's name (slug rule: `[a-z0-9_]`) matches itself alone.
        command.arg(format!("--schema={schema}"));
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| {
            Error::Refused(format!(
                "cannot run pg_dump in {}: {error}",
                bin_dir.display()
            ))
        })?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Refused("pg_dump has no output".into()))?;
    let stderr = tokio::spawn(read_stderr(child.stderr.take()));
    let sealed = seal_stream(&mut stdout, path, key, aad).await;
    let status = child
        .wait()
        .await
        .map_err(|error| Error::Refused(format!("pg_dump: {error}")))?;
    let stderr = stderr.await.unwrap_or_default();
    if !status.success() {
        let _ = std::fs::remove_file(path);
        return Err(pg_tool_error("pg_dump", &stderr));
    }
    sealed
}

fn pg_tool_error(program: &str, stderr: &str) -> Error {
    let message = format!("{program} failed: {stderr}");
    if stderr.contains("Connection refused") || stderr.contains("timeout expired") {
        Error::Transient(message)
    } else {
        Error::Refused(message)
    }
}

/// Restores a dump into `database` with `pg_restore` over `url` (the tenant's own credentials): every object is
/// made by, so owned by, that tenant's role (`--no-owner --no-privileges`), and what the database already has
/// of the same names (a fresh tenant's migrated schema) is replaced (`--clean --if-exists`), in one transaction.
pub async fn restore_postgres(
    bin_dir: &Path,
    url: &SecretString,
    database: &str,
    path: &Path,
    key: &SecretString,
    aad: &str,
) -> Result<(u64, String)> {
    let mut child = postgres_command(bin_dir, "pg_restore", url, database)?
        .args([
            "--no-password",
            "--no-owner",
            "--no-privileges",
            "--clean",
            "--if-exists",
            "--single-transaction",
            "--exit-on-error",
            "--dbname",
            database,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| {
            Error::Refused(format!(
                "cannot run pg_restore in {}: {error}",
                bin_dir.display()
            ))
        })?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| Error::Refused("pg_restore has no input".into()))?;
    let stderr = tokio::spawn(read_stderr(child.stderr.take()));
    let opened = open_stream(path, key, aad, &mut stdin).await;
    drop(stdin);
    let status = child
        .wait()
        .await
        .map_err(|error| Error::Refused(format!("pg_restore: {error}")))?;
    let stderr = stderr.await.unwrap_or_default();
    match opened {
        // A file that does not open is the cause, whatever pg_restore made of the part it got.
        Err(error) if is_corrupt(&error) => Err(error),
        // Otherwise pg_restore's own words: when it stops early, the stream only sees a broken pipe.
        _ if !status.success() => Err(pg_tool_error("pg_restore", &stderr)),
        opened => opened,
    }
}

/// Copies the schema (no rows) of `database` from one PostgreSQL server to the same database on another, as a
/// move's first step: `pg_dump --schema-only` over the source's admin URL piped into `pg_restore` over the
/// target's, every object made as `role` (`--role`: the tenant owns what it owned), in one transaction. What the
/// target already has of the same names is replaced, so running it again converges. Passwords go into
/// `PGPASSWORD` only.
pub async fn copy_postgres_schema(
    bin_dir: &Path,
    source_url: &SecretString,
    target_url: &SecretString,
    database: &str,
    role: &str,
) -> Result<()> {
    let mut dump = postgres_command(bin_dir, "pg_dump", source_url, database)?
        .args([
            "--format=custom",
            "--schema-only",
            "--no-password",
            "--no-publications",
            "--no-subscriptions",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| {
            Error::Refused(format!(
                "cannot run pg_dump in {}: {error}",
                bin_dir.display()
            ))
        })?;
    let dump_stderr = tokio::spawn(read_stderr(dump.stderr.take()));
    let mut schema = Vec::new();
    if let Some(mut stdout) = dump.stdout.take() {
        stdout
            .read_to_end(&mut schema)
            .await
            .map_err(|error| Error::Refused(format!("pg_dump: {error}")))?;
    }
    let status = dump
        .wait()
        .await
        .map_err(|error| Error::Refused(format!("pg_dump: {error}")))?;
    if !status.success() {
        return Err(pg_tool_error(
            "pg_dump",
            &dump_stderr.await.unwrap_or_default(),
        ));
    }
    let role_argument = format!("--role={role}");
    let mut restore = postgres_command(bin_dir, "pg_restore", target_url, database)?
        .args([
            "--no-password",
            "--no-owner",
            "--no-privileges",
            "--clean",
            "--if-exists",
            "--single-transaction",
            "--exit-on-error",
            role_argument.as_str(),
            "--dbname",
            database,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| {
            Error::Refused(format!(
                "cannot run pg_restore in {}: {error}",
                bin_dir.display()
            ))
        })?;
    let restore_stderr = tokio::spawn(read_stderr(restore.stderr.take()));
    if let Some(mut stdin) = restore.stdin.take() {
        // A pg_restore that stops early closes its input; its own words say why.
        let _ = stdin.write_all(&schema).await;
    }
    let status = restore
        .wait()
        .await
        .map_err(|error| Error::Refused(format!("pg_restore: {error}")))?;
    if !status.success() {
        return Err(pg_tool_error(
            "pg_restore",
            &restore_stderr.await.unwrap_or_default(),
        ));
    }
    Ok(())
}

/// Copies a SQLite tenant file with `VACUUM INTO` (a consistent copy, even of a file in use) into a 0600
/// scratch file beside the store's file, then encrypts that into the store and removes the scratch copy.
pub async fn dump_sqlite(
    file: &Path,
    path: &Path,
    key: &SecretString,
    aad: &str,
) -> Result<FileSums> {
    use sqlx::Connection;
    if let Some(parent) = path.parent() {
        create_private_dir(parent)?;
    }
    let scratch = path.with_extension("sqlite.part");
    let _ = std::fs::remove_file(&scratch);
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(file)
        .read_only(true);
    let mut connection = sqlx::SqliteConnection::connect_with(&options)
        .await
        .map_err(|error| Error::Refused(format!("cannot open {}: {error}", file.display())))?;
    let target = scratch.display().to_string().replace('\'', "''");
    // The scratch copy is made by SQLite, so its mode is set before any tenant data is in it.
    create_private_file(&scratch).await?;
    let vacuumed = sqlx::query(&format!("VACUUM INTO '{target}'"))
        .execute(&mut connection)
        .await;
    let _ = connection.close().await;
    if let Err(error) = vacuumed {
        let _ = std::fs::remove_file(&scratch);
        return Err(Error::Refused(format!(
            "cannot copy {}: {error}",
            file.display()
        )));
    }
    let mut copy = tokio::fs::File::open(&scratch)
        .await
        .map_err(|error| io_error("open", &scratch, error))?;
    let sealed = seal_stream(&mut copy, path, key, aad).await;
    let _ = std::fs::remove_file(&scratch);
    sealed
}

/// Restores a SQLite dump over the tenant file: decrypted into a 0600 file beside it and renamed into place, so
/// the tenant file is whole before and after.
pub async fn restore_sqlite(
    file: &Path,
    path: &Path,
    key: &SecretString,
    aad: &str,
) -> Result<(u64, String)> {
    let scratch = file.with_extension("db.restoring");
    let mut output = create_private_file(&scratch).await?;
    let opened = open_stream(path, key, aad, &mut output).await;
    let synced = output.sync_all().await;
    drop(output);
    let opened = match (opened, synced) {
        (Ok(opened), Ok(())) => opened,
        (Err(error), _) => {
            let _ = std::fs::remove_file(&scratch);
            return Err(error);
        }
        (_, Err(error)) => {
            let _ = std::fs::remove_file(&scratch);
            return Err(io_error("write", &scratch, error));
        }
    };
    for suffix in ["db-wal", "db-shm"] {
        let _ = std::fs::remove_file(file.with_extension(suffix));
    }
    tokio::fs::rename(&scratch, file)
        .await
        .map_err(|error| io_error("rename", &scratch, error))?;
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sealed_file(data: &[u8], name: &str) -> (PathBuf, SecretString, FileSums) {
        let directory = std::env::temp_dir().join(format!(
            "tenantry-backup-test-{}-{name}",
            std::process::id()
        ));
        let path = directory.join("database.dump");
        let key = new_data_key();
        let sums = seal_stream(&mut &data[..], &path, &key, "b1/database")
            .await
            .unwrap();
        (path, key, sums)
    }

    #[tokio::test]
    async fn a_sealed_stream_opens_to_the_same_bytes_and_checksums() {
        let data: Vec<u8> = (0..(CHUNK_BYTES * 2 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let (path, key, sums) = sealed_file(&data, "roundtrip").await;
        assert_eq!(sums.plain_bytes, data.len() as u64);
        assert_eq!(sums.plain_sha256, hex(Sha256::digest(&data)));
        assert_eq!(
            file_sha256(&path).await.unwrap(),
            (sums.stored_bytes, sums.stored_sha256.clone())
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let mut out = Vec::new();
        let (n, sha) = open_stream(&path, &key, "b1/database", &mut out)
            .await
            .unwrap();
        assert_eq!((n, sha), (sums.plain_bytes, sums.plain_sha256));
        assert_eq!(out, data);
        // Another backup's or resource's associated data, or another key, does not open it.
        assert!(open_stream(&path, &key, "b2/database", &mut Vec::new())
            .await
            .is_err());
        assert!(
            open_stream(&path, &new_data_key(), "b1/database", &mut Vec::new())
                .await
                .is_err()
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn a_changed_byte_or_a_missing_last_chunk_is_refused() {
        let data = vec![7u8; CHUNK_BYTES + 5];
        let (path, key, _) = sealed_file(&data, "tamper").await;
        let original = std::fs::read(&path).unwrap();
        let mut changed = original.clone();
        changed[100] ^= 1;
        std::fs::write(&path, &changed).unwrap();
        assert!(open_stream(&path, &key, "b1/database", &mut Vec::new())
            .await
            .is_err());
        // Cut after the first chunk: it opens, but the file has no last chunk.
        let first_chunk = 8 + 4 + NONCE_LEN + CHUNK_BYTES + TAG_LEN;
        std::fs::write(&path, &original[..first_chunk]).unwrap();
        assert!(open_stream(&path, &key, "b1/database", &mut Vec::new())
            .await
            .is_err());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn the_password_goes_to_the_environment_only() {
        let url = SecretString::new(
            "postgres://admin:p%40ss@127.0.0.1:55433/postgres?sslmode=disable".into(),
        );
        let environment = libpq_environment(&url, "tenant_acme").unwrap();
        assert!(environment.contains(&("PGPASSWORD", "p@ss".to_owned())));
        assert!(environment.contains(&("PGDATABASE", "tenant_acme".to_owned())));
        assert!(environment.contains(&("PGSSLMODE", "disable".to_owned())));
        assert!(checked_name("../etc").is_err());
    }
}
