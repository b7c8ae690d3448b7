//! Testing one rule's criteria against one group root, recording every
//! criterion with the value seen (no short-circuit, so the trace shows all).

use super::{Check, Context};
use crate::model::{ClientStatus, Clients, ClientsSeen, Holder, PortState};
use crate::policy::{Criteria, UserSpec};

const UNKNOWN: &str = "unknown";

/// Tests every criterion of `c` against one owner (no short-circuit, so the
/// trace shows all of them). A field that could not be read never satisfies
/// `cmdline`, `exe` or `orphan`; `user` works from the socket's uid.
pub fn check_criteria(c: &Criteria, h: &Holder, state: &PortState, ctx: &Context) -> Vec<Check> {
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
    // A visible process outside any unit or container has none; only an
    // owner that cannot be seen is unknown. Neither matches.
    let absent = if h.pid.is_some() { "none" } else { UNKNOWN };
    let regex =
        |checks: &mut Vec<Check>, criterion, re: &crate::policy::Pattern, seen: Option<&str>| {
            checks.push(Check {
                criterion,
                expected: re.as_str().to_string(),
                held: seen.is_some_and(|s| re.is_match(s)),
                seen: seen.unwrap_or(absent).to_string(),
            });
        };
    if let Some(re) = &c.unit {
        regex(
            &mut checks,
            "unit",
            re,
            h.unit.as_ref().map(|u| u.name.as_str()),
        );
    }
    if let Some(re) = &c.container {
        regex(
            &mut checks,
            "container",
            re,
            h.container.as_ref().map(|c| c.name.as_str()),
        );
    }
    if let Some(re) = &c.image {
        regex(
            &mut checks,
            "image",
            re,
            h.container.as_ref().map(|c| c.image.as_str()),
        );
    }
    if let Some(want) = &c.clients {
        let seen = state.clients.get(want.dir.as_str());
        let live = seen.and_then(|c| c.seen.any_live());
        checks.push(Check {
            criterion: "clients",
            expected: format!(
                "{} in {}",
                if want.live {
                    "live clients"
                } else {
                    "no live clients"
                },
                want.dir
            ),
            seen: seen.map_or_else(|| UNKNOWN.into(), clients_seen),
            held: live == Some(want.live),
        });
    }
    checks
}

/// What a client directory showed, in one line for the trace: each file
/// with its pid's state.
fn clients_seen(c: &Clients) -> String {
    match &c.seen {
        ClientsSeen::Missing => format!("no directory {}", c.dir),
        ClientsSeen::Unreadable { error } => format!("unknown: cannot read {}: {error}", c.dir),
        ClientsSeen::Read { files, .. } if files.is_empty() => {
            format!("no client records in {}", c.dir)
        }
        ClientsSeen::Read { files, truncated } => {
            let mut parts: Vec<String> = files
                .iter()
                .map(|f| {
                    let state = match f.status {
                        ClientStatus::Live => "live",
                        ClientStatus::Exited => "stale: exited",
                        ClientStatus::Zombie => "stale: a zombie",
                        ClientStatus::Recycled => "stale: pid reused",
                        ClientStatus::Caller => "not counted: portguard or its caller",
                    };
                    format!("pid {} {state}", f.pid)
                })
                .collect();
            if *truncated {
                parts.push("(more not read)".into());
            }
            parts.join(", ")
        }
    }
}

fn user_matches(spec: &UserSpec, h: &Holder, ctx: &Context) -> bool {
    match spec {
        UserSpec::Uid(uid) => h.uid == *uid,
        UserSpec::Me => {
            ctx.self_uid == Some(h.uid)
                || (ctx.self_name.is_some() && ctx.self_name == h.user && ctx.uids.is_none())
        }
        UserSpec::Name(name) => match &ctx.uids {
            Some(uids) => uids.get(name).copied().flatten() == Some(h.uid),
            None => h.user.as_deref() == Some(name.as_str()),
        },
    }
}
