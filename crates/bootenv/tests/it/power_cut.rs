//! Power-cut safety of every environment update.
//!
//! With `SimStorage`, the power is cut before each mutating storage operation (write,
//! fsync, rename, directory fsync) of an update and after its last one, in each `CutMode`
//! (unsynced data lost / kept / names kept but data lost / last write torn). After the power
//! comes back the environment is loaded again. It must be in one of the states the update
//! passes through when nothing goes wrong (for single-write updates: the old or the new
//! one), never a torn or invalid one; an update that returned success must survive every
//! kind of cut.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use keel_bootenv::ebg::{select_boot, BgEnv, BgEnvSet, CopyState, EnvLocation, UState, UserVar};
use keel_bootenv::grub::GrubEnvFile;
use keel_bootenv::storage::{CutMode, SimStorage, Storage};
use keel_bootenv::uboot::{encode_copy, FwEnvConfig, UbootEnv, Vars};
use keel_bootenv::{BootEnv, EnvError};

static POINTS: AtomicUsize = AtomicUsize::new(0);

/// Seeds of the seeded cut modes (`CutMode::seeded`): a fixed sample by default,
/// `KEEL_POWERCUT_FULL=1` for the exhaustive run.
pub fn seeds() -> Vec<u64> {
    if std::env::var_os("KEEL_POWERCUT_FULL").is_some_and(|v| v == "1") {
        (1..=64).collect()
    } else {
        vec![1, 2, 3, 4, 5, 6, 7, 8]
    }
}

/// Every cut mode of a sweep: the four deterministic ones and three seeded ones per seed.
fn modes() -> Vec<CutMode> {
    CutMode::all_with_seeds(&seeds())
}

/// Runs `op` on fresh disks from `setup` and cuts the power at every boundary in every
/// mode. The reference states are those after each boundary of an uninterrupted run (cut
/// with everything kept); `accept(state, references)` decides whether a state after a cut
/// is acceptable. Returns the number of cut points tried.
fn exhaust<T, S, O, B, A>(name: &str, setup: S, op: O, observe: B, accept: A) -> usize
where
    T: PartialEq + std::fmt::Debug,
    S: Fn() -> Arc<SimStorage>,
    O: Fn(&Arc<SimStorage>) -> Result<(), EnvError>,
    B: Fn(&Arc<SimStorage>) -> T,
    A: Fn(&T, &[T]) -> bool,
{
    let sim = setup();
    let start = sim.ops_done();
    op(&sim).unwrap_or_else(|e| panic!("{name}: uninterrupted run failed: {e}"));
    let boundaries = sim.ops_done() - start;
    assert!(boundaries > 0, "{name}: the operation wrote nothing");
    let trace = sim.trace().split_off(start as usize);

    let references: Vec<T> = (0..=boundaries)
        .map(|allowed| {
            let sim = setup();
            sim.arm_power_cut(allowed);
            let _ = op(&sim);
            sim.power_cycle(CutMode::KeepUnsynced);
            observe(&sim)
        })
        .collect();

    let mut tried = 0;
    for allowed in 0..=boundaries {
        for mode in modes() {
            let sim = setup();
            sim.arm_power_cut(allowed);
            let result = op(&sim);
            let completed = allowed == boundaries;
            assert_eq!(
                result.is_ok(),
                completed,
                "{name}: cut after {allowed} ops ({mode:?}): {result:?}"
            );
            sim.power_cycle(mode);
            let state = observe(&sim);
            if completed {
                assert_eq!(
                    &state,
                    references.last().unwrap(),
                    "{name}: completed update lost by a {mode:?} cut"
                );
            } else {
                assert!(
                    accept(&state, &references),
                    "{name}: cut after {allowed} ops ({mode:?}) left {state:?}"
                );
            }
            tried += 1;
        }
    }
    println!(
        "{name}: {boundaries} boundaries [{}] -> {tried} cut points tried",
        trace.join("; ")
    );
    POINTS.fetch_add(tried, Ordering::Relaxed);
    tried
}

// ---------------------------------------------------------------- EFI Boot Guard

fn ebg_env(rev: u32, kernel: &str, ustate: UState) -> BgEnv {
    let mut env = BgEnv::new();
    env.revision = rev;
    env.kernelfile = kernel.into();
    env.kernelparams = format!("root=/dev/{kernel}");
    env.ustate = ustate;
    env.uservars.push(UserVar::string("keel_slot", kernel));
    env
}

fn file_locations() -> Vec<EnvLocation> {
    vec![
        EnvLocation::in_dir("/config0"),
        EnvLocation::in_dir("/config1"),
    ]
}

fn raw_locations() -> Vec<EnvLocation> {
    vec![
        EnvLocation::Raw {
            path: PathBuf::from("/dev/config0"),
            offset: 4096,
        },
        EnvLocation::Raw {
            path: PathBuf::from("/dev/config1"),
            offset: 4096,
        },
    ]
}

/// Disks holding the copies, on FAT files or raw devices.
fn ebg_disks(locations: &[EnvLocation], copies: &[BgEnv]) -> Arc<SimStorage> {
    let sim = SimStorage::shared();
    for (loc, env) in locations.iter().zip(copies) {
        match loc {
            EnvLocation::File(path) => sim.insert_file(path.clone(), &env.to_bytes().unwrap()),
            EnvLocation::Raw { path, offset } => {
                let mut dev = vec![0u8; *offset as usize];
                dev.extend(env.to_bytes().unwrap());
                dev.resize(dev.len() + 4096, 0);
                sim.insert_device(path.clone(), &dev);
            }
        }
    }
    sim
}

fn open_set(sim: &Arc<SimStorage>, locations: &[EnvLocation]) -> Result<BgEnvSet, EnvError> {
    let storage: Arc<dyn Storage> = sim.clone();
    BgEnvSet::open(storage, locations.to_vec())
}

type EbgState = (Vec<CopyState>, Option<BgEnv>);

fn ebg_observe(locations: &[EnvLocation]) -> impl Fn(&Arc<SimStorage>) -> EbgState + '_ {
    move |sim| {
        let copies = open_set(sim, locations)
            .expect("load after power cycle")
            .copies()
            .to_vec();
        let booted = select_boot(&copies).booted;
        (copies, booted)
    }
}

/// Every copy is a state the copy passes through in an uninterrupted run, and the loader
/// boots a configuration it would boot in some uninterrupted state.
///
/// On raw partitions writes are in place: a torn copy is detected as invalid (CRC) and the
/// loader then boots the other, intact copy, which may be the previous configuration when
/// the current copy itself was being rewritten (confirm / commit outside a transaction).
fn ebg_accept(raw: bool) -> impl Fn(&EbgState, &[EbgState]) -> bool {
    move |(copies, booted), refs| {
        let torn = copies.iter().any(|c| matches!(c, CopyState::Invalid(_)));
        let copies_ok = copies.iter().enumerate().all(|(i, c)| {
            refs.iter().any(|(rc, _)| rc.get(i) == Some(c))
                || (raw && matches!(c, CopyState::Invalid(_)))
        });
        let Some(booted) = booted else { return false };
        let booted_ok = refs.iter().any(|(_, b)| b.as_ref() == Some(booted))
            || (raw
                && torn
                && refs
                    .iter()
                    .any(|(rc, _)| rc.iter().any(|c| c.env() == Some(booted))));
        copies_ok && booted_ok
    }
}

fn ebg_scenarios(locations: Vec<EnvLocation>, label: &str) -> usize {
    let raw = matches!(locations[0], EnvLocation::Raw { .. });
    let locs = &locations;
    let mut total = 0;
    let base = || vec![ebg_env(1, "a", UState::OK), ebg_env(2, "b", UState::OK)];

    total += exhaust(
        &format!("ebg {label}: begin_update"),
        || ebg_disks(locs, &base()),
        |sim| open_set(sim, locs)?.begin_update().map(|_| ()),
        ebg_observe(locs),
        ebg_accept(raw),
    );
    total += exhaust(
        &format!("ebg {label}: begin + finalize update"),
        || ebg_disks(locs, &base()),
        |sim| {
            let mut set = open_set(sim, locs)?;
            set.begin_update()?;
            set.pending_mut().unwrap().kernelfile = "c".into();
            set.finalize_update()
        },
        ebg_observe(locs),
        ebg_accept(raw),
    );
    // Confirm after a successful test boot (TESTING -> OK) and after a rollback (the FAILED
    // marker on the other copy is cleared).
    total += exhaust(
        &format!("ebg {label}: confirm TESTING"),
        || {
            ebg_disks(
                locs,
                &[
                    ebg_env(1, "a", UState::OK),
                    ebg_env(2, "b", UState::TESTING),
                ],
            )
        },
        |sim| open_set(sim, locs)?.confirm().map(|_| ()),
        ebg_observe(locs),
        ebg_accept(raw),
    );
    total += exhaust(
        &format!("ebg {label}: confirm after rollback"),
        || {
            ebg_disks(
                locs,
                &[ebg_env(3, "a", UState::OK), ebg_env(0, "b", UState::FAILED)],
            )
        },
        |sim| open_set(sim, locs)?.confirm().map(|_| ()),
        ebg_observe(locs),
        ebg_accept(raw),
    );
    total += exhaust(
        &format!("ebg {label}: BootEnv set + commit"),
        || ebg_disks(locs, &base()),
        |sim| {
            let mut set = open_set(sim, locs)?;
            set.set("keel_slot", "A")?;
            set.set("kernelfile", "c")?;
            set.commit()
        },
        ebg_observe(locs),
        ebg_accept(raw),
    );
    total
}

fn ebg_updates_on_fat_files_survive_every_cut() {
    ebg_scenarios(file_locations(), "files");
}

fn ebg_updates_on_raw_partitions_survive_every_cut() {
    ebg_scenarios(raw_locations(), "raw");
}

/// The loader's own write-back (INSTALLED -> TESTING) rewrites the latest copy in place, as
/// efibootguard does; a torn write there is caught by the CRC and the loader then boots the
/// other copy. This documents efibootguard's known weak spot and checks keel detects it.
#[test]
fn ebg_loader_write_back_torn_is_detected() {
    let locs = file_locations();
    let setup = || {
        ebg_disks(
            &locs,
            &[
                ebg_env(1, "a", UState::OK),
                ebg_env(2, "b", UState::INSTALLED),
            ],
        )
    };
    let mut torn_seen = 0;
    for mode in CutMode::ALL {
        for allowed in 0..=1 {
            let sim = setup();
            sim.arm_power_cut(allowed);
            let _ = open_set(&sim, &locs).unwrap().simulate_boot();
            sim.power_cycle(mode);
            let set = open_set(&sim, &locs).unwrap();
            match &set.copies()[1] {
                CopyState::Valid(env) => {
                    assert!(env.ustate == UState::INSTALLED || env.ustate == UState::TESTING)
                }
                CopyState::Invalid(why) => {
                    assert!(why.contains("CRC"), "{why}");
                    torn_seen += 1;
                    assert_eq!(select_boot(set.copies()).booted.unwrap().kernelfile, "a");
                }
                CopyState::Missing => panic!("copy vanished"),
            }
        }
    }
    assert_eq!(torn_seen, 1, "only the torn-write cut damages the copy");
}

// ---------------------------------------------------------------- U-Boot

const UB_SIZE: usize = 0x2000;

fn ub_vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

fn ub_old() -> Vars {
    ub_vars(&[
        ("bootcmd", "run boot_${slot}"),
        ("slot", "a"),
        ("upgrade_available", "0"),
        ("bootcount", "0"),
    ])
}

fn ub_update(sim: &Arc<SimStorage>, config: &FwEnvConfig) -> Result<(), EnvError> {
    let storage: Arc<dyn Storage> = sim.clone();
    let mut env = UbootEnv::open(storage, config.clone())?;
    env.set("slot", "b")?;
    env.set("upgrade_available", "1")?;
    env.set("bootcount", "0")?;
    env.set("padding", &"x".repeat(6000))?; // spans several sectors so a torn write tears data
    env.commit()
}

fn ub_observe(config: &FwEnvConfig) -> impl Fn(&Arc<SimStorage>) -> Result<Vars, String> + '_ {
    move |sim| {
        let storage: Arc<dyn Storage> = sim.clone();
        UbootEnv::open(storage, config.clone())
            .map(|e| e.raw_vars().clone())
            .map_err(|e| e.to_string())
    }
}

fn strict_accept<T: PartialEq>(state: &Result<T, String>, refs: &[Result<T, String>]) -> bool {
    state.is_ok() && refs.contains(state)
}

fn uboot_redundant_updates_survive_every_cut() {
    for (label, flags) in [
        ("flags 1/0", [1u8, 0u8]),
        ("flags 254/255 (wrap)", [254, 255]),
    ] {
        let config = FwEnvConfig::redundant(("/dev/env0", 0), ("/dev/env1", 0), UB_SIZE);
        let setup = || {
            let sim = SimStorage::shared();
            sim.insert_device(
                "/dev/env0",
                &encode_copy(&ub_old(), UB_SIZE, Some(flags[0])).unwrap(),
            );
            sim.insert_device(
                "/dev/env1",
                &encode_copy(&ub_vars(&[("stale", "1")]), UB_SIZE, Some(flags[1])).unwrap(),
            );
            sim
        };
        // Several commits in a row: each must be atomic.
        exhaust(
            &format!("uboot redundant {label}: commit"),
            setup,
            |sim| ub_update(sim, &config),
            ub_observe(&config),
            strict_accept,
        );
        exhaust(
            &format!("uboot redundant {label}: two commits"),
            setup,
            |sim| {
                ub_update(sim, &config)?;
                let storage: Arc<dyn Storage> = sim.clone();
                let mut env = UbootEnv::open(storage, config.clone())?;
                env.set("upgrade_available", "0")?;
                env.commit()
            },
            ub_observe(&config),
            strict_accept,
        );
    }
}

fn uboot_single_env_file_is_replaced_atomically() {
    let config = FwEnvConfig::single("/boot/uboot.env", 0, UB_SIZE);
    exhaust(
        "uboot single file: commit",
        || {
            let sim = SimStorage::shared();
            sim.insert_file(
                "/boot/uboot.env",
                &encode_copy(&ub_old(), UB_SIZE, None).unwrap(),
            );
            sim
        },
        |sim| ub_update(sim, &config),
        ub_observe(&config),
        strict_accept,
    );
}

/// A single (non-redundant) env on a raw device can only be written in place: a torn write
/// is not recoverable there (U-Boot falls back to its built-in default env). keel must
/// never *silently* read a torn env: it reports the CRC error (or the read error of a sector
/// lost mid-write, `CutMode::ReadError`) instead.
fn uboot_single_env_on_device_is_never_read_torn() {
    let config = FwEnvConfig::single("/dev/mmcblk0boot1", 0x1000, UB_SIZE);
    let detected = AtomicUsize::new(0);
    exhaust(
        "uboot single device: commit (in place)",
        || {
            let sim = SimStorage::shared();
            let mut dev = vec![0u8; 0x1000];
            dev.extend(encode_copy(&ub_old(), UB_SIZE, None).unwrap());
            sim.insert_device("/dev/mmcblk0boot1", &dev);
            sim
        },
        |sim| ub_update(sim, &config),
        ub_observe(&config),
        |state, refs| match state {
            Ok(_) => refs.contains(state),
            Err(e) => {
                detected.fetch_add(1, Ordering::Relaxed);
                e.contains("CRC") || e.contains("EIO")
            }
        },
    );
    assert!(
        detected.load(Ordering::Relaxed) > 0,
        "the torn-write cut must be seen as a CRC error"
    );
}

// ---------------------------------------------------------------- GRUB

fn grubenv_updates_survive_every_cut() {
    let path = "/boot/grub/grubenv";
    exhaust(
        "grubenv: commit",
        || {
            let sim = SimStorage::shared();
            let mut env = keel_bootenv::grub::GrubEnv::new();
            env.set_bytes(b"ORDER", b"A B");
            env.set_bytes(b"A_OK", b"1");
            sim.insert_file(path, &env.to_bytes().unwrap());
            sim
        },
        |sim| {
            let storage: Arc<dyn Storage> = sim.clone();
            let mut env = GrubEnvFile::open(storage, path)?;
            env.set("ORDER", "B A")?;
            env.set("B_TRY", "0")?;
            env.set("B_OK", &"1".repeat(600))?;
            env.commit()
        },
        |sim| {
            let storage: Arc<dyn Storage> = sim.clone();
            GrubEnvFile::open(storage, path)
                .map(|f| f.vars())
                .map_err(|e| e.to_string())
        },
        strict_accept,
    );
}

/// Every update of every format, cut at every boundary in every mode. Prints the number of
/// cut points tried.
#[test]
fn every_env_update_survives_every_power_cut() {
    ebg_updates_on_fat_files_survive_every_cut();
    ebg_updates_on_raw_partitions_survive_every_cut();
    uboot_redundant_updates_survive_every_cut();
    uboot_single_env_file_is_replaced_atomically();
    uboot_single_env_on_device_is_never_read_torn();
    grubenv_updates_survive_every_cut();
    let total = POINTS.load(Ordering::Relaxed);
    println!("power-cut runs (cut point x mode) in total: {total}");
    assert!(total >= 250, "fewer cut points than expected: {total}");
}

/// After a cut in the middle of an update, the next attempt succeeds from whatever state
/// the cut left (stale temporary files, an in-flight copy) and never touches the copy the
/// system boots from.
#[test]
fn ebg_update_retried_after_any_cut_completes() {
    let locs = file_locations();
    let setup = || {
        ebg_disks(
            &locs,
            &[ebg_env(1, "a", UState::OK), ebg_env(2, "b", UState::OK)],
        )
    };
    let update = |sim: &Arc<SimStorage>| -> Result<(), EnvError> {
        let mut set = open_set(sim, &locs)?;
        set.begin_update()?;
        set.pending_mut().unwrap().kernelfile = "c".into();
        set.finalize_update()
    };
    for allowed in 0..8 {
        for mode in modes() {
            let sim = setup();
            let booted_before = sim
                .contents(std::path::Path::new("/config1/BGENV.DAT"))
                .unwrap();
            sim.arm_power_cut(allowed);
            assert!(update(&sim).is_err());
            sim.power_cycle(mode);
            update(&sim).unwrap();
            let set = open_set(&sim, &locs).unwrap();
            let latest = set.latest().unwrap();
            assert_eq!(
                (
                    latest.kernelfile.as_str(),
                    latest.ustate,
                    latest.in_progress
                ),
                ("c", UState::INSTALLED, 0)
            );
            assert_eq!(
                sim.contents(std::path::Path::new("/config1/BGENV.DAT"))
                    .unwrap(),
                booted_before
            );
        }
    }
}
