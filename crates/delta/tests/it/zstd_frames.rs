//! zstd-frame transform: real `mksquashfs -comp zstd` pairs, frames that do not reproduce,
//! refusals before any write, and interrupted applies.

use crate::common;

use std::io::Cursor;
use std::path::Path;

use common::*;
use keel_delta::apply::read_header;
use keel_delta::frames::{zstd_version, FrameLayout};
use keel_delta::{apply, apply_resumable, Checkpoint, CreateOptions, CreateReport, DeltaError};
use rand::Rng;

/// Files of text-like content (compressible, like binaries and docs in a root filesystem).
fn write_tree(dir: &Path, seed: u64, edit: bool) {
    let mut r = rng(seed);
    std::fs::create_dir_all(dir.join("usr/lib")).unwrap();
    for i in 0..24 {
        let len = r.gen_range(20_000..260_000);
        let mut data = texty(&mut r, len);
        if edit && i % 5 == 2 {
            let mut e = rng(1000 + i);
            data = edited(&mut e, &data);
        }
        std::fs::write(dir.join(format!("usr/lib/file{i:02}.so")), &data).unwrap();
    }
    if edit {
        let extra = texty(&mut r, 70_000);
        std::fs::write(dir.join("usr/lib/new-file.so"), extra).unwrap();
    }
}

/// `mksquashfs -comp zstd` (Debian's squashfs-tools; level 15 by default) of a generated tree.
fn squashfs(work: &Path, name: &str, edit: bool) -> Vec<u8> {
    let tree = work.join(name);
    write_tree(&tree, 7, edit);
    let image = work.join(format!("{name}.squashfs"));
    keel_delta::testing::mksquashfs_zstd(&tree, &image)
}

fn squashfs_pair() -> (Vec<u8>, Vec<u8>) {
    let work = tempfile::tempdir().unwrap();
    (
        squashfs(work.path(), "old", false),
        squashfs(work.path(), "new", true),
    )
}

fn make_report(old: &[u8], new: &[u8], opts: &CreateOptions) -> (Vec<u8>, CreateReport) {
    let mut delta = Vec::new();
    let report = keel_delta::create(old, new, opts, &mut delta).expect("create");
    (delta, report)
}

fn applied(old: &[u8], delta: &[u8]) -> Result<Vec<u8>, (DeltaError, Vec<u8>)> {
    let mut out = Vec::new();
    match apply(&mut Cursor::new(old), delta, &mut out) {
        Ok(_) => Ok(out),
        Err(e) => Err((e, out)),
    }
}

#[test]
fn squashfs_pair_round_trips_through_frames_and_shrinks() {
    let (old, new) = squashfs_pair();
    let (framed, report) = make_report(&old, &new, &CreateOptions::default());
    assert_eq!(framed[10], 1, "header flag zstd_frames");
    assert!(report.target_frames > 10, "{report:?}");
    assert!(
        report.target_frame_bytes > new.len() as u64 / 2,
        "the data blocks must reproduce with this zstd: {report:?}"
    );
    assert!(report.seed_frames > 10, "{report:?}");
    assert_eq!(applied(&old, &framed).map_err(|e| e.0).unwrap(), new);

    let (plain, plain_report) = make_report(
        &old,
        &new,
        &CreateOptions {
            zstd_frames: false,
            ..CreateOptions::default()
        },
    );
    assert_eq!(plain[10], 0);
    assert_eq!(plain_report.target_frames, 0);
    assert_eq!(applied(&old, &plain).map_err(|e| e.0).unwrap(), new);
    eprintln!(
        "squashfs {} → {} bytes: zstd-frame delta {} bytes ({report:?}), plain {} bytes",
        old.len(),
        new.len(),
        framed.len(),
        plain.len()
    );
    assert!(
        framed.len() * 2 < plain.len(),
        "frames: {} bytes, plain: {} bytes",
        framed.len(),
        plain.len()
    );

    // Many segments (segment ends are kept outside frames where possible).
    let (multi, multi_report) = make_report(&old, &new, &small_segments());
    assert!(multi_report.segments > 3, "{multi_report:?}");
    assert_eq!(applied(&old, &multi).map_err(|e| e.0).unwrap(), new);
}

fn frame(data: &[u8], level: i32, checksum: bool) -> Vec<u8> {
    let mut c = zstd::bulk::Compressor::new(level).unwrap();
    c.set_parameter(zstd::stream::raw::CParameter::ChecksumFlag(checksum))
        .unwrap();
    c.compress(data).unwrap()
}

/// Frames at level 15 between raw bytes, then one with a checksum and one at level 4: the
/// detector settles on 15, so the last two stay ordinary bytes and still round-trip.
fn synthetic_image(seed: u64, edit: bool) -> (Vec<u8>, u64) {
    let mut r = rng(seed);
    let mut image = Vec::new();
    let mut reproducible = 0;
    for i in 0..14 {
        image.extend_from_slice(&random_bytes(&mut r, 300));
        let mut content = texty(&mut r, 40_000);
        if edit && i % 4 == 1 {
            content = edited(&mut r, &content);
        }
        let (level, checksum) = match i {
            12 => (15, true),
            13 => (4, false),
            _ => {
                reproducible += 1;
                (15, false)
            }
        };
        image.extend_from_slice(&frame(&content, level, checksum));
    }
    // A stray magic that is not a frame.
    image.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff]);
    (image, reproducible)
}

#[test]
fn frames_that_do_not_reproduce_stay_ordinary_bytes() {
    let (old, _) = synthetic_image(1, false);
    let (new, reproducible) = synthetic_image(1, true);
    let (delta, report) = make_report(&old, &new, &small_segments());
    assert_eq!(report.target_frames, reproducible, "{report:?}");
    assert_eq!(report.seed_frames, 14, "every seed frame decompresses");
    assert_eq!(applied(&old, &delta).map_err(|e| e.0).unwrap(), new);
}

/// Rewrites the layout block of `delta` (CRCs recomputed) with `change`.
fn with_layout(delta: &[u8], change: impl FnOnce(&mut FrameLayout)) -> Vec<u8> {
    let mut r = delta;
    let header = read_header(&mut r).unwrap();
    let before = r.len();
    let mut layout = FrameLayout::read(&mut r, &header).unwrap();
    let layout_len = before - r.len();
    change(&mut layout);
    let mut out = delta[..108].to_vec();
    out.extend_from_slice(&layout.to_bytes());
    out.extend_from_slice(&delta[108 + layout_len..]);
    out
}

#[test]
fn bad_seed_version_or_layout_is_refused_before_writing() {
    let (old, _) = synthetic_image(2, false);
    let (new, _) = synthetic_image(2, true);
    let (delta, _) = make_report(&old, &new, &small_segments());
    assert_eq!(delta[10], 1);

    let mut other_seed = old.clone();
    other_seed[5000] ^= 1;
    let (e, out) = applied(&other_seed, &delta).unwrap_err();
    assert!(matches!(e, DeltaError::WrongSeed { .. }), "{e}");
    assert!(out.is_empty());

    let foreign = with_layout(&delta, |l| l.zstd_version = 10507);
    let (e, out) = applied(&old, &foreign).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DeltaError::ZstdVersion { .. }), "{e}");
    assert!(msg.contains("zstd 1.5.7"), "{msg}");
    assert!(out.is_empty());
    assert_eq!(
        FrameLayout {
            zstd_version: zstd_version(),
            seed_expanded: 0,
            target_expanded: 0,
            seed: vec![],
            target: vec![],
        }
        .check_version()
        .ok(),
        Some(())
    );

    // A byte of the layout flipped: checksum; cut inside the layout: truncated.
    let mut flipped = delta.clone();
    flipped[108 + 45] ^= 0x40;
    let (e, out) = applied(&old, &flipped).unwrap_err();
    assert!(matches!(e, DeltaError::HeaderChecksum(_)), "{e}");
    assert!(out.is_empty());
    for cut in [110, 108 + 39, 108 + 44] {
        let (e, out) = applied(&old, &delta[..cut]).unwrap_err();
        assert!(matches!(e, DeltaError::Truncated(_)), "cut {cut}: {e}");
        assert!(out.is_empty());
    }

    // A frame said to end past the image, and sizes that do not add up.
    let past = with_layout(&delta, |l| {
        l.target.last_mut().unwrap().comp_len += 1_000_000
    });
    let (e, _) = applied(&old, &past).unwrap_err();
    assert!(matches!(e, DeltaError::Corrupt(_)), "{e}");
    let sizes = with_layout(&delta, |l| l.seed_expanded += 1);
    let (e, out) = applied(&old, &sizes).unwrap_err();
    assert!(e.to_string().contains("expanded sizes"), "{e}");
    assert!(out.is_empty());

    // A valid-looking layout whose level does not reproduce the frame: refused at that frame,
    // and the apply fails (nothing may be activated).
    let wrong_level = with_layout(&delta, |l| l.target[1].level = 14);
    let (e, _) = applied(&old, &wrong_level).unwrap_err();
    assert!(matches!(e, DeltaError::Recompress(_)), "{e}");

    // Seed frame table pointing at bytes that are not that frame.
    let shifted = with_layout(&delta, |l| {
        l.seed[0].content_len += 1;
        l.seed_expanded += 1;
    });
    let (e, _) = applied(&old, &shifted).unwrap_err();
    assert!(e.to_string().contains("seed zstd frame"), "{e}");
}

#[test]
fn interrupted_framed_apply_resumes_to_the_exact_target() {
    let (old, _) = synthetic_image(3, false);
    let (new, _) = synthetic_image(3, true);
    let opts = CreateOptions {
        segment_data: 8 << 10,
        segment_target: 32 << 10,
        ..small_segments()
    };
    let (delta, report) = make_report(&old, &new, &opts);
    assert!(
        report.segments > 5 && report.target_frames > 5,
        "{report:?}"
    );
    let total = new.len();
    let mut resumed = 0;
    for cut in (0..total).step_by(total / 17 + 1).chain([1, total - 1]) {
        let mut dev = PowerCut {
            inner: Cursor::new(Vec::new()),
            budget: cut,
        };
        let mut last: Option<Checkpoint> = None;
        let first = apply_resumable(&mut Cursor::new(&old), &delta[..], &mut dev, None, |cp| {
            last = Some(Checkpoint::from_bytes(&cp.to_bytes()).expect("checkpoint bytes"));
            Ok(())
        });
        assert!(first.is_err(), "cut at {cut} did not interrupt");
        let mut dev = Cursor::new(dev.inner.into_inner());
        let report = apply_resumable(
            &mut Cursor::new(&old),
            &delta[..],
            &mut dev,
            last.as_ref(),
            |_| Ok(()),
        )
        .unwrap_or_else(|e| panic!("resume after cut at {cut}: {e}"));
        assert!(report.resumed_from <= cut as u64);
        if report.resumed_from > 0 {
            resumed += 1;
        }
        let out = dev.into_inner();
        assert!(out[..total] == new[..], "resume after cut at {cut} differs");
    }
    assert!(
        resumed > 5,
        "only {resumed} applies resumed from a checkpoint"
    );
}
