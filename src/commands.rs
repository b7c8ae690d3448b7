//! One function per subcommand: load what it needs, run the pipeline, write
//! the output, and return the documented exit code. `main.rs` only parses
//! arguments and calls these.

use crate::actions::{Actor, PidfdSignaller};
use crate::discovery::procfs::{self_and_ancestors, ProcfsDiscovery, ProcfsTable};
use crate::discovery::Discovery;
use crate::evaluate::Context;
use crate::exit::Exit;
use crate::model::{PortState, Protocol};
use crate::policy::{locate, LookupEnv, Policy, PolicyError, PolicySource};
use crate::ports::{expand, PortRange};
use crate::render::{self, PolicyInfo};
use crate::resolver::{resolve_port, PortReport};
use std::io::Write;
use std::path::PathBuf;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Text for people.
    #[default]
    Human,
    /// One JSON document on stdout.
    Json,
}

/// Options of `portguard resolve`.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    /// Ports and ranges to resolve.
    pub ports: Vec<PortRange>,
    /// `--policy`: a path or a built-in name.
    pub policy: Option<String>,
    /// `--udp`.
    pub udp: bool,
    /// `--explain`: plan only, act on nothing.
    pub explain: bool,
    /// `--format`.
    pub format: Format,
    /// `-v`: print the trace during a real run.
    pub verbose: bool,
    /// `-q`: print nothing on success.
    pub quiet: bool,
}

/// Where output goes, so tests can capture it.
pub struct Io<'a> {
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
}

impl std::fmt::Debug for Io<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Io")
    }
}

fn protocol(udp: bool) -> Protocol {
    if udp {
        Protocol::Udp
    } else {
        Protocol::Tcp
    }
}

/// Finds and loads the policy; on error writes it to stderr.
fn load_policy(explicit: Option<&str>, io: &mut Io<'_>) -> Result<(Policy, &'static str), Exit> {
    let env = LookupEnv::from_process();
    let loaded = locate(explicit, &env).and_then(|(source, why)| Ok((source.load()?, why)));
    loaded.map_err(|e| {
        let _ = writeln!(io.err, "portguard: {e}");
        Exit::Usage
    })
}

/// `portguard resolve`.
pub fn resolve(opts: &ResolveOptions, io: &mut Io<'_>) -> Exit {
    let (policy, why) = match load_policy(opts.policy.as_deref(), io) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let info = PolicyInfo::new(&policy, why);
    if opts.verbose && opts.format == Format::Human {
        let _ = writeln!(
            io.err,
            "portguard: policy {} ({}, chosen by {})",
            info.name, info.source, info.chosen_by
        );
    }
    let discovery = ProcfsDiscovery::default();
    let table = ProcfsTable::default();
    let ctx = Context::for_this_process(&self_and_ancestors());
    let actor = Actor {
        discovery: &discovery,
        table: &table,
        signaller: &PidfdSignaller,
        ctx: &ctx,
    };
    let proto = protocol(opts.udp);
    let mut reports: Vec<PortReport> = Vec::new();
    let mut exit = Exit::Free;
    for port in expand(&opts.ports) {
        match resolve_port(&actor, &policy, port, proto, opts.explain) {
            Ok(r) => {
                exit = exit.worst(r.exit());
                reports.push(r);
            }
            Err(e) => {
                let _ = writeln!(io.err, "portguard: port {port}/{proto}: {e}");
                return Exit::Internal;
            }
        }
    }
    match opts.format {
        Format::Json => {
            let _ = writeln!(io.out, "{}", render::resolve_json(&reports, &info, exit));
        }
        Format::Human => {
            for r in &reports {
                if opts.explain || opts.verbose {
                    let _ = write!(io.out, "{}", render::trace_text(r, &info));
                } else if !(opts.quiet && r.exit() == Exit::Free) {
                    let text = render::result_text(r);
                    let _ = match r.exit() {
                        Exit::Free | Exit::Reuse => write!(io.out, "{text}"),
                        _ => write!(io.err, "{text}"),
                    };
                }
            }
        }
    }
    exit
}

/// `portguard who`: discovery only; exits 0 whether held or free.
pub fn who(ports: &[PortRange], udp: bool, format: Format, io: &mut Io<'_>) -> Exit {
    let discovery = ProcfsDiscovery::default();
    let proto = protocol(udp);
    let mut states: Vec<PortState> = Vec::new();
    for port in expand(ports) {
        match discovery.discover(port, proto) {
            Ok(s) => states.push(s),
            Err(e) => {
                let _ = writeln!(io.err, "portguard: port {port}/{proto}: {e}");
                return Exit::Internal;
            }
        }
    }
    let _ = match format {
        Format::Json => writeln!(io.out, "{}", render::who_json(&states)),
        Format::Human => write!(io.out, "{}", render::who_text(&states)),
    };
    Exit::Free
}

/// `portguard check`: loads each policy and reports its problems; exit 0
/// when every file is valid, 2 otherwise.
pub fn check(files: &[PathBuf], io: &mut Io<'_>) -> Exit {
    let mut exit = Exit::Free;
    for file in files {
        match PolicySource::File(file.clone()).load() {
            Ok(policy) => {
                for w in &policy.warnings {
                    let _ = write!(
                        io.err,
                        "{}",
                        crate::diagnostic::render(w, &policy.source.display_name(), &policy.text)
                    );
                }
                let _ = writeln!(
                    io.out,
                    "{}: ok ({} rule{}, {} warning{})",
                    file.display(),
                    policy.rules.len(),
                    if policy.rules.len() == 1 { "" } else { "s" },
                    policy.warnings.len(),
                    if policy.warnings.len() == 1 { "" } else { "s" }
                );
            }
            Err(
                e @ (PolicyError::Read { .. }
                | PolicyError::UnknownBuiltin(_)
                | PolicyError::Invalid(_)),
            ) => {
                let _ = writeln!(io.err, "{e}");
                exit = Exit::Usage;
            }
        }
    }
    exit
}
