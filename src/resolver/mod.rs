//! The resolver: discover → evaluate → act → verify, for one port at a time.
//!
//! After an action, "freed" is verified (socket table and bind probe). When
//! every signalled holder is gone but the port is held again — a child that
//! inherited the socket, a supervisor that restarted the server — the port is
//! discovered and judged again, for a bounded number of rounds. The result
//! is a typed [`PortReport`]; the report layer turns it into words.
//!
//! [`session`] runs many ports at once, under per-port [`lock`]s, with
//! SIGINT/SIGTERM handling.

pub mod lock;
pub mod session;

use crate::act::containers::Containers;
use crate::act::progress::Progress;
use crate::act::signal::Signaller;
use crate::act::steps::{Event, Step, Steps};
use crate::act::{health, ActionEnd, Actor, Failure, Freed, Refusal};
use crate::discovery::{Discovery, DiscoveryError, ProcessTable, Scope};
use crate::evaluate::{evaluate, Context, Decision};
use crate::exit::Exit;
use crate::model::{BindProbe, Clients, ClientsSeen, Outcome, PortState, Protocol, Unit};
use crate::policy::Policy;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Why a port could not be resolved at all.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The socket table could not be read.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// A regex of the policy cannot be compiled (found once a port is held
    /// and the policy's patterns are compiled): a policy error, exit 2.
    #[error("{}", .0.render_all())]
    Policy(crate::policy::Invalid),
}

/// Rounds of discover → act before giving up on a port that keeps being
/// taken again.
pub const MAX_ROUNDS: usize = 3;

/// One round: what discovery found and what the policy decided.
#[derive(Debug, Clone)]
pub struct Round {
    /// The port as discovered.
    pub state: PortState,
    /// The decision.
    pub decision: Decision,
}

/// How resolving a port ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Nothing held the port.
    Free,
    /// `--explain`: nothing was done; the last round's decision is the plan.
    Planned,
    /// The action freed the port.
    Freed(Freed),
    /// The port was free when discovered again after an earlier round's
    /// action (a holder that appeared mid-way and left).
    FreedLater,
    /// The holder is accepted as the server to use.
    Reused(Option<health::Passed>),
    /// The policy (or a safety rule) forbids touching the holder.
    Refused(Refusal),
    /// The port could not be freed.
    Failed(Failure),
}

/// Everything about one resolved port: what was found, what was decided and
/// why, what was done. Rendered as human text, trace and JSON.
#[derive(Debug, Clone)]
pub struct PortReport {
    /// The port.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
    /// Whether nothing was acted on (`--explain`).
    pub dry_run: bool,
    /// Each round's discovery and decision; the first is what the user
    /// asked about. Never empty.
    pub rounds: Vec<Round>,
    /// Events of the actions, timed.
    pub steps: Vec<Step>,
    /// How it ended.
    pub end: End,
    /// The port as discovered after the action failed (or after a lock
    /// wait gave up): the holders a message must name are the current ones.
    pub now: Option<PortState>,
    /// Sockets no process owns (TIME_WAIT) left on the port when it was
    /// reported free or freed: a server that does not set SO_REUSEADDR may
    /// fail to bind until they expire.
    pub lingering: usize,
}

impl PortReport {
    /// A port that was not resolved (its lock was held too long by another
    /// portguard, a worker thread failed): failed, nothing touched; `now` is
    /// the port as a read-only discovery saw it, when it could.
    pub fn not_attempted(
        port: u16,
        protocol: Protocol,
        failure: Failure,
        now: Option<PortState>,
    ) -> Self {
        let state = PortState::new(port, protocol, Vec::new(), Vec::new(), Vec::new());
        let decision = Decision {
            rule: None,
            action: None,
            trace: Vec::new(),
            targets: Vec::new(),
            blocked: None,
            planned: Outcome::Failed,
        };
        PortReport {
            port,
            protocol,
            dry_run: false,
            rounds: vec![Round { state, decision }],
            steps: Vec::new(),
            end: End::Failed(failure),
            now,
            lingering: 0,
        }
    }

    /// The outcome (planned, with `dry_run`).
    pub fn outcome(&self) -> Outcome {
        match &self.end {
            End::Free => Outcome::Free,
            End::Planned => self.decision().planned,
            End::Freed(_) | End::FreedLater => Outcome::Freed,
            End::Reused(_) => Outcome::Reuse,
            End::Refused(_) => Outcome::Refused,
            End::Failed(_) => Outcome::Failed,
        }
    }

    /// The exit code of this port.
    pub fn exit(&self) -> Exit {
        self.outcome().exit_code()
    }

    /// The first round's discovery: what the user asked about.
    pub fn state(&self) -> &PortState {
        &self.rounds[0].state
    }

    /// The decision that determined the outcome (the last round's).
    pub fn decision(&self) -> &Decision {
        &self.rounds[self.rounds.len() - 1].decision
    }

    /// The port as it is now, as far as portguard knows: rediscovered after
    /// a failure, else the last round's discovery.
    pub fn current(&self) -> &PortState {
        self.now
            .as_ref()
            .unwrap_or(&self.rounds[self.rounds.len() - 1].state)
    }
}

/// What resolving touches the system through.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    /// Sockets and their holders.
    pub discovery: &'a (dyn Discovery + Sync),
    /// Identity checks right before each signal.
    pub table: &'a (dyn ProcessTable + Sync),
    /// Signals and exit waits.
    pub signaller: &'a (dyn Signaller + Sync),
    /// Progress display while waiting.
    pub progress: &'a (dyn Progress + Sync),
    /// Set by SIGINT/SIGTERM.
    pub interrupted: &'a AtomicBool,
    /// Who is asking and what is protected: filled on first use, because
    /// walking the ancestors and asking NSS for names cost more than
    /// answering a free port, which never needs them.
    pub ctx: &'a OnceLock<Context>,
    /// Builds the context when it is first needed.
    pub make_ctx: &'a (dyn Fn() -> Context + Sync),
    /// Stops containers.
    pub containers: &'a (dyn Containers + Sync),
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").finish_non_exhaustive()
    }
}

impl Env<'_> {
    fn ctx(&self) -> &Context {
        self.ctx.get_or_init(self.make_ctx)
    }
}

/// Resolves one port. `dry_run` evaluates and plans but acts on nothing.
pub fn resolve_port(
    env: &Env<'_>,
    policy: &Policy,
    port: u16,
    protocol: Protocol,
    dry_run: bool,
) -> Result<PortReport, ResolveError> {
    let mut steps = Steps::new();
    let mut rounds: Vec<Round> = Vec::new();
    let finish = |rounds, steps: Steps, end, now| PortReport {
        port,
        protocol,
        dry_run,
        rounds,
        steps: steps.list,
        end,
        now,
        lingering: 0,
    };
    for round in 1..=MAX_ROUNDS {
        let mut state = env.discovery.discover(port, protocol)?;
        if state.probe.is_none() && state.holders().iter().any(|h| h.pid.is_none()) {
            // A holder without a pid is often a process that exited between
            // the table read and the fd scan; look at the table once more.
            let live: Vec<u64> = env
                .discovery
                .holding_sockets(port, protocol)?
                .iter()
                .map(|s| s.inode)
                .collect();
            state.keep_sockets(&live);
        }
        let held = !state.holders().is_empty();
        if held {
            // Held: now the policy's regexes are needed (see `Pattern`),
            // and the client records its rules ask about.
            policy.compile().map_err(ResolveError::Policy)?;
            read_clients(policy, &mut state, env.ctx());
        }
        let empty = Context::default();
        let decision = evaluate(policy, &state, if held { env.ctx() } else { &empty });
        if !held {
            let lingering = state.lingering().count();
            let end = if state.probe == Some(BindProbe::InUse) {
                Failure::blocked_by(lingering)
            } else if round == 1 {
                End::Free
            } else {
                steps.push(Event::Free);
                End::FreedLater
            };
            rounds.push(Round { state, decision });
            let mut report = finish(rounds, steps, end, None);
            report.lingering = lingering;
            return Ok(report);
        }
        let Some(action) = decision.action.clone() else {
            rounds.push(Round { state, decision });
            return Ok(finish(rounds, steps, End::Free, None));
        };
        if dry_run {
            rounds.push(Round { state, decision });
            return Ok(finish(rounds, steps, End::Planned, None));
        }
        if env.interrupted.load(Ordering::Relaxed) {
            rounds.push(Round { state, decision });
            let end = End::Failed(Failure::Interrupted { sent: Vec::new() });
            return Ok(finish(rounds, steps, end, None));
        }
        if round > 1 {
            steps.push(Event::Rediscover { round });
        }
        let actor = Actor {
            discovery: env.discovery,
            table: env.table,
            signaller: env.signaller,
            progress: env.progress,
            interrupted: env.interrupted,
            ctx: env.ctx(),
            containers: env.containers,
        };
        let ended = actor.run(&action, &state, &decision.targets, &mut steps);
        env.progress.done(port);
        rounds.push(Round { state, decision });
        let end = match ended {
            ActionEnd::StillHeld => continue,
            ActionEnd::Freed(freed) => {
                let mut report = finish(rounds, steps, End::Freed(freed), None);
                report.lingering = lingering_after(env.discovery, port, protocol);
                return Ok(report);
            }
            ActionEnd::Reused(passed) => End::Reused(passed),
            ActionEnd::Refused(refusal) => End::Refused(refusal),
            ActionEnd::Failed(failure) => End::Failed(failure),
        };
        // After a failed action the holders may have changed: the message
        // names the ones there now.
        let now = match &end {
            End::Failed(_) => env.discovery.discover(port, protocol).ok(),
            _ => None,
        };
        return Ok(finish(rounds, steps, end, now));
    }
    let now = env.discovery.discover(port, protocol).ok();
    let failure = Failure::Retaken {
        rounds: MAX_ROUNDS,
        supervisor: supervisor(&rounds, now.as_ref()),
        unit: service_unit(&rounds, now.as_ref()),
    };
    Ok(finish(rounds, steps, End::Failed(failure), now))
}

/// Reads every client directory the policy asks about, for this port.
/// portguard and its ancestors never count as clients.
fn read_clients(policy: &Policy, state: &mut PortState, ctx: &Context) {
    let callers: Vec<u32> = ctx.protected.iter().map(|p| p.pid).collect();
    let env = |name: &str| std::env::var(name).ok();
    for dir in policy.client_dirs() {
        let clients = match dir.expand(state.port, &env) {
            Ok(path) => Clients {
                seen: crate::discovery::clients::read(std::path::Path::new(&path), &callers),
                dir: path,
            },
            Err(error) => Clients {
                dir: dir.as_str().to_string(),
                seen: ClientsSeen::Unreadable { error },
            },
        };
        state.clients.insert(dir.as_str().to_string(), clients);
    }
}

impl Failure {
    /// The end of a port nothing holds although a bind fails: sockets no
    /// process owns (TIME_WAIT) when there are any.
    fn blocked_by(lingering: usize) -> End {
        End::Failed(if lingering > 0 {
            Failure::TimeWait { sockets: lingering }
        } else {
            Failure::NotBindable
        })
    }
}

/// Sockets no process owns left on a freed port, counted only when a plain
/// bind fails (a probe costs microseconds; listing them is a table walk).
fn lingering_after(discovery: &dyn Discovery, port: u16, protocol: Protocol) -> usize {
    if discovery.bind_probe(port, protocol) != BindProbe::Lingering {
        return 0;
    }
    discovery
        .scan(port, protocol, Scope::All)
        .map_or(1, |s| s.lingering().count().max(1))
}

/// The parent that kept starting the server again: a live process, not
/// init, that was the parent of a terminated holder and is the parent of
/// the holder that took the port afterwards. A holder that forked itself,
/// or one reparented to init, has no supervisor.
fn supervisor(rounds: &[Round], now: Option<&PortState>) -> Option<u32> {
    let states: Vec<&PortState> = rounds.iter().map(|r| &r.state).chain(now).collect();
    states.windows(2).rev().find_map(|pair| {
        let (before, after) = (pair[0], pair[1]);
        let old_pids: Vec<u32> = before.holders().iter().filter_map(|h| h.pid).collect();
        let old_parents: Vec<u32> = before.holders().iter().filter_map(|h| h.ppid).collect();
        after
            .roots()
            .filter_map(|h| h.ppid)
            .find(|ppid| *ppid > 1 && old_parents.contains(ppid) && !old_pids.contains(ppid))
    })
}

/// The systemd service the server runs in, when the holders of the last
/// rounds run in one (its `Restart=` is what takes the port again).
fn service_unit(rounds: &[Round], now: Option<&PortState>) -> Option<Unit> {
    now.into_iter()
        .chain(rounds.iter().rev().map(|r| &r.state))
        .flat_map(|s| s.holders())
        .find_map(|h| h.unit.clone().filter(Unit::is_service))
}

#[cfg(test)]
mod tests;
