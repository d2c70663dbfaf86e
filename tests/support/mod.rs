//! Loopback servers for the conformance suite.

pub mod faults;
pub mod server;
