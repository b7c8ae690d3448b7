//! The structural check: a parsed file walked against the format's shape
//! ([`schema`]), reporting every unknown key, missing key and value of the
//! wrong type — all of them, with did-you-mean and type hints — and taking
//! out what is wrong, so serde can read the rest and the loader can still
//! check the values that are well-formed.

use super::schema::{self, Field, Kind, Table};
use super::suggest;
use crate::diagnostic::Diagnostic;
use std::ops::Range;
use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

/// A table that holds a structural error, taken out of the document:
/// what is wrong in it is reported and removed, and what is left is
/// checked value by value ([`super::Checker::loose_rule`]).
#[derive(Debug)]
pub(super) struct Loose<'i> {
    /// Span of the table (its `[[rule]]` header, or the inline table).
    pub span: Range<usize>,
    /// What is left of it.
    pub table: DeTable<'i>,
}

/// What the structural check leaves for the semantic checks.
#[derive(Debug, Default)]
pub(super) struct Outline<'i> {
    /// Every rule's name, in file order, broken rules' included, with
    /// the span of the rule (its header).
    pub rule_names: Vec<(Spanned<String>, Range<usize>)>,
    /// Whether `rule_names` has every rule: some rules may lack one, or
    /// `rule` itself may be broken, and then a test case naming a rule
    /// cannot be told wrong.
    pub all_rules_named: bool,
    /// Rules with a structural error.
    pub loose_rules: Vec<Loose<'i>>,
    /// Test cases with a structural error.
    pub loose_tests: Vec<Loose<'i>>,
    /// `[defaults]` had a structural error (what is left of it is used).
    pub loose_defaults: bool,
}

/// How a table came through the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing was wrong.
    Clean,
    /// Something was wrong and has been removed.
    Stripped,
    /// A required key is missing: the table cannot be read.
    Unusable,
}

/// Checks `doc` (parsed from `text`) against the policy format,
/// reporting every structural error into `diags`. Rules and test cases
/// with an error are moved out of `doc` into the outline; anything else
/// that is wrong is removed, so what is left of `doc` reads as
/// [`crate::policy::raw::RawPolicy`].
pub(super) fn check<'i>(
    doc: &mut DeTable<'i>,
    text: &str,
    diags: &mut Vec<Diagnostic>,
) -> Outline<'i> {
    let mut walker = Walker { diags, text };
    let mut outline = Outline {
        all_rules_named: matches!(
            doc.get("rule").map(Spanned::get_ref),
            None | Some(DeValue::Array(_))
        ),
        ..Outline::default()
    };
    walker.table(doc, 0..0, &schema::POLICY, &["defaults", "rule", "test"]);
    if let Some(defaults) = doc.get_mut("defaults") {
        let span = defaults.span();
        if let DeValue::Table(t) = defaults.get_mut() {
            outline.loose_defaults = walker.table(t, span, &schema::DEFAULTS, &[]) != State::Clean;
        }
    }
    let (names, all_named) = (&mut outline.rule_names, &mut outline.all_rules_named);
    outline.loose_rules = walker.split(doc, "rule", &schema::RULE, |t, header| {
        match t.get("name").map(|n| (n.get_ref(), n.span())) {
            Some((DeValue::String(name), span)) => {
                names.push((Spanned::new(span, name.to_string()), header));
            }
            _ => *all_named = false,
        }
    });
    outline.loose_tests = walker.split(doc, "test", &schema::TEST, |_, _| {});
    outline
}

struct Walker<'d, 't> {
    diags: &'d mut Vec<Diagnostic>,
    text: &'t str,
}

/// The name of a value's type, with its article.
fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(a) if !a.is_empty() && a.iter().all(|v| v.get_ref().is_table()) => {
            "an array of tables"
        }
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The value of a TOML integer: `Err` when it does not fit in 64 bits.
fn integer(v: &DeValue<'_>) -> Option<Result<i64, ()>> {
    match v {
        DeValue::Integer(i) => Some(i64::from_str_radix(i.as_str(), i.radix()).map_err(|_| ())),
        _ => None,
    }
}

/// How deep [`Walker::integers`] looks into a value; TOML's parser
/// allows less nesting than this.
const MAX_DEPTH: usize = 128;

/// What to do with a value, from its field's kind and its type.
enum Step {
    Fine,
    Int(i64, i64),
    Table(&'static Table),
    Tables(&'static Table),
    Items,
    ValuesInside,
    Wrong,
}

impl Walker<'_, '_> {
    fn error(&mut self, message: String, span: Range<usize>, label: String, help: String) {
        self.diags.push(
            Diagnostic::error(message, Some(span))
                .with_label(label)
                .with_help(help),
        );
    }

    /// The source text of `span`.
    fn source(&self, span: &Range<usize>) -> &str {
        self.text.get(span.clone()).unwrap_or("")
    }

    /// Moves every table of the array `key` of `doc` that has a structural
    /// error out of it; `each` sees every table (clean or not) first, in
    /// file order.
    fn split<'i>(
        &mut self,
        doc: &mut DeTable<'i>,
        key: &str,
        schema: &'static Table,
        mut each: impl FnMut(&DeTable<'i>, Range<usize>),
    ) -> Vec<Loose<'i>> {
        let Some(value) = doc.get_mut(key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_mut() else {
            return Vec::new();
        };
        let mut loose = Vec::new();
        let mut kept = DeArray::new();
        for item in std::mem::replace(items, DeArray::new()) {
            let span = item.span();
            // Elements that are not tables were reported with the top level.
            if let DeValue::Table(mut table) = item.into_inner() {
                each(&table, span.clone());
                match self.table(&mut table, span.clone(), schema, &[]) {
                    State::Clean => kept.push(Spanned::new(span, DeValue::Table(table))),
                    _ => loose.push(Loose { span, table }),
                }
            }
        }
        *items = kept;
        loose
    }

    /// Checks `t` against `schema`, reporting and removing what is wrong.
    /// The tables of the keys in `later` are only checked for their type:
    /// the caller walks them.
    fn table(
        &mut self,
        t: &mut DeTable<'_>,
        span: Range<usize>,
        schema: &'static Table,
        later: &[&str],
    ) -> State {
        let mut state = State::Clean;
        let mut remove: Vec<String> = Vec::new();
        let mut suggested = Vec::new();
        for (key, value) in t.iter_mut() {
            let name: &str = key.get_ref();
            let Some(field) = schema.field(name) else {
                suggested.extend(self.unknown_key(name, key.span(), schema));
                remove.push(name.to_string());
                state = State::Stripped;
                continue;
            };
            match self.value(field, value, !later.contains(&name)) {
                State::Clean => {}
                State::Stripped => state = State::Stripped,
                State::Unusable => {
                    remove.push(name.to_string());
                    state = State::Stripped;
                }
            }
        }
        for key in &remove {
            t.remove(key.as_str());
        }
        for field in schema.fields.iter().filter(|f| f.required) {
            if !t.contains_key(field.key) {
                // A required key of the wrong type is reported as such,
                // and one misspelt as "did you mean" it.
                if !remove.iter().any(|k| k == field.key) && !suggested.contains(&field.key) {
                    self.missing_key(t, span.clone(), schema, field);
                }
                state = State::Unusable;
            }
        }
        state
    }

    /// Checks one value against its field. `Unusable`: it is wrong and
    /// must be removed; `Stripped`: something inside it was removed.
    fn value(
        &mut self,
        field: &'static Field,
        value: &mut Spanned<DeValue<'_>>,
        walk_inside: bool,
    ) -> State {
        let step = match (field.kind, value.get_ref()) {
            (Kind::Str | Kind::Duration, DeValue::String(_))
            | (Kind::Bool, DeValue::Boolean(_)) => Step::Fine,
            (Kind::Int, DeValue::Integer(_)) => Step::Int(i64::MIN, i64::MAX),
            (Kind::U32, DeValue::Integer(_)) => Step::Int(0, i64::from(u32::MAX)),
            (Kind::Table(t), DeValue::Table(_)) => Step::Table(t),
            (Kind::Tables(t), DeValue::Array(_)) => Step::Tables(t),
            (Kind::Strs | Kind::U32s, DeValue::Array(_)) => Step::Items,
            (Kind::List, DeValue::Array(_)) | (Kind::Any, _) => Step::ValuesInside,
            _ => Step::Wrong,
        };
        let span = value.span();
        let ok = |fine: bool| if fine { State::Clean } else { State::Unusable };
        match step {
            Step::Fine => State::Clean,
            Step::Int(min, max) => ok(self.int(field, value, min, max)),
            Step::Items => ok(self.items(field, value)),
            Step::ValuesInside => ok(self.integers(field, value, 0)),
            Step::Wrong => {
                self.wrong_type(field, value);
                State::Unusable
            }
            Step::Table(_) | Step::Tables(_) if !walk_inside => {
                if self.non_tables(field, value) {
                    State::Clean
                } else {
                    State::Stripped
                }
            }
            Step::Table(inner) => match value.get_mut() {
                DeValue::Table(t) => self.table(t, span, inner, &[]),
                _ => State::Unusable,
            },
            Step::Tables(inner) => {
                let clean = self.non_tables(field, value);
                let DeValue::Array(items) = value.get_mut() else {
                    return State::Unusable;
                };
                let mut kept = DeArray::new();
                let mut state = if clean { State::Clean } else { State::Stripped };
                for item in std::mem::replace(items, DeArray::new()) {
                    let span = item.span();
                    if let DeValue::Table(mut t) = item.into_inner() {
                        match self.table(&mut t, span.clone(), inner, &[]) {
                            State::Clean => {}
                            State::Stripped => state = State::Stripped,
                            State::Unusable => {
                                state = State::Stripped;
                                continue;
                            }
                        }
                        kept.push(Spanned::new(span, DeValue::Table(t)));
                    }
                }
                *items = kept;
                state
            }
        }
    }

    /// Reports the elements of an array of tables that are not tables;
    /// `true` when there are none.
    fn non_tables(&mut self, field: &'static Field, value: &Spanned<DeValue<'_>>) -> bool {
        let DeValue::Array(items) = value.get_ref() else {
            return true;
        };
        let mut clean = true;
        for item in items.iter().filter(|i| !i.get_ref().is_table()) {
            clean = false;
            let help = self.type_help(field, value);
            self.error(
                format!(
                    "wrong type for an element of `{}`: expected a table, found {}",
                    field.key,
                    type_name(item.get_ref())
                ),
                item.span(),
                "expected a table".into(),
                help,
            );
        }
        clean
    }

    /// An integer field: in range, or reported.
    fn int(
        &mut self,
        field: &'static Field,
        value: &Spanned<DeValue<'_>>,
        min: i64,
        max: i64,
    ) -> bool {
        if matches!(integer(value.get_ref()), Some(Ok(n)) if (min..=max).contains(&n)) {
            return true;
        }
        let written = self.source(&value.span()).to_string();
        self.error(
            format!("`{}` is out of range: {written}", field.key),
            value.span(),
            "out of range".into(),
            format!("`{}` is {}", field.key, field.kind.expected()),
        );
        false
    }

    /// The items of an array of strings or of numbers.
    fn items(&mut self, field: &'static Field, value: &Spanned<DeValue<'_>>) -> bool {
        let DeValue::Array(items) = value.get_ref() else {
            return false;
        };
        fn is_u32(v: &DeValue<'_>) -> bool {
            matches!(integer(v), Some(Ok(n)) if (0..=i64::from(u32::MAX)).contains(&n))
        }
        let (fits, what): (fn(&DeValue<'_>) -> bool, &str) = match field.kind {
            Kind::Strs => (|v| v.is_str(), "a string"),
            _ => (is_u32, "a number from 0 to 4294967295"),
        };
        let mut all = true;
        for item in items.iter().filter(|i| !fits(i.get_ref())) {
            all = false;
            let found = match item.get_ref() {
                DeValue::Integer(_) => format!("`{}`", self.source(&item.span())),
                other => type_name(other).to_string(),
            };
            self.error(
                format!(
                    "wrong type for an element of `{}`: expected {what}, found {found}",
                    field.key
                ),
                item.span(),
                format!("expected {what}"),
                format!("for example: {}", field.example),
            );
        }
        all
    }

    /// Integers in values the loader checks itself must still fit in 64
    /// bits (serde reads them as such): checked down to [`MAX_DEPTH`].
    fn integers(
        &mut self,
        field: &'static Field,
        value: &Spanned<DeValue<'_>>,
        depth: usize,
    ) -> bool {
        if depth > MAX_DEPTH {
            return true;
        }
        match value.get_ref() {
            DeValue::Integer(_) if integer(value.get_ref()) == Some(Err(())) => {
                let written = self.source(&value.span()).to_string();
                self.error(
                    format!("integer {written} in `{}` is out of range", field.key),
                    value.span(),
                    "out of range".into(),
                    "integers are 64-bit: from -9223372036854775808 to 9223372036854775807".into(),
                );
                false
            }
            DeValue::Array(items) => {
                let mut ok = true;
                for item in items.iter() {
                    ok &= self.integers(field, item, depth + 1);
                }
                ok
            }
            DeValue::Table(t) => {
                let mut ok = true;
                for (_, item) in t.iter() {
                    ok &= self.integers(field, item, depth + 1);
                }
                ok
            }
            _ => true,
        }
    }

    /// Reports an unknown key; returns the key it suggests instead.
    fn unknown_key(
        &mut self,
        key: &str,
        span: Range<usize>,
        schema: &'static Table,
    ) -> Option<&'static str> {
        let close = suggest::closest(key, schema.keys());
        let help = if let Some(close) = close {
            format!("did you mean `{close}`?")
        } else if let Some((_, help)) = schema
            .elsewhere
            .iter()
            .find(|(other, _)| other.field(key).is_some())
        {
            help.replace("{key}", key)
        } else {
            let keys: Vec<&str> = schema.keys().collect();
            format!("the keys of {} are {}", schema.place, keys.join(", "))
        };
        self.error(
            format!("unknown key `{key}` in {}", schema.place),
            span,
            "unknown key".into(),
            help,
        );
        close
    }

    fn missing_key(
        &mut self,
        t: &DeTable<'_>,
        span: Range<usize>,
        schema: &'static Table,
        field: &Field,
    ) {
        let noun = schema.noun;
        let whose = match t.get("name").map(Spanned::get_ref) {
            Some(DeValue::String(name)) if schema.field("name").is_some() => {
                format!("{noun} `{name}`")
            }
            _ if noun.starts_with(['`', '[']) => noun.to_string(),
            _ => format!("this {noun}"),
        };
        let mut help = format!("add `{}`", field.example);
        if field.key == "action" {
            help.push_str("; the actions are \"terminate\", \"wait\", \"refuse\" and \"reuse\"");
        }
        self.error(
            format!("{whose} has no `{}`", field.key),
            span,
            format!("missing `{}`", field.key),
            help,
        );
    }

    fn wrong_type(&mut self, field: &'static Field, value: &Spanned<DeValue<'_>>) {
        let span = value.span();
        let written = self.source(&span);
        let (message, label, help) = match (field.kind, value.get_ref()) {
            // `[rule]` for `[[rule]]`.
            (Kind::Tables(inner), DeValue::Table(_)) if written.starts_with('[') => (
                format!(
                    "`{written}` makes `{}` a single table, but it is an array of tables",
                    field.key
                ),
                "single brackets".to_string(),
                format!(
                    "write `[{written}]`, with two brackets: each `[{written}]` header starts one {}",
                    inner.noun
                ),
            ),
            // `[[defaults]]` for `[defaults]`.
            (Kind::Table(_), DeValue::Array(_)) if written.starts_with("[[") => {
                let single = &written[1..written.len().saturating_sub(1).max(1)];
                (
                    format!(
                        "`{written}` makes `{}` an array of tables, but it is a single table",
                        field.key
                    ),
                    "double brackets".to_string(),
                    format!("write `{single}`, with single brackets, once"),
                )
            }
            _ => (
                format!(
                    "wrong type for `{}`: expected {}, found {}",
                    field.key,
                    field.kind.expected(),
                    type_name(value.get_ref())
                ),
                format!("expected {}", field.kind.expected()),
                self.type_help(field, value),
            ),
        };
        self.error(message, span, label, help);
    }

    /// How to write `field` right, using what was written where it helps.
    fn type_help(&self, field: &'static Field, value: &Spanned<DeValue<'_>>) -> String {
        let key = field.key;
        let example = field.example;
        let v = value.get_ref();
        match field.kind {
            Kind::Duration => match v {
                DeValue::Integer(_) => format!(
                    "durations are strings like \"10s\": {key} = \"{}s\"",
                    self.source(&value.span())
                ),
                _ => format!("durations are strings like \"10s\": {example}"),
            },
            Kind::Str => format!("`{key}` is a string, in quotes: {example}"),
            Kind::Bool => {
                let word = match v {
                    DeValue::String(s) => match s.to_ascii_lowercase().as_str() {
                        "yes" | "true" | "on" | "1" | "y" => Some(true),
                        "no" | "false" | "off" | "0" | "n" => Some(false),
                        _ => None,
                    },
                    DeValue::Integer(_) => integer(v).and_then(Result::ok).map(|n| n != 0),
                    _ => None,
                };
                match word {
                    Some(b) => format!("`{key}` is true or false, without quotes: {key} = {b}"),
                    None => format!("`{key}` is true or false: {example}"),
                }
            }
            Kind::Int | Kind::U32 => match v {
                DeValue::String(s) if s.trim().parse::<i64>().is_ok() => {
                    format!("`{key}` is a number, without quotes: {key} = {}", s.trim())
                }
                _ => format!("`{key}` is a number: {example}"),
            },
            Kind::List | Kind::U32s => match v {
                DeValue::Integer(_) => {
                    format!(
                        "`{key}` is a list: {key} = [{}]",
                        self.source(&value.span())
                    )
                }
                DeValue::String(s) if s.trim().parse::<u64>().is_ok() => {
                    format!("`{key}` is a list: {key} = [{}]", s.trim())
                }
                DeValue::String(s) if matches!(field.kind, Kind::List) => {
                    format!("`{key}` is a list: {key} = [{:?}]", s.as_ref())
                }
                _ => format!("`{key}` is a list: {example}"),
            },
            Kind::Strs => match v {
                DeValue::String(s) => {
                    let words: Vec<String> =
                        s.split_whitespace().map(|w| format!("{w:?}")).collect();
                    format!(
                        "`{key}` is a list of strings, one per argument: {key} = [{}]",
                        words.join(", ")
                    )
                }
                _ => format!("`{key}` is a list of strings, one per argument: {example}"),
            },
            Kind::Table(inner) if std::ptr::eq(inner, &schema::EXPECT) => match v {
                DeValue::String(s) => {
                    let which = if crate::policy::ActionKind::parse(s).is_some() {
                        "action"
                    } else if crate::model::Outcome::parse(s).is_some() {
                        "outcome"
                    } else {
                        "rule"
                    };
                    format!(
                        "`{key}` is a table: {key} = {{ {which} = {:?} }}",
                        s.as_ref()
                    )
                }
                _ => format!("`{key}` is a table: {example}"),
            },
            Kind::Table(_) => format!("`{key}` is a table: {example}"),
            Kind::Tables(inner) if example.starts_with("[[") => format!(
                "`{key}` is an array of tables: write `{example}`, with two brackets, for each {}",
                inner.noun
            ),
            Kind::Tables(inner) => format!(
                "`{key}` is an array of tables, one for each {}: {example}",
                inner.noun
            ),
            Kind::Any => format!("for example: {example}"),
        }
    }
}
