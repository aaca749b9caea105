//! Round trips on real (small) filesystem images built with mkfs.ext4 -d, as an update changes
//! them: files rewritten, added, removed. Requires e2fsprogs (scripts/setup-debian.sh).

use crate::common;

use std::fs;
use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use common::*;
use keel_delta::chunk::{self, ChunkIndex, ChunkParams, DirStore, SeedChunks};
use keel_delta::{apply, CreateOptions};

fn mkfs_ext4(tree: &Path, image: &Path) {
    fs::write(image, []).expect("create image");
    let status = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-b",
            "4096",
            "-U",
            "0c3a7f7e-5d1b-4c55-9a55-6b0e3a1d2f01",
        ])
        .args([
            "-E",
            "hash_seed=0c3a7f7e-5d1b-4c55-9a55-6b0e3a1d2f01,lazy_itable_init=0,nodiscard",
            "-d",
        ])
        .arg(tree)
        .arg(image)
        .arg("16M")
        .env("E2FSPROGS_FAKE_TIME", "1700000000")
        .status()
        .expect("mkfs.ext4 must be installed (e2fsprogs)");
    assert!(status.success(), "mkfs.ext4 failed");
}

#[test]
fn ext4_image_update_round_trips() {
    let mut r = rng(30);
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("usr/lib")).expect("mkdir");
    fs::create_dir_all(tree.join("etc")).expect("mkdir");
    let mut libs = Vec::new();
    for i in 0..12 {
        let data = if i % 3 == 0 {
            random_bytes(&mut r, 200_000)
        } else {
            texty(&mut r, 150_000)
        };
        fs::write(tree.join(format!("usr/lib/lib{i}.so")), &data).expect("write");
        libs.push(data);
    }
    fs::write(tree.join("etc/os-release"), "VERSION=1\n").expect("write");
    let old_img = dir.path().join("old.ext4");
    mkfs_ext4(&tree, &old_img);

    // The update: two libraries rebuilt (edited), one removed, one added, a config changed.
    fs::write(tree.join("usr/lib/lib1.so"), edited(&mut r, &libs[1])).expect("write");
    fs::write(tree.join("usr/lib/lib3.so"), edited(&mut r, &libs[3])).expect("write");
    fs::remove_file(tree.join("usr/lib/lib7.so")).expect("rm");
    fs::write(tree.join("usr/lib/libnew.so"), texty(&mut r, 90_000)).expect("write");
    fs::write(tree.join("etc/os-release"), "VERSION=2\n").expect("write");
    let new_img = dir.path().join("new.ext4");
    mkfs_ext4(&tree, &new_img);

    let old = fs::read(&old_img).expect("read");
    let new = fs::read(&new_img).expect("read");
    assert_ne!(old, new);
    let delta = make(
        &old,
        &new,
        &CreateOptions {
            level: 19,
            ..CreateOptions::default()
        },
    );
    let mut out = Vec::new();
    apply(&mut Cursor::new(&old), &delta[..], &mut out).expect("apply");
    assert!(out == new);
    // Changed content is ~90 KB of new text plus edits: the delta must be a small fraction.
    assert!(
        delta.len() < new.len() / 50,
        "delta {} for a {}-byte image",
        delta.len(),
        new.len()
    );

    // Cross-check with xdelta3 on the same pair: both reproduce the image, and keel's delta is
    // not larger than xdelta3 -9's.
    let xd = dir.path().join("pair.xd");
    let status = Command::new("xdelta3")
        .args(["-e", "-f", "-9", "-S", "djw", "-s"])
        .args([&old_img, &new_img, &xd])
        .status()
        .expect("xdelta3 must be installed");
    assert!(status.success());
    let xd_out = dir.path().join("xd.out");
    let status = Command::new("xdelta3")
        .args(["-d", "-f", "-s"])
        .args([&old_img, &xd, &xd_out])
        .status()
        .expect("xdelta3");
    assert!(status.success());
    assert!(fs::read(&xd_out).expect("read") == out);
    let xd_len = fs::metadata(&xd).expect("stat").len() as usize;
    eprintln!(
        "keel delta {} bytes, xdelta3 -9 {xd_len} bytes",
        delta.len()
    );
    assert!(
        delta.len() <= xd_len,
        "keel {} > xdelta3 {xd_len}",
        delta.len()
    );

    let store_dir = dir.path().join("store");
    let mut store = DirStore::new(&store_dir);
    let index = ChunkIndex::build(&new[..], ChunkParams::with_average(16 << 10), 3, |e, d| {
        store.put(&e.id, d)
    })
    .expect("index");
    let plan = chunk::plan(
        &index,
        &SeedChunks::scan(&old[..], index.params).expect("scan"),
    );
    let mut out = Cursor::new(Vec::new());
    chunk::assemble(&index, &plan, &mut Cursor::new(&old), &mut store, &mut out).expect("assemble");
    assert!(out.into_inner() == new);
}
