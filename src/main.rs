//! The `portguard` binary: parse arguments, run the command, exit with the
//! documented code. Nothing else lives here.

use clap::Parser;
use portguard::cli::{execute, usage_error, wants_json, Cli, Io};
use portguard::exit::Exit;

fn main() -> Exit {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("portguard: internal error: {info}; nothing further was touched");
        std::process::exit(i32::from(Exit::Internal.code()));
    }));
    // Debug builds only: lets the test suite prove the hook above.
    if cfg!(debug_assertions) && std::env::var_os("PORTGUARD_TEST_PANIC").is_some() {
        panic!("requested by PORTGUARD_TEST_PANIC");
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Unlocked handles: worker threads (the spinner) write to stderr too.
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut io = Io {
        out: &mut out,
        err: &mut err,
    };
    match Cli::try_parse_from(&args) {
        Ok(cli) => execute(cli, &mut io),
        Err(e) => usage_error(&e, wants_json(&args), &mut io),
    }
}
