//! Must-show 4: tampering (a flipped byte in any member, a swapped signature, a wrong
//! certificate, missing or extra members) fails verification with a message naming what failed.

use crate::common;

use common::*;
use keel_bundle::{BundleError, CreateOptions};
use keel_formats::swu::SwuWriter;

struct Fixture {
    _dir: tempfile::TempDir,
    cert: Identity,
    other: Identity,
    bundle: Vec<u8>,
    other_bundle: Vec<u8>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cert = test_cert(d, "release", KeyKind::Rsa2048);
    let other = test_cert(d, "intruder", KeyKind::P256);
    std::fs::write(d.join("rootfs.img"), pattern(40_000, 21)).unwrap();
    std::fs::write(d.join("boot.img"), pattern(5_000, 22)).unwrap();
    let manifest = "[software]\nversion = \"1\"\nhardware-compatibility = [\"1.0\"]\n\
        [[software.images]]\nfilename = \"rootfs.img\"\ndevice = \"/dev/a\"\n\
        [[software.images]]\nfilename = \"boot.img\"\ndevice = \"/dev/b\"\n";
    let bundle = build(
        d,
        manifest,
        &CreateOptions {
            signer: Some(cert.signer()),
            ..Default::default()
        },
    );
    let manifest2 = manifest.replace("version = \"1\"", "version = \"2\"");
    let other_bundle = build(
        d,
        &manifest2,
        &CreateOptions {
            signer: Some(cert.signer()),
            ..Default::default()
        },
    );
    Fixture {
        _dir: dir,
        cert,
        other,
        bundle,
        other_bundle,
    }
}

fn verify_err(bundle: &[u8], cert: &Identity) -> String {
    match keel_bundle::verify(bundle, &cert.verifier()) {
        Ok(r) => panic!("tampered bundle verified: {r:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn intact_bundle_verifies() {
    let f = fixture();
    let report = keel_bundle::verify(&f.bundle[..], &f.cert.verifier()).unwrap();
    assert!(report.problems.is_empty() && report.signature.verified);
    assert_eq!(
        report.signature.signer_subject.as_deref(),
        Some("CN=release")
    );
}

#[test]
fn flipped_byte_in_every_member_is_caught_and_named() {
    let f = fixture();
    for name in [
        "sw-description",
        "sw-description.sig",
        "rootfs.img",
        "boot.img",
    ] {
        let loc = locate(&f.bundle, name);
        // Raw flip: the cpio checksum names the member.
        let mut t = f.bundle.clone();
        t[loc.data + loc.size / 2] ^= 0x80;
        let err = verify_err(&t, &f.cert);
        assert!(
            err.contains(&format!("{name:?}")) && err.contains("checksum"),
            "{name}: {err}"
        );

        // Flip with the checksum fixed up: the signature or the signed sha256 catches it.
        fix_checksum(&mut t, &loc);
        let err = verify_err(&t, &f.cert);
        match name {
            "sw-description" | "sw-description.sig" => {
                assert!(
                    err.contains("signature check of sw-description failed"),
                    "{name}: {err}"
                )
            }
            _ => assert!(
                err.contains(&format!("member {name:?}: sha256 mismatch")),
                "{name}: {err}"
            ),
        }
    }
}

#[test]
fn swapped_signature_is_rejected() {
    let f = fixture();
    // Signature of another (validly signed) bundle spliced in.
    let mut r = keel_formats::swu::SwuReader::new(&f.bundle[..]);
    let ours = r.read_description().unwrap();
    let mut r2 = keel_formats::swu::SwuReader::new(&f.other_bundle[..]);
    let theirs = r2.read_description().unwrap();
    let mut w = SwuWriter::new(Vec::new(), 0);
    w.write_description(&ours.description, theirs.signature.as_deref())
        .unwrap();
    for name in ["rootfs.img", "boot.img"] {
        let loc = locate(&f.bundle, name);
        w.append_image_bytes(name, &f.bundle[loc.data..loc.data + loc.size])
            .unwrap();
    }
    let spliced = w.finish().unwrap();
    let err = verify_err(&spliced, &f.cert);
    assert!(
        err.contains("signature check of sw-description failed"),
        "{err}"
    );
    assert!(
        err.contains("messageDigest") || err.contains("does not match"),
        "{err}"
    );
}

#[test]
fn wrong_certificate_is_rejected() {
    let f = fixture();
    let err = verify_err(&f.bundle, &f.other);
    assert!(
        err.contains("signature check of sw-description failed") && err.contains("not trusted"),
        "{err}"
    );
}

#[test]
fn missing_extra_and_unsigned_are_rejected() {
    let f = fixture();
    let mut r = keel_formats::swu::SwuReader::new(&f.bundle[..]);
    let d = r.read_description().unwrap();
    let rootfs = locate(&f.bundle, "rootfs.img");
    let rootfs = &f.bundle[rootfs.data..rootfs.data + rootfs.size];

    let mut w = SwuWriter::new(Vec::new(), 0);
    w.write_description(&d.description, d.signature.as_deref())
        .unwrap();
    w.append_image_bytes("rootfs.img", rootfs).unwrap();
    w.append_image_bytes("evil.sh", b"rm -rf /").unwrap();
    let t = w.finish().unwrap();
    let err = verify_err(&t, &f.cert);
    assert!(
        err.contains("\"boot.img\" referenced by sw-description is missing"),
        "{err}"
    );
    assert!(err.contains("\"evil.sh\" is not referenced"), "{err}");

    let mut w = SwuWriter::new(Vec::new(), 0);
    w.write_description(&d.description, None).unwrap();
    let t = w.finish().unwrap();
    assert!(matches!(
        keel_bundle::verify(&t[..], &f.cert.verifier()),
        Err(BundleError::Unsigned)
    ));

    let truncated = &f.bundle[..f.bundle.len() / 2];
    let err = verify_err(truncated, &f.cert);
    assert!(
        err.contains("truncated") && err.contains("rootfs.img"),
        "{err}"
    );
}

#[test]
fn extract_never_writes_outside_the_directory() {
    let f = fixture();
    let mut r = keel_formats::swu::SwuReader::new(&f.bundle[..]);
    let d = r.read_description().unwrap();
    let mut w = SwuWriter::new(Vec::new(), 0);
    w.write_description(&d.description, d.signature.as_deref())
        .unwrap();
    for name in ["rootfs.img", "boot.img"] {
        let loc = locate(&f.bundle, name);
        w.append_image_bytes(name, &f.bundle[loc.data..loc.data + loc.size])
            .unwrap();
    }
    w.append_image_bytes("../escaped", b"owned").unwrap();
    let t = w.finish().unwrap();
    let base = tempfile::tempdir().unwrap();
    let out = base.path().join("out");
    let err = keel_bundle::extract(&t[..], &out, Some(&f.cert.verifier()), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"../escaped\" cannot be extracted"), "{err}");
    assert!(!base.path().join("escaped").exists());
    assert!(
        out.join("rootfs.img").exists(),
        "verified members are still extracted"
    );
}
