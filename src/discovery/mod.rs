//! Owner discovery: which sockets hold a port, and which processes hold them.
//!
//! The evaluator and the actions never read `/proc` themselves; they see the
//! system only through [`Discovery`] (sockets and their holders) and
//! [`ProcessTable`] (identity checks right before a signal). A second backend
//! (netlink, lsof) implements the same traits without touching the evaluator,
//! and tests can inject tables whose contents change between calls.

pub mod procfs;

use crate::model::{PortState, ProcessId, Protocol, SocketEntry};

/// Errors discovery can report. A process vanishing mid-scan is not an error
/// (it is simply no longer a holder); failing to read the socket table is.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The kernel socket table could not be read at all.
    #[error("cannot read the socket table {path}: {source}")]
    SocketTable {
        /// The file that failed, e.g. `/proc/net/tcp6`.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line of a kernel table did not have the expected shape.
    #[error("unexpected line in {path}: {line:?}")]
    Parse {
        /// The file the line came from.
        path: String,
        /// The line itself.
        line: String,
    },
}

/// A source of sockets and the processes that hold them.
pub trait Discovery {
    /// Everything about `port`: holding sockets, other sockets on the port,
    /// every holder (with unseen owners as pid-less holders and the reason),
    /// grouped into process trees as SPEC describes.
    fn discover(&self, port: u16, proto: Protocol) -> Result<PortState, DiscoveryError>;

    /// Only the sockets that hold `port` right now: the cheap re-check used
    /// while waiting for a port to be released.
    fn holding_sockets(
        &self,
        port: u16,
        proto: Protocol,
    ) -> Result<Vec<SocketEntry>, DiscoveryError>;

    /// Whether a server could bind the port now (the second half of "freed
    /// is verified"). A trait method so fakes can stand in for the kernel.
    fn bind_probe(&self, port: u16, proto: Protocol) -> bool {
        crate::actions::bind_probe(port, proto)
    }
}

/// What the actions need to know about one process right before signalling it.
pub trait ProcessTable {
    /// The current identity of `pid`, or `None` when no such process exists
    /// (it exited, or the pid is not visible).
    fn identity(&self, pid: u32) -> Option<ProcessId>;

    /// Whether `pid` still has an open fd on any of the socket `inodes`.
    /// `None` when that cannot be determined (e.g. permission denied).
    fn holds_any(&self, pid: u32, inodes: &[u64]) -> Option<bool>;

    /// The parent pid of `pid`, when it exists.
    fn parent(&self, pid: u32) -> Option<u32>;
}

/// Group holders into process trees (SPEC "What held means").
///
/// A holder whose parent is also a holder sharing at least one socket inode
/// belongs to its parent's group, transitively, so forked workers of a
/// master (and their own children) are judged by the master. A child that
/// holds a *different* socket than its parent is its own group: it was not
/// handed the socket, so the parent's rule says nothing about it. Pid-less
/// holders are each their own group.
///
/// This works on plain [`Holder`](crate::model::Holder) data, so every backend (and the policy test
/// runner's hand-written owners) groups the same way. Groups come out in
/// order of their root's index; members are the root first, then ascending
/// pid.
pub fn group_holders(holders: &[crate::model::Holder]) -> Vec<crate::model::Group> {
    let parent_of: Vec<Option<usize>> = holders
        .iter()
        .enumerate()
        .map(|(i, child)| {
            let ppid = child.ppid?;
            child.pid?;
            holders.iter().enumerate().position(|(j, parent)| {
                j != i
                    && parent.pid == Some(ppid)
                    && parent
                        .inodes
                        .iter()
                        .any(|inode| child.inodes.contains(inode))
            })
        })
        .collect();

    let root_of = |start: usize| -> usize {
        let mut path = vec![start];
        let mut at = start;
        while let Some(parent) = parent_of.get(at).copied().flatten() {
            if let Some(pos) = path.iter().position(|&seen| seen == parent) {
                // A cycle cannot come from a real process table (pids are
                // unique and a parent is older than its child), but data can
                // be hand-written: break it at its smallest index so every
                // member agrees on the root.
                return path
                    .get(pos..)
                    .and_then(|c| c.iter().min().copied())
                    .unwrap_or(parent);
            }
            path.push(parent);
            at = parent;
        }
        at
    };

    let mut by_root: std::collections::BTreeMap<usize, Vec<usize>> =
        std::collections::BTreeMap::new();
    for i in 0..holders.len() {
        by_root.entry(root_of(i)).or_default().push(i);
    }
    by_root
        .into_iter()
        .map(|(root, mut members)| {
            members.sort_by_key(|&m| (m != root, holders.get(m).and_then(|h| h.pid), m));
            crate::model::Group { root, members }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::group_holders;
    use crate::model::{Group, Holder};

    fn holder(pid: Option<u32>, ppid: Option<u32>, inodes: &[u64]) -> Holder {
        Holder {
            pid,
            ppid,
            uid: 1000,
            user: None,
            exe: None,
            cmdline: None,
            comm: None,
            start_ticks: None,
            age_ms: None,
            orphan: None,
            addrs: Vec::new(),
            inodes: inodes.to_vec(),
            unknown_reason: None,
        }
    }

    fn group(root: usize, members: &[usize]) -> Group {
        Group {
            root,
            members: members.to_vec(),
        }
    }

    #[test]
    fn workers_join_their_master() {
        // Sorted by pid, as discovery produces them.
        let holders = [
            holder(Some(100), Some(1), &[7]),
            holder(Some(101), Some(100), &[7]),
            holder(Some(102), Some(100), &[7]),
        ];
        assert_eq!(group_holders(&holders), vec![group(0, &[0, 1, 2])]);
    }

    #[test]
    fn child_with_a_different_socket_is_its_own_group() {
        let holders = [
            holder(Some(100), Some(1), &[7]),
            holder(Some(101), Some(100), &[8]),
        ];
        assert_eq!(
            group_holders(&holders),
            vec![group(0, &[0]), group(1, &[1])]
        );
    }

    #[test]
    fn sharing_one_of_several_sockets_is_enough() {
        let holders = [
            holder(Some(100), Some(1), &[7, 9]),
            holder(Some(101), Some(100), &[9]),
        ];
        assert_eq!(group_holders(&holders), vec![group(0, &[0, 1])]);
    }

    #[test]
    fn three_levels_collapse_to_the_root() {
        // Index order differs from tree order: the grandchild has the
        // lowest index after the root, members still come out by pid.
        let holders = [
            holder(Some(50), Some(1), &[7]),
            holder(Some(60), Some(70), &[7]),
            holder(Some(70), Some(50), &[7]),
            holder(Some(80), Some(1), &[7]),
        ];
        assert_eq!(
            group_holders(&holders),
            vec![group(0, &[0, 1, 2]), group(3, &[3])]
        );
    }

    #[test]
    fn root_comes_first_even_with_a_higher_pid() {
        // pid wrap-around: the master can have a higher pid than its worker.
        let holders = [
            holder(Some(5), Some(32000), &[7]),
            holder(Some(32000), Some(1), &[7]),
        ];
        assert_eq!(group_holders(&holders), vec![group(1, &[1, 0])]);
    }

    #[test]
    fn pidless_holders_are_each_their_own_group() {
        let holders = [
            holder(Some(100), Some(1), &[7]),
            holder(None, None, &[7]),
            holder(None, None, &[8]),
        ];
        assert_eq!(
            group_holders(&holders),
            vec![group(0, &[0]), group(1, &[1]), group(2, &[2])]
        );
    }

    #[test]
    fn a_hand_written_cycle_still_yields_one_group() {
        let holders = [
            holder(Some(10), Some(11), &[7]),
            holder(Some(11), Some(10), &[7]),
        ];
        assert_eq!(group_holders(&holders), vec![group(0, &[0, 1])]);
    }

    #[test]
    fn no_holders_no_groups() {
        assert!(group_holders(&[]).is_empty());
    }
}

/// Discovery backends selectable by name (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The native Linux backend (the default).
    #[default]
    Native,
}

/// The discovery backend `commands` use. Everything that picks a backend
/// goes through here, so adding one touches neither the evaluator nor the
/// commands.
pub fn backend(which: Backend) -> Box<dyn Discovery> {
    match which {
        Backend::Native => Box::new(procfs::ProcfsDiscovery::default()),
    }
}
