//! "Did you mean": the known word closest to a misspelt one, when it is
//! close enough that the suggestion is likely right.

/// Edit distance with adjacent transpositions (optimal string alignment):
/// `acton` → `action` is 1, and so is `termiante` → `terminate`. Counts
/// characters, case-sensitively.
pub(super) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows of the table: two back (for transpositions), one back, now.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            current[j] = d;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// The candidate closest to `word`, if it is close: at most one edit per
/// three characters (one for short words), as rustc suggests names; else
/// the only candidate that `word` (of four characters or more) begins,
/// so `proto` suggests `protocol`. Case is ignored, so `Action` suggests
/// `action`. Words longer than any candidate could be are not compared.
pub(super) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    const LONGEST: usize = 64;
    let len = word.chars().count();
    if len > LONGEST {
        return None;
    }
    let lower = word.to_lowercase();
    let limit = (len.max(3) / 3).max(1);
    let candidates: Vec<&str> = candidates.into_iter().filter(|c| *c != word).collect();
    let close = candidates
        .iter()
        .map(|c| (distance(&lower, &c.to_lowercase()), *c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c);
    if close.is_some() || len < 4 {
        return close;
    }
    match candidates
        .iter()
        .filter(|c| c.to_lowercase().starts_with(&lower))
        .collect::<Vec<_>>()
        .as_slice()
    {
        [only] => Some(only),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits_and_transpositions() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("abc", ""), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("acton", "action"), 1);
        assert_eq!(distance("cmdlne", "cmdline"), 1);
        assert_eq!(distance("termiante", "terminate"), 1);
        assert_eq!(distance("SIGTREM", "SIGTERM"), 1);
        assert_eq!(distance("healthbody", "health_body"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("ca", "abc"), 3);
        assert_eq!(distance("wait", "wait"), 0);
    }

    #[test]
    fn only_close_words_are_suggested() {
        let keys = ["name", "action", "match", "health_body", "health"];
        assert_eq!(closest("acton", keys), Some("action"));
        assert_eq!(closest("nmae", keys), Some("name"));
        assert_eq!(closest("healthbody", keys), Some("health_body"));
        assert_eq!(closest("Action", keys), Some("action"));
        assert_eq!(closest("colour", keys), None);
        assert_eq!(closest("x", keys), None);
        assert_eq!(closest("mach", ["match", "cmdline"]), Some("match"));
        assert_eq!(closest("mat", ["match"]), None);
        assert_eq!(closest(&"a".repeat(100_000), keys), None);
        let actions = ["terminate", "wait", "refuse", "reuse"];
        assert_eq!(closest("termiante", actions), Some("terminate"));
        assert_eq!(closest("kill", actions), None);
        assert_eq!(closest("refuze", actions), Some("refuse"));
        // A beginning of one key only.
        assert_eq!(closest("proto", ["port", "protocol"]), Some("protocol"));
        assert_eq!(
            closest("health_any", ["health", "health_any_host"]),
            Some("health_any_host")
        );
        assert_eq!(closest("heal", ["health", "health_body"]), None);
        assert_eq!(closest("pro", ["protocol"]), None);
    }
}
