//! The JSON documents portguard prints with `--format json`, as typed,
//! documented structures: what `serde` writes is exactly what `schemars`
//! describes (`portguard schema report`, `schema/report.schema.json`), so
//! the output cannot drift from its schema.
//!
//! Every document has `schema_version` (1) and `exit_code`. Fields may be
//! added in later versions; none is renamed or removed without a new
//! `schema_version`.

use super::{words, PolicyInfo};
use crate::act::steps::Step;
use crate::act::Failure;
use crate::diagnostic::{Diagnostic, Severity, SourceIndex};
use crate::evaluate::{Blocked, Check, RuleTrace};
use crate::exit::Exit;
use crate::model::{
    Clients, Container, Holder, Outcome, PortState, Protocol, SocketEntry, Unknown,
};
use crate::policy::ActionKind;
use crate::resolver::{End, PortReport};
use schemars::JsonSchema;
use serde::Serialize;

/// The version of the JSON documents' layout.
pub const SCHEMA_VERSION: u32 = 1;

/// The document of `portguard resolve --format json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ResolveDoc {
    /// Layout version of this document (1).
    pub schema_version: u32,
    /// The exit code of the run: the worst of the ports' codes.
    pub exit_code: u8,
    /// The policy used.
    pub policy: PolicyDoc,
    /// One entry per port, ascending.
    pub ports: Vec<PortDoc>,
    /// Things the run noticed that are not about one port (a lock
    /// directory another user could control, passed over).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The policy a run used.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PolicyDoc {
    /// Its name.
    pub name: String,
    /// `"built-in"` or the file's path.
    pub source: String,
}

/// One resolved port.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PortDoc {
    /// The port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// `free`, `freed`, `reuse`, `refused` or `failed`; with `dry_run`, the
    /// planned outcome.
    pub outcome: Outcome,
    /// The rule that applied; `null` when no rule did and the policy's
    /// default action applied (`portguard test` calls that `"default"`), or
    /// when the port was free.
    pub rule: Option<String>,
    /// The action chosen (`terminate`, `wait`, `refuse`, `reuse`); `null`
    /// when the port was free.
    pub action: Option<ActionKind>,
    /// True for `--explain`: nothing was acted on.
    pub dry_run: bool,
    /// Every holder found first, processes in pid order, then owners whose
    /// pid is unknown.
    pub holders: Vec<HolderDoc>,
    /// What was done, timed.
    pub steps: Vec<StepDoc>,
    /// One sentence for people: what happened, and who holds the port when
    /// it was not freed.
    pub message: String,
    /// For a failed port: why, as a machine-readable word (`timeout`,
    /// `permission_denied`, `pid_unknown`, `identity_unknown`,
    /// `signal_failed`, `unhealthy`, `wait_timeout`, `retaken`,
    /// `interrupted`, `time_wait`, `not_bindable`, `lock_timeout`,
    /// `lock_error`, `internal`); else `null`.
    pub reason: Option<&'static str>,
    /// For a failed port: the reason with its details; else `null`.
    pub failure: Option<Failure>,
    /// Set when the action would signal a holder that must not (protected)
    /// or cannot (no pid) be signalled.
    pub blocked: Option<Blocked>,
    /// Sockets in TIME_WAIT (owned by no process) left on a free or freed
    /// port: a server that does not set SO_REUSEADDR may fail to bind for
    /// up to 60 s.
    pub time_wait: usize,
    /// Every rule of the last round, with every criterion tested.
    pub trace: Vec<RuleDoc>,
    /// The client directories the policy's `match.clients` criteria read
    /// (last round): every record, its pid, and whether it is live or
    /// stale and why.
    pub clients: Vec<Clients>,
    /// Rounds of discover → decide (more than 1 when the port was taken
    /// again after its holders were stopped).
    pub rounds: usize,
}

/// A process (or an owner whose pid is unknown) holding the port.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HolderDoc {
    /// Process id; `null` when the process cannot be seen.
    pub pid: Option<u32>,
    /// Parent pid.
    pub ppid: Option<u32>,
    /// The process's real uid, or the socket's uid without a pid.
    pub uid: u32,
    /// The user name, when the system knows one.
    pub user: Option<String>,
    /// Absolute path of the executable.
    pub exe: Option<String>,
    /// argv, exactly (non-UTF-8 bytes replaced).
    pub cmdline: Option<Vec<String>>,
    /// The first local address it holds, `ip:port`.
    pub addr: Option<String>,
    /// Every local address it holds.
    pub addrs: Vec<String>,
    /// Age in milliseconds.
    pub age_ms: Option<u64>,
    /// Whether its parent has exited (pid 1 or a subreaper adopted it).
    pub orphan: Option<bool>,
    /// Whether it was stopped (SIGSTOP, Ctrl-Z) when discovered.
    pub stopped: Option<bool>,
    /// The pid of the root of its process tree (itself, for a root).
    pub group: Option<u32>,
    /// The systemd unit it runs in (`nginx.service`).
    pub unit: Option<String>,
    /// The container behind a `docker-proxy` holder.
    pub container: Option<Container>,
    /// Why its pid is unknown, in words.
    pub unknown_reason: Option<String>,
    /// Why its pid is unknown, as a word.
    pub unknown: Option<Unknown>,
}

/// One step of an action: `event` names the kind; `pid`/`signal` and the
/// kind's own fields follow.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StepDoc {
    /// The step.
    #[serde(flatten)]
    pub step: Step,
    /// The step in words, when it has more to say than its kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// How one rule fared.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RuleDoc {
    /// The rule's name.
    pub rule: String,
    /// Its line in the policy.
    pub line: usize,
    /// False when an earlier rule had already applied.
    pub reached: bool,
    /// Whether it applied.
    pub applied: bool,
    /// The `ports` check, when the rule limits ports.
    pub ports: Option<Check>,
    /// One entry per process tree: its root and every criterion tested.
    pub groups: Vec<GroupDoc>,
}

/// One rule against one process tree.
#[derive(Debug, Serialize, JsonSchema)]
pub struct GroupDoc {
    /// The root's pid; `null` when unknown.
    pub pid: Option<u32>,
    /// Whether every criterion held.
    pub matched: bool,
    /// Every criterion: what the rule asks for, what was seen, whether it held.
    pub checks: Vec<Check>,
}

/// The document of `portguard who --format json`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WhoDoc {
    /// Layout version of this document (1).
    pub schema_version: u32,
    /// Always 0: `who` only reports.
    pub exit_code: u8,
    /// One entry per port, ascending.
    pub ports: Vec<WhoPortDoc>,
}

/// Who holds one port.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WhoPortDoc {
    /// The port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// `held` or `free`. A port no process holds but that cannot be bound
    /// (only TIME_WAIT remains) is `held`, with no holders.
    pub outcome: &'static str,
    /// Whether a server (setting SO_REUSEADDR) could bind it on the
    /// wildcard address when it was discovered: `false` while anything
    /// holds it, and when only sockets no process owns (TIME_WAIT) block it.
    pub bindable: bool,
    /// The holders, as in `resolve`.
    pub holders: Vec<HolderDoc>,
    /// Sockets on the port that do not hold it (`who --all`, and TIME_WAIT).
    pub others: Vec<SocketDoc>,
}

/// A socket on the port that does not hold it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SocketDoc {
    /// Local address.
    pub local: String,
    /// Remote address.
    pub remote: String,
    /// TCP state name (`ESTABLISHED`, `TIME_WAIT`, ...).
    pub state: &'static str,
    /// Owner uid as the socket table records it.
    pub uid: u32,
    /// Whether a process owns it (false for TIME_WAIT).
    pub owned: bool,
}

/// The document printed on stdout with `--format json` when the run could
/// not start (exit 2: a usage or policy error) or failed inside (exit 70),
/// so a program calling `json.loads` never breaks.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorDoc {
    /// Layout version of this document (1).
    pub schema_version: u32,
    /// 2 (usage or policy error) or 70 (internal error).
    pub exit_code: u8,
    /// `usage`, `policy` or `internal`.
    pub kind: &'static str,
    /// The error in words, as portguard prints it on stderr.
    pub error: String,
    /// For a policy error: every problem with its place in the file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<DiagnosticDoc>,
}

/// One problem of a policy file.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DiagnosticDoc {
    /// `error` or `warning`.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// The file.
    pub file: String,
    /// 1-based line, when the problem has a place.
    pub line: Option<usize>,
    /// 1-based column (characters).
    pub column: Option<usize>,
    /// How to fix it.
    pub help: Option<String>,
}

/// Every document portguard prints as JSON, for the published schema.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Document {
    /// `resolve`, `run`.
    Resolve(ResolveDoc),
    /// `who`.
    Who(WhoDoc),
    /// A usage, policy or internal error.
    Error(ErrorDoc),
}

fn holder_doc(h: &Holder, state: &PortState, index: usize) -> HolderDoc {
    HolderDoc {
        pid: h.pid,
        ppid: h.ppid,
        uid: h.uid,
        user: h.user.clone(),
        exe: h.exe.clone(),
        cmdline: h.cmdline.clone(),
        addr: h.addrs.first().map(ToString::to_string),
        addrs: h.addrs.iter().map(ToString::to_string).collect(),
        age_ms: h.age_ms,
        orphan: h.orphan,
        stopped: h.stopped,
        group: state
            .group_of(index)
            .and_then(|g| state.holders()[g.root].pid),
        unit: h.unit.as_ref().map(|u| u.name.clone()),
        container: h.container.clone(),
        unknown_reason: words::holder_unknown(h),
        unknown: h.unknown,
    }
}

fn holders(state: &PortState) -> Vec<HolderDoc> {
    state
        .holders()
        .iter()
        .enumerate()
        .map(|(i, h)| holder_doc(h, state, i))
        .collect()
}

fn trace(trace: &[RuleTrace]) -> Vec<RuleDoc> {
    trace
        .iter()
        .map(|t| RuleDoc {
            rule: t.rule.clone(),
            line: t.line,
            reached: t.reached,
            applied: t.applied,
            ports: t.ports.clone(),
            groups: t
                .groups
                .iter()
                .map(|g| GroupDoc {
                    pid: g.pid,
                    matched: g.matched,
                    checks: g.checks.clone(),
                })
                .collect(),
        })
        .collect()
}

/// The JSON entry of one resolved port.
pub fn port_doc(r: &PortReport) -> PortDoc {
    let d = r.decision();
    let failure = match &r.end {
        End::Failed(f) => Some(f.clone()),
        _ => None,
    };
    PortDoc {
        port: r.port,
        protocol: r.protocol,
        outcome: r.outcome(),
        rule: d.rule.clone(),
        action: d.action.as_ref().map(|a| a.kind()),
        dry_run: r.dry_run,
        holders: holders(r.state()),
        steps: r
            .steps
            .iter()
            .map(|s| StepDoc {
                step: s.clone(),
                detail: words::step_detail(s),
            })
            .collect(),
        message: words::message(r),
        reason: failure.as_ref().map(Failure::reason),
        failure,
        blocked: d.blocked.clone(),
        time_wait: r.lingering,
        trace: trace(&d.trace),
        clients: r.rounds[r.rounds.len() - 1]
            .state
            .clients
            .values()
            .cloned()
            .collect(),
        rounds: r.rounds.len(),
    }
}

fn to_json(doc: &impl Serialize) -> String {
    serde_json::to_string_pretty(doc).unwrap_or_default()
}

/// The document of `resolve`.
pub fn resolve_json(
    reports: &[PortReport],
    policy: &PolicyInfo,
    exit: Exit,
    notes: Vec<String>,
) -> String {
    to_json(&ResolveDoc {
        schema_version: SCHEMA_VERSION,
        exit_code: exit.code(),
        policy: PolicyDoc {
            name: policy.name.clone(),
            source: policy.source.clone(),
        },
        ports: reports.iter().map(port_doc).collect(),
        notes,
    })
}

fn socket_doc(s: &SocketEntry) -> SocketDoc {
    SocketDoc {
        local: s.local.to_string(),
        remote: s.remote.to_string(),
        state: s.state_name(),
        uid: s.uid,
        owned: s.inode != 0,
    }
}

/// The document of `who`.
pub fn who_json(states: &[PortState]) -> String {
    to_json(&WhoDoc {
        schema_version: SCHEMA_VERSION,
        exit_code: 0,
        ports: states
            .iter()
            .map(|s| {
                // A listener is not probed (it certainly blocks a bind).
                let bindable = s.holders().is_empty() && s.bindable();
                WhoPortDoc {
                    port: s.port,
                    protocol: s.protocol,
                    outcome: if bindable { "free" } else { "held" },
                    bindable,
                    holders: holders(s),
                    others: s.others.iter().map(socket_doc).collect(),
                }
            })
            .collect(),
    })
}

/// The document of an error that ended a run before any port was resolved.
pub fn error_json(
    exit: Exit,
    kind: &'static str,
    error: &str,
    diagnostics: Vec<DiagnosticDoc>,
) -> String {
    to_json(&ErrorDoc {
        schema_version: SCHEMA_VERSION,
        exit_code: exit.code(),
        kind,
        error: error.to_string(),
        diagnostics,
    })
}

/// A policy's problems as JSON entries.
pub fn diagnostics(file: &str, text: &str, list: &[Diagnostic]) -> Vec<DiagnosticDoc> {
    let index = SourceIndex::new(text);
    list.iter()
        .map(|d| {
            let at = d.span.as_ref().map(|s| index.line_col(s.start));
            DiagnosticDoc {
                severity: d.severity,
                message: d.message.clone(),
                file: file.to_string(),
                line: at.map(|(l, _)| l),
                column: at.map(|(_, c)| c),
                help: d.help.clone(),
            }
        })
        .collect()
}

/// The JSON Schema of every document (`portguard schema report`).
pub fn schema() -> String {
    let mut schema = schemars::schema_for!(Document);
    schema.insert("title".into(), "portguard report".into());
    schema.insert(
        "description".into(),
        "What portguard prints with --format json: the document of resolve/run, of who, or of an error (exit 2 or 70).".into(),
    );
    let mut text = serde_json::to_string_pretty(&schema.to_value()).unwrap_or_default();
    text.push('\n');
    text
}
