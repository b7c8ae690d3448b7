//! docs/safety.md against real processes: portguard's own ancestors are never
//! signalled, an interrupted run stops signalling, a respawning supervisor
//! is named instead of fought forever, and another user's process is
//! reported for what portguard can and cannot see.

use crate::support::{
    policy_for_test_holders, python, signals, Holder, Sandbox, HOLDER_MARK, PORTGUARD,
};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

#[test]
fn the_process_that_called_portguard_is_never_signalled() {
    // A "server" that holds a port and then runs portguard itself as a
    // pre-start hook: it is portguard's parent, so a policy that would
    // terminate it must refuse instead.
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(&format!(
        "[[rule]]\nname = \"caller\"\nmatch.cmdline = 'ancestor-{HOLDER_MARK}'\nmatch.user = \"$self\"\naction = \"terminate\"\ngrace = \"300ms\"\n"
    ));
    let script = format!(
        "import socket, subprocess, sys\n\
         s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n\
         port = s.getsockname()[1]\n\
         r = subprocess.run([{PORTGUARD:?}, 'resolve', str(port), '--policy', {policy:?}, '--format', 'json'], capture_output=True, text=True)\n\
         print(r.returncode); print(r.stdout)\n"
    );
    let out = std::process::Command::new(&python().exe)
        .args(["-c", &script, &format!("ancestor-{HOLDER_MARK}")])
        .current_dir(sandbox.work_dir())
        .output()
        .expect("python runs");
    // The caller survived to print portguard's answer.
    assert!(out.status.success(), "the caller was killed: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (code, json) = stdout.split_once('\n').expect("code and json");
    assert_eq!(code, "4", "{stdout}");
    let doc: serde_json::Value = serde_json::from_str(json).expect("json");
    let entry = &doc["ports"][0];
    assert_eq!(entry["outcome"], "refused", "{stdout}");
    assert!(signals(entry).is_empty(), "{stdout}");
    let message = entry["message"].as_str().unwrap_or("");
    assert!(message.contains("ancestor of portguard"), "{message}");
}

#[test]
fn an_interrupt_stops_further_signalling_and_reports_what_was_done() {
    let holder = Holder::tcp("127.0.0.1").ignore_sigterm().spawn();
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(&policy_for_test_holders(
        "terminate",
        "grace = \"5s\"\ntimeout = \"8s\"",
    ));
    let mut cmd = sandbox.command();
    cmd.args([
        "resolve",
        &holder.port().to_string(),
        "--policy",
        &policy,
        "--format",
        "json",
    ])
    .stdout(std::process::Stdio::piped());
    let child = cmd.spawn().expect("portguard starts");
    let started = Instant::now();
    // Well inside the 5 s grace: SIGTERM has been sent, SIGKILL has not.
    std::thread::sleep(Duration::from_millis(1000));
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT)
        .expect("SIGINT to our own child");
    let out = child.wait_with_output().expect("portguard ends");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "did not stop promptly"
    );
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    let entry = &doc["ports"][0];
    assert_eq!(entry["outcome"], "failed");
    let sent = signals(entry);
    assert_eq!(
        sent,
        vec![(holder.pid(), "SIGTERM".to_string())],
        "no SIGKILL after the interrupt"
    );
    let message = entry["message"].as_str().unwrap_or("");
    assert!(
        message.contains("interrupted after sending SIGTERM to pid")
            && message.contains("nothing further"),
        "{message}"
    );
    assert!(
        holder.is_alive(),
        "the SIGTERM-ignoring holder must not have been killed"
    );
}

/// A supervisor that restarts its server whenever it dies, like systemd's
/// `Restart=always` or a shell loop.
pub(crate) struct Supervisor {
    pub(crate) child: std::process::Child,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Only what we started: the supervisor by pid; its server exits on
        // its own when its parent is gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn supervisor(port: u16) -> Supervisor {
    let server = format!(
        "import os, socket, time\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', {port})); s.listen()\n\
         parent = os.getppid()\n\
         while os.getppid() == parent: time.sleep(0.05)\n"
    );
    let loop_ = format!(
        "import subprocess, sys, time\n\
         while True:\n\
         \x20   subprocess.run([sys.executable, '-c', {server:?}, 'respawned-{HOLDER_MARK}'])\n\
         \x20   time.sleep(0.05)\n"
    );
    let child = std::process::Command::new(&python().exe)
        .args(["-c", &loop_, "supervisor"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("supervisor starts");
    Supervisor { child }
}

/// A free port in a range the calling test owns (the supervised server
/// binds it by number, so port 0 cannot be used): `base` plus the pid.
pub(crate) fn port_from(base: u16) -> u16 {
    let base = base + (std::process::id() % 500) as u16;
    (base..base + 400)
        .find(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port in the test's range")
}

/// Waits for the supervised server to listen, then resolves its port with
/// a policy that terminates it: the supervisor starts it again each time.
pub(crate) fn resolve_respawning(port: u16) -> crate::support::Run {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the supervised server never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(&format!(
        // A settle window the restart fits in even on a loaded machine,
        // where starting Python takes hundreds of milliseconds.
        "[defaults]\nsettle = \"3s\"\n[[rule]]\nname = \"server\"\nmatch.cmdline = 'respawned-{HOLDER_MARK}'\nmatch.user = \"$self\"\naction = \"terminate\"\ngrace = \"500ms\"\n"
    ));
    sandbox.run([
        "resolve",
        &port.to_string(),
        "--policy",
        &policy,
        "--format",
        "json",
    ])
}

#[test]
fn a_supervisor_that_keeps_restarting_the_server_is_named_not_fought_forever() {
    let port = port_from(45000);
    let sup = supervisor(port);
    let run = resolve_respawning(port);
    run.assert_exit(5);
    let entry = run.port(port);
    let message = entry["message"].as_str().unwrap_or("");
    assert!(
        message.contains("taken again")
            && message.contains(&format!("parent pid {}", sup.child.id())),
        "{}",
        run.describe()
    );
    let rediscovered = entry["steps"].as_array().map_or(0, |s| {
        s.iter().filter(|e| e["event"] == "rediscover").count()
    });
    assert!(rediscovered >= 1, "{}", run.describe());
    // The supervisor itself was never signalled: no rule matched it.
    assert!(
        !signals(&entry)
            .iter()
            .any(|(pid, _)| *pid == sup.child.id()),
        "{}",
        run.describe()
    );
    drop(sup);
}

/// A world-readable copy of `text`, so a portguard running as another user
/// can read the policy.
pub(crate) fn shared_policy(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = path.to_str().unwrap().to_string();
    (dir, path)
}

/// A copy of the binary that `nobody` can execute: the checkout itself may
/// sit in a directory other users cannot enter.
fn binary_for_nobody() -> &'static std::path::Path {
    static COPY: std::sync::OnceLock<(tempfile::TempDir, std::path::PathBuf)> =
        std::sync::OnceLock::new();
    &COPY
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let bin = dir.path().join("portguard");
            std::fs::copy(PORTGUARD, &bin).expect("copy the binary");
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
            (dir, bin)
        })
        .1
}

/// Runs portguard as user `nobody` (the suite runs as root in CI).
pub(crate) fn as_nobody(args: &[&str]) -> Option<std::process::Output> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to run portguard as another user");
        return None;
    }
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(binary_for_nobody())
        .args(args)
        .current_dir("/")
        .env_remove("PORTGUARD_POLICY")
        .env_remove("XDG_RUNTIME_DIR")
        .env("HOME", "/nonexistent")
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("setpriv runs");
    Some(out)
}

#[test]
fn as_another_user_a_foreign_holder_is_reported_as_not_inspectable() {
    let holder = Holder::tcp("127.0.0.1").spawn();
    let port = holder.port().to_string();
    let Some(out) = as_nobody(&["who", &port, "--format", "json"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let h = &doc["ports"][0]["holders"][0];
    assert_eq!(h["pid"], serde_json::Value::Null, "{doc}");
    assert_eq!(h["uid"], 0);
    let reason = h["unknown_reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("cannot inspect") && reason.contains("not your process"),
        "{reason}"
    );

    // --explain (human) says so too, and a terminate rule cannot act on it.
    let (_dir, policy) =
        shared_policy("[[rule]]\nname = \"all\"\nmatch.user = 0\naction = \"terminate\"\n");
    let Some(out) = as_nobody(&["resolve", &port, "--policy", &policy, "--explain"]) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(
        text.contains("pid unknown") && text.contains("cannot inspect"),
        "{text}"
    );
    let Some(out) = as_nobody(&["resolve", &port, "--policy", &policy, "--format", "json"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let message = doc["ports"][0]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("pid is unknown") && message.contains("cannot be signalled"),
        "{message}"
    );
    assert!(holder.is_alive());
}

#[test]
fn another_users_process_is_left_alone_by_the_headroom_policy() {
    let Some(builder) = Holder::headroom_module().run_as("nobody") else {
        eprintln!("skipped: needs root");
        return;
    };
    let proxy = builder.spawn();
    let run = Sandbox::new().run(["resolve", &proxy.port().to_string(), "--format", "json"]);
    run.assert_exit(4);
    let entry = run.port(proxy.port());
    assert_eq!(entry["rule"], "foreign-process", "{}", run.describe());
    assert!(proxy.is_alive());
    let _ = proxy.wait_exit(Duration::ZERO);
}
