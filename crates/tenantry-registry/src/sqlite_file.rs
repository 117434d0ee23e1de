//! The SQLite registry file before SQLite opens it: a new one is made mode 0600 and whole, an existing one must be
//! a registry. SQLite itself takes an empty file for an empty database and garbage for a locked one, so without
//! these checks a truncated registry would be silently re-created empty (and every tenant would look orphaned), and a
//! damaged one would surface only as a connection pool's time-out.

use crate::{Error, Result};
use std::io::Read;
use std::path::Path;

/// The first 16 bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
const SQLITE_HEADER_LEN: usize = 100;

/// Makes the registry file if there is none; otherwise checks that the one there can be read as a registry.
/// Called with the registry's migration lock held.
pub(crate) fn prepare(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(metadata) => check_existing(path, metadata.len()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(error) => Err(Error::Unavailable(format!(
            "cannot read {}: {error}",
            path.display()
        ))),
    }
}

/// Makes a new registry file: built under a temporary name, mode 0600 (SQLite gives its `-wal` and `-shm` files
/// the mode of the database file), with a SQLite header, then linked into place. A crash leaves no empty file under
/// the registry's name, and a link never replaces a file that appeared meanwhile.
fn create(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "registry.db".into());
    let temporary = path.with_file_name(format!("{file_name}.new-{}", std::process::id()));
    let cannot_create =
        |error: String| Error::Unavailable(format!("cannot create {}: {error}", path.display()));
    let _ = std::fs::remove_file(&temporary);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(|error| cannot_create(error.to_string()))?;
    let initialised = rusqlite::Connection::open_with_flags(
        &temporary,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|connection| {
        // Switching to WAL writes the database header, so the file is a database from its first byte on.
        connection.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        connection.close().map_err(|(_, error)| error)
    });
    let linked = initialised
        .map_err(|error| cannot_create(error.to_string()))
        .and_then(|()| {
            std::fs::hard_link(&temporary, path).or_else(|error| {
                if error.kind() == std::io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(cannot_create(error.to_string()))
                }
            })
        });
    for leftover in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{leftover}", temporary.display()));
    }
    linked?;
    // Another process may have linked its file first: whichever is there now must be a registry.
    let length = std::fs::metadata(path)
        .map_err(|error| cannot_create(error.to_string()))?
        .len();
    check_existing(path, length)
}

/// Refuses a file that is not a registry, naming what is wrong with it; changes nothing.
fn check_existing(path: &Path, length: u64) -> Result<()> {
    let not_a_registry = |what: String| {
        Error::NotARegistry(format!(
            "the registry file {} {what}. tenantry makes a new registry only where there is no file, and never \
             replaces one: restore the file from a backup, or move it away to start an empty registry",
            path.display()
        ))
    };
    if length == 0 {
        return Err(not_a_registry("is empty (0 bytes)".into()));
    }
    let mut header = Vec::with_capacity(SQLITE_HEADER_LEN);
    std::fs::File::open(path)
        .and_then(|file| file.take(SQLITE_HEADER_LEN as u64).read_to_end(&mut header))
        .map_err(|error| Error::Unavailable(format!("cannot read {}: {error}", path.display())))?;
    if !header.starts_with(SQLITE_MAGIC) {
        return Err(not_a_registry(format!(
            "is not a SQLite database ({length} bytes that do not start with the SQLite header)"
        )));
    }
    if header.len() < SQLITE_HEADER_LEN {
        return Err(not_a_registry(format!(
            "is truncated ({length} bytes, shorter than a SQLite header)"
        )));
    }
    if let Some(expected) = size_in_header(&header) {
        // With committed pages still in the `-wal` file, the database file may lag behind its header.
        let wal_length = std::fs::metadata(format!("{}-wal", path.display()))
            .map(|metadata| metadata.len())
            .unwrap_or(0);
        if wal_length == 0 && length < expected {
            return Err(not_a_registry(format!(
                "is truncated: its header says {expected} bytes, the file has {length}"
            )));
        }
    }
    let tables = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|connection| {
        let mut statement =
            connection.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
        let names = statement
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<String>>>();
        names
    })
    .map_err(|error| not_a_registry(format!("cannot be read as a SQLite database ({error})")))?;
    // A file with no tables yet is one whose first start stopped before migrating: the migration finishes it.
    if !tables.is_empty() && !tables.iter().any(|name| name == "_sqlx_migrations") {
        return Err(not_a_registry(format!(
            "is a SQLite database of another program (its tables: {})",
            tables.join(", ")
        )));
    }
    Ok(())
}

/// The database size the header records, when the header says it is valid (its change counter matches the
/// counter the size was written with, as SQLite's file format requires).
fn size_in_header(header: &[u8]) -> Option<u64> {
    let be_u32 = |offset: usize| -> Option<u32> {
        Some(u32::from_be_bytes(
            header.get(offset..offset + 4)?.try_into().ok()?,
        ))
    };
    let page_size = match u16::from_be_bytes(header.get(16..18)?.try_into().ok()?) {
        1 => 65_536,
        size => u64::from(size),
    };
    let n_pages = u64::from(be_u32(28)?);
    (n_pages > 0 && be_u32(24)? == be_u32(92)?).then_some(n_pages * page_size)
}
