//! Static seeded deltas and content-defined chunk indexes for images.
//!
//! Two ways to ship an image `new` to a device that holds `old` (its active slot, the *seed*):
//!
//! * **Static delta** ([`create`], [`apply`], [`apply_resumable`]): the build host, which may use a
//!   lot of memory, matches `new` against the whole of `old` (bsdiff-style aligned matching with
//!   approximate extension) and writes a stream of COPY / ADD / INSERT operations, compressed with
//!   zstd in independent segments. The device applies it in one pass with bounded memory
//!   (≤ [`MAX_SEGMENT_DATA`] + [`MAX_SEGMENT_CTRL`] of buffers per segment), reading the seed by
//!   offset. The seed's sha256 is checked before the first byte is written; the target's sha256 is
//!   checked at the end. Format: `docs/delta-format.md`. Images made of standalone zstd frames
//!   (squashfs `-comp zstd`) are diffed through the frames' content when this build's zstd
//!   reproduces them ([`frames`]); the device recompresses them and checks every frame's length.
//! * **Dynamic chunks** ([`chunk`]): FastCDC chunk index of `new` plus a chunk store or pack; the
//!   device reuses chunks found in its seed (or already in a half-written target) and fetches only
//!   the rest through a [`chunk::ChunkFetcher`] (HTTP Range in the agent).
#![forbid(unsafe_code)]

pub mod apply;
pub mod chunk;
pub mod encode;
pub mod format;
pub mod frames;
mod matcher;
mod shortmatch;
#[cfg(feature = "test-support")]
pub mod testing;
mod varint;

pub use apply::{apply, apply_resumable, scan, ApplyReport, Checkpoint, DeltaStructure, SeedRead};
pub use encode::{create, CreateOptions, CreateReport};
pub use format::{DeltaHeader, SegmentHeader, MAX_SEGMENT_CTRL, MAX_SEGMENT_DATA};

/// Everything that can go wrong while reading, applying or creating a delta or chunk index.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a keel delta (bad magic)")]
    BadMagic,
    #[error("unsupported delta version {0} (this build reads version 1)")]
    UnsupportedVersion(u16),
    #[error("unsupported flags {0:#06x} in {1}")]
    UnsupportedFlags(u16, &'static str),
    #[error("{0} checksum mismatch (corrupted delta)")]
    HeaderChecksum(&'static str),
    #[error("delta ends early while reading {0}")]
    Truncated(&'static str),
    #[error("limit exceeded: {what} is {value}, limit {limit}")]
    Limit {
        what: &'static str,
        value: u64,
        limit: u64,
    },
    #[error("corrupted delta: {0}")]
    Corrupt(String),
    #[error("seed is {actual} bytes, the delta needs a seed of {expected} bytes")]
    SeedTooShort { expected: u64, actual: u64 },
    #[error("wrong seed: sha256 {actual} but the delta was made against {expected}")]
    WrongSeed { expected: String, actual: String },
    #[error(
        "target sha256 mismatch: wrote {actual}, expected {expected} (output must not be used)"
    )]
    TargetHashMismatch { expected: String, actual: String },
    #[error("target size mismatch: wrote {actual} bytes, expected {expected}")]
    TargetSizeMismatch { expected: u64, actual: u64 },
    #[error("checkpoint does not belong to this delta or is out of range: {0}")]
    BadCheckpoint(String),
    #[error("input too large: {0}")]
    TooLarge(String),
    #[error(
        "the delta recompresses zstd frames with zstd {delta}, this build has zstd {ours}: it cannot reproduce them (use a full or chunked update)"
    )]
    ZstdVersion { delta: String, ours: String },
    #[error("zstd frame not reproduced (output must not be used): {0}")]
    Recompress(String),
    #[error("chunk {id} failed: {reason}")]
    Chunk { id: String, reason: String },
}

/// Lower-case hex of bytes (hashes in messages and reports).
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// sha256 of a byte slice.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}
