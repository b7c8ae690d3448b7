//! `portguard test`: run the policies' `[[test]]` cases.

use super::check::load_file;
use super::{CliError, Io};
use crate::evaluate::cases::run_all;
use crate::exit::Exit;
use crate::report::cases;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `portguard test`.
#[derive(Debug, Clone, Args)]
pub struct TestArgs {
    /// Policy files.
    #[arg(required = true, value_name = "POLICY")]
    pub files: Vec<PathBuf>,
    /// Print the decision trace of each failing case.
    #[arg(short, long)]
    pub verbose: bool,
}

/// `portguard test`: `ok` or `FAIL` with the reason per case, then
/// `N passed, M failed`. Exit 1 when a case failed, 2 when a file is
/// invalid.
pub fn run(args: &TestArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut exit = Exit::Free;
    let mut loaded = 0usize;
    for file in &args.files {
        let Some(policy) = load_file(file, io) else {
            exit = Exit::Usage;
            continue;
        };
        loaded += 1;
        let _ = writeln!(io.out, "{}", file.display());
        if policy.tests.is_empty() {
            let _ = writeln!(io.out, "{}", cases::NO_CASES);
        }
        for r in run_all(&policy) {
            if r.passed() {
                passed += 1;
            } else {
                failed += 1;
            }
            let _ = writeln!(io.out, "{}", cases::case_line(&r));
            if args.verbose && !r.passed() {
                let _ = write!(io.out, "{}", cases::failing_trace(&r, &policy));
            }
        }
    }
    // A tally of zero cases when no file could be read would read as a pass.
    if loaded > 0 {
        let _ = writeln!(io.out, "{}", cases::tally(passed, failed));
    }
    if failed > 0 {
        exit = exit.worst(Exit::TestFailed);
    }
    Ok(exit)
}
