//! Signalling: the only code that sends a signal, behind [`Signaller`] so
//! tests can prove sequencing with fakes.
//!
//! On Linux a signal goes through a pidfd opened before the target's
//! identity is re-checked, so a recycled pid is never signalled. Elsewhere
//! the bare pid is used, right after the same identity check (start time
//! from `ps`); the window between check and signal is the one `kill(1)`
//! has, and is the best those systems offer.

use crate::policy::Signal;
use rustix::io::Errno;
use std::io;
use std::time::Duration;

/// A way to reach a process for signalling: a pidfd where the kernel has
/// them (Linux 5.3+), else the bare pid (checked right before each use).
#[derive(Debug)]
pub enum Handle {
    /// A pidfd: refers to exactly one process, never to a recycled pid.
    #[cfg(target_os = "linux")]
    Pidfd(std::os::fd::OwnedFd),
    /// A bare pid, for kernels without pidfd and for test fakes.
    Pid(u32),
}

/// Sends signals and waits for exits. The real one uses pidfds; tests can
/// inject fakes to prove sequencing without real processes.
pub trait Signaller {
    /// Opens a handle on `pid`. `ESRCH` when it no longer exists.
    fn open(&self, pid: u32) -> io::Result<Handle>;
    /// Checks that we may signal `pid` at all (`kill(pid, 0)`), so a
    /// permission problem is found before any member of a group is signalled.
    fn check_permission(&self, pid: u32) -> io::Result<()>;
    /// Sends `sig` through `handle`.
    fn send(&self, handle: &Handle, sig: Signal) -> io::Result<()>;
    /// Waits up to `timeout` for any of `handles` to exit; returns a flag per
    /// handle, true for those that have exited (zombies count as exited).
    fn wait_exit(&self, handles: &[&Handle], timeout: Duration) -> Vec<bool>;
}

/// Whether `e` is "no such process".
pub fn is_gone(e: &io::Error) -> bool {
    e.raw_os_error() == Some(Errno::SRCH.raw_os_error())
}

/// Whether `e` is "operation not permitted".
pub fn is_denied(e: &io::Error) -> bool {
    e.raw_os_error() == Some(Errno::PERM.raw_os_error())
}

/// The real signaller: pidfd_open, pidfd_send_signal and poll(2) on Linux,
/// kill(2) elsewhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemSignaller;

fn pid_of(pid: u32) -> io::Result<rustix::process::Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| io::Error::from(Errno::SRCH))
}

fn to_rustix(sig: Signal) -> io::Result<rustix::process::Signal> {
    rustix::process::Signal::from_named_raw(sig.number).ok_or_else(|| io::Error::from(Errno::INVAL))
}

/// Whether the bare `pid` has exited (or is not ours to see).
fn pid_gone(pid: u32) -> bool {
    pid_of(pid)
        .map(|p| rustix::process::test_kill_process(p) == Err(Errno::SRCH))
        .unwrap_or(true)
}

impl Signaller for SystemSignaller {
    #[cfg(target_os = "linux")]
    fn open(&self, pid: u32) -> io::Result<Handle> {
        match rustix::process::pidfd_open(pid_of(pid)?, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => Ok(Handle::Pidfd(fd)),
            // Kernels before 5.3 (or seccomp filters) lack pidfd_open.
            Err(Errno::NOSYS) | Err(Errno::PERM) => {
                rustix::process::test_kill_process(pid_of(pid)?)?;
                Ok(Handle::Pid(pid))
            }
            Err(e) => Err(e.into()),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn open(&self, pid: u32) -> io::Result<Handle> {
        match rustix::process::test_kill_process(pid_of(pid)?) {
            Ok(()) | Err(Errno::PERM) => Ok(Handle::Pid(pid)),
            Err(e) => Err(e.into()),
        }
    }

    fn check_permission(&self, pid: u32) -> io::Result<()> {
        Ok(rustix::process::test_kill_process(pid_of(pid)?)?)
    }

    fn send(&self, handle: &Handle, sig: Signal) -> io::Result<()> {
        let sig = to_rustix(sig)?;
        match handle {
            #[cfg(target_os = "linux")]
            Handle::Pidfd(fd) => Ok(rustix::process::pidfd_send_signal(fd, sig)?),
            Handle::Pid(pid) => Ok(rustix::process::kill_process(pid_of(*pid)?, sig)?),
        }
    }

    #[cfg(target_os = "linux")]
    fn wait_exit(&self, handles: &[&Handle], timeout: Duration) -> Vec<bool> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        use std::os::fd::AsFd;
        let mut pollfds: Vec<PollFd<'_>> = handles
            .iter()
            .filter_map(|h| match h {
                Handle::Pidfd(fd) => Some(PollFd::from_borrowed_fd(fd.as_fd(), PollFlags::IN)),
                Handle::Pid(_) => None,
            })
            .collect();
        let ts = Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        if pollfds.is_empty() {
            std::thread::sleep(timeout);
        } else {
            // EINTR or any other poll error: report nothing exited; the
            // caller re-checks the socket table and tries again.
            let _ = poll(&mut pollfds, Some(&ts));
        }
        let mut ready = pollfds.iter().map(|p| !p.revents().is_empty());
        handles
            .iter()
            .map(|h| match h {
                Handle::Pidfd(_) => ready.next().unwrap_or(false),
                Handle::Pid(pid) => pid_gone(*pid),
            })
            .collect()
    }

    #[cfg(not(target_os = "linux"))]
    fn wait_exit(&self, handles: &[&Handle], timeout: Duration) -> Vec<bool> {
        std::thread::sleep(timeout);
        handles
            .iter()
            .map(|h| match h {
                Handle::Pid(pid) => pid_gone(*pid),
            })
            .collect()
    }
}
