//! What programs and people read: the JSON document's documented shape,
//! several ports in one call (worst exit code wins, order kept), and `-q`.

use crate::support::{python, reserved_free_port, signals, Holder, Sandbox, EXIT_TIMEOUT};
use serde_json::Value;

#[track_caller]
fn field<'a>(obj: &'a Value, key: &str, context: &str) -> &'a Value {
    obj.get(key)
        .unwrap_or_else(|| panic!("missing `{key}` in {obj}\n{context}"))
}

#[test]
fn json_report_has_the_documented_shape() {
    let proxy = Holder::headroom_console_script().spawn();
    let parent = proxy.parent();
    let run = Sandbox::new().run([
        "resolve",
        &proxy.port().to_string(),
        "--policy",
        "headroom",
        "--format",
        "json",
    ]);
    run.assert_exit(0);
    let ctx = run.describe();
    let doc = run.json();

    assert_eq!(field(&doc, "exit_code", &ctx).as_i64(), Some(0), "{ctx}");
    let ports = field(&doc, "ports", &ctx)
        .as_array()
        .expect("`ports` is an array");
    assert_eq!(ports.len(), 1, "{ctx}");
    let p = &ports[0];
    assert_eq!(
        field(p, "port", &ctx).as_u64(),
        Some(u64::from(proxy.port()))
    );
    assert_eq!(field(p, "protocol", &ctx), "tcp");
    assert_eq!(field(p, "outcome", &ctx), "freed");
    assert_eq!(field(p, "rule", &ctx), "stale-headroom-proxy");
    assert_eq!(field(p, "action", &ctx), "terminate");
    assert_eq!(field(p, "dry_run", &ctx), false);
    assert!(
        field(p, "message", &ctx)
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{ctx}"
    );

    let holders = field(p, "holders", &ctx)
        .as_array()
        .expect("`holders` is an array");
    assert_eq!(holders.len(), 1, "{ctx}");
    let h = &holders[0];
    let me = rustix::process::getuid().as_raw();
    assert_eq!(field(h, "pid", &ctx).as_u64(), Some(u64::from(proxy.pid())));
    assert_eq!(field(h, "ppid", &ctx).as_u64(), parent.map(u64::from));
    assert_eq!(field(h, "uid", &ctx).as_u64(), Some(u64::from(me)));
    let user = nix::unistd::User::from_uid(me.into())
        .ok()
        .flatten()
        .map(|u| u.name);
    match user {
        Some(name) => assert_eq!(field(h, "user", &ctx), name.as_str(), "{ctx}"),
        None => assert!(h.get("user").is_some(), "{ctx}"),
    }
    let real = std::fs::canonicalize(&python().exe).unwrap();
    assert_eq!(field(h, "exe", &ctx), real.to_str().unwrap(), "{ctx}");
    let cmdline = field(h, "cmdline", &ctx)
        .as_array()
        .expect("`cmdline` is an array");
    assert_eq!(
        cmdline[1],
        format!("{}/venv/bin/headroom", proxy.dir().display()),
        "{ctx}"
    );
    assert_eq!(field(h, "addr", &ctx), proxy.addr().as_str());

    let steps = field(p, "steps", &ctx)
        .as_array()
        .expect("`steps` is an array");
    assert!(!steps.is_empty(), "{ctx}");
    let mut last = 0;
    for step in steps {
        let at = field(step, "at_ms", &ctx)
            .as_u64()
            .expect("`at_ms` is a number");
        assert!(at >= last, "steps out of order\n{ctx}");
        last = at;
        assert!(field(step, "event", &ctx).is_string(), "{ctx}");
    }
    assert!(proxy.wait_exit(EXIT_TIMEOUT).is_some());
}

#[test]
fn several_ports_worst_exit_code_wins_one_entry_per_port_ascending() {
    let free = reserved_free_port();
    let foreign = Holder::http_server();
    let sandbox = Sandbox::new();
    let mut ascending = [u64::from(free.port()), u64::from(foreign.port())];
    ascending.sort_unstable();
    // Ports are reported once each in ascending order, however they were given
    // (ranges and repeats expand to distinct ports: src/ports.rs).
    for (first, second) in [(free.port(), foreign.port()), (foreign.port(), free.port())] {
        let run = sandbox.run([
            "resolve",
            &first.to_string(),
            &second.to_string(),
            &first.to_string(),
            "--policy",
            "headroom",
            "--format",
            "json",
        ]);
        run.assert_exit(4);
        let doc = run.json();
        assert_eq!(doc["exit_code"].as_i64(), Some(4), "{}", run.describe());
        let order: Vec<u64> = doc["ports"]
            .as_array()
            .expect("ports array")
            .iter()
            .filter_map(|p| p["port"].as_u64())
            .collect();
        assert_eq!(order, ascending, "{}", run.describe());
        assert_eq!(run.port(free.port())["outcome"], "free");
        assert_eq!(run.port(foreign.port())["outcome"], "refused");
    }
    assert!(foreign.is_alive());
}

#[test]
fn freed_and_refused_ports_in_one_call_exit_4_and_still_free_the_proxy() {
    let proxy = Holder::headroom_module().spawn();
    let foreign = Holder::lookalike(&["grep", "headroom", "proxy"], "headroom").spawn();
    let run = Sandbox::new().run([
        "resolve",
        &proxy.port().to_string(),
        &foreign.port().to_string(),
        "--policy",
        "headroom",
        "--format",
        "json",
    ]);
    run.assert_exit(4);
    assert_eq!(
        run.port(proxy.port())["outcome"],
        "freed",
        "{}",
        run.describe()
    );
    assert_eq!(
        run.port(foreign.port())["outcome"],
        "refused",
        "{}",
        run.describe()
    );
    assert!(
        proxy.wait_exit(EXIT_TIMEOUT).is_some(),
        "proxy not terminated"
    );
    assert!(foreign.is_alive(), "look-alike was signalled");
    assert!(signals(&run.port(foreign.port())).is_empty());
}

#[test]
fn quiet_success_prints_nothing_on_stdout() {
    let proxy = Holder::headroom_console_script().spawn();
    let run = Sandbox::new().run([
        "resolve",
        &proxy.port().to_string(),
        "--policy",
        "headroom",
        "-q",
    ]);
    run.assert_exit(0);
    assert_eq!(run.stdout, "", "{}", run.describe());
    assert!(proxy.wait_exit(EXIT_TIMEOUT).is_some(), "-q must still act");

    let free = reserved_free_port();
    let run = Sandbox::new().run(["resolve", &free.port().to_string(), "-q"]);
    run.assert_exit(0);
    assert_eq!(run.stdout, "", "{}", run.describe());
}

#[test]
fn quiet_failure_still_explains_itself() {
    let server = Holder::http_server();
    let run = Sandbox::new().run([
        "resolve",
        &server.port().to_string(),
        "--policy",
        "headroom",
        "-q",
    ]);
    run.assert_exit(4);
    assert!(
        run.combined().contains(&server.pid().to_string()),
        "-q is only quiet on success\n{}",
        run.describe()
    );
}

#[test]
fn verbose_names_the_policy_in_use() {
    let free = reserved_free_port();
    let run = Sandbox::new().run(["resolve", &free.port().to_string(), "-v"]);
    run.assert_exit(0);
    assert!(
        run.combined().contains("headroom"),
        "-v must say which policy\n{}",
        run.describe()
    );
}
