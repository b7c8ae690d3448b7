//! The step log: every event of an action, timed from the start of
//! resolving the port, as data. The report turns each into words (human
//! output) or serialises it (JSON `steps`, with `event` naming the kind).

use super::health::HealthResult;
use crate::model::Unit;
use crate::policy::ActionKind;
use serde::Serialize;
use std::time::Instant;

/// One event of an action (JSON `steps`, docs/output.md "Steps").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Step {
    /// Milliseconds since resolving the port began.
    pub at_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// What happened at a step. In JSON the kind is the `event` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A signal was sent to `pid`.
    Signal {
        /// The process.
        pid: u32,
        /// The signal, e.g. `SIGTERM`.
        signal: &'static str,
    },
    /// `pid` was stopped (SIGSTOP, Ctrl-Z): SIGCONT was sent after the
    /// signal so it can run its shutdown at once.
    Resumed {
        /// The process.
        pid: u32,
    },
    /// `pid` was not signalled, and why.
    Skipped {
        /// The process.
        pid: u32,
        /// The signal that was not sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<&'static str>,
        /// Why.
        why: Skip,
    },
    /// `pid` exited.
    Exited {
        /// The process.
        pid: u32,
    },
    /// The port is free: no holder in the socket table and a bind succeeds.
    Free,
    /// The freed port was watched this long for a supervisor restarting the
    /// server (a terminated holder's parent was alive).
    Settle {
        /// How long.
        ms: u64,
    },
    /// The port was bound again right after it was freed.
    Retaken,
    /// The action's time ran out.
    Timeout,
    /// A health check ran.
    Health {
        /// Whether the holder answered as required.
        passed: bool,
        /// What it saw.
        #[serde(flatten)]
        result: HealthResult,
    },
    /// The action fell back to another one (`then`).
    Fallback {
        /// The action fallen back to.
        to: ActionKind,
    },
    /// Every signalled holder is gone but the port is held again: it is
    /// discovered and judged again.
    Rediscover {
        /// The round that starts (2 or more).
        round: usize,
    },
    /// SIGINT or SIGTERM reached portguard: nothing further is signalled.
    Interrupted,
    /// Another portguard was resolving this port; this one waited for it,
    /// then discovered again.
    Locked {
        /// How long it waited.
        waited_ms: u64,
    },
    /// A signal could not be sent.
    Error {
        /// The process.
        pid: u32,
        /// The signal.
        signal: &'static str,
        /// The system's error message.
        error: String,
    },
    /// A container was asked to stop through the Docker API.
    StopContainer {
        /// Container id.
        id: String,
        /// Container name.
        name: String,
    },
    /// The container stopped.
    ContainerStopped {
        /// Container id.
        id: String,
    },
    /// A holder runs in a systemd service, which may restart it.
    Unit {
        /// The unit.
        unit: Unit,
    },
}

/// Why a process was not signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// It had already exited.
    Exited,
    /// Its pid now belongs to another process.
    PidReused,
    /// It no longer holds the socket.
    ReleasedSocket,
    /// Its start time could not be read, so its identity cannot be
    /// confirmed.
    IdentityUnknown,
    /// It exited between the checks and the signal.
    ExitedBeforeSignal,
}

/// Collects steps with their times.
#[derive(Debug)]
pub struct Steps {
    start: Instant,
    /// Steps so far.
    pub list: Vec<Step>,
}

impl Default for Steps {
    fn default() -> Self {
        Self::new()
    }
}

impl Steps {
    /// Starts the clock now.
    pub fn new() -> Self {
        Steps {
            start: Instant::now(),
            list: Vec::new(),
        }
    }

    /// Milliseconds since the clock started.
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records an event now.
    pub fn push(&mut self, event: Event) {
        let at_ms = self.elapsed_ms();
        self.list.push(Step { at_ms, event });
    }

    /// The signals sent so far, in order: (pid, signal).
    pub fn signals_sent(&self) -> Vec<(u32, &'static str)> {
        self.list
            .iter()
            .filter_map(|s| match s.event {
                Event::Signal { pid, signal } => Some((pid, signal)),
                _ => None,
            })
            .collect()
    }
}
