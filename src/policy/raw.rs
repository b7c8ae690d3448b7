//! The policy file exactly as written: what serde reads from TOML, with the
//! source span of every value a later check may need to point at.
//!
//! Nothing here is interpreted; `policy::load` turns these into the checked
//! model and reports every problem with its place in the file. Unknown keys
//! are rejected here (`deny_unknown_fields`), so a typo such as `acton` never
//! silently falls back to a default.

use serde::Deserialize;
use toml::Spanned;

/// A whole policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Name of the policy, shown in traces.
    pub name: Option<Spanned<String>>,
    /// What the policy is for.
    pub description: Option<String>,
    /// Settings used when a rule does not give its own.
    pub defaults: Option<RawDefaults>,
    /// Rules, tried in file order.
    #[serde(default)]
    pub rule: Vec<Spanned<RawRule>>,
    /// Policy unit tests, run by `portguard test`.
    #[serde(default)]
    pub test: Vec<Spanned<RawTest>>,
}

/// `[defaults]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// Action when no rule applies.
    pub action: Option<Spanned<String>>,
    /// Default grace period of `terminate`.
    pub grace: Option<Spanned<String>>,
    /// Default timeout of `wait`, `reuse` and `terminate`.
    pub timeout: Option<Spanned<String>>,
}

/// One `[[rule]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Unique name.
    pub name: Spanned<String>,
    /// Why the rule exists.
    pub description: Option<String>,
    /// Ports the rule is limited to: numbers and `"a-b"` ranges.
    pub ports: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    /// Criteria every group root must satisfy.
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
    /// `terminate`, `wait`, `refuse` or `reuse`.
    pub action: Spanned<String>,
    /// terminate: first signal.
    pub signal: Option<Spanned<String>>,
    /// terminate: time from first signal to escalation.
    pub grace: Option<Spanned<String>>,
    /// terminate: escalation signal, or `false`.
    pub escalate: Option<Spanned<toml::Value>>,
    /// terminate, wait, reuse: give up after this.
    pub timeout: Option<Spanned<String>>,
    /// wait, reuse: action to fall back to.
    pub then: Option<Spanned<String>>,
    /// refuse: message template.
    pub message: Option<Spanned<String>>,
    /// reuse: health check.
    pub health: Option<Spanned<String>>,
    /// reuse: regex the health response body must contain.
    pub health_body: Option<Spanned<String>>,
}

/// `match` table of a rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// Regex searched in argv joined by spaces.
    pub cmdline: Option<Spanned<String>>,
    /// Regex searched in the executable path.
    pub exe: Option<Spanned<String>>,
    /// User name, uid, `"$self"` or a list of them.
    pub user: Option<Spanned<toml::Value>>,
    /// Whether the owner's parent has exited.
    pub orphan: Option<Spanned<bool>>,
}

/// One `[[test]]` case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTest {
    /// Name shown by `portguard test`.
    pub name: String,
    /// Port being resolved.
    pub port: Spanned<i64>,
    /// `tcp` (default) or `udp`.
    pub protocol: Option<Spanned<String>>,
    /// Who runs portguard: a user name or uid (for `"$self"`).
    #[serde(rename = "self")]
    pub self_user: Option<Spanned<toml::Value>>,
    /// The expected decision.
    pub expect: RawExpect,
    /// Holders of the port, as data.
    #[serde(default)]
    pub owners: Vec<RawOwner>,
}

/// `expect` of a test case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    /// Name of the rule that must apply (`"default"` for none).
    pub rule: Option<String>,
    /// Action that must be chosen.
    pub action: Option<String>,
    /// Planned outcome.
    pub outcome: Option<String>,
}

/// One owner of a test case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOwner {
    /// Process id (absent: an owner that cannot be seen).
    pub pid: Option<u32>,
    /// Parent pid.
    pub ppid: Option<u32>,
    /// User name.
    pub user: Option<String>,
    /// uid.
    pub uid: Option<u32>,
    /// Executable path.
    pub exe: Option<String>,
    /// argv.
    pub cmdline: Option<Vec<String>>,
    /// Whether the parent has exited (default: ppid is 1).
    pub orphan: Option<bool>,
    /// Local address, `ip:port`.
    pub addr: Option<String>,
}
