//! One function per subcommand: load what it needs, run the pipeline, write
//! the output, and return the documented exit code. `main.rs` only parses
//! arguments and calls these.

use crate::actions::{Actor, PidfdSignaller};
use crate::discovery::procfs::{self_and_ancestors, ProcfsTable};
use crate::discovery::{backend, Backend};
use crate::evaluate::Context;
use crate::exit::Exit;
use crate::model::{PortState, Protocol};
use crate::policy::{locate, LookupEnv, Policy, PolicySource};
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
    let discovery = backend(Backend::default());
    let table = ProcfsTable::default();
    let ctx = Context::for_this_process(&self_and_ancestors());
    let actor = Actor {
        discovery: discovery.as_ref(),
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
    let discovery = backend(Backend::default());
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

/// Loads one policy file for `check`/`test`, writing its errors to stderr.
fn load_file(file: &std::path::Path, io: &mut Io<'_>) -> Option<Policy> {
    match PolicySource::File(file.to_path_buf()).load() {
        Ok(policy) => Some(policy),
        Err(e) => {
            let _ = writeln!(io.err, "{e}");
            None
        }
    }
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// `portguard check`: every problem of every file (errors and warnings,
/// with file:line:column); exit 0 when every file is valid, 2 otherwise.
/// With `deny_warnings`, a warning makes its file invalid too.
pub fn check(files: &[PathBuf], deny_warnings: bool, io: &mut Io<'_>) -> Exit {
    let mut exit = Exit::Free;
    for file in files {
        let Some(policy) = load_file(file, io) else {
            exit = Exit::Usage;
            continue;
        };
        for w in &policy.warnings {
            let _ = write!(
                io.err,
                "{}",
                crate::diagnostic::render(w, &policy.source.display_name(), &policy.text)
            );
        }
        let warned = !policy.warnings.is_empty();
        if deny_warnings && warned {
            exit = Exit::Usage;
            let _ = writeln!(
                io.err,
                "policy {} has {} (denied by --deny-warnings)",
                file.display(),
                plural(policy.warnings.len(), "warning")
            );
        } else {
            let _ = writeln!(
                io.out,
                "{}: ok ({}, {}, {})",
                file.display(),
                plural(policy.rules.len(), "rule"),
                plural(policy.tests.len(), "test"),
                plural(policy.warnings.len(), "warning")
            );
        }
    }
    exit
}

/// `portguard test`: runs every `[[test]]` case of every file; prints `ok`
/// or `FAIL` with the reason per case, then `N passed, M failed`. Exit 1
/// when a case failed, 2 when a file is invalid.
pub fn test(files: &[PathBuf], io: &mut Io<'_>) -> Exit {
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut exit = Exit::Free;
    for file in files {
        let Some(policy) = load_file(file, io) else {
            exit = Exit::Usage;
            continue;
        };
        let _ = writeln!(io.out, "{}", file.display());
        if policy.tests.is_empty() {
            let _ = writeln!(io.out, "  (no test cases)");
        }
        for r in crate::policytest::run_all(&policy) {
            let got = format!(
                "rule {}, action {}, outcome {}",
                r.rule.as_deref().unwrap_or("default"),
                r.action.map_or("none".to_string(), |a| a.to_string()),
                r.outcome
            );
            if r.passed() {
                passed += 1;
                let _ = writeln!(io.out, "  ok    {} ({got})", r.name);
            } else {
                failed += 1;
                let _ = writeln!(
                    io.out,
                    "  FAIL  {} (line {}): {}; decided {got}",
                    r.name,
                    r.line,
                    r.failures.join("; ")
                );
            }
        }
    }
    let _ = writeln!(io.out, "{passed} passed, {failed} failed");
    if failed > 0 {
        exit = exit.worst(Exit::TestFailed);
    }
    exit
}

/// `portguard schema`: the policy JSON Schema.
pub fn schema(io: &mut Io<'_>) -> Exit {
    let _ = write!(io.out, "{}", crate::policy::schema_json());
    Exit::Free
}
