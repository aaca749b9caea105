//! EFI Boot Guard: keel and efibootguard 0.13's `bg_printenv`/`bg_setenv` read each other's
//! BGENV.DAT files field by field.

use crate::common;

use std::path::Path;

use common::{python_crc32_ok, run, s, stdout};
use keel_bootenv::ebg::{
    user_type, BgEnv, BgEnvSet, BootAction, CopyState, UState, UserVar, ENV_SIZE,
};
use keel_bootenv::BootEnv;

/// `bg_printenv -f FILE -r` as (key, value) lines.
fn bg_printenv(file: &Path) -> Vec<(String, String)> {
    stdout("bg_printenv", &["-f", s(file), "-r"])
        .lines()
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("unexpected bg_printenv line {l:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// What `bg_printenv -r` must print for `env`.
fn expected_lines(env: &BgEnv) -> Vec<(String, String)> {
    let mut lines = vec![
        ("IN_PROGRESS".to_string(), env.in_progress.to_string()),
        ("REVISION".to_string(), env.revision.to_string()),
        ("KERNEL".to_string(), env.kernelfile.clone()),
        ("KERNELARGS".to_string(), env.kernelparams.clone()),
        (
            "WATCHDOG_TIMEOUT".to_string(),
            env.watchdog_timeout_sec.to_string(),
        ),
        ("USTATE".to_string(), env.ustate.0.to_string()),
    ];
    for var in &env.uservars {
        lines.push((
            var.key.clone(),
            var.display_value().expect("printable test variable"),
        ));
    }
    lines
}

fn typed(key: &str, t: u64, data: &[u8]) -> UserVar {
    UserVar {
        key: key.to_string(),
        type_flags: t,
        data: data.to_vec(),
    }
}

#[test]
fn bg_printenv_reads_keel_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = BgEnv::new();
    env.kernelfile = "C:BOOT1:vmlinuz-6.1.0-cip".into();
    let prefix = "root=PARTUUID=1234 ro console=ttyS0,115200 ";
    env.kernelparams = format!("{prefix}{}", "x".repeat(254 - prefix.len()));
    env.in_progress = 0;
    env.ustate = UState::INSTALLED;
    env.watchdog_timeout_sec = 45;
    env.revision = 0xFFFF_FFF0;
    env.uservars = vec![
        UserVar::string("keel_slot", "B"),
        UserVar::string("empty", ""),
        typed("u8", user_type::UINT8, &[200]),
        typed("u16", user_type::UINT16, &60000u16.to_le_bytes()),
        typed("u32", user_type::UINT32, &4_000_000_000u32.to_le_bytes()),
        typed("u64", user_type::UINT64, &u64::MAX.to_le_bytes()),
        typed("s8", user_type::SINT8, &(-5i8).to_le_bytes()),
        typed("s16", user_type::SINT16, &(-3000i16).to_le_bytes()),
        typed("s32", user_type::SINT32, &(-70000i32).to_le_bytes()),
        typed("s64", user_type::SINT64, &i64::MIN.to_le_bytes()),
        typed("flag", user_type::BOOL, &[1]),
        typed("letter", user_type::CHAR, b"Q"),
        // User-defined type bits on top of a standard type are ignored by the printer.
        typed(
            "custom",
            user_type::STRING_ASCII | (5 << 32),
            b"with user bits\0",
        ),
    ];
    assert_eq!(
        env.kernelparams.encode_utf16().count(),
        254,
        "longest kernel command line that fits"
    );
    let file = dir.path().join("BGENV.DAT");
    std::fs::write(&file, env.to_bytes().unwrap()).unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().len(), ENV_SIZE as u64);
    assert!(
        python_crc32_ok(&file),
        "CRC must equal zlib.crc32 of the first 132100 bytes"
    );
    assert_eq!(bg_printenv(&file), expected_lines(&env));
    // Human-readable mode names the state as efibootguard does.
    assert!(stdout("bg_printenv", &["-f", s(&file)]).contains("ustate:           1 (INSTALLED)"));
}

#[test]
fn keel_reads_bg_setenv_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("BGENV.DAT");
    let f = s(&file);
    run(
        "bg_setenv",
        &[
            "-f",
            f,
            "-r",
            "5",
            "-k",
            "C:BOOT1:vmlinuz",
            "-a",
            "console=ttyS0 root=/dev/sda5",
            "-s",
            "TESTING",
            "-w",
            "60",
            "-x",
            "alpha=one",
            "-x",
            "beta=two words",
            "-i",
            "1",
        ],
    );
    let bytes = std::fs::read(&file).unwrap();
    let env = BgEnv::parse(&bytes).unwrap();
    assert_eq!(env.revision, 5);
    assert_eq!(env.kernelfile, "C:BOOT1:vmlinuz");
    assert_eq!(env.kernelparams, "console=ttyS0 root=/dev/sda5");
    assert_eq!(env.ustate, UState::TESTING);
    assert_eq!(env.watchdog_timeout_sec, 60);
    assert_eq!(env.in_progress, 1);
    assert_eq!(
        env.uservars,
        vec![
            UserVar::string("alpha", "one"),
            UserVar::string("beta", "two words")
        ]
    );
    assert_eq!(expected_lines(&env), bg_printenv(&file));
    // keel re-encodes byte-identically what bg_setenv wrote.
    assert_eq!(env.to_bytes().unwrap(), bytes);

    // Preserve mode: delete one variable, add another; keel sees the same.
    run(
        "bg_setenv",
        &["-f", f, "-P", "-x", "alpha=", "-x", "gamma=3", "-s", "OK"],
    );
    let env = BgEnv::parse(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        env.uservars,
        vec![
            UserVar::string("beta", "two words"),
            UserVar::string("gamma", "3")
        ]
    );
    assert_eq!(env.ustate, UState::OK);
    assert_eq!(expected_lines(&env), bg_printenv(&file));

    // bg_setenv -P edits a keel-written file with typed variables without losing them.
    let mut keel_env = BgEnv::new();
    keel_env.uservars = vec![
        typed("count", user_type::UINT32, &7u32.to_le_bytes()),
        UserVar::string("s", "v"),
    ];
    std::fs::write(&file, keel_env.to_bytes().unwrap()).unwrap();
    run("bg_setenv", &["-f", f, "-P", "-x", "s=w", "-r", "9"]);
    let env = BgEnv::parse(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(env.revision, 9);
    assert_eq!(
        env.uservars,
        vec![
            typed("count", user_type::UINT32, &7u32.to_le_bytes()),
            UserVar::string("s", "w")
        ]
    );
}

#[test]
fn two_copy_update_cycle_agrees_with_bg_printenv() {
    let dir = tempfile::tempdir().unwrap();
    let c0 = dir.path().join("config0");
    let c1 = dir.path().join("config1");
    std::fs::create_dir_all(&c0).unwrap();
    std::fs::create_dir_all(&c1).unwrap();
    let f0 = c0.join("BGENV.DAT");
    let f1 = c1.join("BGENV.DAT");
    // Provisioned by the real tool, as an image build would.
    run(
        "bg_setenv",
        &[
            "-f",
            s(&f0),
            "-r",
            "1",
            "-k",
            "C:BOOT0:vmlinuz",
            "-a",
            "root=/dev/sda4",
            "-w",
            "30",
        ],
    );
    run(
        "bg_setenv",
        &[
            "-f",
            s(&f1),
            "-r",
            "2",
            "-k",
            "C:BOOT1:vmlinuz",
            "-a",
            "root=/dev/sda5",
            "-w",
            "30",
            "-x",
            "keel_slot=B",
        ],
    );

    let mut set = BgEnvSet::open_dirs(&[&c0, &c1]).unwrap();
    assert_eq!(set.latest_index(), Some(1));
    assert_eq!(set.oldest_index(), 0);
    let before_c1 = std::fs::read(&f1).unwrap();

    // 1. begin: copy 0 becomes a clone of copy 1 with revision 3, in progress.
    assert_eq!(set.begin_update().unwrap(), 0);
    let p = bg_printenv(&f0);
    assert!(
        p.contains(&("REVISION".into(), "3".into()))
            && p.contains(&("IN_PROGRESS".into(), "1".into())),
        "{p:?}"
    );
    assert!(p.contains(&("keel_slot".into(), "B".into())));
    // 2. stage the new slot; 3. finalize.
    {
        let pending = set.pending_mut().unwrap();
        pending.kernelfile = "C:BOOT0:vmlinuz".into();
        pending.kernelparams = "root=/dev/sda4".into();
    }
    set.set("keel_slot", "A").unwrap();
    set.commit().unwrap(); // finalizes the open transaction
    let p = bg_printenv(&f0);
    for (k, v) in [
        ("REVISION", "3"),
        ("IN_PROGRESS", "0"),
        ("USTATE", "1"),
        ("KERNEL", "C:BOOT0:vmlinuz"),
        ("keel_slot", "A"),
    ] {
        assert!(
            p.contains(&(k.to_string(), v.to_string())),
            "{k}={v} missing in {p:?}"
        );
    }
    assert_eq!(
        std::fs::read(&f1).unwrap(),
        before_c1,
        "the booted copy is never touched by an update"
    );

    // The loader test-boots it (INSTALLED -> TESTING, written back), then we confirm.
    let decision = set.simulate_boot().unwrap();
    assert_eq!(
        (decision.action, decision.boot_index),
        (BootAction::StartedTest, Some(0))
    );
    assert!(bg_printenv(&f0).contains(&("USTATE".into(), "2".into())));
    assert!(set.confirm().unwrap());
    assert!(bg_printenv(&f0).contains(&("USTATE".into(), "0".into())));
    assert_eq!(set.get("ustate").as_deref(), Some("0"));

    // A second update that is never confirmed: the loader rolls back on the second boot.
    set.reload().unwrap();
    assert_eq!(set.begin_update().unwrap(), 1);
    set.pending_mut().unwrap().kernelfile = "C:BOOT1:broken".into();
    set.finalize_update().unwrap();
    assert_eq!(set.simulate_boot().unwrap().action, BootAction::StartedTest);
    let decision = set.simulate_boot().unwrap();
    assert_eq!(
        (decision.action, decision.boot_index),
        (BootAction::RolledBack, Some(0))
    );
    assert_eq!(decision.booted.unwrap().kernelfile, "C:BOOT0:vmlinuz");
    let p = bg_printenv(&f1);
    assert!(
        p.contains(&("REVISION".into(), "0".into())) && p.contains(&("USTATE".into(), "3".into())),
        "{p:?}"
    );
    assert_eq!(set.global_ustate(), UState::FAILED);
    assert_eq!(set.get("ustate").as_deref(), Some("3"));
    // Confirming the running (old) configuration clears the rollback marker.
    set.confirm().unwrap();
    assert!(bg_printenv(&f1).contains(&("USTATE".into(), "0".into())));
    assert_eq!(set.global_ustate(), UState::OK);
    // Each copy keel wrote passes an independent CRC check.
    assert!(python_crc32_ok(&f0) && python_crc32_ok(&f1));
    assert!(matches!(set.copies()[1], CopyState::Valid(_)));
}
