//! The documented exit codes (docs/exit-codes.md), in one place.

/// An exit code of portguard. The numbers are a stable contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: the port is free (it was, or the policy freed it).
    Free,
    /// 1: `portguard test` only: a policy test case failed.
    TestFailed,
    /// 2: usage or policy error; nothing was touched.
    Usage,
    /// 3: reuse: held by an owner the policy accepts.
    Reuse,
    /// 4: refused: the policy forbids touching the owner.
    Refused,
    /// 5: failed: the action could not free the port.
    Failed,
    /// 70: unexpected internal error (EX_SOFTWARE).
    Internal,
    /// 126: `portguard run` could not execute the command.
    CommandNotExecutable,
    /// 127: `portguard run` did not find the command.
    CommandNotFound,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Free => 0,
            Exit::TestFailed => 1,
            Exit::Usage => 2,
            Exit::Reuse => 3,
            Exit::Refused => 4,
            Exit::Failed => 5,
            Exit::Internal => 70,
            Exit::CommandNotExecutable => 126,
            Exit::CommandNotFound => 127,
        }
    }

    /// Rank for combining several ports: 70, 2, 5, 4, 3, 0 (worst first).
    fn rank(self) -> u8 {
        match self {
            Exit::Free => 0,
            Exit::Reuse => 1,
            Exit::Refused => 2,
            Exit::Failed => 3,
            Exit::TestFailed => 4,
            Exit::Usage => 5,
            Exit::Internal => 6,
            Exit::CommandNotExecutable | Exit::CommandNotFound => 7,
        }
    }

    /// The worse of two codes, in the documented order (70, 2, 5, 4, 3, 0).
    pub fn worst(self, other: Exit) -> Exit {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

impl std::process::Termination for Exit {
    fn report(self) -> std::process::ExitCode {
        std::process::ExitCode::from(self.code())
    }
}

/// Each exit code and what it means, for the man page's EXIT STATUS.
pub const EXIT_CODES: [(&str, &str); 8] = [
    (
        "0",
        "the port is free: it was free, or the policy freed it; start your server",
    ),
    (
        "3",
        "reuse: the port is held by an owner the policy accepts; do not start another",
    ),
    (
        "4",
        "refused: the policy forbids touching the owner; the message says who holds it",
    ),
    (
        "5",
        "failed: the action could not free the port (timeout, permission denied, owner survived)",
    ),
    ("2", "usage or policy error; nothing was touched"),
    ("1", "`portguard test` only: a policy test case failed"),
    (
        "70",
        "unexpected internal error; nothing further was touched",
    ),
    (
        "126/127",
        "`portguard run` only: the command could not be executed / was not found",
    ),
];

/// The table printed in `--help` and README.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0   the port is free: it was free, or the policy freed it; start your server
  3   reuse: the port is held by an owner the policy accepts; do not start another
  4   refused: the policy forbids touching the owner; the message says who holds it
  5   failed: the action could not free the port (timeout, permission denied, owner survived)
  2   usage or policy error; nothing was touched
  1   `portguard test` only: a policy test case failed
  70  unexpected internal error; nothing further was touched
  126/127  `portguard run` only: the command could not be executed / was not found
With several ports, the worst code wins, in the order 70, 2, 5, 4, 3, 0.";

#[cfg(test)]
mod tests {
    use super::Exit::*;

    #[test]
    fn worst_follows_spec_order() {
        let order = [Internal, Usage, Failed, Refused, Reuse, Free];
        for (i, a) in order.iter().enumerate() {
            for b in &order[i..] {
                assert_eq!(a.worst(*b), *a);
                assert_eq!(b.worst(*a), *a);
            }
        }
        assert_eq!(
            [Free, Refused, Reuse].into_iter().fold(Free, Exit::worst),
            Refused
        );
    }

    use super::Exit;

    #[test]
    fn help_and_man_page_list_the_same_codes() {
        for (code, meaning) in super::EXIT_CODES {
            let line = super::EXIT_CODES_HELP
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{code} ")))
                .unwrap_or_else(|| panic!("code {code} missing from --help"));
            assert!(line.ends_with(meaning), "{line:?} vs {meaning:?}");
        }
    }
}
