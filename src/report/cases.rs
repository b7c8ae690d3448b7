//! The words of `portguard test`: one line per case, the decision trace of
//! a failing case (`-v`), and the tally.

use super::explain::trace_text;
use super::PolicyInfo;
use crate::evaluate::cases::{CaseResult, Mismatch};
use crate::policy::Policy;
use crate::resolver::{End, PortReport, Round};

/// What the decision was: `rule R, action A, outcome O`.
fn decided(r: &CaseResult) -> String {
    format!(
        "rule {}, action {}, outcome {}",
        r.rule.as_deref().unwrap_or("default"),
        r.action.map_or("none".to_string(), |a| a.to_string()),
        r.outcome
    )
}

/// One unmet expectation, e.g. `expected rule stale, got default`.
pub fn mismatch(m: &Mismatch) -> String {
    match m {
        Mismatch::Rule { expected, got } => format!("expected rule {expected}, got {got}"),
        Mismatch::Action { expected, got } => format!(
            "expected action {expected}, got {}",
            got.map_or("none (the port is free)".to_string(), |a| a.to_string())
        ),
        Mismatch::Outcome { expected, got } => format!("expected outcome {expected}, got {got}"),
    }
}

/// Every unmet expectation of a case, joined.
pub fn mismatches(r: &CaseResult) -> String {
    r.failures
        .iter()
        .map(mismatch)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The line of one case: `ok` with what was decided, or `FAIL` with its
/// line in the file and what did not match.
pub fn case_line(r: &CaseResult) -> String {
    if r.passed() {
        format!("  ok    {} ({})", r.name, decided(r))
    } else {
        format!(
            "  FAIL  {} (line {}): {}; decided {}",
            r.name,
            r.line,
            mismatches(r),
            decided(r)
        )
    }
}

/// A failing case's decision trace, as `--explain` prints it, indented
/// under its `FAIL` line.
pub fn failing_trace(r: &CaseResult, policy: &Policy) -> String {
    let (state, decision) = r.evaluated.clone();
    let report = PortReport {
        port: state.port,
        protocol: state.protocol,
        dry_run: true,
        rounds: vec![Round { state, decision }],
        steps: Vec::new(),
        end: End::Planned,
        now: None,
        lingering: 0,
    };
    let info = PolicyInfo::new(policy, "the test case");
    trace_text(&report, &info)
        .lines()
        .map(|line| format!("        {line}\n"))
        .collect()
}

/// Said under a file without `[[test]]` cases.
pub const NO_CASES: &str = "  (no test cases)";

/// The last line: `N passed, M failed`.
pub fn tally(passed: usize, failed: usize) -> String {
    format!("{passed} passed, {failed} failed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{load_source, ActionKind, PolicySource};

    const POLICY: &str = r#"
name = "t"
[[rule]]
name = "mine"
match.user = "$self"
action = "terminate"
[[test]]
name = "wrong"
port = 8787
self = "alice"
expect = { rule = "default", action = "reuse" }
owners = [{ pid = 4242, ppid = 1, user = "alice", uid = 1000, cmdline = ["x"] }]
"#;

    #[test]
    fn a_failing_case_names_its_line_what_it_expected_and_what_was_decided() {
        let policy = load_source(POLICY, PolicySource::File("t.toml".into())).unwrap();
        let results = crate::evaluate::cases::run_all(&policy);
        assert_eq!(
            case_line(&results[0]),
            "  FAIL  wrong (line 7): expected rule default, got mine; \
             expected action reuse, got terminate; decided rule mine, action terminate, outcome freed"
        );
        assert!(failing_trace(&results[0], &policy).contains("        decision: terminate"));
        assert_eq!(
            mismatch(&Mismatch::Action {
                expected: ActionKind::Reuse,
                got: None
            }),
            "expected action reuse, got none (the port is free)"
        );
        assert_eq!(tally(3, 1), "3 passed, 1 failed");
    }
}
