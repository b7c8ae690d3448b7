//! The terminate and wait state machines.
//!
//! Every signal goes through [`Signaller`](super::signal::Signaller) after
//! the target's identity has been re-checked through the process table
//! (same start time, still holding the socket), so a recycled pid is never
//! signalled. Waiting is event-driven: pidfd readiness wakes us the moment a
//! holder exits, and a short, growing tick re-reads the socket table for
//! holders that close the socket without exiting. Nothing sleeps in whole
//! seconds.

use super::progress::Waiting;
use super::signal::{is_denied, is_gone, Handle};
use super::steps::{Event, Skip, Steps};
use super::{ActionEnd, Actor, Failure, Freed, Refusal};
use crate::evaluate::{blocked_target, Blocked};
use crate::model::{PortState, ProcessId};
use crate::policy::{Signal, Terminate};
use std::io;
use std::time::{Duration, Instant};

/// Longest pause between two socket-table re-checks while waiting.
const MAX_TICK: Duration = Duration::from_millis(10);
/// First pause; doubles up to [`MAX_TICK`].
const FIRST_TICK: Duration = Duration::from_millis(1);
/// Time the escalation signal gets to work when the deadline had already
/// passed when it was sent (portguard itself was stopped for a while).
const ESCALATION_WINDOW: Duration = Duration::from_secs(1);

/// One signalled process we are waiting for.
struct Live {
    id: ProcessId,
    inodes: Vec<u64>,
    handle: Handle,
}

enum Sent {
    Yes(Handle),
    Gone,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Actor<'_> {
    /// Waits up to `timeout` for any of `items` (each a pid and its
    /// handle, as `of` finds them) to exit, and drops those that did,
    /// recording an `exited` step for each.
    fn drop_exited<T>(
        &self,
        items: &mut Vec<T>,
        of: impl Fn(&T) -> (u32, &Handle),
        timeout: Duration,
        steps: &mut Steps,
    ) {
        let handles: Vec<&Handle> = items.iter().map(|t| of(t).1).collect();
        let mut exited = self.signaller.wait_exit(&handles, timeout).into_iter();
        items.retain(|t| {
            let gone = exited.next().unwrap_or(false);
            if gone {
                steps.push(Event::Exited { pid: of(t).0 });
            }
            !gone
        });
    }

    /// Whether the port is free now: no holding socket in the table and a
    /// server can bind it.
    fn port_is_free(&self, state: &PortState) -> bool {
        match self.discovery.holding_sockets(state.port, state.protocol) {
            Ok(sockets) if sockets.is_empty() => self
                .discovery
                .bind_probe(state.port, state.protocol)
                .bindable(),
            _ => false,
        }
    }

    pub(super) fn terminate(
        &self,
        t: &Terminate,
        state: &PortState,
        targets: &[usize],
        steps: &mut Steps,
    ) -> ActionEnd {
        let holders = state.holders();
        // Defence in depth: the evaluator already planned a refusal for
        // these, but no code path may signal them.
        match blocked_target(targets, holders, self.ctx) {
            Some(Blocked::Protected { pid, why }) => {
                return ActionEnd::Refused(Refusal::Protected { pid, why })
            }
            Some(Blocked::Container { pid, why }) => {
                return ActionEnd::Refused(Refusal::UnknownContainer { pid, why })
            }
            Some(Blocked::NoPid { uid, reason }) => {
                return ActionEnd::Failed(Failure::PidUnknown { uid, why: reason })
            }
            None => {}
        }
        // A container's port is freed by stopping the container through
        // the API; its docker-proxy is never signalled, only watched.
        let (proxies, targets): (Vec<usize>, Vec<usize>) =
            targets.iter().partition(|&&i| holders[i].is_docker_proxy());
        let mut watched: Vec<(u32, Handle)> = Vec::new();
        let mut stopped: Vec<&str> = Vec::new();
        let mut stopped_names: Vec<String> = Vec::new();
        for &i in &proxies {
            let h = &holders[i];
            let Some(container) = &h.container else {
                continue;
            };
            if !stopped.contains(&container.id.as_str()) {
                if self.is_interrupted() {
                    return self.interrupted_end(steps);
                }
                steps.push(Event::StopContainer {
                    id: container.id.clone(),
                    name: container.name.clone(),
                });
                if let Err(why) = self.containers.stop(&container.id, t.grace) {
                    return ActionEnd::Refused(Refusal::ContainerNotStopped {
                        container: container.clone(),
                        why,
                    });
                }
                steps.push(Event::ContainerStopped {
                    id: container.id.clone(),
                });
                stopped.push(&container.id);
                stopped_names.push(container.name.clone());
            }
            if let Some(pid) = h.pid {
                if let Ok(handle) = self.signaller.open(pid) {
                    watched.push((pid, handle));
                }
            }
        }
        let targets = &targets[..];
        // Check permission for every member before signalling any, so a
        // group is never half-terminated because of one foreign process.
        for &i in targets {
            let h = &holders[i];
            let Some(pid) = h.pid else { continue };
            if let Err(e) = self.signaller.check_permission(pid) {
                if is_denied(&e) {
                    return ActionEnd::Failed(Failure::PermissionDenied {
                        pid,
                        uid: h.uid,
                        user: h.user.clone(),
                    });
                }
            }
        }
        let mut live: Vec<Live> = Vec::new();
        let mut signalled = Vec::new();
        for &i in targets {
            if self.is_interrupted() {
                return self.interrupted_end(steps);
            }
            let h = &holders[i];
            let Some(id) = h.id() else {
                let pid = h.pid.unwrap_or(0);
                steps.push(Event::Skipped {
                    pid,
                    signal: None,
                    why: Skip::IdentityUnknown,
                });
                return ActionEnd::Failed(Failure::IdentityUnknown { pid });
            };
            let was_stopped = self.table.is_stopped(id.pid) == Some(true);
            match self.signal_one(id, &h.inodes, t.signal, steps) {
                Ok(Sent::Yes(handle)) => {
                    // A stopped process cannot run its shutdown until it is
                    // continued; without this it would wait out the grace
                    // period for SIGKILL. Harmless to a running one.
                    let _ = self.signaller.send(&handle, Signal::CONT);
                    if was_stopped {
                        steps.push(Event::Resumed { pid: id.pid });
                    }
                    signalled.push(id.pid);
                    live.push(Live {
                        id,
                        inodes: h.inodes.clone(),
                        handle,
                    });
                }
                Ok(Sent::Gone) => {}
                Err(e) if is_denied(&e) => {
                    return ActionEnd::Failed(Failure::PermissionDenied {
                        pid: id.pid,
                        uid: h.uid,
                        user: h.user.clone(),
                    })
                }
                Err(e) => {
                    return ActionEnd::Failed(Failure::SignalFailed {
                        pid: id.pid,
                        error: e.to_string(),
                    })
                }
            }
        }
        let started = Instant::now();
        let grace_at = started + t.grace;
        let mut deadline = started + t.timeout;
        let mut escalated = t.escalate.is_none();
        let mut escalated_pids = Vec::new();
        let mut tick = FIRST_TICK;
        loop {
            if self.port_is_free(state) {
                if self.settle(t.settle, state, targets, steps) {
                    return ActionEnd::StillHeld;
                }
                steps.push(Event::Free);
                return ActionEnd::Freed(Freed::Terminated {
                    pids: signalled,
                    escalation: (!escalated_pids.is_empty())
                        .then(|| t.escalate.map(|s| s.name))
                        .flatten(),
                    escalated: escalated_pids,
                    containers: stopped_names,
                });
            }
            if self.is_interrupted() {
                return self.interrupted_end(steps);
            }
            // docker-proxy goes when its container has stopped.
            if !watched.is_empty() {
                self.drop_exited(&mut watched, |(pid, h)| (*pid, h), Duration::ZERO, steps);
            }
            if live.is_empty() && watched.is_empty() {
                return ActionEnd::StillHeld;
            }
            let now = Instant::now();
            if !escalated && now >= grace_at {
                escalated = true;
                if let Some(sig) = t.escalate {
                    let mut still = Vec::new();
                    for l in live.drain(..) {
                        match self.signal_one(l.id, &l.inodes, sig, steps) {
                            Ok(Sent::Yes(handle)) => {
                                escalated_pids.push(l.id.pid);
                                still.push(Live { handle, ..l });
                            }
                            Ok(Sent::Gone) => {}
                            Err(e) => {
                                steps.push(Event::Error {
                                    pid: l.id.pid,
                                    signal: sig.name,
                                    error: e.to_string(),
                                });
                                still.push(l);
                            }
                        }
                    }
                    live = still;
                    // portguard itself may have been stopped past the
                    // deadline: the escalation still gets its moment.
                    deadline = deadline.max(Instant::now() + ESCALATION_WINDOW);
                    continue;
                }
            }
            if now >= deadline {
                steps.push(Event::Timeout);
                return ActionEnd::Failed(Failure::Timeout {
                    pids: live
                        .iter()
                        .map(|l| l.id.pid)
                        .chain(watched.iter().map(|(pid, _)| *pid))
                        .collect(),
                    after_ms: millis(started.elapsed()),
                });
            }
            let mut until = (now + tick).min(deadline);
            if !escalated {
                until = until.min(grace_at);
            }
            if self.progress.enabled() {
                let pids: Vec<u32> = live.iter().map(|l| l.id.pid).collect();
                let (what, limit) = if escalated {
                    (
                        Waiting::Exit {
                            pids: &pids,
                            escalate: None,
                        },
                        t.timeout,
                    )
                } else {
                    (
                        Waiting::Exit {
                            pids: &pids,
                            escalate: Some((t.escalate.map(|s| s.name), t.grace)),
                        },
                        t.grace,
                    )
                };
                self.progress
                    .waiting(state.port, what, started.elapsed(), limit);
            }
            self.drop_exited(
                &mut live,
                |l| (l.id.pid, &l.handle),
                until.saturating_duration_since(now),
                steps,
            );
            tick = (tick * 2).min(MAX_TICK);
        }
    }

    /// A freed port whose terminated holder still had a live parent may be
    /// taken again at once by that parent (a supervisor restarting its
    /// server). So may one that runs in a systemd `.service`: its parent is
    /// the service manager (pid 1, or a user manager acting as subreaper),
    /// which makes it look orphaned, yet `Restart=` starts it again.
    /// Watches the port for `settle`; true when it was taken again.
    /// Orphans outside a service — stale processes, the case this tool
    /// exists for — have no one to restart them and skip the wait.
    fn settle(
        &self,
        settle: Duration,
        state: &PortState,
        targets: &[usize],
        steps: &mut Steps,
    ) -> bool {
        let holders = state.holders();
        let parented = targets.iter().any(|&i| {
            let h = &holders[i];
            h.orphan == Some(false)
                && h.ppid
                    .is_some_and(|p| !targets.iter().any(|&j| holders[j].pid == Some(p)))
        });
        let service = targets
            .iter()
            .filter_map(|&i| holders[i].unit.as_ref())
            .find(|u| u.is_service());
        if !(parented || service.is_some()) || settle.is_zero() {
            return false;
        }
        if let Some(unit) = service {
            steps.push(Event::Unit { unit: unit.clone() });
        }
        let start = Instant::now();
        let until = start + settle;
        while Instant::now() < until && !self.is_interrupted() {
            std::thread::sleep(MAX_TICK.min(until.saturating_duration_since(Instant::now())));
            if matches!(self.discovery.holding_sockets(state.port, state.protocol), Ok(s) if !s.is_empty())
            {
                steps.push(Event::Retaken);
                return true;
            }
        }
        steps.push(Event::Settle {
            ms: millis(start.elapsed()),
        });
        false
    }

    /// Re-checks identity and socket ownership, then signals. `Gone` when
    /// the process exited, was replaced (pid reuse) or let go of the socket.
    fn signal_one(
        &self,
        id: ProcessId,
        inodes: &[u64],
        sig: Signal,
        steps: &mut Steps,
    ) -> io::Result<Sent> {
        let skip = |steps: &mut Steps, why: Skip| {
            steps.push(Event::Skipped {
                pid: id.pid,
                signal: Some(sig.name),
                why,
            });
            Ok(Sent::Gone)
        };
        let handle = match self.signaller.open(id.pid) {
            Ok(h) => h,
            Err(e) if is_gone(&e) => return skip(steps, Skip::Exited),
            Err(e) => return Err(e),
        };
        // The handle was opened first, so if the identity still matches now,
        // the handle refers to the evaluated process and not a successor.
        match self.table.identity(id.pid) {
            Some(now) if now == id => {}
            Some(_) => return skip(steps, Skip::PidReused),
            None => return skip(steps, Skip::Exited),
        }
        if self.table.holds_any(id.pid, inodes) == Some(false) {
            return skip(steps, Skip::ReleasedSocket);
        }
        match self.signaller.send(&handle, sig) {
            Ok(()) => {
                steps.push(Event::Signal {
                    pid: id.pid,
                    signal: sig.name,
                });
                Ok(Sent::Yes(handle))
            }
            Err(e) if is_gone(&e) => skip(steps, Skip::ExitedBeforeSignal),
            Err(e) => Err(e),
        }
    }

    /// Waits until the port is free; `None` on timeout.
    pub(super) fn wait(
        &self,
        timeout: Duration,
        state: &PortState,
        steps: &mut Steps,
    ) -> Option<ActionEnd> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut handles: Vec<(u32, Handle)> = Vec::new();
        for h in state.holders() {
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
                steps.push(Event::Free);
                return Some(ActionEnd::Freed(Freed::Released));
            }
            if self.is_interrupted() {
                return Some(self.interrupted_end(steps));
            }
            let now = Instant::now();
            if now >= deadline {
                steps.push(Event::Timeout);
                return None;
            }
            if self.progress.enabled() {
                self.progress
                    .waiting(state.port, Waiting::Release, started.elapsed(), timeout);
            }
            self.drop_exited(
                &mut handles,
                |(pid, h)| (*pid, h),
                (deadline - now).min(tick),
                steps,
            );
            tick = (tick * 2).min(MAX_TICK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::progress::Silent;
    use crate::act::steps::Step;
    use crate::evaluate::Context;
    use crate::fixtures::world::{proc, World};
    use crate::fixtures::{context, holder, state, HolderBuilder};
    use crate::model::Unit;
    use crate::policy::Action;
    use std::sync::atomic::AtomicBool;

    /// A daemon whose containers all stop at once.
    struct StopAll;

    impl crate::act::containers::Containers for StopAll {
        fn stop(&self, _: &str, _: Duration) -> Result<(), String> {
            Ok(())
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

    fn run_with(
        world: &World,
        t: Terminate,
        st: &PortState,
        ctx: &Context,
    ) -> (ActionEnd, Vec<Step>) {
        let actor = Actor {
            discovery: world,
            table: world,
            signaller: world,
            progress: &Silent,
            interrupted: &AtomicBool::new(false),
            ctx,
            containers: &StopAll,
        };
        let mut steps = Steps::new();
        let targets: Vec<usize> = (0..st.holders().len()).collect();
        let end = actor.run(&Action::Terminate(t), st, &targets, &mut steps);
        (end, steps.list)
    }

    fn run(world: &World, t: Terminate, st: &PortState) -> (ActionEnd, Vec<Step>) {
        run_with(world, t, st, &context())
    }

    fn events(steps: &[Step]) -> Vec<&Event> {
        steps.iter().map(|s| &s.event).collect()
    }

    /// The (pid, start) holder the fake world knows as `start`.
    fn held(pid: u32, start: u64) -> crate::model::Holder {
        HolderBuilder::new(pid).start(start).build()
    }

    #[test]
    fn a_recycled_pid_is_never_signalled() {
        // Discovery saw pid 4242 started at tick 5242; by the time we act the
        // pid belongs to a process started later.
        let world = World::with(&[(4242, proc(9999, &["SIGTERM"]))]);
        let st = state(8787, vec![held(4242, 5242)]);
        let (end, steps) = run(&world, term(50), &st);
        assert!(world.sent().is_empty(), "signalled a recycled pid");
        assert_eq!(
            end,
            ActionEnd::StillHeld,
            "the new process still holds the port"
        );
        assert_eq!(
            events(&steps)[0],
            &Event::Skipped {
                pid: 4242,
                signal: Some("SIGTERM"),
                why: Skip::PidReused
            }
        );
    }

    #[test]
    fn a_holder_that_ignores_sigterm_is_escalated_after_grace() {
        let world = World::with(&[(4242, proc(5242, &["SIGKILL"]))]);
        let st = state(8787, vec![held(4242, 5242)]);
        let started = Instant::now();
        let (end, steps) = run(&world, term(60), &st);
        assert_eq!(
            end,
            ActionEnd::Freed(Freed::Terminated {
                pids: vec![4242],
                escalated: vec![4242],
                escalation: Some("SIGKILL"),
                containers: Vec::new(),
            })
        );
        assert_eq!(
            world.sent(),
            vec![(4242, "SIGTERM"), (4242, "SIGCONT"), (4242, "SIGKILL")]
        );
        assert!(
            started.elapsed() >= Duration::from_millis(60),
            "escalated before grace"
        );
        assert_eq!(events(&steps).last(), Some(&&Event::Free));
    }

    #[test]
    fn terminate_returns_as_soon_as_the_port_is_free() {
        let world = World::with(&[(4242, proc(5242, &["SIGTERM"]))]);
        let st = state(8787, vec![held(4242, 5242)]);
        let started = Instant::now();
        let (end, _) = run(&world, term(5_000), &st);
        assert!(
            matches!(end, ActionEnd::Freed(Freed::Terminated { ref escalated, .. }) if escalated.is_empty())
        );
        assert_eq!(world.sent(), vec![(4242, "SIGTERM"), (4242, "SIGCONT")]);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_stopped_holder_is_continued_and_exits_at_once() {
        let mut stopped = proc(5242, &["SIGTERM"]);
        stopped.stopped = true;
        let world = World::with(&[(4242, stopped)]);
        let st = state(8787, vec![held(4242, 5242)]);
        let started = Instant::now();
        let (end, steps) = run(&world, term(5_000), &st);
        assert!(matches!(end, ActionEnd::Freed(_)), "{end:?}");
        // Freed by SIGTERM once SIGCONT let it run, not by SIGKILL after 5 s.
        assert_eq!(world.sent(), vec![(4242, "SIGTERM"), (4242, "SIGCONT")]);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(events(&steps).contains(&&Event::Resumed { pid: 4242 }));
    }

    #[test]
    fn a_survivor_fails_after_the_timeout() {
        let world = World::with(&[(4242, proc(5242, &[]))]);
        let st = state(8787, vec![held(4242, 5242)]);
        let (end, _) = run(&world, term(20), &st);
        assert!(
            matches!(end, ActionEnd::Failed(Failure::Timeout { ref pids, .. }) if pids == &[4242]),
            "{end:?}"
        );
        assert_eq!(
            world.sent(),
            vec![(4242, "SIGTERM"), (4242, "SIGCONT"), (4242, "SIGKILL")]
        );
    }

    #[test]
    fn escalation_is_sent_even_when_the_deadline_passed_first() {
        // As when portguard itself was stopped past its timeout: grace and
        // timeout end together, and the holder only dies of SIGKILL.
        let world = World::with(&[(4242, proc(5242, &["SIGKILL"]))]);
        let st = state(8787, vec![held(4242, 5242)]);
        let mut t = term(30);
        t.timeout = t.grace;
        let (end, _) = run(&world, t, &st);
        assert!(matches!(end, ActionEnd::Freed(_)), "{end:?}");
        assert!(world.sent().contains(&(4242, "SIGKILL")));
    }

    #[test]
    fn permission_denied_on_any_member_signals_none() {
        let mut foreign = proc(5243, &["SIGTERM"]);
        foreign.foreign = true;
        let world = World::with(&[(4242, proc(5242, &["SIGTERM"])), (4243, foreign)]);
        let worker = HolderBuilder::new(4243)
            .ppid(4242)
            .user(1001, "bob")
            .start(5243)
            .build();
        let st = state(8787, vec![held(4242, 5242), worker]);
        let (end, _) = run(&world, term(50), &st);
        assert_eq!(
            end,
            ActionEnd::Failed(Failure::PermissionDenied {
                pid: 4243,
                uid: 1001,
                user: Some("bob".into())
            })
        );
        assert!(world.sent().is_empty());
    }

    #[test]
    fn protected_processes_are_never_signalled() {
        let world = World::with(&[(1, proc(1, &["SIGTERM"]))]);
        let init = holder(1, 0, 0, "root", &["/sbin/init"]);
        let st = state(8787, vec![init]);
        let (end, _) = run(&world, term(50), &st);
        assert_eq!(
            end,
            ActionEnd::Refused(Refusal::Protected {
                pid: 1,
                why: crate::evaluate::ProtectedWhy::Init
            })
        );
        assert!(world.sent().is_empty());
    }

    #[test]
    fn a_process_that_let_go_of_the_socket_is_not_signalled() {
        let mut released = proc(5243, &["SIGTERM"]);
        released.holds = false;
        let world = World::with(&[(4242, proc(5242, &["SIGTERM"])), (4243, released)]);
        let st = state(8787, vec![held(4242, 5242), held(4243, 5243)]);
        let (end, _) = run(&world, term(50), &st);
        assert!(matches!(end, ActionEnd::Freed(_)), "{end:?}");
        assert_eq!(world.sent(), vec![(4242, "SIGTERM"), (4242, "SIGCONT")]);
    }

    #[test]
    fn a_holder_with_a_live_parent_is_watched_for_a_restart() {
        let mut child = proc(5242, &["SIGTERM"]);
        child.ppid = 300;
        let world = World::with(&[(4242, child)]);
        let st = state(
            8787,
            vec![HolderBuilder::new(4242).ppid(300).start(5242).build()],
        );
        let mut t = term(50);
        t.settle = Duration::from_millis(30);
        let (end, steps) = run(&world, t, &st);
        assert!(matches!(end, ActionEnd::Freed(_)), "{end:?}");
        assert!(
            matches!(events(&steps)[..], [.., Event::Settle { ms }, Event::Free] if *ms >= 30),
            "{steps:?}"
        );
    }

    /// A service's main process looks orphaned (its parent is the service
    /// manager), but `Restart=` may start it again: it is watched too, and
    /// the steps name the unit.
    #[test]
    fn a_holder_in_a_service_unit_is_watched_for_a_restart() {
        let world = World::with(&[(4242, proc(5242, &["SIGTERM"]))]);
        let unit = Unit {
            name: "web.service".into(),
            user: None,
        };
        let holder = HolderBuilder::new(4242)
            .ppid(1)
            .start(5242)
            .with(|h| h.unit = Some(unit.clone()))
            .build();
        let mut t = term(50);
        t.settle = Duration::from_millis(30);
        let (end, steps) = run(&world, t, &state(8787, vec![holder]));
        assert!(matches!(end, ActionEnd::Freed(_)), "{end:?}");
        assert!(
            matches!(
                events(&steps)[..],
                [.., Event::Unit { unit: ref u }, Event::Settle { ms }, Event::Free]
                    if *u == unit && *ms >= 30
            ),
            "{steps:?}"
        );
    }

    /// A scope only groups processes started elsewhere: an orphan in one is
    /// stale, and is not waited for.
    #[test]
    fn an_orphan_in_a_scope_is_not_watched() {
        let world = World::with(&[(4242, proc(5242, &["SIGTERM"]))]);
        let holder = HolderBuilder::new(4242)
            .ppid(1)
            .start(5242)
            .with(|h| {
                h.unit = Some(Unit {
                    name: "session-3.scope".into(),
                    user: None,
                })
            })
            .build();
        let mut t = term(50);
        t.settle = Duration::from_millis(30);
        let (end, steps) = run(&world, t, &state(8787, vec![holder]));
        assert!(matches!(end, ActionEnd::Freed(_)), "{end:?}");
        assert!(
            !events(&steps)
                .iter()
                .any(|e| matches!(e, Event::Settle { .. } | Event::Unit { .. })),
            "{steps:?}"
        );
    }
}
