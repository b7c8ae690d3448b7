//! Custom policies (`--policy path.toml`) and the four actions against real
//! holders: terminate (with escalation), wait, reuse and refuse, over IPv4,
//! IPv6 and UDP, plus the policy lookup order. Every policy here matches only
//! the suite's own holder script, and uses short grace periods and timeouts
//! so the suite stays fast.

use crate::support::{
    events, holder_pids, policy_for_test_holders, signals, Holder, Run, Sandbox, EXIT_TIMEOUT,
};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

fn resolve(sandbox: &Sandbox, policy: &str, port: u16, extra: &[&str]) -> Run {
    let mut args = vec![
        "resolve".to_owned(),
        port.to_string(),
        "--policy".into(),
        policy.to_owned(),
        "--format".into(),
        "json".into(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    sandbox.run(args)
}

fn terminate_policy(sandbox: &Sandbox) -> String {
    sandbox.policy(&policy_for_test_holders(
        "terminate",
        "grace = \"300ms\"\ntimeout = \"3s\"",
    ))
}

#[track_caller]
fn assert_freed(run: &Run, holder: &Holder) {
    run.assert_exit(0);
    let entry = run.port(holder.port());
    assert_eq!(entry["outcome"], "freed", "{}", run.describe());
    assert_eq!(entry["rule"], "test-holder", "{}", run.describe());
    assert!(
        holder.wait_exit(EXIT_TIMEOUT).is_some(),
        "holder survived\n{}",
        run.describe()
    );
    assert!(holder.port_is_bindable(), "port not bindable after `freed`");
}

#[test]
fn terminate_escalates_to_sigkill_when_sigterm_is_ignored() {
    let stubborn = Holder::tcp("127.0.0.1").ignore_sigterm().spawn();
    let sandbox = Sandbox::new();
    let run = resolve(&sandbox, &terminate_policy(&sandbox), stubborn.port(), &[]);
    assert_freed(&run, &stubborn);
    let entry = run.port(stubborn.port());
    let pid = stubborn.pid();
    let sent: Vec<String> = signals(&entry)
        .into_iter()
        .filter(|(p, _)| *p == pid)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(sent, ["SIGTERM", "SIGKILL"], "{}", run.describe());
    let status = stubborn.wait_exit(EXIT_TIMEOUT).unwrap();
    assert_eq!(status.signal(), Some(9), "ended by {status:?}");
    // The result says the escalation was needed, not only "terminated".
    let message = entry["message"].as_str().unwrap_or("");
    assert!(
        message.contains(&format!(
            "pid {pid} ignored the first signal and needed SIGKILL"
        )),
        "{}",
        run.describe()
    );
}

#[test]
fn the_settle_watch_after_a_supervised_holder_is_a_step() {
    // The test process is the holder's parent: alive, so the freed port is
    // watched for a restart, and the report says so.
    let holder = Holder::tcp("127.0.0.1").attached().spawn();
    let sandbox = Sandbox::new();
    let run = resolve(&sandbox, &terminate_policy(&sandbox), holder.port(), &[]);
    assert_freed(&run, &holder);
    let entry = run.port(holder.port());
    let steps = entry["steps"].as_array().unwrap();
    let settle = steps
        .iter()
        .find(|s| s["event"] == "settle")
        .unwrap_or_else(|| panic!("no settle step\n{}", run.describe()));
    assert!(
        settle["ms"].as_u64().unwrap_or(0) >= 200,
        "{}",
        run.describe()
    );
    assert_eq!(
        steps.last().map(|s| s["event"].clone()),
        Some("free".into()),
        "{}",
        run.describe()
    );
}

#[test]
fn ipv6_only_listener_is_discovered_and_terminated() {
    let v6 = Holder::tcp("::1").spawn();
    let sandbox = Sandbox::new();

    let who = sandbox.run(["who", &v6.port().to_string(), "--format", "json"]);
    who.assert_exit(0);
    let entry = who.port(v6.port());
    assert_eq!(entry["outcome"], "held", "{}", who.describe());
    let addrs: Vec<&str> = entry["holders"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["pid"].as_u64() == Some(u64::from(v6.pid())))
        .filter_map(|h| h["addr"].as_str())
        .collect();
    assert_eq!(addrs, [v6.addr()], "{}", who.describe());

    let run = resolve(&sandbox, &terminate_policy(&sandbox), v6.port(), &[]);
    assert_freed(&run, &v6);
}

#[test]
fn udp_holder_is_freed_with_the_udp_flag() {
    let udp = Holder::udp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();

    let who = sandbox.run(["who", &udp.port().to_string(), "--udp", "--format", "json"]);
    who.assert_exit(0);
    let entry = who.port(udp.port());
    assert_eq!(entry["protocol"], "udp", "{}", who.describe());
    assert_eq!(holder_pids(&entry), [udp.pid()], "{}", who.describe());

    let run = resolve(
        &sandbox,
        &terminate_policy(&sandbox),
        udp.port(),
        &["--udp"],
    );
    assert_freed(&run, &udp);
    assert_eq!(run.port(udp.port())["protocol"], "udp");
}

#[test]
fn udp_holder_does_not_hold_the_tcp_port() {
    let udp = Holder::udp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    let run = resolve(&sandbox, &terminate_policy(&sandbox), udp.port(), &[]);
    run.assert_exit(0);
    let entry = run.port(udp.port());
    assert_eq!(entry["protocol"], "tcp", "{}", run.describe());
    assert_eq!(entry["outcome"], "free", "{}", run.describe());
    assert!(signals(&entry).is_empty(), "{}", run.describe());
    assert!(udp.is_alive(), "a TCP resolve killed a UDP holder");
}

#[test]
fn wait_returns_as_soon_as_the_holder_exits_by_itself() {
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(&policy_for_test_holders("wait", "timeout = \"5s\""));
    // The holder leaves on its own a while after it starts. The scenario only
    // means something if portguard found it still holding the port; on a
    // machine too loaded for that, the precondition (not the assertion) is
    // retried once with a longer stay.
    for stay in [Duration::from_millis(1000), Duration::from_millis(2000)] {
        let leaving = Holder::tcp("127.0.0.1").exit_after(stay).spawn();
        let run = resolve(&sandbox, &policy, leaving.port(), &[]);
        run.assert_exit(0);
        let entry = run.port(leaving.port());
        if holder_pids(&entry).is_empty() && stay < Duration::from_millis(2000) {
            continue;
        }
        assert_eq!(holder_pids(&entry), [leaving.pid()], "{}", run.describe());
        assert_eq!(entry["outcome"], "freed", "{}", run.describe());
        assert!(
            run.elapsed < Duration::from_secs(4),
            "wait did not notice the release: took {:?}",
            run.elapsed
        );
        assert!(
            signals(&entry).is_empty(),
            "wait must touch nothing\n{}",
            run.describe()
        );
        assert_eq!(
            events(&entry).last().map(String::as_str),
            Some("free"),
            "{}",
            run.describe()
        );
        let status = leaving.wait_exit(EXIT_TIMEOUT).expect("holder exited");
        assert_eq!(
            status.code(),
            Some(0),
            "holder did not exit by itself: {status:?}"
        );
        return;
    }
}

#[test]
fn wait_times_out_with_exit_5_and_leaves_the_holder_alone() {
    let staying = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(&policy_for_test_holders("wait", "timeout = \"300ms\""));
    let run = resolve(&sandbox, &policy, staying.port(), &[]);
    run.assert_exit(5);
    let entry = run.port(staying.port());
    assert_eq!(entry["outcome"], "failed", "{}", run.describe());
    assert!(signals(&entry).is_empty(), "{}", run.describe());
    assert!(staying.is_alive(), "wait killed the holder");
    assert!(!staying.port_is_bindable());
}

#[test]
fn reuse_with_tcp_health_check_leaves_the_owner_running() {
    let server = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(&policy_for_test_holders(
        "reuse",
        "health = \"tcp\"\ntimeout = \"2s\"",
    ));
    let run = resolve(&sandbox, &policy, server.port(), &[]);
    run.assert_exit(3);
    let entry = run.port(server.port());
    assert_eq!(entry["outcome"], "reuse", "{}", run.describe());
    assert_eq!(entry["action"], "reuse", "{}", run.describe());
    assert!(signals(&entry).is_empty(), "{}", run.describe());
    assert!(server.is_alive(), "reuse killed the owner");
}

#[test]
fn reuse_with_http_health_check_reads_the_body() {
    let proxy = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(&policy_for_test_holders(
        "reuse",
        "health = \"http://127.0.0.1:{port}/livez\"\nhealth_body = '\"service\":\"headroom-proxy\"'\ntimeout = \"2s\"",
    ));
    let run = resolve(&sandbox, &policy, proxy.port(), &[]);
    run.assert_exit(3);
    assert_eq!(
        run.port(proxy.port())["outcome"],
        "reuse",
        "{}",
        run.describe()
    );
    assert!(proxy.is_alive());
}

#[test]
fn refuse_message_template_is_filled_in() {
    let holder = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(&policy_for_test_holders(
        "refuse",
        "message = \"busy {port}: pid {pid} by rule {rule}\"",
    ));
    let run = resolve(&sandbox, &policy, holder.port(), &[]);
    run.assert_exit(4);
    assert_eq!(
        run.port(holder.port())["message"],
        format!(
            "busy {}: pid {} by rule test-holder",
            holder.port(),
            holder.pid()
        ),
        "{}",
        run.describe()
    );
    assert!(holder.is_alive());
}

#[test]
fn holder_no_rule_matches_is_refused_by_default_and_never_signalled() {
    let holder = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(
        "name = \"narrow\"\n\
         [[rule]]\n\
         name = \"only-nginx\"\n\
         match.cmdline = '^nginx'\n\
         action = \"terminate\"\n\
         grace = \"300ms\"\n",
    );
    let run = resolve(&sandbox, &policy, holder.port(), &[]);
    run.assert_exit(4);
    let entry = run.port(holder.port());
    assert_eq!(entry["outcome"], "refused", "{}", run.describe());
    assert!(signals(&entry).is_empty(), "{}", run.describe());
    assert!(holder.is_alive(), "a process no rule matched was signalled");
}

#[test]
fn rule_limited_to_other_ports_does_not_apply() {
    let holder = Holder::tcp("127.0.0.1").spawn();
    let other = if holder.port() == 65535 {
        1
    } else {
        holder.port() + 1
    };
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(&policy_for_test_holders(
        "terminate",
        &format!("grace = \"300ms\"\nports = [{other}]"),
    ));
    let run = resolve(&sandbox, &policy, holder.port(), &[]);
    run.assert_exit(4);
    assert!(
        holder.is_alive(),
        "a rule for port {other} acted on {}",
        holder.port()
    );
}

#[test]
fn explain_with_a_terminate_policy_touches_nothing() {
    let holder = Holder::tcp("127.0.0.1").workers(1).spawn();
    let sandbox = Sandbox::new();
    let run = resolve(
        &sandbox,
        &terminate_policy(&sandbox),
        holder.port(),
        &["--explain"],
    );
    run.assert_exit(0);
    let entry = run.port(holder.port());
    assert_eq!(entry["dry_run"], true, "{}", run.describe());
    assert!(signals(&entry).is_empty(), "{}", run.describe());
    assert!(holder.all_alive(), "--explain signalled a holder");
}

// ---------------------------------------------------------------------------
// Which policy is used (docs/cli.md: --policy, $PORTGUARD_POLICY, ./portguard.toml,
// $XDG_CONFIG_HOME/portguard/policy.toml, built-in headroom)
// ---------------------------------------------------------------------------

/// A policy that refuses the suite's holders with a recognisable message.
fn marker_policy(marker: &str) -> String {
    policy_for_test_holders("refuse", &format!("message = \"{marker} {{pid}}\""))
}

#[track_caller]
fn assert_refused_by(run: &Run, holder: &Holder, marker: &str) {
    run.assert_exit(4);
    assert_eq!(
        run.port(holder.port())["message"],
        format!("{marker} {}", holder.pid()),
        "wrong policy used\n{}",
        run.describe()
    );
    assert!(holder.is_alive());
}

#[test]
fn policy_in_the_current_directory_is_used_without_flag() {
    let holder = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    sandbox.write("work/portguard.toml", &marker_policy("from-cwd"));
    sandbox.write("xdg/portguard/policy.toml", &marker_policy("from-xdg"));
    let run = sandbox.run(["resolve", &holder.port().to_string(), "--format", "json"]);
    assert_refused_by(&run, &holder, "from-cwd");
}

#[test]
fn policy_in_xdg_config_home_is_used_without_flag() {
    let holder = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    sandbox.write("xdg/portguard/policy.toml", &marker_policy("from-xdg"));
    let run = sandbox.run(["resolve", &holder.port().to_string(), "--format", "json"]);
    assert_refused_by(&run, &holder, "from-xdg");
}

#[test]
fn portguard_policy_variable_beats_the_current_directory() {
    let holder = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    sandbox.write("work/portguard.toml", &marker_policy("from-cwd"));
    let env_policy = sandbox.write("elsewhere/env.toml", &marker_policy("from-env"));
    let mut cmd = sandbox.command();
    let args: Vec<String> = vec![
        "resolve".into(),
        holder.port().to_string(),
        "--format".into(),
        "json".into(),
    ];
    cmd.args(&args).env("PORTGUARD_POLICY", &env_policy);
    let run = sandbox.run_command(cmd, args);
    assert_refused_by(&run, &holder, "from-env");
}

#[test]
fn policy_flag_beats_everything() {
    let holder = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    sandbox.write("work/portguard.toml", &marker_policy("from-cwd"));
    let env_policy = sandbox.write("elsewhere/env.toml", &marker_policy("from-env"));
    let flag = sandbox.policy(&marker_policy("from-flag"));
    let mut cmd = sandbox.command();
    let args: Vec<String> = vec![
        "resolve".into(),
        holder.port().to_string(),
        "--policy".into(),
        flag,
        "--format".into(),
        "json".into(),
    ];
    cmd.args(&args).env("PORTGUARD_POLICY", &env_policy);
    let run = sandbox.run_command(cmd, args);
    assert_refused_by(&run, &holder, "from-flag");
}

#[test]
fn reuse_falls_back_to_terminate_when_the_health_body_is_wrong() {
    let holder = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(&policy_for_test_holders(
        "reuse",
        "health = \"http://127.0.0.1:{port}/livez\"\nhealth_body = '\"service\":\"something-else\"'\ntimeout = \"2s\"\nthen = \"terminate\"\ngrace = \"300ms\"",
    ));
    let run = resolve(&sandbox, &policy, holder.port(), &[]);
    run.assert_exit(0);
    let entry = run.port(holder.port());
    assert_eq!(entry["outcome"], "freed", "{}", run.describe());
    let events = events(&entry);
    let health = events.iter().position(|e| e == "health");
    let fallback = events.iter().position(|e| e == "fallback");
    assert!(
        health.is_some() && fallback > health,
        "health check, then fallback\n{}",
        run.describe()
    );
    assert!(signals(&entry).contains(&(holder.pid(), "SIGTERM".into())));
    assert!(
        holder.wait_exit(EXIT_TIMEOUT).is_some(),
        "{}",
        run.describe()
    );
}

#[test]
fn an_unhealthy_holder_without_a_fallback_fails_and_is_left_alone() {
    // http.server answers /livez with 404.
    let server = Holder::http_server();
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(
        "[[rule]]\nname = \"http\"\nmatch.cmdline = 'http\\.server'\naction = \"reuse\"\nhealth = \"http://127.0.0.1:{port}/livez\"\ntimeout = \"2s\"\n",
    );
    let run = resolve(&sandbox, &policy, server.port(), &[]);
    run.assert_exit(5);
    let entry = run.port(server.port());
    assert_eq!(entry["outcome"], "failed", "{}", run.describe());
    assert!(
        entry["message"].as_str().unwrap_or("").contains("404"),
        "{}",
        run.describe()
    );
    assert!(signals(&entry).is_empty());
    assert!(server.is_alive());
}

#[test]
fn mine_frees_a_port_held_by_your_own_process() {
    let server = Holder::tcp("127.0.0.1").spawn();
    let run = Sandbox::new().run([
        "resolve",
        &server.port().to_string(),
        "--policy",
        "mine",
        "--format",
        "json",
    ]);
    run.assert_exit(0);
    assert_eq!(
        run.port(server.port())["rule"],
        "mine",
        "{}",
        run.describe()
    );
    assert!(server.wait_exit(EXIT_TIMEOUT).is_some());
    assert!(server.port_is_bindable());
}

#[test]
fn mine_refuses_another_users_process_and_says_who() {
    let Some(builder) = Holder::tcp("127.0.0.1").run_as("nobody") else {
        eprintln!("skipped: needs root to start another user's process");
        return;
    };
    let server = builder.spawn();
    let run = Sandbox::new().run(["resolve", &server.port().to_string(), "--policy", "mine"]);
    run.assert_exit(4);
    assert!(
        run.stderr.contains("of user nobody, not yours"),
        "{}",
        run.describe()
    );
    assert!(server.is_alive());
}
