//! A TOML syntax error, the one problem that ends the check (the parser
//! cannot go on after it), as one diagnostic with help for the mistakes
//! policy authors make most: an unquoted string, a backslash in a regex
//! written in double quotes, a table given twice.

use crate::diagnostic::Diagnostic;
use std::ops::Range;

const GENERAL: &str = "the rest of the policy is checked once the file is valid TOML 1.0";

/// The diagnostic of the parser's error `message` at `span` of `text`.
pub(super) fn diagnostic(text: &str, message: &str, span: Option<Range<usize>>) -> Diagnostic {
    let help = span
        .as_ref()
        .and_then(|span| help(text, message, span.clone()))
        .unwrap_or_else(|| GENERAL.to_string());
    Diagnostic::error(message.trim(), span)
        .with_label("invalid TOML")
        .with_help(help)
}

/// The line of `text` around byte `at`: its start and its text.
fn line_at(text: &str, at: usize) -> (usize, &str) {
    let at = at.min(text.len());
    let start = text
        .get(..at)
        .and_then(|before| before.rfind('\n'))
        .map_or(0, |i| i + 1);
    let end = text
        .get(at..)
        .and_then(|after| after.find('\n'))
        .map_or(text.len(), |i| at + i);
    (
        start,
        text.get(start..end).unwrap_or("").trim_end_matches('\r'),
    )
}

fn help(text: &str, message: &str, span: Range<usize>) -> Option<String> {
    let (line_start, line) = line_at(text, span.start);
    let col = span.start.checked_sub(line_start)?;
    let (before, after) = (line.get(..col)?, line.get(col..)?);
    let key = before.trim_end().strip_suffix('=').map(str::trim);
    if message.contains("duplicate key") {
        let trimmed = line.trim_start();
        let name = text.get(span.clone())?;
        let header = trimmed.starts_with('[');
        return Some(if header && matches!(name, "rule" | "test" | "owners") {
            format!(
                "`[{name}]` declares one table and `[[{name}]]` one entry of an array of tables, and they cannot be mixed: write `[[{name}]]` each time"
            )
        } else if header {
            format!(
                "the table `{name}` is declared twice (dotted keys such as `{name}.x = 1` declare it too): keep its keys in one place"
            )
        } else {
            format!("`{name}` is set twice in the same table: remove one")
        });
    }
    if message.contains("missing escaped value") || message.contains("invalid escape") {
        // A regex like "\d+" in a basic string: `\d` is no TOML escape.
        let open = before.rfind('"')?;
        let close = after.find('"').map(|i| col + i)?;
        let inside = line.get(open + 1..close)?;
        let key = line.get(..open)?.trim_end().strip_suffix('=')?.trim();
        return Some(if inside.contains('\'') {
            "in a string in double quotes a backslash starts an escape: write \\\\ for one backslash".to_string()
        } else {
            format!(
                "in double quotes a backslash starts an escape; write regexes in single quotes, where it is a backslash: {key} = '{inside}'"
            )
        });
    }
    // `action = terminate`: a bare word where a value goes.
    let word: String = after
        .chars()
        .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'))
        .collect();
    if let Some(key) = key.filter(|k| !k.is_empty()) {
        if !word.is_empty() && word.parse::<f64>().is_err() {
            return Some(format!("strings go in quotes: {key} = \"{word}\""));
        }
        if word.is_empty() && after.trim().is_empty() {
            return Some(format!(
                "`{key}` has no value: give one (a string in quotes, a number, true or false, a [list])"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn help_for(text: &str) -> String {
        let err = toml::de::DeTable::parse(text).expect_err("invalid TOML");
        let d = diagnostic(text, err.message(), err.span());
        d.help.unwrap_or_default()
    }

    #[test]
    fn common_syntax_mistakes_get_specific_help() {
        assert_eq!(
            help_for("action = terminate\n"),
            "strings go in quotes: action = \"terminate\""
        );
        assert_eq!(
            help_for("signal = SIGTERM\n"),
            "strings go in quotes: signal = \"SIGTERM\""
        );
        assert_eq!(
            help_for("[[rule]]\nmatch.cmdline = \"^\\d+ x\"\n"),
            "in double quotes a backslash starts an escape; write regexes in single quotes, where it is a backslash: match.cmdline = '^\\d+ x'"
        );
        assert!(
            help_for("[rule]\nname = \"a\"\n[[rule]]\nname = \"b\"\n").contains("cannot be mixed")
        );
        assert_eq!(
            help_for("name = \"a\"\nname = \"b\"\n"),
            "`name` is set twice in the same table: remove one"
        );
        assert!(help_for("timeout =\n").contains("`timeout` has no value"));
        assert_eq!(help_for("ports = [80,\n"), GENERAL);
        assert_eq!(help_for("\u{0}"), GENERAL);
    }
}
