//! The facts discovery produces and every other module reads: sockets, the
//! processes that hold them, and how those processes group into trees.
//!
//! These types are plain data so that the evaluator, the renderers and the
//! policy test runner can all work on recorded or hand-written owners without
//! touching the system.

use serde::Serialize;
use std::net::SocketAddr;

/// Transport protocol of the port being resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
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

    /// Whether this socket holds the port for `proto` (see SPEC "What held means").
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
    /// Local addresses of the held sockets, as `ip:port`.
    pub addrs: Vec<SocketAddr>,
    /// Inodes of the held sockets.
    pub inodes: Vec<u64>,
    /// Why the pid (or other fields) could not be read, when they could not.
    pub unknown_reason: Option<String>,
}

/// `s` with control characters (newlines, escapes) shown as `\n`, `\u{1b}`:
/// argv and paths come from other processes, and printing them raw could
/// break lines or drive the user's terminal.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

impl Holder {
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

    /// A short name for messages: the command line with argv[0] cut to its
    /// base name, at most 80 characters; else `comm`.
    pub fn short_name(&self) -> String {
        let from_argv = self.cmdline.as_ref().filter(|a| !a.is_empty()).map(|argv| {
            let base = argv[0].rsplit('/').next().unwrap_or(&argv[0]);
            let joined = std::iter::once(base)
                .chain(argv[1..].iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            let mut s = printable(&joined).into_owned();
            if s.chars().count() > 80 {
                s = s.chars().take(79).collect::<String>() + "…";
            }
            s
        });
        from_argv
            .or_else(|| self.comm.as_deref().map(|c| printable(c).into_owned()))
            .unwrap_or_else(|| "unknown process".to_string())
    }

    /// The user name, or `uid N` when the system has no name for it.
    pub fn user_label(&self) -> String {
        self.user
            .clone()
            .unwrap_or_else(|| format!("uid {}", self.uid))
    }

    /// `pid 4242 (python3 -m headroom.cli proxy, user alice)`, or for an
    /// owner that cannot be seen, its uid and why.
    pub fn describe(&self) -> String {
        match self.pid {
            Some(pid) => format!(
                "pid {pid} ({}, user {})",
                self.short_name(),
                self.user_label()
            ),
            None => format!(
                "a process of user {} whose pid is unknown ({})",
                self.user_label(),
                self.unknown_reason.as_deref().unwrap_or("not visible")
            ),
        }
    }
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

/// Everything discovery found about one port.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortState {
    /// The port.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
    /// Sockets that hold the port.
    pub sockets: Vec<SocketEntry>,
    /// Other sockets on the port that do not hold it (e.g. outgoing TCP
    /// connections); the trace may mention them.
    pub others: Vec<SocketEntry>,
    /// Every holder, processes first in pid order, then unseen owners.
    pub holders: Vec<Holder>,
    /// Holders grouped into process trees.
    pub groups: Vec<Group>,
}

impl PortState {
    /// What the socket table says about a port, before any holder is known.
    pub fn new(
        port: u16,
        protocol: Protocol,
        sockets: Vec<SocketEntry>,
        others: Vec<SocketEntry>,
    ) -> Self {
        PortState {
            port,
            protocol,
            sockets,
            others,
            holders: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// True when nothing holds the port.
    pub fn is_free(&self) -> bool {
        self.sockets.is_empty()
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
        self.groups = crate::discovery::group_holders(&self.holders);
    }
}

/// Outcome of a port, planned or done (SPEC JSON `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// The exit code of SPEC for this outcome.
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
