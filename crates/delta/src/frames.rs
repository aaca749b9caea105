//! The zstd-frame transform of a static delta (docs/delta-format.md, "zstd frames").
//!
//! Compressed images (squashfs with `-comp zstd`) store every block as a standalone zstd frame;
//! a small change to a file changes all of its compressed block, so a byte-level delta of the
//! images is nearly as large as the changed blocks. Like Android's Puffin does for deflate, the
//! encoder replaces every frame it can *reproduce* (decompress, recompress at the detected level,
//! get the identical bytes back) by its content, diffs the expanded images, and records the frame
//! layout; the device expands its seed on the fly, runs the ops, and recompresses each frame.
//! Reproduction needs the same zstd library generation, so the delta names it and a decoder of
//! another version refuses the delta before writing anything.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};
use zstd::zstd_safe;

use crate::apply::SeedRead;
use crate::format::{compressed_limit, DeltaHeader};
use crate::{varint, DeltaError};

/// First 4 bytes of the frame layout block.
pub const LAYOUT_MAGIC: [u8; 4] = *b"ZFRM";
/// Size of the layout's fixed header in bytes, CRC-32 included (the entries follow).
pub const LAYOUT_HEADER_LEN: usize = 40;
/// Largest content of one frame the transform handles (squashfs blocks are ≤ 1 MiB).
pub const MAX_FRAME_CONTENT: u64 = 4 << 20;
/// Most frames per side (seed, target): bounds the decoder's tables (32 B per frame).
pub const MAX_LAYOUT_FRAMES: u32 = 1 << 17;
/// A layout entry is at most 4 varints.
const MAX_ENTRY_BYTES: u64 = 40;
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Levels the detector tries first (mksquashfs's default 15, then common choices).
const LIKELY_LEVELS: [i32; 5] = [15, 19, 3, 9, 22];
/// Frames on which the detector may try every level 1..=22 before settling for the likely ones.
const FULL_SEARCH_FRAMES: u32 = 2;
/// Frames the detector tries before giving up on finding a level.
const DETECT_FRAMES: u32 = 16;

/// `ZSTD_versionNumber()` of the zstd library this build recompresses with (e.g. 10505).
pub fn zstd_version() -> u32 {
    zstd_safe::version_number()
}

/// A zstd frame of the seed: `comp_len` bytes at `offset` that decompress to `content_len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedFrame {
    /// Offset of the frame in the stored seed, in bytes.
    pub offset: u64,
    /// Size of the frame as stored, in bytes.
    pub comp_len: u64,
    /// Size of its decompressed content in bytes, 1..=[`MAX_FRAME_CONTENT`].
    pub content_len: u64,
}

/// A zstd frame of the target: `ZSTD_compress(content, level)` is the `comp_len` bytes at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetFrame {
    /// Offset of the frame in the real (stored) target, in bytes.
    pub offset: u64,
    /// zstd compression level (1..=22) that reproduces the frame.
    pub level: i32,
    /// Size of the frame in bytes; the decoder's recompression must give exactly this many.
    pub comp_len: u64,
    /// Size of its content in bytes, 1..=[`MAX_FRAME_CONTENT`].
    pub content_len: u64,
}

/// The fixed-size start of a frame layout block: what a reader needs without the entries (e.g.
/// the zstd version a delta recompresses with, read from a bundle member's first bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutHeader {
    /// `ZSTD_versionNumber()` of the library that made the frames.
    pub zstd_version: u32,
    /// Size of the seed with its frames replaced by their content, in bytes.
    pub seed_expanded: u64,
    /// Size of the target with its frames replaced by their content, in bytes.
    pub target_expanded: u64,
    /// Number of seed frame entries, at most [`MAX_LAYOUT_FRAMES`].
    pub seed_count: u32,
    /// Number of target frame entries, at most [`MAX_LAYOUT_FRAMES`].
    pub target_count: u32,
    /// Bytes of entries that follow (then a CRC-32 of them).
    pub body_len: u32,
}

impl LayoutHeader {
    /// Parses and checks (magic, CRC, limits) a layout header.
    pub fn parse(h: &[u8; LAYOUT_HEADER_LEN]) -> Result<Self, DeltaError> {
        if h[0..4] != LAYOUT_MAGIC {
            return Err(DeltaError::Corrupt(
                "zstd frame layout magic is not ZFRM".into(),
            ));
        }
        if le32(h, 36) != crc32fast::hash(&h[..36]) {
            return Err(DeltaError::HeaderChecksum("zstd frame layout header"));
        }
        let header = LayoutHeader {
            zstd_version: le32(h, 4),
            seed_expanded: le64(h, 8),
            target_expanded: le64(h, 16),
            seed_count: le32(h, 24),
            target_count: le32(h, 28),
            body_len: le32(h, 32),
        };
        for (what, n) in [
            ("seed frame count", header.seed_count),
            ("target frame count", header.target_count),
        ] {
            if n > MAX_LAYOUT_FRAMES {
                return Err(DeltaError::Limit {
                    what,
                    value: n.into(),
                    limit: MAX_LAYOUT_FRAMES.into(),
                });
            }
        }
        let body_limit =
            (u64::from(header.seed_count) + u64::from(header.target_count)) * MAX_ENTRY_BYTES;
        if u64::from(header.body_len) > body_limit {
            return Err(DeltaError::Limit {
                what: "zstd frame layout body",
                value: header.body_len.into(),
                limit: body_limit,
            });
        }
        Ok(header)
    }
}

/// The frame layout block that follows the header of a delta with the zstd-frame flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameLayout {
    /// `ZSTD_versionNumber()` of the encoder; the decoder must have the same.
    pub zstd_version: u32,
    /// Size of the seed with its frames replaced by their content. The ops read the stored seed
    /// followed by this expanded seed.
    pub seed_expanded: u64,
    /// Size of the target with its frames replaced by their content (what the ops produce).
    pub target_expanded: u64,
    /// The seed's frames the ops may read expanded, in offset order, non-overlapping.
    pub seed: Vec<SeedFrame>,
    /// The target's reproducible frames the decoder recompresses, in offset order,
    /// non-overlapping.
    pub target: Vec<TargetFrame>,
}

fn expanded_size<'a>(raw: u64, frames: impl Iterator<Item = (u64, u64)> + 'a) -> Option<u64> {
    let mut size = raw;
    for (comp, content) in frames {
        size = size.checked_sub(comp)?.checked_add(content)?;
    }
    Some(size)
}

impl FrameLayout {
    /// The layout block as written after the delta header: fixed header, varint entries
    /// (offsets as gaps), CRC-32 of the entries. Frames must be sorted and non-overlapping.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let mut end = 0u64;
        for f in &self.seed {
            varint::put_u64(&mut body, f.offset - end);
            varint::put_u64(&mut body, f.comp_len);
            varint::put_u64(&mut body, f.content_len);
            end = f.offset + f.comp_len;
        }
        end = 0;
        for f in &self.target {
            varint::put_u64(&mut body, f.offset - end);
            varint::put_i64(&mut body, i64::from(f.level));
            varint::put_u64(&mut body, f.comp_len);
            varint::put_u64(&mut body, f.content_len);
            end = f.offset + f.comp_len;
        }
        let mut b = Vec::with_capacity(LAYOUT_HEADER_LEN + body.len() + 4);
        b.extend_from_slice(&LAYOUT_MAGIC);
        b.extend_from_slice(&self.zstd_version.to_le_bytes());
        b.extend_from_slice(&self.seed_expanded.to_le_bytes());
        b.extend_from_slice(&self.target_expanded.to_le_bytes());
        b.extend_from_slice(&(self.seed.len() as u32).to_le_bytes());
        b.extend_from_slice(&(self.target.len() as u32).to_le_bytes());
        b.extend_from_slice(&(body.len() as u32).to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b.extend_from_slice(&body);
        b.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        b
    }

    /// Reads and checks the layout block (after the delta header). Does not check the zstd
    /// version (see [`FrameLayout::check_version`]).
    pub fn read(delta: &mut impl Read, header: &DeltaHeader) -> Result<Self, DeltaError> {
        let mut h = [0u8; LAYOUT_HEADER_LEN];
        read_exact_or(delta, &mut h, "zstd frame layout header")?;
        let LayoutHeader {
            zstd_version,
            seed_expanded,
            target_expanded,
            seed_count,
            target_count,
            body_len,
        } = LayoutHeader::parse(&h)?;
        let mut body = vec![0u8; body_len as usize];
        read_exact_or(delta, &mut body, "zstd frame layout")?;
        let mut crc = [0u8; 4];
        read_exact_or(delta, &mut crc, "zstd frame layout checksum")?;
        if u32::from_le_bytes(crc) != crc32fast::hash(&body) {
            return Err(DeltaError::HeaderChecksum("zstd frame layout"));
        }

        let mut pos = 0usize;
        let bad = |what: &str| DeltaError::Corrupt(format!("zstd frame layout: {what}"));
        let next = |pos: &mut usize| {
            varint::get_u64(&body, pos).ok_or_else(|| bad("bad varint in an entry"))
        };
        let mut seed = Vec::with_capacity(seed_count as usize);
        let mut end = 0u64;
        for i in 0..seed_count {
            let gap = next(&mut pos)?;
            let comp_len = next(&mut pos)?;
            let content_len = next(&mut pos)?;
            let offset =
                checked_frame(i, "seed", end, gap, comp_len, content_len, header.seed_size)?;
            end = offset + comp_len;
            seed.push(SeedFrame {
                offset,
                comp_len,
                content_len,
            });
        }
        let mut target = Vec::with_capacity(target_count as usize);
        end = 0;
        for i in 0..target_count {
            let gap = next(&mut pos)?;
            let level = varint::get_i64(&body, &mut pos).ok_or_else(|| bad("bad level varint"))?;
            let comp_len = next(&mut pos)?;
            let content_len = next(&mut pos)?;
            let level = i32::try_from(level)
                .ok()
                .filter(|l| (1..=22).contains(l))
                .ok_or_else(|| bad(&format!("target frame {i}: level {level} not in 1..=22")))?;
            let offset = checked_frame(
                i,
                "target",
                end,
                gap,
                comp_len,
                content_len,
                header.target_size,
            )?;
            end = offset + comp_len;
            target.push(TargetFrame {
                offset,
                level,
                comp_len,
                content_len,
            });
        }
        if pos != body.len() {
            return Err(bad("bytes left after the last entry"));
        }
        let seed_sum = expanded_size(
            header.seed_size,
            seed.iter().map(|f| (f.comp_len, f.content_len)),
        );
        let target_sum = expanded_size(
            header.target_size,
            target.iter().map(|f| (f.comp_len, f.content_len)),
        );
        if seed_sum != Some(seed_expanded)
            || target_sum != Some(target_expanded)
            || header.seed_size.checked_add(seed_expanded).is_none()
        {
            return Err(bad("expanded sizes do not match the frames"));
        }
        Ok(FrameLayout {
            zstd_version,
            seed_expanded,
            target_expanded,
            seed,
            target,
        })
    }

    /// Refuses a layout made with another zstd library (recompression would not be exact).
    pub fn check_version(&self) -> Result<(), DeltaError> {
        let ours = zstd_version();
        if self.zstd_version != ours {
            return Err(DeltaError::ZstdVersion {
                delta: version_string(self.zstd_version),
                ours: version_string(ours),
            });
        }
        Ok(())
    }
}

/// `10505` → `1.5.5`.
pub fn version_string(v: u32) -> String {
    format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
}

fn checked_frame(
    i: u32,
    side: &str,
    end: u64,
    gap: u64,
    comp_len: u64,
    content_len: u64,
    raw_size: u64,
) -> Result<u64, DeltaError> {
    let bad =
        |what: String| DeltaError::Corrupt(format!("zstd frame layout: {side} frame {i}: {what}"));
    if content_len == 0 || content_len > MAX_FRAME_CONTENT {
        return Err(bad(format!(
            "content length {content_len} not in 1..={MAX_FRAME_CONTENT}"
        )));
    }
    if comp_len == 0 || comp_len > compressed_limit(content_len) {
        return Err(bad(format!(
            "compressed length {comp_len} for {content_len} content bytes"
        )));
    }
    let offset = end
        .checked_add(gap)
        .filter(|o| o.checked_add(comp_len).is_some_and(|e| e <= raw_size))
        .ok_or_else(|| bad(format!("ends past the image ({raw_size} bytes)")))?;
    Ok(offset)
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4-byte range"))
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8-byte range"))
}

fn read_exact_or(r: &mut impl Read, buf: &mut [u8], what: &'static str) -> Result<(), DeltaError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => DeltaError::Truncated(what),
        _ => DeltaError::Io(e),
    })
}

// ---------------------------------------------------------------------------------------------
// Encoder side

/// An image with its frames replaced by their content.
pub(crate) struct Expanded<F> {
    pub data: Vec<u8>,
    pub frames: Vec<F>,
    /// Expanded offset of each frame's content.
    pub starts: Vec<u64>,
}

/// Decompresses the frame at `data[pos..]` into `buf` if it is a whole zstd frame with a
/// declared content size in 1..=MAX_FRAME_CONTENT; returns its compressed length.
fn frame_at(
    data: &[u8],
    pos: usize,
    dctx: &mut zstd_safe::DCtx<'static>,
    buf: &mut Vec<u8>,
) -> Option<usize> {
    let src = &data[pos..];
    let content = zstd_safe::get_frame_content_size(src).ok()??;
    if content == 0 || content > MAX_FRAME_CONTENT {
        return None;
    }
    let comp = zstd_safe::find_frame_compressed_size(src).ok()?;
    if comp > src.len() || comp as u64 > compressed_limit(content) {
        return None;
    }
    buf.clear();
    buf.reserve(content as usize);
    let n = dctx.decompress(buf, &src[..comp]).ok()?;
    (n as u64 == content).then_some(comp)
}

/// Next position at or after `from` that starts with the zstd magic.
fn next_magic(data: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at + 4 <= data.len() {
        let p = data[at..data.len() - 3]
            .iter()
            .position(|&b| b == ZSTD_MAGIC[0])?;
        at += p;
        if data[at..at + 4] == ZSTD_MAGIC {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// Every frame of the seed that decompresses (content only has to be readable).
pub(crate) fn expand_seed(seed: &[u8]) -> Expanded<SeedFrame> {
    let mut dctx = zstd_safe::DCtx::create();
    let mut buf = Vec::new();
    let mut out = Expanded {
        data: Vec::with_capacity(seed.len()),
        frames: Vec::new(),
        starts: Vec::new(),
    };
    let mut done = 0usize;
    let mut at = 0usize;
    while let Some(pos) = next_magic(seed, at) {
        match frame_at(seed, pos, &mut dctx, &mut buf) {
            Some(comp) => {
                out.data.extend_from_slice(&seed[done..pos]);
                out.starts.push(out.data.len() as u64);
                out.data.extend_from_slice(&buf);
                out.frames.push(SeedFrame {
                    offset: pos as u64,
                    comp_len: comp as u64,
                    content_len: buf.len() as u64,
                });
                done = pos + comp;
                at = done;
            }
            None => at = pos + 1,
        }
    }
    out.data.extend_from_slice(&seed[done..]);
    out
}

/// Finds the level that reproduces this library's frames: tried on the first frames, then kept.
struct LevelDetector {
    level: Option<i32>,
    tried: u32,
}

impl LevelDetector {
    fn candidates(&self) -> Vec<i32> {
        if let Some(l) = self.level {
            return vec![l];
        }
        if self.tried >= DETECT_FRAMES {
            return Vec::new();
        }
        let mut c = LIKELY_LEVELS.to_vec();
        if self.tried < FULL_SEARCH_FRAMES {
            c.extend((1..=22).filter(|l| !LIKELY_LEVELS.contains(l)));
        }
        c
    }
}

fn reproduces(
    cctx: &mut zstd_safe::CCtx<'static>,
    content: &[u8],
    original: &[u8],
    level: i32,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    out.reserve(zstd_safe::compress_bound(content.len()));
    cctx.compress(out, content, level).is_ok() && out[..] == *original
}

/// Every frame of the target that this build's zstd reproduces exactly.
pub(crate) fn expand_target(target: &[u8]) -> Expanded<TargetFrame> {
    let mut dctx = zstd_safe::DCtx::create();
    let mut cctx = zstd_safe::CCtx::create();
    let (mut buf, mut recomp) = (Vec::new(), Vec::new());
    let mut detector = LevelDetector {
        level: None,
        tried: 0,
    };
    let mut out = Expanded {
        data: Vec::with_capacity(target.len()),
        frames: Vec::new(),
        starts: Vec::new(),
    };
    let mut done = 0usize;
    let mut at = 0usize;
    while let Some(pos) = next_magic(target, at) {
        let Some(comp) = frame_at(target, pos, &mut dctx, &mut buf) else {
            at = pos + 1;
            continue;
        };
        let original = &target[pos..pos + comp];
        let level = detector
            .candidates()
            .into_iter()
            .find(|&l| reproduces(&mut cctx, &buf, original, l, &mut recomp));
        if detector.level.is_none() {
            detector.tried += 1;
            detector.level = level;
        }
        if let Some(level) = level {
            out.data.extend_from_slice(&target[done..pos]);
            out.starts.push(out.data.len() as u64);
            out.data.extend_from_slice(&buf);
            out.frames.push(TargetFrame {
                offset: pos as u64,
                level,
                comp_len: comp as u64,
                content_len: buf.len() as u64,
            });
            done = pos + comp;
        }
        // A frame that does not reproduce stays ordinary bytes; nothing inside it is a frame.
        at = pos + comp;
    }
    out.data.extend_from_slice(&target[done..]);
    out
}

// ---------------------------------------------------------------------------------------------
// Decoder side

fn content_starts(frames: impl Iterator<Item = (u64, u64, u64)>) -> Vec<u64> {
    // (offset, comp_len, content_len) → expanded start; sizes were checked by FrameLayout::read.
    let mut shrink = 0i128;
    frames
        .map(|(offset, comp, content)| {
            let start = (i128::from(offset) + shrink) as u64;
            shrink += i128::from(content) - i128::from(comp);
            start
        })
        .collect()
}

/// The seed as the ops see it: the stored seed, then the seed with its frames replaced by their
/// content (frames that the target could not reproduce still match their stored old versions).
/// Frames are decompressed on demand (two cached: ops mostly read forward, with ADD/COPY
/// alternating between neighbours).
pub(crate) struct ExpandedSeed<'a, S: SeedRead> {
    seed: &'a mut S,
    /// Size of the stored seed: offsets below it read the seed as it is.
    stored: u64,
    frames: Vec<SeedFrame>,
    starts: Vec<u64>,
    cache: [(usize, Vec<u8>); 2],
    recent: usize,
    comp: Vec<u8>,
    dctx: zstd_safe::DCtx<'static>,
}

impl<'a, S: SeedRead> ExpandedSeed<'a, S> {
    pub fn new(seed: &'a mut S, stored: u64, frames: Vec<SeedFrame>) -> Self {
        let starts = content_starts(frames.iter().map(|f| (f.offset, f.comp_len, f.content_len)));
        ExpandedSeed {
            seed,
            stored,
            frames,
            starts,
            cache: [(usize::MAX, Vec::new()), (usize::MAX, Vec::new())],
            recent: 0,
            comp: Vec::new(),
            dctx: zstd_safe::DCtx::create(),
        }
    }

    fn frame(&mut self, i: usize) -> io::Result<&[u8]> {
        if let Some(slot) = self.cache.iter().position(|(k, _)| *k == i) {
            self.recent = slot;
            return Ok(&self.cache[slot].1);
        }
        let f = self.frames[i];
        self.comp.resize(f.comp_len as usize, 0);
        self.seed.read_exact_at(f.offset, &mut self.comp)?;
        let slot = 1 - self.recent;
        let buf = &mut self.cache[slot].1;
        buf.clear();
        buf.reserve_exact(f.content_len as usize);
        let bad = |what: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "seed zstd frame at offset {} ({} bytes): {what}",
                    f.offset, f.comp_len
                ),
            )
        };
        let n = self.dctx.decompress(buf, &self.comp).map_err(|c| {
            bad(format!(
                "does not decompress: {}",
                zstd_safe::get_error_name(c)
            ))
        })?;
        if n as u64 != f.content_len {
            return Err(bad(format!(
                "decompressed to {n} bytes, the delta says {}",
                f.content_len
            )));
        }
        self.cache[slot].0 = i;
        self.recent = slot;
        Ok(&self.cache[slot].1)
    }
}

impl<S: SeedRead> SeedRead for ExpandedSeed<'_, S> {
    fn read_exact_at(&mut self, offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
        if offset < self.stored {
            let n = (buf.len() as u64).min(self.stored - offset) as usize;
            self.seed.read_exact_at(offset, &mut buf[..n])?;
            buf = &mut std::mem::take(&mut buf)[n..];
        }
        let mut at = offset.saturating_sub(self.stored);
        while !buf.is_empty() {
            // Frames starting at or before `at`: the last of them may hold it.
            let k = self.starts.partition_point(|&s| s <= at);
            let holder = k
                .checked_sub(1)
                .filter(|&i| at - self.starts[i] < self.frames[i].content_len);
            let n = if let Some(i) = holder {
                let within = (at - self.starts[i]) as usize;
                let content = self.frame(i)?;
                let n = buf.len().min(content.len() - within);
                buf[..n].copy_from_slice(&content[within..within + n]);
                n
            } else {
                // Raw bytes between frames: map back to the seed offset.
                let raw = match k.checked_sub(1) {
                    None => at,
                    Some(i) => {
                        let f = self.frames[i];
                        f.offset + f.comp_len + (at - self.starts[i] - f.content_len)
                    }
                };
                let room = self.starts.get(k).map_or(u64::MAX, |&s| s - at);
                let n = (buf.len() as u64).min(room) as usize;
                self.seed.read_exact_at(raw, &mut buf[..n])?;
                n
            };
            buf = &mut std::mem::take(&mut buf)[n..];
            at += n as u64;
        }
        Ok(())
    }
}

/// Frame content collected before the batch is compressed (in parallel) and written.
const BATCH_CONTENT: usize = 1 << 20;
/// Most threads recompressing a batch.
const MAX_THREADS: usize = 4;

/// What the re-framer holds back until its batch is written: stored bytes that follow a pending
/// frame, or a complete frame's content.
enum Pending {
    Raw(Vec<u8>),
    Frame(usize, Vec<u8>),
}

/// Turns the expanded target the ops produce back into the target: raw bytes pass through,
/// each frame's content is compressed at its level and must give exactly its compressed length.
/// Complete frames are batched (≤ 1 MiB of content) and compressed on up to 4 threads (one per
/// CPU), then written in order. Hashes and counts what it writes.
pub(crate) struct Reframer {
    frames: Vec<TargetFrame>,
    starts: Vec<u64>,
    next: usize,
    expanded_pos: u64,
    content: Vec<u8>,
    pending: Vec<Pending>,
    pending_bytes: usize,
    /// One compression context per thread, kept (their workspaces are reused).
    cctxs: Vec<zstd_safe::CCtx<'static>>,
    pub hasher: Sha256,
    pub written: u64,
}

impl Reframer {
    pub fn new(frames: Vec<TargetFrame>) -> Self {
        let starts = content_starts(frames.iter().map(|f| (f.offset, f.comp_len, f.content_len)));
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_THREADS);
        Reframer {
            frames,
            starts,
            next: 0,
            expanded_pos: 0,
            content: Vec::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            cctxs: (0..threads).map(|_| zstd_safe::CCtx::create()).collect(),
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// Everything received is written (call [`Reframer::flush`] first) and no frame is half
    /// collected: a checkpoint here is safe.
    pub fn at_boundary(&self) -> bool {
        self.content.is_empty() && self.pending.is_empty()
    }

    fn put(&mut self, out: &mut impl Write, data: &[u8]) -> Result<(), DeltaError> {
        out.write_all(data)?;
        self.hasher.update(data);
        self.written += data.len() as u64;
        Ok(())
    }

    pub fn write(&mut self, out: &mut impl Write, mut data: &[u8]) -> Result<(), DeltaError> {
        while !data.is_empty() {
            let in_frame =
                self.next < self.frames.len() && self.expanded_pos >= self.starts[self.next];
            if in_frame {
                let f = self.frames[self.next];
                let want = f.content_len as usize - self.content.len();
                let take = want.min(data.len());
                if self.content.is_empty() {
                    self.content.reserve_exact(f.content_len as usize);
                }
                self.content.extend_from_slice(&data[..take]);
                data = &data[take..];
                self.expanded_pos += take as u64;
                if take == want {
                    let content = std::mem::take(&mut self.content);
                    self.pending_bytes += content.len();
                    self.pending.push(Pending::Frame(self.next, content));
                    self.next += 1;
                    if self.pending_bytes >= BATCH_CONTENT {
                        self.flush(out)?;
                    }
                }
            } else {
                let room = self
                    .starts
                    .get(self.next)
                    .map_or(u64::MAX, |&s| s - self.expanded_pos);
                let take = (data.len() as u64).min(room) as usize;
                let piece = &data[..take];
                if self.pending.is_empty() {
                    self.put(out, piece)?;
                } else {
                    // Behind pending frames: keep the order (bounded like frame content).
                    self.pending_bytes += take;
                    match self.pending.last_mut() {
                        Some(Pending::Raw(raw)) => raw.extend_from_slice(piece),
                        _ => self.pending.push(Pending::Raw(piece.to_vec())),
                    }
                    if self.pending_bytes >= BATCH_CONTENT {
                        self.flush(out)?;
                    }
                }
                data = &data[take..];
                self.expanded_pos += take as u64;
            }
        }
        Ok(())
    }

    /// Compresses the pending frames (in parallel), checks their lengths and writes everything
    /// pending in order.
    pub fn flush(&mut self, out: &mut impl Write) -> Result<(), DeltaError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let jobs: Vec<(TargetFrame, &[u8])> = pending
            .iter()
            .filter_map(|p| match p {
                Pending::Frame(i, content) => Some((self.frames[*i], &content[..])),
                Pending::Raw(_) => None,
            })
            .collect();
        let threads = self.cctxs.len();
        let per_thread = jobs.len().div_ceil(threads.max(1)).max(1);
        let compressed: Vec<Result<Vec<u8>, DeltaError>> = if threads <= 1 || jobs.len() < 2 {
            match self.cctxs.first_mut() {
                Some(cctx) => compress_frames(cctx, &jobs),
                None => compress_frames(&mut zstd_safe::CCtx::create(), &jobs),
            }
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = jobs
                    .chunks(per_thread)
                    .zip(self.cctxs.iter_mut())
                    .map(|(chunk, cctx)| scope.spawn(move || compress_frames(cctx, chunk)))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| {
                        h.join().unwrap_or_else(|_| {
                            vec![Err(DeltaError::Recompress("a zstd thread panicked".into()))]
                        })
                    })
                    .collect()
            })
        };
        let mut results = compressed.into_iter();
        for p in &pending {
            match p {
                Pending::Raw(raw) => self.put(out, raw)?,
                Pending::Frame(..) => {
                    let comp = results.next().unwrap_or_else(|| {
                        Err(DeltaError::Recompress("a frame was not compressed".into()))
                    })?;
                    self.put(out, &comp)?;
                }
            }
        }
        Ok(())
    }

    /// Continues at expanded offset `expanded` (a checkpoint, never inside a frame); returns the
    /// target offset it corresponds to.
    pub fn seek(&mut self, expanded: u64) -> Result<u64, DeltaError> {
        let k = self.starts.partition_point(|&s| s < expanded);
        let mut target = expanded;
        for (i, f) in self.frames[..k].iter().enumerate() {
            let end = self.starts[i] + f.content_len;
            if end > expanded {
                return Err(DeltaError::BadCheckpoint(format!(
                    "target offset {expanded} is inside a zstd frame"
                )));
            }
            target = target - f.content_len + f.comp_len;
        }
        self.next = k;
        self.expanded_pos = expanded;
        self.content.clear();
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(target)
    }

    /// Writes what is pending; all frames must be complete. Returns (bytes written, sha256).
    pub fn finish(mut self, out: &mut impl Write) -> Result<(u64, [u8; 32]), DeltaError> {
        self.flush(out)?;
        if self.next != self.frames.len() || !self.content.is_empty() {
            return Err(DeltaError::Corrupt(
                "the target ended inside or before a zstd frame of the layout".into(),
            ));
        }
        Ok((self.written, self.hasher.finalize().into()))
    }
}

/// `ZSTD_compress` of each frame's content at its level; a result must have the frame's length.
fn compress_frames(
    cctx: &mut zstd_safe::CCtx<'static>,
    jobs: &[(TargetFrame, &[u8])],
) -> Vec<Result<Vec<u8>, DeltaError>> {
    jobs.iter()
        .map(|&(f, content)| {
            let mut comp = Vec::with_capacity(zstd_safe::compress_bound(content.len()));
            match cctx.compress(&mut comp, content, f.level) {
                Err(c) => Err(DeltaError::Recompress(format!(
                    "target frame at offset {}: zstd error {}",
                    f.offset,
                    zstd_safe::get_error_name(c)
                ))),
                Ok(n) if n as u64 != f.comp_len => Err(DeltaError::Recompress(format!(
                    "target frame at offset {} recompressed at level {} to {n} bytes, the delta says {}",
                    f.offset, f.level, f.comp_len
                ))),
                Ok(_) => Ok(comp),
            }
        })
        .collect()
}
