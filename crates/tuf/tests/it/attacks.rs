//! The TUF attacks, each against a repository written by keel-tuf-repo and a client that already trusts it.
//! Every attack must be refused with an error naming the role and the check, with nothing installed: the client's
//! metadata directory is unchanged (except where noted, e.g. a valid root link before a bad one) and the target
//! file never appears.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keel_testkit::tuf::{TufRoot, DAY};
use keel_tuf::{init_trusted_root, Error, FileFetcher, TimePolicy, Updater, UpdaterConfig};
use keel_tuf_repo::{
    rotate_root, sign_metadata, OnlineKeys, RepoConfig, Repository, RootKeys, SigningKey,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const FIRMWARE: &[u8] = b"genuine firmware image v1";

struct Fixture {
    work: tempfile::TempDir,
    repo: PathBuf,
    client: PathBuf,
    root_keys: Vec<SigningKey>,
    online: SigningKey,
    now: i64,
}

fn config() -> RepoConfig {
    RepoConfig {
        bins: 4,
        ..RepoConfig::default()
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl Fixture {
    /// A repository (root: 2-of-3 ed25519 keys; one online key; 4 hashed bins) with target `fw.swu`, and a client
    /// that refreshed once.
    fn new() -> Self {
        let work = tempfile::tempdir().unwrap();
        let repo = work.path().join("repo");
        let client = work.path().join("client");
        let now = keel_tuf::time::system_now();
        let ceremony = TufRoot::new((0..3).map(|_| SigningKey::generate_ed25519()).collect(), 2);
        let root = ceremony.create(&repo, now + 365 * DAY);
        let TufRoot {
            root_keys, online, ..
        } = ceremony;
        let fixture = Fixture {
            work,
            repo,
            client,
            root_keys,
            online,
            now,
        };
        let mut repository = fixture.repository();
        let payload = fixture.work.path().join("fw.swu");
        std::fs::write(&payload, FIRMWARE).unwrap();
        repository.add_target_file("fw.swu", &payload).unwrap();
        repository.publish(now).unwrap();
        init_trusted_root(&fixture.client, &root).unwrap();
        fixture
            .install("fw.swu")
            .expect("the genuine repository verifies");
        fixture
    }

    fn repository(&self) -> Repository {
        Repository::open(
            &self.repo,
            OnlineKeys::single(self.online.clone()),
            config(),
        )
        .unwrap()
    }

    fn updater_with(&self, time: TimePolicy) -> Updater<FileFetcher> {
        Updater::new(
            &self.client,
            &format!("file://{}/metadata/", self.repo.display()),
            Some(&format!("file://{}/targets/", self.repo.display())),
            FileFetcher,
            UpdaterConfig::default(),
            time,
        )
        .unwrap()
    }

    fn updater(&self) -> Updater<FileFetcher> {
        self.updater_with(TimePolicy {
            fixed_now: Some(self.now),
            ..TimePolicy::default()
        })
    }

    fn installed_path(&self) -> PathBuf {
        self.work.path().join("installed.swu")
    }

    /// Refresh, look the target up and download it to `installed.swu` (only after verification).
    fn install_with(
        &self,
        mut updater: Updater<FileFetcher>,
        name: &str,
    ) -> Result<Vec<u8>, Error> {
        let _ = std::fs::remove_file(self.installed_path());
        updater.refresh()?;
        let info = updater.require_target(name)?;
        updater.download_target_to_file(&info, &self.installed_path())?;
        Ok(std::fs::read(self.installed_path()).unwrap())
    }

    fn install(&self, name: &str) -> Result<Vec<u8>, Error> {
        self.install_with(self.updater(), name)
    }

    /// File name → sha256 of every file in the client's metadata directory.
    fn client_files(&self) -> BTreeMap<String, String> {
        std::fs::read_dir(&self.client)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    sha256_hex(&std::fs::read(e.path()).unwrap()),
                )
            })
            .collect()
    }

    /// Runs `install` and checks that it fails, that nothing is installed and that no metadata file other than
    /// `valid` (roles the attacker could sign validly with compromised keys) was persisted.
    fn assert_rejected_allowing(
        &self,
        updater: Updater<FileFetcher>,
        name: &str,
        valid: &[&str],
    ) -> Error {
        let before = self.client_files();
        let error = self
            .install_with(updater, name)
            .expect_err("the attack must be refused");
        let after = self.client_files();
        let changed: Vec<&String> = before
            .keys()
            .chain(after.keys())
            .filter(|file| before.get(*file) != after.get(*file))
            .collect();
        for file in changed {
            assert!(
                valid.contains(&file.as_str()),
                "{file} was persisted during a refused update ({error})"
            );
        }
        assert!(
            !self.installed_path().exists(),
            "a target was installed: {error}"
        );
        error
    }

    fn assert_rejected_with(&self, updater: Updater<FileFetcher>, name: &str) -> Error {
        self.assert_rejected_allowing(updater, name, &[])
    }

    fn assert_rejected(&self, name: &str) -> Error {
        self.assert_rejected_with(self.updater(), name)
    }

    fn metadata_path(&self, file: &str) -> PathBuf {
        self.repo.join("metadata").join(file)
    }

    fn signed(&self, file: &str) -> Value {
        let envelope: Value =
            serde_json::from_slice(&std::fs::read(self.metadata_path(file)).unwrap()).unwrap();
        envelope["signed"].clone()
    }

    fn write(&self, file: &str, signed: &Value, keys: &[&SigningKey]) -> Vec<u8> {
        let bytes = sign_metadata(signed, keys).unwrap();
        std::fs::write(self.metadata_path(file), &bytes).unwrap();
        bytes
    }

    fn bin_of(&self, target: &str) -> String {
        let targets = self.signed("targets.json");
        let digest = sha256_hex(target.as_bytes());
        let roles = targets["delegations"]["roles"].as_array().unwrap();
        let role = roles
            .iter()
            .find(|r| {
                r["path_hash_prefixes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| digest.starts_with(p.as_str().unwrap()))
            })
            .unwrap();
        role["name"].as_str().unwrap().to_string()
    }

    /// Publishes new versions of `role` (signed by `role_key`), snapshot (by `snapshot_key`) and timestamp (by
    /// `timestamp_key`), as an attacker holding those keys would.
    fn publish_chain(
        &self,
        role: &str,
        role_signed: &Value,
        role_key: &SigningKey,
        snapshot_key: &SigningKey,
        timestamp_key: &SigningKey,
    ) {
        let version = role_signed["version"].as_u64().unwrap();
        let bytes = self.write(&format!("{version}.{role}.json"), role_signed, &[role_key]);
        let mut snapshot = self.signed("snapshot.json");
        snapshot["meta"][format!("{role}.json")] = json!({"version": version, "length": bytes.len(), "hashes": {"sha256": sha256_hex(&bytes)}});
        self.publish_snapshot(&mut snapshot, snapshot_key, timestamp_key);
    }

    /// Writes `snapshot` with its version bumped, and a timestamp pointing at it.
    fn publish_snapshot(
        &self,
        snapshot: &mut Value,
        snapshot_key: &SigningKey,
        timestamp_key: &SigningKey,
    ) {
        let version = snapshot["version"].as_u64().unwrap() + 1;
        snapshot["version"] = json!(version);
        let bytes = self.write(
            &format!("{version}.snapshot.json"),
            snapshot,
            &[snapshot_key],
        );
        std::fs::write(self.metadata_path("snapshot.json"), &bytes).unwrap();
        let mut timestamp = self.signed("timestamp.json");
        timestamp["version"] = json!(timestamp["version"].as_u64().unwrap() + 1);
        timestamp["meta"]["snapshot.json"] = json!({"version": version, "length": bytes.len(), "hashes": {"sha256": sha256_hex(&bytes)}});
        self.write("timestamp.json", &timestamp, &[timestamp_key]);
    }

    /// A legitimate new release (`fw.swu` replaced), published by the repository.
    fn release(&self, content: &[u8]) {
        let mut repository = self.repository();
        let payload = self.work.path().join("release");
        std::fs::write(&payload, content).unwrap();
        repository.add_target_file("fw.swu", &payload).unwrap();
        repository.publish(self.now).unwrap();
    }

    fn target_file(&self, content: &[u8]) -> PathBuf {
        self.repo
            .join("targets")
            .join(format!("{}.fw.swu", sha256_hex(content)))
    }
}

fn evil_target(signed: &mut Value, content: &[u8]) {
    signed["targets"]["fw.swu"] =
        json!({"length": content.len(), "hashes": {"sha256": sha256_hex(content)}});
    signed["version"] = json!(signed["version"].as_u64().unwrap() + 1);
}

fn role_of(error: &Error) -> String {
    match error {
        Error::Malformed { role, .. }
        | Error::WrongType { role, .. }
        | Error::SpecVersion { role, .. }
        | Error::Threshold { role, .. }
        | Error::VersionMismatch { role, .. }
        | Error::Rollback { role, .. }
        | Error::SameVersion { role, .. }
        | Error::Expired { role, .. }
        | Error::LengthMismatch { role, .. }
        | Error::TooLarge { role, .. }
        | Error::HashMismatch { role, .. }
        | Error::UnsupportedHash { role, .. }
        | Error::MissingMeta { role, .. }
        | Error::Fetch { role, .. } => role.clone(),
        other => panic!("unexpected error {other}"),
    }
}

// ---- Arbitrary software -------------------------------------------------------------------------------------

#[test]
fn arbitrary_software_signed_by_an_attacker_key_is_refused() {
    let f = Fixture::new();
    let attacker = SigningKey::generate_ed25519();
    let evil = b"malicious firmware";
    std::fs::write(f.target_file(evil), evil).unwrap();
    let bin = f.bin_of("fw.swu");
    let mut signed = f.signed(&format!("{bin}.json"));
    evil_target(&mut signed, evil);

    // The whole chain signed by the attacker: the timestamp is refused first.
    f.publish_chain(&bin, &signed, &attacker, &attacker, &attacker);
    let error = f.assert_rejected("fw.swu");
    assert!(
        matches!(&error, Error::Threshold { role, valid: 0, threshold: 1, .. } if role == "timestamp"),
        "{error}"
    );
}

#[test]
fn arbitrary_software_in_a_bin_not_signed_by_its_delegated_key_is_refused() {
    let f = Fixture::new();
    let attacker = SigningKey::generate_ed25519();
    let evil = b"malicious firmware";
    std::fs::write(f.target_file(evil), evil).unwrap();
    let bin = f.bin_of("fw.swu");
    let mut signed = f.signed(&format!("{bin}.json"));
    evil_target(&mut signed, evil);
    // Snapshot and timestamp are genuinely signed (compromised online snapshot/timestamp key); the bin is not.
    f.publish_chain(&bin, &signed, &attacker, &f.online, &f.online);
    let error =
        f.assert_rejected_allowing(f.updater(), "fw.swu", &["timestamp.json", "snapshot.json"]);
    assert!(
        matches!(&error, Error::Threshold { role, delegator, .. } if *role == bin && delegator == "targets"),
        "{error}"
    );
}

#[test]
fn unsigned_timestamp_is_refused() {
    let f = Fixture::new();
    let mut timestamp = f.signed("timestamp.json");
    timestamp["version"] = json!(timestamp["version"].as_u64().unwrap() + 1);
    f.write("timestamp.json", &timestamp, &[]);
    let error = f.assert_rejected("fw.swu");
    assert!(
        matches!(&error, Error::Threshold { role, valid: 0, .. } if role == "timestamp"),
        "{error}"
    );
}

#[test]
fn metadata_signed_by_a_key_of_another_role_is_refused() {
    let f = Fixture::new();
    let mut timestamp = f.signed("timestamp.json");
    timestamp["version"] = json!(timestamp["version"].as_u64().unwrap() + 1);
    // Root keys are trusted, but not for the timestamp role.
    f.write(
        "timestamp.json",
        &timestamp,
        &[&f.root_keys[0], &f.root_keys[1]],
    );
    let error = f.assert_rejected("fw.swu");
    assert!(
        matches!(&error, Error::Threshold { role, valid: 0, .. } if role == "timestamp"),
        "{error}"
    );
}

#[test]
fn tampered_target_bytes_are_refused() {
    let f = Fixture::new();
    let stored = f.target_file(FIRMWARE);
    let mut tampered = FIRMWARE.to_vec();
    tampered[0] ^= 0x01;
    std::fs::write(&stored, &tampered).unwrap();
    let error = f.assert_rejected("fw.swu");
    assert!(
        matches!(&error, Error::HashMismatch { role, algorithm } if role == "target fw.swu" && algorithm == "sha256"),
        "{error}"
    );
}

// ---- Rollback -------------------------------------------------------------------------------------------

#[test]
fn timestamp_rollback_is_refused() {
    let f = Fixture::new();
    let old_timestamp = std::fs::read(f.metadata_path("timestamp.json")).unwrap();
    f.release(b"firmware v2");
    assert_eq!(f.install("fw.swu").unwrap(), b"firmware v2");
    std::fs::write(f.metadata_path("timestamp.json"), old_timestamp).unwrap();
    let error = f.assert_rejected("fw.swu");
    assert!(
        matches!(&error, Error::Rollback { role, trusted: 2, found: 1 } if role == "timestamp"),
        "{error}"
    );
}

#[test]
fn snapshot_rollback_is_refused() {
    let f = Fixture::new();
    f.release(b"firmware v2");
    f.install("fw.swu").unwrap();
    // A (compromised-key) timestamp pointing back at snapshot version 1.
    let mut timestamp = f.signed("timestamp.json");
    timestamp["version"] = json!(timestamp["version"].as_u64().unwrap() + 1);
    let old = std::fs::read(f.metadata_path("1.snapshot.json")).unwrap();
    timestamp["meta"]["snapshot.json"] =
        json!({"version": 1, "length": old.len(), "hashes": {"sha256": sha256_hex(&old)}});
    f.write("timestamp.json", &timestamp, &[&f.online]);
    let error = f.assert_rejected("fw.swu");
    assert!(
        matches!(&error, Error::Rollback { role, trusted: 2, found: 1 } if role.starts_with("snapshot")),
        "{error}"
    );
}

#[test]
fn targets_rollback_is_refused() {
    let f = Fixture::new();
    let bin = f.bin_of("fw.swu");
    f.release(b"firmware v2");
    f.install("fw.swu").unwrap();
    // A new snapshot (compromised key) listing the bin at its old version 1 with the old bytes.
    let mut snapshot = f.signed("snapshot.json");
    let old = std::fs::read(f.metadata_path(&format!("1.{bin}.json"))).unwrap();
    snapshot["meta"][format!("{bin}.json")] =
        json!({"version": 1, "length": old.len(), "hashes": {"sha256": sha256_hex(&old)}});
    f.publish_snapshot(&mut snapshot, &f.online, &f.online);
    let error = f.assert_rejected_allowing(f.updater(), "fw.swu", &["timestamp.json"]);
    assert!(
        matches!(&error, Error::Rollback { role, trusted: 2, found: 1 } if *role == format!("{bin}.json (meta in snapshot)")),
        "{error}"
    );
}

#[test]
fn root_rollback_is_refused() {
    let f = Fixture::new();
    // Version 2 is a genuine rotation; "3.root.json" replays version 1 (validly signed by the same keys).
    let keys = RootKeys::from_signed(&f.signed("root.json")).unwrap();
    rotate_root(
        &f.repo,
        &keys,
        &[&f.root_keys[0], &f.root_keys[1]],
        f.now + 365 * DAY,
    )
    .unwrap();
    std::fs::copy(
        f.metadata_path("1.root.json"),
        f.metadata_path("3.root.json"),
    )
    .unwrap();
    let error = f
        .install("fw.swu")
        .expect_err("the replayed root must be refused");
    assert!(
        matches!(&error, Error::VersionMismatch { role, expected: 3, found: 1 } if role == "root"),
        "{error}"
    );
    assert!(!f.installed_path().exists());
    let stored: Value =
        serde_json::from_slice(&std::fs::read(f.client.join("root.json")).unwrap()).unwrap();
    assert_eq!(
        stored["signed"]["version"], 2,
        "the valid link is kept, the replay is not"
    );
}

// ---- Freeze -------------------------------------------------------------------------------------------

#[test]
fn expired_timestamp_is_refused() {
    let f = Fixture::new();
    // Two days later the repository has not re-signed: the mirror serves a frozen, expired timestamp.
    let later = TimePolicy {
        fixed_now: Some(f.now + 2 * DAY),
        ..TimePolicy::default()
    };
    let error = f.assert_rejected_with(f.updater_with(later), "fw.swu");
    assert!(
        matches!(&error, Error::Expired { role, .. } if role == "timestamp"),
        "{error}"
    );
}

#[test]
fn device_without_rtc_uses_the_build_time_floor() {
    let f = Fixture::new();
    // A freshly flashed device whose clock says 1970 would accept the frozen metadata...
    let fresh = f.work.path().join("fresh-client");
    init_trusted_root(
        &fresh,
        &std::fs::read(f.metadata_path("1.root.json")).unwrap(),
    )
    .unwrap();
    let updater = |time: TimePolicy| {
        Updater::new(
            &fresh,
            &format!("file://{}/metadata/", f.repo.display()),
            None,
            FileFetcher,
            UpdaterConfig::default(),
            time,
        )
        .unwrap()
    };
    let mut epoch = updater(TimePolicy {
        fixed_now: Some(0),
        ..TimePolicy::default()
    });
    epoch.refresh().unwrap();
    // ...but its image was built after the timestamp expired, and time is never earlier than the build time.
    let floor = TimePolicy {
        fixed_now: Some(0),
        build_time_floor: f.now + 2 * DAY,
        ..TimePolicy::default()
    };
    let error = updater(floor)
        .refresh()
        .expect_err("expired at the build time floor");
    assert!(
        matches!(&error, Error::Expired { role, .. } if role == "timestamp"),
        "{error}"
    );

    // The persisted floor: after a successful refresh at day 0.5 a clock reset to 1970 still counts as day 0.5.
    let floor_file = f.work.path().join("time-floor");
    let policy = |now| TimePolicy {
        fixed_now: Some(now),
        floor_file: Some(floor_file.clone()),
        ..TimePolicy::default()
    };
    updater(policy(f.now + DAY / 2)).refresh().unwrap();
    assert_eq!(policy(0).reference_time(), f.now + DAY / 2);
}

// ---- Mix and match ----------------------------------------------------------------------------------------

#[test]
fn snapshot_not_matching_the_timestamp_is_refused() {
    let f = Fixture::new();
    f.release(b"firmware v2");
    // The mirror serves a validly signed but different snapshot (mixing in the old bin) under the name the
    // timestamp points at.
    let bin = f.bin_of("fw.swu");
    let mut other = f.signed("2.snapshot.json");
    other["meta"][format!("{bin}.json")] =
        f.signed("1.snapshot.json")["meta"][format!("{bin}.json")].clone();
    f.write("2.snapshot.json", &other, &[&f.online]);
    let error = f.assert_rejected_allowing(f.updater(), "fw.swu", &["timestamp.json"]);
    assert!(
        matches!(&error, Error::HashMismatch { role, .. } | Error::LengthMismatch { role, .. } if role == "snapshot"),
        "{error}"
    );
}

#[test]
fn targets_metadata_not_matching_the_snapshot_is_refused() {
    let f = Fixture::new();
    let bin = f.bin_of("fw.swu");
    let old_bin = std::fs::read(f.metadata_path(&format!("1.{bin}.json"))).unwrap();
    f.release(b"firmware v2");
    // Mix: the new snapshot with the old bin served under the new bin's name.
    std::fs::write(f.metadata_path(&format!("2.{bin}.json")), old_bin).unwrap();
    let error =
        f.assert_rejected_allowing(f.updater(), "fw.swu", &["timestamp.json", "snapshot.json"]);
    assert!(
        matches!(&error, Error::HashMismatch { role, .. } | Error::LengthMismatch { role, .. } if *role == bin),
        "{error}"
    );
}

// ---- Endless data ---------------------------------------------------------------------------------------------

fn pad(path: &Path, to: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes.resize(to, b' ');
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn oversized_timestamp_is_refused() {
    let f = Fixture::new();
    pad(&f.metadata_path("timestamp.json"), 1 << 20);
    let error = f.assert_rejected("fw.swu");
    assert!(
        matches!(&error, Error::TooLarge { role, limit: 16_384 } if role == "timestamp"),
        "{error}"
    );
}

#[test]
fn oversized_root_is_refused() {
    let f = Fixture::new();
    let keys = RootKeys::from_signed(&f.signed("root.json")).unwrap();
    rotate_root(
        &f.repo,
        &keys,
        &[&f.root_keys[0], &f.root_keys[1]],
        f.now + 365 * DAY,
    )
    .unwrap();
    pad(&f.metadata_path("2.root.json"), 2 << 20);
    let error = f.assert_rejected("fw.swu");
    assert!(
        matches!(&error, Error::TooLarge { role, .. } if role == "root"),
        "{error}"
    );
}

#[test]
fn snapshot_longer_than_the_timestamp_says_is_refused() {
    let f = Fixture::new();
    f.release(b"firmware v2");
    let path = f.metadata_path("2.snapshot.json");
    let length = std::fs::read(&path).unwrap().len();
    pad(&path, length + 10_000_000);
    let error = f.assert_rejected_allowing(f.updater(), "fw.swu", &["timestamp.json"]);
    assert!(
        matches!(&error, Error::TooLarge { role, .. } if role == "snapshot"),
        "{error}"
    );
}

#[test]
fn endless_target_is_refused() {
    let f = Fixture::new();
    let stored = f.target_file(FIRMWARE);
    let mut endless = FIRMWARE.to_vec();
    endless.resize(50_000_000, 0);
    std::fs::write(&stored, endless).unwrap();
    let error = f.assert_rejected("fw.swu");
    assert!(
        matches!(&error, Error::TooLarge { role, limit } if role == "target fw.swu" && *limit == FIRMWARE.len() as u64),
        "{error}"
    );
}

// ---- Threshold ----------------------------------------------------------------------------------------------

#[test]
fn root_below_threshold_is_refused() {
    let f = Fixture::new();
    let keys = RootKeys::from_signed(&f.signed("root.json")).unwrap();
    rotate_root(
        &f.repo,
        &keys,
        &[&f.root_keys[0], &f.root_keys[1]],
        f.now + 365 * DAY,
    )
    .unwrap();
    // Re-sign version 2 with only one of the 2-of-3 root keys.
    let signed = f.signed("2.root.json");
    f.write("2.root.json", &signed, &[&f.root_keys[2]]);
    let error = f.assert_rejected("fw.swu");
    assert!(
        matches!(&error, Error::Threshold { role, valid: 1, threshold: 2, .. } if role == "root"),
        "{error}"
    );
}

#[test]
fn duplicate_signatures_do_not_count_twice() {
    let f = Fixture::new();
    let keys = RootKeys::from_signed(&f.signed("root.json")).unwrap();
    rotate_root(
        &f.repo,
        &keys,
        &[&f.root_keys[0], &f.root_keys[1]],
        f.now + 365 * DAY,
    )
    .unwrap();
    let signed = f.signed("2.root.json");
    let bytes = f.write("2.root.json", &signed, &[&f.root_keys[0]]);
    let mut envelope: Value = serde_json::from_slice(&bytes).unwrap();
    let signature = envelope["signatures"][0].clone();
    envelope["signatures"]
        .as_array_mut()
        .unwrap()
        .push(signature);
    std::fs::write(
        f.metadata_path("2.root.json"),
        serde_json::to_vec(&envelope).unwrap(),
    )
    .unwrap();
    let error = f.assert_rejected("fw.swu");
    assert!(
        matches!(&error, Error::Malformed { role, .. } if role == "root"),
        "{error}"
    );
}

// ---- Root rotation chain ------------------------------------------------------------------------------------

#[test]
fn root_chain_with_a_bad_link_stops_at_the_last_good_root() {
    let f = Fixture::new();
    // 2.root.json: a genuine rotation to new keys (signed by old and new).
    let new_root_keys: Vec<SigningKey> =
        (0..2).map(|_| SigningKey::generate_ecdsa_p256()).collect();
    let mut keys = RootKeys::from_signed(&f.signed("root.json")).unwrap();
    keys.root = new_root_keys.iter().map(SigningKey::public).collect();
    keys.root_threshold = 2;
    rotate_root(
        &f.repo,
        &keys,
        &[
            &f.root_keys[0],
            &f.root_keys[1],
            &new_root_keys[0],
            &new_root_keys[1],
        ],
        f.now + 365 * DAY,
    )
    .unwrap();
    // 3.root.json: signed only by its own (attacker) keys, not by version 2's keys.
    let attacker: Vec<SigningKey> = (0..2).map(|_| SigningKey::generate_ed25519()).collect();
    let mut bad = f.signed("2.root.json");
    bad["version"] = json!(3);
    let mut attacker_keys = keys.clone();
    attacker_keys.root = attacker.iter().map(SigningKey::public).collect();
    let replaced = RootKeys { ..attacker_keys };
    let mut key_map = serde_json::Map::new();
    for key in replaced.root.iter().chain(&replaced.targets) {
        key_map.insert(key.key_id().to_string(), key.value.clone());
    }
    bad["keys"] = Value::Object(key_map);
    bad["roles"]["root"]["keyids"] = json!(replaced
        .root
        .iter()
        .map(|k| k.key_id().to_string())
        .collect::<Vec<_>>());
    f.write("3.root.json", &bad, &[&attacker[0], &attacker[1]]);

    let error = f
        .install("fw.swu")
        .expect_err("the bad link must be refused");
    assert!(
        matches!(&error, Error::Threshold { role, delegator, valid: 0, .. } if role == "root" && delegator == "trusted root"),
        "{error}"
    );
    assert!(!f.installed_path().exists());
    let stored: Value =
        serde_json::from_slice(&std::fs::read(f.client.join("root.json")).unwrap()).unwrap();
    assert_eq!(stored["signed"]["version"], 2);

    // A link that skips a version is refused too.
    let mut skipping = f.signed("2.root.json");
    skipping["version"] = json!(4);
    f.write(
        "3.root.json",
        &skipping,
        &[&new_root_keys[0], &new_root_keys[1]],
    );
    let error = f
        .install("fw.swu")
        .expect_err("a skipped version must be refused");
    assert!(
        matches!(&error, Error::VersionMismatch { role, expected: 3, found: 4 } if role == "root"),
        "{error}"
    );
}

// ---- Fast-forward recovery ---------------------------------------------------------------------------------

/// Rotates the timestamp and snapshot keys in a new root and re-opens the repository with them.
fn rotate_online_keys(f: &Fixture) -> SigningKey {
    let new_online = SigningKey::generate_ed25519();
    let mut keys = RootKeys::from_signed(&f.signed("root.json")).unwrap();
    keys.timestamp = vec![new_online.public()];
    keys.snapshot = vec![new_online.public()];
    rotate_root(
        &f.repo,
        &keys,
        &[&f.root_keys[0], &f.root_keys[1]],
        f.now + 365 * DAY,
    )
    .unwrap();
    let online = OnlineKeys {
        targets: f.online.clone(),
        snapshot: new_online.clone(),
        timestamp: new_online.clone(),
    };
    let mut repository = Repository::open(&f.repo, online, config()).unwrap();
    let payload = f.work.path().join("recovered");
    std::fs::write(&payload, b"after recovery").unwrap();
    repository.add_target_file("fw.swu", &payload).unwrap();
    repository.publish(f.now).unwrap();
    new_online
}

#[test]
fn timestamp_fast_forward_is_recovered_by_key_rotation() {
    let f = Fixture::new();
    // An attacker with the timestamp key pushes version 1000; the client accepts it (it is validly signed).
    let mut timestamp = f.signed("timestamp.json");
    timestamp["version"] = json!(1000);
    let genuine = std::fs::read(f.metadata_path("timestamp.json")).unwrap();
    f.write("timestamp.json", &timestamp, &[&f.online]);
    f.install("fw.swu").unwrap();
    std::fs::write(f.metadata_path("timestamp.json"), genuine).unwrap();
    // Until the keys rotate, every genuine timestamp looks like a rollback...
    let error = f.assert_rejected("fw.swu");
    assert!(
        matches!(&error, Error::Rollback { role, trusted: 1000, .. } if role == "timestamp"),
        "{error}"
    );
    // ...after the rotation the client recovers.
    rotate_online_keys(&f);
    assert_eq!(f.install("fw.swu").unwrap(), b"after recovery");
}

#[test]
fn snapshot_and_targets_fast_forward_is_recovered_by_key_rotation() {
    let f = Fixture::new();
    let bin = f.bin_of("fw.swu");
    // An attacker with the snapshot and timestamp keys lists the bin at version 1000.
    let mut snapshot = f.signed("snapshot.json");
    snapshot["meta"][format!("{bin}.json")]["version"] = json!(1000);
    f.publish_snapshot(&mut snapshot, &f.online, &f.online);
    let error = f
        .install("fw.swu")
        .expect_err("bin version 1000 does not exist");
    assert!(
        matches!(&error, Error::Fetch { role, .. } if *role == bin),
        "{error}"
    );
    // The repository rotates the snapshot and timestamp keys; the client recovers.
    rotate_online_keys(&f);
    assert_eq!(f.install("fw.swu").unwrap(), b"after recovery");
    assert!(role_of(&error) == bin);
}

// ---- Delegation graphs --------------------------------------------------------------------------------------

/// A "diamond": `parent-a` and `parent-b` both delegate a role named `release`, each to its own key, and `release`
/// is signed only by parent A's key. One updater looks up `team-a/fw.swu` (through A: valid) and then
/// `team-b/fw.swu` (through B): the `release` loaded through A must not be trusted through B
/// (tuf-conformance `test_cached_role_is_verified_against_current_delegator`).
#[test]
fn cached_role_is_verified_against_the_current_delegator() {
    let f = Fixture::new();
    let (key_a, key_b) = (
        SigningKey::generate_ed25519(),
        SigningKey::generate_ed25519(),
    );
    let (release_a, release_b) = (
        SigningKey::generate_ed25519(),
        SigningKey::generate_ed25519(),
    );
    let expires = "2099-01-01T00:00:00Z";
    let delegations = |keys: &[&SigningKey], roles: Value| {
        let keys: serde_json::Map<String, Value> = keys
            .iter()
            .map(|k| (k.key_id(), k.public().value.clone()))
            .collect();
        json!({"keys": keys, "roles": roles})
    };
    let role = |name: &str, key: &SigningKey, path: &str| json!({"name": name, "keyids": [key.key_id()], "threshold": 1, "terminating": false, "paths": [path]});
    let targets_role = |version: u64, targets: Value, delegations: Value| {
        json!({"_type": "targets", "spec_version": "1.0.31", "version": version, "expires": expires,
               "targets": targets, "delegations": delegations})
    };
    let (good, evil) = (b"trusted A".as_slice(), b"malicious B".as_slice());
    let file = |content: &[u8]| json!({"length": content.len(), "hashes": {"sha256": sha256_hex(content)}});
    let mut snapshot = f.signed("snapshot.json");
    let mut publish = |name: &str, signed: &Value, keys: &[&SigningKey]| {
        let version = signed["version"].as_u64().unwrap();
        let bytes = f.write(&format!("{version}.{name}.json"), signed, keys);
        snapshot["meta"][format!("{name}.json")] = json!({"version": version, "length": bytes.len(), "hashes": {"sha256": sha256_hex(&bytes)}});
    };
    let mut top = f.signed("targets.json");
    top["version"] = json!(top["version"].as_u64().unwrap() + 1);
    let keys = top["delegations"]["keys"].as_object_mut().unwrap();
    for key in [&key_a, &key_b] {
        keys.insert(key.key_id(), key.public().value.clone());
    }
    let roles = top["delegations"]["roles"].as_array_mut().unwrap();
    roles.insert(0, role("parent-a", &key_a, "team-a/*"));
    roles.insert(1, role("parent-b", &key_b, "team-b/*"));
    publish("targets", &top, &[&f.online]);
    let parent_a = targets_role(
        1,
        json!({}),
        delegations(
            &[&release_a],
            json!([role("release", &release_a, "team-a/*")]),
        ),
    );
    publish("parent-a", &parent_a, &[&key_a]);
    let parent_b = targets_role(
        1,
        json!({}),
        delegations(
            &[&release_b],
            json!([role("release", &release_b, "team-b/*")]),
        ),
    );
    publish("parent-b", &parent_b, &[&key_b]);
    let release = targets_role(
        1,
        json!({"team-a/fw.swu": file(good), "team-b/fw.swu": file(evil)}),
        delegations(&[], json!([])),
    );
    publish("release", &release, &[&release_a]);
    f.publish_snapshot(&mut snapshot, &f.online, &f.online);
    for (dir, content) in [("team-a", good), ("team-b", evil)] {
        let dir = f.repo.join("targets").join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}.fw.swu", sha256_hex(content))), content).unwrap();
    }

    let mut updater = f.updater();
    updater.refresh().unwrap();
    let a = updater.require_target("team-a/fw.swu").unwrap();
    assert_eq!(a.file.length, good.len() as u64);
    let error = updater
        .require_target("team-b/fw.swu")
        .expect_err("release is not signed by parent-b's key for it");
    assert!(
        matches!(&error, Error::Threshold { role, delegator, .. } if role == "release" && delegator == "parent-b"),
        "{error}"
    );
}
