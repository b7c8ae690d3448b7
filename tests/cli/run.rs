//! `portguard run --port P -- CMD`: resolve the port, then exec the server
//! in portguard's place, so the server inherits the caller's process slot and
//! finds its port free; when the port cannot be freed, the server never starts.

use crate::support::{python, Holder, Sandbox, EXIT_TIMEOUT};

/// A tiny "server": binds the port like a real server would, reports its
/// pid and parent, and exits with a recognisable status.
const SERVER: &str = "import os, socket, sys\n\
s = socket.socket()\n\
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind(('127.0.0.1', int(sys.argv[1])))\n\
s.listen()\n\
print('bound', os.getpid(), os.getppid(), flush=True)\n\
sys.exit(7)\n";

#[test]
fn run_frees_the_port_then_execs_the_server() {
    let proxy = Holder::headroom_module().spawn();
    let port = proxy.port().to_string();
    let run = Sandbox::new().run([
        "run",
        "--port",
        &port,
        "--policy",
        "headroom",
        "--",
        &python().exe,
        "-c",
        SERVER,
        &port,
    ]);
    // The server's own exit status comes back to the caller.
    run.assert_exit(7);
    assert!(
        proxy.wait_exit(EXIT_TIMEOUT).is_some(),
        "stale proxy still running"
    );
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("bound "))
        .unwrap_or_else(|| panic!("the server did not bind\n{}", run.describe()));
    let ppid: u32 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert_eq!(
        ppid,
        std::process::id(),
        "the server must replace portguard (exec), not run as its child\n{}",
        run.describe()
    );
}

#[test]
fn run_never_starts_the_server_when_the_port_is_refused() {
    let foreign = Holder::http_server();
    let sandbox = Sandbox::new();
    let marker = sandbox.work_dir().join("server-started");
    let port = foreign.port().to_string();
    let run = sandbox.run([
        "run",
        "--port",
        &port,
        "--policy",
        "headroom",
        "--",
        &python().exe,
        "-c",
        "import pathlib, sys; pathlib.Path(sys.argv[1]).touch()",
        marker.to_str().unwrap(),
    ]);
    run.assert_exit(4);
    assert!(
        !marker.exists(),
        "the server ran although the port was refused"
    );
    assert!(foreign.is_alive());
    assert!(
        run.combined().contains(&foreign.pid().to_string()),
        "{}",
        run.describe()
    );
}
