//! The built-in `headroom` policy, the behaviour portguard was written for: a
//! stale headroom proxy of our own user is terminated (SIGTERM first), and
//! anything else holding the port — including look-alikes whose argv merely
//! mentions headroom — is refused and left running.

use crate::support::{
    events, holder_pids, reserved_free_port, signals, Holder, Run, Sandbox, EXIT_TIMEOUT,
};
use std::os::unix::process::ExitStatusExt;

fn resolve_with_builtin(port: u16) -> Run {
    Sandbox::new().run([
        "resolve",
        &port.to_string(),
        "--policy",
        "headroom",
        "--format",
        "json",
    ])
}

/// The proxy was stopped by portguard's SIGTERM (no SIGKILL needed: it exits
/// promptly), reaped by us, and its port can be bound again.
#[track_caller]
fn assert_proxy_terminated(run: &Run, proxy: &Holder) {
    run.assert_exit(0);
    let entry = run.port(proxy.port());
    assert_eq!(entry["outcome"], "freed", "{}", run.describe());
    assert_eq!(entry["rule"], "stale-headroom-proxy", "{}", run.describe());
    assert_eq!(entry["action"], "terminate", "{}", run.describe());
    assert!(
        signals(&entry).contains(&(proxy.pid(), "SIGTERM".into())),
        "no SIGTERM step for pid {}\n{}",
        proxy.pid(),
        run.describe()
    );
    assert_eq!(
        events(&entry).last().map(String::as_str),
        Some("free"),
        "{}",
        run.describe()
    );

    let status = proxy
        .wait_exit(EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("proxy still running after exit 0\n{}", run.describe()));
    assert_eq!(
        status.signal(),
        Some(libc_sigterm()),
        "proxy ended by {status:?}"
    );
    assert!(
        proxy.port_is_bindable(),
        "port {} not bindable after `freed`",
        proxy.port()
    );
}

fn libc_sigterm() -> i32 {
    rustix::process::Signal::TERM.as_raw()
}

/// The holder was refused: exit 4, outcome `refused`, the message names its
/// pid, and it is still running and holding the port.
#[track_caller]
fn assert_refused_untouched(run: &Run, holder: &Holder) {
    run.assert_exit(4);
    let entry = run.port(holder.port());
    assert_eq!(entry["outcome"], "refused", "{}", run.describe());
    assert_eq!(entry["action"], "refuse", "{}", run.describe());
    assert!(
        signals(&entry).is_empty(),
        "refused but signalled\n{}",
        run.describe()
    );
    let message = entry["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&holder.pid().to_string()),
        "message does not name pid {}: {message:?}",
        holder.pid()
    );
    assert!(
        holder.is_alive(),
        "refused holder was killed\n{}",
        run.describe()
    );
    assert!(!holder.port_is_bindable(), "refused holder lost its port");
}

#[test]
fn free_port_is_reported_free() {
    let reserved = reserved_free_port();
    let run = resolve_with_builtin(reserved.port());
    run.assert_exit(0);
    let entry = run.port(reserved.port());
    assert_eq!(entry["outcome"], "free", "{}", run.describe());
    assert_eq!(holder_pids(&entry), Vec::<u32>::new(), "{}", run.describe());
    assert!(signals(&entry).is_empty(), "{}", run.describe());
    // The reservation (a bound, non-listening socket) is not a holder and
    // must not be touched.
    assert!(reserved.is_alive());
}

#[test]
fn stale_proxy_console_script_is_terminated() {
    let proxy = Holder::headroom_console_script().spawn();
    let run = resolve_with_builtin(proxy.port());
    assert_proxy_terminated(&run, &proxy);
}

#[test]
fn stale_proxy_module_form_is_terminated() {
    let proxy = Holder::headroom_module().spawn();
    let run = resolve_with_builtin(proxy.port());
    assert_proxy_terminated(&run, &proxy);
}

#[test]
fn without_any_policy_the_builtin_headroom_policy_is_used() {
    let proxy = Holder::headroom_module().spawn();
    // An empty cwd, HOME and XDG_CONFIG_HOME, no $PORTGUARD_POLICY.
    let run = Sandbox::new().run(["resolve", &proxy.port().to_string(), "--format", "json"]);
    assert_proxy_terminated(&run, &proxy);
    let policy = &run.json()["policy"];
    assert_eq!(policy["name"], "headroom", "{}", run.describe());
    assert_eq!(policy["source"], "built-in", "{}", run.describe());
}

#[test]
fn proxy_with_forked_workers_is_terminated_as_one_tree() {
    let proxy = Holder::headroom_console_script().workers(2).spawn();
    let run = resolve_with_builtin(proxy.port());
    run.assert_exit(0);
    let entry = run.port(proxy.port());
    let mut all = proxy.all_pids();
    all.sort_unstable();
    assert_eq!(
        holder_pids(&entry),
        all,
        "every worker is a holder\n{}",
        run.describe()
    );
    assert_eq!(entry["outcome"], "freed", "{}", run.describe());
    // Every member gets the graceful signal, not just the root (and not only
    // the escalation).
    let sent = signals(&entry);
    for &pid in &all {
        assert!(
            sent.contains(&(pid, "SIGTERM".into())),
            "pid {pid} got no SIGTERM\n{}",
            run.describe()
        );
    }
    assert_eq!(
        proxy.wait_all_gone(EXIT_TIMEOUT),
        Vec::<u32>::new(),
        "survivors"
    );
    assert!(proxy.port_is_bindable());
}

#[test]
fn python_http_server_is_refused_and_named() {
    let server = Holder::http_server();
    let run = resolve_with_builtin(server.port());
    assert_refused_untouched(&run, &server);
    assert_eq!(
        run.port(server.port())["rule"],
        "foreign-process",
        "{}",
        run.describe()
    );
}

#[test]
fn refusal_in_human_output_names_the_holder() {
    let server = Holder::http_server();
    let run = Sandbox::new().run([
        "resolve",
        &server.port().to_string(),
        "--policy",
        "headroom",
    ]);
    run.assert_exit(4);
    assert!(
        run.combined().contains(&server.pid().to_string()),
        "human output does not name pid {}\n{}",
        server.pid(),
        run.describe()
    );
    assert!(server.is_alive());
}

#[test]
fn grep_lookalike_is_refused() {
    let grep = Holder::lookalike(&["grep", "headroom", "proxy"], "headroom").spawn();
    assert_refused_untouched(&resolve_with_builtin(grep.port()), &grep);
}

#[test]
fn less_lookalike_is_refused() {
    let less = Holder::lookalike(
        &["less", "headroom/proxy/server.py"],
        "headroom/proxy/server.py",
    )
    .spawn();
    assert_refused_untouched(&resolve_with_builtin(less.port()), &less);
}

#[test]
fn vim_lookalike_in_a_headroom_checkout_is_refused() {
    let vim = Holder::lookalike(&["vim", "proxy.py"], "proxy.py")
        .script("headroom/cli.py")
        .empty_file("headroom/__init__.py")
        .spawn();
    assert_refused_untouched(&resolve_with_builtin(vim.port()), &vim);
}

#[test]
fn explain_plans_the_termination_but_signals_nothing() {
    let proxy = Holder::headroom_console_script().spawn();
    let run = Sandbox::new().run([
        "resolve",
        &proxy.port().to_string(),
        "--policy",
        "headroom",
        "--explain",
        "--format",
        "json",
    ]);
    run.assert_exit(0);
    let entry = run.port(proxy.port());
    assert_eq!(entry["dry_run"], true, "{}", run.describe());
    assert_eq!(entry["rule"], "stale-headroom-proxy", "{}", run.describe());
    assert_eq!(entry["action"], "terminate", "{}", run.describe());
    assert!(
        signals(&entry).is_empty(),
        "--explain signalled\n{}",
        run.describe()
    );
    assert_eq!(
        entry["outcome"],
        "freed",
        "planned outcome\n{}",
        run.describe()
    );
    // The trace is data: every rule, every criterion with what it saw.
    let trace = entry["trace"].as_array().expect("trace array");
    let stale = trace
        .iter()
        .find(|t| t["rule"] == "stale-headroom-proxy")
        .expect("the stale rule is traced");
    assert_eq!(stale["applied"], true);
    // The rules before it (persistent, in use, attached) were tried and did not apply.
    assert!(trace
        .iter()
        .take_while(|t| t["rule"] != "stale-headroom-proxy")
        .all(|t| t["applied"] == false));
    let checks = stale["groups"][0]["checks"].as_array().expect("checks");
    let criteria: Vec<&str> = checks
        .iter()
        .filter_map(|c| c["criterion"].as_str())
        .collect();
    assert_eq!(criteria, ["cmdline", "exe", "user", "orphan", "clients"]);
    assert!(checks.iter().all(|c| c["held"] == true));
    let after = trace
        .iter()
        .skip_while(|t| t["rule"] != "stale-headroom-proxy")
        .nth(1)
        .expect("a rule after the stale one");
    assert_eq!(after["reached"], false);
    assert!(
        entry["message"]
            .as_str()
            .unwrap_or("")
            .contains("SIGKILL after 3s"),
        "the plan names the escalation\n{}",
        run.describe()
    );
    assert!(proxy.is_alive(), "--explain killed the proxy");
    assert!(!proxy.port_is_bindable());
}

#[test]
fn safe_policy_refuses_even_a_stale_proxy() {
    let proxy = Holder::headroom_console_script().spawn();
    let run = Sandbox::new().run([
        "resolve",
        &proxy.port().to_string(),
        "--policy",
        "safe",
        "--format",
        "json",
    ]);
    assert_refused_untouched(&run, &proxy);
}

#[test]
fn proxy_of_another_user_is_refused() {
    // `match.user = "$self"`: a headroom proxy of somebody else is not ours
    // to stop. Needs root to start a process as another user.
    let Some(builder) = Holder::headroom_console_script().run_as("nobody") else {
        eprintln!("skipped: needs root and a `nobody` user");
        return;
    };
    let proxy = builder.spawn();
    let run = resolve_with_builtin(proxy.port());
    assert_refused_untouched(&run, &proxy);
    let entry = run.port(proxy.port());
    assert_eq!(entry["rule"], "foreign-process", "{}", run.describe());
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(
        entry["holders"][0]["uid"].as_u64(),
        Some(u64::from(nobody.uid.as_raw())),
        "{}",
        run.describe()
    );
}
