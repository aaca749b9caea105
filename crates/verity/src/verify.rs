//! Checking a data image against a hash device and a root hash, top down.

use std::io::Read;

use crate::geometry::Geometry;
use crate::stream::{hash_stream, DataBlocks};
use crate::superblock::Superblock;
use crate::{salted_digest, Error, Result, ALGORITHM, DIGEST_SIZE};

/// What [`verify`] checked.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The hash device's superblock.
    pub superblock: Superblock,
    /// The tree's shape.
    pub geometry: Geometry,
}

/// Checks the hash device's tree against `root_hash`, then every data block of `data` against
/// the tree, and names the first block that does not match (as the kernel would fail its read).
/// `hash_device` is the whole hash device (superblock first); it is small, 1/128 of the data.
pub fn verify(
    data: &mut dyn Read,
    hash_device: &[u8],
    root_hash: &[u8; DIGEST_SIZE],
    threads: usize,
) -> Result<Verified> {
    let superblock = Superblock::parse(hash_device)?;
    if superblock.hash_type != 1 || superblock.algorithm != ALGORITHM {
        return Err(Error::Params(format!(
            "hash type {} with {}: only hash type 1 with sha256 is supported",
            superblock.hash_type, superblock.algorithm
        )));
    }
    let geometry = Geometry::new(superblock.data_blocks, superblock.hash_block_size)?;
    let want = geometry.hash_device_size()?;
    if (hash_device.len() as u64) < want {
        return Err(Error::HashTooShort {
            have: hash_device.len() as u64,
            want,
        });
    }
    let salt = &superblock.salt;
    let hash_block = superblock.hash_block_size as usize;
    let block_at = |index: u64| -> &[u8] {
        let at = index as usize * hash_block;
        &hash_device[at..at + hash_block]
    };
    let digest_in = |level: usize, i: u64| -> &[u8] {
        let per = geometry.hashes_per_block;
        let block = block_at(geometry.levels[level].start_block + i / per);
        let at = (i % per) as usize * DIGEST_SIZE;
        &block[at..at + DIGEST_SIZE]
    };
    if let Some(top) = geometry.levels.last() {
        let actual = salted_digest(salt, block_at(top.start_block));
        if &actual != root_hash {
            return Err(Error::RootHash {
                expected: hex::encode(root_hash),
                actual: hex::encode(actual),
            });
        }
    }
    for level in (0..geometry.levels.len().saturating_sub(1)).rev() {
        let here = geometry.levels[level];
        for i in 0..here.blocks {
            if salted_digest(salt, block_at(here.start_block + i)) != digest_in(level + 1, i) {
                let offset = (here.start_block + i) * hash_block as u64;
                return Err(Error::HashBlock {
                    level,
                    index: i,
                    offset,
                });
            }
        }
    }

    let block = u64::from(superblock.data_block_size);
    let blocks = DataBlocks {
        count: geometry.data_blocks,
        size: superblock.data_block_size,
    };
    hash_stream(data, blocks, salt, threads, |first, batch| {
        for (k, digest) in batch.iter().enumerate() {
            let index = first + k as u64;
            let expected: &[u8] = if geometry.levels.is_empty() {
                root_hash
            } else {
                digest_in(0, index)
            };
            if digest != expected {
                return Err(Error::DataBlock {
                    index,
                    offset: index * block,
                });
            }
        }
        Ok(())
    })?;
    Ok(Verified {
        superblock,
        geometry,
    })
}
