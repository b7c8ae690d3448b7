//! Limits on what a policy may ask of portguard, so that no policy file —
//! a typo, a generated file, a file from someone else being `check`ed —
//! can make loading or checking it take unbounded time or memory.
//!
//! Each limit was set by measuring what grows without it (release build):
//!
//! - The file: read at most [`MAX_POLICY_BYTES`]; only regular files.
//! - Regex *text*: parsing and translating a regex costs up to a few
//!   microseconds per byte, more for classes, so all regexes of a policy
//!   together are at most [`MAX_REGEX_TEXT`] bytes long.
//! - Unicode classes (`\w`, `\d`, `\s`, `\p{..}` and their negations) cost
//!   up to ~20 µs each to translate: at most [`MAX_UNICODE_CLASSES`].
//! - Case-insensitive classes are case-folded one code point at a time
//!   (`(?i)\p{Any}` alone takes ~30 ms): at most [`MAX_CASE_FOLD`] units of
//!   folding work per policy (a code point, or 40 per range).
//! - Compiled regexes (the automata the regex engine builds) share one
//!   budget of [`REGEX_BUDGET`] bytes, measured by the engine itself.
//! - Rules: at most [`MAX_RULES`]; every holder is checked against every
//!   rule, and a trace line is kept for each check.
//! - Test cases: at most [`MAX_TEST_CHECKS`] rule checks (owners × rules,
//!   summed over the cases) per policy.

use regex_syntax::ast::{self, Ast, ClassSetItem, Flag};
use regex_syntax::hir::{Class, HirKind};

/// Largest policy file read, in bytes (1 MiB).
pub const MAX_POLICY_BYTES: u64 = 1 << 20;

/// Most rules in one policy.
pub const MAX_RULES: usize = 1000;

/// Most rule checks the test cases of one policy may need: for each case,
/// its owners (at least one) times the policy's rules, summed over the
/// cases. 1,000,000 checks took 1.7–2.9 s and up to 400 MB in one case.
pub const MAX_TEST_CHECKS: usize = 200_000;

/// Most bytes of regex text in one policy, all regexes together (32 KiB).
pub const MAX_REGEX_TEXT: usize = 32 << 10;

/// Most Unicode classes in the regexes of one policy (measured: 8-20 µs
/// each, so 0.1 s at most; a regex like the built-in policy's has 7).
pub const MAX_UNICODE_CLASSES: usize = 4000;

/// Most case-folding work for the case-insensitive classes of one policy,
/// in code points walked plus [`FOLD_PER_RANGE`] per range (about 25 ns
/// each: 0.1 s in all).
pub const MAX_CASE_FOLD: u64 = 4_000_000;

/// Bytes all compiled regexes of a policy may take together (16 MiB).
pub const REGEX_BUDGET: usize = 16 << 20;

/// The most any one of a regex's automata may take: the `regex` crate's
/// default size limit.
pub const MAX_REGEX_NFA: usize = 10 << 20;

/// Lazy-DFA cache capacity shared by the regexes of a policy (each gets
/// its share, at most the regex crate's default of 2 MiB), per thread.
pub const REGEX_CACHE_TOTAL: usize = 16 << 20;

/// The default lazy-DFA cache capacity of one regex.
const MAX_REGEX_CACHE: usize = 2 << 20;

/// The lazy-DFA cache capacity of each regex of a policy with `patterns`
/// regexes. A cache too small for a regex's lazy DFA makes the engine use
/// its other (slower, smaller) engines for that regex.
pub fn regex_cache_capacity(patterns: usize) -> usize {
    (REGEX_CACHE_TOTAL / patterns.max(1)).min(MAX_REGEX_CACHE)
}

/// Human-readable byte sizes for messages: `16 MiB`, `4 KiB`, `900 bytes`.
pub fn bytes(n: u64) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// A byte size to one decimal, for amounts that are not round: `3.2 MiB`.
pub fn approx_bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / f64::from(1 << 10))
    } else {
        format!("{n} bytes")
    }
}

/// What translating one regex costs, in the units the limits count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyntaxCost {
    /// Unicode classes.
    pub unicode_classes: usize,
    /// Case-folding work (code points, plus a fixed cost per range).
    pub case_fold: u64,
}

/// Which load-time limit a regex exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// [`MAX_UNICODE_CLASSES`].
    UnicodeClasses,
    /// [`MAX_CASE_FOLD`].
    CaseFold,
}

/// The code points regex-syntax's simple case folding table covers: a
/// class range that overlaps them is folded one code point at a time over
/// its whole length.
const FOLD_FIRST: u32 = 0x41;
const FOLD_LAST: u32 = 0x1_E943;

/// Each range folded costs about as much as 40 code points (measured:
/// `(?i)\p{Ll}`, 650 short ranges, takes 0.6 ms; `(?i)\p{Any}`, one range
/// of 1.1 million code points, 27 ms).
const FOLD_PER_RANGE: u64 = 40;

/// The work of case folding these ranges: the code points it walks, plus
/// a fixed cost per range.
fn fold_work(ranges: impl Iterator<Item = (u32, u32)>) -> u64 {
    ranges
        .filter(|&(lo, hi)| lo <= FOLD_LAST && hi >= FOLD_FIRST)
        .map(|(lo, hi)| u64::from(hi.saturating_sub(lo)) + 1 + FOLD_PER_RANGE)
        .sum()
}

/// Code points folding the class `ast` (a single class item) walks, found
/// by translating it on its own, case-sensitively (cheap: it is one item).
fn class_fold_work(pattern: &str, item: Ast) -> u64 {
    let Ok(hir) = regex_syntax::hir::translate::Translator::new().translate(pattern, &item) else {
        // An invalid class: the real translation reports it.
        return 0;
    };
    match hir.kind() {
        HirKind::Class(Class::Unicode(c)) => {
            fold_work(c.iter().map(|r| (u32::from(r.start()), u32::from(r.end()))))
        }
        _ => 0,
    }
}

/// Estimates what translating `ast` (parsed from `pattern`) costs, before
/// translating it, and stops as soon as it is more than `allowed`.
pub fn syntax_cost(pattern: &str, ast: &Ast, allowed: SyntaxCost) -> Result<SyntaxCost, Exceeded> {
    ast::visit(
        ast,
        CostVisitor {
            pattern,
            allowed,
            cost: SyntaxCost::default(),
            case_insensitive: vec![false],
            bracket_depth: 0,
        },
    )
}

struct CostVisitor<'p> {
    pattern: &'p str,
    allowed: SyntaxCost,
    cost: SyntaxCost,
    /// Whether `i` is on, per open group (flags last to the group's end).
    case_insensitive: Vec<bool>,
    /// Nesting of bracketed classes: each level folds its items again.
    bracket_depth: u64,
}

impl CostVisitor<'_> {
    fn ci(&self) -> bool {
        self.case_insensitive.last().copied().unwrap_or(false)
    }

    fn set_flags(&mut self, flags: &ast::Flags) {
        if let Some(on) = flags.flag_state(Flag::CaseInsensitive) {
            if let Some(top) = self.case_insensitive.last_mut() {
                *top = on;
            }
        }
    }

    fn unicode_class(&mut self) -> Result<(), Exceeded> {
        self.cost.unicode_classes += 1;
        if self.cost.unicode_classes > self.allowed.unicode_classes {
            return Err(Exceeded::UnicodeClasses);
        }
        Ok(())
    }

    fn fold(&mut self, work: u64) -> Result<(), Exceeded> {
        self.cost.case_fold = self
            .cost
            .case_fold
            .saturating_add(work.saturating_mul(self.bracket_depth.max(1)));
        if self.cost.case_fold > self.allowed.case_fold {
            return Err(Exceeded::CaseFold);
        }
        Ok(())
    }
}

impl ast::Visitor for CostVisitor<'_> {
    type Output = SyntaxCost;
    type Err = Exceeded;

    fn finish(self) -> Result<SyntaxCost, Exceeded> {
        Ok(self.cost)
    }

    fn visit_pre(&mut self, ast: &Ast) -> Result<(), Exceeded> {
        match ast {
            Ast::Group(g) => {
                let ci = self.ci();
                self.case_insensitive.push(ci);
                if let ast::GroupKind::NonCapturing(flags) = &g.kind {
                    self.set_flags(flags);
                }
            }
            Ast::Flags(f) => self.set_flags(&f.flags),
            Ast::ClassPerl(_) => self.unicode_class()?,
            Ast::ClassUnicode(c) => {
                self.unicode_class()?;
                if self.ci() {
                    // Folded before it is negated.
                    let mut plain = (**c).clone();
                    plain.negated = false;
                    self.fold(class_fold_work(self.pattern, Ast::class_unicode(plain)))?;
                }
            }
            Ast::ClassBracketed(_) => self.bracket_depth = 1,
            _ => {}
        }
        Ok(())
    }

    fn visit_post(&mut self, ast: &Ast) -> Result<(), Exceeded> {
        match ast {
            Ast::Group(_) => {
                self.case_insensitive.pop();
            }
            Ast::ClassBracketed(_) => self.bracket_depth = 0,
            _ => {}
        }
        Ok(())
    }

    fn visit_class_set_item_pre(&mut self, item: &ClassSetItem) -> Result<(), Exceeded> {
        let ci = self.ci();
        match item {
            ClassSetItem::Bracketed(_) => self.bracket_depth += 1,
            ClassSetItem::Unicode(c) => {
                self.unicode_class()?;
                if ci {
                    self.fold(class_fold_work(self.pattern, Ast::class_unicode(c.clone())))?;
                }
            }
            ClassSetItem::Perl(c) => {
                self.unicode_class()?;
                if ci {
                    self.fold(class_fold_work(self.pattern, Ast::class_perl(c.clone())))?;
                }
            }
            ClassSetItem::Range(r) if ci => {
                self.fold(fold_work(std::iter::once((
                    u32::from(r.start.c),
                    u32::from(r.end.c),
                ))))?;
            }
            ClassSetItem::Literal(_) if ci => self.fold(1 + FOLD_PER_RANGE)?,
            ClassSetItem::Ascii(_) if ci => self.fold(128 + FOLD_PER_RANGE)?,
            _ => {}
        }
        Ok(())
    }

    fn visit_class_set_item_post(&mut self, item: &ClassSetItem) -> Result<(), Exceeded> {
        if let ClassSetItem::Bracketed(_) = item {
            self.bracket_depth = self.bracket_depth.saturating_sub(1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(pattern: &str) -> SyntaxCost {
        let ast = ast::parse::Parser::new().parse(pattern).unwrap();
        syntax_cost(
            pattern,
            &ast,
            SyntaxCost {
                unicode_classes: usize::MAX,
                case_fold: u64::MAX,
            },
        )
        .unwrap()
    }

    #[test]
    fn unicode_classes_are_counted() {
        assert_eq!(cost("abc[a-z]+").unicode_classes, 0);
        assert_eq!(cost(r"\w\d\s\pL").unicode_classes, 4);
        assert_eq!(cost(r"[\w\pN-]x\W").unicode_classes, 3);
        assert_eq!(cost(r"\w{1000}").unicode_classes, 1);
    }

    #[test]
    fn only_case_insensitive_classes_are_folded() {
        assert_eq!(cost(r"\p{Any}[\x00-\x{10FFFF}]").case_fold, 0);
        // The whole range is walked once it overlaps the folding table.
        let all = 0x11_0000 + FOLD_PER_RANGE;
        assert_eq!(cost(r"(?i)[\x00-\x{10FFFF}]").case_fold, all);
        assert_eq!(cost(r"(?i)\p{Any}").case_fold, all);
        assert_eq!(cost(r"(?i)\P{Any}").case_fold, all);
        // Perl classes outside brackets are never folded; inside, they are.
        assert_eq!(cost(r"(?i)\w").case_fold, 0);
        let w = cost(r"(?i)[\w]").case_fold;
        assert!((10_000..200_000).contains(&w), "{w}");
        // Flags last to the end of their group, and can be turned off.
        assert_eq!(cost(r"(?i:a)\pL").case_fold, 0);
        assert_eq!(cost(r"(?i)(?-i)\pL").case_fold, 0);
        assert_eq!(cost(r"x(?i)y|\pL").case_fold, cost(r"(?i)\pL").case_fold);
        assert!(
            cost(r"(?i)\pL").case_fold > 10_000,
            "{}",
            cost(r"(?i)\pL").case_fold
        );
        assert_eq!(cost(r"(?i)[a-z]").case_fold, 26 + FOLD_PER_RANGE);
        // Many short ranges cost more than their few code points.
        assert!(cost(r"(?i)\p{Ll}").case_fold > 20_000);
        assert_eq!(cost(r"(?i)[\x{20000}-\x{2FFFF}]").case_fold, 0);
    }

    #[test]
    fn the_estimate_stops_at_the_first_limit() {
        let ast = ast::parse::Parser::new().parse(r"\w\w\w").unwrap();
        let allowed = SyntaxCost {
            unicode_classes: 2,
            case_fold: 0,
        };
        assert_eq!(
            syntax_cost(r"\w\w\w", &ast, allowed),
            Err(Exceeded::UnicodeClasses)
        );
        let ast = ast::parse::Parser::new().parse(r"(?i)[a-z]").unwrap();
        assert_eq!(
            syntax_cost(r"(?i)[a-z]", &ast, allowed),
            Err(Exceeded::CaseFold)
        );
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(1 << 20), "1 MiB");
        assert_eq!(bytes(32 << 10), "32 KiB");
        assert_eq!(bytes(1000), "1000 bytes");
        assert_eq!(approx_bytes(3_330_848), "3.2 MiB");
        assert_eq!(approx_bytes(2048 + 512), "2.5 KiB");
        assert_eq!(approx_bytes(7), "7 bytes");
        assert_eq!(regex_cache_capacity(1), 2 << 20);
        assert_eq!(regex_cache_capacity(1024), 16 << 10);
    }

    mod proptests {
        use super::super::*;
        use proptest::prelude::*;

        /// Pieces of regex syntax the estimate follows: flags, groups,
        /// classes, set operations, repetitions.
        const PIECES: [&str; 24] = [
            "a",
            "\\w",
            "\\W",
            "\\pL",
            "\\P{Ll}",
            "\\p{Any}",
            "[",
            "]",
            "[^",
            "--",
            "&&",
            "(",
            ")",
            "(?i)",
            "(?-i)",
            "(?i:",
            "(?:",
            "|",
            "*",
            "{2}",
            "[:alpha:]",
            "x-z",
            "\\d",
            ".",
        ];

        proptest! {
            /// Any pattern the parser accepts gets an estimate without a
            /// panic, and the estimate stops at whatever is allowed.
            #[test]
            fn the_estimate_never_panics_and_respects_what_is_allowed(
                pieces in proptest::collection::vec(proptest::sample::select(PIECES.to_vec()), 0..30),
                classes in 0usize..8,
                fold in 0u64..200_000,
            ) {
                let pattern: String = pieces.concat();
                if let Ok(ast) = ast::parse::Parser::new().parse(&pattern) {
                    let allowed = SyntaxCost { unicode_classes: classes, case_fold: fold };
                    if let Ok(cost) = syntax_cost(&pattern, &ast, allowed) {
                        prop_assert!(cost.unicode_classes <= classes);
                        prop_assert!(cost.case_fold <= fold);
                    }
                }
            }
        }
    }
}
