//! The client workflow of the TUF specification (§5) over a `Fetcher` and a `MetadataStore`.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::Error;
use crate::fetch::{FetchError, Fetcher};
use crate::metadata::{MultiHasher, TargetFile};
use crate::store::{percent_encode, MetadataStore};
use crate::time::TimePolicy;
use crate::trusted::TrustedMetadataSet;

/// Limits and switches (defaults are python-tuf's `UpdaterConfig`).
#[derive(Debug, Clone)]
pub struct UpdaterConfig {
    /// Most root versions accepted in one refresh.
    pub max_root_rotations: u64,
    /// Most targets roles visited when searching for one target.
    pub max_delegations: usize,
    /// Byte cap for `N.root.json`.
    pub root_max_length: u64,
    /// Byte cap for `timestamp.json`.
    pub timestamp_max_length: u64,
    /// Byte cap for snapshot when the timestamp gives no length.
    pub snapshot_max_length: u64,
    /// Byte cap for targets roles when the snapshot gives no length.
    pub targets_max_length: u64,
    /// With consistent snapshots, fetch targets as `HASH.name` (python-tuf `prefix_targets_with_hash`).
    pub prefix_targets_with_hash: bool,
}

impl Default for UpdaterConfig {
    fn default() -> Self {
        UpdaterConfig {
            max_root_rotations: 256,
            max_delegations: 32,
            root_max_length: 512_000,
            timestamp_max_length: 16_384,
            snapshot_max_length: 2_000_000,
            targets_max_length: 5_000_000,
            prefix_targets_with_hash: true,
        }
    }
}

/// A target found in trusted metadata.
#[derive(Debug, Clone)]
pub struct TargetInfo {
    /// The target path as listed in metadata.
    pub name: String,
    /// Length, hashes and custom data.
    pub file: TargetFile,
}

/// The TUF client: refreshes metadata, finds targets (loading delegations lazily) and downloads them verified.
pub struct Updater<F: Fetcher> {
    store: MetadataStore,
    fetcher: F,
    metadata_base_url: String,
    target_base_url: Option<String>,
    config: UpdaterConfig,
    time: TimePolicy,
    trusted: TrustedMetadataSet,
    refreshed: bool,
}

/// Stores `root_data` as the trusted root in `metadata_dir` after checking that it is root metadata signed by
/// a threshold of its own root keys (the device's initial trust anchor; its expiry is not checked).
pub fn init_trusted_root(metadata_dir: &Path, root_data: &[u8]) -> Result<(), Error> {
    TrustedMetadataSet::new(root_data, i64::MIN)?;
    MetadataStore::open(metadata_dir)?.write("root", root_data)
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

impl<F: Fetcher> Updater<F> {
    /// An updater over the metadata in `metadata_dir`, which must hold a trusted `root.json`.
    pub fn new(
        metadata_dir: &Path,
        metadata_base_url: &str,
        target_base_url: Option<&str>,
        fetcher: F,
        config: UpdaterConfig,
        time: TimePolicy,
    ) -> Result<Self, Error> {
        let store = MetadataStore::open(metadata_dir)?;
        let root = store.read("root").ok_or_else(|| Error::MissingMeta {
            role: "root".into(),
            reason: format!("no trusted root.json in {}", metadata_dir.display()),
        })?;
        let trusted = TrustedMetadataSet::new(&root, time.reference_time())?;
        Ok(Updater {
            store,
            fetcher,
            metadata_base_url: with_slash(metadata_base_url),
            target_base_url: target_base_url.map(with_slash),
            config,
            time,
            trusted,
            refreshed: false,
        })
    }

    /// The verified metadata.
    pub fn trusted(&self) -> &TrustedMetadataSet {
        &self.trusted
    }

    /// Updates root, timestamp, snapshot and top-level targets. Every check uses one reference time fixed at the
    /// start. Nothing is persisted before it has passed every check.
    pub fn refresh(&mut self) -> Result<(), Error> {
        let reference = self.time.reference_time();
        let root = self.store.read("root").ok_or(Error::MissingMeta {
            role: "root".into(),
            reason: "no trusted root.json".into(),
        })?;
        self.trusted = TrustedMetadataSet::new(&root, reference)?;
        self.refreshed = false;
        self.load_root()?;
        self.load_timestamp()?;
        self.load_snapshot()?;
        self.load_targets("targets", "root")?;
        self.refreshed = true;
        if let Some(timestamp) = self.trusted.timestamp() {
            let expires = timestamp.expires;
            self.time
                .record_success(reference, expires)
                .map_err(|source| Error::Store {
                    path: "trusted time floor".into(),
                    source,
                })?;
        }
        Ok(())
    }

    fn metadata_url(&self, role: &str, version: Option<u64>) -> String {
        match version {
            Some(version) => format!(
                "{}{version}.{}.json",
                self.metadata_base_url,
                percent_encode(role)
            ),
            None => format!("{}{}.json", self.metadata_base_url, percent_encode(role)),
        }
    }

    fn fetch(&self, role: &str, url: &str, max_length: u64) -> Result<Vec<u8>, Error> {
        self.fetcher
            .fetch(url, max_length)
            .map_err(|source| match source {
                FetchError::TooLarge { limit, .. } => Error::TooLarge {
                    role: role.to_string(),
                    limit,
                },
                source => Error::Fetch {
                    role: role.to_string(),
                    source,
                },
            })
    }

    fn load_root(&mut self) -> Result<(), Error> {
        let online_keys = |trusted: &TrustedMetadataSet| -> Vec<(Vec<String>, u64)> {
            ["timestamp", "snapshot"]
                .iter()
                .map(|role| {
                    trusted
                        .root()
                        .signed
                        .roles
                        .get(*role)
                        .map_or((Vec::new(), 0), |keys| {
                            let mut ids = keys.keyids.clone();
                            ids.sort();
                            (ids, keys.threshold)
                        })
                })
                .collect()
        };
        let mut keys_before = online_keys(&self.trusted);
        let lower = self.trusted.root().version.saturating_add(1);
        let upper = lower.saturating_add(self.config.max_root_rotations);
        for version in lower..upper {
            let url = self.metadata_url("root", Some(version));
            let data = match self.fetcher.fetch(&url, self.config.root_max_length) {
                Ok(data) => data,
                Err(FetchError::NotFound { .. }) => break,
                Err(FetchError::TooLarge { limit, .. }) => {
                    return Err(Error::TooLarge {
                        role: "root".into(),
                        limit,
                    })
                }
                Err(source) => {
                    return Err(Error::Fetch {
                        role: "root".into(),
                        source,
                    })
                }
            };
            self.trusted.update_root(&data)?;
            self.store.write("root", &data)?;
            // Fast-forward attack recovery (spec 5.3.11): once the timestamp or snapshot keys rotate, versions an
            // attacker may have pushed with the old keys must not remain a rollback floor.
            let keys_now = online_keys(&self.trusted);
            if keys_now != keys_before {
                self.store.remove("timestamp")?;
                self.store.remove("snapshot")?;
                keys_before = keys_now;
            }
        }
        Ok(())
    }

    fn load_timestamp(&mut self) -> Result<(), Error> {
        if let Some(local) = self.store.read("timestamp") {
            // A local copy that no longer verifies (e.g. the timestamp key rotated: fast-forward recovery) is
            // simply not a rollback floor; an expired one still is.
            let _ = self.trusted.update_timestamp(&local);
        }
        let url = self.metadata_url("timestamp", None);
        let data = self.fetch("timestamp", &url, self.config.timestamp_max_length)?;
        match self.trusted.update_timestamp(&data) {
            Ok(()) => {}
            Err(Error::SameVersion { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        self.store.write("timestamp", &data)
    }

    fn load_snapshot(&mut self) -> Result<(), Error> {
        if let Some(local) = self.store.read("snapshot") {
            if self.trusted.update_snapshot(&local, true).is_ok() {
                return Ok(());
            }
        }
        let timestamp = self
            .trusted
            .timestamp()
            .ok_or(Error::Order("timestamp not loaded"))?;
        let meta = timestamp
            .signed
            .snapshot_meta()
            .ok_or(Error::Order("timestamp without snapshot meta"))?;
        let max_length = meta.length.unwrap_or(self.config.snapshot_max_length);
        let version = self
            .trusted
            .root()
            .signed
            .consistent_snapshot
            .then_some(meta.version);
        let url = self.metadata_url("snapshot", version);
        let data = self.fetch("snapshot", &url, max_length)?;
        self.trusted.update_snapshot(&data, false)?;
        self.store.write("snapshot", &data)
    }

    fn load_targets(&mut self, role: &str, delegator: &str) -> Result<(), Error> {
        if self.trusted.targets(role).is_some() {
            // Loaded through some delegator: it must also hold through this one.
            return self.trusted.verify_loaded_targets(role, delegator);
        }
        if let Some(local) = self.store.read(role) {
            if self.trusted.update_targets(&local, role, delegator).is_ok() {
                return Ok(());
            }
        }
        let snapshot = self
            .trusted
            .snapshot()
            .ok_or(Error::Order("snapshot not loaded"))?;
        let meta = snapshot
            .signed
            .meta
            .get(&format!("{role}.json"))
            .ok_or_else(|| Error::MissingMeta {
                role: role.to_string(),
                reason: "snapshot does not list this role".into(),
            })?;
        let max_length = meta.length.unwrap_or(self.config.targets_max_length);
        let version = self
            .trusted
            .root()
            .signed
            .consistent_snapshot
            .then_some(meta.version);
        let url = self.metadata_url(role, version);
        let data = self.fetch(role, &url, max_length)?;
        self.trusted.update_targets(&data, role, delegator)?;
        self.store.write(role, &data)
    }

    /// Finds `name` in the trusted targets, searching delegations lazily in pre-order depth-first order
    /// (terminating delegations stop the search; cycles are skipped; at most `max_delegations` roles).
    /// Refreshes first if this updater has not refreshed yet. `Ok(None)` means not a current target.
    pub fn get_target_info(&mut self, name: &str) -> Result<Option<TargetInfo>, Error> {
        if !self.refreshed {
            self.refresh()?;
        }
        let mut to_visit: Vec<(String, String)> = vec![("targets".into(), "root".into())];
        let mut visited: Vec<String> = Vec::new();
        let mut budget = self.config.max_delegations;
        while budget > 0 {
            let Some((role, delegator)) = to_visit.pop() else {
                break;
            };
            if visited.contains(&role) {
                continue;
            }
            self.load_targets(&role, &delegator)?;
            let targets = self
                .trusted
                .targets(&role)
                .ok_or(Error::Order("targets role not loaded"))?;
            if let Some(file) = targets.signed.targets.get(name) {
                return Ok(Some(TargetInfo {
                    name: name.to_string(),
                    file: file.clone(),
                }));
            }
            visited.push(role.clone());
            budget -= 1;
            if let Some(delegations) = &targets.signed.delegations {
                let mut children = Vec::new();
                for (child, terminating) in delegations.roles_for_target(name) {
                    children.push((child, role.clone()));
                    if terminating {
                        to_visit.clear();
                        break;
                    }
                }
                children.reverse();
                to_visit.extend(children);
            }
        }
        Ok(None)
    }

    /// Like `get_target_info` but a missing target is an error.
    pub fn require_target(&mut self, name: &str) -> Result<TargetInfo, Error> {
        self.get_target_info(name)?
            .ok_or_else(|| Error::TargetNotFound(name.to_string()))
    }

    /// The URL of a target (`HASH.name` under consistent snapshots).
    pub fn target_url(&self, info: &TargetInfo) -> Result<String, Error> {
        let base = self
            .target_base_url
            .as_ref()
            .ok_or(Error::Order("no target base URL configured"))?;
        let mut path = info.name.clone();
        if self.trusted.root().signed.consistent_snapshot && self.config.prefix_targets_with_hash {
            if let Some((_, digest)) = info.file.hashes.0.first() {
                path = match info.name.rsplit_once('/') {
                    Some((dir, file)) => format!("{dir}/{digest}.{file}"),
                    None => format!("{digest}.{}", info.name),
                };
            }
        }
        Ok(format!("{base}{path}"))
    }

    /// Streams the target into `writer`, checking length and hashes as it goes. Bytes reach `writer` before the
    /// final hash check: on `Err` the caller must discard everything written (`download_target_to_file` does).
    pub fn download_target(&self, info: &TargetInfo, writer: &mut dyn Write) -> Result<(), Error> {
        let url = self.target_url(info)?;
        let reader = self.fetcher.open(&url).map_err(|source| Error::Fetch {
            role: info.name.clone(),
            source,
        })?;
        verify_stream(info, reader, writer)
    }

    /// Downloads the target to `path` via a temporary file that is renamed into place only after verification.
    pub fn download_target_to_file(&self, info: &TargetInfo, path: &Path) -> Result<(), Error> {
        let store_error = |source| Error::Store {
            path: path.display().to_string(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let temp = dir.join(format!(
            ".{}.download-{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let result = (|| {
            let mut file = std::fs::File::create(&temp).map_err(store_error)?;
            self.download_target(info, &mut file)?;
            file.sync_all().map_err(store_error)?;
            std::fs::rename(&temp, path).map_err(store_error)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }
}

/// Checks that the file at `path` is exactly the target (a cached download), without modifying it.
pub fn is_cached_target(info: &TargetInfo, path: &Path) -> bool {
    match std::fs::File::open(path) {
        Ok(file) => verify_stream(info, file, &mut std::io::sink()).is_ok(),
        Err(_) => false,
    }
}

/// Copies `reader` to `writer`, refusing more than the target's length and checking every listed hash.
pub fn verify_stream(
    info: &TargetInfo,
    mut reader: impl Read,
    writer: &mut dyn Write,
) -> Result<(), Error> {
    let role = format!("target {}", info.name);
    let mut hasher = MultiHasher::new(&role, &info.file.hashes)?;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::Fetch {
                    role,
                    source: FetchError::Transport {
                        url: info.name.clone(),
                        message: e.to_string(),
                    },
                })
            }
        };
        total = total.saturating_add(read as u64);
        if total > info.file.length {
            return Err(Error::TooLarge {
                role,
                limit: info.file.length,
            });
        }
        let chunk = buffer.get(..read).unwrap_or_default();
        hasher.update(chunk);
        writer.write_all(chunk).map_err(|source| Error::Store {
            path: role.clone(),
            source,
        })?;
    }
    if total != info.file.length {
        return Err(Error::LengthMismatch {
            role,
            expected: info.file.length,
            found: total,
        });
    }
    hasher.check(&role)
}

/// A `Read` adapter that lets a target stream through (e.g. straight into an installer) while checking it
/// against its TUF record: reading past the recorded length fails at once (endless data), and at end of stream
/// the length and every hash must match, otherwise the final `read` returns an `InvalidData` error instead of
/// end-of-file. A consumer that reads to end-of-file before committing anything therefore never commits a
/// target that TUF did not vouch for.
pub struct VerifyingReader<R> {
    inner: R,
    info: TargetInfo,
    hasher: Option<MultiHasher>,
    count: u64,
}

impl<R: Read> VerifyingReader<R> {
    /// Fails at once if the record lists a hash algorithm this client does not implement.
    pub fn new(inner: R, info: TargetInfo) -> Result<Self, Error> {
        let hasher = MultiHasher::new(&format!("target {}", info.name), &info.file.hashes)?;
        Ok(VerifyingReader {
            inner,
            info,
            hasher: Some(hasher),
            count: 0,
        })
    }

    /// Bytes passed through so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn invalid(error: Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("TUF: {error}"))
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let role = || format!("target {}", self.info.name);
        let Some(hasher) = self.hasher.as_mut() else {
            return Ok(0);
        };
        let read = self.inner.read(buf)?;
        if read == 0 {
            let hasher = self.hasher.take().expect("checked above");
            if self.count != self.info.file.length {
                let error = Error::LengthMismatch {
                    role: role(),
                    expected: self.info.file.length,
                    found: self.count,
                };
                return Err(Self::invalid(error));
            }
            hasher.check(&role()).map_err(Self::invalid)?;
            return Ok(0);
        }
        self.count = self.count.saturating_add(read as u64);
        if self.count > self.info.file.length {
            self.hasher = None;
            return Err(Self::invalid(Error::TooLarge {
                role: role(),
                limit: self.info.file.length,
            }));
        }
        hasher.update(buf.get(..read).unwrap_or_default());
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Hashes;
    use sha2::Digest;

    fn info(content: &[u8]) -> TargetInfo {
        let digest = hex::encode(sha2::Sha256::digest(content));
        TargetInfo {
            name: "fw.swu".into(),
            file: TargetFile {
                length: content.len() as u64,
                hashes: Hashes(vec![("sha256".into(), digest)]),
                custom: None,
            },
        }
    }

    fn read_all(reader: impl Read) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut reader = reader;
        reader.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn verifying_reader_passes_the_target_and_refuses_anything_else() {
        let genuine = b"genuine bytes".to_vec();
        let ok = VerifyingReader::new(&genuine[..], info(&genuine)).unwrap();
        assert_eq!(read_all(ok).unwrap(), genuine);

        let mut tampered = genuine.clone();
        tampered[0] ^= 1;
        let error =
            read_all(VerifyingReader::new(&tampered[..], info(&genuine)).unwrap()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("target fw.swu: sha256 hash mismatch"),
            "{error}"
        );

        let longer = [genuine.clone(), b"more".to_vec()].concat();
        let error =
            read_all(VerifyingReader::new(&longer[..], info(&genuine)).unwrap()).unwrap_err();
        assert!(error.to_string().contains("endless data"), "{error}");

        let error =
            read_all(VerifyingReader::new(&genuine[..4], info(&genuine)).unwrap()).unwrap_err();
        assert!(error.to_string().contains("length 4 differs"), "{error}");
    }
}
