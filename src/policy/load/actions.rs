//! An action and its settings: durations, signals, health checks,
//! status codes and message templates.

use super::{Checker, MAX_DURATION};
use crate::diagnostic::Diagnostic;
use crate::policy::raw::RawRule;
use crate::policy::{
    Action, ActionKind, Defaults, Health, Signal, StatusCodes, Template, Terminate,
};
use std::time::Duration;
use toml::Spanned;

impl Checker<'_> {
    pub(super) fn duration(&mut self, s: &Spanned<String>) -> Option<Duration> {
        match humantime::parse_duration(s.get_ref()) {
            Ok(d) if d > MAX_DURATION => {
                self.error_help(
                    format!("duration \"{}\" is longer than a day", s.get_ref()),
                    s.span(),
                    "a pre-start hook that waits longer than 24h is a mistake; use at most \"24h\"",
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error_help(
                    format!("invalid duration \"{}\": {e}", s.get_ref()),
                    s.span(),
                    "durations look like \"250ms\", \"3s\" or \"1m\"",
                );
                None
            }
        }
    }

    pub(super) fn action_kind(&mut self, s: &Spanned<String>) -> Option<ActionKind> {
        let kind = ActionKind::parse(s.get_ref());
        if kind.is_none() {
            self.error_help(
                format!("unknown action \"{}\"", s.get_ref()),
                s.span(),
                "actions are \"terminate\", \"wait\", \"refuse\" and \"reuse\"",
            );
        }
        kind
    }

    /// Builds one action from the rule's keys (and `[defaults]`). A
    /// fallback (`then`) takes its own settings from the rule, but `timeout`
    /// — which the rule's own action also has — belongs to the rule's action,
    /// so the fallback's timeout comes from `[defaults]`.
    pub(super) fn action(
        &mut self,
        kind: ActionKind,
        r: &RawRule,
        defaults: &Defaults,
        then: Option<Box<Action>>,
        is_fallback: bool,
    ) -> Option<Action> {
        let timeout = match &r.timeout {
            Some(s) if !is_fallback => self.duration(s)?,
            _ => defaults.timeout,
        };
        Some(match kind {
            ActionKind::Terminate => {
                let signal = match &r.signal {
                    Some(s) => self.signal(s)?,
                    None => Signal::TERM,
                };
                let grace = match &r.grace {
                    Some(s) => self.duration(s)?,
                    None => defaults.grace,
                };
                let escalate = match &r.escalate {
                    None => Some(Signal::KILL),
                    Some(v) => match v.get_ref() {
                        toml::Value::Boolean(false) => None,
                        toml::Value::Boolean(true) => Some(Signal::KILL),
                        toml::Value::String(s) => {
                            Some(self.signal(&Spanned::new(v.span(), s.clone()))?)
                        }
                        _ => {
                            self.error("`escalate` must be a signal name or false", v.span());
                            return None;
                        }
                    },
                };
                if escalate.is_some() && grace >= timeout {
                    let span = r
                        .grace
                        .as_ref()
                        .or(r.timeout.as_ref())
                        .map_or(r.action.span(), Spanned::span);
                    self.error_help(
                        format!(
                            "grace ({}) is not shorter than timeout ({}): the escalation would never be sent",
                            humantime::format_duration(grace),
                            humantime::format_duration(timeout)
                        ),
                        span,
                        "make `timeout` longer than `grace`, or set `escalate = false`",
                    );
                    return None;
                }
                Action::Terminate(Terminate {
                    signal,
                    grace,
                    escalate,
                    timeout,
                    settle: defaults.settle,
                })
            }
            ActionKind::Wait => Action::Wait { timeout, then },
            ActionKind::Refuse => Action::Refuse {
                message: r.message.as_ref().map(|m| self.template(m)),
            },
            ActionKind::Reuse => {
                let health = match &r.health {
                    None => None,
                    Some(h) if h.get_ref() == "tcp" => Some(Health::Tcp),
                    Some(h) if h.get_ref().starts_with("http://") => {
                        let any_host = r.health_any_host.as_ref().is_some_and(|b| *b.get_ref());
                        self.check_health_url(h, any_host)?;
                        let body = match &r.health_body {
                            Some(b) => Some(self.regex(b)?),
                            None => None,
                        };
                        let status = match &r.health_status {
                            Some(codes) => self.status_codes(codes)?,
                            None => StatusCodes::default(),
                        };
                        Some(Health::Http {
                            url: h.get_ref().clone(),
                            body,
                            status,
                        })
                    }
                    Some(h) => {
                        self.error_help(
                            format!("unsupported health check \"{}\"", h.get_ref()),
                            h.span(),
                            "health is \"tcp\" or an http:// URL such as \"http://127.0.0.1:{port}/livez\" (no TLS: health checks are for loopback)",
                        );
                        return None;
                    }
                };
                if !matches!(health, Some(Health::Http { .. })) {
                    for (key, span) in [
                        ("health_body", r.health_body.as_ref().map(Spanned::span)),
                        ("health_status", r.health_status.as_ref().map(Spanned::span)),
                        (
                            "health_any_host",
                            r.health_any_host.as_ref().map(Spanned::span),
                        ),
                    ] {
                        if let Some(span) = span {
                            self.error_help(
                                format!("`{key}` needs an http health check"),
                                span,
                                "set health = \"http://127.0.0.1:{port}/...\"",
                            );
                            return None;
                        }
                    }
                }
                Action::Reuse {
                    health,
                    timeout,
                    then,
                }
            }
        })
    }

    /// An http health URL must name a loopback host (unless the policy
    /// allows any host): a pre-start hook should not make requests to other
    /// machines on a policy's say-so.
    pub(super) fn check_health_url(&mut self, h: &Spanned<String>, any_host: bool) -> Option<()> {
        let rest = h.get_ref().trim_start_matches("http://");
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = if let Some(v6) = authority.strip_prefix('[') {
            v6.split(']').next().unwrap_or("")
        } else {
            authority.split(':').next().unwrap_or("")
        };
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if host.is_empty() {
            self.error("the health URL has no host", h.span());
            return None;
        }
        if !loopback && !any_host {
            self.error_help(
                format!("the health URL's host `{host}` is not a loopback address"),
                h.span(),
                "health checks go to 127.0.0.1, [::1] or localhost; set `health_any_host = true` to allow another host",
            );
            return None;
        }
        Some(())
    }

    /// `health_status`: codes 100-599 and "a-b" ranges.
    pub(super) fn status_codes(
        &mut self,
        list: &Spanned<Vec<Spanned<toml::Value>>>,
    ) -> Option<StatusCodes> {
        let mut codes = Vec::new();
        let mut ok = true;
        for v in list.get_ref() {
            let parsed = match v.get_ref() {
                toml::Value::Integer(n) => u16::try_from(*n).ok().map(|c| (c, c)),
                toml::Value::String(s) => match s.split_once('-') {
                    Some((a, b)) => a.parse().ok().zip(b.parse().ok()),
                    None => s.parse().ok().map(|c| (c, c)),
                },
                _ => None,
            };
            match parsed {
                Some((lo, hi)) if (100..=599).contains(&lo) && (lo..=599).contains(&hi) => {
                    codes.push((lo, hi));
                }
                _ => {
                    ok = false;
                    self.error_help(
                        "invalid HTTP status code",
                        v.span(),
                        "status codes are 100-599, as numbers or \"a-b\" ranges, e.g. [200, 503] or [\"200-299\"]",
                    );
                }
            }
        }
        if codes.is_empty() && ok {
            self.error("empty `health_status`: no answer would count", list.span());
            return None;
        }
        ok.then_some(StatusCodes(codes))
    }

    pub(super) fn signal(&mut self, s: &Spanned<String>) -> Option<Signal> {
        let sig = Signal::parse(s.get_ref());
        if sig.is_none() {
            let names: Vec<&str> = Signal::ALL.iter().map(|s| s.name).collect();
            self.error_help(
                format!("unknown signal \"{}\"", s.get_ref()),
                s.span(),
                &format!("signals portguard sends: {}", names.join(", ")),
            );
        }
        sig
    }

    /// Parses a `message` template; an unknown `{placeholder}` is a
    /// warning (it is printed as written).
    pub(super) fn template(&mut self, m: &Spanned<String>) -> Template {
        let template = Template::parse(m.get_ref());
        for name in template.unknown() {
            self.diags.push(
                Diagnostic::warning(
                    format!("unknown placeholder `{{{name}}}` in message"),
                    Some(m.span()),
                )
                .with_help(format!(
                    "placeholders are {}; an unknown one is printed as written",
                    crate::policy::Placeholder::ALL
                        .map(|p| format!("{{{}}}", p.name()))
                        .join(" ")
                )),
            );
        }
        template
    }
}
