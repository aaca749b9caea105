//! `keel delta create/apply/inspect` through the binary, with and without the short-match pass.

use std::path::Path;
use std::process::{Command, Output};

fn keel(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn ok(o: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    text
}

/// Pseudo-random bytes (incompressible, like compressed filesystem blocks).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

#[test]
fn create_apply_inspect_with_and_without_short_matches() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let old = noise(100_000, 1);
    // New data made of fresh bytes with 12-byte pieces of the old image in between.
    let mut new = Vec::new();
    for (i, chunk) in noise(60_000, 2).chunks(30).enumerate() {
        new.extend_from_slice(chunk);
        let at = (i * 7919) % (old.len() - 12);
        new.extend_from_slice(&old[at..at + 12]);
    }
    std::fs::write(d.join("old.img"), &old).unwrap();
    std::fs::write(d.join("new.img"), &new).unwrap();

    ok(keel(
        &["delta", "create", "old.img", "new.img", "-o", "short.kd"],
        d,
    ));
    ok(keel(
        &[
            "delta",
            "create",
            "old.img",
            "new.img",
            "-o",
            "plain.kd",
            "--no-short-matches",
        ],
        d,
    ));
    let size = |name: &str| std::fs::metadata(d.join(name)).unwrap().len();
    assert!(
        size("short.kd") + 2 * 2000 < size("plain.kd"),
        "short matches {} bytes, without {}",
        size("short.kd"),
        size("plain.kd")
    );
    for delta in ["short.kd", "plain.kd"] {
        let out = format!("{delta}.out");
        let text = ok(keel(
            &["delta", "apply", "--seed", "old.img", delta, "-o", &out],
            d,
        ));
        assert!(text.contains("verified"), "{text}");
        assert!(std::fs::read(d.join(&out)).unwrap() == new, "{delta}");
    }
    let text = ok(keel(&["delta", "inspect", "short.kd"], d));
    let sha = |b: &[u8]| keel_delta::hex(&keel_delta::sha256(b));
    assert!(
        text.contains(&format!("seed   {} bytes sha256 {}", old.len(), sha(&old))),
        "{text}"
    );
    assert!(
        text.contains(&format!("target {} bytes sha256 {}", new.len(), sha(&new))),
        "{text}"
    );

    // The wrong seed is refused before anything is written.
    std::fs::write(d.join("other.img"), noise(100_000, 3)).unwrap();
    let o = keel(
        &[
            "delta",
            "apply",
            "--seed",
            "other.img",
            "short.kd",
            "-o",
            "bad.out",
        ],
        d,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("wrong seed"));
}

/// `mksquashfs -comp zstd` of a tree of compressible text files; `edit` changes a few of them.
fn zstd_squashfs(work: &Path, name: &str, edit: bool) {
    let tree = work.join(name);
    for i in 0..40u32 {
        let dir = tree.join(format!("d{}", i % 5));
        std::fs::create_dir_all(&dir).unwrap();
        let changed = edit && i % 13 == 0;
        let text: String = (0..2000u32)
            .map(|line| {
                let v = if changed && line % 50 == 0 { 2 } else { 1 };
                format!(
                    "file {i} line {line} value {} version {v}\n",
                    line * 7 % 101
                )
            })
            .collect();
        std::fs::write(dir.join(format!("f{i}.txt")), text).unwrap();
    }
    keel_delta::testing::mksquashfs_zstd(&tree, &work.join(format!("{name}.squashfs")));
}

#[test]
fn zstd_squashfs_delta_diffs_through_frames_and_inspect_shows_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    zstd_squashfs(d, "old", false);
    zstd_squashfs(d, "new", true);

    let created = ok(keel(
        &[
            "delta",
            "create",
            "old.squashfs",
            "new.squashfs",
            "-o",
            "framed.kd",
        ],
        d,
    ));
    assert!(created.contains("zstd frames (zstd "), "{created}");
    ok(keel(
        &[
            "delta",
            "create",
            "old.squashfs",
            "new.squashfs",
            "-o",
            "plain.kd",
            "--no-zstd-frames",
        ],
        d,
    ));
    let framed = std::fs::metadata(d.join("framed.kd")).unwrap().len();
    let plain = std::fs::metadata(d.join("plain.kd")).unwrap().len();
    assert!(framed * 2 < plain, "framed {framed} bytes, plain {plain}");

    let shown = ok(keel(&["delta", "inspect", "framed.kd"], d));
    assert!(shown.contains("zstd frames (zstd "), "{shown}");
    assert!(shown.contains("segment 0:"), "{shown}");
    let shown_plain = ok(keel(&["delta", "inspect", "plain.kd"], d));
    assert!(!shown_plain.contains("zstd frames"), "{shown_plain}");

    for (delta, out) in [("framed.kd", "framed.out"), ("plain.kd", "plain.out")] {
        ok(keel(
            &["delta", "apply", "--seed", "old.squashfs", delta, "-o", out],
            d,
        ));
        assert_eq!(
            std::fs::read(d.join(out)).unwrap(),
            std::fs::read(d.join("new.squashfs")).unwrap(),
            "{delta}"
        );
    }
}
