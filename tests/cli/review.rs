//! The hostile review's findings, each as the scenario that showed it:
//! an invisible tree root, ports blocked by connections and TIME_WAIT,
//! messages that must name the current holders, terminal escapes, a holder
//! whose main thread exited, port arguments and `test -v`.

use crate::support::*;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Processes a scenario script started, by (pid, start time) and pidfd;
/// SIGKILLed on drop. The script prints its numbers (ports, pids) on its
/// first line, then keeps running.
struct Script {
    child: Child,
    pins: Vec<(u32, Option<u64>, Option<OwnedFd>)>,
    numbers: Vec<u32>,
}

impl Script {
    /// Runs `code` with the real interpreter; `pids` says which of the
    /// printed numbers are pids of processes it started (also killed on
    /// drop).
    fn start(code: &str, pids: &[usize]) -> Script {
        let mut child = Command::new(&python().exe)
            .args(["-c", code, HOLDER_MARK])
            .env("PYTHONHOME", &python().home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python starts");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("first line");
        let numbers: Vec<u32> = line
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        let mut pins = Vec::new();
        for &i in pids {
            if let Some(&pid) = numbers.get(i) {
                let fd = rustix::process::Pid::from_raw(pid as i32).and_then(|p| {
                    rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
                });
                pins.push((pid, proc_start(pid), fd));
            }
        }
        Script {
            child,
            pins,
            numbers,
        }
    }

    fn port(&self) -> u16 {
        u16::try_from(self.numbers[0]).expect("a port first")
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        for (pid, start, fd) in &self.pins {
            match fd {
                Some(fd) => {
                    let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
                }
                None if proc_start(*pid).is_some() && proc_start(*pid) == *start => {
                    if let Some(p) = rustix::process::Pid::from_raw(*pid as i32) {
                        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                    }
                }
                None => {}
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A root process listens, forks, and the child becomes `nobody` and keeps
/// the socket: as nobody, only the child can be seen. No rule may act on
/// the visible part of a tree whose root is hidden.
#[test]
fn a_worker_whose_tree_root_is_invisible_is_never_signalled() {
    if !is_root() {
        eprintln!("skipped: needs root to play the hidden root");
        return;
    }
    let script = Script::start(
        "import os, pwd, socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', 0)); s.listen(); s.set_inheritable(True)
pid = os.fork()
if pid == 0:
    n = pwd.getpwnam('nobody'); os.setgid(n.pw_gid); os.setgroups([]); os.setuid(n.pw_uid)
    os.execv('/bin/sh', ['sh', '-c', 'while :; do sleep 1; done', 'worker-' + sys.argv[1]])
print(s.getsockname()[1], pid, flush=True)
time.sleep(60)
",
        &[1],
    );
    let port = script.port().to_string();
    let worker = script.numbers[1];
    let (_dir, policy) = crate::safety::shared_policy(&format!(
        "[[rule]]\nname = \"mine\"\nmatch.cmdline = 'worker-{HOLDER_MARK}'\nmatch.user = \"$self\"\naction = \"terminate\"\n"
    ));
    let Some(explain) = crate::safety::as_nobody(&[
        "resolve",
        &port,
        "--policy",
        &policy,
        "--explain",
        "--format",
        "json",
    ]) else {
        return;
    };
    let doc: serde_json::Value = serde_json::from_slice(&explain.stdout).expect("json");
    assert_eq!(explain.status.code(), Some(4), "{doc:#}");
    let entry = &doc["ports"][0];
    assert_eq!(entry["rule"], serde_json::Value::Null, "{entry:#}");
    let unknown: Vec<&serde_json::Value> = entry["holders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["unknown"] == "hidden_owner")
        .collect();
    assert_eq!(unknown.len(), 1, "{entry:#}");
    assert_eq!(unknown[0]["uid"], 0);
    // The real run predicts nothing else: refused, and the worker untouched.
    let Some(real) =
        crate::safety::as_nobody(&["resolve", &port, "--policy", &policy, "--format", "json"])
    else {
        return;
    };
    assert_eq!(
        real.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&real.stdout)
    );
    assert!(proc_start(worker).is_some(), "the worker was signalled");
}

/// The local end of an outgoing connection has no listener, but no server
/// can bind it: the process that owns the connection holds the port.
#[test]
fn the_port_of_an_outgoing_connection_is_held_by_its_owner() {
    let server = Holder::tcp("127.0.0.1").spawn();
    let client = Script::start(
        &format!(
            "import socket, sys, time, os
c = socket.create_connection(('127.0.0.1', {}))
print(c.getsockname()[1], os.getpid(), flush=True)
time.sleep(60)
",
            server.port()
        ),
        &[],
    );
    let port = client.port().to_string();
    let run = Sandbox::new().run([
        "resolve",
        &port,
        "--explain",
        "--policy",
        "safe",
        "--format",
        "json",
    ]);
    run.assert_exit(4);
    let pids = holder_pids(&run.port(client.port()));
    assert!(pids.contains(&client.child.id()), "{}", run.describe());
    let who = Sandbox::new().run(["who", &port, "--format", "json"]);
    assert_eq!(
        who.port(client.port())["outcome"],
        "held",
        "{}",
        who.describe()
    );
}

/// A server that did not set SO_REUSEADDR closed a connection first and
/// exited: only its TIME_WAIT socket, owned by no process, blocks the port.
#[test]
fn a_port_blocked_only_by_time_wait_fails_with_reason_time_wait() {
    let script = Script::start(
        "import socket, time
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()
port = s.getsockname()[1]
c = socket.create_connection(('127.0.0.1', port)); a, _ = s.accept()
a.close(); time.sleep(0.05); c.close(); s.close(); time.sleep(0.05)
print(port, flush=True)
",
        &[],
    );
    let port = script.port();
    let run = Sandbox::new().run(["resolve", &port.to_string(), "--format", "json"]);
    run.assert_exit(5);
    let entry = run.port(port);
    assert_eq!(entry["reason"], "time_wait", "{}", run.describe());
    assert!(
        entry["message"]
            .as_str()
            .unwrap_or("")
            .contains("TIME_WAIT"),
        "{}",
        run.describe()
    );
    assert!(entry["holders"].as_array().unwrap().is_empty());
}

/// After freeing a port whose server had connections, TIME_WAIT sockets may
/// remain; a server with SO_REUSEADDR can bind, and the report says what
/// one without it may meet.
#[test]
fn time_wait_left_after_freeing_is_noted() {
    let holder = Holder::tcp("127.0.0.1").spawn();
    // A request the holder answers and closes first: its side lingers.
    let mut conn = TcpStream::connect(("127.0.0.1", holder.port())).expect("connect");
    std::io::Write::write_all(&mut conn, b"GET /livez HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut conn, &mut answer);
    drop(conn);
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(&policy_for_test_holders("terminate", ""));
    let run = sandbox.run([
        "resolve",
        &holder.port().to_string(),
        "--policy",
        &policy,
        "--format",
        "json",
    ]);
    run.assert_exit(0);
    let entry = run.port(holder.port());
    assert!(
        entry["time_wait"].as_u64().unwrap_or(0) >= 1,
        "{}",
        run.describe()
    );
    assert!(
        entry["message"]
            .as_str()
            .unwrap_or("")
            .contains("SO_REUSEADDR"),
        "{}",
        run.describe()
    );
}

/// A policy author's message and another process's argv are data: their
/// escape sequences, bidi overrides and separators never reach the
/// terminal raw, while JSON keeps them exact.
#[test]
fn messages_and_argv_are_escaped_for_the_terminal_only() {
    let holder = Holder::tcp("127.0.0.1")
        .argv([
            "{python}",
            "{dir}/pg-test-holder.py",
            "evil\u{202E}yp.revres",
            "zero\u{200B}width",
        ])
        .spawn();
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(
        "[[rule]]\nname = \"r\"\naction = \"refuse\"\nmessage = \"held \\u001b[2J\\u001b]0;pwned\\u0007 {pid} line\\u2028two\"\n",
    );
    let port = holder.port().to_string();
    let human = sandbox.run(["resolve", &port, "--policy", &policy]);
    human.assert_exit(4);
    for bad in ['\u{1b}', '\u{7}', '\u{202E}', '\u{200B}', '\u{2028}'] {
        assert!(
            !human.combined().contains(bad),
            "{bad:?} printed raw:\n{}",
            human.describe()
        );
    }
    assert!(human.stderr.contains(r"\u{1b}[2J"), "{}", human.describe());
    let json = sandbox.run(["resolve", &port, "--policy", &policy, "--format", "json"]);
    let entry = json.port(holder.port());
    assert!(entry["message"].as_str().unwrap().contains('\u{1b}'));
    let argv = entry["holders"][0]["cmdline"].to_string();
    assert!(argv.contains('\u{202E}'), "{argv}");
}

/// A process whose main thread called pthread_exit while another thread
/// runs: its fds are only under /proc/PID/task/TID/fd.
#[test]
fn a_holder_whose_main_thread_exited_is_found() {
    let script = Script::start(
        "import ctypes, os, socket, sys, threading, time
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()
print(s.getsockname()[1], flush=True)
threading.Thread(target=lambda: time.sleep(60)).start()
ctypes.CDLL(None).pthread_exit(None)
",
        &[],
    );
    let pid = script.child.id();
    // Wait until the leader is a zombie with its thread running.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| !s.contains(") Z "))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the leader never exited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = Sandbox::new().run(["who", &script.port().to_string(), "--format", "json"]);
    let h = &run.port(script.port())["holders"][0];
    assert_eq!(h["pid"], pid, "{}", run.describe());
    assert!(
        h["cmdline"].to_string().contains(HOLDER_MARK),
        "{}",
        run.describe()
    );
}

/// Under `unshare --pid --fork` with the host's /proc, the pids /proc shows
/// are another namespace's: a holder is "pid unknown", never "exited".
#[test]
fn in_another_pid_namespace_holders_are_not_called_exited() {
    if !is_root() {
        eprintln!("skipped: needs root for unshare --pid");
        return;
    }
    let holder = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    let policy = sandbox
        .policy("[[rule]]\nname = \"mine\"\nmatch.user = \"$self\"\naction = \"terminate\"\n");
    let mut cmd = sandbox.command();
    let port = holder.port().to_string();
    let args = ["resolve", &port, "--policy", &policy, "--format", "json"];
    let program = cmd.get_program().to_owned();
    let mut unshare = Command::new("unshare");
    unshare
        .args(["--pid", "--fork", "--"])
        .arg(program)
        .args(args);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => unshare.env(k, v),
            None => unshare.env_remove(k),
        };
    }
    cmd = unshare;
    cmd.current_dir(sandbox.work_dir()).stdin(Stdio::null());
    let run = sandbox.run_command(cmd, args.iter().map(|s| s.to_string()).collect());
    if run.stderr.contains("unshare failed") {
        eprintln!("skipped: unshare is not permitted here");
        return;
    }
    run.assert_exit(5);
    let entry = run.port(holder.port());
    assert_eq!(entry["reason"], "pid_unknown", "{}", run.describe());
    assert_eq!(entry["holders"][0]["unknown"], "foreign_pid_namespace");
    assert!(
        !run.combined().contains("already exited"),
        "{}",
        run.describe()
    );
    assert!(holder.is_alive());
}

/// While another portguard holds the port's lock, `-v` shows who holds the
/// port, not "holders: none".
#[test]
fn a_lock_timeout_still_shows_the_holders() {
    let holder = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    // The very lock a second portguard would hold.
    let no = std::sync::atomic::AtomicBool::new(false);
    let lock = portguard::resolver::lock::acquire(
        holder.port(),
        portguard::model::Protocol::Tcp,
        Duration::ZERO,
        &no,
    )
    .expect("take the port's lock");
    let policy = sandbox.policy(
        "[defaults]\ntimeout = \"100ms\"\ngrace = \"50ms\"\n[[rule]]\nname = \"r\"\naction = \"wait\"\n",
    );
    let mut cmd = sandbox.command();
    let port = holder.port().to_string();
    let args: Vec<String> = ["resolve", &port, "--policy", &policy, "-v"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    cmd.args(&args);
    let run = sandbox.run_command(cmd, args);
    run.assert_exit(5);
    // The run really gave up on the lock (not on the wait rule) ...
    assert!(
        run.stdout.contains("another portguard has been resolving"),
        "{}",
        run.describe()
    );
    // ... and still names the holder.
    assert!(!run.stdout.contains("holders: none"), "{}", run.describe());
    assert!(
        run.stdout.contains(&format!("pid {}", holder.pid())),
        "{}",
        run.describe()
    );
    drop(lock);
}

/// A bad port is one line on stderr naming it; leading zeros are refused.
#[test]
fn port_arguments_are_one_line_errors_and_leading_zeros_are_refused() {
    for bad in ["080", "0000080", "abc", "0", "65536", "9-3"] {
        let run = Sandbox::new().run(["resolve", bad]);
        run.assert_exit(2);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.describe());
        assert!(
            run.stderr.contains(&format!("'{bad}'")),
            "{}",
            run.describe()
        );
    }
}

/// `portguard test -v` shows the trace of a failing case.
#[test]
fn test_verbose_prints_the_trace_of_a_failing_case() {
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(
        "[[rule]]\nname = \"r\"\nmatch.cmdline = '^server'\naction = \"refuse\"\n[[test]]\nname = \"wrong\"\nport = 1\nexpect = { rule = \"default\" }\nowners = [{ pid = 5, ppid = 1, uid = 1000, cmdline = [\"server\"] }]\n",
    );
    let run = sandbox.run(["test", "-v", &policy]);
    run.assert_exit(1);
    assert!(run.stdout.contains("FAIL  wrong"), "{}", run.describe());
    assert!(run.stdout.contains("cmdline ^server"), "{}", run.describe());
    let quiet = sandbox.run(["test", &policy]);
    assert!(
        !quiet.stdout.contains("cmdline ^server"),
        "{}",
        quiet.describe()
    );
}
