//! keel-agent's DDI client (`keel-agent run`'s cycle) against keel-server, on simulated devices
//! (keel-sim: file-backed A/B slots, EFI Boot Guard model) with bundles made by keel-bundle:
//! poll → stream-install with progress feedback → reboot → confirm → final result reported for
//! the action that was open before the reboot. Then a rollout to 20 such devices in 2 groups
//! where 3 devices of group 1 cannot install: the error threshold halts the rollout. And installs
//! interrupted by a power cut before activation: reported `proceeding` and installed again (at
//! every cut point), closed as failed after the third interruption, kept chunks of a
//! `keel-chunked` image, forgotten when the action is cancelled or replaced.

use crate::common;

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
        self.release_files("2.0", vec![("gateway-os-2.0.swu", bundle)])
    }

    /// One software module with these artifacts, in one distribution set; returns the set id.
    fn release_files(&self, version: &str, files: Vec<(&str, Vec<u8>)>) -> i64 {
        let module = self.post(
            "/rest/v1/softwaremodules",
            json!({ "name": "gateway-os", "version": version }),
        );
        let id = module["id"].as_i64().unwrap();
        for (name, data) in files {
            self.call(
                reqwest::Method::POST,
                &format!("/rest/v1/softwaremodules/{id}/artifacts?filename={name}"),
                None,
                Some(data),
            );
        }
        self.post(
            "/rest/v1/distributionsets",
            json!({ "name": "gateway-os", "version": version, "modules": [id] }),
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
    device_with(pki, revision, Loader::Ebg)
}

fn device_with(pki: &Pki, revision: &str, loader: Loader) -> SimDevice {
    let mut factory = BTreeMap::new();
    factory.insert("rootfs".to_string(), image(1, ROOTFS as usize / 2));
    SimDevice::new(DeviceSpec {
        loader,
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
    let client = DdiClient::new(config, &Default::default()).unwrap();
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
    let failed = server.get("/rest/v1/targets/dev01/actions")["content"].clone();
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

/// One agent cycle that may end in an error (a power cut in the middle of it).
fn try_agent_cycle(device: &SimDevice, config: &DdiConfig) -> Result<Vec<CycleEvent>, String> {
    let mut agent = device.agent().map_err(|e| e.to_string())?;
    agent.config.ddi = Some(config.clone());
    let client = DdiClient::new(config, &Default::default()).unwrap();
    cycle(&mut agent, &client)
        .map(|(events, _)| events)
        .map_err(|e| e.to_string())
}

/// A device registered on the server with the release assigned: (config, action id).
fn assigned(server: &Server, id: &str, set: i64) -> (DdiConfig, i64) {
    let token = server.post("/rest/v1/targets", json!({ "controllerId": id }))["securityToken"]
        .as_str()
        .unwrap()
        .to_string();
    let action = server.post(
        &format!("/rest/v1/targets/{id}/assignedDS"),
        json!({ "id": set }),
    )["id"]
        .as_i64()
        .unwrap();
    (ddi_config(server, id, &token), action)
}

fn history_statuses(action: &Value) -> Vec<String> {
    action["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Power cut at every storage operation of a DDI install, under each of the four deterministic
/// models of what the disk keeps of unsynced data and the seeded ones (`CutMode::seeded`): the
/// cut cycle fails, and after the reboot the agent does not fail the action. If
/// the cut install had recorded its transaction, the next cycle reports the interrupted attempt as
/// `proceeding` ("attempt 1 of 3 was interrupted"); the server still offers the action, the agent
/// installs it again, reboots into the new slot, confirms, and the action ends finished/success.
fn install_again_after_every_power_cut(loader: Loader) {
    let server = Server::start();
    let pki = pki();
    let rootfs = image(21, ROOTFS as usize - 4096);
    let set = server.release(bundle(&pki, &rootfs));
    let (config, _) = assigned(&server, "reference", set);
    let device = |pki: &Pki, revision: &str| device_with(pki, revision, loader);
    let reference = device(&pki, "1.0");
    let factory = reference.slot_contents(SlotId::A, "rootfs");
    let (events, total) = reference.count_ops(|| agent_cycle(&reference, &config));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, CycleEvent::Installed { .. })),
        "{events:?}"
    );
    assert!(total > 10, "{total} storage operations");

    // The four deterministic disk models and the seeded ones (reordered subsets of unsynced
    // writes with per-entry name loss, torn sectors with garbage, an unreadable sector):
    // seed 1, or seeds 1..=8 with KEEL_POWERCUT_FULL=1.
    let seeds: Vec<u64> = if std::env::var_os("KEEL_POWERCUT_FULL").is_some_and(|v| v == "1") {
        (1..=8).collect()
    } else {
        vec![1]
    };
    let modes = keel_sim::CutMode::all_with_seeds(&seeds);
    // Slot B holds a factory image of its own, so a slot never written cannot pass as the old one.
    let factory_b = image(77, ROOTFS as usize);
    let fresh = || {
        let d = device(&pki, "1.0");
        d.storage
            .insert_device(keel_sim::slot_path(SlotId::B, "rootfs"), &factory_b);
        d
    };
    let mut updated_b = factory_b.clone();
    updated_b[..rootfs.len()].copy_from_slice(&rootfs);
    let (mut resumed, mut activated_before_cut, mut tried) = (0, 0, 0);
    for (n, &mode) in (0..total).flat_map(|n| modes.iter().map(move |m| (n, m))) {
        let what = format!("{loader:?}: cut after {n}/{total} ops, {mode:?}");
        tried += 1;
        let id = format!("cut{tried}");
        let (config, action) = assigned(&server, &id, set);
        let mut device = fresh();
        let (result, cut) = device.with_power_cut(n, mode, |d| try_agent_cycle(d, &config));
        assert!(cut, "{what}: no cut");
        assert!(
            result.is_err(),
            "{what}: the cut cycle reported success: {result:?}"
        );
        let boot = device.boot().unwrap_or_else(|e| panic!("{what}: {e}"));
        // Did the cut install record its transaction (else nothing knows it was attempted)?
        let mut recorded = false;
        if boot.slot == SlotId::A {
            assert_eq!(
                device.slot_contents(SlotId::A, "rootfs"),
                factory,
                "{what}: slot A changed"
            );
            recorded = device
                .agent()
                .unwrap()
                .load_state()
                .unwrap()
                .transaction
                .is_some();
            let events = agent_cycle(&device, &config);
            if recorded {
                assert!(
                    events.contains(&CycleEvent::Interrupted {
                        action_id: action.to_string(),
                        attempt: 1,
                        limit: 3
                    }),
                    "{what}: {events:?}"
                );
                resumed += 1;
            }
            assert!(
                events.contains(&CycleEvent::Installed {
                    action_id: action.to_string()
                }),
                "{what}: {events:?}"
            );
            assert!(
                !events
                    .iter()
                    .any(|e| matches!(e, CycleEvent::Reported { .. })),
                "{what}: {events:?}"
            );
            assert_eq!(device.boot().unwrap().slot, SlotId::B, "{what}");
        } else {
            // Activated before the cut: the boot/confirm path, unchanged.
            activated_before_cut += 1;
        }
        assert!(
            device.slot_contents(SlotId::B, "rootfs") == updated_b,
            "{what}: slot B does not hold exactly the new image over its factory content"
        );
        let events = agent_cycle(&device, &config);
        assert!(
            events.contains(&CycleEvent::Reported {
                action_id: action.to_string(),
                outcome: Outcome::Success
            }),
            "{what}: {events:?}"
        );
        let done = server.get(&format!("/rest/v1/targets/{id}/actions/{action}"));
        let log = messages(&done).join("\n");
        assert_eq!(
            (done["status"].as_str(), done["active"].as_bool()),
            (Some("finished"), Some(false)),
            "{what}: {log}"
        );
        assert!(
            !history_statuses(&done).iter().any(|s| s == "error"),
            "{what}: {log}"
        );
        // The interruption is in the action's history as proceeding messages, not a failure.
        assert_eq!(
            log.contains("install attempt 1 of 3 was interrupted"),
            recorded,
            "{what}: {log}"
        );
        assert_eq!(
            log.contains("(attempt 2 of 3, the previous one was interrupted)"),
            recorded,
            "{what}: {log}"
        );
        assert_eq!(
            agent_cycle(&device, &config),
            vec![CycleEvent::Idle],
            "{what}"
        );
    }
    println!(
        "{loader:?}: {tried} cuts ({total} points x {} disk models, seeds {seeds:?}): {resumed} \
         interrupted installs reported and installed again, {activated_before_cut} activated \
         before the cut",
        modes.len()
    );
    assert_eq!(tried, total as usize * modes.len());
    assert!(resumed * 2 > tried, "{resumed} of {tried}");
}

#[test]
fn keel_agent_installs_again_after_a_power_cut_ebg() {
    install_again_after_every_power_cut(Loader::Ebg);
}

#[test]
fn keel_agent_installs_again_after_a_power_cut_uboot() {
    install_again_after_every_power_cut(Loader::Uboot);
}

#[test]
fn keel_agent_installs_again_after_a_power_cut_grub() {
    install_again_after_every_power_cut(Loader::Grub);
}

/// A device that loses power in the middle of writing slot B at every attempt: the first two
/// interruptions are reported as `proceeding` and the action is installed again; the third closes
/// the action as failed with a message naming the count. Slot A runs throughout.
#[test]
fn keel_agent_closes_the_action_as_failed_after_three_interrupted_installs() {
    let server = Server::start();
    let pki = pki();
    let rootfs = image(23, ROOTFS as usize - 4096);
    let set = server.release(bundle(&pki, &rootfs));
    let (config, action) = assigned(&server, "crashy", set);
    let mut device = device(&pki, "1.0");
    let factory = device.slot_contents(SlotId::A, "rootfs");
    let action_path = format!("/rest/v1/targets/crashy/actions/{action}");
    for attempt in 1..=3 {
        let mut agent = device
            .agent_cut_while_writing(SlotId::B, "rootfs", ROOTFS / 2)
            .unwrap();
        agent.config.ddi = Some(config.clone());
        let result = cycle(
            &mut agent,
            &DdiClient::new(&config, &Default::default()).unwrap(),
        );
        assert!(
            device.power_cycle_if_cut(keel_sim::CutMode::LoseUnsynced),
            "attempt {attempt}: the install never reached the middle of slot B ({result:?})"
        );
        assert!(result.is_err(), "attempt {attempt}: {result:?}");
        assert_eq!(device.boot().unwrap().slot, SlotId::A, "attempt {attempt}");
        assert_eq!(device.slot_contents(SlotId::A, "rootfs"), factory);
        let state = device.agent().unwrap().load_state().unwrap();
        assert_eq!(
            state.transaction.and_then(|t| t.action_id),
            Some(action.to_string()),
            "attempt {attempt}"
        );
        let open = server.get(&action_path);
        assert_eq!(open["active"], true, "attempt {attempt}");
    }
    // The fourth cycle finds the third interrupted attempt: the action is closed as failed.
    let events = agent_cycle(&device, &config);
    assert_eq!(
        events,
        vec![CycleEvent::Reported {
            action_id: action.to_string(),
            outcome: Outcome::Failed
        }]
    );
    let closed = server.get(&action_path);
    let log = messages(&closed).join("\n");
    assert_eq!(
        (closed["status"].as_str(), closed["active"].as_bool()),
        (Some("error"), Some(false)),
        "{log}"
    );
    for expected in [
        "install attempt 1 of 3 was interrupted",
        "(attempt 2 of 3, the previous one was interrupted)",
        "install attempt 2 of 3 was interrupted",
        "(attempt 3 of 3, the previous one was interrupted)",
        "install interrupted 3 times",
    ] {
        assert!(log.contains(expected), "{expected:?} missing from:\n{log}");
    }
    // Only the last message closed the action; the interruptions before it were `proceeding`.
    let statuses = history_statuses(&closed);
    assert_eq!(
        statuses.iter().filter(|s| *s == "error").count(),
        1,
        "{statuses:?}"
    );
    let status = device.agent().unwrap().status().unwrap();
    assert_eq!(status.booted_slot, SlotId::A);
    assert_eq!(status.interrupted, None);
    assert_eq!(status.last_result.unwrap().outcome, Outcome::Failed);
    assert_eq!(device.boot().unwrap().slot, SlotId::A);
    assert_eq!(agent_cycle(&device, &config), vec![CycleEvent::Idle]);
}

/// An install interrupted by a power cut whose action is then cancelled on the server: the
/// cancel is acknowledged, the interrupted attempt forgotten, nothing is installed again.
#[test]
fn interrupted_install_of_a_cancelled_action_is_dropped() {
    let server = Server::start();
    let pki = pki();
    let set = server.release(bundle(&pki, &image(25, ROOTFS as usize - 4096)));
    let (config, action) = assigned(&server, "gw3", set);
    let mut device = device(&pki, "1.0");
    interrupt(&mut device, &config, action);
    let canceling = server.call(
        reqwest::Method::DELETE,
        &format!("/rest/v1/targets/gw3/actions/{action}"),
        None,
        None,
    );
    assert_eq!(canceling["status"], "canceling");
    let events = agent_cycle(&device, &config);
    assert_eq!(
        events,
        vec![
            CycleEvent::InterruptedDropped(action.to_string()),
            CycleEvent::CancelAcknowledged(action.to_string())
        ]
    );
    let done = server.get(&format!("/rest/v1/targets/gw3/actions/{action}"));
    assert_eq!(
        (done["status"].as_str(), done["active"].as_bool()),
        (Some("canceled"), Some(false))
    );
    let state = device.agent().unwrap().load_state().unwrap();
    assert_eq!((state.transaction, state.interrupted), (None, None));
    assert_eq!(state.last_result, None);
    assert_eq!(agent_cycle(&device, &config), vec![CycleEvent::Idle]);
    assert_eq!(device.boot().unwrap().slot, SlotId::A);
}

/// A `keel-chunked` install through DDI whose power is cut while the image is assembled in slot
/// B (the disk keeping what was written): the attempt is reported as interrupted, and the
/// install of the same action that follows keeps the chunks the cut attempt had already written.
#[test]
fn interrupted_chunked_install_keeps_the_chunks_already_in_place() {
    use keel_delta::chunk::{ChunkIndex, ChunkParams};
    let server = Server::start();
    let pki = pki();
    let mut device = device(&pki, "1.0");
    // 2.0: the factory image with a region rewritten and a tail appended.
    let mut v2 = device.slot_contents(SlotId::A, "rootfs")[..ROOTFS as usize / 2].to_vec();
    v2[10_000..12_000].copy_from_slice(&image(31, 2000));
    v2.extend_from_slice(&image(32, 40 * 1024));
    let mut pack = Vec::new();
    let params = ChunkParams {
        min: 1024,
        avg: 4096,
        max: 16384,
    };
    let index = ChunkIndex::build(&v2[..], params, 3, |_, compressed| {
        pack.extend_from_slice(compressed);
        Ok(())
    })
    .unwrap();
    let manifest = format!(
        "[software]\nversion = \"2.0\"\nhardware-compatibility = [\"1.0\"]\n\
         [[software.images]]\nfilename = \"rootfs.kidx\"\ndevice = \"rootfs\"\ntype = \"keel-chunked\"\n\
         [software.images.properties]\ntarget-sha256 = \"{}\"\ntarget-size = \"{}\"\npack = \"rootfs.kpack\"\n",
        keel_delta::hex(&index.image_sha256),
        index.image_size
    );
    let bundle = pki.bundle(&manifest, &[("rootfs.kidx", &index.to_bytes())]);
    let set = server.release_files(
        "2.0",
        vec![
            ("gateway-os-2.0-dynamic.swu", bundle),
            ("rootfs.kpack", pack),
        ],
    );
    let (config, action) = assigned(&server, "chunky", set);

    // Cut in the appended tail: the chunks before it are in slot B.
    let mut agent = device
        .agent_cut_while_writing(SlotId::B, "rootfs", v2.len() as u64 - 8 * 1024)
        .unwrap();
    agent.config.ddi = Some(config.clone());
    let result = cycle(
        &mut agent,
        &DdiClient::new(&config, &Default::default()).unwrap(),
    );
    assert!(
        device.power_cycle_if_cut(keel_sim::CutMode::KeepUnsynced),
        "{result:?}"
    );
    assert_eq!(device.boot().unwrap().slot, SlotId::A);
    let events = agent_cycle(&device, &config);
    assert_eq!(
        events,
        vec![
            CycleEvent::Interrupted {
                action_id: action.to_string(),
                attempt: 1,
                limit: 3
            },
            CycleEvent::Installed {
                action_id: action.to_string()
            }
        ]
    );
    let log =
        messages(&server.get(&format!("/rest/v1/targets/chunky/actions/{action}"))).join("\n");
    let in_place: u64 = log
        .split(" already in place")
        .next()
        .and_then(|before| before.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no chunk counts in:\n{log}"));
    assert!(in_place > 0, "{log}");
    assert_eq!(device.boot().unwrap().slot, SlotId::B);
    assert!(starts_with(&device.slot_contents(SlotId::B, "rootfs"), &v2));
    let events = agent_cycle(&device, &config);
    assert!(
        events.contains(&CycleEvent::Reported {
            action_id: action.to_string(),
            outcome: Outcome::Success
        }),
        "{events:?}"
    );
    let done = server.get(&format!("/rest/v1/targets/chunky/actions/{action}"));
    assert_eq!(done["status"], "finished", "{log}");
}

/// Cut in the middle of slot B, then reboot: the interrupted attempt of `action` is recorded.
fn interrupt(device: &mut SimDevice, config: &DdiConfig, action: i64) {
    let mut agent = device
        .agent_cut_while_writing(SlotId::B, "rootfs", ROOTFS / 2)
        .unwrap();
    agent.config.ddi = Some(config.clone());
    let _ = cycle(
        &mut agent,
        &DdiClient::new(config, &Default::default()).unwrap(),
    );
    assert!(device.power_cycle_if_cut(keel_sim::CutMode::LoseUnsynced));
    assert_eq!(device.boot().unwrap().slot, SlotId::A);
    let state = device.agent().unwrap().load_state().unwrap();
    assert_eq!(
        state.transaction.and_then(|t| t.action_id),
        Some(action.to_string())
    );
}

/// An interrupted action replaced by a new assignment (the server supersedes it: `canceling`)
/// is dropped with the cancel and the new action installed as a first attempt; one closed at once
/// on the server (forced cancel) is dropped when the poll no longer offers it.
#[test]
fn interrupted_install_of_a_replaced_or_force_cancelled_action_is_dropped() {
    let server = Server::start();
    let pki = pki();
    let first = server.release(bundle(&pki, &image(26, ROOTFS as usize - 4096)));
    let second_rootfs = image(27, ROOTFS as usize - 4096);
    let second = server.release_files(
        "2.1",
        vec![("gateway-os-2.1.swu", bundle(&pki, &second_rootfs))],
    );
    let (config, action) = assigned(&server, "gw4", first);
    let mut device = device(&pki, "1.0");
    interrupt(&mut device, &config, action);
    let replacement = server.post("/rest/v1/targets/gw4/assignedDS", json!({ "id": second }))["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        agent_cycle(&device, &config),
        vec![
            CycleEvent::InterruptedDropped(action.to_string()),
            CycleEvent::CancelAcknowledged(action.to_string())
        ]
    );
    assert_eq!(
        agent_cycle(&device, &config),
        vec![CycleEvent::Installed {
            action_id: replacement.to_string()
        }]
    );
    let log =
        messages(&server.get(&format!("/rest/v1/targets/gw4/actions/{replacement}"))).join("\n");
    assert!(!log.contains("interrupted"), "{log}");
    assert_eq!(device.boot().unwrap().slot, SlotId::B);
    assert!(starts_with(
        &device.slot_contents(SlotId::B, "rootfs"),
        &second_rootfs
    ));

    // Forced cancel: the action is closed on the server before the device hears of it.
    let (config, action) = assigned(&server, "gw5", first);
    let mut device = self::device(&pki, "1.0");
    interrupt(&mut device, &config, action);
    server.call(
        reqwest::Method::DELETE,
        &format!("/rest/v1/targets/gw5/actions/{action}?force=true"),
        None,
        None,
    );
    assert_eq!(
        agent_cycle(&device, &config),
        vec![CycleEvent::InterruptedDropped(action.to_string())]
    );
    assert_eq!(agent_cycle(&device, &config), vec![CycleEvent::Idle]);
    let state = device.agent().unwrap().load_state().unwrap();
    assert_eq!((state.interrupted, state.last_result), (None, None));
}
