//! Live clients recorded as files: a directory with one file per client,
//! named `<pid>` or `<pid>.<ext>` (headroom writes
//! `~/.headroom/clients/<port>/<pid>.json` for every live `headroom wrap`).
//!
//! Who counts as a live client: a pid that is alive and not a zombie. A
//! record that carries `start_src`/`start_time` (JSON) is checked the way
//! headroom checks it: the pid was recycled only when its start time
//! provably differs by more than 1.0 in the recorded unit (`proc`: clock
//! ticks, field 22 of `/proc/PID/stat`; `psutil`: seconds since the epoch);
//! anything uncertain counts as the same process. portguard and its
//! ancestors never count: a launcher records itself before it asks, and is
//! no evidence that someone else uses the server.
//!
//! Reading is bounded (files per directory, bytes per record) and never
//! changes anything: stale records are reported, not deleted.

use crate::model::{ClientFile, ClientStatus, ClientsSeen};
use std::path::Path;

/// Records looked at per directory; beyond that the answer is "unknown"
/// unless a live one was found.
pub const MAX_FILES: usize = 4096;

/// Bytes read of one record.
#[cfg(target_os = "linux")]
const MAX_RECORD: u64 = 64 << 10;

/// What `dir` says about its clients; `callers` (portguard and its
/// ancestors) never count.
pub fn read(dir: &Path, callers: &[u32]) -> ClientsSeen {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return ClientsSeen::Missing,
        Err(e) => {
            return ClientsSeen::Unreadable {
                error: e.to_string(),
            }
        }
    };
    let mut files = Vec::new();
    let mut truncated = false;
    for entry in entries {
        let Ok(entry) = entry else {
            return ClientsSeen::Unreadable {
                error: "the listing failed part-way".into(),
            };
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = record_pid(&name) else {
            continue;
        };
        if files.len() == MAX_FILES {
            truncated = true;
            break;
        }
        let status = if callers.contains(&pid) {
            ClientStatus::Caller
        } else {
            status(pid, &entry.path())
        };
        files.push(ClientFile { name, pid, status });
    }
    files.sort_by_key(|f| f.pid);
    ClientsSeen::Read { files, truncated }
}

/// The pid a record's name gives: `4242` or `4242.json`.
pub fn record_pid(name: &str) -> Option<u32> {
    let digits = name.split_once('.').map_or(name, |(d, _)| d);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 10 {
        return None;
    }
    digits.parse().ok().filter(|&p| p > 0)
}

/// A record's start time and its unit, when it carries one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Started {
    /// Clock ticks since boot (`start_src = "proc"`).
    Ticks(f64),
    /// Seconds since the epoch (`start_src = "psutil"`).
    Epoch(f64),
}

/// The start time a JSON record carries, if it names a unit portguard
/// knows.
pub fn recorded_start(text: &str) -> Option<Started> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let time = value.get("start_time")?.as_f64()?;
    match value.get("start_src")?.as_str()? {
        "proc" => Some(Started::Ticks(time)),
        "psutil" => Some(Started::Epoch(time)),
        _ => None,
    }
}

/// Whether a process started at `actual` (ticks since boot, with the
/// system's tick rate and boot time) is provably not the one a record says
/// started at `recorded`: more than 1.0 apart in the record's unit.
pub fn provably_other(
    recorded: Started,
    actual_ticks: u64,
    hz: u64,
    boot_epoch: Option<u64>,
) -> bool {
    match recorded {
        Started::Ticks(t) => (t - actual_ticks as f64).abs() > 1.0,
        Started::Epoch(t) => match (boot_epoch, hz) {
            (Some(boot), hz) if hz > 0 => {
                let actual = boot as f64 + actual_ticks as f64 / hz as f64;
                (t - actual).abs() > 1.0
            }
            // Without the boot time the record cannot be compared.
            _ => false,
        },
    }
}

#[cfg(target_os = "linux")]
fn read_record(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_RECORD)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

#[cfg(target_os = "linux")]
fn status(pid: u32, record: &Path) -> ClientStatus {
    use super::proc::{PidDir, DEFAULT_PROC_ROOT};
    let root = Path::new(DEFAULT_PROC_ROOT);
    let Some(stat) = PidDir::open(root, pid).and_then(|d| d.stat()) else {
        return ClientStatus::Exited;
    };
    if stat.is_gone() {
        return ClientStatus::Zombie;
    }
    let Some(recorded) = read_record(record).as_deref().and_then(recorded_start) else {
        return ClientStatus::Live;
    };
    let hz = rustix::param::clock_ticks_per_second();
    if provably_other(recorded, stat.start_ticks, hz, boot_epoch(root)) {
        ClientStatus::Recycled
    } else {
        ClientStatus::Live
    }
}

/// The boot time in seconds since the epoch (`btime` of `/proc/stat`).
#[cfg(target_os = "linux")]
fn boot_epoch(root: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(root.join("stat")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Without `/proc`: alive or not; a start time cannot be compared, so a
/// live pid counts as the same process.
#[cfg(not(target_os = "linux"))]
fn status(pid: u32, _record: &Path) -> ClientStatus {
    let alive = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|p| rustix::process::test_kill_process(p) != Err(rustix::io::Errno::SRCH));
    if alive {
        ClientStatus::Live
    } else {
        ClientStatus::Exited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names() {
        assert_eq!(record_pid("4242"), Some(4242));
        assert_eq!(record_pid("4242.json"), Some(4242));
        assert_eq!(record_pid("4242.json.tmp"), Some(4242));
        for bad in [
            "",
            ".4242",
            "x4242",
            "4242x.json",
            "0",
            "99999999999",
            "-1.json",
        ] {
            assert_eq!(record_pid(bad), None, "{bad}");
        }
    }

    #[test]
    fn start_times_compare_within_one_unit() {
        let rec = recorded_start(r#"{"pid": 5, "start_src": "proc", "start_time": 1000}"#).unwrap();
        assert!(!provably_other(rec, 1001, 100, None));
        assert!(provably_other(rec, 1002, 100, None));
        let rec = recorded_start(r#"{"start_src": "psutil", "start_time": 1700000010.5}"#).unwrap();
        // Booted at 1700000000, started 10.0 s later at 100 Hz.
        assert!(!provably_other(rec, 1000, 100, Some(1_700_000_000)));
        assert!(provably_other(rec, 1300, 100, Some(1_700_000_000)));
        assert!(!provably_other(rec, 1300, 100, None), "uncertain: same");
        for unknown in [
            r#"{"start_time": 5}"#,
            r#"{"start_src": "ps", "start_time": 5}"#,
            "not json",
            "[]",
        ] {
            assert_eq!(recorded_start(unknown), None, "{unknown}");
        }
    }

    /// A real directory: our own pid is live unless it is a caller, a pid
    /// that does not exist is stale, a record with our start time is us and
    /// one a day off is a reused pid.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_directory_of_records() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let ticks = crate::discovery::proc::PidDir::open(Path::new("/proc"), me)
            .and_then(|d| d.stat())
            .unwrap()
            .start_ticks;
        std::fs::write(
            dir.path().join(format!("{me}.json")),
            format!(r#"{{"pid": {me}, "start_src": "proc", "start_time": {ticks}}}"#),
        )
        .unwrap();
        std::fs::write(dir.path().join("4194303"), "").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let seen = read(dir.path(), &[]);
        let ClientsSeen::Read { files, truncated } = &seen else {
            panic!("{seen:?}")
        };
        assert!(!truncated);
        let states: Vec<(u32, ClientStatus)> = files.iter().map(|f| (f.pid, f.status)).collect();
        assert!(states.contains(&(me, ClientStatus::Live)), "{states:?}");
        assert!(
            states.contains(&(4194303, ClientStatus::Exited)),
            "{states:?}"
        );
        assert_eq!(states.len(), 2);
        assert_eq!(seen.any_live(), Some(true));

        std::fs::write(
            dir.path().join(format!("{me}.json")),
            format!(
                r#"{{"start_src": "proc", "start_time": {}}}"#,
                ticks + 8_640_000
            ),
        )
        .unwrap();
        assert_eq!(read(dir.path(), &[]).any_live(), Some(false));
        assert_eq!(read(dir.path(), &[me]).any_live(), Some(false));
        assert_eq!(read(&dir.path().join("absent"), &[]), ClientsSeen::Missing);
        assert_eq!(
            read(&dir.path().join("absent"), &[]).any_live(),
            Some(false)
        );
        // A directory that cannot be read says nothing either way.
        let unreadable = read(&dir.path().join("notes.txt"), &[]);
        assert!(
            matches!(unreadable, ClientsSeen::Unreadable { .. }),
            "{unreadable:?}"
        );
        assert_eq!(unreadable.any_live(), None);
    }
}
