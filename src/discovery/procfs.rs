//! Linux discovery through `/proc`: the socket tables in `/proc/net` say which
//! sockets hold a port, and the `socket:[INODE]` links in `/proc/PID/fd` say
//! which processes hold those sockets.
//!
//! This needs no helper binary (`ss`, `lsof`) and no privileges beyond what
//! the kernel grants for reading `/proc`. What it guarantees:
//!
//! - A free port costs two small file reads and no process scan, because the
//!   common case of a pre-start hook is "nothing is there". (Small on an idle
//!   host: the kernel formats every socket, so the netlink backend, which
//!   shares the owner scan below, is the default.)
//! - The owner scan is one pass over `/proc/*/fd` that reads each fd link
//!   into a stack buffer and compares inode numbers, shared out to one
//!   thread per core; it is the cost of discovery on a busy host (~3.5 µs of
//!   kernel time per open fd: the readlink and its share of the listing).
//! - A process that exits while it is being inspected is simply not a holder;
//!   it is never an error and never a panic.
//! - A holding socket whose process cannot be seen still becomes a holder
//!   (with the socket's uid and no pid) together with the reason, so a policy
//!   never mistakes "I could not look" for "nobody is there".
//!
//! The parsers are pure functions on the text the kernel prints, so they are
//! tested against recorded output (`tests/fixtures/proc/`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::CStr;
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::fs::{Mode, OFlags, RawDir, CWD};
use rustix::io::Errno;

use super::{group_holders, Discovery, DiscoveryError, ProcessTable};
use crate::model::{Holder, PortState, ProcessId, Protocol, SocketEntry};

/// Where procfs is normally mounted.
pub const DEFAULT_PROC_ROOT: &str = "/proc";

/// Parse one of `/proc/net/{tcp,tcp6,udp,udp6}` into its rows.
///
/// `path` only names the file in errors. The header line is skipped. Any row
/// that does not have the kernel's shape is a [`DiscoveryError::Parse`]:
/// silently skipping it could hide a holder and lead a policy to act as if
/// the port were free.
pub fn parse_net_table(text: &str, path: &str) -> Result<Vec<SocketEntry>, DiscoveryError> {
    text.lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            parse_net_row(line).ok_or_else(|| DiscoveryError::Parse {
                path: path.to_owned(),
                line: line.to_owned(),
            })
        })
        .collect()
}

/// One table row: `sl: local remote st tx:rx tr:when retrnsmt uid timeout inode ...`.
fn parse_net_row(line: &str) -> Option<SocketEntry> {
    let mut fields = line.split_ascii_whitespace();
    let slot = fields.next()?;
    if !slot.ends_with(':') {
        return None;
    }
    let local = parse_net_addr(fields.next()?)?;
    let remote = parse_net_addr(fields.next()?)?;
    let state = parse_hex_u8(fields.next()?)?;
    // tx_queue:rx_queue, tr:tm->when, retrnsmt: not needed.
    let mut fields = fields.skip(3);
    let uid = parse_decimal(fields.next()?)?;
    let _timeout = fields.next()?;
    let inode = parse_decimal(fields.next()?)?;
    Some(SocketEntry {
        local,
        remote,
        state,
        uid,
        inode,
    })
}

/// `ADDR:PORT` where ADDR is 8 (IPv4) or 32 (IPv6) hex digits.
///
/// The kernel prints the address as 32-bit words in host byte order
/// (`%08X` of the in-memory `__be32`), so each word is converted back with
/// `to_ne_bytes`: that yields the network-order bytes on any host.
fn parse_net_addr(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    if port.len() != 4 {
        return None;
    }
    let port = u16::from_str_radix(hex_digits(port)?, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(host_word(addr)?.to_ne_bytes())),
        32 => {
            let mut octets = [0u8; 16];
            for (i, chunk) in octets.chunks_exact_mut(4).enumerate() {
                let word = host_word(addr.get(i * 8..i * 8 + 8)?)?;
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Eight hex digits printed from a host-order `u32`.
fn host_word(hex: &str) -> Option<u32> {
    if hex.len() != 8 {
        return None;
    }
    u32::from_str_radix(hex_digits(hex)?, 16).ok()
}

fn parse_hex_u8(field: &str) -> Option<u8> {
    u8::from_str_radix(hex_digits(field)?, 16).ok()
}

/// `from_str_radix` accepts a leading `+`; the kernel never prints one, so a
/// field with anything but hex digits is malformed.
fn hex_digits(field: &str) -> Option<&str> {
    (!field.is_empty() && field.bytes().all(|b| b.is_ascii_hexdigit())).then_some(field)
}

/// A decimal number made of digits only (no sign), as the kernel prints it.
fn parse_decimal<T: std::str::FromStr>(field: &str) -> Option<T> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

/// Split table rows by their local port: rows on `port` that hold it for
/// `proto` (see [`SocketEntry::holds`]) come first, the other rows on `port`
/// (outgoing or accepted connections) second. Rows on other ports are dropped.
///
/// Only the local port counts: a connection *to* the port from elsewhere
/// does not occupy it.
pub fn split_holding(
    rows: Vec<SocketEntry>,
    port: u16,
    proto: Protocol,
) -> (Vec<SocketEntry>, Vec<SocketEntry>) {
    rows.into_iter()
        .filter(|row| row.local.port() == port)
        .partition(|row| row.holds(proto))
}

/// The fields of `/proc/PID/stat` discovery and the safety checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Process id (field 1).
    pub pid: u32,
    /// Command name (field 2), without the surrounding parentheses. It may
    /// itself contain spaces and parentheses.
    pub comm: String,
    /// State letter (field 3): `R`, `S`, `D`, `Z` (zombie), ...
    pub state: char,
    /// Parent pid (field 4); 0 for pid 1 and for processes whose parent is
    /// outside this pid namespace.
    pub ppid: u32,
    /// Start time in clock ticks since boot (field 22): with the pid, the
    /// identity that survives pid reuse.
    pub start_ticks: u64,
    /// Kernel `PF_*` flags (field 9), e.g. `PF_KTHREAD`.
    pub flags: u32,
}

/// Parse `/proc/PID/stat`.
///
/// The command name is taken between the first `(` and the *last* `)`,
/// because a process can name itself `a) S 1 (b` and the numeric fields
/// only begin after the final parenthesis. `None` for anything malformed.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = parse_decimal(text[..open].trim())?;
    let comm = text[open + 1..close].to_owned();
    // Index 0 of `rest` is field 3 (state).
    let rest: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    let mut state_chars = rest.first()?.chars();
    let state = state_chars.next()?;
    if state_chars.next().is_some() {
        return None;
    }
    Some(Stat {
        pid,
        comm,
        state,
        ppid: parse_decimal(rest.get(1)?)?,
        flags: parse_decimal(rest.get(6)?)?,
        start_ticks: parse_decimal(rest.get(19)?)?,
    })
}

/// The real uid from `/proc/PID/status` (first number of the `Uid:` line:
/// real, effective, saved, filesystem).
///
/// The real uid is who started the process; a setuid program keeps the
/// caller's real uid, which is what "a process of your user" means.
pub fn parse_status_uid(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_ascii_whitespace().next())
        .and_then(parse_decimal)
}

/// Split `/proc/PID/cmdline` into argv.
///
/// Arguments are NUL-terminated; the final terminator's empty piece is
/// dropped, but empty arguments inside are kept. Bytes that are not UTF-8
/// are replaced (lossy) so the policy's regexes can still be applied.
pub fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    bytes
        .split(|&b| b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// The inode of an fd link target of the form `socket:[12345]`; `None` for
/// any other target (files, pipes, anon inodes).
pub fn parse_socket_link(target: &[u8]) -> Option<u64> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |inode, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        inode.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Milliseconds since boot from `/proc/uptime` (`SECONDS.FRACTION IDLE`).
///
/// Parsed as integers rather than `f64` so that ages computed from it do not
/// wobble by rounding.
pub fn parse_uptime_ms(text: &str) -> Option<u64> {
    let first = text.split_ascii_whitespace().next()?;
    let (secs, frac) = first.split_once('.').unwrap_or((first, ""));
    let secs: u64 = parse_decimal(secs)?;
    let mut millis = 0u64;
    for (i, b) in frac.bytes().enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        if i < 3 {
            millis = millis * 10 + u64::from(b - b'0');
        }
    }
    for _ in frac.len()..3 {
        millis *= 10;
    }
    secs.checked_mul(1000)?.checked_add(millis)
}

/// Why a holding socket has no visible process, for the trace.
///
/// `fd_dirs_unreadable` says whether any `/proc/PID/fd` could not be read
/// during the scan. Only then, and only for a socket of another uid, is the
/// fix "run as that user or as root"; otherwise the process really is out of
/// sight (another pid namespace) or the socket is being torn down.
pub fn unknown_owner_reason(
    fd_dirs_unreadable: bool,
    socket_uid: u32,
    user: Option<&str>,
    euid: u32,
) -> String {
    if fd_dirs_unreadable && socket_uid != euid {
        let owner = match user {
            Some(name) => format!("uid {socket_uid} ({name})"),
            None => format!("uid {socket_uid}"),
        };
        format!(
            "cannot inspect: owned by {owner}, not your process; \
             run as that user or as root to see the pid"
        )
    } else {
        "no visible process holds the socket (another pid namespace, or it is being closed)"
            .to_owned()
    }
}

/// [`Discovery`] backed by a procfs mount.
///
/// The root is configurable so tests can point it at a directory that
/// imitates `/proc`; real use takes [`Default`] (`/proc`).
#[derive(Debug, Clone)]
pub struct ProcfsDiscovery {
    root: PathBuf,
}

impl Default for ProcfsDiscovery {
    fn default() -> Self {
        Self::new(DEFAULT_PROC_ROOT)
    }
}

impl ProcfsDiscovery {
    /// Discovery reading procfs mounted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The procfs root this backend reads.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The rows of the socket tables for `proto` whose local port is `port`,
    /// IPv4 then IPv6.
    ///
    /// The tables are streamed line by line and only matching rows are kept:
    /// on a busy host they are megabytes of text (60,000 connections are
    /// about 9 MB), and holding them whole would dominate portguard's memory.
    /// Every row is still parsed, so a malformed one is an error wherever it
    /// is. A missing IPv6 table means IPv6 is disabled, which is not an
    /// error; any other failure is, because an unread table could hide a
    /// holder.
    pub fn read_port_rows(
        &self,
        port: u16,
        proto: Protocol,
    ) -> Result<Vec<SocketEntry>, DiscoveryError> {
        let (v4, v6) = match proto {
            Protocol::Tcp => ("net/tcp", "net/tcp6"),
            Protocol::Udp => ("net/udp", "net/udp6"),
        };
        let mut rows = Vec::new();
        for (file, optional) in [(v4, false), (v6, true)] {
            let path = self.root.join(file);
            let failed = |source| DiscoveryError::SocketTable {
                path: path.display().to_string(),
                source,
            };
            let file = match fs::File::open(&path) {
                Ok(file) => file,
                Err(err) if optional && err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(failed(err)),
            };
            let mut reader = io::BufReader::with_capacity(64 * 1024, file);
            let mut line = String::new();
            let mut header = true;
            loop {
                line.clear();
                match io::BufRead::read_line(&mut reader, &mut line) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(err) => return Err(failed(err)),
                }
                if std::mem::take(&mut header) || line.trim().is_empty() {
                    continue;
                }
                let row = parse_net_row(&line).ok_or_else(|| DiscoveryError::Parse {
                    path: path.display().to_string(),
                    line: line.trim_end().to_owned(),
                })?;
                if row.local.port() == port {
                    rows.push(row);
                }
            }
        }
        Ok(rows)
    }

    /// Fill in the holders of `state.sockets`: one pass over every
    /// `/proc/PID/fd`, then the details of each holding process, then a
    /// pid-less holder for every socket no visible process holds.
    ///
    /// Public to the crate so the netlink backend, which finds the sockets
    /// differently, shares the owner scan and so gives identical holders.
    pub(crate) fn add_holders(&self, mut state: PortState) -> PortState {
        if state.sockets.is_empty() {
            // The hot path of a pre-start hook: no process scan at all.
            return state;
        }
        let mut wanted: Vec<u64> = state.sockets.iter().map(|s| s.inode).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let scan = self.scan_processes(&wanted);
        let mut ctx = Context::new(&self.root);
        let mut seen = HashSet::new();
        for (&pid, inodes) in &scan.holders {
            if let Some(holder) = self.inspect(pid, inodes, &state.sockets, &mut ctx) {
                seen.extend(holder.inodes.iter().copied());
                state.holders.push(holder);
            }
        }
        let euid = rustix::process::geteuid().as_raw();
        for socket in state.sockets.iter().filter(|s| !seen.contains(&s.inode)) {
            let user = ctx.user(socket.uid);
            let reason = unknown_owner_reason(scan.unreadable, socket.uid, user.as_deref(), euid);
            state.holders.push(Holder {
                pid: None,
                ppid: None,
                uid: socket.uid,
                user,
                exe: None,
                cmdline: None,
                comm: None,
                start_ticks: None,
                age_ms: None,
                orphan: None,
                addrs: vec![socket.local],
                inodes: vec![socket.inode],
                unknown_reason: Some(reason),
            });
        }
        state.groups = group_holders(&state.holders);
        state
    }

    /// One pass over every `/proc/PID/fd`: which pids hold which of `wanted`
    /// (sorted socket inodes).
    ///
    /// This is where discovery spends its time on a busy host: one
    /// `readlinkat` per open fd of every process (100,000 fds are ~0.3 s of
    /// kernel time), so the pid list is shared out to one thread per core
    /// once it is long enough to pay for the threads.
    fn scan_processes(&self, wanted: &[u64]) -> ProcessScan {
        let unreadable = ProcessScan {
            unreadable: true,
            ..ProcessScan::default()
        };
        let Ok(root) = rustix::fs::open(
            &self.root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return unreadable;
        };
        let (pids, listing_failed) = list_pids(root.as_fd());
        let threads = scan_threads(pids.len());
        let next = AtomicUsize::new(0);
        let work = || scan_some(root.as_fd(), &pids, &next, wanted);
        let mut scan = if threads <= 1 {
            work()
        } else {
            scan_in_parallel(threads, work)
        };
        scan.unreadable |= listing_failed;
        scan
    }

    fn read_stat(&self, pid: u32) -> Option<Stat> {
        read_stat_at(&self.root, pid)
    }

    /// Everything about one holding process, or `None` if it is gone.
    fn inspect(
        &self,
        pid: u32,
        inodes: &[u64],
        sockets: &[SocketEntry],
        ctx: &mut Context,
    ) -> Option<Holder> {
        let stat = self.read_stat(pid)?;
        let dir = self.root.join(pid.to_string());
        let held: Vec<&SocketEntry> = sockets
            .iter()
            .filter(|s| inodes.contains(&s.inode))
            .collect();
        let uid = fs::read_to_string(dir.join("status"))
            .ok()
            .as_deref()
            .and_then(parse_status_uid)
            .or_else(|| held.first().map(|s| s.uid))?;
        let exe = fs::read_link(dir.join("exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        // An empty cmdline means the kernel no longer has the argv (kernel
        // thread, or the process is exiting): unknown rather than "no args".
        let cmdline = fs::read(dir.join("cmdline"))
            .ok()
            .map(|bytes| parse_cmdline(&bytes))
            .filter(|argv| !argv.is_empty());
        let orphan = if stat.ppid <= 1 {
            Some(true)
        } else {
            // A user manager (`systemd --user`) is a subreaper: children of a
            // closed session end up there rather than under pid 1. If the
            // parent cannot be read, whether it exited is unknown.
            self.read_stat(stat.ppid)
                .map(|parent| parent.comm == "systemd")
        };
        let age_ms = ctx.age_ms(stat.start_ticks);
        let (addrs, held_inodes) = crate::model::addrs_and_inodes(held);
        Some(Holder {
            pid: Some(pid),
            ppid: Some(stat.ppid),
            uid,
            user: ctx.user(uid),
            exe,
            cmdline,
            comm: Some(stat.comm),
            start_ticks: Some(stat.start_ticks),
            age_ms,
            orphan,
            addrs,
            inodes: held_inodes,
            unknown_reason: None,
        })
    }
}

impl Discovery for ProcfsDiscovery {
    fn discover(&self, port: u16, proto: Protocol) -> Result<PortState, DiscoveryError> {
        let (sockets, others) = split_holding(self.read_port_rows(port, proto)?, port, proto);
        Ok(self.add_holders(PortState::new(port, proto, sockets, others)))
    }

    fn holding_sockets(
        &self,
        port: u16,
        proto: Protocol,
    ) -> Result<Vec<SocketEntry>, DiscoveryError> {
        Ok(split_holding(self.read_port_rows(port, proto)?, port, proto).0)
    }
}

/// Result of the fd scan over all processes.
#[derive(Debug, Default)]
struct ProcessScan {
    /// pid → holding inodes it has fds on; ordered so holders come out by pid.
    holders: BTreeMap<u32, Vec<u64>>,
    /// Whether some process's fds could not be read (permission denied).
    unreadable: bool,
}

impl ProcessScan {
    fn merge(&mut self, other: ProcessScan) {
        self.holders.extend(other.holders);
        self.unreadable |= other.unreadable;
    }
}

/// Below this many processes one thread is as fast: starting a second one
/// (~60 µs) costs about what scanning a few dozen small processes does. At
/// 125 processes (70 of them kernel threads) two threads already take
/// `who` from 7.6 to 6.4 ms on 2 cores.
const PARALLEL_MIN_PIDS: usize = 32;

/// Pids handed to a scanning thread at a time: small enough that one
/// process with thousands of fds does not leave the other thread idle.
const PIDS_PER_CHUNK: usize = 8;

/// How many threads to scan `pids` processes with.
fn scan_threads(pids: usize) -> usize {
    if pids < PARALLEL_MIN_PIDS {
        return 1;
    }
    // More threads than cores only contend; past 4 the kernel-side locks
    // of /proc lookups, not the cores, are the limit.
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Every numeric entry of the procfs root (one per process; threads are not
/// listed there), and whether the listing failed part-way (then the pids
/// read so far are still scanned, and the scan counts as unreadable).
fn list_pids(root: BorrowedFd<'_>) -> (Vec<u32>, bool) {
    let mut buf = [MaybeUninit::<u8>::uninit(); DIR_BUF];
    let mut entries = RawDir::new(root, &mut buf);
    let mut pids = Vec::with_capacity(1024);
    while let Some(entry) = entries.next() {
        let Ok(entry) = entry else {
            return (pids, true);
        };
        if let Some(pid) = parse_pid_name(entry.file_name().to_bytes()) {
            pids.push(pid);
        }
    }
    (pids, false)
}

/// A pid directory name; `None` for `self`, `net`, `sys`, ...
fn parse_pid_name(name: &[u8]) -> Option<u32> {
    if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    name.iter().try_fold(0u32, |n, &b| {
        n.checked_mul(10)?.checked_add(u32::from(b - b'0'))
    })
}

/// `PID/fd` as a C string in `buf`, without allocating.
fn fd_dir_path(pid: u32, buf: &mut [u8; 16]) -> Option<&CStr> {
    let mut digits = [0u8; 10];
    let mut n = pid;
    let mut len = 0;
    loop {
        *digits.get_mut(len)? = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (slot, &digit) in buf.iter_mut().zip(digits.get(..len)?.iter().rev()) {
        *slot = digit;
    }
    buf.get_mut(len..len + 4)?.copy_from_slice(b"/fd\0");
    CStr::from_bytes_with_nul(buf.get(..len + 4)?).ok()
}

/// Run `work` on `threads` threads (this one included) and merge what they
/// found.
fn scan_in_parallel(threads: usize, work: impl Fn() -> ProcessScan + Sync) -> ProcessScan {
    std::thread::scope(|scope| {
        // A thread that cannot be started leaves its share to the others:
        // the pid list is handed out in chunks, not split up front, so every
        // pid is scanned by whoever is running.
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(scope, &work).ok())
            .collect();
        let mut scan = work();
        for helper in helpers {
            match helper.join() {
                Ok(part) => scan.merge(part),
                // A helper's share is lost: never report a partial scan as
                // complete; let the panic surface.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        scan
    })
}

/// Scan chunks of `pids` (taken from `next`) until none are left.
fn scan_some(
    root: BorrowedFd<'_>,
    pids: &[u32],
    next: &AtomicUsize,
    wanted: &[u64],
) -> ProcessScan {
    let mut scan = ProcessScan::default();
    let mut path = [0u8; 16];
    // One getdents buffer per thread, reused for every process.
    let mut dir_buf = vec![MaybeUninit::<u8>::uninit(); DIR_BUF];
    loop {
        let start = next.fetch_add(PIDS_PER_CHUNK, Ordering::Relaxed);
        let Some(chunk) = pids.get(start..pids.len().min(start + PIDS_PER_CHUNK)) else {
            break;
        };
        if chunk.is_empty() {
            break;
        }
        for &pid in chunk {
            let Some(fd_dir) = fd_dir_path(pid, &mut path) else {
                continue;
            };
            match scan_fd_dir(root, fd_dir, &mut dir_buf, |inode| {
                wanted.binary_search(&inode).is_ok()
            }) {
                FdScan::Gone => {}
                FdScan::Unreadable => scan.unreadable = true,
                FdScan::Inodes(inodes) if inodes.is_empty() => {}
                FdScan::Inodes(inodes) => {
                    scan.holders.insert(pid, inodes);
                }
            }
        }
    }
    scan
}

/// getdents buffer size: a process with 4,000 fds lists in three calls.
const DIR_BUF: usize = 32 * 1024;

/// Per-discovery caches: the clock and user names are looked up once.
#[derive(Debug)]
struct Context {
    uptime_ms: Option<u64>,
    ticks_per_second: u64,
    users: HashMap<u32, Option<String>>,
}

impl Context {
    fn new(root: &Path) -> Self {
        Self {
            uptime_ms: fs::read_to_string(root.join("uptime"))
                .ok()
                .as_deref()
                .and_then(parse_uptime_ms),
            ticks_per_second: rustix::param::clock_ticks_per_second(),
            users: HashMap::new(),
        }
    }

    fn age_ms(&self, start_ticks: u64) -> Option<u64> {
        if self.ticks_per_second == 0 {
            return None;
        }
        let started_ms = start_ticks.saturating_mul(1000) / self.ticks_per_second;
        Some(self.uptime_ms?.saturating_sub(started_ms))
    }

    fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| crate::users::name_of(uid))
            .clone()
    }
}

/// What reading one process's fd directory showed.
#[derive(Debug)]
enum FdScan {
    /// The process no longer exists.
    Gone,
    /// The fds could not be read (permission denied, or another failure).
    Unreadable,
    /// The wanted socket inodes it has fds on (deduplicated).
    Inodes(Vec<u64>),
}

fn is_gone(err: Errno) -> bool {
    err == Errno::NOENT || err == Errno::SRCH
}

/// Read the fd directory `path` (relative to `dirfd`) and collect the socket
/// inodes for which `wanted` is true.
///
/// Links are read into a stack buffer and compared as numbers: a busy
/// server has thousands of fds and none of them needs a `String`. The
/// directory is listed into the caller's `dir_buf`, reused across processes.
fn scan_fd_dir<P: rustix::path::Arg>(
    dirfd: BorrowedFd<'_>,
    path: P,
    dir_buf: &mut [MaybeUninit<u8>],
    wanted: impl Fn(u64) -> bool,
) -> FdScan {
    let fd = match rustix::fs::openat(
        dirfd,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(err) if is_gone(err) => return FdScan::Gone,
        Err(_) => return FdScan::Unreadable,
    };
    let mut entries = RawDir::new(&fd, dir_buf);
    // `socket:[` + 20 digits + `]` fits; a longer target is not a socket.
    let mut link = [0u8; 64];
    let mut inodes = Vec::new();
    while let Some(entry) = entries.next() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) if is_gone(err) => return FdScan::Gone,
            Err(_) => return FdScan::Unreadable,
        };
        let name = entry.file_name();
        if name.to_bytes().first() == Some(&b'.') {
            continue;
        }
        match rustix::fs::readlinkat_raw(&fd, name, &mut link) {
            Ok(len) if len < link.len() => {
                if let Some(inode) = link.get(..len).and_then(parse_socket_link) {
                    if wanted(inode) && !inodes.contains(&inode) {
                        inodes.push(inode);
                    }
                }
            }
            // Truncated: longer than any socket link.
            Ok(_) => {}
            // The fd was closed between readdir and readlink.
            Err(err) if is_gone(err) => {}
            Err(err) if err == Errno::ACCESS || err == Errno::PERM => return FdScan::Unreadable,
            Err(_) => {}
        }
    }
    FdScan::Inodes(inodes)
}

/// `/proc/PID/stat` of `pid`, or `None` when it is gone or malformed.
///
/// Called for every ancestor on every run and before every signal, so it
/// reads with one `read` into a stack buffer: the line is a few hundred
/// bytes (`comm` is at most 15), where `fs::read` would stat the file and
/// grow its buffer over six reads.
fn read_stat_at(root: &Path, pid: u32) -> Option<Stat> {
    let path = root.join(pid.to_string()).join("stat");
    let fd = rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let mut buf = [0u8; 1024];
    let len = rustix::io::retry_on_intr(|| rustix::io::read(&fd, &mut buf)).ok()?;
    let text = match buf.get(..len) {
        Some(bytes) if len < buf.len() => String::from_utf8_lossy(bytes),
        // Longer than any stat line the kernel prints: read it whole.
        _ => String::from_utf8_lossy(&fs::read(&path).ok()?)
            .into_owned()
            .into(),
    };
    parse_stat(&text).filter(|stat| stat.pid == pid)
}

/// [`ProcessTable`] backed by a procfs mount: the checks made right before a
/// signal, each reading only the one process concerned.
#[derive(Debug, Clone)]
pub struct ProcfsTable {
    root: PathBuf,
}

impl Default for ProcfsTable {
    fn default() -> Self {
        Self::new(DEFAULT_PROC_ROOT)
    }
}

impl ProcfsTable {
    /// A process table reading procfs mounted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

impl ProcessTable for ProcfsTable {
    /// A zombie (`Z`) or dead (`X`) process counts as gone: it has already
    /// closed every fd, so it holds nothing, and a signal to it does nothing
    /// except confuse "did it exit?" checks. Its pid stays reserved until the
    /// parent reaps it, so treating it as gone cannot let a recycled pid in.
    fn identity(&self, pid: u32) -> Option<ProcessId> {
        let stat = read_stat_at(&self.root, pid)?;
        if matches!(stat.state, 'Z' | 'X') {
            return None;
        }
        Some(ProcessId {
            pid,
            start_ticks: stat.start_ticks,
        })
    }

    fn holds_any(&self, pid: u32, inodes: &[u64]) -> Option<bool> {
        let path = self.root.join(pid.to_string()).join("fd");
        let mut dir_buf = [MaybeUninit::<u8>::uninit(); 4096];
        match scan_fd_dir(CWD, &path, &mut dir_buf, |inode| inodes.contains(&inode)) {
            FdScan::Gone => Some(false),
            FdScan::Unreadable => None,
            FdScan::Inodes(found) => Some(!found.is_empty()),
        }
    }

    fn parent(&self, pid: u32) -> Option<u32> {
        read_stat_at(&self.root, pid)
            .map(|stat| stat.ppid)
            .filter(|&ppid| ppid != 0)
    }
}

/// portguard's own pid followed by each ancestor's, ending with pid 1.
///
/// The safety rules never signal these: killing the shell or service manager
/// that runs the pre-start hook would take the caller down with the port's
/// holder. Pid 1 is always included, even when the chain ends earlier (a
/// parent outside this pid namespace shows as ppid 0).
pub fn self_and_ancestors() -> Vec<u32> {
    let table = ProcfsTable::default();
    let mut pid = std::process::id();
    let mut chain = vec![pid];
    while pid != 1 {
        match table.parent(pid) {
            Some(ppid) if !chain.contains(&ppid) => {
                chain.push(ppid);
                pid = ppid;
            }
            _ => break,
        }
    }
    if !chain.contains(&1) {
        chain.push(1);
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Group;
    use std::io::{BufRead, BufReader};
    use std::net::{Ipv6Addr, SocketAddrV6, TcpListener, TcpStream, UdpSocket};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    const NET_TCP: &str = include_str!("../../tests/fixtures/proc/net_tcp");
    const NET_TCP6: &str = include_str!("../../tests/fixtures/proc/net_tcp6");
    const NET_UDP: &str = include_str!("../../tests/fixtures/proc/net_udp");
    const NET_UDP6: &str = include_str!("../../tests/fixtures/proc/net_udp6");
    const NET_TCP_NOBODY: &str = include_str!("../../tests/fixtures/proc/net_tcp_nobody");
    const NET_TCP6_DUALSTACK: &str = include_str!("../../tests/fixtures/proc/net_tcp6_dualstack");
    const NET_UDP_CONNECTED: &str = include_str!("../../tests/fixtures/proc/net_udp_connected");
    const NET_UDP6_EMPTY: &str = include_str!("../../tests/fixtures/proc/net_udp6_empty");
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

    // ---- socket tables -------------------------------------------------

    #[test]
    fn tcp_table_ipv4_listen_and_established() {
        let rows = parse_net_table(NET_TCP, "/proc/net/tcp").unwrap();
        assert_eq!(
            rows,
            vec![
                entry("0.0.0.0:2024", "0.0.0.0:0", 0x0A, 0, 1604),
                entry("127.0.0.1:35981", "0.0.0.0:0", 0x0A, 0, 4665),
                entry("127.0.0.1:35981", "127.0.0.1:39034", 0x01, 0, 5358),
                entry("127.0.0.1:39034", "127.0.0.1:35981", 0x01, 0, 5357),
            ]
        );
    }

    #[test]
    fn tcp6_table_loopback_listener() {
        let rows = parse_net_table(NET_TCP6, "/proc/net/tcp6").unwrap();
        assert_eq!(rows, vec![entry("[::1]:32825", "[::]:0", 0x0A, 0, 4666)]);
    }

    #[test]
    fn tcp6_table_wildcard_and_ipv4_mapped() {
        let rows = parse_net_table(NET_TCP6_DUALSTACK, "/proc/net/tcp6").unwrap();
        assert_eq!(
            rows,
            vec![
                entry("[::]:52509", "[::]:0", 0x0A, 65534, 4869),
                entry(
                    "[::ffff:127.0.0.1]:52509",
                    "[::ffff:127.0.0.1]:58370",
                    0x01,
                    65534,
                    4871
                ),
            ]
        );
    }

    #[test]
    fn tcp_table_time_wait_row_and_foreign_uid() {
        let rows = parse_net_table(NET_TCP_NOBODY, "/proc/net/tcp").unwrap();
        assert_eq!(
            rows,
            vec![
                entry("0.0.0.0:2024", "0.0.0.0:0", 0x0A, 0, 1604),
                entry("127.0.0.1:58370", "127.0.0.1:52509", 0x01, 65534, 4870),
                // TIME_WAIT: no owner any more, inode 0, fewer columns.
                entry("127.0.0.1:39034", "127.0.0.1:35981", 0x06, 0, 0),
            ]
        );
        assert_eq!(rows[2].state_name(), "TIME_WAIT");
    }

    #[test]
    fn udp_tables() {
        assert_eq!(
            parse_net_table(NET_UDP, "/proc/net/udp").unwrap(),
            vec![entry("127.0.0.1:60051", "0.0.0.0:0", 0x07, 0, 4667)]
        );
        assert_eq!(
            parse_net_table(NET_UDP6, "/proc/net/udp6").unwrap(),
            vec![entry("[::1]:36381", "[::]:0", 0x07, 0, 4668)]
        );
        assert_eq!(
            parse_net_table(NET_UDP_CONNECTED, "/proc/net/udp").unwrap(),
            vec![entry("127.0.0.1:52298", "127.0.0.1:53", 0x01, 65534, 4872)]
        );
        assert_eq!(
            parse_net_table(NET_UDP6_EMPTY, "/proc/net/udp6").unwrap(),
            vec![]
        );
        assert_eq!(parse_net_table("", "/proc/net/udp6").unwrap(), vec![]);
    }

    #[test]
    fn ipv6_words_are_in_host_order() {
        // 2001:db8::1234:5678 as the kernel prints it on little-endian.
        let text = "header\n   0: B80D0120000000000000000078563412:0050 \
                    00000000000000000000000000000000:0000 0A 00000000:00000000 \
                    00:00000000 00000000  1000        0 99 1 0000000000000000 100 0 0 10 0\n";
        let rows = parse_net_table(text, "t").unwrap();
        let expected = SocketAddr::V6(SocketAddrV6::new(
            "2001:db8::1234:5678".parse::<Ipv6Addr>().unwrap(),
            80,
            0,
            0,
        ));
        assert_eq!(rows[0].local, expected);
        assert_eq!((rows[0].uid, rows[0].inode), (1000, 99));
    }

    #[test]
    fn malformed_rows_are_parse_errors() {
        let good = "   1: 0100007F:8C8D 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4665 1 0 100 0 0 10 0";
        assert_eq!(
            parse_net_table(&format!("h\n{good}\n"), "p").unwrap().len(),
            1
        );
        let bad = [
            // 7-digit address
            "   1: 100007F:8C8D 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4665",
            // non-hex address
            "   1: 0100007G:8C8D 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4665",
            // sign in the port
            "   1: 0100007F:+C8D 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4665",
            // missing port
            "   1: 0100007F 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4665",
            // state out of range
            "   1: 0100007F:8C8D 00000000:0000 10A 00000000:00000000 00:00000000 00000000 0 0 4665",
            // uid not decimal
            "   1: 0100007F:8C8D 00000000:0000 0A 00000000:00000000 00:00000000 00000000 x 0 4665",
            // inode missing
            "   1: 0100007F:8C8D 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0",
            // no slot
            "0100007F:8C8D 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4665",
            // 31-digit IPv6
            "   1: 0000000000000000000000001000000:8039 00000000000000000000000000000000:0000 0A 0:0 0:0 0 0 0 4666",
        ];
        for line in bad {
            match parse_net_table(&format!("h\n{good}\n{line}\n"), "/proc/net/tcp") {
                Err(DiscoveryError::Parse { path, line: got }) => {
                    assert_eq!(path, "/proc/net/tcp");
                    assert_eq!(got, line);
                }
                other => panic!("{line:?} parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn split_by_local_port_and_state() {
        let mut rows = parse_net_table(NET_TCP, "tcp").unwrap();
        rows.extend(parse_net_table(NET_TCP_NOBODY, "tcp").unwrap());
        let (holding, others) = split_holding(rows.clone(), 35981, Protocol::Tcp);
        assert_eq!(holding.iter().map(|s| s.inode).collect::<Vec<_>>(), [4665]);
        // The accepted connection; not the client whose *remote* port it is.
        assert_eq!(others.iter().map(|s| s.inode).collect::<Vec<_>>(), [5358]);

        let (holding, others) = split_holding(rows.clone(), 39034, Protocol::Tcp);
        assert!(holding.is_empty());
        assert_eq!(
            others.iter().map(|s| s.inode).collect::<Vec<_>>(),
            [5357, 0]
        );

        let (holding, others) = split_holding(rows, 1, Protocol::Tcp);
        assert!(holding.is_empty() && others.is_empty());

        // UDP: any bound socket holds, connected or not.
        let udp = parse_net_table(NET_UDP_CONNECTED, "udp").unwrap();
        let (holding, others) = split_holding(udp, 52298, Protocol::Udp);
        assert_eq!(holding.iter().map(|s| s.inode).collect::<Vec<_>>(), [4872]);
        assert!(others.is_empty());
    }

    // ---- per-process files ---------------------------------------------

    #[test]
    fn stat_with_parentheses_and_spaces_in_comm() {
        assert_eq!(
            parse_stat(STAT_WEIRD),
            Some(Stat {
                pid: 3695,
                comm: "my (weird) proc".into(),
                state: 'S',
                ppid: 3691,
                start_ticks: 22778,
                flags: 4194304,
            })
        );
    }

    #[test]
    fn stat_of_a_zombie() {
        assert_eq!(
            parse_stat(STAT_ZOMBIE),
            Some(Stat {
                pid: 3736,
                comm: "my (weird) proc".into(),
                state: 'Z',
                ppid: 3695,
                start_ticks: 22791,
                flags: 4227148,
            })
        );
    }

    #[test]
    fn stat_comm_that_imitates_fields() {
        let text = "12 () S 99 (x) R 7 7 7 0 -1 64 0 0 0 0 0 0 0 0 20 0 1 0 555 0 0\n";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.comm, ") S 99 (x");
        assert_eq!((stat.pid, stat.state, stat.ppid), (12, 'R', 7));
        assert_eq!((stat.flags, stat.start_ticks), (64, 555));
    }

    #[test]
    fn malformed_stat_is_none() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("12 (x S 1"), None);
        assert_eq!(parse_stat("12 (x) S 1 1 1 0 -1 64"), None); // truncated
        assert_eq!(
            parse_stat("x (y) S 1 1 1 0 -1 64 0 0 0 0 0 0 0 0 20 0 1 0 5"),
            None
        );
        assert_eq!(
            parse_stat("1 (y) SS 1 1 1 0 -1 64 0 0 0 0 0 0 0 0 20 0 1 0 5"),
            None
        );
        assert_eq!(parse_stat(")1 (y S"), None);
    }

    #[test]
    fn status_real_uid() {
        assert_eq!(parse_status_uid(STATUS), Some(0));
        // Uid: real effective saved fs = 1000 65534 0 65534
        assert_eq!(parse_status_uid(STATUS_MIXED), Some(1000));
        assert_eq!(parse_status_uid("Name:\tx\nGid:\t5\t5\t5\t5\n"), None);
        assert_eq!(parse_status_uid("Uid:\tabc\n"), None);
    }

    #[test]
    fn cmdline_with_nuls_empty_args_and_invalid_utf8() {
        assert_eq!(
            parse_cmdline(CMDLINE),
            vec![
                "/root/.pyenv/versions/3.11.7/bin/python3",
                "w.py",
                "caf\u{FFFD}",
                "two words",
                "",
                "end",
            ]
        );
        assert_eq!(parse_cmdline(b""), Vec::<String>::new());
        assert_eq!(parse_cmdline(b"a\0"), vec!["a"]);
        // setproctitle-style: one string, no terminator.
        assert_eq!(parse_cmdline(b"nginx: worker"), vec!["nginx: worker"]);
    }

    #[test]
    fn pid_names_and_fd_paths() {
        assert_eq!(parse_pid_name(b"1"), Some(1));
        assert_eq!(parse_pid_name(b"4194304"), Some(4_194_304));
        assert_eq!(parse_pid_name(b"4294967295"), Some(u32::MAX));
        for bad in [
            &b"self"[..],
            b"",
            b"12a",
            b"4294967296",
            b"99999999999",
            b"-1",
        ] {
            assert_eq!(parse_pid_name(bad), None, "{bad:?}");
        }
        let mut buf = [0u8; 16];
        for pid in [0, 7, 4242, u32::MAX] {
            let path = fd_dir_path(pid, &mut buf).unwrap();
            assert_eq!(path.to_str().unwrap(), format!("{pid}/fd"));
        }
    }

    #[test]
    fn parallel_and_serial_scans_agree() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let discovery = ProcfsDiscovery::default();
        let inode = discovery
            .holding_sockets(listener.local_addr().unwrap().port(), Protocol::Tcp)
            .unwrap()[0]
            .inode;
        let root =
            rustix::fs::open("/proc", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let (pids, failed) = list_pids(root.as_fd());
        assert!(!failed && pids.contains(&std::process::id()));
        let run = |threads: usize| {
            let next = AtomicUsize::new(0);
            let work = || scan_some(root.as_fd(), &pids, &next, &[inode]);
            if threads == 1 {
                work()
            } else {
                scan_in_parallel(threads, work)
            }
        };
        let expected: BTreeMap<u32, Vec<u64>> = [(std::process::id(), vec![inode])].into();
        assert_eq!(run(1).holders, expected);
        assert_eq!(run(3).holders, expected);
        assert_eq!(discovery.scan_processes(&[inode]).holders, expected);
    }

    #[test]
    fn socket_links() {
        assert_eq!(parse_socket_link(b"socket:[12345]"), Some(12345));
        assert_eq!(parse_socket_link(b"socket:[0]"), Some(0));
        assert_eq!(
            parse_socket_link(b"socket:[18446744073709551615]"),
            Some(u64::MAX)
        );
        for bad in [
            &b"socket:[18446744073709551616]"[..],
            b"socket:[]",
            b"socket:[12a]",
            b"socket:[+1]",
            b"socket:[1",
            b"pipe:[4646]",
            b"/tmp/socket:[1]",
            b"anon_inode:[eventpoll]",
            b"",
        ] {
            assert_eq!(
                parse_socket_link(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn uptime_in_ms() {
        assert_eq!(parse_uptime_ms(UPTIME), Some(228_210));
        assert_eq!(parse_uptime_ms("5.5 1.0"), Some(5_500));
        assert_eq!(parse_uptime_ms("7 1"), Some(7_000));
        assert_eq!(parse_uptime_ms("7.12345 1"), Some(7_123));
        assert_eq!(parse_uptime_ms("x"), None);
        assert_eq!(parse_uptime_ms(""), None);
    }

    #[test]
    fn unknown_owner_reasons() {
        assert_eq!(
            unknown_owner_reason(true, 65534, Some("nobody"), 1000),
            "cannot inspect: owned by uid 65534 (nobody), not your process; \
             run as that user or as root to see the pid"
        );
        assert_eq!(
            unknown_owner_reason(true, 4321, None, 1000),
            "cannot inspect: owned by uid 4321, not your process; \
             run as that user or as root to see the pid"
        );
        let invisible =
            "no visible process holds the socket (another pid namespace, or it is being closed)";
        // Our own socket: permissions are not why we cannot see it.
        assert_eq!(
            unknown_owner_reason(true, 1000, Some("me"), 1000),
            invisible
        );
        // Nothing was denied: the process is simply out of sight.
        assert_eq!(unknown_owner_reason(false, 65534, None, 1000), invisible);
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
            fake.link("self", "4242");
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

        fn discovery(&self) -> ProcfsDiscovery {
            ProcfsDiscovery::new(self.root())
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
        assert_eq!(state.holders.len(), 2);
        let hz = rustix::param::clock_ticks_per_second();
        let master = &state.holders[0];
        assert_eq!(
            *master,
            Holder {
                pid: Some(4242),
                ppid: Some(1),
                uid: 1000,
                user: crate::users::name_of(1000),
                exe: Some("/usr/bin/python3.11".into()),
                cmdline: Some(parse_cmdline(CMDLINE)),
                comm: Some("my (weird) proc".into()),
                start_ticks: Some(22778),
                age_ms: Some(228_210 - 22778 * 1000 / hz),
                orphan: Some(true),
                addrs: vec![v4("127.0.0.1:35981")],
                inodes: vec![4665],
                unknown_reason: None,
            }
        );
        let worker = &state.holders[1];
        assert_eq!((worker.pid, worker.ppid), (Some(4243), Some(4242)));
        assert_eq!(worker.comm.as_deref(), Some("worker"));
        // Parent alive and not a subreaper.
        assert_eq!(worker.orphan, Some(false));
        assert_eq!(
            state.groups,
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
            .holders
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
        assert_eq!(state.groups.len(), 2);
    }

    #[test]
    fn fake_tree_socket_without_process_is_a_pidless_holder() {
        let fake = fake_tree();
        let state = fake.discovery().discover(2024, Protocol::Tcp).unwrap();
        assert_eq!(
            state.holders,
            vec![Holder {
                pid: None,
                ppid: None,
                uid: 0,
                user: crate::users::name_of(0),
                exe: None,
                cmdline: None,
                comm: None,
                start_ticks: None,
                age_ms: None,
                orphan: None,
                addrs: vec![v4("0.0.0.0:2024")],
                inodes: vec![1604],
                unknown_reason: Some(
                    "no visible process holds the socket (another pid namespace, or it is being closed)"
                        .into()
                ),
            }]
        );
        assert_eq!(
            state.groups,
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
        assert_eq!(state.holders.len(), 1);
        let holder = &state.holders[0];
        assert_eq!((holder.pid, holder.uid), (None, 65534));
        let euid = rustix::process::geteuid().as_raw();
        assert_eq!(
            holder.unknown_reason.as_deref(),
            Some(
                unknown_owner_reason(true, 65534, crate::users::name_of(65534).as_deref(), euid)
                    .as_str()
            )
        );
        if euid != 65534 {
            assert!(holder
                .unknown_reason
                .as_deref()
                .unwrap()
                .starts_with("cannot inspect: owned by uid 65534"));
        }
    }

    #[test]
    fn fake_tree_free_port_and_holding_sockets() {
        let fake = fake_tree();
        let discovery = fake.discovery();
        let free = discovery.discover(1, Protocol::Tcp).unwrap();
        assert!(free.is_free());
        assert!(free.holders.is_empty() && free.groups.is_empty() && free.others.is_empty());
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
        assert_eq!(holder.user, crate::users::name_of(our_uid()));
        let argv: Vec<String> = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(holder.cmdline.as_ref(), Some(&argv));
        let exe = fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(holder.exe.as_deref(), exe.to_str());
        assert_eq!(holder.start_ticks, Some(our_start_ticks()));
        assert!(holder.age_ms.is_some());
        assert!(holder.orphan.is_some());
        assert_eq!(holder.unknown_reason, None);
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
        assert_eq!(state.holders.len(), 1);
        assert_is_us(&state.holders[0]);
        assert_eq!(state.holders[0].addrs, vec![addr]);
        assert_eq!(state.holders[0].inodes, vec![state.sockets[0].inode]);
        assert_eq!(
            state.groups,
            vec![Group {
                root: 0,
                members: vec![0]
            }]
        );
        assert_eq!(
            ProcfsTable::default().holds_any(std::process::id(), &state.holders[0].inodes),
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
        assert_eq!(state.holders.len(), 1);
        assert_is_us(&state.holders[0]);
        assert_eq!(state.holders[0].addrs, vec![addr]);
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
        assert_eq!(state.holders.len(), 1);
        let holder = &state.holders[0];
        assert_is_us(holder);
        assert_eq!(
            holder.addrs,
            vec![
                v4_listener.local_addr().unwrap(),
                v6_listener.local_addr().unwrap()
            ]
        );
        assert_eq!(holder.inodes.len(), 2);
        assert_eq!(state.groups.len(), 1);
    }

    #[test]
    fn own_udp_socket() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let discovery = ProcfsDiscovery::default();
        let state = discovery.discover(addr.port(), Protocol::Udp).unwrap();
        assert_eq!(state.sockets.len(), 1);
        assert_eq!(state.sockets[0].local, addr);
        assert_eq!(state.holders.len(), 1);
        assert_is_us(&state.holders[0]);
        // The same number over TCP is a different port.
        assert!(discovery
            .discover(addr.port(), Protocol::Tcp)
            .unwrap()
            .is_free());
    }

    #[test]
    fn connections_are_not_holders() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let client = TcpStream::connect(server).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let client_addr = client.local_addr().unwrap();
        let discovery = ProcfsDiscovery::default();

        let state = discovery
            .discover(client_addr.port(), Protocol::Tcp)
            .unwrap();
        // Other connections on a busy machine may share the ephemeral port
        // number (with other peers), so look for ours among the others.
        assert!(state.is_free());
        assert!(state.holders.is_empty());
        let ours: Vec<_> = state.others.iter().filter(|o| o.remote == server).collect();
        assert_eq!(ours.len(), 1, "{:?}", state.others);
        assert_eq!(ours[0].local, client_addr);
        assert_eq!(ours[0].state_name(), "ESTABLISHED");

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
        assert_eq!(state.holders.len(), 1);
        assert_eq!(state.holders[0].inodes, vec![state.sockets[0].inode]);
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
            .holders
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
        assert_eq!(state.holders.len(), 1);
        let holder = &state.holders[0];
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
        while read_stat_at(Path::new("/proc"), pid).map(|s| s.state) != Some('Z') {
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
        let pids: Vec<u32> = state.holders.iter().filter_map(|h| h.pid).collect();
        assert_eq!(pids, expected);
        for holder in &state.holders {
            assert_eq!(holder.inodes, vec![state.sockets[0].inode]);
            assert_eq!(holder.cmdline.as_ref().map(|c| c[1].as_str()), Some("-c"));
        }
        let root = state
            .holders
            .iter()
            .position(|h| h.pid == Some(master))
            .unwrap();
        let mut members = vec![root];
        members.extend(
            state
                .holders
                .iter()
                .enumerate()
                .filter(|(_, h)| h.pid != Some(master))
                .map(|(i, _)| i),
        );
        assert_eq!(state.groups, vec![Group { root, members }]);
        for worker in &numbers[1..] {
            let holder = state
                .holders
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
