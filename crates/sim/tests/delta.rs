//! Image types beyond raw: a keel static delta (seed = the same target of the booted slot,
//! output streamed into the inactive slot) and zstd-compressed images.

mod common;

use common::{image, starts_with, Fixture};
use keel_agent::{InstallError, InstallOptions, SlotId};
use keel_sim::Loader;

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
        matches!(&err, InstallError::Image { message, .. } if message.contains("seed")),
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
