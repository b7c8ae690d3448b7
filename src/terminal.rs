//! What may reach a terminal. argv, paths and names come from other
//! processes and from policy authors; printed raw, they could break lines,
//! drive the terminal (ESC sequences, OSC titles) or disguise themselves
//! (bidi overrides, zero-width characters). Human output passes every such
//! string through [`printable`]; JSON stays exact.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal raw: control characters (C0, DEL,
/// C1), line and paragraph separators, bidi embeddings, overrides and
/// isolates, zero-width characters and the byte order mark.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'              // Arabic letter mark
            | '\u{200B}'..='\u{200F}' // zero-width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202E}' // separators, bidi embeddings and overrides
            | '\u{2060}'..='\u{2069}' // word joiner, invisible operators, bidi isolates
            | '\u{FEFF}'              // byte order mark / zero-width no-break space
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotation
        )
}

/// `s` with every character [`is_unsafe`] shown as an escape (`\n`,
/// `\u{1b}`, `\u{202e}`), so it prints as one inert line.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if is_unsafe(c) {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped() {
        assert_eq!(printable("a\nb\u{1b}[2J\u{7}"), r"a\nb\u{1b}[2J\u{7}");
        assert_eq!(printable("\u{9b}31m"), r"\u{9b}31m");
        assert_eq!(printable("plain text: ünïcode ✓"), "plain text: ünïcode ✓");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn disguises_are_escaped() {
        // An argv that would read "server.py" backwards, and friends.
        for (raw, shown) in [
            ("evil\u{202E}yp.revres", r"evil\u{202e}yp.revres"),
            ("a\u{2066}b\u{2069}", r"a\u{2066}b\u{2069}"),
            ("line\u{2028}break", r"line\u{2028}break"),
            ("zero\u{200B}width", r"zero\u{200b}width"),
            ("\u{FEFF}bom", r"\u{feff}bom"),
        ] {
            assert_eq!(printable(raw), shown);
        }
    }
}
