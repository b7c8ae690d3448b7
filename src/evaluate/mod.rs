//! Matching and evaluation: rules × holders → a [`Decision`] with its trace.
//!
//! The decision is data. It records every criterion tested, the value seen
//! and whether it held, which rule won (or that the default applied), and the
//! plan — so `--explain`, `-v`, JSON output and `portguard test` all render the
//! same facts, and nothing is printed from in here.

pub mod cases;
mod context;
mod criteria;

pub use context::{Context, Protected, ProtectedWhy};
pub use criteria::check_criteria;

use crate::model::{Holder, PortState, Unknown};
use crate::policy::{Action, ActionKind, Policy, Rule};
use serde::Serialize;

/// The result of testing one criterion against one group root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Check {
    /// `cmdline`, `exe`, `user`, `orphan`, `unit`, `container`, `image`,
    /// `clients` or `ports`.
    pub criterion: &'static str,
    /// What the rule asks for.
    pub expected: String,
    /// What was seen (`"unknown"` when it could not be read).
    pub seen: String,
    /// Whether it held.
    pub held: bool,
}

/// How one rule fared against one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupTrace {
    /// Index of the group's root in [`PortState::holders`].
    pub root: usize,
    /// Pid of the root, when known.
    pub pid: Option<u32>,
    /// Every criterion tested.
    pub checks: Vec<Check>,
    /// Whether every criterion held.
    pub matched: bool,
}

/// How one rule fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleTrace {
    /// Rule name.
    pub rule: String,
    /// Line of the rule in the policy.
    pub line: usize,
    /// The `ports` check, when the rule limits ports.
    pub ports: Option<Check>,
    /// One entry per group (empty when `ports` failed or the rule was not reached).
    pub groups: Vec<GroupTrace>,
    /// Whether the rule applied.
    pub applied: bool,
    /// False when an earlier rule had already applied.
    pub reached: bool,
}

pub use crate::model::Outcome;

/// Why a decided action cannot be carried out as planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Blocked {
    /// A target is protected: refused (exit 4).
    Protected {
        /// The protected pid.
        pid: u32,
        /// Why it is protected.
        why: ProtectedWhy,
    },
    /// A target is a `docker-proxy` whose container could not be
    /// identified: portguard never signals docker-proxy, and cannot stop a
    /// container it does not know; refused (exit 4).
    Container {
        /// The docker-proxy's pid.
        pid: u32,
        /// Why the container is unknown.
        why: String,
    },
    /// A target has no pid and cannot be signalled: failed (exit 5).
    NoPid {
        /// uid of the socket.
        uid: u32,
        /// Why the pid is unknown.
        reason: Unknown,
    },
}

/// What the policy decided for one port.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Rule that applied; `None` when the default action applies (or the port is free).
    pub rule: Option<String>,
    /// The action to carry out (`None` when the port is free).
    pub action: Option<Action>,
    /// Every rule, in order.
    pub trace: Vec<RuleTrace>,
    /// Holder indices a terminate (direct or as fallback) would signal:
    /// every member of every group.
    pub targets: Vec<usize>,
    /// Set when the action may signal but a target must not or cannot be.
    pub blocked: Option<Blocked>,
    /// The outcome a real run gives if its action succeeds.
    pub planned: Outcome,
}

/// Evaluates `policy` against what discovery found on the port.
pub fn evaluate(policy: &Policy, state: &PortState, ctx: &Context) -> Decision {
    if state.holders().is_empty() {
        return Decision {
            rule: None,
            action: None,
            trace: Vec::new(),
            targets: Vec::new(),
            blocked: None,
            planned: Outcome::Free,
        };
    }
    let mut trace = Vec::with_capacity(policy.rules.len());
    let mut winner: Option<&Rule> = None;
    for rule in &policy.rules {
        if winner.is_some() {
            trace.push(RuleTrace {
                rule: rule.name.clone(),
                line: rule.line,
                ports: None,
                groups: Vec::new(),
                applied: false,
                reached: false,
            });
            continue;
        }
        let t = trace_rule(rule, state, ctx);
        if t.applied {
            winner = Some(rule);
        }
        trace.push(t);
    }
    let action = winner
        .map_or(&policy.defaults.action, |r| &r.action)
        .clone();
    let targets: Vec<usize> = state
        .groups()
        .iter()
        .flat_map(|g| g.members.iter().copied())
        .collect();
    let blocked = if action.may_signal() {
        blocked_target(&targets, state.holders(), ctx)
    } else {
        None
    };
    let planned = planned_outcome(action.kind(), blocked.as_ref());
    Decision {
        rule: winner.map(|r| r.name.clone()),
        action: Some(action),
        trace,
        targets,
        blocked,
        planned,
    }
}

/// The outcome of carrying out an action of `kind` that succeeds, given
/// what blocks its targets: a terminate never signals a blocked one.
pub(crate) fn planned_outcome(kind: ActionKind, blocked: Option<&Blocked>) -> Outcome {
    match (kind, blocked) {
        (ActionKind::Terminate, Some(Blocked::Protected { .. } | Blocked::Container { .. })) => {
            Outcome::Refused
        }
        (ActionKind::Terminate, Some(Blocked::NoPid { .. })) => Outcome::Failed,
        (ActionKind::Terminate | ActionKind::Wait, _) => Outcome::Freed,
        (ActionKind::Refuse, _) => Outcome::Refused,
        (ActionKind::Reuse, _) => Outcome::Reuse,
    }
}

/// The first target that must not (protected), cannot (no pid) or may
/// not be acted on (a docker-proxy whose container is unknown).
pub fn blocked_target(targets: &[usize], holders: &[Holder], ctx: &Context) -> Option<Blocked> {
    let mut no_pid = None;
    let mut container = None;
    for &i in targets {
        let h = &holders[i];
        match h.pid {
            Some(pid) => {
                if let Some(p) = ctx.protected(pid) {
                    return Some(Blocked::Protected { pid, why: p.why });
                }
                if h.is_docker_proxy() && h.container.is_none() && container.is_none() {
                    container = Some(Blocked::Container {
                        pid,
                        why: h
                            .container_error
                            .clone()
                            .unwrap_or_else(|| "it was not looked up".into()),
                    });
                }
            }
            None if no_pid.is_none() => {
                no_pid = Some(Blocked::NoPid {
                    uid: h.uid,
                    reason: h.unknown.unwrap_or(Unknown::NotVisible),
                });
            }
            None => {}
        }
    }
    container.or(no_pid)
}

fn trace_rule(rule: &Rule, state: &PortState, ctx: &Context) -> RuleTrace {
    let ports = rule.ports.as_ref().map(|ranges| Check {
        criterion: "ports",
        expected: ranges
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        seen: state.port.to_string(),
        held: ranges.iter().any(|r| r.contains(state.port)),
    });
    if ports.as_ref().is_some_and(|c| !c.held) {
        return RuleTrace {
            rule: rule.name.clone(),
            line: rule.line,
            ports,
            groups: Vec::new(),
            applied: false,
            reached: true,
        };
    }
    let groups: Vec<GroupTrace> = state
        .groups()
        .iter()
        .map(|g| {
            let root = &state.holders()[g.root];
            let checks = check_criteria(&rule.criteria, root, state, ctx);
            GroupTrace {
                root: g.root,
                pid: root.pid,
                matched: checks.iter().all(|c| c.held),
                checks,
            }
        })
        .collect();
    RuleTrace {
        rule: rule.name.clone(),
        line: rule.line,
        ports,
        applied: !groups.is_empty() && groups.iter().all(|g| g.matched),
        groups,
        reached: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, context as ctx, holder};
    use crate::policy::{load_source, PolicySource};

    /// The port held by `holders`, whose headroom client directory does not
    /// exist (no clients), as the resolver would read it.
    fn state(port: u16, holders: Vec<Holder>) -> PortState {
        fixtures::without_clients(&headroom(), fixtures::state(port, holders))
    }

    fn headroom() -> Policy {
        PolicySource::Builtin("headroom").load().unwrap()
    }

    const PROXY: &[&str] = &[
        "/home/alice/.venv/bin/python3",
        "/home/alice/.venv/bin/headroom",
        "proxy",
        "--port",
        "8787",
    ];
    const MODULE: &[&str] = &[
        "/usr/bin/python3.12",
        "-m",
        "headroom.cli",
        "proxy",
        "--port",
        "8787",
        "--workers",
        "1",
    ];

    #[test]
    fn free_port_needs_no_rule() {
        let d = evaluate(&headroom(), &state(8787, vec![]), &ctx());
        assert_eq!(d.planned, Outcome::Free);
        assert!(d.action.is_none() && d.trace.is_empty());
    }

    #[test]
    fn headroom_terminates_both_real_forms_of_the_proxy() {
        for argv in [
            PROXY,
            MODULE,
            &["python3", "-m", "headroom.cli", "proxy"][..],
            &[
                "/opt/py/bin/python3.11",
                "-u",
                "-m",
                "headroom.cli",
                "proxy",
                "--port",
                "1",
            ][..],
        ] {
            let d = evaluate(
                &headroom(),
                &state(8787, vec![holder(4242, 1, 1000, "alice", argv)]),
                &ctx(),
            );
            assert_eq!(d.rule.as_deref(), Some("stale-headroom-proxy"), "{argv:?}");
            assert_eq!(d.planned, Outcome::Freed);
            assert_eq!(
                d.action.as_ref().map(Action::kind),
                Some(ActionKind::Terminate)
            );
        }
    }

    #[test]
    fn headroom_refuses_look_alikes_naming_the_holder() {
        for argv in [
            &["grep", "headroom", "proxy"][..],
            &["less", "headroom/proxy/server.py"][..],
            &["vim", "proxy.py"][..],
            &["python3", "-m", "http.server", "8787"][..],
            &["python3", "headroom/proxy/server.py"][..],
            &["python3", "-m", "headroom.cli", "proxy-status"][..],
            &["/usr/bin/python3", "/x/bin/headroomx", "proxy"][..],
        ] {
            let d = evaluate(
                &headroom(),
                &state(8787, vec![holder(4242, 1, 1000, "alice", argv)]),
                &ctx(),
            );
            assert_eq!(d.rule.as_deref(), Some("foreign-process"), "{argv:?}");
            assert_eq!(d.planned, Outcome::Refused, "{argv:?}");
        }
    }

    #[test]
    fn headroom_requires_a_python_executable_and_your_own_user() {
        let mut h = holder(4242, 1, 1000, "alice", PROXY);
        h.exe = Some("/home/alice/.venv/bin/headroom".into());
        let d = evaluate(&headroom(), &state(8787, vec![h]), &ctx());
        assert_eq!(d.rule.as_deref(), Some("foreign-process"));
        let d = evaluate(
            &headroom(),
            &state(8787, vec![holder(4242, 1, 1001, "bob", PROXY)]),
            &ctx(),
        );
        assert_eq!(d.rule.as_deref(), Some("foreign-process"));
        let user_check = &d.trace[0].groups[0].checks[2];
        assert_eq!(user_check.criterion, "user");
        assert_eq!(user_check.seen, "bob (uid 1001)");
        assert!(!user_check.held);
    }

    #[test]
    fn a_rule_applies_only_when_every_group_root_matches() {
        let proxy = holder(4242, 1, 1000, "alice", PROXY);
        let other = holder(5000, 1, 1000, "alice", &["nginx"]);
        let d = evaluate(
            &headroom(),
            &state(8787, vec![proxy.clone(), other]),
            &ctx(),
        );
        assert_eq!(d.rule.as_deref(), Some("foreign-process"));
        let stale = |d: &Decision| {
            d.trace
                .iter()
                .find(|t| t.rule == "stale-headroom-proxy")
                .cloned()
                .unwrap()
        };
        let t = stale(&d);
        assert!(t.groups[0].matched && !t.groups[1].matched);
        // Workers are judged by their root and become targets with it.
        let worker = holder(4243, 4242, 1000, "alice", &["python3", "-c", "worker"]);
        let d = evaluate(&headroom(), &state(8787, vec![proxy, worker]), &ctx());
        assert_eq!(d.rule.as_deref(), Some("stale-headroom-proxy"));
        assert_eq!(d.targets, vec![0, 1]);
        assert_eq!(stale(&d).groups.len(), 1);
    }

    #[test]
    fn unreadable_fields_never_match_but_uid_still_does() {
        let policy = load_source(
            "[[rule]]\nname = \"mine\"\nmatch.user = 1000\naction = \"reuse\"\n[[rule]]\nname = \"cmd\"\nmatch.cmdline = '.*'\naction = \"refuse\"\n",
            PolicySource::File("t.toml".into()),
        )
        .unwrap();
        let mut h = holder(1, 0, 1000, "alice", &[]);
        h.pid = None;
        h.cmdline = None;
        h.exe = None;
        h.orphan = None;
        h.unknown = Some(Unknown::NotYourProcess);
        let d = evaluate(&policy, &state(8787, vec![h.clone()]), &ctx());
        assert_eq!(d.rule.as_deref(), Some("mine"));
        h.uid = 0;
        let d = evaluate(&policy, &state(8787, vec![h]), &ctx());
        assert_eq!(d.rule, None, "an unknown cmdline does not match even '.*'");
        assert_eq!(d.trace[1].groups[0].checks[0].seen, "unknown");
        assert_eq!(d.planned, Outcome::Refused);
    }

    #[test]
    fn terminate_of_a_protected_or_pidless_holder_is_blocked() {
        let policy = load_source(
            "[[rule]]\nname = \"all\"\naction = \"terminate\"\n",
            PolicySource::File("t.toml".into()),
        )
        .unwrap();
        let d = evaluate(
            &policy,
            &state(8787, vec![holder(1, 0, 1000, "alice", &["init"])]),
            &ctx(),
        );
        assert!(matches!(d.blocked, Some(Blocked::Protected { pid: 1, .. })));
        assert_eq!(d.planned, Outcome::Refused);
        let mut h = holder(7, 1, 1000, "alice", &["x"]);
        h.pid = None;
        let d = evaluate(&policy, &state(8787, vec![h]), &ctx());
        assert!(matches!(d.blocked, Some(Blocked::NoPid { .. })));
        assert_eq!(d.planned, Outcome::Failed);
    }

    #[test]
    fn ports_limit_a_rule() {
        let policy = load_source(
            "[[rule]]\nname = \"p\"\nports = [\"9000-9010\"]\naction = \"reuse\"\n",
            PolicySource::File("t.toml".into()),
        )
        .unwrap();
        let d = evaluate(
            &policy,
            &state(9005, vec![holder(5, 1, 1000, "a", &["x"])]),
            &ctx(),
        );
        assert_eq!(d.planned, Outcome::Reuse);
        let d = evaluate(
            &policy,
            &state(8787, vec![holder(5, 1, 1000, "a", &["x"])]),
            &ctx(),
        );
        assert_eq!(d.planned, Outcome::Refused);
        assert_eq!(d.trace[0].ports.as_ref().map(|c| c.held), Some(false));
    }

    #[test]
    fn sockets_closed_during_discovery_are_dropped_with_their_holders() {
        let mut gone = holder(7, 1, 1000, "alice", &["x"]);
        gone.pid = None;
        gone.inodes = vec![88];
        let mut st = state(8787, vec![holder(4242, 1, 1000, "alice", PROXY), gone]);
        let mut second = st.sockets[0].clone();
        second.inode = 88;
        st.sockets.push(second);
        assert_eq!(st.groups().len(), 2);
        st.keep_sockets(&[77]);
        assert_eq!(st.sockets.len(), 1);
        assert_eq!(st.holders().len(), 1);
        assert_eq!(st.holders()[0].pid, Some(4242));
        assert_eq!(st.groups().len(), 1);
        st.keep_sockets(&[]);
        assert!(st.is_free() && st.holders().is_empty() && st.groups().is_empty());
    }
}

#[cfg(test)]
mod proptests {
    //! The evaluation invariant, for random policies and owners (proptest):
    //! a rule never applies when any group root fails one of its criteria,
    //! the first applying rule in file order wins, the default applies when
    //! none does, and a terminate is never planned against a protected or
    //! pid-less holder without being blocked. Every expectation is computed
    //! here from the owners and the rule specs, independently of `evaluate`.
    use super::*;
    use crate::fixtures::{listening, HolderBuilder};
    use crate::model::Protocol;
    use crate::policy::{load_source, PolicySource};
    use proptest::prelude::*;
    use std::fmt::Write as _;

    const CMDLINES: [&str; 5] = ["^python", "proxy", "worker$", "^nginx", r"\bheadroom\b"];
    const EXES: [&str; 3] = ["^/usr/bin/python3", "nginx$", "python"];
    const PORTS: [(u16, u16); 3] = [(8787, 8787), (9000, 9010), (80, 80)];
    const RESOLVED: [u16; 4] = [8787, 9005, 80, 443];
    const ARGS: [&str; 7] = [
        "python3", "nginx", "proxy", "headroom", "worker", "-m", "a\nb",
    ];
    const EXE_PATHS: [&str; 3] = ["/usr/bin/python3.12", "/usr/sbin/nginx", "/opt/headroom"];
    const NAMES: [&str; 2] = ["alice", "bob"];
    const UIDS: [u32; 3] = [0, 1000, 1001];

    #[derive(Debug, Clone)]
    enum UserPick {
        Me,
        Uid(u32),
        Name(&'static str),
    }

    #[derive(Debug, Clone)]
    struct RuleSpec {
        ports: Option<Vec<(u16, u16)>>,
        cmdline: Option<&'static str>,
        exe: Option<&'static str>,
        users: Option<Vec<UserPick>>,
        orphan: Option<bool>,
        action: &'static str,
    }

    #[derive(Debug, Clone)]
    struct OwnerSpec {
        hidden: bool,
        parent: Option<usize>,
        ppid_one: bool,
        uid: u32,
        user: Option<&'static str>,
        exe: Option<&'static str>,
        argv: Option<Vec<&'static str>>,
        orphan: Option<bool>,
        inode: u64,
    }

    fn rule_spec() -> impl Strategy<Value = RuleSpec> {
        let user = prop_oneof![
            Just(UserPick::Me),
            proptest::sample::select(UIDS.to_vec()).prop_map(UserPick::Uid),
            proptest::sample::select(NAMES.to_vec()).prop_map(UserPick::Name),
        ];
        (
            proptest::option::weighted(
                0.3,
                proptest::sample::subsequence(PORTS.to_vec(), 1..=PORTS.len()),
            ),
            proptest::option::of(proptest::sample::select(CMDLINES.to_vec())),
            proptest::option::of(proptest::sample::select(EXES.to_vec())),
            proptest::option::of(proptest::collection::vec(user, 1..3)),
            proptest::option::of(any::<bool>()),
            proptest::sample::select(vec![
                "terminate",
                "wait",
                "refuse",
                "reuse",
                "wait-terminate",
            ]),
        )
            .prop_map(|(ports, cmdline, exe, users, orphan, action)| RuleSpec {
                ports,
                cmdline,
                exe,
                users,
                orphan,
                action,
            })
    }

    fn owner_spec() -> impl Strategy<Value = OwnerSpec> {
        (
            proptest::bool::weighted(0.15),
            proptest::option::of(0usize..8),
            any::<bool>(),
            proptest::sample::select(UIDS.to_vec()),
            proptest::option::of(proptest::sample::select(NAMES.to_vec())),
            proptest::option::of(proptest::sample::select(EXE_PATHS.to_vec())),
            proptest::option::of(proptest::collection::vec(
                proptest::sample::select(ARGS.to_vec()),
                0..4,
            )),
            proptest::option::of(any::<bool>()),
            1u64..=2,
        )
            .prop_map(
                |(hidden, parent, ppid_one, uid, user, exe, argv, orphan, inode)| OwnerSpec {
                    hidden,
                    parent,
                    ppid_one,
                    uid,
                    user,
                    exe,
                    argv,
                    orphan,
                    inode,
                },
            )
    }

    fn policy_text(rules: &[RuleSpec], default: &str) -> String {
        let mut t = format!("[defaults]\naction = \"{default}\"\n");
        for (i, r) in rules.iter().enumerate() {
            let _ = writeln!(t, "[[rule]]\nname = \"r{i}\"");
            if let Some(ports) = &r.ports {
                let items: Vec<String> =
                    ports.iter().map(|(a, b)| format!("\"{a}-{b}\"")).collect();
                let _ = writeln!(t, "ports = [{}]", items.join(", "));
            }
            if let Some(re) = r.cmdline {
                let _ = writeln!(t, "match.cmdline = '{re}'");
            }
            if let Some(re) = r.exe {
                let _ = writeln!(t, "match.exe = '{re}'");
            }
            if let Some(users) = &r.users {
                let items: Vec<String> = users
                    .iter()
                    .map(|u| match u {
                        UserPick::Me => "\"$self\"".to_string(),
                        UserPick::Uid(n) => n.to_string(),
                        UserPick::Name(n) => format!("\"{n}\""),
                    })
                    .collect();
                let _ = writeln!(t, "match.user = [{}]", items.join(", "));
            }
            if let Some(o) = r.orphan {
                let _ = writeln!(t, "match.orphan = {o}");
            }
            match r.action {
                "wait-terminate" => t.push_str("action = \"wait\"\nthen = \"terminate\"\n"),
                a => {
                    let _ = writeln!(t, "action = \"{a}\"");
                }
            }
        }
        t
    }

    /// Holders with distinct pids (10, 11, ...; pid 1 for a holder whose
    /// pid is "protected" by the context) whose parents come earlier in the
    /// list, as in a real process table.
    fn holders(owners: &[OwnerSpec]) -> Vec<Holder> {
        owners
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let pid = 10 + i as u32;
                let ppid = match o.parent {
                    Some(p) if p < i => 10 + p as u32,
                    _ if o.ppid_one => 1,
                    _ => 5,
                };
                HolderBuilder::new(pid)
                    .inodes(&[o.inode])
                    .start(u64::from(pid))
                    .with(|h| {
                        h.pid = (!o.hidden).then_some(pid);
                        h.ppid = (!o.hidden).then_some(ppid);
                        h.uid = o.uid;
                        h.user = o.user.map(str::to_string);
                        h.exe = o.exe.filter(|_| !o.hidden).map(str::to_string);
                        h.cmdline = o
                            .argv
                            .as_ref()
                            .filter(|_| !o.hidden)
                            .map(|a| a.iter().map(|s| s.to_string()).collect());
                        h.comm = None;
                        h.age_ms = None;
                        h.orphan = o.orphan.filter(|_| !o.hidden);
                        h.unknown = o.hidden.then_some(Unknown::NotVisible);
                    })
                    .build()
            })
            .collect()
    }

    /// Group roots (docs/safety.md, "What held and free mean"), computed here: walk up through parents that
    /// are holders sharing a socket with the child.
    fn roots(hs: &[Holder]) -> Vec<usize> {
        let parent = |i: usize| -> Option<usize> {
            let (pid, ppid) = (hs[i].pid?, hs[i].ppid?);
            let _ = pid;
            hs.iter().position(|p| {
                p.pid == Some(ppid) && p.inodes.iter().any(|n| hs[i].inodes.contains(n))
            })
        };
        let mut out: Vec<usize> = (0..hs.len())
            .map(|mut i| {
                while let Some(p) = parent(i) {
                    i = p;
                }
                i
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn user_ok(u: &UserPick, h: &Holder, ctx: &Context) -> bool {
        match u {
            UserPick::Uid(n) => h.uid == *n,
            // Policy-test semantics (system_users off): the uid running
            // portguard, or the same user name.
            UserPick::Me => {
                ctx.self_uid == Some(h.uid) || (ctx.self_name.is_some() && ctx.self_name == h.user)
            }
            UserPick::Name(n) => h.user.as_deref() == Some(*n),
        }
    }

    /// Whether `h` satisfies every criterion of `r` (a missing field never
    /// satisfies cmdline, exe or orphan).
    fn root_ok(r: &RuleSpec, h: &Holder, ctx: &Context) -> bool {
        let re = |p: &str, s: Option<String>| {
            s.is_some_and(|s| regex::Regex::new(p).unwrap().is_match(&s))
        };
        r.cmdline
            .is_none_or(|p| re(p, h.cmdline.as_ref().map(|a| a.join(" "))))
            && r.exe.is_none_or(|p| re(p, h.exe.clone()))
            && r.users
                .as_ref()
                .is_none_or(|us| us.iter().any(|u| user_ok(u, h, ctx)))
            && r.orphan.is_none_or(|want| h.orphan == Some(want))
    }

    fn port_ok(r: &RuleSpec, port: u16) -> bool {
        r.ports
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|(a, b)| (*a..=*b).contains(&port)))
    }

    proptest! {
        // 512 cases unless PROPTEST_CASES says otherwise.
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
            ..ProptestConfig::default()
        })]

        #[test]
        fn a_rule_never_applies_unless_every_group_root_meets_every_criterion(
            rules in proptest::collection::vec(rule_spec(), 0..6),
            default in proptest::sample::select(vec!["refuse", "wait", "reuse"]),
            owners in proptest::collection::vec(owner_spec(), 1..7),
            port in proptest::sample::select(RESOLVED.to_vec()),
            self_uid in proptest::option::of(proptest::sample::select(UIDS.to_vec())),
            self_name in proptest::option::of(proptest::sample::select(NAMES.to_vec())),
            protect in proptest::collection::vec(0usize..7, 0..3),
        ) {
            let text = policy_text(&rules, default);
            let policy = load_source(&text, PolicySource::File("prop.toml".into()))
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            let hs = holders(&owners);
            let ctx = Context {
                self_uid,
                self_name: self_name.map(str::to_string),
                protected: std::iter::once(1)
                    .chain(protect.iter().filter(|&&i| i < hs.len()).map(|&i| 10 + i as u32))
                    .map(|pid| Protected { pid, why: ProtectedWhy::Ancestor })
                    .collect(),
                uids: None,
            };
            let state = PortState::new(port, Protocol::Tcp, vec![listening(8787, 1)], Vec::new(), hs.clone());
            let want_roots = roots(&hs);
            let got_roots: Vec<usize> = state.groups().iter().map(|g| g.root).collect();
            prop_assert_eq!(&got_roots, &want_roots, "group roots");

            let d = evaluate(&policy, &state, &ctx);

            // The rule that applied: every root meets every criterion.
            if let Some(name) = &d.rule {
                let i: usize = name[1..].parse().unwrap();
                prop_assert!(port_ok(&rules[i], port), "{name} applied on port {port}");
                for &root in &want_roots {
                    prop_assert!(
                        root_ok(&rules[i], &hs[root], &ctx),
                        "rule {} applied although root {:?} fails it\n{}", name, hs[root], text
                    );
                }
            }
            // The first applying rule in file order wins; else the default.
            let first = rules.iter().position(|r| {
                port_ok(r, port) && want_roots.iter().all(|&root| root_ok(r, &hs[root], &ctx))
            });
            prop_assert_eq!(d.rule.clone(), first.map(|i| format!("r{i}")), "\n{}", text);
            let kind = d.action.as_ref().map(Action::kind);
            match first {
                Some(i) => prop_assert_eq!(kind, Some(policy.rules[i].action.kind())),
                None => prop_assert_eq!(kind, Some(policy.defaults.action.kind())),
            }
            // Targets: every member of every group, i.e. every holder.
            let mut targets = d.targets.clone();
            targets.sort_unstable();
            prop_assert_eq!(targets, (0..hs.len()).collect::<Vec<_>>());
            // Nothing protected or pid-less is signalled without a block.
            let action = d.action.as_ref().unwrap();
            let unsignallable = hs.iter().any(|h| match h.pid {
                None => true,
                Some(pid) => ctx.protected.iter().any(|p| p.pid == pid),
            });
            if action.may_signal() {
                prop_assert_eq!(d.blocked.is_some(), unsignallable, "{:?}", d.blocked);
                if d.blocked.is_none() {
                    for &t in &d.targets {
                        let pid = hs[t].pid.unwrap();
                        prop_assert!(ctx.protected.iter().all(|p| p.pid != pid));
                    }
                }
                if action.kind() == ActionKind::Terminate {
                    let want = match &d.blocked {
                        Some(Blocked::Protected { .. } | Blocked::Container { .. }) => Outcome::Refused,
                        Some(Blocked::NoPid { .. }) => Outcome::Failed,
                        None => Outcome::Freed,
                    };
                    prop_assert_eq!(d.planned, want);
                }
            } else {
                prop_assert!(d.blocked.is_none());
            }
        }
    }
}
