//! The dashboard end to end in a real browser: Playwright (e2e/dashboard.mjs, npm playwright-core)
//! drives Debian's headless Chromium against this server while simulated hawkBit DDI devices poll,
//! download and report. It logs in, uploads an artifact, starts a rollout, watches it finish live,
//! opens the failed device's history, and checks a viewer gets no controls and 403s.
//! Screenshots land in e2e/artifacts/. Fails (does not skip) without node or chromium:
//! scripts/setup-debian.sh installs both and runs `npm ci --prefix e2e`.

use crate::common;

use common::{random_bytes, SimDevice, TestServer};
use reqwest::StatusCode;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TAG: &str = "e2e";
const FAILING: &str = "press-04";
const DEVICES: usize = 6;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A device that takes its time (progress reports 300 ms apart), so the rollout's progress can
/// be watched; `fail` makes its installation fail.
async fn handle_deployment(device: &SimDevice, fail: bool) -> reqwest::Result<()> {
    let base = device.poll().await?;
    let Some(href) = base["_links"]["deploymentBase"]["href"].as_str() else {
        return Ok(());
    };
    let (status, deployment) = device.try_get_json(href).await?;
    if status != StatusCode::OK {
        return Ok(());
    }
    let action_id = deployment["id"].as_str().unwrap_or("0").to_string();
    let feedback_url = format!("{}/deploymentBase/{action_id}/feedback", device.url());
    let mut total = 0;
    for chunk in deployment["deployment"]["chunks"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for artifact in chunk["artifacts"].as_array().into_iter().flatten() {
            if let Some(url) = artifact["_links"]["download-http"]["href"].as_str() {
                total += device.get(url).await?.bytes().await?.len();
            }
        }
    }
    let steps = 4;
    for step in 1..=steps {
        let detail = match step {
            1 => format!("downloaded {total} bytes, signature verified"),
            _ => format!("writing image to slot b: step {step} of {steps}"),
        };
        let body = SimDevice::feedback("proceeding", "none", &detail, Some((step, steps)));
        device.send_feedback(&feedback_url, &body).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (finished, detail) = if fail {
        (
            "failure",
            "install failed: slot b image hash mismatch after write (device rolled back to slot a)",
        )
    } else {
        ("success", "installed into slot b, booted and confirmed")
    };
    let body = SimDevice::feedback("closed", finished, detail, None);
    device.send_feedback(&feedback_url, &body).await;
    if !fail {
        // After the confirmed boot the device reports its slots again (the server asks for it).
        device
            .client
            .put(format!("{}/configData", device.url()))
            .header("Authorization", &device.auth)
            .json(&json!({ "data": {
                "keel.slot": "B", "keel.version": "2.0",
                "keel.slot.rootfs.sha256": "5e2bf57d3f40c4b6df69daf1936cb766f832374b4fc0259a7cbff06e2f70f269",
            }}))
            .send()
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playwright_drives_the_dashboard_through_a_rollout() {
    let root = repo_root();
    let e2e = root.join("e2e");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "{chromium} missing: run scripts/setup-debian.sh (installs Debian's chromium)"
    );
    if !e2e
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&e2e)
            .status()
            .expect("npm missing: run scripts/setup-debian.sh");
        assert!(status.success(), "npm ci --prefix e2e failed");
    }

    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let viewer = mgmt.token("auditor", "viewer").await;
    // Some bystanders that are not part of the rollout, and the rollout's devices.
    for i in 0..4 {
        mgmt.device(&format!("spare-{i}"), &["spare"]).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 1..=DEVICES {
        let id = format!("press-{i:02}");
        let token = mgmt.device(&id, &[TAG]).await;
        let device = SimDevice::new(&server.base, &id, &token);
        let status = device
            .client
            .put(format!("{}/configData", device.url()))
            .header("Authorization", &device.auth)
            .json(&json!({ "data": {
                "hw": "press-controller-rev-c",
                "keel.slot": "A", "keel.version": "1.4.2",
                "keel.slot.rootfs.sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            }}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::OK);
        let fail = id == FAILING;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Err(err) = handle_deployment(&device, fail).await {
                    eprintln!("{}: {err}", device.id);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }));
    }

    let artifact_dir = tempfile::tempdir().unwrap();
    let artifact = artifact_dir.path().join("keel-os-2.0.swu");
    std::fs::write(&artifact, random_bytes(3 << 20, 7)).unwrap();
    let screenshots = e2e.join("artifacts");
    let mut command = std::process::Command::new("node");
    command
        .arg(e2e.join("dashboard.mjs"))
        .current_dir(&e2e)
        .env("KEEL_URL", &server.base)
        .env("KEEL_ADMIN_TOKEN", &server.admin)
        .env("KEEL_VIEWER_TOKEN", &viewer)
        .env("KEEL_ARTIFACT", &artifact)
        .env("KEEL_TAG", TAG)
        .env("KEEL_FAILING_DEVICE", FAILING)
        .env("KEEL_SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium);
    let status = tokio::task::spawn_blocking(move || command.status())
        .await
        .unwrap()
        .expect("node missing: run scripts/setup-debian.sh");
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    assert!(status.success(), "e2e/dashboard.mjs failed: {status}");

    // What the browser did is really in the server.
    let rollouts = mgmt
        .ok(reqwest::Method::GET, "/rest/v1/rollouts", None)
        .await;
    let rollout = mgmt
        .rollout(rollouts["content"][0]["id"].as_i64().unwrap())
        .await;
    assert_eq!(rollout["status"], "finished", "{rollout:#}");
    assert_eq!(rollout["counts"]["finished"], DEVICES as i64 - 1);
    assert_eq!(rollout["counts"]["error"], 1);
    for name in [
        "01-fleet",
        "02-upload-done",
        "05-rollout-progress",
        "07-failed-device",
        "09-viewer-rollout",
    ] {
        let shot = screenshots.join(format!("{name}.png"));
        let bytes = std::fs::read(&shot).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is not a PNG",
            shot.display()
        );
    }
    server.stop().await;
}
