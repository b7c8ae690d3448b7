//! `portguard schema`: the JSON Schemas portguard publishes.

use super::{CliError, Io};
use crate::exit::Exit;
use crate::report::words;
use clap::{Args, ValueEnum};

/// Which schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Which {
    /// The policy format (`schema/policy.schema.json`).
    #[default]
    Policy,
    /// The `--format json` documents (`schema/report.schema.json`).
    Report,
}

/// Arguments of `portguard schema`.
#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {
    /// Which schema to print.
    #[arg(value_enum, default_value_t)]
    pub which: Which,
}

/// `portguard schema [policy|report]`.
pub fn run(args: &SchemaArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    let text = match args.which {
        Which::Policy => crate::policy::schema_json(),
        Which::Report => crate::report::json::schema(),
    };
    match io.out.write_all(text.as_bytes()) {
        // The reader closed the pipe (`| head`): not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::Output(words::cannot_write("the schema", &e)))
        }
        _ => Ok(Exit::Free),
    }
}
