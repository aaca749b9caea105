//! kill -9 of the server in the middle of a rollout, then a restart on the same data directory:
//! every feedback the server acknowledged is still there, no action is lost, devices continue and
//! the rollout finishes (SQLite WAL with synchronous=FULL; scheduler state only in the database).

use crate::common;

use common::{random_bytes, Mgmt, Outcome, SimDevice};
use reqwest::Method;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A free port the server can be restarted on: below Linux's ephemeral range (32768–60999), so
/// while the server is down no other test's listener or client socket is handed the same port
/// (then the restarted server could not bind it, or the devices would poll a stranger).
fn free_port() -> u16 {
    let start = 20_000 + (std::process::id() % 10_000) as u16;
    (start..32_000)
        .chain(20_000..start)
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port below 32000")
}

/// Starts the keel-server binary; `database_url` (PostgreSQL) is passed as `KEEL_DATABASE_URL`.
fn start_server(data_dir: &Path, port: u16, database_url: Option<&str>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel-server"));
    if let Some(url) = database_url {
        command.env("KEEL_DATABASE_URL", url);
    } else {
        command.env_remove("KEEL_DATABASE_URL");
    }
    command
        .args([
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--create-default-tenant", "--poll-interval", "00:00:01"])
        .args([
            "--scheduler-interval-ms",
            "100",
            "--poll-flush-interval-ms",
            "200",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("keel-server binary")
}

async fn wait_ready(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = reqwest::Client::new();
    while client
        .get(format!("{base}/rest/v1/openapi.json"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "keel-server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True when the server answers and the device's only action is finished.
async fn action_finished(mgmt: &Mgmt, id: &str) -> bool {
    let request = mgmt
        .client
        .get(format!("{}/rest/v1/targets/{id}/actions", mgmt.base))
        .bearer_auth(mgmt.token.as_deref().unwrap_or_default());
    // While the server is down, the request fails: not finished (yet).
    let Ok(response) = request.send().await else {
        return false;
    };
    let Ok(actions) = response.json::<serde_json::Value>().await else {
        return false;
    };
    actions["content"]
        .as_array()
        .is_some_and(|a| a.len() == 1 && a[0]["status"] == "finished")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_mid_rollout_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = common::test_database_url();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start_server(dir.path(), port, database_url.as_deref());
    wait_ready(&base).await;
    let admin = std::fs::read_to_string(dir.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let mgmt = Mgmt {
        client: reqwest::Client::new(),
        base: base.clone(),
        token: Some(admin),
    };

    let mut devices = Vec::new();
    for i in 0..20 {
        let id = format!("dev{i:02}");
        let token = mgmt.device(&id, &[if i < 10 { "g1" } else { "g2" }]).await;
        devices.push(SimDevice::new(&base, &id, &token));
    }
    let (set, _) = mgmt
        .release("fw", "9", "fw.swu", random_bytes(100_000, 12))
        .await;
    let rollout = mgmt
        .ok(
            Method::POST,
            "/rest/v1/rollouts",
            Some(json!({
                "name": "crash", "distributionSetId": set, "successThreshold": 100, "errorThreshold": 50,
                "groups": [ { "tag": "g1" }, { "tag": "g2" } ],
            })),
        )
        .await;
    let rollout_id = rollout["id"].as_i64().unwrap();
    mgmt.ok(
        Method::POST,
        &format!("/rest/v1/rollouts/{rollout_id}/start"),
        None,
    )
    .await;

    // Devices: poll until one action is done; every error (server gone) means "try again".
    let acked_count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for device in devices.clone() {
        let acked_count = acked_count.clone();
        let mgmt = mgmt.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                assert!(Instant::now() < deadline, "{} never finished", device.id);
                match device.cycle(Outcome::Succeed, 6).await {
                    Ok(handled) if handled.action_id.is_some() => {
                        acked_count.fetch_add(handled.acked.len(), Ordering::SeqCst);
                        let done = handled.acked.iter().any(|d| d.ends_with(" done"));
                        acked.extend(handled.acked);
                        if done {
                            return (device.id.clone(), acked);
                        }
                    }
                    _ => {
                        // The kill may fall between the server committing the closing feedback
                        // and the device reading the answer: the action is finished although
                        // the device never saw its "done" acknowledged (then nothing is offered
                        // any more, as in hawkBit).
                        if action_finished(&mgmt, &device.id).await {
                            return (device.id.clone(), acked);
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                }
            }
        }));
    }

    // Kill -9 while feedback is flowing.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked_count.load(Ordering::SeqCst) < 30 {
        assert!(Instant::now() < deadline, "no feedback flowing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let acked_at_kill = acked_count.load(Ordering::SeqCst);
    // 20 devices x 7 feedbacks: the kill happened with most of the rollout still to do.
    assert!(
        acked_at_kill < 100,
        "kill came too late ({acked_at_kill} feedbacks)"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut server = start_server(dir.path(), port, database_url.as_deref());
    wait_ready(&base).await;

    let mut acked_by_device = BTreeMap::new();
    for task in tasks {
        let (id, acked) = task.await.unwrap();
        acked_by_device.insert(id, acked);
    }
    assert!(
        acked_count.load(Ordering::SeqCst) > acked_at_kill,
        "devices continued after the restart"
    );
    let finished = mgmt
        .wait_rollout(rollout_id, "finish after restart", |r| {
            r["status"] == "finished"
        })
        .await;
    assert_eq!(finished["counts"]["finished"], 20);
    assert_eq!(finished["counts"]["error"], 0);

    // Every acknowledged feedback is in the device's history; each device has exactly one action.
    for (id, acked) in &acked_by_device {
        let actions = mgmt
            .ok(Method::GET, &format!("/rest/v1/targets/{id}/actions"), None)
            .await;
        let actions = actions["content"].as_array().unwrap();
        assert_eq!(actions.len(), 1, "{id}: {actions:?}");
        assert_eq!(actions[0]["status"], "finished");
        let history = mgmt.action(id, actions[0]["id"].as_i64().unwrap()).await;
        let messages: HashSet<String> = history["history"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|entry| {
                entry["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_str().unwrap().to_string())
            })
            .collect();
        for detail in acked {
            assert!(
                messages.contains(detail),
                "{id}: acknowledged feedback {detail:?} lost"
            );
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();
}
