//! The proc layer where there is no `/proc` (macOS, the BSDs): `ps`, for the
//! checks made right before a signal and for portguard's own ancestors.
//!
//! A process's identity is its pid plus its start time as `ps -o lstart`
//! prints it (to the second), hashed into the number [`ProcessId`] carries:
//! a recycled pid started at another second, so it never matches.

use std::process::Command;

use crate::discovery::ProcessTable;
use crate::model::ProcessId;

/// One `ps` row of `pid`: parent, state letters and start time.
fn ps_row(pid: u32) -> Option<(u32, String, String)> {
    let out = Command::new("ps")
        .args([
            "-o",
            "ppid=",
            "-o",
            "stat=",
            "-o",
            "lstart=",
            "-p",
            &pid.to_string(),
        ])
        .env("LC_ALL", "C")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?.trim();
    let mut fields = line.splitn(3, char::is_whitespace);
    let ppid = fields.next()?.trim().parse().ok()?;
    let rest = fields.next().map(str::trim)?.to_string();
    let lstart = fields.next().map(str::trim).unwrap_or_default().to_string();
    Some((ppid, rest, lstart))
}

/// The start time of `pid` as an opaque number (a hash of `ps -o lstart`),
/// or `None` when it is gone.
pub fn start_id(pid: u32) -> Option<u64> {
    let (_, state, lstart) = ps_row(pid)?;
    if state.starts_with('Z') || lstart.is_empty() {
        return None;
    }
    Some(fnv1a(lstart.as_bytes()))
}

/// FNV-1a: a stable hash (std's `DefaultHasher` may change between Rust
/// versions), enough to compare two start times.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// [`ProcessTable`] through `ps`.
#[derive(Debug, Clone, Default)]
pub struct PsTable;

impl ProcessTable for PsTable {
    fn identity(&self, pid: u32) -> Option<ProcessId> {
        Some(ProcessId {
            pid,
            start_ticks: start_id(pid)?,
        })
    }

    /// Without `/proc` the fds of one process cannot be listed cheaply; the
    /// socket table is re-checked by the caller instead.
    fn holds_any(&self, _pid: u32, _inodes: &[u64]) -> Option<bool> {
        None
    }

    fn parent(&self, pid: u32) -> Option<u32> {
        ps_row(pid).map(|(ppid, _, _)| ppid).filter(|&p| p != 0)
    }

    fn is_stopped(&self, pid: u32) -> Option<bool> {
        ps_row(pid).map(|(_, state, _)| state.starts_with('T'))
    }
}

/// portguard's own pid followed by each ancestor's, ending with pid 1.
pub fn self_and_ancestors() -> Vec<u32> {
    let table = PsTable;
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
