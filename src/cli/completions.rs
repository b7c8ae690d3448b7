//! `portguard completions SHELL`: a completion script, from the same clap
//! definition that parses the arguments.

use super::{Cli, CliError, Io};
use crate::exit::Exit;
use clap::{Args, CommandFactory};

/// Arguments of `portguard completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// `portguard completions SHELL`.
pub fn run(args: &CompletionsArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    clap_complete::generate(args.shell, &mut Cli::command(), "portguard", io.out);
    Ok(Exit::Free)
}
