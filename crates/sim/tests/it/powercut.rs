//! Power cut at every injection point: every mutating storage operation (write, fsync,
//! rename, directory fsync) of a full install (raw + encrypted images; and a delta install)
//! and of every environment update (the loader's
//! own writes at boot, confirm, fallback), under four models of what the disk keeps of
//! unsynced data (lose all, keep all, keep names but lose data, tear the last write).
//!
//! After each cut the simulated device is powered on (twice): the loader model must always
//! start a slot whose every target holds a complete image, either what it held before the
//! operation or the new image, never a torn one; and the agent must come up and report.

use crate::common;

use std::collections::BTreeMap;

use common::{starts_with, Fixture, Img};
use keel_agent::{InstallOptions, SlotId};
use keel_sim::{CutMode, Loader, SimDevice};

const TARGETS: [&str; 2] = ["rootfs", "kernel"];

/// Images of the update under test.
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

/// The booted slot must hold, in every target, either its content from before the operation
/// or the new image.
fn assert_complete(device: &SimDevice, slot: SlotId, before: &Snapshot, new: &Update, what: &str) {
    let unchanged = TARGETS
        .iter()
        .all(|t| device.slot_contents(slot, t) == before[&(slot, *t)]);
    let updated = TARGETS
        .iter()
        .all(|t| starts_with(&device.slot_contents(slot, t), &new.images[t]));
    assert!(
        unchanged || updated,
        "{what}: booted slot {slot} holds a torn image"
    );
}

/// Run `op` on a device prepared by `setup`, cutting the power after `n` operations, for
/// every n up to the op's full length and every cut mode; then boot and check. Returns the
/// number of (point, mode) combinations tried.
fn sweep(
    name: &str,
    loader: Loader,
    fx: &Fixture,
    new: &Update,
    setup: &dyn Fn(&Fixture) -> SimDevice,
    op: &dyn Fn(&mut SimDevice),
) -> usize {
    // Length of the operation without a cut.
    let mut reference = setup(fx);
    let before_ops = reference.storage.ops_done();
    op(&mut reference);
    let total = reference.storage.ops_done() - before_ops;
    assert!(total > 0, "{name}: the operation wrote nothing");
    let mut tried = 0;
    for n in 0..=total {
        for mode in CutMode::ALL {
            let mut device = setup(fx);
            let before = snapshot(&device);
            let (_, cut) = device.with_power_cut(n, mode, |d| op(d));
            assert_eq!(
                cut,
                n < total,
                "{name}: cut at {n}/{total} should{} happen",
                if n < total { "" } else { " not" }
            );
            if !cut {
                // Power lost right after the operation completed: nothing unsynced may matter.
                device.storage.power_cycle(mode);
            }
            let what = format!("{name} ({loader:?}), cut after {n}/{total} ops, {mode:?}");
            for _ in 0..2 {
                let boot = device.boot().unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_complete(&device, boot.slot, &before, new, &what);
                let status = device
                    .agent()
                    .and_then(|mut a| a.status())
                    .unwrap_or_else(|e| panic!("{what}: agent status: {e}"));
                assert_eq!(status.booted_slot, boot.slot, "{what}");
                assert_ne!(
                    status.state, "installing",
                    "{what}: stale in-progress install after reboot"
                );
            }
            tried += 1;
        }
    }
    tried
}

fn scenarios(loader: Loader) -> usize {
    let fx = Fixture::new();
    let first = make_update(&fx, "2.0", 100);
    let second = make_update(&fx, "2.1", 200);
    let first_bundle = first.bundle.clone();
    let mut tried = 0;

    // 1. A full install from the factory state.
    tried += sweep(
        "install",
        loader,
        &fx,
        &first,
        &|fx| fx.device(loader),
        &|d| {
            let _ = install(d, &first.bundle);
        },
    );

    // 2. The loader's env write on the first boot of the new slot (INSTALLED -> TESTING / bootcount).
    let installed = |fx: &Fixture| {
        let d = fx.device(loader);
        install(&d, &first_bundle).unwrap();
        d
    };
    tried += sweep("test boot", loader, &fx, &first, &installed, &|d| {
        let _ = d.boot();
    });

    // 3. Confirm after the test boot.
    let testing = |fx: &Fixture| {
        let mut d = installed(fx);
        assert_eq!(d.boot().unwrap().slot, SlotId::B);
        d
    };
    tried += sweep("confirm", loader, &fx, &first, &testing, &|d| {
        let _ = d.agent().and_then(|mut a| a.confirm(None));
    });

    // 4. The loader's fallback after an unconfirmed test boot (TESTING -> FAILED / altbootcmd).
    tried += sweep("fallback boot", loader, &fx, &first, &testing, &|d| {
        let _ = d.boot();
    });

    // 5. A second install before rebooting: rewrites the already activated slot B.
    tried += sweep(
        "second install before reboot",
        loader,
        &fx,
        &second,
        &installed,
        &|d| {
            let _ = install(d, &second.bundle);
        },
    );

    // 6. An install while running the updated slot B (target A, the factory slot).
    let confirmed_b = |fx: &Fixture| {
        let d = testing(fx);
        d.agent().unwrap().confirm(None).unwrap();
        d
    };
    tried += sweep(
        "install from slot B",
        loader,
        &fx,
        &second,
        &confirmed_b,
        &|d| {
            let _ = install(d, &second.bundle);
        },
    );

    // 7. A delta install (seed: slot A's rootfs, read while slot B is written).
    let seed = fx.device(loader).slot_contents(SlotId::A, "rootfs");
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
    let delta_update = Update {
        bundle: fx.bundle_manifest(
            manifest,
            &[("rootfs.delta", &delta), ("linux.efi", &kernel)],
        ),
        images: [("rootfs", new_rootfs), ("kernel", kernel)]
            .into_iter()
            .collect(),
    };
    tried += sweep(
        "delta install",
        loader,
        &fx,
        &delta_update,
        &|fx| fx.device(loader),
        &|d| {
            let _ = install(d, &delta_update.bundle);
        },
    );
    tried
}

#[test]
fn power_cut_at_every_point_ebg() {
    let tried = scenarios(Loader::Ebg);
    println!(
        "EFI Boot Guard: {tried} power-cut points x modes tried, every boot found a complete slot"
    );
    assert!(tried > 200, "{tried}");
}

#[test]
fn power_cut_at_every_point_uboot() {
    let tried = scenarios(Loader::Uboot);
    println!("U-Boot: {tried} power-cut points x modes tried, every boot found a complete slot");
    assert!(tried > 200, "{tried}");
}

#[test]
fn power_cut_at_every_point_grub() {
    let tried = scenarios(Loader::Grub);
    println!("GRUB: {tried} power-cut points x modes tried, every boot found a complete slot");
    assert!(tried > 200, "{tried}");
}

/// `SimDevice::agent_cut_while_writing`: the power goes off at the write that reaches the chosen
/// byte of a slot target. What was written before it is on the disk (the disk kept unsynced
/// data), nothing at or after it; the target was never activated.
#[test]
fn power_cut_at_a_chosen_byte_of_a_slot() {
    let fx = Fixture::new();
    let mut device = fx.device(Loader::Ebg);
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
    assert!(slot[written..].iter().all(|&b| b == 0));
    assert_eq!(device.boot().unwrap().slot, SlotId::A);
    assert!(!device.power_cycle_if_cut(CutMode::KeepUnsynced));
}
