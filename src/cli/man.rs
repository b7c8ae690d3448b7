//! `portguard man`: man pages in roff, from the same clap definition that
//! parses the arguments. `portguard man` prints the main page;
//! `portguard man --dir DIR` writes it and one page per command
//! (`portguard-resolve.1`, ...), which the main page refers to.

use super::{Cli, CliError, Io};
use crate::exit::{Exit, EXIT_CODES};
use clap::{Args, CommandFactory};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `portguard man`.
#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// Write portguard.1 and a page per command into this directory
    /// instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The exit codes as a roff section: one tagged paragraph per code.
fn exit_status(out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, ".SH \"EXIT STATUS\"")?;
    for (code, meaning) in EXIT_CODES {
        writeln!(out, ".TP\n\\fB{code}\\fR\n{}", roff_escape(meaning))?;
    }
    writeln!(
        out,
        ".PP\nWith several ports, the worst code wins, in the order 70, 2, 5, 4, 3, 0."
    )
}

/// Text safe in a roff paragraph: backslashes doubled, and a leading dot or
/// quote (a control line) escaped.
fn roff_escape(s: &str) -> String {
    let s = s.replace('\\', "\\\\");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// One page: title, name, synopsis, description, options, the commands (on
/// the main page), exit status, version.
fn page(cmd: clap::Command, main: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(out)?;
    }
    if main {
        man.render_subcommands_section(out)?;
    }
    exit_status(out)?;
    man.render_version_section(out)
}

/// `portguard man [--dir DIR]`.
pub fn run(args: &ManArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    let cmd = Cli::command();
    let failed = |e: std::io::Error| CliError::Output(format!("cannot write the man page: {e}"));
    let Some(dir) = &args.dir else {
        page(cmd, true, io.out).map_err(failed)?;
        return Ok(Exit::Free);
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    let mut written = Vec::new();
    let mut write = |name: String, cmd: clap::Command, main: bool| -> std::io::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut file = std::fs::File::create(&path)?;
        page(cmd, main, &mut file)?;
        written.push(path);
        Ok(())
    };
    write("portguard".into(), cmd.clone(), true).map_err(failed)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("portguard-{}", sub.get_name());
        let sub = sub
            .clone()
            .name(name.clone())
            .version(cmd.get_version().unwrap_or_default().to_string());
        write(name, sub, false).map_err(failed)?;
    }
    for path in written {
        let _ = writeln!(io.out, "{}", path.display());
    }
    Ok(Exit::Free)
}
