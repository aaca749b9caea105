//! `keel upload / device / assign / rollout` against a real keel-server (run in-process).

use serde_json::Value;
use std::process::Command;

struct Server {
    base: String,
    token: String,
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = keel_server::Config::for_data_dir(dir.path());
    let server = runtime.block_on(keel_server::Server::bind(config)).unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let token = server.created_admin_token.clone().unwrap();
    runtime.spawn(server.serve(std::future::pending()));
    Server {
        base,
        token,
        _dir: dir,
        _runtime: runtime,
    }
}

fn keel(server: &Server, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .env("KEEL_SERVER", &server.base)
        .env("KEEL_TOKEN", &server.token)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn keel_json(server: &Server, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (ok, stdout, stderr) = keel(server, &all);
    assert!(ok, "keel {args:?}: {stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("keel {args:?} printed no JSON ({e}): {stdout}"))
}

#[test]
fn upload_assign_and_rollout_commands() {
    let server = server();
    for (id, tag) in [("dev1", "a"), ("dev2", "a"), ("dev3", "b"), ("dev4", "b")] {
        let device = keel_json(&server, &["device", "add", id, "--tag", tag]);
        assert_eq!(device["securityToken"].as_str().unwrap().len(), 32);
    }
    let (ok, stdout, _) = keel(
        &server,
        &[
            "device",
            "add",
            "dev5",
            "--device-token",
            "my-own-token-123",
        ],
    );
    assert!(ok && stdout.contains("my-own-token-123"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("update.swu");
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();
    let uploaded = keel_json(
        &server,
        &[
            "upload",
            file.to_str().unwrap(),
            "--name",
            "gateway-os",
            "--version",
            "1.0",
        ],
    );
    assert_eq!(uploaded["artifact"]["size"], 100_000);
    assert_eq!(uploaded["artifact"]["filename"], "update.swu");
    let set = uploaded["distributionSet"]["id"]
        .as_i64()
        .unwrap()
        .to_string();

    let assigned = keel_json(&server, &["assign", "--set", &set, "--device", "dev5"]);
    assert_eq!(assigned["assigned"], 1);
    let shown = keel_json(&server, &["device", "show", "dev5"]);
    assert_eq!(shown["updateStatus"], "pending");
    assert_eq!(shown["actions"][0]["status"], "running");

    let rollout = keel_json(
        &server,
        &[
            "rollout",
            "create",
            "--name",
            "r1",
            "--set",
            &set,
            "--group-tag",
            "a",
            "--group-tag",
            "b",
            "--success-threshold",
            "50",
            "--error-threshold",
            "10",
        ],
    );
    assert_eq!(rollout["status"], "ready");
    assert_eq!(rollout["groups"].as_array().unwrap().len(), 2);
    let id = rollout["id"].as_i64().unwrap().to_string();
    let started = keel_json(&server, &["rollout", "start", &id]);
    assert_eq!(started["status"], "running");
    assert_eq!(started["groups"][0]["status"], "running");
    assert_eq!(started["groups"][0]["counts"]["running"], 2);
    assert_eq!(started["groups"][1]["counts"]["scheduled"], 2);
    // Human-readable status.
    let (ok, stdout, _) = keel(&server, &["rollout", "status", &id]);
    assert!(ok);
    assert!(
        stdout.contains("running") && stdout.contains("GROUP") && stdout.contains("group-1"),
        "{stdout}"
    );
    let paused = keel_json(&server, &["rollout", "pause", &id]);
    assert_eq!(paused["status"], "paused");

    // Errors: a clear message and a non-zero exit.
    let (ok, _, stderr) = keel(&server, &["rollout", "start", &id]);
    assert!(!ok && stderr.contains("409"), "{stderr}");
    let (ok, _, stderr) = keel(&server, &["assign", "--set", "999", "--device", "dev1"]);
    assert!(!ok && stderr.contains("404"), "{stderr}");
    let output = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["device", "list"])
        .env("KEEL_SERVER", &server.base)
        .env("KEEL_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!output.status.success() && String::from_utf8_lossy(&output.stderr).contains("401"));
}

#[test]
fn audit_lists_changes_and_refusals_newest_first() {
    let server = server();
    keel_json(&server, &["device", "add", "dev1"]);
    keel_json(&server, &["device", "add", "dev2"]);
    let refused = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["device", "list"])
        .env("KEEL_SERVER", &server.base)
        .env("KEEL_TOKEN", "wrong-token")
        .output()
        .unwrap();
    assert!(!refused.status.success());

    let page = keel_json(&server, &["audit", "--actor", "admin", "--limit", "1"]);
    assert_eq!(page["size"], 1);
    assert!(page["total"].as_i64().unwrap() >= 2, "{page}");
    assert_eq!(page["content"][0]["object"], "/rest/v1/targets");
    // Refusals are written without waiting: poll for the record.
    let mut table = String::new();
    for _ in 0..50 {
        let (ok, stdout, stderr) = keel(&server, &["audit", "--failed", "--all"]);
        assert!(ok, "{stderr}");
        table = stdout;
        if table.contains("token rejected") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("TIME (UTC)"), "{table}");
    assert!(
        lines.iter().any(|l| l.contains("401")
            && l.contains("token rejected: GET /rest/v1/targets")
            && l.contains("127.0.0.1")),
        "{table}"
    );
    assert!(lines.last().unwrap().starts_with("records 1-"), "{table}");
}

#[test]
fn device_list_pages_through_the_whole_fleet() {
    let server = server();
    for i in 0..7 {
        let tag = if i % 2 == 0 { "even" } else { "odd" };
        keel_json(
            &server,
            &["device", "add", &format!("gw-{i}"), "--tag", tag],
        );
    }
    let ids = |list: &Value| -> Vec<String> {
        list["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["controllerId"].as_str().unwrap().to_string())
            .collect()
    };
    // Three requests of 3, 3 and 1 device: everything, in order, once.
    let all = keel_json(&server, &["device", "list", "--page-size", "3"]);
    assert_eq!(all["total"], 7);
    assert_eq!(
        ids(&all),
        (0..7).map(|i| format!("gw-{i}")).collect::<Vec<_>>()
    );
    let some = keel_json(
        &server,
        &[
            "device",
            "list",
            "--page-size",
            "2",
            "--limit",
            "3",
            "--sort",
            "controllerId:DESC",
        ],
    );
    assert_eq!(ids(&some), ["gw-6", "gw-5", "gw-4"]);
    assert_eq!(some["total"], 7);
    let odd = keel_json(
        &server,
        &["device", "list", "--tag", "odd", "-q", "controllerId!=gw-3"],
    );
    assert_eq!(ids(&odd), ["gw-1", "gw-5"]);
    // The summary says when not everything was shown.
    let (ok, stdout, stderr) = keel(&server, &["device", "list", "--limit", "2"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("(2 of 7 devices"), "{stdout}");
    // A bad filter: the server's message, non-zero exit.
    let (ok, _, stderr) = keel(&server, &["device", "list", "-q", "secret==x"]);
    assert!(
        !ok && stderr.contains("unknown field \"secret\""),
        "{stderr}"
    );
}
