//! The policy model: what a TOML policy means once it has been checked, and
//! how it is found and loaded.
//!
//! Loading is strict on purpose. A policy decides which processes receive
//! SIGKILL, so a typo, a setting that belongs to another action or a regex
//! that does not compile is an error with its place in the file — never a
//! silently ignored key.

mod builtin;
pub mod limits;
mod load;
pub mod raw;
mod template;

pub use builtin::{locate, parse_policy_arg, LookupEnv, PolicySource, BUILTINS};
pub use load::{load_file, load_source};
pub use template::{DirTemplate, Placeholder, Template};

use crate::diagnostic::{self, Diagnostic, Severity};
use regex_automata::meta::Regex;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
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
        let Some(first) = patterns.first() else {
            return Ok(());
        };
        let budget = Arc::clone(&first.budget);
        let mut left = budget.lock();
        let mut diagnostics = Vec::new();
        for p in patterns {
            let result = if Arc::ptr_eq(&p.budget, &budget) {
                p.compiled.get_or_init(|| p.build(&mut left)).as_ref()
            } else {
                // A pattern made for another policy's budget.
                p.compiled()
            };
            let Err(e) = result else { continue };
            let help = match e {
                CompileError::OverBudget { .. } => format!(
                    "simplify this regex or the ones before it: ASCII classes such as [a-z0-9_] or (?-u:\\w) instead of \\w, fewer or smaller counted repetitions {{n}}; all regexes of a policy compile to at most {}",
                    limits::bytes(limits::REGEX_BUDGET as u64)
                ),
                _ => "simplify the regex (fewer or smaller repetitions, narrower classes)".to_string(),
            };
            diagnostics
                .push(Diagnostic::error(e.to_string(), Some(p.span.clone())).with_help(help));
            if !matches!(e, CompileError::Invalid(_)) {
                break;
            }
        }
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
    /// Action when no rule applies; never `terminate` (SPEC safety: never
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

/// A regex from a policy. Its syntax is checked when the policy loads, but
/// it is compiled on first use: a pre-start hook on a free port never needs
/// it, and compiling is most of the cost of loading a policy. `check` and
/// `test`, and `resolve` as soon as a port is held, compile every pattern
/// first ([`Policy::compile`]), so a regex over the size limit is still an
/// error with its place in the file before anything is decided.
///
/// The regexes of a policy share one budget ([`limits::REGEX_BUDGET`]):
/// each is compiled with what is left of it, and what the compiled regex
/// takes (as the regex engine measures it) is subtracted.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    span: std::ops::Range<usize>,
    compiled: Arc<OnceLock<Result<Regex, CompileError>>>,
    budget: Arc<RegexBudget>,
}

/// The compiled-regex budget shared by the patterns of one policy.
#[derive(Debug)]
pub struct RegexBudget {
    /// Bytes left. Held while a pattern compiles, so patterns compile one
    /// at a time and in a definite order.
    left: Mutex<usize>,
    /// How many patterns share it (sizes each one's lazy-DFA cache).
    patterns: AtomicUsize,
}

impl RegexBudget {
    /// A full budget.
    pub fn new() -> Arc<Self> {
        Arc::new(RegexBudget {
            left: Mutex::new(limits::REGEX_BUDGET),
            patterns: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        self.left.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a pattern did not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileError {
    /// The regex alone is over the size limit of one regex.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The regex did not fit in what the regexes before it left of the
    /// policy's budget.
    OverBudget {
        /// Bytes that were left.
        left: usize,
    },
    /// The regex engine refused it for another reason.
    Invalid(String),
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::TooLarge { limit } => write!(
                f,
                "regex is too large: it compiles to more than the {limit}-byte limit"
            ),
            CompileError::OverBudget { left } => write!(
                f,
                "the policy's regexes together compile to more than {}: this one needs more than the {} the regexes before it left",
                limits::bytes(limits::REGEX_BUDGET as u64),
                limits::approx_bytes(*left as u64)
            ),
            CompileError::Invalid(e) => write!(f, "invalid regex: {e}"),
        }
    }
}

impl Pattern {
    /// A pattern whose syntax has been checked, at `span` in the policy,
    /// compiled within `budget` (one per policy).
    pub fn new(source: String, span: std::ops::Range<usize>, budget: &Arc<RegexBudget>) -> Self {
        budget.patterns.fetch_add(1, Ordering::Relaxed);
        Pattern {
            source,
            span,
            compiled: Arc::new(OnceLock::new()),
            budget: Arc::clone(budget),
        }
    }

    /// The regex as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Compiles the regex with at most `left` bytes, and takes what it
    /// uses from `left`. The forward and the reverse automaton the engine
    /// builds each get half, so a regex that does not fit costs at most
    /// `left` bytes of work before it fails.
    fn build(&self, left: &mut usize) -> Result<Regex, CompileError> {
        let per_automaton = (*left / 2).min(limits::MAX_REGEX_NFA);
        let patterns = self.budget.patterns.load(Ordering::Relaxed);
        // As `regex::Regex::new` configures it.
        let config = regex_automata::meta::Config::new()
            .match_kind(regex_automata::MatchKind::LeftmostFirst)
            .utf8_empty(true)
            .nfa_size_limit(Some(per_automaton))
            .hybrid_cache_capacity(limits::regex_cache_capacity(patterns));
        // With the whole budget left, the regex is too large on its own.
        let alone = *left == limits::REGEX_BUDGET;
        let over = |e: Option<usize>| match e {
            _ if !alone => CompileError::OverBudget { left: *left },
            Some(limit) => CompileError::TooLarge { limit },
            None => CompileError::TooLarge {
                limit: limits::REGEX_BUDGET,
            },
        };
        let built = regex_automata::meta::Builder::new()
            .configure(config)
            .syntax(regex_automata::util::syntax::Config::new().utf8(true))
            .build(&self.source);
        let re = match built {
            Ok(re) => re,
            Err(e) => match e.size_limit() {
                Some(limit) => {
                    let error = over(Some(limit));
                    // The work done up to the limit counts too, so regexes
                    // that fail one after another cannot each spend the
                    // whole budget.
                    *left -= per_automaton.min(*left);
                    return Err(error);
                }
                None => return Err(CompileError::Invalid(e.to_string())),
            },
        };
        let used = re.memory_usage();
        if used > *left {
            return Err(over(None));
        }
        *left -= used;
        Ok(re)
    }

    /// The compiled regex, compiling it on first use.
    fn compiled(&self) -> Result<&Regex, &CompileError> {
        if let Some(done) = self.compiled.get() {
            return done.as_ref();
        }
        // The budget first, then the cell: the order `Policy::compile`
        // takes them in, so the two never wait for each other.
        let mut left = self.budget.lock();
        self.compiled.get_or_init(|| self.build(&mut left)).as_ref()
    }

    /// Whether the regex is found in `text`. A pattern that cannot be
    /// compiled matches nothing (and [`Policy::compile`] reports it).
    pub fn is_match(&self, text: &str) -> bool {
        self.compiled().is_ok_and(|re| re.is_match(text))
    }
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

/// The four kinds of action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Signal the holders until the port is free.
    Terminate,
    /// Wait, touching nothing, until the holders release the port.
    Wait,
    /// Leave the holder alone and report it.
    Refuse,
    /// Accept the holder as the server to use.
    Reuse,
}

impl ActionKind {
    /// Name as written in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Terminate => "terminate",
            ActionKind::Wait => "wait",
            ActionKind::Refuse => "refuse",
            ActionKind::Reuse => "reuse",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "terminate" => ActionKind::Terminate,
            "wait" => ActionKind::Wait,
            "refuse" => ActionKind::Refuse,
            "reuse" => ActionKind::Reuse,
            _ => return None,
        })
    }

    /// The rule keys that configure this action.
    pub fn settings(self) -> &'static [&'static str] {
        match self {
            ActionKind::Terminate => &["signal", "grace", "escalate", "timeout"],
            ActionKind::Wait => &["timeout", "then"],
            ActionKind::Refuse => &["message"],
            ActionKind::Reuse => &[
                "health",
                "health_body",
                "health_status",
                "health_any_host",
                "timeout",
                "then",
            ],
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action with every setting resolved (rule, then `[defaults]`, then the
/// built-in defaults).
#[derive(Debug, Clone)]
pub enum Action {
    /// Signal every member of the matched groups, escalate after `grace`.
    Terminate(Terminate),
    /// Wait until the port is free, up to `timeout`, then `then` (or fail).
    Wait {
        /// Give up after this.
        timeout: Duration,
        /// Fallback action; `None` fails with exit 5.
        then: Option<Box<Action>>,
    },
    /// Do nothing; exit 4 with a message.
    Refuse {
        /// Message template; `None` uses the built-in message.
        message: Option<Template>,
    },
    /// Accept the holder; exit 3.
    Reuse {
        /// Check that the holder answers before accepting it.
        health: Option<Health>,
        /// Time allowed for the health check.
        timeout: Duration,
        /// Fallback when the health check fails; `None` fails with exit 5.
        then: Option<Box<Action>>,
    },
}

impl Action {
    /// The kind of this action.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Terminate(_) => ActionKind::Terminate,
            Action::Wait { .. } => ActionKind::Wait,
            Action::Refuse { .. } => ActionKind::Refuse,
            Action::Reuse { .. } => ActionKind::Reuse,
        }
    }

    /// The fallback action, when there is one.
    pub fn then(&self) -> Option<&Action> {
        match self {
            Action::Wait { then, .. } | Action::Reuse { then, .. } => then.as_deref(),
            _ => None,
        }
    }

    /// Whether carrying out this action (or its fallback) may send signals.
    pub fn may_signal(&self) -> bool {
        matches!(self, Action::Terminate(_)) || self.then().is_some_and(Action::may_signal)
    }
}

/// Settings of `terminate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terminate {
    /// First signal (default SIGTERM).
    pub signal: Signal,
    /// Time from the first signal to escalation.
    pub grace: Duration,
    /// Escalation signal; `None` never escalates.
    pub escalate: Option<Signal>,
    /// Give up this long after the first signal.
    pub timeout: Duration,
    /// After the port is free, watch it this long for a restarted server
    /// when a terminated holder had a live parent (`[defaults] settle`).
    pub settle: Duration,
}

/// How `reuse` checks that the holder is alive and answering.
#[derive(Debug, Clone)]
pub enum Health {
    /// A TCP connect to the held address succeeds.
    Tcp,
    /// An HTTP GET answers with an accepted status (and its body contains
    /// `body`, when given).
    Http {
        /// URL template; `{port}` is replaced by the port being resolved.
        url: String,
        /// Regex the response body must contain.
        body: Option<Pattern>,
        /// The status codes that count as an answer (default 200-299).
        status: StatusCodes,
    },
}

/// HTTP status codes a health check accepts: codes and inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCodes(pub Vec<(u16, u16)>);

impl Default for StatusCodes {
    /// Any 2xx.
    fn default() -> Self {
        StatusCodes(vec![(200, 299)])
    }
}

impl StatusCodes {
    /// Whether `status` is accepted.
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

impl fmt::Display for StatusCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// A signal portguard may send, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    /// Canonical name, e.g. `SIGTERM`.
    pub name: &'static str,
    /// Signal number on this platform.
    pub number: i32,
}

impl Signal {
    /// SIGTERM.
    pub const TERM: Signal = Signal::known("SIGTERM", rustix::process::Signal::TERM);
    /// SIGKILL.
    pub const KILL: Signal = Signal::known("SIGKILL", rustix::process::Signal::KILL);
    /// SIGCONT: sent after the terminate signal (never named by a policy),
    /// so a stopped holder runs its shutdown at once, as systemd does.
    pub const CONT: Signal = Signal::known("SIGCONT", rustix::process::Signal::CONT);

    const fn known(name: &'static str, sig: rustix::process::Signal) -> Signal {
        Signal {
            name,
            number: sig.as_raw(),
        }
    }

    /// Signals a policy may name. Stop/continue and fault signals are left
    /// out: they do not end a process the way a user asking to free a port
    /// means.
    pub const ALL: [Signal; 9] = {
        use rustix::process::Signal as S;
        [
            Signal::known("SIGTERM", S::TERM),
            Signal::known("SIGKILL", S::KILL),
            Signal::known("SIGINT", S::INT),
            Signal::known("SIGHUP", S::HUP),
            Signal::known("SIGQUIT", S::QUIT),
            Signal::known("SIGUSR1", S::USR1),
            Signal::known("SIGUSR2", S::USR2),
            Signal::known("SIGABRT", S::ABORT),
            Signal::known("SIGALRM", S::ALARM),
        ]
    };

    /// Parses `SIGTERM`, `TERM` or `sigterm`.
    pub fn parse(s: &str) -> Option<Signal> {
        let upper = s.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        Signal::ALL.into_iter().find(|sig| sig.name == name)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
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
            self.file,
            if errors == 1 { "" } else { "s" }
        ));
        out
    }
}

fn dur(d: &Duration) -> humantime::FormattedDuration {
    humantime::format_duration(*d)
}

/// The plan in words, including settings and the fallback chain, e.g.
/// `wait up to 5s for the port to be released, then terminate (SIGTERM; SIGKILL after 1s; give up after 5s)`.
impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Terminate(t) => {
                write!(f, "terminate ({}", t.signal)?;
                match t.escalate {
                    Some(sig) => write!(f, "; {sig} after {}", dur(&t.grace))?,
                    None => f.write_str("; never escalate")?,
                }
                write!(f, "; give up after {})", dur(&t.timeout))
            }
            Action::Wait { timeout, then } => {
                write!(f, "wait up to {} for the port to be released", dur(timeout))?;
                match then {
                    Some(next) => write!(f, ", then {next}"),
                    None => f.write_str(", then fail"),
                }
            }
            Action::Refuse { .. } => f.write_str("refuse"),
            Action::Reuse {
                health,
                timeout,
                then,
            } => {
                f.write_str("reuse")?;
                if let Some(h) = health {
                    write!(f, " if {h} answers within {}", dur(timeout))?;
                    match then {
                        Some(next) => write!(f, ", else {next}")?,
                        None => f.write_str(", else fail")?,
                    }
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Tcp => f.write_str("a tcp connect"),
            Health::Http { url, body, status } => {
                write!(f, "GET {url}")?;
                if *status != StatusCodes::default() {
                    write!(f, " (status {status})")?;
                }
                if let Some(re) = body {
                    write!(f, " (body matching '{}')", re.as_str())?;
                }
                Ok(())
            }
        }
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
        "A portguard policy: rules that decide what happens to the processes holding a port (SPEC.md, \"Policy format\").".into(),
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
