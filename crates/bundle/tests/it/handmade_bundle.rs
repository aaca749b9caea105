//! Must-show 2: keel verifies and extracts bundles made by hand with GNU `cpio -H crc` (and
//! `-H newc`) and `openssl cms -sign`, in libconfig and JSON syntax.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use keel_bundle::MemberStatus;
use sha2::{Digest, Sha256};

fn sha256_hex(data: &[u8]) -> String {
    keel_formats::swdesc::hex(&Sha256::digest(data))
}

/// Writes sw-description, signs it with openssl, archives with GNU cpio; returns the bundle.
fn handmade(
    dir: &Path,
    cert: &Identity,
    description: &str,
    images: &[&str],
    format: &str,
) -> Vec<u8> {
    std::fs::write(dir.join("sw-description"), description).unwrap();
    run_ok(
        Command::new("openssl")
            .args([
                "cms",
                "-sign",
                "-in",
                "sw-description",
                "-out",
                "sw-description.sig",
                "-signer",
            ])
            .arg(&cert.cert)
            .arg("-inkey")
            .arg(&cert.key)
            .args(["-outform", "DER", "-nosmimecap", "-binary"])
            .current_dir(dir),
    );
    let mut list = String::from("sw-description\nsw-description.sig\n");
    for i in images {
        list.push_str(i);
        list.push('\n');
    }
    let mut child = Command::new("cpio")
        .args(["-o", "-H", format, "--quiet"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("GNU cpio must be installed (scripts/setup-debian.sh)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(list.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cpio failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn verifies_and_extracts_gnu_cpio_crc_bundle() {
    for (format, kind) in [("crc", KeyKind::Rsa2048), ("newc", KeyKind::P256)] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cert = test_cert(d, "handmade", kind);
        let rootfs = pattern(200_003, 7);
        let conf = b"key=value\n".to_vec();
        std::fs::write(d.join("rootfs.ext4"), &rootfs).unwrap();
        std::fs::write(d.join("app.conf"), &conf).unwrap();
        let description = format!(
            r#"software =
{{
    version = "3.1";
    hardware-compatibility: [ "1.0" ];
    images: (
        {{ filename = "rootfs.ext4"; device = "/dev/mmcblk0p2"; type = "raw"; sha256 = "{}"; }}
    );
    files: (
        {{ filename = "app.conf"; path = "/etc/app.conf"; sha256 = "{}"; }}
    );
}};
"#,
            sha256_hex(&rootfs),
            sha256_hex(&conf)
        );
        let bundle = handmade(d, &cert, &description, &["rootfs.ext4", "app.conf"], format);

        let report = keel_bundle::verify(&bundle[..], &cert.verifier()).unwrap();
        assert!(report.signature.verified);
        assert_eq!(report.version.as_deref(), Some("3.1"));
        assert_eq!(report.members.len(), 2);
        assert!(
            report.members.iter().all(|m| m.status == MemberStatus::Ok),
            "{report:?}"
        );

        let out = d.join("out");
        keel_bundle::extract(&bundle[..], &out, Some(&cert.verifier()), None).unwrap();
        assert_eq!(std::fs::read(out.join("rootfs.ext4")).unwrap(), rootfs);
        assert_eq!(std::fs::read(out.join("app.conf")).unwrap(), conf);
        assert_eq!(
            std::fs::read_to_string(out.join("sw-description")).unwrap(),
            description
        );
    }
}

#[test]
fn verifies_handmade_json_description_and_encrypted_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cert = test_cert(d, "handmade", KeyKind::Rsa2048);
    let (_, key) = aes_keyfile(d);
    let plain = pattern(33_333, 9);
    std::fs::write(d.join("plain.img"), &plain).unwrap();
    let hexs = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    run_ok(
        Command::new("openssl")
            .args([
                "enc",
                "-aes-256-cbc",
                "-in",
                "plain.img",
                "-out",
                "rootfs.enc",
                "-K",
            ])
            .arg(hexs(&key.key))
            .arg("-iv")
            .arg(hexs(&key.iv))
            .current_dir(d),
    );
    let enc = std::fs::read(d.join("rootfs.enc")).unwrap();
    let description = format!(
        r#"{{ "software": {{ "version": "4.0", "hardware-compatibility": ["1.0"],
            "images": [ {{ "filename": "rootfs.enc", "device": "/dev/sda3", "type": "raw",
                          "encrypted": true, "sha256": "{}" }} ] }} }}"#,
        sha256_hex(&enc)
    );
    let bundle = handmade(d, &cert, &description, &["rootfs.enc"], "crc");
    let report = keel_bundle::verify(&bundle[..], &cert.verifier()).unwrap();
    assert_eq!(report.syntax, "json");
    assert!(report.members[0].encrypted);

    let out = d.join("out");
    keel_bundle::extract(&bundle[..], &out, Some(&cert.verifier()), Some(&key)).unwrap();
    assert_eq!(
        std::fs::read(out.join("rootfs.enc")).unwrap(),
        plain,
        "extract decrypts with the key"
    );
}

#[test]
fn gnu_cpio_reads_keel_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cert = test_cert(d, "signer", KeyKind::Rsa2048);
    let image = pattern(10_001, 4);
    std::fs::write(d.join("a.img"), &image).unwrap();
    let manifest = "[software]\nversion = \"1\"\n[[software.images]]\nfilename = \"a.img\"\ndevice = \"/dev/null\"\n";
    let bundle = build(
        d,
        manifest,
        &keel_bundle::CreateOptions {
            signer: Some(cert.signer()),
            ..Default::default()
        },
    );
    let x = d.join("x");
    std::fs::create_dir(&x).unwrap();
    let mut child = Command::new("cpio")
        .args(["-i", "--quiet", "--only-verify-crc"])
        .current_dir(&x)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&bundle).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = Command::new("cpio")
        .args(["-i", "--quiet"])
        .current_dir(&x)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bundle).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(std::fs::read(x.join("a.img")).unwrap(), image);
    // openssl verifies keel's signature over the extracted sw-description.
    run_ok(
        Command::new("openssl")
            .args([
                "cms",
                "-verify",
                "-binary",
                "-inform",
                "DER",
                "-in",
                "sw-description.sig",
                "-content",
                "sw-description",
                "-out",
                "/dev/null",
                "-purpose",
                "smimesign",
                "-CAfile",
            ])
            .arg(&cert.cert)
            .current_dir(&x),
    );
}
