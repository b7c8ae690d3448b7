//! Limits on what a policy may ask of portguard, so that no policy file —
//! a typo, a generated file, a file from someone else being `check`ed —
//! can make loading or checking it take unbounded time or memory.
//!
//! - The file: read at most [`MAX_POLICY_BYTES`]; only regular files.

/// Largest policy file read, in bytes (1 MiB).
pub const MAX_POLICY_BYTES: u64 = 1 << 20;

/// Human-readable byte sizes for messages: `16 MiB`, `4 KiB`, `900 bytes`.
pub fn bytes(n: u64) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(1 << 20), "1 MiB");
        assert_eq!(bytes(32 << 10), "32 KiB");
        assert_eq!(bytes(1000), "1000 bytes");
    }
}
