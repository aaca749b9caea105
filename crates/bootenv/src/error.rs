//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong reading, validating or writing a bootloader environment.
///
/// Parsers of untrusted bytes return these instead of panicking; each message names the
/// format and the field that failed.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The input has the wrong total size for the format.
    #[error("{format}: wrong size: expected {expected} bytes, got {actual}")]
    WrongSize {
        /// Format name ("BGENV.DAT", "U-Boot env", "grubenv").
        format: &'static str,
        /// Size the format requires.
        expected: usize,
        /// Size that was given.
        actual: usize,
    },
    /// The stored CRC-32 does not match the data.
    #[error("{format}: CRC-32 mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// Format name.
        format: &'static str,
        /// CRC stored in the environment.
        stored: u32,
        /// CRC computed over the data.
        computed: u32,
    },
    /// The bytes pass the CRC (or there is none) but violate the format's structure.
    #[error("{format}: malformed at byte {offset}: {reason}")]
    Malformed {
        /// Format name.
        format: &'static str,
        /// Byte offset of the problem inside the environment.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// The variables do not fit into the fixed-size environment.
    #[error("{format}: environment full: {needed} bytes needed, {available} available")]
    TooLarge {
        /// Format name.
        format: &'static str,
        /// Bytes the content needs.
        needed: usize,
        /// Bytes the format offers.
        available: usize,
    },
    /// A variable name or value the format cannot represent.
    #[error("{format}: invalid variable {key:?}: {reason}")]
    InvalidVariable {
        /// Format name.
        format: &'static str,
        /// The offending key.
        key: String,
        /// Why it is rejected.
        reason: String,
    },
    /// No copy of a redundant environment is valid; each copy's error is listed.
    #[error("{format}: no valid copy: {}", .errors.join("; "))]
    NoValidCopy {
        /// Format name.
        format: &'static str,
        /// One description per copy.
        errors: Vec<String>,
    },
    /// `fw_env.config` could not be parsed.
    #[error("fw_env.config line {line}: {reason}")]
    Config {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A storage operation failed (includes injected power cuts).
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation ("read", "write", "sync", "rename", ...).
        op: &'static str,
        /// The path it was applied to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An operation was called in a state that does not allow it.
    #[error("{0}")]
    State(String),
}

impl EnvError {
    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        EnvError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn malformed(
        format: &'static str,
        offset: usize,
        reason: impl Into<String>,
    ) -> Self {
        EnvError::Malformed {
            format,
            offset,
            reason: reason.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = EnvError> = std::result::Result<T, E>;
