//! Rendering reports for people (human text, the `--explain` trace) and for
//! programs (JSON). Each renderer reads the same [`PortReport`] data; none of
//! them decides anything.

use crate::evaluate::{Blocked, Outcome, RuleTrace};
use crate::exit::Exit;
use crate::model::{printable, Holder, PortState};
use crate::policy::{Action, Policy};
use crate::resolver::PortReport;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::Duration;

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

    fn json(&self) -> Value {
        json!({ "name": self.name, "source": self.source })
    }
}

fn holder_json(h: &Holder, state: &PortState, index: usize) -> Value {
    let group_root = state
        .groups
        .iter()
        .find(|g| g.members.contains(&index))
        .and_then(|g| state.holders[g.root].pid);
    json!({
        "pid": h.pid,
        "ppid": h.ppid,
        "uid": h.uid,
        "user": h.user,
        "exe": h.exe,
        "cmdline": h.cmdline,
        "addr": h.addrs.first().map(ToString::to_string),
        "addrs": h.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "age_ms": h.age_ms,
        "orphan": h.orphan,
        "group": group_root,
        "unknown_reason": h.unknown_reason,
    })
}

fn holders_json(state: &PortState) -> Vec<Value> {
    state
        .holders
        .iter()
        .enumerate()
        .map(|(i, h)| holder_json(h, state, i))
        .collect()
}

fn trace_json(trace: &[RuleTrace]) -> Value {
    serde_json::to_value(trace).unwrap_or(Value::Null)
}

/// The JSON document of `resolve` (SPEC "Output").
pub fn resolve_json(reports: &[PortReport], policy: &PolicyInfo, exit: Exit) -> String {
    let ports: Vec<Value> = reports
        .iter()
        .map(|r| {
            let d = r.decision();
            json!({
                "port": r.port,
                "protocol": r.protocol,
                "outcome": r.outcome,
                "rule": d.rule,
                "action": d.action.as_ref().map(Action::kind),
                "dry_run": r.dry_run,
                "holders": holders_json(r.state()),
                "steps": r.steps,
                "message": r.message,
                "blocked": d.blocked,
                "trace": trace_json(&d.trace),
            })
        })
        .collect();
    let doc = json!({ "exit_code": exit.code(), "policy": policy.json(), "ports": ports });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The JSON document of `who`: `outcome` is `held` or `free` per port.
pub fn who_json(states: &[PortState]) -> String {
    let ports: Vec<Value> = states
        .iter()
        .map(|s| {
            json!({
                "port": s.port,
                "protocol": s.protocol,
                "outcome": if s.is_free() { "free" } else { "held" },
                "holders": holders_json(s),
                "others": s.others.iter().map(|o| json!({
                    "local": o.local.to_string(),
                    "remote": o.remote.to_string(),
                    "state": o.state_name(),
                    "uid": o.uid,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let doc = json!({ "exit_code": 0, "ports": ports });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

fn age(ms: u64) -> String {
    let secs = Duration::from_secs(ms / 1000);
    if secs.is_zero() {
        format!("{ms}ms")
    } else {
        humantime::format_duration(secs).to_string()
    }
}

/// The holders of a port as indented process trees.
pub fn holders_text(state: &PortState) -> String {
    let mut out = String::new();
    for g in &state.groups {
        for (depth, &i) in g.members.iter().enumerate() {
            let h = &state.holders[i];
            let indent = if depth == 0 { "  " } else { "    └ " };
            let pad = if depth == 0 { "    " } else { "        " };
            match h.pid {
                Some(pid) => {
                    let _ = writeln!(
                        out,
                        "{indent}pid {pid}  {}",
                        printable(&h.cmdline_joined().unwrap_or_else(|| h.short_name()))
                    );
                    let _ = writeln!(
                        out,
                        "{pad}user {} (uid {})  exe {}",
                        h.user_label(),
                        h.uid,
                        printable(h.exe.as_deref().unwrap_or("unknown"))
                    );
                    let parent = match (h.ppid, h.orphan) {
                        (Some(p), Some(true)) => format!("parent {p} (orphaned)"),
                        (Some(p), _) => format!("parent {p}"),
                        (None, _) => "parent unknown".into(),
                    };
                    let _ = writeln!(
                        out,
                        "{pad}addr {}  age {}  {parent}",
                        addrs(h),
                        h.age_ms.map_or_else(|| "unknown".into(), age)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "{indent}pid unknown  user {} (uid {})",
                        h.user_label(),
                        h.uid
                    );
                    let _ = writeln!(out, "{pad}addr {}", addrs(h));
                    let _ = writeln!(
                        out,
                        "{pad}why: {}",
                        h.unknown_reason.as_deref().unwrap_or("not visible")
                    );
                }
            }
        }
    }
    for o in &state.others {
        let _ = writeln!(
            out,
            "  (not a holder: {} socket {} -> {}, uid {})",
            o.state_name(),
            o.local,
            o.remote,
            o.uid
        );
    }
    out
}

fn addrs(h: &Holder) -> String {
    h.addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `who`: who holds each port.
pub fn who_text(states: &[PortState]) -> String {
    let mut out = String::new();
    for s in states {
        if s.is_free() {
            let _ = writeln!(out, "port {}/{} is free", s.port, s.protocol);
        } else {
            let n = s.holders.len();
            let _ = writeln!(
                out,
                "port {}/{} is held by {n} process{}:",
                s.port,
                s.protocol,
                if n == 1 { "" } else { "es" }
            );
        }
        out.push_str(&holders_text(s));
    }
    out
}

/// The full decision trace of one port: holders, every rule with every
/// criterion, the decision and the plan (and, after a real run, the steps).
pub fn trace_text(r: &PortReport, policy: &PolicyInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "port {}/{}: policy {} ({}, chosen by {})",
        r.port, r.protocol, policy.name, policy.source, policy.chosen_by
    );
    for (round, (state, d)) in r.rounds.iter().enumerate() {
        if r.rounds.len() > 1 {
            let _ = writeln!(out, "round {}:", round + 1);
        }
        if state.is_free() {
            let _ = writeln!(out, "holders: none");
            out.push_str(&holders_text(state));
            continue;
        }
        let _ = writeln!(out, "holders:");
        out.push_str(&holders_text(state));
        let _ = writeln!(out, "rules:");
        for (n, t) in d.trace.iter().enumerate() {
            let verdict = if !t.reached {
                "not reached (an earlier rule applied)"
            } else if t.applied {
                "APPLIES"
            } else {
                "does not apply"
            };
            let _ = writeln!(out, "  {}. {} (line {}): {verdict}", n + 1, t.rule, t.line);
            if let Some(c) = &t.ports {
                let _ = writeln!(
                    out,
                    "       ports {}: saw {} {}",
                    c.expected,
                    c.seen,
                    mark(c.held)
                );
            }
            for g in &t.groups {
                let who = g
                    .pid
                    .map_or_else(|| "pid unknown".into(), |p| format!("pid {p}"));
                if g.checks.is_empty() {
                    let _ = writeln!(
                        out,
                        "       {who}: no criteria, matches any owner {}",
                        mark(true)
                    );
                }
                for c in &g.checks {
                    let _ = writeln!(
                        out,
                        "       {who}: {} {} — saw \"{}\" {}",
                        c.criterion,
                        c.expected,
                        printable(&c.seen),
                        mark(c.held)
                    );
                }
            }
        }
        let decided = match (&d.rule, &d.action) {
            (Some(rule), Some(a)) => format!("{} (rule {rule})", a.kind()),
            (None, Some(a)) => format!("{} (no rule applies: the policy default)", a.kind()),
            _ => "nothing to do".into(),
        };
        let _ = writeln!(out, "decision: {decided}");
        if let Some(b) = &d.blocked {
            let _ = match b {
                Blocked::Protected { pid, why } => {
                    writeln!(out, "blocked: pid {pid} is protected: {why}")
                }
                Blocked::NoPid { uid, reason } => {
                    writeln!(
                        out,
                        "blocked: a holder of uid {uid} has no known pid: {reason}"
                    )
                }
            };
        }
    }
    if !r.steps.is_empty() {
        let _ = writeln!(out, "steps:");
        for s in &r.steps {
            let _ = write!(out, "  {:>6} ms  {}", s.at_ms, s.event);
            if let Some(sig) = s.signal {
                let _ = write!(out, " {sig}");
            }
            if let Some(pid) = s.pid {
                let _ = write!(out, " pid {pid}");
            }
            if let Some(d) = &s.detail {
                let _ = write!(out, ": {d}");
            }
            out.push('\n');
        }
    }
    let label = if r.dry_run { "plan" } else { "result" };
    let _ = writeln!(out, "{label}: {} (exit {})", r.message, r.exit().code());
    out
}

fn mark(held: bool) -> &'static str {
    if held {
        "✓"
    } else {
        "✗"
    }
}

/// The short human result of one port after a real run: the message, and
/// who holds the port when it was not freed.
pub fn result_text(r: &PortReport) -> String {
    let mut out = format!("{}\n", r.message);
    if matches!(
        r.outcome,
        Outcome::Refused | Outcome::Failed | Outcome::Reuse
    ) {
        if let Some((state, _)) = r.rounds.last() {
            out.push_str(&holders_text(state));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::evaluate;
    use crate::policy::{load_source, PolicySource};
    use crate::policytest::{case_context, case_state};
    use crate::resolver::PortReport;

    /// A dry-run report for test case `case` of `policy`, exactly as
    /// `--explain` builds it, but from owners given as data.
    fn explain(policy_text: &str, case: usize) -> String {
        let policy = load_source(policy_text, PolicySource::File("p.toml".into())).unwrap();
        let case = &policy.tests[case];
        let state = case_state(case);
        let decision = evaluate(&policy, &state, &case_context(case));
        let report = PortReport {
            port: state.port,
            protocol: state.protocol,
            outcome: decision.planned,
            dry_run: true,
            message: "(plan message)".into(),
            rounds: vec![(state, decision)],
            steps: Vec::new(),
        };
        let info = PolicyInfo::new(&policy, "--policy");
        trace_text(&report, &info)
    }

    const POLICY: &str = r#"name = "demo"
[[rule]]
name = "stale-proxy"
match.cmdline = '-m headroom\.cli proxy'
match.user = "$self"
match.orphan = true
action = "wait"
timeout = "2s"
then = "terminate"
grace = "500ms"
[[rule]]
name = "mine"
match.user = "$self"
action = "reuse"
health = "tcp"
[[rule]]
name = "rest"
action = "refuse"

[[test]]
name = "proxy with a worker"
port = 8787
self = "alice"
expect = { rule = "stale-proxy" }
owners = [
  { pid = 4242, ppid = 1, user = "alice", uid = 1000, exe = "/usr/bin/python3.12", cmdline = ["python3", "-m", "headroom.cli", "proxy", "--port", "8787"] },
  { pid = 4243, ppid = 4242, user = "alice", uid = 1000, exe = "/usr/bin/python3.12", cmdline = ["python3", "-c", "worker"] },
]

[[test]]
name = "an unseen owner and a foreign process"
port = 8787
self = "alice"
expect = { rule = "rest" }
owners = [
  { pid = 900, ppid = 800, user = "alice", uid = 1000, exe = "/usr/sbin/nginx", cmdline = ["nginx: worker process"], addr = "[::1]:8787" },
  { uid = 0, user = "root" },
]
"#;

    #[test]
    fn explain_trace_of_a_matched_process_tree() {
        insta::assert_snapshot!(explain(POLICY, 0));
    }

    #[test]
    fn explain_trace_when_rules_fail_and_a_pid_is_unknown() {
        insta::assert_snapshot!(explain(POLICY, 1));
    }

    #[test]
    fn plans_spell_out_settings_and_fallbacks() {
        let policy = load_source(POLICY, PolicySource::File("p.toml".into())).unwrap();
        let plans: Vec<String> = policy
            .rules
            .iter()
            .map(|r| format!("{}: {}", r.name, r.action))
            .collect();
        insta::assert_snapshot!(plans.join("\n"));
    }
}
