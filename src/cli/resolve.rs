//! `portguard resolve`: free the port(s) as the policy says.

use super::{load_policy, CliError, DiscoveryArgs, Format, Io, PolicyArgs, VerbosityArgs};
use crate::act::progress::{Progress, Silent};
use crate::exit::Exit;
use crate::ports::{expand, PortRange};
use crate::report::explain::trace_text;
use crate::report::human::result_text;
use crate::report::json::resolve_json;
use crate::report::spinner::Spinner;
use crate::report::words;
use crate::report::PolicyInfo;
use crate::resolver::session::Session;
use crate::resolver::PortReport;
use clap::Args;
use std::io::IsTerminal;

/// Arguments of `portguard resolve`.
#[derive(Debug, Clone, Args)]
pub struct ResolveArgs {
    /// Ports (1-65535) or inclusive ranges like 8000-8010.
    #[arg(required = true, value_name = "PORT")]
    pub ports: Vec<PortRange>,
    /// Which policy decides.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Protocol and discovery backend.
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    /// Print the whole decision and plan; act on nothing.
    #[arg(long)]
    pub explain: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// How much to print.
    #[command(flatten)]
    pub verbosity: VerbosityArgs,
}

/// The spinner on a terminal unless `-q`, else nothing.
pub(super) fn progress(quiet: bool) -> Box<dyn Progress + Send + Sync> {
    if !quiet && std::io::stderr().is_terminal() {
        Box::new(Spinner::default())
    } else {
        Box::new(Silent)
    }
}

/// Runs a session over the ports: the reports, the exit code, and notes
/// about the run for the output.
pub(super) fn resolve_ports(
    session: &Session,
    policy: &crate::policy::Policy,
    ports: &[PortRange],
    discovery: &DiscoveryArgs,
    dry_run: bool,
) -> Result<(Vec<PortReport>, Exit, Vec<String>), CliError> {
    let (reports, exit) = session
        .resolve_all(policy, &expand(ports), discovery.protocol(), dry_run)
        .map_err(|(port, error)| CliError::Resolve { port, error })?;
    let notes = session
        .skipped_lock_dirs
        .lock()
        .map(|dirs| {
            dirs.iter()
                .map(|(skipped, used)| words::lock_dir_skipped(skipped, used))
                .collect()
        })
        .unwrap_or_default();
    Ok((reports, exit, notes))
}

/// `portguard resolve`.
pub fn run(args: &ResolveArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    let (policy, why) = load_policy(args.policy.policy.as_deref())?;
    let info = PolicyInfo::new(&policy, why);
    let human = args.format == Format::Human;
    if args.verbosity.verbose && human {
        let _ = writeln!(
            io.err,
            "portguard: policy {} ({}, chosen by {})",
            info.name, info.source, info.chosen_by
        );
    }
    let session = Session::new(
        &policy,
        args.discovery.backend.into(),
        progress(args.verbosity.quiet),
    );
    let (reports, exit, notes) = resolve_ports(
        &session,
        &policy,
        &args.ports,
        &args.discovery,
        args.explain,
    )?;
    if !human {
        let _ = writeln!(io.out, "{}", resolve_json(&reports, &info, exit, notes));
        return Ok(exit);
    }
    for note in &notes {
        let _ = writeln!(io.err, "portguard: {note}");
    }
    for r in &reports {
        if args.explain || args.verbosity.verbose {
            let _ = write!(io.out, "{}", trace_text(r, &info));
        } else if !(args.verbosity.quiet && r.exit() == Exit::Free) {
            let text = result_text(r);
            let _ = match r.exit() {
                Exit::Free | Exit::Reuse => write!(io.out, "{text}"),
                _ => write!(io.err, "{text}"),
            };
        }
    }
    Ok(exit)
}
