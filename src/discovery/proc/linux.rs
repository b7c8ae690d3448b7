//! The Linux proc layer: everything discovery and the safety checks read
//! about one process, through one open `/proc/PID` directory.
//!
//! A pid can be recycled between two reads. Every field of a holder is
//! therefore read relative to one directory fd opened once ([`PidDir`]):
//! once the process it was opened for exits, reads through it fail instead
//! of describing a successor, so the fields of a holder all belong to the
//! same process.

use std::fs;
use std::io::Read;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use super::parse::{parse_cmdline, parse_stat, parse_status_uids, parse_uptime_ms, Stat};
use super::scan::{scan_fd_dir, threads_holding, FdScan};
use crate::discovery::ProcessTable;
use crate::model::ProcessId;

/// Where procfs is normally mounted.
pub const DEFAULT_PROC_ROOT: &str = "/proc";

/// Longest argv read from `/proc/PID/cmdline`: Linux allows a few MB of
/// arguments (a quarter of the stack limit); a longer one is cut here, so
/// another process cannot make portguard allocate without bound.
pub const CMDLINE_LIMIT: usize = 4 << 20;

/// Longest `/proc/PID/cgroup` read: a few hundred bytes in practice.
const CGROUP_LIMIT: usize = 64 << 10;

/// One process's `/proc/PID` directory, held open.
#[derive(Debug)]
pub struct PidDir {
    pid: u32,
    dir: OwnedFd,
}

impl PidDir {
    /// Opens `root/PID`; `None` when there is no such process.
    pub fn open(root: &Path, pid: u32) -> Option<PidDir> {
        let dir = rustix::fs::open(
            root.join(pid.to_string()),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        Some(PidDir { pid, dir })
    }

    /// The pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Reads `name` below the directory, at most `limit` bytes.
    fn read(&self, name: &str, limit: usize) -> Option<Vec<u8>> {
        let fd = rustix::fs::openat(
            self.dir.as_fd(),
            name,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let mut out = Vec::new();
        fs::File::from(fd)
            .take(limit as u64)
            .read_to_end(&mut out)
            .ok()?;
        Some(out)
    }

    /// `stat`, read with one `read` into a stack buffer: it is read for
    /// every ancestor on every run and before every signal, and the line is
    /// a few hundred bytes (`comm` is at most 15).
    pub fn stat(&self) -> Option<Stat> {
        let fd = rustix::fs::openat(
            self.dir.as_fd(),
            "stat",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let mut buf = [0u8; 1024];
        let len = rustix::io::retry_on_intr(|| rustix::io::read(&fd, &mut buf)).ok()?;
        let text = match buf.get(..len) {
            Some(bytes) if len < buf.len() => String::from_utf8_lossy(bytes).into_owned(),
            // Longer than any stat line the kernel prints: read it whole.
            _ => String::from_utf8_lossy(&self.read("stat", 64 << 10)?).into_owned(),
        };
        parse_stat(&text).filter(|stat| stat.pid == self.pid)
    }

    /// Real, effective, saved and filesystem uid from `status`.
    pub fn uids(&self) -> Option<[u32; 4]> {
        let text = self.read("status", 64 << 10)?;
        parse_status_uids(&String::from_utf8_lossy(&text))
    }

    /// The executable, from the `exe` link (of a live thread when the leader
    /// has exited).
    pub fn exe(&self, stat: &Stat) -> Option<String> {
        let link = self.thread_path(stat, "exe");
        rustix::fs::readlinkat(self.dir.as_fd(), link, Vec::new())
            .ok()
            .map(|target| target.to_string_lossy().into_owned())
    }

    /// argv, at most [`CMDLINE_LIMIT`] bytes. Empty means the kernel no
    /// longer has it (a kernel thread, or the process is exiting): unknown,
    /// not "no arguments".
    pub fn cmdline(&self, stat: &Stat) -> Option<Vec<String>> {
        let bytes = self.read(&self.thread_path(stat, "cmdline"), CMDLINE_LIMIT)?;
        Some(parse_cmdline(&bytes)).filter(|argv| !argv.is_empty())
    }

    /// The `cgroup` file's text.
    pub fn cgroup(&self) -> Option<String> {
        self.read("cgroup", CGROUP_LIMIT)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Whether the process still has an fd on any of `inodes` (through its
    /// threads when the leader has exited); `None` when its fds cannot be
    /// read.
    pub fn holds_any(&self, inodes: &[u64]) -> Option<bool> {
        let mut dir_buf = [MaybeUninit::<u8>::uninit(); 4096];
        match scan_fd_dir(self.dir.as_fd(), "fd", &mut dir_buf, |inode| {
            inodes.contains(&inode)
        }) {
            FdScan::Gone => Some(false),
            FdScan::Unreadable => None,
            FdScan::Inodes { found, .. } if !found.is_empty() => Some(true),
            FdScan::Inodes { listed, .. } if listed > 0 => Some(false),
            FdScan::Inodes { .. } => {
                let leader_exited = self.stat().is_some_and(|s| s.leader_exited());
                if !leader_exited {
                    return Some(false);
                }
                let mut sorted = inodes.to_vec();
                sorted.sort_unstable();
                let root = rustix::fs::openat(
                    self.dir.as_fd(),
                    "..",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ok()?;
                Some(!threads_holding(root.as_fd(), self.pid, &sorted).is_empty())
            }
        }
    }

    /// `name` of the process, or of one of its live threads when the
    /// leader has exited (the leader's own `exe` and `cmdline` are gone).
    fn thread_path(&self, stat: &Stat, name: &str) -> String {
        if !stat.leader_exited() {
            return name.to_string();
        }
        let Ok(task) = rustix::fs::openat(
            self.dir.as_fd(),
            "task",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return name.to_string();
        };
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut entries = rustix::fs::RawDir::new(&task, &mut buf);
        while let Some(Ok(entry)) = entries.next() {
            let tid = entry.file_name().to_string_lossy();
            if tid.bytes().all(|b| b.is_ascii_digit()) && tid != self.pid.to_string() {
                return format!("task/{tid}/{name}");
            }
        }
        name.to_string()
    }
}

/// Milliseconds since boot, and the clock's tick rate: what turns a start
/// time into an age.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    uptime_ms: Option<u64>,
    ticks_per_second: u64,
}

impl Clock {
    /// The clock of the procfs at `root`.
    pub fn read(root: &Path) -> Self {
        Clock {
            uptime_ms: fs::read_to_string(root.join("uptime"))
                .ok()
                .as_deref()
                .and_then(parse_uptime_ms),
            ticks_per_second: rustix::param::clock_ticks_per_second(),
        }
    }

    /// Age in milliseconds of a process started at `start_ticks`.
    pub fn age_ms(&self, start_ticks: u64) -> Option<u64> {
        if self.ticks_per_second == 0 {
            return None;
        }
        let started_ms = start_ticks.saturating_mul(1000) / self.ticks_per_second;
        Some(self.uptime_ms?.saturating_sub(started_ms))
    }
}

/// Whether the procfs at `root` shows portguard's own pid namespace: its
/// `self` link names our pid. Under `unshare --pid` with the host's `/proc`
/// it does not, and the pids it lists mean nothing to our signals.
pub fn own_pid_namespace(root: &Path) -> bool {
    match fs::read_link(root.join("self")) {
        Ok(target) => target.to_str() == Some(&std::process::id().to_string()),
        // No `self` (a directory that imitates /proc): nothing says otherwise.
        Err(_) => true,
    }
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
    /// A zombie whose threads have all exited counts as gone (see
    /// [`Stat::is_gone`]); a leader that exited while its threads run on
    /// is alive.
    fn identity(&self, pid: u32) -> Option<ProcessId> {
        let stat = PidDir::open(&self.root, pid)?.stat()?;
        if stat.is_gone() {
            return None;
        }
        Some(ProcessId {
            pid,
            start_ticks: stat.start_ticks,
        })
    }

    fn holds_any(&self, pid: u32, inodes: &[u64]) -> Option<bool> {
        match PidDir::open(&self.root, pid) {
            Some(dir) => dir.holds_any(inodes),
            None => Some(false),
        }
    }

    fn parent(&self, pid: u32) -> Option<u32> {
        PidDir::open(&self.root, pid)?
            .stat()
            .map(|stat| stat.ppid)
            .filter(|&ppid| ppid != 0)
    }

    fn is_stopped(&self, pid: u32) -> Option<bool> {
        PidDir::open(&self.root, pid)?
            .stat()
            .map(|stat| matches!(stat.state, 'T' | 't'))
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
    if own_pid_namespace(Path::new(DEFAULT_PROC_ROOT)) {
        while pid != 1 {
            match table.parent(pid) {
                Some(ppid) if !chain.contains(&ppid) => {
                    chain.push(ppid);
                    pid = ppid;
                }
                _ => break,
            }
        }
    }
    if !chain.contains(&1) {
        chain.push(1);
    }
    chain
}
