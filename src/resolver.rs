//! The resolver: discover → evaluate → act → verify, for one port at a time.
//!
//! After an action, "freed" is verified (socket table and bind probe). When
//! every signalled holder is gone but the port is held again — a child that
//! inherited the socket, a supervisor that restarted the server — the port is
//! discovered and judged again, for a bounded number of rounds.

use crate::actions::{holders_summary, refuse_message, Actor, Step, Steps};
use crate::discovery::DiscoveryError;
use crate::evaluate::{evaluate, Blocked, Decision, Outcome};
use crate::exit::Exit;
use crate::model::{PortState, Protocol};
use crate::policy::{Action, ActionKind, Policy};

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

/// Everything about one resolved port: what was found, what was decided and
/// why, what was done. Rendered as human text, trace and JSON.
#[derive(Debug, Clone)]
pub struct PortReport {
    /// The port.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
    /// Final outcome (planned, with `dry_run`).
    pub outcome: Outcome,
    /// Whether nothing was acted on (`--explain`).
    pub dry_run: bool,
    /// Each round's discovery and decision; the first is what the user asked about.
    pub rounds: Vec<(PortState, Decision)>,
    /// Events of the actions, timed.
    pub steps: Vec<Step>,
    /// One-line summary for the user.
    pub message: String,
}

impl PortReport {
    /// A port that could not be resolved at all (e.g. its lock was held too
    /// long by another portguard): failed, with the reason, nothing touched.
    pub fn not_attempted(port: u16, protocol: Protocol, message: String) -> Self {
        let state = PortState::new(port, protocol, Vec::new(), Vec::new());
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
            outcome: Outcome::Failed,
            dry_run: false,
            rounds: vec![(state, decision)],
            steps: Vec::new(),
            message,
        }
    }

    /// The exit code of this port.
    pub fn exit(&self) -> Exit {
        self.outcome.exit_code()
    }

    /// The first round's discovery.
    pub fn state(&self) -> &PortState {
        &self.rounds[0].0
    }

    /// The decision that determined the outcome (the last round's).
    pub fn decision(&self) -> &Decision {
        &self.rounds[self.rounds.len() - 1].1
    }
}

/// Resolves one port. `dry_run` evaluates and plans but acts on nothing.
pub fn resolve_port(
    actor: &Actor<'_>,
    policy: &Policy,
    port: u16,
    protocol: Protocol,
    dry_run: bool,
) -> Result<PortReport, ResolveError> {
    let mut steps = Steps::new();
    let mut rounds: Vec<(PortState, Decision)> = Vec::new();
    for round in 1..=MAX_ROUNDS {
        let mut state = actor.discovery.discover(port, protocol)?;
        if state.holders.iter().any(|h| h.pid.is_none()) {
            // A holder without a pid is often a process that exited between
            // the table read and the fd scan; look at the table once more.
            let live: Vec<u64> = actor
                .discovery
                .holding_sockets(port, protocol)?
                .iter()
                .map(|s| s.inode)
                .collect();
            state.keep_sockets(&live);
        }
        if !state.is_free() {
            // Held: now the policy's regexes are needed (see `Pattern`).
            policy.compile().map_err(ResolveError::Policy)?;
        }
        let decision = evaluate(policy, &state, actor.ctx());
        let finish = |rounds: Vec<(PortState, Decision)>, steps: Steps, outcome, message| {
            Ok(PortReport {
                port,
                protocol,
                outcome,
                dry_run,
                rounds,
                steps: steps.list,
                message,
            })
        };
        if state.is_free() {
            let (outcome, message) = if round == 1 {
                (Outcome::Free, format!("port {port}/{protocol} is free"))
            } else {
                steps.push("free", None, None, None);
                (
                    Outcome::Freed,
                    format!("freed port {port}/{protocol} in {} ms", steps.elapsed_ms()),
                )
            };
            rounds.push((state, decision));
            return finish(rounds, steps, outcome, message);
        }
        let Some(action) = decision.action.clone() else {
            rounds.push((state, decision));
            return finish(
                rounds,
                steps,
                Outcome::Free,
                format!("port {port}/{protocol} is free"),
            );
        };
        if dry_run {
            let message = plan_message(&action, &state, &decision, policy);
            let outcome = decision.planned;
            rounds.push((state, decision));
            return finish(rounds, steps, outcome, message);
        }
        if actor.is_interrupted() {
            rounds.push((state, decision));
            let message =
                format!("port {port}/{protocol}: interrupted before acting; nothing was signalled");
            return finish(rounds, steps, Outcome::Failed, message);
        }
        if round > 1 {
            steps.push(
                "rediscover",
                None,
                None,
                Some(format!("port taken again by {}", holders_summary(&state))),
            );
        }
        let result = actor.run(
            &action,
            &state,
            &decision.targets,
            decision.rule.as_deref(),
            &mut steps,
        );
        actor.progress.done(port);
        rounds.push((state, decision));
        if !result.still_held {
            return finish(rounds, steps, result.outcome, result.message);
        }
    }
    let last = &rounds[rounds.len() - 1].0;
    let respawner = last
        .groups
        .first()
        .and_then(|g| last.holders[g.root].ppid)
        .map(|ppid| format!("; its parent pid {ppid} keeps starting it again (a supervisor?)"))
        .unwrap_or_default();
    let message = format!(
        "port {port}/{protocol} was taken again after {MAX_ROUNDS} rounds: now held by {}{respawner}",
        holders_summary(last)
    );
    Ok(PortReport {
        port,
        protocol,
        outcome: Outcome::Failed,
        dry_run,
        rounds,
        steps: steps.list,
        message,
    })
}

/// What a real run would do, in one line, for `--explain`.
fn plan_message(
    action: &Action,
    state: &PortState,
    decision: &Decision,
    policy: &Policy,
) -> String {
    let by = match &decision.rule {
        Some(rule) => format!("rule {rule}"),
        None => format!("the default of policy {}", policy.name),
    };
    if let (ActionKind::Terminate, Some(blocked)) = (action.kind(), &decision.blocked) {
        return match blocked {
            Blocked::Protected { pid, why } => format!(
                "would refuse: {by} says terminate, but pid {pid} is protected ({why})"
            ),
            Blocked::NoPid { uid, reason } => format!(
                "would fail: {by} says terminate, but a holder of uid {uid} has no known pid ({reason})"
            ),
        };
    }
    match action {
        Action::Refuse { message } => format!(
            "would refuse: {}",
            refuse_message(message.as_deref(), state, decision.rule.as_deref())
        ),
        _ => format!("would {action}: {} ({by})", holders_summary(state)),
    }
}
