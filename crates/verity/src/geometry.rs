//! Where each level of a hash tree lies on the hash device (cryptsetup `hash_levels`).
//!
//! Level 0 holds one digest per data block, level i+1 one digest per hash block of level i,
//! up to a level of a single block; the root hash is the digest of that top block (or, for a
//! single data block and no levels, of the data block itself). On the device, the top level
//! comes first, right after the superblock's hash block.

use crate::{Error, Result, DIGEST_SIZE};

/// One level of the tree on the hash device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// First hash block of the level, counted from the start of the hash device.
    pub start_block: u64,
    /// Number of hash blocks in the level.
    pub blocks: u64,
}

/// The shape of a tree: levels (index 0 hashes the data) and the hash device's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// Data blocks covered.
    pub data_blocks: u64,
    /// Hash block size in bytes.
    pub hash_block_size: u32,
    /// Digests per hash block (a power of two).
    pub hashes_per_block: u64,
    /// Levels, 0 = the one hashing data blocks. Empty when there is one data block.
    pub levels: Vec<Level>,
}

impl Geometry {
    /// The geometry of a SHA-256 tree over `data_blocks` blocks with a superblock in the hash
    /// device's first hash block.
    pub fn new(data_blocks: u64, hash_block_size: u32) -> Result<Geometry> {
        if data_blocks == 0 {
            return Err(Error::Params(
                "the data image holds no whole data block".into(),
            ));
        }
        let per_block_bits = (u64::from(hash_block_size) / DIGEST_SIZE as u64).ilog2();
        let mut count = 0u32;
        while per_block_bits * count < 64 && (data_blocks - 1) >> (per_block_bits * count) != 0 {
            count += 1;
        }
        let mut levels = vec![
            Level {
                start_block: 0,
                blocks: 0
            };
            count as usize
        ];
        let mut position: u64 = 1; // the superblock's hash block
        for i in (0..count).rev() {
            let shift = (i + 1) * per_block_bits;
            // ceil(data_blocks / 2^shift) without overflow.
            let blocks = if shift >= 64 {
                1
            } else {
                ((data_blocks - 1) >> shift) + 1
            };
            levels[i as usize] = Level {
                start_block: position,
                blocks,
            };
            position = position
                .checked_add(blocks)
                .ok_or_else(|| Error::Params("hash tree larger than 2^64 blocks".into()))?;
        }
        Ok(Geometry {
            data_blocks,
            hash_block_size,
            hashes_per_block: 1 << per_block_bits,
            levels,
        })
    }

    /// Total hash blocks on the device, the superblock's included.
    pub fn hash_blocks(&self) -> u64 {
        1 + self.levels.iter().map(|l| l.blocks).sum::<u64>()
    }

    /// Size of the hash device in bytes.
    pub fn hash_device_size(&self) -> Result<u64> {
        self.hash_blocks()
            .checked_mul(u64::from(self.hash_block_size))
            .ok_or_else(|| Error::Params("hash device larger than 2^64 bytes".into()))
    }
}
