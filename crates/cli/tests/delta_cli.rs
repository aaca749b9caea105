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
