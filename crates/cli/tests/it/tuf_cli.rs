//! `keel tuf`: a repository made with the CLI (keys from `keel tuf gen-key` and from openssl) is served over
//! HTTP; `keel tuf client` (the conformance-suite wrapper) and python-tuf's ngclient both download from it,
//! follow an online key rotation and a root rotation, and the client refuses a tampered target (exit 1, nothing
//! written). Needs python3 with python-tuf and openssl (scripts/setup-debian.sh installs them).

use std::path::Path;
use std::process::{Command, Output};

use keel_testkit::http::HttpServer;
use keel_testkit::openssl::openssl;

fn keel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .output()
        .unwrap()
}

fn keel_ok(args: &[&str]) -> String {
    let output = keel(args);
    assert!(
        output.status.success(),
        "keel {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn root_version(client: &Path) -> u64 {
    let value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(client.join("root.json")).unwrap()).unwrap();
    value["signed"]["version"].as_u64().unwrap()
}

#[test]
fn cli_repository_and_conformance_client() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = |name: &str| dir.join(name);
    let repo = path("repo");

    // Keys: two from keel, the online key from openssl.
    keel_ok(&["tuf", "gen-key", "--out", s(&path("root1.pem"))]);
    keel_ok(&[
        "tuf",
        "gen-key",
        "--type",
        "ecdsa-p256",
        "--out",
        s(&path("root2.pem")),
    ]);
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "ed25519",
            "-out",
            s(&path("online.pem")),
        ],
    );
    openssl(
        dir,
        &[
            "pkey",
            "-in",
            s(&path("online.pem")),
            "-pubout",
            "-out",
            s(&path("online.pub")),
        ],
    );

    keel_ok(&[
        "tuf",
        "init",
        "--repo",
        s(&repo),
        "--root-key",
        s(&path("root1.pem")),
        "--root-key",
        s(&path("root2.pem")),
        "--threshold",
        "2",
        "--online-key",
        s(&path("online.pub")),
    ]);
    let firmware: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(path("fw.swu"), &firmware).unwrap();
    let out = keel_ok(&[
        "tuf",
        "add-target",
        "--repo",
        s(&repo),
        "--online-key",
        s(&path("online.pem")),
        "--bins",
        "8",
        s(&path("fw.swu")),
    ]);
    assert!(out.contains("fw.swu 100000 sha256:"), "{out}");

    let server = HttpServer::start(&repo);
    let metadata_url = format!("{}/metadata/", server.base);
    let targets_url = format!("{}/targets/", server.base);
    let client = path("client");
    let downloads = path("downloads");
    let client_cmd = |action: &str, names: &[&str]| -> Output {
        let mut args = vec![
            "tuf",
            "client",
            "--metadata-dir",
            s(&client),
            "--metadata-url",
            &metadata_url,
            "--target-base-url",
            &targets_url,
            "--target-dir",
            s(&downloads),
        ];
        for name in names {
            args.extend(["--target-name", name]);
        }
        args.push(action);
        keel(&args)
    };
    keel_ok(&[
        "tuf",
        "client",
        "--metadata-dir",
        s(&client),
        "init",
        s(&repo.join("metadata/1.root.json")),
    ]);
    let output = client_cmd("download", &["fw.swu"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(std::fs::read(downloads.join("fw.swu")).unwrap(), firmware);
    // Metadata is stored under unversioned names, byte for byte as served.
    assert_eq!(
        std::fs::read(client.join("timestamp.json")).unwrap(),
        std::fs::read(repo.join("metadata/timestamp.json")).unwrap()
    );

    // python-tuf's ngclient reads the same repository.
    let py_client = path("py-client");
    let py_targets = path("py-targets");
    std::fs::create_dir_all(&py_client).unwrap();
    std::fs::create_dir_all(&py_targets).unwrap();
    std::fs::copy(
        repo.join("metadata/1.root.json"),
        py_client.join("root.json"),
    )
    .unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuf-repo/tests/python/ngclient_download.py");
    let ngclient = || {
        let output = Command::new("python3")
            .arg(&script)
            .args([
                &metadata_url,
                &targets_url,
                s(&py_client),
                s(&py_targets),
                "fw.swu",
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "ngclient: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(std::fs::read(py_targets.join("fw.swu")).unwrap(), firmware);
    };
    ngclient();

    // Online key rotation (timestamp), then a root rotation to a single new root key.
    keel_ok(&["tuf", "gen-key", "--out", s(&path("timestamp.pem"))]);
    keel_ok(&[
        "tuf",
        "rotate-online-key",
        "--repo",
        s(&repo),
        "--sign-key",
        s(&path("root1.pem")),
        "--sign-key",
        s(&path("root2.pem")),
        "--role",
        "timestamp",
        "--new-key",
        s(&path("timestamp.pem.pub")),
    ]);
    let out = keel_ok(&[
        "tuf",
        "publish",
        "--repo",
        s(&repo),
        "--online-key",
        s(&path("online.pem")),
        "--timestamp-key",
        s(&path("timestamp.pem")),
        "--bins",
        "8",
    ]);
    assert!(out.contains("timestamp"), "{out}");
    keel_ok(&["tuf", "gen-key", "--out", s(&path("root3.pem"))]);
    keel_ok(&[
        "tuf",
        "rotate-root",
        "--repo",
        s(&repo),
        "--sign-key",
        s(&path("root1.pem")),
        "--sign-key",
        s(&path("root2.pem")),
        "--new-root-key",
        s(&path("root3.pem")),
    ]);
    let output = client_cmd("refresh", &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(root_version(&client), 3);
    ngclient();

    // Tampering with the target on the server's disk: exit 1, the reason on stderr, nothing written.
    let stored = std::fs::read_dir(repo.join("targets"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut tampered = firmware.clone();
    tampered[500] ^= 0xff;
    std::fs::write(&stored, &tampered).unwrap();
    std::fs::remove_file(downloads.join("fw.swu")).unwrap();
    let output = client_cmd("download", &["fw.swu"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("target fw.swu: sha256 hash mismatch"),
        "{stderr}"
    );
    assert!(!downloads.join("fw.swu").exists());
    assert_eq!(
        std::fs::read_dir(&downloads).unwrap().count(),
        0,
        "no temporary file left behind"
    );

    // A name that is not a target fails too.
    let output = client_cmd("download", &["missing.swu"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a current TUF target"));
}
