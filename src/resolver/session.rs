//! A resolve run: the system seams, the caller's context, per-port locks,
//! the thread pool for several ports, and SIGINT/SIGTERM handling.

use super::lock::{self, LockError, SkippedDir};
use super::{resolve_port, Env, PortReport, ResolveError, MAX_ROUNDS};
use crate::act::containers::DockerApi;
use crate::act::progress::Progress;
use crate::act::signal::SystemSignaller;
use crate::act::steps::{Event, Step};
use crate::act::Failure;
use crate::discovery::proc::{self_and_ancestors, SystemTable};
use crate::discovery::{backend, users, Backend, Discovery};
use crate::evaluate::Context;
use crate::exit::Exit;
use crate::model::Protocol;
use crate::policy::Policy;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Ports resolved at the same time, at most. Each waits mostly on timers
/// and pidfds, so this bounds threads, not CPU.
const MAX_PARALLEL: usize = 16;

/// Extra time a second portguard waits for a port's lock beyond the
/// longest the first can take.
const LOCK_SLACK: Duration = Duration::from_secs(5);

/// A lock wait shorter than this is not worth a step in the report.
const LOCK_NOTE: Duration = Duration::from_millis(5);

/// Everything one resolve run needs, shared by the per-port threads.
pub struct Session {
    discovery: Box<dyn Discovery + Send + Sync>,
    table: SystemTable,
    ctx: OnceLock<Context>,
    uids: BTreeMap<String, Option<u32>>,
    progress: Box<dyn Progress + Send + Sync>,
    interrupted: Arc<AtomicBool>,
    /// Lock directories passed over because another user could control
    /// them; the report mentions them.
    pub skipped_lock_dirs: Mutex<Vec<(SkippedDir, PathBuf)>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

/// From here on SIGINT and SIGTERM no longer kill portguard mid-action:
/// the first one stops all further signalling, and the run reports what it
/// did so far (exit 5). A second one ends portguard at once (128 + signal).
fn watch_interrupts(flag: &Arc<AtomicBool>) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(flag));
        let _ = signal_hook::flag::register(sig, Arc::clone(flag));
    }
}

/// The context of this process: its uid and name, itself, its ancestors
/// and pid 1 protected, and the uid of every user name `names`.
fn caller_context(names: &BTreeMap<String, Option<u32>>) -> Context {
    let uid = rustix::process::getuid().as_raw();
    let names = names
        .keys()
        .map(|n| (n.clone(), users::uid_of(n)))
        .collect();
    Context::new(uid, users::name_of(uid), &self_and_ancestors(), names)
}

impl Session {
    /// A session for `policy`, discovering with `which`; `progress` shows
    /// waits.
    pub fn new(policy: &Policy, which: Backend, progress: Box<dyn Progress + Send + Sync>) -> Self {
        Session {
            discovery: backend(which),
            table: SystemTable::default(),
            ctx: OnceLock::new(),
            uids: policy
                .user_names()
                .into_iter()
                .map(|n| (n.to_string(), None))
                .collect(),
            progress,
            interrupted: Arc::new(AtomicBool::new(false)),
            skipped_lock_dirs: Mutex::new(Vec::new()),
        }
    }

    /// Resolves one port under its lock (a dry run takes no lock: it acts
    /// on nothing, so it cannot fight anyone).
    fn resolve_one(
        &self,
        policy: &Policy,
        port: u16,
        proto: Protocol,
        dry_run: bool,
    ) -> Result<PortReport, ResolveError> {
        let make_ctx = || caller_context(&self.uids);
        let env = Env {
            discovery: self.discovery.as_ref(),
            table: &self.table,
            signaller: &SystemSignaller,
            progress: self.progress.as_ref(),
            interrupted: &self.interrupted,
            ctx: &self.ctx,
            make_ctx: &make_ctx,
            containers: &DockerApi,
        };
        if dry_run {
            return resolve_port(&env, policy, port, proto, true);
        }
        let wait = policy
            .longest_timeout()
            .saturating_mul(MAX_ROUNDS as u32)
            .saturating_add(LOCK_SLACK);
        let lock = match lock::acquire(port, proto, wait, &self.interrupted) {
            Ok(lock) => lock,
            Err(e) => {
                let failure = match e {
                    LockError::Timeout { waited, .. } => Failure::LockTimeout {
                        waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                    },
                    LockError::Interrupted { .. } => Failure::Interrupted { sent: Vec::new() },
                    other => Failure::LockError {
                        error: other.to_string(),
                    },
                };
                // Not ours to act on; what holds it now is still worth saying.
                let now = self.discovery.discover(port, proto).ok();
                return Ok(PortReport::not_attempted(port, proto, failure, now));
            }
        };
        if let Ok(mut skipped) = self.skipped_lock_dirs.lock() {
            for dir in &lock.skipped {
                if !skipped.iter().any(|(s, _)| s.path == dir.path) {
                    skipped.push((dir.clone(), lock.dir().to_path_buf()));
                }
            }
        }
        let mut report = resolve_port(&env, policy, port, proto, false)?;
        if lock.waited >= LOCK_NOTE {
            report.steps.insert(
                0,
                Step {
                    at_ms: 0,
                    event: Event::Locked {
                        waited_ms: u64::try_from(lock.waited.as_millis()).unwrap_or(u64::MAX),
                    },
                },
            );
        }
        Ok(report)
    }

    /// Resolves every port, concurrently, and returns the reports in port
    /// order with the combined exit code.
    pub fn resolve_all(
        &self,
        policy: &Policy,
        ports: &[u16],
        proto: Protocol,
        dry_run: bool,
    ) -> Result<(Vec<PortReport>, Exit), (u16, ResolveError)> {
        if !dry_run {
            watch_interrupts(&self.interrupted);
        }
        if let [port] = ports {
            // One port (the common hook): no thread to start.
            let report = self
                .resolve_one(policy, *port, proto, dry_run)
                .map_err(|e| (*port, e))?;
            let exit = report.exit();
            return Ok((vec![report], exit));
        }
        let slots: Vec<Mutex<Option<Result<PortReport, ResolveError>>>> =
            ports.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..ports.len().clamp(1, MAX_PARALLEL) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&port) = ports.get(i) else { break };
                    let result = self.resolve_one(policy, port, proto, dry_run);
                    if let Some(Ok(mut slot)) = slots.get(i).map(Mutex::lock) {
                        *slot = Some(result);
                    }
                });
            }
        });
        let mut reports = Vec::with_capacity(ports.len());
        let mut exit = Exit::Free;
        for (slot, &port) in slots.into_iter().zip(ports) {
            match slot.into_inner().ok().flatten() {
                Some(Ok(r)) => {
                    exit = exit.worst(r.exit());
                    reports.push(r);
                }
                Some(Err(e)) => return Err((port, e)),
                None => {
                    reports.push(PortReport::not_attempted(
                        port,
                        proto,
                        Failure::Internal,
                        None,
                    ));
                    exit = exit.worst(Exit::Internal);
                }
            }
        }
        Ok((reports, exit))
    }
}
