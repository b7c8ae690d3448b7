//! Per-port locks, so two portguard processes resolving the same port at the
//! same moment take turns instead of fighting over it (both signalling the
//! same holder, one seeing the other's half-finished work).
//!
//! The lock is an `flock` on `$XDG_RUNTIME_DIR/portguard/<proto>-<port>.lock`
//! (or `/tmp/portguard-<uid>/` without a runtime dir). The kernel releases an
//! flock when its holder exits, so a portguard that was killed never leaves a
//! lock that blocks the next run. The second process waits (bounded), then
//! discovers and decides again from scratch.

use crate::model::Protocol;
use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;
use std::fs::{DirBuilder, File, OpenOptions};
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
    /// The lock directory is not private to this user (a shared /tmp).
    #[error(
        "refusing to use the lock directory {0}: it is not a directory owned only by this user"
    )]
    Unsafe(PathBuf),
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

/// A held port lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct PortLock {
    _file: File,
    /// How long acquiring it waited for another portguard.
    pub waited: Duration,
    /// A lock directory passed over because another user could control
    /// it, when one was.
    pub skipped: Option<PathBuf>,
}

/// The directory lock files live in.
pub fn lock_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) if Path::new(&dir).is_dir() => PathBuf::from(dir).join("portguard"),
        _ => {
            std::env::temp_dir().join(format!("portguard-{}", rustix::process::geteuid().as_raw()))
        }
    }
}

/// Creates `dir` (mode 0700) if needed and checks it is ours alone: in a
/// shared /tmp another user could otherwise pre-create it and hold our locks.
fn private_dir(dir: &Path) -> Result<(), LockError> {
    let io = |source| LockError::Io {
        path: dir.to_path_buf(),
        source,
    };
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(io)?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o022 != 0 {
        return Err(LockError::Unsafe(dir.to_path_buf()));
    }
    Ok(())
}

/// Takes the lock of `port`, waiting up to `timeout` for another portguard
/// (and giving up early when `interrupted` is set).
pub fn acquire(
    port: u16,
    proto: Protocol,
    timeout: Duration,
    interrupted: &AtomicBool,
) -> Result<PortLock, LockError> {
    acquire_in(&lock_dir(), port, proto, timeout, interrupted)
}

/// [`acquire`] with an explicit directory (tests).
pub fn acquire_in(
    dir: &Path,
    port: u16,
    proto: Protocol,
    timeout: Duration,
    interrupted: &AtomicBool,
) -> Result<PortLock, LockError> {
    private_dir(dir)?;
    let path = dir.join(format!("{proto}-{port}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .map_err(|source| LockError::Io {
            path: path.clone(),
            source,
        })?;
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                return Ok(PortLock {
                    _file: file,
                    waited: start.elapsed(),
                    skipped: None,
                })
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
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("shared");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = acquire_in(&d, 1, Protocol::Tcp, Duration::ZERO, &NO).unwrap_err();
        assert!(matches!(err, LockError::Unsafe(_)), "{err}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        assert!(matches!(
            acquire_in(&link, 1, Protocol::Tcp, Duration::ZERO, &NO),
            Err(LockError::Unsafe(_))
        ));
    }
}
