//! The resolver's rounds against the fake world: what it decides to report
//! when ports are free, freed, taken again, or blocked by TIME_WAIT.

use super::*;
use crate::act::progress::Silent;
use crate::fixtures::context;
use crate::fixtures::world::{proc, World};
use crate::policy::{load_source, PolicySource};

/// No daemon: every stop fails.
struct NoDocker;

impl crate::act::containers::Containers for NoDocker {
    fn stop(&self, _: &str, _: std::time::Duration) -> Result<(), String> {
        Err("no Docker daemon in these tests".into())
    }
}

const POLICY: &str = r#"
[defaults]
settle = "0s"
[[rule]]
name = "mine"
match.user = "$self"
action = "terminate"
grace = "50ms"
timeout = "300ms"
"#;

fn policy() -> Policy {
    load_source(POLICY, PolicySource::File("t.toml".into())).unwrap()
}

fn resolve(world: &World, dry_run: bool) -> PortReport {
    let ctx = OnceLock::from(context());
    let make = || context();
    let env = Env {
        discovery: world,
        table: world,
        signaller: world,
        progress: &Silent,
        interrupted: &AtomicBool::new(false),
        ctx: &ctx,
        make_ctx: &make,
        containers: &NoDocker,
    };
    resolve_port(&env, &policy(), 8787, Protocol::Tcp, dry_run).unwrap()
}

#[test]
fn a_free_port_is_free_in_one_round() {
    let report = resolve(&World::default(), false);
    assert_eq!(report.end, End::Free);
    assert_eq!(report.exit(), Exit::Free);
    assert_eq!(report.rounds.len(), 1);
}

#[test]
fn a_holder_is_terminated_and_the_port_freed() {
    let world = World::with(&[(4242, proc(5242, &["SIGTERM"]))]);
    let report = resolve(&world, false);
    assert!(
        matches!(report.end, End::Freed(Freed::Terminated { .. })),
        "{:?}",
        report.end
    );
    assert_eq!(report.outcome(), Outcome::Freed);
}

#[test]
fn a_dry_run_signals_nothing() {
    let world = World::with(&[(4242, proc(5242, &["SIGTERM"]))]);
    let report = resolve(&world, true);
    assert_eq!(report.end, End::Planned);
    assert_eq!(report.outcome(), Outcome::Freed);
    assert!(world.sent().is_empty());
}

#[test]
fn a_supervisor_that_restarts_the_server_is_named() {
    let mut server = proc(5242, &["SIGTERM"]);
    server.ppid = 300;
    let world = World::with(&[(4242, server)]);
    *world.restarter.lock().unwrap() = Some(300);
    let report = resolve(&world, false);
    assert_eq!(report.rounds.len(), MAX_ROUNDS);
    match &report.end {
        End::Failed(Failure::Retaken { supervisor, .. }) => assert_eq!(*supervisor, Some(300)),
        other => panic!("{other:?}"),
    }
    // The message names who holds the port now, not a pid that exited.
    let now = report.now.as_ref().unwrap();
    let current: Vec<u32> = now.holders().iter().filter_map(|h| h.pid).collect();
    let exited: Vec<u32> = world.sent().iter().map(|(p, _)| *p).collect();
    assert!(!current.is_empty() && current.iter().all(|p| !exited.contains(p)));
}

#[test]
fn a_server_that_forks_its_successor_has_no_supervisor() {
    // Each holder's successor is adopted by init: nobody supervises it.
    let world = World::with(&[(4242, proc(5242, &["SIGTERM"]))]);
    *world.restarter.lock().unwrap() = Some(1);
    let report = resolve(&world, false);
    match &report.end {
        End::Failed(Failure::Retaken { supervisor, .. }) => assert_eq!(*supervisor, None),
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_time_wait_blocks_the_port() {
    let world = World::default();
    *world.time_wait.lock().unwrap() = 2;
    let report = resolve(&world, false);
    assert_eq!(report.end, End::Failed(Failure::TimeWait { sockets: 2 }));
    assert_eq!(report.exit(), Exit::Failed);
}

#[test]
fn a_timeout_reports_the_holders_there_now() {
    let world = World::with(&[(4242, proc(5242, &[]))]);
    let report = resolve(&world, false);
    assert!(
        matches!(report.end, End::Failed(Failure::Timeout { .. })),
        "{:?}",
        report.end
    );
    assert!(report.now.is_some());
}

#[test]
fn an_interrupt_before_acting_signals_nothing() {
    let world = World::with(&[(4242, proc(5242, &["SIGTERM"]))]);
    let ctx = OnceLock::from(context());
    let make = || context();
    let interrupted = AtomicBool::new(true);
    let env = Env {
        discovery: &world,
        table: &world,
        signaller: &world,
        progress: &Silent,
        interrupted: &interrupted,
        ctx: &ctx,
        make_ctx: &make,
        containers: &NoDocker,
    };
    let report = resolve_port(&env, &policy(), 8787, Protocol::Tcp, false).unwrap();
    assert_eq!(
        report.end,
        End::Failed(Failure::Interrupted { sent: Vec::new() })
    );
    assert!(world.sent().is_empty());
}
