//! Power cut at every injection point: every mutating storage operation (write, fsync,
//! rename, directory fsync) of a full install (raw + encrypted images; and a delta install)
//! and of every environment update (the loader's own writes at boot, confirm, fallback), under
//! every model of what the disk keeps of unsynced data: the four deterministic ones (lose all,
//! keep all, keep names but lose data, tear the last write) and the seeded ones (an arbitrary
//! subset of the writes in an arbitrary order with per-entry name loss; arbitrary torn sectors
//! with garbage; an unreadable sector), each with a fixed list of seeds.
//!
//! The oracle is strict:
//! * slot B starts with a factory image of its own, so a slot never written cannot pass as
//!   "unchanged" by being zero; the booted slot must hold, in every target at once, exactly its
//!   content from before the operation or exactly the content the uncut operation leaves;
//! * the operation without a cut must succeed, and with a cut it must fail;
//! * a completed operation must survive a power cut in every mode (same slots, same boot, same
//!   agent state as without the cut);
//! * after every cut the device boots, the restarted agent reconciles and reports a state that
//!   can be wrong (`testing` exactly when the booted slot is the new one on trial, no stale
//!   transaction), confirms what is on trial, installs another update, which must succeed,
//!   boot the other slot with exactly that update, and confirm;
//! * double faults: a second cut during that recovery (the loader's env writes at the next
//!   boot and the restarted agent's first run) at every point of it for a sample of the first
//!   cuts, then the same checks;
//! * a damaged or unreadable sector in one environment copy (EFI Boot Guard, U-Boot, GRUB's
//!   grubenv and grubenv.keel) after a cut: the device still boots a complete slot and installs
//!   again.
//!
//! The default run uses one seed per seeded mode and one second cut (point and mode drawn
//! from the first cut) per first cut in a deterministic mode; with `KEEL_POWERCUT_FULL=1` it
//! takes seeds 1..=8 and a second cut at every point of the recovery of every first cut in a
//! deterministic mode (the second cut's mode rotating through the deterministic ones). Each test prints its counts; a failure names loader, operation,
//! cut point, mode and seed.

use crate::common;

use std::collections::BTreeMap;

use common::{Fixture, Img};
use keel_agent::bootloader::UState;
use keel_agent::{ConfirmOutcome, InstallOptions, SlotId};
use keel_sim::{slot_path, BootRecord, CutMode, Loader, SimDevice, EBG_ENV, GRUBENV, UBOOT_ENV};

const TARGETS: [&str; 2] = ["rootfs", "kernel"];

/// True for the exhaustive run (`KEEL_POWERCUT_FULL=1`).
fn full() -> bool {
    std::env::var_os("KEEL_POWERCUT_FULL").is_some_and(|v| v == "1")
}

/// Seeds of the seeded cut modes.
fn seeds() -> Vec<u64> {
    if full() {
        (1..=8).collect()
    } else {
        vec![1]
    }
}

/// Images of an update.
struct Update {
    bundle: Vec<u8>,
    images: BTreeMap<&'static str, Vec<u8>>,
}

fn make_update(fx: &Fixture, version: &str, seed: u64) -> Update {
    let rootfs = common::image(seed, 200 * 1024);
    let kernel = common::image(seed + 1, 48 * 1024);
    let bundle = fx.bundle_with(
        version,
        &[
            Img {
                name: "rootfs.img",
                device: "rootfs",
                data: &rootfs,
                encrypted: false,
            },
            Img {
                name: "linux.efi",
                device: "kernel",
                data: &kernel,
                encrypted: true,
            },
        ],
        "",
        false,
    );
    let mut images = BTreeMap::new();
    images.insert("rootfs", rootfs);
    images.insert("kernel", kernel);
    Update { bundle, images }
}

fn install(device: &SimDevice, bundle: &[u8]) -> Result<(), String> {
    let mut agent = device.agent().map_err(|e| e.to_string())?;
    agent
        .install(
            bundle,
            InstallOptions {
                chunk_size: Some(32 * 1024),
                ..Default::default()
            },
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A factory-fresh device whose slot B holds a factory image of its own (not zeros).
fn factory_device(fx: &Fixture, loader: Loader) -> SimDevice {
    let device = fx.device(loader);
    for (i, t) in TARGETS.iter().enumerate() {
        let size = device.slot_contents(SlotId::A, t).len();
        let b = common::image(7_000 + i as u64, size);
        device.storage.insert_device(slot_path(SlotId::B, t), &b);
    }
    device
}

type Snapshot = BTreeMap<(SlotId, &'static str), Vec<u8>>;

fn snapshot(device: &SimDevice) -> Snapshot {
    let mut s = BTreeMap::new();
    for slot in [SlotId::A, SlotId::B] {
        for t in TARGETS {
            s.insert((slot, t), device.slot_contents(slot, t));
        }
    }
    s
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

/// `image` written over the start of `slot`.
fn overlay(slot: &[u8], image: &[u8]) -> Vec<u8> {
    let mut out = slot.to_vec();
    out[..image.len()].copy_from_slice(image);
    out
}

/// What the uncut operation leads to at the next boot, for the durability check.
struct Reference {
    after: Snapshot,
    boot: BootRecord,
    state: &'static str,
}

/// The operation under test and what to install after each cut.
struct Case<'a> {
    name: &'static str,
    loader: Loader,
    start: SimDevice,
    op: &'a dyn Fn(&mut SimDevice) -> Result<(), String>,
    again: &'a Update,
    /// The slots as they left the factory.
    factory: &'a Snapshot,
}

#[derive(Default)]
struct Counts {
    points: u64,
    modes: usize,
    runs: usize,
    double: usize,
    media: usize,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.points += o.points;
        self.runs += o.runs;
        self.double += o.double;
        self.media += o.media;
        self.modes = self.modes.max(o.modes);
    }
}

/// The restarted system after a power cut: the next boot (loader env writes) and the agent's
/// first run (reconcile, which persists what it finds).
fn recovery(d: &mut SimDevice) -> Result<(), String> {
    d.boot().map_err(|e| e.to_string())?;
    d.agent()
        .and_then(|mut a| a.status())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Boot after a cut and check everything the oracle promises (see the module docs). With
/// `reference`, the operation had completed: slots, boot and agent state must be exactly
/// those of the uncut run.
fn check_recovery(
    d: &mut SimDevice,
    what: &str,
    before: &Snapshot,
    after: &Snapshot,
    reference: Option<&Reference>,
    factory: &Snapshot,
    again: &Update,
) {
    let boot = d
        .boot()
        .unwrap_or_else(|e| panic!("{what}: the device does not boot: {e}"));
    let slot = boot.slot;
    let unchanged = TARGETS
        .iter()
        .all(|t| d.slot_contents(slot, t) == before[&(slot, *t)]);
    let updated = TARGETS
        .iter()
        .all(|t| d.slot_contents(slot, t) == after[&(slot, *t)]);
    if !(unchanged || updated) {
        let detail: Vec<String> = TARGETS
            .iter()
            .map(|t| {
                let c = d.slot_contents(slot, t);
                format!(
                    "{t}: first byte differing from before {}, from after {}",
                    first_difference(&c, &before[&(slot, *t)]),
                    first_difference(&c, &after[&(slot, *t)])
                )
            })
            .collect();
        panic!(
            "{what}: booted slot {slot} holds neither its content from before the operation nor \
             the one the uncut operation leaves ({})",
            detail.join("; ")
        );
    }
    let status = d
        .agent()
        .and_then(|mut a| a.status())
        .unwrap_or_else(|e| panic!("{what}: agent status after the reboot: {e}"));
    assert_eq!(status.booted_slot, slot, "{what}: agent's booted slot");
    assert!(
        matches!(status.state, "idle" | "testing"),
        "{what}: after the reboot the agent reports {:?} (pending {:?})",
        status.state,
        status.pending
    );
    assert_eq!(
        status.pending.is_some(),
        status.state == "testing",
        "{what}: a transaction is left over: {:?}",
        status.pending
    );
    if status.state == "testing" {
        let target = status.pending.as_ref().map(|t| t.target_slot);
        assert_eq!(
            target,
            Some(slot),
            "{what}: testing a slot that is not booted"
        );
        let factory_image = TARGETS
            .iter()
            .all(|t| d.slot_contents(slot, t) == factory[&(slot, *t)]);
        assert!(
            !factory_image,
            "{what}: on trial in slot {slot}, which still holds its factory image"
        );
    }
    if let Some(r) = reference {
        assert_eq!(
            snapshot(d),
            r.after,
            "{what}: the completed operation's slots did not survive"
        );
        assert_eq!(
            boot, r.boot,
            "{what}: the completed operation's boot did not survive"
        );
        assert_eq!(
            status.state, r.state,
            "{what}: the completed operation's agent state did not survive"
        );
    }
    // The system marks the booted slot good when the loader has it on trial: GRUB (RAUC's
    // grub.cfg) puts every boot on trial. `status` reports the view from before its own
    // reconcile marked a rolled-back slot failed, so ask again.
    let on_trial = d
        .agent()
        .and_then(|mut a| a.status())
        .unwrap_or_else(|e| panic!("{what}: second agent status: {e}"));
    assert_eq!(
        (on_trial.state, &on_trial.pending),
        (status.state, &status.pending),
        "{what}: the second status differs"
    );
    if status.state == "testing" || on_trial.ustate == UState::Testing {
        let outcome = d
            .agent()
            .and_then(|mut a| a.confirm(None))
            .unwrap_or_else(|e| panic!("{what}: confirm after the reboot: {e}"));
        assert!(
            matches!(outcome, ConfirmOutcome::Confirmed(s) | ConfirmOutcome::AlreadyGood(s) if s == slot),
            "{what}: {outcome:?}"
        );
    }
    // Install again: must succeed, boot the other slot with exactly that update, confirm.
    let target = slot.other();
    let prior = snapshot(d);
    install(d, &again.bundle).unwrap_or_else(|e| {
        panic!(
            "{what}: the install after the recovery failed: {e} (agent status after the reboot: \
             {} ustate {:?}, {:?})",
            status.state, status.ustate, status.bootloader_details
        )
    });
    let next = d
        .boot()
        .unwrap_or_else(|e| panic!("{what}: no boot after the new install: {e}"));
    assert_eq!(
        next.slot, target,
        "{what}: the new install in slot {target} did not boot ({next:?})"
    );
    for t in TARGETS {
        let expected = overlay(&prior[&(target, t)], &again.images[t]);
        let got = d.slot_contents(target, t);
        assert!(
            got == expected,
            "{what}: after the new install, {t} of slot {target} differs at byte {}",
            first_difference(&got, &expected)
        );
    }
    let outcome = d
        .agent()
        .and_then(|mut a| a.confirm(None))
        .unwrap_or_else(|e| panic!("{what}: confirm of the new install: {e}"));
    assert_eq!(outcome, ConfirmOutcome::Confirmed(target), "{what}");
    let status = d.agent().and_then(|mut a| a.status()).unwrap();
    assert_eq!(
        (status.state, status.booted_slot),
        ("idle", target),
        "{what}"
    );
}

/// Picks `k` of `0..n` (deterministic in `key`).
fn pick(key: u64, n: u64) -> u64 {
    // splitmix64 finaliser: spreads consecutive keys over the range.
    let mut z = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) % n.max(1)
}

/// Cut `case.op` after `n` operations for every n up to its full length and every mode, then
/// recover and check; second cuts during the recovery of a sample of the first cuts.
fn sweep(case: &Case) -> Counts {
    let Case {
        name,
        loader,
        start,
        op,
        again,
        factory,
    } = case;
    let before = snapshot(start);
    // The uncut operation.
    let mut uncut = start.fork();
    let ops_before = uncut.storage.ops_done();
    op(&mut uncut)
        .unwrap_or_else(|e| panic!("{name} ({loader:?}): the uncut operation failed: {e}"));
    let total = uncut.storage.ops_done() - ops_before;
    assert!(
        total > 0,
        "{name} ({loader:?}): the operation wrote nothing"
    );
    let after = snapshot(&uncut);
    let reference = {
        let mut d = uncut.fork();
        let boot = d.boot().unwrap();
        let state = d.agent().and_then(|mut a| a.status()).unwrap().state;
        Reference {
            after: snapshot(&d),
            boot,
            state,
        }
    };
    let modes = CutMode::all_with_seeds(&seeds());
    let mut counts = Counts {
        points: total + 1,
        modes: modes.len(),
        ..Counts::default()
    };
    for n in 0..=total {
        for (m, &mode) in modes.iter().enumerate() {
            let what = format!("{loader:?} {name}: cut after {n}/{total} ops, {mode:?}");
            let mut device = start.fork();
            let (result, cut) = device.with_power_cut(n, mode, |d| op(d));
            counts.runs += 1;
            if n == total {
                assert!(!cut, "{what}: cut although the operation had finished");
                result.unwrap_or_else(|e| panic!("{what}: {e}"));
                // Durability: the power goes off right after the operation returned.
                device.storage.power_cycle(mode);
                check_recovery(
                    &mut device,
                    &what,
                    &before,
                    &after,
                    Some(&reference),
                    factory,
                    again,
                );
                continue;
            }
            assert!(cut, "{what}: no cut happened");
            assert!(
                result.is_err(),
                "{what}: the cut operation reported success"
            );
            // Double faults: a second cut during the recovery of this first cut.
            if m < CutMode::ALL.len() {
                let mut probe = device.fork();
                let ops0 = probe.storage.ops_done();
                recovery(&mut probe)
                    .unwrap_or_else(|e| panic!("{what}: the uncut recovery failed: {e}"));
                let r = probe.storage.ops_done() - ops0;
                let points: Vec<u64> = if full() {
                    (0..r).collect()
                } else if r > 0 {
                    vec![pick(n * 16 + m as u64, r)]
                } else {
                    Vec::new()
                };
                for k in points {
                    let mode2 = if full() {
                        CutMode::ALL[(k as usize + m) % CutMode::ALL.len()]
                    } else {
                        modes[pick(n * 31 + m as u64 + 7, modes.len() as u64) as usize]
                    };
                    let what2 =
                        format!("{what}, then cut after {k}/{r} ops of the recovery, {mode2:?}");
                    let mut second = device.fork();
                    let (result, cut) = second.with_power_cut(k, mode2, recovery);
                    assert!(
                        cut && result.is_err(),
                        "{what2}: no second cut ({result:?})"
                    );
                    check_recovery(&mut second, &what2, &before, &after, None, factory, again);
                    counts.double += 1;
                }
            }
            check_recovery(&mut device, &what, &before, &after, None, factory, again);
        }
    }
    counts
}

/// A sector of one environment copy is damaged (or unreadable) after a cut: at every cut point
/// of `case.op` (disk losing unsynced data) and after it completed. The loader must still boot
/// a complete slot and the agent install again.
fn media_faults(case: &Case, copies: &[&str], single_copy: &mut usize) -> usize {
    let Case {
        name,
        loader,
        start,
        op,
        again,
        factory,
    } = case;
    let before = snapshot(start);
    let mut uncut = start.fork();
    let ops_before = uncut.storage.ops_done();
    op(&mut uncut)
        .unwrap_or_else(|e| panic!("{name} ({loader:?}): the uncut operation failed: {e}"));
    let total = uncut.storage.ops_done() - ops_before;
    let after = snapshot(&uncut);
    let mut runs = 0;
    for n in 0..=total {
        for seed in seeds() {
            let mut device = start.fork();
            let (result, cut) = device.with_power_cut(n, CutMode::LoseUnsynced, |d| op(d));
            assert_eq!(
                (cut, result.is_ok()),
                (n < total, n == total),
                "{loader:?} {name}: cut after {n}/{total} ops: {result:?}"
            );
            if !cut {
                device.storage.power_cycle(CutMode::LoseUnsynced);
            }
            let index = pick(n * 7 + seed, copies.len() as u64) as usize;
            let copy = copies[index];
            // EFI Boot Guard boots no config marked in progress: while an install writes the
            // slot, the copy it activates is not bootable, so the damaged copy is the only
            // bootable one and losing it must fail the boot. U-Boot falls back to its default
            // environment (slot A), which never fails.
            let other_bootable = match loader {
                Loader::Ebg => device.ebg_copies().get(1 - index).is_some_and(|c| {
                    c.as_ref()
                        .is_some_and(|(_, _, in_progress, _)| *in_progress == 0)
                }),
                _ => true,
            };
            let path = std::path::Path::new(copy);
            let size = device.storage.contents(path).map_or(0, |c| c.len() as u64);
            let sector = pick(n * 13 + seed, size.div_ceil(512));
            let fault = if (n + seed) % 2 == 0 {
                device
                    .storage
                    .corrupt_synced(path, sector * 512, 1, seed)
                    .unwrap();
                "damaged"
            } else {
                device
                    .storage
                    .inject_read_error(path, sector * 512, 1)
                    .unwrap();
                "unreadable (EIO)"
            };
            let what = format!(
                "{loader:?} {name}: cut after {n}/{total} ops, LoseUnsynced, then sector {sector} of {copy} {fault} (seed {seed})"
            );
            runs += 1;
            if !other_bootable {
                let err = device.fork().boot().expect_err(&what);
                assert!(
                    matches!(err, keel_sim::SimError::NoBootableSlot(_)),
                    "{what}: {err}"
                );
                *single_copy += 1;
                continue;
            }
            check_recovery(&mut device, &what, &before, &after, None, factory, again);
        }
    }
    runs
}

fn scenarios(loader: Loader) -> Counts {
    let fx = Fixture::new();
    let first = make_update(&fx, "2.0", 100);
    let second = make_update(&fx, "2.1", 200);
    let again = make_update(&fx, "9.0", 900);
    let mut counts = Counts::default();

    let factory = factory_device(&fx, loader);
    let factory_slots = snapshot(&factory);
    let installed = factory.fork();
    install(&installed, &first.bundle).unwrap();
    let mut testing = installed.fork();
    assert_eq!(testing.boot().unwrap().slot, SlotId::B);
    let confirmed_b = testing.fork();
    assert_eq!(
        confirmed_b.agent().unwrap().confirm(None).unwrap(),
        ConfirmOutcome::Confirmed(SlotId::B)
    );

    let install_first = |d: &mut SimDevice| install(d, &first.bundle);
    let install_second = |d: &mut SimDevice| install(d, &second.bundle);
    // A boot that must start `slot` (the test boot: B; the fallback: A).
    let boot_into = |slot: SlotId| {
        move |d: &mut SimDevice| match d.boot() {
            Ok(b) if b.slot == slot => Ok(()),
            other => Err(format!("expected a boot of slot {slot}, got {other:?}")),
        }
    };
    let test_boot = boot_into(SlotId::B);
    let fallback_boot = boot_into(SlotId::A);
    let confirm = |d: &mut SimDevice| match d.agent().and_then(|mut a| a.confirm(None)) {
        Ok(ConfirmOutcome::Confirmed(SlotId::B)) => Ok(()),
        other => Err(format!("{other:?}")),
    };

    // 7. A delta install (seed: slot A's rootfs, read while slot B is written).
    let seed = factory.slot_contents(SlotId::A, "rootfs");
    let mut new_rootfs = seed.clone();
    new_rootfs[10_000..30_000].copy_from_slice(&common::image(300, 20_000));
    new_rootfs.truncate(220 * 1024);
    let kernel = common::image(301, 30_000);
    let mut delta = Vec::new();
    keel_delta::create(
        &seed,
        &new_rootfs,
        &keel_delta::CreateOptions::default(),
        &mut delta,
    )
    .unwrap();
    let manifest = "[software]\nversion = \"3.0\"\n\
        [[software.images]]\nfilename = \"rootfs.delta\"\ndevice = \"rootfs\"\ntype = \"keel-delta\"\n\
        [[software.images]]\nfilename = \"linux.efi\"\ndevice = \"kernel\"\ntype = \"raw\"\n";
    let delta_bundle = fx.bundle_manifest(
        manifest,
        &[("rootfs.delta", &delta), ("linux.efi", &kernel)],
    );
    let install_delta = |d: &mut SimDevice| install(d, &delta_bundle);

    let cases = [
        // 1. A full install from the factory state.
        (
            "install",
            &factory,
            &install_first as &dyn Fn(&mut SimDevice) -> Result<(), String>,
        ),
        // 2. The loader's env write on the first boot of the new slot (INSTALLED -> TESTING / bootcount).
        ("test boot", &installed, &test_boot),
        // 3. Confirm after the test boot.
        ("confirm", &testing, &confirm),
        // 4. The loader's fallback after an unconfirmed test boot (TESTING -> FAILED / altbootcmd).
        ("fallback boot", &testing, &fallback_boot),
        // 5. A second install before rebooting: rewrites the already activated slot B.
        ("second install before reboot", &installed, &install_second),
        // 6. An install while running the updated slot B (target A, the factory slot).
        ("install from slot B", &confirmed_b, &install_second),
        // 7. The delta install.
        ("delta install", &factory, &install_delta),
    ];
    for (name, start, op) in cases {
        let case = Case {
            name,
            loader,
            start: start.fork(),
            op,
            again: &again,
            factory: &factory_slots,
        };
        let c = sweep(&case);
        println!(
            "{loader:?} {name}: {} cut points x {} modes = {} runs, {} double-fault runs",
            c.points, c.modes, c.runs, c.double
        );
        counts += c;
    }
    // A damaged or unreadable env copy after a cut of the install: EBG's two config files,
    // U-Boot's redundant copies, grubenv and its second copy grubenv.keel.
    let grub_copies = [GRUBENV.to_string(), format!("{GRUBENV}.keel")];
    let copies: Vec<&str> = match loader {
        Loader::Ebg => EBG_ENV.to_vec(),
        Loader::Uboot => UBOOT_ENV.to_vec(),
        Loader::Grub => grub_copies.iter().map(String::as_str).collect(),
    };
    let copies = &copies[..];
    if !copies.is_empty() {
        let case = Case {
            name: "install, env copy damaged",
            loader,
            start: factory.fork(),
            op: &install_first,
            again: &again,
            factory: &factory_slots,
        };
        let mut single_copy = 0;
        counts.media = media_faults(&case, copies, &mut single_copy);
        println!(
            "{loader:?} install with a damaged env copy: {} runs ({single_copy} with the only \
             bootable copy damaged: no boot, as expected)",
            counts.media
        );
    }
    counts
}

fn report(loader: Loader, c: &Counts) {
    println!(
        "{loader:?}: {} cut points x {} modes (4 deterministic + 3 seeded x seeds {:?}) = {} runs, \
         {} double-fault runs, {} damaged-env runs; every boot found a complete slot and every \
         re-install succeeded",
        c.points,
        c.modes,
        seeds(),
        c.runs,
        c.double,
        c.media
    );
    assert_eq!(c.runs as u64, c.points * c.modes as u64);
    assert!(c.double > 0 && c.runs > 200, "{}", c.runs);
}

#[test]
fn power_cut_at_every_point_ebg() {
    let c = scenarios(Loader::Ebg);
    report(Loader::Ebg, &c);
}

#[test]
fn power_cut_at_every_point_uboot() {
    let c = scenarios(Loader::Uboot);
    report(Loader::Uboot, &c);
}

#[test]
fn power_cut_at_every_point_grub() {
    let c = scenarios(Loader::Grub);
    report(Loader::Grub, &c);
}

/// `SimDevice::agent_cut_while_writing`: the power goes off at the write that reaches the chosen
/// byte of a slot target. What was written before it is on the disk (the disk kept unsynced
/// data), nothing at or after it; the target was never activated.
#[test]
fn power_cut_at_a_chosen_byte_of_a_slot() {
    let fx = Fixture::new();
    let mut device = factory_device(&fx, Loader::Ebg);
    let old_b = device.slot_contents(SlotId::B, "rootfs");
    let update = make_update(&fx, "2.0", 100);
    let write = 32 * 1024;
    let mut agent = device
        .agent_cut_while_writing(SlotId::B, "rootfs", 100_000)
        .unwrap();
    let err = agent
        .install(
            &update.bundle[..],
            InstallOptions {
                chunk_size: Some(write),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("power cut"), "{err}");
    assert!(device.power_cycle_if_cut(CutMode::KeepUnsynced));
    let slot = device.slot_contents(SlotId::B, "rootfs");
    let written = 100_000 / write * write;
    assert_eq!(slot[..written], update.images["rootfs"][..written]);
    assert_eq!(slot[written..], old_b[written..]);
    assert_eq!(device.boot().unwrap().slot, SlotId::A);
    assert!(!device.power_cycle_if_cut(CutMode::KeepUnsynced));
}
