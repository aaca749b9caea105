//! Pruning old TUF metadata versions (docs/tuf.md, "Pruning old versions"): a tenant whose
//! repository is published on every upload for years keeps a bounded number of versions, and no
//! client ever misses a file it can still ask for.
//!
//! Time passes by moving the `stored_at` of every stored file back (as if it had been stored that
//! long ago); the signed metadata is untouched, so timestamps stay valid. Runs on SQLite, and on
//! PostgreSQL with `KEEL_TEST_DATABASE=postgres`. Clients: python-tuf's ngclient (a real peer) and
//! keel-tuf's `Updater`, both fetching with DDI credentials.
//!
//! - `stored_versions_stay_bounded_and_old_clients_still_refresh`: rounds of uploads, each a
//!   "day and more" after the last: versions older than the grace period are deleted from the
//!   database and the working copy, never a root; clients that trust the first root and an old
//!   snapshot (from before a root rotation) refresh to the newest and find every target.
//! - `a_refresh_that_read_the_previous_timestamp_finds_its_files`: a timestamp fetched before the
//!   next publish (and a prune) still leads to every file it names; once that publish is older
//!   than the grace period the files are gone.

use crate::common;

use common::tuf::{refresh_blocking, versions, DeviceFetcher};
use common::{Mgmt, TestServer};
use keel_testkit::tuf::{online_keys, TufRoot, DAY};
use keel_tuf_repo::SigningKey;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A server whose tenant `default` has a TUF repository (root installed in its data directory),
/// and the offline side that made the root.
struct Repo {
    server: TestServer,
    mgmt: Mgmt,
    root_key: SigningKey,
    online: SigningKey,
    offline: tempfile::TempDir,
}

impl Repo {
    async fn start() -> Repo {
        let server = TestServer::start().await;
        let offline = tempfile::tempdir().unwrap();
        let ceremony = TufRoot::single();
        ceremony.create(offline.path(), keel_tuf::time::system_now() + 365 * DAY);
        let (root_key, online) = (ceremony.root_keys[0].clone(), ceremony.online.clone());
        let tenant = server.dir.path().join("tuf/default");
        std::fs::create_dir_all(tenant.join("metadata")).unwrap();
        std::fs::write(tenant.join("online.pem"), online.to_pkcs8_pem().unwrap()).unwrap();
        for name in ["1.root.json", "root.json"] {
            std::fs::copy(
                offline.path().join("metadata").join(name),
                tenant.join("metadata").join(name),
            )
            .unwrap();
        }
        let mgmt = server.mgmt();
        Repo {
            server,
            mgmt,
            root_key,
            online,
            offline,
        }
    }

    fn working_copy(&self) -> PathBuf {
        self.server.dir.path().join("tuf/default/metadata")
    }

    /// Uploads module `os` `version`; returns its target name and sha256.
    async fn upload(&self, version: &str) -> (String, String) {
        let seed = version
            .bytes()
            .fold(11u8, |seed, b| seed.wrapping_mul(31).wrapping_add(b));
        let bytes = common::random_bytes(1024, seed);
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        self.mgmt.release("os", version, "os.swu", bytes).await;
        (
            keel_tuf::artifact_target_name("os", version, "os.swu"),
            sha256,
        )
    }

    async fn pool(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let url = match &self.server.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}",
                self.server.dir.path().join("keel.db").display()
            ),
        };
        sqlx::AnyPool::connect(&url).await.unwrap()
    }

    /// Lets `seconds` pass for everything stored so far.
    async fn age(&self, seconds: i64) {
        let pool = self.pool().await;
        sqlx::query("UPDATE tuf_metadata SET stored_at = stored_at - $1 WHERE tenant = 'default'")
            .bind(seconds * 1000)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }

    /// The database's metadata files: name → bytes.
    async fn stored(&self) -> BTreeMap<String, Vec<u8>> {
        let pool = self.pool().await;
        let rows: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT name, bytes FROM tuf_metadata WHERE tenant = 'default'")
                .fetch_all(&pool)
                .await
                .unwrap();
        pool.close().await;
        rows.into_iter().collect()
    }

    /// Rotates the root offline and drops the new version into the server's directory.
    fn rotate_root(&self) -> Vec<u8> {
        let bytes = keel_tuf_repo::rotate_root(
            self.offline.path(),
            &online_keys(&[&self.root_key], 1, &self.online),
            &[&self.root_key],
            keel_tuf::time::system_now() + 365 * DAY,
        )
        .unwrap();
        let (version, _, _) = keel_tuf_repo::current_root(self.offline.path()).unwrap();
        std::fs::write(
            self.working_copy().join(format!("{version}.root.json")),
            &bytes,
        )
        .unwrap();
        bytes
    }

    fn metadata_url(&self, device: &str) -> String {
        format!("{}/default/controller/v1/{device}/tuf/", self.server.base)
    }
}

fn local_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// A device's trusted TUF state (starting from the first root, as shipped in its image) and
/// DDI token.
struct Device {
    id: String,
    token: String,
    python_dir: tempfile::TempDir,
    keel_dir: tempfile::TempDir,
}

impl Device {
    async fn register(repo: &Repo, id: &str) -> Device {
        let token = repo.mgmt.device(id, &[]).await;
        let root = std::fs::read(repo.offline.path().join("metadata/1.root.json")).unwrap();
        let python_dir = tempfile::tempdir().unwrap();
        std::fs::write(python_dir.path().join("root.json"), &root).unwrap();
        let keel_dir = tempfile::tempdir().unwrap();
        keel_tuf::updater::init_trusted_root(keel_dir.path(), &root).unwrap();
        Device {
            id: id.into(),
            token,
            python_dir,
            keel_dir,
        }
    }

    /// Refreshes with python-tuf's ngclient (reading `timestamp` instead of fetching it, if
    /// given): Ok((trusted root version, name → sha256 listed)) or Err(its error output).
    fn python_refresh(
        &self,
        repo: &Repo,
        timestamp: Option<&Path>,
        names: &[String],
    ) -> Result<(u64, BTreeMap<String, String>), String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/tuf_refresh.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .arg(repo.metadata_url(&self.id))
            .arg(&self.token)
            .arg(self.python_dir.path());
        if let Some(timestamp) = timestamp {
            command.arg("--timestamp").arg(timestamp);
        }
        let output = command
            .args(names)
            .output()
            .expect("python3 must be installed");
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        let result: Value = serde_json::from_slice(&output.stdout).unwrap();
        let found = result["targets"]
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(name, sha256)| Some((name.clone(), sha256.as_str()?.to_string())))
            .collect();
        Ok((result["root"].as_u64().unwrap(), found))
    }

    /// Refreshes with keel-tuf's `Updater`: (trusted root version, name → sha256 listed).
    async fn keel_refresh(&self, repo: &Repo, names: &[String]) -> (u64, BTreeMap<String, String>) {
        let fetcher = DeviceFetcher {
            token: self.token.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        let (dir, url, names) = (
            self.keel_dir.path().to_path_buf(),
            repo.metadata_url(&self.id),
            names.to_vec(),
        );
        tokio::task::spawn_blocking(move || refresh_blocking(&dir, &url, fetcher, &names))
            .await
            .unwrap()
    }
}

/// Time passing "more than the grace period" at once.
fn past_grace() -> i64 {
    keel_server::tuf::prune_grace_secs() + 60
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_versions_stay_bounded_and_old_clients_still_refresh() {
    const UPLOADS_PER_ROUND: usize = 6;
    const ROUNDS: usize = 5;
    let repo = Repo::start().await;
    let mut expected = BTreeMap::new();
    let (name, sha256) = repo.upload("first").await;
    expected.insert(name, sha256);
    // Two devices trust the first root and the first snapshot (one per client implementation).
    let device = Device::register(&repo, "gw1").await;
    let names: Vec<String> = expected.keys().cloned().collect();
    assert_eq!(
        device.python_refresh(&repo, None, &names).unwrap(),
        (1, expected.clone())
    );
    assert_eq!(
        device.keel_refresh(&repo, &names).await,
        (1, expected.clone())
    );

    let mut rotated = None;
    let mut oldest_snapshots = Vec::new();
    for round in 0..ROUNDS {
        repo.age(past_grace()).await;
        if round == 1 {
            // A root rotation in between: the chain 1 → 2 must stay walkable.
            rotated = Some(repo.rotate_root());
        }
        for i in 0..UPLOADS_PER_ROUND {
            let (name, sha256) = repo.upload(&format!("{round}.{i}")).await;
            expected.insert(name, sha256);
        }
        let stored = repo.stored().await;
        let versions = versions(stored.keys());
        let snapshots = &versions["snapshot.json"];
        // This round's snapshots, and the one current when the round began (a client may have
        // read a timestamp pointing at it just before): nothing younger than the grace period.
        assert_eq!(
            snapshots.len(),
            UPLOADS_PER_ROUND + 1,
            "round {round}: snapshot versions stored: {snapshots:?}"
        );
        oldest_snapshots.push(snapshots[0]);
        // Every other role keeps exactly the versions from the one the oldest kept snapshot
        // lists to the current one.
        let oldest: Value =
            serde_json::from_slice(&stored[&format!("{}.snapshot.json", snapshots[0])]).unwrap();
        for (file, entry) in oldest["signed"]["meta"].as_object().unwrap() {
            let from = entry["version"].as_u64().unwrap();
            let list = &versions[file.as_str()];
            let to = *list.last().unwrap();
            assert_eq!(
                list,
                &(from..=to).collect::<Vec<_>>(),
                "round {round}: {file}"
            );
        }
        // Every role keeps at most the versions of this round and the one before it.
        let versioned_files: usize = versions
            .iter()
            .filter(|(role, _)| *role != "root.json")
            .map(|(_, list)| list.len())
            .sum();
        assert!(
            versioned_files <= 2 * (UPLOADS_PER_ROUND + 1) + 17,
            "round {round}: {versioned_files} versioned files stored: {versions:?}"
        );
        // Roots are never pruned.
        let roots = if round >= 1 { vec![1, 2] } else { vec![1] };
        assert_eq!(versions["root.json"], roots, "round {round}");
        // The working copy holds exactly the database's files.
        assert_eq!(
            local_names(&repo.working_copy()),
            stored.keys().cloned().collect::<Vec<_>>(),
            "round {round}: working copy"
        );
        for (name, bytes) in &stored {
            assert!(
                std::fs::read(repo.working_copy().join(name)).unwrap() == *bytes,
                "{name}"
            );
        }
    }
    assert!(
        oldest_snapshots.windows(2).all(|w| w[0] < w[1]),
        "old snapshots were pruned each round: {oldest_snapshots:?}"
    );
    let total_snapshots = 1 + ROUNDS * UPLOADS_PER_ROUND;
    assert!(oldest_snapshots[ROUNDS - 1] as usize >= total_snapshots - UPLOADS_PER_ROUND);

    // The devices, still at root 1 and the first snapshot, refresh to the newest.
    let names: Vec<String> = expected.keys().cloned().collect();
    assert_eq!(
        device.python_refresh(&repo, None, &names).unwrap(),
        (2, expected.clone()),
        "python-tuf"
    );
    assert_eq!(
        device.keel_refresh(&repo, &names).await,
        (2, expected.clone()),
        "keel-tuf"
    );
    // A device shipped with root 1 that never refreshed before finds everything too.
    let fresh = Device::register(&repo, "gw2").await;
    assert_eq!(
        fresh.python_refresh(&repo, None, &names).unwrap(),
        (2, expected.clone())
    );
    assert_eq!(repo.stored().await["2.root.json"], rotated.unwrap());
    repo.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_that_read_the_previous_timestamp_finds_its_files() {
    let repo = Repo::start().await;
    let mut expected = BTreeMap::new();
    for i in 0..4 {
        let (name, sha256) = repo.upload(&format!("1.{i}")).await;
        expected.insert(name, sha256);
    }
    repo.age(past_grace()).await;
    // A client reads the timestamp now...
    let stored = repo.stored().await;
    let old_timestamp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(old_timestamp.path(), &stored["timestamp.json"]).unwrap();
    let timestamp: Value = serde_json::from_slice(&stored["timestamp.json"]).unwrap();
    let snapshot_version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
        .as_u64()
        .unwrap();
    let names_then: Vec<String> = expected.keys().cloned().collect();
    let expected_then = expected.clone();
    // ...then two uploads publish (and prune what is older than the grace period)...
    for i in 4..6 {
        let (name, sha256) = repo.upload(&format!("1.{i}")).await;
        expected.insert(name, sha256);
    }
    let stored = repo.stored().await;
    let snapshots = versions(stored.keys())["snapshot.json"].clone();
    assert_eq!(
        snapshots,
        vec![snapshot_version, snapshot_version + 1, snapshot_version + 2],
        "older snapshots were pruned, the one the read timestamp names was not"
    );
    // ...and fetches the rest: the snapshot, targets and bins that timestamp leads to.
    let device = Device::register(&repo, "gw1").await;
    assert_eq!(
        device
            .python_refresh(&repo, Some(old_timestamp.path()), &names_then)
            .unwrap(),
        (1, expected_then.clone())
    );

    // A day and more after the next publish, that timestamp has expired for every client: its
    // files go at the next publish.
    repo.age(past_grace()).await;
    let (name, sha256) = repo.upload("1.6").await;
    expected.insert(name, sha256);
    let stored = repo.stored().await;
    assert_eq!(
        versions(stored.keys())["snapshot.json"],
        vec![snapshot_version + 2, snapshot_version + 3]
    );
    let late = Device::register(&repo, "gw2").await;
    let error = late
        .python_refresh(&repo, Some(old_timestamp.path()), &names_then)
        .unwrap_err();
    assert!(
        error.contains(&format!("{snapshot_version}.snapshot.json")),
        "{error}"
    );
    // A refresh that fetches the current timestamp finds everything.
    let names: Vec<String> = expected.keys().cloned().collect();
    assert_eq!(
        late.python_refresh(&repo, None, &names).unwrap(),
        (1, expected.clone())
    );
    assert_eq!(late.keel_refresh(&repo, &names).await, (1, expected));
    repo.server.stop().await;
}
