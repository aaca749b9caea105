//! Delta creation (build host side): match, split into COPY/ADD/INSERT ops, segment, compress.

use std::io::Write;

use crate::format::{DeltaHeader, Op, SegmentHeader, MAX_SEGMENT_CTRL, MAX_SEGMENT_DATA};
use crate::frames::{self, Expanded, FrameLayout, SeedFrame, TargetFrame, MAX_LAYOUT_FRAMES};
use crate::matcher::{common_prefix, Matcher, Region};
use crate::shortmatch::{self, Gap};
use crate::{sha256, DeltaError};

/// Tuning of [`create`]. The defaults are what `keel delta create` uses.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// zstd level of the three streams (1–22). 19 by default.
    pub level: i32,
    /// Most diff + extra bytes (uncompressed) per segment: the decoder's data buffer.
    pub segment_data: u32,
    /// Most control bytes (uncompressed) per segment.
    pub segment_ctrl: u32,
    /// Most target bytes per segment: the granularity of resuming an interrupted apply.
    pub segment_target: u64,
    /// Runs of at least this many equal bytes inside an aligned region become COPY ops.
    pub copy_min: usize,
    /// Second pass: COPY short (≥ 8 bytes) seed matches inside literal runs where that is
    /// cheaper than the literals (pays off on compressed images).
    pub short_matches: bool,
    /// Diff zstd-compressed images (squashfs `-comp zstd`) through their frames' content when
    /// this build's zstd reproduces at least a quarter of the new image's bytes (format flag
    /// `zstd_frames`; the device needs the same zstd version). Otherwise the plain format.
    pub zstd_frames: bool,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            level: 19,
            segment_data: 8 << 20,
            segment_ctrl: 1 << 20,
            segment_target: 64 << 20,
            copy_min: 64,
            short_matches: true,
            zstd_frames: true,
        }
    }
}

/// What [`create`] produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateReport {
    /// Bytes written to `out`: header, frame layout and segments.
    pub delta_size: u64,
    /// Number of segments (the header's `segment_count`).
    pub segments: u32,
    /// Number of COPY, ADD and INSERT ops in all control streams.
    pub ops: u64,
    /// Target bytes produced by COPY ops (taken from the seed unchanged).
    pub copy_bytes: u64,
    /// Target bytes produced by ADD ops (seed bytes plus a stored difference).
    pub add_bytes: u64,
    /// Target bytes produced by INSERT ops (literal bytes stored in the delta).
    pub insert_bytes: u64,
    /// zstd frames of the new image recompressed by the decoder (0: plain format).
    pub target_frames: u64,
    /// Their compressed bytes.
    pub target_frame_bytes: u64,
    /// zstd frames of the old image the decoder expands.
    pub seed_frames: u64,
}

struct SegmentWriter<'o> {
    opts: &'o CreateOptions,
    compressor: zstd::bulk::Compressor<'static>,
    ctrl: Vec<u8>,
    diff: Vec<u8>,
    extra: Vec<u8>,
    target_len: u64,
    cursor: u64,
    segments: Vec<Vec<u8>>,
    max_data: u32,
    max_ctrl: u32,
    report: CreateReport,
    /// Expanded target offset of the next op.
    target_pos: u64,
    /// Content ranges of the target's zstd frames (expanded offsets): segments end outside them
    /// where the hard limits allow, so that the decoder can checkpoint there.
    frames: Vec<(u64, u64)>,
    frame_idx: usize,
}

impl<'o> SegmentWriter<'o> {
    fn new(opts: &'o CreateOptions, frames: Vec<(u64, u64)>) -> Result<Self, DeltaError> {
        let mut compressor = zstd::bulk::Compressor::new(opts.level)?;
        compressor.set_parameter(zstd::stream::raw::CParameter::ChecksumFlag(true))?;
        compressor.set_parameter(zstd::stream::raw::CParameter::WindowLog(24))?;
        Ok(SegmentWriter {
            opts,
            compressor,
            ctrl: Vec::new(),
            diff: Vec::new(),
            extra: Vec::new(),
            target_len: 0,
            cursor: 0,
            segments: Vec::new(),
            max_data: 0,
            max_ctrl: 0,
            report: CreateReport::default(),
            target_pos: 0,
            frames,
            frame_idx: 0,
        })
    }

    fn data_room(&self) -> u64 {
        u64::from(self.opts.segment_data)
            .saturating_sub((self.diff.len() + self.extra.len()) as u64)
    }

    fn target_room(&self) -> u64 {
        self.opts.segment_target.saturating_sub(self.target_len)
    }

    /// Makes room for one more op (control bytes) and returns how many target bytes it may cover.
    fn reserve(&mut self, uses_data: bool) -> Result<u64, DeltaError> {
        let full = self.ctrl.len() + 24 > self.opts.segment_ctrl as usize
            || self.target_room() == 0
            || (uses_data && self.data_room() == 0);
        if full {
            match self.inside_frame() {
                Some(end) if !self.hard_full(uses_data) => {
                    // Carry on to the end of the frame (within the decoder's hard limits).
                    let to_end = end - self.target_pos;
                    let data = (self.diff.len() + self.extra.len()) as u64;
                    let hard_data = u64::from(MAX_SEGMENT_DATA).saturating_sub(data);
                    return Ok(if uses_data {
                        to_end.min(hard_data)
                    } else {
                        to_end
                    });
                }
                _ => self.flush()?,
            }
        }
        Ok(if uses_data {
            self.target_room().min(self.data_room())
        } else {
            self.target_room()
        })
    }

    /// End of the target frame whose content strictly contains the current position.
    fn inside_frame(&mut self) -> Option<u64> {
        while self
            .frames
            .get(self.frame_idx)
            .is_some_and(|&(_, end)| end <= self.target_pos)
        {
            self.frame_idx += 1;
        }
        let &(start, end) = self.frames.get(self.frame_idx)?;
        (start < self.target_pos).then_some(end)
    }

    fn hard_full(&self, uses_data: bool) -> bool {
        self.ctrl.len() + 24 > MAX_SEGMENT_CTRL as usize
            || (uses_data && self.diff.len() + self.extra.len() >= MAX_SEGMENT_DATA as usize)
    }

    fn push(&mut self, op: Op) {
        op.encode(&mut self.ctrl);
        self.target_len += op.len();
        self.target_pos += op.len();
        self.report.ops += 1;
    }

    fn copy(&mut self, mut old_pos: u64, mut len: u64) -> Result<(), DeltaError> {
        while len > 0 {
            let take = self.reserve(false)?.min(len);
            let seek = old_pos as i64 - self.cursor as i64;
            self.push(Op::Copy { seek, len: take });
            self.cursor = old_pos + take;
            self.report.copy_bytes += take;
            old_pos += take;
            len -= take;
        }
        Ok(())
    }

    fn add(&mut self, mut old_pos: u64, old: &[u8], new: &[u8]) -> Result<(), DeltaError> {
        let mut done = 0usize;
        while done < new.len() {
            let take = (self.reserve(true)? as usize).min(new.len() - done);
            let seek = old_pos as i64 - self.cursor as i64;
            self.push(Op::Add {
                seek,
                len: take as u64,
            });
            self.diff.extend(
                new[done..done + take]
                    .iter()
                    .zip(&old[done..done + take])
                    .map(|(n, o)| n.wrapping_sub(*o)),
            );
            self.cursor = old_pos + take as u64;
            self.report.add_bytes += take as u64;
            old_pos += take as u64;
            done += take;
        }
        Ok(())
    }

    fn insert(&mut self, data: &[u8]) -> Result<(), DeltaError> {
        let mut done = 0usize;
        while done < data.len() {
            let take = (self.reserve(true)? as usize).min(data.len() - done);
            self.push(Op::Insert { len: take as u64 });
            self.extra.extend_from_slice(&data[done..done + take]);
            self.report.insert_bytes += take as u64;
            done += take;
        }
        Ok(())
    }

    fn compress(&mut self, raw: &[u8]) -> Result<Vec<u8>, DeltaError> {
        if raw.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.compressor.compress(raw)?)
    }

    fn flush(&mut self) -> Result<(), DeltaError> {
        if self.target_len == 0 {
            return Ok(());
        }
        let ctrl = std::mem::take(&mut self.ctrl);
        let diff = std::mem::take(&mut self.diff);
        let extra = std::mem::take(&mut self.extra);
        let (c, d, e) = (
            self.compress(&ctrl)?,
            self.compress(&diff)?,
            self.compress(&extra)?,
        );
        let header = SegmentHeader {
            target_len: self.target_len,
            ctrl_raw: ctrl.len() as u32,
            ctrl_comp: c.len() as u32,
            diff_raw: diff.len() as u32,
            diff_comp: d.len() as u32,
            extra_raw: extra.len() as u32,
            extra_comp: e.len() as u32,
        };
        self.max_ctrl = self.max_ctrl.max(header.ctrl_raw);
        self.max_data = self.max_data.max(header.diff_raw + header.extra_raw);
        let mut seg = Vec::with_capacity(40 + c.len() + d.len() + e.len());
        seg.extend_from_slice(&header.to_bytes());
        seg.extend_from_slice(&c);
        seg.extend_from_slice(&d);
        seg.extend_from_slice(&e);
        self.segments.push(seg);
        self.target_len = 0;
        self.cursor = 0;
        Ok(())
    }
}

/// Emits one aligned region as COPY (long equal runs) and ADD (everything else) ops.
fn emit_aligned(
    w: &mut SegmentWriter<'_>,
    old: &[u8],
    new: &[u8],
    old_pos: usize,
) -> Result<(), DeltaError> {
    let n = new.len();
    let mut i = 0usize;
    let mut add_start: Option<usize> = None;
    while i < n {
        let eq = common_prefix(&old[i..n], &new[i..n]);
        if eq >= w.opts.copy_min {
            if let Some(s) = add_start.take() {
                w.add((old_pos + s) as u64, &old[s..i], &new[s..i])?;
            }
            w.copy((old_pos + i) as u64, eq as u64)?;
            i += eq;
        } else {
            add_start.get_or_insert(i);
            i += eq + 1;
        }
    }
    if let Some(s) = add_start {
        let end = n.min(i);
        w.add((old_pos + s) as u64, &old[s..end], &new[s..end])?;
    }
    Ok(())
}

/// The literal run of each region, with the seed cursor around it (for the short-match pass).
fn gaps(regions: &[Region]) -> Vec<Gap> {
    let mut cursor = 0u64;
    let mut out = Vec::with_capacity(regions.len());
    for (i, r) in regions.iter().enumerate() {
        if r.diff_len > 0 {
            cursor = (r.old_pos + r.diff_len) as u64;
        }
        let next_old = regions
            .get(i + 1)
            .filter(|n| n.diff_len > 0)
            .map(|n| n.old_pos as u64);
        let start = r.new_pos + r.diff_len;
        out.push(Gap {
            start,
            end: start + r.extra_len,
            cursor_in: cursor,
            next_old,
        });
    }
    out
}

/// Both images with their zstd frames expanded, if the transform pays (see
/// [`CreateOptions::zstd_frames`]).
struct FramedInputs {
    /// The seed view of the ops: the stored seed followed by the expanded seed.
    seed_view: Vec<u8>,
    seed: Expanded<SeedFrame>,
    target: Expanded<TargetFrame>,
}

fn framed_inputs(old: &[u8], new: &[u8]) -> Option<FramedInputs> {
    let target = frames::expand_target(new);
    let covered: u64 = target.frames.iter().map(|f| f.comp_len).sum();
    if target.frames.is_empty()
        || covered < new.len() as u64 / 4
        || target.frames.len() > MAX_LAYOUT_FRAMES as usize
    {
        return None;
    }
    let seed = frames::expand_seed(old);
    let view_len = old.len() as u64 + seed.data.len() as u64;
    if seed.frames.len() > MAX_LAYOUT_FRAMES as usize || view_len > Matcher::MAX_OLD {
        return None;
    }
    let mut seed_view = Vec::with_capacity(view_len as usize);
    seed_view.extend_from_slice(old);
    seed_view.extend_from_slice(&seed.data);
    Some(FramedInputs {
        seed_view,
        seed,
        target,
    })
}

/// Creates a delta that turns `old` (the seed) into `new` and writes it to `out`.
///
/// Memory: both images plus an index of about `old.len()` bytes (with zstd frames: of the
/// expanded images, plus both expanded copies); time is roughly linear in the image sizes plus
/// zstd at `opts.level` over the changed bytes (and a decompress/recompress of every frame).
pub fn create(
    old: &[u8],
    new: &[u8],
    opts: &CreateOptions,
    out: impl Write,
) -> Result<CreateReport, DeltaError> {
    if opts.segment_data == 0 || opts.segment_data > MAX_SEGMENT_DATA {
        return Err(DeltaError::TooLarge(format!(
            "segment_data must be 1..={MAX_SEGMENT_DATA}"
        )));
    }
    if opts.segment_ctrl < 64 || opts.segment_ctrl > MAX_SEGMENT_CTRL {
        return Err(DeltaError::TooLarge(format!(
            "segment_ctrl must be 64..={MAX_SEGMENT_CTRL}"
        )));
    }
    if opts.segment_target == 0 || opts.copy_min == 0 {
        return Err(DeltaError::TooLarge(
            "segment_target and copy_min must be positive".into(),
        ));
    }
    if old.len() as u64 > Matcher::MAX_OLD {
        return Err(DeltaError::TooLarge(format!(
            "old image of {} bytes",
            old.len()
        )));
    }
    let framed = if opts.zstd_frames {
        framed_inputs(old, new)
    } else {
        None
    };
    create_from(old, new, framed, opts, out)
}

fn create_from(
    old_raw: &[u8],
    new_raw: &[u8],
    framed: Option<FramedInputs>,
    opts: &CreateOptions,
    mut out: impl Write,
) -> Result<CreateReport, DeltaError> {
    let (old, new, layout, frame_ranges) = match &framed {
        None => (old_raw, new_raw, None, Vec::new()),
        Some(f) => {
            let layout = FrameLayout {
                zstd_version: frames::zstd_version(),
                seed_expanded: f.seed.data.len() as u64,
                target_expanded: f.target.data.len() as u64,
                seed: f.seed.frames.clone(),
                target: f.target.frames.clone(),
            };
            let ranges = f
                .target
                .starts
                .iter()
                .zip(&f.target.frames)
                .map(|(&s, fr)| (s, s + fr.content_len))
                .collect();
            (&f.seed_view[..], &f.target.data[..], Some(layout), ranges)
        }
    };
    let regions: Vec<Region> = Matcher::new(old, new).regions();
    let short = if opts.short_matches {
        shortmatch::find(old, new, &gaps(&regions))
    } else {
        vec![Vec::new(); regions.len()]
    };
    let mut w = SegmentWriter::new(opts, frame_ranges)?;
    for (r, copies) in regions.iter().zip(&short) {
        if r.diff_len > 0 {
            let o = &old[r.old_pos..r.old_pos + r.diff_len];
            let n = &new[r.new_pos..r.new_pos + r.diff_len];
            emit_aligned(&mut w, o, n, r.old_pos)?;
        }
        if r.extra_len > 0 {
            let mut at = r.new_pos + r.diff_len;
            for c in copies {
                w.insert(&new[at..c.new_pos])?;
                w.copy(c.old_pos, c.len as u64)?;
                at = c.new_pos + c.len;
            }
            w.insert(&new[at..r.new_pos + r.diff_len + r.extra_len])?;
        }
    }
    w.flush()?;
    let header = DeltaHeader {
        segment_count: u32::try_from(w.segments.len())
            .map_err(|_| DeltaError::TooLarge("more than 2^32 segments".into()))?,
        seed_size: old_raw.len() as u64,
        seed_sha256: sha256(old_raw),
        target_size: new_raw.len() as u64,
        target_sha256: sha256(new_raw),
        max_segment_data: w.max_data,
        max_segment_ctrl: w.max_ctrl,
        zstd_frames: layout.is_some(),
    };
    out.write_all(&header.to_bytes())?;
    let mut size = crate::format::HEADER_LEN as u64;
    if let Some(layout) = &layout {
        let bytes = layout.to_bytes();
        out.write_all(&bytes)?;
        size += bytes.len() as u64;
        w.report.target_frames = layout.target.len() as u64;
        w.report.target_frame_bytes = layout.target.iter().map(|f| f.comp_len).sum();
        w.report.seed_frames = layout.seed.len() as u64;
    }
    for seg in &w.segments {
        out.write_all(seg)?;
        size += seg.len() as u64;
    }
    out.flush()?;
    let mut report = w.report;
    report.delta_size = size;
    report.segments = header.segment_count;
    Ok(report)
}
