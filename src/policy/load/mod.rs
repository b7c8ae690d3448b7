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
mod schema;
mod structure;
mod suggest;
mod syntax;
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
use serde::Deserialize;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use structure::Outline;
use toml::de::DeTable;
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
///
/// Every problem is reported, not only the first: the structure of the
/// whole file first (unknown keys, missing keys, wrong types:
/// [`structure`]), then the values and how they fit together, for every
/// part whose structure is sound (and each well-formed value of a part
/// whose structure is not). Only a TOML syntax error ends the check: the
/// parser cannot go on after it.
pub fn load_source(text: &str, source: PolicySource) -> Result<Policy, PolicyError> {
    load_with(text, source, true)
}

/// [`load_source`]; without `check_regexes`, regexes are kept as written
/// and only checked when compiled (first use). For the built-in policies:
/// their regexes pass the full check in the unit tests, and on the free
/// port of a pre-start hook, which never compiles them, the check was a
/// third of the run.
pub(in crate::policy) fn load_with(
    text: &str,
    source: PolicySource,
    check_regexes: bool,
) -> Result<Policy, PolicyError> {
    let mut cx = Checker {
        check_regexes,
        text,
        diags: Vec::new(),
        lines: SourceIndex::new(text),
        regex_budget: RegexBudget::new(),
        regex_text: 0,
        regex_syntax: SyntaxCost::default(),
        regex_limit_hit: false,
        defaults_uncertain: false,
    };
    let policy = match DeTable::parse(text) {
        Ok(doc) => {
            let span = doc.span();
            let mut doc = doc.into_inner();
            let outline = structure::check(&mut doc, text, &mut cx.diags);
            let de = toml::de::Deserializer::from(Spanned::new(span, doc));
            match RawPolicy::deserialize(de) {
                Ok(raw) => cx.policy(raw, &source, outline),
                Err(e) => {
                    // Only what the structural check let through reaches
                    // serde: this is a gap in that check, reported as serde
                    // words it rather than lost.
                    cx.diags
                        .push(Diagnostic::error(e.message().trim().to_string(), e.span()));
                    None
                }
            }
        }
        Err(e) => {
            cx.diags
                .push(syntax::diagnostic(text, e.message(), e.span()));
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
    /// Check each regex's syntax and limits (see [`load_with`]).
    check_regexes: bool,
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
    /// `[defaults]` is broken: what a rule takes from it is not known, so
    /// checks that depend on it (grace shorter than timeout) are left out
    /// rather than made against values the author did not write.
    defaults_uncertain: bool,
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

    pub(super) fn policy(
        &mut self,
        raw: RawPolicy,
        source: &PolicySource,
        outline: Outline<'_>,
    ) -> Option<Policy> {
        let defaults = self.defaults(raw.defaults.as_ref());
        // Rules are still checked against the built-in defaults when
        // `[defaults]` is broken, so every problem in the file is reported.
        let fallback = Defaults {
            action: Action::Refuse { message: None },
            grace: DEFAULT_GRACE,
            timeout: DEFAULT_TIMEOUT,
            settle: DEFAULT_SETTLE,
        };
        self.defaults_uncertain = outline.loose_defaults || defaults.is_none();
        let rule_defaults = defaults.as_ref().unwrap_or(&fallback);
        self.check_counts(&raw);
        self.duplicate_names(&outline.rule_names);
        let mut rules = Vec::new();
        for spanned in &raw.rule {
            let line = self.line_of(spanned.span().start);
            let r = spanned.get_ref();
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
        for loose in outline.loose_rules {
            self.loose_rule(loose);
        }
        self.lint(&rules);
        // A test case may name a rule with a structural error, but not a
        // rule that is not there; when some rule has no name, which names
        // are there is not known.
        let rule_names: Vec<&str> = outline
            .rule_names
            .iter()
            .map(|(name, _)| name.get_ref().as_str())
            .collect();
        let rule_names = outline.all_rules_named.then_some(rule_names.as_slice());
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
            .filter_map(|t| self.test_case(t, rule_names, &self_rules))
            .collect();
        for loose in outline.loose_tests {
            self.loose_test(loose, rule_names);
        }
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

    /// Reads the value of `key` out of a table with a structural error
    /// (reported): what is left in it has the right type, so this fails
    /// only on a gap in the structural check — reported, in serde's words,
    /// rather than lost.
    pub(super) fn take<T: serde::de::DeserializeOwned>(
        &mut self,
        t: &mut DeTable<'_>,
        key: &str,
    ) -> Option<T> {
        let value = t.remove(key)?;
        let span = value.span();
        match T::deserialize(toml::de::ValueDeserializer::from(value)) {
            Ok(v) => Some(v),
            Err(e) => {
                self.diags.push(Diagnostic::error(
                    e.message().trim().to_string(),
                    e.span().or(Some(span)),
                ));
                None
            }
        }
    }

    /// Every rule name used a second time (rules with a structural error
    /// included), pointing at the first.
    fn duplicate_names(&mut self, names: &[(Spanned<String>, Range<usize>)]) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (name, header) in names {
            if let Some(first) = seen.get(name.get_ref().as_str()) {
                let help = format!("the first rule with this name is at line {first}");
                self.error_help(
                    format!("duplicate rule name `{}`", name.get_ref()),
                    name.span(),
                    &help,
                );
            } else {
                seen.insert(name.get_ref(), self.line_of(header.start));
            }
        }
    }
}
