//! `keel-agent media MOUNTPOINT` on real files: the newest valid bundle of
//! MOUNTPOINT/keel-updates is installed, bad ones are passed over with the reason, a release is
//! never installed twice, and a medium with only bad bundles changes nothing.

use crate::common::{image, FileDevice, SLOT_SIZE};

use keel_testkit::bundle::signed_bundle;
use keel_testkit::pki::Pki;

fn media(device: &FileDevice, medium: &std::path::Path) -> (bool, String) {
    let out = device
        .agent_cmd()
        .arg("media")
        .arg(medium)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn untrusted_bundle(version: &str, data: &[u8]) -> Vec<u8> {
    let pki = Pki::new();
    let rogue = pki
        .cert("rogue")
        .subject("/CN=not-the-release-key")
        .self_signed();
    let manifest = format!(
        "[software]\nversion = \"{version}\"\n[[software.images]]\nfilename = \"rootfs.img\"\ndevice = \"rootfs\"\ntype = \"raw\"\n"
    );
    signed_bundle(&rogue, &manifest, &[("rootfs.img", data)])
}

#[test]
fn newest_valid_bundle_is_installed_once_and_bad_ones_are_named() {
    let device = FileDevice::new();
    let medium = tempfile::tempdir().unwrap();
    let dir = medium.path().join(keel_agent::media::MEDIA_DIR);
    std::fs::create_dir(&dir).unwrap();
    let (v1, v2, v10) = (
        image(1, SLOT_SIZE / 2),
        image(2, SLOT_SIZE / 2),
        image(10, SLOT_SIZE / 2),
    );
    std::fs::write(dir.join("a-release-1.9.swu"), device.bundle("1.9", &v1)).unwrap();
    std::fs::write(dir.join("b-release-1.10.swu"), device.bundle("1.10", &v2)).unwrap();
    // Newer, but signed by a key the device does not trust; and no bundle at all.
    std::fs::write(dir.join("c-release-9.0.swu"), untrusted_bundle("9.0", &v10)).unwrap();
    std::fs::write(dir.join("d-notes.swu"), b"release notes, not a bundle").unwrap();

    let (ok, log) = media(&device, medium.path());
    assert!(ok, "{log}");
    assert!(
        log.contains("media installed: installed") && log.contains("b-release-1.10.swu"),
        "{log}"
    );
    assert!(
        log.contains("c-release-9.0.swu: ") && log.contains("d-notes.swu: "),
        "every bundle passed over is named: {log}"
    );
    assert!(log.contains("a-release-1.9.swu: older"), "{log}");
    let slot_b = std::fs::read(device.path("rootfs-b.img")).unwrap();
    assert_eq!(
        &slot_b[..v2.len()],
        &v2[..],
        "1.10 (the newest valid) is in slot B"
    );
    let status = device.status_json();
    assert_eq!(status["last_media"]["outcome"], "installed");
    assert_eq!(status["last_media"]["version"], "1.10");
    assert_eq!(status["state"], "installed");
    // Reported to the server at the next DDI contact.
    let config = keel_agent::Config::load(&device.config_path).unwrap();
    let agent = keel_agent::Agent::open_os(config).unwrap();
    let attributes = keel_agent::ddi::slot_attributes(&agent, keel_agent::SlotId::A).unwrap();
    let reported = &attributes[keel_formats::names::attributes::MEDIA];
    assert!(
        reported.starts_with("installed 1.10 b-release-1.10.swu "),
        "{reported}"
    );

    // Boot it, confirm it; the same stick again installs nothing.
    device.reboot(2);
    let out = device.agent_cmd().arg("confirm").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let slot_a = std::fs::read(device.path("rootfs-a.img")).unwrap();
    let (ok, log) = media(&device, medium.path());
    assert!(ok, "{log}");
    assert!(
        log.contains("media nothing new")
            && log.contains("b-release-1.10.swu: already installed")
            && log.contains("a-release-1.9.swu: older"),
        "{log}"
    );
    assert_eq!(
        std::fs::read(device.path("rootfs-a.img")).unwrap(),
        slot_a,
        "nothing written"
    );
    assert_eq!(device.status_json()["last_media"]["outcome"], "nothing-new");

    // A stick holding only an older release than the running one: no downgrade.
    let old_stick = tempfile::tempdir().unwrap();
    let old_dir = old_stick.path().join(keel_agent::media::MEDIA_DIR);
    std::fs::create_dir(&old_dir).unwrap();
    std::fs::write(
        old_dir.join("release-1.5.swu"),
        device.bundle("1.5", &image(5, SLOT_SIZE / 2)),
    )
    .unwrap();
    let (ok, log) = media(&device, old_stick.path());
    assert!(
        ok && log.contains("version 1.5 is not newer than the running 1.10"),
        "{log}"
    );
    assert_eq!(
        std::fs::read(device.path("rootfs-a.img")).unwrap(),
        slot_a,
        "nothing written"
    );
}

#[test]
fn a_medium_with_only_bad_bundles_changes_nothing() {
    let device = FileDevice::new();
    let medium = tempfile::tempdir().unwrap();
    let dir = medium.path().join(keel_agent::media::MEDIA_DIR);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("update.swu"),
        untrusted_bundle("2.0", &image(3, SLOT_SIZE / 2)),
    )
    .unwrap();
    let before_b = std::fs::read(device.path("rootfs-b.img")).unwrap();
    let env_before: Vec<Vec<u8>> = ["BOOT0", "BOOT1"]
        .iter()
        .map(|d| std::fs::read(device.path(d).join("BGENV.DAT")).unwrap())
        .collect();

    let (ok, log) = media(&device, medium.path());
    assert!(
        ok,
        "a bad bundle is an outcome, not an agent failure: {log}"
    );
    assert!(
        log.contains("media nothing new: no new valid bundle") && log.contains("update.swu: "),
        "{log}"
    );
    assert!(
        log.to_lowercase().contains("signature") || log.contains("signer"),
        "the reason is named: {log}"
    );
    assert_eq!(
        std::fs::read(device.path("rootfs-b.img")).unwrap(),
        before_b
    );
    for (d, before) in ["BOOT0", "BOOT1"].iter().zip(env_before) {
        assert_eq!(
            std::fs::read(device.path(d).join("BGENV.DAT")).unwrap(),
            before,
            "{d} untouched"
        );
    }
    assert_eq!(device.status_json()["state"], "idle");

    // No bundle directory at all.
    let empty = tempfile::tempdir().unwrap();
    let (ok, log) = media(&device, empty.path());
    assert!(ok && log.contains("no bundle directory"), "{log}");
}
