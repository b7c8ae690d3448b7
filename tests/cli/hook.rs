//! The pre-start hook in depth: several ports at once, two portguards on one
//! port, `run` on reuse and on a missing command, and progress on a terminal.

use crate::support::{policy_for_test_holders, python, Holder, Sandbox, EXIT_TIMEOUT, PORTGUARD};
use std::time::Duration;

#[test]
fn three_slow_holders_are_resolved_together_not_one_after_another() {
    // Each drains for ~1 s after SIGTERM: one after another would take 3 s.
    let holders: Vec<Holder> = (0..3)
        .map(|_| {
            Holder::tcp("127.0.0.1")
                .term_delay(Duration::from_millis(1000))
                .spawn()
        })
        .collect();
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(&policy_for_test_holders("terminate", "grace = \"5s\""));
    let mut args = vec![
        "resolve".to_string(),
        "--policy".into(),
        policy,
        "--format".into(),
        "json".into(),
    ];
    args.extend(holders.iter().map(|h| h.port().to_string()));
    let run = sandbox.run(args);
    run.assert_exit(0);
    assert!(
        run.elapsed < Duration::from_millis(2500),
        "3 ports that each take ~1 s took {:?}: not concurrent\n{}",
        run.elapsed,
        run.describe()
    );
    let mut ports: Vec<u16> = holders.iter().map(Holder::port).collect();
    ports.sort_unstable();
    let reported: Vec<u64> = run.json()["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(
        reported,
        ports.iter().map(|&p| u64::from(p)).collect::<Vec<_>>(),
        "ordered by port"
    );
    for h in &holders {
        assert_eq!(run.port(h.port())["outcome"], "freed", "{}", run.describe());
        assert!(h.wait_exit(EXIT_TIMEOUT).is_some());
    }
}

#[test]
fn two_portguards_on_one_port_take_turns_and_both_succeed() {
    let holder = Holder::tcp("127.0.0.1")
        .term_delay(Duration::from_millis(500))
        .spawn();
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(&policy_for_test_holders("terminate", "grace = \"5s\""));
    let port = holder.port().to_string();
    let spawn = || {
        let mut cmd = sandbox.command();
        cmd.args(["resolve", &port, "--policy", &policy, "--format", "json"]);
        cmd.stdout(std::process::Stdio::piped());
        cmd.spawn().expect("portguard starts")
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let outcome = |o: &std::process::Output| -> (i32, String) {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        (
            o.status.code().unwrap_or(-1),
            v["ports"][0]["outcome"].as_str().unwrap_or("").to_string(),
        )
    };
    let (a, b) = (outcome(&a), outcome(&b));
    assert_eq!((a.0, b.0), (0, 0), "both exit 0: {a:?} {b:?}");
    let mut outcomes = [a.1, b.1];
    outcomes.sort();
    // One freed it; the other waited for the lock, discovered again and
    // found it free (it never signalled the draining holder twice).
    assert_eq!(outcomes, ["free".to_string(), "freed".to_string()]);
    assert!(holder.wait_exit(EXIT_TIMEOUT).is_some());
}

#[test]
fn run_on_reuse_exits_3_and_names_the_server_without_starting_the_command() {
    let server = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(&policy_for_test_holders("reuse", "health = \"tcp\""));
    let marker = sandbox.work_dir().join("started");
    let run = sandbox.run([
        "run",
        "--port",
        &server.port().to_string(),
        "--policy",
        &policy,
        "--",
        &python().exe,
        "-c",
        "import pathlib, sys; pathlib.Path(sys.argv[1]).touch()",
        marker.to_str().unwrap(),
    ]);
    run.assert_exit(3);
    assert!(
        !marker.exists(),
        "the command ran although the port is reused"
    );
    assert!(
        run.stderr.contains(&server.pid().to_string()),
        "{}",
        run.describe()
    );
    assert!(
        run.stdout.is_empty(),
        "stdout belongs to the server\n{}",
        run.describe()
    );
    assert!(server.is_alive());
}

#[test]
fn run_with_a_missing_command_exits_127() {
    let sandbox = Sandbox::new();
    let free = crate::support::reserved_free_port();
    let run = sandbox.run([
        "run",
        "--port",
        &free.port().to_string(),
        "--",
        "/nonexistent/portguard-test-server",
    ]);
    run.assert_exit(127);
    assert!(
        run.stderr
            .contains("cannot start /nonexistent/portguard-test-server"),
        "{}",
        run.describe()
    );
}

#[test]
fn a_spinner_shows_on_a_terminal_and_never_in_a_pipe() {
    let holder = Holder::tcp("127.0.0.1")
        .term_delay(Duration::from_millis(600))
        .spawn();
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(&policy_for_test_holders("terminate", "grace = \"5s\""));
    // A pipe: plain text only.
    let other = Holder::tcp("127.0.0.1")
        .term_delay(Duration::from_millis(600))
        .spawn();
    let piped = sandbox.run(["resolve", &other.port().to_string(), "--policy", &policy]);
    piped.assert_exit(0);
    assert!(!piped.stderr.contains('\r'), "{}", piped.describe());
    // A terminal, through script(1): the spinner draws and erases itself.
    let in_terminal = |line: String| {
        let args = vec!["-qec".to_string(), line, "/dev/null".to_string()];
        let mut cmd = std::process::Command::new("script");
        cmd.args(&args)
            .current_dir(sandbox.work_dir())
            .stdin(std::process::Stdio::null());
        sandbox.run_command(cmd, args)
    };
    let run = in_terminal(format!(
        "{PORTGUARD} resolve {} --policy {policy}",
        holder.port()
    ));
    run.assert_exit(0);
    assert!(
        run.stdout.contains("waiting for pid") && run.stdout.contains('\r'),
        "no spinner on a terminal\n{}",
        run.describe()
    );
    // -q silences it.
    let quiet_holder = Holder::tcp("127.0.0.1")
        .term_delay(Duration::from_millis(300))
        .spawn();
    let run = in_terminal(format!(
        "{PORTGUARD} resolve {} --policy {policy} -q",
        quiet_holder.port()
    ));
    run.assert_exit(0);
    assert!(
        !run.stdout.contains("waiting for pid"),
        "{}",
        run.describe()
    );
}
