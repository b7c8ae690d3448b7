//! Pure parsers of the text the kernel prints in `/proc`: a process's
//! `stat`, `status`, `cmdline` and fd links, and `/proc/uptime`.
//!
//! They are plain functions of bytes, tested on recorded kernel output
//! (`tests/fixtures/proc/`), and compile on every platform so the hostile
//! input tests and fuzz targets can feed them anything.

/// A decimal number made of digits only (no sign), as the kernel prints it.
pub(crate) fn parse_decimal<T: std::str::FromStr>(field: &str) -> Option<T> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

/// The fields of `/proc/PID/stat` discovery and the safety checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Process id (field 1).
    pub pid: u32,
    /// Command name (field 2), without the surrounding parentheses. It may
    /// itself contain spaces and parentheses.
    pub comm: String,
    /// State letter (field 3): `R`, `S`, `D`, `Z` (zombie), ...
    pub state: char,
    /// Parent pid (field 4); 0 for pid 1 and for processes whose parent is
    /// outside this pid namespace.
    pub ppid: u32,
    /// Start time in clock ticks since boot (field 22): with the pid, the
    /// identity that survives pid reuse.
    pub start_ticks: u64,
    /// Kernel `PF_*` flags (field 9), e.g. `PF_KTHREAD`.
    pub flags: u32,
    /// Live threads in the thread group (field 20). A leader in state `Z`
    /// with more than one thread has exited while its threads run on: the
    /// process is alive, and its fds are under `task/TID/fd`.
    pub threads: u32,
}

impl Stat {
    /// Whether the process is gone: a zombie (`Z`) or dead (`X`) whose
    /// threads have all exited. It has closed every fd, and a signal to it
    /// does nothing; its pid stays reserved until the parent reaps it, so
    /// treating it as gone cannot let a recycled pid in.
    pub fn is_gone(&self) -> bool {
        matches!(self.state, 'Z' | 'X') && self.threads <= 1
    }

    /// Whether the thread-group leader has exited while other threads run.
    pub fn leader_exited(&self) -> bool {
        self.state == 'Z' && self.threads > 1
    }
}

/// Parse `/proc/PID/stat`.
///
/// The command name is taken between the first `(` and the *last* `)`,
/// because a process can name itself `a) S 1 (b` and the numeric fields
/// only begin after the final parenthesis. `None` for anything malformed.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = parse_decimal(text[..open].trim())?;
    let comm = text[open + 1..close].to_owned();
    // Index 0 of `rest` is field 3 (state).
    let rest: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    let mut state_chars = rest.first()?.chars();
    let state = state_chars.next()?;
    if state_chars.next().is_some() {
        return None;
    }
    Some(Stat {
        pid,
        comm,
        state,
        ppid: parse_decimal(rest.get(1)?)?,
        flags: parse_decimal(rest.get(6)?)?,
        threads: parse_decimal(rest.get(17)?)?,
        start_ticks: parse_decimal(rest.get(19)?)?,
    })
}

/// The real uid from `/proc/PID/status` (first number of the `Uid:` line:
/// real, effective, saved, filesystem).
///
/// The real uid is who started the process; a setuid program keeps the
/// caller's real uid, which is what "a process of your user" means.
pub fn parse_status_uid(text: &str) -> Option<u32> {
    parse_status_uids(text).map(|ids| ids[0])
}

/// All four uids of the `Uid:` line of `/proc/PID/status`: real, effective,
/// saved and filesystem. A socket records the uid that created it, which
/// may be any of them after a `setuid`.
pub fn parse_status_uids(text: &str) -> Option<[u32; 4]> {
    let ids = text.lines().find_map(|line| line.strip_prefix("Uid:"))?;
    let mut out = [0u32; 4];
    let mut fields = ids.split_ascii_whitespace();
    for slot in &mut out {
        *slot = parse_decimal(fields.next()?)?;
    }
    Some(out)
}

/// Split `/proc/PID/cmdline` into argv.
///
/// Arguments are NUL-terminated; the final terminator's empty piece is
/// dropped, but empty arguments inside are kept. Bytes that are not UTF-8
/// are replaced (lossy) so the policy's regexes can still be applied.
pub fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    bytes
        .split(|&b| b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// The inode of an fd link target of the form `socket:[12345]`; `None` for
/// any other target (files, pipes, anon inodes).
pub fn parse_socket_link(target: &[u8]) -> Option<u64> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |inode, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        inode.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Milliseconds since boot from `/proc/uptime` (`SECONDS.FRACTION IDLE`).
///
/// Parsed as integers rather than `f64` so that ages computed from it do not
/// wobble by rounding.
pub fn parse_uptime_ms(text: &str) -> Option<u64> {
    let first = text.split_ascii_whitespace().next()?;
    let (secs, frac) = first.split_once('.').unwrap_or((first, ""));
    let secs: u64 = parse_decimal(secs)?;
    let mut millis = 0u64;
    for (i, b) in frac.bytes().enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        if i < 3 {
            millis = millis * 10 + u64::from(b - b'0');
        }
    }
    for _ in frac.len()..3 {
        millis *= 10;
    }
    secs.checked_mul(1000)?.checked_add(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_WEIRD: &str = include_str!("../../../tests/fixtures/proc/stat_weird");
    const STAT_ZOMBIE: &str = include_str!("../../../tests/fixtures/proc/stat_zombie");
    const STAT_ZOMBIE_LEADER: &str =
        include_str!("../../../tests/fixtures/proc/stat_zombie_leader");
    const STATUS: &str = include_str!("../../../tests/fixtures/proc/status");
    const STATUS_MIXED: &str = include_str!("../../../tests/fixtures/proc/status_mixed");
    const CMDLINE: &[u8] = include_bytes!("../../../tests/fixtures/proc/cmdline");
    const UPTIME: &str = include_str!("../../../tests/fixtures/proc/uptime");

    #[test]
    fn stat_with_parentheses_and_spaces_in_comm() {
        assert_eq!(
            parse_stat(STAT_WEIRD),
            Some(Stat {
                pid: 3695,
                comm: "my (weird) proc".into(),
                state: 'S',
                ppid: 3691,
                start_ticks: 22778,
                flags: 4194304,
                threads: 1,
            })
        );
    }

    #[test]
    fn stat_of_a_zombie() {
        assert_eq!(
            parse_stat(STAT_ZOMBIE),
            Some(Stat {
                pid: 3736,
                comm: "my (weird) proc".into(),
                state: 'Z',
                ppid: 3695,
                start_ticks: 22791,
                flags: 4227148,
                threads: 1,
            })
        );
    }

    #[test]
    fn stat_comm_that_imitates_fields() {
        let text = "12 () S 99 (x) R 7 7 7 0 -1 64 0 0 0 0 0 0 0 0 20 0 1 0 555 0 0\n";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.comm, ") S 99 (x");
        assert_eq!((stat.pid, stat.state, stat.ppid), (12, 'R', 7));
        assert_eq!((stat.flags, stat.start_ticks), (64, 555));
    }

    #[test]
    fn malformed_stat_is_none() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("12 (x S 1"), None);
        assert_eq!(parse_stat("12 (x) S 1 1 1 0 -1 64"), None); // truncated
        assert_eq!(
            parse_stat("x (y) S 1 1 1 0 -1 64 0 0 0 0 0 0 0 0 20 0 1 0 5"),
            None
        );
        assert_eq!(
            parse_stat("1 (y) SS 1 1 1 0 -1 64 0 0 0 0 0 0 0 0 20 0 1 0 5"),
            None
        );
        assert_eq!(parse_stat(")1 (y S"), None);
    }

    #[test]
    fn status_real_uid() {
        assert_eq!(parse_status_uid(STATUS), Some(0));
        // Uid: real effective saved fs = 1000 65534 0 65534
        assert_eq!(parse_status_uid(STATUS_MIXED), Some(1000));
        assert_eq!(parse_status_uid("Name:\tx\nGid:\t5\t5\t5\t5\n"), None);
        assert_eq!(parse_status_uid("Uid:\tabc\n"), None);
    }

    #[test]
    fn cmdline_with_nuls_empty_args_and_invalid_utf8() {
        assert_eq!(
            parse_cmdline(CMDLINE),
            vec![
                "/root/.pyenv/versions/3.11.7/bin/python3",
                "w.py",
                "caf\u{FFFD}",
                "two words",
                "",
                "end",
            ]
        );
        assert_eq!(parse_cmdline(b""), Vec::<String>::new());
        assert_eq!(parse_cmdline(b"a\0"), vec!["a"]);
        // setproctitle-style: one string, no terminator.
        assert_eq!(parse_cmdline(b"nginx: worker"), vec!["nginx: worker"]);
    }

    #[test]
    fn socket_links() {
        assert_eq!(parse_socket_link(b"socket:[12345]"), Some(12345));
        assert_eq!(parse_socket_link(b"socket:[0]"), Some(0));
        assert_eq!(
            parse_socket_link(b"socket:[18446744073709551615]"),
            Some(u64::MAX)
        );
        for bad in [
            &b"socket:[18446744073709551616]"[..],
            b"socket:[]",
            b"socket:[12a]",
            b"socket:[+1]",
            b"socket:[1",
            b"pipe:[4646]",
            b"/tmp/socket:[1]",
            b"anon_inode:[eventpoll]",
            b"",
        ] {
            assert_eq!(
                parse_socket_link(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn uptime_in_ms() {
        assert_eq!(parse_uptime_ms(UPTIME), Some(228_210));
        assert_eq!(parse_uptime_ms("5.5 1.0"), Some(5_500));
        assert_eq!(parse_uptime_ms("7 1"), Some(7_000));
        assert_eq!(parse_uptime_ms("7.12345 1"), Some(7_123));
        assert_eq!(parse_uptime_ms("x"), None);
        assert_eq!(parse_uptime_ms(""), None);
    }

    #[test]
    fn a_zombie_leader_with_live_threads_is_alive() {
        let zombie = parse_stat(STAT_ZOMBIE).unwrap();
        assert!(zombie.is_gone() && !zombie.leader_exited());
        let leader = parse_stat(STAT_ZOMBIE_LEADER).unwrap();
        assert_eq!((leader.state, leader.threads), ('Z', 2));
        assert!(!leader.is_gone() && leader.leader_exited());
    }

    #[test]
    fn status_all_four_uids() {
        assert_eq!(
            parse_status_uids(STATUS_MIXED),
            Some([1000, 65534, 0, 65534])
        );
        assert_eq!(parse_status_uids("Uid:\t1\t2\t3\n"), None);
    }
}
