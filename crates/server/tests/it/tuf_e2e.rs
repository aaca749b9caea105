//! TUF end to end: keel-server keeps a TUF repository for the tenant (root made offline with keel-tuf-repo
//! and installed in the data directory, imported into the database; online key in the data directory);
//! an uploaded `.swu` becomes a TUF target; keel-agent (on a keel-sim device, `[tuf]` configured) installs a
//! DDI rollout only after TUF verification. Tampering with the artifact on the server's disk, or a bundle
//! that is not a current target, makes the device refuse it before activation and report why in the
//! action's feedback. Changes made outside the server (stale metadata, a removed target) go through
//! `keel_server::tuf::with_repository` from a working copy of their own, as another replica would.

use crate::common;

use common::{image, pki, BlockingServer, Pki};

use keel_agent::config::{DdiConfig, Detect};
use keel_agent::ddi::{cycle, CycleEvent, DdiClient};
use keel_agent::tuf::TufConfig;
use keel_agent::SlotId;
use keel_sim::{DeviceSpec, Loader, SimDevice};
use keel_testkit::tuf::{TufRoot, DAY};
use keel_tuf_repo::{RepoError, Repository, SigningKey, TargetEntry};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

const ROOTFS: u64 = 128 * 1024;

struct Server {
    api: BlockingServer,
    dir: tempfile::TempDir,
    /// A working copy of the repository outside the server's data directory, with the online key.
    editor: tempfile::TempDir,
}

impl std::ops::Deref for Server {
    type Target = BlockingServer;
    fn deref(&self) -> &BlockingServer {
        &self.api
    }
}

impl Server {
    /// A server whose tenant `default` has a TUF repository: root (2 root keys, threshold 2) created offline
    /// in `DATA_DIR/tuf/default`, one online key in `online.pem`.
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("tuf/default");
        let ceremony = TufRoot::new(
            vec![
                SigningKey::generate_ed25519(),
                SigningKey::generate_ecdsa_p256(),
            ],
            2,
        );
        ceremony.create(&repo, keel_tuf::time::system_now() + 365 * DAY);
        let online = &ceremony.online;
        std::fs::write(repo.join("online.pem"), online.to_pkcs8_pem().unwrap()).unwrap();

        let editor = tempfile::tempdir().unwrap();
        std::fs::write(
            editor.path().join("online.pem"),
            online.to_pkcs8_pem().unwrap(),
        )
        .unwrap();

        let mut config = keel_server::Config::for_data_dir(dir.path());
        config.poll_interval = 1;
        Server {
            api: BlockingServer::start(config),
            dir,
            editor,
        }
    }

    /// Runs `work` on the tenant's repository as stored in the database, from the editor's
    /// working copy (under the writer lease, stored back before it returns).
    fn edit<T: Send + 'static>(
        &self,
        work: impl Fn(&mut Repository) -> Result<T, RepoError> + Send + Sync + 'static,
    ) -> T {
        self.api.block_on(async {
            let store = self.store().await;
            keel_server::tuf::with_repository(&store, self.editor.path(), "default", work)
                .await
                .unwrap()
        })
    }

    async fn store(&self) -> keel_server::store::Store {
        keel_server::store::Store::open(self.dir.path(), self.api.database_url.as_deref())
            .await
            .unwrap()
    }

    /// The bytes of a metadata file as the database holds them (what devices are served).
    fn stored(&self, name: &str) -> Vec<u8> {
        self.api.block_on(async {
            self.store()
                .await
                .tuf_file("default", name)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{name} is not stored"))
        })
    }

    /// Uploads a bundle as module `gateway-os` `version`; returns (distribution set id, artifact sha256).
    fn release(&self, version: &str, bundle: Vec<u8>) -> (i64, String) {
        let module = self.post(
            "/rest/v1/softwaremodules",
            json!({ "name": "gateway-os", "version": version }),
        );
        let id = module["id"].as_i64().unwrap();
        let artifact = self.call(
            reqwest::Method::POST,
            &format!("/rest/v1/softwaremodules/{id}/artifacts?filename=gateway-os.swu"),
            None,
            Some(bundle),
        );
        let set = self.post(
            "/rest/v1/distributionsets",
            json!({ "name": "gateway-os", "version": version, "modules": [id] }),
        );
        (
            set["id"].as_i64().unwrap(),
            artifact["sha256"].as_str().unwrap().to_string(),
        )
    }

    fn tuf_dir(&self) -> PathBuf {
        self.dir.path().join("tuf/default")
    }

    fn artifact_path(&self, sha256: &str) -> PathBuf {
        self.api.artifact_file(self.dir.path(), sha256)
    }
}

/// A CMS-signed bundle (keel-bundle) carrying `rootfs`.
fn bundle(pki: &Pki, version: &str, rootfs: &[u8]) -> Vec<u8> {
    let manifest = format!(
        "[software]\nversion = \"{version}\"\nhardware-compatibility = [\"1.0\"]\n\n\
         [[software.images]]\nfilename = \"rootfs.img\"\ndevice = \"rootfs\"\ntype = \"raw\"\n"
    );
    pki.bundle(&manifest, &[("rootfs.img", rootfs)])
}

struct Device {
    sim: SimDevice,
    ddi: DdiConfig,
    tuf: TufConfig,
    _dir: tempfile::TempDir,
}

/// A simulated device with `[tuf]`: the initial root shipped "in the image" is the repository's 1.root.json.
fn device(server: &Server, pki: &Pki, id: &str) -> Device {
    let token = server.post("/rest/v1/targets", json!({ "controllerId": id }))["securityToken"]
        .as_str()
        .unwrap()
        .to_string();
    let mut factory = BTreeMap::new();
    factory.insert("rootfs".to_string(), image(1, ROOTFS as usize / 2));
    let sim = SimDevice::new(DeviceSpec {
        loader: Loader::Ebg,
        targets: vec![("rootfs".into(), ROOTFS)],
        factory,
        trusted_certs: pki.cert.clone(),
        aes_key: None,
        hardware_revision: Some("1.0".into()),
        detect: Detect::Auto,
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.json");
    std::fs::copy(server.tuf_dir().join("metadata/1.root.json"), &root).unwrap();
    let tuf = TufConfig {
        root,
        metadata_url: None,
        build_time: None,
        metadata_dir: Some(dir.path().join("tuf")),
    };
    let ddi = DdiConfig {
        url: server.base.clone(),
        tenant: "default".into(),
        controller_id: id.into(),
        target_token: Some(token),
        gateway_token: None,
        poll_secs: 1,
    };
    Device {
        sim,
        ddi,
        tuf,
        _dir: dir,
    }
}

fn agent_cycle(device: &Device) -> Vec<CycleEvent> {
    let mut agent = device.sim.agent().unwrap();
    agent.config.ddi = Some(device.ddi.clone());
    agent.config.tuf = Some(device.tuf.clone());
    let client = DdiClient::new(&device.ddi, &Default::default()).unwrap();
    cycle(&mut agent, &client).unwrap().0
}

fn messages(server: &Server, id: &str, action: i64) -> String {
    let action = server.get(&format!("/rest/v1/targets/{id}/actions/{action}"));
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
        .collect::<Vec<_>>()
        .join("\n")
}

fn timestamp_version(server: &Server) -> u64 {
    let bytes = server.stored("timestamp.json");
    serde_json::from_slice::<Value>(&bytes).unwrap()["signed"]["version"]
        .as_u64()
        .unwrap()
}

fn assign(server: &Server, id: &str, set: i64) -> i64 {
    server.post(
        &format!("/rest/v1/targets/{id}/assignedDS"),
        json!({ "id": set }),
    )["id"]
        .as_i64()
        .unwrap()
}

fn starts_with(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && &haystack[..prefix.len()] == prefix
}

fn refused(events: &[CycleEvent], action: i64) -> String {
    events
        .iter()
        .find_map(|e| match e {
            CycleEvent::InstallFailed { action_id, message }
                if *action_id == action.to_string() =>
            {
                Some(message.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("action {action} was not refused: {events:?}"))
}

#[test]
fn rollout_installs_only_after_tuf_verification() {
    let server = Server::start();
    let pki = pki();
    let rootfs = image(7, ROOTFS as usize - 4096);
    let (set, _) = server.release("2.0", bundle(&pki, "2.0", &rootfs));
    // The upload made it a target: gateway-os/2.0/gateway-os.swu in a hashed bin.
    let entry = server
        .edit(|repository| Ok(repository.target("gateway-os/2.0/gateway-os.swu")))
        .expect("uploaded artifact is a TUF target");
    assert!(entry.length > ROOTFS / 2);

    // Make every online role stale: published two days ago, the timestamp expired a day ago. Serving
    // timestamp.json to the device re-signs it first (automatic re-signing before expiry).
    let stale = keel_tuf::time::system_now() - 2 * DAY;
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("unrelated.bin"), b"unrelated").unwrap();
    let unrelated = TargetEntry::from_file(&work.path().join("unrelated.bin")).unwrap();
    let before = timestamp_version(&server);
    server.edit(move |repository| {
        repository.add_target("unrelated.bin", unrelated.clone())?;
        repository.publish(stale)
    });
    let expired_version = timestamp_version(&server);
    assert!(expired_version > before, "the stale publish was stored");

    let mut gw = device(&server, &pki, "gw1");
    let action = assign(&server, "gw1", set);
    let events = agent_cycle(&gw);
    assert!(
        timestamp_version(&server) > expired_version,
        "the server re-signed the expired timestamp"
    );
    assert!(
        events.contains(&CycleEvent::Installed {
            action_id: action.to_string()
        }),
        "{events:?}"
    );
    assert!(starts_with(
        &gw.sim.slot_contents(SlotId::B, "rootfs"),
        &rootfs
    ));
    // The device keeps the verified metadata (exact bytes served by keel-server).
    let served = server.stored("timestamp.json");
    assert_eq!(
        std::fs::read(gw.tuf.metadata_dir.as_ref().unwrap().join("timestamp.json")).unwrap(),
        served
    );
    assert_eq!(gw.sim.boot().unwrap().slot, SlotId::B);
    agent_cycle(&gw);
}

#[test]
fn tampered_artifact_on_the_server_disk_is_refused_and_reported() {
    let server = Server::start();
    let pki = pki();
    let rootfs = image(8, ROOTFS as usize - 4096);
    let (set, sha256) = server.release("2.0", bundle(&pki, "2.0", &rootfs));

    // Flip the last byte (cpio padding after the trailer): the CMS signature and every image hash in
    // sw-description still verify; only TUF knows the artifact changed.
    let path = server.artifact_path(&sha256);
    let mut bytes = std::fs::read(&path).unwrap();
    *bytes.last_mut().unwrap() ^= 0x5a;
    std::fs::write(&path, &bytes).unwrap();

    let mut gw = device(&server, &pki, "gw1");
    let action = assign(&server, "gw1", set);
    let message = refused(&agent_cycle(&gw), action);
    assert!(
        message.contains("TUF: target gateway-os/2.0/gateway-os.swu: sha256 hash mismatch"),
        "{message}"
    );
    let history = messages(&server, "gw1", action);
    assert!(history.contains("sha256 hash mismatch"), "{history}");
    let done = server.get(&format!("/rest/v1/targets/gw1/actions/{action}"));
    assert_eq!(done["status"], "error", "{done:#}");
    // Nothing was activated: the device boots the old slot.
    assert_eq!(gw.sim.boot().unwrap().slot, SlotId::A);
}

#[test]
fn validly_signed_bundle_that_is_not_the_tuf_target_is_refused() {
    let server = Server::start();
    let pki = pki();
    let (set, sha256) = server.release(
        "2.0",
        bundle(&pki, "2.0", &image(9, ROOTFS as usize - 4096)),
    );
    // Swap the artifact on disk for another bundle, signed with the same release key.
    let other = bundle(&pki, "2.0", &image(10, ROOTFS as usize - 4096));
    std::fs::write(server.artifact_path(&sha256), &other).unwrap();
    let mut gw = device(&server, &pki, "gw1");
    let action = assign(&server, "gw1", set);
    let message = refused(&agent_cycle(&gw), action);
    assert!(
        message.contains("TUF: target gateway-os/2.0/gateway-os.swu"),
        "{message}"
    );
    assert_eq!(gw.sim.boot().unwrap().slot, SlotId::A);

    // A release whose target was removed from the TUF repository is refused before any download.
    let (set, _) = server.release(
        "3.0",
        bundle(&pki, "3.0", &image(11, ROOTFS as usize - 4096)),
    );
    let removed = server.edit(|repository| {
        let removed = repository.remove_target("gateway-os/3.0/gateway-os.swu");
        repository.publish(keel_tuf::time::system_now())?;
        Ok(removed)
    });
    assert!(removed);
    let gw2 = device(&server, &pki, "gw2");
    let action = assign(&server, "gw2", set);
    let message = refused(&agent_cycle(&gw2), action);
    assert!(message.contains("is not a current TUF target"), "{message}");
    assert!(messages(&server, "gw2", action).contains("is not a current TUF target"));
}
