//! keel-tuf's client refreshes and downloads from repositories written with python-tuf's Metadata API
//! (tests/python/make_repo.py): ed25519, ecdsa-sha2-nistp256 and rsassa-pss-sha256 keys, a path delegation to
//! TAP 15 succinct hashed bins, sha256+sha512 target hashes, then a root rotation and a timestamp key rotation.
//! Needs python3 with `tuf` and `securesystemslib[crypto]` (scripts/setup-debian.sh installs them).

use std::path::Path;
use std::process::Command;

use keel_tuf::{init_trusted_root, FileFetcher, TimePolicy, Updater, UpdaterConfig};

fn make_python_repo(out: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/make_repo.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(out)
        .output()
        .expect("python3 must be installed");
    assert!(
        output.status.success(),
        "make_repo.py failed (python-tuf installed?):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn updater(client: &Path, stage: &Path) -> Updater<FileFetcher> {
    let metadata_url = format!("file://{}/metadata/", stage.display());
    let targets_url = format!("file://{}/targets/", stage.display());
    Updater::new(
        client,
        &metadata_url,
        Some(&targets_url),
        FileFetcher,
        UpdaterConfig::default(),
        TimePolicy::default(),
    )
    .unwrap()
}

fn download(updater: &mut Updater<FileFetcher>, name: &str) -> Vec<u8> {
    let info = updater.require_target(name).unwrap();
    let mut bytes = Vec::new();
    updater.download_target(&info, &mut bytes).unwrap();
    bytes
}

#[test]
fn keel_client_reads_python_tuf_repository() {
    let work = tempfile::tempdir().unwrap();
    make_python_repo(work.path());
    let stage1 = work.path().join("stage1");
    let stage2 = work.path().join("stage2");
    let payload = |name: &str| std::fs::read(work.path().join("payloads").join(name)).unwrap();
    let client = work.path().join("client");
    init_trusted_root(
        &client,
        &std::fs::read(stage1.join("metadata/1.root.json")).unwrap(),
    )
    .unwrap();

    let mut first = updater(&client, &stage1);
    first.refresh().unwrap();
    assert_eq!(download(&mut first, "hello.txt"), payload("hello.txt"));
    assert_eq!(
        download(&mut first, "images/fw.swu"),
        payload("images/fw.swu")
    );
    assert!(first.get_target_info("new.txt").unwrap().is_none());
    assert!(first
        .get_target_info("images/missing.swu")
        .unwrap()
        .is_none());

    // Exactly the received bytes are stored, under unversioned names.
    for (stored, served) in [
        ("timestamp.json", "timestamp.json"),
        ("snapshot.json", "1.snapshot.json"),
        ("images.json", "1.images.json"),
    ] {
        assert_eq!(
            std::fs::read(client.join(stored)).unwrap(),
            std::fs::read(stage1.join("metadata").join(served)).unwrap()
        );
    }

    // Root rotation (old key → new 2-of-2 keys) and timestamp key rotation.
    let mut second = updater(&client, &stage2);
    second.refresh().unwrap();
    assert_eq!(second.trusted().root().version, 2);
    assert_eq!(
        std::fs::read(client.join("root.json")).unwrap(),
        std::fs::read(stage2.join("metadata/2.root.json")).unwrap()
    );
    assert_eq!(download(&mut second, "new.txt"), payload("new.txt"));
    assert_eq!(
        download(&mut second, "images/fw.swu"),
        payload("images/fw.swu")
    );
}

#[test]
fn canonical_json_matches_securesystemslib() {
    // Strings with quotes, backslashes, raw control characters (PEM newlines), non-ASCII and astral code points;
    // keys that sort differently by UTF-16 and by code point; integers at the i64/u64 edges.
    let document = serde_json::json!({
        "b": "quote \" backslash \\ newline \n tab \t nul \u{0} del \u{7f}",
        "a": ["é", "\u{10348}", "\u{ffff}", "", -1, 0, i64::MIN, u64::MAX, true, false, null],
        "\u{e9}": {"z": {}, "\u{10348}": [], "\u{ff61}": "x"},
        "A": "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"
    });
    let ours = keel_tuf::canonical::encode(&document).unwrap();
    let script = "import sys, json\n\
from securesystemslib.formats import encode_canonical\n\
sys.stdout.buffer.write(encode_canonical(json.loads(sys.stdin.buffer.read())).encode('utf-8'))\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 must be installed");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(document.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(ours).unwrap(),
        String::from_utf8(output.stdout).unwrap()
    );
}
