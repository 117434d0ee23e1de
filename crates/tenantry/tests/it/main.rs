//! Integration tests of the `tenantry` binary against real registries (SQLite, PostgreSQL) and real tenant
//! servers (SQLite files, a password-checking PostgreSQL cluster). Run through `scripts/test`.

mod concurrency;
mod failures;
mod harness;
mod offboard;
mod provision;
