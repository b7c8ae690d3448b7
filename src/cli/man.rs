//! `portguard man`: man pages in roff, from the same clap definition that
//! parses the arguments. `portguard man` prints the main page;
//! `portguard man --dir DIR` writes it and one page per command
//! (`portguard-resolve.1`, ...): exactly the pages the main page names.

use super::{Cli, CliError, Io};
use crate::exit::{Exit, EXIT_CODES};
use crate::report::manual;
use crate::report::words;
use clap::{Args, CommandFactory};
use clap_mangen::roff::{bold, roman, Roff};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `portguard man`.
#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// Write portguard.1 and a page per command into this directory
    /// instead of printing the main page.
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub dir: Option<PathBuf>,
}

/// The command as the pages show it: built (so each subcommand knows its
/// `portguard resolve` usage and `portguard-resolve` page name), without
/// clap's `help` subcommand, which has no page of its own (`--help` is on
/// every page).
fn documented() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// The commands that get a page, in the order the main page lists them.
fn subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set())
}

/// A page's file name without the section: `portguard-resolve`.
fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string()
}

/// Tagged paragraphs: one `.TP` per entry, the tag in bold.
fn tagged(roff: &mut Roff, heading: &str, entries: &[(&str, &str)]) {
    roff.control("SH", [heading]);
    for (tag, text) in entries {
        roff.control("TP", []);
        roff.text([bold(*tag)]);
        roff.text([roman(*text)]);
    }
}

/// EXIT STATUS: one tagged paragraph per code. The main page (and the
/// pages of resolve and run) have the whole table, then a paragraph of its
/// own for the rule that combines the codes of several ports.
fn exit_status(roff: &mut Roff, command: Option<&str>) {
    match command.and_then(manual::exit_codes) {
        Some(codes) => tagged(roff, "EXIT STATUS", &codes),
        None => {
            let all: Vec<(&str, &str)> = EXIT_CODES
                .iter()
                .copied()
                .filter(|(code, _)| match command {
                    None => true,
                    // `portguard test` only:
                    Some(_) if *code == "1" => false,
                    Some(c) => *code != "126/127" || c == "run",
                })
                .collect();
            tagged(roff, "EXIT STATUS", &all);
            roff.control("PP", []);
            roff.text([roman(manual::WORST_CODE)]);
        }
    }
}

/// SEE ALSO: the main page from a command's page; every command's page
/// from the main page.
fn see_also(roff: &mut Roff, names: &[String]) {
    roff.control("SH", ["SEE ALSO"]);
    let mut line = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            line.push(roman(", "));
        }
        line.push(bold(name.as_str()));
        line.push(roman("(1)"));
    }
    roff.text(line);
}

/// One page: title, name, synopsis, description, options, the commands
/// (main page), files and environment (main page), exit status, see also,
/// version.
fn page(
    cmd: &clap::Command,
    main: Option<&[String]>,
    version: &str,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone()).source(format!("portguard {version}"));
    man.render_title(out)?;
    // No hyphenation: page names such as portguard-check(1) stay whole.
    let mut nh = Roff::new();
    nh.control("nh", []);
    nh.to_writer(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    match main {
        Some(_) => {
            let mut roff = Roff::new();
            roff.control("SH", ["DESCRIPTION"]);
            for (i, paragraph) in manual::DESCRIPTION.iter().enumerate() {
                if i > 0 {
                    roff.control("PP", []);
                }
                roff.text([roman(*paragraph)]);
            }
            roff.to_writer(out)?;
        }
        None => man.render_description_section(out)?,
    }
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(out)?;
    }
    let mut roff = Roff::new();
    if let Some(pages) = main {
        man.render_subcommands_section(out)?;
        tagged(&mut roff, "FILES", &manual::FILES);
        tagged(&mut roff, "ENVIRONMENT", &manual::ENVIRONMENT);
        exit_status(&mut roff, None);
        see_also(&mut roff, pages);
    } else {
        exit_status(&mut roff, Some(cmd.get_name()));
        see_also(&mut roff, &["portguard".to_string()]);
    }
    roff.control("SH", ["VERSION"]);
    roff.text([roman(version)]);
    roff.to_writer(out)
}

/// `portguard man [--dir DIR]`.
pub fn run(args: &ManArgs, io: &mut Io<'_>) -> Result<Exit, CliError> {
    let cmd = documented();
    let version = cmd.get_version().unwrap_or_default().to_string();
    let pages: Vec<String> = subcommands(&cmd).map(page_name).collect();
    let failed = |e: std::io::Error| CliError::Output(words::cannot_write("the man page", &e));
    let Some(dir) = &args.dir else {
        return match page(&cmd, Some(&pages), &version, io.out) {
            // `portguard man | head` closed the pipe: the reader has what
            // it wanted, which is not an error (as for `cat`).
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Free),
            other => other.map(|()| Exit::Free).map_err(failed),
        };
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    let mut write = |name: &str, cmd: &clap::Command, main: Option<&[String]>| {
        let path = dir.join(format!("{name}.1"));
        let mut file = std::fs::File::create(&path)?;
        page(cmd, main, &version, &mut file)?;
        file.flush()?;
        let _ = writeln!(io.out, "{}", path.display());
        Ok(())
    };
    write("portguard", &cmd, Some(&pages)).map_err(failed)?;
    for sub in subcommands(&cmd) {
        write(&page_name(sub), sub, None).map_err(failed)?;
    }
    Ok(Exit::Free)
}
