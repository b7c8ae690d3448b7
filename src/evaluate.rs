//! Matching and evaluation: rules × holders → a [`Decision`] with its trace.
//!
//! The decision is data. It records every criterion tested, the value seen
//! and whether it held, which rule won (or that the default applied), and the
//! plan — so `--explain`, `-v`, JSON output and `portguard test` all render the
//! same facts, and nothing is printed from in here.

use crate::model::{Holder, PortState};
use crate::policy::{Action, ActionKind, Criteria, Policy, Rule, UserSpec};
use serde::Serialize;

/// Who is asking, and what must never be signalled.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// uid running portguard (`"$self"`).
    pub self_uid: Option<u32>,
    /// User name running portguard (`"$self"` in policy tests, by name).
    pub self_name: Option<String>,
    /// Processes that are never signalled, with the reason.
    pub protected: Vec<Protected>,
    /// Whether user names in policies may be resolved through the system's
    /// user database (off in policy tests, whose owners are data).
    pub system_users: bool,
}

/// A process portguard must never signal (SPEC "Safety").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Protected {
    /// Its pid.
    pub pid: u32,
    /// Why, in words: "portguard itself", "pid 1 (init)", ...
    pub why: String,
}

impl Context {
    /// The context of this process: its own uid and name, and itself, its
    /// ancestors and pid 1 protected.
    pub fn for_this_process(ancestors: &[u32]) -> Self {
        let uid = rustix::process::getuid().as_raw();
        let me = std::process::id();
        let mut protected = vec![Protected {
            pid: 1,
            why: "pid 1 (init) is never signalled".into(),
        }];
        for &pid in ancestors {
            if pid == 1 {
                continue;
            }
            let why = if pid == me {
                "it is portguard itself".to_string()
            } else {
                "it is an ancestor of portguard (the program that called it)".to_string()
            };
            protected.push(Protected { pid, why });
        }
        Context {
            self_uid: Some(uid),
            self_name: crate::users::name_of(uid),
            protected,
            system_users: true,
        }
    }

    fn protected(&self, pid: u32) -> Option<&Protected> {
        self.protected.iter().find(|p| p.pid == pid)
    }
}

/// The result of testing one criterion against one group root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `cmdline`, `exe`, `user`, `orphan` or `ports`.
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

/// Outcome of a port, planned or done (SPEC JSON `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Nothing held the port.
    Free,
    /// The action freed it.
    Freed,
    /// Held by an owner the policy accepts.
    Reuse,
    /// The policy forbids touching the owner.
    Refused,
    /// The action could not free the port.
    Failed,
}

impl Outcome {
    /// The exit code of SPEC for this outcome.
    pub fn exit_code(self) -> crate::exit::Exit {
        use crate::exit::Exit;
        match self {
            Outcome::Free | Outcome::Freed => Exit::Free,
            Outcome::Reuse => Exit::Reuse,
            Outcome::Refused => Exit::Refused,
            Outcome::Failed => Exit::Failed,
        }
    }

    /// Lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Free => "free",
            Outcome::Freed => "freed",
            Outcome::Reuse => "reuse",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// Why a decided action cannot be carried out as planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Blocked {
    /// A target is protected: refused (exit 4).
    Protected {
        /// The protected pid.
        pid: u32,
        /// Why it is protected.
        why: String,
    },
    /// A target has no pid and cannot be signalled: failed (exit 5).
    NoPid {
        /// uid of the socket.
        uid: u32,
        /// Why the pid is unknown.
        reason: String,
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
    if state.holders.is_empty() {
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
        .groups
        .iter()
        .flat_map(|g| g.members.iter().copied())
        .collect();
    let blocked = if action.may_signal() {
        blocked_target(&targets, &state.holders, ctx)
    } else {
        None
    };
    let planned = match (action.kind(), &blocked) {
        (ActionKind::Terminate, Some(Blocked::Protected { .. })) => Outcome::Refused,
        (ActionKind::Terminate, Some(Blocked::NoPid { .. })) => Outcome::Failed,
        (ActionKind::Terminate | ActionKind::Wait, _) => Outcome::Freed,
        (ActionKind::Refuse, _) => Outcome::Refused,
        (ActionKind::Reuse, _) => Outcome::Reuse,
    };
    Decision {
        rule: winner.map(|r| r.name.clone()),
        action: Some(action),
        trace,
        targets,
        blocked,
        planned,
    }
}

/// The first target that must not (protected) or cannot (no pid) be signalled.
pub fn blocked_target(targets: &[usize], holders: &[Holder], ctx: &Context) -> Option<Blocked> {
    let mut no_pid = None;
    for &i in targets {
        let h = &holders[i];
        match h.pid {
            Some(pid) => {
                if let Some(p) = ctx.protected(pid) {
                    return Some(Blocked::Protected {
                        pid,
                        why: p.why.clone(),
                    });
                }
            }
            None if no_pid.is_none() => {
                no_pid = Some(Blocked::NoPid {
                    uid: h.uid,
                    reason: h
                        .unknown_reason
                        .clone()
                        .unwrap_or_else(|| "the owning process is not visible".into()),
                });
            }
            None => {}
        }
    }
    no_pid
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
        .groups
        .iter()
        .map(|g| {
            let root = &state.holders[g.root];
            let checks = check_criteria(&rule.criteria, root, ctx);
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

const UNKNOWN: &str = "unknown";

/// Tests every criterion of `c` against one owner (no short-circuit, so the
/// trace shows all of them). A field that could not be read never satisfies
/// `cmdline`, `exe` or `orphan`; `user` works from the socket's uid.
pub fn check_criteria(c: &Criteria, h: &Holder, ctx: &Context) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(re) = &c.cmdline {
        let joined = h.cmdline_joined();
        checks.push(Check {
            criterion: "cmdline",
            expected: re.as_str().to_string(),
            held: joined.as_deref().is_some_and(|s| re.is_match(s)),
            seen: joined.unwrap_or_else(|| UNKNOWN.into()),
        });
    }
    if let Some(re) = &c.exe {
        checks.push(Check {
            criterion: "exe",
            expected: re.as_str().to_string(),
            held: h.exe.as_deref().is_some_and(|s| re.is_match(s)),
            seen: h.exe.clone().unwrap_or_else(|| UNKNOWN.into()),
        });
    }
    if let Some(users) = &c.user {
        checks.push(Check {
            criterion: "user",
            expected: users
                .iter()
                .map(|u| match u {
                    UserSpec::Me => format!(
                        "$self ({})",
                        ctx.self_name
                            .clone()
                            .or(ctx.self_uid.map(|u| u.to_string()))
                            .unwrap_or_else(|| UNKNOWN.into())
                    ),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" or "),
            seen: match &h.user {
                Some(name) => format!("{name} (uid {})", h.uid),
                None => format!("uid {}", h.uid),
            },
            held: users.iter().any(|u| user_matches(u, h, ctx)),
        });
    }
    if let Some(want) = c.orphan {
        checks.push(Check {
            criterion: "orphan",
            expected: want.to_string(),
            seen: h.orphan.map_or_else(|| UNKNOWN.into(), |o| o.to_string()),
            held: h.orphan == Some(want),
        });
    }
    checks
}

fn user_matches(spec: &UserSpec, h: &Holder, ctx: &Context) -> bool {
    match spec {
        UserSpec::Uid(uid) => h.uid == *uid,
        UserSpec::Me => {
            ctx.self_uid == Some(h.uid)
                || (ctx.self_name.is_some() && ctx.self_name == h.user && !ctx.system_users)
        }
        UserSpec::Name(name) => {
            if ctx.system_users {
                crate::users::uid_of(name) == Some(h.uid)
            } else {
                h.user.as_deref() == Some(name.as_str())
            }
        }
    }
}

/// Fills a `message` template for the first group's root. `{pid}` and the
/// other owner fields read `unknown` when they could not be seen.
pub fn render_template(template: &str, port: u16, h: &Holder, rule: Option<&str>) -> String {
    let value = |name: &str| -> Option<String> {
        Some(match name {
            "port" => port.to_string(),
            "pid" => h.pid.map_or_else(|| UNKNOWN.into(), |p| p.to_string()),
            "user" => h.user.clone().unwrap_or_else(|| format!("uid {}", h.uid)),
            "uid" => h.uid.to_string(),
            "exe" => h.exe.clone().unwrap_or_else(|| UNKNOWN.into()),
            "cmdline" => h.cmdline_joined().unwrap_or_else(|| UNKNOWN.into()),
            "rule" => rule.unwrap_or("default").to_string(),
            _ => return None,
        })
    };
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after
            .find('}')
            .and_then(|close| Some((close, value(&after[..close])?)))
        {
            Some((close, v)) => {
                out.push_str(&v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}
