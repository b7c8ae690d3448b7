//! Reading and checking a policy: TOML → [`raw`] → [`Policy`], collecting
//! every problem with its span instead of stopping at the first.

use super::limits::{self, Exceeded, SyntaxCost};
use super::raw::{RawDefaults, RawMatch, RawPolicy, RawRule, RawTest};
use super::{
    Action, ActionKind, ClientsCriterion, Criteria, Defaults, DirTemplate, Expect, Health, Invalid,
    Pattern, Policy, PolicyError, PolicySource, RegexBudget, Rule, Signal, StatusCodes, Template,
    Terminate, TestCase, TestClients, UserSpec,
};
use crate::diagnostic::{Diagnostic, Severity, SourceIndex};
use crate::model::{Container, Holder, Outcome, Protocol, Unit, Unknown};
use crate::ports::{port_from_int, PortRange};
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
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

/// Reads and checks the policy file at `path`.
pub fn load_file(path: &Path) -> Result<Policy, PolicyError> {
    let bytes = read_policy_file(path)?;
    let source = PolicySource::File(path.to_path_buf());
    match String::from_utf8(bytes) {
        Ok(text) => load_source(&text, source),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            Err(PolicyError::Invalid(Invalid {
                file: source.display_name(),
                text,
                diagnostics: vec![Diagnostic::error(
                    "the policy is not valid UTF-8",
                    Some(at..at + 1),
                )],
            }))
        }
    }
}

/// What a file that is not a regular file is, in words.
fn file_kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Reads a policy file: only a regular file, and at most
/// [`limits::MAX_POLICY_BYTES`] of it. It is opened non-blocking, so a FIFO
/// cannot make the open wait for a writer, and checked with `fstat` on the
/// open descriptor, so what is read is what was checked.
pub fn read_policy_file(path: &Path) -> Result<Vec<u8>, PolicyError> {
    use rustix::fs::OFlags;
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = || path.display().to_string();
    let read_error = |source: std::io::Error| PolicyError::Read {
        path: shown(),
        source,
    };
    let not_regular = |t: std::fs::FileType| PolicyError::NotRegular {
        path: shown(),
        kind: file_kind(t),
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
        .open(path)
    {
        Ok(file) => file,
        Err(e) => {
            // A socket cannot be opened at all (ENXIO): say what it is.
            return Err(match std::fs::metadata(path) {
                Ok(m) if !m.is_file() => not_regular(m.file_type()),
                _ => read_error(e),
            });
        }
    };
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    if meta.len() > limits::MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge {
            path: shown(),
            size: meta.len(),
        });
    }
    // Regular files ignore O_NONBLOCK; cleared all the same, so reads are
    // plain blocking reads whatever the file system.
    let flags = rustix::fs::fcntl_getfl(&file).map_err(|e| read_error(e.into()))?;
    rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK).map_err(|e| read_error(e.into()))?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // A file that grows while it is read (or that reports no size, as
    // /proc files do) is still read no further than the limit.
    file.take(limits::MAX_POLICY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > limits::MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge {
            path: shown(),
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// Checks policy `text` that came from `source`. Warnings are kept in
/// [`Policy::warnings`]; any error makes the whole policy invalid.
pub fn load_source(text: &str, source: PolicySource) -> Result<Policy, PolicyError> {
    load_with(text, source, true)
}

/// [`load_source`]; without `check_regexes`, regexes are kept as written
/// and only checked when compiled (first use). For the built-in policies:
/// their regexes pass the full check in the unit tests, and on the free
/// port of a pre-start hook, which never compiles them, the check was a
/// third of the run.
pub(super) fn load_with(
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
}

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
    /// 1-based line of byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        self.lines.line_col(offset).0
    }

    fn error_count(&self) -> usize {
        self.diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    fn error(&mut self, message: impl Into<String>, span: Range<usize>) -> Option<()> {
        self.diags.push(Diagnostic::error(message, Some(span)));
        None
    }

    fn error_help(&mut self, message: impl Into<String>, span: Range<usize>, help: &str) {
        self.diags
            .push(Diagnostic::error(message, Some(span)).with_help(help));
    }

    fn policy(&mut self, raw: RawPolicy, source: &PolicySource) -> Option<Policy> {
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

    fn duration(&mut self, s: &Spanned<String>) -> Option<Duration> {
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

    fn action_kind(&mut self, s: &Spanned<String>) -> Option<ActionKind> {
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

    fn defaults(&mut self, raw: Option<&RawDefaults>) -> Option<Defaults> {
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

    fn rule(&mut self, r: &RawRule, line: usize, defaults: &Defaults) -> Option<Rule> {
        let ports = match &r.ports {
            None => Some(None),
            Some(p) => self.ports(p),
        };
        let criteria = self.criteria(r.matcher.as_ref());
        let kind = self.action_kind(&r.action);
        let then = match &r.then {
            Some(t) => Some((self.action_kind(t)?, t.span())),
            None => None,
        };
        let kind = kind?;
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
                let owners: Vec<&str> = [
                    ActionKind::Terminate,
                    ActionKind::Wait,
                    ActionKind::Refuse,
                    ActionKind::Reuse,
                ]
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
        let fallback = match &then {
            Some((t, _)) => Some(Box::new(self.action(*t, r, defaults, None, true)?)),
            None => None,
        };
        let action = self.action(kind, r, defaults, fallback, false)?;
        if !settings_ok {
            return None;
        }
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
    fn lint(&mut self, rules: &[Rule]) {
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
    fn check_counts(&mut self, raw: &RawPolicy) {
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

    fn test_case(
        &mut self,
        t: &Spanned<RawTest>,
        rule_names: &[&str],
        self_rules: &[&Rule],
    ) -> Option<TestCase> {
        let span = t.span();
        let line = self.line_of(span.start);
        let t = t.get_ref();
        let errors_before = self.error_count();
        let port = match port_from_int(*t.port.get_ref()) {
            Ok(p) => p,
            Err(e) => {
                self.error(e.to_string(), t.port.span());
                0
            }
        };
        let protocol = match t
            .protocol
            .as_ref()
            .map(|p| (p.get_ref().as_str(), p.span()))
        {
            None | Some(("tcp", _)) => Protocol::Tcp,
            Some(("udp", _)) => Protocol::Udp,
            Some((other, span)) => {
                self.error(format!("unknown protocol \"{other}\" (tcp or udp)"), span);
                Protocol::Tcp
            }
        };
        let (mut self_uid, self_name) = match t.self_user.as_ref().map(|v| (v.get_ref(), v.span()))
        {
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
        };
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
        if let Some(rule) = &e.rule {
            if rule != "default" && !rule_names.contains(&rule.as_str()) {
                self.error_help(
                    format!(
                        "test \"{}\" expects rule `{rule}`, which the policy does not have",
                        t.name
                    ),
                    span.clone(),
                    &format!(
                        "rules: {}; \"default\" means no rule applies",
                        rule_names.join(", ")
                    ),
                );
            }
        }
        let action = e.action.as_ref().and_then(|a| {
            let kind = ActionKind::parse(a);
            if kind.is_none() {
                self.error(
                    format!("test \"{}\" expects unknown action \"{a}\"", t.name),
                    span.clone(),
                );
            }
            kind
        });
        let outcome = e.outcome.as_ref().and_then(|o| {
            let parsed = Outcome::parse(o);
            if parsed.is_none() {
                self.error_help(
                    format!("test \"{}\" expects unknown outcome \"{o}\"", t.name),
                    span.clone(),
                    "outcomes are free, freed, reuse, refused and failed",
                );
            }
            parsed
        });
        if e.rule.is_none() && e.action.is_none() && e.outcome.is_none() {
            self.error(
                format!("test \"{}\" expects nothing: give `expect.rule`, `expect.action` or `expect.outcome`", t.name),
                span.clone(),
            );
        }
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
        })
    }

    /// Builds one action from the rule's keys (and `[defaults]`). A
    /// fallback (`then`) takes its own settings from the rule, but `timeout`
    /// — which the rule's own action also has — belongs to the rule's action,
    /// so the fallback's timeout comes from `[defaults]`.
    fn action(
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
    fn check_health_url(&mut self, h: &Spanned<String>, any_host: bool) -> Option<()> {
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
    fn status_codes(&mut self, list: &Spanned<Vec<Spanned<toml::Value>>>) -> Option<StatusCodes> {
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

    fn signal(&mut self, s: &Spanned<String>) -> Option<Signal> {
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
    fn template(&mut self, m: &Spanned<String>) -> Template {
        let template = Template::parse(m.get_ref());
        for name in template.unknown() {
            self.diags.push(
                Diagnostic::warning(
                    format!("unknown placeholder `{{{name}}}` in message"),
                    Some(m.span()),
                )
                .with_help(format!(
                    "placeholders are {}; an unknown one is printed as written",
                    super::Placeholder::ALL
                        .map(|p| format!("{{{}}}", p.name()))
                        .join(" ")
                )),
            );
        }
        template
    }

    fn ports(&mut self, p: &Spanned<Vec<Spanned<toml::Value>>>) -> Option<Option<Vec<PortRange>>> {
        let mut out = Vec::new();
        let mut ok = true;
        for v in p.get_ref() {
            let parsed = match v.get_ref() {
                toml::Value::Integer(n) => port_from_int(*n).map(PortRange::single),
                toml::Value::String(s) => s.parse::<PortRange>(),
                _ => {
                    ok = false;
                    self.error("a port is a number or a \"a-b\" range", v.span());
                    continue;
                }
            };
            match parsed {
                Ok(r) => out.push(r),
                Err(e) => {
                    ok = false;
                    self.error(e.to_string(), v.span());
                }
            }
        }
        if out.is_empty() && ok {
            self.error_help(
                "empty `ports`: the rule would never apply",
                p.span(),
                "remove `ports` to apply the rule to every port",
            );
            return None;
        }
        ok.then_some(Some(out))
    }

    fn criteria(&mut self, m: Option<&RawMatch>) -> Option<Criteria> {
        let Some(m) = m else {
            return Some(Criteria::default());
        };
        let cmdline = m.cmdline.as_ref().map(|r| self.regex(r));
        let exe = m.exe.as_ref().map(|r| self.regex(r));
        let unit = m.unit.as_ref().map(|r| self.regex(r));
        let container = m.container.as_ref().map(|r| self.regex(r));
        let image = m.image.as_ref().map(|r| self.regex(r));
        let user = m.user.as_ref().map(|u| self.users(u));
        let clients = m
            .clients
            .as_ref()
            .map(|c| match DirTemplate::parse(c.dir.get_ref()) {
                Ok(dir) => Some(ClientsCriterion {
                    dir,
                    live: *c.live.get_ref(),
                }),
                Err(why) => {
                    self.error_help(
                        format!("invalid client directory: {why}"),
                        c.dir.span(),
                        "write a path; `{port}`, a leading `~` and `${VAR:-default}` are expanded",
                    );
                    None
                }
            });
        // `Some(None)`: the criterion was given but is invalid (reported).
        if matches!(cmdline, Some(None))
            || matches!(exe, Some(None))
            || matches!(user, Some(None))
            || matches!(clients, Some(None))
            || [&unit, &container, &image]
                .iter()
                .any(|c| matches!(c, Some(None)))
        {
            return None;
        }
        Some(Criteria {
            cmdline: cmdline.flatten(),
            exe: exe.flatten(),
            user: user.flatten(),
            orphan: m.orphan.as_ref().map(|o| *o.get_ref()),
            clients: clients.flatten(),
            unit: unit.flatten(),
            container: container.flatten(),
            image: image.flatten(),
        })
    }

    /// Checks a regex's syntax (cheap) and keeps it for compiling on first
    /// use; see [`Pattern`]. What parsing it may cost is estimated first and
    /// counted against the policy's limits ([`limits`]).
    fn regex(&mut self, r: &Spanned<String>) -> Option<Pattern> {
        let text = r.get_ref();
        if self.regex_limit_hit || !self.check_regexes {
            // Already invalid (and reported), or not to be checked: kept
            // as written.
            return Some(Pattern::new(text.clone(), r.span(), &self.regex_budget));
        }
        self.regex_text += text.len();
        if self.regex_text > limits::MAX_REGEX_TEXT {
            return self.regex_limit(
                r,
                format!(
                    "the policy's regexes together are longer than {}",
                    limits::bytes(limits::MAX_REGEX_TEXT as u64)
                ),
                format!(
                    "all regexes of a policy may have {} of text; shorten this regex or the ones before it",
                    limits::bytes(limits::MAX_REGEX_TEXT as u64)
                ),
            );
        }
        let ast = match regex_syntax::ast::parse::ParserBuilder::new()
            .build()
            .parse(text)
        {
            Ok(ast) => ast,
            Err(e) => return self.invalid_regex(r, &e.to_string()),
        };
        let allowed = SyntaxCost {
            unicode_classes: limits::MAX_UNICODE_CLASSES - self.regex_syntax.unicode_classes,
            case_fold: limits::MAX_CASE_FOLD - self.regex_syntax.case_fold,
        };
        match limits::syntax_cost(text, &ast, allowed) {
            Ok(cost) => {
                self.regex_syntax.unicode_classes += cost.unicode_classes;
                self.regex_syntax.case_fold += cost.case_fold;
            }
            Err(Exceeded::UnicodeClasses) => {
                return self.regex_limit(
                    r,
                    format!(
                        "the policy's regexes together have more than {} Unicode classes (\\w, \\d, \\s, \\p{{..}} and their negations)",
                        limits::MAX_UNICODE_CLASSES
                    ),
                    "use ASCII classes such as [a-z0-9_] or (?-u:\\w) where Unicode is not needed".into(),
                )
            }
            Err(Exceeded::CaseFold) => {
                return self.regex_limit(
                    r,
                    format!(
                        "the policy's case-insensitive classes are too large: case folding them would walk more than {} code points",
                        limits::MAX_CASE_FOLD
                    ),
                    "narrow the classes under (?i), e.g. [a-z] instead of \\pL or \\p{Any}, or turn (?i) off around them with (?-i:...)".into(),
                )
            }
        }
        let hir = match regex_syntax::hir::translate::Translator::new().translate(text, &ast) {
            Ok(hir) => hir,
            Err(e) => return self.invalid_regex(r, &e.to_string()),
        };
        if hir.properties().minimum_len() == Some(0) {
            self.diags.push(
                Diagnostic::warning(
                    "this regex matches the empty string, so it matches every value",
                    Some(r.span()),
                )
                .with_help("anchor it or make it specific, e.g. '^\\S*python[0-9.]* -m myapp'; remove the criterion to match anything on purpose"),
            );
        }
        Some(Pattern::new(text.clone(), r.span(), &self.regex_budget))
    }

    /// A regex that does not parse: the parser's message repeats the
    /// pattern with a caret, which the diagnostic already shows, so only
    /// its last line is kept.
    fn invalid_regex(&mut self, r: &Spanned<String>, text: &str) -> Option<Pattern> {
        let last = text.lines().rev().find(|l| !l.trim().is_empty());
        self.error_help(
            format!(
                "invalid regex: {}",
                last.unwrap_or(text).trim().trim_start_matches("error: ")
            ),
            r.span(),
            "the syntax is Rust's `regex` crate (no look-around or backreferences)",
        );
        None
    }

    fn regex_limit(
        &mut self,
        r: &Spanned<String>,
        message: String,
        help: String,
    ) -> Option<Pattern> {
        self.regex_limit_hit = true;
        self.error_help(message, r.span(), &help);
        None
    }

    fn users(&mut self, v: &Spanned<toml::Value>) -> Option<Vec<UserSpec>> {
        let one = |cx: &mut Self, value: &toml::Value| -> Option<UserSpec> {
            match value {
                toml::Value::String(s) if s == "$self" => Some(UserSpec::Me),
                toml::Value::String(s) if s.starts_with('$') => {
                    cx.error_help(
                        format!("unknown user variable \"{s}\""),
                        v.span(),
                        "the only variable is \"$self\" (the user running portguard)",
                    );
                    None
                }
                toml::Value::String(s) if !s.is_empty() => Some(UserSpec::Name(s.clone())),
                toml::Value::Integer(n) => match u32::try_from(*n) {
                    Ok(uid) => Some(UserSpec::Uid(uid)),
                    Err(_) => {
                        cx.error(format!("uid {n} is out of range"), v.span());
                        None
                    }
                },
                _ => {
                    cx.error(
                        "`user` is a user name, a uid, \"$self\", or a list of them",
                        v.span(),
                    );
                    None
                }
            }
        };
        match v.get_ref() {
            toml::Value::Array(items) if items.is_empty() => {
                self.error("empty `user` list: the rule would never apply", v.span());
                None
            }
            toml::Value::Array(items) => {
                let specs: Vec<Option<UserSpec>> = items.iter().map(|i| one(self, i)).collect();
                specs.into_iter().collect()
            }
            other => one(self, other).map(|u| vec![u]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::line_col;

    fn load(text: &str) -> Result<Policy, Invalid> {
        match load_source(text, PolicySource::File("p.toml".into())) {
            Ok(p) => Ok(p),
            Err(PolicyError::Invalid(inv)) => Err(inv),
            Err(other) => panic!("unexpected error kind: {other}"),
        }
    }

    /// The single error of `text`, rendered, plus its line number.
    fn one_error(text: &str) -> (String, usize) {
        let inv = load(text).expect_err("policy should be invalid");
        let errors: Vec<&Diagnostic> = inv
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        assert_eq!(errors.len(), 1, "{}", inv.render_all());
        let line = errors[0]
            .span
            .as_ref()
            .map_or(0, |s| line_col(text, s.start).0);
        (inv.render_all(), line)
    }

    const RULE: &str = "[[rule]]\nname = \"r\"\n";

    #[test]
    fn a_full_policy_loads_with_every_setting() {
        let p = load(
            r#"
name = "full"
description = "d"
[defaults]
action = "wait"
grace = "1s"
timeout = "5s"
[[rule]]
name = "t"
ports = [8787, "9000-9010"]
match.cmdline = 'proxy'
match.exe = '^/usr/bin/python3'
match.user = ["$self", "root", 1000]
match.orphan = true
action = "terminate"
signal = "INT"
grace = "250ms"
escalate = "SIGQUIT"
timeout = "2s"
[[rule]]
name = "w"
action = "wait"
then = "terminate"
grace = "100ms"
escalate = false
[[rule]]
name = "u"
action = "reuse"
health = "tcp"
then = "refuse"
message = "{port} {pid}"
"#,
        )
        .unwrap_or_else(|e| panic!("{}", e.render_all()));
        assert_eq!(p.name, "full");
        assert_eq!(p.rules.len(), 3);
        let t = &p.rules[0];
        assert_eq!(t.line, 8);
        assert_eq!(
            t.ports,
            Some(vec![PortRange::single(8787), "9000-9010".parse().unwrap()])
        );
        assert_eq!(
            t.criteria.user,
            Some(vec![
                UserSpec::Me,
                UserSpec::Name("root".into()),
                UserSpec::Uid(1000)
            ])
        );
        assert_eq!(t.criteria.orphan, Some(true));
        match &t.action {
            Action::Terminate(term) => {
                assert_eq!(term.signal.name, "SIGINT");
                assert_eq!(term.grace, Duration::from_millis(250));
                assert_eq!(term.escalate.map(|s| s.name), Some("SIGQUIT"));
                assert_eq!(term.timeout, Duration::from_secs(2));
            }
            other => panic!("{other:?}"),
        }
        match &p.rules[1].action {
            Action::Wait { timeout, then } => {
                assert_eq!(*timeout, Duration::from_secs(5), "defaults.timeout");
                match then.as_deref() {
                    Some(Action::Terminate(t)) => {
                        assert_eq!(t.grace, Duration::from_millis(100));
                        assert_eq!(t.escalate, None);
                    }
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            &p.rules[2].action,
            Action::Reuse { health: Some(Health::Tcp), then: Some(t), .. } if t.kind() == ActionKind::Refuse
        ));
        assert!(matches!(p.defaults.action, Action::Wait { .. }));
    }

    #[test]
    fn built_in_defaults_apply() {
        let p = load(&format!("{RULE}action = \"terminate\"\n")).unwrap();
        assert_eq!(p.name, "p", "name defaults to the file stem");
        match &p.rules[0].action {
            Action::Terminate(t) => {
                assert_eq!(
                    *t,
                    Terminate {
                        signal: Signal::TERM,
                        grace: Duration::from_secs(3),
                        escalate: Some(Signal::KILL),
                        timeout: Duration::from_secs(10),
                        settle: Duration::from_millis(250),
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            p.defaults.action,
            Action::Refuse { message: None }
        ));
    }

    #[test]
    fn unknown_key_is_an_error_at_its_line() {
        let (text, line) = one_error(&format!(
            "{RULE}acton = \"terminate\"\naction = \"refuse\"\n"
        ));
        assert_eq!(line, 3);
        assert!(text.contains("acton"), "{text}");
        assert!(text.contains("p.toml:3:1"), "{text}");
        assert!(text.contains("3 | acton = \"terminate\""), "{text}");
        let (text, _) = one_error(&format!("{RULE}action = \"refuse\"\nmatch.cmd = 'x'\n"));
        assert!(text.contains("cmd"), "{text}");
        let (text, _) = one_error("nmae = \"x\"\n");
        assert!(
            text.contains("nmae") && text.contains("p.toml:1:1"),
            "{text}"
        );
    }

    #[test]
    fn a_setting_of_another_action_is_an_error() {
        let (text, line) = one_error(&format!("{RULE}action = \"refuse\"\ngrace = \"1s\"\n"));
        assert_eq!(line, 4);
        assert!(
            text.contains("`grace` does not belong to action \"refuse\""),
            "{text}"
        );
        assert!(text.contains("setting of terminate"), "{text}");
        let (text, _) = one_error(&format!(
            "{RULE}action = \"terminate\"\nthen = \"refuse\"\n"
        ));
        assert!(text.contains("`then` does not belong"), "{text}");
        let (text, _) = one_error(&format!("{RULE}action = \"wait\"\nmessage = \"m\"\n"));
        assert!(text.contains("`message` does not belong"), "{text}");
    }

    #[test]
    fn then_must_name_another_known_action() {
        let (text, _) = one_error(&format!("{RULE}action = \"wait\"\nthen = \"wait\"\n"));
        assert!(text.contains("cannot fall back to itself"), "{text}");
        let (text, _) = one_error(&format!("{RULE}action = \"wait\"\nthen = \"kill\"\n"));
        assert!(text.contains("unknown action \"kill\""), "{text}");
    }

    #[test]
    fn duplicate_rule_names_are_an_error() {
        let (text, line) = one_error(&format!(
            "{RULE}action = \"refuse\"\n{RULE}action = \"refuse\"\n"
        ));
        assert_eq!(line, 5);
        assert!(text.contains("duplicate rule name `r`"), "{text}");
        assert!(text.contains("line 1"), "{text}");
    }

    #[test]
    fn bad_values_are_errors_with_their_spans() {
        for (body, needle, line) in [
            (
                "match.cmdline = '(unclosed'\naction = \"refuse\"",
                "invalid regex",
                3,
            ),
            ("match.exe = '['\naction = \"refuse\"", "invalid regex", 3),
            (
                "action = \"terminate\"\ngrace = \"soon\"",
                "invalid duration \"soon\"",
                4,
            ),
            (
                "action = \"wait\"\ntimeout = \"500000000000years\"",
                "longer than a day",
                4,
            ),
            (
                "action = \"terminate\"\nsignal = \"SIGSTOP\"",
                "unknown signal \"SIGSTOP\"",
                4,
            ),
            (
                "action = \"terminate\"\nescalate = 9",
                "`escalate` must be",
                4,
            ),
            ("ports = [0]\naction = \"refuse\"", "invalid port '0'", 3),
            (
                "ports = [\"9-3\"]\naction = \"refuse\"",
                "invalid port range '9-3'",
                3,
            ),
            (
                "ports = [70000]\naction = \"refuse\"",
                "invalid port '70000'",
                3,
            ),
            (
                "ports = [true]\naction = \"refuse\"",
                "a port is a number",
                3,
            ),
            ("ports = []\naction = \"refuse\"", "empty `ports`", 3),
            (
                "match.user = \"$other\"\naction = \"refuse\"",
                "unknown user variable",
                3,
            ),
            (
                "match.user = []\naction = \"refuse\"",
                "empty `user` list",
                3,
            ),
            (
                "match.user = -1\naction = \"refuse\"",
                "uid -1 is out of range",
                3,
            ),
            ("action = \"explode\"", "unknown action \"explode\"", 3),
            (
                "action = \"reuse\"\nhealth = \"udp\"",
                "unsupported health check",
                4,
            ),
            (
                "action = \"terminate\"\ngrace = \"10s\"",
                "is not shorter than timeout",
                4,
            ),
        ] {
            let (text, got_line) = one_error(&format!("{RULE}{body}\n"));
            assert!(text.contains(needle), "{body}: {text}");
            assert_eq!(got_line, line, "{body}: {text}");
        }
    }

    #[test]
    fn regexes_over_the_size_limit_are_a_clear_error_when_compiled() {
        let huge = format!(
            "{RULE}match.cmdline = '{}'\naction = \"refuse\"\n",
            "(a{1000}){1000}"
        );
        let policy = load(&huge).expect("the syntax is valid");
        let inv = policy.compile().expect_err("too large to compile");
        let text = inv.render_all();
        assert!(text.contains("regex is too large"), "{text}");
        assert!(text.contains("p.toml:3:17"), "{text}");
        // A pattern that cannot compile matches nothing.
        assert!(!policy.rules[0]
            .criteria
            .cmdline
            .as_ref()
            .unwrap()
            .is_match("aaaa"));
    }

    #[test]
    fn terminate_cannot_be_the_default() {
        let (text, line) = one_error("[defaults]\naction = \"terminate\"\n");
        assert_eq!(line, 2);
        assert!(
            text.contains("never signals a process that no rule matched"),
            "{text}"
        );
    }

    #[test]
    fn every_problem_is_reported_not_only_the_first() {
        let inv = load(&format!(
            "{RULE}action = \"refuse\"\ngrace = \"1s\"\n[[rule]]\nname = \"s\"\nmatch.cmdline = '('\naction = \"nope\"\n"
        ))
        .expect_err("invalid");
        let errors = inv
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        assert_eq!(errors, 3, "{}", inv.render_all());
        assert!(inv.render_all().ends_with("policy p.toml has 3 errors"));
    }

    #[test]
    fn toml_syntax_errors_have_a_location() {
        let inv = load("name = \"x\"\n[[rule]\n").expect_err("invalid");
        let text = inv.render_all();
        assert!(text.contains("p.toml:2:"), "{text}");
    }

    #[test]
    fn unknown_placeholders_are_warnings() {
        let p = load(&format!(
            "{RULE}action = \"refuse\"\nmessage = \"{{port}} {{holder}}\"\n"
        ))
        .unwrap();
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].message.contains("{holder}"));
    }

    #[test]
    fn tests_tables_are_accepted_and_checked_strictly() {
        let ok = load(&format!(
            "{RULE}action = \"refuse\"\n[[test]]\nname = \"t\"\nport = 8787\nself = \"alice\"\nexpect = {{ rule = \"r\", action = \"refuse\" }}\n[[test.owners]]\npid = 4\nppid = 1\nuser = \"alice\"\nuid = 1000\nexe = \"/usr/bin/python3\"\ncmdline = [\"python3\"]\n"
        ));
        assert!(ok.is_ok(), "{}", ok.unwrap_err().render_all());
        let (text, _) = one_error(&format!(
            "{RULE}action = \"refuse\"\n[[test]]\nname = \"t\"\nport = 8787\nexpect = {{ rule = \"r\" }}\nowners = [{{ pid = 4, colour = \"red\" }}]\n"
        ));
        assert!(text.contains("colour"), "{text}");
    }

    #[test]
    fn invalid_utf8_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, b"name = \"\xff\"\n").unwrap();
        let err = load_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("not valid UTF-8") && err.contains("bad.toml:1:9"),
            "{err}"
        );
    }

    fn warnings(text: &str) -> Vec<String> {
        load(text)
            .unwrap_or_else(|e| panic!("{}", e.render_all()))
            .warnings
            .iter()
            .map(|w| w.message.clone())
            .collect()
    }

    #[test]
    fn a_rule_after_a_catch_all_is_a_warning() {
        let w = warnings("[[rule]]\nname = \"all\"\naction = \"refuse\"\n[[rule]]\nname = \"late\"\nmatch.user = 0\naction = \"reuse\"\n");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("rule `late` can never apply: rule `all` (line 1)"),
            "{w:?}"
        );
        // A rule limited to some ports is not a catch-all.
        let w = warnings("[[rule]]\nname = \"p\"\nports = [1]\naction = \"refuse\"\n[[rule]]\nname = \"late\"\naction = \"reuse\"\n");
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn a_regex_matching_the_empty_string_is_a_warning() {
        let w = warnings(
            "[[rule]]\nname = \"r\"\nmatch.cmdline = 'x*'\nmatch.user = 0\naction = \"reuse\"\n",
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("matches the empty string"), "{w:?}");
        assert!(
            warnings("[[rule]]\nname = \"r\"\nmatch.exe = 'x+'\naction = \"reuse\"\n").is_empty()
        );
    }

    #[test]
    fn terminate_without_a_user_criterion_is_a_warning() {
        let w = warnings("[[rule]]\nname = \"r\"\nmatch.cmdline = 'x'\naction = \"terminate\"\n");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("without a `match.user`"), "{w:?}");
        // Also through a fallback.
        let w = warnings("[[rule]]\nname = \"r\"\nmatch.cmdline = 'x'\naction = \"wait\"\nthen = \"terminate\"\n");
        assert_eq!(w.len(), 1, "{w:?}");
        let w = warnings("[[rule]]\nname = \"r\"\nmatch.cmdline = 'x'\nmatch.user = \"$self\"\naction = \"terminate\"\n");
        assert!(w.is_empty(), "{w:?}");
    }

    // --- Input limits (issue 10) ---------------------------------------

    /// A case with one owner that `$self` would match, as alice.
    const SELF_CASE: &str = "[[test]]\nname = \"mine\"\nport = 8787\nexpect = { rule = \"mine\" }\nowners = [{ pid = 5, ppid = 1, uid = 1000, user = \"alice\" }]\n";

    #[test]
    fn a_test_case_without_self_for_a_self_rule_is_an_error() {
        let rule = "[[rule]]\nname = \"mine\"\nmatch.user = \"$self\"\naction = \"refuse\"\n";
        let (text, line) = one_error(&format!("{rule}{SELF_CASE}"));
        assert_eq!(line, 5, "{text}");
        assert!(
            text.contains("test \"mine\" gives no `self`, so rule `mine` (line 1), which matches `user = \"$self\"`, can never apply in it"),
            "{text}"
        );
        assert!(
            text.contains("help: add `self = \"alice\"` (a user name or uid) to the test case"),
            "{text}"
        );
        // In a list of users too.
        let listed = rule.replace("\"$self\"", "[0, \"$self\"]");
        one_error(&format!("{listed}{SELF_CASE}"));
        // With `self`, by name or uid, it loads.
        for who in ["\"alice\"", "1000"] {
            let case = SELF_CASE.replace("port = 8787", &format!("port = 8787\nself = {who}"));
            let p = load(&format!("{rule}{case}")).unwrap_or_else(|e| panic!("{}", e.render_all()));
            assert_eq!(p.tests.len(), 1);
        }
        // A rule limited to other ports cannot apply to the case; a case
        // without owners (a free port) evaluates no rule.
        let other_port = rule.replace("[[rule]]\n", "[[rule]]\nports = [1]\n");
        assert!(load(&format!("{other_port}{SELF_CASE}")).is_ok());
        let free = "[[test]]\nname = \"free\"\nport = 8787\nexpect = { outcome = \"free\" }\n";
        assert!(load(&format!("{rule}{free}")).is_ok());
        // A policy without `$self` needs no `self`.
        let plain = rule.replace("\"$self\"", "1000");
        assert!(load(&format!("{plain}{SELF_CASE}")).is_ok());
    }

    #[test]
    fn more_than_a_thousand_rules_is_an_error() {
        let rules = |n: usize| -> String {
            (0..n)
                .map(|i| {
                    format!("[[rule]]\nname = \"r{i}\"\nmatch.user = {i}\naction = \"refuse\"\n")
                })
                .collect()
        };
        assert!(load(&rules(limits::MAX_RULES)).is_ok());
        let (text, line) = one_error(&rules(limits::MAX_RULES + 1));
        assert_eq!(line, 4 * limits::MAX_RULES + 2, "{text}");
        assert!(
            text.contains("the policy has 1001 rules; at most 1000 are allowed"),
            "{text}"
        );
        assert!(text.contains("help: merge rules"), "{text}");
    }

    #[test]
    fn test_cases_may_check_at_most_so_many_owners_against_rules() {
        let mut text: String = (0..100)
            .map(|i| format!("[[rule]]\nname = \"r{i}\"\nmatch.user = {i}\naction = \"refuse\"\n"))
            .collect();
        // 20 cases of 100 owners against 100 rules: 200,000 checks.
        let owners = vec!["{ pid = 5, uid = 7 }"; 100].join(", ");
        for i in 0..20 {
            text.push_str(&format!(
                "[[test]]\nname = \"t{i}\"\nport = 1\nexpect = {{ rule = \"default\" }}\nowners = [{owners}]\n"
            ));
        }
        assert!(load(&text).is_ok());
        text.push_str("[[test]]\nname = \"one more\"\nport = 1\nexpect = { rule = \"default\" }\nowners = [{ pid = 5, uid = 7 }]\n");
        let (err, line) = one_error(&text);
        assert_eq!(line, 400 + 20 * 5 + 1, "{err}");
        assert!(
            err.contains("more than 200000 owners against rules"),
            "{err}"
        );
    }

    /// `n` rules, each with the regex `re`.
    fn regex_rules(n: usize, re: &str) -> String {
        (0..n)
            .map(|i| format!("[[rule]]\nname = \"r{i}\"\nmatch.cmdline = '{re}'\nmatch.user = {i}\naction = \"refuse\"\n"))
            .collect()
    }

    #[test]
    fn regex_text_is_limited_for_the_whole_policy() {
        let re = "a".repeat(1024);
        assert!(load(&regex_rules(32, &re)).is_ok());
        let (text, line) = one_error(&regex_rules(33, &re));
        assert_eq!(line, 5 * 32 + 3, "{text}");
        assert!(
            text.contains("the policy's regexes together are longer than 32 KiB"),
            "{text}"
        );
        // One huge regex, too.
        let (text, _) = one_error(&regex_rules(1, &"\\w".repeat(300_000)));
        assert!(text.contains("longer than 32 KiB"), "{text}");
    }

    #[test]
    fn unicode_classes_are_limited_for_the_whole_policy() {
        assert!(load(&regex_rules(400, &"\\w".repeat(10))).is_ok());
        let (text, line) = one_error(&regex_rules(401, &"\\w".repeat(10)));
        assert_eq!(line, 5 * 400 + 3, "{text}");
        assert!(text.contains("more than 4000 Unicode classes"), "{text}");
        assert!(text.contains("(?-u:\\w)"), "{text}");
    }

    #[test]
    fn case_folding_is_limited_for_the_whole_policy() {
        // Three of the largest class fit; the fourth does not.
        assert!(load(&regex_rules(3, "(?i)\\p{Any}")).is_ok());
        let (text, line) = one_error(&regex_rules(4, "(?i)\\p{Any}"));
        assert_eq!(line, 5 * 3 + 3, "{text}");
        assert!(
            text.contains("case-insensitive classes are too large"),
            "{text}"
        );
        // Loading is quick all the same: the estimate comes first.
        let start = std::time::Instant::now();
        let _ = load(&regex_rules(1, &format!("(?i){}", "\\p{Any}".repeat(500))));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn compiled_regexes_share_one_budget() {
        // Each `\w{60}N` compiles to about 3.4 MB: four fit in 16 MiB.
        let p = load(&regex_rules(50, "\\w{60}N")).unwrap();
        let inv = p.compile().expect_err("over the budget");
        let text = inv.render_all();
        assert_eq!(inv.diagnostics.len(), 1, "{text}");
        let at = inv.diagnostics[0].span.clone().unwrap();
        let (line, _) = line_col(&p.text, at.start);
        assert!((5 * 3 + 3..5 * 8).contains(&line), "{text}");
        assert!(
            text.contains("the policy's regexes together compile to more than 16 MiB"),
            "{text}"
        );
        assert!(
            text.contains("help: simplify this regex or the ones before it"),
            "{text}"
        );
        assert!(text.ends_with("policy p.toml has 1 error"), "{text}");
        // The regexes that fit still match; the one over the budget and
        // those after it (never compiled) match nothing.
        let hay = format!("{}N", "x".repeat(60));
        assert!(p.rules[0].criteria.cmdline.as_ref().unwrap().is_match(&hay));
        let over = (line - 3) / 5;
        assert!(!p.rules[over]
            .criteria
            .cmdline
            .as_ref()
            .unwrap()
            .is_match(&hay));
        // Compiling again reports the same.
        assert_eq!(p.compile().unwrap_err().render_all(), text);
        // Lazily, one pattern at a time, the budget is the same.
        let lazy = load(&regex_rules(50, "\\w{60}N")).unwrap();
        let matched = lazy
            .rules
            .iter()
            .filter(|r| r.criteria.cmdline.as_ref().unwrap().is_match(&hay))
            .count();
        assert_eq!(matched, over);
    }

    #[test]
    fn reading_a_policy_never_blocks_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("p.toml");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        for (path, kind) in [
            (fifo.as_path(), "a FIFO (named pipe)"),
            (Path::new("/dev/zero"), "a character device"),
            (dir.path(), "a directory"),
        ] {
            let err = load_file(path).unwrap_err();
            assert!(matches!(err, PolicyError::NotRegular { .. }), "{err}");
            assert!(
                err.to_string().contains(&format!(
                    "cannot read policy {}: it is {kind}; a policy must be a regular file",
                    path.display()
                )),
                "{err}"
            );
        }
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; 1024 * 1024 + 1]).unwrap();
        let err = load_file(&big).unwrap_err().to_string();
        assert!(
            err.contains("it is 1048577 bytes, and a policy may be at most 1 MiB (1048576 bytes)"),
            "{err}"
        );
        // Exactly the limit is fine (a comment is a valid policy).
        std::fs::write(&big, vec![b'#'; 1024 * 1024]).unwrap();
        assert!(load_file(&big).is_ok());
        // A file that reports no size is still read, up to the limit.
        let err = load_file(Path::new("/proc/self/status")).unwrap_err();
        assert!(matches!(err, PolicyError::Invalid(_)), "{err}");
    }
}
