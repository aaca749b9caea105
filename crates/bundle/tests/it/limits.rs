//! Large images: the 4 GiB cpio member limit is a clear error raised before any image byte is
//! read (the input is a sparse file, so this test is fast).

use crate::common;

use common::*;
use keel_bundle::{BundleError, BundleSpec, CreateOptions};

#[test]
fn image_over_cpio_limit_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = std::fs::File::create(d.join("huge.img")).unwrap();
    f.set_len(4 * 1024 * 1024 * 1024).unwrap(); // 4 GiB: one byte over the limit
    drop(f);
    std::fs::write(d.join("keel.toml"), "[software]\nversion = \"1\"\n[[software.images]]\nfilename = \"huge.img\"\ndevice = \"/dev/x\"\n").unwrap();
    let spec = BundleSpec::from_manifest(&d.join("keel.toml")).unwrap();
    let mut out = Vec::new();
    let err = keel_bundle::create(&spec, &CreateOptions::default(), &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::TooLarge {
                size: 4294967296,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("huge.img") && msg.contains("4 GiB"), "{msg}");
    assert!(out.is_empty(), "nothing is written before the size check");

    // Encryption padding counts: 4 GiB - 16 bytes of plaintext becomes 4 GiB of ciphertext.
    let f = std::fs::File::options()
        .write(true)
        .open(d.join("huge.img"))
        .unwrap();
    f.set_len(4 * 1024 * 1024 * 1024 - 16).unwrap();
    drop(f);
    std::fs::write(d.join("keel.toml"), "[software]\nversion = \"1\"\n[[software.images]]\nfilename = \"huge.img\"\ndevice = \"/dev/x\"\nencrypted = true\n").unwrap();
    let (_, key) = aes_keyfile(d);
    let spec = BundleSpec::from_manifest(&d.join("keel.toml")).unwrap();
    let options = CreateOptions {
        aes_key: Some(key),
        ..Default::default()
    };
    let err = keel_bundle::create(&spec, &options, &mut out).unwrap_err();
    assert!(matches!(err, BundleError::TooLarge { .. }), "{err}");
}

#[test]
fn encrypted_entry_without_key_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("a.img"), b"x").unwrap();
    std::fs::write(d.join("keel.toml"), "[software]\nversion = \"1\"\n[[software.images]]\nfilename = \"a.img\"\nencrypted = true\n").unwrap();
    let spec = BundleSpec::from_manifest(&d.join("keel.toml")).unwrap();
    let err = keel_bundle::create(&spec, &CreateOptions::default(), &mut Vec::new()).unwrap_err();
    assert!(
        err.to_string()
            .contains("\"a.img\" is marked encrypted but no AES key"),
        "{err}"
    );
    std::fs::write(
        d.join("keel.toml"),
        "[software]\nversion = \"1\"\n[[software.images]]\nfilename = \"../a.img\"\n",
    )
    .unwrap();
    let spec = BundleSpec::from_manifest(&d.join("keel.toml")).unwrap();
    let err = keel_bundle::create(&spec, &CreateOptions::default(), &mut Vec::new()).unwrap_err();
    assert!(matches!(err, BundleError::BadMemberName { .. }), "{err}");
}
