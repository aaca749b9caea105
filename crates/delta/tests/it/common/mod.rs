//! Helpers shared by the integration tests.
#![allow(dead_code)]

use keel_delta::CreateOptions;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// Text-like, compressible data (what literal streams usually hold).
pub fn texty(rng: &mut StdRng, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "keel ", "slot ", "update ", "delta ", "seed ", "image ", "0x7f3a ", "\n", "libssl3 ",
    ];
    let mut v = Vec::with_capacity(len + 16);
    while v.len() < len {
        v.extend_from_slice(WORDS[rng.gen_range(0..WORDS.len())].as_bytes());
    }
    v.truncate(len);
    v
}

/// `old` with typical update edits: flipped bytes (relocations), insertions, deletions and a
/// moved block.
pub fn edited(rng: &mut StdRng, old: &[u8]) -> Vec<u8> {
    let mut new = old.to_vec();
    for _ in 0..(old.len() / 3000).max(1) {
        if new.is_empty() {
            break;
        }
        let at = rng.gen_range(0..new.len());
        new[at] = new[at].wrapping_add(rng.gen_range(1..=255));
    }
    for _ in 0..5 {
        let at = rng.gen_range(0..=new.len());
        let len = rng.gen_range(1..600);
        let ins = texty(rng, len);
        new.splice(at..at, ins);
    }
    for _ in 0..3 {
        if new.len() > 1000 {
            let at = rng.gen_range(0..new.len() - 500);
            new.drain(at..at + rng.gen_range(1..500));
        }
    }
    if new.len() > 20_000 {
        let from = rng.gen_range(0..new.len() - 8_000);
        let block: Vec<u8> = new.drain(from..from + 8_000).collect();
        let to = rng.gen_range(0..new.len());
        new.splice(to..to, block);
    }
    new
}

/// Small segments so that even small tests cover multi-segment deltas.
pub fn small_segments() -> CreateOptions {
    CreateOptions {
        level: 3,
        segment_data: 4096,
        segment_ctrl: 256,
        segment_target: 16 << 10,
        copy_min: 32,
        short_matches: true,
        zstd_frames: true,
    }
}

pub fn make(old: &[u8], new: &[u8], opts: &CreateOptions) -> Vec<u8> {
    let mut delta = Vec::new();
    keel_delta::create(old, new, opts, &mut delta).expect("create");
    delta
}

/// An output device that loses power after `budget` bytes: later writes fail.
pub struct PowerCut {
    pub inner: std::io::Cursor<Vec<u8>>,
    pub budget: usize,
}

impl std::io::Write for PowerCut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.budget == 0 {
            return Err(std::io::Error::other("power cut"));
        }
        let n = buf.len().min(self.budget);
        self.budget -= n;
        self.inner.write(&buf[..n])
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::io::Read for PowerCut {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl std::io::Seek for PowerCut {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}
