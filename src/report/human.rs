//! Human output: who holds a port (`who`, and after a run that did not free
//! it), and the one-line result of a run.

use super::words;
use crate::model::{PortState, Protocol};
use crate::resolver::{End, PortReport};
use crate::terminal::printable;
use std::fmt::Write as _;
use std::time::Duration;

fn age(ms: u64) -> String {
    let secs = Duration::from_secs(ms / 1000);
    if secs.is_zero() {
        format!("{ms}ms")
    } else {
        humantime::format_duration(secs).to_string()
    }
}

fn addrs(h: &crate::model::Holder) -> String {
    h.addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The holders of a port as indented process trees, then the sockets on it
/// that do not hold it.
pub fn holders_text(state: &PortState) -> String {
    let mut out = String::new();
    for g in state.groups() {
        for (depth, &i) in g.members.iter().enumerate() {
            let h = &state.holders()[i];
            let indent = if depth == 0 { "  " } else { "    └ " };
            let pad = if depth == 0 { "    " } else { "        " };
            match h.pid {
                Some(pid) => {
                    let _ = writeln!(
                        out,
                        "{indent}pid {pid}  {}",
                        printable(&h.cmdline_joined().unwrap_or_else(|| words::short_name(h)))
                    );
                    let _ = writeln!(
                        out,
                        "{pad}user {} (uid {})  exe {}",
                        words::user_label(h),
                        h.uid,
                        printable(h.exe.as_deref().unwrap_or("unknown"))
                    );
                    let parent = match (h.ppid, h.orphan) {
                        (Some(p), Some(true)) => format!("parent {p} (orphaned)"),
                        (Some(p), _) => format!("parent {p}"),
                        (None, _) => "parent unknown".into(),
                    };
                    let stopped = if h.stopped == Some(true) {
                        "  stopped"
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        out,
                        "{pad}addr {}  age {}  {parent}{stopped}",
                        addrs(h),
                        h.age_ms.map_or_else(|| "unknown".into(), age)
                    );
                    if let Some(unit) = &h.unit {
                        let kind = if unit.user.is_some() {
                            "user unit"
                        } else {
                            "unit"
                        };
                        let _ = writeln!(out, "{pad}{kind} {}", printable(&unit.name));
                    }
                    if let Some(c) = words::container(h) {
                        let _ = writeln!(out, "{pad}{c}");
                    }
                }
                None => {
                    let _ = writeln!(
                        out,
                        "{indent}pid unknown  user {} (uid {})",
                        words::user_label(h),
                        h.uid
                    );
                    let _ = writeln!(out, "{pad}addr {}", addrs(h));
                    let _ = writeln!(
                        out,
                        "{pad}why: {}",
                        words::holder_unknown(h).unwrap_or_else(|| "not visible".into())
                    );
                }
            }
        }
    }
    for o in &state.others {
        let owner = if o.inode == 0 { ", no process" } else { "" };
        let _ = writeln!(
            out,
            "  (not a holder: {} socket {} -> {}, uid {}{owner})",
            o.state_name(),
            o.local,
            o.remote,
            o.uid
        );
    }
    out
}

/// `who`: who holds each port. Runs of free ports are summarised as
/// ranges, so `who 43000-44999` does not print 2,000 lines.
pub fn who_text(states: &[PortState]) -> String {
    let mut out = String::new();
    let mut free_run: Option<(u16, u16, Protocol)> = None;
    let flush = |out: &mut String, run: &mut Option<(u16, u16, Protocol)>| match run.take() {
        Some((a, b, p)) if a == b => {
            let _ = writeln!(out, "port {a}/{p} is free");
        }
        Some((a, b, p)) => {
            let _ = writeln!(out, "ports {a}-{b}/{p} are free");
        }
        None => {}
    };
    for s in states {
        let plain_free = s.is_free() && s.others.is_empty() && s.bindable();
        if plain_free {
            match &mut free_run {
                // Checked: a run that ends at 65535 continues with no port.
                Some((_, last, p)) if last.checked_add(1) == Some(s.port) && *p == s.protocol => {
                    *last = s.port
                }
                _ => {
                    flush(&mut out, &mut free_run);
                    free_run = Some((s.port, s.port, s.protocol));
                }
            }
            continue;
        }
        flush(&mut out, &mut free_run);
        if s.holders().is_empty() {
            let lingering = s.lingering().count();
            if !s.bindable() {
                let _ = writeln!(
                    out,
                    "port {}/{} cannot be bound: no process holds it{}",
                    s.port,
                    s.protocol,
                    if lingering > 0 {
                        ", only sockets in TIME_WAIT remain"
                    } else {
                        ""
                    }
                );
            } else {
                let _ = writeln!(out, "port {}/{} is free", s.port, s.protocol);
            }
        } else {
            let n = s.holders().len();
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
    flush(&mut out, &mut free_run);
    out
}

/// The short human result of one port after a real run: the message, and
/// who holds the port when it was not freed.
pub fn result_text(r: &PortReport) -> String {
    let mut out = format!("{}\n", printable(&words::message(r)));
    if matches!(r.end, End::Refused(_) | End::Failed(_) | End::Reused(_)) {
        out.push_str(&holders_text(r.current()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free(port: u16) -> PortState {
        PortState::new(port, Protocol::Tcp, Vec::new(), Vec::new(), Vec::new())
    }

    /// Found by the `evaluate` fuzz target: a run of free ports ending at
    /// 65535 followed by another free port overflowed `last + 1` (a panic
    /// in debug builds; in release, a following port 0 joined the run).
    #[test]
    fn a_run_of_free_ports_ends_at_65535() {
        assert_eq!(
            who_text(&[free(65534), free(65535), free(65535)]),
            "ports 65534-65535/tcp are free\nport 65535/tcp is free\n"
        );
        assert_eq!(
            who_text(&[free(65535), free(0)]),
            "port 65535/tcp is free\nport 0/tcp is free\n"
        );
        assert_eq!(
            who_text(&[free(80), free(81), free(83)]),
            "ports 80-81/tcp are free\nport 83/tcp is free\n"
        );
    }
}
