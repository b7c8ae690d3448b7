//! Linux discovery: a socket source for the rows, the proc layer for the
//! processes that hold them.
//!
//! What it guarantees:
//!
//! - A free port costs a socket-table query and a bind probe, and no process
//!   scan, because the common case of a pre-start hook is "nothing is there".
//! - A process that exits while it is being inspected is simply not a
//!   holder; it is never an error and never a panic.
//! - A holding socket whose process cannot be seen still becomes a holder
//!   (with the socket's uid and no pid) together with the reason, so a policy
//!   never mistakes "I could not look" for "nobody is there".
//! - When some processes could not be inspected and a socket's uid belongs
//!   to none of the visible processes holding it, the socket's creator is
//!   hidden: it becomes a holder of its own, so no rule can act on the
//!   visible part of a tree whose root portguard cannot see.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::proc::{own_pid_namespace, scan, Clock, PidDir, DEFAULT_PROC_ROOT};
use super::sockets::netlink::Netlink;
use super::sockets::procnet::ProcNet;
use super::sockets::{split_holding, Rows, SocketTable};
use super::{Discovery, DiscoveryError, Scope};
use crate::model::{
    addrs_and_inodes, BindProbe, Holder, PortState, Protocol, SocketEntry, Unknown,
};

/// Discovery from a socket table and `/proc`.
#[derive(Debug)]
pub struct ProcDiscovery<T> {
    table: T,
    root: PathBuf,
    others: bool,
    probe: fn(u16, Protocol) -> BindProbe,
}

/// The default Linux backend: netlink sock_diag, `/proc/net` as fallback.
pub type NetlinkDiscovery = ProcDiscovery<Netlink>;
/// `--backend procfs`: the socket table from `/proc/net` only.
pub type ProcfsDiscovery = ProcDiscovery<ProcNet>;

impl Default for NetlinkDiscovery {
    fn default() -> Self {
        ProcDiscovery::new(Netlink::default(), DEFAULT_PROC_ROOT)
    }
}

impl Default for ProcfsDiscovery {
    fn default() -> Self {
        ProcfsDiscovery::at(DEFAULT_PROC_ROOT)
    }
}

impl ProcfsDiscovery {
    /// Everything read from the procfs mounted at `root` (tests point it at
    /// a directory that imitates `/proc`).
    /// `/proc/net` formats every socket anyway, so the other sockets on the
    /// port are always listed.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        ProcDiscovery::new(ProcNet::new(root.clone()), root).with_others()
    }
}

impl NetlinkDiscovery {
    /// Whether the socket table for `proto` now comes from `/proc/net`
    /// because netlink failed.
    pub fn uses_fallback(&self, proto: Protocol) -> bool {
        self.table.uses_fallback(proto)
    }
}

impl<T: SocketTable> ProcDiscovery<T> {
    /// Rows from `table`, processes from the procfs at `root`.
    pub fn new(table: T, root: impl Into<PathBuf>) -> Self {
        ProcDiscovery {
            table,
            root: root.into(),
            others: false,
            probe: super::probe::probe,
        }
    }

    /// Ask `probe` whether the port can be bound, instead of the kernel:
    /// for a directory that imitates `/proc`, whose sockets the kernel
    /// knows nothing about.
    pub fn with_probe(mut self, probe: fn(u16, Protocol) -> BindProbe) -> Self {
        self.probe = probe;
        self
    }

    /// Also list the sockets on the port that do not hold it (what `who
    /// --all` shows), at the cost, with netlink, of a walk over the kernel's
    /// whole connection table.
    pub fn with_others(mut self) -> Self {
        self.others = true;
        self
    }

    /// The procfs root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Finds the holders of `state.sockets`: one pass over every
    /// `/proc/PID/fd`, then the details of each holding process, then a
    /// pid-less holder for every socket no visible process holds, and for
    /// every socket whose creator is hidden.
    fn add_holders(&self, mut state: PortState) -> PortState {
        if state.sockets.is_empty() {
            // The hot path of a pre-start hook: no process scan at all.
            return state;
        }
        let mut wanted: Vec<u64> = state.sockets.iter().map(|s| s.inode).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let scan = scan::scan(&self.root, &wanted);
        let clock = Clock::read(&self.root);
        let mut users = Users::default();
        let foreign_ns = !own_pid_namespace(&self.root);
        let mut holders = Vec::new();
        // Every uid of each visible holder, by socket inode.
        let mut uids_of: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for (&pid, inodes) in &scan.holders {
            let Some((holder, uids)) = inspect(&self.root, pid, inodes, &state.sockets, &clock)
            else {
                continue;
            };
            for inode in &holder.inodes {
                uids_of.entry(*inode).or_default().extend(uids);
            }
            holders.push(holder);
        }
        for socket in &state.sockets {
            let why = match uids_of.get(&socket.inode) {
                None if scan.unreadable && socket.uid != rustix::process::geteuid().as_raw() => {
                    Unknown::NotYourProcess
                }
                None => Unknown::NotVisible,
                Some(uids) if scan.unreadable && !uids.contains(&socket.uid) => {
                    Unknown::HiddenOwner
                }
                Some(_) => continue,
            };
            holders.push(Holder::unseen(
                socket.uid,
                vec![socket.local],
                vec![socket.inode],
                why,
            ));
        }
        if foreign_ns {
            // Its pids are another namespace's: nothing here can signal
            // them, and saying "pid 42" would name a stranger.
            for h in &mut holders {
                if h.pid.is_some() {
                    *h = Holder::unseen(
                        h.uid,
                        h.addrs.clone(),
                        h.inodes.clone(),
                        Unknown::ForeignPidNamespace,
                    );
                }
            }
        }
        for h in &mut holders {
            h.user = users.name(h.uid);
        }
        state.add_holders(holders);
        super::containers::identify(&mut state, || self.docker_proxies(&clock, &mut users));
        state
    }

    /// Every `docker-proxy` process, from what `/proc` shows anyone (argv,
    /// stat, status): for the sockets of root's forwarders, whose fds a
    /// member of the docker group cannot read.
    fn docker_proxies(&self, clock: &Clock, users: &mut Users) -> Vec<Holder> {
        let Ok(dir) = rustix::fs::open(
            &self.root,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) else {
            return Vec::new();
        };
        let (pids, _) = scan::list_pids(std::os::fd::AsFd::as_fd(&dir));
        let mut found = Vec::new();
        for pid in pids {
            let Some(proc_dir) = PidDir::open(&self.root, pid) else {
                continue;
            };
            let Some(stat) = proc_dir.stat() else {
                continue;
            };
            if !matches!(stat.comm.as_str(), "docker-proxy" | "rootlessport") {
                continue;
            }
            let uid = proc_dir.uids().map_or(0, |u| u[0]);
            let mut h = Holder::unseen(uid, Vec::new(), Vec::new(), Unknown::NotYourProcess);
            h.unknown = None;
            h.pid = Some(pid);
            h.ppid = Some(stat.ppid);
            h.cmdline = proc_dir.cmdline(&stat);
            h.exe = proc_dir.exe(&stat);
            h.start_ticks = Some(stat.start_ticks);
            h.age_ms = clock.age_ms(stat.start_ticks);
            h.orphan = Some(stat.ppid <= 1);
            h.stopped = Some(matches!(stat.state, 'T' | 't'));
            h.user = users.name(uid);
            h.comm = Some(stat.comm);
            found.push(h);
        }
        found
    }
}

/// User names, each looked up once per discovery.
#[derive(Debug, Default)]
struct Users(BTreeMap<u32, Option<String>>);

impl Users {
    fn name(&mut self, uid: u32) -> Option<String> {
        self.0
            .entry(uid)
            .or_insert_with(|| super::users::name_of(uid))
            .clone()
    }
}

/// Everything about one holding process (and all its uids, to compare with
/// the sockets' uids), or `None` if it is gone. Every field is read through
/// one open `/proc/PID`, so all of them describe the same process.
fn inspect(
    root: &Path,
    pid: u32,
    inodes: &[u64],
    sockets: &[SocketEntry],
    clock: &Clock,
) -> Option<(Holder, [u32; 4])> {
    let dir = PidDir::open(root, pid)?;
    let stat = dir.stat()?;
    if stat.is_gone() {
        return None;
    }
    let held: Vec<&SocketEntry> = sockets
        .iter()
        .filter(|s| inodes.contains(&s.inode))
        .collect();
    let uids = dir.uids().or_else(|| held.first().map(|s| [s.uid; 4]))?;
    let orphan = if stat.ppid <= 1 {
        Some(true)
    } else {
        // A user manager (`systemd --user`) is a subreaper: children of a
        // closed session end up there rather than under pid 1. If the
        // parent cannot be read, whether it exited is unknown.
        PidDir::open(root, stat.ppid)
            .and_then(|parent| parent.stat())
            .map(|parent| parent.comm == "systemd")
    };
    let (addrs, held_inodes) = addrs_and_inodes(held);
    let holder = Holder {
        pid: Some(pid),
        ppid: Some(stat.ppid),
        uid: uids[0],
        user: None,
        exe: dir.exe(&stat),
        cmdline: dir.cmdline(&stat),
        comm: Some(stat.comm.clone()),
        start_ticks: Some(stat.start_ticks),
        age_ms: clock.age_ms(stat.start_ticks),
        orphan,
        stopped: Some(matches!(stat.state, 'T' | 't')),
        unit: dir.cgroup().as_deref().and_then(super::unit::unit_of),
        container: None,
        container_error: None,
        addrs,
        inodes: held_inodes,
        unknown: None,
    };
    Some((holder, uids))
}

impl<T: SocketTable> Discovery for ProcDiscovery<T> {
    fn scan(&self, port: u16, proto: Protocol, scope: Scope) -> Result<PortState, DiscoveryError> {
        let rows = match scope {
            Scope::Holding if !self.others => Rows::Holding,
            _ => Rows::All,
        };
        let (mut sockets, mut others) =
            split_holding(self.table.rows(port, proto, rows)?, port, proto);
        match scope {
            // The source may list every row (`/proc/net` does); report the
            // same either way.
            Scope::Holding if !self.others => others.clear(),
            Scope::Blocking => {
                // Nothing listens, yet a bind fails: a process's socket on
                // the port is what blocks it; sockets no process owns
                // (TIME_WAIT) stay reported, never holders.
                let (owned, ownerless): (Vec<_>, Vec<_>) =
                    others.into_iter().partition(|s| s.inode != 0);
                sockets.extend(owned);
                others = ownerless;
            }
            _ => {}
        }
        Ok(self.add_holders(PortState::new(port, proto, sockets, others, Vec::new())))
    }

    fn holding_sockets(
        &self,
        port: u16,
        proto: Protocol,
    ) -> Result<Vec<SocketEntry>, DiscoveryError> {
        let rows = self.table.rows(port, proto, Rows::Holding)?;
        Ok(split_holding(rows, port, proto).0)
    }

    fn bind_probe(&self, port: u16, proto: Protocol) -> BindProbe {
        (self.probe)(port, proto)
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::proc::parse::{parse_cmdline, parse_stat};
    use crate::discovery::proc::{self_and_ancestors, ProcfsTable};
    use crate::discovery::ProcessTable;
    use crate::model::{Group, ProcessId};
    use std::fs;
    use std::io::{self, BufRead, BufReader};
    use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    const NET_TCP: &str = include_str!("../../tests/fixtures/proc/net_tcp");
    const NET_TCP6: &str = include_str!("../../tests/fixtures/proc/net_tcp6");
    const NET_TCP_NOBODY: &str = include_str!("../../tests/fixtures/proc/net_tcp_nobody");
    const NET_TCP6_DUALSTACK: &str = include_str!("../../tests/fixtures/proc/net_tcp6_dualstack");
    const STAT_WEIRD: &str = include_str!("../../tests/fixtures/proc/stat_weird");
    const STAT_ZOMBIE: &str = include_str!("../../tests/fixtures/proc/stat_zombie");
    const STATUS: &str = include_str!("../../tests/fixtures/proc/status");
    const STATUS_MIXED: &str = include_str!("../../tests/fixtures/proc/status_mixed");
    const CMDLINE: &[u8] = include_bytes!("../../tests/fixtures/proc/cmdline");
    const UPTIME: &str = include_str!("../../tests/fixtures/proc/uptime");

    fn v4(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn entry(local: &str, remote: &str, state: u8, uid: u32, inode: u64) -> SocketEntry {
        SocketEntry {
            local: v4(local),
            remote: v4(remote),
            state,
            uid,
            inode,
        }
    }

    // ---- a fake /proc --------------------------------------------------

    /// A directory laid out like /proc, built from recorded text.
    struct FakeProc {
        dir: tempfile::TempDir,
    }

    fn stat_line(pid: u32, comm: &str, state: char, ppid: u32, start: u64) -> String {
        format!(
            "{pid} ({comm}) {state} {ppid} 3691 2658 0 -1 4194304 2884 6490 9 0 5 1 3 2 \
             20 0 1 0 {start} 16961536 3364 18446744073709551615 0 0 0 0 0 0 65536 \
             16781318 0 1 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        )
    }

    impl FakeProc {
        fn new(tcp: Option<&str>, tcp6: Option<&str>) -> Self {
            let fake = Self {
                dir: tempfile::tempdir().unwrap(),
            };
            if let Some(text) = tcp {
                fake.file("net/tcp", text.as_bytes());
            }
            if let Some(text) = tcp6 {
                fake.file("net/tcp6", text.as_bytes());
            }
            fake.file("uptime", UPTIME.as_bytes());
            fake.link("self", &std::process::id().to_string());
            fake
        }

        fn root(&self) -> &Path {
            self.dir.path()
        }

        fn file(&self, rel: &str, contents: &[u8]) {
            let path = self.root().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
        }

        fn link(&self, rel: &str, target: &str) {
            let path = self.root().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, path).unwrap();
        }

        /// A process with `fds` as (fd number, link target).
        fn process(&self, pid: u32, stat: &str, status: &str, fds: &[(u32, &str)]) {
            self.file(&format!("{pid}/stat"), stat.as_bytes());
            self.file(&format!("{pid}/status"), status.as_bytes());
            self.file(&format!("{pid}/cmdline"), CMDLINE);
            self.link(&format!("{pid}/exe"), "/usr/bin/python3.11");
            fs::create_dir_all(self.root().join(format!("{pid}/fd"))).unwrap();
            for (fd, target) in fds {
                self.link(&format!("{pid}/fd/{fd}"), target);
            }
        }

        /// Discovery of this tree; its ports bind as the tables say (a
        /// plain bind fails on a port with any row), not as this machine's
        /// kernel would.
        fn discovery(&self) -> ProcfsDiscovery {
            ProcfsDiscovery::at(self.root()).with_probe(|_, _| BindProbe::Free)
        }

        fn table(&self) -> ProcfsTable {
            ProcfsTable::new(self.root())
        }
    }

    /// net_tcp + net_tcp6_dualstack, with:
    /// - 4242 (orphan, uid 1000) and its worker 4243 on 127.0.0.1:35981 (inode 4665);
    ///   4242 also has the accepted connection (5358) and a dup of the listener;
    /// - 4246 (parent 4247 is `systemd`) and 4248 (parent gone) on [::]:52509;
    /// - nobody on 0.0.0.0:2024 (inode 1604);
    /// - 3736 a zombie, 4245 a pid directory without fds.
    fn fake_tree() -> FakeProc {
        let fake = FakeProc::new(Some(NET_TCP), Some(NET_TCP6_DUALSTACK));
        let weird = STAT_WEIRD
            .replacen("3695 (", "4242 (", 1)
            .replacen(") S 3691 ", ") S 1 ", 1);
        fake.process(
            4242,
            &weird,
            STATUS_MIXED,
            &[
                (0, "/dev/null"),
                (3, "socket:[4665]"),
                (4, "socket:[5358]"),
                (5, "pipe:[4646]"),
                (6, "socket:[4665]"),
            ],
        );
        fake.process(
            4243,
            &stat_line(4243, "worker", 'S', 4242, 22800),
            STATUS_MIXED,
            &[(3, "socket:[4665]")],
        );
        fake.process(
            4246,
            &stat_line(4246, "server", 'S', 4247, 30000),
            STATUS,
            &[(7, "socket:[4869]")],
        );
        fake.process(4247, &stat_line(4247, "systemd", 'S', 1, 100), STATUS, &[]);
        fake.process(
            4248,
            &stat_line(4248, "other", 'S', 9999, 31000),
            STATUS,
            &[(9, "socket:[4869]")],
        );
        fake.process(3736, STAT_ZOMBIE, STATUS, &[]);
        fake.file(
            "4245/stat",
            stat_line(4245, "kworker", 'I', 2, 5).as_bytes(),
        );
        fake.file("net/unix", b"");
        fake
    }

    #[test]
    fn fake_tree_holder_fields() {
        let fake = fake_tree();
        let state = fake.discovery().discover(35981, Protocol::Tcp).unwrap();
        assert_eq!(state.port, 35981);
        assert_eq!(state.protocol, Protocol::Tcp);
        assert_eq!(
            state.sockets,
            vec![entry("127.0.0.1:35981", "0.0.0.0:0", 0x0A, 0, 4665)]
        );
        assert_eq!(
            state.others,
            vec![entry("127.0.0.1:35981", "127.0.0.1:39034", 0x01, 0, 5358)]
        );
        assert_eq!(state.holders().len(), 2);
        let hz = rustix::param::clock_ticks_per_second();
        let master = &state.holders()[0];
        assert_eq!(
            *master,
            Holder {
                pid: Some(4242),
                ppid: Some(1),
                uid: 1000,
                user: crate::discovery::users::name_of(1000),
                exe: Some("/usr/bin/python3.11".into()),
                cmdline: Some(parse_cmdline(CMDLINE)),
                comm: Some("my (weird) proc".into()),
                start_ticks: Some(22778),
                age_ms: Some(228_210 - 22778 * 1000 / hz),
                orphan: Some(true),
                stopped: Some(false),
                unit: None,
                container: None,
                container_error: None,
                addrs: vec![v4("127.0.0.1:35981")],
                inodes: vec![4665],
                unknown: None,
            }
        );
        let worker = &state.holders()[1];
        assert_eq!((worker.pid, worker.ppid), (Some(4243), Some(4242)));
        assert_eq!(worker.comm.as_deref(), Some("worker"));
        // Parent alive and not a subreaper.
        assert_eq!(worker.orphan, Some(false));
        assert_eq!(
            state.groups(),
            vec![Group {
                root: 0,
                members: vec![0, 1]
            }]
        );
    }

    #[test]
    fn fake_tree_orphan_detection_and_ipv6() {
        let fake = fake_tree();
        let state = fake.discovery().discover(52509, Protocol::Tcp).unwrap();
        assert_eq!(
            state.sockets,
            vec![entry("[::]:52509", "[::]:0", 0x0A, 65534, 4869)]
        );
        assert_eq!(
            state.others.iter().map(|s| s.inode).collect::<Vec<_>>(),
            [4871]
        );
        let summary: Vec<_> = state
            .holders()
            .iter()
            .map(|h| (h.pid, h.orphan, h.uid, h.addrs.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                // Parent is a `systemd --user` subreaper.
                (Some(4246), Some(true), 0, vec![v4("[::]:52509")]),
                // Parent not visible: unknown, not "alive".
                (Some(4248), None, 0, vec![v4("[::]:52509")]),
            ]
        );
        // Same socket but not parent and child: two groups.
        assert_eq!(state.groups().len(), 2);
    }

    #[test]
    fn a_proc_of_another_pid_namespace_names_no_pids() {
        // Under `unshare --pid` with the host's /proc, `self` names another
        // pid than ours: its pids would name strangers here.
        let fake = fake_tree();
        fs::remove_file(fake.root().join("self")).unwrap();
        fake.link("self", "4242");
        let state = fake.discovery().discover(35981, Protocol::Tcp).unwrap();
        assert!(!state.holders().is_empty());
        for h in state.holders() {
            assert_eq!(
                (h.pid, h.unknown),
                (None, Some(Unknown::ForeignPidNamespace))
            );
        }
    }

    #[test]
    fn fake_tree_socket_without_process_is_a_pidless_holder() {
        let fake = fake_tree();
        let state = fake.discovery().discover(2024, Protocol::Tcp).unwrap();
        let mut unseen =
            Holder::unseen(0, vec![v4("0.0.0.0:2024")], vec![1604], Unknown::NotVisible);
        unseen.user = crate::discovery::users::name_of(0);
        assert_eq!(state.holders(), [unseen]);
        assert_eq!(
            state.groups(),
            vec![Group {
                root: 0,
                members: vec![0]
            }]
        );
    }

    #[test]
    fn fake_tree_unreadable_fds_explain_a_foreign_socket() {
        let fake = FakeProc::new(Some(NET_TCP_NOBODY), Some(NET_TCP6_DUALSTACK));
        // An fd "directory" that cannot be listed stands in for EACCES,
        // which root (who runs these tests in CI) never gets.
        fake.file("777/stat", stat_line(777, "secret", 'S', 1, 5).as_bytes());
        fake.file("777/fd", b"");
        let state = fake.discovery().discover(52509, Protocol::Tcp).unwrap();
        assert_eq!(state.holders().len(), 1);
        let holder = &state.holders()[0];
        assert_eq!((holder.pid, holder.uid), (None, 65534));
        let euid = rustix::process::geteuid().as_raw();
        let want = if euid == 65534 {
            Unknown::NotVisible
        } else {
            Unknown::NotYourProcess
        };
        assert_eq!(holder.unknown, Some(want));
    }

    #[test]
    fn fake_tree_free_port_and_holding_sockets() {
        let fake = fake_tree();
        let discovery = fake.discovery();
        let free = discovery.discover(1, Protocol::Tcp).unwrap();
        assert!(free.is_free());
        assert!(free.holders().is_empty() && free.groups().is_empty() && free.others.is_empty());
        // An outgoing connection's port is not held.
        let client = discovery.discover(39034, Protocol::Tcp).unwrap();
        assert!(client.is_free());
        assert_eq!(
            client.others.iter().map(|s| s.inode).collect::<Vec<_>>(),
            [5357]
        );
        assert_eq!(
            discovery.holding_sockets(35981, Protocol::Tcp).unwrap(),
            vec![entry("127.0.0.1:35981", "0.0.0.0:0", 0x0A, 0, 4665)]
        );
    }

    #[test]
    fn missing_ipv6_table_is_fine_missing_ipv4_is_not() {
        let fake = FakeProc::new(Some(NET_TCP), None);
        let state = fake.discovery().discover(2024, Protocol::Tcp).unwrap();
        assert_eq!(state.sockets.len(), 1);

        let fake = FakeProc::new(None, Some(NET_TCP6));
        match fake.discovery().discover(2024, Protocol::Tcp) {
            Err(DiscoveryError::SocketTable { path, source }) => {
                assert!(path.ends_with("/net/tcp"), "{path}");
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
        // No UDP tables at all in this tree.
        assert!(matches!(
            fake.discovery().holding_sockets(53, Protocol::Udp),
            Err(DiscoveryError::SocketTable { .. })
        ));
    }

    #[test]
    fn malformed_table_fails_discovery() {
        let fake = FakeProc::new(Some("header\n   0: garbage\n"), None);
        match fake.discovery().discover(80, Protocol::Tcp) {
            Err(DiscoveryError::Parse { path, line }) => {
                assert!(path.ends_with("/net/tcp"), "{path}");
                assert_eq!(line, "   0: garbage");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fake_tree_process_table() {
        let fake = fake_tree();
        let table = fake.table();
        assert_eq!(
            table.identity(4242),
            Some(ProcessId {
                pid: 4242,
                start_ticks: 22778
            })
        );
        assert_eq!(table.identity(3736), None, "zombie");
        assert_eq!(table.identity(5555), None, "no such process");
        assert_eq!(table.parent(4243), Some(4242));
        assert_eq!(table.parent(3736), Some(3695));
        assert_eq!(table.parent(5555), None);
        assert_eq!(table.holds_any(4242, &[4665]), Some(true));
        assert_eq!(table.holds_any(4242, &[1, 4869, 4665]), Some(true));
        assert_eq!(table.holds_any(4242, &[4869]), Some(false));
        assert_eq!(table.holds_any(4242, &[]), Some(false));
        assert_eq!(table.holds_any(5555, &[4665]), Some(false), "gone");
        fake.file("778/fd", b"");
        assert_eq!(table.holds_any(778, &[4665]), None, "unreadable");
    }

    // ---- real sockets and processes -----------------------------------

    fn our_uid() -> u32 {
        rustix::process::getuid().as_raw()
    }

    fn our_start_ticks() -> u64 {
        parse_stat(&fs::read_to_string("/proc/self/stat").unwrap())
            .unwrap()
            .start_ticks
    }

    fn assert_is_us(holder: &Holder) {
        assert_eq!(holder.pid, Some(std::process::id()));
        assert_eq!(holder.uid, our_uid());
        assert_eq!(holder.user, crate::discovery::users::name_of(our_uid()));
        let argv: Vec<String> = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(holder.cmdline.as_ref(), Some(&argv));
        let exe = fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(holder.exe.as_deref(), exe.to_str());
        assert_eq!(holder.start_ticks, Some(our_start_ticks()));
        assert!(holder.age_ms.is_some());
        assert!(holder.orphan.is_some());
        assert_eq!(holder.unknown, None);
        assert!(holder.comm.is_some());
    }

    #[test]
    fn own_tcp_listener_v4() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = ProcfsDiscovery::default()
            .discover(addr.port(), Protocol::Tcp)
            .unwrap();
        assert_eq!(state.sockets.len(), 1);
        assert_eq!(state.sockets[0].local, addr);
        assert_eq!(state.sockets[0].state, SocketEntry::TCP_LISTEN);
        assert_eq!(state.sockets[0].uid, rustix::process::geteuid().as_raw());
        assert_eq!(state.holders().len(), 1);
        assert_is_us(&state.holders()[0]);
        assert_eq!(state.holders()[0].addrs, vec![addr]);
        assert_eq!(state.holders()[0].inodes, vec![state.sockets[0].inode]);
        assert_eq!(
            state.groups(),
            vec![Group {
                root: 0,
                members: vec![0]
            }]
        );
        assert_eq!(
            ProcfsTable::default().holds_any(std::process::id(), &state.holders()[0].inodes),
            Some(true)
        );
    }

    fn bind_v6(port: u16) -> Option<TcpListener> {
        match TcpListener::bind((Ipv6Addr::LOCALHOST, port)) {
            Ok(listener) => Some(listener),
            Err(err) => {
                eprintln!("IPv6 loopback unavailable, skipping: {err}");
                None
            }
        }
    }

    #[test]
    fn own_tcp_listener_v6() {
        let Some(listener) = bind_v6(0) else { return };
        let addr = listener.local_addr().unwrap();
        let state = ProcfsDiscovery::default()
            .discover(addr.port(), Protocol::Tcp)
            .unwrap();
        assert_eq!(state.holders().len(), 1);
        assert_is_us(&state.holders()[0]);
        assert_eq!(state.holders()[0].addrs, vec![addr]);
    }

    #[test]
    fn one_process_on_v4_and_v6_is_one_holder() {
        let v4_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = v4_listener.local_addr().unwrap().port();
        let Some(v6_listener) = bind_v6(port) else {
            return;
        };
        let state = ProcfsDiscovery::default()
            .discover(port, Protocol::Tcp)
            .unwrap();
        assert_eq!(state.sockets.len(), 2);
        assert_eq!(state.holders().len(), 1);
        let holder = &state.holders()[0];
        assert_is_us(holder);
        assert_eq!(
            holder.addrs,
            vec![
                v4_listener.local_addr().unwrap(),
                v6_listener.local_addr().unwrap()
            ]
        );
        assert_eq!(holder.inodes.len(), 2);
        assert_eq!(state.groups().len(), 1);
    }

    #[test]
    fn own_udp_socket() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let discovery = ProcfsDiscovery::default();
        let state = discovery.discover(addr.port(), Protocol::Udp).unwrap();
        assert_eq!(state.sockets.len(), 1);
        assert_eq!(state.sockets[0].local, addr);
        assert_eq!(state.holders().len(), 1);
        assert_is_us(&state.holders()[0]);
        // The same number over TCP is a different port (which something
        // else on a busy machine may hold, but not us).
        assert!(discovery
            .discover(addr.port(), Protocol::Tcp)
            .unwrap()
            .holders()
            .iter()
            .all(|h| h.pid != Some(std::process::id())));
    }

    #[test]
    fn a_connection_holds_its_port_only_when_it_blocks_a_bind() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let client = TcpStream::connect(server).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let client_addr = client.local_addr().unwrap();
        let discovery = ProcfsDiscovery::default();

        // Nothing listens on the client's port, but no server could bind
        // it: the connection's owner (this process) holds it.
        let state = discovery
            .discover(client_addr.port(), Protocol::Tcp)
            .unwrap();
        assert_eq!(state.probe, Some(crate::model::BindProbe::InUse));
        // Other connections on a busy machine may share the ephemeral port
        // number (with other peers), so look for ours among the sockets.
        let ours: Vec<_> = state
            .sockets
            .iter()
            .filter(|o| o.remote == server)
            .collect();
        assert_eq!(ours.len(), 1, "{:?}", state.sockets);
        assert_eq!(ours[0].local, client_addr);
        assert_eq!(ours[0].state_name(), "ESTABLISHED");
        assert!(state
            .holders()
            .iter()
            .any(|h| h.pid == Some(std::process::id()) && h.inodes.contains(&ours[0].inode)));

        let state = discovery.discover(server.port(), Protocol::Tcp).unwrap();
        assert_eq!(state.sockets.len(), 1);
        assert_eq!(
            state
                .others
                .iter()
                .filter(|o| o.remote == client_addr)
                .count(),
            1,
            "{:?}",
            state.others
        );
        assert_eq!(state.holders().len(), 1);
        assert_eq!(state.holders()[0].inodes, vec![state.sockets[0].inode]);
        drop(accepted);
    }

    #[test]
    fn released_port_is_free() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let discovery = ProcfsDiscovery::default();
        assert!(!discovery.discover(port, Protocol::Tcp).unwrap().is_free());
        assert_eq!(
            discovery
                .holding_sockets(port, Protocol::Tcp)
                .unwrap()
                .len(),
            1
        );
        let inode = discovery.holding_sockets(port, Protocol::Tcp).unwrap()[0].inode;
        drop(listener);
        // Another test may bind the released number at once (ports come from
        // the kernel), so what must be gone is our socket, and us as a holder.
        let state = discovery.discover(port, Protocol::Tcp).unwrap();
        assert!(state.sockets.iter().all(|s| s.inode != inode));
        assert!(state
            .holders()
            .iter()
            .all(|h| h.pid != Some(std::process::id())));
        assert!(discovery
            .holding_sockets(port, Protocol::Tcp)
            .unwrap()
            .iter()
            .all(|s| s.inode != inode));
    }

    /// The interpreter for helper processes; a real binary, not a pyenv
    /// shim, so the pid we spawn is the pid that binds.
    fn python() -> PathBuf {
        ["/usr/bin/python3", "/bin/python3", "/usr/local/bin/python3"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("python3"))
    }

    /// Processes this test started; SIGKILLed by pid on drop (extra pids
    /// first, while the child still keeps them from being reaped and reused).
    struct Spawned {
        child: Child,
        extra: Vec<u32>,
    }

    impl Drop for Spawned {
        fn drop(&mut self) {
            for &pid in &self.extra {
                if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Run `script` and read the numbers it prints on its first line.
    fn spawn_python(script: &str) -> (Spawned, Vec<u32>) {
        let mut child = Command::new(python())
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut spawned = Spawned {
            child,
            extra: Vec::new(),
        };
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let numbers: Vec<u32> = line
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        spawned.extra = numbers.get(1..).unwrap_or_default().to_vec();
        (spawned, numbers)
    }

    const LISTEN_AND_SLEEP: &str = "import socket, time
s = socket.socket()
s.bind(('127.0.0.1', 0))
s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(60)
";

    #[test]
    fn foreign_process_holder() {
        let before = Instant::now();
        let (spawned, numbers) = spawn_python(LISTEN_AND_SLEEP);
        let port = u16::try_from(numbers[0]).unwrap();
        let pid = spawned.child.id();
        let state = ProcfsDiscovery::default()
            .discover(port, Protocol::Tcp)
            .unwrap();
        assert_eq!(state.holders().len(), 1);
        let holder = &state.holders()[0];
        assert_eq!(holder.pid, Some(pid));
        assert_eq!(holder.ppid, Some(std::process::id()));
        assert_eq!(holder.uid, our_uid());
        assert_eq!(
            holder.cmdline,
            Some(vec![
                python().to_string_lossy().into_owned(),
                "-c".into(),
                LISTEN_AND_SLEEP.into()
            ])
        );
        if python().is_absolute() {
            let exe = fs::canonicalize(python()).unwrap();
            assert_eq!(holder.exe.as_deref(), exe.to_str());
        }
        assert_eq!(holder.addrs, vec![v4(&format!("127.0.0.1:{port}"))]);
        assert_eq!(holder.orphan, Some(false));
        // Started after us, and recently.
        assert!(holder.start_ticks.unwrap() >= our_start_ticks());
        let age = holder.age_ms.unwrap();
        let elapsed = u64::try_from(before.elapsed().as_millis()).unwrap();
        // Tick granularity (10 ms at 100 Hz) plus uptime's 10 ms resolution.
        assert!(
            age <= elapsed + 50,
            "age {age} ms, spawned {elapsed} ms ago"
        );

        let table = ProcfsTable::default();
        assert_eq!(table.identity(pid), holder.id());
        assert_eq!(table.parent(pid), Some(std::process::id()));
        assert_eq!(table.holds_any(pid, &holder.inodes), Some(true));
        assert_eq!(table.holds_any(pid, &[u64::MAX]), Some(false));

        let inodes = holder.inodes.clone();
        drop(spawned);
        assert_eq!(table.identity(pid), None);
        assert_eq!(table.holds_any(pid, &inodes), Some(false));
        assert_eq!(table.parent(pid), None);
        assert!(ProcfsDiscovery::default()
            .discover(port, Protocol::Tcp)
            .unwrap()
            .is_free());
    }

    #[test]
    fn zombie_is_not_an_identity() {
        let (mut spawned, _) = spawn_python(LISTEN_AND_SLEEP);
        let pid = spawned.child.id();
        let table = ProcfsTable::default();
        assert!(table.identity(pid).is_some());
        // SIGKILL without reaping: the child stays a zombie until waited for.
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while PidDir::open(Path::new("/proc"), pid)
            .and_then(|d| d.stat())
            .map(|s| s.state)
            != Some('Z')
        {
            assert!(Instant::now() < deadline, "child did not become a zombie");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(table.identity(pid), None);
        assert_eq!(table.holds_any(pid, &[1]), Some(false));
        assert_eq!(table.parent(pid), Some(std::process::id()));
        let _ = spawned.child.wait();
    }

    const FORKED_WORKERS: &str = "import os, socket, time
s = socket.socket()
s.bind(('127.0.0.1', 0))
s.listen()
master = os.getpid()
kids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        while os.getppid() == master:
            time.sleep(0.05)
        os._exit(0)
    kids.append(pid)
print(s.getsockname()[1], *kids, flush=True)
time.sleep(60)
";

    #[test]
    fn forked_workers_are_one_group() {
        let (spawned, numbers) = spawn_python(FORKED_WORKERS);
        let port = u16::try_from(numbers[0]).unwrap();
        let master = spawned.child.id();
        let mut expected = vec![master, numbers[1], numbers[2]];
        expected.sort_unstable();
        let state = ProcfsDiscovery::default()
            .discover(port, Protocol::Tcp)
            .unwrap();
        assert_eq!(state.sockets.len(), 1);
        let pids: Vec<u32> = state.holders().iter().filter_map(|h| h.pid).collect();
        assert_eq!(pids, expected);
        for holder in state.holders() {
            assert_eq!(holder.inodes, vec![state.sockets[0].inode]);
            assert_eq!(holder.cmdline.as_ref().map(|c| c[1].as_str()), Some("-c"));
        }
        let root = state
            .holders()
            .iter()
            .position(|h| h.pid == Some(master))
            .unwrap();
        let mut members = vec![root];
        members.extend(
            state
                .holders()
                .iter()
                .enumerate()
                .filter(|(_, h)| h.pid != Some(master))
                .map(|(i, _)| i),
        );
        assert_eq!(state.groups(), vec![Group { root, members }]);
        for worker in &numbers[1..] {
            let holder = state
                .holders()
                .iter()
                .find(|h| h.pid == Some(*worker))
                .unwrap();
            assert_eq!(holder.ppid, Some(master));
            assert_eq!(holder.orphan, Some(false));
        }
    }

    #[test]
    fn ancestors_start_with_us_and_end_at_init() {
        let chain = self_and_ancestors();
        assert_eq!(chain[0], std::process::id());
        assert_eq!(chain.last(), Some(&1));
        let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32);
        if let Some(parent) = parent {
            assert_eq!(chain.get(1), Some(&parent));
        }
        let mut unique = chain.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), chain.len());
    }
}
