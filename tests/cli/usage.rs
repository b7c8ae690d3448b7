//! Bad input of any kind: exit 2, a clear message naming the problem, and
//! nothing touched — even when the port is held by a process the intended
//! policy would terminate.

use crate::support::{policy_for_test_holders, Holder, Run, Sandbox};

/// Whether `text` contains `value` as a whole token (not as part of a longer
/// number or word), so that "0" is not found inside "1-65535".
fn names_token(text: &str, value: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '-';
    text.match_indices(value).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + value.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

#[track_caller]
fn assert_usage_error_naming(run: &Run, value: &str) {
    run.assert_exit(2);
    let first = run
        .stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert!(
        names_token(first, value),
        "the first line of stderr does not name {value:?}\n{}",
        run.describe()
    );
}

#[test]
fn invalid_ports_are_usage_errors_that_name_the_value() {
    for bad in ["0", "65536", "abc", "9-3"] {
        let run = Sandbox::new().run(["resolve", bad, "--policy", "headroom"]);
        assert_usage_error_naming(&run, bad);
        let run = Sandbox::new().run(["who", bad]);
        assert_usage_error_naming(&run, bad);
    }
}

#[test]
fn one_bad_port_stops_the_whole_call_before_anything_is_touched() {
    let proxy = Holder::headroom_console_script().spawn();
    let run = Sandbox::new().run([
        "resolve",
        &proxy.port().to_string(),
        "65536",
        "--policy",
        "headroom",
    ]);
    assert_usage_error_naming(&run, "65536");
    assert!(
        proxy.is_alive(),
        "usage error, yet the proxy was terminated"
    );
}

#[test]
fn unknown_policy_key_is_reported_with_file_line_and_text() {
    let holder = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    let toml = policy_for_test_holders("terminate", "grcae = \"300ms\"");
    let line = toml.lines().position(|l| l.starts_with("grcae")).unwrap() + 1;
    let path = sandbox.policy(&toml);
    let run = sandbox.run(["resolve", &holder.port().to_string(), "--policy", &path]);
    run.assert_exit(2);
    assert!(
        run.stderr.contains(&format!("{path}:{line}:")),
        "stderr lacks `{path}:{line}:`\n{}",
        run.describe()
    );
    assert!(
        run.stderr.contains("grcae = \"300ms\""),
        "offending line not shown\n{}",
        run.describe()
    );
    assert!(
        holder.is_alive(),
        "policy error, yet the holder was signalled"
    );
}

#[test]
fn setting_of_another_action_is_a_policy_error() {
    let holder = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    // `grace` belongs to terminate, not to refuse.
    let path = sandbox.policy(&policy_for_test_holders("refuse", "grace = \"1s\""));
    let run = sandbox.run(["resolve", &holder.port().to_string(), "--policy", &path]);
    run.assert_exit(2);
    assert!(run.stderr.contains("grace"), "{}", run.describe());
    assert!(holder.is_alive());
}

#[test]
fn missing_policy_file_is_a_usage_error() {
    let holder = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    let missing = sandbox.work_dir().join("nope/absent.toml");
    let missing = missing.to_str().unwrap();
    let run = sandbox.run(["resolve", &holder.port().to_string(), "--policy", missing]);
    run.assert_exit(2);
    assert!(run.stderr.contains("absent.toml"), "{}", run.describe());
    assert!(holder.is_alive());
}

#[test]
fn unknown_builtin_policy_name_is_a_usage_error() {
    let holder = Holder::tcp("127.0.0.1").spawn();
    let run = Sandbox::new().run([
        "resolve",
        &holder.port().to_string(),
        "--policy",
        "no-such-builtin",
    ]);
    run.assert_exit(2);
    assert!(run.stderr.contains("no-such-builtin"), "{}", run.describe());
    assert!(holder.is_alive());
}

#[test]
fn broken_portguard_toml_in_cwd_is_an_error_not_a_fallback() {
    // A typo in the project's policy must not silently fall back to the
    // built-in policy (which would terminate this proxy).
    let proxy = Holder::headroom_module().spawn();
    let sandbox = Sandbox::new();
    sandbox.write(
        "work/portguard.toml",
        "name = \"broken\"\n[[rule]]\nname = \"x\"\naction = \"explode\"\n",
    );
    let run = sandbox.run(["resolve", &proxy.port().to_string()]);
    run.assert_exit(2);
    assert!(run.stderr.contains("portguard.toml"), "{}", run.describe());
    assert!(proxy.is_alive());
}

#[test]
fn a_bug_exits_70_with_a_message_never_101() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.command();
    cmd.env("PORTGUARD_TEST_PANIC", "1");
    let run = sandbox.run_command(cmd, vec!["(panic)".into()]);
    run.assert_exit(70);
    assert!(
        run.stderr.contains("internal error") && run.stderr.contains("nothing further was touched"),
        "{}",
        run.describe()
    );
}

#[test]
fn a_regex_too_large_to_compile_is_a_policy_error_once_a_port_is_held() {
    let holder = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(
        "[[rule]]\nname = \"huge\"\nmatch.cmdline = '(a{1000}){1000}'\nmatch.user = \"$self\"\naction = \"terminate\"\n",
    );
    let run = sandbox.run(["resolve", &holder.port().to_string(), "--policy", &policy]);
    run.assert_exit(2);
    assert!(
        run.stderr.contains("regex is too large") && run.stderr.contains(":3:17"),
        "{}",
        run.describe()
    );
    assert!(holder.is_alive());
    // check reports it without any port.
    let run = sandbox.run(["check", &policy]);
    run.assert_exit(2);
    assert!(
        run.stderr.contains("regex is too large"),
        "{}",
        run.describe()
    );
}
