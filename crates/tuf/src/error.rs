//! Errors. Each names the role (or target) and the check that failed.

use crate::fetch::FetchError;

/// Why metadata or a target was refused, or why the updater could not proceed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not metadata of the expected shape.
    #[error("{role}: malformed metadata: {reason}")]
    Malformed {
        /// The role whose metadata was refused (`root`, `timestamp`, a delegated role, ...).
        role: String,
        /// What is wrong: the JSON error, a bad key, a duplicate signature key ID, ...
        reason: String,
    },
    /// `signed._type` names a different role type.
    #[error("{role}: _type is {found:?}, expected {expected:?}")]
    WrongType {
        /// The role whose metadata was refused (`root`, `timestamp`, a delegated role, ...).
        role: String,
        /// The `_type` the role requires (`root`, `timestamp`, `snapshot`, `targets`).
        expected: &'static str,
        /// The `_type` in the metadata.
        found: String,
    },
    /// `spec_version` has a different major version than this client implements (1).
    #[error("{role}: unsupported spec_version {found:?} (this client implements 1.x)")]
    SpecVersion {
        /// The role whose metadata was refused (`root`, `timestamp`, a delegated role, ...).
        role: String,
        /// The metadata's `spec_version` string.
        found: String,
    },
    /// Fewer valid signatures from authorized, distinct keys than the delegator's threshold.
    #[error("{role}: signature threshold not met: {valid} valid signature(s) from authorized keys, {threshold} required (checked against {delegator})")]
    Threshold {
        /// The role whose metadata was refused (`root`, `timestamp`, a delegated role, ...).
        role: String,
        /// Whose keys and threshold apply: `root` for top-level roles, `trusted root` or `new
        /// root itself` for a root update, the delegating targets role otherwise.
        delegator: String,
        /// Valid signatures found, each from a distinct authorized key.
        valid: u64,
        /// Signatures the delegator requires.
        threshold: u64,
    },
    /// The version is not the one required (root: exactly trusted + 1; others: as listed by the parent).
    #[error("{role}: version {found}, expected {expected}")]
    VersionMismatch {
        /// The role whose metadata was refused (`root`, `timestamp`, a delegated role, ...).
        role: String,
        /// The version required.
        expected: u64,
        /// The version in the metadata.
        found: u64,
    },
    /// A rollback: the new version is lower than the trusted one.
    #[error("{role}: rollback from trusted version {trusted} to {found}")]
    Rollback {
        /// The role whose metadata was refused (`root`, `timestamp`, a delegated role, ...).
        role: String,
        /// The version already trusted (stored or loaded earlier).
        trusted: u64,
        /// The lower version offered.
        found: u64,
    },
    /// The new timestamp has the same version as the trusted one (nothing new; not an attack).
    #[error("{role}: version {version} is already trusted")]
    SameVersion {
        /// The role whose metadata was refused (`root`, `timestamp`, a delegated role, ...).
        role: String,
        /// The version offered, equal to the trusted one.
        version: u64,
    },
    /// The metadata expired before the reference time.
    #[error("{role}: expired at {expires} (reference time {now})")]
    Expired {
        /// The role whose metadata was refused (`root`, `timestamp`, a delegated role, ...).
        role: String,
        /// The metadata's `expires`, RFC 3339 UTC (`2030-01-01T00:00:00Z`).
        expires: String,
        /// The reference time it was checked against (the clock, raised to the build-time and
        /// persisted time floors), same format.
        now: String,
    },
    /// The length differs from the parent's record.
    #[error("{role}: length {found} differs from the expected {expected}")]
    LengthMismatch {
        /// The role, or `target NAME` for a target file.
        role: String,
        /// The length listed by the parent (or the target's length), in bytes.
        expected: u64,
        /// The length received, in bytes.
        found: u64,
    },
    /// More bytes arrived than allowed (endless-data attack).
    #[error("{role}: more than {limit} bytes (endless data)")]
    TooLarge {
        /// The role being fetched, or `target NAME` for a target file.
        role: String,
        /// The most bytes accepted: the listed length, or the updater's bound for the role.
        limit: u64,
    },
    /// A hash differs from the parent's record.
    #[error("{role}: {algorithm} hash mismatch")]
    HashMismatch {
        /// The role, or `target NAME` for a target file.
        role: String,
        /// The hash algorithm that differs (`sha256`, `sha512`).
        algorithm: String,
    },
    /// The parent lists a hash algorithm this client does not implement.
    #[error("{role}: unsupported hash algorithm {algorithm:?}")]
    UnsupportedHash {
        /// The role, or `target NAME` for a target file.
        role: String,
        /// The algorithm name as listed.
        algorithm: String,
    },
    /// A role the parent metadata must list is not listed.
    #[error("{role}: {reason}")]
    MissingMeta {
        /// The role that is missing, or whose parent lacks the entry.
        role: String,
        /// Which record is missing, e.g. `snapshot does not list this role`.
        reason: String,
    },
    /// A target is not a current TUF target.
    #[error("target {0:?} is not a current TUF target")]
    TargetNotFound(String),
    /// Fetching failed.
    #[error("{role}: fetch failed: {source}")]
    Fetch {
        /// The role being fetched, or `target NAME` for a target file.
        role: String,
        /// Why the [`crate::fetch::Fetcher`] failed.
        source: FetchError,
    },
    /// The local metadata store failed.
    #[error("metadata store {path}: {source}")]
    Store {
        /// The file (or, for a target, `target NAME`; for the time floor, `trusted time floor`)
        /// that could not be read or written.
        path: String,
        /// The I/O error.
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
