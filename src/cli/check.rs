//! `portguard check`: every problem of every policy file.

use super::{CliError, Io};
use crate::exit::Exit;
use crate::policy::{Policy, PolicyError, PolicySource};
use clap::Args;
use std::path::{Path, PathBuf};

/// Arguments of `portguard check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Policy files.
    #[arg(required = true, value_name = "POLICY")]
    pub files: Vec<PathBuf>,
    /// Treat warnings as errors (exit 2).
    #[arg(long)]
    pub deny_warnings: bool,
}

/// Loads one policy file for `check`/`test`, compiling every regex, and
/// writes its errors to stderr.
pub(super) fn load_file(file: &Path, io: &mut Io<'_>) -> Option<Policy> {
    let loaded = PolicySource::File(file.to_path_buf())
        .load()
        .and_then(|p| p.compile().map(|()| p).map_err(PolicyError::Invalid));
    match loaded {
        Ok(policy) => Some(policy),
        Err(PolicyError::Invalid(inv)) => {
            let _ = writeln!(io.err, "{}", inv.render_all());
            None
        }
        Err(e) => {
            let _ = writeln!(io.err, "portguard: {e}");
            None
        }
    }
}

pub(super) fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// `portguard check`: exit 0 when every file is valid, 2 otherwise. With
/// `--deny-warnings`, a warning makes its file invalid too.
pub fn run(args: &CheckArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    let mut exit = Exit::Free;
    for file in &args.files {
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
        if args.deny_warnings && !policy.warnings.is_empty() {
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
    Ok(exit)
}
