//! Socket sources: where the rows of the kernel's socket table come from.
//!
//! - [`netlink`] (Linux, the default): sock_diag filtered by port (and, for
//!   TCP, by state) in the kernel; falls back to `/proc/net` when netlink is
//!   unavailable.
//! - [`procnet`] (Linux): `/proc/net/{tcp,tcp6,udp,udp6}`, streamed.
//! - [`lsof`]: `lsof -F`, which also names the owning processes, for
//!   systems without `/proc`.
//!
//! The first two only give rows; the proc layer ([`super::proc`]) finds the
//! processes that hold them, so both give identical holders.

pub mod lsof;
#[cfg(target_os = "linux")]
pub mod netlink;
#[cfg(target_os = "linux")]
pub mod procnet;

use super::DiscoveryError;
use crate::model::{Protocol, SocketEntry};

/// Which rows a socket table is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Rows that may hold the port: TCP LISTEN, any UDP socket. A source may
    /// return more (`/proc/net` always lists every row); callers split.
    Holding,
    /// Every row on the port, connections and TIME_WAIT included (for TCP,
    /// a walk over the kernel's whole connection table).
    All,
}

/// A source of socket-table rows.
pub trait SocketTable {
    /// The rows on local port `port` (IPv4 and IPv6), at least those `rows`
    /// asks for.
    fn rows(
        &self,
        port: u16,
        proto: Protocol,
        rows: Rows,
    ) -> Result<Vec<SocketEntry>, DiscoveryError>;
}

/// Splits table rows by their local port: rows on `port` that hold it for
/// `proto` (see [`SocketEntry::holds`]) come first, the other rows on `port`
/// (outgoing or accepted connections, TIME_WAIT) second. Rows on other ports
/// are dropped.
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
