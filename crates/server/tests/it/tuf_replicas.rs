//! One TUF repository per tenant, served and signed by several keel-server replicas that share
//! only the database (docs/tuf.md, "Server: a repository per tenant"; docs/scale-out.md).
//!
//! Two real `keel-server` processes on one PostgreSQL database, each with a data directory of
//! its own and the same online key; the offline root is installed in replica 1's directory only.
//! A TUF client (keel-tuf's `Updater`, with DDI credentials) refreshes from either replica.
//!
//! - `replicas_with_their_own_data_dirs_sign_one_repository`: uploads alternate between the
//!   replicas; the device refreshes from replica 2, then from replica 1, and finds every target;
//!   every metadata file either replica holds equals the database's (no version was signed twice
//!   with different bytes), and both serve the same bytes; serving a fresh timestamp does not wait
//!   for the writer lease. A root rotation dropped into replica 2's directory reaches devices
//!   through replica 1; a root not signed by the old root keys is not imported.
//! - `concurrent_uploads_to_both_replicas_lose_no_target`: uploads to both replicas at the same
//!   time; every one becomes a target.
//! - `stores_built_on_an_outdated_copy_are_refused`: the compare-and-swap store behind the lease
//!   (on the test database, SQLite or PostgreSQL).

use crate::common;

use common::replica::Replica;
use common::tuf::{refresh_blocking, versions, DeviceFetcher};
use common::Mgmt;
use keel_testkit::tuf::{online_keys, TufRoot, DAY};
use keel_tuf_repo::SigningKey;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The offline side: root keys and the repository `keel tuf init` made.
struct Offline {
    root_key: SigningKey,
    online: SigningKey,
    repo: tempfile::TempDir,
}

impl Offline {
    fn init() -> Offline {
        let repo = tempfile::tempdir().unwrap();
        let ceremony = TufRoot::single();
        ceremony.create(repo.path(), keel_tuf::time::system_now() + 365 * DAY);
        let (root_key, online) = (ceremony.root_keys[0].clone(), ceremony.online.clone());
        Offline {
            root_key,
            online,
            repo,
        }
    }

    fn file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.repo.path().join("metadata").join(name)).unwrap()
    }
}

/// Two replicas on one PostgreSQL database, each with its own data directory holding the online
/// key; the root is installed in replica 1's directory only.
struct Cluster {
    database_url: String,
    dirs: [tempfile::TempDir; 2],
    replicas: [Replica; 2],
    mgmt: [Mgmt; 2],
    offline: Offline,
}

impl Cluster {
    fn start() -> Cluster {
        let offline = Offline::init();
        let database_url = common::postgres_database_url();
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        for dir in &dirs {
            let tenant = dir.path().join("tuf/default");
            std::fs::create_dir_all(&tenant).unwrap();
            std::fs::write(
                tenant.join("online.pem"),
                offline.online.to_pkcs8_pem().unwrap(),
            )
            .unwrap();
        }
        let installed = dirs[0].path().join("tuf/default/metadata");
        std::fs::create_dir_all(&installed).unwrap();
        for name in ["1.root.json", "root.json"] {
            std::fs::write(installed.join(name), offline.file(name)).unwrap();
        }
        let first = Replica::start(dirs[0].path(), &database_url, None);
        let second = Replica::start(dirs[1].path(), &database_url, None);
        let admin = first.admin_token.clone().expect("admin token");
        let mgmt = |replica: &Replica| Mgmt {
            client: reqwest::Client::new(),
            base: replica.base.clone(),
            token: Some(admin.clone()),
        };
        let mgmt = [mgmt(&first), mgmt(&second)];
        Cluster {
            database_url,
            dirs,
            replicas: [first, second],
            mgmt,
            offline,
        }
    }

    /// Uploads `os.swu` of module `os` `version` through replica `replica`; returns its target name
    /// and sha256.
    async fn upload(&self, replica: usize, version: &str) -> (String, String) {
        let seed = version
            .bytes()
            .fold(7u8, |seed, b| seed.wrapping_mul(31).wrapping_add(b));
        let bytes = common::random_bytes(2048, seed);
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        self.mgmt[replica]
            .release("os", version, "os.swu", bytes)
            .await;
        (
            keel_tuf::artifact_target_name("os", version, "os.swu"),
            sha256,
        )
    }

    /// The database's metadata files of tenant `default`: name → bytes.
    async fn stored(&self) -> BTreeMap<String, Vec<u8>> {
        let pool = sqlx::PgPool::connect(&self.database_url).await.unwrap();
        let rows: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT name, bytes FROM tuf_metadata WHERE tenant = 'default'")
                .fetch_all(&pool)
                .await
                .unwrap();
        pool.close().await;
        rows.into_iter().collect()
    }

    /// Every versioned metadata file in either replica's working copy equals the database's, and
    /// every role's versions are stored from 1 without a gap.
    async fn assert_one_history(&self) {
        let stored = self.assert_working_copies_match().await;
        for (role, list) in versions(stored.keys()) {
            let expected: Vec<u64> = (1..=list.len() as u64).collect();
            assert_eq!(list, expected, "versions of {role}");
        }
    }

    /// Every versioned metadata file in either replica's working copy equals the database's (so
    /// none outlives its pruning); returns the database's files.
    async fn assert_working_copies_match(&self) -> BTreeMap<String, Vec<u8>> {
        let stored = self.stored().await;
        for dir in &self.dirs {
            let metadata = dir.path().join("tuf/default/metadata");
            for entry in std::fs::read_dir(&metadata).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                if !name.starts_with(|c: char| c.is_ascii_digit()) {
                    continue;
                }
                let local = std::fs::read(metadata.join(&name)).unwrap();
                assert!(
                    stored.get(&name) == Some(&local),
                    "{name} in {} differs from the database's",
                    metadata.display()
                );
                assert_eq!(
                    Some(&local),
                    stored.get(&name),
                    "{name} in {} differs from the database's",
                    metadata.display()
                );
            }
        }
        stored
    }

    /// Lets `seconds` pass for every stored metadata file (as if stored that long ago).
    async fn age(&self, seconds: i64) {
        let pool = sqlx::PgPool::connect(&self.database_url).await.unwrap();
        sqlx::query("UPDATE tuf_metadata SET stored_at = stored_at - $1 WHERE tenant = 'default'")
            .bind(seconds * 1000)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
}

/// A device: its trusted metadata directory (initial root from the image) and DDI token.
struct Device {
    id: String,
    token: String,
    dir: tempfile::TempDir,
}

impl Device {
    async fn register(cluster: &Cluster, id: &str) -> Device {
        let token = cluster.mgmt[0].device(id, &[]).await;
        let dir = tempfile::tempdir().unwrap();
        keel_tuf::updater::init_trusted_root(dir.path(), &cluster.offline.file("1.root.json"))
            .unwrap();
        Device {
            id: id.to_string(),
            token,
            dir,
        }
    }

    fn metadata_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Refreshes from `base` and looks up `names`: (trusted root version, name → sha256 listed).
    async fn refresh(&self, base: &str, names: &[String]) -> (u64, BTreeMap<String, String>) {
        let url = format!("{base}/default/controller/v1/{}/tuf/", self.id);
        let fetcher = DeviceFetcher {
            token: self.token.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        let (dir, names) = (self.metadata_dir(), names.to_vec());
        tokio::task::spawn_blocking(move || refresh_blocking(&dir, &url, fetcher, &names))
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_their_own_data_dirs_sign_one_repository() {
    let cluster = Cluster::start();
    // Replica 1 imports the installed root on first use; uploads then alternate.
    let mut expected = BTreeMap::new();
    for (i, version) in ["1.0", "1.1", "1.2", "1.3", "1.4", "1.5"]
        .iter()
        .enumerate()
    {
        let (name, sha256) = cluster.upload(i % 2, version).await;
        expected.insert(name, sha256);
    }
    let names: Vec<String> = expected.keys().cloned().collect();
    let device = Device::register(&cluster, "gw1").await;
    let (root, found) = device.refresh(&cluster.replicas[1].base, &names).await;
    assert_eq!(root, 1);
    assert_eq!(
        found, expected,
        "every upload is a target, seen from replica 2"
    );

    // One more through replica 2; the device continues from replica 1.
    let (name, sha256) = cluster.upload(1, "1.6").await;
    expected.insert(name, sha256);
    let names: Vec<String> = expected.keys().cloned().collect();
    let (_, found) = device.refresh(&cluster.replicas[0].base, &names).await;
    assert_eq!(
        found, expected,
        "every upload is a target, seen from replica 1"
    );
    cluster.assert_one_history().await;

    // Serving a fresh timestamp does not need the writer lease: with another holder keeping it,
    // devices still get timestamp.json at once (a writer would wait 30 s for it, then fail).
    let store =
        keel_server::store::Store::open(Path::new("/nonexistent"), Some(&cluster.database_url))
            .await
            .unwrap();
    assert!(store
        .acquire_lease("tuf:default", "someone-else", 120_000)
        .await
        .unwrap());
    let started = std::time::Instant::now();
    for replica in &cluster.replicas {
        for _ in 0..5 {
            let (_, found) = device.refresh(&replica.base, &names).await;
            assert_eq!(found, expected);
        }
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "device refreshes waited for the writer lease: {:?}",
        started.elapsed()
    );
    store
        .release_lease("tuf:default", "someone-else")
        .await
        .unwrap();

    // Both replicas serve the same bytes for every stored file.
    let stored = cluster.stored().await;
    for (name, bytes) in &stored {
        for replica in &cluster.replicas {
            let served = reqwest::Client::new()
                .get(format!(
                    "{}/default/controller/v1/gw1/tuf/{name}",
                    replica.base
                ))
                .header("Authorization", format!("TargetToken {}", device.token))
                .send()
                .await
                .unwrap();
            assert_eq!(served.status(), 200, "{name}");
            assert_eq!(&served.bytes().await.unwrap()[..], &bytes[..], "{name}");
        }
    }

    // A root rotation made offline and dropped into replica 2's directory only (with a root that
    // the old root keys did not sign next to it) reaches the device through replica 1.
    let new_root_key = SigningKey::generate_ecdsa_p256();
    let rotated = keel_tuf_repo::rotate_root(
        cluster.offline.repo.path(),
        &online_keys(&[&new_root_key], 1, &cluster.offline.online),
        &[&cluster.offline.root_key, &new_root_key],
        keel_tuf::time::system_now() + 365 * DAY,
    )
    .unwrap();
    let intruder = SigningKey::generate_ed25519();
    let forged = keel_tuf_repo::sign_metadata(
        &serde_json::from_slice::<serde_json::Value>(&rotated).unwrap()["signed"]
            .clone()
            .as_object()
            .map(|signed| {
                let mut signed = signed.clone();
                signed.insert("version".into(), 3.into());
                serde_json::Value::Object(signed)
            })
            .unwrap(),
        &[&intruder],
    )
    .unwrap();
    let second = cluster.dirs[1].path().join("tuf/default/metadata");
    std::fs::write(second.join("2.root.json"), &rotated).unwrap();
    std::fs::write(second.join("3.root.json"), &forged).unwrap();
    std::fs::write(second.join("root.json"), &forged).unwrap();
    let (name, sha256) = cluster.upload(1, "1.7").await;
    expected.insert(name, sha256);
    let names: Vec<String> = expected.keys().cloned().collect();
    let (root, found) = device.refresh(&cluster.replicas[0].base, &names).await;
    assert_eq!(
        root, 2,
        "the rotated root was imported, the forged one was not"
    );
    assert_eq!(found, expected);
    let stored = cluster.stored().await;
    assert_eq!(stored["2.root.json"], rotated);
    assert_eq!(stored["root.json"], rotated);
    assert!(!stored.contains_key("3.root.json"));
    // Replica 2's working copy follows the database again (its root.json was the forged one).
    assert_eq!(std::fs::read(second.join("root.json")).unwrap(), rotated);
    std::fs::remove_file(second.join("3.root.json")).unwrap();
    cluster.assert_one_history().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_to_both_replicas_lose_no_target() {
    let cluster = Cluster::start();
    // The first upload imports the root (replica 1), then both replicas upload at once.
    let mut expected = BTreeMap::new();
    let (name, sha256) = cluster.upload(0, "0.1").await;
    expected.insert(name, sha256);
    let versions: Vec<String> = (0..12).map(|i| format!("2.{i}")).collect();
    let uploads = versions
        .iter()
        .enumerate()
        .map(|(i, version)| cluster.upload(i % 2, version));
    for (name, sha256) in futures_util::future::join_all(uploads).await {
        expected.insert(name, sha256);
    }
    let names: Vec<String> = expected.keys().cloned().collect();
    let device = Device::register(&cluster, "gw1").await;
    for replica in &cluster.replicas {
        let (_, found) = device.refresh(&replica.base, &names).await;
        assert_eq!(found, expected, "from {}", replica.base);
    }
    cluster.assert_one_history().await;
}

/// The last line of defence when the lease fails (a writer stalled past it): a store of metadata
/// built on an outdated copy changes nothing, so no version is ever stored with two contents.
#[tokio::test]
async fn stores_built_on_an_outdated_copy_are_refused() {
    use keel_server::store::TufFileWrite;
    let server = common::TestServer::start().await;
    let store = server.open_store().await;
    let file = |name: &str, bytes: &[u8], replaces: Option<&str>| TufFileWrite {
        name: name.into(),
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)),
        bytes: bytes.to_vec(),
        replaces: replaces.map(str::to_owned),
    };
    let sha = |bytes: &[u8]| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
    assert!(store
        .put_tuf_files(
            "t",
            &[
                file("1.snapshot.json", b"v1", None),
                file("timestamp.json", b"t1", None)
            ]
        )
        .await
        .unwrap());
    // Writer A publishes version 2 on top of t1.
    assert!(store
        .put_tuf_files(
            "t",
            &[
                file("2.snapshot.json", b"A2", None),
                file("timestamp.json", b"tA", Some(&sha(b"t1"))),
            ]
        )
        .await
        .unwrap());
    // Writer B, also built on t1, signed a different version 2: refused as a whole.
    assert!(!store
        .put_tuf_files(
            "t",
            &[
                file("2.snapshot.json", b"B2", None),
                file("timestamp.json", b"tB", Some(&sha(b"t1"))),
            ]
        )
        .await
        .unwrap());
    // A different version 2 alone is refused too; the same bytes again are accepted.
    assert!(!store
        .put_tuf_files("t", &[file("2.snapshot.json", b"B2", None)])
        .await
        .unwrap());
    assert!(store
        .put_tuf_files("t", &[file("2.snapshot.json", b"A2", None)])
        .await
        .unwrap());
    assert_eq!(
        store
            .tuf_file("t", "2.snapshot.json")
            .await
            .unwrap()
            .unwrap(),
        b"A2"
    );
    assert_eq!(
        store
            .tuf_file("t", "timestamp.json")
            .await
            .unwrap()
            .unwrap(),
        b"tA"
    );
    assert!(!store.tuf_has_root("t").await.unwrap());
    let files: Vec<(String, String)> = store
        .tuf_files("t")
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.name, f.sha256))
        .collect();
    assert_eq!(
        files,
        vec![
            ("1.snapshot.json".to_string(), sha(b"v1")),
            ("2.snapshot.json".to_string(), sha(b"A2")),
            ("timestamp.json".to_string(), sha(b"tA")),
        ]
    );
    server.stop().await;
}

/// Pruning (docs/tuf.md, "Pruning old versions") with two replicas: the versions one replica
/// prunes leave the database and both working copies (the other's at its next change), roots
/// stay, both replicas serve the same files (404 for pruned ones), and a device that refreshed
/// before the pruning refreshes from either replica afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_keeps_both_replicas_consistent() {
    let cluster = Cluster::start();
    let mut expected = BTreeMap::new();
    for i in 0..6 {
        let (name, sha256) = cluster.upload(i % 2, &format!("1.{i}")).await;
        expected.insert(name, sha256);
    }
    let device = Device::register(&cluster, "gw1").await;
    let names: Vec<String> = expected.keys().cloned().collect();
    let (_, found) = device.refresh(&cluster.replicas[1].base, &names).await;
    assert_eq!(found, expected);
    let before = cluster.stored().await;

    // More than the grace period later, uploads through both replicas.
    cluster.age(keel_server::tuf::prune_grace_secs() + 60).await;
    for i in 0..4 {
        let (name, sha256) = cluster.upload(i % 2, &format!("2.{i}")).await;
        expected.insert(name, sha256);
    }
    let stored = cluster.assert_working_copies_match().await;
    let versions = versions(stored.keys());
    let snapshots = &versions["snapshot.json"];
    let current = *snapshots.last().unwrap();
    // The snapshot current before the uploads, and the four they made.
    assert_eq!(snapshots, &((current - 4)..=current).collect::<Vec<_>>());
    assert_eq!(versions["root.json"], vec![1], "roots are never pruned");
    for (role, list) in &versions {
        let (first, last) = (list[0], *list.last().unwrap());
        assert_eq!(list, &(first..=last).collect::<Vec<_>>(), "{role}");
    }
    let pruned: Vec<&String> = before.keys().filter(|n| !stored.contains_key(*n)).collect();
    assert!(
        pruned.iter().any(|n| n.ends_with(".snapshot.json"))
            && pruned.iter().any(|n| n.contains(".bin-")),
        "pruned: {pruned:?}"
    );

    let names: Vec<String> = expected.keys().cloned().collect();
    for replica in &cluster.replicas {
        let (_, found) = device.refresh(&replica.base, &names).await;
        assert_eq!(found, expected, "from {}", replica.base);
    }
    let client = reqwest::Client::new();
    let fetch = |base: &str, name: &str| {
        client
            .get(format!("{base}/default/controller/v1/gw1/tuf/{name}"))
            .header("Authorization", format!("TargetToken {}", device.token))
            .send()
    };
    for replica in &cluster.replicas {
        for name in &pruned {
            let response = fetch(&replica.base, name).await.unwrap();
            assert_eq!(response.status(), 404, "{name} from {}", replica.base);
        }
        for (name, bytes) in &stored {
            let response = fetch(&replica.base, name).await.unwrap();
            assert_eq!(response.status(), 200, "{name}");
            assert_eq!(&response.bytes().await.unwrap()[..], &bytes[..], "{name}");
        }
    }
}
