//! End-to-end scenarios for the `portguard` binary.
//!
//! Every test starts real processes that hold real ports on loopback
//! (`support::Holder`), runs the real binary hermetically
//! (`support::Sandbox`), and checks both the exit code and what actually
//! happened to the processes and the port. See `support` for the guarantees
//! that keep the suite race-free and safe to run in parallel.

mod support;

mod explain;
mod fixtures;
mod headroom;
mod hook;
mod init;
mod lifecycle;
mod manual;
mod output;
mod policies;
mod policy_files;
mod report;
mod review;
mod run;
mod safety;
mod units;
mod usage;
mod who;
