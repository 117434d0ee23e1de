//! The provider conformance suite, which every resource kind passes against a real server, and each kind's own
//! tests.

mod bucket;
mod cache;
mod conformance;
mod database;
mod dns;
mod namespace;
mod queue;
