//! End to end on the simulated device, with real signed bundles made by keel-bundle:
//! install → reboot → confirm → OK, and install → reboot without confirm → rollback, for
//! EFI Boot Guard and U-Boot; tampered, unsigned-by-us and misdirected bundles are never
//! activated.

use crate::common;

use common::{image, starts_with, Fixture, Img, ROOTFS_SIZE};
use keel_agent::bootloader::UState;
use keel_agent::config::Detect;
use keel_agent::install::PlanError;
use keel_agent::state::Outcome;
use keel_agent::{ConfirmOutcome, InstallError, InstallOptions, SlotId};
use keel_sim::Loader;

fn install(
    device: &keel_sim::SimDevice,
    bundle: &[u8],
) -> Result<keel_agent::InstallReport, InstallError> {
    let mut agent = device.agent().unwrap();
    agent.install(
        bundle,
        InstallOptions {
            chunk_size: Some(16 * 1024),
            ..Default::default()
        },
    )
}

fn confirm_ok_cycle(loader: Loader, encrypted: bool) {
    confirm_ok_cycle_detect(loader, encrypted, Detect::Auto)
}

/// RAUC's grub.cfg puts the booted slot on trial (`<slot>_TRY=1`) at every boot and the system
/// marks it good; an install is refused while it is on trial.
fn mark_good_after_power_on(device: &keel_sim::SimDevice, loader: Loader) {
    if loader == Loader::Grub {
        device.agent().unwrap().confirm(None).unwrap();
    }
}

fn confirm_ok_cycle_detect(loader: Loader, encrypted: bool, detect: Detect) {
    let fx = Fixture::new();
    let mut spec = fx.spec(loader);
    spec.detect = detect;
    let mut device = keel_sim::SimDevice::new(spec).unwrap();
    assert_eq!(device.history.last().unwrap().slot, SlotId::A);
    mark_good_after_power_on(&device, loader);
    let (bundle, rootfs, kernel) = fx.update("2.0", 10, encrypted);

    let report = install(&device, &bundle).unwrap();
    assert_eq!((report.booted, report.target), (SlotId::A, SlotId::B));
    assert_eq!(report.version.as_deref(), Some("2.0"));
    assert!(starts_with(
        &device.slot_contents(SlotId::B, "rootfs"),
        &rootfs
    ));
    assert!(starts_with(
        &device.slot_contents(SlotId::B, "kernel"),
        &kernel
    ));

    let status = device.agent().unwrap().status().unwrap();
    assert_eq!(status.booted_slot, SlotId::A);
    assert_eq!(status.state, "installed");
    assert_eq!(status.ustate, UState::Installed);
    assert_eq!(status.next_boot, Some(SlotId::B));

    // Reboot: the loader test-boots B.
    let boot = device.boot().unwrap();
    assert_eq!(boot.slot, SlotId::B, "{boot:?}");
    let status = device.agent().unwrap().status().unwrap();
    assert_eq!(status.booted_slot, SlotId::B);
    assert_eq!(status.state, "testing");
    assert_eq!(status.ustate, UState::Testing);

    let outcome = device.agent().unwrap().confirm(Some("true")).unwrap();
    assert_eq!(outcome, ConfirmOutcome::Confirmed(SlotId::B));
    let status = device.agent().unwrap().status().unwrap();
    assert_eq!(status.ustate, UState::Ok);
    assert_eq!(status.state, "idle");
    let last = status.last_result.expect("a result");
    assert_eq!(last.outcome, Outcome::Success);
    assert_eq!(last.version.as_deref(), Some("2.0"));

    // Confirmed: B stays booted on every further boot (GRUB, RAUC's scheme: confirmed on
    // every boot, like `rauc status mark-good`).
    for _ in 0..3 {
        assert_eq!(device.boot().unwrap().slot, SlotId::B);
        if loader == Loader::Grub {
            device.agent().unwrap().confirm(None).unwrap();
        }
    }
    // Confirm is idempotent.
    assert_eq!(
        device.agent().unwrap().confirm(None).unwrap(),
        ConfirmOutcome::AlreadyGood(SlotId::B)
    );

    // The next update goes to A (the now inactive slot), and B is never written.
    let b_before = device.slot_contents(SlotId::B, "rootfs");
    let (bundle3, rootfs3, _) = fx.update("3.0", 30, encrypted);
    let report = install(&device, &bundle3).unwrap();
    assert_eq!(report.target, SlotId::A);
    assert_eq!(device.slot_contents(SlotId::B, "rootfs"), b_before);
    assert!(starts_with(
        &device.slot_contents(SlotId::A, "rootfs"),
        &rootfs3
    ));
    assert_eq!(device.boot().unwrap().slot, SlotId::A);
}

fn rollback_cycle(loader: Loader) {
    rollback_cycle_detect(loader, Detect::Auto)
}

fn rollback_cycle_detect(loader: Loader, detect: Detect) {
    let fx = Fixture::new();
    let mut spec = fx.spec(loader);
    spec.detect = detect;
    let mut device = keel_sim::SimDevice::new(spec).unwrap();
    mark_good_after_power_on(&device, loader);
    let factory_rootfs = device.slot_contents(SlotId::A, "rootfs");
    let (bundle, _, _) = fx.update("2.0", 10, false);
    install(&device, &bundle).unwrap();

    assert_eq!(device.boot().unwrap().slot, SlotId::B);
    assert_eq!(device.agent().unwrap().status().unwrap().state, "testing");
    // Not confirmed (say the health check failed): the next boot falls back.
    let err = device.agent().unwrap().confirm(Some("false")).unwrap_err();
    assert!(err.to_string().contains("health check"), "{err}");
    let boot = device.boot().unwrap();
    assert_eq!(boot.slot, SlotId::A, "{boot:?}");

    let status = device.agent().unwrap().status().unwrap();
    assert_eq!(status.booted_slot, SlotId::A);
    assert_eq!(status.state, "idle");
    assert_eq!(status.ustate, UState::Failed);
    let last = status.last_result.clone().expect("a result");
    assert_eq!(last.outcome, Outcome::RolledBack, "{last:?}");
    assert_eq!(last.target_slot, SlotId::B);
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["last_result"]["outcome"], "rolled_back");
    assert_eq!(json["booted_slot"], "A");
    assert_eq!(device.slot_contents(SlotId::A, "rootfs"), factory_rootfs);

    // Rolled back for good: A keeps booting; after acknowledging, a new install works.
    assert_eq!(device.boot().unwrap().slot, SlotId::A);
    assert_eq!(device.boot().unwrap().slot, SlotId::A);
    device.agent().unwrap().confirm(None).unwrap();
    assert_eq!(device.agent().unwrap().status().unwrap().ustate, UState::Ok);
    let (bundle2, rootfs2, _) = fx.update("2.1", 20, false);
    install(&device, &bundle2).unwrap();
    assert_eq!(device.boot().unwrap().slot, SlotId::B);
    device.agent().unwrap().confirm(None).unwrap();
    assert!(starts_with(
        &device.slot_contents(SlotId::B, "rootfs"),
        &rootfs2
    ));
    assert_eq!(device.boot().unwrap().slot, SlotId::B);
}

#[test]
fn ebg_install_reboot_confirm_ok() {
    confirm_ok_cycle(Loader::Ebg, false);
}

#[test]
fn ebg_encrypted_install_reboot_confirm_ok() {
    confirm_ok_cycle(Loader::Ebg, true);
}

#[test]
fn uboot_install_reboot_confirm_ok() {
    confirm_ok_cycle(Loader::Uboot, false);
}

#[test]
fn grub_install_reboot_confirm_ok() {
    confirm_ok_cycle(Loader::Grub, false);
}

#[test]
fn grub_unconfirmed_boot_rolls_back() {
    rollback_cycle(Loader::Grub);
}

#[test]
fn ebg_unconfirmed_boot_rolls_back() {
    rollback_cycle(Loader::Ebg);
}

#[test]
fn uboot_unconfirmed_boot_rolls_back() {
    rollback_cycle(Loader::Uboot);
}

/// A bundle whose image bytes were altered after signing: the hash check fails while
/// streaming, the target is never activated, and the result says why.
#[test]
fn tampered_image_is_never_activated() {
    for loader in [Loader::Ebg, Loader::Uboot, Loader::Grub] {
        let fx = Fixture::new();
        let mut device = fx.device(loader);
        let (mut bundle, rootfs, _) = fx.update("2.0", 10, false);
        // Flip one byte in the middle of the rootfs image data.
        let at = bundle
            .windows(64)
            .position(|w| w == &rootfs[100_000..100_064])
            .expect("image bytes in bundle");
        // Swap two different bytes: the cpio "crc" (a byte sum) still matches, so only the
        // sha256 from the signed sw-description can catch it.
        let (i, j) = (
            at + 10,
            (at + 11..at + 64)
                .find(|&j| bundle[j] != bundle[at + 10])
                .unwrap(),
        );
        bundle.swap(i, j);
        let err = install(&device, &bundle).unwrap_err();
        assert!(matches!(err, InstallError::HashMismatch { .. }), "{err}");
        let status = device.agent().unwrap().status().unwrap();
        assert_eq!(status.last_result.unwrap().outcome, Outcome::Failed);
        assert_ne!(status.next_boot, Some(SlotId::B));
        for _ in 0..2 {
            assert_eq!(device.boot().unwrap().slot, SlotId::A);
        }
    }
}

/// Signature checks come before any write: a bundle signed by an untrusted key, or with a
/// modified sw-description, causes zero storage operations.
#[test]
fn bad_signature_writes_nothing() {
    let fx = Fixture::new();
    let device = fx.device(Loader::Ebg);
    let rootfs = image(5, 1000);
    let rogue = fx.bundle_with(
        "6.6.6",
        &[Img {
            name: "rootfs.img",
            device: "rootfs",
            data: &rootfs,
            encrypted: false,
        }],
        "",
        true,
    );
    let (result, ops) = device.count_ops(|| install(&device, &rogue));
    assert!(
        matches!(result, Err(InstallError::Signature(_))),
        "{:?}",
        result.err()
    );
    assert_eq!(
        ops, 0,
        "nothing may be written before the signature is verified"
    );

    let (mut bundle, _, _) = fx.update("2.0", 10, false);
    let at = bundle
        .windows(7)
        .position(|w| w == b"rootfs\"")
        .expect("device in description");
    bundle.swap(at, at + 1); // "orotfs": same byte sum (cpio checksum ok), signature broken
    let (result, ops) = device.count_ops(|| install(&device, &bundle));
    assert!(
        matches!(result, Err(InstallError::Signature(_))),
        "{:?}",
        result.err()
    );
    assert_eq!(ops, 0);
}

/// An image aimed at a device path of the booted slot is refused before anything is written.
#[test]
fn image_for_the_active_slot_is_refused() {
    let fx = Fixture::new();
    let device = fx.device(Loader::Ebg);
    let data = image(7, 1000);
    let bundle = fx.bundle_with(
        "2.0",
        &[Img {
            name: "rootfs.img",
            device: "/dev/slotA-rootfs",
            data: &data,
            encrypted: false,
        }],
        "",
        false,
    );
    let before = device.slot_contents(SlotId::A, "rootfs");
    let (result, ops) = device.count_ops(|| install(&device, &bundle));
    assert!(
        matches!(
            result,
            Err(InstallError::Plan(PlanError::ActiveSlot { .. }))
        ),
        "{:?}",
        result.err()
    );
    assert_eq!(ops, 0);
    assert_eq!(device.slot_contents(SlotId::A, "rootfs"), before);
}

/// An image larger than its slot fails while streaming and is never activated.
#[test]
fn oversized_image_is_never_activated() {
    let fx = Fixture::new();
    let mut device = fx.device(Loader::Uboot);
    let big = image(9, ROOTFS_SIZE as usize + 1);
    let bundle = fx.bundle_with(
        "2.0",
        &[Img {
            name: "rootfs.img",
            device: "rootfs",
            data: &big,
            encrypted: false,
        }],
        "",
        false,
    );
    let err = install(&device, &bundle).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
    assert_eq!(device.boot().unwrap().slot, SlotId::A);
}

/// sw-description `bootenv` variables land in the environment in the activation commit.
#[test]
fn bootenv_variables_are_applied() {
    let fx = Fixture::new();
    let device = fx.device(Loader::Uboot);
    let data = image(3, 5000);
    let bundle = fx.bundle_with(
        "2.0",
        &[Img {
            name: "rootfs.img",
            device: "rootfs",
            data: &data,
            encrypted: false,
        }],
        "[[software.bootenv]]\nname = \"keel_extra\"\nvalue = \"hello world\"\n",
        false,
    );
    install(&device, &bundle).unwrap();
    assert_eq!(
        device.uboot_var("keel_extra").as_deref(),
        Some("hello world")
    );
    assert_eq!(device.uboot_var("keel_slot").as_deref(), Some("B"));
    assert_eq!(device.uboot_var("upgrade_available").as_deref(), Some("1"));
}

/// Power lost in the middle of writing the images: after the reboot the old slot runs and
/// `status` reports the interrupted install as failed; a retry then succeeds.
#[test]
fn interrupted_install_is_reported_failed_after_reboot() {
    let fx = Fixture::new();
    let mut device = fx.device(Loader::Ebg);
    let (bundle, rootfs, _) = fx.update("2.0", 10, false);
    let (result, cut) =
        device.with_power_cut(15, keel_sim::CutMode::LoseUnsynced, |d| install(d, &bundle));
    assert!(cut && result.is_err());
    assert_eq!(device.boot().unwrap().slot, SlotId::A);
    let status = device.agent().unwrap().status().unwrap();
    assert_eq!(status.state, "idle");
    let last = status.last_result.unwrap();
    assert_eq!(last.outcome, Outcome::Failed);
    assert!(last.message.contains("interrupted"), "{}", last.message);
    install(&device, &bundle).unwrap();
    assert_eq!(device.boot().unwrap().slot, SlotId::B);
    assert!(starts_with(
        &device.slot_contents(SlotId::B, "rootfs"),
        &rootfs
    ));
}

/// `hardware_revision` must be listed in the bundle's hardware-compatibility.
#[test]
fn hardware_compatibility_is_enforced_before_writing() {
    let fx = Fixture::new();
    let mut spec = fx.spec(Loader::Uboot);
    spec.hardware_revision = Some("rev-b".into());
    let device = keel_sim::SimDevice::new(spec).unwrap();
    let data = image(12, 10_000);
    let img = [Img {
        name: "rootfs.img",
        device: "rootfs",
        data: &data,
        encrypted: false,
    }];
    let other = fx.bundle_with("2.0", &img, "hardware-compatibility = [\"rev-a\"]", false);
    let (result, ops) = device.count_ops(|| install(&device, &other));
    assert!(
        matches!(result, Err(InstallError::Plan(PlanError::Incompatible(_)))),
        "{:?}",
        result.err()
    );
    assert_eq!(ops, 0);
    let ours = fx.bundle_with(
        "2.0",
        &img,
        "hardware-compatibility = [\"rev-a\", \"rev-b\"]",
        false,
    );
    install(&device, &ours).unwrap();
}

/// The booted slot read from the bootloader environment alone (no kernel command line).
#[test]
fn booted_slot_from_the_environment() {
    for loader in [Loader::Ebg, Loader::Uboot] {
        confirm_ok_cycle_detect(loader, false, Detect::Bootenv);
        rollback_cycle_detect(loader, Detect::Bootenv);
    }
}

/// A source that fails only at its very end (as a whole-artifact verifier such as TUF's does
/// on a hash mismatch) fails the install before the bootloader is switched.
#[test]
fn error_at_the_end_of_the_source_blocks_activation() {
    struct FailsAtEnd<'a>(&'a [u8]);
    impl std::io::Read for FailsAtEnd<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("artifact hash mismatch"));
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let fx = Fixture::new();
    let mut device = fx.device(Loader::Ebg);
    let (bundle, _, _) = fx.update("2.0", 10, false);
    let err = device
        .agent()
        .unwrap()
        .install(FailsAtEnd(&bundle), InstallOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("artifact hash mismatch"), "{err}");
    assert_eq!(
        device
            .agent()
            .unwrap()
            .status()
            .unwrap()
            .last_result
            .unwrap()
            .outcome,
        Outcome::Failed
    );
    assert_eq!(device.boot().unwrap().slot, SlotId::A);
}
