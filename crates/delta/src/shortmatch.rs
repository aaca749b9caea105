//! Second matching pass over the literal (INSERT) runs the bsdiff scan left: short exact matches
//! (8 bytes and up) anywhere in the seed, taken only where a COPY op costs less than the literal
//! bytes it replaces.
//!
//! This matters for images whose changed parts are compressed (e.g. zstd squashfs): a rebuilt
//! block shares many 8–40-byte pieces with the old one (identical sequences and raw literals),
//! which the main index (16-byte windows) misses and which zstd cannot shrink as literals.
//!
//! The index is built over the *new* literal positions (memory proportional to the changed bytes,
//! not to the seed), and the seed is scanned once against it.

use crate::matcher::{common_prefix, load64};

/// Shortest match considered. Measured on the compressed squashfs pair (docs/benchmarks.md): 6
/// saves another 0.08 % at twice the build time, 5 another 0.03 % at five times.
pub(crate) const SHORT_MIN: usize = 8;
/// The bytes of a window as an integer.
const WINDOW_MASK: u64 = if SHORT_MIN >= 8 {
    u64::MAX
} else {
    (1u64 << (8 * SHORT_MIN)) - 1
};

/// The `SHORT_MIN` bytes at `at` (which must be in range).
#[inline]
fn window(data: &[u8], at: usize) -> u64 {
    if at + 8 <= data.len() {
        load64(data, at) & WINDOW_MASK
    } else {
        let mut b = [0u8; 8];
        b[..SHORT_MIN].copy_from_slice(&data[at..at + SHORT_MIN]);
        u64::from_le_bytes(b)
    }
}

/// Candidates of one hash bucket examined per seed position.
const MAX_CHAIN: usize = 8;
/// Bytes a short COPY must save beyond its control cost (the control stream compresses a little,
/// literal estimates are rough).
const MARGIN: f64 = 1.0;
/// A match is extended at most this far (bounds the work on literal runs that do exist in the
/// seed; the next position picks the match up again).
const MAX_EXTEND: usize = 4096;
/// Literal positions indexed at most (≈ 20 bytes of memory each).
const MAX_POSITIONS: usize = 1 << 28;

/// A literal run of `new` (`start..end`) with the seed cursor before it and the seed offset the
/// op after it seeks to (which a COPY inside the run moves away from).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gap {
    pub start: usize,
    pub end: usize,
    pub cursor_in: u64,
    pub next_old: Option<u64>,
}

/// A chosen COPY inside a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShortCopy {
    pub new_pos: usize,
    pub old_pos: u64,
    pub len: usize,
}

#[inline]
fn hash8(w: u64) -> u64 {
    let h = w.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 29)
}

/// Bytes of the zigzag LEB128 varint of `v`.
fn seek_cost(v: i64) -> u32 {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - z.max(1).leading_zeros()).div_ceil(7)
}

/// Estimated compressed bytes per literal byte of `data` (zstd level 1, ≥ 0.05).
fn literal_ratio(data: &[u8]) -> f64 {
    if data.len() < 256 {
        return 1.0;
    }
    match zstd::bulk::compress(data, 1) {
        Ok(c) => (c.len() as f64 / data.len() as f64).clamp(0.05, 1.0),
        Err(_) => 1.0,
    }
}

/// Finds worthwhile short matches inside each gap; returns them per gap, in order.
pub(crate) fn find(old: &[u8], new: &[u8], gaps: &[Gap]) -> Vec<Vec<ShortCopy>> {
    let mut result = vec![Vec::new(); gaps.len()];
    if old.len() < SHORT_MIN {
        return result;
    }
    // Literal positions, numbered densely; a gap's positions are contiguous from `first[g]`.
    let mut first = Vec::with_capacity(gaps.len());
    let mut positions: Vec<u32> = Vec::new();
    let mut pos_base: Vec<(usize, usize)> = Vec::new(); // (first number, gap) per gap with positions
    for (g, gap) in gaps.iter().enumerate() {
        first.push(positions.len());
        if gap.end - gap.start < SHORT_MIN || gap.end > u32::MAX as usize {
            continue;
        }
        if positions.len() + (gap.end - gap.start) > MAX_POSITIONS {
            break;
        }
        pos_base.push((positions.len(), g));
        positions.extend((gap.start..=gap.end - SHORT_MIN).map(|p| p as u32));
    }
    if positions.is_empty() {
        return result;
    }
    let count = positions.len();
    let bits = (usize::BITS - count.leading_zeros()).clamp(10, 30);
    let shift = 64 - bits;
    let mut head = vec![0u32; 1 << bits];
    let mut chain = vec![0u32; count];
    for (k, &p) in positions.iter().enumerate() {
        let p = p as usize;
        let w = window(new, p);
        // Runs would flood one bucket: index only their first position.
        if k > 0 && positions[k - 1] as usize + 1 == p && window(new, p - 1) == w {
            continue;
        }
        let b = (hash8(w) >> shift) as usize;
        chain[k] = head[b];
        head[b] = (k + 1) as u32;
    }
    // gap end per position number, to bound the extension.
    let gap_of = |k: usize| -> usize {
        let i = pos_base.partition_point(|&(f, _)| f <= k) - 1;
        pos_base[i].1
    };
    let mut best_old = vec![0u64; count];
    let mut best_len = vec![0u32; count];
    for i in 0..=old.len() - SHORT_MIN {
        let w = window(old, i);
        if i >= 4 && (w == window(old, i - 1) || w == window(old, i - 2) || w == window(old, i - 4))
        {
            continue;
        }
        let mut entry = head[(hash8(w) >> shift) as usize];
        let mut depth = 0;
        while entry != 0 && depth < MAX_CHAIN {
            let k = entry as usize - 1;
            let p = positions[k] as usize;
            if window(new, p) == w {
                let end = gaps[gap_of(k)].end.min(p + MAX_EXTEND);
                let o_end = old.len().min(i + MAX_EXTEND);
                let len =
                    SHORT_MIN + common_prefix(&old[i + SHORT_MIN..o_end], &new[p + SHORT_MIN..end]);
                if len as u32 > best_len[k] {
                    best_len[k] = len as u32;
                    best_old[k] = i as u64;
                }
            }
            entry = chain[k];
            depth += 1;
        }
    }
    drop(head);
    drop(chain);
    let global_ratio = {
        let mut sample = Vec::new();
        for gap in gaps {
            if sample.len() >= 4 << 20 {
                break;
            }
            sample.extend_from_slice(&new[gap.start..gap.end]);
        }
        literal_ratio(&sample)
    };
    for &(base, g) in &pos_base {
        let gap = gaps[g];
        let ratio = if gap.end - gap.start >= 16 << 10 {
            literal_ratio(&new[gap.start..gap.end])
        } else {
            global_ratio
        };
        let mut cursor = gap.cursor_in as i64;
        let mut p = gap.start;
        while p + SHORT_MIN <= gap.end {
            let k = base + (p - gap.start);
            let len = best_len[k] as usize;
            if len >= SHORT_MIN {
                let q = best_old[k] as i64;
                let len_word = if len < 32 { 1 } else { 2 };
                // The COPY op, the INSERT op the split adds, and the change to the next op's seek.
                let mut cost = len_word + seek_cost(q - cursor) + 1;
                if let Some(next) = gap.next_old {
                    let next = next as i64;
                    cost = (cost + seek_cost(next - q - len as i64))
                        .saturating_sub(seek_cost(next - cursor));
                }
                if len as f64 * ratio > f64::from(cost) + MARGIN {
                    result[g].push(ShortCopy {
                        new_pos: p,
                        old_pos: q as u64,
                        len,
                    });
                    cursor = q + len as i64;
                    p += len;
                    continue;
                }
            }
            p += 1;
        }
    }
    result
}
