//! The policy tooling around the resolver: `check`, `test` and `schema`
//! against the shipped rules and against broken files.

use crate::support::Sandbox;
use serde_json::Value;

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/policy.schema.json");

fn builtin_rule_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(RULES)
        .expect("rules/")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.to_str().unwrap().to_owned())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no policies in rules/");
    files
}

#[test]
fn shipped_policies_pass_check() {
    let mut args = vec!["check".to_owned()];
    args.extend(builtin_rule_files());
    Sandbox::new().run(args).assert_exit(0);
}

#[test]
fn shipped_policies_pass_their_own_tests() {
    let mut args = vec!["test".to_owned()];
    args.extend(builtin_rule_files());
    Sandbox::new().run(args).assert_exit(0);
}

#[test]
fn check_fails_when_any_file_is_invalid_and_locates_the_problem() {
    let sandbox = Sandbox::new();
    let bad = sandbox.write(
        "bad.toml",
        "name = \"bad\"\n\n[[rule]]\nname = \"r\"\naction = \"terminate\"\nmesage = \"typo\"\n",
    );
    let bad = bad.to_str().unwrap();
    let mut args = vec!["check".to_owned()];
    args.extend(builtin_rule_files());
    args.push(bad.to_owned());
    let run = sandbox.run(args);
    run.assert_exit(2);
    assert!(
        run.stderr.contains(&format!("{bad}:6:")),
        "{}",
        run.describe()
    );
}

#[test]
fn failing_policy_test_case_exits_1() {
    let sandbox = Sandbox::new();
    let policy = sandbox.write(
        "wrong-expectation.toml",
        "name = \"wrong\"\n\
         [[rule]]\n\
         name = \"everything\"\n\
         action = \"refuse\"\n\
         \n\
         [[test]]\n\
         name = \"expects the wrong action\"\n\
         port = 8787\n\
         expect = { rule = \"everything\", action = \"terminate\" }\n\
         owners = [{ pid = 4242, ppid = 1, user = \"alice\", uid = 1000, exe = \"/usr/bin/python3\", cmdline = [\"python3\"] }]\n",
    );
    let run = sandbox.run(["test", policy.to_str().unwrap()]);
    run.assert_exit(1);
    assert!(
        run.combined().contains("expects the wrong action"),
        "{}",
        run.describe()
    );
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let run = Sandbox::new().run(["schema"]);
    run.assert_exit(0);
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(SCHEMA).expect("schema file")).unwrap();
    assert_eq!(run.json(), committed, "{}", run.describe());
}

/// Validates a TOML policy (as JSON) against the committed schema.
fn schema_errors(toml_text: &str) -> Result<(), String> {
    let value: toml::Value = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    let instance = serde_json::to_value(value).map_err(|e| e.to_string())?;
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(SCHEMA).expect("schema file"))
            .expect("schema is JSON");
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler
        .add_resource("policy.schema.json", schema)
        .expect("schema resource");
    let index = compiler
        .compile("policy.schema.json", &mut schemas)
        .expect("the schema compiles");
    schemas
        .validate(&instance, index)
        .map_err(|e| format!("{e:#}"))
}

#[test]
fn every_shipped_policy_validates_against_the_schema() {
    for file in builtin_rule_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("#:schema ../schema/policy.schema.json\n"),
            "{file} must start with a #:schema line for editors"
        );
        if let Err(e) = schema_errors(&text) {
            panic!("{file} does not validate against the schema:\n{e}");
        }
    }
}

#[test]
fn the_schema_rejects_what_the_loader_rejects() {
    for bad in [
        "[[rule]]\nname = \"r\"\nacton = \"refuse\"\naction = \"refuse\"\n",
        "[[rule]]\nname = \"r\"\naction = \"explode\"\n",
        "[[rule]]\naction = \"refuse\"\n",
        "[defaults]\naction = \"terminate\"\n",
        "[[rule]]\nname = \"r\"\nports = [0]\naction = \"refuse\"\n",
        "[[rule]]\nname = \"r\"\nmatch.user = [\"$self\", true]\naction = \"refuse\"\n",
    ] {
        assert!(schema_errors(bad).is_err(), "the schema accepts:\n{bad}");
    }
    assert_eq!(
        schema_errors("[[rule]]\nname = \"r\"\nmatch.user = [\"$self\", 0]\nports = [1, \"2-3\"]\naction = \"terminate\"\nescalate = false\n"),
        Ok(())
    );
}

/// A file that cannot be read is exit 2 with its error, and no "0 passed,
/// 0 failed" tally that a script could read as a pass.
#[test]
fn test_of_an_unreadable_file_prints_no_tally() {
    let sandbox = Sandbox::new();
    let missing = sandbox.work_dir().join("missing.toml");
    let run = sandbox.run(["test", missing.to_str().unwrap()]);
    run.assert_exit(2);
    assert!(!run.combined().contains("passed"), "{}", run.describe());
    assert!(run.stderr.contains("missing.toml"), "{}", run.describe());
}

/// `check` reports every error of a file, structural ones included: two
/// misspelt keys, a value of the wrong type and a bad regex are four
/// errors, each at its place with its help, and the file fails (exit 2).
#[test]
fn check_reports_every_error_of_a_file() {
    let sandbox = Sandbox::new();
    let policy = sandbox.write(
        "four.toml",
        "[[rule]]\n\
         name = \"vite\"\n\
         match.cmdlne = 'node .*vite'\n\
         acton = \"terminate\"\n\
         \n\
         [[rule]]\n\
         name = \"api\"\n\
         ports = \"8080\"\n\
         match.exe = '^/usr/bin/(python3$'\n\
         action = \"refuse\"\n",
    );
    let path = policy.to_str().unwrap();
    let run = sandbox.run(["check", path]);
    run.assert_exit(2);
    let err = &run.stderr;
    for (at, message, help) in [
        (
            ":3:7",
            "error: unknown key `cmdlne` in `match`",
            "= help: did you mean `cmdline`?",
        ),
        (
            ":4:1",
            "error: unknown key `acton` in [[rule]]",
            "= help: did you mean `action`?",
        ),
        (
            ":8:9",
            "error: wrong type for `ports`: expected an array, found a string",
            "= help: `ports` is a list: ports = [8080]",
        ),
        (
            ":9:24",
            "error: invalid regex: unclosed group",
            "= help: the syntax is Rust's `regex` crate",
        ),
    ] {
        assert!(
            err.contains(&format!("{path}{at}")) && err.contains(message) && err.contains(help),
            "{at} {message}\n{}",
            run.describe()
        );
    }
    assert_eq!(err.matches("error: ").count(), 4, "{}", run.describe());
    assert!(
        err.trim_end()
            .ends_with(&format!("policy {path} has 4 errors")),
        "{}",
        run.describe()
    );
}
