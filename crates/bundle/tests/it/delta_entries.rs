//! `delta-from` and `chunked = true` in the manifest: the bundle carries a `keel-delta` member
//! (static delta) or a `keel-chunked` member (chunk index, pack written beside the bundle) with
//! the properties docs/delta-format.md specifies; the members rebuild the new image from the old
//! one; creation is reproducible; and Debian's swupdate accepts the signature and parses the
//! entries (then refuses them: it has no keel-delta handler).

use crate::common;

use std::io::Cursor;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use common::*;
use keel_bundle::{BundleSpec, CreateOptions, MemberStatus};
use keel_delta::chunk::{self, ChunkIndex, PackReader, SeedChunks};
use keel_delta::testing::texty;

/// An "old" image and a "new" one that differs in a few places (an update).
fn image_pair() -> (Vec<u8>, Vec<u8>) {
    let old = pattern(700_000, 7);
    let mut new = old.clone();
    new[1000..1010].copy_from_slice(b"new bytes!");
    new.splice(300_000..300_100, pattern(5_000, 9));
    new.truncate(650_000);
    new.extend_from_slice(&pattern(40_000, 11));
    (old, new)
}

fn manifest(target: &str) -> String {
    format!(
        r#"
        [software]
        version = "2.0.0"
        hardware-compatibility = ["1.0"]
        [[software.images]]
        filename = "rootfs.img"
        source = "build/rootfs-new.img"
        delta-from = "build/rootfs-old.img"
        device = "{target}"
        type = "raw"
        [software.images.properties]
        note = "kept"
        [[software.images]]
        filename = "app.img"
        source = "build/rootfs-new.img"
        chunked = true
        device = "/dev/null"
        "#
    )
}

fn setup(d: &Path) -> (Vec<u8>, Vec<u8>) {
    let (old, new) = image_pair();
    std::fs::create_dir_all(d.join("build")).unwrap();
    std::fs::write(d.join("build/rootfs-old.img"), &old).unwrap();
    std::fs::write(d.join("build/rootfs-new.img"), &new).unwrap();
    (old, new)
}

fn create(d: &Path, manifest_text: &str, options: &CreateOptions, packs: &Path) -> Vec<u8> {
    let path = d.join("keel.toml");
    std::fs::write(&path, manifest_text).unwrap();
    let spec = BundleSpec::from_manifest(&path).unwrap();
    let mut out = Vec::new();
    keel_bundle::create_with_packs(&spec, options, Some(packs), &mut out).unwrap();
    out
}

fn member(bundle: &[u8], name: &str) -> Vec<u8> {
    let loc = locate(bundle, name);
    bundle[loc.data..loc.data + loc.size].to_vec()
}

#[test]
fn delta_and_chunked_entries_verify_and_rebuild_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (old, new) = setup(d);
    let cert = test_cert(d, "signer", KeyKind::P256);
    let options = CreateOptions {
        signer: Some(cert.signer()),
        ..Default::default()
    };
    let packs = d.join("out");
    std::fs::create_dir_all(&packs).unwrap();
    let bundle = create(d, &manifest("/dev/sda2"), &options, &packs);

    let report = keel_bundle::verify(&bundle[..], &cert.verifier()).expect("verify");
    assert!(report.signature.verified);
    let names: Vec<&str> = report.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["rootfs.img.kdelta", "app.img.kidx"]);
    assert!(report.members.iter().all(|m| m.status == MemberStatus::Ok));

    let new_sha = keel_delta::hex(&keel_delta::sha256(&new));
    let old_sha = keel_delta::hex(&keel_delta::sha256(&old));
    let delta_entry = &report.entries[0];
    assert_eq!(delta_entry.kind.as_deref(), Some("keel-delta"));
    assert_eq!(delta_entry.device.as_deref(), Some("/dev/sda2"));
    assert_eq!(delta_entry.properties["source-sha256"], old_sha);
    assert_eq!(delta_entry.properties["target-sha256"], new_sha);
    assert_eq!(delta_entry.properties["note"], "kept");
    let chunk_entry = &report.entries[1];
    assert_eq!(chunk_entry.kind.as_deref(), Some("keel-chunked"));
    assert_eq!(chunk_entry.properties["target-sha256"], new_sha);
    assert_eq!(chunk_entry.properties["target-size"], new.len().to_string());
    assert_eq!(chunk_entry.properties["pack"], "app.img.kpack");
    assert!(
        !report.to_human().contains("source = "),
        "keel-only keys removed"
    );
    assert!(report
        .to_human()
        .contains(&format!("source-sha256 = {old_sha}")));

    // The delta member turns the old image into the new one, and its header names both images.
    let delta = member(&bundle, "rootfs.img.kdelta");
    let header = keel_delta::apply::read_header(&mut &delta[..]).unwrap();
    assert_eq!(keel_delta::hex(&header.seed_sha256), old_sha);
    assert_eq!(keel_delta::hex(&header.target_sha256), new_sha);
    let mut out = Vec::new();
    keel_delta::apply(&mut Cursor::new(&old), &delta[..], &mut out).expect("apply");
    assert_eq!(out, new);
    assert!(delta.len() < 60_000, "delta is {} bytes", delta.len());
    let mut wrong = old.clone();
    wrong[5] ^= 1;
    let err = keel_delta::apply(&mut Cursor::new(&wrong), &delta[..], &mut Vec::new()).unwrap_err();
    assert!(
        matches!(err, keel_delta::DeltaError::WrongSeed { .. }),
        "{err}"
    );

    // The chunk index plus the pack beside the bundle rebuild the image from the old one.
    let index = ChunkIndex::from_bytes(&member(&bundle, "app.img.kidx")).unwrap();
    assert_eq!(index.image_sha256, keel_delta::sha256(&new));
    let pack = std::fs::read(packs.join("app.img.kpack")).unwrap();
    let seed = SeedChunks::scan(&old[..], index.params).unwrap();
    let plan = chunk::plan(&index, &seed);
    let mut target = Cursor::new(Vec::new());
    let mut fetcher = PackReader {
        pack: Cursor::new(&pack),
        bytes_read: 0,
    };
    chunk::assemble(
        &index,
        &plan,
        &mut Cursor::new(&old),
        &mut fetcher,
        &mut target,
    )
    .expect("assemble");
    assert_eq!(target.into_inner(), new);
    assert!(fetcher.bytes_read < pack.len() as u64, "reused seed chunks");
}

#[test]
fn derived_members_are_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let (a, b) = (d.join("a"), d.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let options = CreateOptions {
        source_date_epoch: Some(1_700_000_000),
        ..Default::default()
    };
    let first = create(d, &manifest("/dev/sda2"), &options, &a);
    let second = create(d, &manifest("/dev/sda2"), &options, &b);
    assert_eq!(first, second);
    assert_eq!(
        std::fs::read(a.join("app.img.kpack")).unwrap(),
        std::fs::read(b.join("app.img.kpack")).unwrap()
    );
}

#[test]
fn manifest_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let both = r#"
        [software]
        version = "1"
        [[software.images]]
        filename = "rootfs.img"
        source = "build/rootfs-new.img"
        delta-from = "build/rootfs-old.img"
        chunked = true
    "#;
    let err = BundleSpec::from_manifest_str(both, d).unwrap_err();
    assert!(err.contains("exclude each other"), "{err}");

    let files = r#"
        [software]
        version = "1"
        [[software.files]]
        filename = "a.conf"
        path = "/etc/a.conf"
        delta-from = "old.conf"
    "#;
    let err = BundleSpec::from_manifest_str(files, d).unwrap_err();
    assert!(err.contains("images entries"), "{err}");

    // A chunked image needs somewhere to put its pack.
    std::fs::write(d.join("keel.toml"), manifest("/dev/sda2")).unwrap();
    let spec = BundleSpec::from_manifest(&d.join("keel.toml")).unwrap();
    let err = keel_bundle::create(&spec, &CreateOptions::default(), &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("app.img.kidx"), "{err}");

    // A missing seed is an I/O error naming the file.
    let missing = manifest("/dev/sda2").replace("rootfs-old.img", "nope.img");
    std::fs::write(d.join("keel.toml"), missing).unwrap();
    let spec = BundleSpec::from_manifest(&d.join("keel.toml")).unwrap();
    let err =
        keel_bundle::create_with_packs(&spec, &CreateOptions::default(), Some(d), &mut Vec::new())
            .unwrap_err();
    assert!(err.to_string().contains("nope.img"), "{err}");
}

/// swupdate (2022.12) checks the signature, parses the keel-delta entry with its properties, and
/// refuses only because no keel-delta handler is built in.
#[test]
fn swupdate_checks_the_signature_and_names_the_missing_handler() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let cert = test_cert(d, "signer", KeyKind::Rsa2048);
    let options = CreateOptions {
        signer: Some(cert.signer()),
        ..Default::default()
    };
    let only_delta = manifest("/dev/sda2");
    let only_delta = &only_delta[..only_delta
        .find("[[software.images]]\n        filename = \"app.img\"")
        .unwrap()];
    let bundle = create(d, only_delta, &options, d);
    let path = d.join("delta.swu");
    std::fs::write(&path, &bundle).unwrap();
    let tmp = d.join("swupdate-tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = run(Command::new("swupdate")
        .process_group(0)
        .env("TMPDIR", &tmp)
        .args(["-v", "-c", "-i"])
        .arg(&path)
        .arg("-k")
        .arg(&cert.cert)
        .args(["-H", "board:1.0"]));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let old_sha = keel_delta::hex(&keel_delta::sha256(&image_pair().0));
    assert!(
        log.contains(&format!("Property source-sha256: {old_sha}")),
        "swupdate did not parse the signed description:\n{log}"
    );
    assert!(
        log.contains("for handler keel-delta"),
        "swupdate did not see the keel-delta entry:\n{log}"
    );
    assert!(
        log.contains("feature 'keel-delta' required"),
        "swupdate should refuse only for the missing handler:\n{log}"
    );
    assert!(!log.contains("Signature verification failed"), "{log}");

    // The same bundle with a flipped signature byte does not get as far as the description.
    let mut tampered = bundle.clone();
    let sig = locate(&tampered, "sw-description.sig");
    tampered[sig.data + sig.size - 5] ^= 1;
    fix_checksum(&mut tampered, &sig);
    std::fs::write(&path, &tampered).unwrap();
    let out = run(Command::new("swupdate")
        .process_group(0)
        .env("TMPDIR", &tmp)
        .args(["-v", "-c", "-i"])
        .arg(&path)
        .arg("-k")
        .arg(&cert.cert)
        .args(["-H", "board:1.0"]));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!log.contains("for handler keel-delta"), "{log}");
}

/// `verify` checks a keel-delta member's header (and a keel-chunked member's index) against the
/// entry's properties: a delta advertised for the wrong source is a verification failure.
#[test]
fn verify_catches_properties_that_lie_about_the_delta() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (old, new) = setup(d);
    let bundle = create(d, &manifest("/dev/sda2"), &CreateOptions::default(), d);
    let images = d.join("members");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(
        images.join("rootfs.img.kdelta"),
        member(&bundle, "rootfs.img.kdelta"),
    )
    .unwrap();
    std::fs::write(images.join("app.img.kidx"), member(&bundle, "app.img.kidx")).unwrap();
    let (old_sha, new_sha) = (
        keel_delta::hex(&keel_delta::sha256(&old)),
        keel_delta::hex(&keel_delta::sha256(&new)),
    );
    let description = |source: &str, size: usize| {
        format!(
            r#"software = {{
    version = "2.0.0";
    images: ( {{
        filename = "rootfs.img.kdelta";
        type = "keel-delta";
        device = "/dev/sda2";
        properties = {{ source-sha256 = "{source}"; target-sha256 = "{new_sha}"; }};
    }}, {{
        filename = "app.img.kidx";
        type = "keel-chunked";
        device = "/dev/sda3";
        properties = {{ target-sha256 = "{new_sha}"; target-size = "{size}"; pack = "app.img.kpack"; }};
    }} );
}};
"#
        )
    };
    let build = |text: String| {
        let path = d.join("sw-description");
        std::fs::write(&path, text).unwrap();
        let spec = BundleSpec::from_sw_description(&path, &images).unwrap();
        let mut out = Vec::new();
        keel_bundle::create(&spec, &CreateOptions::default(), &mut out).unwrap();
        keel_bundle::inspect(&out[..], None).unwrap()
    };
    let honest = build(description(&old_sha, new.len()));
    assert!(honest.problems.is_empty(), "{:?}", honest.problems);

    let lying = build(description(&new_sha, new.len() + 1));
    let problems = lying.problems.join("\n");
    assert!(
        problems.contains(&format!(
            "member \"rootfs.img.kdelta\": properties say source-sha256 {new_sha}, the member describes {old_sha}"
        )),
        "{problems}"
    );
    assert!(
        problems.contains("member \"app.img.kidx\": properties say target-size"),
        "{problems}"
    );
}

/// `mksquashfs -comp zstd` of a small tree (every block a zstd frame); `edit` changes one file.
fn squashfs(d: &Path, name: &str, edit: bool) -> Vec<u8> {
    let tree = d.join(name);
    std::fs::create_dir_all(&tree).unwrap();
    for i in 0..6u64 {
        let mut data = texty(10 + i, 50_000 + 10_000 * i as usize);
        if edit && i == 2 {
            data[1_000..3_000].copy_from_slice(&texty(99, 2_000));
        }
        std::fs::write(tree.join(format!("file{i}")), data).unwrap();
    }
    let image = d.join(format!("build/{name}.squashfs"));
    std::fs::create_dir_all(d.join("build")).unwrap();
    keel_delta::testing::mksquashfs_zstd(&tree, &image)
}

/// A delta of zstd squashfs images recompresses frames on the device: its entry gets the signed
/// `zstd-frames` property (the zstd version in the delta's layout header, what the server matches
/// against the device's `keel.delta.zstd`), and `verify` refuses a missing, wrong or unfounded one.
#[test]
fn framed_delta_entry_names_its_zstd_version_and_verify_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    squashfs(d, "old", false);
    squashfs(d, "new", true);
    let ours = keel_delta::frames::zstd_version().to_string();
    let framed_manifest = r#"
        [software]
        version = "2.0.0"
        [[software.images]]
        filename = "rootfs.img"
        source = "build/new.squashfs"
        delta-from = "build/old.squashfs"
        device = "/dev/sda2"
        type = "raw"
    "#;
    let cert = test_cert(d, "signer", KeyKind::P256);
    let options = CreateOptions {
        signer: Some(cert.signer()),
        ..Default::default()
    };
    let bundle = create(d, framed_manifest, &options, d);
    let report = keel_bundle::verify(&bundle[..], &cert.verifier()).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.entries[0].properties["zstd-frames"], ours);
    let framed = member(&bundle, "rootfs.img.kdelta");
    assert_eq!(
        keel_bundle::delta_zstd_frames(&framed),
        Ok(Some(ours.parse().unwrap()))
    );

    // A plain delta (no zstd frames in the images) gets no such property.
    let plain_dir = tempfile::tempdir().unwrap();
    setup(plain_dir.path());
    let plain_bundle = create(
        plain_dir.path(),
        &manifest("/dev/sda2"),
        &CreateOptions::default(),
        plain_dir.path(),
    );
    let plain = member(&plain_bundle, "rootfs.img.kdelta");
    assert_eq!(keel_bundle::delta_zstd_frames(&plain), Ok(None));
    let plain_report = keel_bundle::inspect(&plain_bundle[..], None).unwrap();
    assert!(!plain_report.entries[0]
        .properties
        .contains_key("zstd-frames"));

    // Descriptions written by hand around the framed and the plain member.
    let images = d.join("members");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("framed.kdelta"), &framed).unwrap();
    std::fs::write(images.join("plain.kdelta"), &plain).unwrap();
    let header = |delta: &[u8]| keel_delta::apply::read_header(&mut &delta[..]).unwrap();
    let problems = |member: &str, delta: &[u8], extra: &str| {
        let h = header(delta);
        let text = format!(
            r#"software = {{
    version = "2.0.0";
    images: ( {{
        filename = "{member}";
        type = "keel-delta";
        device = "/dev/sda2";
        properties = {{ source-sha256 = "{}"; target-sha256 = "{}"; {extra} }};
    }} );
}};
"#,
            keel_delta::hex(&h.seed_sha256),
            keel_delta::hex(&h.target_sha256)
        );
        let path = d.join("sw-description");
        std::fs::write(&path, text).unwrap();
        let spec = BundleSpec::from_sw_description(&path, &images).unwrap();
        let mut out = Vec::new();
        keel_bundle::create(&spec, &CreateOptions::default(), &mut out).unwrap();
        keel_bundle::inspect(&out[..], None)
            .unwrap()
            .problems
            .join("\n")
    };
    let honest = problems(
        "framed.kdelta",
        &framed,
        &format!("zstd-frames = \"{ours}\";"),
    );
    assert_eq!(honest, "");
    let wrong = problems("framed.kdelta", &framed, "zstd-frames = \"10404\";");
    assert!(
        wrong.contains(&format!(
            "member \"framed.kdelta\": properties say zstd-frames 10404, the member describes {ours}"
        )),
        "{wrong}"
    );
    let missing = problems("framed.kdelta", &framed, "");
    assert!(
        missing.contains("recompresses zstd frames but the entry has no properties.zstd-frames"),
        "{missing}"
    );
    let unfounded = problems(
        "plain.kdelta",
        &plain,
        &format!("zstd-frames = \"{ours}\";"),
    );
    assert!(
        unfounded.contains(&format!(
            "properties say zstd-frames {ours}, the member is a plain delta"
        )),
        "{unfounded}"
    );
}
