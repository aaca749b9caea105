//! Corrupted input: bad CRC, truncated, garbage, oversized and structurally malformed
//! environments give clear errors, and the other copy is used where there is one.

use crate::common;

use std::process::Command;

use common::s;
use keel_bootenv::crc::crc32;
use keel_bootenv::ebg::{
    select_boot, BgEnv, BgEnvSet, CopyState, UState, UserVar, ENV_MEM_USERVARS, ENV_SIZE,
};
use keel_bootenv::grub::GrubEnv;
use keel_bootenv::storage::FsStorage;
use keel_bootenv::uboot::{decode_copy, encode_copy, FwEnvConfig, UbootEnv, Vars};
use keel_bootenv::{BootEnv, EnvError};

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

fn env(rev: u32, kernel: &str) -> BgEnv {
    BgEnv {
        revision: rev,
        kernelfile: kernel.into(),
        ..BgEnv::new()
    }
}

fn fix_crc(bytes: &mut [u8]) {
    let n = bytes.len() - 4;
    let crc = crc32(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn ebg_rejects_each_kind_of_damage() {
    let good = env(4, "vmlinuz").to_bytes().unwrap();

    let mut bad_crc = good.clone();
    bad_crc[100] ^= 0x40;
    let e = BgEnv::parse(&bad_crc).unwrap_err();
    assert!(matches!(e, EnvError::BadCrc { .. }), "{e}");
    assert!(e.to_string().contains("CRC-32 mismatch"), "{e}");

    for len in [0, 1, 1028, ENV_SIZE - 1, ENV_SIZE + 1, 2 * ENV_SIZE] {
        let mut bytes = good.clone();
        bytes.resize(len, 0);
        let e = BgEnv::parse(&bytes).unwrap_err();
        assert!(
            matches!(e, EnvError::WrongSize { expected: ENV_SIZE, actual, .. } if actual == len),
            "{e}"
        );
    }
    for seed in 1..20 {
        assert!(matches!(
            BgEnv::parse(&garbage(ENV_SIZE, seed)),
            Err(EnvError::BadCrc { .. })
        ));
    }

    // Valid CRC but broken user-variable records.
    let user = 1028;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "payload length 4 < 12",
            [b"k\0".as_slice(), &4u32.to_le_bytes()].concat(),
        ),
        (
            "runs past the user area",
            [b"k\0".as_slice(), &(ENV_MEM_USERVARS as u32).to_le_bytes()].concat(),
        ),
        ("not NUL-terminated", vec![b'k'; ENV_MEM_USERVARS]),
        (
            "length field truncated",
            [vec![b'k'; ENV_MEM_USERVARS - 3], vec![0, 1, 2]].concat(),
        ),
    ];
    for (want, record) in cases {
        let mut bytes = good.clone();
        bytes[user..user + record.len()].copy_from_slice(&record);
        fix_crc(&mut bytes);
        let e = BgEnv::parse(&bytes).unwrap_err();
        assert!(
            matches!(e, EnvError::Malformed { .. }) && e.to_string().contains(want),
            "{want}: {e}"
        );
    }

    // What keel refuses to write.
    let long = BgEnv {
        kernelparams: "x".repeat(255),
        ..BgEnv::new()
    };
    assert!(matches!(
        long.to_bytes(),
        Err(EnvError::InvalidVariable { .. })
    ));
    let mut full = BgEnv::new();
    full.uservars
        .push(UserVar::string("big", &"v".repeat(ENV_MEM_USERVARS)));
    assert!(matches!(full.to_bytes(), Err(EnvError::TooLarge { .. })));
    let mut exact = BgEnv::new();
    // key "k" + NUL + 12 header bytes + data, plus the terminating 0 byte, fills the area.
    exact.uservars.push(UserVar {
        key: "k".into(),
        type_flags: 32,
        data: vec![b'v'; ENV_MEM_USERVARS - 15],
    });
    assert_eq!(BgEnv::parse(&exact.to_bytes().unwrap()).unwrap(), exact);
}

/// Turns a good copy into a damaged one (`None`: the file is missing).
type Damage = Box<dyn Fn(Vec<u8>) -> Option<Vec<u8>>>;

#[test]
fn ebg_set_uses_the_other_copy_when_one_is_damaged() {
    let damage: Vec<(&str, Damage)> = vec![
        (
            "CRC",
            Box::new(|mut b: Vec<u8>| {
                b[5] ^= 1;
                Some(b)
            }),
        ),
        (
            "wrong size",
            Box::new(|mut b: Vec<u8>| {
                b.truncate(4096);
                Some(b)
            }),
        ),
        (
            "wrong size",
            Box::new(|mut b: Vec<u8>| {
                b.extend_from_slice(b"trailing");
                Some(b)
            }),
        ),
        ("CRC", Box::new(|b: Vec<u8>| Some(garbage(b.len(), 7)))),
        ("missing", Box::new(|_| None)),
    ];
    for (what, f) in damage {
        let dir = tempfile::tempdir().unwrap();
        let dirs = [dir.path().join("c0"), dir.path().join("c1")];
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(
            dirs[0].join("BGENV.DAT"),
            env(1, "good").to_bytes().unwrap(),
        )
        .unwrap();
        // The damaged copy had the higher revision: without it the older one must win.
        if let Some(bytes) = f(env(2, "newer").to_bytes().unwrap()) {
            std::fs::write(dirs[1].join("BGENV.DAT"), bytes).unwrap();
        }
        let mut set = BgEnvSet::open_dirs(&dirs).unwrap();
        match (&set.copies()[1], what) {
            (CopyState::Missing, "missing") => {}
            (CopyState::Invalid(msg), _) => {
                assert!(msg.contains(what) && msg.contains("c1"), "{what}: {msg}")
            }
            (other, _) => panic!("{what}: {other:?}"),
        }
        assert_eq!(set.latest_index(), Some(0));
        assert_eq!(set.get("kernelfile").as_deref(), Some("good"));
        let decision = select_boot(set.copies());
        assert_eq!(decision.booted.unwrap().kernelfile, "good");
        assert!(decision.partially_corrupted);
        // The next update repairs the damaged copy, never the good one.
        assert_eq!(set.begin_update().unwrap(), 1);
        set.finalize_update().unwrap();
        let reread = BgEnvSet::open_dirs(&dirs).unwrap();
        assert!(
            matches!(&reread.copies()[1], CopyState::Valid(e) if e.revision == 2 && e.ustate == UState::INSTALLED)
        );
    }
}

#[test]
fn ebg_refuses_a_new_update_during_an_unconfirmed_test_boot() {
    let dir = tempfile::tempdir().unwrap();
    let dirs = [dir.path().join("c0"), dir.path().join("c1")];
    for (i, d) in dirs.iter().enumerate() {
        std::fs::create_dir_all(d).unwrap();
        let mut e = env(i as u32 + 1, "k");
        if i == 1 {
            e.ustate = UState::TESTING;
        }
        std::fs::write(d.join("BGENV.DAT"), e.to_bytes().unwrap()).unwrap();
    }
    let mut set = BgEnvSet::open_dirs(&dirs).unwrap();
    let e = set.begin_update().unwrap_err();
    assert!(e.to_string().contains("TESTING"), "{e}");
}

const SIZE: usize = 0x2000;

fn vars(tag: &str) -> Vars {
    [("copy", tag), ("bootcmd", "boot")]
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

fn fw_printenv_status(cfg: &std::path::Path) -> (bool, String) {
    let out = Command::new("fw_printenv")
        .args(["-c", s(cfg)])
        .output()
        .expect("fw_printenv must be installed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn uboot_rejects_damage_and_falls_back_like_fw_printenv() {
    let good = encode_copy(&vars("x"), SIZE, Some(5)).unwrap();
    let mut bad = good.clone();
    bad[200] ^= 1;
    assert!(matches!(
        decode_copy(&bad, true),
        Err(EnvError::BadCrc { .. })
    ));
    assert!(matches!(
        decode_copy(&good[..5], true),
        Err(EnvError::WrongSize { .. })
    ));
    assert!(matches!(
        decode_copy(&[], false),
        Err(EnvError::WrongSize { .. })
    ));
    for seed in 1..20 {
        assert!(matches!(
            decode_copy(&garbage(SIZE, seed), seed % 2 == 0),
            Err(EnvError::BadCrc { .. })
        ));
    }
    // Valid CRC, but the last entry runs to the end of the area without a NUL.
    let mut unterminated = vec![0u8; 4];
    unterminated.extend(std::iter::repeat_n(b'a', 60));
    let crc = crc32(&unterminated[4..]);
    unterminated[..4].copy_from_slice(&crc.to_le_bytes());
    let e = decode_copy(&unterminated, false).unwrap_err();
    assert!(e.to_string().contains("not NUL-terminated"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let (p0, p1) = (dir.path().join("env0"), dir.path().join("env1"));
    let config = FwEnvConfig::redundant((p0.clone(), 0), (p1.clone(), 0), SIZE);
    let cfg = dir.path().join("fw_env.config");
    std::fs::write(&cfg, config.to_config_string()).unwrap();
    // Copy 1 is newer (flags 6) but damaged in each way: both readers use copy 0.
    let newer = encode_copy(&vars("one"), SIZE, Some(6)).unwrap();
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        (
            "CRC",
            [&newer[..100], &[newer[100] ^ 0xFF], &newer[101..]].concat(),
        ),
        ("wrong size", newer[..SIZE / 2].to_vec()),
        ("CRC", garbage(SIZE, 99)),
    ];
    for (what, bytes) in damaged {
        std::fs::write(&p0, encode_copy(&vars("zero"), SIZE, Some(5)).unwrap()).unwrap();
        std::fs::write(&p1, &bytes).unwrap();
        let mut env = UbootEnv::open(FsStorage::shared(), config.clone()).unwrap();
        assert_eq!(env.current_index(), 0, "{what}");
        assert_eq!(env.get("copy").as_deref(), Some("zero"));
        assert!(
            matches!(&env.copies()[1], keel_bootenv::uboot::CopyStatus::Invalid(m) if m.contains(what)),
            "{what}: {:?}",
            env.copies()[1]
        );
        if what != "wrong size" {
            // libubootenv refuses a short file outright; for the others it agrees with keel.
            let (ok, out) = fw_printenv_status(&cfg);
            assert!(ok && out.contains("copy=zero"), "{what}: {out}");
        }
        // The next commit overwrites the damaged copy; the good one is kept.
        env.set("copy", "repaired").unwrap();
        env.commit().unwrap();
        assert_eq!(
            std::fs::read(&p0).unwrap(),
            encode_copy(&vars("zero"), SIZE, Some(5)).unwrap()
        );
        if what != "wrong size" {
            assert!(fw_printenv_status(&cfg).1.contains("copy=repaired"));
        }
    }

    // Both copies damaged: a clear error naming both, like fw_printenv's failure.
    std::fs::write(&p0, garbage(SIZE, 1)).unwrap();
    std::fs::write(&p1, garbage(SIZE, 2)).unwrap();
    let e = UbootEnv::open(FsStorage::shared(), config.clone()).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, EnvError::NoValidCopy { .. }) && msg.contains("env0") && msg.contains("env1"),
        "{msg}"
    );
    assert!(
        !fw_printenv_status(&cfg).0,
        "fw_printenv must fail too without a default env"
    );
    // Starting from defaults, as fw_setenv -f does.
    let mut env =
        UbootEnv::open_or_default(FsStorage::shared(), config.clone(), &[("bootcmd", "boot")])
            .unwrap();
    env.commit().unwrap();
    let (ok, out) = fw_printenv_status(&cfg);
    assert!(ok && out == "bootcmd=boot\n", "{out}");
}

#[test]
fn uboot_config_errors_are_clear() {
    for (text, want) in [
        ("/dev/x zz 0x4000\n", "bad offset"),
        ("/dev/x 0 0xZZ\n", "bad env size"),
        ("/dev/x 0 0x4000 q\n", "bad sector size"),
        ("/dev/x 0 0x4000\n/dev/y 0 0x2000\n", "different sizes"),
        ("# only comments\n\n", "no device line"),
        ("/dev/x 0 0\n", "too small"),
    ] {
        let e = FwEnvConfig::parse(text).unwrap_err();
        assert!(e.to_string().contains(want), "{text:?}: {e}");
    }
}

#[test]
fn grubenv_rejects_damage_like_grub_editenv() {
    let mut env = GrubEnv::new();
    env.set_bytes(b"ORDER", b"A B");
    let good = env.to_bytes().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    let mut no_sig = good.clone();
    no_sig[2] = b'X';
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("signature", no_sig),
        ("wrong size", good[..10].to_vec()),
        ("wrong size", vec![b'#'; 70_000]),
        ("without '='", [&good[..25], &b"ORDER"[..]].concat()),
        ("not terminated", [&good[..25], &b"ORDER=A B"[..]].concat()),
        ("signature", garbage(1024, 3)),
    ];
    for (want, bytes) in cases {
        let e = GrubEnv::parse(&bytes).unwrap_err();
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
    // grub-editenv also refuses a block without the signature.
    let mut bad = good.clone();
    bad[0] = b'X';
    std::fs::write(&path, &bad).unwrap();
    let out = Command::new("grub-editenv")
        .args([s(&path), "list"])
        .output()
        .expect("grub-editenv must be installed");
    assert!(!out.status.success());
    // Over-full: keel refuses to write what does not fit in 1024 bytes.
    env.set_bytes(b"big", &[b'v'; 1000]);
    assert!(matches!(env.to_bytes(), Err(EnvError::TooLarge { .. })));
}

/// A copy whose read fails (EIO: a sector lost when the power failed mid-write) is an invalid
/// copy, not a failed load: EFI Boot Guard and a redundant U-Boot env use the other one, and
/// an update rewrites the unreadable one whole. A single U-Boot copy reports the read error.
#[test]
fn an_unreadable_copy_is_invalid_and_the_other_one_is_used() {
    use keel_bootenv::ebg::EnvLocation;
    use keel_bootenv::storage::{SimStorage, Storage};
    use std::path::Path;
    use std::sync::Arc;

    let sim = SimStorage::shared();
    let locations = vec![
        EnvLocation::in_dir("/config0"),
        EnvLocation::in_dir("/config1"),
    ];
    sim.insert_file("/config0/BGENV.DAT", &env(5, "a").to_bytes().unwrap());
    sim.insert_file("/config1/BGENV.DAT", &env(4, "b").to_bytes().unwrap());
    sim.inject_read_error(Path::new("/config0/BGENV.DAT"), 4096, 1)
        .unwrap();
    let storage: Arc<dyn Storage> = sim.clone();
    let mut set = BgEnvSet::open(storage.clone(), locations.clone()).unwrap();
    match &set.copies()[0] {
        CopyState::Invalid(why) => {
            assert!(why.contains("EIO"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(set.latest().unwrap().kernelfile, "b");
    // The update writes the unreadable copy whole, which makes it readable again.
    set.begin_update().unwrap();
    set.pending_mut().unwrap().kernelfile = "c".into();
    set.finalize_update().unwrap();
    let set = BgEnvSet::open(storage, locations).unwrap();
    assert_eq!(set.latest().unwrap().kernelfile, "c");
    assert!(matches!(set.copies()[0], CopyState::Valid(_)));

    // U-Boot, redundant: the readable copy decides.
    let sim = SimStorage::shared();
    let size = 0x2000;
    let config = FwEnvConfig::redundant(("/dev/env0", 0), ("/dev/env1", 0), size);
    sim.insert_device(
        "/dev/env0",
        &encode_copy(&vars("new"), size, Some(2)).unwrap(),
    );
    sim.insert_device(
        "/dev/env1",
        &encode_copy(&vars("old"), size, Some(1)).unwrap(),
    );
    sim.inject_read_error(Path::new("/dev/env0"), 0, 1).unwrap();
    let storage: Arc<dyn Storage> = sim.clone();
    let uboot = UbootEnv::open(storage, config).unwrap();
    assert_eq!(uboot.raw_vars(), &vars("old"));

    // U-Boot, single copy: nothing to fall back on, the read error is reported.
    let sim = SimStorage::shared();
    let config = FwEnvConfig::single("/dev/env0", 0, size);
    sim.insert_device(
        "/dev/env0",
        &encode_copy(&vars("only"), size, None).unwrap(),
    );
    sim.inject_read_error(Path::new("/dev/env0"), 512, 1)
        .unwrap();
    let storage: Arc<dyn Storage> = sim.clone();
    let err = UbootEnv::open(storage, config).unwrap_err();
    assert!(err.to_string().contains("EIO"), "{err}");
}
