//! The owner scan: which processes have an fd on one of the port's sockets.
//!
//! One pass over every `/proc/PID/fd`: each fd link is read into a stack
//! buffer and compared as a number (`socket:[INODE]`), and the pid list is
//! shared out to one thread per core once it is long enough to pay for the
//! threads. This is where discovery spends its time on a busy host: one
//! `readlinkat` per open fd of every process (~3.5 µs of kernel time per fd,
//! the listing included).
//!
//! A process whose thread-group leader has exited while its other threads
//! run on lists no fds under `/proc/PID/fd` (the leader is a zombie); its
//! fds are under `/proc/PID/task/TID/fd`. Those are looked at only when a
//! socket is left without a holder after the first pass, so the common case
//! pays nothing for them.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::fs::{Mode, OFlags, RawDir};
use rustix::io::Errno;

use super::parse::parse_socket_link;

/// What the scan found.
#[derive(Debug, Default)]
pub struct ProcessScan {
    /// pid → the wanted inodes it has fds on; ordered so holders come out by
    /// pid.
    pub holders: BTreeMap<u32, Vec<u64>>,
    /// Whether some process's fds could not be read (permission denied).
    pub unreadable: bool,
    /// Processes that listed no fd at all: kernel threads, and processes
    /// whose thread-group leader has exited.
    fdless: Vec<u32>,
}

impl ProcessScan {
    fn merge(&mut self, other: ProcessScan) {
        self.holders.extend(other.holders);
        self.unreadable |= other.unreadable;
        self.fdless.extend(other.fdless);
    }
}

/// Below this many processes one thread is as fast. Measured on a 2-vCPU
/// VM that other work kept busy (paired runs of `who`, one thread against
/// two): at 95 processes the second thread saved no wall time and cost 7 %
/// more CPU time, at 130 it saved nothing and cost 4 %, at 159 it saved
/// 13 % of the wall time for 4 % more CPU. (At 32, the old value, every
/// host started one.)
const PARALLEL_MIN_PIDS: usize = 128;

/// Pids handed to a scanning thread at a time: small enough that one
/// process with thousands of fds does not leave the other thread idle.
const PIDS_PER_CHUNK: usize = 8;

/// getdents buffer size: a process with 4,000 fds lists in three calls.
pub(crate) const DIR_BUF: usize = 32 * 1024;

/// How many threads to scan `pids` processes with.
fn scan_threads(pids: usize) -> usize {
    if pids < PARALLEL_MIN_PIDS {
        return 1;
    }
    // More threads than cores only contend; past 4 the kernel-side locks
    // of /proc lookups, not the cores, are the limit.
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Finds the processes under the procfs `root` that hold any of `wanted`
/// (sorted socket inodes). When `wanted` is not all found, processes whose
/// leader exited are looked at through their threads.
pub fn scan(root: &Path, wanted: &[u64]) -> ProcessScan {
    let Ok(dir) = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return ProcessScan {
            unreadable: true,
            ..ProcessScan::default()
        };
    };
    let (pids, listing_failed) = list_pids(dir.as_fd());
    let threads = scan_threads(pids.len());
    let next = AtomicUsize::new(0);
    let work = || scan_some(dir.as_fd(), &pids, &next, wanted);
    let mut scan = if threads <= 1 {
        work()
    } else {
        scan_in_parallel(threads, work)
    };
    scan.unreadable |= listing_failed;
    let found = |scan: &ProcessScan, inode: &u64| scan.holders.values().any(|i| i.contains(inode));
    if !wanted.iter().all(|inode| found(&scan, inode)) {
        for pid in std::mem::take(&mut scan.fdless) {
            let inodes = threads_holding(dir.as_fd(), pid, wanted);
            if !inodes.is_empty() {
                scan.holders.insert(pid, inodes);
            }
        }
    }
    scan
}

/// The wanted inodes held by any thread of `pid` (`PID/task/*/fd`): the fds
/// of a process whose leader has exited.
pub(crate) fn threads_holding(root: BorrowedFd<'_>, pid: u32, wanted: &[u64]) -> Vec<u64> {
    let Ok(task) = rustix::fs::openat(
        root,
        format!("{pid}/task"),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return Vec::new();
    };
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    let mut tids = Vec::new();
    let mut entries = RawDir::new(&task, &mut buf);
    while let Some(Ok(entry)) = entries.next() {
        if let Some(tid) = parse_pid_name(entry.file_name().to_bytes()) {
            tids.push(tid);
        }
    }
    let mut dir_buf = vec![MaybeUninit::<u8>::uninit(); DIR_BUF];
    let mut held = Vec::new();
    for tid in tids.into_iter().filter(|&t| t != pid) {
        if let FdScan::Inodes { found, .. } =
            scan_fd_dir(task.as_fd(), format!("{tid}/fd"), &mut dir_buf, |inode| {
                wanted.binary_search(&inode).is_ok()
            })
        {
            for inode in found {
                if !held.contains(&inode) {
                    held.push(inode);
                }
            }
            // Threads share one fd table: the first readable one is all of it.
            break;
        }
    }
    held
}

/// Every numeric entry of the procfs root (one per process; threads are not
/// listed there), and whether the listing failed part-way (then the pids
/// read so far are still scanned, and the scan counts as unreadable).
pub(crate) fn list_pids(root: BorrowedFd<'_>) -> (Vec<u32>, bool) {
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
pub(crate) fn parse_pid_name(name: &[u8]) -> Option<u32> {
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
                FdScan::Inodes { listed: 0, .. } => scan.fdless.push(pid),
                FdScan::Inodes { found, .. } if found.is_empty() => {}
                FdScan::Inodes { found, .. } => {
                    scan.holders.insert(pid, found);
                }
            }
        }
    }
    scan
}

/// What reading one process's fd directory showed.
#[derive(Debug)]
pub(crate) enum FdScan {
    /// The process no longer exists.
    Gone,
    /// The fds could not be read (permission denied, or another failure).
    Unreadable,
    /// The wanted socket inodes it has fds on (deduplicated), and how many
    /// fds the directory listed.
    Inodes {
        /// Wanted inodes found.
        found: Vec<u64>,
        /// Entries listed.
        listed: usize,
    },
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
pub(crate) fn scan_fd_dir<P: rustix::path::Arg>(
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
    let mut found = Vec::new();
    let mut listed = 0;
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
        listed += 1;
        match rustix::fs::readlinkat_raw(&fd, name, &mut link) {
            Ok(len) if len < link.len() => {
                if let Some(inode) = link.get(..len).and_then(parse_socket_link) {
                    if wanted(inode) && !found.contains(&inode) {
                        found.push(inode);
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
    FdScan::Inodes { found, listed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

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

    /// The inode of our own listener, from our own fd table.
    fn own_inode(listener: &TcpListener) -> u64 {
        let fd = std::os::fd::AsRawFd::as_raw_fd(listener);
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        parse_socket_link(link.to_string_lossy().as_bytes()).unwrap()
    }

    #[test]
    fn parallel_and_serial_scans_agree() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = own_inode(&listener);
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
        assert_eq!(scan(Path::new("/proc"), &[inode]).holders, expected);
    }
}
