//! `--explain`, `-v`, `check --deny-warnings`, completions and the man page:
//! the tooling that lets people see why portguard would act before it does.

use crate::support::{Holder, Sandbox};

#[test]
fn explain_exit_code_is_the_planned_one() {
    let server = Holder::http_server();
    let run = Sandbox::new().run(["resolve", &server.port().to_string(), "--explain"]);
    run.assert_exit(4);
    assert!(
        run.stdout.contains("decision: refuse"),
        "{}",
        run.describe()
    );
    assert!(server.is_alive());
}

#[test]
fn verbose_prints_the_trace_and_the_timed_steps_of_a_real_run() {
    let proxy = Holder::headroom_console_script().spawn();
    let run = Sandbox::new().run(["resolve", &proxy.port().to_string(), "-v"]);
    run.assert_exit(0);
    for needle in [
        "chosen by default",
        "4. stale-headroom-proxy (line",
        "APPLIES",
        "steps:",
        &format!("signal SIGTERM pid {}", proxy.pid()),
        "result: freed port",
    ] {
        assert!(
            run.combined().contains(needle),
            "missing {needle:?}\n{}",
            run.describe()
        );
    }
}

#[test]
fn deny_warnings_turns_a_warning_into_exit_2() {
    let sandbox = Sandbox::new();
    let policy = sandbox
        .policy("[[rule]]\nname = \"node\"\nmatch.cmdline = 'node'\naction = \"terminate\"\n");
    let run = sandbox.run(["check", &policy]);
    run.assert_exit(0);
    assert!(
        run.stderr.contains("without a `match.user`"),
        "{}",
        run.describe()
    );
    let run = sandbox.run(["check", "--deny-warnings", &policy]);
    run.assert_exit(2);
    assert!(run.stderr.contains(":2:8"), "{}", run.describe());
}

#[test]
fn completions_and_man_page_come_from_the_same_cli_definition() {
    let sandbox = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        let run = sandbox.run(["completions", shell]);
        run.assert_exit(0);
        for word in ["resolve", "explain", "policy", "deny-warnings"] {
            assert!(
                run.stdout.contains(word),
                "{shell}: no {word}\n{}",
                run.describe()
            );
        }
    }
    let run = sandbox.run(["man"]);
    run.assert_exit(0);
    assert!(run.stdout.contains(".TH portguard 1"), "{}", run.describe());
    assert!(run.stdout.contains("resolve"), "{}", run.describe());
    sandbox.run(["completions", "tcsh"]).assert_exit(2);
}

#[test]
fn help_documents_the_exit_codes() {
    let run = Sandbox::new().run(["resolve", "--help"]);
    run.assert_exit(0);
    for code in ["0 ", "3 ", "4 ", "5 ", "2 ", "70 "] {
        assert!(
            run.stdout.contains(&format!("\n  {code}")),
            "exit code {code}\n{}",
            run.describe()
        );
    }
}
