//! `match` criteria, `ports`, regexes (with the policy-wide limits of
//! [`limits`]) and users.

use super::Checker;
use crate::diagnostic::Diagnostic;
use crate::policy::limits::{self, Exceeded, SyntaxCost};
use crate::policy::raw::RawMatch;
use crate::policy::{ClientsCriterion, Criteria, DirTemplate, Pattern, UserSpec};
use crate::ports::{port_from_int, PortRange};
use std::ops::Range;
use toml::Spanned;

impl Checker<'_> {
    pub(super) fn ports(
        &mut self,
        p: &Spanned<Vec<Spanned<toml::Value>>>,
    ) -> Option<Option<Vec<PortRange>>> {
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

    pub(super) fn criteria(&mut self, m: Option<&RawMatch>) -> Option<Criteria> {
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
    pub(super) fn regex(&mut self, r: &Spanned<String>) -> Option<Pattern> {
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
            Err(e) => return self.invalid_regex(r, &e.to_string(), e.span()),
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
            Err(e) => return self.invalid_regex(r, &e.to_string(), e.span()),
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
    /// its last line is kept. The marker goes under the part of the
    /// pattern the parser names (`at`), where that can be placed.
    pub(super) fn invalid_regex(
        &mut self,
        r: &Spanned<String>,
        text: &str,
        at: &regex_syntax::ast::Span,
    ) -> Option<Pattern> {
        let last = text.lines().rev().find(|l| !l.trim().is_empty());
        let what = last.unwrap_or(text).trim().trim_start_matches("error: ");
        let span = self.span_in_pattern(r, at.start.offset..at.end.offset);
        self.diags.push(
            Diagnostic::error(format!("invalid regex: {what}"), Some(span))
                .with_label(what)
                .with_help("the syntax is Rust's `regex` crate (no look-around or backreferences)"),
        );
        None
    }

    /// Where bytes `inner` of the pattern `r` are in the file. Exact when
    /// the TOML string holds the pattern as written — a literal string
    /// (`'...'`, `'''...'''`) or a basic string without escapes — and
    /// otherwise (escapes move every offset) the whole string. At least
    /// one character wide: a parser's empty span points at a place.
    pub(super) fn span_in_pattern(&self, r: &Spanned<String>, inner: Range<usize>) -> Range<usize> {
        let whole = r.span();
        let pattern = r.get_ref();
        let written = self.text.get(whole.clone()).unwrap_or("");
        let Some(delim) = ["'''", "\"\"\"", "'", "\""].into_iter().find(|d| {
            written.len() >= 2 * d.len() && written.starts_with(d) && written.ends_with(d)
        }) else {
            return whole;
        };
        let body = &written[delim.len()..written.len() - delim.len()];
        // A multi-line string drops a line break right after its opening.
        let skip = match delim.len() {
            3 if body.starts_with("\r\n") => 2,
            3 if body.starts_with('\n') => 1,
            _ => 0,
        };
        if &body[skip..] != pattern.as_str() || inner.start > pattern.len() {
            return whole;
        }
        let base = whole.start + delim.len() + skip;
        let width = pattern
            .get(inner.start..)
            .and_then(|rest| rest.chars().next())
            .map_or(1, char::len_utf8);
        let end = inner.end.min(pattern.len()).max(inner.start + width);
        base + inner.start..base + end
    }

    pub(super) fn regex_limit(
        &mut self,
        r: &Spanned<String>,
        message: String,
        help: String,
    ) -> Option<Pattern> {
        self.regex_limit_hit = true;
        self.error_help(message, r.span(), &help);
        None
    }

    pub(super) fn users(&mut self, v: &Spanned<toml::Value>) -> Option<Vec<UserSpec>> {
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
                    cx.error_help(
                        "`user` is a user name, a uid, \"$self\", or a list of them",
                        v.span(),
                        "for example: match.user = \"$self\", match.user = 1000 or match.user = [\"root\", 1000]",
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
