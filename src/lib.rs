//! portguard resolves port conflicts declaratively: before a server starts,
//! it finds every process holding the port, evaluates a TOML policy against
//! them, and terminates, waits, refuses or reuses — explaining every
//! decision.
//!
//! The pipeline, one concern per module:
//!
//! - [`discovery`]: which sockets hold a port and which processes hold
//!   them (socket sources, and the proc layer per OS);
//! - [`policy`]: the policy model and its strict loading;
//! - [`evaluate`]: rules × holders → a decision and its trace, as data;
//! - [`act`]: signalling, the terminate/wait state machines, health checks;
//! - [`resolver`]: discover → evaluate → act → verify, per port, in rounds;
//! - [`report`]: the typed result rendered as human text, the `--explain`
//!   trace, and JSON;
//! - [`cli`]: one file per subcommand.
//!
//! [`model`] holds the facts they share. The contract is the project's
//! documentation (`docs/`, README.md).

pub mod act;
pub mod cli;
pub mod diagnostic;
pub mod discovery;
pub mod docker;
pub mod evaluate;
pub mod exit;
#[cfg(any(test, feature = "testing"))]
pub mod fixtures;
pub mod model;
pub mod policy;
pub mod ports;
pub mod report;
pub mod resolver;
pub mod terminal;
