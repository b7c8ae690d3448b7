//! Every sentence a user reads about a port: holders, outcomes, failures,
//! refusals, plans and steps, made from the typed report. Human output, the
//! `--explain` trace and JSON's `message`/`detail` fields all take their
//! words from here, so a wording is changed in one place.

use crate::act::health::{Failed, HealthResult, Passed};
use crate::act::steps::{Event, Skip, Step};
use crate::act::{Failure, Freed, Refusal};
use crate::evaluate::{Blocked, ProtectedWhy};
use crate::model::{Holder, PortState, Unknown};
use crate::policy::{Action, ActionKind, Placeholder, Template};
use crate::resolver::{End, PortReport};
use crate::terminal::printable;
use std::time::Duration;

const UNKNOWN: &str = "unknown";

/// A short name for messages: the command line with argv[0] cut to its
/// base name, at most 80 characters; else `comm`.
pub fn short_name(h: &Holder) -> String {
    let from_argv = h.cmdline.as_ref().filter(|a| !a.is_empty()).map(|argv| {
        let base = argv[0].rsplit('/').next().unwrap_or(&argv[0]);
        let joined = std::iter::once(base)
            .chain(argv[1..].iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let mut s = printable(&joined).into_owned();
        if s.chars().count() > 80 {
            s = s.chars().take(79).collect::<String>() + "…";
        }
        s
    });
    from_argv
        .or_else(|| h.comm.as_deref().map(|c| printable(c).into_owned()))
        .unwrap_or_else(|| "unknown process".to_string())
}

/// The user name, or `uid N` when the system has no name for it.
pub fn user_label(h: &Holder) -> String {
    match &h.user {
        Some(name) => printable(name).into_owned(),
        None => format!("uid {}", h.uid),
    }
}

/// Why a holder's pid is unknown, in words.
pub fn unknown_reason(why: Unknown, h: &Holder) -> String {
    let owner = match &h.user {
        Some(name) => format!("uid {} ({})", h.uid, printable(name)),
        None => format!("uid {}", h.uid),
    };
    match why {
        Unknown::NotYourProcess => format!(
            "cannot inspect: owned by {owner}, not your process; \
             run as that user or as root to see the pid"
        ),
        Unknown::NotVisible => {
            "no visible process holds the socket (another pid namespace, or it is being closed)"
                .to_string()
        }
        Unknown::HiddenOwner => format!(
            "the socket was created by {owner}, which none of the processes portguard can see \
             runs as: the root of this process tree cannot be inspected; \
             run as that user or as root to see it"
        ),
        Unknown::ForeignPidNamespace => "/proc shows another pid namespace than portguard's, \
             so its pids cannot be signalled from here"
            .to_string(),
        Unknown::LsofCannotInspect => "the port cannot be bound, but lsof shows no process \
             using it: it belongs to a process lsof may not inspect; run as root to see it"
            .to_string(),
        Unknown::TestOwner => "test owner without a pid".to_string(),
    }
}

/// A holder's unknown reason in words, when it has one.
pub fn holder_unknown(h: &Holder) -> Option<String> {
    h.unknown.map(|why| unknown_reason(why, h))
}

/// `container pgweb (image postgres:16, id 3f2a1b2c3d4e)`.
pub fn container(h: &Holder) -> Option<String> {
    h.container.as_ref().map(|c| {
        let id: String = c.id.chars().take(12).collect();
        format!(
            "container {} (image {}, id {})",
            printable(&c.name),
            printable(&c.image),
            printable(&id)
        )
    })
}

/// `pid 4242 (python3 -m headroom.cli proxy, user alice)`, or for an owner
/// that cannot be seen, its uid and why.
pub fn describe(h: &Holder) -> String {
    match h.pid {
        Some(pid) => match container(h) {
            Some(c) => format!("{c} (through pid {pid}, {})", short_name(h)),
            None => format!("pid {pid} ({}, user {})", short_name(h), user_label(h)),
        },
        None => format!(
            "a process of user {} whose pid is unknown ({})",
            user_label(h),
            holder_unknown(h).unwrap_or_else(|| "not visible".into())
        ),
    }
}

/// Each group root described, with its worker count: how messages name
/// the holders of a port.
pub fn holders_summary(state: &PortState) -> String {
    groups_summary(state, |_| true)
}

/// [`holders_summary`] of the groups whose root passes `keep`.
fn groups_summary(state: &PortState, keep: impl Fn(&Holder) -> bool) -> String {
    let roots: Vec<String> = state
        .groups()
        .iter()
        .filter(|g| keep(&state.holders()[g.root]))
        .map(|g| {
            let mut s = describe(&state.holders()[g.root]);
            let extra = g.members.len() - 1;
            if extra > 0 {
                s.push_str(&format!(
                    " with {extra} worker{}",
                    if extra == 1 { "" } else { "s" }
                ));
            }
            s
        })
        .collect();
    roots.join("; ")
}

/// Why a process is protected.
pub fn protected_why(why: ProtectedWhy) -> &'static str {
    match why {
        ProtectedWhy::Init => "pid 1 (init) is never signalled",
        ProtectedWhy::Portguard => "it is portguard itself",
        ProtectedWhy::Ancestor => "it is an ancestor of portguard (the program that called it)",
    }
}

/// Fills a `message` template for holder `h`. Owner fields read `unknown`
/// when they could not be seen; argv and paths are escaped.
pub fn fill(template: &Template, port: u16, h: &Holder, rule: Option<&str>) -> String {
    template.fill(|p| match p {
        Placeholder::Port => port.to_string(),
        Placeholder::Pid => h.pid.map_or_else(|| UNKNOWN.into(), |p| p.to_string()),
        Placeholder::User => user_label(h),
        Placeholder::Uid => h.uid.to_string(),
        Placeholder::Exe => printable(h.exe.as_deref().unwrap_or(UNKNOWN)).into_owned(),
        Placeholder::Cmdline => h
            .cmdline_joined()
            .map_or_else(|| UNKNOWN.into(), |c| printable(&c).into_owned()),
        Placeholder::Rule => rule.unwrap_or("default").to_string(),
        Placeholder::Container => h
            .container
            .as_ref()
            .map_or_else(|| UNKNOWN.into(), |c| printable(&c.name).into_owned()),
        Placeholder::Image => h
            .container
            .as_ref()
            .map_or_else(|| UNKNOWN.into(), |c| printable(&c.image).into_owned()),
        Placeholder::Unit => h
            .unit
            .as_ref()
            .map_or_else(|| UNKNOWN.into(), |u| printable(&u.name).into_owned()),
    })
}

/// The message of a refusal by policy: the rule's template for the first
/// group's root (noting further holders), or the built-in wording.
pub fn refuse_message(
    template: Option<&Template>,
    state: &PortState,
    rule: Option<&str>,
) -> String {
    let Some(first) = state.roots().next() else {
        return format!("port {} is free", state.port);
    };
    let mut msg = match template {
        Some(t) => fill(t, state.port, first, rule),
        None => match rule {
            Some(rule) => format!(
                "port {} is held by {}; refused by rule {}",
                state.port,
                holders_summary(state),
                printable(rule)
            ),
            None => format!(
                "port {} is held by {}; no rule applies, so it is left alone",
                state.port,
                holders_summary(state)
            ),
        },
    };
    let others = state.groups().len() - 1;
    if template.is_some() && others > 0 {
        let pids: Vec<String> = state
            .roots()
            .skip(1)
            .map(|h| h.pid.map_or_else(|| UNKNOWN.into(), |p| p.to_string()))
            .collect();
        msg.push_str(&format!(" (and {others} more: pid {})", pids.join(", ")));
    }
    msg
}

fn dur(ms: u64) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_millis(ms))
}

fn pids(list: &[u32]) -> String {
    list.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A passed health check, for the reuse message.
pub fn health_passed(p: &Passed) -> String {
    match p {
        Passed::Tcp { addr } => format!("tcp connect to {addr} succeeded"),
        Passed::Http { url, status } => format!("GET {url} answered {status}"),
        Passed::Skipped => "skipped: health checks apply to tcp".to_string(),
    }
}

/// A failed health check.
pub fn health_failed(f: &Failed) -> String {
    match f {
        Failed::NoAddress => "no address to connect to".to_string(),
        Failed::Connect { addr, error } => format!("tcp connect to {addr} failed: {error}"),
        Failed::Request { url, error } => format!("GET {url} failed: {error}"),
        Failed::Status { url, status } => {
            format!("GET {url} answered {status}, which the policy does not accept")
        }
        Failed::ReadBody { url, error } => format!("GET {url}: cannot read the body: {error}"),
        Failed::Body {
            url,
            status,
            pattern,
            body,
        } => format!(
            "GET {url} answered {status}, but the body does not match '{pattern}': {body:?}"
        ),
    }
}

/// The words for a failure on `port`; `report` gives the holders to name.
pub fn failure(f: &Failure, r: &PortReport) -> String {
    let (port, proto) = (r.port, r.protocol);
    let now = r.current();
    match f {
        Failure::Timeout { pids: list, after_ms } => format!(
            "port {port} is still held {} after the first signal: pid {} did not exit",
            dur(*after_ms),
            pids(list)
        ),
        Failure::PermissionDenied { pid, uid, user } => format!(
            "port {port}: permission denied to signal pid {pid} (user {}); run portguard as that user or as root",
            user.as_deref().map_or_else(|| format!("uid {uid}"), |u| printable(u).into_owned())
        ),
        Failure::PidUnknown { uid, why } => {
            let h = now
                .holders()
                .iter()
                .find(|h| h.pid.is_none() && h.uid == *uid);
            let reason = h.map_or_else(
                || "the owning process is not visible".to_string(),
                |h| unknown_reason(*why, h),
            );
            format!(
                "port {port} is held by a process of uid {uid} whose pid is unknown ({reason}); it cannot be signalled"
            )
        }
        Failure::IdentityUnknown { pid } => format!(
            "port {port}: cannot confirm the identity of pid {pid}; not signalling it"
        ),
        Failure::SignalFailed { pid, error } => {
            format!("port {port}: cannot signal pid {pid}: {error}")
        }
        Failure::Unhealthy { failed } => format!(
            "port {port} is held by {}, but it is not healthy: {}",
            holders_summary(now),
            health_failed(failed)
        ),
        Failure::WaitTimeout { timeout_ms } => {
            if now.holders().is_empty() {
                format!(
                    "port {port} was still held after waiting {}, and has been released since",
                    dur(*timeout_ms)
                )
            } else {
                format!(
                    "port {port} is still held after waiting {}: {}",
                    dur(*timeout_ms),
                    holders_summary(now)
                )
            }
        }
        Failure::Retaken {
            rounds,
            supervisor,
            unit,
        } => {
            let mut msg = if now.holders().is_empty() {
                format!("port {port}/{proto} was taken again after {rounds} rounds")
            } else {
                format!(
                    "port {port}/{proto} was taken again after {rounds} rounds: now held by {}",
                    holders_summary(now)
                )
            };
            if let Some(ppid) = supervisor {
                msg.push_str(&format!(
                    "; its parent pid {ppid} keeps starting it again (a supervisor)"
                ));
            }
            if let Some(unit) = unit {
                let user = if unit.user.is_some() { " --user" } else { "" };
                msg.push_str(&format!(
                    "; it runs in the systemd unit {name}, whose Restart= starts it again: stop the unit instead (`systemctl{user} stop {name}`)",
                    name = printable(&unit.name)
                ));
            }
            msg
        }
        Failure::Interrupted { sent } if r.steps.is_empty() && sent.is_empty() => {
            format!("port {port}/{proto}: interrupted before acting; nothing was signalled")
        }
        Failure::Interrupted { sent } => {
            let done = if sent.is_empty() {
                "before any signal was sent".to_string()
            } else {
                let each: Vec<String> = sent
                    .iter()
                    .map(|(pid, sig)| format!("{sig} to pid {pid}"))
                    .collect();
                format!("after sending {}", each.join(", "))
            };
            format!("port {port}: interrupted {done}; nothing further was signalled")
        }
        Failure::TimeWait { sockets } => format!(
            "port {port}/{proto} cannot be bound yet: {}, which no process owns, {} from earlier connections; \
             the kernel keeps them for up to 60 s (TIME_WAIT); retry after that, \
             or use another port (even with SO_REUSEADDR, a bind has just failed)",
            plural(*sockets, "socket in TIME_WAIT", "sockets in TIME_WAIT"),
            if *sockets == 1 { "remains" } else { "remain" }
        ),
        Failure::NotBindable => format!(
            "port {port}/{proto} cannot be bound, but no socket on it is visible \
             (another network namespace, or a process portguard may not inspect)"
        ),
        Failure::LockTimeout { waited_ms } => format!(
            "port {port}/{proto}: another portguard has been resolving port {port}/{proto} for more than {}; giving up",
            dur(*waited_ms)
        ),
        Failure::LockError { error } => format!("port {port}/{proto}: {error}"),
        Failure::Internal => {
            format!("port {port}/{proto} was not resolved (a worker thread failed)")
        }
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The note a free or freed port gets while TIME_WAIT sockets remain.
fn lingering_note(n: usize) -> String {
    if n == 0 {
        return String::new();
    }
    format!(
        "; {} {} on it: a server that does not set SO_REUSEADDR may fail to bind for up to 60 s",
        plural(n, "socket in TIME_WAIT", "sockets in TIME_WAIT"),
        if n == 1 { "remains" } else { "remain" }
    )
}

/// The one-line summary of a resolved port.
pub fn message(r: &PortReport) -> String {
    let (port, proto) = (r.port, r.protocol);
    let state = &r.rounds[r.rounds.len() - 1].state;
    let free_at = r
        .steps
        .iter()
        .rev()
        .find(|s| s.event == Event::Free)
        .map_or(0, |s| s.at_ms);
    match &r.end {
        End::Free => format!("port {port}/{proto} is free{}", lingering_note(r.lingering)),
        End::Planned => plan(r),
        End::FreedLater => format!(
            "freed port {port}/{proto} in {free_at} ms{}",
            lingering_note(r.lingering)
        ),
        End::Freed(Freed::Terminated {
            containers,
            ..
        }) if !containers.is_empty() => format!(
            "freed port {port} in {free_at} ms: stopped container {} through the Docker API{}",
            containers
                .iter()
                .map(|c| printable(c).into_owned())
                .collect::<Vec<_>>()
                .join(", "),
            lingering_note(r.lingering)
        ),
        End::Freed(Freed::Terminated {
            pids: list,
            escalated,
            escalation,
            ..
        }) => {
            let root = r
                .rounds
                .iter()
                .rev()
                .find_map(|round| round.state.roots().next())
                .map(short_name)
                .unwrap_or_default();
            let mut msg = format!(
                "freed port {port} in {free_at} ms: terminated {root} (pid {})",
                pids(list)
            );
            if let (false, Some(sig)) = (escalated.is_empty(), escalation) {
                msg.push_str(&format!(
                    "; pid {} ignored the first signal and needed {sig}",
                    pids(escalated)
                ));
            }
            msg + &lingering_note(r.lingering)
        }
        End::Freed(Freed::Released) => format!(
            "port {port} was released after {free_at} ms of waiting{}",
            lingering_note(r.lingering)
        ),
        End::Reused(passed) => format!(
            "port {port} is served by {}{}; reuse it (rule {})",
            holders_summary(state),
            passed
                .as_ref()
                .map(|p| format!(" ({})", health_passed(p)))
                .unwrap_or_default(),
            printable(r.decision().rule.as_deref().unwrap_or("default"))
        ),
        End::Refused(Refusal::Policy { template }) => {
            refuse_message(template.as_ref(), state, r.decision().rule.as_deref())
        }
        End::Refused(Refusal::Protected { pid, why }) => format!(
            "port {port} is held by pid {pid}, which portguard will not signal: {}",
            protected_why(*why)
        ),
        End::Refused(Refusal::UnknownContainer { pid, why }) => unknown_container(port, *pid, why),
        End::Refused(Refusal::ContainerNotStopped { container, why }) => format!(
            "port {port} is published by container {} (image {}), which could not be stopped through the Docker API: {why}; stop it yourself: `docker stop {}`",
            printable(&container.name),
            printable(&container.image),
            printable(&container.name)
        ),
        End::Failed(f) => failure(f, r),
    }
}

/// A docker-proxy whose container is unknown: why, and how to find it.
fn unknown_container(port: u16, pid: u32, why: &str) -> String {
    format!(
        "port {port} is published by a container (docker-proxy pid {pid}), which portguard cannot identify: {why}; \
         portguard never signals docker-proxy: find the container with `docker ps --filter publish={port}` and stop it with `docker stop`"
    )
}

/// What a real run would do, in one line, for `--explain`.
fn plan(r: &PortReport) -> String {
    let state = &r.rounds[r.rounds.len() - 1].state;
    let decision = r.decision();
    let Some(action) = &decision.action else {
        return format!("port {}/{} is free", r.port, r.protocol);
    };
    let by = match &decision.rule {
        Some(rule) => format!("rule {}", printable(rule)),
        None => "the default of the policy".to_string(),
    };
    if let (ActionKind::Terminate, Some(blocked)) = (action.kind(), &decision.blocked) {
        return match blocked {
            Blocked::Protected { pid, why } => format!(
                "would refuse: {by} says terminate, but pid {pid} is protected ({})",
                protected_why(*why)
            ),
            Blocked::Container { pid, why } => format!(
                "would refuse: {by} says terminate, but {}",
                unknown_container(r.port, *pid, why)
            ),
            Blocked::NoPid { uid, reason } => {
                let why = state
                    .holders()
                    .iter()
                    .find(|h| h.pid.is_none() && h.uid == *uid)
                    .map_or_else(|| "not visible".to_string(), |h| unknown_reason(*reason, h));
                format!(
                    "would fail: {by} says terminate, but a holder of uid {uid} has no known pid ({why})"
                )
            }
        };
    }
    match action {
        Action::Refuse { message } => format!(
            "would refuse: {}",
            refuse_message(message.as_ref(), state, decision.rule.as_deref())
        ),
        Action::Terminate(t) => {
            let containers: Vec<String> = state
                .holders()
                .iter()
                .filter_map(|h| h.container.as_ref())
                .map(|c| printable(&c.name).into_owned())
                .collect();
            if containers.is_empty() {
                return format!("would {action}: {} ({by})", holders_summary(state));
            }
            // The other holders are signalled as usual: say so.
            let others = groups_summary(state, |h| !h.is_docker_proxy());
            let also = if others.is_empty() {
                String::new()
            } else {
                format!(", and {action}: {others}")
            };
            format!(
                "would stop container {} through the Docker API (`docker stop -t {}`), never signalling docker-proxy{also} ({by})",
                containers.join(", "),
                t.grace.as_secs_f64().ceil()
            )
        }
        _ => format!("would {action}: {} ({by})", holders_summary(state)),
    }
}

/// Why a process was not signalled.
fn skip(why: Skip) -> &'static str {
    match why {
        Skip::Exited => "it has already exited",
        Skip::PidReused => "the pid now belongs to another process (pid reused); not signalled",
        Skip::ReleasedSocket => "it no longer holds the socket; not signalled",
        Skip::IdentityUnknown => {
            "its start time could not be read, so its identity cannot be confirmed"
        }
        Skip::ExitedBeforeSignal => "it exited before the signal",
    }
}

/// The words of a step, when it has more to say than its name, pid and
/// signal.
pub fn step_detail(step: &Step) -> Option<String> {
    Some(match &step.event {
        Event::Skipped { why, .. } => skip(*why).to_string(),
        Event::Resumed { .. } => {
            "it was stopped; SIGCONT lets it run its shutdown at once".to_string()
        }
        Event::Settle { ms } => format!(
            "watched the freed port for {ms} ms: a terminated holder's parent or service manager could start it again"
        ),
        Event::Retaken => "the port was bound again right after it was freed".to_string(),
        Event::Health { passed, result } => match (passed, result) {
            (_, HealthResult::Passed(p)) => format!("passed: {}", health_passed(p)),
            (_, HealthResult::Failed(f)) => format!("failed: {}", health_failed(f)),
        },
        Event::Fallback { to } => format!("falling back to {to}"),
        Event::Rediscover { round } => {
            format!("the port was taken again; round {round} judges the new holders")
        }
        Event::Locked { waited_ms } => format!(
            "waited {waited_ms} ms for another portguard resolving this port, then discovered again"
        ),
        Event::Error { error, .. } => error.clone(),
        Event::StopContainer { name, .. } => format!("docker stop {}", printable(name)),
        Event::ContainerStopped { id } => {
            format!("container {} stopped", id.get(..12).unwrap_or(id))
        }
        Event::Unit { unit } => format!(
            "it runs in the systemd unit {}, which may start it again",
            printable(&unit.name)
        ),
        Event::Signal { .. }
        | Event::Exited { .. }
        | Event::Free
        | Event::Timeout
        | Event::Interrupted => return None,
    })
}

/// `portguard run` without a command after `--`.
pub const RUN_NEEDS_COMMAND: &str = "run needs a command after --";

/// Why `portguard run` does not start `program` (the port is not free).
pub fn not_starting(program: &str, reused: bool) -> String {
    format!(
        "not starting {}: {}",
        printable(program),
        if reused {
            "the port is already served by the process above; use it"
        } else {
            "the port is not free"
        }
    )
}

/// `portguard run` could not exec `program`.
pub fn cannot_start(program: &str, err: &std::io::Error) -> String {
    format!("cannot start {}: {err}", printable(program))
}

/// A lock directory candidate was passed over (someone else made it).
pub fn lock_dir_skipped(skipped: &dyn std::fmt::Display, used: &std::path::Path) -> String {
    format!(
        "warning: {}; using {}",
        printable(&skipped.to_string()),
        printable(&used.display().to_string())
    )
}

/// `what` (the man page, the schema) could not be written out.
pub fn cannot_write(what: &str, err: &std::io::Error) -> String {
    format!("cannot write {what}: {err}")
}
