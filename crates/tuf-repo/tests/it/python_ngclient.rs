//! python-tuf's ngclient refreshes and downloads from a repository written by keel-tuf-repo (served over HTTP
//! by a local `python3 -m http.server`), before and after a root rotation and an online key rotation, and after
//! automatic re-signing. keel's own client follows the same repository.

use keel_testkit::http::HttpServer;

use std::path::Path;
use std::process::Command;

use keel_tuf::{init_trusted_root, FileFetcher, TimePolicy, Updater, UpdaterConfig};
use keel_tuf_repo::{
    create_root, rotate_root, OnlineKeys, RepoConfig, Repository, RootKeys, SigningKey,
};

const DAY: i64 = 86_400;

fn ngclient(server: &HttpServer, client: &Path, targets: &Path, names: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/ngclient_download.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(format!("{}/metadata/", server.base))
        .arg(format!("{}/targets/", server.base))
        .arg(client)
        .arg(targets)
        .args(names)
        .output()
        .expect("python3 must be installed");
    assert!(
        output.status.success(),
        "python-tuf ngclient failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn quoted(name: &str) -> String {
    keel_tuf::store::percent_encode(name)
}

#[test]
fn python_ngclient_reads_keel_repository() {
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join("repo");
    let now = keel_tuf::time::system_now();

    // Offline: root with 2-of-3 root keys (ed25519 and ECDSA P-256), one online key for the three online roles.
    let root_keys: Vec<SigningKey> = vec![
        SigningKey::generate_ed25519(),
        SigningKey::generate_ecdsa_p256(),
        SigningKey::generate_ed25519(),
    ];
    let online = SigningKey::generate_ed25519();
    let keys = RootKeys {
        root: root_keys.iter().map(SigningKey::public).collect(),
        root_threshold: 2,
        targets: vec![online.public()],
        snapshot: vec![online.public()],
        timestamp: vec![online.public()],
    };
    let root_v1 = create_root(
        &repo_dir,
        &keys,
        &[&root_keys[0], &root_keys[1]],
        now + 365 * DAY,
    )
    .unwrap();

    // Online: targets in 16 hashed bins.
    let payloads = work.path().join("payloads");
    std::fs::create_dir_all(payloads.join("images")).unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("hello.txt", b"hello from keel\n".to_vec()),
        (
            "images/fw-1.swu",
            (0..300_000u32).map(|i| (i % 251) as u8).collect(),
        ),
        ("images/fw-2.swu", b"second image".to_vec()),
    ];
    let mut repo = Repository::open(
        &repo_dir,
        OnlineKeys::single(online.clone()),
        RepoConfig::default(),
    )
    .unwrap();
    for (name, data) in &files {
        let path = payloads.join(name);
        std::fs::write(&path, data).unwrap();
        repo.add_target_file(name, &path).unwrap();
    }
    let written = repo.publish(now).unwrap();
    assert!(
        written.contains(&"timestamp".to_string()) && written.len() == 16 + 3,
        "{written:?}"
    );

    let server = HttpServer::start(&repo_dir);
    let py_client = work.path().join("py-client");
    let py_targets = work.path().join("py-targets");
    std::fs::create_dir_all(&py_targets).unwrap();
    std::fs::create_dir_all(&py_client).unwrap();
    std::fs::write(py_client.join("root.json"), &root_v1).unwrap();
    ngclient(
        &server,
        &py_client,
        &py_targets,
        &["hello.txt", "images/fw-1.swu", "images/fw-2.swu"],
    );
    for (name, data) in &files {
        assert_eq!(
            &std::fs::read(py_targets.join(quoted(name))).unwrap(),
            data,
            "{name}"
        );
    }

    // keel's client agrees.
    let keel_client = work.path().join("keel-client");
    init_trusted_root(&keel_client, &root_v1).unwrap();
    let keel_updater = |time: TimePolicy| {
        Updater::new(
            &keel_client,
            &format!("file://{}/metadata", repo_dir.display()),
            Some(&format!("file://{}/targets", repo_dir.display())),
            FileFetcher,
            UpdaterConfig::default(),
            time,
        )
        .unwrap()
    };
    let mut updater = keel_updater(TimePolicy::default());
    let info = updater.require_target("images/fw-1.swu").unwrap();
    let mut bytes = Vec::new();
    updater.download_target(&info, &mut bytes).unwrap();
    assert_eq!(bytes, files[1].1);

    // Offline: rotate root to new keys (1-of-2) and rotate the timestamp and snapshot keys.
    let new_root_keys = [
        SigningKey::generate_ecdsa_p256(),
        SigningKey::generate_ed25519(),
    ];
    let new_online = SigningKey::generate_ecdsa_p256();
    let rotated = RootKeys {
        root: new_root_keys.iter().map(SigningKey::public).collect(),
        root_threshold: 1,
        targets: vec![online.public()],
        snapshot: vec![new_online.public()],
        timestamp: vec![new_online.public()],
    };
    let signers = [&root_keys[1], &root_keys[2], &new_root_keys[0]];
    rotate_root(&repo_dir, &rotated, &signers, now + 365 * DAY).unwrap();

    // Online with the new keys: the next publish re-signs snapshot and timestamp and adds a target.
    let new_keys = OnlineKeys {
        targets: online.clone(),
        snapshot: new_online.clone(),
        timestamp: new_online.clone(),
    };
    let mut repo = Repository::open(&repo_dir, new_keys.clone(), RepoConfig::default()).unwrap();
    let path = payloads.join("after-rotation.bin");
    std::fs::write(&path, b"after rotation").unwrap();
    repo.add_target_file("after-rotation.bin", &path).unwrap();
    repo.publish(now).unwrap();
    ngclient(
        &server,
        &py_client,
        &py_targets,
        &["after-rotation.bin", "images/fw-2.swu"],
    );
    assert_eq!(
        std::fs::read(py_targets.join("after-rotation.bin")).unwrap(),
        b"after rotation"
    );
    let mut updater = keel_updater(TimePolicy::default());
    updater.refresh().unwrap();
    assert_eq!(updater.trusted().root().version, 2);
    assert!(updater
        .get_target_info("after-rotation.bin")
        .unwrap()
        .is_some());

    // Automatic re-signing: 20 days later the timestamp and snapshot (and nothing else) are re-signed.
    let later = now + 20 * DAY;
    let mut repo = Repository::open(&repo_dir, new_keys, RepoConfig::default()).unwrap();
    let report = repo.refresh_expiring(later).unwrap();
    assert_eq!(
        report.resigned,
        vec!["snapshot".to_string(), "timestamp".to_string()]
    );
    assert!(!report.root_expires_soon);
    let before = TimePolicy {
        fixed_now: Some(later),
        ..TimePolicy::default()
    };
    let mut updater = keel_updater(before);
    updater.refresh().unwrap();
    assert!(updater.get_target_info("hello.txt").unwrap().is_some());
    // Nothing changed: a second refresh_expiring at the same time re-signs nothing.
    assert!(repo.refresh_expiring(later).unwrap().resigned.is_empty());
    // Root expiry within 30 days is reported (root keys are offline).
    assert!(
        repo.refresh_expiring(now + 340 * DAY)
            .unwrap()
            .root_expires_soon
    );
}
