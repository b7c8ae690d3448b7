//! The policy model: what a TOML policy means once it has been checked, and
//! how it is found and loaded.
//!
//! Loading is strict on purpose. A policy decides which processes receive
//! SIGKILL, so a typo, a setting that belongs to another action or a regex
//! that does not compile is an error with its place in the file — never a
//! silently ignored key.

mod action;
mod builtin;
pub mod limits;
mod load;
mod pattern;
pub mod raw;
mod template;

pub use action::{Action, ActionKind, Health, Signal, StatusCodes, Terminate};
pub use builtin::{
    locate, parse_policy_arg, rules_part, LookupEnv, PolicySource, BUILTINS, TESTS_MARKER,
};
pub use load::{load_file, load_source};
pub use pattern::{CompileError, Pattern, RegexBudget};
pub use template::{DirTemplate, Placeholder, Template};

use crate::diagnostic::{self, Diagnostic, Severity};
use std::fmt;
use std::time::Duration;

use crate::ports::PortRange;

/// A checked policy, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Name (from the file, or the file stem).
    pub name: String,
    /// What the policy is for.
    pub description: Option<String>,
    /// Where it came from.
    pub source: PolicySource,
    /// Defaults for rules and the action when no rule applies.
    pub defaults: Defaults,
    /// Rules in file order.
    pub rules: Vec<Rule>,
    /// Policy unit tests (`[[test]]`), run by `portguard test`.
    pub tests: Vec<TestCase>,
    /// Warnings found while loading (the policy is usable).
    pub warnings: Vec<Diagnostic>,
    /// Source text, kept to render warnings with their lines.
    pub text: String,
}

impl Policy {
    /// Every regex of the policy.
    fn patterns(&self) -> impl Iterator<Item = &Pattern> {
        fn health(a: &Action) -> Option<&Pattern> {
            match a {
                Action::Reuse {
                    health: Some(Health::Http { body, .. }),
                    ..
                } => body.as_ref(),
                _ => a.then().and_then(health),
            }
        }
        self.rules.iter().flat_map(|r| {
            [
                r.criteria.cmdline.as_ref(),
                r.criteria.exe.as_ref(),
                r.criteria.unit.as_ref(),
                r.criteria.container.as_ref(),
                r.criteria.image.as_ref(),
                health(&r.action),
            ]
            .into_iter()
            .flatten()
        })
    }

    /// Compiles every regex (each once; later calls are free), in file
    /// order, reporting those that fail with their place in the file. The
    /// first regex that is too large — alone, or for what the regexes
    /// before it left of the policy's budget — ends it: the ones after it
    /// are not compiled (the policy is invalid anyway, and each attempt
    /// would cost up to the budget).
    pub fn compile(&self) -> Result<(), Invalid> {
        let patterns: Vec<&Pattern> = self.patterns().collect();
        let diagnostics: Vec<Diagnostic> = pattern::compile_all(&patterns)
            .into_iter()
            .map(|(p, e)| {
                let help = match e {
                    CompileError::OverBudget { .. } => format!(
                        "simplify this regex or the ones before it: ASCII classes such as [a-z0-9_] or (?-u:\\w) instead of \\w, fewer or smaller counted repetitions {{n}}; all regexes of a policy compile to at most {}",
                        limits::bytes(limits::REGEX_BUDGET as u64)
                    ),
                    _ => "simplify the regex (fewer or smaller repetitions, narrower classes)".to_string(),
                };
                Diagnostic::error(e.to_string(), Some(p.span())).with_help(help)
            })
            .collect();
        if diagnostics.is_empty() {
            return Ok(());
        }
        Err(Invalid {
            file: self.source.display_name(),
            text: self.text.clone(),
            diagnostics,
        })
    }

    /// Every distinct `match.clients` directory of the rules.
    pub fn client_dirs(&self) -> Vec<&DirTemplate> {
        let mut dirs: Vec<&DirTemplate> = Vec::new();
        for c in self
            .rules
            .iter()
            .filter_map(|r| r.criteria.clients.as_ref())
        {
            if !dirs.iter().any(|d| d.as_str() == c.dir.as_str()) {
                dirs.push(&c.dir);
            }
        }
        dirs
    }

    /// Every user name the rules' `match.user` criteria give (not uids, not
    /// `"$self"`): the names to look up before evaluating.
    pub fn user_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .rules
            .iter()
            .filter_map(|r| r.criteria.user.as_ref())
            .flatten()
            .filter_map(|u| match u {
                UserSpec::Name(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The longest any single action of this policy may take (timeouts
    /// and grace periods, fallbacks included): bounds how long a second
    /// portguard waits for this one's lock.
    pub fn longest_timeout(&self) -> Duration {
        fn longest(a: &Action) -> Duration {
            let own = match a {
                Action::Terminate(t) => t.timeout.max(t.grace),
                Action::Wait { timeout, .. } | Action::Reuse { timeout, .. } => *timeout,
                Action::Refuse { .. } => Duration::ZERO,
            };
            own.saturating_add(a.then().map_or(Duration::ZERO, longest))
        }
        self.rules
            .iter()
            .map(|r| longest(&r.action))
            .chain([longest(&self.defaults.action), self.defaults.timeout])
            .max()
            .unwrap_or_default()
    }
}

/// `[defaults]` with every value filled in.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Action when no rule applies; never `terminate` (docs/safety.md: never
    /// signal a process no rule matched).
    pub action: Action,
    /// Default grace of `terminate`.
    pub grace: Duration,
    /// Default timeout of `wait`, `reuse` and `terminate`.
    pub timeout: Duration,
    /// How long a freed port whose holder had a live parent is watched for
    /// a restarted server.
    pub settle: Duration,
}

/// A checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// Why it exists.
    pub description: Option<String>,
    /// Ports it is limited to; `None` means every port.
    pub ports: Option<Vec<PortRange>>,
    /// What every group root must satisfy.
    pub criteria: Criteria,
    /// What to do when it applies.
    pub action: Action,
    /// 1-based line of the `[[rule]]` table, for traces.
    pub line: usize,
    /// Byte span of the rule's name, for diagnostics about the rule.
    pub name_span: std::ops::Range<usize>,
}

/// A `[[test]]` case: owners as data and the decision they must produce.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// Name shown by `portguard test`.
    pub name: String,
    /// 1-based line of the `[[test]]` table.
    pub line: usize,
    /// Port being resolved.
    pub port: u16,
    /// Protocol (default TCP).
    pub protocol: crate::model::Protocol,
    /// Who runs portguard, for `"$self"`: a uid and/or a name.
    pub self_uid: Option<u32>,
    /// Name of the user running portguard.
    pub self_name: Option<String>,
    /// The expected decision.
    pub expect: Expect,
    /// Holders of the port, as data.
    pub owners: Vec<crate::model::Holder>,
    /// What every `match.clients` directory shows.
    pub clients: TestClients,
    /// Whether the holders answer a `reuse` rule's health check; when they
    /// do not, the case plans the rule's `then`.
    pub healthy: bool,
}

/// The client records a test case's rules see, as data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestClients {
    /// Pids of live clients.
    pub live: Vec<u32>,
    /// Pids of stale records.
    pub stale: Vec<u32>,
    /// The directory cannot be read.
    pub unreadable: bool,
}

/// What a test case expects; absent fields are not checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    /// The rule that must apply; `"default"` when no rule may apply.
    pub rule: Option<String>,
    /// The action that must be chosen.
    pub action: Option<ActionKind>,
    /// The planned outcome.
    pub outcome: Option<crate::model::Outcome>,
}

/// The `match` criteria of a rule; `None` matches anything.
#[derive(Debug, Clone, Default)]
pub struct Criteria {
    /// Regex searched in argv joined by single spaces.
    pub cmdline: Option<Pattern>,
    /// Regex searched in the absolute executable path.
    pub exe: Option<Pattern>,
    /// Accepted owners.
    pub user: Option<Vec<UserSpec>>,
    /// Required orphan state.
    pub orphan: Option<bool>,
    /// Required state of the holder's recorded clients.
    pub clients: Option<ClientsCriterion>,
    /// Regex searched in the systemd unit's name.
    pub unit: Option<Pattern>,
    /// Regex searched in the container's name.
    pub container: Option<Pattern>,
    /// Regex searched in the container's image reference.
    pub image: Option<Pattern>,
}

impl Criteria {
    /// True when the rule has no criteria and so applies to every owner.
    pub fn is_empty(&self) -> bool {
        self.cmdline.is_none()
            && self.exe.is_none()
            && self.user.is_none()
            && self.orphan.is_none()
            && self.clients.is_none()
            && self.unit.is_none()
            && self.container.is_none()
            && self.image.is_none()
    }
}

/// `match.clients`: whether the server has live clients, recorded as one
/// file per client (`<pid>` or `<pid>.<ext>`) in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientsCriterion {
    /// Where the records are.
    pub dir: DirTemplate,
    /// `true`: holds when a recorded client is alive. `false`: holds when
    /// it is known that none is (no directory, or only stale records). An
    /// unreadable directory satisfies neither.
    pub live: bool,
}

/// One accepted user in `match.user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSpec {
    /// A numeric uid.
    Uid(u32),
    /// A user name.
    Name(String),
    /// `"$self"`: the user running portguard.
    Me,
}

impl fmt::Display for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserSpec::Uid(u) => write!(f, "{u}"),
            UserSpec::Name(n) => f.write_str(n),
            UserSpec::Me => f.write_str("$self"),
        }
    }
}

/// Errors from finding or loading a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a regular file (a FIFO, a device, a directory...):
    /// reading it could block forever or never end.
    #[error("cannot read policy {path}: it is {kind}; a policy must be a regular file")]
    NotRegular {
        /// The path given.
        path: String,
        /// What it is instead, e.g. "a FIFO (named pipe)".
        kind: &'static str,
    },
    /// The file is larger than [`limits::MAX_POLICY_BYTES`].
    #[error(
        "cannot read policy {path}: it is {size} bytes, and a policy may be at most {} ({} bytes)",
        limits::bytes(limits::MAX_POLICY_BYTES),
        limits::MAX_POLICY_BYTES
    )]
    TooLarge {
        /// The path given.
        path: String,
        /// Its size (or how much of it was read before giving up).
        size: u64,
    },
    /// `--policy NAME` named no built-in policy.
    #[error("unknown built-in policy '{0}' (built-ins: {builtins}); to use a file, give a path such as ./{0}.toml", builtins = BUILTINS.iter().map(|b| b.0).collect::<Vec<_>>().join(", "))]
    UnknownBuiltin(String),
    /// The policy has errors; each diagnostic has its place in the file.
    #[error("{}", .0.render_all())]
    Invalid(Invalid),
}

/// A policy that failed to load, with every problem found.
#[derive(Debug, Clone)]
pub struct Invalid {
    /// File name as the user gave it (or `<built-in NAME>`).
    pub file: String,
    /// The source text.
    pub text: String,
    /// Every problem, errors and warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Invalid {
    /// Renders every diagnostic, then a summary line.
    pub fn render_all(&self) -> String {
        let mut out = String::new();
        let index = diagnostic::SourceIndex::new(&self.text);
        for d in &self.diagnostics {
            out.push_str(&diagnostic::render_indexed(d, &self.file, &index));
        }
        let errors = self
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        out.push_str(&format!(
            "policy {} has {errors} error{}",
            crate::terminal::printable(&self.file),
            if errors == 1 { "" } else { "s" }
        ));
        out
    }
}

/// The JSON Schema of the policy format, generated from the very types the
/// loader deserialises (so it cannot drift from what `check` accepts), with
/// descriptions from their doc comments. `portguard schema` prints it and
/// `schema/policy.schema.json` is a committed copy.
pub fn schema_json() -> String {
    let mut schema = schemars::schema_for!(raw::RawPolicy);
    schema.insert("title".into(), "portguard policy".into());
    schema.insert(
        "description".into(),
        "A portguard policy: rules that decide what happens to the processes holding a port (docs/policy.md).".into(),
    );
    let mut value = schema.to_value();
    drop_null_defaults(&mut value);
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// `#[serde(default)]` (needed so optional custom-schema fields are not
/// listed as required) makes schemars emit `"default": null`; TOML has no
/// null, so those annotations would only mislead editors.
fn drop_null_defaults(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if map.get("default").is_some_and(serde_json::Value::is_null) {
                map.remove("default");
            }
            map.values_mut().for_each(drop_null_defaults);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_null_defaults),
        _ => {}
    }
}
