//! Arbitrary bytes as a policy file: loading, checking and rendering the
//! result (diagnostics, regex compilation, plans, `[[test]]` cases) must
//! never panic, whatever the bytes are.
//!
//! Valid UTF-8 goes through `load_source` directly; anything else goes
//! through `load_file` (a real file, so the "not valid UTF-8" path and its
//! diagnostic are exercised too) and then through `load_source` as lossy
//! UTF-8, as an editor that "fixed" the encoding would hand it over.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portguard::policy::{load_file, load_source, Policy, PolicyError, PolicySource};
use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch_file() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("portguard-fuzz-{}.toml", std::process::id()))
    })
}

fn exercise(result: Result<Policy, PolicyError>) {
    match result {
        Ok(policy) => {
            // Regexes compile on first use; `check`, `test` and `resolve`
            // of a held port compile them all first.
            if let Err(invalid) = policy.compile() {
                let _ = invalid.render_all();
            }
            for w in &policy.warnings {
                let _ = portguard::diagnostic::render(w, "fuzz.toml", &policy.text);
            }
            let _ = policy.longest_timeout();
            for rule in &policy.rules {
                let _ = rule.action.to_string();
                let _ = rule.action.may_signal();
            }
            let _ = policy.defaults.action.to_string();
            for result in portguard::policytest::run_all(&policy) {
                let _ = result.passed();
            }
        }
        Err(e) => {
            // Rendering slices the source at the diagnostics' spans.
            let _ = e.to_string();
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
