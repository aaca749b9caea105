//! Static delta: round trips, wrong seeds, corrupted deltas, interrupted and resumed applies.

use crate::common;

use std::io::Cursor;

use common::*;
use keel_delta::{apply, apply_resumable, Checkpoint, CreateOptions, DeltaError};
use rand::Rng;

fn round_trip(old: &[u8], new: &[u8], opts: &CreateOptions) -> Vec<u8> {
    let delta = make(old, new, opts);
    let mut out = Vec::new();
    let report = apply(&mut Cursor::new(old), &delta[..], &mut out).expect("apply");
    assert!(
        out == new,
        "round trip differs (old {} new {} bytes)",
        old.len(),
        new.len()
    );
    assert_eq!(report.target_size, new.len() as u64);
    assert_eq!(
        report.copied_bytes + report.added_bytes + report.inserted_bytes,
        new.len() as u64
    );
    assert_eq!(report.delta_bytes, delta.len() as u64);
    delta
}

fn both_settings(old: &[u8], new: &[u8]) -> usize {
    round_trip(old, new, &small_segments());
    round_trip(
        old,
        new,
        &CreateOptions {
            level: 3,
            ..CreateOptions::default()
        },
    )
    .len()
}

#[test]
fn edge_cases_round_trip() {
    let mut r = rng(1);
    let a = texty(&mut r, 50_000);
    let b = random_bytes(&mut r, 50_000);
    both_settings(b"", b"");
    both_settings(b"", &a);
    both_settings(&a, b"");
    both_settings(&a, &a);
    both_settings(&a, &b);
    both_settings(&b, &a);
    both_settings(&a, &a[..20_000]);
    both_settings(&a[..20_000], &a);
    both_settings(&a[30_000..], &a);
    both_settings(b"x", b"y");
    both_settings(&[0u8; 100_000], &[0u8; 150_000]);
}

#[test]
fn identical_images_cost_almost_nothing() {
    let mut r = rng(2);
    let a = random_bytes(&mut r, 1 << 20);
    let size = both_settings(&a, &a);
    assert!(
        size < 400,
        "identical 1 MiB images gave a {size}-byte delta"
    );
}

#[test]
fn random_edits_round_trip_and_stay_small() {
    for seed in 0..12 {
        let mut r = rng(100 + seed);
        let len = r.gen_range(1_000..200_000);
        let old = if seed % 2 == 0 {
            random_bytes(&mut r, len)
        } else {
            texty(&mut r, len)
        };
        let new = edited(&mut r, &old);
        let size = both_settings(&old, &new);
        // Random data is incompressible: a delta must be far below the image size.
        if seed % 2 == 0 && len > 50_000 {
            assert!(
                size < new.len() / 4,
                "seed {seed}: delta {size} for a {} byte image",
                new.len()
            );
        }
    }
}

#[test]
fn relocated_code_becomes_cheap_add_ops() {
    // A "binary" whose 4-byte pointers all shift by a constant after an insertion: bsdiff's case.
    let mut r = rng(3);
    let mut old = Vec::new();
    for i in 0..40_000u32 {
        old.extend_from_slice(&[0x48, 0x8b, 0x05]);
        old.extend_from_slice(&(i.wrapping_mul(7919) % 100_000).to_le_bytes());
        old.push(r.gen());
    }
    let mut new = Vec::new();
    for chunk in old.chunks(8) {
        let mut c = chunk.to_vec();
        let p = u32::from_le_bytes([c[3], c[4], c[5], c[6]]) + 64;
        c[3..7].copy_from_slice(&p.to_le_bytes());
        new.extend_from_slice(&c);
    }
    new.splice(1000..1000, texty(&mut r, 64));
    let delta = round_trip(
        &old,
        &new,
        &CreateOptions {
            level: 19,
            ..CreateOptions::default()
        },
    );
    assert!(
        delta.len() < new.len() / 5,
        "relocated code: delta {} of {}",
        delta.len(),
        new.len()
    );
}

#[test]
fn wrong_seed_is_rejected_before_writing() {
    let mut r = rng(4);
    let old = random_bytes(&mut r, 100_000);
    let new = edited(&mut r, &old);
    let delta = make(&old, &new, &small_segments());
    let mut other = old.clone();
    other[77_777] ^= 1;
    let mut out = Vec::new();
    match apply(&mut Cursor::new(&other), &delta[..], &mut out) {
        Err(DeltaError::WrongSeed { .. }) => {}
        other => panic!("expected WrongSeed, got {other:?}"),
    }
    assert!(out.is_empty(), "bytes were written before the seed check");
    match apply(&mut Cursor::new(&old[..50_000]), &delta[..], &mut out) {
        Err(DeltaError::SeedTooShort {
            expected: 100_000, ..
        }) => {}
        other => panic!("expected SeedTooShort, got {other:?}"),
    }
    assert!(out.is_empty());
    // A longer seed (a partition bigger than the image) is fine: only seed_size bytes count.
    let mut longer = old.clone();
    longer.extend_from_slice(&[0xAA; 4096]);
    let mut out = Vec::new();
    apply(&mut Cursor::new(&longer), &delta[..], &mut out).expect("longer seed");
    assert!(out == new);
}

#[test]
fn corrupted_or_truncated_delta_never_yields_a_wrong_target() {
    let mut r = rng(5);
    let old = texty(&mut r, 30_000);
    let new = edited(&mut r, &old);
    let delta = make(&old, &new, &small_segments());
    assert!(delta.len() > 200);
    let mut rejected = 0;
    for at in 0..delta.len() {
        for bit in [0u8, 5] {
            let mut bad = delta.clone();
            bad[at] ^= 1 << bit;
            let mut out = Vec::new();
            match apply(&mut Cursor::new(&old), &bad[..], &mut out) {
                Ok(_) => assert!(
                    out == new,
                    "flip at {at} produced a wrong target and was accepted"
                ),
                Err(_) => rejected += 1,
            }
        }
    }
    // Everything but (perhaps) a few checksum-covered-but-ignored bits is detected.
    assert!(
        rejected >= delta.len() * 2 - 8,
        "only {rejected} of {} corruptions detected",
        delta.len() * 2
    );
    for len in 0..delta.len() {
        let mut out = Vec::new();
        assert!(
            apply(&mut Cursor::new(&old), &delta[..len], &mut out).is_err(),
            "truncated to {len} accepted"
        );
    }
    let mut longer = delta.clone();
    longer.push(0);
    assert!(matches!(
        apply(&mut Cursor::new(&old), &longer[..], &mut Vec::new()),
        Err(DeltaError::Corrupt(_))
    ));
}

#[test]
fn interrupted_apply_resumes_to_the_exact_target() {
    let mut r = rng(6);
    let old = random_bytes(&mut r, 120_000);
    let new = edited(&mut r, &old);
    let delta = make(&old, &new, &small_segments());
    let total = new.len();
    for cut in (0..total).step_by(total / 23 + 1).chain([1, total - 1]) {
        let mut dev = PowerCut {
            inner: Cursor::new(Vec::new()),
            budget: cut,
        };
        let mut last: Option<Checkpoint> = None;
        let first = apply_resumable(&mut Cursor::new(&old), &delta[..], &mut dev, None, |cp| {
            // Persisted checkpoints go through their byte form, as the agent stores them.
            last = Some(Checkpoint::from_bytes(&cp.to_bytes()).expect("checkpoint bytes"));
            Ok(())
        });
        assert!(first.is_err(), "cut at {cut} did not interrupt");
        // The partial segment after the checkpoint may hold garbage: the resume overwrites it.
        let mut image = dev.inner.into_inner();
        if let Some(cp) = &last {
            assert!(cp.target_offset <= cut as u64);
            for b in image.iter_mut().skip(cp.target_offset as usize) {
                *b = !*b;
            }
        }
        let mut dev = Cursor::new(image);
        let report = apply_resumable(
            &mut Cursor::new(&old),
            &delta[..],
            &mut dev,
            last.as_ref(),
            |_| Ok(()),
        )
        .unwrap_or_else(|e| panic!("resume after cut at {cut}: {e}"));
        assert_eq!(report.resumed_from, last.map_or(0, |c| c.target_offset));
        let out = dev.into_inner();
        assert!(out[..total] == new[..], "resume after cut at {cut} differs");
    }
}

#[test]
fn resume_detects_a_damaged_prefix_and_foreign_checkpoints() {
    let mut r = rng(7);
    let old = random_bytes(&mut r, 60_000);
    let new = edited(&mut r, &old);
    let delta = make(&old, &new, &small_segments());
    let mut checkpoints = Vec::new();
    let mut dev = Cursor::new(Vec::new());
    apply_resumable(&mut Cursor::new(&old), &delta[..], &mut dev, None, |cp| {
        checkpoints.push(*cp);
        Ok(())
    })
    .expect("apply");
    assert!(checkpoints.len() >= 3);
    let mid = checkpoints[checkpoints.len() / 2];
    // A bit flipped in the already written prefix (a torn write): the final hash catches it.
    let mut image = dev.into_inner();
    image[(mid.target_offset / 2) as usize] ^= 0x10;
    let result = apply_resumable(
        &mut Cursor::new(&old),
        &delta[..],
        &mut Cursor::new(image),
        Some(&mid),
        |_| Ok(()),
    );
    assert!(
        matches!(result, Err(DeltaError::TargetHashMismatch { .. })),
        "{result:?}"
    );
    // A checkpoint of another delta is refused.
    let foreign = Checkpoint {
        target_sha256: [9; 32],
        ..mid
    };
    let result = apply_resumable(
        &mut Cursor::new(&old),
        &delta[..],
        &mut Cursor::new(Vec::new()),
        Some(&foreign),
        |_| Ok(()),
    );
    assert!(
        matches!(result, Err(DeltaError::BadCheckpoint(_))),
        "{result:?}"
    );
    // A checkpoint pointing into the middle of a segment fails on the segment header check.
    let skewed = Checkpoint {
        delta_offset: mid.delta_offset + 1,
        ..mid
    };
    let mut dev = Cursor::new(new.clone());
    let result = apply_resumable(
        &mut Cursor::new(&old),
        &delta[..],
        &mut dev,
        Some(&skewed),
        |_| Ok(()),
    );
    assert!(result.is_err());
    let mut bytes = mid.to_bytes();
    bytes[50] ^= 1;
    assert!(matches!(
        Checkpoint::from_bytes(&bytes),
        Err(DeltaError::BadCheckpoint(_))
    ));
}

#[test]
fn short_seed_pieces_inside_new_data_become_copies() {
    // A rebuilt compressed block: incompressible new bytes with 11–16-byte pieces of the old
    // image scattered through them (what re-compressed squashfs blocks look like to a delta);
    // too short for the main matcher's 16-byte windows.
    let mut r = rng(6);
    let old = random_bytes(&mut r, 200_000);
    let mut new = Vec::new();
    let mut pieces = 0usize;
    while new.len() < 150_000 {
        let gap = r.gen_range(20..60);
        new.extend_from_slice(&random_bytes(&mut r, gap));
        let len = r.gen_range(11..17);
        let from = r.gen_range(0..old.len() - len);
        new.extend_from_slice(&old[from..from + len]);
        pieces += 1;
    }
    let without = CreateOptions {
        level: 3,
        short_matches: false,
        ..CreateOptions::default()
    };
    let with = CreateOptions {
        short_matches: true,
        ..without.clone()
    };
    let plain = round_trip(&old, &new, &without).len();
    let short = round_trip(&old, &new, &with).len();
    // A piece costs about 7 control bytes (two far seeks, two op words) instead of 11–16
    // literal bytes.
    assert!(
        short + pieces * 4 < plain,
        "short matches: {short} bytes, without: {plain} ({pieces} seed pieces)"
    );
    round_trip(&old, &new, &small_segments());
}
