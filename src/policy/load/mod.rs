//! Reading and checking a policy: TOML → [`raw`] → [`Policy`], collecting
//! every problem with its span instead of stopping at the first.
//!
//! One concern per file: [`read`] reads a policy file, this file runs the
//! checks over a whole policy, [`rules`] checks `[defaults]` and each
//! `[[rule]]`, [`actions`] an action and its settings, [`criteria`] the
//! `match` criteria, ports, regexes and users, and [`cases`] the `[[test]]`
//! cases.

mod actions;
mod cases;
mod criteria;
mod read;
mod rules;
#[cfg(test)]
mod tests;

pub use read::load_file;

use super::limits::SyntaxCost;
use super::raw::RawPolicy;
use super::{
    Action, Defaults, Invalid, Policy, PolicyError, PolicySource, RegexBudget, Rule, TestCase,
    UserSpec,
};
use crate::diagnostic::{Diagnostic, Severity, SourceIndex};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

const DEFAULT_GRACE: Duration = Duration::from_secs(3);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest duration a policy may give: humantime accepts "1000000 years",
/// which would overflow the clock arithmetic of the wait loops.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// Long enough for a supervisor's immediate restart (systemd's default
/// `RestartSec` is 100 ms), short enough not to slow a hook noticeably.
const DEFAULT_SETTLE: Duration = Duration::from_millis(250);
/// Checks policy `text` that came from `source`. Warnings are kept in
/// [`Policy::warnings`]; any error makes the whole policy invalid.
pub fn load_source(text: &str, source: PolicySource) -> Result<Policy, PolicyError> {
    let mut cx = Checker {
        text,
        diags: Vec::new(),
        lines: SourceIndex::new(text),
        regex_budget: RegexBudget::new(),
        regex_text: 0,
        regex_syntax: SyntaxCost::default(),
        regex_limit_hit: false,
    };
    let policy = match toml::from_str::<RawPolicy>(text) {
        Ok(raw) => cx.policy(raw, &source),
        Err(e) => {
            cx.diags
                .push(Diagnostic::error(e.message().trim().to_string(), e.span()));
            None
        }
    };
    cx.diags
        .sort_by_key(|d| d.span.as_ref().map_or(usize::MAX, |s| s.start));
    let has_errors = cx.diags.iter().any(|d| d.severity == Severity::Error);
    match policy {
        Some(mut policy) if !has_errors => {
            policy.warnings = cx.diags;
            Ok(policy)
        }
        _ => Err(PolicyError::Invalid(Invalid {
            file: source.display_name(),
            text: text.to_string(),
            diagnostics: cx.diags,
        })),
    }
}

struct Checker<'a> {
    text: &'a str,
    diags: Vec<Diagnostic>,
    /// Line starts, built once: every rule and test asks for its line, and
    /// scanning from the top each time was a tenth of loading a policy.
    lines: SourceIndex<'a>,
    /// The compiled-regex budget every pattern of this policy shares.
    regex_budget: Arc<RegexBudget>,
    /// Bytes of regex text so far.
    regex_text: usize,
    /// What translating the regexes so far cost.
    regex_syntax: SyntaxCost,
    /// A regex limit was exceeded: the policy is invalid, and the regexes
    /// after it are not parsed.
    regex_limit_hit: bool,
}

impl Checker<'_> {
    /// 1-based line of byte `offset`.
    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.lines.line_col(offset).0
    }

    pub(super) fn error_count(&self) -> usize {
        self.diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub(super) fn error(&mut self, message: impl Into<String>, span: Range<usize>) -> Option<()> {
        self.diags.push(Diagnostic::error(message, Some(span)));
        None
    }

    pub(super) fn error_help(
        &mut self,
        message: impl Into<String>,
        span: Range<usize>,
        help: &str,
    ) {
        self.diags
            .push(Diagnostic::error(message, Some(span)).with_help(help));
    }

    pub(super) fn policy(&mut self, raw: RawPolicy, source: &PolicySource) -> Option<Policy> {
        let defaults = self.defaults(raw.defaults.as_ref());
        // Rules are still checked against the built-in defaults when
        // `[defaults]` is broken, so every problem in the file is reported.
        let fallback = Defaults {
            action: Action::Refuse { message: None },
            grace: DEFAULT_GRACE,
            timeout: DEFAULT_TIMEOUT,
            settle: DEFAULT_SETTLE,
        };
        let rule_defaults = defaults.as_ref().unwrap_or(&fallback);
        self.check_counts(&raw);
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut rules = Vec::new();
        for spanned in &raw.rule {
            let line = self.line_of(spanned.span().start);
            let r = spanned.get_ref();
            if let Some(first) = seen.get(r.name.get_ref()) {
                let help = format!("the first rule with this name is at line {first}");
                self.error_help(
                    format!("duplicate rule name `{}`", r.name.get_ref()),
                    r.name.span(),
                    &help,
                );
            } else {
                seen.insert(r.name.get_ref().clone(), line);
            }
            let errors_before = self.error_count();
            match self.rule(r, line, rule_defaults) {
                Some(rule) => rules.push(rule),
                // A rule may only be dropped with an error saying why: a
                // silently missing rule would change what the policy does.
                None if self.error_count() == errors_before => {
                    self.error(
                        format!("rule `{}` could not be checked", r.name.get_ref()),
                        r.name.span(),
                    );
                }
                None => {}
            }
        }
        self.lint(&rules);
        let rule_names: Vec<&str> = raw
            .rule
            .iter()
            .map(|r| r.get_ref().name.get_ref().as_str())
            .collect();
        let self_rules: Vec<&Rule> = rules
            .iter()
            .filter(|r| {
                r.criteria
                    .user
                    .as_ref()
                    .is_some_and(|u| u.contains(&UserSpec::Me))
            })
            .collect();
        let tests: Vec<TestCase> = raw
            .test
            .iter()
            .filter_map(|t| self.test_case(t, &rule_names, &self_rules))
            .collect();
        let defaults = defaults?;
        let name = raw
            .name
            .map(Spanned::into_inner)
            .unwrap_or_else(|| source.default_name());
        Some(Policy {
            name,
            description: raw.description,
            source: source.clone(),
            defaults,
            rules,
            tests,
            warnings: Vec::new(),
            text: self.text.to_string(),
        })
    }
}
