//! Acting on a decision: terminate, wait, refuse, reuse — and verifying that
//! "freed" is true.
//!
//! - [`signal`]: the only code that sends signals (pidfds on Linux).
//! - [`machine`]: the terminate and wait state machines: signal, wait on
//!   pidfds and the socket table, escalate, verify, watch for a restart.
//! - [`health`]: `reuse`'s health checks.
//! - [`steps`]: the timed log of what was done.
//!
//! Results are typed ([`ActionEnd`], [`Failure`], [`Refusal`]); the report
//! turns them into words, so nothing here prints or formats a sentence.

pub mod containers;
pub mod health;
mod machine;
pub mod progress;
pub mod signal;
pub mod steps;

use crate::discovery::{Discovery, ProcessTable};
use crate::evaluate::{Context, ProtectedWhy};
use crate::model::{PortState, Unit, Unknown};
use crate::policy::{Action, Template};
use progress::Progress;
use serde::Serialize;
use signal::Signaller;
use std::sync::atomic::{AtomicBool, Ordering};
use steps::{Event, Steps};

/// How an action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionEnd {
    /// The port is free.
    Freed(Freed),
    /// The holder is accepted as the server to use.
    Reused(Option<health::Passed>),
    /// The policy (or a safety rule) forbids touching the holder.
    Refused(Refusal),
    /// The action could not free the port.
    Failed(Failure),
    /// Every signalled holder is gone, but the port is held again (a child
    /// that inherited the socket, a supervisor that restarted the server):
    /// the resolver discovers and decides again.
    StillHeld,
}

/// How a port was freed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Freed {
    /// Its holders were terminated.
    Terminated {
        /// Every pid that was signalled.
        pids: Vec<u32>,
        /// Those that needed the escalation signal (SIGKILL).
        escalated: Vec<u32>,
        /// The escalation signal, when one was sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        escalation: Option<&'static str>,
        /// Names of the containers stopped through the Docker API.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        containers: Vec<String>,
    },
    /// Its holders released it while portguard waited.
    Released,
}

/// Why a port was refused (exit 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The policy's `refuse` (or the default action): its message
    /// template, or the built-in wording.
    Policy {
        /// The rule's `message`, when it has one.
        template: Option<Template>,
    },
    /// The action would have signalled a protected process.
    Protected {
        /// The pid.
        pid: u32,
        /// Why it is protected.
        why: ProtectedWhy,
    },
    /// A holder is a `docker-proxy` whose container could not be
    /// identified; portguard never signals docker-proxy.
    UnknownContainer {
        /// The docker-proxy's pid.
        pid: u32,
        /// Why the container is unknown.
        why: String,
    },
    /// Stopping a container through the Docker API failed.
    ContainerNotStopped {
        /// The container.
        container: crate::model::Container,
        /// Why.
        why: String,
    },
}

/// Why an action failed (exit 5). Serialised as the JSON `reason` (the
/// variant) plus its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Failure {
    /// Signalled holders did not exit before the timeout.
    Timeout {
        /// Those still running.
        pids: Vec<u32>,
        /// Milliseconds since the first signal.
        after_ms: u64,
    },
    /// A holder may not be signalled by this user.
    PermissionDenied {
        /// The pid.
        pid: u32,
        /// Its uid.
        uid: u32,
        /// Its user name.
        user: Option<String>,
    },
    /// A holder's pid is unknown, so it cannot be signalled.
    PidUnknown {
        /// The socket's uid.
        uid: u32,
        /// Why the pid is unknown.
        why: Unknown,
    },
    /// A holder's start time could not be read, so its identity cannot be
    /// confirmed before a signal.
    IdentityUnknown {
        /// The pid.
        pid: u32,
    },
    /// Sending a signal failed.
    SignalFailed {
        /// The pid.
        pid: u32,
        /// The system's error.
        error: String,
    },
    /// The health check of `reuse` failed and there is no fallback.
    Unhealthy {
        /// What failed.
        failed: health::Failed,
    },
    /// `wait` ran out of time and there is no fallback.
    WaitTimeout {
        /// The timeout, in milliseconds.
        timeout_ms: u64,
    },
    /// The port kept being taken again after its holders were stopped.
    Retaken {
        /// Rounds of discover → act.
        rounds: usize,
        /// The parent that restarted the server, when one distinct parent
        /// did.
        supervisor: Option<u32>,
        /// The systemd service the server runs in, when it runs in one.
        unit: Option<Unit>,
    },
    /// SIGINT or SIGTERM reached portguard; nothing further was signalled.
    Interrupted {
        /// The signals sent before, as (pid, signal).
        sent: Vec<(u32, &'static str)>,
    },
    /// Only sockets no process owns (TIME_WAIT) keep a server from binding.
    TimeWait {
        /// How many.
        sockets: usize,
    },
    /// A bind fails although no socket on the port is visible.
    NotBindable,
    /// Another portguard held the port's lock for too long.
    LockTimeout {
        /// How long this one waited, in milliseconds.
        waited_ms: u64,
    },
    /// The port's lock could not be taken.
    LockError {
        /// Why.
        error: String,
    },
    /// A worker thread of portguard failed; the port was not resolved.
    Internal,
}

impl Failure {
    /// The JSON `reason`: the variant's name.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Timeout { .. } => "timeout",
            Failure::PermissionDenied { .. } => "permission_denied",
            Failure::PidUnknown { .. } => "pid_unknown",
            Failure::IdentityUnknown { .. } => "identity_unknown",
            Failure::SignalFailed { .. } => "signal_failed",
            Failure::Unhealthy { .. } => "unhealthy",
            Failure::WaitTimeout { .. } => "wait_timeout",
            Failure::Retaken { .. } => "retaken",
            Failure::Interrupted { .. } => "interrupted",
            Failure::TimeWait { .. } => "time_wait",
            Failure::NotBindable => "not_bindable",
            Failure::LockTimeout { .. } => "lock_timeout",
            Failure::LockError { .. } => "lock_error",
            Failure::Internal => "internal",
        }
    }
}

/// Everything an action touches the system through.
#[derive(Clone, Copy)]
pub struct Actor<'a> {
    /// Socket table (re-checked while waiting).
    pub discovery: &'a (dyn Discovery + Sync),
    /// Identity checks right before each signal.
    pub table: &'a (dyn ProcessTable + Sync),
    /// Signals and exit waits.
    pub signaller: &'a (dyn Signaller + Sync),
    /// Progress display while waiting (a spinner on a terminal, or nothing).
    pub progress: &'a (dyn Progress + Sync),
    /// Set by SIGINT/SIGTERM: stop sending signals, report what was done.
    pub interrupted: &'a AtomicBool,
    /// Who is asking and what is protected.
    pub ctx: &'a Context,
    /// Stops containers (the Docker API).
    pub containers: &'a (dyn containers::Containers + Sync),
}

impl std::fmt::Debug for Actor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actor").finish_non_exhaustive()
    }
}

impl Actor<'_> {
    /// Whether portguard was asked to stop (SIGINT/SIGTERM).
    pub fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed)
    }

    /// The end of a run stopped by SIGINT/SIGTERM: what was signalled so
    /// far, and that nothing further will be.
    fn interrupted_end(&self, steps: &mut Steps) -> ActionEnd {
        let sent = steps.signals_sent();
        steps.push(Event::Interrupted);
        ActionEnd::Failed(Failure::Interrupted { sent })
    }

    /// Carries out `action` on the holders of `state`. `targets` are the
    /// holder indices a terminate signals (every member of every group).
    pub fn run(
        &self,
        action: &Action,
        state: &PortState,
        targets: &[usize],
        steps: &mut Steps,
    ) -> ActionEnd {
        match action {
            Action::Terminate(t) => self.terminate(t, state, targets, steps),
            Action::Refuse { message } => ActionEnd::Refused(Refusal::Policy {
                template: message.clone(),
            }),
            Action::Wait { timeout, then } => match self.wait(*timeout, state, steps) {
                Some(end) => end,
                None => self.fallback(then.as_deref(), state, targets, steps, || {
                    Failure::WaitTimeout {
                        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    }
                }),
            },
            Action::Reuse {
                health,
                timeout,
                then,
            } => {
                let Some(health) = health else {
                    return ActionEnd::Reused(None);
                };
                match health::check(health, state, *timeout) {
                    Ok(passed) => {
                        steps.push(Event::Health {
                            passed: true,
                            result: health::HealthResult::Passed(passed.clone()),
                        });
                        ActionEnd::Reused(Some(passed))
                    }
                    Err(failed) => {
                        steps.push(Event::Health {
                            passed: false,
                            result: health::HealthResult::Failed(failed.clone()),
                        });
                        self.fallback(then.as_deref(), state, targets, steps, || {
                            Failure::Unhealthy { failed }
                        })
                    }
                }
            }
        }
    }

    /// Falls back to `then`, or fails with `failure`.
    fn fallback(
        &self,
        then: Option<&Action>,
        state: &PortState,
        targets: &[usize],
        steps: &mut Steps,
        failure: impl FnOnce() -> Failure,
    ) -> ActionEnd {
        match then {
            Some(_) if self.is_interrupted() => self.interrupted_end(steps),
            Some(next) => {
                steps.push(Event::Fallback { to: next.kind() });
                self.run(next, state, targets, steps)
            }
            None => ActionEnd::Failed(failure()),
        }
    }
}
