//! The `portguard` binary: parse arguments, call the library, exit with the
//! documented code. Nothing else lives here.

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use portguard::commands::{self, Backend, Format, Io, ResolveOptions};
use portguard::exit::{Exit, EXIT_CODES_HELP};
use portguard::ports::PortRange;
use std::path::PathBuf;

/// Resolve port conflicts declaratively: find every process holding a port,
/// judge it by a TOML policy, and terminate, wait, refuse or reuse.
#[derive(Debug, Parser)]
#[command(name = "portguard", version, after_help = EXIT_CODES_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Human,
    Json,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Human => Format::Human,
            FormatArg::Json => Format::Json,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Free the port(s) for a server to start, as the policy says.
    #[command(after_help = EXIT_CODES_HELP)]
    Resolve {
        /// Ports (1-65535) or inclusive ranges like 8000-8010.
        #[arg(required = true, value_name = "PORT")]
        ports: Vec<PortRange>,
        /// Policy: a path to a TOML file, or a built-in name (headroom, headroom-reuse, safe).
        #[arg(long, value_name = "P")]
        policy: Option<String>,
        /// Resolve UDP ports instead of TCP.
        #[arg(long)]
        udp: bool,
        /// Print the whole decision and plan; act on nothing.
        #[arg(long)]
        explain: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        format: FormatArg,
        /// Print the decision trace during a real run.
        #[arg(short, long, conflicts_with = "quiet")]
        verbose: bool,
        /// Print nothing on success.
        #[arg(short, long)]
        quiet: bool,
        /// How holders are discovered: native (netlink + /proc), procfs, or lsof.
        #[arg(long, default_value = "native", value_name = "NAME")]
        backend: Backend,
    },
    /// Resolve the port(s), then replace portguard with CMD (same pid).
    ///
    /// CMD starts only when every port is free; on reuse, refusal or
    /// failure portguard exits with that code and never starts it.
    #[command(after_help = EXIT_CODES_HELP)]
    Run {
        /// Port (1-65535) or range the command needs; repeatable.
        #[arg(long = "port", required = true, value_name = "PORT")]
        ports: Vec<PortRange>,
        /// Policy: a path to a TOML file, or a built-in name.
        #[arg(long, value_name = "P")]
        policy: Option<String>,
        /// Resolve UDP ports instead of TCP.
        #[arg(long)]
        udp: bool,
        /// Print the decision trace.
        #[arg(short, long, conflicts_with = "quiet")]
        verbose: bool,
        /// Print nothing on success.
        #[arg(short, long)]
        quiet: bool,
        /// How holders are discovered: native (netlink + /proc), procfs, or lsof.
        #[arg(long, default_value = "native", value_name = "NAME")]
        backend: Backend,
        /// The command to start, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<std::ffi::OsString>,
    },
    /// Show who holds the port(s); changes nothing and exits 0.
    Who {
        /// Ports (1-65535) or inclusive ranges like 8000-8010.
        #[arg(required = true, value_name = "PORT")]
        ports: Vec<PortRange>,
        /// UDP instead of TCP.
        #[arg(long)]
        udp: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        format: FormatArg,
        /// How holders are discovered: native (netlink + /proc), procfs, or lsof.
        #[arg(long, default_value = "native", value_name = "NAME")]
        backend: Backend,
        /// Also list sockets on the port that do not hold it (connections).
        #[arg(short, long)]
        all: bool,
    },
    /// Validate policy files: every problem with file:line:column.
    Check {
        /// Policy files.
        #[arg(required = true, value_name = "POLICY")]
        files: Vec<PathBuf>,
        /// Treat warnings as errors (exit 2).
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Run the policies' [[test]] cases; exit 1 when one fails.
    Test {
        /// Policy files.
        #[arg(required = true, value_name = "POLICY")]
        files: Vec<PathBuf>,
    },
    /// Print the JSON Schema of the policy format.
    Schema,
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from this command line's definition.
    #[command(hide = true)]
    Man,
}

fn main() -> Exit {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("portguard: internal error: {info}; nothing further was touched");
        std::process::exit(i32::from(Exit::Internal.code()));
    }));
    // Debug builds only: lets the test suite prove the hook above.
    if cfg!(debug_assertions) && std::env::var_os("PORTGUARD_TEST_PANIC").is_some() {
        panic!("requested by PORTGUARD_TEST_PANIC");
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Free
            };
        }
    };
    // Unlocked handles: worker threads (the spinner) write to stderr too.
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut io = Io {
        out: &mut out,
        err: &mut err,
    };
    match cli.command {
        Command::Resolve {
            ports,
            policy,
            udp,
            explain,
            format,
            verbose,
            quiet,
            backend,
        } => commands::resolve(
            &ResolveOptions {
                ports,
                policy,
                udp,
                explain,
                format: format.into(),
                verbose,
                quiet,
                backend,
            },
            &mut io,
        ),
        Command::Run {
            ports,
            policy,
            udp,
            verbose,
            quiet,
            backend,
            command,
        } => commands::run(
            &commands::RunOptions {
                ports,
                policy,
                udp,
                verbose,
                quiet,
                command,
                backend,
            },
            &mut io,
        ),
        Command::Who {
            ports,
            udp,
            format,
            backend,
            all,
        } => commands::who(&ports, udp, format.into(), backend, all, &mut io),
        Command::Check {
            files,
            deny_warnings,
        } => commands::check(&files, deny_warnings, &mut io),
        Command::Test { files } => commands::test(&files, &mut io),
        Command::Schema => commands::schema(&mut io),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "portguard", io.out);
            Exit::Free
        }
        Command::Man => match clap_mangen::Man::new(Cli::command()).render(io.out) {
            Ok(()) => Exit::Free,
            Err(e) => {
                let _ = writeln!(io.err, "portguard: cannot write the man page: {e}");
                Exit::Internal
            }
        },
    }
}
