//! keel-agent's DDI client (`keel-agent run`'s cycle) against keel-server, on simulated devices
//! (keel-sim: file-backed A/B slots, EFI Boot Guard model) with bundles made by keel-bundle:
//! poll → stream-install with progress feedback → reboot → confirm → final result reported for
//! the action that was open before the reboot. Then a rollout to 20 such devices in 2 groups
//! where 3 devices of group 1 cannot install: the error threshold halts the rollout.

mod common;

use common::{image, pki, BlockingServer, Pki};

use keel_agent::config::{DdiConfig, Detect};
use keel_agent::ddi::{cycle, CycleEvent, DdiClient};
use keel_agent::state::Outcome;
use keel_agent::SlotId;
use keel_sim::{DeviceSpec, Loader, SimDevice};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const ROOTFS: u64 = 128 * 1024;

struct Server {
    api: BlockingServer,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Server {
    type Target = BlockingServer;
    fn deref(&self) -> &BlockingServer {
        &self.api
    }
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config = keel_server::Config::for_data_dir(dir.path());
        config.poll_interval = 1;
        config.scheduler_interval_ms = 100;
        Server {
            api: BlockingServer::start(config),
            _dir: dir,
        }
    }

    fn release(&self, bundle: Vec<u8>) -> i64 {
        let module = self.post(
            "/rest/v1/softwaremodules",
            json!({ "name": "gateway-os", "version": "2.0" }),
        );
        let id = module["id"].as_i64().unwrap();
        self.call(
            reqwest::Method::POST,
            &format!("/rest/v1/softwaremodules/{id}/artifacts?filename=gateway-os-2.0.swu"),
            None,
            Some(bundle),
        );
        self.post(
            "/rest/v1/distributionsets",
            json!({ "name": "gateway-os", "version": "2.0", "modules": [id] }),
        )["id"]
            .as_i64()
            .unwrap()
    }
}

/// A signed bundle (keel-bundle) with a new rootfs, for hardware revision 1.0.
fn bundle(pki: &Pki, rootfs: &[u8]) -> Vec<u8> {
    let manifest = "[software]\nversion = \"2.0\"\nhardware-compatibility = [\"1.0\"]\n\n\
                    [[software.images]]\nfilename = \"rootfs.img\"\ndevice = \"rootfs\"\ntype = \"raw\"\n";
    pki.bundle(manifest, &[("rootfs.img", rootfs)])
}

fn device(pki: &Pki, revision: &str) -> SimDevice {
    let mut factory = BTreeMap::new();
    factory.insert("rootfs".to_string(), image(1, ROOTFS as usize / 2));
    SimDevice::new(DeviceSpec {
        loader: Loader::Ebg,
        targets: vec![("rootfs".into(), ROOTFS)],
        factory,
        trusted_certs: pki.cert.clone(),
        aes_key: None,
        hardware_revision: Some(revision.to_string()),
        detect: Detect::Auto,
    })
    .unwrap()
}

fn ddi_config(server: &Server, id: &str, token: &str) -> DdiConfig {
    DdiConfig {
        url: server.base.clone(),
        tenant: "default".into(),
        controller_id: id.into(),
        target_token: Some(token.into()),
        gateway_token: None,
        poll_secs: 1,
    }
}

/// One `keel-agent run` cycle on the device (a fresh agent process each time, as after a start).
fn agent_cycle(device: &SimDevice, config: &DdiConfig) -> Vec<CycleEvent> {
    let mut agent = device.agent().unwrap();
    agent.config.ddi = Some(config.clone());
    let client = DdiClient::new(config);
    cycle(&mut agent, &client).unwrap().0
}

fn starts_with(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && &haystack[..prefix.len()] == prefix
}

fn messages(action: &Value) -> Vec<String> {
    action["history"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| {
            e["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn keel_agent_installs_reboots_confirms_and_reports() {
    let server = Server::start();
    let pki = pki();
    let rootfs = image(7, ROOTFS as usize - 4096);
    let set = server.release(bundle(&pki, &rootfs));
    let token = server.post("/rest/v1/targets", json!({ "controllerId": "gw1" }))["securityToken"]
        .as_str()
        .unwrap()
        .to_string();
    let action = server.post("/rest/v1/targets/gw1/assignedDS", json!({ "id": set }))["id"]
        .as_i64()
        .unwrap();
    let mut device = device(&pki, "1.0");
    let config = ddi_config(&server, "gw1", &token);

    // Poll → stream-install into slot B with progress feedback; the action stays open.
    let events = agent_cycle(&device, &config);
    assert!(
        events.contains(&CycleEvent::Installed {
            action_id: action.to_string()
        }),
        "{events:?}"
    );
    assert!(starts_with(
        &device.slot_contents(SlotId::B, "rootfs"),
        &rootfs
    ));
    let open = server.get(&format!("/rest/v1/targets/gw1/actions/{action}"));
    assert_eq!(
        (open["status"].as_str(), open["active"].as_bool()),
        (Some("running"), Some(true))
    );
    let progress: Vec<i64> = open["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["progressCnt"].as_i64())
        .collect();
    assert!(
        progress.contains(&0) && progress.contains(&100),
        "{progress:?}"
    );
    // Polling again before the reboot does not install twice.
    let events = agent_cycle(&device, &config);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, CycleEvent::Installed { .. })),
        "{events:?}"
    );

    // Reboot into B (testing); the agent confirms it and reports the action open before the reboot.
    assert_eq!(device.boot().unwrap().slot, SlotId::B);
    let events = agent_cycle(&device, &config);
    assert!(
        events.iter().any(|e| matches!(e, CycleEvent::Confirmed(_))),
        "{events:?}"
    );
    assert!(
        events.contains(&CycleEvent::Reported {
            action_id: action.to_string(),
            outcome: Outcome::Success
        }),
        "{events:?}"
    );
    let done = server.get(&format!("/rest/v1/targets/gw1/actions/{action}"));
    assert_eq!(
        (done["status"].as_str(), done["active"].as_bool()),
        (Some("finished"), Some(false)),
        "{}",
        messages(&done).join("\n")
    );
    assert_eq!(
        server.get("/rest/v1/targets/gw1")["updateStatus"],
        "in_sync"
    );
    // Reported once: later cycles are idle.
    assert_eq!(agent_cycle(&device, &config), vec![CycleEvent::Idle]);
}

#[test]
fn rollout_to_twenty_keel_agents_halts_on_error_threshold() {
    let server = Server::start();
    let pki = pki();
    let rootfs = image(9, ROOTFS as usize - 4096);
    let set = server.release(bundle(&pki, &rootfs));
    // 20 devices; dev00, dev01, dev02 (group 1) are hardware revision 2.0: the bundle is not for them.
    let mut fleet = Vec::new();
    for i in 0..20 {
        let id = format!("dev{i:02}");
        let tag = if i < 10 { "g1" } else { "g2" };
        let token = server.post(
            "/rest/v1/targets",
            json!({ "controllerId": id, "tags": [tag] }),
        )["securityToken"]
            .as_str()
            .unwrap()
            .to_string();
        let revision = if i < 3 { "2.0" } else { "1.0" };
        fleet.push((device(&pki, revision), ddi_config(&server, &id, &token)));
    }
    let rollout = server.post(
        "/rest/v1/rollouts",
        json!({ "name": "2.0", "distributionSetId": set, "groups": [ { "tag": "g1" }, { "tag": "g2" } ],
                "successThreshold": 80, "errorThreshold": 20 }),
    );
    let id = rollout["id"].as_i64().unwrap();
    server.post(&format!("/rest/v1/rollouts/{id}/start"), json!(null));

    // Every device runs one agent cycle: group 1 installs (3 fail at once), group 2 has nothing yet.
    for (device, config) in &fleet {
        let events = agent_cycle(device, config);
        let group_1 = config.controller_id.as_str() < "dev10";
        let installed = events
            .iter()
            .any(|e| matches!(e, CycleEvent::Installed { .. }));
        let failed = events
            .iter()
            .any(|e| matches!(e, CycleEvent::InstallFailed { .. }));
        let bad_hardware = config.controller_id.as_str() < "dev03";
        assert_eq!(
            (installed, failed),
            (group_1 && !bad_hardware, bad_hardware),
            "{}: {events:?}",
            config.controller_id
        );
    }
    // 3 of 10 failed: 30 % > 20 %: halted, group 2 never started.
    let deadline = Instant::now() + Duration::from_secs(30);
    let halted = loop {
        let r = server.get(&format!("/rest/v1/rollouts/{id}"));
        if r["status"] == "halted" {
            break r;
        }
        assert!(Instant::now() < deadline, "not halted: {r:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(halted["groups"][0]["counts"]["error"], 3);
    assert_eq!(halted["groups"][1]["status"], "scheduled");
    let failed = server.get("/rest/v1/targets/dev01/actions");
    assert_eq!(failed[0]["status"], "error");
    let history = server.get(&format!(
        "/rest/v1/targets/dev01/actions/{}",
        failed[0]["id"]
    ));
    assert!(
        messages(&history).iter().any(|m| m.contains("hardware")),
        "{}",
        messages(&history).join("\n")
    );
    // The 7 good devices reboot, confirm and report success; group 2 still gets nothing.
    for (device, config) in fleet.iter_mut() {
        if config.controller_id.as_str() >= "dev03" && config.controller_id.as_str() < "dev10" {
            assert_eq!(device.boot().unwrap().slot, SlotId::B);
        }
        agent_cycle(device, config);
    }
    std::thread::sleep(Duration::from_millis(400));
    let after = server.get(&format!("/rest/v1/rollouts/{id}"));
    assert_eq!(after["status"], "halted");
    assert_eq!(after["groups"][0]["counts"]["finished"], 7);
    assert_eq!(after["groups"][1]["counts"]["scheduled"], 10);
    for (device, config) in &fleet[10..] {
        assert_eq!(
            agent_cycle(device, config),
            vec![CycleEvent::Idle],
            "{}",
            config.controller_id
        );
        assert!(!starts_with(
            &device.slot_contents(SlotId::B, "rootfs"),
            &rootfs
        ));
    }
}

#[test]
fn keel_agent_acknowledges_a_cancel() {
    let server = Server::start();
    let pki = pki();
    let set = server.release(bundle(&pki, &image(11, 4096)));
    let token = server.post("/rest/v1/targets", json!({ "controllerId": "gw2" }))["securityToken"]
        .as_str()
        .unwrap()
        .to_string();
    let action = server.post("/rest/v1/targets/gw2/assignedDS", json!({ "id": set }))["id"]
        .as_i64()
        .unwrap();
    let canceling = server.call(
        reqwest::Method::DELETE,
        &format!("/rest/v1/targets/gw2/actions/{action}"),
        None,
        None,
    );
    assert_eq!(canceling["status"], "canceling");
    let device = device(&pki, "1.0");
    let config = ddi_config(&server, "gw2", &token);
    let events = agent_cycle(&device, &config);
    assert_eq!(
        events,
        vec![CycleEvent::CancelAcknowledged(action.to_string())]
    );
    let done = server.get(&format!("/rest/v1/targets/gw2/actions/{action}"));
    assert_eq!(
        (done["status"].as_str(), done["active"].as_bool()),
        (Some("canceled"), Some(false))
    );
    // Nothing was installed, and the next cycle is idle.
    assert_eq!(agent_cycle(&device, &config), vec![CycleEvent::Idle]);
    assert_eq!(
        device.slot_contents(SlotId::B, "rootfs"),
        vec![0u8; ROOTFS as usize]
    );
}
