//! `portguard who`: discovery only; changes nothing and exits 0.

use super::{CliError, DiscoveryArgs, Format, Io};
use crate::discovery::backend_with;
use crate::exit::Exit;
use crate::model::PortState;
use crate::ports::{expand, PortRange};
use crate::report::human::who_text;
use crate::report::json::who_json;
use clap::Args;

/// Arguments of `portguard who`.
#[derive(Debug, Clone, Args)]
pub struct WhoArgs {
    /// Ports (1-65535) or inclusive ranges like 8000-8010.
    #[arg(required = true, value_name = "PORT")]
    pub ports: Vec<PortRange>,
    /// Protocol and discovery backend.
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Also list sockets on the port that do not hold it (connections).
    #[arg(short, long)]
    pub all: bool,
}

/// `portguard who`: who holds each port, and with `--all` the sockets on it
/// that do not hold it.
pub fn run(args: &WhoArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    let discovery = backend_with(args.discovery.backend.into(), args.all);
    let proto = args.discovery.protocol();
    let mut states: Vec<PortState> = Vec::new();
    for port in expand(&args.ports) {
        let state = discovery
            .discover(port, proto)
            .map_err(|error| CliError::Discovery { port, error })?;
        states.push(state);
    }
    let _ = match args.format {
        Format::Json => writeln!(io.out, "{}", who_json(&states)),
        Format::Human => write!(io.out, "{}", who_text(&states)),
    };
    Ok(Exit::Free)
}
