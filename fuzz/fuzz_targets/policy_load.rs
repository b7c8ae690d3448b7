//! Arbitrary bytes as a policy file: loading, checking and rendering the
//! result (diagnostics, regex compilation, plans, client directories,
//! `[[test]]` cases and their `test -v` traces) must never panic, whatever
//! the bytes are, and what `check` and `test` print must carry no raw
//! control or bidi characters.
//!
//! Valid UTF-8 goes through `load_source` directly; anything else goes
//! through `load_file` (a real file, so the "not valid UTF-8" path and its
//! diagnostic are exercised too) and then through `load_source` as lossy
//! UTF-8, as an editor that "fixed" the encoding would hand it over.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portguard::evaluate::cases::run_all;
use portguard::policy::{load_file, load_source, Policy, PolicyError, PolicySource};
use portguard::report::explain::trace_text;
use portguard::report::json::{diagnostics, error_json};
use portguard::report::PolicyInfo;
use portguard::resolver::{End, PortReport, Round};
use portguard::terminal::is_unsafe;
use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch_file() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("portguard-fuzz-{}.toml", std::process::id()))
    })
}

/// What reaches a terminal carries no raw control or bidi characters: only
/// the line breaks portguard writes itself.
fn assert_printable(what: &str, text: &str) {
    if let Some(c) = text.chars().find(|&c| c != '\n' && is_unsafe(c)) {
        panic!("{what} contains the raw character {c:?}:\n{text:?}");
    }
}

/// The environment a client directory is expanded in.
fn env(name: &str) -> Option<String> {
    match name {
        "HOME" => Some("/home/alice".into()),
        "HEADROOM_WORKSPACE_DIR" => Some("/srv/ws".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn exercise(result: Result<Policy, PolicyError>) {
    match result {
        Ok(policy) => {
            // Regexes compile on first use; `check`, `test` and `resolve`
            // of a held port compile them all first.
            if let Err(invalid) = policy.compile() {
                assert_printable("check", &invalid.render_all());
                let _ = diagnostics(&invalid.file, &invalid.text, &invalid.diagnostics);
            }
            for w in &policy.warnings {
                assert_printable(
                    "a warning",
                    &portguard::diagnostic::render(w, "fuzz.toml", &policy.text),
                );
            }
            let _ = policy.longest_timeout();
            let _ = policy.user_names();
            for rule in &policy.rules {
                let _ = rule.action.to_string();
                let _ = rule.action.may_signal();
            }
            let _ = policy.defaults.action.to_string();
            // `match.clients` directories expand, or say why not.
            for dir in policy.client_dirs() {
                for port in [1, 8787, u16::MAX] {
                    let _ = dir.expand(port, &env);
                    let _ = dir.expand(port, &|_| None);
                }
            }
            let info = PolicyInfo::new(&policy, "the test case");
            for result in run_all(&policy) {
                if result.passed() {
                    continue;
                }
                // What `portguard test -v` prints for a failing case.
                let (state, decision) = result.evaluated;
                let report = PortReport {
                    port: state.port,
                    protocol: state.protocol,
                    dry_run: true,
                    end: End::Planned,
                    rounds: vec![Round { state, decision }],
                    steps: Vec::new(),
                    now: None,
                    lingering: 0,
                };
                assert_printable("test -v", &trace_text(&report, &info));
            }
        }
        Err(e) => {
            // Rendering slices the source at the diagnostics' spans.
            assert_printable("check", &e.to_string());
            if let PolicyError::Invalid(invalid) = &e {
                let list = diagnostics(&invalid.file, &invalid.text, &invalid.diagnostics);
                let json = error_json(portguard::exit::Exit::Usage, "policy", &e.to_string(), list);
                let _: serde_json::Value =
                    serde_json::from_str(&json).expect("the error document is JSON");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let source = PolicySource::File(PathBuf::from("fuzz.toml"));
    match std::str::from_utf8(data) {
        Ok(text) => exercise(load_source(text, source)),
        Err(_) => {
            let path = scratch_file();
            if std::fs::write(path, data).is_ok() {
                exercise(load_file(path));
            }
            exercise(load_source(&String::from_utf8_lossy(data), source));
        }
    }
});
