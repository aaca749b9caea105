//! Building a hash device: one streaming pass over the data image.

use std::io::{Read, Write};

use rand::RngCore;

use crate::geometry::Geometry;
use crate::stream::{hash_stream, DataBlocks};
use crate::superblock::{block_size_ok, Superblock};
use crate::{salted_digest, Error, Result, ALGORITHM, DEFAULT_BLOCK_SIZE, DIGEST_SIZE};

/// What `veritysetup format` takes as options.
#[derive(Debug, Clone)]
pub struct Params {
    /// Data block size in bytes (`--data-block-size`).
    pub data_block_size: u32,
    /// Hash block size in bytes (`--hash-block-size`).
    pub hash_block_size: u32,
    /// Salt (`--salt`); veritysetup's default is 32 random bytes.
    pub salt: Vec<u8>,
    /// UUID written into the superblock (`--uuid`).
    pub uuid: uuid::Uuid,
    /// Threads hashing data blocks (the pass is CPU bound once the image is cached).
    pub threads: usize,
}

impl Params {
    /// veritysetup's defaults: 4 KiB blocks, a random 32-byte salt and a random UUID.
    pub fn random() -> Params {
        let mut salt = vec![0u8; 32];
        rand::thread_rng().fill_bytes(&mut salt);
        Params {
            data_block_size: DEFAULT_BLOCK_SIZE,
            hash_block_size: DEFAULT_BLOCK_SIZE,
            salt,
            uuid: uuid::Uuid::new_v4(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// The result of [`format`].
#[derive(Debug, Clone)]
pub struct Formatted {
    /// The root hash to give the kernel (`roothash=` / `systemd.verity_root_hash`).
    pub root_hash: [u8; DIGEST_SIZE],
    /// The superblock written at the start of the hash device.
    pub superblock: Superblock,
    /// The tree's shape.
    pub geometry: Geometry,
}

/// Reads `data_size` bytes of `data` once and writes the superblock and hash tree to `hash`,
/// byte for byte what `veritysetup format` writes with the same salt and UUID.
///
/// Unlike veritysetup, a size that is not a whole number of data blocks is refused: the tail
/// would not be protected.
pub fn format(
    data: &mut dyn Read,
    data_size: u64,
    params: &Params,
    hash: &mut dyn Write,
) -> Result<Formatted> {
    for (what, size) in [
        ("data", params.data_block_size),
        ("hash", params.hash_block_size),
    ] {
        if !block_size_ok(size) {
            return Err(Error::Params(format!(
                "{what} block size {size} is not a power of two from 512 to 524288"
            )));
        }
    }
    let block = u64::from(params.data_block_size);
    if !data_size.is_multiple_of(block) {
        return Err(Error::Params(format!(
            "the image is {data_size} bytes, not a whole number of {block}-byte data blocks: its last {} \
             bytes would not be protected; pad the image (e.g. truncate -s %{block})",
            data_size % block
        )));
    }
    let geometry = Geometry::new(data_size / block, params.hash_block_size)?;
    let superblock = Superblock {
        hash_type: 1,
        uuid: params.uuid,
        algorithm: ALGORITHM.to_string(),
        data_block_size: params.data_block_size,
        hash_block_size: params.hash_block_size,
        data_blocks: geometry.data_blocks,
        salt: params.salt.clone(),
    };
    let header = superblock.to_bytes()?;

    let digests = hash_data(data, &geometry, params)?;
    // One data block makes no tree: the root hash is that block's digest.
    let single = digests[0];
    let levels = build_levels(digests, &geometry, &params.salt);
    let root_hash = levels
        .last()
        .map_or(single, |top| salted_digest(&params.salt, top));

    let hash_block = params.hash_block_size as usize;
    let mut first = vec![0u8; hash_block];
    first[..header.len()].copy_from_slice(&header);
    let write = |bytes: &[u8], hash: &mut dyn Write| {
        hash.write_all(bytes)
            .map_err(Error::io("writing the hash device"))
    };
    write(&first, hash)?;
    for level in levels.iter().rev() {
        write(level, hash)?;
    }
    hash.flush().map_err(Error::io("writing the hash device"))?;
    Ok(Formatted {
        root_hash,
        superblock,
        geometry,
    })
}

/// The digest of every data block, hashed `params.threads` ways.
fn hash_data(
    data: &mut dyn Read,
    geometry: &Geometry,
    params: &Params,
) -> Result<Vec<[u8; DIGEST_SIZE]>> {
    let total = usize::try_from(geometry.data_blocks)
        .map_err(|_| Error::Params("too many data blocks for this machine's memory".into()))?;
    let mut digests = vec![[0u8; DIGEST_SIZE]; total];
    let blocks = DataBlocks {
        count: geometry.data_blocks,
        size: params.data_block_size,
    };
    hash_stream(
        data,
        blocks,
        &params.salt,
        params.threads,
        |first, batch| {
            let first = first as usize;
            digests[first..first + batch.len()].copy_from_slice(batch);
            Ok(())
        },
    )?;
    Ok(digests)
}

/// Lays digests into hash blocks (zero padded), level by level up to one block. Returns each
/// level's bytes, index 0 = the level hashing data.
fn build_levels(
    mut digests: Vec<[u8; DIGEST_SIZE]>,
    geometry: &Geometry,
    salt: &[u8],
) -> Vec<Vec<u8>> {
    let hash_block = geometry.hash_block_size as usize;
    let per_block = geometry.hashes_per_block as usize;
    let mut levels = Vec::with_capacity(geometry.levels.len());
    for level in &geometry.levels {
        let mut bytes = vec![0u8; level.blocks as usize * hash_block];
        for (i, digest) in digests.iter().enumerate() {
            let at = (i / per_block) * hash_block + (i % per_block) * DIGEST_SIZE;
            bytes[at..at + DIGEST_SIZE].copy_from_slice(digest);
        }
        digests = bytes
            .chunks_exact(hash_block)
            .map(|b| salted_digest(salt, b))
            .collect();
        levels.push(bytes);
    }
    levels
}
