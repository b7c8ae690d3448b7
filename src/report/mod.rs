//! The report: what a run found, decided and did, rendered for people and
//! for programs from the same typed data. Nothing here decides anything.
//!
//! - [`words`]: every sentence about a port (messages, reasons, plans,
//!   steps).
//! - [`human`]: `who` and the short result of a run.
//! - [`explain`]: the decision trace of `--explain` and `-v`.
//! - [`cases`]: what `portguard test` says about each case.
//! - [`json`]: the `--format json` documents and their schema.
//! - [`manual`]: the man pages' own words.
//! - [`spinner`]: the progress line shown while waiting on a terminal.
//! - [`starter`]: the policy `portguard init` writes, and what it says.

pub mod cases;
pub mod explain;
pub mod human;
pub mod json;
pub mod manual;
pub mod spinner;
pub mod starter;
pub mod words;

use crate::policy::Policy;

/// Which policy a run used, for output.
#[derive(Debug, Clone)]
pub struct PolicyInfo {
    /// Policy name.
    pub name: String,
    /// `"built-in"` or the path.
    pub source: String,
    /// Why it was chosen (`--policy`, `$PORTGUARD_POLICY`, `default`, ...).
    pub chosen_by: String,
}

impl PolicyInfo {
    /// Describes `policy`, chosen for `reason`.
    pub fn new(policy: &Policy, reason: &str) -> Self {
        PolicyInfo {
            name: policy.name.clone(),
            source: policy.source.describe(),
            chosen_by: reason.to_string(),
        }
    }
}
