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
