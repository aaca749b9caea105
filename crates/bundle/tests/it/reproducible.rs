//! Must-show 3: byte-identical bundles from two runs with different clocks, file mtimes,
//! permissions and directory creation order; SOURCE_DATE_EPOCH is the only timestamp used.

use crate::common;

use std::fs::{self, File, FileTimes};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::*;
use keel_bundle::CreateOptions;
use keel_formats::cpio::CpioReader;

const MANIFEST: &str = r#"
[software]
version = "5.0"
hardware-compatibility = ["1.0"]
[[software.images]]
filename = "rootfs.img"
device = "/dev/sda2"
type = "raw"
encrypted = true
[[software.images]]
filename = "kernel.efi"
path = "linux.efi"
device = "BOOT0,BOOT1"
type = "roundrobin"
[[software.files]]
filename = "app.conf"
path = "/etc/app.conf"
"#;

fn inputs(dir: &Path, reverse: bool, mtime: SystemTime, mode: u32) {
    let mut files = vec![
        ("rootfs.img", pattern(100_000, 11)),
        ("kernel.efi", pattern(20_000, 12)),
        ("app.conf", b"x=1\n".to_vec()),
    ];
    if reverse {
        files.reverse();
    }
    for (name, data) in files {
        let path = dir.join(name);
        fs::write(&path, data).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_times(FileTimes::new().set_modified(mtime).set_accessed(mtime))
            .unwrap();
    }
}

fn build_in(dir: &Path, cert: &Identity, epoch: Option<u64>) -> Vec<u8> {
    let (_, key) = aes_keyfile(dir);
    let options = CreateOptions {
        signer: Some(cert.signer()),
        aes_key: Some(key),
        source_date_epoch: epoch,
    };
    build(dir, MANIFEST, &options)
}

#[test]
fn two_runs_give_identical_bytes() {
    let keys = tempfile::tempdir().unwrap();
    for kind in [KeyKind::Rsa2048, KeyKind::P256] {
        let cert = test_cert(keys.path(), &format!("{kind:?}"), kind);
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        inputs(
            a.path(),
            false,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
            0o644,
        );
        inputs(b.path(), true, SystemTime::now(), 0o600);

        let first = build_in(a.path(), &cert, None);
        // A different wall clock for the second run.
        std::thread::sleep(Duration::from_millis(1100));
        let second = build_in(b.path(), &cert, None);
        assert_eq!(first, second, "{kind:?}: bundles differ between runs");

        // With SOURCE_DATE_EPOCH: identical again, and the epoch is the member mtime.
        let epoch = 1_700_000_000;
        let third = build_in(a.path(), &cert, Some(epoch));
        std::thread::sleep(Duration::from_millis(1100));
        let fourth = build_in(b.path(), &cert, Some(epoch));
        assert_eq!(
            third, fourth,
            "{kind:?}: bundles with SOURCE_DATE_EPOCH differ"
        );
        assert_ne!(first, third);
        let mut r = CpioReader::new(&third[..]);
        while let Some(h) = r.next_header().unwrap() {
            assert_eq!(
                (h.mtime, h.uid, h.gid, h.mode),
                (epoch as u32, 0, 0, 0o100644),
                "{}",
                h.name
            );
        }
        // Member order: description, signature, then images in manifest order.
        let mut r = CpioReader::new(&first[..]);
        let mut names = Vec::new();
        while let Some(h) = r.next_header().unwrap() {
            names.push(h.name);
        }
        assert_eq!(
            names,
            [
                "sw-description",
                "sw-description.sig",
                "rootfs.img",
                "kernel.efi",
                "app.conf"
            ]
        );
    }
}
