//! Scripts are stored before images, whatever the order of the manifest's sections, so a
//! streaming installer (keel-agent, SWUpdate with installed-directly) has every pre-install
//! script before the first image byte.

use crate::common;

use std::fs;

use common::*;
use keel_bundle::CreateOptions;
use keel_formats::swu::SwuReader;

// TOML tables sort `images` before `scripts`; the bundle must not follow that order.
const MANIFEST: &str = r#"
[software]
version = "1.0"
[[software.images]]
filename = "rootfs.img"
device = "/dev/sda2"
type = "raw"
[[software.images]]
filename = "kernel.efi"
device = "/dev/sda3"
type = "raw"
[[software.scripts]]
filename = "prepare.sh"
type = "shellscript"
[[software.scripts]]
filename = "check.sh"
type = "postinstall"
"#;

#[test]
fn scripts_come_before_images_in_document_order() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("rootfs.img"), pattern(50_000, 1)).unwrap();
    fs::write(dir.path().join("kernel.efi"), pattern(5_000, 2)).unwrap();
    fs::write(dir.path().join("prepare.sh"), b"#!/bin/sh\nexit 0\n").unwrap();
    fs::write(dir.path().join("check.sh"), b"#!/bin/sh\nexit 0\n").unwrap();
    let cert = test_cert(dir.path(), "order", KeyKind::P256);
    let options = CreateOptions {
        signer: Some(cert.signer()),
        aes_key: None,
        source_date_epoch: Some(1_700_000_000),
    };
    let bundle = build(dir.path(), MANIFEST, &options);

    let mut reader = SwuReader::new(bundle.as_slice());
    reader.read_description().unwrap();
    let mut names = Vec::new();
    while let Some(member) = reader.next_member().unwrap() {
        names.push(member.name.to_string());
    }
    assert_eq!(
        names,
        ["prepare.sh", "check.sh", "rootfs.img", "kernel.efi"]
    );
}
