//! Testing one rule's criteria against one group root, recording every
//! criterion with the value seen (no short-circuit, so the trace shows all).

use super::{Check, Context};
use crate::model::Holder;
use crate::policy::{Criteria, UserSpec};

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
                || (ctx.self_name.is_some() && ctx.self_name == h.user && ctx.uids.is_none())
        }
        UserSpec::Name(name) => match &ctx.uids {
            Some(uids) => uids.get(name).copied().flatten() == Some(h.uid),
            None => h.user.as_deref() == Some(name.as_str()),
        },
    }
}
