//! Problems found in a policy file, each tied to a place in the source.
//!
//! Loading collects every problem it can find instead of stopping at the
//! first, and renders each one as `file:line:column`, the offending line and a
//! marker under the span, the way rustc and cargo do — so a user fixing a
//! policy sees all of it in one go.

use crate::terminal::printable;
use std::fmt::Write as _;
use std::ops::Range;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
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

/// Line starts of a source text, found once, so locating many spans (a
/// policy with thousands of errors, every rule's line) costs a binary search
/// each instead of a scan from the top.
#[derive(Debug, Clone)]
pub struct SourceIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> SourceIndex<'a> {
    /// Indexes `text`.
    pub fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceIndex { text, starts }
    }

    /// 1-based line and column (in characters) of byte `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(self.text, offset.min(self.text.len()));
        let line = self.starts.partition_point(|&start| start <= offset);
        let line_start = self.starts[line - 1];
        let col = self.text[line_start..offset].chars().count() + 1;
        (line, col)
    }

    /// Byte range of 1-based `line`, without its line break.
    fn line_range(&self, line: usize) -> (usize, usize) {
        let start = self
            .starts
            .get(line - 1)
            .copied()
            .unwrap_or(self.text.len());
        let end = self
            .starts
            .get(line)
            .map_or(self.text.len(), |next| next - 1);
        let end = if self.text[start..end].ends_with('\r') {
            end - 1
        } else {
            end
        };
        (start, end.max(start))
    }
}

/// 1-based line and column (in characters) of byte `offset` in `source`.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    SourceIndex::new(source).line_col(offset)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Characters of the offending line shown on each side of the marker: a
/// minified or generated policy can have a single line of megabytes.
const CONTEXT_CHARS: usize = 80;

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
    render_indexed(diag, file, &SourceIndex::new(source))
}

/// [`render`] with an index built once for many diagnostics of one source.
pub fn render_indexed(diag: &Diagnostic, file: &str, index: &SourceIndex<'_>) -> String {
    let mut out = String::new();
    let label = match diag.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    // Messages quote the policy (names, patterns, values): escaped like
    // the source line, so a policy being checked cannot drive the terminal.
    let _ = writeln!(out, "{label}: {}", printable(&diag.message));
    let file = printable(file);
    let help = diag.help.as_deref().map(printable);
    match &diag.span {
        Some(span) => {
            let (line, col) = index.line_col(span.start);
            let _ = writeln!(out, " --> {file}:{line}:{col}");
            let (line_start, line_end) = index.line_range(line);
            let text = &index.text[line_start..line_end];
            let gutter = " ".repeat(line.to_string().len());
            // The marker covers the span, but stays on the first line.
            let start_in_line = span.start.saturating_sub(line_start).min(text.len());
            let end_in_line = span.end.saturating_sub(line_start).min(text.len());
            let width = text
                .get(start_in_line..end_in_line.max(start_in_line))
                .map_or(1, |s| s.chars().count())
                .max(1);
            // Show a window of the line around the marker.
            let skip = (col - 1).saturating_sub(CONTEXT_CHARS);
            let shown: String = text
                .chars()
                .skip(skip)
                .take(col - 1 - skip + width.min(CONTEXT_CHARS) + CONTEXT_CHARS)
                .collect();
            let lead = if skip > 0 { "…" } else { "" };
            let tail = if skip + shown.chars().count() < text.chars().count() {
                "…"
            } else {
                ""
            };
            let _ = writeln!(out, "{gutter} |");
            let _ = writeln!(out, "{line} | {lead}{}{tail}", printable(&shown));
            let _ = writeln!(
                out,
                "{gutter} | {}{}",
                " ".repeat(col - 1 - skip + lead.chars().count()),
                "^".repeat(width.min(CONTEXT_CHARS))
            );
            if let Some(help) = &help {
                let _ = writeln!(out, "{gutter} = help: {help}");
            }
        }
        None => {
            let _ = writeln!(out, " --> {file}");
            if let Some(help) = &help {
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
