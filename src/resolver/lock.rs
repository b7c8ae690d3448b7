//! Per-port locks, so two portguard processes resolving the same port at the
//! same moment take turns instead of fighting over it (both signalling the
//! same holder, one seeing the other's half-finished work).
//!
//! The lock is an `flock` on `<dir>/<proto>-<port>.lock`. The kernel
//! releases an flock when its holder exits, so a portguard that was killed
//! never leaves a lock that blocks the next run. The second process waits
//! (bounded), then discovers and decides again from scratch.
//!
//! # Where the lock files live
//!
//! Every run of one user must use the same directory, or they do not take
//! turns. So the directory depends only on the effective uid and on the
//! file system — never on environment variables such as `XDG_RUNTIME_DIR`,
//! `TMPDIR` or `HOME`, which differ between a login shell, cron, sudo and a
//! systemd unit. The candidates, in order ([`candidates`]):
//!
//! 1. root only: `/run/portguard` (`/run` is writable by root alone, and
//!    is not replaced by a unit's `PrivateTmp`);
//! 2. `/tmp/portguard-UID`;
//! 3. `HOME/.local/state/portguard/locks`, with `HOME` the home directory
//!    in the user database (not `$HOME`).
//!
//! The first candidate that is usable and private is used: a directory
//! owned by the user, not a symlink, not writable by group or others, whose
//! parents are owned by the user or root and writable by nobody else (or
//! sticky, as `/tmp` is). Created directories get mode 0700. A candidate
//! that cannot be used (no `/run`, a read-only file system) is passed over
//! silently; one that someone else made — `mkdir /tmp/portguard-0` by
//! another user, which used to make every root run fail — is passed over
//! and reported ([`PortLock::skipped`]): its owner could otherwise hold our
//! locks or swap the files. Since every run of the user sees the same file
//! system, they all make the same choice.
//!
//! # Lock files do not pile up
//!
//! A lock file is removed when its lock is released, while the lock is
//! still held, and only if the path still names the locked file (same
//! device and inode). A waiter that then gets the lock on the removed file
//! sees that the path no longer names it, and starts over on the new file.
//! So a process holds a port's lock exactly when it holds the flock on the
//! file the path names.

use crate::model::Protocol;
use rustix::fs::{flock, Access, FlockOperation};
use rustix::io::Errno;
use std::fmt;
use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Why a port could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock directory or file could not be created or opened.
    #[error("cannot use the lock file {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A lock directory is not private to this user (a shared /tmp).
    #[error("refusing to use the lock directory {}: {}", .0.path.display(), .0.reason)]
    Unsafe(SkippedDir),
    /// No candidate lock directory could be used.
    #[error("no lock directory can be used: {}", .0.iter().map(|s| format!("{}: {}", s.path.display(), s.reason)).collect::<Vec<_>>().join("; "))]
    NoDirectory(Vec<SkippedDir>),
    /// SIGINT/SIGTERM arrived while waiting.
    #[error("interrupted while waiting for another portguard resolving port {port}/{proto}; nothing was signalled")]
    Interrupted {
        /// The port.
        port: u16,
        /// Its protocol.
        proto: Protocol,
    },
    /// Another portguard held the lock for longer than we wait.
    #[error("another portguard has been resolving port {port}/{proto} for more than {waited:?}; giving up")]
    Timeout {
        /// The port.
        port: u16,
        /// Its protocol.
        proto: Protocol,
        /// How long we waited.
        waited: Duration,
    },
}

/// A lock directory that was passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedDir {
    /// The directory.
    pub path: PathBuf,
    /// Why it was not used, e.g. "it belongs to nobody (uid 65534), not to
    /// this user".
    pub reason: String,
}

impl fmt::Display for SkippedDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not using the lock directory {}: {}",
            self.path.display(),
            self.reason
        )
    }
}

/// A held port lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct PortLock {
    file: File,
    path: PathBuf,
    /// How long acquiring it waited for another portguard.
    pub waited: Duration,
    /// Lock directories passed over because someone else made them.
    pub skipped: Vec<SkippedDir>,
}

impl PortLock {
    /// The directory the lock file is in.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(&self.path)
    }
}

impl Drop for PortLock {
    /// Removes the lock file while still holding its lock, if the path still
    /// names it; the lock itself is released when the file is closed.
    fn drop(&mut self) {
        if same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether `path` (not followed) names the open `file`.
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// The lock directories to try, in order (see the module documentation).
/// The home directory is looked up in the user database (NSS: files, but
/// also nscd, LDAP, sssd) only when the directories before it cannot be
/// used, which is rare.
pub fn candidates() -> impl Iterator<Item = PathBuf> {
    let uid = rustix::process::geteuid().as_raw();
    let run = (uid == 0).then(|| PathBuf::from("/run/portguard"));
    run.into_iter()
        .chain([PathBuf::from(format!("/tmp/portguard-{uid}"))])
        .chain(std::iter::once_with(move || home_locks(uid)).flatten())
}

/// `HOME/.local/state/portguard/locks`, with `HOME` from the user database.
fn home_locks(uid: u32) -> Option<PathBuf> {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok()??;
    user.dir
        .is_absolute()
        .then(|| user.dir.join(".local/state/portguard/locks"))
}

/// The owner of a file, in words: `nobody (uid 65534)`.
fn owner(uid: u32) -> String {
    match crate::discovery::users::name_of(uid) {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// Why `meta` (of a lock directory's parent) lets someone else replace
/// what is in it, if it does.
fn unsafe_parent(meta: &Metadata, me: u32) -> Option<String> {
    if meta.uid() != me && meta.uid() != 0 {
        return Some(format!("belongs to {}", owner(meta.uid())));
    }
    let sticky = meta.mode() & 0o1000 != 0;
    if meta.mode() & 0o022 != 0 && !sticky {
        return Some(format!(
            "is writable by other users (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    None
}

/// How a candidate directory failed.
enum Unusable {
    /// Someone else made it, or could replace it: reported.
    Hostile(String),
    /// It cannot be created or written (no such parent, read-only file
    /// system): passed over silently.
    Unavailable(String),
}

/// Creates `dir` (mode 0700, with its missing parents) if needed and checks
/// that it is private to this user (see the module documentation).
fn private_dir(dir: &Path) -> Result<(), Unusable> {
    let me = rustix::process::geteuid().as_raw();
    match std::fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match DirBuilder::new().recursive(true).mode(0o700).create(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Unusable::Unavailable(e.to_string())),
            }
        }
        Err(e) => return Err(Unusable::Unavailable(e.to_string())),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| Unusable::Unavailable(e.to_string()))?;
    if meta.file_type().is_symlink() {
        return Err(Unusable::Hostile("it is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(Unusable::Hostile("it is not a directory".into()));
    }
    if meta.uid() != me {
        return Err(Unusable::Hostile(format!(
            "it belongs to {}, not to this user",
            owner(meta.uid())
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Unusable::Hostile(format!(
            "it is writable by other users (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    for parent in dir.ancestors().skip(1) {
        if parent.as_os_str().is_empty() {
            break;
        }
        let meta = std::fs::metadata(parent).map_err(|e| Unusable::Unavailable(e.to_string()))?;
        if let Some(why) = unsafe_parent(&meta, me) {
            return Err(Unusable::Hostile(format!(
                "its parent {} {why}",
                parent.display()
            )));
        }
    }
    // A directory on a read-only file system (a unit's ProtectSystem) is
    // ours, but no lock file can be created in it.
    rustix::fs::access(dir, Access::WRITE_OK | Access::EXEC_OK)
        .map_err(|e| Unusable::Unavailable(std::io::Error::from(e).to_string()))?;
    Ok(())
}

/// Picks the first usable private directory of `candidates`, creating it if
/// needed; also returns the candidates passed over because someone else
/// made them.
pub fn choose_dir(
    candidates: impl IntoIterator<Item = PathBuf>,
) -> Result<(PathBuf, Vec<SkippedDir>), LockError> {
    let mut skipped = Vec::new();
    let mut unavailable = Vec::new();
    for dir in candidates {
        match private_dir(&dir) {
            Ok(()) => return Ok((dir, skipped)),
            Err(Unusable::Hostile(reason)) => skipped.push(SkippedDir { path: dir, reason }),
            Err(Unusable::Unavailable(reason)) => {
                unavailable.push(SkippedDir { path: dir, reason })
            }
        }
    }
    if let [only] = &skipped[..] {
        if unavailable.is_empty() {
            return Err(LockError::Unsafe(only.clone()));
        }
    }
    skipped.extend(unavailable);
    Err(LockError::NoDirectory(skipped))
}

/// Takes the lock of `port`, waiting up to `timeout` for another portguard
/// (and giving up early when `interrupted` is set). A lock directory passed
/// over is given in [`PortLock::skipped`], for the report.
pub fn acquire(
    port: u16,
    proto: Protocol,
    timeout: Duration,
    interrupted: &AtomicBool,
) -> Result<PortLock, LockError> {
    let (dir, skipped) = choose_dir(candidates())?;
    let mut lock = lock_in(&dir, port, proto, timeout, interrupted)?;
    lock.skipped = skipped;
    Ok(lock)
}

/// [`acquire`] with one candidate directory (tests): created if needed, and
/// refused unless private.
pub fn acquire_in(
    dir: &Path,
    port: u16,
    proto: Protocol,
    timeout: Duration,
    interrupted: &AtomicBool,
) -> Result<PortLock, LockError> {
    let (dir, _) = choose_dir([dir.to_path_buf()])?;
    lock_in(&dir, port, proto, timeout, interrupted)
}

/// Opens (creating it if needed) the lock file at `path`.
fn open_lock_file(path: &Path) -> Result<File, LockError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|source| LockError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Takes the lock of `port` in `dir`, which [`choose_dir`] found private.
fn lock_in(
    dir: &Path,
    port: u16,
    proto: Protocol,
    timeout: Duration,
    interrupted: &AtomicBool,
) -> Result<PortLock, LockError> {
    let path = dir.join(format!("{proto}-{port}.lock"));
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    let mut file = open_lock_file(&path)?;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) if same_file(&file, &path) => {
                return Ok(PortLock {
                    file,
                    path,
                    waited: start.elapsed(),
                    skipped: Vec::new(),
                })
            }
            Ok(()) => {
                // The holder we waited for removed the file on release (or
                // someone removed it): the lock is on the file the path now
                // names, so start over on that one.
                file = open_lock_file(&path)?;
                continue;
            }
            Err(Errno::WOULDBLOCK) | Err(Errno::INTR) => {}
            Err(e) => {
                return Err(LockError::Io {
                    path,
                    source: e.into(),
                })
            }
        }
        if interrupted.load(Ordering::Relaxed) {
            return Err(LockError::Interrupted { port, proto });
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(LockError::Timeout {
                port,
                proto,
                waited,
            });
        }
        std::thread::sleep(pause.min(timeout - waited));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    static NO: AtomicBool = AtomicBool::new(false);

    #[test]
    fn an_interrupt_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let _first = acquire_in(dir.path(), 9, Protocol::Tcp, Duration::ZERO, &NO).unwrap();
        let stop = AtomicBool::new(true);
        let err =
            acquire_in(dir.path(), 9, Protocol::Tcp, Duration::from_secs(60), &stop).unwrap_err();
        assert!(
            matches!(err, LockError::Interrupted { port: 9, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_second_lock_waits_until_the_first_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("locks");
        let first = acquire_in(&d, 8787, Protocol::Tcp, Duration::ZERO, &NO).unwrap();
        let err = acquire_in(&d, 8787, Protocol::Tcp, Duration::from_millis(30), &NO).unwrap_err();
        assert!(
            matches!(err, LockError::Timeout { port: 8787, .. }),
            "{err}"
        );
        // Another port, or UDP on the same number, is independent.
        acquire_in(&d, 8788, Protocol::Tcp, Duration::ZERO, &NO).unwrap();
        acquire_in(&d, 8787, Protocol::Udp, Duration::ZERO, &NO).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(first);
        });
        let second = acquire_in(&d, 8787, Protocol::Tcp, Duration::from_secs(5), &NO).unwrap();
        assert!(
            second.waited >= Duration::from_millis(40),
            "{:?}",
            second.waited
        );
        releaser.join().unwrap();
    }

    #[test]
    fn the_directory_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("shared");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = acquire_in(&d, 1, Protocol::Tcp, Duration::ZERO, &NO).unwrap_err();
        assert!(matches!(err, LockError::Unsafe(_)), "{err}");
        assert!(
            err.to_string()
                .contains("writable by other users (mode 777)"),
            "{err}"
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        let err = acquire_in(&link, 1, Protocol::Tcp, Duration::ZERO, &NO).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // A parent others may write to (without the sticky bit /tmp has)
        // could have the directory swapped under us.
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err =
            acquire_in(&open.join("locks"), 1, Protocol::Tcp, Duration::ZERO, &NO).unwrap_err();
        assert!(err.to_string().contains("its parent"), "{err}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        acquire_in(&open.join("locks"), 1, Protocol::Tcp, Duration::ZERO, &NO).unwrap();
    }

    #[test]
    fn created_directories_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("home/.local/state/portguard/locks");
        let (got, skipped) = choose_dir([d.clone()]).unwrap();
        assert_eq!((got, skipped), (d.clone(), vec![]));
        for p in [&d, &dir.path().join("home/.local")] {
            let mode = std::fs::metadata(p).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", p.display());
        }
    }

    /// The user `nobody`, when this test runs as root (as CI does).
    fn nobody() -> Option<u32> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root to make a directory owned by another user");
            return None;
        }
        crate::discovery::users::uid_of("nobody")
    }

    #[test]
    fn a_directory_another_user_made_is_passed_over_and_reported() {
        let Some(nobody) = nobody() else { return };
        // A stand-in for /tmp: root's, world-writable and sticky.
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let me = rustix::process::geteuid().as_raw();
        let hostile = tmp.path().join(format!("portguard-{me}"));
        // Made by nobody for real, as `mkdir /tmp/portguard-0` would be.
        let status = std::process::Command::new("setpriv")
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "mkdir",
                "-m",
                "700",
            ])
            .arg(&hostile)
            .status()
            .expect("setpriv runs");
        assert!(status.success());
        assert_eq!(std::fs::metadata(&hostile).unwrap().uid(), nobody);
        let home = tempfile::tempdir().unwrap();
        let fallback = home.path().join(".local/state/portguard/locks");

        // Alone, it is refused, saying whose it is.
        let err = acquire_in(&hostile, 5, Protocol::Tcp, Duration::ZERO, &NO).unwrap_err();
        assert!(
            err.to_string().contains("belongs to nobody (uid 65534)"),
            "{err}"
        );
        // With a fallback, the fallback is used and the hostile one reported.
        let (dir, skipped) = choose_dir([hostile.clone(), fallback.clone()]).unwrap();
        assert_eq!(dir, fallback);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(skipped[0].path, hostile);
        assert!(
            skipped[0].to_string().contains(&format!(
                "not using the lock directory {}: it belongs to nobody",
                hostile.display()
            )),
            "{}",
            skipped[0]
        );
        let lock = lock_in(&dir, 5, Protocol::Tcp, Duration::ZERO, &NO).unwrap();
        assert!(lock.path.starts_with(&fallback));
        // A candidate that cannot be made (under a file) is passed over
        // without a report.
        let (dir, skipped) =
            choose_dir([PathBuf::from("/dev/null/portguard"), fallback.clone()]).unwrap();
        assert_eq!((dir, skipped), (fallback.clone(), vec![]));
        // Nothing usable: every reason is given.
        let err = choose_dir([hostile.clone(), PathBuf::from("/dev/null/portguard")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("belongs to nobody") && err.contains("/dev/null/portguard"),
            "{err}"
        );
        // A fallback under a directory of another user is refused too.
        let theirs = tmp.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(nobody), None).unwrap();
        let err = choose_dir([theirs.join("locks")]).unwrap_err().to_string();
        assert!(err.contains("belongs to nobody"), "{err}");
    }

    #[test]
    fn lock_files_are_removed_on_release() {
        let dir = tempfile::tempdir().unwrap();
        for port in 1..=50 {
            let lock = acquire_in(dir.path(), port, Protocol::Tcp, Duration::ZERO, &NO).unwrap();
            assert!(lock.path.exists());
            drop(lock);
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        // A file whose path now names another file is left alone.
        let lock = acquire_in(dir.path(), 7, Protocol::Tcp, Duration::ZERO, &NO).unwrap();
        let path = lock.path.clone();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "").unwrap();
        drop(lock);
        assert!(path.exists());
    }

    #[test]
    fn a_waiter_whose_file_was_removed_starts_over_on_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let first = acquire_in(&d, 80, Protocol::Tcp, Duration::ZERO, &NO).unwrap();
        let original = first.file.metadata().unwrap().ino();
        // The waiter opens the file the first holder has locked, then waits.
        let waiter = {
            let d = d.clone();
            std::thread::spawn(move || {
                acquire_in(&d, 80, Protocol::Tcp, Duration::from_secs(10), &NO).unwrap()
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        // Released: the file is removed while still locked, then unlocked.
        drop(first);
        let second = waiter.join().unwrap();
        // The waiter holds the lock on the file the path names now, not on
        // the removed one, so a third run cannot take it.
        assert!(same_file(&second.file, &second.path));
        assert_ne!(second.file.metadata().unwrap().ino(), original);
        let err = acquire_in(&d, 80, Protocol::Tcp, Duration::ZERO, &NO).unwrap_err();
        assert!(matches!(err, LockError::Timeout { .. }), "{err}");
    }

    #[test]
    fn many_contenders_never_hold_one_port_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let inside = Arc::new(AtomicBool::new(false));
        let overlaps = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (d, inside, overlaps) =
                    (dir.path().to_path_buf(), inside.clone(), overlaps.clone());
                std::thread::spawn(move || {
                    for _ in 0..40 {
                        let lock = acquire_in(&d, 443, Protocol::Tcp, Duration::from_secs(30), &NO)
                            .unwrap();
                        if inside.swap(true, Ordering::SeqCst) {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        std::thread::sleep(Duration::from_micros(200));
                        inside.store(false, Ordering::SeqCst);
                        drop(lock);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(overlaps.load(Ordering::SeqCst), 0);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn the_candidates_depend_on_the_uid_only() {
        let dirs: Vec<PathBuf> = candidates().collect();
        let uid = rustix::process::geteuid().as_raw();
        let tmp = PathBuf::from(format!("/tmp/portguard-{uid}"));
        if uid == 0 {
            assert_eq!(dirs[..2], [PathBuf::from("/run/portguard"), tmp]);
        } else {
            assert_eq!(dirs[0], tmp);
        }
        assert!(dirs
            .last()
            .unwrap()
            .ends_with(".local/state/portguard/locks"));
    }
}
