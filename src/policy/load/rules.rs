//! `[defaults]` and each `[[rule]]`: the settings every rule falls back
//! on, a rule's keys checked against its action, and the warnings of a
//! policy that works but probably not as meant.

use super::actions::Settings;
use super::structure::Loose;
use super::{Checker, DEFAULT_GRACE, DEFAULT_SETTLE, DEFAULT_TIMEOUT};
use crate::diagnostic::Diagnostic;
use crate::policy::limits;
use crate::policy::raw::{RawDefaults, RawMatch, RawPolicy, RawRule};
use crate::policy::{Action, ActionKind, Defaults, Rule};
use std::ops::Range;
use toml::Spanned;

/// The rule keys that hold action settings, with their spans when present.
fn present_settings(r: &RawRule) -> Vec<(&'static str, Range<usize>)> {
    let mut out = Vec::new();
    let mut add = |key: &'static str, span: Option<Range<usize>>| {
        if let Some(span) = span {
            out.push((key, span));
        }
    };
    add("signal", r.signal.as_ref().map(Spanned::span));
    add("grace", r.grace.as_ref().map(Spanned::span));
    add("escalate", r.escalate.as_ref().map(Spanned::span));
    add("timeout", r.timeout.as_ref().map(Spanned::span));
    add("then", r.then.as_ref().map(Spanned::span));
    add("message", r.message.as_ref().map(Spanned::span));
    add("health", r.health.as_ref().map(Spanned::span));
    add("health_body", r.health_body.as_ref().map(Spanned::span));
    add("health_status", r.health_status.as_ref().map(Spanned::span));
    add(
        "health_any_host",
        r.health_any_host.as_ref().map(Spanned::span),
    );
    out
}

impl Checker<'_> {
    pub(super) fn defaults(&mut self, raw: Option<&RawDefaults>) -> Option<Defaults> {
        let grace = match raw.and_then(|d| d.grace.as_ref()) {
            Some(s) => self.duration(s),
            None => Some(DEFAULT_GRACE),
        };
        let timeout = match raw.and_then(|d| d.timeout.as_ref()) {
            Some(s) => self.duration(s),
            None => Some(DEFAULT_TIMEOUT),
        };
        let settle = match raw.and_then(|d| d.settle.as_ref()) {
            Some(s) => self.duration(s),
            None => Some(DEFAULT_SETTLE),
        };
        let kind = match raw.and_then(|d| d.action.as_ref()) {
            Some(s) => {
                let kind = self.action_kind(s);
                if kind == Some(ActionKind::Terminate) {
                    self.error_help(
                        "the default action cannot be \"terminate\"",
                        s.span(),
                        "portguard never signals a process that no rule matched; write a rule that matches what may be terminated",
                    );
                    return None;
                }
                kind
            }
            None => Some(ActionKind::Refuse),
        };
        let (grace, timeout, settle, kind) = (grace?, timeout?, settle?, kind?);
        let action = match kind {
            ActionKind::Wait => Action::Wait {
                timeout,
                then: None,
            },
            ActionKind::Reuse => Action::Reuse {
                health: None,
                timeout,
                then: None,
            },
            _ => Action::Refuse { message: None },
        };
        Some(Defaults {
            action,
            grace,
            timeout,
            settle,
        })
    }

    pub(super) fn rule(&mut self, r: &RawRule, line: usize, defaults: &Defaults) -> Option<Rule> {
        let ports = match &r.ports {
            None => Some(None),
            Some(p) => self.ports(p),
        };
        let criteria = self.criteria(r.matcher.as_ref());
        let kind = self.action_kind(&r.action);
        let then = r.then.as_ref().map(|t| (self.action_kind(t), t.span()));
        let (Some(kind), Some(then)) = (
            kind,
            then.map_or(Some(None), |(t, span)| Some(Some((t?, span)))),
        ) else {
            // Which settings belong is not known: each is checked alone.
            self.each_setting(&Settings::of(r));
            return None;
        };
        // Which keys are allowed: the action's own settings, plus the
        // fallback's when the rule names one.
        let mut settings_ok = true;
        for (key, span) in present_settings(r) {
            let own = kind.settings().contains(&key);
            let fallback = then
                .as_ref()
                .is_some_and(|(t, _)| t.settings().contains(&key) && key != "then");
            if !own && !fallback {
                settings_ok = false;
                let owners: Vec<&str> = ActionKind::ALL
                    .into_iter()
                    .filter(|k| k.settings().contains(&key))
                    .map(ActionKind::as_str)
                    .collect();
                let help = if key == "then" {
                    "only \"wait\" and \"reuse\" fall back to another action".to_string()
                } else {
                    format!(
                        "`{key}` is a setting of {}; remove it, or use that action",
                        owners.join(" and ")
                    )
                };
                self.error_help(
                    format!("`{key}` does not belong to action \"{kind}\""),
                    span,
                    &help,
                );
            }
        }
        if let Some((t, span)) = &then {
            if *t == kind {
                self.error_help(
                    format!("\"{kind}\" cannot fall back to itself"),
                    span.clone(),
                    "name a different action in `then`, or remove it",
                );
                settings_ok = false;
            }
        }
        let fallback = then
            .as_ref()
            .map(|(t, _)| self.action(*t, r, defaults, None, true));
        let fallback_ok = !matches!(fallback, Some(None));
        let action = self.action(kind, r, defaults, fallback.flatten().map(Box::new), false);
        if !settings_ok || !fallback_ok {
            return None;
        }
        let action = action?;
        Some(Rule {
            name: r.name.get_ref().clone(),
            description: r.description.clone(),
            ports: ports?,
            criteria: criteria?,
            action,
            line,
            name_span: r.name.span(),
        })
    }

    /// Warnings: the policy works, but probably not as its author meant.
    pub(super) fn lint(&mut self, rules: &[Rule]) {
        let mut catch_all: Option<&Rule> = None;
        for rule in rules {
            if let Some(first) = catch_all {
                self.diags.push(
                    Diagnostic::warning(
                        format!(
                            "rule `{}` can never apply: rule `{}` (line {}) before it applies to every owner on every port",
                            rule.name, first.name, first.line
                        ),
                        Some(rule.name_span.clone()),
                    )
                    .with_help("move this rule above the catch-all rule, or give that rule criteria"),
                );
            } else if rule.criteria.is_empty() && rule.ports.is_none() {
                catch_all = Some(rule);
            }
            if rule.action.may_signal() && rule.criteria.unit.is_some() {
                self.diags.push(
                    Diagnostic::warning(
                        format!(
                            "rule `{}` terminates processes of systemd units: a unit's Restart= starts them again",
                            rule.name
                        ),
                        Some(rule.name_span.clone()),
                    )
                    .with_help("stop the unit instead (`systemctl stop UNIT`), or refuse and let the message say so"),
                );
            }
            if rule.action.may_signal() && rule.criteria.user.is_none() {
                self.diags.push(
                    Diagnostic::warning(
                        format!(
                            "rule `{}` terminates without a `match.user` criterion: run as root, it would signal any user's processes",
                            rule.name
                        ),
                        Some(rule.name_span.clone()),
                    )
                    .with_help("add `match.user = \"$self\"` to terminate only your own processes"),
                );
            }
        }
    }

    /// How many rules and test cases a policy may have ([`limits`]): every
    /// holder is checked against every rule, keeping a trace line for each.
    pub(super) fn check_counts(&mut self, raw: &RawPolicy) {
        if let Some(extra) = raw.rule.get(limits::MAX_RULES) {
            self.error_help(
                format!(
                    "the policy has {} rules; at most {} are allowed",
                    raw.rule.len(),
                    limits::MAX_RULES
                ),
                extra.get_ref().name.span(),
                "merge rules that do the same: one regex can match several programs (a|b), and `ports` and `match.user` take lists",
            );
        }
        let rules = raw.rule.len().max(1);
        let mut checks = 0usize;
        for t in &raw.test {
            checks = checks.saturating_add(t.get_ref().owners.len().saturating_mul(rules));
            if checks > limits::MAX_TEST_CHECKS {
                self.error_help(
                    format!(
                        "the test cases up to this one check more than {} owners against rules (each owner of a case is checked against every one of the {} rules)",
                        limits::MAX_TEST_CHECKS,
                        raw.rule.len()
                    ),
                    t.span(),
                    "use fewer or smaller test cases: a case needs only the owners that decide it",
                );
                break;
            }
        }
    }

    /// A rule with a structural error (reported): each of its well-formed
    /// values is still checked on its own, so a bad regex or duration in it
    /// shows in the same run. How its keys fit together (which settings
    /// belong to the action, grace shorter than timeout) is not: with a key
    /// missing or misspelt, that would report mistakes that are not there.
    pub(super) fn loose_rule(&mut self, mut loose: Loose<'_>) {
        let t = &mut loose.table;
        for key in ["action", "then"] {
            if let Some(kind) = self.take::<Spanned<String>>(t, key) {
                self.action_kind(&kind);
            }
        }
        if let Some(ports) = self.take(t, "ports") {
            self.ports(&ports);
        }
        if let Some(m) = self.take::<RawMatch>(t, "match") {
            self.criteria(Some(&m));
        }
        let signal = self.take(t, "signal");
        let grace = self.take(t, "grace");
        let timeout = self.take(t, "timeout");
        let escalate = self.take(t, "escalate");
        let health = self.take(t, "health");
        let health_body = self.take(t, "health_body");
        let health_status = self.take(t, "health_status");
        let health_any_host = self.take::<bool>(t, "health_any_host").unwrap_or(false);
        let message = self.take(t, "message");
        self.each_setting(&Settings {
            signal: signal.as_ref(),
            grace: grace.as_ref(),
            timeout: timeout.as_ref(),
            escalate: escalate.as_ref(),
            health: health.as_ref(),
            health_body: health_body.as_ref(),
            health_status: health_status.as_ref(),
            health_any_host,
            message: message.as_ref(),
        });
    }
}
