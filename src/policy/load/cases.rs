//! `[[test]]` cases: owners as data and the decision they must produce.

use super::structure::Loose;
use super::suggest;
use super::Checker;
use crate::model::{Container, Holder, Outcome, Protocol, Unit, Unknown};
use crate::policy::raw::{RawExpect, RawTest};
use crate::policy::{ActionKind, Expect, Rule, TestCase, TestClients};
use crate::ports::port_from_int;
use std::ops::Range;
use toml::Spanned;

const OUTCOMES: [&str; 5] = ["free", "freed", "reuse", "refused", "failed"];

impl Checker<'_> {
    pub(super) fn test_case(
        &mut self,
        t: &Spanned<RawTest>,
        rule_names: Option<&[&str]>,
        self_rules: &[&Rule],
    ) -> Option<TestCase> {
        let span = t.span();
        let line = self.line_of(span.start);
        let t = t.get_ref();
        let errors_before = self.error_count();
        let port = self.test_port(&t.port);
        let protocol = self.test_protocol(t.protocol.as_ref());
        let (mut self_uid, self_name) = self.test_self(t.self_user.as_ref());
        if t.self_user.is_none() && !t.owners.is_empty() {
            // `"$self"` never matches without a `self`: the case could
            // never reach such a rule, and would test something else.
            let reachable = self_rules.iter().find(|r| {
                r.ports
                    .as_ref()
                    .is_none_or(|ports| ports.iter().any(|p| p.contains(port)))
            });
            if let Some(rule) = reachable {
                self.error_help(
                    format!(
                        "test \"{}\" gives no `self`, so rule `{}` (line {}), which matches `user = \"$self\"`, can never apply in it",
                        t.name, rule.name, rule.line
                    ),
                    span.clone(),
                    "add `self = \"alice\"` (a user name or uid) to the test case",
                );
            }
        }
        let e = &t.expect;
        let (action, outcome) = self.test_expect(&t.name, e, span.clone(), rule_names);
        let mut owners = Vec::new();
        for (i, o) in t.owners.iter().enumerate() {
            let Some(uid) = o.uid else {
                self.error(
                    format!("owner {} of test \"{}\" has no `uid`", i + 1, t.name),
                    span.clone(),
                );
                continue;
            };
            if self_uid.is_none() && self_name.is_some() && o.user == self_name {
                self_uid = Some(uid);
            }
            let addr = match &o.addr {
                Some(a) => match a.parse() {
                    Ok(addr) => addr,
                    Err(_) => {
                        self.error(
                            format!("owner address \"{a}\" is not ip:port"),
                            span.clone(),
                        );
                        continue;
                    }
                },
                None => std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            };
            let mut owner = Holder::unseen(uid, vec![addr], vec![1], Unknown::TestOwner);
            if let Some(pid) = o.pid {
                owner.pid = Some(pid);
                owner.start_ticks = Some(u64::from(pid));
                owner.unknown = None;
            }
            owner.ppid = o.ppid;
            owner.user = o.user.clone();
            owner.exe = o.exe.clone();
            owner.cmdline = o.cmdline.clone();
            owner.orphan = o.orphan.or(o.ppid.map(|p| p <= 1));
            owner.unit = o.unit.as_ref().map(|name| Unit {
                name: name.clone(),
                user: o.unit_user,
            });
            owner.container = o.container.as_ref().map(|c| Container {
                id: c.id.clone().unwrap_or_else(|| format!("{:0>12}", c.name)),
                name: c.name.clone(),
                image: c.image.clone(),
                compose_project: None,
                compose_service: None,
            });
            owners.push(owner);
        }
        if self.error_count() > errors_before {
            return None;
        }
        Some(TestCase {
            name: t.name.clone(),
            line,
            port,
            protocol,
            self_uid,
            self_name,
            expect: Expect {
                rule: e.rule.clone(),
                action,
                outcome,
            },
            owners,
            clients: t
                .clients
                .as_ref()
                .map(|c| TestClients {
                    live: c.live.clone(),
                    stale: c.stale.clone(),
                    unreadable: c.unreadable,
                })
                .unwrap_or_default(),
            healthy: t.healthy.unwrap_or(true),
        })
    }

    /// A test case with a structural error (reported): each of its
    /// well-formed values is still checked on its own. Its owners are
    /// not, nor is which rules it can reach: those depend on the whole.
    pub(super) fn loose_test(&mut self, mut loose: Loose<'_>, rule_names: Option<&[&str]>) {
        let t = &mut loose.table;
        let name = self.take::<String>(t, "name").unwrap_or_default();
        if let Some(port) = self.take::<Spanned<i64>>(t, "port") {
            self.test_port(&port);
        }
        let protocol = self.take::<Spanned<String>>(t, "protocol");
        self.test_protocol(protocol.as_ref());
        let self_user = self.take::<Spanned<toml::Value>>(t, "self");
        self.test_self(self_user.as_ref());
        if let Some(expect) = self.take::<RawExpect>(t, "expect") {
            self.test_expect(&name, &expect, loose.span.clone(), rule_names);
        }
    }

    fn test_port(&mut self, port: &Spanned<i64>) -> u16 {
        match port_from_int(*port.get_ref()) {
            Ok(p) => p,
            Err(e) => {
                self.error(e.to_string(), port.span());
                0
            }
        }
    }

    fn test_protocol(&mut self, protocol: Option<&Spanned<String>>) -> Protocol {
        match protocol.map(|p| (p.get_ref().as_str(), p.span())) {
            None | Some(("tcp", _)) => Protocol::Tcp,
            Some(("udp", _)) => Protocol::Udp,
            Some((other, span)) => {
                match suggest::closest(other, ["tcp", "udp"]) {
                    Some(close) => self.error_help(
                        format!("unknown protocol \"{other}\" (tcp or udp)"),
                        span,
                        &format!("did you mean \"{close}\"?"),
                    ),
                    None => {
                        self.error(format!("unknown protocol \"{other}\" (tcp or udp)"), span);
                    }
                }
                Protocol::Tcp
            }
        }
    }

    /// `self`: a user name or a uid.
    fn test_self(&mut self, who: Option<&Spanned<toml::Value>>) -> (Option<u32>, Option<String>) {
        match who.map(|v| (v.get_ref(), v.span())) {
            None => (None, None),
            Some((toml::Value::String(name), _)) => (None, Some(name.clone())),
            Some((toml::Value::Integer(n), span)) => match u32::try_from(*n) {
                Ok(uid) => (Some(uid), None),
                Err(_) => {
                    self.error(format!("uid {n} is out of range"), span);
                    (None, None)
                }
            },
            Some((_, span)) => {
                self.error("`self` is a user name or a uid", span);
                (None, None)
            }
        }
    }

    /// `expect`: a rule the policy has, a known action and outcome.
    /// `rule_names` is `None` when which rules there are is not known.
    fn test_expect(
        &mut self,
        name: &str,
        e: &RawExpect,
        span: Range<usize>,
        rule_names: Option<&[&str]>,
    ) -> (Option<ActionKind>, Option<Outcome>) {
        if let (Some(rule), Some(rule_names)) = (&e.rule, rule_names) {
            if rule != "default" && !rule_names.contains(&rule.as_str()) {
                let help = match suggest::closest(rule, rule_names.iter().copied()) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => format!(
                        "rules: {}; \"default\" means no rule applies",
                        rule_names.join(", ")
                    ),
                };
                self.error_help(
                    format!(
                        "test \"{name}\" expects rule `{rule}`, which the policy does not have"
                    ),
                    span.clone(),
                    &help,
                );
            }
        }
        let action = e.action.as_ref().and_then(|a| {
            let kind = ActionKind::parse(a);
            if kind.is_none() {
                let message = format!("test \"{name}\" expects unknown action \"{a}\"");
                match suggest::closest(a, ActionKind::ALL.map(ActionKind::as_str)) {
                    Some(close) => {
                        self.error_help(
                            message,
                            span.clone(),
                            &format!("did you mean \"{close}\"?"),
                        );
                    }
                    None => {
                        self.error(message, span.clone());
                    }
                }
            }
            kind
        });
        let outcome = e.outcome.as_ref().and_then(|o| {
            let parsed = Outcome::parse(o);
            if parsed.is_none() {
                let help = match suggest::closest(o, OUTCOMES) {
                    Some(close) => format!("did you mean \"{close}\"?"),
                    None => "outcomes are free, freed, reuse, refused and failed".to_string(),
                };
                self.error_help(
                    format!("test \"{name}\" expects unknown outcome \"{o}\""),
                    span.clone(),
                    &help,
                );
            }
            parsed
        });
        if e.rule.is_none() && e.action.is_none() && e.outcome.is_none() {
            self.error(
                format!("test \"{name}\" expects nothing: give `expect.rule`, `expect.action` or `expect.outcome`"),
                span,
            );
        }
        (action, outcome)
    }
}
