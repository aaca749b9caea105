//! The verity superblock (cryptsetup `struct verity_sb`, version 1), little-endian:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | signature `verity\0\0` |
//! | 8 | 4 | version (1) |
//! | 12 | 4 | hash type (0 Chrome OS, 1 normal) |
//! | 16 | 16 | UUID |
//! | 32 | 32 | hash algorithm name, NUL padded |
//! | 64 | 4 | data block size |
//! | 68 | 4 | hash block size |
//! | 72 | 8 | data blocks |
//! | 80 | 2 | salt size (≤ 256) |
//! | 82 | 6 | zero |
//! | 88 | 256 | salt, zero padded |
//! | 344 | 168 | zero |

use crate::{Error, Result};

/// Size of the superblock in bytes; the hash tree starts at the next hash block boundary.
pub const SUPERBLOCK_SIZE: usize = 512;
const SIGNATURE: &[u8; 8] = b"verity\0\0";
const MAX_SALT: usize = 256;

/// The parsed header of a hash device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// 0: Chrome OS (salt appended, no digest padding); 1: normal (salt prepended).
    pub hash_type: u32,
    /// The hash device's UUID (`veritysetup format --uuid`).
    pub uuid: uuid::Uuid,
    /// Hash algorithm name, e.g. `sha256`.
    pub algorithm: String,
    /// Data block size in bytes.
    pub data_block_size: u32,
    /// Hash block size in bytes.
    pub hash_block_size: u32,
    /// Number of data blocks the tree covers.
    pub data_blocks: u64,
    /// The salt hashed with every block.
    pub salt: Vec<u8>,
}

/// cryptsetup's rule for block sizes: a power of two from 512 bytes to 512 KiB.
pub(crate) fn block_size_ok(size: u32) -> bool {
    size.is_power_of_two() && (512..=512 * 1024).contains(&size)
}

impl Superblock {
    /// Parses the first [`SUPERBLOCK_SIZE`] bytes of a hash device, checking what cryptsetup
    /// checks (signature, version, hash type, block sizes, salt size, a NUL-terminated algorithm
    /// name).
    pub fn parse(bytes: &[u8]) -> Result<Superblock> {
        let bad = |what: &str| Error::Superblock(what.to_string());
        let sb = bytes.get(..SUPERBLOCK_SIZE).ok_or_else(|| {
            bad("shorter than 512 bytes: not a hash device made with a superblock")
        })?;
        if &sb[..8] != SIGNATURE {
            return Err(bad(
                "no `verity` signature at offset 0: not a hash device, or one made with --no-superblock",
            ));
        }
        let u32_at = |at: usize| u32::from_le_bytes(sb[at..at + 4].try_into().expect("4 bytes"));
        let version = u32_at(8);
        if version != 1 {
            return Err(Error::Superblock(format!(
                "unsupported version {version} (only 1 exists)"
            )));
        }
        let hash_type = u32_at(12);
        if hash_type > 1 {
            return Err(Error::Superblock(format!(
                "unsupported hash type {hash_type} (0 or 1)"
            )));
        }
        let uuid = uuid::Uuid::from_bytes(sb[16..32].try_into().expect("16 bytes"));
        let name = &sb[32..64];
        let end = name
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| bad("algorithm name is not NUL-terminated"))?;
        let algorithm = std::str::from_utf8(&name[..end])
            .ok()
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| bad("algorithm name is empty or not printable ASCII"))?
            .to_string();
        let data_block_size = u32_at(64);
        let hash_block_size = u32_at(68);
        for (what, size) in [("data", data_block_size), ("hash", hash_block_size)] {
            if !block_size_ok(size) {
                return Err(Error::Superblock(format!(
                    "{what} block size {size} is not a power of two from 512 to 524288"
                )));
            }
        }
        let data_blocks = u64::from_le_bytes(sb[72..80].try_into().expect("8 bytes"));
        let salt_size = usize::from(u16::from_le_bytes([sb[80], sb[81]]));
        if salt_size > MAX_SALT {
            return Err(Error::Superblock(format!(
                "salt size {salt_size} exceeds 256"
            )));
        }
        Ok(Superblock {
            hash_type,
            uuid,
            algorithm,
            data_block_size,
            hash_block_size,
            data_blocks,
            salt: sb[88..88 + salt_size].to_vec(),
        })
    }

    /// The 512 bytes `veritysetup format` writes for these parameters.
    pub fn to_bytes(&self) -> Result<[u8; SUPERBLOCK_SIZE]> {
        if self.salt.len() > MAX_SALT {
            return Err(Error::Params(format!(
                "salt of {} bytes: at most 256",
                self.salt.len()
            )));
        }
        if self.algorithm.is_empty() || self.algorithm.len() >= 32 {
            return Err(Error::Params(format!(
                "algorithm name {:?} must be 1 to 31 bytes",
                self.algorithm
            )));
        }
        let mut sb = [0u8; SUPERBLOCK_SIZE];
        sb[..8].copy_from_slice(SIGNATURE);
        sb[8..12].copy_from_slice(&1u32.to_le_bytes());
        sb[12..16].copy_from_slice(&self.hash_type.to_le_bytes());
        sb[16..32].copy_from_slice(self.uuid.as_bytes());
        sb[32..32 + self.algorithm.len()].copy_from_slice(self.algorithm.as_bytes());
        sb[64..68].copy_from_slice(&self.data_block_size.to_le_bytes());
        sb[68..72].copy_from_slice(&self.hash_block_size.to_le_bytes());
        sb[72..80].copy_from_slice(&self.data_blocks.to_le_bytes());
        sb[80..82].copy_from_slice(&(self.salt.len() as u16).to_le_bytes());
        sb[88..88 + self.salt.len()].copy_from_slice(&self.salt);
        Ok(sb)
    }
}
