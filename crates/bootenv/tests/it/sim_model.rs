//! The simulated disk's fault model itself (`SimStorage`, feature `sim`): what each `CutMode`
//! keeps of unsynced writes and directory operations, and the injected media faults (EIO on
//! read, damaged synced sectors). The power-cut sweeps are only as strong as this model, so
//! every fault it claims to produce is shown to occur (for some seed) and to stay within
//! its bounds (for every seed tried).

use std::collections::BTreeSet;
use std::path::Path;

use keel_bootenv::storage::{replace_file, CutMode, SimStorage, Storage, SECTOR};

const SEEDS: std::ops::Range<u64> = 0..64;
const S: usize = SECTOR as usize;

/// A durable 8-sector file of `old` bytes with one unsynced write of `new` bytes per sector
/// (in order 0..8), then a power cut in `mode`; returns the content after the power cycle.
fn eight_writes(mode: CutMode) -> Vec<u8> {
    let sim = SimStorage::new();
    let path = Path::new("/d/f");
    sim.insert_file(path, &[b'o'; 8 * S]);
    for i in 0..8u64 {
        sim.write_at(path, i * SECTOR, &[b'n'; S]).unwrap();
    }
    sim.power_cycle(mode);
    sim.read(path).unwrap()
}

fn per_sector(content: &[u8]) -> Vec<u8> {
    content
        .chunks(S)
        .map(|c| {
            if c.iter().all(|&b| b == c[0]) {
                c[0]
            } else {
                b'?'
            }
        })
        .collect()
}

fn is_prefix_pattern(sectors: &[u8]) -> bool {
    let first_old = sectors
        .iter()
        .position(|&b| b == b'o')
        .unwrap_or(sectors.len());
    sectors[first_old..].iter().all(|&b| b == b'o')
}

#[test]
fn deterministic_modes_are_unchanged() {
    assert_eq!(
        per_sector(&eight_writes(CutMode::LoseUnsynced)),
        b"oooooooo"
    );
    assert_eq!(
        per_sector(&eight_writes(CutMode::KeepUnsynced)),
        b"nnnnnnnn"
    );
    assert_eq!(
        per_sector(&eight_writes(CutMode::KeepNamesLoseData)),
        b"oooooooo"
    );
    // The last write (sector 7) keeps its first half: 256 bytes, less than a sector.
    let torn = eight_writes(CutMode::TornLastWrite);
    assert_eq!(&torn[..7 * S], &[b'n'; 7 * S][..]);
    assert_eq!(&torn[7 * S..7 * S + S / 2], &[b'n'; S / 2][..]);
    assert_eq!(&torn[7 * S + S / 2..], &[b'o'; S / 2][..]);
}

#[test]
fn reorder_keeps_arbitrary_subsets_of_writes() {
    let mut patterns = BTreeSet::new();
    for seed in SEEDS {
        let sectors = per_sector(&eight_writes(CutMode::Reorder { seed }));
        assert!(
            sectors.iter().all(|&b| b == b'o' || b == b'n'),
            "Reorder {{ seed: {seed} }}: every sector is old or new, got {sectors:?}"
        );
        // Reproducible.
        assert_eq!(
            per_sector(&eight_writes(CutMode::Reorder { seed })),
            sectors,
            "seed {seed}"
        );
        patterns.insert(sectors);
    }
    assert!(
        patterns.iter().any(|p| !is_prefix_pattern(p)),
        "no seed kept a non-prefix subset: {patterns:?}"
    );
    assert!(
        patterns.len() > 16,
        "only {} distinct subsets",
        patterns.len()
    );
}

#[test]
fn reorder_applies_overlapping_writes_in_any_order() {
    let mut outcomes = BTreeSet::new();
    for seed in SEEDS {
        let sim = SimStorage::new();
        let path = Path::new("/f");
        sim.insert_file(path, b"0000");
        sim.write_at(path, 0, b"1111").unwrap();
        sim.write_at(path, 0, b"2222").unwrap();
        sim.power_cycle(CutMode::Reorder { seed });
        outcomes.insert(sim.read(path).unwrap());
    }
    // Neither, either, or both in either order: "1111" last means the older write won.
    let expected: BTreeSet<Vec<u8>> = [b"0000", b"1111", b"2222"]
        .iter()
        .map(|b| b.to_vec())
        .collect();
    assert_eq!(outcomes, expected);
}

#[test]
fn reorder_loses_directory_operations_per_entry() {
    let mut survivors = BTreeSet::new();
    for seed in SEEDS {
        let sim = SimStorage::new();
        for name in ["/d/a", "/d/b", "/d/c"] {
            sim.write_file(Path::new(name), name.as_bytes()).unwrap();
            sim.sync(Path::new(name)).unwrap();
        }
        // A replace without the directory fsync: the rename survives whole or not at all.
        sim.insert_file("/d/state", b"old");
        sim.write_file(Path::new("/d/state.tmp"), b"new").unwrap();
        sim.sync(Path::new("/d/state.tmp")).unwrap();
        sim.rename(Path::new("/d/state.tmp"), Path::new("/d/state"))
            .unwrap();
        sim.power_cycle(CutMode::Reorder { seed });
        let paths: Vec<String> = sim
            .paths()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let state = sim.read(Path::new("/d/state")).unwrap();
        let tmp = sim.read(Path::new("/d/state.tmp")).ok();
        match state.as_slice() {
            // The rename was lost (the temporary's creation may have been lost too).
            b"old" => assert!(
                tmp.is_none() || tmp.as_deref() == Some(&b"new"[..]),
                "seed {seed}: {paths:?}"
            ),
            b"new" => assert_eq!(tmp, None, "seed {seed}: {paths:?}"),
            other => panic!("seed {seed}: /d/state holds {other:?}"),
        }
        survivors.insert(
            ["/d/a", "/d/b", "/d/c"]
                .map(|n| sim.read(Path::new(n)).is_ok())
                .to_vec(),
        );
    }
    assert!(
        survivors.contains(&vec![false, true, false]),
        "no seed kept only the middle creation: {survivors:?}"
    );
    assert_eq!(survivors.len(), 8, "{survivors:?}");
    // A directory fsync makes them durable against every mode.
    let sim = SimStorage::new();
    sim.insert_file("/d/x", b"old");
    replace_file(&sim, Path::new("/d/x"), b"new").unwrap();
    for seed in SEEDS {
        sim.power_cycle(CutMode::Reorder { seed });
        assert_eq!(sim.read(Path::new("/d/x")).unwrap(), b"new");
    }
}

#[test]
fn torn_keeps_arbitrary_sectors_and_garbage_only_in_flight() {
    let (mut non_prefix, mut garbage_seen) = (false, false);
    for seed in SEEDS {
        let sim = SimStorage::new();
        let (early, last) = (Path::new("/early"), Path::new("/last"));
        sim.insert_device(early, &[b'o'; 8 * S]);
        sim.insert_device(last, &[b'o'; 8 * S]);
        sim.write_at(early, 0, &[b'n'; 8 * S]).unwrap();
        sim.write_at(last, 0, &[b'n'; 8 * S]).unwrap();
        sim.power_cycle(CutMode::Torn { seed });
        let early = per_sector(&sim.read(early).unwrap());
        let last = per_sector(&sim.read(last).unwrap());
        assert!(
            early.iter().all(|&b| b == b'o' || b == b'n'),
            "Torn {{ seed: {seed} }}: a write before the last one holds garbage: {early:?}"
        );
        non_prefix |= !is_prefix_pattern(&early);
        garbage_seen |= last.iter().any(|&b| b != b'o' && b != b'n');
    }
    assert!(non_prefix, "no seed tore a write other than at a prefix");
    assert!(
        garbage_seen,
        "no seed left a garbage sector in the last write"
    );
}

#[test]
fn read_error_makes_one_sector_of_the_last_write_unreadable_until_rewritten() {
    for seed in SEEDS {
        let sim = SimStorage::new();
        let path = Path::new("/dev/x");
        sim.insert_device(path, &[b'o'; 8 * S]);
        sim.write_at(path, S as u64, &[b'n'; 4 * S]).unwrap();
        sim.power_cycle(CutMode::ReadError { seed });
        let bad = sim.bad_sectors(path);
        assert_eq!(bad.len(), 1, "seed {seed}: {bad:?}");
        assert!((1..5).contains(&bad[0]), "seed {seed}: {bad:?}");
        let err = sim.read(path).unwrap_err();
        assert!(err.to_string().contains("EIO"), "{err}");
        let err = sim.read_at(path, bad[0] * SECTOR + 7, 1).unwrap_err();
        assert!(
            err.to_string().contains(&format!("sector {}", bad[0])),
            "{err}"
        );
        // Sectors around it read fine and hold what was written.
        for sector in (1..5).filter(|s| *s != bad[0]) {
            assert_eq!(
                sim.read_at(path, sector * SECTOR, S).unwrap(),
                vec![b'n'; S]
            );
        }
        assert_eq!(sim.read_at(path, 0, S).unwrap(), vec![b'o'; S]);
        // A partial write does not heal it; a write of the whole sector does.
        sim.write_at(path, bad[0] * SECTOR, &[b'r'; 10]).unwrap();
        assert!(sim.read(path).is_err());
        sim.write_at(path, bad[0] * SECTOR, &[b'r'; S]).unwrap();
        assert!(sim.read(path).is_ok());
    }
    // Nothing unsynced, nothing damaged.
    let sim = SimStorage::new();
    sim.insert_device("/dev/y", &[1u8; 4 * S]);
    sim.power_cycle(CutMode::ReadError { seed: 1 });
    assert!(sim.bad_sectors(Path::new("/dev/y")).is_empty());
}

#[test]
fn injected_media_faults() {
    let sim = SimStorage::new();
    let path = Path::new("/boot/env");
    sim.insert_file(path, &[7u8; 4 * S]);
    // EIO on read of a chosen range.
    sim.inject_read_error(path, 2 * SECTOR + 1, 1).unwrap();
    assert_eq!(sim.bad_sectors(path), vec![2]);
    assert!(sim.read(path).is_err());
    assert!(sim.read_at(path, 0, 2 * S).is_ok());
    assert!(sim.read_at(path, 2 * SECTOR - 1, 2).is_err());
    assert!(sim.inject_read_error(Path::new("/nope"), 0, 1).is_err());
    // Rewriting the whole file (truncate + write) heals it.
    sim.write_file(path, &[7u8; 4 * S]).unwrap();
    assert!(sim.read(path).is_ok());

    // Damage to already-synced data survives a power cycle and touches only its sector.
    sim.sync(path).unwrap();
    let range = sim.corrupt_synced(path, SECTOR + 3, 2, 42).unwrap();
    assert_eq!(range, SECTOR..2 * SECTOR);
    sim.power_cycle(CutMode::LoseUnsynced);
    let after = sim.read(path).unwrap();
    assert_eq!(after.len(), 4 * S);
    assert_ne!(&after[S..2 * S], &[7u8; S][..]);
    assert_eq!(&after[..S], &[7u8; S][..]);
    assert_eq!(&after[2 * S..], &[7u8; 2 * S][..]);
    // Same seed, same damage.
    let again = SimStorage::new();
    again.insert_file(path, &[7u8; 4 * S]);
    again.corrupt_synced(path, SECTOR + 3, 2, 42).unwrap();
    assert_eq!(again.read(path).unwrap(), after);
}

#[test]
fn seeded_modes_are_listed_with_their_seed() {
    let modes = CutMode::all_with_seeds(&[3, 9]);
    assert_eq!(modes.len(), 4 + 2 * 3);
    assert_eq!(&modes[..4], &CutMode::ALL);
    assert_eq!(modes[4], CutMode::Reorder { seed: 3 });
    assert_eq!(modes[9].seed(), Some(9));
    assert_eq!(CutMode::LoseUnsynced.seed(), None);
}

#[test]
fn a_fork_is_independent_and_keeps_the_volatile_state() {
    let sim = SimStorage::new();
    let path = Path::new("/d/f");
    sim.insert_file(path, b"old");
    sim.write_file(path, b"new").unwrap();
    sim.inject_read_error(Path::new("/d/f"), 0, 1).unwrap();
    let fork = sim.fork();
    assert_eq!(fork.ops_done(), sim.ops_done());
    assert_eq!(fork.bad_sectors(path), vec![0]);
    // The fork's unsynced write is still volatile there, and only there.
    fork.power_cycle(CutMode::LoseUnsynced);
    assert_eq!(fork.contents(path).unwrap(), b"old");
    assert_eq!(sim.contents(path).unwrap(), b"new");
    sim.sync(path).unwrap();
    assert_eq!(fork.ops_done() + 1, sim.ops_done());
}
