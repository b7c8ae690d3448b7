//! Carrying out a decision: terminate, wait, refuse, reuse — and verifying
//! that "freed" is true.
//!
//! Every signal goes through [`Signaller`] after the target's identity has
//! been re-checked through [`ProcessTable`] (same start time, still holding
//! the socket), so a recycled pid is never signalled. Waiting is
//! event-driven: pidfd readiness wakes us the moment a holder exits, and a
//! short, growing tick re-reads the socket table for holders that close the
//! socket without exiting. Nothing sleeps in whole seconds.

use crate::discovery::{Discovery, ProcessTable};
use crate::evaluate::{blocked_target, render_template, Blocked, Context, Outcome};
use crate::model::{Holder, PortState, ProcessId, Protocol};
use crate::policy::{Action, Health, Signal, Terminate};
use crate::progress::Progress;
use rustix::io::Errno;
use serde::Serialize;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longest pause between two socket-table re-checks while waiting.
const MAX_TICK: Duration = Duration::from_millis(10);
/// First pause; doubles up to [`MAX_TICK`].
const FIRST_TICK: Duration = Duration::from_millis(1);

/// A way to reach a process for signalling: a pidfd where the kernel has
/// them (Linux 5.3+), else the bare pid (checked right before each use).
#[derive(Debug)]
pub enum Handle {
    /// A pidfd: refers to exactly one process, never to a recycled pid.
    Pidfd(OwnedFd),
    /// A bare pid, for kernels without pidfd and for test fakes.
    Pid(u32),
}

/// Sends signals and waits for exits. The real one uses pidfds; tests can
/// inject fakes to prove sequencing without real processes.
pub trait Signaller {
    /// Opens a handle on `pid`. `ESRCH` when it no longer exists.
    fn open(&self, pid: u32) -> io::Result<Handle>;
    /// Checks that we may signal `pid` at all (`kill(pid, 0)`), so a
    /// permission problem is found before any member of a group is signalled.
    fn check_permission(&self, pid: u32) -> io::Result<()>;
    /// Sends `sig` through `handle`.
    fn send(&self, handle: &Handle, sig: Signal) -> io::Result<()>;
    /// Waits up to `timeout` for any of `handles` to exit; returns a flag per
    /// handle, true for those that have exited (zombies count as exited).
    fn wait_exit(&self, handles: &[&Handle], timeout: Duration) -> Vec<bool>;
}

/// The real signaller: pidfd_open, pidfd_send_signal and poll(2).
#[derive(Debug, Default, Clone, Copy)]
pub struct PidfdSignaller;

fn pid_of(pid: u32) -> io::Result<rustix::process::Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| io::Error::from(Errno::SRCH))
}

fn to_rustix(sig: Signal) -> io::Result<rustix::process::Signal> {
    rustix::process::Signal::from_named_raw(sig.number).ok_or_else(|| io::Error::from(Errno::INVAL))
}

impl Signaller for PidfdSignaller {
    fn open(&self, pid: u32) -> io::Result<Handle> {
        match rustix::process::pidfd_open(pid_of(pid)?, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => Ok(Handle::Pidfd(fd)),
            // Kernels before 5.3 (or seccomp filters) lack pidfd_open.
            Err(Errno::NOSYS) | Err(Errno::PERM) => {
                rustix::process::test_kill_process(pid_of(pid)?)?;
                Ok(Handle::Pid(pid))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn check_permission(&self, pid: u32) -> io::Result<()> {
        Ok(rustix::process::test_kill_process(pid_of(pid)?)?)
    }

    fn send(&self, handle: &Handle, sig: Signal) -> io::Result<()> {
        let sig = to_rustix(sig)?;
        match handle {
            Handle::Pidfd(fd) => Ok(rustix::process::pidfd_send_signal(fd, sig)?),
            Handle::Pid(pid) => Ok(rustix::process::kill_process(pid_of(*pid)?, sig)?),
        }
    }

    fn wait_exit(&self, handles: &[&Handle], timeout: Duration) -> Vec<bool> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let fds: Vec<Option<&OwnedFd>> = handles
            .iter()
            .map(|h| match h {
                Handle::Pidfd(fd) => Some(fd),
                Handle::Pid(_) => None,
            })
            .collect();
        let mut pollfds: Vec<PollFd<'_>> = fds
            .iter()
            .flatten()
            .map(|fd| PollFd::from_borrowed_fd(fd.as_fd(), PollFlags::IN))
            .collect();
        let ts = Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        if pollfds.is_empty() {
            std::thread::sleep(timeout);
        } else {
            // EINTR or any other poll error: report nothing exited; the
            // caller re-checks the socket table and tries again.
            let _ = poll(&mut pollfds, Some(&ts));
        }
        let mut ready = pollfds.iter().map(|p| !p.revents().is_empty());
        handles
            .iter()
            .map(|h| match h {
                Handle::Pidfd(_) => ready.next().unwrap_or(false),
                Handle::Pid(pid) => pid_of(*pid)
                    .map(|p| rustix::process::test_kill_process(p) == Err(Errno::SRCH))
                    .unwrap_or(true),
            })
            .collect()
    }
}

/// One event of an action, timed from the start of acting (SPEC JSON `steps`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Milliseconds since acting began.
    pub at_ms: u64,
    /// `signal`, `exited`, `skipped`, `released`, `free`, `health`, `timeout`,
    /// `rediscover` or `error`.
    pub event: &'static str,
    /// The process concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The signal sent, for `signal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<&'static str>,
    /// Details in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Collects steps with their times.
#[derive(Debug)]
pub struct Steps {
    start: Instant,
    /// Steps so far.
    pub list: Vec<Step>,
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
        self.start.elapsed().as_millis() as u64
    }

    /// Records an event.
    pub fn push(
        &mut self,
        event: &'static str,
        pid: Option<u32>,
        signal: Option<&'static str>,
        detail: Option<String>,
    ) {
        let at_ms = self.elapsed_ms();
        self.list.push(Step {
            at_ms,
            event,
            pid,
            signal,
            detail,
        });
    }
}

impl Default for Steps {
    fn default() -> Self {
        Self::new()
    }
}

/// What an action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionResult {
    /// How it ended.
    pub outcome: Outcome,
    /// The message for the user.
    pub message: String,
    /// True when every signalled holder is gone but the port is still held
    /// (a new holder appeared): the resolver discovers and decides again.
    pub still_held: bool,
}

impl ActionResult {
    fn done(outcome: Outcome, message: String) -> Self {
        ActionResult {
            outcome,
            message,
            still_held: false,
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
    /// Protected processes and the caller's identity.
    /// Who is asking and what is protected; filled on first use (see
    /// [`Actor::ctx`]).
    pub ctx: &'a OnceLock<Context>,
}

impl std::fmt::Debug for Actor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actor").finish_non_exhaustive()
    }
}

/// One signalled process we are waiting for.
struct Live {
    id: ProcessId,
    inodes: Vec<u64>,
    handle: Handle,
}

enum SignalResult {
    Sent(Handle),
    Gone,
}

impl Actor<'_> {
    /// The caller's identity and the protected processes. Found on first
    /// use — walking the ancestors and asking NSS for a user name cost more
    /// than answering a free port, which never needs them.
    pub fn ctx(&self) -> &Context {
        self.ctx.get_or_init(|| {
            Context::for_this_process(&crate::discovery::procfs::self_and_ancestors())
        })
    }

    /// Whether portguard was asked to stop (SIGINT/SIGTERM).
    pub fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed)
    }

    /// The result of a run stopped by SIGINT/SIGTERM: what was signalled so
    /// far, and that nothing further will be.
    fn interrupted_result(&self, state: &PortState, steps: &mut Steps) -> ActionResult {
        let sent: Vec<String> = steps
            .list
            .iter()
            .filter(|s| s.event == "signal")
            .map(|s| format!("{} to pid {}", s.signal.unwrap_or("?"), s.pid.unwrap_or(0)))
            .collect();
        steps.push("interrupted", None, None, None);
        let done = if sent.is_empty() {
            "before any signal was sent".to_string()
        } else {
            format!("after sending {}", sent.join(", "))
        };
        ActionResult::done(
            Outcome::Failed,
            format!(
                "port {}: interrupted {done}; nothing further was signalled",
                state.port
            ),
        )
    }

    /// Carries out `action` on the holders of `state`. `targets` are the
    /// holder indices a terminate signals (every member of every group).
    pub fn run(
        &self,
        action: &Action,
        state: &PortState,
        targets: &[usize],
        rule: Option<&str>,
        steps: &mut Steps,
    ) -> ActionResult {
        match action {
            Action::Terminate(t) => self.terminate(t, state, targets, steps),
            Action::Refuse { message } => ActionResult::done(
                Outcome::Refused,
                refuse_message(message.as_deref(), state, rule),
            ),
            Action::Wait { timeout, then } => match self.wait(*timeout, state, steps) {
                Some(r) => r,
                None => self.fallback(then.as_deref(), state, targets, rule, steps, || {
                    format!(
                        "port {} is still held after waiting {}: {}",
                        state.port,
                        humantime::format_duration(*timeout),
                        holders_summary(state)
                    )
                }),
            },
            Action::Reuse {
                health,
                timeout,
                then,
            } => match self.health(health.as_ref(), *timeout, state, steps) {
                Ok(detail) => ActionResult::done(
                    Outcome::Reuse,
                    format!(
                        "port {} is served by {}{}; reuse it (rule {})",
                        state.port,
                        holders_summary(state),
                        detail,
                        rule.unwrap_or("default")
                    ),
                ),
                Err(why) => self.fallback(then.as_deref(), state, targets, rule, steps, || {
                    format!(
                        "port {} is held by {}, but it is not healthy: {why}",
                        state.port,
                        holders_summary(state)
                    )
                }),
            },
        }
    }

    fn fallback(
        &self,
        then: Option<&Action>,
        state: &PortState,
        targets: &[usize],
        rule: Option<&str>,
        steps: &mut Steps,
        failure: impl FnOnce() -> String,
    ) -> ActionResult {
        let why = failure();
        match then {
            Some(_) if self.is_interrupted() => self.interrupted_result(state, steps),
            Some(next) => {
                steps.push(
                    "fallback",
                    None,
                    None,
                    Some(format!("{why}; then {}", next.kind())),
                );
                self.run(next, state, targets, rule, steps)
            }
            None => ActionResult::done(Outcome::Failed, why),
        }
    }

    /// Whether the port is free now: no holding socket in the table and a
    /// bind probe on the wildcard address succeeds.
    fn port_is_free(&self, state: &PortState) -> bool {
        match self.discovery.holding_sockets(state.port, state.protocol) {
            Ok(sockets) if sockets.is_empty() => {
                self.discovery.bind_probe(state.port, state.protocol)
            }
            _ => false,
        }
    }

    fn terminate(
        &self,
        t: &Terminate,
        state: &PortState,
        targets: &[usize],
        steps: &mut Steps,
    ) -> ActionResult {
        // Defence in depth: the evaluator already planned a refusal for
        // these, but no code path may signal them.
        match blocked_target(targets, &state.holders, self.ctx()) {
            Some(Blocked::Protected { pid, why }) => {
                return ActionResult::done(
                    Outcome::Refused,
                    format!(
                        "port {} is held by pid {pid}, which portguard will not signal: {why}",
                        state.port
                    ),
                );
            }
            Some(Blocked::NoPid { uid, reason }) => {
                return ActionResult::done(
                    Outcome::Failed,
                    format!(
                        "port {} is held by a process of uid {uid} whose pid is unknown ({reason}); it cannot be signalled",
                        state.port
                    ),
                );
            }
            None => {}
        }
        // Check permission for every member before signalling any, so a
        // group is never half-terminated because of one foreign process.
        for &i in targets {
            let h = &state.holders[i];
            let Some(pid) = h.pid else { continue };
            if let Err(e) = self.signaller.check_permission(pid) {
                if e.raw_os_error() == Some(Errno::PERM.raw_os_error()) {
                    return ActionResult::done(Outcome::Failed, permission_message(state.port, h));
                }
            }
        }
        let mut live: Vec<Live> = Vec::new();
        for &i in targets {
            if self.is_interrupted() {
                return self.interrupted_result(state, steps);
            }
            let h = &state.holders[i];
            let Some(id) = h.id() else {
                let pid = h.pid.unwrap_or(0);
                steps.push(
                    "skipped",
                    Some(pid),
                    None,
                    Some(
                        "its start time could not be read, so its identity cannot be confirmed"
                            .into(),
                    ),
                );
                return ActionResult::done(
                    Outcome::Failed,
                    format!(
                        "port {}: cannot confirm the identity of pid {pid}; not signalling it",
                        state.port
                    ),
                );
            };
            match self.signal_one(id, &h.inodes, t.signal, steps) {
                Ok(SignalResult::Sent(handle)) => live.push(Live {
                    id,
                    inodes: h.inodes.clone(),
                    handle,
                }),
                Ok(SignalResult::Gone) => {}
                Err(e) => {
                    return ActionResult::done(Outcome::Failed, signal_error(state.port, h, &e))
                }
            }
        }
        let started = Instant::now();
        let grace_at = started + t.grace;
        let deadline = started + t.timeout;
        let mut escalated = t.escalate.is_none();
        let mut tick = FIRST_TICK;
        loop {
            if self.port_is_free(state) {
                if let Some(taken) = self.settle(t.settle, state, targets, steps) {
                    return taken;
                }
                steps.push("free", None, None, None);
                return ActionResult::done(Outcome::Freed, freed_message(state, targets, steps));
            }
            if self.is_interrupted() {
                return self.interrupted_result(state, steps);
            }
            if live.is_empty() {
                return ActionResult {
                    outcome: Outcome::Failed,
                    message: format!(
                        "port {} is still held after every signalled process exited",
                        state.port
                    ),
                    still_held: true,
                };
            }
            let now = Instant::now();
            if now >= deadline {
                steps.push("timeout", None, None, None);
                let pids: Vec<String> = live.iter().map(|l| l.id.pid.to_string()).collect();
                return ActionResult::done(
                    Outcome::Failed,
                    format!(
                        "port {} is still held {} after the first signal: pid {} did not exit",
                        state.port,
                        humantime::format_duration(t.timeout),
                        pids.join(", ")
                    ),
                );
            }
            if !escalated && now >= grace_at {
                escalated = true;
                if let Some(sig) = t.escalate {
                    let mut still = Vec::new();
                    for l in live.drain(..) {
                        match self.signal_one(l.id, &l.inodes, sig, steps) {
                            Ok(SignalResult::Sent(handle)) => still.push(Live { handle, ..l }),
                            Ok(SignalResult::Gone) => {}
                            Err(e) => {
                                steps.push(
                                    "error",
                                    Some(l.id.pid),
                                    Some(sig.name),
                                    Some(e.to_string()),
                                );
                                still.push(l);
                            }
                        }
                    }
                    live = still;
                    continue;
                }
            }
            let mut until = (now + tick).min(deadline);
            if !escalated {
                until = until.min(grace_at);
            }
            if self.progress.enabled() {
                let pids: Vec<String> = live.iter().map(|l| l.id.pid.to_string()).collect();
                let (what, limit) = if escalated {
                    (
                        format!("waiting for pid {} to exit", pids.join(", ")),
                        t.timeout,
                    )
                } else {
                    (
                        format!(
                            "waiting for pid {} to exit ({} after {})",
                            pids.join(", "),
                            t.escalate.map_or("no escalation", |s| s.name),
                            humantime::format_duration(t.grace)
                        ),
                        t.grace,
                    )
                };
                self.progress
                    .waiting(state.port, &what, started.elapsed(), limit);
            }
            let handles: Vec<&Handle> = live.iter().map(|l| &l.handle).collect();
            let exited = self
                .signaller
                .wait_exit(&handles, until.saturating_duration_since(now));
            let mut i = 0;
            live.retain(|l| {
                let gone = exited.get(i).copied().unwrap_or(false);
                i += 1;
                if gone {
                    steps.push("exited", Some(l.id.pid), None, None);
                }
                !gone
            });
            tick = (tick * 2).min(MAX_TICK);
        }
    }

    /// A freed port whose terminated holder still had a live parent may be
    /// taken again at once by that parent (a supervisor restarting its
    /// server). Watches the port for `settle`; `Some` (still held, discover
    /// again) when it was taken. Orphans — stale processes, the case this
    /// tool exists for — have no one to restart them and skip the wait.
    fn settle(
        &self,
        settle: Duration,
        state: &PortState,
        targets: &[usize],
        steps: &mut Steps,
    ) -> Option<ActionResult> {
        let supervised = targets.iter().any(|&i| {
            let h = &state.holders[i];
            h.orphan == Some(false)
                && h.ppid
                    .is_some_and(|p| !targets.iter().any(|&j| state.holders[j].pid == Some(p)))
        });
        if !supervised || settle.is_zero() {
            return None;
        }
        let until = Instant::now() + settle;
        while Instant::now() < until && !self.is_interrupted() {
            std::thread::sleep(
                Duration::from_millis(10).min(until.saturating_duration_since(Instant::now())),
            );
            if matches!(self.discovery.holding_sockets(state.port, state.protocol), Ok(s) if !s.is_empty())
            {
                steps.push(
                    "retaken",
                    None,
                    None,
                    Some("the port was bound again right after it was freed".into()),
                );
                return Some(ActionResult {
                    outcome: Outcome::Failed,
                    message: format!(
                        "port {} was taken again right after it was freed",
                        state.port
                    ),
                    still_held: true,
                });
            }
        }
        None
    }

    /// Re-checks identity and socket ownership, then signals. `Gone` when
    /// the process exited, was replaced (pid reuse) or let go of the socket.
    fn signal_one(
        &self,
        id: ProcessId,
        inodes: &[u64],
        sig: Signal,
        steps: &mut Steps,
    ) -> io::Result<SignalResult> {
        let gone = |steps: &mut Steps, why: String| {
            steps.push("skipped", Some(id.pid), Some(sig.name), Some(why));
            Ok(SignalResult::Gone)
        };
        let handle = match self.signaller.open(id.pid) {
            Ok(h) => h,
            Err(e) if e.raw_os_error() == Some(Errno::SRCH.raw_os_error()) => {
                return gone(steps, "it has already exited".into());
            }
            Err(e) => return Err(e),
        };
        // The handle was opened first, so if the identity still matches now,
        // the handle refers to the evaluated process and not a successor.
        match self.table.identity(id.pid) {
            Some(now) if now == id => {}
            Some(_) => {
                return gone(
                    steps,
                    "the pid now belongs to another process (pid reused); not signalled".into(),
                );
            }
            None => return gone(steps, "it has already exited".into()),
        }
        if self.table.holds_any(id.pid, inodes) == Some(false) {
            return gone(steps, "it no longer holds the socket; not signalled".into());
        }
        match self.signaller.send(&handle, sig) {
            Ok(()) => {
                steps.push("signal", Some(id.pid), Some(sig.name), None);
                Ok(SignalResult::Sent(handle))
            }
            Err(e) if e.raw_os_error() == Some(Errno::SRCH.raw_os_error()) => {
                gone(steps, "it exited before the signal".into())
            }
            Err(e) => Err(e),
        }
    }

    /// Waits until the port is free; `None` on timeout.
    fn wait(
        &self,
        timeout: Duration,
        state: &PortState,
        steps: &mut Steps,
    ) -> Option<ActionResult> {
        let deadline = Instant::now() + timeout;
        let mut handles: Vec<(u32, Handle)> = Vec::new();
        for h in &state.holders {
            let Some(id) = h.id() else { continue };
            if let Ok(handle) = self.signaller.open(id.pid) {
                if self.table.identity(id.pid) == Some(id) {
                    handles.push((id.pid, handle));
                }
            }
        }
        let mut tick = FIRST_TICK;
        loop {
            if self.port_is_free(state) {
                steps.push("free", None, None, None);
                return Some(ActionResult::done(
                    Outcome::Freed,
                    format!(
                        "port {} was released after {} ms of waiting",
                        state.port,
                        steps.elapsed_ms()
                    ),
                ));
            }
            if self.is_interrupted() {
                return Some(self.interrupted_result(state, steps));
            }
            let now = Instant::now();
            if now >= deadline {
                steps.push("timeout", None, None, None);
                return None;
            }
            if self.progress.enabled() {
                let waited = timeout.saturating_sub(deadline - now);
                self.progress.waiting(
                    state.port,
                    "waiting for the holders to release the port",
                    waited,
                    timeout,
                );
            }
            let refs: Vec<&Handle> = handles.iter().map(|(_, h)| h).collect();
            let exited = self.signaller.wait_exit(&refs, (deadline - now).min(tick));
            let mut i = 0;
            handles.retain(|(pid, _)| {
                let gone = exited.get(i).copied().unwrap_or(false);
                i += 1;
                if gone {
                    steps.push("exited", Some(*pid), None, None);
                }
                !gone
            });
            tick = (tick * 2).min(MAX_TICK);
        }
    }

    /// Runs the health check; `Ok` with a note for the message, `Err` with why not.
    fn health(
        &self,
        health: Option<&Health>,
        timeout: Duration,
        state: &PortState,
        steps: &mut Steps,
    ) -> Result<String, String> {
        let Some(health) = health else {
            return Ok(String::new());
        };
        if state.protocol == Protocol::Udp {
            steps.push(
                "health",
                None,
                None,
                Some("skipped: health checks apply to tcp".into()),
            );
            return Ok(String::new());
        }
        let result = match health {
            Health::Tcp => tcp_health(state, timeout),
            Health::Http { url, body } => http_health(
                &url.replace("{port}", &state.port.to_string()),
                body.as_ref(),
                timeout,
            ),
        };
        match result {
            Ok(detail) => {
                steps.push("health", None, None, Some(format!("passed: {detail}")));
                Ok(format!(" ({detail})"))
            }
            Err(why) => {
                steps.push("health", None, None, Some(format!("failed: {why}")));
                Err(why)
            }
        }
    }
}

fn tcp_health(state: &PortState, timeout: Duration) -> Result<String, String> {
    let mut last_err = String::from("no address to connect to");
    for s in &state.sockets {
        let addr = loopback_for(s.local);
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => return Ok(format!("tcp connect to {addr} succeeded")),
            Err(e) => last_err = format!("tcp connect to {addr} failed: {e}"),
        }
    }
    Err(last_err)
}

/// Largest health response body read; a health endpoint answers in bytes.
const HEALTH_BODY_LIMIT: u64 = 64 * 1024;

/// GET `url`; healthy on a 2xx answer within `timeout` whose body contains
/// `body` (when given). Environment proxies are ignored: the URL is loopback.
fn http_health(
    url: &str,
    body: Option<&crate::policy::Pattern>,
    timeout: Duration,
) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| format!("GET {url} failed: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("GET {url} answered {status}"));
    }
    if let Some(re) = body {
        let text = resp
            .body_mut()
            .with_config()
            .limit(HEALTH_BODY_LIMIT)
            .read_to_string()
            .map_err(|e| format!("GET {url}: cannot read the body: {e}"))?;
        if !re.is_match(&text) {
            let shown: String = text.chars().take(120).collect();
            return Err(format!(
                "GET {url} answered {status}, but the body does not match '{}': {shown:?}",
                re.as_str()
            ));
        }
    }
    Ok(format!("GET {url} answered {status}"))
}

/// The address to reach a listener on: wildcard binds are reached on loopback.
fn loopback_for(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// Binds the port on the wildcard addresses (IPv4, then IPv6) the way a
/// server would; TCP binds set SO_REUSEADDR (Rust's std does), so sockets in
/// TIME_WAIT do not count. Only "address in use" means held: a bind refused
/// for other reasons (a privileged port as non-root, IPv6 disabled) leaves the
/// verdict to the socket table.
pub fn bind_probe(port: u16, proto: Protocol) -> bool {
    let in_use = |r: io::Result<()>| matches!(r, Err(e) if e.kind() == io::ErrorKind::AddrInUse);
    let bind = |ip: IpAddr| -> io::Result<()> {
        let addr = SocketAddr::new(ip, port);
        match proto {
            Protocol::Tcp => TcpListener::bind(addr).map(drop),
            Protocol::Udp => UdpSocket::bind(addr).map(drop),
        }
    };
    !in_use(bind(Ipv4Addr::UNSPECIFIED.into())) && !in_use(bind(Ipv6Addr::UNSPECIFIED.into()))
}

fn permission_message(port: u16, h: &Holder) -> String {
    format!(
        "port {port}: permission denied to signal pid {} (user {}); run portguard as that user or as root",
        h.pid.unwrap_or(0),
        h.user.clone().unwrap_or_else(|| format!("uid {}", h.uid)),
    )
}

fn signal_error(port: u16, h: &Holder, e: &io::Error) -> String {
    if e.raw_os_error() == Some(Errno::PERM.raw_os_error()) {
        permission_message(port, h)
    } else {
        format!("port {port}: cannot signal pid {}: {e}", h.pid.unwrap_or(0))
    }
}

/// `pid 4242 (python3 -m headroom.cli proxy, user alice)` for each group root,
/// the way messages name holders.
pub fn holders_summary(state: &PortState) -> String {
    let roots: Vec<String> = state
        .groups
        .iter()
        .map(|g| {
            let h = &state.holders[g.root];
            let extra = g.members.len() - 1;
            let mut s = h.describe();
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

/// The message of a refusal: the rule's template for the first group's
/// root (noting further holders), or the built-in wording.
pub fn refuse_message(template: Option<&str>, state: &PortState, rule: Option<&str>) -> String {
    let Some(first) = state.groups.first().map(|g| &state.holders[g.root]) else {
        return format!("port {} is free", state.port);
    };
    let mut msg = match template {
        Some(t) => render_template(t, state.port, first, rule),
        None => match rule {
            Some(rule) => format!(
                "port {} is held by {}; refused by rule {rule}",
                state.port,
                holders_summary(state)
            ),
            None => format!(
                "port {} is held by {}; no rule applies, so it is left alone",
                state.port,
                holders_summary(state)
            ),
        },
    };
    let others = state.groups.len() - 1;
    if template.is_some() && others > 0 {
        let pids: Vec<String> = state.groups[1..]
            .iter()
            .map(|g| {
                state.holders[g.root]
                    .pid
                    .map_or_else(|| "unknown".into(), |p| p.to_string())
            })
            .collect();
        msg.push_str(&format!(" (and {others} more: pid {})", pids.join(", ")));
    }
    msg
}

fn freed_message(state: &PortState, targets: &[usize], steps: &Steps) -> String {
    let pids: Vec<String> = targets
        .iter()
        .filter_map(|&i| state.holders[i].pid)
        .map(|p| p.to_string())
        .collect();
    format!(
        "freed port {} in {} ms: terminated {} (pid {})",
        state.port,
        steps.elapsed_ms(),
        state
            .groups
            .first()
            .map(|g| state.holders[g.root].short_name())
            .unwrap_or_default(),
        pids.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::DiscoveryError;
    use crate::evaluate::tests::{holder, state};
    use crate::evaluate::Protected;
    use crate::model::SocketEntry;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A fake process: its identity, whether it still holds the socket,
    /// and which signals make it exit.
    #[derive(Clone)]
    struct Proc {
        start: u64,
        alive: bool,
        holds: bool,
        dies_on: Vec<&'static str>,
        foreign: bool,
    }

    #[derive(Default)]
    struct World {
        procs: Mutex<HashMap<u32, Proc>>,
        sent: Mutex<Vec<(u32, &'static str)>>,
    }

    impl World {
        fn with(procs: &[(u32, Proc)]) -> Self {
            let w = World::default();
            w.procs.lock().unwrap().extend(procs.iter().cloned());
            w
        }
        fn any_holding(&self) -> bool {
            self.procs
                .lock()
                .unwrap()
                .values()
                .any(|p| p.alive && p.holds)
        }
    }

    impl Discovery for World {
        fn discover(&self, _: u16, _: Protocol) -> Result<PortState, DiscoveryError> {
            unreachable!("actions only re-check the socket table")
        }
        fn holding_sockets(&self, _: u16, _: Protocol) -> Result<Vec<SocketEntry>, DiscoveryError> {
            Ok(if self.any_holding() {
                state(8787, vec![holder(1, 1, 0, "x", &[])]).sockets
            } else {
                Vec::new()
            })
        }
        fn bind_probe(&self, _: u16, _: Protocol) -> bool {
            !self.any_holding()
        }
    }

    impl ProcessTable for World {
        fn identity(&self, pid: u32) -> Option<ProcessId> {
            let procs = self.procs.lock().unwrap();
            let p = procs.get(&pid).filter(|p| p.alive)?;
            Some(ProcessId {
                pid,
                start_ticks: p.start,
            })
        }
        fn holds_any(&self, pid: u32, _: &[u64]) -> Option<bool> {
            Some(
                self.procs
                    .lock()
                    .unwrap()
                    .get(&pid)
                    .is_some_and(|p| p.alive && p.holds),
            )
        }
        fn parent(&self, _: u32) -> Option<u32> {
            None
        }
    }

    impl Signaller for World {
        fn open(&self, pid: u32) -> io::Result<Handle> {
            match self.identity(pid) {
                Some(_) => Ok(Handle::Pid(pid)),
                None => Err(Errno::SRCH.into()),
            }
        }
        fn check_permission(&self, pid: u32) -> io::Result<()> {
            match self.procs.lock().unwrap().get(&pid) {
                Some(p) if p.foreign => Err(Errno::PERM.into()),
                _ => Ok(()),
            }
        }
        fn send(&self, h: &Handle, sig: Signal) -> io::Result<()> {
            let Handle::Pid(pid) = h else { unreachable!() };
            self.sent.lock().unwrap().push((*pid, sig.name));
            if let Some(p) = self.procs.lock().unwrap().get_mut(pid) {
                if p.dies_on.contains(&sig.name) {
                    p.alive = false;
                }
            }
            Ok(())
        }
        fn wait_exit(&self, hs: &[&Handle], timeout: Duration) -> Vec<bool> {
            std::thread::sleep(timeout.min(Duration::from_millis(2)));
            hs.iter()
                .map(|h| match h {
                    Handle::Pid(pid) => self.identity(*pid).is_none(),
                    Handle::Pidfd(_) => unreachable!(),
                })
                .collect()
        }
    }

    fn proc(start: u64, dies_on: &[&'static str]) -> Proc {
        Proc {
            start,
            alive: true,
            holds: true,
            dies_on: dies_on.to_vec(),
            foreign: false,
        }
    }

    fn ctx() -> Context {
        Context {
            self_uid: Some(1000),
            self_name: None,
            protected: vec![Protected {
                pid: 1,
                why: "pid 1 (init) is never signalled".into(),
            }],
            system_users: false,
        }
    }

    fn term(grace_ms: u64) -> Terminate {
        Terminate {
            signal: Signal::TERM,
            grace: Duration::from_millis(grace_ms),
            escalate: Some(Signal::KILL),
            timeout: Duration::from_millis(grace_ms + 500),
            settle: Duration::ZERO,
        }
    }

    fn run(world: &World, t: Terminate, st: &PortState) -> (ActionResult, Steps) {
        let ctx = ctx();
        let actor = Actor {
            discovery: world,
            table: world,
            signaller: world,
            progress: &crate::progress::Silent,
            interrupted: &AtomicBool::new(false),
            ctx: &OnceLock::from(ctx),
        };
        let mut steps = Steps::new();
        let targets: Vec<usize> = (0..st.holders.len()).collect();
        let r = actor.run(&Action::Terminate(t), st, &targets, Some("r"), &mut steps);
        (r, steps)
    }

    fn events(steps: &Steps) -> Vec<(&'static str, Option<u32>, Option<&'static str>)> {
        steps
            .list
            .iter()
            .map(|s| (s.event, s.pid, s.signal))
            .collect()
    }

    #[test]
    fn a_recycled_pid_is_never_signalled() {
        // Discovery saw pid 4242 started at tick 5242; by the time we act the
        // pid belongs to a process started later.
        let world = World::with(&[(4242, proc(9999, &["SIGTERM"]))]);
        let st = state(8787, vec![holder(4242, 1, 1000, "alice", &["x"])]);
        let (r, steps) = run(&world, term(50), &st);
        assert!(
            world.sent.lock().unwrap().is_empty(),
            "signalled a recycled pid"
        );
        assert!(r.still_held, "the port is still held by the new process");
        assert_eq!(events(&steps)[0], ("skipped", Some(4242), Some("SIGTERM")));
        assert!(steps.list[0]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("pid reused"));
    }

    #[test]
    fn a_holder_that_ignores_sigterm_is_escalated_after_grace() {
        let world = World::with(&[(4242, proc(5242, &["SIGKILL"]))]);
        let st = state(8787, vec![holder(4242, 1, 1000, "alice", &["x"])]);
        let started = Instant::now();
        let (r, steps) = run(&world, term(60), &st);
        assert_eq!(r.outcome, Outcome::Freed, "{}", r.message);
        assert_eq!(
            *world.sent.lock().unwrap(),
            vec![(4242, "SIGTERM"), (4242, "SIGKILL")]
        );
        assert!(
            started.elapsed() >= Duration::from_millis(60),
            "escalated before grace"
        );
        let ev = events(&steps);
        assert_eq!(ev.last(), Some(&("free", None, None)));
    }

    #[test]
    fn terminate_returns_as_soon_as_the_port_is_free() {
        let world = World::with(&[(4242, proc(5242, &["SIGTERM"]))]);
        let st = state(8787, vec![holder(4242, 1, 1000, "alice", &["x"])]);
        let (r, _) = run(&world, term(5_000), &st);
        assert_eq!(r.outcome, Outcome::Freed);
        assert_eq!(*world.sent.lock().unwrap(), vec![(4242, "SIGTERM")]);
    }

    #[test]
    fn a_survivor_fails_after_the_timeout() {
        let world = World::with(&[(4242, proc(5242, &[]))]);
        let st = state(8787, vec![holder(4242, 1, 1000, "alice", &["x"])]);
        let (r, _) = run(&world, term(20), &st);
        assert_eq!(r.outcome, Outcome::Failed);
        assert!(r.message.contains("pid 4242 did not exit"), "{}", r.message);
        assert_eq!(
            *world.sent.lock().unwrap(),
            vec![(4242, "SIGTERM"), (4242, "SIGKILL")]
        );
    }

    #[test]
    fn permission_denied_on_any_member_signals_none() {
        let mut foreign = proc(5243, &["SIGTERM"]);
        foreign.foreign = true;
        let world = World::with(&[(4242, proc(5242, &["SIGTERM"])), (4243, foreign)]);
        let mut worker = holder(4243, 4242, 1001, "bob", &["x"]);
        worker.start_ticks = Some(5243);
        let st = state(8787, vec![holder(4242, 1, 1000, "alice", &["x"]), worker]);
        let (r, _) = run(&world, term(50), &st);
        assert_eq!(r.outcome, Outcome::Failed);
        assert!(world.sent.lock().unwrap().is_empty());
        assert!(
            r.message
                .contains("permission denied to signal pid 4243 (user bob)")
                && r.message.contains("as root"),
            "{}",
            r.message
        );
    }

    #[test]
    fn protected_processes_are_never_signalled() {
        let world = World::with(&[(1, proc(1, &["SIGTERM"]))]);
        let mut init = holder(1, 0, 0, "root", &["/sbin/init"]);
        init.start_ticks = Some(1);
        let st = state(8787, vec![init]);
        let (r, _) = run(&world, term(50), &st);
        assert_eq!(r.outcome, Outcome::Refused);
        assert!(
            r.message.contains("pid 1") && r.message.contains("never signalled"),
            "{}",
            r.message
        );
        assert!(world.sent.lock().unwrap().is_empty());
    }

    #[test]
    fn a_process_that_let_go_of_the_socket_is_not_signalled() {
        let mut released = proc(5243, &["SIGTERM"]);
        released.holds = false;
        let world = World::with(&[(4242, proc(5242, &["SIGTERM"])), (4243, released)]);
        let mut other = holder(4243, 1, 1000, "alice", &["y"]);
        other.start_ticks = Some(5243);
        let st = state(8787, vec![holder(4242, 1, 1000, "alice", &["x"]), other]);
        let (r, _) = run(&world, term(50), &st);
        assert_eq!(r.outcome, Outcome::Freed);
        assert_eq!(*world.sent.lock().unwrap(), vec![(4242, "SIGTERM")]);
    }
}
