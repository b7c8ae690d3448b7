//! The actions a rule can choose, with every setting resolved, and how a
//! plan reads in words (`--explain`).

use super::pattern::Pattern;
use super::template::Template;
use std::fmt;
use std::time::Duration;

/// The four kinds of action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Signal the holders until the port is free.
    Terminate,
    /// Wait, touching nothing, until the holders release the port.
    Wait,
    /// Leave the holder alone and report it.
    Refuse,
    /// Accept the holder as the server to use.
    Reuse,
}

impl ActionKind {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [ActionKind; 4] = [
        ActionKind::Terminate,
        ActionKind::Wait,
        ActionKind::Refuse,
        ActionKind::Reuse,
    ];

    /// Name as written in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Terminate => "terminate",
            ActionKind::Wait => "wait",
            ActionKind::Refuse => "refuse",
            ActionKind::Reuse => "reuse",
        }
    }

    /// Parses an action name as written in policies.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "terminate" => ActionKind::Terminate,
            "wait" => ActionKind::Wait,
            "refuse" => ActionKind::Refuse,
            "reuse" => ActionKind::Reuse,
            _ => return None,
        })
    }

    /// The rule keys that configure this action.
    pub fn settings(self) -> &'static [&'static str] {
        match self {
            ActionKind::Terminate => &["signal", "grace", "escalate", "timeout"],
            ActionKind::Wait => &["timeout", "then"],
            ActionKind::Refuse => &["message"],
            ActionKind::Reuse => &[
                "health",
                "health_body",
                "health_status",
                "health_any_host",
                "timeout",
                "then",
            ],
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action with every setting resolved (rule, then `[defaults]`, then the
/// built-in defaults).
#[derive(Debug, Clone)]
pub enum Action {
    /// Signal every member of the matched groups, escalate after `grace`.
    Terminate(Terminate),
    /// Wait until the port is free, up to `timeout`, then `then` (or fail).
    Wait {
        /// Give up after this.
        timeout: Duration,
        /// Fallback action; `None` fails with exit 5.
        then: Option<Box<Action>>,
    },
    /// Do nothing; exit 4 with a message.
    Refuse {
        /// Message template; `None` uses the built-in message.
        message: Option<Template>,
    },
    /// Accept the holder; exit 3.
    Reuse {
        /// Check that the holder answers before accepting it.
        health: Option<Health>,
        /// Time allowed for the health check.
        timeout: Duration,
        /// Fallback when the health check fails; `None` fails with exit 5.
        then: Option<Box<Action>>,
    },
}

impl Action {
    /// The kind of this action.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Terminate(_) => ActionKind::Terminate,
            Action::Wait { .. } => ActionKind::Wait,
            Action::Refuse { .. } => ActionKind::Refuse,
            Action::Reuse { .. } => ActionKind::Reuse,
        }
    }

    /// The fallback action, when there is one.
    pub fn then(&self) -> Option<&Action> {
        match self {
            Action::Wait { then, .. } | Action::Reuse { then, .. } => then.as_deref(),
            _ => None,
        }
    }

    /// Whether carrying out this action (or its fallback) may send signals.
    pub fn may_signal(&self) -> bool {
        matches!(self, Action::Terminate(_)) || self.then().is_some_and(Action::may_signal)
    }
}

/// Settings of `terminate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terminate {
    /// First signal (default SIGTERM).
    pub signal: Signal,
    /// Time from the first signal to escalation.
    pub grace: Duration,
    /// Escalation signal; `None` never escalates.
    pub escalate: Option<Signal>,
    /// Give up this long after the first signal.
    pub timeout: Duration,
    /// After the port is free, watch it this long for a restarted server
    /// when a terminated holder had a live parent (`[defaults] settle`).
    pub settle: Duration,
}

/// How `reuse` checks that the holder is alive and answering.
#[derive(Debug, Clone)]
pub enum Health {
    /// A TCP connect to the held address succeeds.
    Tcp,
    /// An HTTP GET answers with an accepted status (and its body contains
    /// `body`, when given).
    Http {
        /// URL template; `{port}` is replaced by the port being resolved.
        url: String,
        /// Regex the response body must contain.
        body: Option<Pattern>,
        /// The status codes that count as an answer (default 200-299).
        status: StatusCodes,
    },
}

/// HTTP status codes a health check accepts: codes and inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCodes(pub Vec<(u16, u16)>);

impl Default for StatusCodes {
    /// Any 2xx.
    fn default() -> Self {
        StatusCodes(vec![(200, 299)])
    }
}

impl StatusCodes {
    /// Whether `status` is accepted.
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

impl fmt::Display for StatusCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// A signal portguard may send, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    /// Canonical name, e.g. `SIGTERM`.
    pub name: &'static str,
    /// Signal number on this platform.
    pub number: i32,
}

impl Signal {
    /// SIGTERM.
    pub const TERM: Signal = Signal::known("SIGTERM", rustix::process::Signal::TERM);
    /// SIGKILL.
    pub const KILL: Signal = Signal::known("SIGKILL", rustix::process::Signal::KILL);
    /// SIGCONT: sent after the terminate signal (never named by a policy),
    /// so a stopped holder runs its shutdown at once, as systemd does.
    pub const CONT: Signal = Signal::known("SIGCONT", rustix::process::Signal::CONT);

    const fn known(name: &'static str, sig: rustix::process::Signal) -> Signal {
        Signal {
            name,
            number: sig.as_raw(),
        }
    }

    /// Signals a policy may name. Stop/continue and fault signals are left
    /// out: they do not end a process the way a user asking to free a port
    /// means.
    pub const ALL: [Signal; 9] = {
        use rustix::process::Signal as S;
        [
            Signal::known("SIGTERM", S::TERM),
            Signal::known("SIGKILL", S::KILL),
            Signal::known("SIGINT", S::INT),
            Signal::known("SIGHUP", S::HUP),
            Signal::known("SIGQUIT", S::QUIT),
            Signal::known("SIGUSR1", S::USR1),
            Signal::known("SIGUSR2", S::USR2),
            Signal::known("SIGABRT", S::ABORT),
            Signal::known("SIGALRM", S::ALARM),
        ]
    };

    /// Parses `SIGTERM`, `TERM` or `sigterm`.
    pub fn parse(s: &str) -> Option<Signal> {
        let upper = s.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        Signal::ALL.into_iter().find(|sig| sig.name == name)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

fn dur(d: &Duration) -> humantime::FormattedDuration {
    humantime::format_duration(*d)
}

/// The plan in words, including settings and the fallback chain, e.g.
/// `wait up to 5s for the port to be released, then terminate (SIGTERM; SIGKILL after 1s; give up after 5s)`.
impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Terminate(t) => {
                write!(f, "terminate ({}", t.signal)?;
                match t.escalate {
                    Some(sig) => write!(f, "; {sig} after {}", dur(&t.grace))?,
                    None => f.write_str("; never escalate")?,
                }
                write!(f, "; give up after {})", dur(&t.timeout))
            }
            Action::Wait { timeout, then } => {
                write!(f, "wait up to {} for the port to be released", dur(timeout))?;
                match then {
                    Some(next) => write!(f, ", then {next}"),
                    None => f.write_str(", then fail"),
                }
            }
            Action::Refuse { .. } => f.write_str("refuse"),
            Action::Reuse {
                health,
                timeout,
                then,
            } => {
                f.write_str("reuse")?;
                if let Some(h) = health {
                    write!(f, " if {h} answers within {}", dur(timeout))?;
                    match then {
                        Some(next) => write!(f, ", else {next}")?,
                        None => f.write_str(", else fail")?,
                    }
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Tcp => f.write_str("a tcp connect"),
            Health::Http { url, body, status } => {
                write!(f, "GET {url}")?;
                if *status != StatusCodes::default() {
                    write!(f, " (status {status})")?;
                }
                if let Some(re) = body {
                    write!(f, " (body matching '{}')", re.as_str())?;
                }
                Ok(())
            }
        }
    }
}
