//! `keel bundle` end to end through the binary: create (twice, reproducibly), verify, inspect
//! --json, extract, and non-zero exits with messages naming what failed.

use std::path::Path;
use std::process::{Command, Output};

use keel_testkit::pki::{KeyKind, Pki, EXT_SIGNER, EXT_SIGNER_CODESIGN};

fn keel(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A self-signed RSA release signer `name.crt` / `name.key` in `dir`.
fn openssl_cert(dir: &Path, name: &str) {
    openssl_cert_for(dir, name, EXT_SIGNER)
}

/// A self-signed RSA certificate `name.crt` / `name.key` in `dir` with the extensions `ext`.
fn openssl_cert_for(dir: &Path, name: &str, ext: &str) {
    Pki::in_dir(dir)
        .cert(name)
        .key_kind(KeyKind::Rsa2048)
        .ext(ext)
        .days(365)
        .files(&format!("{name}.crt"), &format!("{name}.key"))
        .self_signed();
}

#[test]
fn bundle_commands_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_cert(d, "release");
    openssl_cert(d, "intruder");
    let image: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(d.join("rootfs.img"), &image).unwrap();
    std::fs::write(
        d.join("aes.key"),
        format!("{} {}\n", "ab".repeat(32), "cd".repeat(16)),
    )
    .unwrap();
    std::fs::write(
        d.join("keel.toml"),
        "[software]\nversion = \"1.0\"\nhardware-compatibility = [\"1.0\"]\n\
         [[software.images]]\nfilename = \"rootfs.img\"\ndevice = \"/dev/sda2\"\ntype = \"raw\"\nencrypted = true\n",
    )
    .unwrap();
    let create = |out: &str, epoch: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args([
                "bundle",
                "create",
                "-m",
                "keel.toml",
                "-o",
                out,
                "--cert",
                "release.crt",
                "--key",
                "release.key",
            ])
            .args(["--aes-key", "aes.key"])
            .env("SOURCE_DATE_EPOCH", epoch)
            .current_dir(d)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    };
    create("a.swu", "1700000000");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    create("b.swu", "1700000000");
    let a = std::fs::read(d.join("a.swu")).unwrap();
    assert_eq!(
        a,
        std::fs::read(d.join("b.swu")).unwrap(),
        "two CLI runs differ"
    );

    let o = keel(&["bundle", "verify", "a.swu", "--cert", "release.crt"], d);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("signature:    verified, signer CN=release"),
        "{}",
        text(&o)
    );

    let o = keel(&["bundle", "inspect", "a.swu", "--json"], d);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["version"], "1.0");
    assert_eq!(report["members"][0]["name"], "rootfs.img");
    assert_eq!(report["members"][0]["status"], "ok");
    assert_eq!(report["signature"]["verified"], false);

    let o = keel(
        &[
            "bundle",
            "extract",
            "a.swu",
            "-d",
            "out",
            "--cert",
            "release.crt",
            "--aes-key",
            "aes.key",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(d.join("out/rootfs.img")).unwrap(), image);

    // Wrong certificate: non-zero exit naming the failed check.
    let o = keel(&["bundle", "verify", "a.swu", "--cert", "intruder.crt"], d);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("signature check of sw-description failed")
            && text(&o).contains("not trusted"),
        "{}",
        text(&o)
    );

    // A flipped byte in the image: non-zero exit naming the member.
    let mut t = a.clone();
    let at = t.len() - 2048;
    t[at] ^= 1;
    std::fs::write(d.join("t.swu"), &t).unwrap();
    let o = keel(&["bundle", "verify", "t.swu", "--cert", "release.crt"], d);
    assert!(!o.status.success());
    assert!(text(&o).contains("\"rootfs.img\""), "{}", text(&o));

    let o = keel(&["bundle", "verify", "a.swu"], d);
    assert!(
        !o.status.success() && text(&o).contains("--cert"),
        "{}",
        text(&o)
    );
}

/// `delta-from` and `chunked = true` through the binary: the bundle carries a keel-delta and a
/// keel-chunked member, the pack lands next to the bundle, `inspect` shows the hashes, and the
/// extracted members rebuild the new image from the old one with `keel delta`.
#[test]
fn bundle_with_delta_and_chunked_images() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_cert(d, "release");
    let old: Vec<u8> = (0..400_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut new = old.clone();
    new[100_000..100_016].copy_from_slice(b"version 2.0.1 ok");
    new.extend_from_slice(b"appended in the update");
    std::fs::write(d.join("old.img"), &old).unwrap();
    std::fs::write(d.join("new.img"), &new).unwrap();
    std::fs::write(
        d.join("keel.toml"),
        r#"
[software]
version = "2.0"
hardware-compatibility = ["1.0"]
[[software.images]]
filename = "rootfs.img"
source = "new.img"
delta-from = "old.img"
device = "/dev/sda2"
type = "raw"
[[software.images]]
filename = "data.img"
source = "new.img"
chunked = true
device = "/dev/sda3"
"#,
    )
    .unwrap();
    std::fs::create_dir(d.join("release")).unwrap();
    let o = keel(
        &[
            "bundle",
            "create",
            "-m",
            "keel.toml",
            "-o",
            "release/update.swu",
            "--cert",
            "release.crt",
            "--key",
            "release.key",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("rootfs.img.kdelta: static delta old.img -> rootfs.img"));
    assert!(
        d.join("release/data.img.kpack").is_file(),
        "pack beside the bundle"
    );

    let o = keel(
        &[
            "bundle",
            "verify",
            "release/update.swu",
            "--cert",
            "release.crt",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = keel(&["bundle", "inspect", "release/update.swu", "--json"], d);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sha = |b: &[u8]| keel_delta::hex(&keel_delta::sha256(b));
    let delta_entry = &report["entries"][0];
    assert_eq!(delta_entry["filename"], "rootfs.img.kdelta");
    assert_eq!(delta_entry["type"], "keel-delta");
    assert_eq!(delta_entry["properties"]["source-sha256"], sha(&old));
    assert_eq!(delta_entry["properties"]["target-sha256"], sha(&new));
    let chunk_entry = &report["entries"][1];
    assert_eq!(chunk_entry["type"], "keel-chunked");
    assert_eq!(chunk_entry["properties"]["pack"], "data.img.kpack");
    assert_eq!(
        chunk_entry["properties"]["target-size"],
        new.len().to_string()
    );

    let o = keel(
        &[
            "bundle",
            "extract",
            "release/update.swu",
            "-d",
            "x",
            "--cert",
            "release.crt",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = keel(
        &[
            "delta",
            "apply",
            "--seed",
            "old.img",
            "x/rootfs.img.kdelta",
            "-o",
            "via-delta.img",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::read(d.join("via-delta.img")).unwrap() == new);
    let o = keel(
        &[
            "delta",
            "assemble",
            "--index",
            "x/data.img.kidx",
            "--seed",
            "old.img",
            "--pack",
            "release/data.img.kpack",
            "-o",
            "via-chunks.img",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::read(d.join("via-chunks.img")).unwrap() == new);
}

/// A certificate whose extendedKeyUsage lacks emailProtection: `create` refuses it (its own `verify`
/// and swupdate would reject the bundle) and says what to do; with `--cert-purpose codeSigning` the
/// bundle is made and verifies with that purpose. `verify --json` answers on stdout when it fails.
#[test]
fn create_refuses_a_signer_its_verifiers_would_reject() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_cert_for(d, "codesign", EXT_SIGNER_CODESIGN);
    std::fs::write(d.join("rootfs.img"), vec![7u8; 10_000]).unwrap();
    std::fs::write(
        d.join("keel.toml"),
        "[software]\nversion = \"1.0\"\n[[software.images]]\nfilename = \"rootfs.img\"\ndevice = \"/dev/sda2\"\n",
    )
    .unwrap();
    let create = |extra: &[&str]| {
        let mut args = vec![
            "bundle",
            "create",
            "-m",
            "keel.toml",
            "-o",
            "c.swu",
            "--cert",
            "codesign.crt",
            "--key",
            "codesign.key",
        ];
        args.extend_from_slice(extra);
        keel(&args, d)
    };
    let o = create(&[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("lacks extendedKeyUsage emailProtection")
            && text(&o).contains("--cert-purpose"),
        "{}",
        text(&o)
    );
    assert!(!d.join("c.swu").exists());

    let o = create(&["--cert-purpose", "codeSigning"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = keel(
        &[
            "bundle",
            "verify",
            "c.swu",
            "--cert",
            "codesign.crt",
            "--cert-purpose",
            "codeSigning",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));

    let o = keel(
        &[
            "bundle",
            "verify",
            "c.swu",
            "--cert",
            "codesign.crt",
            "--json",
        ],
        d,
    );
    assert!(!o.status.success());
    let answer: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("no JSON on stdout ({e}): {}", text(&o)));
    assert_eq!(answer["verified"], false);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("emailProtection"),
        "{answer}"
    );
}
