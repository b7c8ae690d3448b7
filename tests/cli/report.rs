//! The JSON reports: every document `--format json` prints validates against
//! the committed `schema/report.schema.json`, which is exactly what
//! `portguard schema report` prints.

use crate::support::*;
use serde_json::Value;

const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/report.schema.json");

fn committed() -> Value {
    serde_json::from_str(&std::fs::read_to_string(SCHEMA).expect("schema file")).expect("JSON")
}

/// Validates one printed document against the committed schema.
#[track_caller]
fn assert_valid(run: &Run) {
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler
        .add_resource("report.schema.json", committed())
        .expect("schema resource");
    let index = compiler
        .compile("report.schema.json", &mut schemas)
        .expect("the schema compiles");
    if let Err(e) = schemas.validate(&run.json(), index) {
        panic!("{e:#}\n{}", run.describe());
    }
    assert_eq!(run.json()["schema_version"], 1, "{}", run.describe());
}

#[test]
fn schema_report_prints_the_committed_schema() {
    let run = Sandbox::new().run(["schema", "report"]);
    run.assert_exit(0);
    assert_eq!(run.json(), committed(), "{}", run.describe());
    let policy = Sandbox::new().run(["schema", "policy"]);
    let plain = Sandbox::new().run(["schema"]);
    assert_eq!(policy.json(), plain.json());
}

#[test]
fn resolve_who_and_explain_documents_validate() {
    let holder = Holder::tcp("127.0.0.1").spawn();
    let sandbox = Sandbox::new();
    let policy = sandbox.policy(&policy_for_test_holders("terminate", "grace = \"1s\""));
    let port = holder.port().to_string();
    let free = reserved_free_port();
    for args in [
        vec!["who", &port, "--format", "json"],
        vec!["who", &port, "--all", "--format", "json"],
        vec![
            "resolve",
            &port,
            "--explain",
            "--format",
            "json",
            "--policy",
            "safe",
        ],
        vec![
            "resolve",
            &port,
            "--explain",
            "--format",
            "json",
            "--policy",
            &policy,
        ],
        vec!["resolve", &port, "--format", "json", "--policy", "safe"],
    ] {
        assert_valid(&sandbox.run(args));
    }
    let resolved = sandbox.run(["resolve", &port, "--format", "json", "--policy", &policy]);
    resolved.assert_exit(0);
    assert_valid(&resolved);
    drop(free);
}

#[test]
fn a_usage_or_policy_error_is_a_json_document_too() {
    let sandbox = Sandbox::new();
    let bad_port = sandbox.run(["resolve", "080", "--format", "json"]);
    bad_port.assert_exit(2);
    assert_valid(&bad_port);
    assert_eq!(bad_port.json()["kind"], "usage");
    assert_eq!(
        bad_port.stderr.lines().count(),
        1,
        "{}",
        bad_port.describe()
    );

    let broken = sandbox.policy("[[rule]]\nname = \"r\"\nacton = \"refuse\"\n");
    let run = sandbox.run(["resolve", "1", "--format", "json", "--policy", &broken]);
    run.assert_exit(2);
    assert_valid(&run);
    let doc = run.json();
    assert_eq!(doc["kind"], "policy");
    assert_eq!(doc["diagnostics"][0]["line"], 3, "{}", run.describe());
}
