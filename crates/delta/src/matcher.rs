//! bsdiff-style matching of `new` against all of `old`, with a sampled hash index instead of a
//! suffix array (memory ≈ old/2 bytes of index instead of 4–8 × old).
//!
//! The scan keeps a current *alignment* (old offset − new offset). Like bsdiff it switches to a new
//! alignment only when an exact match there beats the current alignment by more than 8 bytes,
//! and it extends each alignment approximately (forward and backward) while more than half of
//! the bytes agree: those stretches become ADD ops whose byte-wise differences are mostly zeros
//! and compress extremely well (relocated code, shifted pointers, changed version strings).

/// Bytes hashed per index entry: exact matches shorter than `WINDOW + SAMPLE - 1` may be missed
/// unless they continue the current alignment.
const WINDOW: usize = 16;
/// Every `SAMPLE`-th position of `old` is indexed; every position of `new` is looked up.
const SAMPLE: usize = 2;
/// Candidates examined per lookup.
const MAX_CHAIN: usize = 24;
/// A found match at least this long is taken even if the current alignment nearly matches it
/// (bounds the rescanning work bsdiff does on long near-equal matches).
const LONG_MATCH: usize = 256;

/// One region of `new` as bsdiff describes it: `diff_len` bytes aligned with `old[old_pos..]`
/// (to be encoded as COPY/ADD), then `extra_len` literal bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Region {
    pub new_pos: usize,
    pub old_pos: usize,
    pub diff_len: usize,
    pub extra_len: usize,
}

struct OldIndex {
    shift: u32,
    head: Vec<u32>,
    chain: Vec<u32>,
}

#[inline]
pub(crate) fn load64(data: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(data[at..at + 8].try_into().expect("8-byte range"))
}

#[inline]
fn window_hash(data: &[u8], at: usize) -> u64 {
    let mut h = load64(data, at).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h = (h.rotate_left(31) ^ load64(data, at + 8)).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    h ^ (h >> 29)
}

impl OldIndex {
    fn build(old: &[u8]) -> Self {
        let samples = if old.len() >= WINDOW {
            (old.len() - WINDOW) / SAMPLE + 1
        } else {
            0
        };
        let bits = (usize::BITS - samples.max(1).leading_zeros()).clamp(10, 30);
        let mut head = vec![0u32; 1 << bits];
        let mut chain = vec![0u32; samples];
        let shift = 64 - bits;
        for (i, link) in chain.iter_mut().enumerate() {
            let p = i * SAMPLE;
            // Runs (zeros, fill patterns) would flood their bucket: index only the run start.
            if p >= SAMPLE && old[p..p + WINDOW] == old[p - SAMPLE..p - SAMPLE + WINDOW] {
                continue;
            }
            let b = (window_hash(old, p) >> shift) as usize;
            *link = head[b];
            head[b] = (i + 1) as u32;
        }
        OldIndex { shift, head, chain }
    }
}

/// Length of the common prefix of `a` and `b`.
#[inline]
pub(crate) fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = load64(a, i) ^ load64(b, i);
        if x != 0 {
            return i + (x.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

pub(crate) struct Matcher<'a> {
    old: &'a [u8],
    new: &'a [u8],
    index: OldIndex,
}

impl<'a> Matcher<'a> {
    /// Largest old image supported: sample numbers are u32.
    pub(crate) const MAX_OLD: u64 = (u32::MAX as u64 - 1) * SAMPLE as u64;

    pub(crate) fn new(old: &'a [u8], new: &'a [u8]) -> Self {
        Matcher {
            old,
            new,
            index: OldIndex::build(old),
        }
    }

    /// Longest exact match of `new[scan..]` in `old`, trying the current alignment first.
    fn search(&self, scan: usize, current: Option<usize>) -> (usize, usize) {
        let (old, new) = (self.old, self.new);
        let mut best = (0usize, 0usize);
        if let Some(p) = current {
            if p < old.len() {
                best = (p, common_prefix(&old[p..], &new[scan..]));
            }
        }
        if scan + WINDOW <= new.len() {
            let b = (window_hash(new, scan) >> self.index.shift) as usize;
            let mut entry = self.index.head[b];
            let mut depth = 0;
            while entry != 0 && depth < MAX_CHAIN {
                let p = (entry as usize - 1) * SAMPLE;
                let l = best.1;
                // Only a candidate that also matches at byte `l` can beat the best one.
                if Some(p) != current
                    && p + l < old.len()
                    && scan + l < new.len()
                    && old[p + l] == new[scan + l]
                    && old[p] == new[scan]
                {
                    let len = common_prefix(&old[p..], &new[scan..]);
                    if len > best.1 {
                        best = (p, len);
                    }
                }
                entry = self.index.chain[entry as usize - 1];
                depth += 1;
            }
        }
        best
    }

    /// Runs bsdiff's scan and returns the regions covering all of `new` in order.
    pub(crate) fn regions(&self) -> Vec<Region> {
        let (old, new) = (self.old, self.new);
        let (oldsize, newsize) = (old.len() as i64, new.len());
        let mut regions = Vec::new();
        let (mut scan, mut len, mut pos) = (0usize, 0usize, 0usize);
        let (mut lastscan, mut lastpos, mut lastoffset) = (0usize, 0usize, 0i64);
        let old_at = |i: i64| -> Option<u8> {
            if i >= 0 && i < oldsize {
                Some(old[i as usize])
            } else {
                None
            }
        };
        while scan < newsize {
            let mut oldscore: usize = 0;
            scan += len;
            let mut scsc = scan;
            while scan < newsize {
                let current = scan as i64 + lastoffset;
                let cur = if current >= 0 && current < oldsize {
                    Some(current as usize)
                } else {
                    None
                };
                (pos, len) = self.search(scan, cur);
                while scsc < scan + len {
                    if old_at(scsc as i64 + lastoffset) == Some(new[scsc]) {
                        oldscore += 1;
                    }
                    scsc += 1;
                }
                if (len == oldscore && len != 0)
                    || len > oldscore + 8
                    || (len >= LONG_MATCH && len > oldscore)
                {
                    break;
                }
                if old_at(scan as i64 + lastoffset) == Some(new[scan]) {
                    oldscore = oldscore.saturating_sub(1);
                }
                scan += 1;
            }
            if len != oldscore || scan == newsize {
                // Forward extension of the previous alignment.
                let (mut s, mut best_f, mut lenf) = (0i64, 0i64, 0usize);
                let mut i = 0usize;
                while lastscan + i < scan && lastpos + i < old.len() {
                    if old[lastpos + i] == new[lastscan + i] {
                        s += 1;
                    }
                    i += 1;
                    if s * 2 - i as i64 > best_f * 2 - lenf as i64 {
                        best_f = s;
                        lenf = i;
                    }
                }
                // Backward extension of the new match.
                let mut lenb = 0usize;
                if scan < newsize {
                    let (mut s, mut best_b) = (0i64, 0i64);
                    let mut i = 1usize;
                    while scan >= lastscan + i && pos >= i {
                        if old[pos - i] == new[scan - i] {
                            s += 1;
                        }
                        if s * 2 - i as i64 > best_b * 2 - lenb as i64 {
                            best_b = s;
                            lenb = i;
                        }
                        i += 1;
                    }
                }
                // Resolve an overlap between the two extensions.
                if lastscan + lenf > scan - lenb {
                    let overlap = (lastscan + lenf) - (scan - lenb);
                    let (mut s, mut best_s, mut lens) = (0i64, 0i64, 0usize);
                    for i in 0..overlap {
                        if new[lastscan + lenf - overlap + i] == old[lastpos + lenf - overlap + i] {
                            s += 1;
                        }
                        if new[scan - lenb + i] == old[pos - lenb + i] {
                            s -= 1;
                        }
                        if s > best_s {
                            best_s = s;
                            lens = i + 1;
                        }
                    }
                    lenf = lenf + lens - overlap;
                    lenb -= lens;
                }
                regions.push(Region {
                    new_pos: lastscan,
                    old_pos: lastpos,
                    diff_len: lenf,
                    extra_len: (scan - lenb) - (lastscan + lenf),
                });
                lastscan = scan - lenb;
                lastpos = pos - lenb;
                lastoffset = pos as i64 - scan as i64;
            }
        }
        regions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers(regions: &[Region], new_len: usize) {
        let mut at = 0;
        for r in regions {
            assert_eq!(r.new_pos, at);
            at += r.diff_len + r.extra_len;
        }
        assert_eq!(at, new_len);
    }

    #[test]
    fn finds_relocated_block_and_covers_everything() {
        let old: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut new = b"fresh header bytes".to_vec();
        new.extend_from_slice(&old[10_000..15_000]);
        new.extend_from_slice(&old[0..3_000]);
        let m = Matcher::new(&old, &new);
        let regions = m.regions();
        covers(&regions, new.len());
        let copied: usize = regions.iter().map(|r| r.diff_len).sum();
        assert!(copied >= 7_900, "aligned bytes {copied}");
    }

    #[test]
    fn empty_inputs() {
        covers(&Matcher::new(b"", b"").regions(), 0);
        covers(&Matcher::new(b"abc", b"").regions(), 0);
        covers(&Matcher::new(b"", b"abcdef").regions(), 6);
    }
}
