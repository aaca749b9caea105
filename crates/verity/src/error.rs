use std::io;

/// Result of this crate's operations.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong building, reading or checking a hash tree.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the data image or reading/writing the hash device failed.
    #[error("{what}: {source}")]
    Io {
        /// Which file and what was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The hash device does not start with a valid verity superblock.
    #[error("verity superblock: {0}")]
    Superblock(String),
    /// Parameters that veritysetup would refuse too.
    #[error("{0}")]
    Params(String),
    /// The data image is shorter than the superblock says.
    #[error("data image holds {have} blocks of {block_size} bytes, the hash tree covers {want}")]
    DataTooShort {
        /// Whole data blocks in the image.
        have: u64,
        /// Data blocks the superblock declares.
        want: u64,
        /// Data block size in bytes.
        block_size: u32,
    },
    /// The hash device is shorter than the tree the superblock describes.
    #[error(
        "hash device is {have} bytes, its tree needs {want}: truncated or not made for this image"
    )]
    HashTooShort {
        /// Bytes on the hash device.
        have: u64,
        /// Bytes the superblock's geometry needs.
        want: u64,
    },
    /// The top hash block does not hash to the expected root hash.
    #[error("root hash mismatch: the hash tree's root is {actual}, expected {expected}")]
    RootHash {
        /// The root hash given by the caller.
        expected: String,
        /// The root hash of the hash device's top block.
        actual: String,
    },
    /// A hash block does not match its digest in the level above.
    #[error("hash block {index} of level {level} (byte offset {offset} of the hash device) does not match its digest in level {}", level + 1)]
    HashBlock {
        /// Tree level, 0 being the level that hashes data blocks.
        level: usize,
        /// Block index within the level.
        index: u64,
        /// Byte offset on the hash device.
        offset: u64,
    },
    /// A data block does not match its digest in level 0.
    #[error("data block {index} (byte offset {offset} of the data image) does not match its hash")]
    DataBlock {
        /// Data block index.
        index: u64,
        /// Byte offset in the data image.
        offset: u64,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}
