//! One function per subcommand: load what it needs, run the pipeline, write
//! the output, and return the documented exit code. `main.rs` only parses
//! arguments and calls these.

use crate::actions::{Actor, PidfdSignaller, Step};
use crate::discovery::procfs::ProcfsTable;
pub use crate::discovery::Backend;
use crate::discovery::{backend, backend_with};
use crate::evaluate::Context;
use crate::exit::Exit;
use crate::lock;
use crate::model::{PortState, Protocol};
use crate::policy::{locate, LookupEnv, Policy, PolicyError, PolicySource};
use crate::ports::{expand, PortRange};
use crate::progress::{Progress, Silent, Spinner};
use crate::render::{self, PolicyInfo};
use crate::resolver::{resolve_port, PortReport, ResolveError};
use std::io::IsTerminal;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

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
    /// `--backend`: how holders are discovered.
    pub backend: Backend,
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

/// Ports resolved at the same time, at most. Each waits mostly on timers
/// and pidfds, so this bounds threads, not CPU.
const MAX_PARALLEL: usize = 16;

/// Everything one resolve run needs, shared by the per-port threads.
struct Session {
    discovery: Box<dyn crate::discovery::Discovery + Send + Sync>,
    table: ProcfsTable,
    ctx: OnceLock<Context>,
    progress: Box<dyn Progress + Send + Sync>,
    interrupted: Arc<AtomicBool>,
}

/// From here on SIGINT and SIGTERM no longer kill portguard mid-action:
/// the first one stops all further signalling, and the run reports what it
/// did so far (exit 5). A second one ends portguard at once (128 + signal).
fn watch_interrupts(flag: &Arc<AtomicBool>) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(flag));
        let _ = signal_hook::flag::register(sig, Arc::clone(flag));
    }
}

impl Session {
    fn new(show_progress: bool, which: Backend) -> Self {
        let progress: Box<dyn Progress + Send + Sync> =
            if show_progress && std::io::stderr().is_terminal() {
                Box::new(Spinner::default())
            } else {
                Box::new(Silent)
            };
        Session {
            discovery: backend(which),
            table: ProcfsTable::default(),
            ctx: OnceLock::new(),
            progress,
            interrupted: Arc::new(AtomicBool::new(false)),
        }
    }

    fn actor(&self) -> Actor<'_> {
        Actor {
            discovery: self.discovery.as_ref(),
            table: &self.table,
            signaller: &PidfdSignaller,
            ctx: &self.ctx,
            progress: self.progress.as_ref(),
            interrupted: &self.interrupted,
        }
    }

    /// Resolves one port under its lock (a dry run takes no lock: it acts
    /// on nothing, so it cannot fight anyone).
    fn resolve_one(
        &self,
        policy: &Policy,
        port: u16,
        proto: Protocol,
        dry_run: bool,
    ) -> Result<PortReport, ResolveError> {
        let actor = self.actor();
        if dry_run {
            return resolve_port(&actor, policy, port, proto, true);
        }
        let wait = policy
            .longest_timeout()
            .saturating_mul(crate::resolver::MAX_ROUNDS as u32)
            .saturating_add(LOCK_SLACK);
        let lock = match lock::acquire(port, proto, wait, &self.interrupted) {
            Ok(lock) => lock,
            Err(e) => {
                return Ok(PortReport::not_attempted(
                    port,
                    proto,
                    format!("port {port}/{proto}: {e}"),
                ))
            }
        };
        let mut report = resolve_port(&actor, policy, port, proto, false)?;
        if lock.waited >= LOCK_NOTE {
            report.steps.insert(
                0,
                Step {
                    at_ms: 0,
                    event: "locked",
                    pid: None,
                    signal: None,
                    detail: Some(format!(
                        "waited {} ms for another portguard resolving this port, then discovered again",
                        lock.waited.as_millis()
                    )),
                },
            );
        }
        Ok(report)
    }

    /// Resolves every port, concurrently, and returns the reports in port
    /// order with the combined exit code.
    fn resolve_all(
        &self,
        policy: &Policy,
        ports: &[u16],
        proto: Protocol,
        dry_run: bool,
    ) -> Result<(Vec<PortReport>, Exit), (u16, ResolveError)> {
        if !dry_run {
            watch_interrupts(&self.interrupted);
        }
        if let [port] = ports {
            // One port (the common hook): no thread to start.
            let report = self
                .resolve_one(policy, *port, proto, dry_run)
                .map_err(|e| (*port, e))?;
            let exit = report.exit();
            return Ok((vec![report], exit));
        }
        let slots: Vec<Mutex<Option<Result<PortReport, ResolveError>>>> =
            ports.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..ports.len().clamp(1, MAX_PARALLEL) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&port) = ports.get(i) else { break };
                    let result = self.resolve_one(policy, port, proto, dry_run);
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(result);
                    }
                });
            }
        });
        let mut reports = Vec::with_capacity(ports.len());
        let mut exit = Exit::Free;
        for (slot, &port) in slots.into_iter().zip(ports) {
            match slot.into_inner().ok().flatten() {
                Some(Ok(r)) => {
                    exit = exit.worst(r.exit());
                    reports.push(r);
                }
                Some(Err(e)) => return Err((port, e)),
                None => {
                    let msg =
                        format!("port {port}/{proto} was not resolved (a worker thread failed)");
                    reports.push(PortReport::not_attempted(port, proto, msg));
                    exit = exit.worst(Exit::Internal);
                }
            }
        }
        Ok((reports, exit))
    }
}

/// Extra time a second portguard waits for a port's lock beyond the
/// longest the first can take.
const LOCK_SLACK: Duration = Duration::from_secs(5);
/// A lock wait shorter than this is not worth a step in the report.
const LOCK_NOTE: Duration = Duration::from_millis(5);

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
    let session = Session::new(!opts.quiet, opts.backend);
    let proto = protocol(opts.udp);
    let (reports, exit) =
        match session.resolve_all(&policy, &expand(&opts.ports), proto, opts.explain) {
            Ok(done) => done,
            Err((port, e)) => return report_error(port, proto, &e, io),
        };
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

/// A port that could not be resolved: a policy error is exit 2 (nothing
/// was touched), anything else exit 70.
fn report_error(port: u16, proto: Protocol, e: &ResolveError, io: &mut Io<'_>) -> Exit {
    match e {
        ResolveError::Policy(invalid) => {
            let _ = writeln!(io.err, "portguard: {}", invalid.render_all());
            Exit::Usage
        }
        ResolveError::Discovery(d) => {
            let _ = writeln!(io.err, "portguard: port {port}/{proto}: {d}");
            Exit::Internal
        }
    }
}

/// Options of `portguard run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--port`, one or more.
    pub ports: Vec<PortRange>,
    /// `--policy`.
    pub policy: Option<String>,
    /// `--udp`.
    pub udp: bool,
    /// `-v`.
    pub verbose: bool,
    /// `-q`.
    pub quiet: bool,
    /// The server to start: program and arguments.
    pub command: Vec<std::ffi::OsString>,
    /// `--backend`.
    pub backend: Backend,
}

/// `portguard run`: resolves the ports, then replaces itself with the
/// command (same pid, so signals from the caller reach the server
/// directly). The command starts only when every port is free; on reuse,
/// refusal or failure portguard exits with that code and never starts it.
/// Everything portguard prints goes to stderr: stdout belongs to the server.
pub fn run(opts: &RunOptions, io: &mut Io<'_>) -> Exit {
    let (policy, why) = match load_policy(opts.policy.as_deref(), io) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let info = PolicyInfo::new(&policy, why);
    let session = Session::new(!opts.quiet, opts.backend);
    let proto = protocol(opts.udp);
    let (reports, exit) = match session.resolve_all(&policy, &expand(&opts.ports), proto, false) {
        Ok(done) => done,
        Err((port, e)) => return report_error(port, proto, &e, io),
    };
    for r in &reports {
        if opts.verbose {
            let _ = write!(io.err, "{}", render::trace_text(r, &info));
        } else if !(opts.quiet && r.exit() == Exit::Free) {
            let _ = write!(io.err, "{}", render::result_text(r));
        }
    }
    let Some((program, args)) = opts.command.split_first() else {
        let _ = writeln!(io.err, "portguard: run needs a command after --");
        return Exit::Usage;
    };
    if exit != Exit::Free {
        let _ = writeln!(
            io.err,
            "portguard: not starting {}: {}",
            program.to_string_lossy(),
            match exit {
                Exit::Reuse => "the port is already served by the process above; use it",
                _ => "the port is not free",
            }
        );
        return exit;
    }
    let _ = io.err.flush();
    let _ = io.out.flush();
    let err = std::process::Command::new(program).args(args).exec();
    let _ = writeln!(
        io.err,
        "portguard: cannot start {}: {err}",
        program.to_string_lossy()
    );
    if err.kind() == std::io::ErrorKind::NotFound {
        Exit::CommandNotFound
    } else {
        Exit::CommandNotExecutable
    }
}

/// `portguard who`: discovery only; exits 0 whether held or free. With
/// `all`, also the sockets on the port that do not hold it.
pub fn who(
    ports: &[PortRange],
    udp: bool,
    format: Format,
    which: Backend,
    all: bool,
    io: &mut Io<'_>,
) -> Exit {
    let discovery = backend_with(which, all);
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

/// Loads one policy file for `check`/`test`, compiling every regex, and
/// writes its errors to stderr.
fn load_file(file: &std::path::Path, io: &mut Io<'_>) -> Option<Policy> {
    let loaded = PolicySource::File(file.to_path_buf())
        .load()
        .and_then(|p| p.compile().map(|()| p).map_err(PolicyError::Invalid));
    match loaded {
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
