//! Policy regexes: syntax checked when the policy loads, compiled on first
//! use, all of one policy under one memory budget.

use super::limits;
use regex_automata::meta::Regex;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// A regex from a policy. Its syntax is checked when the policy loads, but
/// it is compiled on first use: a pre-start hook on a free port never needs
/// it, and compiling is most of the cost of loading a policy. `check` and
/// `test`, and `resolve` as soon as a port is held, compile every pattern
/// first ([`Policy::compile`]), so a regex over the size limit is still an
/// error with its place in the file before anything is decided.
///
/// The regexes of a policy share one budget ([`limits::REGEX_BUDGET`]):
/// each is compiled with what is left of it, and what the compiled regex
/// takes (as the regex engine measures it) is subtracted.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    span: std::ops::Range<usize>,
    compiled: Arc<OnceLock<Result<Regex, CompileError>>>,
    budget: Arc<RegexBudget>,
}

/// The compiled-regex budget shared by the patterns of one policy.
#[derive(Debug)]
pub struct RegexBudget {
    /// Bytes left. Held while a pattern compiles, so patterns compile one
    /// at a time and in a definite order.
    left: Mutex<usize>,
    /// How many patterns share it (sizes each one's lazy-DFA cache).
    patterns: AtomicUsize,
}

impl RegexBudget {
    /// A full budget.
    pub fn new() -> Arc<Self> {
        Arc::new(RegexBudget {
            left: Mutex::new(limits::REGEX_BUDGET),
            patterns: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        self.left.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a pattern did not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileError {
    /// The regex alone is over the size limit of one regex.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The regex did not fit in what the regexes before it left of the
    /// policy's budget.
    OverBudget {
        /// Bytes that were left.
        left: usize,
    },
    /// The regex engine refused it for another reason.
    Invalid(String),
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::TooLarge { limit } => write!(
                f,
                "regex is too large: it compiles to more than the {limit}-byte limit"
            ),
            CompileError::OverBudget { left } => write!(
                f,
                "the policy's regexes together compile to more than {}: this one needs more than the {} the regexes before it left",
                limits::bytes(limits::REGEX_BUDGET as u64),
                limits::approx_bytes(*left as u64)
            ),
            CompileError::Invalid(e) => write!(f, "invalid regex: {e}"),
        }
    }
}

impl Pattern {
    /// A pattern whose syntax has been checked, at `span` in the policy,
    /// compiled within `budget` (one per policy).
    pub fn new(source: String, span: std::ops::Range<usize>, budget: &Arc<RegexBudget>) -> Self {
        budget.patterns.fetch_add(1, Ordering::Relaxed);
        Pattern {
            source,
            span,
            compiled: Arc::new(OnceLock::new()),
            budget: Arc::clone(budget),
        }
    }

    /// Where it is in the policy file.
    pub fn span(&self) -> std::ops::Range<usize> {
        self.span.clone()
    }

    /// The regex as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Compiles the regex with at most `left` bytes, and takes what it
    /// uses from `left`. The forward and the reverse automaton the engine
    /// builds each get half, so a regex that does not fit costs at most
    /// `left` bytes of work before it fails.
    fn build(&self, left: &mut usize) -> Result<Regex, CompileError> {
        let per_automaton = (*left / 2).min(limits::MAX_REGEX_NFA);
        let patterns = self.budget.patterns.load(Ordering::Relaxed);
        // As `regex::Regex::new` configures it.
        let config = regex_automata::meta::Config::new()
            .match_kind(regex_automata::MatchKind::LeftmostFirst)
            .utf8_empty(true)
            .nfa_size_limit(Some(per_automaton))
            .hybrid_cache_capacity(limits::regex_cache_capacity(patterns));
        // With the whole budget left, the regex is too large on its own.
        let alone = *left == limits::REGEX_BUDGET;
        let over = |e: Option<usize>| match e {
            _ if !alone => CompileError::OverBudget { left: *left },
            Some(limit) => CompileError::TooLarge { limit },
            None => CompileError::TooLarge {
                limit: limits::REGEX_BUDGET,
            },
        };
        let built = regex_automata::meta::Builder::new()
            .configure(config)
            .syntax(regex_automata::util::syntax::Config::new().utf8(true))
            .build(&self.source);
        let re = match built {
            Ok(re) => re,
            Err(e) => match e.size_limit() {
                Some(limit) => {
                    let error = over(Some(limit));
                    // The work done up to the limit counts too, so regexes
                    // that fail one after another cannot each spend the
                    // whole budget.
                    *left -= per_automaton.min(*left);
                    return Err(error);
                }
                None => return Err(CompileError::Invalid(e.to_string())),
            },
        };
        let used = re.memory_usage();
        if used > *left {
            return Err(over(None));
        }
        *left -= used;
        Ok(re)
    }

    /// The compiled regex, compiling it on first use.
    fn compiled(&self) -> Result<&Regex, &CompileError> {
        if let Some(done) = self.compiled.get() {
            return done.as_ref();
        }
        // The budget first, then the cell: the order `Policy::compile`
        // takes them in, so the two never wait for each other.
        let mut left = self.budget.lock();
        self.compiled.get_or_init(|| self.build(&mut left)).as_ref()
    }

    /// Whether the regex is found in `text`. A pattern that cannot be
    /// compiled matches nothing (and [`Policy::compile`] reports it).
    pub fn is_match(&self, text: &str) -> bool {
        self.compiled().is_ok_and(|re| re.is_match(text))
    }
}

/// Compiles every pattern (each once; later calls are free), in order,
/// returning those that fail. The first that is too large — alone, or for
/// what the ones before it left of the budget — ends it: the ones after it
/// are not compiled (the policy is invalid anyway, and each attempt would
/// cost up to the budget).
pub(super) fn compile_all<'p>(patterns: &[&'p Pattern]) -> Vec<(&'p Pattern, CompileError)> {
    let Some(first) = patterns.first() else {
        return Vec::new();
    };
    let budget = Arc::clone(&first.budget);
    let mut left = budget.lock();
    let mut failed = Vec::new();
    for p in patterns {
        let result = if Arc::ptr_eq(&p.budget, &budget) {
            p.compiled.get_or_init(|| p.build(&mut left)).as_ref()
        } else {
            // A pattern made for another policy's budget.
            p.compiled()
        };
        let Err(e) = result else { continue };
        let stop = !matches!(e, CompileError::Invalid(_));
        failed.push((*p, e.clone()));
        if stop {
            break;
        }
    }
    failed
}
