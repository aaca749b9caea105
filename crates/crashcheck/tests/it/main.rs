//! keel-crashcheck: the log parser on synthetic logs, the overlay and the state generator.

use keel_crashcheck::disk::{Disk, Region, SECTOR};
use keel_crashcheck::replay::{replay, Kind, Options};
use keel_crashcheck::wlog::{Log, LogWriter, FLAG_FLUSH, MAGIC};

fn sector(fill: u8) -> Vec<u8> {
    vec![fill; SECTOR]
}

#[test]
fn parses_writes_flushes_and_marks() {
    let mut w = LogWriter::new();
    w.write(3, &[sector(1), sector(2)].concat())
        .flush()
        .mark("install done")
        .write(7, &sector(9));
    let log = Log::parse(w.finish()).expect("valid log");
    assert_eq!(log.sector_size, 512);
    assert_eq!(log.entries.len(), 4);
    let e = &log.entries[0];
    assert_eq!((e.sector, e.nr_sectors, e.flags), (3, 2, 0));
    assert!(e.is_write() && !e.is_barrier());
    assert_eq!(log.data(e), [sector(1), sector(2)].concat().as_slice());
    assert_eq!(log.entries[1].flags, FLAG_FLUSH);
    assert!(log.entries[1].is_barrier() && !log.entries[1].is_write());
    assert_eq!(log.entries[2].mark, "install done");
    assert!(log.data(&log.entries[2]).is_empty());
    assert_eq!(log.data(&log.entries[3]), sector(9).as_slice());
}

#[test]
fn malformed_logs_are_errors_not_panics() {
    let mut w = LogWriter::new();
    w.write(0, &sector(1)).flush();
    let good = w.finish();

    let err = Log::parse(good[..10].to_vec()).expect_err("short superblock");
    assert!(err.to_string().contains("superblock"), "{err}");

    let mut bad_magic = good.clone();
    bad_magic[0] ^= 1;
    let err = Log::parse(bad_magic).expect_err("bad magic");
    assert!(err.to_string().contains(&format!("{MAGIC:#x}")), "{err}");

    // Data cut short: the write's sector is missing.
    let err = Log::parse(good[..1024 + 100].to_vec()).expect_err("truncated data");
    assert!(err.to_string().contains("past the end"), "{err}");

    // More entries announced than present.
    let mut more = good.clone();
    more[16..24].copy_from_slice(&5u64.to_le_bytes());
    let err = Log::parse(more).expect_err("missing entries");
    assert!(err.to_string().contains("entry 2 of 5 missing"), "{err}");

    // Unknown flag bits.
    let mut flags = good.clone();
    flags[512 + 16] = 0x40;
    let err = Log::parse(flags).expect_err("unknown flags");
    assert!(err.to_string().contains("unknown flags"), "{err}");

    // Absurd sector count must not overflow.
    let mut huge = good.clone();
    huge[512 + 8..512 + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(Log::parse(huge).is_err());

    // Every truncation of a valid log is handled.
    for len in 0..good.len() {
        let _ = Log::parse(good[..len].to_vec());
    }
}

fn base_disk(dir: &tempfile::TempDir, sectors: usize) -> std::path::PathBuf {
    let path = dir.path().join("base.img");
    std::fs::write(&path, vec![0u8; sectors * SECTOR]).expect("write base");
    path
}

#[test]
fn overlay_tracks_slots_mirrors_and_rolls_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = base_disk(&dir, 16);
    let mut disk = Disk::open(&base).expect("open");
    // Slot in sectors 4..8, expected images: zeros ("old") and 4 sectors of 7 ("new").
    let new = [sector(7), sector(7), sector(7), sector(7)].concat();
    disk.track_slot(
        Region::from_bytes("slot", 4 * 512, 4 * 512),
        vec![
            ("old".into(), vec![0; 4 * SECTOR]),
            ("new".into(), new.clone()),
        ],
    )
    .expect("track");
    disk.mirror(
        Region::from_bytes("boot", 0, 4 * 512),
        &dir.path().join("m.img"),
    )
    .expect("mirror");
    assert_eq!(disk.slots[0].matching(), Some("old"));
    assert_eq!(disk.mirrors[0].key(), 0);

    let mark = disk.begin();
    disk.write(4, &new[..2 * SECTOR]).expect("write");
    assert_eq!(disk.slots[0].matching(), None, "half-written slot");
    disk.write(6, &new[2 * SECTOR..]).expect("write");
    assert_eq!(disk.slots[0].matching(), Some("new"));
    disk.write(1, &sector(5)).expect("write");
    let changed = disk.mirrors[0].key();
    assert_ne!(changed, 0);
    let mirrored = std::fs::read(dir.path().join("m.img")).expect("mirror file");
    assert_eq!(&mirrored[SECTOR..2 * SECTOR], sector(5).as_slice());
    disk.rollback(mark).expect("rollback");
    assert_eq!(disk.slots[0].matching(), Some("old"));
    assert_eq!(disk.mirrors[0].key(), 0, "same content, same key");
    let mirrored = std::fs::read(dir.path().join("m.img")).expect("mirror file");
    assert!(mirrored.iter().all(|b| *b == 0));

    // The key depends on content, not history.
    disk.write(1, &sector(9)).expect("write");
    disk.write(1, &sector(5)).expect("write");
    assert_eq!(disk.mirrors[0].key(), changed);

    assert!(
        disk.write(15, &[sector(1), sector(1)].concat()).is_err(),
        "past the end"
    );
    assert!(disk.write(0, &[1, 2, 3]).is_err(), "not whole sectors");
}

#[test]
fn generates_flush_prefix_omit_and_random_states() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = base_disk(&dir, 16);
    let mut w = LogWriter::new();
    w.write(0, &sector(1))
        .write(1, &sector(2))
        .write(2, &[sector(3), sector(3)].concat())
        .flush()
        .write(0, &sector(4))
        .flush();
    let log = Log::parse(w.finish()).expect("log");
    let mut disk = Disk::open(&base).expect("open");
    let opts = Options {
        seed: 42,
        random_per_interval: 5,
        omit_cap: 10,
    };
    let mut seen = Vec::new();
    let mut flushed_sector0 = Vec::new();
    let summary = replay(&log, &mut disk, "t", &opts, |id, _, disk| {
        let mut s0 = vec![0u8; SECTOR];
        disk.read_sector(0, &mut s0)?;
        if id.kind == Kind::Flush {
            flushed_sector0.push(s0[0]);
        }
        seen.push(id.to_string());
        Ok(true)
    })
    .expect("replay");
    // Interval 0: flush + 2 prefixes + 3 omits + 5 random; interval 1: flush + 1 random
    // (one write: no prefix or omit states); interval 2 (after the last flush): flush.
    assert_eq!(summary.states, 1 + 2 + 3 + 5 + 1 + 5 + 1, "{seen:?}");
    assert_eq!(summary.barriers, 2);
    assert_eq!(summary.writes, 4);
    assert_eq!(flushed_sector0, vec![0, 1, 4], "committed states in order");
    assert!(seen.contains(&"t/i0/omit1".to_string()));
    assert!(seen.contains(&"t/i1/rand4".to_string()));
    assert_eq!(seen.last().map(String::as_str), Some("t/i2/flush"));

    // Same seed, same states; the disk ends in the fully replayed state.
    let mut again = Vec::new();
    let mut disk2 = Disk::open(&base).expect("open");
    replay(&log, &mut disk2, "t", &opts, |id, info, _| {
        again.push(format!("{id} {}", info.detail));
        Ok(true)
    })
    .expect("replay");
    let mut first = Vec::new();
    let mut disk3 = Disk::open(&base).expect("open");
    replay(&log, &mut disk3, "t", &opts, |id, info, _| {
        first.push(format!("{id} {}", info.detail));
        Ok(true)
    })
    .expect("replay");
    assert_eq!(again, first);
    let mut s = vec![0u8; SECTOR];
    disk3.read_sector(2, &mut s).expect("read");
    assert_eq!(s, sector(3));
    disk3.read_sector(0, &mut s).expect("read");
    assert_eq!(s, sector(4));
}
