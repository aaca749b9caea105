//! U-Boot: keel and libubootenv 0.3.2's `fw_printenv`/`fw_setenv` (file-backed configs) and
//! u-boot-tools' `mkenvimage` read each other's environments, single and redundant.

use crate::common;

use std::path::Path;

use common::{run, s, stdout};
use keel_bootenv::storage::FsStorage;
use keel_bootenv::uboot::{decode_copy, encode_copy, FwEnvConfig, UbootEnv, Vars};
use keel_bootenv::BootEnv;

const SIZE: usize = 0x4000;

fn fw_printenv(cfg: &Path) -> Vec<(String, String)> {
    stdout("fw_printenv", &["-c", s(cfg)])
        .lines()
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("unexpected fw_printenv line {l:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn sample_vars() -> Vars {
    [
        ("bootcmd", "run distro_bootcmd"),
        ("altbootcmd", "setenv mmcpart ${rollback_part}; run bootcmd"),
        ("bootlimit", "3"),
        ("bootcount", "0"),
        ("upgrade_available", "0"),
        ("mmcpart", "2"),
        ("empty", ""),
        ("spaces", "a b  c"),
        ("Zupper", "sorted before lowercase"),
    ]
    .iter()
    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect()
}

fn strings(env: &UbootEnv) -> Vec<(String, String)> {
    env.vars()
}

fn write_cfg(dir: &Path, config: &FwEnvConfig) -> std::path::PathBuf {
    let cfg = dir.join("fw_env.config");
    std::fs::write(&cfg, config.to_config_string()).unwrap();
    cfg
}

#[test]
fn single_env_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let config = FwEnvConfig::single(dir.path().join("uboot.env"), 0, SIZE);
    let cfg = write_cfg(dir.path(), &config);
    let mut env = UbootEnv::provision(FsStorage::shared(), config.clone(), &sample_vars()).unwrap();
    assert_eq!(fw_printenv(&cfg), strings(&env));

    env.set("upgrade_available", "1").unwrap();
    env.unset("spaces").unwrap();
    env.commit().unwrap();
    assert_eq!(fw_printenv(&cfg), strings(&env));

    run("fw_setenv", &["-c", s(&cfg), "from_tool", "x=y z"]);
    run("fw_setenv", &["-c", s(&cfg), "bootcount"]); // deletes
    let env = UbootEnv::open_config_file(&cfg).unwrap();
    assert_eq!(env.get("from_tool").as_deref(), Some("x=y z"));
    assert_eq!(env.get("bootcount"), None);
    assert_eq!(fw_printenv(&cfg), strings(&env));
}

#[test]
fn env_at_an_offset_inside_a_larger_file() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0xA5u8; 0x20000]).unwrap();
    // Copy 0 at 64 KiB, copy 1 at 96 KiB of the same "disk".
    let config = FwEnvConfig::redundant((disk.clone(), 0x10000), (disk.clone(), 0x18000), SIZE);
    let cfg = write_cfg(dir.path(), &config);
    let mut env = UbootEnv::provision(FsStorage::shared(), config, &sample_vars()).unwrap();
    env.set("mmcpart", "3").unwrap();
    env.commit().unwrap();
    assert_eq!(fw_printenv(&cfg), strings(&env));
    // A negative offset counts back from the end (libubootenv allows it only on block
    // devices, keel on files too): -0x8000 is the same copy as 0x18000.
    let back = FwEnvConfig::redundant((disk.clone(), 0x10000), (disk.clone(), -0x8000), SIZE);
    let env_back = UbootEnv::open(FsStorage::shared(), back).unwrap();
    assert_eq!(
        (env_back.current_index(), strings(&env_back)),
        (1, strings(&env))
    );
    let bytes = std::fs::read(&disk).unwrap();
    assert_eq!(bytes.len(), 0x20000);
    assert!(
        bytes[..0x10000].iter().all(|&b| b == 0xA5),
        "bytes outside the env are untouched"
    );
}

#[test]
fn redundant_env_flags_and_alternation() {
    let dir = tempfile::tempdir().unwrap();
    let (p0, p1) = (dir.path().join("env0.bin"), dir.path().join("env1.bin"));
    let config = FwEnvConfig::redundant((p0.clone(), 0), (p1.clone(), 0), SIZE);
    let cfg = write_cfg(dir.path(), &config);
    let mut env = UbootEnv::provision(FsStorage::shared(), config.clone(), &sample_vars()).unwrap();
    assert_eq!(env.current_index(), 0);
    assert_eq!(fw_printenv(&cfg), strings(&env));

    // keel writes the other copy with flags + 1; libubootenv follows it.
    env.set("upgrade_available", "1").unwrap();
    env.commit().unwrap();
    assert_eq!(env.current_index(), 1);
    assert_eq!(
        decode_copy(&std::fs::read(&p1).unwrap(), true)
            .unwrap()
            .flags,
        Some(2)
    );
    assert_eq!(fw_printenv(&cfg), strings(&env));

    // fw_setenv writes copy 0 next (flags 3); keel follows it.
    run("fw_setenv", &["-c", s(&cfg), "bootcount", "1"]);
    let mut env = UbootEnv::open(FsStorage::shared(), config.clone()).unwrap();
    assert_eq!((env.current_index(), env.current_flags()), (0, 3));
    assert_eq!(env.get("bootcount").as_deref(), Some("1"));
    assert_eq!(env.get("upgrade_available").as_deref(), Some("1"));

    // Many alternating writers: the two sides always agree.
    for round in 0..6 {
        env.set("round", &round.to_string()).unwrap();
        env.commit().unwrap();
        assert_eq!(fw_printenv(&cfg), strings(&env));
        run(
            "fw_setenv",
            &["-c", s(&cfg), "tool_round", &round.to_string()],
        );
        env = UbootEnv::open(FsStorage::shared(), config.clone()).unwrap();
        assert_eq!(env.get("tool_round"), Some(round.to_string()));
        assert_eq!(fw_printenv(&cfg), strings(&env));
    }
}

#[test]
fn flags_wrap_around_agrees_with_libubootenv() {
    let dir = tempfile::tempdir().unwrap();
    let (p0, p1) = (dir.path().join("env0.bin"), dir.path().join("env1.bin"));
    let config = FwEnvConfig::redundant((p0.clone(), 0), (p1.clone(), 0), SIZE);
    let cfg = write_cfg(dir.path(), &config);
    let mut a = Vars::new();
    a.insert(b"copy".to_vec(), b"zero".to_vec());
    let mut b = Vars::new();
    b.insert(b"copy".to_vec(), b"one".to_vec());
    // (flags of copy 0, flags of copy 1, copy that must win)
    for (f0, f1, winner) in [
        (255u8, 0u8, "one"),
        (0, 255, "zero"),
        (7, 7, "zero"),
        (4, 5, "one"),
        (200, 3, "zero"),
    ] {
        std::fs::write(&p0, encode_copy(&a, SIZE, Some(f0)).unwrap()).unwrap();
        std::fs::write(&p1, encode_copy(&b, SIZE, Some(f1)).unwrap()).unwrap();
        let tool = fw_printenv(&cfg);
        assert_eq!(
            tool,
            vec![("copy".to_string(), winner.to_string())],
            "flags {f0}/{f1}"
        );
        let env = UbootEnv::open(FsStorage::shared(), config.clone()).unwrap();
        assert_eq!(env.get("copy").as_deref(), Some(winner), "flags {f0}/{f1}");
    }
    // Committing on top of flags 255 wraps to 0 and still wins for both readers.
    std::fs::write(&p0, encode_copy(&a, SIZE, Some(255)).unwrap()).unwrap();
    std::fs::write(&p1, encode_copy(&b, SIZE, Some(254)).unwrap()).unwrap();
    let mut env = UbootEnv::open(FsStorage::shared(), config.clone()).unwrap();
    assert_eq!(env.current_index(), 0);
    env.set("copy", "wrapped").unwrap();
    env.commit().unwrap();
    assert_eq!(
        decode_copy(&std::fs::read(&p1).unwrap(), true)
            .unwrap()
            .flags,
        Some(0)
    );
    assert_eq!(
        fw_printenv(&cfg),
        vec![("copy".to_string(), "wrapped".to_string())]
    );
}

#[test]
fn keel_reads_mkenvimage_output() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("env.txt");
    std::fs::write(
        &txt,
        "bootcmd=run boot_a\nbootlimit=3\nupgrade_available=0\n",
    )
    .unwrap();
    for redundant in [false, true] {
        let img = dir.path().join(format!("env-{redundant}.bin"));
        let mut args = vec!["-s", "0x4000", "-o", s(&img)];
        if redundant {
            args.push("-r");
        }
        args.push(s(&txt));
        run("mkenvimage", &args);
        // mkenvimage pads with 0xFF; the CRC covers the padding.
        let d = decode_copy(&std::fs::read(&img).unwrap(), redundant).unwrap();
        assert_eq!(
            d.vars.get(&b"bootcmd"[..]).map(Vec::as_slice),
            Some(&b"run boot_a"[..])
        );
        assert_eq!(d.vars.len(), 3);
        assert_eq!(d.flags, redundant.then_some(1));
    }
}
