//! The proc layer: what the system says about one process (its identity,
//! parent, user, executable, argv, cgroup, fds), per operating system.
//!
//! - Linux ([`linux`], [`scan`]): `/proc`, one open `/proc/PID` directory
//!   per process, and the one-pass fd scan that finds a socket's owners.
//! - Elsewhere ([`portable`]): `ps`, for identity and ancestry only; the
//!   owners come from lsof.
//!
//! [`parse`] holds the pure parsers of `/proc` text; they compile
//! everywhere, so hostile-input tests and fuzzing can feed them anything.

pub mod parse;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub mod scan;
#[cfg(target_os = "linux")]
pub use linux::{
    own_pid_namespace, self_and_ancestors, Clock, PidDir, ProcfsTable, ProcfsTable as SystemTable,
    CMDLINE_LIMIT, DEFAULT_PROC_ROOT,
};

#[cfg(not(target_os = "linux"))]
mod portable;
#[cfg(not(target_os = "linux"))]
pub use portable::{self_and_ancestors, start_id, PsTable as SystemTable};
