//! Rollouts to 20 simulated DDI devices in 2 groups: the success threshold moves the rollout on,
//! the error threshold halts it; pause, resume and cancel.

use crate::common;

use common::{random_bytes, Mgmt, Outcome, SimDevice, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

struct Fleet {
    devices: Vec<SimDevice>,
}

async fn fleet(server: &TestServer, mgmt: &Mgmt, count: usize) -> Fleet {
    let mut devices = Vec::new();
    for i in 0..count {
        let id = format!("dev{i:02}");
        let tag = if i < count / 2 { "line-1" } else { "line-2" };
        let token = mgmt.device(&id, &[tag]).await;
        devices.push(SimDevice::new(&server.base, &id, &token));
    }
    Fleet { devices }
}

/// Runs one poll cycle on every device concurrently; `fail` lists the devices that report failure.
async fn cycle_all(fleet: &Fleet, fail: &HashSet<String>) -> Vec<common::Handled> {
    let mut tasks = Vec::new();
    for device in &fleet.devices {
        let device = device.clone();
        let outcome = if fail.contains(&device.id) {
            Outcome::Fail
        } else {
            Outcome::Succeed
        };
        tasks.push(tokio::spawn(async move {
            device.cycle(outcome, 2).await.unwrap()
        }));
    }
    let mut handled = Vec::new();
    for task in tasks {
        handled.push(task.await.unwrap());
    }
    handled
}

fn group(rollout: &Value, index: usize) -> &Value {
    &rollout["groups"][index]
}

#[tokio::test]
async fn error_threshold_halts_rollout_before_the_next_group() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let fleet = fleet(&server, &mgmt, 20).await;
    let (set, _) = mgmt
        .release("fw", "2.0", "fw.swu", random_bytes(50_000, 9))
        .await;
    let rollout = mgmt
        .ok(
            Method::POST,
            "/rest/v1/rollouts",
            Some(json!({
                "name": "fw 2.0",
                "distributionSetId": set,
                "groups": [ { "name": "line 1", "tag": "line-1" }, { "name": "line 2", "tag": "line-2" } ],
                "successThreshold": 80,
                "errorThreshold": 20,
            })),
        )
        .await;
    let id = rollout["id"].as_i64().unwrap();
    assert_eq!(rollout["status"], "ready");
    assert_eq!(group(&rollout, 0)["counts"]["total"], 10);
    assert_eq!(group(&rollout, 1)["counts"]["scheduled"], 10);
    // Not started: nobody is offered anything.
    assert!(cycle_all(&fleet, &HashSet::new())
        .await
        .iter()
        .all(|h| h.action_id.is_none()));

    let started = mgmt
        .ok(Method::POST, &format!("/rest/v1/rollouts/{id}/start"), None)
        .await;
    assert_eq!(started["status"], "running");
    assert_eq!(group(&started, 0)["status"], "running");
    // 3 of the 10 devices of group 1 fail: 30 % > 20 %.
    let failing: HashSet<String> = ["dev00", "dev03", "dev07"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let handled = cycle_all(&fleet, &failing).await;
    for (device, handled) in fleet.devices.iter().zip(&handled) {
        let in_group_1 = device.id.as_str() < "dev10";
        assert_eq!(handled.action_id.is_some(), in_group_1, "{}", device.id);
    }
    let halted = mgmt
        .wait_rollout(id, "halt", |r| r["status"] == "halted")
        .await;
    assert_eq!(group(&halted, 0)["status"], "error");
    assert_eq!(group(&halted, 0)["counts"]["error"], 3);
    assert_eq!(group(&halted, 0)["counts"]["finished"], 7);
    assert_eq!(group(&halted, 1)["status"], "scheduled");
    assert!(halted["statusReason"].as_str().unwrap().contains("3 of 10"));
    // The halt holds: after more scheduler ticks, group 2 is still not started and its devices
    // are offered nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cycle_all(&fleet, &HashSet::new())
        .await
        .iter()
        .all(|h| h.action_id.is_none()));
    let still = mgmt.rollout(id).await;
    assert_eq!(
        (
            still["status"].as_str(),
            group(&still, 1)["counts"]["scheduled"].as_i64()
        ),
        (Some("halted"), Some(10))
    );
    // Each device's history is visible per device.
    let failed = mgmt.ok(Method::GET, "/rest/v1/targets/dev03", None).await;
    assert_eq!(failed["updateStatus"], "error");
    let actions = mgmt
        .ok(Method::GET, "/rest/v1/targets/dev03/actions", None)
        .await["content"]
        .clone();
    assert_eq!(actions[0]["status"], "error");
    assert_eq!(actions[0]["rolloutId"], json!(id));

    // Cancel: the unstarted group never starts.
    let canceled = mgmt
        .ok(
            Method::POST,
            &format!("/rest/v1/rollouts/{id}/cancel"),
            None,
        )
        .await;
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(group(&canceled, 1)["status"], "canceled");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cycle_all(&fleet, &HashSet::new())
        .await
        .iter()
        .all(|h| h.action_id.is_none()));
    let (status, _) = mgmt
        .post(&format!("/rest/v1/rollouts/{id}/resume"), json!(null))
        .await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT);
    server.stop().await;
}

#[tokio::test]
async fn success_threshold_advances_groups_with_pause_and_resume() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let fleet = fleet(&server, &mgmt, 20).await;
    let (set, _) = mgmt
        .release("fw", "3.0", "fw.swu", random_bytes(20_000, 10))
        .await;
    let targets: Vec<String> = fleet.devices.iter().map(|d| d.id.clone()).collect();
    let rollout = mgmt
        .ok(
            Method::POST,
            "/rest/v1/rollouts",
            Some(json!({
                "name": "fw 3.0",
                "distributionSetId": set,
                "targets": targets,
                "amountGroups": 2,
                "successThreshold": 80,
                "errorThreshold": 20,
            })),
        )
        .await;
    let id = rollout["id"].as_i64().unwrap();
    assert_eq!(rollout["groups"].as_array().unwrap().len(), 2);
    mgmt.ok(Method::POST, &format!("/rest/v1/rollouts/{id}/start"), None)
        .await;
    // Pause while group 1 installs: group 1's actions continue, group 2 does not start.
    mgmt.ok(Method::POST, &format!("/rest/v1/rollouts/{id}/pause"), None)
        .await;
    // One failure in group 1: 10 % is within the error threshold, 90 % meets the success threshold.
    let failing: HashSet<String> = ["dev05".to_string()].into();
    let handled = cycle_all(&fleet, &failing).await;
    assert_eq!(handled.iter().filter(|h| h.action_id.is_some()).count(), 10);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let paused = mgmt.rollout(id).await;
    assert_eq!(paused["status"], "paused");
    assert_eq!(group(&paused, 0)["counts"]["finished"], 9);
    assert_eq!(group(&paused, 1)["status"], "scheduled");
    assert!(cycle_all(&fleet, &HashSet::new())
        .await
        .iter()
        .all(|h| h.action_id.is_none()));

    mgmt.ok(
        Method::POST,
        &format!("/rest/v1/rollouts/{id}/resume"),
        None,
    )
    .await;
    mgmt.wait_rollout(id, "group 2 start", |r| group(r, 1)["status"] == "running")
        .await;
    let handled = cycle_all(&fleet, &HashSet::new()).await;
    assert_eq!(handled.iter().filter(|h| h.action_id.is_some()).count(), 10);
    let finished = mgmt
        .wait_rollout(id, "finish", |r| r["status"] == "finished")
        .await;
    assert_eq!(finished["counts"]["finished"], 19);
    assert_eq!(finished["counts"]["error"], 1);
    assert_eq!(group(&finished, 0)["status"], "finished");
    assert_eq!(group(&finished, 1)["status"], "finished");
    let in_sync = mgmt.ok(Method::GET, "/rest/v1/targets", None).await;
    assert_eq!(in_sync["total"], 20);
    assert_eq!(
        in_sync["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["updateStatus"] == "in_sync")
            .count(),
        19
    );
    server.stop().await;
}

#[tokio::test]
async fn assign_to_a_group_by_tag() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt();
    let fleet = fleet(&server, &mgmt, 6).await;
    let (set, _) = mgmt
        .release("app", "1", "app.swu", random_bytes(1000, 11))
        .await;
    let result = mgmt
        .ok(
            Method::POST,
            &format!("/rest/v1/distributionsets/{set}/assignedTargets"),
            Some(json!({ "tag": "line-2", "type": "soft" })),
        )
        .await;
    assert_eq!(result["assigned"], 3);
    let handled = cycle_all(&fleet, &HashSet::new()).await;
    let updated: Vec<&str> = fleet
        .devices
        .iter()
        .zip(&handled)
        .filter(|(_, h)| h.action_id.is_some())
        .map(|(d, _)| d.id.as_str())
        .collect();
    assert_eq!(updated, ["dev03", "dev04", "dev05"]);
    server.stop().await;
}
