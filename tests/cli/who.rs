//! `portguard who`: discovery only. It reports every holder with the facts a
//! person needs, exits 0 whether the port is held or free, and never touches
//! anything — not even a process the built-in policy would terminate.

use crate::support::{holder_pids, proc_cmdline, python, reserved_free_port, Holder, Sandbox};

#[test]
fn who_reports_a_stale_proxy_and_leaves_it_running() {
    let proxy = Holder::headroom_console_script().spawn();
    let run = Sandbox::new().run(["who", &proxy.port().to_string(), "--format", "json"]);
    run.assert_exit(0);
    let entry = run.port(proxy.port());
    assert_eq!(entry["outcome"], "held", "{}", run.describe());
    assert_eq!(entry["bindable"], false, "{}", run.describe());
    assert_eq!(entry["protocol"], "tcp", "{}", run.describe());
    let holders = entry["holders"].as_array().expect("holders array");
    assert_eq!(holders.len(), 1, "{}", run.describe());
    let h = &holders[0];
    assert_eq!(h["pid"], proxy.pid(), "{}", run.describe());
    assert_eq!(
        h["ppid"].as_u64(),
        proxy.parent().map(u64::from),
        "{}",
        run.describe()
    );
    assert_eq!(
        h["orphan"],
        true,
        "a subreaper adopted it\n{}",
        run.describe()
    );
    assert_eq!(h["addr"], proxy.addr(), "{}", run.describe());
    let cmdline: Vec<String> = serde_json::from_value(h["cmdline"].clone()).expect("cmdline array");
    assert_eq!(cmdline, proc_cmdline(proxy.pid()), "{}", run.describe());
    let real = std::fs::canonicalize(&python().exe).unwrap();
    assert_eq!(h["exe"], real.to_str().unwrap(), "{}", run.describe());

    assert!(proxy.is_alive(), "`who` must change nothing");
    assert!(!proxy.port_is_bindable());
}

#[test]
fn who_reports_a_free_port_with_exit_0() {
    let reserved = reserved_free_port();
    let run = Sandbox::new().run(["who", &reserved.port().to_string(), "--format", "json"]);
    run.assert_exit(0);
    let entry = run.port(reserved.port());
    assert_eq!(entry["outcome"], "free", "{}", run.describe());
    assert_eq!(entry["bindable"], true, "{}", run.describe());
    assert_eq!(holder_pids(&entry), Vec::<u32>::new(), "{}", run.describe());
}

#[test]
fn who_lists_every_worker_sharing_the_socket() {
    let server = Holder::tcp("127.0.0.1").workers(2).spawn();
    let run = Sandbox::new().run(["who", &server.port().to_string(), "--format", "json"]);
    run.assert_exit(0);
    let mut all = server.all_pids();
    all.sort_unstable();
    assert_eq!(
        holder_pids(&run.port(server.port())),
        all,
        "{}",
        run.describe()
    );
    assert!(server.all_alive());
}

#[test]
fn who_covers_held_and_free_ports_in_one_call() {
    let held = Holder::http_server();
    let free = reserved_free_port();
    let run = Sandbox::new().run([
        "who",
        &held.port().to_string(),
        &free.port().to_string(),
        "--format",
        "json",
    ]);
    run.assert_exit(0);
    let doc = run.json();
    let outcomes: Vec<(u64, &str)> = doc["ports"]
        .as_array()
        .expect("ports array")
        .iter()
        .map(|p| {
            (
                p["port"].as_u64().unwrap_or(0),
                p["outcome"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let mut expected = [
        (u64::from(held.port()), "held"),
        (u64::from(free.port()), "free"),
    ];
    expected.sort_unstable(); // one entry per port, ascending
    assert_eq!(outcomes, expected, "{}", run.describe());
    assert!(held.is_alive());
}

#[test]
fn who_human_output_names_pid_and_address() {
    let server = Holder::http_server();
    let run = Sandbox::new().run(["who", &server.port().to_string()]);
    run.assert_exit(0);
    let text = run.combined();
    assert!(
        text.contains(&server.pid().to_string()),
        "no pid\n{}",
        run.describe()
    );
    assert!(
        text.contains(&server.addr()),
        "no address\n{}",
        run.describe()
    );
    assert!(server.is_alive());
}

#[test]
fn every_backend_finds_the_same_holder() {
    let holder = Holder::tcp("127.0.0.1").workers(1).spawn();
    let port = holder.port().to_string();
    let mut seen = Vec::new();
    for backend in ["native", "procfs", "lsof"] {
        if backend == "lsof"
            && std::process::Command::new("lsof")
                .arg("-v")
                .output()
                .is_err()
        {
            eprintln!("lsof not installed; .ci/run installs it");
            continue;
        }
        let run = Sandbox::new().run(["who", &port, "--backend", backend, "--format", "json"]);
        run.assert_exit(0);
        let mut pids = holder_pids(&run.port(holder.port()));
        pids.sort_unstable();
        seen.push((backend, pids));
    }
    let mut want = holder.all_pids();
    want.sort_unstable();
    for (backend, pids) in &seen {
        assert_eq!(pids, &want, "{backend}");
    }
    // resolve uses the backend too.
    let run = Sandbox::new().run(["resolve", &port, "--backend", "procfs", "--explain"]);
    run.assert_exit(4);
    assert!(holder.all_alive());
}

#[test]
fn who_all_also_lists_connections_on_the_port() {
    // The test process itself holds the listener and both ends of a connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (_server_side, _) = listener.accept().unwrap();
    let sandbox = Sandbox::new();
    let run = sandbox.run(["who", &port.to_string(), "--all", "--format", "json"]);
    run.assert_exit(0);
    let others = run.port(port)["others"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        others
            .iter()
            .any(|o| o["state"] == "ESTABLISHED" && o["local"] == format!("127.0.0.1:{port}")),
        "{}",
        run.describe()
    );
    let run = sandbox.run(["who", &port.to_string(), "--format", "json"]);
    assert_eq!(
        run.port(port)["others"],
        serde_json::json!([]),
        "{}",
        run.describe()
    );
    assert_eq!(holder_pids(&run.port(port)), vec![std::process::id()]);
}

#[test]
fn who_summarises_runs_of_free_ports_as_ranges() {
    let held = Holder::tcp("127.0.0.1").spawn();
    let port = held.port();
    // The held port in the middle of a range (clamped to valid ports).
    let (lo, hi) = (port.saturating_sub(300).max(1), port.saturating_add(300));
    let run = Sandbox::new().run(["who", &format!("{lo}-{hi}")]);
    run.assert_exit(0);
    let lines = run.stdout.lines().count();
    assert!(
        lines < 30,
        "{lines} lines for a 600-port range\n{}",
        run.describe()
    );
    assert!(
        run.stdout.contains(&format!("port {port}/tcp is held")),
        "{}",
        run.describe()
    );
    assert!(run.stdout.contains("/tcp are free"), "{}", run.describe());
}
