//! Owner discovery: which sockets hold a port, and which processes hold them.
//!
//! The evaluator and the actions never read `/proc` themselves; they see the
//! system only through [`Discovery`] (sockets and their holders) and
//! [`ProcessTable`] (identity checks right before a signal). Backends
//! implement the same traits without touching the evaluator, and tests can
//! inject tables whose contents change between calls:
//!
//! - [`netlink`] (Linux, the default): the kernel filters the socket table by
//!   port over sock_diag, then one pass over `/proc/*/fd` finds the holders.
//!   Falls back to `/proc/net` when netlink is unavailable.
//! - [`procfs`] (Linux): the same owner scan, with the socket table read from
//!   `/proc/net/{tcp,tcp6,udp,udp6}`.
//! - [`lsof`]: parses `lsof -F`, the portable path for macOS and the BSDs.
//!
//! The Linux modules are compiled only on Linux, so the portable path builds
//! without them.

pub mod lsof;
#[cfg(target_os = "linux")]
pub mod netlink;
#[cfg(target_os = "linux")]
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
    /// A helper program (`lsof`) could not be run or reported an error.
    #[error("{tool}: {message}")]
    Tool {
        /// The program, e.g. `lsof`.
        tool: String,
        /// What went wrong, in the tool's words where it gave any.
        message: String,
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
    let index_of_pid: std::collections::HashMap<u32, usize> = holders
        .iter()
        .enumerate()
        .filter_map(|(i, h)| Some((h.pid?, i)))
        .collect();
    let parent_of: Vec<Option<usize>> = holders
        .iter()
        .enumerate()
        .map(|(i, child)| {
            let ppid = child.ppid?;
            child.pid?;
            let j = *index_of_pid.get(&ppid)?;
            let shares = holders[j]
                .inodes
                .iter()
                .any(|inode| child.inodes.contains(inode));
            (j != i && shares).then_some(j)
        })
        .collect();

    // Each holder's root, found once: a walk stops at the first holder whose
    // root is already known, so a deep tree costs linear time, not cubic.
    let mut root_of: Vec<Option<usize>> = vec![None; holders.len()];
    for start in 0..holders.len() {
        let mut path: Vec<usize> = Vec::new();
        let mut on_path: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
        let mut at = start;
        let root = loop {
            if let Some(known) = root_of[at] {
                break known;
            }
            if let Some(&pos) = on_path.get(&at) {
                // A cycle cannot come from a real process table (pids are
                // unique and a parent is older than its child), but data can
                // be hand-written: break it at its smallest index so every
                // member agrees on the root.
                break path[pos..].iter().copied().min().unwrap_or(at);
            }
            on_path.insert(at, path.len());
            path.push(at);
            match parent_of[at] {
                Some(parent) => at = parent,
                None => break at,
            }
        };
        for p in path {
            root_of[p] = Some(root);
        }
    }

    let mut by_root: std::collections::BTreeMap<usize, Vec<usize>> =
        std::collections::BTreeMap::new();
    for (i, root) in root_of.iter().enumerate() {
        by_root.entry(root.unwrap_or(i)).or_default().push(i);
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
///
/// Every backend produces the same [`PortState`] for the same sockets (the
/// cross-backend tests in `tests/discovery_backends.rs` hold them to that);
/// they differ in speed and in what they need from the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The fastest backend for this platform (the default). On Linux:
    /// netlink sock_diag filtered by port in the kernel, falling back to
    /// `/proc/net` when netlink is unavailable, plus the `/proc/*/fd` owner
    /// scan. Elsewhere: [`Backend::Lsof`].
    #[default]
    Native,
    /// Linux: the socket table from `/proc/net` only, never netlink. Slower
    /// on busy hosts (the kernel formats every socket as text); useful where
    /// netlink is filtered, and as the reference the native backend is
    /// tested against.
    #[cfg(target_os = "linux")]
    Procfs,
    /// `lsof -F`: portable (macOS, the BSDs), needs `lsof` on `PATH`, and
    /// sees only the processes `lsof` may inspect.
    Lsof,
}

impl Backend {
    /// Every backend name this build accepts, for `--help` and errors.
    #[cfg(target_os = "linux")]
    pub const NAMES: &'static [&'static str] = &["native", "procfs", "lsof"];
    /// Every backend name this build accepts, for `--help` and errors.
    #[cfg(not(target_os = "linux"))]
    pub const NAMES: &'static [&'static str] = &["native", "lsof"];

    /// The name [`FromStr`](std::str::FromStr) accepts for this backend.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Native => "native",
            #[cfg(target_os = "linux")]
            Backend::Procfs => "procfs",
            Backend::Lsof => "lsof",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--backend` value that names no backend of this build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown discovery backend {given:?} (expected one of: {})", Backend::NAMES.join(", "))]
pub struct UnknownBackend {
    /// The value as given.
    pub given: String,
}

impl std::str::FromStr for Backend {
    type Err = UnknownBackend;

    /// Names are matched exactly (lower case), like every other CLI value.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "native" => Ok(Backend::Native),
            #[cfg(target_os = "linux")]
            "procfs" => Ok(Backend::Procfs),
            "lsof" => Ok(Backend::Lsof),
            _ => Err(UnknownBackend {
                given: s.to_owned(),
            }),
        }
    }
}

/// The discovery backend `commands` use. Everything that picks a backend
/// goes through here, so adding one touches neither the evaluator nor the
/// commands.
pub fn backend(which: Backend) -> Box<dyn Discovery + Send + Sync> {
    backend_with(which, false)
}

/// [`backend`], also listing the sockets on the port that do not hold it
/// (`PortState::others`) — what `who` reports. The native backend skips
/// them by default: finding them walks the kernel's whole connection table.
pub fn backend_with(which: Backend, others: bool) -> Box<dyn Discovery + Send + Sync> {
    match which {
        #[cfg(target_os = "linux")]
        Backend::Native if others => Box::new(netlink::NetlinkDiscovery::default().with_others()),
        #[cfg(target_os = "linux")]
        Backend::Native => Box::new(netlink::NetlinkDiscovery::default()),
        #[cfg(not(target_os = "linux"))]
        Backend::Native => Box::new(lsof::LsofDiscovery::default()),
        #[cfg(target_os = "linux")]
        Backend::Procfs => Box::new(procfs::ProcfsDiscovery::default()),
        Backend::Lsof => Box::new(lsof::LsofDiscovery::default()),
    }
}

#[cfg(test)]
mod backend_tests {
    use super::Backend;

    #[test]
    fn every_name_round_trips() {
        for name in Backend::NAMES {
            let backend: Backend = name.parse().unwrap();
            assert_eq!(backend.name(), *name);
            assert_eq!(backend.to_string(), *name);
        }
        assert_eq!(Backend::default(), Backend::Native);
    }

    #[test]
    fn unknown_names_are_refused_with_the_choices() {
        for bad in ["", "Native", "netlink ", "ss", "proc"] {
            let err = bad.parse::<Backend>().unwrap_err();
            assert_eq!(err.given, bad);
            assert!(err.to_string().contains("native, "), "{err}");
        }
    }
}
