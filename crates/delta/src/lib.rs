//! Static seeded deltas and content-defined chunk indexes for images.
//!
//! Two ways to ship an image `new` to a device that holds `old` (its active slot, the *seed*):
//!
//! * **Static delta** ([`create`], [`apply()`], [`apply_resumable`]): the build host, which may use a
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
#![warn(missing_docs)]

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
    /// Reading the delta, seed or pack, or writing the output failed; also zstd context errors.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The input does not start with `KEELDELT` (delta) or `KEELCIDX` (chunk index).
    #[error("not a keel delta (bad magic)")]
    BadMagic,
    /// The delta or chunk index has a format version other than 1.
    #[error("unsupported delta version {0} (this build reads version 1)")]
    UnsupportedVersion(u16),
    /// The header sets a flag bit this build does not know (only bit 0, zstd frames, is
    /// defined). Carries the flags and the header that holds them.
    #[error("unsupported flags {0:#06x} in {1}")]
    UnsupportedFlags(u16, &'static str),
    /// The CRC-32 of a header (delta, segment, frame layout, chunk index) does not match its
    /// bytes; names that header.
    #[error("{0} checksum mismatch (corrupted delta)")]
    HeaderChecksum(&'static str),
    /// The delta or index ends before a complete header, frame or segment; names what was being
    /// read.
    #[error("delta ends early while reading {0}")]
    Truncated(&'static str),
    /// A header announces more than the decoder accepts (segment buffers over
    /// [`MAX_SEGMENT_DATA`] / [`MAX_SEGMENT_CTRL`], a frame larger than zstd can produce, too
    /// many layout frames): refused before allocating.
    #[error("limit exceeded: {what} is {value}, limit {limit}")]
    Limit {
        /// The field or quantity over its limit, e.g. `"max_segment_data"`.
        what: &'static str,
        /// Its value in the input.
        value: u64,
        /// The largest value accepted.
        limit: u64,
    },
    /// The delta or index is inconsistent: bad segment magic, undecodable zstd frame or op,
    /// a seed range outside the seed, streams not consumed exactly, data after the last segment,
    /// chunk lengths that do not add up, unsupported chunk sizes, ...
    #[error("corrupted delta: {0}")]
    Corrupt(String),
    /// The seed ended before `seed_size` bytes could be read for the seed check.
    #[error("seed is {actual} bytes, the delta needs a seed of {expected} bytes")]
    SeedTooShort {
        /// The header's `seed_size`.
        expected: u64,
        /// Bytes read before the seed ended (a multiple of the 256 KiB read size, so at most
        /// the seed's length).
        actual: u64,
    },
    /// The seed's sha256 is not the header's `seed_sha256`: the delta was made for another
    /// old image. Reported before any byte of the target is written.
    #[error("wrong seed: sha256 {actual} but the delta was made against {expected}")]
    WrongSeed {
        /// The header's `seed_sha256`, lower-case hex.
        expected: String,
        /// The sha256 of the seed read, lower-case hex.
        actual: String,
    },
    /// The bytes written do not hash to the delta's `target_sha256` (or the chunk index's image
    /// sha256): the output must not be used. After a resume this also catches a prefix damaged
    /// by the power cut.
    #[error(
        "target sha256 mismatch: wrote {actual}, expected {expected} (output must not be used)"
    )]
    TargetHashMismatch {
        /// The expected image sha256, lower-case hex.
        expected: String,
        /// The sha256 of what was written, lower-case hex.
        actual: String,
    },
    /// The segments produced more or fewer bytes than the header's target size.
    #[error("target size mismatch: wrote {actual} bytes, expected {expected}")]
    TargetSizeMismatch {
        /// Size the delta announces, in bytes (checked for the expanded target the ops produce
        /// and for the real target of a zstd-frame delta).
        expected: u64,
        /// Bytes actually produced.
        actual: u64,
    },
    /// A checkpoint is unreadable (length, magic, CRC) or does not fit the delta being applied
    /// (other target sha256, segment or offset out of range).
    #[error("checkpoint does not belong to this delta or is out of range: {0}")]
    BadCheckpoint(String),
    /// [`create`] was given options out of range or inputs the format cannot describe (old
    /// image too large for the matcher, more than 2^32 segments).
    #[error("input too large: {0}")]
    TooLarge(String),
    /// The delta recompresses zstd frames made with another zstd library version than this
    /// build's, so recompression would not be byte-exact. Reported before the seed is read.
    #[error(
        "the delta recompresses zstd frames with zstd {delta}, this build has zstd {ours}: it cannot reproduce them (use a full or chunked update)"
    )]
    ZstdVersion {
        /// The delta's zstd version, dotted (`1.5.5`).
        delta: String,
        /// This build's zstd version, dotted.
        ours: String,
    },
    /// Recompressing a target frame did not give its recorded length (or a compression thread
    /// failed); the output must not be used.
    #[error("zstd frame not reproduced (output must not be used): {0}")]
    Recompress(String),
    /// A chunk does not decompress, does not hash to its id, or is missing from or wrong in the
    /// store.
    #[error("chunk {id} failed: {reason}")]
    Chunk {
        /// The chunk's id (sha256 of its content), lower-case hex.
        id: String,
        /// What went wrong with it.
        reason: String,
    },
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
