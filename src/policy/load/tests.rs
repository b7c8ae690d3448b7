//! The loader's unit tests: every kind of problem, with its place.

use super::*;
use crate::diagnostic::line_col;
use crate::policy::limits;
use crate::policy::{ActionKind, Health, Signal, Terminate};
use crate::ports::PortRange;
use std::path::Path;

fn load(text: &str) -> Result<Policy, Invalid> {
    match load_source(text, PolicySource::File("p.toml".into())) {
        Ok(p) => Ok(p),
        Err(PolicyError::Invalid(inv)) => Err(inv),
        Err(other) => panic!("unexpected error kind: {other}"),
    }
}

/// The single error of `text`, rendered, plus its line number.
fn one_error(text: &str) -> (String, usize) {
    let inv = load(text).expect_err("policy should be invalid");
    let errors: Vec<&Diagnostic> = inv
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{}", inv.render_all());
    let line = errors[0]
        .span
        .as_ref()
        .map_or(0, |s| line_col(text, s.start).0);
    (inv.render_all(), line)
}

const RULE: &str = "[[rule]]\nname = \"r\"\n";

#[test]
fn a_full_policy_loads_with_every_setting() {
    let p = load(
        r#"
name = "full"
description = "d"
[defaults]
action = "wait"
grace = "1s"
timeout = "5s"
[[rule]]
name = "t"
ports = [8787, "9000-9010"]
match.cmdline = 'proxy'
match.exe = '^/usr/bin/python3'
match.user = ["$self", "root", 1000]
match.orphan = true
action = "terminate"
signal = "INT"
grace = "250ms"
escalate = "SIGQUIT"
timeout = "2s"
[[rule]]
name = "w"
action = "wait"
then = "terminate"
grace = "100ms"
escalate = false
[[rule]]
name = "u"
action = "reuse"
health = "tcp"
then = "refuse"
message = "{port} {pid}"
"#,
    )
    .unwrap_or_else(|e| panic!("{}", e.render_all()));
    assert_eq!(p.name, "full");
    assert_eq!(p.rules.len(), 3);
    let t = &p.rules[0];
    assert_eq!(t.line, 8);
    assert_eq!(
        t.ports,
        Some(vec![PortRange::single(8787), "9000-9010".parse().unwrap()])
    );
    assert_eq!(
        t.criteria.user,
        Some(vec![
            UserSpec::Me,
            UserSpec::Name("root".into()),
            UserSpec::Uid(1000)
        ])
    );
    assert_eq!(t.criteria.orphan, Some(true));
    match &t.action {
        Action::Terminate(term) => {
            assert_eq!(term.signal.name, "SIGINT");
            assert_eq!(term.grace, Duration::from_millis(250));
            assert_eq!(term.escalate.map(|s| s.name), Some("SIGQUIT"));
            assert_eq!(term.timeout, Duration::from_secs(2));
        }
        other => panic!("{other:?}"),
    }
    match &p.rules[1].action {
        Action::Wait { timeout, then } => {
            assert_eq!(*timeout, Duration::from_secs(5), "defaults.timeout");
            match then.as_deref() {
                Some(Action::Terminate(t)) => {
                    assert_eq!(t.grace, Duration::from_millis(100));
                    assert_eq!(t.escalate, None);
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &p.rules[2].action,
        Action::Reuse { health: Some(Health::Tcp), then: Some(t), .. } if t.kind() == ActionKind::Refuse
    ));
    assert!(matches!(p.defaults.action, Action::Wait { .. }));
}

#[test]
fn built_in_defaults_apply() {
    let p = load(&format!("{RULE}action = \"terminate\"\n")).unwrap();
    assert_eq!(p.name, "p", "name defaults to the file stem");
    match &p.rules[0].action {
        Action::Terminate(t) => {
            assert_eq!(
                *t,
                Terminate {
                    signal: Signal::TERM,
                    grace: Duration::from_secs(3),
                    escalate: Some(Signal::KILL),
                    timeout: Duration::from_secs(10),
                    settle: Duration::from_millis(250),
                }
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        p.defaults.action,
        Action::Refuse { message: None }
    ));
}

#[test]
fn unknown_key_is_an_error_at_its_line() {
    let (text, line) = one_error(&format!(
        "{RULE}acton = \"terminate\"\naction = \"refuse\"\n"
    ));
    assert_eq!(line, 3);
    assert!(text.contains("acton"), "{text}");
    assert!(text.contains("p.toml:3:1"), "{text}");
    assert!(text.contains("3 | acton = \"terminate\""), "{text}");
    let (text, _) = one_error(&format!("{RULE}action = \"refuse\"\nmatch.cmd = 'x'\n"));
    assert!(text.contains("cmd"), "{text}");
    let (text, _) = one_error("nmae = \"x\"\n");
    assert!(
        text.contains("nmae") && text.contains("p.toml:1:1"),
        "{text}"
    );
}

#[test]
fn a_setting_of_another_action_is_an_error() {
    let (text, line) = one_error(&format!("{RULE}action = \"refuse\"\ngrace = \"1s\"\n"));
    assert_eq!(line, 4);
    assert!(
        text.contains("`grace` does not belong to action \"refuse\""),
        "{text}"
    );
    assert!(text.contains("setting of terminate"), "{text}");
    let (text, _) = one_error(&format!(
        "{RULE}action = \"terminate\"\nthen = \"refuse\"\n"
    ));
    assert!(text.contains("`then` does not belong"), "{text}");
    let (text, _) = one_error(&format!("{RULE}action = \"wait\"\nmessage = \"m\"\n"));
    assert!(text.contains("`message` does not belong"), "{text}");
}

#[test]
fn then_must_name_another_known_action() {
    let (text, _) = one_error(&format!("{RULE}action = \"wait\"\nthen = \"wait\"\n"));
    assert!(text.contains("cannot fall back to itself"), "{text}");
    let (text, _) = one_error(&format!("{RULE}action = \"wait\"\nthen = \"kill\"\n"));
    assert!(text.contains("unknown action \"kill\""), "{text}");
}

#[test]
fn duplicate_rule_names_are_an_error() {
    let (text, line) = one_error(&format!(
        "{RULE}action = \"refuse\"\n{RULE}action = \"refuse\"\n"
    ));
    assert_eq!(line, 5);
    assert!(text.contains("duplicate rule name `r`"), "{text}");
    assert!(text.contains("line 1"), "{text}");
}

#[test]
fn bad_values_are_errors_with_their_spans() {
    for (body, needle, line) in [
        (
            "match.cmdline = '(unclosed'\naction = \"refuse\"",
            "invalid regex",
            3,
        ),
        ("match.exe = '['\naction = \"refuse\"", "invalid regex", 3),
        (
            "action = \"terminate\"\ngrace = \"soon\"",
            "invalid duration \"soon\"",
            4,
        ),
        (
            "action = \"wait\"\ntimeout = \"500000000000years\"",
            "longer than a day",
            4,
        ),
        (
            "action = \"terminate\"\nsignal = \"SIGSTOP\"",
            "unknown signal \"SIGSTOP\"",
            4,
        ),
        (
            "action = \"terminate\"\nescalate = 9",
            "`escalate` must be",
            4,
        ),
        ("ports = [0]\naction = \"refuse\"", "invalid port '0'", 3),
        (
            "ports = [\"9-3\"]\naction = \"refuse\"",
            "invalid port range '9-3'",
            3,
        ),
        (
            "ports = [70000]\naction = \"refuse\"",
            "invalid port '70000'",
            3,
        ),
        (
            "ports = [true]\naction = \"refuse\"",
            "a port is a number",
            3,
        ),
        ("ports = []\naction = \"refuse\"", "empty `ports`", 3),
        (
            "match.user = \"$other\"\naction = \"refuse\"",
            "unknown user variable",
            3,
        ),
        (
            "match.user = []\naction = \"refuse\"",
            "empty `user` list",
            3,
        ),
        (
            "match.user = -1\naction = \"refuse\"",
            "uid -1 is out of range",
            3,
        ),
        ("action = \"explode\"", "unknown action \"explode\"", 3),
        (
            "action = \"reuse\"\nhealth = \"udp\"",
            "unsupported health check",
            4,
        ),
        (
            "action = \"terminate\"\ngrace = \"10s\"",
            "is not shorter than timeout",
            4,
        ),
    ] {
        let (text, got_line) = one_error(&format!("{RULE}{body}\n"));
        assert!(text.contains(needle), "{body}: {text}");
        assert_eq!(got_line, line, "{body}: {text}");
    }
}

#[test]
fn regexes_over_the_size_limit_are_a_clear_error_when_compiled() {
    let huge = format!(
        "{RULE}match.cmdline = '{}'\naction = \"refuse\"\n",
        "(a{1000}){1000}"
    );
    let policy = load(&huge).expect("the syntax is valid");
    let inv = policy.compile().expect_err("too large to compile");
    let text = inv.render_all();
    assert!(text.contains("regex is too large"), "{text}");
    assert!(text.contains("p.toml:3:17"), "{text}");
    // A pattern that cannot compile matches nothing.
    assert!(!policy.rules[0]
        .criteria
        .cmdline
        .as_ref()
        .unwrap()
        .is_match("aaaa"));
}

#[test]
fn terminate_cannot_be_the_default() {
    let (text, line) = one_error("[defaults]\naction = \"terminate\"\n");
    assert_eq!(line, 2);
    assert!(
        text.contains("never signals a process that no rule matched"),
        "{text}"
    );
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let inv = load(&format!(
        "{RULE}action = \"refuse\"\ngrace = \"1s\"\n[[rule]]\nname = \"s\"\nmatch.cmdline = '('\naction = \"nope\"\n"
    ))
    .expect_err("invalid");
    let errors = inv
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    assert_eq!(errors, 3, "{}", inv.render_all());
    assert!(inv.render_all().ends_with("policy p.toml has 3 errors"));
}

#[test]
fn toml_syntax_errors_have_a_location() {
    let inv = load("name = \"x\"\n[[rule]\n").expect_err("invalid");
    let text = inv.render_all();
    assert!(text.contains("p.toml:2:"), "{text}");
}

#[test]
fn unknown_placeholders_are_warnings() {
    let p = load(&format!(
        "{RULE}action = \"refuse\"\nmessage = \"{{port}} {{holder}}\"\n"
    ))
    .unwrap();
    assert_eq!(p.warnings.len(), 1);
    assert!(p.warnings[0].message.contains("{holder}"));
}

#[test]
fn tests_tables_are_accepted_and_checked_strictly() {
    let ok = load(&format!(
        "{RULE}action = \"refuse\"\n[[test]]\nname = \"t\"\nport = 8787\nself = \"alice\"\nexpect = {{ rule = \"r\", action = \"refuse\" }}\n[[test.owners]]\npid = 4\nppid = 1\nuser = \"alice\"\nuid = 1000\nexe = \"/usr/bin/python3\"\ncmdline = [\"python3\"]\n"
    ));
    assert!(ok.is_ok(), "{}", ok.unwrap_err().render_all());
    let (text, _) = one_error(&format!(
        "{RULE}action = \"refuse\"\n[[test]]\nname = \"t\"\nport = 8787\nexpect = {{ rule = \"r\" }}\nowners = [{{ pid = 4, colour = \"red\" }}]\n"
    ));
    assert!(text.contains("colour"), "{text}");
}

#[test]
fn invalid_utf8_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, b"name = \"\xff\"\n").unwrap();
    let err = load_file(&path).unwrap_err().to_string();
    assert!(
        err.contains("not valid UTF-8") && err.contains("bad.toml:1:9"),
        "{err}"
    );
}

fn warnings(text: &str) -> Vec<String> {
    load(text)
        .unwrap_or_else(|e| panic!("{}", e.render_all()))
        .warnings
        .iter()
        .map(|w| w.message.clone())
        .collect()
}

#[test]
fn a_rule_after_a_catch_all_is_a_warning() {
    let w = warnings("[[rule]]\nname = \"all\"\naction = \"refuse\"\n[[rule]]\nname = \"late\"\nmatch.user = 0\naction = \"reuse\"\n");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("rule `late` can never apply: rule `all` (line 1)"),
        "{w:?}"
    );
    // A rule limited to some ports is not a catch-all.
    let w = warnings("[[rule]]\nname = \"p\"\nports = [1]\naction = \"refuse\"\n[[rule]]\nname = \"late\"\naction = \"reuse\"\n");
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn a_regex_matching_the_empty_string_is_a_warning() {
    let w = warnings(
        "[[rule]]\nname = \"r\"\nmatch.cmdline = 'x*'\nmatch.user = 0\naction = \"reuse\"\n",
    );
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("matches the empty string"), "{w:?}");
    assert!(warnings("[[rule]]\nname = \"r\"\nmatch.exe = 'x+'\naction = \"reuse\"\n").is_empty());
}

#[test]
fn terminate_without_a_user_criterion_is_a_warning() {
    let w = warnings("[[rule]]\nname = \"r\"\nmatch.cmdline = 'x'\naction = \"terminate\"\n");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("without a `match.user`"), "{w:?}");
    // Also through a fallback.
    let w = warnings(
        "[[rule]]\nname = \"r\"\nmatch.cmdline = 'x'\naction = \"wait\"\nthen = \"terminate\"\n",
    );
    assert_eq!(w.len(), 1, "{w:?}");
    let w = warnings("[[rule]]\nname = \"r\"\nmatch.cmdline = 'x'\nmatch.user = \"$self\"\naction = \"terminate\"\n");
    assert!(w.is_empty(), "{w:?}");
}

// --- Input limits (issue 10) ---------------------------------------

/// A case with one owner that `$self` would match, as alice.
const SELF_CASE: &str = "[[test]]\nname = \"mine\"\nport = 8787\nexpect = { rule = \"mine\" }\nowners = [{ pid = 5, ppid = 1, uid = 1000, user = \"alice\" }]\n";

#[test]
fn a_test_case_without_self_for_a_self_rule_is_an_error() {
    let rule = "[[rule]]\nname = \"mine\"\nmatch.user = \"$self\"\naction = \"refuse\"\n";
    let (text, line) = one_error(&format!("{rule}{SELF_CASE}"));
    assert_eq!(line, 5, "{text}");
    assert!(
        text.contains("test \"mine\" gives no `self`, so rule `mine` (line 1), which matches `user = \"$self\"`, can never apply in it"),
        "{text}"
    );
    assert!(
        text.contains("help: add `self = \"alice\"` (a user name or uid) to the test case"),
        "{text}"
    );
    // In a list of users too.
    let listed = rule.replace("\"$self\"", "[0, \"$self\"]");
    one_error(&format!("{listed}{SELF_CASE}"));
    // With `self`, by name or uid, it loads.
    for who in ["\"alice\"", "1000"] {
        let case = SELF_CASE.replace("port = 8787", &format!("port = 8787\nself = {who}"));
        let p = load(&format!("{rule}{case}")).unwrap_or_else(|e| panic!("{}", e.render_all()));
        assert_eq!(p.tests.len(), 1);
    }
    // A rule limited to other ports cannot apply to the case; a case
    // without owners (a free port) evaluates no rule.
    let other_port = rule.replace("[[rule]]\n", "[[rule]]\nports = [1]\n");
    assert!(load(&format!("{other_port}{SELF_CASE}")).is_ok());
    let free = "[[test]]\nname = \"free\"\nport = 8787\nexpect = { outcome = \"free\" }\n";
    assert!(load(&format!("{rule}{free}")).is_ok());
    // A policy without `$self` needs no `self`.
    let plain = rule.replace("\"$self\"", "1000");
    assert!(load(&format!("{plain}{SELF_CASE}")).is_ok());
}

#[test]
fn more_than_a_thousand_rules_is_an_error() {
    let rules = |n: usize| -> String {
        (0..n)
            .map(|i| format!("[[rule]]\nname = \"r{i}\"\nmatch.user = {i}\naction = \"refuse\"\n"))
            .collect()
    };
    assert!(load(&rules(limits::MAX_RULES)).is_ok());
    let (text, line) = one_error(&rules(limits::MAX_RULES + 1));
    assert_eq!(line, 4 * limits::MAX_RULES + 2, "{text}");
    assert!(
        text.contains("the policy has 1001 rules; at most 1000 are allowed"),
        "{text}"
    );
    assert!(text.contains("help: merge rules"), "{text}");
}

#[test]
fn test_cases_may_check_at_most_so_many_owners_against_rules() {
    let mut text: String = (0..100)
        .map(|i| format!("[[rule]]\nname = \"r{i}\"\nmatch.user = {i}\naction = \"refuse\"\n"))
        .collect();
    // 20 cases of 100 owners against 100 rules: 200,000 checks.
    let owners = vec!["{ pid = 5, uid = 7 }"; 100].join(", ");
    for i in 0..20 {
        text.push_str(&format!(
            "[[test]]\nname = \"t{i}\"\nport = 1\nexpect = {{ rule = \"default\" }}\nowners = [{owners}]\n"
        ));
    }
    assert!(load(&text).is_ok());
    text.push_str("[[test]]\nname = \"one more\"\nport = 1\nexpect = { rule = \"default\" }\nowners = [{ pid = 5, uid = 7 }]\n");
    let (err, line) = one_error(&text);
    assert_eq!(line, 400 + 20 * 5 + 1, "{err}");
    assert!(
        err.contains("more than 200000 owners against rules"),
        "{err}"
    );
}

/// `n` rules, each with the regex `re`.
fn regex_rules(n: usize, re: &str) -> String {
    (0..n)
        .map(|i| format!("[[rule]]\nname = \"r{i}\"\nmatch.cmdline = '{re}'\nmatch.user = {i}\naction = \"refuse\"\n"))
        .collect()
}

#[test]
fn regex_text_is_limited_for_the_whole_policy() {
    let re = "a".repeat(1024);
    assert!(load(&regex_rules(32, &re)).is_ok());
    let (text, line) = one_error(&regex_rules(33, &re));
    assert_eq!(line, 5 * 32 + 3, "{text}");
    assert!(
        text.contains("the policy's regexes together are longer than 32 KiB"),
        "{text}"
    );
    // One huge regex, too.
    let (text, _) = one_error(&regex_rules(1, &"\\w".repeat(300_000)));
    assert!(text.contains("longer than 32 KiB"), "{text}");
}

#[test]
fn unicode_classes_are_limited_for_the_whole_policy() {
    assert!(load(&regex_rules(400, &"\\w".repeat(10))).is_ok());
    let (text, line) = one_error(&regex_rules(401, &"\\w".repeat(10)));
    assert_eq!(line, 5 * 400 + 3, "{text}");
    assert!(text.contains("more than 4000 Unicode classes"), "{text}");
    assert!(text.contains("(?-u:\\w)"), "{text}");
}

#[test]
fn case_folding_is_limited_for_the_whole_policy() {
    // Three of the largest class fit; the fourth does not.
    assert!(load(&regex_rules(3, "(?i)\\p{Any}")).is_ok());
    let (text, line) = one_error(&regex_rules(4, "(?i)\\p{Any}"));
    assert_eq!(line, 5 * 3 + 3, "{text}");
    assert!(
        text.contains("case-insensitive classes are too large"),
        "{text}"
    );
    // Loading is quick all the same: the estimate comes first.
    let start = std::time::Instant::now();
    let _ = load(&regex_rules(1, &format!("(?i){}", "\\p{Any}".repeat(500))));
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn compiled_regexes_share_one_budget() {
    // Each `\w{60}N` compiles to about 3.4 MB: four fit in 16 MiB.
    let p = load(&regex_rules(50, "\\w{60}N")).unwrap();
    let inv = p.compile().expect_err("over the budget");
    let text = inv.render_all();
    assert_eq!(inv.diagnostics.len(), 1, "{text}");
    let at = inv.diagnostics[0].span.clone().unwrap();
    let (line, _) = line_col(&p.text, at.start);
    assert!((5 * 3 + 3..5 * 8).contains(&line), "{text}");
    assert!(
        text.contains("the policy's regexes together compile to more than 16 MiB"),
        "{text}"
    );
    assert!(
        text.contains("help: simplify this regex or the ones before it"),
        "{text}"
    );
    assert!(text.ends_with("policy p.toml has 1 error"), "{text}");
    // The regexes that fit still match; the one over the budget and
    // those after it (never compiled) match nothing.
    let hay = format!("{}N", "x".repeat(60));
    assert!(p.rules[0].criteria.cmdline.as_ref().unwrap().is_match(&hay));
    let over = (line - 3) / 5;
    assert!(!p.rules[over]
        .criteria
        .cmdline
        .as_ref()
        .unwrap()
        .is_match(&hay));
    // Compiling again reports the same.
    assert_eq!(p.compile().unwrap_err().render_all(), text);
    // Lazily, one pattern at a time, the budget is the same.
    let lazy = load(&regex_rules(50, "\\w{60}N")).unwrap();
    let matched = lazy
        .rules
        .iter()
        .filter(|r| r.criteria.cmdline.as_ref().unwrap().is_match(&hay))
        .count();
    assert_eq!(matched, over);
}

#[test]
fn reading_a_policy_never_blocks_and_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("p.toml");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    for (path, kind) in [
        (fifo.as_path(), "a FIFO (named pipe)"),
        (Path::new("/dev/zero"), "a character device"),
        (dir.path(), "a directory"),
    ] {
        let err = load_file(path).unwrap_err();
        assert!(matches!(err, PolicyError::NotRegular { .. }), "{err}");
        assert!(
            err.to_string().contains(&format!(
                "cannot read policy {}: it is {kind}; a policy must be a regular file",
                path.display()
            )),
            "{err}"
        );
    }
    let big = dir.path().join("big.toml");
    std::fs::write(&big, vec![b'#'; 1024 * 1024 + 1]).unwrap();
    let err = load_file(&big).unwrap_err().to_string();
    assert!(
        err.contains("it is 1048577 bytes, and a policy may be at most 1 MiB (1048576 bytes)"),
        "{err}"
    );
    // Exactly the limit is fine (a comment is a valid policy).
    std::fs::write(&big, vec![b'#'; 1024 * 1024]).unwrap();
    assert!(load_file(&big).is_ok());
    // A file that reports no size is still read, up to the limit.
    let err = load_file(Path::new("/proc/self/status")).unwrap_err();
    assert!(matches!(err, PolicyError::Invalid(_)), "{err}");
}
