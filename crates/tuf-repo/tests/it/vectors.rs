//! Test vectors for docs/tuf.md and the fuzz target: a tiny repository signed with fixed ed25519 keys (seeds
//! 0x01.. and 0x02..), fixed time, no bins, one target. ed25519 signatures are deterministic, so the files are
//! byte-reproducible: this test rebuilds them and compares with crates/tuf/tests/vectors/ (set
//! KEEL_REGENERATE_VECTORS=1 to rewrite them), checks them with keel-tuf, and has python-tuf verify the root.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_tuf_repo::{create_root, OnlineKeys, RepoConfig, Repository, RootKeys, SigningKey};

/// 2096-10-02T07:06:40Z: the fixed "now" of the vectors.
const NOW: i64 = 4_000_000_000;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuf/tests/vectors")
}

#[test]
fn test_vectors_are_reproducible_and_verify() {
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join("repo");
    let root_key = SigningKey::ed25519_from_seed([1; 32]);
    let online = SigningKey::ed25519_from_seed([2; 32]);
    let keys = RootKeys {
        root: vec![root_key.public()],
        root_threshold: 1,
        targets: vec![online.public()],
        snapshot: vec![online.public()],
        timestamp: vec![online.public()],
    };
    create_root(&repo_dir, &keys, &[&root_key], NOW + 365 * 86_400).unwrap();
    let config = RepoConfig {
        bins: 0,
        ..RepoConfig::default()
    };
    let mut repo = Repository::open(&repo_dir, OnlineKeys::single(online), config).unwrap();
    let payload = work.path().join("hello.txt");
    std::fs::write(&payload, b"hello, keel\n").unwrap();
    repo.add_target_file("hello.txt", &payload).unwrap();
    repo.publish(NOW).unwrap();

    let files = [
        "1.root.json",
        "timestamp.json",
        "1.snapshot.json",
        "1.targets.json",
    ];
    let vectors = vectors_dir();
    if std::env::var_os("KEEL_REGENERATE_VECTORS").is_some() {
        std::fs::create_dir_all(&vectors).unwrap();
        for file in files {
            std::fs::copy(repo_dir.join("metadata").join(file), vectors.join(file)).unwrap();
        }
    }
    for file in files {
        let built = std::fs::read(repo_dir.join("metadata").join(file)).unwrap();
        let stored = std::fs::read(vectors.join(file)).unwrap();
        assert!(
            built == stored,
            "{file} differs from the committed test vector"
        );
    }

    // keel-tuf accepts the vectors at the fixed time.
    let mut set = keel_tuf::TrustedMetadataSet::new(
        &std::fs::read(vectors.join("1.root.json")).unwrap(),
        NOW,
    )
    .unwrap();
    set.update_timestamp(&std::fs::read(vectors.join("timestamp.json")).unwrap())
        .unwrap();
    set.update_snapshot(
        &std::fs::read(vectors.join("1.snapshot.json")).unwrap(),
        false,
    )
    .unwrap();
    set.update_targets(
        &std::fs::read(vectors.join("1.targets.json")).unwrap(),
        "targets",
        "root",
    )
    .unwrap();
    assert_eq!(
        set.targets("targets").unwrap().signed.targets["hello.txt"].length,
        12
    );

    // python-tuf verifies the root's self-signature and the timestamp signature.
    let script = "import sys\n\
from tuf.api.metadata import Metadata\n\
root = Metadata.from_file(sys.argv[1])\n\
root.verify_delegate('root', root)\n\
ts = Metadata.from_file(sys.argv[2])\n\
root.verify_delegate('timestamp', ts)\n";
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(vectors.join("1.root.json"))
        .arg(vectors.join("timestamp.json"))
        .output()
        .expect("python3 must be installed");
    assert!(
        output.status.success(),
        "python-tuf: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
