//! Binary layout of a keel static delta (see docs/delta-format.md).
//!
//! ```text
//! delta   = header segment*            (segment_count segments, nothing after the last)
//! header  = 108 bytes, little endian, crc32 at the end
//! segment = segment-header ctrl-frame? diff-frame? extra-frame?   (a frame is absent iff its raw length is 0)
//! ```

use crate::{varint, DeltaError};

/// First 8 bytes of every static delta.
pub const MAGIC: [u8; 8] = *b"KEELDELT";
/// The only format version this crate reads and writes (header bytes 8..10).
pub const VERSION: u16 = 1;
/// Size of the fixed header in bytes, CRC-32 included.
pub const HEADER_LEN: usize = 108;
/// Header flag: a zstd frame layout follows the header and the segments work on the expanded
/// seed and target (crate::frames).
pub const FLAG_ZSTD_FRAMES: u16 = 1;
/// First 4 bytes of every segment header.
pub const SEGMENT_MAGIC: [u8; 4] = *b"SEGM";
/// Size of a segment header in bytes, CRC-32 included.
pub const SEGMENT_HEADER_LEN: usize = 40;

/// Largest decompressed diff + extra bytes one segment may carry. Bounds the decoder's memory
/// (the decoder holds a segment's raw and compressed data: at most 2 × this + 2 × [`MAX_SEGMENT_CTRL`]).
pub const MAX_SEGMENT_DATA: u32 = 12 << 20;
/// Largest decompressed control stream of one segment.
pub const MAX_SEGMENT_CTRL: u32 = 2 << 20;

/// The fixed header: identifies seed and target by size and sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaHeader {
    /// Number of segments following the header (and the frame layout, if any).
    pub segment_count: u32,
    /// Bytes of the seed the delta reads, from offset 0; a longer partition is fine.
    pub seed_size: u64,
    /// sha256 of `seed[0..seed_size]` as stored, checked before the first byte is written.
    pub seed_sha256: [u8; 32],
    /// Size of the target image in bytes (as stored, not expanded, when zstd frames are used).
    pub target_size: u64,
    /// sha256 of the whole target image, checked after the last segment.
    pub target_sha256: [u8; 32],
    /// Largest `diff_raw + extra_raw` of any segment (the decoder's data buffer size).
    pub max_segment_data: u32,
    /// Largest `ctrl_raw` of any segment.
    pub max_segment_ctrl: u32,
    /// Flag [`FLAG_ZSTD_FRAMES`]: a [`crate::frames::FrameLayout`] follows the header.
    pub zstd_frames: bool,
}

impl DeltaHeader {
    /// The 108-byte encoding: magic, version, flags, fields, CRC-32 of bytes 0..104.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&VERSION.to_le_bytes());
        let flags = if self.zstd_frames {
            FLAG_ZSTD_FRAMES
        } else {
            0
        };
        b[10..12].copy_from_slice(&flags.to_le_bytes());
        b[12..16].copy_from_slice(&self.segment_count.to_le_bytes());
        b[16..24].copy_from_slice(&self.seed_size.to_le_bytes());
        b[24..56].copy_from_slice(&self.seed_sha256);
        b[56..64].copy_from_slice(&self.target_size.to_le_bytes());
        b[64..96].copy_from_slice(&self.target_sha256);
        b[96..100].copy_from_slice(&self.max_segment_data.to_le_bytes());
        b[100..104].copy_from_slice(&self.max_segment_ctrl.to_le_bytes());
        let crc = crc32fast::hash(&b[..104]);
        b[104..108].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header: [`DeltaError::BadMagic`], [`DeltaError::UnsupportedVersion`],
    /// [`DeltaError::HeaderChecksum`], [`DeltaError::UnsupportedFlags`], or
    /// [`DeltaError::Limit`] when the buffer sizes exceed [`MAX_SEGMENT_DATA`] /
    /// [`MAX_SEGMENT_CTRL`].
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Self, DeltaError> {
        if b[0..8] != MAGIC {
            return Err(DeltaError::BadMagic);
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != VERSION {
            return Err(DeltaError::UnsupportedVersion(version));
        }
        if u32_at(b, 104) != crc32fast::hash(&b[..104]) {
            return Err(DeltaError::HeaderChecksum("delta header"));
        }
        let flags = u16::from_le_bytes([b[10], b[11]]);
        if flags & !FLAG_ZSTD_FRAMES != 0 {
            return Err(DeltaError::UnsupportedFlags(flags, "delta header"));
        }
        let header = DeltaHeader {
            segment_count: u32_at(b, 12),
            seed_size: u64_at(b, 16),
            seed_sha256: b[24..56].try_into().expect("32-byte range"),
            target_size: u64_at(b, 56),
            target_sha256: b[64..96].try_into().expect("32-byte range"),
            max_segment_data: u32_at(b, 96),
            max_segment_ctrl: u32_at(b, 100),
            zstd_frames: flags & FLAG_ZSTD_FRAMES != 0,
        };
        limit(
            "max_segment_data",
            header.max_segment_data.into(),
            MAX_SEGMENT_DATA.into(),
        )?;
        limit(
            "max_segment_ctrl",
            header.max_segment_ctrl.into(),
            MAX_SEGMENT_CTRL.into(),
        )?;
        Ok(header)
    }
}

/// Per-segment header: sizes of the target range it produces and of its three zstd frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentHeader {
    /// Target bytes this segment produces (expanded bytes when zstd frames are used).
    pub target_len: u64,
    /// Decompressed size of the control stream (the ops), in bytes; 0 = no ctrl frame.
    pub ctrl_raw: u32,
    /// Size of the ctrl zstd frame in the delta, in bytes; 0 exactly when `ctrl_raw` is 0.
    pub ctrl_comp: u32,
    /// Decompressed size of the diff stream (the byte differences ADD ops add), in bytes.
    pub diff_raw: u32,
    /// Size of the diff zstd frame in the delta, in bytes; 0 exactly when `diff_raw` is 0.
    pub diff_comp: u32,
    /// Decompressed size of the extra stream (the literal bytes INSERT ops copy), in bytes.
    pub extra_raw: u32,
    /// Size of the extra zstd frame in the delta, in bytes; 0 exactly when `extra_raw` is 0.
    pub extra_comp: u32,
}

impl SegmentHeader {
    /// The 40-byte encoding: `SEGM`, the fields, CRC-32 of bytes 0..36.
    pub fn to_bytes(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..4].copy_from_slice(&SEGMENT_MAGIC);
        b[4..12].copy_from_slice(&self.target_len.to_le_bytes());
        for (i, v) in [
            self.ctrl_raw,
            self.ctrl_comp,
            self.diff_raw,
            self.diff_comp,
            self.extra_raw,
            self.extra_comp,
        ]
        .into_iter()
        .enumerate()
        {
            b[12 + 4 * i..16 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&b[..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks a segment header against the decoder's memory limits.
    pub fn parse(b: &[u8; SEGMENT_HEADER_LEN], header: &DeltaHeader) -> Result<Self, DeltaError> {
        if b[0..4] != SEGMENT_MAGIC {
            return Err(DeltaError::Corrupt(
                "segment header magic is not SEGM".into(),
            ));
        }
        if u32_at(b, 36) != crc32fast::hash(&b[..36]) {
            return Err(DeltaError::HeaderChecksum("segment header"));
        }
        let s = SegmentHeader {
            target_len: u64_at(b, 4),
            ctrl_raw: u32_at(b, 12),
            ctrl_comp: u32_at(b, 16),
            diff_raw: u32_at(b, 20),
            diff_comp: u32_at(b, 24),
            extra_raw: u32_at(b, 28),
            extra_comp: u32_at(b, 32),
        };
        limit(
            "segment ctrl_raw",
            s.ctrl_raw.into(),
            header.max_segment_ctrl.into(),
        )?;
        let data = u64::from(s.diff_raw) + u64::from(s.extra_raw);
        limit(
            "segment diff_raw + extra_raw",
            data,
            header.max_segment_data.into(),
        )?;
        for (what, raw, comp) in [
            ("ctrl", s.ctrl_raw, s.ctrl_comp),
            ("diff", s.diff_raw, s.diff_comp),
            ("extra", s.extra_raw, s.extra_comp),
        ] {
            if (raw == 0) != (comp == 0) {
                return Err(DeltaError::Corrupt(format!(
                    "segment {what} frame: raw length {raw} but compressed length {comp}"
                )));
            }
            limit(
                "segment compressed frame",
                comp.into(),
                compressed_limit(raw.into()),
            )?;
        }
        Ok(s)
    }
}

/// zstd never expands input by more than this (ZSTD_COMPRESSBOUND plus frame overhead).
pub(crate) fn compressed_limit(raw: u64) -> u64 {
    raw + (raw >> 8) + 1024
}

fn limit(what: &'static str, value: u64, limit: u64) -> Result<(), DeltaError> {
    if value > limit {
        Err(DeltaError::Limit { what, value, limit })
    } else {
        Ok(())
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4-byte range"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8-byte range"))
}

/// One operation of the control stream. Seed positions are relative: each segment starts with
/// a seed cursor of 0; COPY and ADD first move the cursor by `seek`, then consume `len` seed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Target bytes = seed bytes.
    Copy {
        /// Signed move of the seed cursor before reading, in bytes.
        seek: i64,
        /// Bytes produced (and seed bytes read), at most [`MAX_OP_LEN`].
        len: u64,
    },
    /// Target bytes = seed bytes + diff bytes (byte-wise, wrapping).
    Add {
        /// Signed move of the seed cursor before reading, in bytes.
        seek: i64,
        /// Bytes produced (and seed and diff bytes consumed), at most [`MAX_OP_LEN`].
        len: u64,
    },
    /// Target bytes = extra bytes (literal new data).
    Insert {
        /// Bytes produced (and extra bytes consumed), at most [`MAX_OP_LEN`].
        len: u64,
    },
}

const TAG_COPY: u64 = 0;
const TAG_ADD: u64 = 1;
const TAG_INSERT: u64 = 2;
/// Lengths are stored as `len << 2 | tag`.
pub const MAX_OP_LEN: u64 = u64::MAX >> 2;

impl Op {
    /// Target bytes this op produces.
    pub fn len(&self) -> u64 {
        match *self {
            Op::Copy { len, .. } | Op::Add { len, .. } | Op::Insert { len } => len,
        }
    }

    /// Whether `len` is 0: the op produces no target bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the op to a control stream: varint `len << 2 | tag`, then the zigzag varint
    /// `seek` for COPY/ADD. `len` must be at most [`MAX_OP_LEN`] (higher bits are lost).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Op::Copy { seek, len } => {
                varint::put_u64(out, (len << 2) | TAG_COPY);
                varint::put_i64(out, seek);
            }
            Op::Add { seek, len } => {
                varint::put_u64(out, (len << 2) | TAG_ADD);
                varint::put_i64(out, seek);
            }
            Op::Insert { len } => varint::put_u64(out, (len << 2) | TAG_INSERT),
        }
    }

    /// Decodes one op at `*pos`.
    pub fn decode(ctrl: &[u8], pos: &mut usize) -> Result<Op, DeltaError> {
        let at = *pos;
        let truncated =
            || DeltaError::Corrupt(format!("control stream: bad varint in op at byte {at}"));
        let word = varint::get_u64(ctrl, pos).ok_or_else(truncated)?;
        let len = word >> 2;
        match word & 3 {
            TAG_COPY => Ok(Op::Copy {
                seek: varint::get_i64(ctrl, pos).ok_or_else(truncated)?,
                len,
            }),
            TAG_ADD => Ok(Op::Add {
                seek: varint::get_i64(ctrl, pos).ok_or_else(truncated)?,
                len,
            }),
            TAG_INSERT => Ok(Op::Insert { len }),
            tag => Err(DeltaError::Corrupt(format!(
                "control stream: unknown op tag {tag} at byte {at}"
            ))),
        }
    }
}
