//! Errors. Each names the role (or target) and the check that failed.

use crate::fetch::FetchError;

/// Why metadata or a target was refused, or why the updater could not proceed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not metadata of the expected shape.
    #[error("{role}: malformed metadata: {reason}")]
    Malformed { role: String, reason: String },
    /// `signed._type` names a different role type.
    #[error("{role}: _type is {found:?}, expected {expected:?}")]
    WrongType {
        role: String,
        expected: &'static str,
        found: String,
    },
    /// `spec_version` has a different major version than this client implements (1).
    #[error("{role}: unsupported spec_version {found:?} (this client implements 1.x)")]
    SpecVersion { role: String, found: String },
    /// Fewer valid signatures from authorized, distinct keys than the delegator's threshold.
    #[error("{role}: signature threshold not met: {valid} valid signature(s) from authorized keys, {threshold} required (checked against {delegator})")]
    Threshold {
        role: String,
        delegator: String,
        valid: u64,
        threshold: u64,
    },
    /// The version is not the one required (root: exactly trusted + 1; others: as listed by the parent).
    #[error("{role}: version {found}, expected {expected}")]
    VersionMismatch {
        role: String,
        expected: u64,
        found: u64,
    },
    /// A rollback: the new version is lower than the trusted one.
    #[error("{role}: rollback from trusted version {trusted} to {found}")]
    Rollback {
        role: String,
        trusted: u64,
        found: u64,
    },
    /// The new timestamp has the same version as the trusted one (nothing new; not an attack).
    #[error("{role}: version {version} is already trusted")]
    SameVersion { role: String, version: u64 },
    /// The metadata expired before the reference time.
    #[error("{role}: expired at {expires} (reference time {now})")]
    Expired {
        role: String,
        expires: String,
        now: String,
    },
    /// The length differs from the parent's record.
    #[error("{role}: length {found} differs from the expected {expected}")]
    LengthMismatch {
        role: String,
        expected: u64,
        found: u64,
    },
    /// More bytes arrived than allowed (endless-data attack).
    #[error("{role}: more than {limit} bytes (endless data)")]
    TooLarge { role: String, limit: u64 },
    /// A hash differs from the parent's record.
    #[error("{role}: {algorithm} hash mismatch")]
    HashMismatch { role: String, algorithm: String },
    /// The parent lists a hash algorithm this client does not implement.
    #[error("{role}: unsupported hash algorithm {algorithm:?}")]
    UnsupportedHash { role: String, algorithm: String },
    /// A role the parent metadata must list is not listed.
    #[error("{role}: {reason}")]
    MissingMeta { role: String, reason: String },
    /// A target is not a current TUF target.
    #[error("target {0:?} is not a current TUF target")]
    TargetNotFound(String),
    /// Fetching failed.
    #[error("{role}: fetch failed: {source}")]
    Fetch { role: String, source: FetchError },
    /// The local metadata store failed.
    #[error("metadata store {path}: {source}")]
    Store {
        path: String,
        source: std::io::Error,
    },
    /// Operations called out of order (a bug in the caller).
    #[error("internal order violation: {0}")]
    Order(&'static str),
}

impl Error {
    pub(crate) fn malformed(role: &str, reason: impl std::fmt::Display) -> Self {
        Error::Malformed {
            role: role.to_string(),
            reason: reason.to_string(),
        }
    }
}
