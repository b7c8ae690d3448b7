//! portguard resolves port conflicts declaratively: before a server starts,
//! it finds every process holding the port, evaluates a TOML policy against
//! them, and terminates, waits, refuses or reuses — explaining every decision.
//!
//! The pipeline is [`discovery`] → [`evaluate`] → [`actions`], driven per port
//! by [`resolver`] and shown by [`render`]; [`commands`] ties them to the
//! command line. The contract is SPEC.md; README.md documents it.

pub mod actions;
pub mod commands;
pub mod diagnostic;
pub mod discovery;
pub mod docker;
pub mod evaluate;
pub mod exit;
pub mod lock;
pub mod model;
pub mod policy;
pub mod policytest;
pub mod ports;
pub mod progress;
pub mod render;
pub mod resolver;
pub mod users;
