//! Problems found in a policy file, each tied to a place in the source.
//!
//! Loading collects every problem it can find instead of stopping at the
//! first, and renders each one as `file:line:column`, the offending line and a
//! marker under the span, the way rustc and cargo do — so a user fixing a
//! policy sees all of it in one go.

use std::fmt::Write as _;
use std::ops::Range;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The policy cannot be used.
    Error,
    /// The policy works but probably not as intended.
    Warning,
}

/// One problem, with the byte span it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, in one sentence.
    pub message: String,
    /// Byte range in the source; `None` for problems of the whole file.
    pub span: Option<Range<usize>>,
    /// How to fix it, when there is something useful to say.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(message: impl Into<String>, span: Option<Range<usize>>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span,
            help: None,
        }
    }

    /// A warning at `span`.
    pub fn warning(message: impl Into<String>, span: Option<Range<usize>>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            message: message.into(),
            span,
            help: None,
        }
    }

    /// Adds a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// 1-based line and column (in characters) of byte `offset` in `source`.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = source[line_start..offset].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Renders `diag` for a terminal:
///
/// ```text
/// error: unknown field `acton`
///  --> policy.toml:7:1
///   |
/// 7 | acton = "terminate"
///   | ^^^^^
///   = help: ...
/// ```
pub fn render(diag: &Diagnostic, file: &str, source: &str) -> String {
    let mut out = String::new();
    let label = match diag.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let _ = writeln!(out, "{label}: {}", diag.message);
    match &diag.span {
        Some(span) => {
            let (line, col) = line_col(source, span.start);
            let _ = writeln!(out, " --> {file}:{line}:{col}");
            let text = source.lines().nth(line - 1).unwrap_or("");
            let gutter = " ".repeat(line.to_string().len());
            // The marker covers the span, but stays on the first line.
            let line_start = source
                .lines()
                .take(line - 1)
                .map(|l| l.len() + 1)
                .sum::<usize>();
            let end_in_line = span.end.saturating_sub(line_start).min(text.len());
            let start_in_line = span.start.saturating_sub(line_start).min(text.len());
            let width = text
                .get(start_in_line..end_in_line.max(start_in_line))
                .map_or(1, |s| s.chars().count())
                .max(1);
            let _ = writeln!(out, "{gutter} |");
            let _ = writeln!(out, "{line} | {text}");
            let _ = writeln!(
                out,
                "{gutter} | {}{}",
                " ".repeat(col - 1),
                "^".repeat(width)
            );
            if let Some(help) = &diag.help {
                let _ = writeln!(out, "{gutter} = help: {help}");
            }
        }
        None => {
            let _ = writeln!(out, " --> {file}");
            if let Some(help) = &diag.help {
                let _ = writeln!(out, "  = help: {help}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let src = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        // 'é' is two bytes; the '=' after "bé " is the 4th character.
        assert_eq!(line_col(src, 10), (2, 4));
        assert_eq!(line_col(src, 10_000), (3, 1));
    }

    #[test]
    fn renders_location_line_and_marker() {
        let src = "name = \"x\"\n[[rule]]\nacton = \"terminate\"\n";
        let start = src.find("acton").unwrap();
        let diag = Diagnostic::error("unknown field `acton`", Some(start..start + 5))
            .with_help("did you mean `action`?");
        let text = render(&diag, "p.toml", src);
        assert_eq!(
            text,
            "error: unknown field `acton`\n --> p.toml:3:1\n  |\n3 | acton = \"terminate\"\n  | ^^^^^\n  = help: did you mean `action`?\n"
        );
    }
}
