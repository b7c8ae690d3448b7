//! Every discovery backend against the same real sockets.
//!
//! The native backend (netlink sock_diag) must give exactly what the /proc
//! path gives — sockets, other sockets on the port (when asked for them),
//! holders with every field, groups — and the lsof backend the same facts as
//! far as lsof can know them. Each scenario starts its own holders (python3,
//! ports from the kernel), runs each backend, and kills what it started on
//! drop.
//!
//! Linux only: the reference path is `/proc`.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use portguard::discovery::owners::NetlinkDiscovery;
use portguard::discovery::sockets::lsof::{LsofDiscovery, UNKNOWN_UID};
use portguard::discovery::sockets::netlink;
use portguard::discovery::sockets::Rows;
use portguard::discovery::{backend, Backend, Discovery, DiscoveryError};
use portguard::model::{Holder, PortState, Protocol};

/// Binds every address in argv on one port (the first gets it from the
/// kernel), listens (TCP), forks workers that share the sockets, optionally
/// connects to itself, prints `port worker...`, and exits when its parent
/// (the test) is gone. argv: PROTO WORKERS CONNECT ADDR... where ADDR is an
/// IPv4 address, an IPv6 address (IPv6-only), or `dual` for `[::]` serving
/// IPv4 too.
const HOLDER: &str = r#"
import os, socket, sys, time
proto, workers, connect, addrs = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "connect", sys.argv[4:]
test = os.getppid()
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
port, socks = 0, []
for a in addrs:
    fam = socket.AF_INET if "." in a else socket.AF_INET6
    s = socket.socket(fam, kind)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if a == "dual" else 1)
    s.bind(("::" if a == "dual" else a, port))
    if kind == socket.SOCK_STREAM:
        s.listen()
    port = s.getsockname()[1]
    socks.append(s)
if connect:
    c = socket.create_connection(("127.0.0.1", port))
    accepted, _ = socks[0].accept()
kids = []
for _ in range(workers):
    pid = os.fork()
    if pid == 0:
        master = os.getppid()
        while os.getppid() == master:
            time.sleep(0.05)
        os._exit(0)
    kids.append(pid)
print(port, *kids, flush=True)
while os.getppid() == test:
    time.sleep(0.05)
"#;

fn python() -> PathBuf {
    ["/usr/bin/python3", "/bin/python3", "/usr/local/bin/python3"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// The holder script, written once per test binary.
fn holder_script() -> &'static PathBuf {
    static SCRIPT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &SCRIPT
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("holder.py");
            std::fs::write(&path, HOLDER).unwrap();
            (dir, path)
        })
        .1
}

/// A running holder; its workers, then itself, are SIGKILLed by pid on drop.
struct Holders {
    master: Child,
    workers: Vec<u32>,
    port: u16,
}

impl Holders {
    fn start(proto: &str, workers: u32, connect: bool, addrs: &[&str]) -> Holders {
        let mut master = Command::new(python())
            .arg(holder_script())
            .args([
                proto,
                &workers.to_string(),
                if connect { "connect" } else { "-" },
            ])
            .args(addrs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        let stdout = master.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let numbers: Vec<u32> = line
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        let mut holders = Holders {
            master,
            workers: Vec::new(),
            port: 0,
        };
        assert!(!numbers.is_empty(), "holder {addrs:?} failed to start");
        holders.port = u16::try_from(numbers[0]).unwrap();
        holders.workers = numbers[1..].to_vec();
        holders
    }

    fn pids(&self) -> Vec<u32> {
        let mut pids = self.workers.clone();
        pids.push(self.master.id());
        pids.sort_unstable();
        pids
    }
}

impl Drop for Holders {
    fn drop(&mut self) {
        for &pid in &self.workers {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = self.master.kill();
        let _ = self.master.wait();
    }
}

/// The same state with orders that depend on kernel hash order fixed and
/// ages (which move between two calls) compared then cleared.
fn normalized(mut state: PortState, ages: &mut Vec<Option<u64>>) -> PortState {
    state.sockets.sort_by_key(|s| (s.local, s.remote, s.inode));
    state.others.sort_by_key(|s| (s.local, s.remote, s.inode));
    state.update_holders(|h| {
        h.addrs.sort();
        h.inodes.sort_unstable();
        ages.push(h.age_ms.take());
    });
    state
}

fn assert_same(label: &str, reference: PortState, other: PortState) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let reference = normalized(reference, &mut a);
    let other = normalized(other, &mut b);
    assert_eq!(reference, other, "{label} differs from /proc");
    for (x, y) in a.iter().zip(&b) {
        let (x, y) = (x.expect("age"), y.expect("age"));
        assert!(x.abs_diff(y) <= 100, "{label}: ages {x} and {y} ms");
    }
}

fn netlink_available() -> bool {
    match netlink::query(1, Protocol::Tcp, Rows::Holding) {
        Ok(_) => true,
        Err(err) => {
            eprintln!("notice: netlink sock_diag unavailable ({err}); native falls back to /proc");
            false
        }
    }
}

fn lsof_available() -> bool {
    let found = Command::new("lsof").arg("-v").output().is_ok();
    if !found {
        eprintln!("notice: lsof is not on PATH; skipping the lsof backend checks");
    }
    found
}

/// Native and /proc agree on `port`; lsof agrees on everything lsof knows.
/// Returns the /proc state for scenario-specific assertions.
fn all_backends_agree(port: u16, proto: Protocol) -> PortState {
    let procfs = backend(Backend::Procfs).discover(port, proto).unwrap();
    let native = NetlinkDiscovery::default().with_others();
    assert_same(
        "native with others",
        procfs.clone(),
        native.discover(port, proto).unwrap(),
    );
    if netlink_available() {
        assert!(!native.uses_fallback(proto), "netlink was not used");
    }
    // The default leaves out the sockets that do not hold the port.
    let mut holding_only = procfs.clone();
    holding_only.others.clear();
    assert_same(
        "native",
        holding_only,
        backend(Backend::Native).discover(port, proto).unwrap(),
    );
    assert_eq!(
        sorted(native.holding_sockets(port, proto).unwrap()),
        sorted(procfs.sockets.clone()),
    );
    if lsof_available() {
        let lsof = LsofDiscovery::default();
        assert_lsof_agrees(&procfs, lsof.discover(port, proto).unwrap());
        assert_eq!(
            sorted(lsof.holding_sockets(port, proto).unwrap()),
            sorted(procfs.sockets.clone()),
        );
    }
    procfs
}

fn sorted(mut sockets: Vec<portguard::model::SocketEntry>) -> Vec<portguard::model::SocketEntry> {
    sockets.sort_by_key(|s| (s.local, s.remote, s.inode));
    sockets
}

/// lsof knows the sockets and holders; argv comes from `ps` (compared
/// joined, as policies see it) and ages have whole-second resolution.
fn assert_lsof_agrees(procfs: &PortState, lsof: PortState) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let procfs = normalized(procfs.clone(), &mut a);
    let lsof = normalized(lsof, &mut b);
    assert_eq!(procfs.sockets, lsof.sockets, "lsof sockets");
    assert_eq!(procfs.others, lsof.others, "lsof other sockets");
    assert_eq!(procfs.groups(), lsof.groups(), "lsof groups");
    assert_eq!(procfs.holders().len(), lsof.holders().len());
    let joined = |h: &Holder| h.cmdline_joined();
    for (p, l) in procfs.holders().iter().zip(lsof.holders()) {
        assert_eq!(
            (p.pid, p.ppid, p.uid, &p.user, &p.exe, &p.comm),
            (l.pid, l.ppid, l.uid, &l.user, &l.exe, &l.comm),
        );
        assert_eq!(joined(p), joined(l));
        assert_eq!((p.start_ticks, p.orphan), (l.start_ticks, l.orphan));
        assert_eq!((&p.addrs, &p.inodes), (&l.addrs, &l.inodes));
        assert_eq!(p.unknown, l.unknown);
    }
    for (x, y) in a.iter().zip(&b) {
        let (x, y) = (x.expect("age"), y.expect("age"));
        assert!(x.abs_diff(y) <= 2_000, "lsof: ages {x} and {y} ms");
    }
}

fn has_ipv6() -> bool {
    let ok = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok();
    if !ok {
        eprintln!("notice: no IPv6 loopback; skipping an IPv6 scenario");
    }
    ok
}

fn holder_pids(state: &PortState) -> Vec<u32> {
    state.holders().iter().filter_map(|h| h.pid).collect()
}

#[test]
fn tcp_listener_on_ipv4_loopback() {
    let holders = Holders::start("tcp", 0, false, &["127.0.0.1"]);
    let state = all_backends_agree(holders.port, Protocol::Tcp);
    assert_eq!(holder_pids(&state), holders.pids());
    let addr: SocketAddr = format!("127.0.0.1:{}", holders.port).parse().unwrap();
    assert_eq!(state.holders()[0].addrs, vec![addr]);
    assert!(state.holders()[0].cmdline.is_some());
}

#[test]
fn tcp_listener_on_ipv6_loopback_only() {
    if !has_ipv6() {
        return;
    }
    let holders = Holders::start("tcp", 0, false, &["::1"]);
    let state = all_backends_agree(holders.port, Protocol::Tcp);
    assert_eq!(holder_pids(&state), holders.pids());
    assert!(state.sockets.iter().all(|s| s.local.is_ipv6()));
}

#[test]
fn dual_stack_listener_with_a_connection() {
    if !has_ipv6() {
        return;
    }
    let holders = Holders::start("tcp", 0, true, &["dual"]);
    let state = all_backends_agree(holders.port, Protocol::Tcp);
    assert_eq!(holder_pids(&state), holders.pids());
    assert_eq!(state.sockets.len(), 1);
    assert_eq!(
        state.sockets[0].local.to_string(),
        format!("[::]:{}", holders.port)
    );
    // The accepted connection is on the port but holds nothing.
    assert_eq!(state.others.len(), 1, "{:?}", state.others);
    assert_eq!(state.others[0].state_name(), "ESTABLISHED");
}

#[test]
fn udp_on_ipv4_and_ipv6() {
    let addrs: &[&str] = if has_ipv6() {
        &["127.0.0.1", "::1"]
    } else {
        &["127.0.0.1"]
    };
    let holders = Holders::start("udp", 0, false, addrs);
    let state = all_backends_agree(holders.port, Protocol::Udp);
    assert_eq!(state.sockets.len(), addrs.len());
    assert_eq!(holder_pids(&state), holders.pids());
    // The same number over TCP is another port, free here.
    let tcp = backend(Backend::Native)
        .discover(holders.port, Protocol::Tcp)
        .unwrap();
    assert!(tcp
        .sockets
        .iter()
        .all(|s| !state.sockets.iter().any(|u| u.inode == s.inode)));
}

#[test]
fn forked_workers_are_all_holders_in_one_group() {
    let holders = Holders::start("tcp", 3, false, &["127.0.0.1"]);
    let state = all_backends_agree(holders.port, Protocol::Tcp);
    assert_eq!(holder_pids(&state), holders.pids());
    assert_eq!(state.groups().len(), 1);
    let root = &state.holders()[state.groups()[0].root];
    assert_eq!(root.pid, Some(holders.master.id()));
    assert_eq!(state.groups()[0].members.len(), 4);
}

#[test]
fn a_released_port_is_free_for_every_backend() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = all_backends_agree(port, Protocol::Tcp);
    let ours = held.sockets[0].inode;
    assert_eq!(holder_pids(&held), vec![std::process::id()]);
    drop(listener);
    // Tests run in parallel and ports come from the kernel: another test may
    // bind the number at once. What must be gone is our socket and us.
    let state = all_backends_agree(port, Protocol::Tcp);
    assert!(state.sockets.iter().all(|s| s.inode != ours));
    assert!(!holder_pids(&state).contains(&std::process::id()));
}

#[test]
fn lsof_that_sees_nothing_on_a_bound_port_reports_an_invisible_holder() {
    let dir = tempfile::tempdir().unwrap();
    let blind = dir.path().join("lsof");
    std::fs::write(&blind, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&blind, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let lsof = LsofDiscovery::with_programs(&blind, "ps");

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = lsof.discover(port, Protocol::Tcp).unwrap();
    assert!(!state.is_free());
    assert_eq!(state.holders().len(), 1);
    let holder = &state.holders()[0];
    assert_eq!(
        (holder.pid, holder.uid, &holder.user),
        (None, UNKNOWN_UID, &None)
    );
    assert_eq!(
        holder.unknown,
        Some(portguard::model::Unknown::LsofCannotInspect)
    );
    drop(listener);
    assert!(lsof.discover(port, Protocol::Tcp).unwrap().is_free());
}

#[test]
fn lsof_missing_or_failing_is_an_error_not_a_free_port() {
    let missing = LsofDiscovery::with_programs("/nonexistent/lsof", "ps");
    match missing.discover(8787, Protocol::Tcp) {
        Err(DiscoveryError::Tool { tool, message }) => {
            assert_eq!(tool, "lsof");
            assert!(message.contains("not found"), "{message}");
        }
        other => panic!("expected a tool error, got {other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("lsof");
    std::fs::write(
        &broken,
        "#!/bin/sh\necho 'lsof: WARNING: kernel changed' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let err = LsofDiscovery::with_programs(&broken, "ps")
        .holding_sockets(8787, Protocol::Tcp)
        .unwrap_err();
    assert!(err.to_string().contains("kernel changed"), "{err}");
}
