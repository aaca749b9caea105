//! Delta application (device side): one pass, bounded memory, seed read by offset.

use std::io::{self, Read, Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};

use crate::format::{DeltaHeader, Op, SegmentHeader, HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::frames::{ExpandedSeed, FrameLayout, Reframer};
use crate::{hex, DeltaError};

/// Positioned reads of the seed (the active slot). Implemented for every `Read + Seek`.
pub trait SeedRead {
    /// Fills `buf` with the seed bytes at `offset`; an error if the seed ends before.
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl<T: Read + Seek> SeedRead for T {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.seek(SeekFrom::Start(offset))?;
        self.read_exact(buf)
    }
}

/// What an apply did. `target_sha256` has been verified against the delta header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// Size of the target written, in bytes (the real image, not the expanded one).
    pub target_size: u64,
    /// sha256 of the whole target, equal to the header's.
    pub target_sha256: [u8; 32],
    /// Segments in the delta (the header's `segment_count`, also after a resume).
    pub segments: u32,
    /// Target bytes produced by this call (after a resume: only the remaining part). For a
    /// zstd-frame delta these count the expanded target (frame contents).
    pub copied_bytes: u64,
    /// Target bytes produced by ADD ops in this call (seed plus stored difference).
    pub added_bytes: u64,
    /// Target bytes produced by INSERT ops in this call (literals from the delta).
    pub inserted_bytes: u64,
    /// Delta bytes consumed, including any skipped on resume.
    pub delta_bytes: u64,
    /// Target offset this call started from (0 unless resumed).
    pub resumed_from: u64,
}

/// Progress of an apply after a complete segment: enough to continue after a power cut.
/// Persist it (e.g. [`Checkpoint::to_bytes`]) only after the output has been synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The target the delta produces (binds the checkpoint to one delta).
    pub target_sha256: [u8; 32],
    /// Number of complete segments; the next apply continues with segment `segments_done`.
    pub segments_done: u32,
    /// Offset in the delta where the next segment starts.
    pub delta_offset: u64,
    /// Target bytes written (and synced) so far; for a zstd-frame delta, bytes of the expanded
    /// target.
    pub target_offset: u64,
}

const CHECKPOINT_MAGIC: [u8; 8] = *b"KEELCKPT";
/// Size of a serialized [`Checkpoint`] in bytes.
pub const CHECKPOINT_LEN: usize = 64;

impl Checkpoint {
    /// The 64-byte form to persist: `KEELCKPT`, the fields little endian, CRC-32 of bytes 0..60.
    pub fn to_bytes(&self) -> [u8; CHECKPOINT_LEN] {
        let mut b = [0u8; CHECKPOINT_LEN];
        b[0..8].copy_from_slice(&CHECKPOINT_MAGIC);
        b[8..40].copy_from_slice(&self.target_sha256);
        b[40..44].copy_from_slice(&self.segments_done.to_le_bytes());
        b[44..52].copy_from_slice(&self.delta_offset.to_le_bytes());
        b[52..60].copy_from_slice(&self.target_offset.to_le_bytes());
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes [`Checkpoint::to_bytes`]; [`DeltaError::BadCheckpoint`] if the length, magic or
    /// CRC is wrong (e.g. a file torn by a power cut). Whether it belongs to a given delta is
    /// checked by [`apply_resumable`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, DeltaError> {
        let b: &[u8; CHECKPOINT_LEN] = b
            .try_into()
            .map_err(|_| DeltaError::BadCheckpoint(format!("{} bytes, expected 64", b.len())))?;
        if b[0..8] != CHECKPOINT_MAGIC {
            return Err(DeltaError::BadCheckpoint("bad magic".into()));
        }
        if crc32fast::hash(&b[..60]).to_le_bytes() != b[60..64] {
            return Err(DeltaError::BadCheckpoint("checksum mismatch".into()));
        }
        Ok(Checkpoint {
            target_sha256: b[8..40].try_into().expect("32 bytes"),
            segments_done: u32::from_le_bytes(b[40..44].try_into().expect("4 bytes")),
            delta_offset: u64::from_le_bytes(b[44..52].try_into().expect("8 bytes")),
            target_offset: u64::from_le_bytes(b[52..60].try_into().expect("8 bytes")),
        })
    }
}

/// Counts the bytes read from the delta (checkpoint offsets).
struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

fn read_exact_or(r: &mut impl Read, buf: &mut [u8], what: &'static str) -> Result<(), DeltaError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => DeltaError::Truncated(what),
        _ => DeltaError::Io(e),
    })
}

/// Reads and checks the delta header (e.g. to show seed and target hashes without applying).
pub fn read_header(delta: &mut impl Read) -> Result<DeltaHeader, DeltaError> {
    let mut b = [0u8; HEADER_LEN];
    read_exact_or(delta, &mut b, "header")?;
    DeltaHeader::parse(&b)
}

/// Bytes of a delta's start that [`parse_prefix`] needs at most: the delta header and a zstd-frame
/// delta's layout header.
pub const PREFIX_LEN: usize = HEADER_LEN + crate::frames::LAYOUT_HEADER_LEN;

/// The delta header and, for a zstd-frame delta, its layout header (which names the zstd version
/// it recompresses with), from the first bytes of a delta, e.g. a bundle member's.
pub fn parse_prefix(
    prefix: &[u8],
) -> Result<(DeltaHeader, Option<crate::frames::LayoutHeader>), DeltaError> {
    use crate::frames::{LayoutHeader, LAYOUT_HEADER_LEN};
    let header: &[u8; HEADER_LEN] = prefix
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(DeltaError::Truncated("header"))?;
    let header = DeltaHeader::parse(header)?;
    if !header.zstd_frames {
        return Ok((header, None));
    }
    let layout: &[u8; LAYOUT_HEADER_LEN] = prefix
        .get(HEADER_LEN..PREFIX_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(DeltaError::Truncated("zstd frame layout header"))?;
    Ok((header, Some(LayoutHeader::parse(layout)?)))
}

/// The structure of a whole delta, from its headers alone: what [`scan`] found.
#[derive(Debug, Clone)]
pub struct DeltaStructure {
    /// The checked delta header.
    pub header: DeltaHeader,
    /// The zstd frame layout (deltas with that flag).
    pub layout: Option<FrameLayout>,
    /// Every segment's header, in order.
    pub segments: Vec<SegmentHeader>,
    /// Bytes the delta must have: headers, layout and every segment with its frames.
    pub len: u64,
}

/// Walks a seekable delta's headers (seeking over the zstd frames) and checks that every segment
/// is complete and nothing follows the last one, without decompressing anything. The length of
/// `delta` is taken up front, so a truncated delta is refused here ([`DeltaError::Truncated`]),
/// before a seed byte is read or a target byte written, instead of after applying every complete
/// segment. Leaves `delta` at its end.
pub fn scan<R: Read + Seek>(delta: &mut R) -> Result<DeltaStructure, DeltaError> {
    let len = delta.seek(SeekFrom::End(0))?;
    delta.seek(SeekFrom::Start(0))?;
    let header = read_header(delta)?;
    let layout = if header.zstd_frames {
        Some(FrameLayout::read(delta, &header)?)
    } else {
        None
    };
    let mut at = delta.stream_position()?;
    let mut segments = Vec::new();
    let mut hb = [0u8; SEGMENT_HEADER_LEN];
    for _ in 0..header.segment_count {
        if len - at.min(len) < SEGMENT_HEADER_LEN as u64 {
            return Err(DeltaError::Truncated("segment header"));
        }
        read_exact_or(delta, &mut hb, "segment header")?;
        let segment = SegmentHeader::parse(&hb, &header)?;
        at += SEGMENT_HEADER_LEN as u64
            + u64::from(segment.ctrl_comp)
            + u64::from(segment.diff_comp)
            + u64::from(segment.extra_comp);
        if at > len {
            return Err(DeltaError::Truncated("segment frames"));
        }
        delta.seek(SeekFrom::Start(at))?;
        segments.push(segment);
    }
    if at != len {
        return Err(DeltaError::Corrupt(format!(
            "{} bytes after the last segment",
            len - at
        )));
    }
    Ok(DeltaStructure {
        header,
        layout,
        segments,
        len,
    })
}

/// Piece size for seed reads and output writes.
const IO_PIECE: usize = 256 << 10;

/// Hashes `seed[0..header.seed_size]` and refuses a seed that is not the delta's old image.
/// Cost: one sequential read of the seed (≈ 0.4 s per GiB with SHA-NI, storage permitting).
pub fn verify_seed(seed: &mut impl SeedRead, header: &DeltaHeader) -> Result<(), DeltaError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; IO_PIECE];
    let mut at = 0u64;
    while at < header.seed_size {
        let n = (header.seed_size - at).min(IO_PIECE as u64) as usize;
        seed.read_exact_at(at, &mut buf[..n])
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => DeltaError::SeedTooShort {
                    expected: header.seed_size,
                    actual: at,
                },
                _ => DeltaError::Io(e),
            })?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    let actual: [u8; 32] = hasher.finalize().into();
    if actual != header.seed_sha256 {
        return Err(DeltaError::WrongSeed {
            expected: hex(&header.seed_sha256),
            actual: hex(&actual),
        });
    }
    Ok(())
}

struct Engine<'a, S: SeedRead> {
    seed: &'a mut S,
    header: DeltaHeader,
    hasher: Sha256,
    written: u64,
    piece: Vec<u8>,
    comp: Vec<u8>,
    ctrl: Vec<u8>,
    diff: Vec<u8>,
    extra: Vec<u8>,
    decompressor: zstd::bulk::Decompressor<'static>,
    report: ApplyReport,
    /// zstd-frame deltas: `header` then describes the expanded seed and target, `written` counts
    /// expanded bytes, and the reframer writes (and hashes) the real target.
    reframer: Option<Reframer>,
    /// Size of the real target (= header.target_size without a reframer).
    target_size: u64,
}

impl<'a, S: SeedRead> Engine<'a, S> {
    fn new(
        seed: &'a mut S,
        header: DeltaHeader,
        framed: Option<(u64, Reframer)>,
    ) -> Result<Self, DeltaError> {
        let (target_size, reframer) = match framed {
            Some((size, r)) => (size, Some(r)),
            None => (header.target_size, None),
        };
        let report = ApplyReport {
            target_size,
            target_sha256: header.target_sha256,
            segments: header.segment_count,
            copied_bytes: 0,
            added_bytes: 0,
            inserted_bytes: 0,
            delta_bytes: 0,
            resumed_from: 0,
        };
        Ok(Engine {
            seed,
            header,
            hasher: Sha256::new(),
            written: 0,
            piece: vec![0u8; IO_PIECE],
            comp: Vec::new(),
            ctrl: Vec::new(),
            diff: Vec::new(),
            extra: Vec::new(),
            decompressor: zstd::bulk::Decompressor::new()?,
            report,
            reframer,
            target_size,
        })
    }

    fn emit(
        &mut self,
        out: &mut impl Write,
        bytes_from: Source,
        len: usize,
    ) -> Result<(), DeltaError> {
        let data: &[u8] = match bytes_from {
            Source::Piece => &self.piece[..len],
            Source::Extra(at) => &self.extra[at..at + len],
        };
        match self.reframer.as_mut() {
            Some(r) => r.write(out, data)?,
            None => {
                out.write_all(data)?;
                self.hasher.update(data);
            }
        }
        self.written += len as u64;
        Ok(())
    }

    fn frame(
        &mut self,
        delta: &mut impl Read,
        which: Stream,
        raw: u32,
        comp: u32,
    ) -> Result<(), DeltaError> {
        let mut dst = std::mem::take(match which {
            Stream::Ctrl => &mut self.ctrl,
            Stream::Diff => &mut self.diff,
            Stream::Extra => &mut self.extra,
        });
        dst.clear();
        if raw > 0 {
            self.comp.resize(comp as usize, 0);
            read_exact_or(delta, &mut self.comp, "segment frame")?;
            dst.reserve_exact(raw as usize);
            let n = self
                .decompressor
                .decompress_to_buffer(&self.comp[..], &mut dst)
                .map_err(|e| {
                    DeltaError::Corrupt(format!("{} frame does not decompress: {e}", which.name()))
                })?;
            if n != raw as usize {
                return Err(DeltaError::Corrupt(format!(
                    "{} frame decompressed to {n} bytes, header says {raw}",
                    which.name()
                )));
            }
        }
        *match which {
            Stream::Ctrl => &mut self.ctrl,
            Stream::Diff => &mut self.diff,
            Stream::Extra => &mut self.extra,
        } = dst;
        Ok(())
    }

    fn seed_range(&self, cursor: u64, seek: i64, len: u64) -> Result<u64, DeltaError> {
        let start = cursor
            .checked_add_signed(seek)
            .filter(|s| {
                s.checked_add(len)
                    .is_some_and(|end| end <= self.header.seed_size)
            })
            .ok_or_else(|| {
                DeltaError::Corrupt(format!(
                    "seed range (cursor {cursor} seek {seek} len {len}) outside the seed"
                ))
            })?;
        Ok(start)
    }

    fn segment(&mut self, delta: &mut impl Read, out: &mut impl Write) -> Result<(), DeltaError> {
        let mut hb = [0u8; SEGMENT_HEADER_LEN];
        read_exact_or(delta, &mut hb, "segment header")?;
        let sh = SegmentHeader::parse(&hb, &self.header)?;
        let end = self
            .written
            .checked_add(sh.target_len)
            .filter(|e| *e <= self.header.target_size)
            .ok_or_else(|| {
                DeltaError::Corrupt("segment produces more than target_size bytes".into())
            })?;
        self.frame(delta, Stream::Ctrl, sh.ctrl_raw, sh.ctrl_comp)?;
        self.frame(delta, Stream::Diff, sh.diff_raw, sh.diff_comp)?;
        self.frame(delta, Stream::Extra, sh.extra_raw, sh.extra_comp)?;

        let ctrl = std::mem::take(&mut self.ctrl);
        let result = self.run_ops(&ctrl, end, out);
        self.ctrl = ctrl;
        result
    }

    fn run_ops(&mut self, ctrl: &[u8], end: u64, out: &mut impl Write) -> Result<(), DeltaError> {
        let (mut pos, mut cursor, mut diff_at, mut extra_at) = (0usize, 0u64, 0usize, 0usize);
        while pos < ctrl.len() {
            let op = Op::decode(ctrl, &mut pos)?;
            if op.len() > end - self.written {
                return Err(DeltaError::Corrupt(
                    "op runs past the segment's target length".into(),
                ));
            }
            match op {
                Op::Copy { seek, len } => {
                    let mut at = self.seed_range(cursor, seek, len)?;
                    cursor = at + len;
                    let mut left = len;
                    while left > 0 {
                        let n = left.min(IO_PIECE as u64) as usize;
                        self.seed.read_exact_at(at, &mut self.piece[..n])?;
                        self.emit(out, Source::Piece, n)?;
                        (at, left) = (at + n as u64, left - n as u64);
                    }
                    self.report.copied_bytes += len;
                }
                Op::Add { seek, len } => {
                    let mut at = self.seed_range(cursor, seek, len)?;
                    cursor = at + len;
                    if len > (self.diff.len() - diff_at) as u64 {
                        return Err(DeltaError::Corrupt(
                            "ADD needs more diff bytes than the segment has".into(),
                        ));
                    }
                    let mut left = len as usize;
                    while left > 0 {
                        let n = left.min(IO_PIECE);
                        self.seed.read_exact_at(at, &mut self.piece[..n])?;
                        for (p, d) in self.piece[..n]
                            .iter_mut()
                            .zip(&self.diff[diff_at..diff_at + n])
                        {
                            *p = p.wrapping_add(*d);
                        }
                        self.emit(out, Source::Piece, n)?;
                        (at, left, diff_at) = (at + n as u64, left - n, diff_at + n);
                    }
                    self.report.added_bytes += len;
                }
                Op::Insert { len } => {
                    if len > (self.extra.len() - extra_at) as u64 {
                        return Err(DeltaError::Corrupt(
                            "INSERT needs more extra bytes than the segment has".into(),
                        ));
                    }
                    self.emit(out, Source::Extra(extra_at), len as usize)?;
                    extra_at += len as usize;
                    self.report.inserted_bytes += len;
                }
            }
        }
        if self.written != end || diff_at != self.diff.len() || extra_at != self.extra.len() {
            return Err(DeltaError::Corrupt(format!(
                "segment ops do not add up: produced {} of {} bytes, used {diff_at}/{} diff and {extra_at}/{} extra bytes",
                self.written,
                end,
                self.diff.len(),
                self.extra.len()
            )));
        }
        Ok(())
    }

    fn run<R: Read, W: Write>(
        mut self,
        delta: &mut Counted<R>,
        out: &mut W,
        first_segment: u32,
        on_checkpoint: &mut dyn FnMut(&Checkpoint) -> io::Result<()>,
    ) -> Result<ApplyReport, DeltaError> {
        for done in first_segment..self.header.segment_count {
            self.segment(delta, out)?;
            if let Some(r) = self.reframer.as_mut() {
                r.flush(out)?;
            }
            out.flush()?;
            // A frame half-way through its content is only in memory: no checkpoint there.
            if self.reframer.as_ref().is_some_and(|r| !r.at_boundary()) {
                continue;
            }
            on_checkpoint(&Checkpoint {
                target_sha256: self.header.target_sha256,
                segments_done: done + 1,
                delta_offset: delta.count,
                target_offset: self.written,
            })?;
        }
        let mut probe = [0u8; 1];
        if delta.read(&mut probe)? != 0 {
            return Err(DeltaError::Corrupt("data after the last segment".into()));
        }
        if self.written != self.header.target_size {
            return Err(DeltaError::TargetSizeMismatch {
                expected: self.header.target_size,
                actual: self.written,
            });
        }
        let actual: [u8; 32] = match self.reframer {
            Some(r) => {
                let (size, hash) = r.finish(out)?;
                if size != self.target_size {
                    return Err(DeltaError::TargetSizeMismatch {
                        expected: self.target_size,
                        actual: size,
                    });
                }
                hash
            }
            None => self.hasher.finalize().into(),
        };
        if actual != self.header.target_sha256 {
            return Err(DeltaError::TargetHashMismatch {
                expected: hex(&self.header.target_sha256),
                actual: hex(&actual),
            });
        }
        self.report.delta_bytes = delta.count;
        Ok(self.report)
    }
}

#[derive(Clone, Copy)]
enum Source {
    Piece,
    Extra(usize),
}

#[derive(Clone, Copy)]
enum Stream {
    Ctrl,
    Diff,
    Extra,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Ctrl => "control",
            Stream::Diff => "diff",
            Stream::Extra => "extra",
        }
    }
}

/// Applies `delta` to `seed`, streaming the target into `out`.
///
/// The seed is hashed before anything is written (a wrong seed is refused with
/// [`DeltaError::WrongSeed`]); the target's sha256 is checked at the end — on any error the
/// bytes written to `out` must not be used. Memory: at most 2 × (`MAX_SEGMENT_DATA` +
/// `MAX_SEGMENT_CTRL`) plus 256 KiB, whatever the image size.
pub fn apply(
    seed: &mut impl SeedRead,
    delta: impl Read,
    mut out: impl Write,
) -> Result<ApplyReport, DeltaError> {
    let mut delta = Counted {
        inner: delta,
        count: 0,
    };
    let header = read_header(&mut delta)?;
    let layout = read_layout(&mut delta, &header)?;
    verify_seed(seed, &header)?;
    match layout {
        None => Engine::new(seed, header, None)?.run(&mut delta, &mut out, 0, &mut |_| Ok(())),
        Some(layout) => {
            let (engine_header, seed_frames, framed) = framed_parts(&header, layout);
            let mut expanded = ExpandedSeed::new(seed, header.seed_size, seed_frames);
            Engine::new(&mut expanded, engine_header, Some(framed))?.run(
                &mut delta,
                &mut out,
                0,
                &mut |_| Ok(()),
            )
        }
    }
}

/// Reads the zstd frame layout of a delta with that flag and refuses one made with another zstd
/// library (before the seed is even read, so before anything is written).
fn read_layout(
    delta: &mut impl Read,
    header: &DeltaHeader,
) -> Result<Option<FrameLayout>, DeltaError> {
    if !header.zstd_frames {
        return Ok(None);
    }
    let layout = FrameLayout::read(delta, header)?;
    layout.check_version()?;
    Ok(Some(layout))
}

/// The engine's view of a zstd-frame delta: the ops read the expanded seed and produce the
/// expanded target (same target hash, checked on the reframed output).
fn framed_parts(
    header: &DeltaHeader,
    layout: FrameLayout,
) -> (DeltaHeader, Vec<crate::frames::SeedFrame>, (u64, Reframer)) {
    // The ops read the stored seed followed by the expanded seed (sum checked by the parser).
    let engine_header = DeltaHeader {
        seed_size: header.seed_size + layout.seed_expanded,
        target_size: layout.target_expanded,
        ..header.clone()
    };
    (
        engine_header,
        layout.seed,
        (header.target_size, Reframer::new(layout.target)),
    )
}

/// Like [`apply`], but reports a [`Checkpoint`] after each segment (after `out.flush()`; sync the
/// device before persisting it) and can continue from one: pass the last persisted checkpoint
/// and the delta from its beginning. The already written prefix of `out` is re-read to continue
/// the target hash, so a prefix damaged by the interruption is caught by the final hash check.
pub fn apply_resumable<O: Read + Write + Seek>(
    seed: &mut impl SeedRead,
    delta: impl Read,
    out: &mut O,
    resume: Option<&Checkpoint>,
    mut on_checkpoint: impl FnMut(&Checkpoint) -> io::Result<()>,
) -> Result<ApplyReport, DeltaError> {
    let mut delta = Counted {
        inner: delta,
        count: 0,
    };
    let header = read_header(&mut delta)?;
    match read_layout(&mut delta, &header)? {
        None => {
            verify_seed(seed, &header)?;
            let engine = Engine::new(seed, header.clone(), None)?;
            resume_run(engine, &header, delta, out, resume, &mut on_checkpoint)
        }
        Some(layout) => {
            verify_seed(seed, &header)?;
            let (engine_header, seed_frames, framed) = framed_parts(&header, layout);
            let mut expanded = ExpandedSeed::new(seed, header.seed_size, seed_frames);
            let engine = Engine::new(&mut expanded, engine_header.clone(), Some(framed))?;
            resume_run(
                engine,
                &engine_header,
                delta,
                out,
                resume,
                &mut on_checkpoint,
            )
        }
    }
}

/// `header`: the engine's (expanded sizes for a zstd-frame delta).
fn resume_run<S: SeedRead, R: Read, O: Read + Write + Seek>(
    mut engine: Engine<'_, S>,
    header: &DeltaHeader,
    mut delta: Counted<R>,
    out: &mut O,
    resume: Option<&Checkpoint>,
    on_checkpoint: &mut dyn FnMut(&Checkpoint) -> io::Result<()>,
) -> Result<ApplyReport, DeltaError> {
    let mut first = 0;
    let segments_start = delta.count;
    match resume {
        None => {
            out.seek(SeekFrom::Start(0))?;
        }
        Some(cp) => {
            if cp.target_sha256 != header.target_sha256 {
                return Err(DeltaError::BadCheckpoint(
                    "made for a different delta (target hash differs)".into(),
                ));
            }
            if cp.segments_done > header.segment_count
                || cp.target_offset > header.target_size
                || cp.delta_offset < segments_start
            {
                return Err(DeltaError::BadCheckpoint(format!(
                    "out of range: {} segments done, delta offset {}, target offset {} (the delta has {} segments and {} target bytes)",
                    cp.segments_done,
                    cp.delta_offset,
                    cp.target_offset,
                    header.segment_count,
                    header.target_size
                )));
            }
            // Continue the target hash over what is already written (zstd-frame deltas: the
            // checkpoint counts expanded bytes; the reframer maps them to target bytes).
            let mut left = match engine.reframer.as_mut() {
                Some(r) => r.seek(cp.target_offset)?,
                None => cp.target_offset,
            };
            engine.report.resumed_from = left;
            out.seek(SeekFrom::Start(0))?;
            let hasher = match engine.reframer.as_mut() {
                Some(r) => {
                    r.written = left;
                    &mut r.hasher
                }
                None => &mut engine.hasher,
            };
            while left > 0 {
                let n = left.min(IO_PIECE as u64) as usize;
                read_exact_or(out, &mut engine.piece[..n], "written target prefix")?;
                hasher.update(&engine.piece[..n]);
                left -= n as u64;
            }
            engine.written = cp.target_offset;
            let skip = cp.delta_offset - segments_start;
            let skipped = io::copy(&mut (&mut delta).take(skip), &mut io::sink())?;
            if skipped != skip {
                return Err(DeltaError::Truncated("delta before the checkpoint"));
            }
            first = cp.segments_done;
        }
    }
    engine.run(&mut delta, out, first, on_checkpoint)
}
