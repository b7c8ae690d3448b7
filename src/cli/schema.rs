//! `portguard schema`: the JSON Schemas portguard publishes.

use super::{CliError, Io};
use crate::exit::Exit;
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
    io.out
        .write_all(text.as_bytes())
        .map_err(|e| CliError::Output(format!("cannot write the schema: {e}")))?;
    Ok(Exit::Free)
}
