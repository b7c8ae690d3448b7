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

/// The issue's "done when": a file with several mistakes of different
/// kinds — misspelt keys, values of the wrong type, a missing key, a bad
/// regex, an unknown action and signal, a test case with a wrong type —
/// and every one is reported, in file order, with a suggestion.
#[test]
fn every_mistake_of_a_file_with_suggestions() {
    insta::assert_snapshot!(diagnose(
        r#"name = "dev"

[defaults]
timeout = 10
grcae = "2s"

[[rule]]
name = "vite"
ports = "5173"
match.cmdlne = 'node .*vite'
match.exe = '^/usr/bin/(node$'
match.orphan = "yes"
acton = "terminate"
signal = "SIGTREM"

[[rule]]
name = "api"
match.cmdline = 'python3 -m (api|worker'
match.user = "$self"
action = "termiante"
healthbody = "ok"

[[rule]]
description = "no name"
action = "refuse"

[[test]]
name = "vite is stopped"
port = "5173"
expect = { rule = "vite", action = "terminate" }
owners = [{ pid = 4, uid = 1000, cmdline = "node vite" }]
"#
    ));
}

#[test]
fn a_rule_with_single_brackets() {
    insta::assert_snapshot!(diagnose("[rule]\nname = \"vite\"\naction = \"refuse\"\n"));
}
