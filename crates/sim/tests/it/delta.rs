//! Image types beyond raw: a keel static delta (seed = the same target of the booted slot,
//! output streamed into the inactive slot) and zstd-compressed images.

use crate::common;

use common::{image, starts_with, Fixture, ROOTFS_SIZE};
use keel_agent::install::ImageError;
use keel_agent::{InstallError, InstallOptions, SlotId};
use keel_delta::testing::texty;
use keel_sim::{CutMode, Loader, SimDevice};

const DELTA_ENTRY: &str = "[[software.images]]\nfilename = \"rootfs.delta\"\ndevice = \"rootfs\"\ntype = \"keel-delta\"\n";

fn delta_against(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    keel_delta::create(old, new, &keel_delta::CreateOptions::default(), &mut out).unwrap();
    out
}

#[test]
fn delta_against_the_booted_slot_installs_and_boots() {
    let fx = Fixture::new();
    let mut device = fx.device(Loader::Ebg);
    let seed = device.slot_contents(SlotId::A, "rootfs");
    let mut new = seed.clone();
    new[1000..5000].copy_from_slice(&image(77, 4000));
    new.truncate(200_000);
    let delta = delta_against(&seed, &new);
    assert!(delta.len() < new.len() / 4, "delta {} bytes", delta.len());
    let manifest = format!("[software]\nversion = \"2.0\"\n{DELTA_ENTRY}");
    let bundle = fx.bundle_manifest(&manifest, &[("rootfs.delta", &delta)]);

    let report = device
        .agent()
        .unwrap()
        .install(
            &bundle[..],
            InstallOptions {
                chunk_size: Some(16 * 1024),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(report.target, SlotId::B);
    assert!(starts_with(
        &device.slot_contents(SlotId::B, "rootfs"),
        &new
    ));
    assert_eq!(
        device.slot_contents(SlotId::A, "rootfs"),
        seed,
        "the seed slot is only read"
    );
    assert_eq!(device.boot().unwrap().slot, SlotId::B);
    device.agent().unwrap().confirm(None).unwrap();
}

#[test]
fn delta_made_for_another_seed_is_never_activated() {
    let fx = Fixture::new();
    let mut device = fx.device(Loader::Uboot);
    let other_seed = image(99, 256 * 1024);
    let delta = delta_against(&other_seed, &image(100, 100_000));
    let manifest = format!("[software]\nversion = \"2.0\"\n{DELTA_ENTRY}");
    let bundle = fx.bundle_manifest(&manifest, &[("rootfs.delta", &delta)]);
    let err = device
        .agent()
        .unwrap()
        .install(&bundle[..], InstallOptions::default())
        .unwrap_err();
    assert!(
        matches!(
            &err,
            InstallError::Image {
                source: ImageError::Delta(_),
                ..
            }
        ) && err.to_string().contains("seed"),
        "{err}"
    );
    assert_eq!(device.boot().unwrap().slot, SlotId::A);
}

#[test]
fn zstd_compressed_image_is_decompressed_while_streaming() {
    let fx = Fixture::new();
    let mut device = fx.device(Loader::Grub);
    let mut rootfs = image(5, 100_000);
    rootfs.extend(std::iter::repeat_n(0u8, 120_000));
    let compressed = zstd::encode_all(&rootfs[..], 3).unwrap();
    let manifest = "[software]\nversion = \"2.0\"\n[[software.images]]\nfilename = \"rootfs.zst\"\ndevice = \"rootfs\"\ntype = \"raw\"\ncompressed = \"zstd\"\n";
    let bundle = fx.bundle_manifest(manifest, &[("rootfs.zst", &compressed)]);
    device
        .agent()
        .unwrap()
        .install(&bundle[..], InstallOptions::default())
        .unwrap();
    assert!(starts_with(
        &device.slot_contents(SlotId::B, "rootfs"),
        &rootfs
    ));
    assert_eq!(device.boot().unwrap().slot, SlotId::B);
}

/// `mksquashfs -comp zstd` of a small tree (every block a standalone zstd frame); `edit`
/// rewrites part of two files and adds one.
fn squashfs(work: &std::path::Path, name: &str, edit: bool) -> Vec<u8> {
    let tree = work.join(name);
    std::fs::create_dir_all(&tree).unwrap();
    for i in 0..8u64 {
        let mut data = texty(50 + i, 40_000 + 8_000 * i as usize);
        if edit && i % 3 == 1 {
            data[2_000..6_000].copy_from_slice(&texty(90 + i, 4_000));
        }
        std::fs::write(tree.join(format!("lib{i}.so")), data).unwrap();
    }
    if edit {
        std::fs::write(tree.join("new.so"), texty(99, 20_000)).unwrap();
    }
    let image = work.join(format!("{name}.squashfs"));
    keel_delta::testing::mksquashfs_zstd(&tree, &image)
}

/// A delta of two zstd squashfs images (frames recompressed on the device) installed with power
/// cuts at a sample of its storage operations, in every cut mode: the device always boots a
/// complete slot (A unchanged; B only once activated, then complete), and the restarted install
/// finishes and boots the new image.
#[test]
fn power_cut_during_a_framed_delta_install_then_the_restarted_install_finishes() {
    let fx = Fixture::new();
    let work = tempfile::tempdir().unwrap();
    let old = squashfs(work.path(), "old", false);
    let new = squashfs(work.path(), "new", true);
    assert!((new.len() as u64) < ROOTFS_SIZE && (old.len() as u64) < ROOTFS_SIZE);
    let mut delta = Vec::new();
    let created = keel_delta::create(
        &old,
        &new,
        &keel_delta::CreateOptions::default(),
        &mut delta,
    )
    .unwrap();
    assert!(created.target_frames > 0, "not a framed delta: {created:?}");
    let manifest = format!("[software]\nversion = \"2.0\"\n{DELTA_ENTRY}");
    let bundle = fx.bundle_manifest(&manifest, &[("rootfs.delta", &delta)]);
    let fresh = || {
        let mut spec = fx.spec(Loader::Ebg);
        spec.factory.insert("rootfs".into(), old.clone());
        SimDevice::new(spec).unwrap()
    };
    let install = |d: &SimDevice| {
        d.agent()
            .unwrap()
            .install(&bundle[..], InstallOptions::default())
    };
    let reference = fresh();
    let seed = reference.slot_contents(SlotId::A, "rootfs");
    let (result, total) = reference.count_ops(|| install(&reference));
    result.unwrap();
    assert!(starts_with(
        &reference.slot_contents(SlotId::B, "rootfs"),
        &new
    ));
    assert!(total > 10, "{total} operations");

    // A sample of cut points: the first and last operations and about 16 between.
    let step = (total / 16).max(1);
    let points: Vec<u64> = (0..total)
        .step_by(step as usize)
        .chain([1, total - 2, total - 1])
        .collect();
    let mut restarted = 0;
    for &n in &points {
        for mode in CutMode::ALL {
            let mut device = fresh();
            let (result, cut) = device.with_power_cut(n, mode, |d| install(d));
            let what = format!("cut after {n}/{total} ops, {mode:?}");
            assert!(cut, "{what}: did not happen");
            assert!(
                result.is_err(),
                "{what}: an install that lost power reported success"
            );
            let boot = device.boot().unwrap_or_else(|e| panic!("{what}: {e}"));
            let rootfs = device.slot_contents(boot.slot, "rootfs");
            match boot.slot {
                SlotId::A => assert_eq!(rootfs, seed, "{what}: slot A changed"),
                SlotId::B => {
                    assert!(starts_with(&rootfs, &new), "{what}: torn slot B booted");
                    continue;
                }
            }
            install(&device).unwrap_or_else(|e| panic!("{what}: restarted install: {e}"));
            assert!(
                starts_with(&device.slot_contents(SlotId::B, "rootfs"), &new),
                "{what}"
            );
            assert_eq!(device.boot().unwrap().slot, SlotId::B, "{what}");
            restarted += 1;
        }
    }
    assert!(restarted > points.len(), "{restarted} restarted installs");
}
