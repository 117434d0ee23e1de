//! The provider conformance suite: every resource kind passes the same cases against a real server.

mod conformance;
mod queue;
