//! Delta and dynamic bundles through keel-server, end to end with keel-agent's DDI cycle on
//! simulated devices (keel-sim). One software module holds four artifacts: the full bundle, a
//! static delta from 1.0, a dynamic bundle (`keel-chunked` index) and its pack. The server
//! classifies each upload by its sw-description and offers each device one bundle:
//! * a device whose booted slot holds 1.0 (reported as configData) gets the static delta;
//! * a device holding an image the server has no delta for gets the dynamic bundle and fetches
//!   only the chunks it lacks with HTTP Range requests on the pack (counted by the agent and
//!   reported in its feedback);
//! * a device that reported nothing gets the full bundle;
//! * a pack with a corrupted chunk fails the install, the slot is never activated and the
//!   failure is reported.

use crate::common;

use common::{image, pki, BlockingServer, Pki};

use keel_agent::config::{DdiConfig, Detect};
use keel_agent::ddi::{cycle, CycleEvent, DdiClient};
use keel_agent::state::Outcome;
use keel_agent::SlotId;
use keel_delta::chunk::{ChunkIndex, ChunkParams};
use keel_delta::testing::texty;
use keel_sim::{DeviceSpec, Loader, SimDevice};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

const SLOT: u64 = 1280 * 1024;
const PARAMS: ChunkParams = ChunkParams {
    min: 1024,
    avg: 4096,
    max: 16384,
};

use hex::encode as hex;

/// Version 1.0 of the rootfs, and 2.0: a few regions rewritten and a tail appended.
fn versions() -> (Vec<u8>, Vec<u8>) {
    let v1 = image(10, 1024 * 1024);
    let mut v2 = v1.clone();
    v2[20_000..24_000].copy_from_slice(&image(11, 4000));
    v2[650_000..651_000].copy_from_slice(&image(12, 1000));
    v2.extend_from_slice(&image(13, 16 * 1024));
    (v1, v2)
}

const HEAD: &str = "[software]\nversion = \"2.0\"\n[[software.images]]\ndevice = \"rootfs\"\n";

struct Release {
    full: Vec<u8>,
    delta: Vec<u8>,
    dynamic: Vec<u8>,
    pack: Vec<u8>,
}

fn release(pki: &Pki, v1: &[u8], v2: &[u8]) -> Release {
    let full = pki.bundle(
        &format!("{HEAD}filename = \"rootfs.img\"\ntype = \"raw\"\n"),
        &[("rootfs.img", v2)],
    );
    let mut delta_bytes = Vec::new();
    keel_delta::create(v1, v2, &Default::default(), &mut delta_bytes).unwrap();
    let delta = pki.bundle(
        &format!(
            "{HEAD}filename = \"rootfs.kdelta\"\ntype = \"keel-delta\"\n[software.images.properties]\n\
             source-sha256 = \"{}\"\ntarget-sha256 = \"{}\"\n",
            hex(Sha256::digest(v1)),
            hex(Sha256::digest(v2))
        ),
        &[("rootfs.kdelta", &delta_bytes)],
    );
    let mut pack = Vec::new();
    let index = ChunkIndex::build(v2, PARAMS, 3, |_, compressed| {
        pack.extend_from_slice(compressed);
        Ok(())
    })
    .unwrap();
    let dynamic = pki.bundle(
        &format!(
            "{HEAD}filename = \"rootfs.kidx\"\ntype = \"keel-chunked\"\n[software.images.properties]\n\
             target-sha256 = \"{}\"\ntarget-size = \"{}\"\npack = \"rootfs.kpack\"\n",
            hex(index.image_sha256),
            index.image_size
        ),
        &[("rootfs.kidx", &index.to_bytes())],
    );
    Release {
        full,
        delta,
        dynamic,
        pack,
    }
}

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

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = keel_server::Config::for_data_dir(dir.path());
    config.poll_interval = 1;
    Server {
        api: BlockingServer::start(config),
        _dir: dir,
    }
}

/// Uploads the artifacts into one module; returns (distribution set id, upload answers).
fn publish(server: &Server, version: &str, artifacts: &[(&str, &[u8])]) -> (i64, Vec<Value>) {
    let module = server.post(
        "/rest/v1/softwaremodules",
        json!({ "name": "gateway-os", "version": version }),
    )["id"]
        .as_i64()
        .unwrap();
    let uploaded = artifacts
        .iter()
        .map(|(name, data)| {
            server.call(
                reqwest::Method::POST,
                &format!("/rest/v1/softwaremodules/{module}/artifacts?filename={name}"),
                None,
                Some(data.to_vec()),
            )
        })
        .collect();
    let set = server.post(
        "/rest/v1/distributionsets",
        json!({ "name": "gateway-os", "version": version, "modules": [module] }),
    )["id"]
        .as_i64()
        .unwrap();
    (set, uploaded)
}

/// A device whose slot A holds `factory`; with `report`, the agent knows its size
/// (`factory_image_sizes`) and so reports the slot's sha256.
struct Device {
    sim: SimDevice,
    ddi: DdiConfig,
    factory_size: Option<u64>,
}

fn device(server: &Server, pki: &Pki, id: &str, factory: &[u8], report: bool) -> Device {
    let token = server.post("/rest/v1/targets", json!({ "controllerId": id }))["securityToken"]
        .as_str()
        .unwrap()
        .to_string();
    let mut images = BTreeMap::new();
    images.insert("rootfs".to_string(), factory.to_vec());
    let sim = SimDevice::new(DeviceSpec {
        loader: Loader::Ebg,
        targets: vec![("rootfs".into(), SLOT)],
        factory: images,
        trusted_certs: pki.cert.clone(),
        aes_key: None,
        hardware_revision: None,
        detect: Detect::Auto,
    })
    .unwrap();
    Device {
        sim,
        ddi: DdiConfig {
            url: server.base.clone(),
            tenant: "default".into(),
            controller_id: id.into(),
            target_token: Some(token),
            gateway_token: None,
            poll_secs: 1,
        },
        factory_size: report.then_some(factory.len() as u64),
    }
}

impl Device {
    /// One `keel-agent run` cycle (a fresh agent process).
    fn cycle(&self) -> Vec<CycleEvent> {
        let mut agent = self.sim.agent().unwrap();
        agent.config.ddi = Some(self.ddi.clone());
        if let Some(size) = self.factory_size {
            agent
                .config
                .factory_image_sizes
                .insert("rootfs".into(), size);
        }
        cycle(
            &mut agent,
            &DdiClient::new(&self.ddi, &Default::default()).unwrap(),
        )
        .unwrap()
        .0
    }
}

fn assign(server: &Server, id: &str, set: i64) -> i64 {
    server.post(
        &format!("/rest/v1/targets/{id}/assignedDS"),
        json!({ "id": set }),
    )["id"]
        .as_i64()
        .unwrap()
}

fn messages(server: &Server, id: &str, action: i64) -> String {
    let action = server.get(&format!("/rest/v1/targets/{id}/actions/{action}"));
    action["history"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["messages"].as_array().unwrap().clone())
        .map(|m| m.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn action_status(server: &Server, id: &str, action: i64) -> String {
    server.get(&format!("/rest/v1/targets/{id}/actions/{action}"))["status"]
        .as_str()
        .unwrap()
        .to_string()
}

fn starts_with(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && &haystack[..prefix.len()] == prefix
}

/// Installs, reboots into B, confirms and checks the action finished.
fn install_and_confirm(server: &Server, dev: &mut Device, action: i64, v2: &[u8]) -> String {
    let events = dev.cycle();
    assert!(
        events.contains(&CycleEvent::Installed {
            action_id: action.to_string()
        }),
        "{events:?}\n{}",
        messages(server, &dev.ddi.controller_id, action)
    );
    assert!(starts_with(&dev.sim.slot_contents(SlotId::B, "rootfs"), v2));
    assert_eq!(dev.sim.boot().unwrap().slot, SlotId::B);
    let events = dev.cycle();
    assert!(
        events.contains(&CycleEvent::Reported {
            action_id: action.to_string(),
            outcome: Outcome::Success
        }),
        "{events:?}"
    );
    assert_eq!(
        action_status(server, &dev.ddi.controller_id, action),
        "finished"
    );
    messages(server, &dev.ddi.controller_id, action)
}

#[test]
fn server_offers_delta_dynamic_or_full_by_the_reported_slot() {
    let server = start();
    let pki = pki();
    let (v1, v2) = versions();
    let r = release(&pki, &v1, &v2);
    let (set, uploaded) = publish(
        &server,
        "2.0",
        &[
            ("gateway-os-2.0.swu", &r.full),
            ("gateway-os-2.0-from-1.0.swu", &r.delta),
            ("gateway-os-2.0-dynamic.swu", &r.dynamic),
            ("rootfs.kpack", &r.pack),
        ],
    );
    // The upload answers carry the classification.
    let variants: Vec<&Value> = uploaded.iter().map(|a| &a["variant"]).collect();
    assert_eq!(
        variants,
        [
            &json!("full"),
            &json!("delta"),
            &json!("chunked"),
            &Value::Null
        ]
    );
    assert_eq!(
        uploaded[1]["deltaSources"],
        json!([hex(Sha256::digest(&v1))])
    );
    assert_eq!(uploaded[2]["packs"], json!(["rootfs.kpack"]));

    // 1. Slot holds 1.0 → the static delta.
    let mut on_v1 = device(&server, &pki, "on-v1", &v1, true);
    let action = assign(&server, "on-v1", set);
    let log = install_and_confirm(&server, &mut on_v1, action, &v2);
    assert!(log.contains("gateway-os-2.0-from-1.0.swu"), "{log}");
    // After the confirm the device reports what slot B holds now: 2.0.
    let attributes = &server.get("/rest/v1/targets/on-v1")["attributes"];
    assert_eq!(attributes["keel.slot"], "B");
    assert_eq!(
        attributes["keel.slot.rootfs.sha256"],
        json!(hex(Sha256::digest(&v2)))
    );
    assert_eq!(attributes["keel.version"], "2.0");

    // 2. Slot holds an image the server has no delta for (1.0 with a local patch) → dynamic:
    //    only the chunks the device lacks travel.
    let mut patched = v1.clone();
    patched[90_000..92_000].copy_from_slice(&image(14, 2000));
    let mut other = device(&server, &pki, "patched", &patched, true);
    let action = assign(&server, "patched", set);
    let log = install_and_confirm(&server, &mut other, action, &v2);
    assert!(log.contains("gateway-os-2.0-dynamic.swu"), "{log}");
    let fetched: u64 = log
        .split("keel-chunked: fetched ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no fetch count in:\n{log}"));
    eprintln!(
        "dynamic over HTTP: fetched {fetched} bytes of a {}-byte image (pack {} bytes, full bundle {} bytes)",
        v2.len(),
        r.pack.len(),
        r.full.len()
    );
    assert!(
        fetched * 10 < v2.len() as u64,
        "fetched {fetched} of {} bytes",
        v2.len()
    );

    // 3. Reported nothing → the full bundle (what SWUpdate and other hawkBit clients get).
    let mut silent = device(&server, &pki, "silent", &v1, false);
    let action = assign(&server, "silent", set);
    let log = install_and_confirm(&server, &mut silent, action, &v2);
    assert!(log.contains("gateway-os-2.0.swu"), "{log}");
    // From now on it reports the image it wrote itself.
    assert_eq!(
        server.get("/rest/v1/targets/silent")["attributes"]["keel.slot.rootfs.sha256"],
        json!(hex(Sha256::digest(&v2)))
    );
}

#[test]
fn corrupted_pack_chunk_fails_the_install_and_is_reported() {
    let server = start();
    let pki = pki();
    let (v1, v2) = versions();
    let r = release(&pki, &v1, &v2);
    // Damage the last chunk (the appended tail, which no device holds).
    let mut pack = r.pack.clone();
    let at = pack.len() - 20;
    pack[at] ^= 0x01;
    let (set, _) = publish(
        &server,
        "2.0",
        &[
            ("gateway-os-2.0.swu", &r.full),
            ("gateway-os-2.0-dynamic.swu", &r.dynamic),
            ("rootfs.kpack", &pack),
        ],
    );
    let mut dev = device(&server, &pki, "victim", &v1, true);
    let action = assign(&server, "victim", set);
    let events = dev.cycle();
    assert!(
        events.iter().any(
            |e| matches!(e, CycleEvent::InstallFailed { message, .. } if message.contains("chunk"))
        ),
        "{events:?}"
    );
    assert_eq!(action_status(&server, "victim", action), "error");
    let log = messages(&server, "victim", action);
    assert!(log.contains("chunk"), "{log}");
    // Never activated: the device boots slot A, which still holds 1.0.
    assert_eq!(dev.sim.boot().unwrap().slot, SlotId::A);
    assert!(starts_with(
        &dev.sim.slot_contents(SlotId::A, "rootfs"),
        &v1
    ));
}

/// `mksquashfs -comp zstd` (level 15, every block a standalone zstd frame) of a small tree; the
/// second version rewrites part of two files and adds one.
fn squashfs(work: &std::path::Path, name: &str, edit: bool) -> Vec<u8> {
    let tree = work.join(name);
    std::fs::create_dir_all(tree.join("usr/lib")).unwrap();
    for i in 0..10u64 {
        let mut data = texty(100 + i, 40_000 + 9_000 * i as usize);
        if edit && i % 4 == 1 {
            data[5_000..9_000].copy_from_slice(&texty(200 + i, 4_000));
        }
        std::fs::write(tree.join(format!("usr/lib/lib{i}.so")), data).unwrap();
    }
    if edit {
        std::fs::write(tree.join("usr/lib/new.so"), texty(300, 30_000)).unwrap();
    }
    let image = work.join(format!("{name}.squashfs"));
    keel_delta::testing::mksquashfs_zstd(&tree, &image)
}

/// What deploymentBase offers a device that reports `attributes` by hand (configData, as any
/// DDI client may): the file names of the first chunk's artifacts.
fn offered_after_reporting(
    server: &Server,
    id: &str,
    token: &str,
    attributes: Value,
) -> Vec<String> {
    let dev = common::SimDevice::new(&server.base, id, token);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let status = dev
            .client
            .put(format!("{}/configData", dev.url()))
            .header("Authorization", &dev.auth)
            .json(&json!({ "mode": "replace", "data": attributes }))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "configData: {status}");
        let poll = dev.poll().await.unwrap();
        let href = poll["_links"]["deploymentBase"]["href"]
            .as_str()
            .unwrap_or_else(|| panic!("no deployment for {id}: {poll}"));
        let (status, base) = dev.get_json(href).await;
        assert!(status.is_success(), "deploymentBase: {status}");
        base["deployment"]["chunks"][0]["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["filename"].as_str().unwrap().to_string())
            .collect()
    })
}

/// A static delta of zstd-compressed squashfs images recompresses their frames on the device:
/// `keel bundle create` (delta-from) marks it with the zstd version (`zstd-frames`), the server
/// offers it only to devices reporting that version as `keel.delta.zstd` (keel-agent does), and
/// keel-agent installs it end to end. A device reporting another zstd version, or none, gets the
/// full bundle.
#[test]
fn framed_delta_is_offered_only_to_the_same_zstd_version() {
    let work = tempfile::tempdir().unwrap();
    let v1 = squashfs(work.path(), "v1", false);
    let v2 = squashfs(work.path(), "v2", true);
    assert!((v2.len() as u64) < SLOT, "{} bytes", v2.len());
    let server = start();
    let pki = pki();
    let full = pki.bundle(
        &format!("{HEAD}filename = \"rootfs.img\"\ntype = \"raw\"\n"),
        &[("rootfs.img", &v2)],
    );
    let delta = pki.bundle(
        &format!("{HEAD}filename = \"rootfs.img\"\ndelta-from = \"v1.img\"\n"),
        &[("rootfs.img", &v2), ("v1.img", &v1)],
    );
    let ours = keel_delta::frames::zstd_version().to_string();
    let (set, uploaded) = publish(
        &server,
        "2.0",
        &[
            ("gateway-os-2.0.swu", &full),
            ("gateway-os-2.0-from-1.0.swu", &delta),
        ],
    );
    assert_eq!(uploaded[1]["variant"], json!("delta"));
    assert_eq!(uploaded[1]["zstdFrames"], json!([ours]), "{}", uploaded[1]);
    assert_eq!(uploaded[0]["zstdFrames"], json!([]));
    assert!(
        delta.len() * 4 < full.len(),
        "framed delta bundle {} bytes, full {}",
        delta.len(),
        full.len()
    );

    // keel-agent reports its zstd version and installs the framed delta.
    let mut agent_device = device(&server, &pki, "framed", &v1, true);
    let action = assign(&server, "framed", set);
    let log = install_and_confirm(&server, &mut agent_device, action, &v2);
    assert!(log.contains("gateway-os-2.0-from-1.0.swu"), "{log}");
    assert_eq!(
        server.get("/rest/v1/targets/framed")["attributes"]["keel.delta.zstd"],
        json!(ours)
    );

    // Devices holding 1.0 that report another zstd version, or none: the full bundle.
    let v1_sha = hex(Sha256::digest(&v1));
    for (id, zstd) in [("other-zstd", Some("10404")), ("no-zstd", None)] {
        let token = server.post("/rest/v1/targets", json!({ "controllerId": id }))["securityToken"]
            .as_str()
            .unwrap()
            .to_string();
        assign(&server, id, set);
        let mut attributes = json!({ "keel.slot": "A", "keel.slot.rootfs.sha256": v1_sha });
        if let Some(zstd) = zstd {
            attributes["keel.delta.zstd"] = json!(zstd);
        }
        assert_eq!(
            offered_after_reporting(&server, id, &token, attributes),
            ["gateway-os-2.0.swu"],
            "{id}"
        );
    }
    // The same by hand with our version: the delta (the pick is by the reported attribute).
    let token = server.post("/rest/v1/targets", json!({ "controllerId": "same-zstd" }))
        ["securityToken"]
        .as_str()
        .unwrap()
        .to_string();
    assign(&server, "same-zstd", set);
    assert_eq!(
        offered_after_reporting(
            &server,
            "same-zstd",
            &token,
            json!({ "keel.slot.rootfs.sha256": v1_sha, "keel.delta.zstd": ours }),
        ),
        ["gateway-os-2.0-from-1.0.swu"]
    );
}
