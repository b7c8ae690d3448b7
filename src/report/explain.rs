//! The decision trace (`--explain`, `-v`): the holders of each round as
//! process trees, every rule with every criterion it tested, the value it
//! saw and whether it held, the decision, the steps taken and the result.

use super::human::holders_text;
use super::{words, PolicyInfo};
use crate::act::steps::{Event, Step};
use crate::evaluate::Blocked;
use crate::resolver::{End, PortReport};
use crate::terminal::printable;
use std::fmt::Write as _;

/// The name of a step's event (as JSON's `event`), its signal and pid.
pub fn step_parts(step: &Step) -> (&'static str, Option<&'static str>, Option<u32>) {
    match &step.event {
        Event::Signal { pid, signal } => ("signal", Some(*signal), Some(*pid)),
        Event::Resumed { pid } => ("resumed", Some("SIGCONT"), Some(*pid)),
        Event::Skipped { pid, signal, .. } => ("skipped", *signal, Some(*pid)),
        Event::Exited { pid } => ("exited", None, Some(*pid)),
        Event::Free => ("free", None, None),
        Event::Settle { .. } => ("settle", None, None),
        Event::Retaken => ("retaken", None, None),
        Event::Timeout => ("timeout", None, None),
        Event::Health { .. } => ("health", None, None),
        Event::Fallback { .. } => ("fallback", None, None),
        Event::Rediscover { .. } => ("rediscover", None, None),
        Event::Interrupted => ("interrupted", None, None),
        Event::Locked { .. } => ("locked", None, None),
        Event::Error { pid, signal, .. } => ("error", Some(*signal), Some(*pid)),
        Event::StopContainer { .. } => ("stop_container", None, None),
        Event::ContainerStopped { .. } => ("container_stopped", None, None),
        Event::Unit { .. } => ("unit", None, None),
    }
}

fn mark(held: bool) -> &'static str {
    if held {
        "✓"
    } else {
        "✗"
    }
}

/// The full decision trace of one port: holders, every rule with every
/// criterion, the decision and the plan (and, after a real run, the steps).
pub fn trace_text(r: &PortReport, policy: &PolicyInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "port {}/{}: policy {} ({}, chosen by {})",
        r.port,
        r.protocol,
        printable(&policy.name),
        printable(&policy.source),
        policy.chosen_by
    );
    for (round, each) in r.rounds.iter().enumerate() {
        let (state, d) = (&each.state, &each.decision);
        if r.rounds.len() > 1 {
            let _ = writeln!(out, "round {}:", round + 1);
        }
        if state.holders().is_empty() {
            // A lock wait that gave up discovered nothing itself; what holds
            // the port now is what matters.
            let shown = match (&r.end, &r.now) {
                (End::Failed(_), Some(now)) if r.rounds.len() == 1 => now,
                _ => state,
            };
            if shown.holders().is_empty() {
                let _ = writeln!(out, "holders: none");
            } else {
                let _ = writeln!(out, "holders (not acted on):");
            }
            out.push_str(&holders_text(shown));
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
            let _ = writeln!(
                out,
                "  {}. {} (line {}): {verdict}",
                n + 1,
                printable(&t.rule),
                t.line
            );
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
                        printable(&c.expected),
                        printable(&c.seen),
                        mark(c.held)
                    );
                }
            }
        }
        let decided = match (&d.rule, &d.action) {
            (Some(rule), Some(a)) => format!("{} (rule {})", a.kind(), printable(rule)),
            (None, Some(a)) => format!("{} (no rule applies: the policy default)", a.kind()),
            _ => "nothing to do".into(),
        };
        let _ = writeln!(out, "decision: {decided}");
        if let Some(b) = &d.blocked {
            let _ = match b {
                Blocked::Protected { pid, why } => writeln!(
                    out,
                    "blocked: pid {pid} is protected: {}",
                    words::protected_why(*why)
                ),
                Blocked::Container { pid, why } => writeln!(
                    out,
                    "blocked: pid {pid} is a docker-proxy whose container is unknown: {}",
                    printable(why)
                ),
                Blocked::NoPid { uid, reason } => {
                    let why = state
                        .holders()
                        .iter()
                        .find(|h| h.pid.is_none() && h.uid == *uid)
                        .map_or_else(String::new, |h| words::unknown_reason(*reason, h));
                    writeln!(
                        out,
                        "blocked: a holder of uid {uid} has no known pid: {why}"
                    )
                }
            };
        }
    }
    if !r.steps.is_empty() {
        let _ = writeln!(out, "steps:");
        for s in &r.steps {
            let (event, signal, pid) = step_parts(s);
            let _ = write!(out, "  {:>6} ms  {event}", s.at_ms);
            if let Some(sig) = signal {
                let _ = write!(out, " {sig}");
            }
            if let Some(pid) = pid {
                let _ = write!(out, " pid {pid}");
            }
            if let Some(d) = words::step_detail(s) {
                let _ = write!(out, ": {}", printable(&d));
            }
            out.push('\n');
        }
    }
    let label = if r.dry_run { "plan" } else { "result" };
    let _ = writeln!(
        out,
        "{label}: {} (exit {})",
        printable(&words::message(r)),
        r.exit().code()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::cases::{case_context, case_state};
    use crate::evaluate::evaluate;
    use crate::policy::{load_source, PolicySource};
    use crate::resolver::Round;

    /// A dry-run report for test case `case` of `policy`, exactly as
    /// `--explain` builds it, but from owners given as data.
    fn explain(policy_text: &str, case: usize) -> String {
        let policy = load_source(policy_text, PolicySource::File("p.toml".into())).unwrap();
        let case = &policy.tests[case];
        let state = case_state(&policy, case);
        let decision = evaluate(&policy, &state, &case_context(case));
        let report = PortReport {
            port: state.port,
            protocol: state.protocol,
            dry_run: true,
            rounds: vec![Round { state, decision }],
            steps: Vec::new(),
            end: End::Planned,
            now: None,
            lingering: 0,
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

    /// A terminate over a container's docker-proxy and a plain process
    /// says both: the container is stopped, the process is signalled.
    #[test]
    fn a_plan_over_a_container_and_a_process_names_both() {
        let policy = r#"name = "mixed"
[[rule]]
name = "all"
match.user = ["$self", "root"]
action = "terminate"
[[test]]
name = "container and server"
port = 8080
self = "alice"
expect = { rule = "all" }
owners = [
  { pid = 700, ppid = 1, user = "root", uid = 0, exe = "/usr/sbin/docker-proxy", cmdline = ["/usr/sbin/docker-proxy", "-host-port", "8080"], container = { name = "pgweb", image = "postgres:16" } },
  { pid = 4242, ppid = 1, user = "alice", uid = 1000, exe = "/usr/bin/node", cmdline = ["node", "server.js"], addr = "[::1]:8080" },
]
"#;
        let text = explain(policy, 0);
        let plan = text.lines().find(|l| l.starts_with("plan:")).unwrap();
        assert!(plan.contains("would stop container pgweb"), "{text}");
        assert!(plan.contains("pid 4242 (node server.js"), "{text}");
        assert!(!plan.contains("pid 700"), "{text}");
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
