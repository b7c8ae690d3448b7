//! What an action reports while it waits (grace periods, `wait`,
//! escalation), so a terminal can show a spinner. The description is data;
//! the report's spinner words and draws it.

use std::time::Duration;

/// What an action is waiting for.
#[derive(Debug, Clone, Copy)]
pub enum Waiting<'a> {
    /// Signalled processes to exit; before escalation, the signal that
    /// follows and when.
    Exit {
        /// The pids still running.
        pids: &'a [u32],
        /// The escalation signal and the grace period, before escalating.
        escalate: Option<(Option<&'static str>, Duration)>,
    },
    /// The holders to release the port (`wait`).
    Release,
}

/// Receives what an action is waiting for, on every wait tick.
pub trait Progress {
    /// Whether anything is shown; callers skip preparing updates when not.
    fn enabled(&self) -> bool;
    /// The action on `port` is waiting for `what`; `elapsed` of `limit`.
    fn waiting(&self, port: u16, what: Waiting<'_>, elapsed: Duration, limit: Duration);
    /// The wait on `port` is over.
    fn done(&self, port: u16);
}

/// Shows nothing (not a terminal, `-q`, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn enabled(&self) -> bool {
        false
    }
    fn waiting(&self, _: u16, _: Waiting<'_>, _: Duration, _: Duration) {}
    fn done(&self, _: u16) {}
}
