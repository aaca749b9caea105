//! `keel delta create/apply/inspect` through the binary, with and without the short-match pass.

use std::path::Path;
use std::process::{Command, Output};

use keel_testkit::data::image;

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
#[test]
fn create_apply_inspect_with_and_without_short_matches() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let old = image(1, 100_000);
    // New data made of fresh bytes with 12-byte pieces of the old image in between.
    let mut new = Vec::new();
    for (i, chunk) in image(2, 60_000).chunks(30).enumerate() {
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
    std::fs::write(d.join("other.img"), image(3, 100_000)).unwrap();
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

fn fails(o: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success(), "{text}");
    text
}

/// old.img, new.img (related, 200 kB) and `d.kd`, a delta of several segments (16 KiB each).
fn segmented_delta(d: &Path) -> (Vec<u8>, Vec<u8>) {
    let old = image(7, 200_000);
    let mut new = old.clone();
    for (i, b) in image(8, 40_000).into_iter().enumerate() {
        new[i * 5] = b;
    }
    std::fs::write(d.join("old.img"), &old).unwrap();
    std::fs::write(d.join("new.img"), &new).unwrap();
    ok(keel(
        &[
            "delta",
            "create",
            "old.img",
            "new.img",
            "-o",
            "d.kd",
            "--segment-kib",
            "16",
        ],
        d,
    ));
    (old, new)
}

#[test]
fn apply_refuses_a_truncated_delta_or_a_wrong_seed_before_writing_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    segmented_delta(d);
    let delta = std::fs::read(d.join("d.kd")).unwrap();
    std::fs::write(d.join("short.kd"), &delta[..delta.len() - 100]).unwrap();
    let text = fails(keel(
        &[
            "delta", "apply", "--seed", "old.img", "short.kd", "-o", "out.img",
        ],
        d,
    ));
    assert!(text.contains("delta ends early"), "{text}");
    assert!(!d.join("out.img").exists(), "output written: {text}");

    std::fs::write(d.join("wrong.img"), image(9, 200_000)).unwrap();
    let text = fails(keel(
        &[
            "delta",
            "apply",
            "--seed",
            "wrong.img",
            "d.kd",
            "-o",
            "out.img",
        ],
        d,
    ));
    assert!(text.contains("wrong seed"), "{text}");
    assert!(!d.join("out.img").exists(), "empty output left: {text}");
}

#[test]
fn resumed_apply_with_a_damaged_prefix_drops_the_checkpoint_and_restarts_from_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (old, new) = segmented_delta(d);
    // A power cut after the second segment: output and checkpoint as the CLI persists them.
    let delta = std::fs::read(d.join("d.kd")).unwrap();
    let mut out = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(d.join("out.img"))
        .unwrap();
    let mut checkpoints = 0;
    let cut = keel_delta::apply_resumable(
        &mut std::io::Cursor::new(&old),
        &delta[..],
        &mut out,
        None,
        |cp| {
            checkpoints += 1;
            std::fs::write(d.join("cp"), cp.to_bytes())?;
            if checkpoints == 2 {
                return Err(std::io::Error::other("power cut"));
            }
            Ok(())
        },
    );
    assert!(cut.is_err());
    drop(out);
    // The cut damaged the written prefix.
    let mut damaged = std::fs::read(d.join("out.img")).unwrap();
    damaged[10] ^= 0xff;
    std::fs::write(d.join("out.img"), &damaged).unwrap();

    let text = ok(keel(
        &[
            "delta",
            "apply",
            "--seed",
            "old.img",
            "d.kd",
            "-o",
            "out.img",
            "--checkpoint",
            "cp",
        ],
        d,
    ));
    assert!(text.contains("applying again from the seed"), "{text}");
    assert_eq!(std::fs::read(d.join("out.img")).unwrap(), new);
    assert!(!d.join("cp").exists());
}
