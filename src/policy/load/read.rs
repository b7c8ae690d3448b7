//! Reading a policy file: only a regular file, bounded, as UTF-8.

use super::load_source;
use crate::diagnostic::Diagnostic;
use crate::policy::limits;
use crate::policy::{Invalid, Policy, PolicyError, PolicySource};
use std::path::Path;

/// Reads and checks the policy file at `path`.
pub fn load_file(path: &Path) -> Result<Policy, PolicyError> {
    let bytes = read_policy_file(path)?;
    let source = PolicySource::File(path.to_path_buf());
    match String::from_utf8(bytes) {
        Ok(text) => load_source(&text, source),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            Err(PolicyError::Invalid(Invalid {
                file: source.display_name(),
                text,
                diagnostics: vec![Diagnostic::error(
                    "the policy is not valid UTF-8",
                    Some(at..at + 1),
                )],
            }))
        }
    }
}

/// What a file that is not a regular file is, in words.
fn file_kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Reads a policy file: only a regular file, and at most
/// [`limits::MAX_POLICY_BYTES`] of it. It is opened non-blocking, so a FIFO
/// cannot make the open wait for a writer, and checked with `fstat` on the
/// open descriptor, so what is read is what was checked.
pub fn read_policy_file(path: &Path) -> Result<Vec<u8>, PolicyError> {
    use rustix::fs::OFlags;
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = || path.display().to_string();
    let read_error = |source: std::io::Error| PolicyError::Read {
        path: shown(),
        source,
    };
    let not_regular = |t: std::fs::FileType| PolicyError::NotRegular {
        path: shown(),
        kind: file_kind(t),
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
        .open(path)
    {
        Ok(file) => file,
        Err(e) => {
            // A socket cannot be opened at all (ENXIO): say what it is.
            return Err(match std::fs::metadata(path) {
                Ok(m) if !m.is_file() => not_regular(m.file_type()),
                _ => read_error(e),
            });
        }
    };
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    if meta.len() > limits::MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge {
            path: shown(),
            size: meta.len(),
        });
    }
    // Regular files ignore O_NONBLOCK; cleared all the same, so reads are
    // plain blocking reads whatever the file system.
    let flags = rustix::fs::fcntl_getfl(&file).map_err(|e| read_error(e.into()))?;
    rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK).map_err(|e| read_error(e.into()))?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // A file that grows while it is read (or that reports no size, as
    // /proc files do) is still read no further than the limit.
    file.take(limits::MAX_POLICY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > limits::MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge {
            path: shown(),
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
}
