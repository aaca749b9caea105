//! Test support shared by the test suites of keel-delta and of the crates that carry its deltas
//! (bundle, sim, server, cli): compressible generated content and reproducible zstd squashfs
//! images made with Debian's real `mksquashfs`. Only built with the `test-support` feature.

use std::path::Path;
use std::process::Command;

/// Compressible content (like the binaries and text of a root filesystem): words of a small
/// vocabulary from a seeded xorshift generator; the same `seed` and `len` give the same bytes.
pub fn texty(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "gateway", "modbus", "keel", "slot", "frame", "delta", "sensor", "value", "0x1f", "\n",
        "config", "=",
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
        out.push(b' ');
    }
    out.truncate(len);
    out
}

/// `mksquashfs -comp zstd` (level 15: every block a standalone zstd frame) of `tree` into `image`,
/// reproducibly (fixed times, root owner); returns the image's bytes. Panics with a clear message
/// when mksquashfs is missing or fails: the test command installs squashfs-tools.
pub fn mksquashfs_zstd(tree: &Path, image: &Path) -> Vec<u8> {
    let out = Command::new("mksquashfs")
        .arg(tree)
        .arg(image)
        .args(["-comp", "zstd", "-noappend", "-no-progress", "-all-root"])
        .args(["-mkfs-time", "0", "-all-time", "0"])
        .output()
        .expect("mksquashfs must be installed (scripts/setup-debian.sh: squashfs-tools)");
    assert!(
        out.status.success(),
        "mksquashfs {} failed: {}",
        tree.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(image).expect("reading the squashfs image mksquashfs wrote")
}
