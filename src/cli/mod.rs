//! The command line: one file per subcommand, each with its own `Args`
//! struct; the argument groups several commands share are written once and
//! flattened in. Every command returns `Result<Exit, CliError>`, and
//! [`execute`] is the one place that turns an error into its message and
//! exit code.

mod check;
mod completions;
mod init;
mod man;
mod resolve;
mod run;
mod schema;
mod test;
mod who;

use crate::discovery::Backend;
use crate::exit::{Exit, EXIT_CODES_HELP};
use crate::policy::{locate, LookupEnv, Policy, PolicyError, BUILTINS};
use crate::ports::PortRange;
use crate::report::json;
use crate::resolver::ResolveError;
use clap::builder::{PossibleValue, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write;

/// Resolve port conflicts declaratively: find every process holding a port,
/// judge it by a TOML policy, and terminate, wait, refuse or reuse.
#[derive(Debug, Parser)]
#[command(name = "portguard", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Free the port(s) for a server to start, as the policy says.
    #[command(after_help = EXIT_CODES_HELP)]
    Resolve(resolve::ResolveArgs),
    /// Resolve the port(s), then replace portguard with CMD (same pid).
    ///
    /// CMD starts only when every port is free; on reuse, refusal or
    /// failure portguard exits with that code and never starts it. For
    /// servers, not for launchers such as `headroom wrap` that reuse a
    /// running server themselves.
    #[command(after_help = EXIT_CODES_HELP)]
    Run(run::RunArgs),
    /// Show who holds the port(s); changes nothing and exits 0.
    Who(who::WhoArgs),
    /// Validate policy files: every problem with file:line:column.
    Check(check::CheckArgs),
    /// Run the policies' [[test]] cases; exit 1 when one fails.
    Test(test::TestArgs),
    /// Print a JSON Schema: of the policy format (default) or of the JSON
    /// reports.
    Schema(schema::SchemaArgs),
    /// Write a starter portguard.toml and its schema; with --port, a rule
    /// for what holds that port now.
    ///
    /// Writes portguard.toml (whose first line, `#:schema
    /// ./policy.schema.json`, lets editors check and complete it) and
    /// policy.schema.json into the current directory or --dir. With --port,
    /// the port's current holder gets a rule that matches it (its command
    /// line anchored to the program, its executable, its user) and a test
    /// case built from it: a process of yours is terminated; a container, a
    /// systemd service, another user's process or one whose pid cannot be
    /// seen is refused. Never overwrites a file: when either exists, nothing
    /// is written (exit 2).
    Init(init::InitArgs),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff), or write one page per command to a
    /// directory.
    Man(man::ManArgs),
}

/// How holders are discovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum BackendArg {
    /// Netlink sock_diag and /proc (Linux); lsof elsewhere.
    #[default]
    Native,
    /// The socket table from /proc/net only.
    #[cfg(target_os = "linux")]
    Procfs,
    /// `lsof -F` (and `ps`).
    Lsof,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Native => Backend::Native,
            #[cfg(target_os = "linux")]
            BackendArg::Procfs => Backend::Procfs,
            BackendArg::Lsof => Backend::Lsof,
        }
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Text for people.
    #[default]
    Human,
    /// One JSON document on stdout.
    Json,
}

/// What is discovered: the protocol and the discovery backend.
#[derive(Debug, Clone, Args)]
pub struct DiscoveryArgs {
    /// UDP instead of TCP.
    #[arg(long)]
    pub udp: bool,
    /// How holders are discovered.
    #[arg(long, value_enum, default_value_t, value_name = "NAME")]
    pub backend: BackendArg,
}

impl DiscoveryArgs {
    fn protocol(&self) -> crate::model::Protocol {
        if self.udp {
            crate::model::Protocol::Udp
        } else {
            crate::model::Protocol::Tcp
        }
    }
}

/// Which policy decides.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Policy: a path to a TOML file, or a built-in name (headroom,
    /// headroom-reuse, mine, safe). Default: $PORTGUARD_POLICY,
    /// ./portguard.toml, the user's config, then headroom.
    #[arg(long, value_name = "P", value_parser = PolicyName)]
    pub policy: Option<String>,
}

/// How much a run prints.
#[derive(Debug, Clone, Args)]
pub struct VerbosityArgs {
    /// Print the decision trace during a real run.
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print nothing on success.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `--policy` accepts any path or name; completions offer the built-ins.
#[derive(Debug, Clone, Copy)]
struct PolicyName;

impl TypedValueParser for PolicyName {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        clap::builder::NonEmptyStringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            BUILTINS.iter().map(|(name, _)| PossibleValue::new(*name)),
        ))
    }
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

/// Why a command could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The policy could not be found or loaded: exit 2.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A port could not be resolved at all.
    #[error("port {port}: {error}")]
    Resolve {
        /// The port.
        port: u16,
        /// Why.
        error: ResolveError,
    },
    /// Discovery failed for `who`: exit 70.
    #[error("port {port}: {error}")]
    Discovery {
        /// The port.
        port: u16,
        /// Why.
        error: crate::discovery::DiscoveryError,
    },
    /// Output could not be produced: exit 70.
    #[error("{0}")]
    Output(String),
    /// The command cannot do what was asked (a file in the way, a
    /// directory that cannot be written); nothing was touched: exit 2.
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    fn exit(&self) -> Exit {
        match self {
            CliError::Policy(_)
            | CliError::Usage(_)
            | CliError::Resolve {
                error: ResolveError::Policy(_),
                ..
            } => Exit::Usage,
            CliError::Resolve { .. } | CliError::Discovery { .. } | CliError::Output(_) => {
                Exit::Internal
            }
        }
    }
}

/// Finds and loads the policy, and says why it was chosen.
fn load_policy(explicit: Option<&str>) -> Result<(Policy, &'static str), PolicyError> {
    let env = LookupEnv::from_process();
    let (source, why) = locate(explicit, &env)?;
    Ok((source.load()?, why))
}

/// Runs a parsed command line; prints any error once, in `format`.
pub fn execute(cli: Cli, io: &mut Io<'_>) -> Exit {
    let format = match &cli.command {
        Command::Resolve(a) => a.format,
        Command::Who(a) => a.format,
        _ => Format::Human,
    };
    let result = match cli.command {
        Command::Resolve(args) => resolve::run(&args, io),
        Command::Run(args) => run::run(&args, io),
        Command::Who(args) => who::run(&args, io),
        Command::Check(args) => check::run(&args, io),
        Command::Test(args) => test::run(&args, io),
        Command::Schema(args) => schema::run(&args, io),
        Command::Init(args) => init::run(&args, io),
        Command::Completions(args) => completions::run(&args, io),
        Command::Man(args) => man::run(&args, io),
    };
    match result {
        Ok(exit) => exit,
        Err(e) => report_error(&e, format, io),
    }
}

/// The one place an error becomes a message and an exit code: the policy's
/// diagnostics or the error on stderr, and with `--format json` an error
/// document on stdout too.
fn report_error(e: &CliError, format: Format, io: &mut Io<'_>) -> Exit {
    let exit = e.exit();
    let invalid = match e {
        CliError::Policy(PolicyError::Invalid(inv))
        | CliError::Resolve {
            error: ResolveError::Policy(inv),
            ..
        } => Some(inv),
        _ => None,
    };
    let text = match invalid {
        Some(inv) => inv.render_all(),
        None => e.to_string(),
    };
    let _ = writeln!(io.err, "portguard: {text}");
    if format == Format::Json {
        let kind = match exit {
            Exit::Usage if invalid.is_some() => "policy",
            Exit::Usage => "usage",
            _ => "internal",
        };
        let diagnostics = invalid
            .map(|inv| json::diagnostics(&inv.file, &inv.text, &inv.diagnostics))
            .unwrap_or_default();
        let _ = writeln!(
            io.out,
            "{}",
            json::error_json(exit, kind, &text, diagnostics)
        );
    }
    exit
}

/// Whether raw arguments ask for JSON output, for errors found before the
/// command line could be parsed.
pub fn wants_json(args: &[std::ffi::OsString]) -> bool {
    args.windows(2)
        .any(|w| w[0] == "--format" && w[1] == "json")
        || args.iter().any(|a| a == "--format=json")
}

/// A command line clap rejected: one line naming the problem (exit 2), and
/// with `--format json` an error document on stdout; `--help` and
/// `--version` print as clap does (exit 0).
pub fn usage_error(e: &clap::Error, json_out: bool, io: &mut Io<'_>) -> Exit {
    if !e.use_stderr() {
        let _ = write!(io.out, "{}", e.render());
        return Exit::Free;
    }
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid command line")
        .trim_start_matches("error: ")
        .to_string();
    // A value clap could not parse: say which, with our own reason.
    let line = match (e.kind(), e.get(clap::error::ContextKind::InvalidValue)) {
        (clap::error::ErrorKind::ValueValidation, Some(clap::error::ContextValue::String(v))) => {
            match v.parse::<PortRange>() {
                Err(port) => port.to_string(),
                Ok(_) => first,
            }
        }
        _ => first,
    };
    let _ = writeln!(io.err, "portguard: {line} (see portguard --help)");
    if json_out {
        let _ = writeln!(
            io.out,
            "{}",
            json::error_json(Exit::Usage, "usage", &line, Vec::new())
        );
    }
    Exit::Usage
}
