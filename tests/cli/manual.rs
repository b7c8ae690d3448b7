//! The help, the man pages and the shell completions: generated from the
//! one command-line definition, complete, and without dangling references.

use crate::support::*;
use std::collections::BTreeSet;
use std::fs;
use std::process::Command;

/// The commands `portguard --help` lists (clap's `help` aside).
fn listed_commands() -> Vec<String> {
    let run = portguard(["--help"]);
    run.assert_exit(0);
    let section = run
        .stdout
        .split("Commands:\n")
        .nth(1)
        .and_then(|s| s.split("\n\n").next())
        .unwrap_or_else(|| panic!("no command list\n{}", run.describe()));
    section
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn help_lists_every_command_including_init_and_man() {
    let commands = listed_commands();
    for want in [
        "resolve",
        "run",
        "who",
        "check",
        "test",
        "schema",
        "init",
        "completions",
        "man",
    ] {
        assert!(commands.iter().any(|c| c == want), "{want}: {commands:?}");
    }
}

/// The page names a roff page refers to: `portguard\-X(1)` and
/// `\fBportguard\-X\fR(1)`, without the escapes.
fn references(roff: &str) -> BTreeSet<String> {
    let plain = roff
        .replace("\\fB", "")
        .replace("\\fR", "")
        .replace("\\-", "-");
    let mut refs = BTreeSet::new();
    for (i, _) in plain.match_indices("(1)") {
        let start = plain[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .map_or(0, |p| p + 1);
        let name = &plain[start..i];
        if name.starts_with("portguard") {
            refs.insert(name.to_owned());
        }
    }
    refs
}

#[test]
fn man_lists_every_command_and_the_exit_codes_as_a_list() {
    let run = portguard(["man"]);
    run.assert_exit(0);
    let page = &run.stdout;
    assert!(page.contains("\n.TH portguard 1 "), "{}", run.describe());
    let refs = references(page);
    for command in listed_commands() {
        assert!(
            refs.contains(&format!("portguard-{command}")),
            "{command} missing: {refs:?}"
        );
    }
    assert!(!refs.contains("portguard-help"), "{refs:?}");

    // EXIT STATUS: each code a tagged paragraph of its own, and the rule
    // for several ports a paragraph after them, not run into the last one.
    let status = page
        .split(".SH \"EXIT STATUS\"\n")
        .nth(1)
        .and_then(|s| s.split("\n.SH").next())
        .unwrap_or_else(|| panic!("no EXIT STATUS\n{page}"));
    for code in ["0", "1", "2", "3", "4", "5", "70", "126/127"] {
        assert!(
            status.contains(&format!(".TP\n\\fB{code}\\fR\n")),
            "code {code}\n{status}"
        );
    }
    assert!(
        status.contains(".PP\nWith several ports, the worst code wins"),
        "{status}"
    );
}

#[test]
fn man_dir_writes_every_page_the_main_page_names_and_nothing_dangles() {
    let sandbox = Sandbox::new();
    let dir = sandbox.work_dir().join("man1");
    let run = sandbox.run(["man", "--dir", dir.to_str().unwrap()]);
    run.assert_exit(0);
    let written: BTreeSet<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut expected: BTreeSet<String> = listed_commands()
        .iter()
        .map(|c| format!("portguard-{c}.1"))
        .collect();
    expected.insert("portguard.1".into());
    assert_eq!(written, expected);
    for name in &written {
        let page = fs::read_to_string(dir.join(name)).unwrap();
        let title = name.trim_end_matches(".1");
        assert!(
            page.contains(&format!("\n.TH {title} 1 ")),
            "{name}: {page}"
        );
        for r in references(&page) {
            assert!(
                written.contains(&format!("{r}.1")),
                "{name} names {r}(1), which is not written"
            );
        }
        // Each command's page shows how to call it, and only its own
        // options: no --version, which subcommands do not take.
        if let Some(command) = title.strip_prefix("portguard-") {
            let synopsis = page
                .split(".SH SYNOPSIS\n")
                .nth(1)
                .and_then(|s| s.lines().next())
                .unwrap_or("");
            assert!(
                synopsis.starts_with(&format!("\\fBportguard {command}\\fR")),
                "{name}: {synopsis}"
            );
            assert!(!page.contains("\\-\\-version"), "{name}");
            assert!(page.contains(".SH \"EXIT STATUS\""), "{name}");
        }
    }
}

/// The pages render cleanly where a man renderer is installed: groff
/// gives no warnings, and the exit codes come out as a list.
#[test]
fn man_pages_render_without_warnings() {
    if Command::new("groff").arg("--version").output().is_err() {
        eprintln!("skipped: groff is not installed");
        return;
    }
    let sandbox = Sandbox::new();
    let dir = sandbox.work_dir().join("man1");
    sandbox
        .run(["man", "--dir", dir.to_str().unwrap()])
        .assert_exit(0);
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let out = Command::new("groff")
            // Plain text: no escape sequences, no overstriking.
            .args([
                "-man", "-Tutf8", "-ww", "-rLL=80n", "-P-c", "-P-b", "-P-u", "-P-o",
            ])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "{}: {stderr}",
            path.display()
        );
        if path.ends_with("portguard.1") {
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text.lines().map(str::trim).collect();
            for code in ["0", "3", "4", "5", "2", "70"] {
                assert!(
                    lines.iter().any(|l| l.starts_with(&format!("{code} "))),
                    "code {code} is not an item of its own\n{text}"
                );
            }
            assert!(
                lines.iter().any(|l| l.starts_with("With several ports")),
                "{text}"
            );
        }
    }
}

#[test]
fn completions_offer_backends_and_built_in_policies() {
    let sandbox = Sandbox::new();
    let bash = sandbox.run(["completions", "bash"]);
    bash.assert_exit(0);
    let script = sandbox.write("portguard.bash", &bash.stdout);
    // What bash offers after `--policy` and `--backend`, asked the way
    // bash asks the completion function.
    let probe = r#"
        source "$1"
        complete -p portguard >/dev/null || exit 9
        offer() {
            COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
            COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
            _portguard portguard "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}" 2>/dev/null
            echo "${COMP_WORDS[*]} => ${COMPREPLY[*]}"
        }
        offer portguard resolve --policy ""
        offer portguard run --policy m
        offer portguard resolve --backend ""
        offer portguard who --backend ""
        offer portguard init --backend ""
        offer portguard ""
    "#;
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", probe, "probe"])
        .arg(&script)
        .output()
        .expect("bash (the CI machines have it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offered = |prefix: &str| -> Vec<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{prefix} => ")))
            .unwrap_or_else(|| panic!("{prefix}: {text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        offered("portguard resolve --policy "),
        ["headroom", "headroom-reuse", "mine", "safe"]
    );
    assert_eq!(offered("portguard run --policy m"), ["mine"]);
    for cmd in ["resolve", "who", "init"] {
        assert_eq!(
            offered(&format!("portguard {cmd} --backend ")),
            ["native", "procfs", "lsof"],
            "{cmd}"
        );
    }
    let commands = offered("portguard ");
    for c in listed_commands() {
        assert!(commands.contains(&c), "{c}: {commands:?}");
    }

    // zsh and fish: the same values, in their own syntax.
    let zsh = sandbox.run(["completions", "zsh"]);
    zsh.assert_exit(0);
    assert!(
        zsh.stdout
            .contains(":P:(headroom headroom-reuse mine safe)"),
        "{}",
        zsh.stdout
    );
    for backend in ["native", "procfs", "lsof"] {
        assert!(
            zsh.stdout.contains(&format!("({backend}\\:"))
                || zsh.stdout.contains(&format!("{backend}\\:\"")),
            "zsh {backend}"
        );
    }
    let fish = sandbox.run(["completions", "fish"]);
    fish.assert_exit(0);
    // One `complete` per option; its -a list may span lines.
    let option = |cmd: &str, long: &str| -> String {
        let start = fish
            .stdout
            .find(&format!("using_subcommand {cmd}\" -l {long} "))
            .unwrap_or_else(|| panic!("fish: no {cmd} --{long}\n{}", fish.stdout));
        let rest = &fish.stdout[start..];
        rest[..rest.find("\ncomplete ").unwrap_or(rest.len())].to_owned()
    };
    let policy = option("resolve", "policy");
    for name in ["headroom", "headroom-reuse", "mine", "safe"] {
        assert!(
            policy.contains(&format!("\"{name}\\t")) || policy.contains(&format!("\n{name}\\t")),
            "fish {name}: {policy}"
        );
    }
    let backend = option("resolve", "backend");
    for name in ["native", "procfs", "lsof"] {
        assert!(
            backend.contains(&format!("{name}\\t")),
            "fish {name}: {backend}"
        );
    }
}

/// `portguard man | head` and `portguard schema | head`: a reader that
/// closes the pipe early is not an error (exit 0, no message), as for `cat`.
#[test]
fn a_closed_pipe_is_not_an_error() {
    for args in [&["man"][..], &["schema"], &["schema", "report"]] {
        let mut child = std::process::Command::new(PORTGUARD)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end before portguard has written anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(out.stderr.is_empty(), "{args:?}: {out:?}");
    }
}
