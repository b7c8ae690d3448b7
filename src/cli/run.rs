//! `portguard run`: resolve the ports, then replace portguard with the
//! server (same pid, so the caller's signals reach it directly).

use super::resolve::{progress, resolve_ports};
use super::{load_policy, CliError, DiscoveryArgs, Io, PolicyArgs, VerbosityArgs};
use crate::exit::Exit;
use crate::ports::PortRange;
use crate::report::explain::trace_text;
use crate::report::human::result_text;
use crate::report::words;
use crate::report::PolicyInfo;
use crate::resolver::session::Session;
use clap::Args;
use std::os::unix::process::CommandExt;

/// Arguments of `portguard run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Port (1-65535) or range the command needs; repeatable.
    #[arg(long = "port", required = true, value_name = "PORT")]
    pub ports: Vec<PortRange>,
    /// Which policy decides.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Protocol and discovery backend.
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    /// How much to print.
    #[command(flatten)]
    pub verbosity: VerbosityArgs,
    /// The command to start, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

/// `portguard run`: the command starts only when every port is free; on
/// reuse, refusal or failure portguard exits with that code and never
/// starts it. Everything portguard prints goes to stderr: stdout belongs to
/// the server.
pub fn run(args: &RunArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    let (policy, why) = load_policy(args.policy.policy.as_deref())?;
    let info = PolicyInfo::new(&policy, why);
    let session = Session::new(
        &policy,
        args.discovery.backend.into(),
        progress(args.verbosity.quiet),
    );
    let (reports, exit, notes) =
        resolve_ports(&session, &policy, &args.ports, &args.discovery, false)?;
    for note in &notes {
        let _ = writeln!(io.err, "portguard: {note}");
    }
    for r in &reports {
        if args.verbosity.verbose {
            let _ = write!(io.err, "{}", trace_text(r, &info));
        } else if !(args.verbosity.quiet && r.exit() == Exit::Free) {
            let _ = write!(io.err, "{}", result_text(r));
        }
    }
    let Some((program, rest)) = args.command.split_first() else {
        let _ = writeln!(io.err, "portguard: {}", words::RUN_NEEDS_COMMAND);
        return Ok(Exit::Usage);
    };
    if exit != Exit::Free {
        let _ = writeln!(
            io.err,
            "portguard: {}",
            words::not_starting(&program.to_string_lossy(), exit == Exit::Reuse)
        );
        return Ok(exit);
    }
    let _ = io.err.flush();
    let _ = io.out.flush();
    let err = std::process::Command::new(program).args(rest).exec();
    let _ = writeln!(
        io.err,
        "portguard: {}",
        words::cannot_start(&program.to_string_lossy(), &err)
    );
    Ok(if err.kind() == std::io::ErrorKind::NotFound {
        Exit::CommandNotFound
    } else {
        Exit::CommandNotExecutable
    })
}
