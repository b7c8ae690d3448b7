//! Owner discovery: which sockets hold a port, and which processes hold them.
//!
//! The evaluator and the actions never read the system themselves; they see
//! it only through [`Discovery`] (sockets and their holders) and
//! [`ProcessTable`] (identity checks right before a signal). Backends
//! implement the same traits, and tests inject tables whose contents change
//! between calls.
//!
//! - [`sockets`]: where the socket-table rows come from (netlink, `/proc/net`,
//!   lsof).
//! - [`proc`]: what the system says about one process, per OS.
//! - [`owners`] (Linux): the two together — the default backend.
//! - [`probe`]: whether a server can bind the port, which is what "free"
//!   means.
//! - [`unit`] and [`users`]: the systemd unit of a cgroup, user names.
//! - [`clients`]: live clients a server's users record as files.
//! - [`containers`]: the Docker container behind a `docker-proxy` holder.

pub mod clients;
pub mod containers;
#[cfg(target_os = "linux")]
pub mod owners;
pub mod probe;
pub mod proc;
pub mod sockets;
pub mod unit;
pub mod users;

use crate::model::{BindProbe, PortState, ProcessId, Protocol, SocketEntry};

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

/// Which sockets a scan treats as holding the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Listening TCP sockets, bound UDP ones.
    Holding,
    /// The same, with every other socket on the port listed in
    /// [`PortState::others`].
    All,
    /// Nothing listens but a bind fails: every socket on the port that a
    /// process owns holds it too; sockets no process owns (TIME_WAIT) are
    /// listed in [`PortState::others`].
    Blocking,
}

/// A source of sockets and the processes that hold them.
pub trait Discovery {
    /// The sockets on `port` that `scope` counts as holding, every holder
    /// (with unseen owners as pid-less holders and the reason), grouped into
    /// process trees.
    fn scan(&self, port: u16, proto: Protocol, scope: Scope) -> Result<PortState, DiscoveryError>;

    /// Only the sockets that hold `port` right now: the cheap re-check used
    /// while waiting for a port to be released.
    fn holding_sockets(
        &self,
        port: u16,
        proto: Protocol,
    ) -> Result<Vec<SocketEntry>, DiscoveryError>;

    /// Whether a server could bind the port now. A trait method so fakes can
    /// stand in for the kernel.
    fn bind_probe(&self, port: u16, proto: Protocol) -> BindProbe {
        probe::probe(port, proto)
    }

    /// Everything about `port`: its holders, and when nothing listens, what
    /// a bind says. A port is free only when a server can bind it: when a
    /// bind fails although nothing listens, the processes whose sockets are
    /// on the port hold it; sockets no process owns (TIME_WAIT) are listed
    /// in [`PortState::others`], and the probe's verdict is kept in
    /// [`PortState::probe`].
    fn discover(&self, port: u16, proto: Protocol) -> Result<PortState, DiscoveryError> {
        let state = self.scan(port, proto, Scope::Holding)?;
        if !state.is_free() {
            return Ok(state);
        }
        let probe = self.bind_probe(port, proto);
        let mut state = match probe {
            BindProbe::Free => state,
            // Bindable: list what lingers, for the note.
            BindProbe::Lingering => self.scan(port, proto, Scope::All)?,
            BindProbe::InUse => self.scan(port, proto, Scope::Blocking)?,
        };
        state.probe = Some(probe);
        Ok(state)
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

    /// Whether `pid` is stopped (SIGSTOP, Ctrl-Z), when that can be read.
    fn is_stopped(&self, pid: u32) -> Option<bool>;
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
    // lsof always lists every socket on the port.
    #[cfg(not(target_os = "linux"))]
    let _ = others;
    match which {
        #[cfg(target_os = "linux")]
        Backend::Native if others => Box::new(owners::NetlinkDiscovery::default().with_others()),
        #[cfg(target_os = "linux")]
        Backend::Native => Box::new(owners::NetlinkDiscovery::default()),
        #[cfg(not(target_os = "linux"))]
        Backend::Native => Box::new(sockets::lsof::LsofDiscovery::default()),
        #[cfg(target_os = "linux")]
        Backend::Procfs => Box::new(owners::ProcfsDiscovery::default()),
        Backend::Lsof => Box::new(sockets::lsof::LsofDiscovery::default()),
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
