//! Port numbers and inclusive ranges, as written on the command line
//! (`8787`, `8000-8010`) and in a rule's `ports` list.
//!
//! One parser serves both places so that `portguard resolve 9-3` and
//! `ports = ["9-3"]` fail the same way, naming the bad value.

use std::fmt;

/// An inclusive range of ports, `first..=last`, with `1 <= first <= last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port of the range.
    pub first: u16,
    /// Last port of the range (inclusive).
    pub last: u16,
}

/// Why a port spec was rejected. The message names the value so the user can
/// find it among several arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// Not a number or range at all.
    #[error("invalid port '{0}': expected a number 1-65535 or a range like 8000-8010")]
    Syntax(String),
    /// A number outside 1-65535.
    #[error("invalid port '{0}': ports are 1-65535")]
    OutOfRange(String),
    /// A range whose end is below its start.
    #[error("invalid port range '{0}': the end is below the start")]
    Reversed(String),
    /// A number written with leading zeros (`080`): some tools read those
    /// as octal, so it is refused rather than guessed.
    #[error("invalid port '{0}': write it without leading zeros")]
    LeadingZero(String),
}

impl PortRange {
    /// A single port.
    pub fn single(port: u16) -> Self {
        PortRange {
            first: port,
            last: port,
        }
    }

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// Every port of the range, in order.
    pub fn iter(&self) -> impl Iterator<Item = u16> {
        self.first..=self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl std::str::FromStr for PortRange {
    type Err = PortError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |part: &str| -> Result<u16, PortError> {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(PortError::Syntax(s.to_string()));
            }
            if part.len() > 1 && part.starts_with('0') && part.bytes().any(|b| b != b'0') {
                return Err(PortError::LeadingZero(s.to_string()));
            }
            match part.parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
                _ => Err(PortError::OutOfRange(s.to_string())),
            }
        };
        match s.split_once('-') {
            None => number(s).map(PortRange::single),
            Some((a, b)) => {
                let (first, last) = (number(a)?, number(b)?);
                if last < first {
                    return Err(PortError::Reversed(s.to_string()));
                }
                Ok(PortRange { first, last })
            }
        }
    }
}

/// A port from a policy integer; out-of-range values get the same error as on
/// the command line.
pub fn port_from_int(n: i64) -> Result<u16, PortError> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| PortError::OutOfRange(n.to_string()))
}

/// Expands ranges into a sorted list of distinct ports.
pub fn expand(ranges: &[PortRange]) -> Vec<u16> {
    let mut ports: Vec<u16> = ranges.iter().flat_map(PortRange::iter).collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_and_ranges() {
        assert_eq!("8787".parse(), Ok(PortRange::single(8787)));
        assert_eq!(
            "8000-8010".parse(),
            Ok(PortRange {
                first: 8000,
                last: 8010
            })
        );
        assert_eq!("1".parse(), Ok(PortRange::single(1)));
        assert_eq!("65535".parse(), Ok(PortRange::single(65535)));
        assert_eq!("7-7".parse(), Ok(PortRange::single(7)));
    }

    #[test]
    fn rejects_bad_values_naming_them() {
        for (input, want) in [
            ("0", PortError::OutOfRange("0".into())),
            ("65536", PortError::OutOfRange("65536".into())),
            (
                "99999999999999999999",
                PortError::OutOfRange("99999999999999999999".into()),
            ),
            ("abc", PortError::Syntax("abc".into())),
            ("", PortError::Syntax("".into())),
            ("+80", PortError::Syntax("+80".into())),
            ("80-", PortError::Syntax("80-".into())),
            ("-80", PortError::Syntax("-80".into())),
            ("1-2-3", PortError::Syntax("1-2-3".into())),
            ("9-3", PortError::Reversed("9-3".into())),
            ("0-5", PortError::OutOfRange("0-5".into())),
            ("080", PortError::LeadingZero("080".into())),
            ("0000080", PortError::LeadingZero("0000080".into())),
            ("8000-08010", PortError::LeadingZero("8000-08010".into())),
            ("00", PortError::OutOfRange("00".into())),
        ] {
            let got = input.parse::<PortRange>();
            assert_eq!(got, Err(want.clone()), "input {input:?}");
            assert!(want.to_string().contains(&format!("'{input}'")));
        }
    }

    #[test]
    fn expands_sorted_and_distinct() {
        let ranges = ["8003-8005", "8001", "8004"].map(|s| s.parse::<PortRange>().unwrap());
        assert_eq!(expand(&ranges), vec![8001, 8003, 8004, 8005]);
    }

    #[test]
    fn policy_integers() {
        assert_eq!(port_from_int(8787), Ok(8787));
        assert!(port_from_int(0).is_err());
        assert!(port_from_int(-1).is_err());
        assert!(port_from_int(65536).is_err());
    }
}

#[cfg(test)]
mod proptests {
    //! Properties of port specs for any input (proptest).
    use super::*;
    use proptest::prelude::*;

    /// What a port spec means, written independently of the parser:
    /// `N` or `A-B`, decimal digits only without leading zeros, 1-65535,
    /// `A <= B`.
    fn oracle(s: &str) -> Option<(u16, u16)> {
        fn number(part: &str) -> Option<u16> {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            if part.starts_with('0') && part.len() > 1 {
                return None;
            }
            let digits = part.trim_start_matches('0');
            if digits.len() > 5 {
                return None;
            }
            let n: u32 = if digits.is_empty() {
                0
            } else {
                digits.parse().ok()?
            };
            u16::try_from(n).ok().filter(|&p| p >= 1)
        }
        let parts: Vec<&str> = s.split('-').collect();
        match parts.as_slice() {
            [one] => number(one).map(|p| (p, p)),
            [a, b] => {
                let (a, b) = (number(a)?, number(b)?);
                (a <= b).then_some((a, b))
            }
            _ => None,
        }
    }

    /// Strings that look like port specs often, and anything at all too.
    fn spec() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[0-9]{0,7}",
            "0{0,30}[0-9]{1,6}",
            "[0-9]{1,6}-[0-9]{1,6}",
            "[-+ 0-9a\n]{0,12}",
            (any::<u16>(), any::<u16>()).prop_map(|(a, b)| format!("{a}-{b}")),
            any::<u64>().prop_map(|n| n.to_string()),
        ]
    }

    fn range() -> impl Strategy<Value = PortRange> {
        (1u16..=65535, 0u16..400).prop_map(|(first, len)| PortRange {
            first,
            last: first.saturating_add(len),
        })
    }

    proptest! {
        #[test]
        fn a_spec_is_a_valid_range_or_an_error_naming_it(s in spec()) {
            match s.parse::<PortRange>() {
                Ok(r) => {
                    prop_assert!(1 <= r.first && r.first <= r.last, "{s:?} -> {r:?}");
                    prop_assert_eq!(oracle(&s), Some((r.first, r.last)), "{:?}", s);
                    prop_assert_eq!(r.to_string().parse::<PortRange>(), Ok(r));
                }
                Err(e) => {
                    prop_assert_eq!(oracle(&s), None, "{:?} was rejected: {}", s, e);
                    let named = match &e {
                        PortError::Syntax(v)
                        | PortError::OutOfRange(v)
                        | PortError::Reversed(v)
                        | PortError::LeadingZero(v) => v,
                    };
                    prop_assert_eq!(named, &s);
                    prop_assert!(e.to_string().contains(&format!("'{s}'")), "{}", e);
                }
            }
        }

        #[test]
        fn display_round_trips(r in range()) {
            let text = r.to_string();
            prop_assert_eq!(text.contains('-'), r.first != r.last);
            prop_assert_eq!(text.parse::<PortRange>(), Ok(r));
        }

        #[test]
        fn policy_integers_are_ports_exactly_when_in_range(n in any::<i64>()) {
            match port_from_int(n) {
                Ok(p) => prop_assert!(p >= 1 && i64::from(p) == n),
                Err(e) => {
                    prop_assert!(!(1..=65535).contains(&n));
                    prop_assert!(e.to_string().contains(&format!("'{n}'")), "{}", e);
                }
            }
        }

        #[test]
        fn expand_is_the_sorted_distinct_union(ranges in proptest::collection::vec(range(), 0..8)) {
            let ports = expand(&ranges);
            prop_assert!(ports.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
            for p in &ports {
                prop_assert!(ranges.iter().any(|r| r.contains(*p)), "{p} is in no range");
            }
            for r in &ranges {
                for p in r.iter() {
                    prop_assert!(ports.binary_search(&p).is_ok(), "{p} of {r} is missing");
                }
            }
            let mut union = std::collections::BTreeSet::new();
            for r in &ranges {
                union.extend(r.iter());
            }
            prop_assert_eq!(ports.len(), union.len());
        }
    }
}
