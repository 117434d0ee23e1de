//! Integration tests of the `tenantry` binary against real registries (SQLite, PostgreSQL) and real tenant
//! servers (SQLite files, a password-checking PostgreSQL cluster). Run through `scripts/test`.

// A panic is how a test reports failure; the product code denies unwrap, tests need not.
#![allow(clippy::unwrap_used)]

mod api;
mod backup;
mod bucket;
mod change_requests;
mod clone;
mod concurrency;
mod console;
mod crash_points;
mod dashboards;
mod dns;
mod failures;
mod fast_paths;
mod harness;
mod installations;
mod invitations;
mod mariadb;
mod moves;
mod notifications;
mod notifications_api;
mod offboard;
mod own_schema;
mod parallel;
mod plans;
mod provision;
mod registry_safety;
mod resources;
mod rollouts;
mod rollouts_api;
mod rotate;
mod saga;
mod schema_isolation;
mod suspend;
mod wizard_api;
