//! The facts discovery produces and every other module reads: sockets, the
//! processes that hold them, and how those processes group into trees.
//!
//! These types are plain data so that the evaluator, the renderers and the
//! policy test runner can all work on recorded or hand-written owners without
//! touching the system.

mod group;

use serde::Serialize;
use std::net::SocketAddr;

/// Transport protocol of the port being resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP: a port is held by a socket in LISTEN state.
    Tcp,
    /// UDP: a port is held by any bound socket.
    Udp,
}

impl Protocol {
    /// Lower-case name as used in output (`tcp`, `udp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the kernel's socket table that uses the port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SocketEntry {
    /// Local address the socket is bound to.
    pub local: SocketAddr,
    /// Remote address (`0.0.0.0:0` / `[::]:0` when unconnected).
    pub remote: SocketAddr,
    /// Kernel TCP state number (0x0A is LISTEN; UDP reports 7 when unconnected).
    pub state: u8,
    /// Socket owner's uid as the kernel recorded it; works even when the
    /// owning process cannot be inspected.
    pub uid: u32,
    /// Socket inode: the key that links the table to `/proc/PID/fd` links.
    pub inode: u64,
}

impl SocketEntry {
    /// Kernel state number of a listening TCP socket.
    pub const TCP_LISTEN: u8 = 0x0A;

    /// Whether this socket holds the port for `proto` (docs/safety.md, "What held and free mean").
    pub fn holds(&self, proto: Protocol) -> bool {
        match proto {
            Protocol::Tcp => self.state == Self::TCP_LISTEN,
            Protocol::Udp => true,
        }
    }

    /// Human name of the TCP state, for traces that mention non-holding sockets.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            0x01 => "ESTABLISHED",
            0x02 => "SYN_SENT",
            0x03 => "SYN_RECV",
            0x04 => "FIN_WAIT1",
            0x05 => "FIN_WAIT2",
            0x06 => "TIME_WAIT",
            0x07 => "CLOSE",
            0x08 => "CLOSE_WAIT",
            0x09 => "LAST_ACK",
            0x0A => "LISTEN",
            0x0B => "CLOSING",
            _ => "UNKNOWN",
        }
    }
}

/// The distinct local addresses and inodes of `held` sockets, in order: what
/// a [`Holder`] records about the sockets it has fds on.
pub fn addrs_and_inodes<'a>(
    held: impl IntoIterator<Item = &'a SocketEntry>,
) -> (Vec<SocketAddr>, Vec<u64>) {
    let (mut addrs, mut inodes) = (Vec::new(), Vec::new());
    for socket in held {
        if !addrs.contains(&socket.local) {
            addrs.push(socket.local);
        }
        if !inodes.contains(&socket.inode) {
            inodes.push(socket.inode);
        }
    }
    (addrs, inodes)
}

/// Identity of a process: a pid alone can be recycled, (pid, start time) cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ProcessId {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
    pub start_ticks: u64,
}

/// Why a holder's pid (or other fields) could not be read. Typed, so the
/// words live in the report layer and programs can tell the cases apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unknown {
    /// The fds of some processes could not be read and the socket belongs to
    /// another uid: run as that user or as root to see the pid.
    NotYourProcess,
    /// No visible process holds the socket (another pid namespace, or the
    /// socket is being closed).
    NotVisible,
    /// The socket's uid belongs to none of the visible holders while some
    /// processes could not be inspected: the real root of the process tree
    /// sharing the socket is hidden (a root parent of a worker that dropped
    /// privileges, say).
    HiddenOwner,
    /// `/proc` shows another pid namespace than portguard's own, so its pids
    /// mean nothing here and cannot be signalled.
    ForeignPidNamespace,
    /// lsof shows no process on the port, but the port cannot be bound.
    LsofCannotInspect,
    /// A `[[test]]` owner given without a pid.
    TestOwner,
}

/// A Docker container behind a `docker-proxy` holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Container {
    /// Full container id.
    pub id: String,
    /// Container name, without the leading `/`.
    pub name: String,
    /// Image reference the container was created from (`postgres:16`).
    pub image: String,
    /// `com.docker.compose.project` label, when present.
    pub compose_project: Option<String>,
    /// `com.docker.compose.service` label, when present.
    pub compose_service: Option<String>,
}

impl Container {
    /// The 12-digit id that `docker ps` shows.
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }
}

/// The systemd unit a process runs in, from its cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Unit {
    /// The unit's name: `nginx.service`, `session-3.scope`.
    pub name: String,
    /// The uid whose user manager (`user@UID.service`) runs it, for a user
    /// unit; `None` for a system unit.
    pub user: Option<u32>,
}

impl Unit {
    /// Whether a service manager may start it again when it dies (a
    /// `.service`; a `.scope` only groups processes started elsewhere).
    pub fn is_service(&self) -> bool {
        self.name.ends_with(".service")
    }
}

/// A process (or an unseen owner) holding one or more sockets on the port.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Holder {
    /// Process id, or `None` when the socket's process cannot be seen.
    pub pid: Option<u32>,
    /// Parent pid, when known.
    pub ppid: Option<u32>,
    /// Owner uid: the process's real uid, or the socket's uid without a pid.
    pub uid: u32,
    /// User name for `uid`, when the system knows one.
    pub user: Option<String>,
    /// Absolute path of the executable (`/proc/PID/exe`), when readable.
    pub exe: Option<String>,
    /// argv, when readable. Non-UTF-8 bytes are replaced (lossy) for matching.
    pub cmdline: Option<Vec<String>>,
    /// Short command name (`comm`), when known.
    pub comm: Option<String>,
    /// Start time in clock ticks since boot, when known.
    pub start_ticks: Option<u64>,
    /// Age in milliseconds at discovery time, when known.
    pub age_ms: Option<u64>,
    /// Whether the parent has exited (reparented to init or a subreaper).
    pub orphan: Option<bool>,
    /// Whether the process was stopped (SIGSTOP, Ctrl-Z) when discovered.
    pub stopped: Option<bool>,
    /// The systemd unit of its cgroup (`nginx.service`), when it has one.
    pub unit: Option<Unit>,
    /// The container behind a `docker-proxy` holder, when identified.
    pub container: Option<Container>,
    /// Why the container behind a `docker-proxy` holder could not be
    /// identified (the Docker API is unreachable, no container matches).
    pub container_error: Option<String>,
    /// Local addresses of the held sockets, as `ip:port`.
    pub addrs: Vec<SocketAddr>,
    /// Inodes of the held sockets.
    pub inodes: Vec<u64>,
    /// Why the pid (or other fields) could not be read, when they could not.
    pub unknown: Option<Unknown>,
}

impl Holder {
    /// A holder whose process cannot be seen: only the socket's uid, its
    /// addresses and inodes are known, and why.
    pub fn unseen(uid: u32, addrs: Vec<SocketAddr>, inodes: Vec<u64>, why: Unknown) -> Self {
        Holder {
            pid: None,
            ppid: None,
            uid,
            user: None,
            exe: None,
            cmdline: None,
            comm: None,
            start_ticks: None,
            age_ms: None,
            orphan: None,
            stopped: None,
            unit: None,
            container: None,
            container_error: None,
            addrs,
            inodes,
            unknown: Some(why),
        }
    }

    /// Whether it is dockerd's port forwarder (`docker-proxy`, or podman's
    /// `rootlessport`), which portguard never signals: the container behind
    /// it is what holds the port.
    pub fn is_docker_proxy(&self) -> bool {
        let base = |path: &str| path.rsplit('/').next().unwrap_or(path).to_string();
        let names = ["docker-proxy", "rootlessport"];
        self.cmdline
            .as_ref()
            .and_then(|argv| argv.first())
            .map(|a| base(a))
            .into_iter()
            .chain(self.exe.as_deref().map(base))
            .any(|name| names.contains(&name.as_str()))
    }

    /// The (pid, start time) identity, when both are known.
    pub fn id(&self) -> Option<ProcessId> {
        Some(ProcessId {
            pid: self.pid?,
            start_ticks: self.start_ticks?,
        })
    }

    /// argv joined by single spaces, the string `match.cmdline` is searched in.
    pub fn cmdline_joined(&self) -> Option<String> {
        self.cmdline.as_ref().map(|argv| argv.join(" "))
    }
}

/// What a directory of client records said: the live clients of a server,
/// recorded as one file per client named `<pid>` or `<pid>.<ext>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Clients {
    /// The directory, expanded.
    pub dir: String,
    /// What reading it gave.
    pub seen: ClientsSeen,
}

/// What reading a client directory gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ClientsSeen {
    /// The directory does not exist: no clients.
    Missing,
    /// It could not be read: whether there are clients is unknown.
    Unreadable {
        /// Why.
        error: String,
    },
    /// It was read.
    Read {
        /// Every client file, with what portguard made of it.
        files: Vec<ClientFile>,
        /// Files beyond the first this many were not looked at.
        truncated: bool,
    },
}

impl ClientsSeen {
    /// Whether any client is alive; `None` when that is unknown.
    pub fn any_live(&self) -> Option<bool> {
        match self {
            ClientsSeen::Missing => Some(false),
            ClientsSeen::Unreadable { .. } => None,
            ClientsSeen::Read { files, truncated } => {
                let live = files.iter().any(|f| f.status == ClientStatus::Live);
                // Unread files could hold a live client.
                if !live && *truncated {
                    None
                } else {
                    Some(live)
                }
            }
        }
    }
}

/// One client record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ClientFile {
    /// The file's name.
    pub name: String,
    /// The pid it names.
    pub pid: u32,
    /// What portguard made of it.
    pub status: ClientStatus,
}

/// Whether a client record names a live client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientStatus {
    /// The process is alive (and, when the record has a start time, the
    /// same process, or it cannot be told apart).
    Live,
    /// No such process: the record is stale.
    Exited,
    /// The process has exited and is waiting to be reaped.
    Zombie,
    /// The pid now belongs to another process: the recorded start time
    /// differs by more than 1.0 in its unit.
    Recycled,
    /// It is portguard itself or one of its ancestors (the program asking),
    /// which is no evidence that someone else uses the server.
    Caller,
}

/// A process tree of holders: a root and the holders below it that share
/// its socket (forked workers, children that inherited the socket).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// Index of the root in [`PortState::holders`].
    pub root: usize,
    /// Indices of every member, root first.
    pub members: Vec<usize>,
}

/// What binding the port on the wildcard addresses says, the way a server
/// would (SO_REUSEADDR for TCP, as servers set it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BindProbe {
    /// A server can bind it, and nothing lingers on it.
    Free,
    /// A server that sets SO_REUSEADDR can bind it, but a bind without it
    /// fails: sockets in TIME_WAIT (or connections) remain for a while.
    Lingering,
    /// Even a SO_REUSEADDR bind fails with "address in use".
    InUse,
}

impl BindProbe {
    /// Whether a server (with SO_REUSEADDR) can bind the port.
    pub fn bindable(self) -> bool {
        self != BindProbe::InUse
    }
}

/// Everything discovery found about one port. The groups are derived from
/// the holders by the constructor, and every method that changes the
/// holders derives them again, so they can never drift apart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortState {
    /// The port.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
    /// Sockets that hold the port: listening (TCP) or bound (UDP) ones, and
    /// a process's other socket on the port when it is what keeps a server
    /// from binding.
    pub sockets: Vec<SocketEntry>,
    /// Other sockets on the port that do not hold it: connections that leave
    /// it bindable, and sockets no process owns (TIME_WAIT), which are
    /// reported but never holders.
    pub others: Vec<SocketEntry>,
    /// What a bind on the wildcard address said, when one was tried.
    pub probe: Option<BindProbe>,
    /// The client directories the policy asks about, by the directory
    /// template as the policy writes it; read once the port is held.
    pub clients: std::collections::BTreeMap<String, Clients>,
    holders: Vec<Holder>,
    groups: Vec<Group>,
}

impl PortState {
    /// The port as discovery found it; groups the holders into process
    /// trees (docs/safety.md, "What held and free mean").
    pub fn new(
        port: u16,
        protocol: Protocol,
        sockets: Vec<SocketEntry>,
        others: Vec<SocketEntry>,
        holders: Vec<Holder>,
    ) -> Self {
        let groups = group::group_holders(&holders);
        PortState {
            port,
            protocol,
            sockets,
            others,
            probe: None,
            clients: std::collections::BTreeMap::new(),
            holders,
            groups,
        }
    }

    /// Every holder, processes first in pid order, then unseen owners.
    pub fn holders(&self) -> &[Holder] {
        &self.holders
    }

    /// Holders grouped into process trees, in order of their root's index.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The root holder of each group, in group order.
    pub fn roots(&self) -> impl Iterator<Item = &Holder> {
        self.groups.iter().map(|g| &self.holders[g.root])
    }

    /// The group holder `index` belongs to.
    pub fn group_of(&self, index: usize) -> Option<&Group> {
        self.groups.iter().find(|g| g.members.contains(&index))
    }

    /// Changes holders in place (a later discovery step filling in a
    /// field); the grouping is derived again.
    pub fn update_holders(&mut self, f: impl FnMut(&mut Holder)) {
        self.holders.iter_mut().for_each(f);
        self.groups = group::group_holders(&self.holders);
    }

    /// Adds holders (owners found by a later discovery step).
    pub fn add_holders(&mut self, more: impl IntoIterator<Item = Holder>) {
        self.holders.extend(more);
        self.groups = group::group_holders(&self.holders);
    }

    /// Whether a server could bind the port when it was discovered (true
    /// when no bind was tried: something listens, or nothing was there).
    pub fn bindable(&self) -> bool {
        self.probe.is_none_or(BindProbe::bindable)
    }

    /// True when nothing holds the port.
    pub fn is_free(&self) -> bool {
        self.sockets.is_empty() && self.holders.is_empty()
    }

    /// Sockets on the port that no process owns (TIME_WAIT and the like):
    /// they can keep a server from binding for a while, but can be neither
    /// judged nor signalled.
    pub fn lingering(&self) -> impl Iterator<Item = &SocketEntry> {
        self.others.iter().filter(|s| s.inode == 0)
    }

    /// Drops the sockets (and the holders left holding nothing) whose inode
    /// is not in `live`: a socket seen in the table whose process exited
    /// while discovery looked for it is gone, not "held by an unknown pid".
    pub fn keep_sockets(&mut self, live: &[u64]) {
        let before = self.sockets.len();
        self.sockets.retain(|s| live.contains(&s.inode));
        if self.sockets.len() == before {
            return;
        }
        for h in &mut self.holders {
            h.inodes.retain(|i| live.contains(i));
        }
        self.holders.retain(|h| !h.inodes.is_empty());
        self.groups = group::group_holders(&self.holders);
    }
}

/// Outcome of a port, planned or done (JSON `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Nothing held the port.
    Free,
    /// The action freed it.
    Freed,
    /// Held by an owner the policy accepts.
    Reuse,
    /// The policy forbids touching the owner.
    Refused,
    /// The action could not free the port.
    Failed,
}

impl Outcome {
    /// The documented exit code of this outcome.
    pub fn exit_code(self) -> crate::exit::Exit {
        use crate::exit::Exit;
        match self {
            Outcome::Free | Outcome::Freed => Exit::Free,
            Outcome::Reuse => Exit::Reuse,
            Outcome::Refused => Exit::Refused,
            Outcome::Failed => Exit::Failed,
        }
    }

    /// Lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Free => "free",
            Outcome::Freed => "freed",
            Outcome::Reuse => "reuse",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

impl Outcome {
    /// Parses the JSON name (`free`, `freed`, `reuse`, `refused`, `failed`).
    pub fn parse(s: &str) -> Option<Outcome> {
        [
            Outcome::Free,
            Outcome::Freed,
            Outcome::Reuse,
            Outcome::Refused,
            Outcome::Failed,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
