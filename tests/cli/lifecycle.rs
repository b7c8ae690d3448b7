//! headroom 0.42's lifecycle: orphaned is not stale. A proxy in use — a
//! live client recorded under `$HEADROOM_WORKSPACE_DIR/clients/<port>/`, or
//! a live parent — is reused when it answers, never signalled; a stale one
//! (no live client, its parent gone) is terminated; a stopped one is
//! continued so it can shut down at once.

use crate::support::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process standing in for a live `headroom wrap` session; killed on drop.
struct Session(Child);

impl Session {
    fn start() -> Session {
        Session(
            Command::new("sleep")
                .arg("60")
                .stdin(Stdio::null())
                .spawn()
                .expect("sleep starts"),
        )
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where a `headroom wrap` run by the sandbox's user records its clients.
fn clients_dir(sandbox: &Sandbox, port: u16) -> PathBuf {
    sandbox.home_dir().join(format!(".headroom/clients/{port}"))
}

/// A client marker as headroom writes it: pid, `start_src = "proc"` and
/// the start time in clock ticks.
fn write_marker(sandbox: &Sandbox, port: u16, pid: u32, start: u64) {
    let dir = clients_dir(sandbox, port);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{pid}.json")),
        format!(r#"{{"pid": {pid}, "start_src": "proc", "start_time": {start}}}"#),
    )
    .unwrap();
}

fn resolve(sandbox: &Sandbox, port: u16, policy: &str) -> Run {
    sandbox.run([
        "resolve",
        &port.to_string(),
        "--policy",
        policy,
        "--format",
        "json",
    ])
}

#[test]
fn an_orphaned_proxy_with_a_live_client_is_reused_and_never_signalled() {
    let proxy = Holder::headroom_module().spawn();
    let sandbox = Sandbox::new();
    let session = Session::start();
    let start = proc_start(session.pid()).unwrap();
    write_marker(&sandbox, proxy.port(), session.pid(), start);
    let run = resolve(&sandbox, proxy.port(), "headroom");
    run.assert_exit(3);
    let entry = run.port(proxy.port());
    assert_eq!(entry["rule"], "headroom-proxy-in-use", "{}", run.describe());
    assert!(signals(&entry).is_empty(), "{}", run.describe());
    assert!(proxy.is_alive());
    // The JSON shows what was read: the marker, its pid, live.
    let files = &entry["clients"][0]["seen"]["files"];
    assert_eq!(files[0]["pid"], session.pid(), "{}", run.describe());
    assert_eq!(files[0]["status"], "live", "{}", run.describe());
}

#[test]
fn a_proxy_whose_parent_is_alive_is_reused() {
    let proxy = Holder::headroom_module().attached().spawn();
    let run = resolve(&Sandbox::new(), proxy.port(), "headroom");
    run.assert_exit(3);
    assert_eq!(run.port(proxy.port())["rule"], "headroom-proxy-attached");
    assert!(proxy.is_alive());
}

#[test]
fn stale_markers_and_the_callers_own_marker_do_not_count() {
    let proxy = Holder::headroom_module().spawn();
    let sandbox = Sandbox::new();
    // A session that has exited (its pid reused is no better), and the
    // program asking — this test is an ancestor of the portguard it runs,
    // as `headroom wrap` is, and wrap writes its own marker first.
    let exited = {
        let mut s = Session::start();
        let pid = s.pid();
        let _ = s.0.kill();
        let _ = s.0.wait();
        pid
    };
    write_marker(&sandbox, proxy.port(), exited, 1);
    let me = std::process::id();
    write_marker(&sandbox, proxy.port(), me, proc_start(me).unwrap());
    let run = resolve(&sandbox, proxy.port(), "headroom");
    run.assert_exit(0);
    let entry = run.port(proxy.port());
    assert_eq!(entry["rule"], "stale-headroom-proxy", "{}", run.describe());
    let files = entry["clients"][0]["seen"]["files"]
        .as_array()
        .unwrap()
        .clone();
    let status = |pid: u32| {
        files
            .iter()
            .find(|f| f["pid"] == pid)
            .map(|f| f["status"].clone())
    };
    assert_eq!(status(me), Some("caller".into()), "{}", run.describe());
    assert_ne!(status(exited), Some("live".into()), "{}", run.describe());
    assert!(proxy.wait_exit(EXIT_TIMEOUT).is_some());
    // Stale markers are reported, never deleted.
    assert!(clients_dir(&sandbox, proxy.port())
        .join(format!("{exited}.json"))
        .exists());
}

#[test]
fn the_client_directory_follows_headroom_workspace_dir() {
    let proxy = Holder::headroom_module().spawn();
    let sandbox = Sandbox::new();
    let workspace = sandbox.work_dir().join("workspace");
    let session = Session::start();
    let dir = workspace.join(format!("clients/{}", proxy.port()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(session.pid().to_string()), "").unwrap();
    let mut cmd = sandbox.command();
    cmd.env("HEADROOM_WORKSPACE_DIR", &workspace);
    let port = proxy.port().to_string();
    let args: Vec<String> = ["resolve", &port, "--explain"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    cmd.args(&args);
    let run = sandbox.run_command(cmd, args);
    run.assert_exit(3);
    assert!(
        run.stdout.contains("headroom-proxy-in-use"),
        "{}",
        run.describe()
    );
    assert!(
        run.stdout.contains(&format!("pid {} live", session.pid())),
        "the trace shows the client\n{}",
        run.describe()
    );
}

#[test]
fn an_unreadable_client_directory_never_lets_a_terminate_apply() {
    let proxy = Holder::headroom_module().spawn();
    let sandbox = Sandbox::new();
    // A file where the directory should be: it cannot be listed.
    let dir = clients_dir(&sandbox, proxy.port());
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    std::fs::write(&dir, "not a directory").unwrap();
    let run = resolve(&sandbox, proxy.port(), "headroom");
    run.assert_exit(4);
    assert_eq!(run.port(proxy.port())["rule"], "headroom-proxy-unknown");
    assert!(proxy.is_alive());
}

#[test]
fn a_wedged_proxy_in_use_is_replaced_but_one_answering_503_is_alive() {
    // 503 naming headroom-proxy: alive (its event loop logged a failure).
    let alive = Holder::headroom_module()
        .attached()
        .http_status(503)
        .spawn();
    let run = resolve(&Sandbox::new(), alive.port(), "headroom");
    run.assert_exit(3);
    assert!(alive.is_alive());

    // Stopped (SIGSTOP): it cannot answer /livez, so it is wedged; the
    // fallback terminates it, and SIGCONT lets it act on SIGTERM at once.
    let wedged = Holder::headroom_module().attached().spawn();
    let pid = rustix::process::Pid::from_raw(wedged.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    let run = resolve(&Sandbox::new(), wedged.port(), "headroom");
    run.assert_exit(0);
    let entry = run.port(wedged.port());
    let events = events(&entry);
    assert!(events.contains(&"health".to_string()), "{}", run.describe());
    assert!(
        events.contains(&"fallback".to_string()),
        "{}",
        run.describe()
    );
    assert!(
        events.contains(&"resumed".to_string()),
        "{}",
        run.describe()
    );
    assert_eq!(
        signals(&entry),
        [(wedged.pid(), "SIGTERM".to_string())],
        "no SIGKILL was needed\n{}",
        run.describe()
    );
}

#[test]
fn a_stopped_stale_proxy_is_freed_at_once() {
    let proxy = Holder::headroom_module().spawn();
    let pid = rustix::process::Pid::from_raw(proxy.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    let started = Instant::now();
    let run = resolve(&Sandbox::new(), proxy.port(), "headroom");
    run.assert_exit(0);
    // Well within the 3 s grace: it was continued, not waited out for SIGKILL.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{}",
        run.describe()
    );
    let entry = run.port(proxy.port());
    assert!(
        events(&entry).contains(&"resumed".to_string()),
        "{}",
        run.describe()
    );
    assert_eq!(entry["holders"][0]["stopped"], true, "{}", run.describe());
}

#[test]
fn headroom_reuse_reuses_any_answering_proxy_of_yours() {
    let proxy = Holder::headroom_module().spawn();
    let run = resolve(&Sandbox::new(), proxy.port(), "headroom-reuse");
    run.assert_exit(3);
    assert_eq!(run.port(proxy.port())["rule"], "headroom-proxy");
    assert!(proxy.is_alive());
}
