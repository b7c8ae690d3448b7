//! `portguard test`: runs a policy's `[[test]]` cases — owners given as data,
//! evaluated exactly as a real run would evaluate discovered holders — and
//! compares the decision with what the case expects.

use super::{evaluate, planned_outcome, Context, Decision, Protected, ProtectedWhy};
use crate::model::{
    ClientFile, ClientStatus, Clients, ClientsSeen, Outcome, PortState, SocketEntry,
};
use crate::policy::{Action, ActionKind, Policy, TestCase, TestClients};

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// Case name.
    pub name: String,
    /// Line of the `[[test]]` table.
    pub line: usize,
    /// What did not match; empty when the case passed.
    pub failures: Vec<Mismatch>,
    /// The rule that applied (`None`: the default).
    pub rule: Option<String>,
    /// The action chosen.
    pub action: Option<ActionKind>,
    /// The planned outcome.
    pub outcome: Outcome,
    /// The port as the case describes it and the whole decision, for
    /// `portguard test -v`.
    pub evaluated: (PortState, Decision),
}

/// One expectation of a case that the decision did not meet (worded by
/// `report::cases`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// Another rule applied (`"default"`: none did).
    Rule {
        /// The rule the case expects.
        expected: String,
        /// The rule that applied.
        got: String,
    },
    /// Another action was chosen (`None`: the port is free).
    Action {
        /// The action the case expects.
        expected: ActionKind,
        /// The action chosen.
        got: Option<ActionKind>,
    },
    /// Another outcome was planned.
    Outcome {
        /// The outcome the case expects.
        expected: Outcome,
        /// The outcome planned.
        got: Outcome,
    },
}

impl CaseResult {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The port as discovery would have reported it, built from the case's
/// owners: they share one listening socket, so owners whose parent is
/// another owner group under it as forked workers do.
pub fn case_state(policy: &Policy, case: &TestCase) -> PortState {
    let sockets = case
        .owners
        .first()
        .map(|o| SocketEntry {
            local: o.addrs[0],
            remote: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            state: SocketEntry::TCP_LISTEN,
            uid: o.uid,
            inode: 1,
        })
        .into_iter()
        .collect();
    let mut state = PortState::new(
        case.port,
        case.protocol,
        sockets,
        Vec::new(),
        case.owners.clone(),
    );
    for dir in policy.client_dirs() {
        state.clients.insert(
            dir.as_str().to_string(),
            Clients {
                dir: dir.as_str().to_string(),
                seen: test_clients(&case.clients),
            },
        );
    }
    state
}

/// A test case's client records as a directory would show them.
fn test_clients(c: &TestClients) -> ClientsSeen {
    if c.unreadable {
        return ClientsSeen::Unreadable {
            error: "unreadable, as the test case says".into(),
        };
    }
    let record = |pid: u32, status| ClientFile {
        name: format!("{pid}.json"),
        pid,
        status,
    };
    let mut files: Vec<ClientFile> = c
        .live
        .iter()
        .map(|&p| record(p, ClientStatus::Live))
        .chain(c.stale.iter().map(|&p| record(p, ClientStatus::Exited)))
        .collect();
    files.sort_by_key(|f| f.pid);
    ClientsSeen::Read {
        files,
        truncated: false,
    }
}

/// The evaluation context of a case: `self` as given, user names compared
/// as data (never looked up on this machine), pid 1 protected.
pub fn case_context(case: &TestCase) -> Context {
    Context {
        self_uid: case.self_uid,
        self_name: case.self_name.clone(),
        protected: vec![Protected {
            pid: 1,
            why: ProtectedWhy::Init,
        }],
        uids: None,
    }
}

/// Runs one case.
pub fn run_case(policy: &Policy, case: &TestCase) -> CaseResult {
    let state = case_state(policy, case);
    let d = evaluate(policy, &state, &case_context(case));
    let action = d.action.as_ref().map(Action::kind);
    let planned = match d.action.as_ref() {
        // The holders do not answer: a real run takes the reuse's fallback,
        // or fails without one.
        Some(a @ Action::Reuse { .. }) if !case.healthy => a.then().map_or(Outcome::Failed, |f| {
            planned_outcome(f.kind(), d.blocked.as_ref())
        }),
        _ => d.planned,
    };
    let got_rule = d.rule.clone().unwrap_or_else(|| "default".into());
    let mut failures = Vec::new();
    let e = &case.expect;
    if let Some(rule) = &e.rule {
        if *rule != got_rule {
            failures.push(Mismatch::Rule {
                expected: rule.clone(),
                got: got_rule.clone(),
            });
        }
    }
    if let Some(want) = e.action {
        if action != Some(want) {
            failures.push(Mismatch::Action {
                expected: want,
                got: action,
            });
        }
    }
    if let Some(want) = e.outcome {
        if planned != want {
            failures.push(Mismatch::Outcome {
                expected: want,
                got: planned,
            });
        }
    }
    CaseResult {
        name: case.name.clone(),
        line: case.line,
        failures,
        rule: d.rule.clone(),
        action,
        outcome: planned,
        evaluated: (state, d),
    }
}

/// Runs every case of `policy`, in file order.
pub fn run_all(policy: &Policy) -> Vec<CaseResult> {
    policy.tests.iter().map(|c| run_case(policy, c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{load_source, PolicySource};

    const POLICY: &str = r#"
[[rule]]
name = "mine"
match.user = "$self"
match.cmdline = '^server'
action = "terminate"
[[rule]]
name = "rest"
action = "refuse"

[[test]]
name = "own server with a worker is terminated"
port = 8080
self = "alice"
expect = { rule = "mine", action = "terminate", outcome = "freed" }
owners = [
  { pid = 10, ppid = 1, user = "alice", uid = 1000, cmdline = ["server"] },
  { pid = 11, ppid = 10, user = "alice", uid = 1000, cmdline = ["worker"] },
]

[[test]]
name = "bob's server is refused"
port = 8080
self = "alice"
expect = { rule = "rest", outcome = "refused" }
owners = [{ pid = 10, ppid = 1, user = "bob", uid = 1001, cmdline = ["server"] }]

[[test]]
name = "a wrong expectation"
port = 8080
self = 1000
expect = { rule = "default", action = "reuse" }
owners = [{ pid = 10, ppid = 1, uid = 1000, cmdline = ["server"] }]

[[test]]
name = "a free port"
port = 8080
expect = { outcome = "free" }
"#;

    /// The built-ins' cases run from their whole text (running a built-in
    /// loads it without them; see `rules_part`).
    #[test]
    fn every_builtin_passes_its_own_test_cases() {
        for (name, text) in crate::policy::BUILTINS {
            let policy = load_source(text, PolicySource::Builtin(name)).unwrap();
            policy.compile().unwrap();
            assert!(!policy.tests.is_empty(), "{name}");
            for r in run_all(&policy) {
                assert!(
                    r.passed(),
                    "{name}: {} (line {}): {:?}",
                    r.name,
                    r.line,
                    r.failures
                );
            }
        }
    }

    #[test]
    fn cases_pass_and_fail_with_reasons() {
        let policy = load_source(POLICY, PolicySource::File("t.toml".into())).unwrap();
        let results = run_all(&policy);
        let summary: Vec<(&str, bool)> = results
            .iter()
            .map(|r| (r.name.as_str(), r.passed()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("own server with a worker is terminated", true),
                ("bob's server is refused", true),
                ("a wrong expectation", false),
                ("a free port", true),
            ]
        );
        assert_eq!(
            results[2].failures,
            vec![
                Mismatch::Rule {
                    expected: "default".into(),
                    got: "mine".into()
                },
                Mismatch::Action {
                    expected: ActionKind::Reuse,
                    got: Some(ActionKind::Terminate)
                }
            ]
        );
        assert_eq!(results[0].line, 11);
    }

    /// `healthy = false`: a reuse plans its `then`, a failure without one,
    /// and a terminate fallback is still refused for a protected holder.
    #[test]
    fn an_unhealthy_reuse_plans_its_fallback() {
        let text = r#"
[[rule]]
name = "with-fallback"
ports = [1]
action = "reuse"
health = "tcp"
then = "terminate"
[[rule]]
name = "without"
ports = [2]
action = "reuse"
health = "tcp"
[[rule]]
name = "to-refuse"
ports = [3]
action = "reuse"
health = "tcp"
then = "refuse"
"#;
        let mut cases = String::from(text);
        for (port, healthy, pid) in [
            (1, true, 10),
            (1, false, 10),
            (1, false, 1),
            (2, false, 10),
            (3, false, 10),
        ] {
            cases.push_str(&format!(
                "[[test]]\nname = \"{port} {healthy} {pid}\"\nport = {port}\nhealthy = {healthy}\nexpect = {{ action = \"reuse\" }}\nowners = [{{ pid = {pid}, ppid = 0, uid = 0 }}]\n"
            ));
        }
        let policy = load_source(&cases, PolicySource::File("t.toml".into())).unwrap();
        let outcomes: Vec<Outcome> = run_all(&policy).iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            vec![
                Outcome::Reuse,
                Outcome::Freed,
                Outcome::Refused,
                Outcome::Failed,
                Outcome::Refused
            ]
        );
    }

    #[test]
    fn workers_group_under_their_parent() {
        let policy = load_source(POLICY, PolicySource::File("t.toml".into())).unwrap();
        let state = case_state(&policy, &policy.tests[0]);
        assert_eq!(state.groups().len(), 1);
        assert_eq!(state.groups()[0].members, vec![0, 1]);
    }

    #[test]
    fn expectations_are_checked_when_loading() {
        for (case, needle) in [
            ("expect = { rule = \"nope\" }", "does not have"),
            ("expect = { action = \"kill\" }", "unknown action"),
            ("expect = { outcome = \"gone\" }", "unknown outcome"),
            ("expect = {}", "expects nothing"),
            (
                "expect = { rule = \"r\" }\nowners = [{ pid = 1 }]",
                "has no `uid`",
            ),
        ] {
            let text = format!("[[rule]]\nname = \"r\"\naction = \"refuse\"\n[[test]]\nname = \"t\"\nport = 1\n{case}\n");
            let err = load_source(&text, PolicySource::File("t.toml".into()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{case}: {err}");
        }
    }
}
