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

// --- Every structural error (issue 13) ------------------------------

/// Every error of `text`: (line, message, help).
fn errors(text: &str) -> Vec<(usize, String, String)> {
    let inv = load(text).expect_err("policy should be invalid");
    inv.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| {
            let line = d.span.as_ref().map_or(0, |s| line_col(text, s.start).0);
            (line, d.message.clone(), d.help.clone().unwrap_or_default())
        })
        .collect()
}

/// The help of the single error of `text`, which must mention `needle`.
fn help_of_one(text: &str, needle: &str) -> String {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{text}: {errs:#?}");
    assert!(errs[0].1.contains(needle), "{text}: {errs:#?}");
    errs[0].2.clone()
}

#[test]
fn two_misspelt_keys_are_two_errors() {
    let errs = errors(&format!("{RULE}match.cmdlne = 'x'\nacton = \"refuse\"\n"));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(errs[0].0, 3);
    assert_eq!(errs[0].1, "unknown key `cmdlne` in `match`");
    assert_eq!(errs[0].2, "did you mean `cmdline`?");
    // The misspelt `action` is not also reported missing.
    assert_eq!(errs[1].1, "unknown key `acton` in [[rule]]");
    assert_eq!(errs[1].2, "did you mean `action`?");
}

#[test]
fn unknown_keys_are_reported_in_every_table() {
    let text = r#"nmae = "p"
[defaults]
grcae = "1s"
[[rule]]
name = "r"
action = "refuse"
healthbody = "ok"
match.exe = 'x'
match.usr = 0
match.clients = { dir = "d", live = true, alive = true }
[[test]]
name = "t"
port = 1
proto = "tcp"
expect = { rule = "r", outcom = "refused" }
clients = { lives = [1] }
owners = [{ pid = 4, uid = 1, colour = "red", container = { name = "c", image = "i", tag = "x" } }]
"#;
    let errs = errors(text);
    let got: Vec<(usize, &str, &str)> = errs
        .iter()
        .map(|(l, m, h)| (*l, m.as_str(), h.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "unknown key `nmae` in the policy", "did you mean `name`?"),
            (3, "unknown key `grcae` in [defaults]", "did you mean `grace`?"),
            (7, "unknown key `healthbody` in [[rule]]", "did you mean `health_body`?"),
            (9, "unknown key `usr` in `match`", "did you mean `user`?"),
            (10, "unknown key `alive` in `match.clients`", "did you mean `live`?"),
            (14, "unknown key `proto` in [[test]]", "did you mean `protocol`?"),
            (15, "unknown key `outcom` in `expect`", "did you mean `outcome`?"),
            (16, "unknown key `lives` in a test's `clients`", "did you mean `live`?"),
            (17, "unknown key `colour` in a test owner", "the keys of a test owner are pid, ppid, user, uid, exe, cmdline, orphan, addr, unit, unit_user, container"),
            (17, "unknown key `tag` in an owner's `container`", "the keys of an owner's `container` are name, image, id"),
        ],
        "{errs:#?}"
    );
}

#[test]
fn keys_in_the_wrong_table_say_where_they_belong() {
    let help = help_of_one(
        &format!("{RULE}action = \"refuse\"\ncmdline = 'x'\n"),
        "unknown key `cmdline` in [[rule]]",
    );
    assert_eq!(help, "`cmdline` is a criterion: write `match.cmdline`");
    let help = help_of_one("timeout = \"1s\"\n", "unknown key `timeout` in the policy");
    assert_eq!(help, "`timeout` belongs in [defaults]");
    let help = help_of_one("[defaults]\nsignal = \"SIGINT\"\n", "unknown key `signal`");
    assert!(
        help.starts_with("`signal` is a setting of a rule"),
        "{help}"
    );
    let help = help_of_one(
        &format!("{RULE}action = \"refuse\"\nmatch.action = \"wait\"\n"),
        "unknown key `action` in `match`",
    );
    assert_eq!(
        help,
        "`action` belongs to the rule itself, not to its `match`"
    );
    let help = help_of_one(
        &format!("{RULE}action = \"refuse\"\n[[test]]\nname = \"t\"\nport = 1\nexpect.action = \"refuse\"\nrule = \"r\"\n"),
        "unknown key `rule` in [[test]]",
    );
    assert_eq!(help, "`rule` is an expectation: write `expect.rule`");
}

#[test]
fn every_missing_required_key_is_reported() {
    let text = r#"[[rule]]
description = "nameless"
[[rule]]
name = "no action"
match.clients = { }
[[test]]
owners = [{ container = { id = "x" } }]
"#;
    let errs = errors(text);
    let got: Vec<(usize, &str, &str)> = errs
        .iter()
        .map(|(l, m, h)| (*l, m.as_str(), h.as_str()))
        .collect();
    let action_help = "add `action = \"refuse\"`; the actions are \"terminate\", \"wait\", \"refuse\" and \"reuse\"";
    assert_eq!(
        got,
        vec![
            (1, "this rule has no `name`", "add `name = \"my-server\"`"),
            (1, "this rule has no `action`", action_help),
            (3, "rule `no action` has no `action`", action_help),
            (
                5,
                "`match.clients` has no `dir`",
                "add `dir = \"~/.cache/app/clients\"`"
            ),
            (5, "`match.clients` has no `live`", "add `live = false`"),
            (
                6,
                "this test case has no `name`",
                "add `name = \"a stale server is terminated\"`"
            ),
            (6, "this test case has no `port`", "add `port = 8080`"),
            (
                6,
                "this test case has no `expect`",
                "add `expect = { rule = \"my-server\", action = \"terminate\" }`"
            ),
            (7, "`container` has no `name`", "add `name = \"db\"`"),
            (
                7,
                "`container` has no `image`",
                "add `image = \"postgres:16\"`"
            ),
        ],
        "{errs:#?}"
    );
}

#[test]
fn wrong_types_say_how_to_write_the_value() {
    for (body, message, help) in [
        (
            "action = \"wait\"\ntimeout = 10",
            "wrong type for `timeout`: expected a duration string, found an integer",
            "durations are strings like \"10s\": timeout = \"10s\"",
        ),
        (
            "action = \"refuse\"\nports = \"8080\"",
            "wrong type for `ports`: expected an array, found a string",
            "`ports` is a list: ports = [8080]",
        ),
        (
            "action = \"refuse\"\nports = \"8000-8010\"",
            "wrong type for `ports`",
            "`ports` is a list: ports = [\"8000-8010\"]",
        ),
        (
            "action = \"refuse\"\nports = 8080",
            "wrong type for `ports`: expected an array, found an integer",
            "`ports` is a list: ports = [8080]",
        ),
        (
            "action = \"refuse\"\nmatch.orphan = \"yes\"",
            "wrong type for `orphan`: expected true or false, found a string",
            "`orphan` is true or false, without quotes: orphan = true",
        ),
        (
            "action = \"refuse\"\nmatch.user = true",
            "`user` is a user name, a uid, \"$self\", or a list of them",
            "for example: match.user = \"$self\", match.user = 1000 or match.user = [\"root\", 1000]",
        ),
        (
            "action = 1",
            "wrong type for `action`: expected a string, found an integer",
            "`action` is a string, in quotes: action = \"refuse\"",
        ),
        (
            "action = \"refuse\"\nmatch = 'node'",
            "wrong type for `match`: expected a table, found a string",
            "`match` is a table: match.cmdline = '^node '",
        ),
        (
            "action = \"reuse\"\nhealth = \"tcp\"\nhealth_status = 200",
            "wrong type for `health_status`",
            "`health_status` is a list: health_status = [200]",
        ),
    ] {
        let text = format!("{RULE}{body}\n");
        let got = help_of_one(&text, message);
        assert_eq!(got, help, "{body}");
    }
}

#[test]
fn a_rule_table_with_single_brackets_is_named_as_such() {
    let errs = errors("[rule]\nname = \"r\"\naction = \"refuse\"\n");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].0, 1);
    assert_eq!(
        errs[0].1,
        "`[rule]` makes `rule` a single table, but it is an array of tables"
    );
    assert_eq!(
        errs[0].2,
        "write `[[rule]]`, with two brackets: each `[[rule]]` header starts one rule"
    );
    // A rule given inline is the same mistake, worded by its type.
    let errs = errors("rule = { name = \"r\", action = \"refuse\" }\n");
    assert_eq!(
        errs[0].1,
        "wrong type for `rule`: expected an array of tables, found a table"
    );
    assert!(
        errs[0].2.contains("write `[[rule]]`, with two brackets"),
        "{errs:#?}"
    );
    let errs = errors("[[defaults]]\naction = \"wait\"\n");
    assert_eq!(errs[0].2, "write `[defaults]`, with single brackets, once");
}

#[test]
fn test_case_values_of_the_wrong_type() {
    let case = |body: &str| {
        format!("{RULE}action = \"refuse\"\n[[test]]\nname = \"t\"\nexpect = {{ rule = \"r\" }}\n{body}\n")
    };
    for (body, message, help) in [
        (
            "port = \"8080\"",
            "wrong type for `port`: expected an integer, found a string",
            "`port` is a number, without quotes: port = 8080",
        ),
        (
            "port = 1\nowners = [{ uid = 1, cmdline = \"node server.js\" }]",
            "wrong type for `cmdline`",
            "`cmdline` is a list of strings, one per argument: cmdline = [\"node\", \"server.js\"]",
        ),
        (
            "port = 1\nowners = [{ uid = -1 }]",
            "`uid` is out of range: -1",
            "`uid` is a number from 0 to 4294967295",
        ),
        (
            "port = 1\nclients = { live = [1, -2] }",
            "wrong type for an element of `live`: expected a number from 0 to 4294967295, found `-2`",
            "for example: live = [4243]",
        ),
        (
            "port = 1\n[test.owners]\nuid = 1",
            "`[test.owners]` makes `owners` a single table",
            "write `[[test.owners]]`, with two brackets: each `[[test.owners]]` header starts one owner",
        ),
    ] {
        assert_eq!(help_of_one(&case(body), message), help, "{body}");
    }
    let help = help_of_one(
        &format!(
            "{RULE}action = \"refuse\"\n[[test]]\nname = \"t\"\nport = 1\nexpect = \"refuse\"\n"
        ),
        "wrong type for `expect`",
    );
    assert_eq!(
        help,
        "`expect` is a table: expect = { action = \"refuse\" }"
    );
}

#[test]
fn integers_too_large_for_64_bits_are_an_error_where_they_are() {
    let errs = errors(&format!(
        "{RULE}action = \"refuse\"\nmatch.user = [1, 99999999999999999999]\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].0, 4);
    assert!(errs[0].1.contains("99999999999999999999"), "{errs:#?}");
}

#[test]
fn actions_signals_and_names_suggest_the_close_one() {
    for (body, message, help) in [
        (
            "action = \"termiante\"",
            "unknown action \"termiante\"",
            "did you mean \"terminate\"?",
        ),
        (
            "action = \"explode\"",
            "unknown action \"explode\"",
            "actions are \"terminate\", \"wait\", \"refuse\" and \"reuse\"",
        ),
        (
            "action = \"wait\"\nthen = \"refuze\"",
            "unknown action \"refuze\"",
            "did you mean \"refuse\"?",
        ),
        (
            "action = \"terminate\"\nsignal = \"SIGTREM\"",
            "unknown signal \"SIGTREM\"",
            "did you mean \"SIGTERM\"?",
        ),
        (
            "action = \"terminate\"\nescalate = \"KILLL\"",
            "unknown signal \"KILLL\"",
            "did you mean \"SIGKILL\"?",
        ),
        (
            "action = \"terminate\"\nsignal = \"SIGSTOP\"",
            "unknown signal \"SIGSTOP\"",
            "signals portguard sends: SIGTERM, SIGKILL",
        ),
    ] {
        let got = help_of_one(&format!("{RULE}{body}\nmatch.user = 0\n"), message);
        assert!(got.starts_with(help), "{body}: {got}");
    }
    // A test case's expectations too.
    let case = |expect: &str| {
        format!("{RULE}action = \"refuse\"\n[[rule]]\nname = \"vite-dev\"\naction = \"refuse\"\n[[test]]\nname = \"t\"\nport = 1\nprotocol = \"tpc\"\nexpect = {expect}\n")
    };
    let errs = errors(&case(
        "{ rule = \"vite-dv\", action = \"wiat\", outcome = \"refsued\" }",
    ));
    let helps: Vec<&str> = errs.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(
        helps,
        [
            "did you mean `vite-dev`?",
            "did you mean \"wait\"?",
            "did you mean \"refused\"?",
            "did you mean \"tcp\"?",
        ],
        "{errs:#?}"
    );
}

#[test]
fn bad_regexes_are_underlined_where_the_parser_points() {
    // (pattern as written, the text the marker must cover)
    for (written, marked) in [
        ("'^/usr/bin/(node$'", "("),
        ("\"^/usr/bin/(node$\"", "("),
        ("'a{2,1}'", "{2,1}"),
        ("'x[z-a]'", "z-a"),
        ("'''\nab(c'''", "("),
        ("'é(x'", "("),
    ] {
        let text = format!("{RULE}action = \"refuse\"\nmatch.cmdline = {written}\n");
        let inv = load(&text).expect_err(written);
        let span = inv.diagnostics[0].span.clone().unwrap();
        assert_eq!(&text[span], marked, "{written}: {}", inv.render_all());
    }
    // With an escape in the string, offsets in the pattern are not
    // offsets in the file: the whole string is marked.
    let text = format!("{RULE}action = \"refuse\"\nmatch.cmdline = \"\\\\d(\"\n");
    let inv = load(&text).expect_err("unclosed");
    let span = inv.diagnostics[0].span.clone().unwrap();
    assert_eq!(&text[span], "\"\\\\d(\"", "{}", inv.render_all());
}

#[test]
fn a_structurally_broken_rule_still_has_its_values_checked() {
    // The unknown key is reported, and so are the bad regex, duration and
    // signal beside it; how keys fit together is not (`grcae` may be the
    // grace the author meant, so a default grace over the timeout is no
    // error of theirs).
    let errs = errors(&format!(
        "{RULE}action = \"terminate\"\ngrcae = \"1s\"\ntimeout = \"2s\"\nmatch.cmdline = '('\nsignal = \"SIGTREM\"\n[[rule]]\nname = \"s\"\nacton = \"wait\"\ntimeout = \"5 parsecs\"\nports = [0]\n"
    ));
    let messages: Vec<&str> = errs.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        messages,
        [
            "unknown key `grcae` in [[rule]]",
            "invalid regex: unclosed group",
            "unknown signal \"SIGTREM\"",
            "unknown key `acton` in [[rule]]",
            "invalid duration \"5 parsecs\": unknown time unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)",
            "invalid port '0': ports are 1-65535",
        ],
        "{errs:#?}"
    );
}

#[test]
fn an_unknown_action_does_not_hide_the_other_settings() {
    let errs = errors(&format!("{RULE}action = \"wiat\"\ntimeout = \"soon\"\n"));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    let errs = errors(&format!(
        "{RULE}action = \"terminate\"\nsignal = \"NOPE\"\ngrace = \"soon\"\nescalate = 3\nmatch.user = 0\n"
    ));
    assert_eq!(errs.len(), 3, "{errs:#?}");
}

#[test]
fn broken_defaults_give_no_verdict_on_what_rules_take_from_them() {
    // `timout` was meant for [defaults]; the rule's grace is not compared
    // with a timeout the author did not write.
    let errs = errors(&format!(
        "[defaults]\ntimout = \"30s\"\n{RULE}action = \"terminate\"\ngrace = \"15s\"\nmatch.user = 0\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].2, "did you mean `timeout`?");
}

#[test]
fn names_of_broken_rules_still_count() {
    // A test case may expect a rule that has a structural error...
    let errs = errors(&format!(
        "{RULE}acton = \"refuse\"\n[[test]]\nname = \"t\"\nport = 1\nexpect = {{ rule = \"r\" }}\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    // ...and a name is taken even when its rule is broken.
    let errs = errors(&format!(
        "{RULE}acton = \"refuse\"\n{RULE}action = \"refuse\"\n"
    ));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(errs[1].1, "duplicate rule name `r`");
    // When a rule has no name, a test naming an unknown rule is not judged.
    let errs = errors(
        "[[rule]]\naction = \"refuse\"\n[[test]]\nname = \"t\"\nport = 1\nexpect = { rule = \"x\" }\n",
    );
    assert_eq!(errs.len(), 1, "{errs:#?}");
}

#[test]
fn a_broken_test_case_still_has_its_values_checked() {
    let errs = errors(&format!(
        "{RULE}action = \"refuse\"\n[[test]]\nname = \"t\"\nport = 0\nself = -1\nexpect = {{ rule = \"q\", action = \"nope\" }}\nowners = [{{ pid = 1, colour = 1 }}]\n"
    ));
    let messages: Vec<&str> = errs.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(messages.len(), 5, "{errs:#?}");
    assert!(
        messages.contains(&"unknown key `colour` in a test owner"),
        "{errs:#?}"
    );
    assert!(messages.contains(&"uid -1 is out of range"), "{errs:#?}");
    assert!(
        messages.contains(&"test \"t\" expects rule `q`, which the policy does not have"),
        "{errs:#?}"
    );
    // Its owners are not: the one above has no uid, which is not reported.
    assert!(
        !messages.iter().any(|m| m.contains("no `uid`")),
        "{errs:#?}"
    );
}

#[test]
fn syntax_errors_are_one_diagnostic_with_help() {
    let errs = errors("[[rule]]\nname = \"r\"\naction = terminate\n");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].0, 3);
    assert_eq!(errs[0].2, "strings go in quotes: action = \"terminate\"");
}

mod random_files {
    //! For random files built from the format's keys (and a few that are
    //! not) with values of every type: the structural check catches every
    //! structural error, so nothing reaches serde to stop the report.
    use super::*;
    use proptest::prelude::*;

    const VALUES: &[&str] = &[
        "\"s\"",
        "'x('",
        "\"10s\"",
        "\"terminate\"",
        "\"$self\"",
        "10",
        "-1",
        "99999999999999999999",
        "0x7fffffffffffffff",
        "true",
        "1.5",
        "1979-05-27",
        "[]",
        "[1, \"a\"]",
        "[\"a\", \"b\"]",
        "[[1]]",
        "{ a = 1 }",
        "{ dir = \"d\", live = true }",
        "{ rule = \"r\" }",
        "[{ pid = 1, uid = 2 }]",
        "[{ colour = 1 }, 2]",
        "{ name = \"c\" }",
    ];
    const DEFAULTS_KEYS: &[&str] = &["action", "grace", "timeout", "settle", "grcae"];
    const RULE_KEYS: &[&str] = &[
        "ports",
        "then",
        "signal",
        "grace",
        "timeout",
        "escalate",
        "message",
        "health",
        "health_body",
        "health_status",
        "health_any_host",
        "match.cmdline",
        "match.user",
        "match.orphan",
        "match.clients",
        "match.clients.dir",
        "match.bogus",
        "acton",
        "match",
    ];
    const TEST_KEYS: &[&str] = &[
        "protocol",
        "self",
        "expect.rule",
        "owners",
        "clients",
        "clients.live",
        "prot",
    ];

    fn table(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
        proptest::collection::btree_map(
            proptest::sample::select(keys),
            proptest::sample::select(VALUES),
            0..6,
        )
        .prop_map(|m| m.iter().map(|(k, v)| format!("{k} = {v}\n")).collect())
    }

    /// A table of `keys`, often after the keys that make it complete (so
    /// the paths for sound tables are taken too).
    fn complete_or_not(
        complete: &'static str,
        keys: &'static [&'static str],
    ) -> impl Strategy<Value = String> {
        (any::<bool>(), table(keys)).prop_map(move |(whole, rest)| {
            if whole {
                format!("{complete}{rest}")
            } else {
                rest
            }
        })
    }

    fn file() -> impl Strategy<Value = String> {
        (
            proptest::option::of(proptest::sample::select(VALUES)),
            proptest::option::of(table(DEFAULTS_KEYS)),
            proptest::collection::vec(
                complete_or_not("name = \"r\"\naction = \"refuse\"\n", RULE_KEYS),
                0..4,
            ),
            proptest::collection::vec(
                complete_or_not(
                    "name = \"t\"\nport = 1\nexpect.action = \"refuse\"\n",
                    TEST_KEYS,
                ),
                0..3,
            ),
            any::<bool>(),
        )
            .prop_map(|(name, defaults, rules, tests, single)| {
                let mut text = String::new();
                if let Some(name) = name {
                    text.push_str(&format!("name = {name}\n"));
                }
                if let Some(d) = defaults {
                    text.push_str(&format!("[defaults]\n{d}"));
                }
                for r in rules {
                    let header = if single { "[rule]" } else { "[[rule]]" };
                    text.push_str(&format!("{header}\n{r}"));
                }
                for t in tests {
                    text.push_str(&format!("[[test]]\n{t}"));
                }
                text
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]
        #[test]
        fn nothing_structural_reaches_serde(text in file()) {
            if let Err(inv) = load(&text) {
                for d in &inv.diagnostics {
                    for serde_words in ["invalid type", "missing field", "unknown field", "invalid value", "invalid length"] {
                        prop_assert!(!d.message.contains(serde_words), "{text}\n{}", inv.render_all());
                    }
                    prop_assert!(d.span.is_some(), "{text}\n{}", inv.render_all());
                }
            }
        }
    }
}
