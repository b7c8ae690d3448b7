//! Snapshot tests of what `portguard check` prints for broken policies:
//! location, the offending line with a marker under the span, and help.

use portguard::policy::{load_source, PolicyError, PolicySource};

fn diagnose(text: &str) -> String {
    match load_source(text, PolicySource::File("broken.toml".into())) {
        Err(PolicyError::Invalid(inv)) => inv.render_all(),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(p) => {
            let mut out = String::new();
            for w in &p.warnings {
                out.push_str(&portguard::diagnostic::render(w, "broken.toml", text));
            }
            out
        }
    }
}

#[test]
fn typo_in_a_key() {
    insta::assert_snapshot!(diagnose(
        "name = \"x\"\n\n[[rule]]\nname = \"stale\"\nmatch.cmdline = 'proxy'\nacton = \"terminate\"\n"
    ));
}

#[test]
fn several_problems_in_one_file() {
    insta::assert_snapshot!(diagnose(
        "[defaults]\ntimeout = \"10 parsecs\"\n\n[[rule]]\nname = \"a\"\nmatch.cmdline = '(unclosed'\naction = \"refuse\"\ngrace = \"1s\"\n\n[[rule]]\nname = \"a\"\nports = [8787, \"9-3\"]\naction = \"terminate\"\nsignal = \"SIGSTOP\"\n"
    ));
}

#[test]
fn toml_syntax_error() {
    insta::assert_snapshot!(diagnose("name = \"x\"\n[[rule]\nname = \"r\"\n"));
}

#[test]
fn warnings_of_a_valid_policy() {
    insta::assert_snapshot!(diagnose(
        "[[rule]]\nname = \"everything\"\naction = \"refuse\"\nmessage = \"held by {holder}\"\n\n[[rule]]\nname = \"kill-node\"\nmatch.cmdline = 'node|'\naction = \"terminate\"\n"
    ));
}
