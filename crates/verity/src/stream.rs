//! The one pass over the data image that building and checking a tree share: read a batch of
//! data blocks, hash it on several threads, hand the digests on.

use std::io::Read;

use crate::{salted_digest, Error, Result, DIGEST_SIZE};

/// Data read and hashed per step: large enough for cheap thread hand-offs, small enough to
/// stay in cache-friendly memory.
const BATCH: usize = 8 << 20;

/// How many data blocks of which size a stream holds (from the image size or the superblock).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DataBlocks {
    pub count: u64,
    pub size: u32,
}

/// Reads `blocks` from `data` batch by batch, hashes each batch `threads` ways and gives `each`
/// the index of its first block and its digests. A stream that ends early is
/// [`Error::DataTooShort`], counting the whole blocks it did hold.
pub(crate) fn hash_stream(
    data: &mut dyn Read,
    blocks: DataBlocks,
    salt: &[u8],
    threads: usize,
    mut each: impl FnMut(u64, &[[u8; DIGEST_SIZE]]) -> Result<()>,
) -> Result<()> {
    let block = blocks.size as usize;
    // Buffers no larger than the image (small images, and counts from an untrusted
    // superblock, stay cheap).
    let per_batch = (BATCH / block).clamp(1, blocks.count.min(u64::from(u32::MAX)) as usize);
    let mut buf = vec![0u8; per_batch * block];
    let mut digests = vec![[0u8; DIGEST_SIZE]; per_batch];
    let mut done = 0u64;
    while done < blocks.count {
        let n = (per_batch as u64).min(blocks.count - done) as usize;
        let bytes = &mut buf[..n * block];
        let got =
            read_full(data, bytes).map_err(Error::io(format!("reading data block {done}")))?;
        if got < bytes.len() {
            return Err(Error::DataTooShort {
                have: done + (got / block) as u64,
                want: blocks.count,
                block_size: blocks.size,
            });
        }
        hash_blocks(bytes, block, salt, &mut digests[..n], threads);
        each(done, &digests[..n])?;
        done += n as u64;
    }
    Ok(())
}

/// Hashes consecutive `block`-sized pieces of `bytes` into `out`, split across threads.
fn hash_blocks(
    bytes: &[u8],
    block: usize,
    salt: &[u8],
    out: &mut [[u8; DIGEST_SIZE]],
    threads: usize,
) {
    let n = out.len();
    let per_thread = n.div_ceil(threads.clamp(1, 16)).max(1);
    if per_thread >= n {
        for (digest, chunk) in out.iter_mut().zip(bytes.chunks_exact(block)) {
            *digest = salted_digest(salt, chunk);
        }
        return;
    }
    std::thread::scope(|scope| {
        for (outs, ins) in out
            .chunks_mut(per_thread)
            .zip(bytes.chunks(per_thread * block))
        {
            scope.spawn(move || {
                for (digest, chunk) in outs.iter_mut().zip(ins.chunks_exact(block)) {
                    *digest = salted_digest(salt, chunk);
                }
            });
        }
    });
}

/// Reads until `buf` is full or the stream ends; returns the bytes read (short only at the end).
fn read_full(data: &mut dyn std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match data.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
