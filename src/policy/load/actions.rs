//! An action and its settings: durations, signals, health checks,
//! status codes and message templates.

use super::{suggest, Checker, MAX_DURATION};
use crate::diagnostic::Diagnostic;
use crate::policy::raw::RawRule;
use crate::policy::{
    Action, ActionKind, Defaults, Health, Signal, StatusCodes, Template, Terminate,
};
use std::time::Duration;
use toml::Spanned;
use toml::Value;

/// A rule's action settings, each checked on its own by
/// [`Checker::each_setting`].
#[derive(Debug, Default)]
pub(super) struct Settings<'r> {
    pub signal: Option<&'r Spanned<String>>,
    pub grace: Option<&'r Spanned<String>>,
    pub timeout: Option<&'r Spanned<String>>,
    pub escalate: Option<&'r Spanned<Value>>,
    pub health: Option<&'r Spanned<String>>,
    pub health_body: Option<&'r Spanned<String>>,
    pub health_status: Option<&'r Spanned<Vec<Spanned<Value>>>>,
    pub health_any_host: bool,
    pub message: Option<&'r Spanned<String>>,
}

impl<'r> Settings<'r> {
    /// The settings of `r`.
    pub(super) fn of(r: &'r RawRule) -> Self {
        Settings {
            signal: r.signal.as_ref(),
            grace: r.grace.as_ref(),
            timeout: r.timeout.as_ref(),
            escalate: r.escalate.as_ref(),
            health: r.health.as_ref(),
            health_body: r.health_body.as_ref(),
            health_status: r.health_status.as_ref(),
            health_any_host: r.health_any_host.as_ref().is_some_and(|b| *b.get_ref()),
            message: r.message.as_ref(),
        }
    }
}

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
            let help = match suggest::closest(s.get_ref(), ActionKind::ALL.map(ActionKind::as_str))
            {
                Some(close) => format!("did you mean \"{close}\"?"),
                None => "actions are \"terminate\", \"wait\", \"refuse\" and \"reuse\"".into(),
            };
            self.error_help(
                format!("unknown action \"{}\"", s.get_ref()),
                s.span(),
                &help,
            );
        }
        kind
    }

    /// Builds one action from the rule's keys (and `[defaults]`). A
    /// fallback (`then`) takes its own settings from the rule, but `timeout`
    /// — which the rule's own action also has — belongs to the rule's action,
    /// so the fallback's timeout comes from `[defaults]`. Every setting is
    /// checked, not only up to the first that is wrong.
    pub(super) fn action(
        &mut self,
        kind: ActionKind,
        r: &RawRule,
        defaults: &Defaults,
        then: Option<Box<Action>>,
        is_fallback: bool,
    ) -> Option<Action> {
        let timeout = match &r.timeout {
            Some(s) if !is_fallback => self.duration(s),
            _ => Some(defaults.timeout),
        };
        Some(match kind {
            ActionKind::Terminate => {
                let signal = r
                    .signal
                    .as_ref()
                    .map_or(Some(Signal::TERM), |s| self.signal(s));
                let grace = r
                    .grace
                    .as_ref()
                    .map_or(Some(defaults.grace), |s| self.duration(s));
                let escalate = r
                    .escalate
                    .as_ref()
                    .map_or(Some(Some(Signal::KILL)), |v| self.escalate(v));
                let (signal, grace, escalate, timeout) = (signal?, grace?, escalate?, timeout?);
                // With `[defaults]` broken, a grace or timeout taken from
                // it is not what the author wrote: no verdict on it.
                let from_defaults = r.grace.is_none() || r.timeout.is_none() || is_fallback;
                if escalate.is_some()
                    && grace >= timeout
                    && !(self.defaults_uncertain && from_defaults)
                {
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
            ActionKind::Wait => Action::Wait {
                timeout: timeout?,
                then,
            },
            ActionKind::Refuse => Action::Refuse {
                message: r.message.as_ref().map(|m| self.template(m)),
            },
            ActionKind::Reuse => {
                let health = match &r.health {
                    None => Some(None),
                    Some(h) if h.get_ref() == "tcp" => Some(Some(Health::Tcp)),
                    Some(h) if h.get_ref().starts_with("http://") => {
                        let any_host = r.health_any_host.as_ref().is_some_and(|b| *b.get_ref());
                        let url = self.check_health_url(h, any_host);
                        let body = r.health_body.as_ref().map(|b| self.regex(b));
                        let status = r.health_status.as_ref().map(|c| self.status_codes(c));
                        let body = body.map_or(Some(None), |b| b.map(Some));
                        let status = status.unwrap_or_else(|| Some(StatusCodes::default()));
                        match (url, body, status) {
                            (Some(()), Some(body), Some(status)) => Some(Some(Health::Http {
                                url: h.get_ref().clone(),
                                body,
                                status,
                            })),
                            _ => None,
                        }
                    }
                    Some(h) => {
                        self.unsupported_health(h);
                        None
                    }
                };
                let mut http_only_ok = true;
                if r.health
                    .as_ref()
                    .is_none_or(|h| !h.get_ref().starts_with("http://"))
                {
                    for (key, span) in [
                        ("health_body", r.health_body.as_ref().map(Spanned::span)),
                        ("health_status", r.health_status.as_ref().map(Spanned::span)),
                        (
                            "health_any_host",
                            r.health_any_host.as_ref().map(Spanned::span),
                        ),
                    ] {
                        if let Some(span) = span {
                            http_only_ok = false;
                            self.error_help(
                                format!("`{key}` needs an http health check"),
                                span,
                                "set health = \"http://127.0.0.1:{port}/...\"",
                            );
                        }
                    }
                }
                let (health, timeout) = (health?, timeout?);
                if !http_only_ok {
                    return None;
                }
                Action::Reuse {
                    health,
                    timeout,
                    then,
                }
            }
        })
    }

    /// Checks each setting of a rule on its own: for a rule whose action is
    /// unknown or missing, or whose structure is broken, so which settings
    /// belong to it cannot be told — but a bad duration, signal, health
    /// check or regex among them can.
    pub(super) fn each_setting(&mut self, s: &Settings<'_>) {
        if let Some(signal) = s.signal {
            self.signal(signal);
        }
        for d in [s.grace, s.timeout].into_iter().flatten() {
            self.duration(d);
        }
        if let Some(e) = s.escalate {
            self.escalate(e);
        }
        if let Some(h) = s.health {
            if h.get_ref().starts_with("http://") {
                self.check_health_url(h, s.health_any_host);
            } else if h.get_ref() != "tcp" {
                self.unsupported_health(h);
            }
        }
        if let Some(b) = s.health_body {
            self.regex(b);
        }
        if let Some(codes) = s.health_status {
            self.status_codes(codes);
        }
        if let Some(m) = s.message {
            self.template(m);
        }
    }

    /// `escalate`: a signal, `true` (SIGKILL) or `false` (never).
    pub(super) fn escalate(&mut self, v: &Spanned<Value>) -> Option<Option<Signal>> {
        match v.get_ref() {
            Value::Boolean(false) => Some(None),
            Value::Boolean(true) => Some(Some(Signal::KILL)),
            Value::String(s) => Some(Some(self.signal(&Spanned::new(v.span(), s.clone()))?)),
            _ => {
                self.error_help(
                    "`escalate` must be a signal name or false",
                    v.span(),
                    "escalate = \"SIGKILL\" (the default) or escalate = false to never escalate",
                );
                None
            }
        }
    }

    pub(super) fn unsupported_health(&mut self, h: &Spanned<String>) {
        self.error_help(
            format!("unsupported health check \"{}\"", h.get_ref()),
            h.span(),
            "health is \"tcp\" or an http:// URL such as \"http://127.0.0.1:{port}/livez\" (no TLS: health checks are for loopback)",
        );
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
        list: &Spanned<Vec<Spanned<Value>>>,
    ) -> Option<StatusCodes> {
        let mut codes = Vec::new();
        let mut ok = true;
        for v in list.get_ref() {
            let parsed = match v.get_ref() {
                Value::Integer(n) => u16::try_from(*n).ok().map(|c| (c, c)),
                Value::String(s) => match s.split_once('-') {
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
            // Compared without the SIG prefix, which is optional.
            let upper = s.get_ref().to_ascii_uppercase();
            let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
            let names = Signal::ALL.map(|s| s.name);
            let help = match suggest::closest(bare, names.map(|n| n.trim_start_matches("SIG"))) {
                Some(close) => format!("did you mean \"SIG{close}\"?"),
                None => format!("signals portguard sends: {}", names.join(", ")),
            };
            self.error_help(
                format!("unknown signal \"{}\"", s.get_ref()),
                s.span(),
                &help,
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
