//! keel-tuf-repo: the repository side of TUF for keel-server and `keel tuf`.
//!
//! * Offline (`keel tuf init`, `rotate-root`, `rotate-online-key`): [`create_root`] and [`rotate_root`] write
//!   `N.root.json` signed by the root keys (a new root by a threshold of the old *and* the new root keys).
//! * Online (the server): [`Repository`] holds the online targets/snapshot/timestamp keys, keeps targets in
//!   hashed bins delegated from `targets`, and [`Repository::publish`] writes consistent-snapshot metadata
//!   (`N.targets.json`, `N.<bin>.json`, `N.snapshot.json`, `timestamp.json`). [`Repository::refresh_expiring`]
//!   re-signs roles before they expire.
//!
//! Layout of a repository directory: `metadata/` (served as the metadata URL) and `targets/` (served as the
//! target URL, files named `SHA256.name`). See docs/tuf.md for why this is not built on the `tough` crate.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod keys;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256, Sha512};

use keel_tuf::time::format_expires;
pub use keys::{PublicKeyJson, SigningKey};

/// The `spec_version` written into metadata.
pub const SPEC_VERSION: &str = "1.0.31";

const DAY: i64 = 86_400;

/// Repository errors.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A key could not be read or is not usable.
    #[error("key: {0}")]
    Key(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Existing metadata is not what this repository expects.
    #[error("{role}: {reason}")]
    Metadata {
        /// The role whose metadata is at fault (`root`, a bin, ...; `metadata` when not yet
        /// known), or the target name.
        role: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not enough or unauthorized signing keys.
    #[error("signing {role}: {reason}")]
    Signing {
        /// The role that could not be signed.
        role: String,
        /// Why: fewer authorized keys than the threshold, or a key root does not authorize.
        reason: String,
    },
    /// A target name that cannot be served safely.
    #[error("target name {0:?} is not a relative path of plain components")]
    TargetName(String),
}

fn io_error(path: &Path, source: std::io::Error) -> RepoError {
    RepoError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn metadata_error(role: &str, reason: impl std::fmt::Display) -> RepoError {
    RepoError::Metadata {
        role: role.to_string(),
        reason: reason.to_string(),
    }
}

/// Signs a `signed` value with every key in `signers` and returns the metadata file bytes.
pub fn sign_metadata(signed: &Value, signers: &[&SigningKey]) -> Result<Vec<u8>, RepoError> {
    let canonical =
        keel_tuf::canonical::encode(signed).map_err(|e| metadata_error("metadata", e))?;
    let mut seen = BTreeSet::new();
    let mut signatures = Vec::new();
    for signer in signers {
        let keyid = signer.key_id();
        if seen.insert(keyid.clone()) {
            signatures.push(json!({"keyid": keyid, "sig": signer.sign_hex(&canonical)}));
        }
    }
    let envelope = json!({"signatures": signatures, "signed": signed});
    metadata_file_bytes(&envelope)
}

/// The bytes of a metadata file: pretty JSON with object keys sorted, so the file does not depend
/// on whether serde_json's `preserve_order` feature is enabled somewhere in the build (keel-formats
/// enables it), nor on the order the fields were built in.
fn metadata_file_bytes(envelope: &Value) -> Result<Vec<u8>, RepoError> {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    let mut bytes =
        serde_json::to_vec_pretty(&sorted(envelope)).map_err(|e| metadata_error("metadata", e))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Adds signatures to existing metadata bytes (a root signed in several offline ceremonies).
pub fn add_signatures(metadata: &[u8], signers: &[&SigningKey]) -> Result<Vec<u8>, RepoError> {
    let mut envelope: Value =
        serde_json::from_slice(metadata).map_err(|e| metadata_error("metadata", e))?;
    let signed = envelope
        .get("signed")
        .cloned()
        .ok_or_else(|| metadata_error("metadata", "no signed section"))?;
    let canonical =
        keel_tuf::canonical::encode(&signed).map_err(|e| metadata_error("metadata", e))?;
    let signatures = envelope
        .get_mut("signatures")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| metadata_error("metadata", "no signatures list"))?;
    for signer in signers {
        let keyid = signer.key_id();
        signatures.retain(|s| s.get("keyid").and_then(Value::as_str) != Some(keyid.as_str()));
        signatures.push(json!({"keyid": keyid, "sig": signer.sign_hex(&canonical)}));
    }
    metadata_file_bytes(&envelope)
}

/// Keys and thresholds of a root.
#[derive(Debug, Clone)]
pub struct RootKeys {
    /// Offline root keys.
    pub root: Vec<PublicKeyJson>,
    /// How many root keys must sign a root.
    pub root_threshold: u64,
    /// Online keys (threshold 1 each; several keys allow overlap during a rotation).
    pub targets: Vec<PublicKeyJson>,
    /// Online snapshot keys.
    pub snapshot: Vec<PublicKeyJson>,
    /// Online timestamp keys.
    pub timestamp: Vec<PublicKeyJson>,
}

impl RootKeys {
    fn to_signed(&self, version: u64, expires: i64) -> Value {
        let mut keys = Map::new();
        let mut role = |list: &[PublicKeyJson], threshold: u64| {
            let mut keyids = Vec::new();
            for key in list {
                keys.insert(key.key_id().to_string(), key.value.clone());
                keyids.push(Value::from(key.key_id()));
            }
            json!({"keyids": keyids, "threshold": threshold})
        };
        let roles = json!({
            "root": role(&self.root, self.root_threshold),
            "targets": role(&self.targets, 1),
            "snapshot": role(&self.snapshot, 1),
            "timestamp": role(&self.timestamp, 1),
        });
        json!({
            "_type": "root",
            "spec_version": SPEC_VERSION,
            "version": version,
            "expires": format_expires(expires),
            "consistent_snapshot": true,
            "keys": keys,
            "roles": roles,
        })
    }

    /// Reads the keys back from a root's `signed` section.
    pub fn from_signed(signed: &Value) -> Result<Self, RepoError> {
        let keys = signed
            .get("keys")
            .and_then(Value::as_object)
            .ok_or_else(|| metadata_error("root", "no keys"))?;
        let role = |name: &str| -> Result<(Vec<PublicKeyJson>, u64), RepoError> {
            let role = signed
                .pointer(&format!("/roles/{name}"))
                .ok_or_else(|| metadata_error("root", format!("no role {name}")))?;
            let threshold = role
                .get("threshold")
                .and_then(Value::as_u64)
                .ok_or_else(|| metadata_error("root", "no threshold"))?;
            let mut list = Vec::new();
            for keyid in role
                .get("keyids")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let keyid = keyid.as_str().unwrap_or_default();
                let value = keys
                    .get(keyid)
                    .ok_or_else(|| metadata_error("root", format!("key {keyid} not listed")))?;
                // Keys written by other tools may carry IDs computed differently; keep theirs.
                list.push(PublicKeyJson::with_key_id(value.clone(), keyid)?);
            }
            Ok((list, threshold))
        };
        let (root, root_threshold) = role("root")?;
        Ok(RootKeys {
            root,
            root_threshold,
            targets: role("targets")?.0,
            snapshot: role("snapshot")?.0,
            timestamp: role("timestamp")?.0,
        })
    }
}

fn signers_for<'a>(
    role: &str,
    authorized: &[PublicKeyJson],
    threshold: u64,
    available: &[&'a SigningKey],
) -> Result<Vec<&'a SigningKey>, RepoError> {
    let ids: BTreeSet<&str> = authorized.iter().map(PublicKeyJson::key_id).collect();
    let chosen: Vec<&SigningKey> = available
        .iter()
        .copied()
        .filter(|k| ids.contains(k.key_id().as_str()))
        .collect();
    let distinct: BTreeSet<String> = chosen.iter().map(|k| k.key_id()).collect();
    if (distinct.len() as u64) < threshold {
        return Err(RepoError::Signing {
            role: role.to_string(),
            reason: format!(
                "{} authorized key(s) given, threshold is {threshold}",
                distinct.len()
            ),
        });
    }
    Ok(chosen)
}

/// Creates version 1 of a root (offline): writes `metadata/1.root.json` and `metadata/root.json` in `repo_dir`
/// and returns the bytes. `signers` must include a threshold of `keys.root`.
pub fn create_root(
    repo_dir: &Path,
    keys: &RootKeys,
    signers: &[&SigningKey],
    expires: i64,
) -> Result<Vec<u8>, RepoError> {
    let signed = keys.to_signed(1, expires);
    let chosen = signers_for("root", &keys.root, keys.root_threshold, signers)?;
    let bytes = sign_metadata(&signed, &chosen)?;
    write_root(repo_dir, 1, &bytes)?;
    Ok(bytes)
}

/// Reads the newest root of a repository: (version, signed section, file bytes).
pub fn current_root(repo_dir: &Path) -> Result<(u64, Value, Vec<u8>), RepoError> {
    let path = repo_dir.join("metadata").join("root.json");
    let bytes = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
    let envelope: Value = serde_json::from_slice(&bytes).map_err(|e| metadata_error("root", e))?;
    let signed = envelope
        .get("signed")
        .cloned()
        .ok_or_else(|| metadata_error("root", "no signed section"))?;
    let version = signed
        .get("version")
        .and_then(Value::as_u64)
        .ok_or_else(|| metadata_error("root", "no version"))?;
    Ok((version, signed, bytes))
}

/// Writes root version `version+1` with `new_keys` (offline). It is signed by a threshold of the current root
/// keys and a threshold of the new root keys (both taken from `signers`), so clients can follow the chain.
/// Rotating an online key is the same operation with only that role's keys changed.
pub fn rotate_root(
    repo_dir: &Path,
    new_keys: &RootKeys,
    signers: &[&SigningKey],
    expires: i64,
) -> Result<Vec<u8>, RepoError> {
    let (version, signed, _) = current_root(repo_dir)?;
    let old_keys = RootKeys::from_signed(&signed)?;
    let old_signers = signers_for(
        "root (current keys)",
        &old_keys.root,
        old_keys.root_threshold,
        signers,
    )?;
    let new_signers = signers_for(
        "root (new keys)",
        &new_keys.root,
        new_keys.root_threshold,
        signers,
    )?;
    let mut all: Vec<&SigningKey> = old_signers;
    all.extend(new_signers);
    let next = version + 1;
    let bytes = sign_metadata(&new_keys.to_signed(next, expires), &all)?;
    write_root(repo_dir, next, &bytes)?;
    Ok(bytes)
}

fn write_root(repo_dir: &Path, version: u64, bytes: &[u8]) -> Result<(), RepoError> {
    let dir = repo_dir.join("metadata");
    std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
    write_file(&dir.join(format!("{version}.root.json")), bytes)?;
    write_file(&dir.join("root.json"), bytes)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    }
    keel_tuf::store::write_atomically(path, bytes).map_err(|e| io_error(path, e))
}

/// The online signing keys the server holds.
#[derive(Debug, Clone)]
pub struct OnlineKeys {
    /// Signs `targets` and every hashed bin.
    pub targets: SigningKey,
    /// Signs `snapshot`.
    pub snapshot: SigningKey,
    /// Signs `timestamp`.
    pub timestamp: SigningKey,
}

impl OnlineKeys {
    /// One key for all three online roles.
    pub fn single(key: SigningKey) -> Self {
        OnlineKeys {
            targets: key.clone(),
            snapshot: key.clone(),
            timestamp: key,
        }
    }
}

/// Lifetimes and re-signing margins.
#[derive(Debug, Clone)]
pub struct RepoConfig {
    /// Number of hashed bins for targets (a power of two up to 4096, or 0 to list targets in `targets` itself).
    /// Fixed when the repository is first published.
    pub bins: u32,
    /// Lifetime of `targets` and the bins.
    pub targets_lifetime: i64,
    /// Lifetime of `snapshot`.
    pub snapshot_lifetime: i64,
    /// Lifetime of `timestamp`.
    pub timestamp_lifetime: i64,
    /// Warn when root expires within this many seconds (root keys are offline: the operator must act).
    pub root_warning: i64,
}

impl Default for RepoConfig {
    fn default() -> Self {
        RepoConfig {
            bins: 16,
            targets_lifetime: 90 * DAY,
            snapshot_lifetime: 7 * DAY,
            timestamp_lifetime: DAY,
            root_warning: 30 * DAY,
        }
    }
}

/// What `refresh_expiring` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshReport {
    /// Roles re-signed with a new version.
    pub resigned: Vec<String>,
    /// Root expires within `root_warning`: run `keel tuf rotate-root` (a new root version) offline.
    pub root_expires_soon: bool,
}

#[derive(Debug, Clone)]
struct RoleState {
    signed: Value,
    dirty: bool,
}

impl RoleState {
    fn version(&self) -> u64 {
        self.signed
            .get("version")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }
    fn expires(&self) -> i64 {
        self.signed
            .get("expires")
            .and_then(Value::as_str)
            .and_then(keel_tuf::time::parse_expires)
            .unwrap_or(i64::MIN)
    }
}

/// A target's length and hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetEntry {
    /// Length in bytes.
    pub length: u64,
    /// Algorithm → lowercase hex digest (at least `sha256`).
    pub hashes: BTreeMap<String, String>,
    /// Optional application data (`custom`).
    pub custom: Option<Value>,
}

impl TargetEntry {
    /// Length, sha256 and sha512 of a file.
    pub fn from_file(path: &Path) -> Result<Self, RepoError> {
        use std::io::Read;
        let mut file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
        let (mut sha256, mut sha512, mut length) = (Sha256::new(), Sha512::new(), 0u64);
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = file.read(&mut buffer).map_err(|e| io_error(path, e))?;
            if read == 0 {
                break;
            }
            sha256.update(&buffer[..read]);
            sha512.update(&buffer[..read]);
            length += read as u64;
        }
        let hashes = BTreeMap::from([
            ("sha256".to_string(), hex::encode(sha256.finalize())),
            ("sha512".to_string(), hex::encode(sha512.finalize())),
        ]);
        Ok(TargetEntry {
            length,
            hashes,
            custom: None,
        })
    }

    fn to_value(&self) -> Value {
        let mut value = json!({"length": self.length, "hashes": self.hashes});
        if let Some(custom) = &self.custom {
            value["custom"] = custom.clone();
        }
        value
    }
}

/// Checks a target name: relative, `/`-separated, no empty, `.` or `..` parts, no backslashes or NULs.
pub fn check_target_name(name: &str) -> Result<(), RepoError> {
    let bad = name.is_empty()
        || name.contains('\\')
        || name.contains('\0')
        || name
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(RepoError::TargetName(name.to_string()));
    }
    Ok(())
}

/// An online TUF repository: targets in hashed bins, signed by the server's online keys.
pub struct Repository {
    dir: PathBuf,
    keys: OnlineKeys,
    config: RepoConfig,
    root: Value,
    targets: RoleState,
    bins: BTreeMap<String, RoleState>,
    snapshot: Option<RoleState>,
    timestamp: Option<RoleState>,
}

/// The bins for `count` bins (each covering a range of sha256 hex prefixes).
/// A hashed bin: its role name and the hex prefixes it covers.
type Bin = (String, Vec<String>);

fn bin_layout(count: u32) -> Result<Vec<Bin>, RepoError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if !count.is_power_of_two() || count > 4096 {
        return Err(metadata_error(
            "targets",
            "bins must be a power of two up to 4096",
        ));
    }
    let prefix_len = if count <= 16 {
        1
    } else if count <= 256 {
        2
    } else {
        3
    };
    let prefixes = 16u32.pow(prefix_len as u32);
    let per_bin = prefixes / count;
    let bins = (0..count)
        .map(|bin| {
            let low = bin * per_bin;
            let high = low + per_bin - 1;
            let name = if per_bin == 1 {
                format!("bin-{low:0prefix_len$x}")
            } else {
                format!("bin-{low:0prefix_len$x}-{high:0prefix_len$x}")
            };
            let list = (low..=high).map(|p| format!("{p:0prefix_len$x}")).collect();
            (name, list)
        })
        .collect();
    Ok(bins)
}

impl Repository {
    /// Opens the repository in `dir` (which must hold a root from `create_root`) with the server's online keys.
    /// Fails if a key is not authorized for its role by the current root. If the root rotated online keys since
    /// the last publish, the affected roles are re-signed by the next `publish`.
    pub fn open(dir: &Path, keys: OnlineKeys, config: RepoConfig) -> Result<Self, RepoError> {
        let (_, root, _) = current_root(dir)?;
        let root_keys = RootKeys::from_signed(&root)?;
        for (role, key, authorized) in [
            ("targets", &keys.targets, &root_keys.targets),
            ("snapshot", &keys.snapshot, &root_keys.snapshot),
            ("timestamp", &keys.timestamp, &root_keys.timestamp),
        ] {
            if !authorized.iter().any(|k| k.key_id() == key.key_id()) {
                return Err(RepoError::Signing {
                    role: role.into(),
                    reason: format!("online key {} is not authorized by root", key.key_id()),
                });
            }
        }
        let metadata = dir.join("metadata");
        let read = |role: &str| -> Result<Option<RoleState>, RepoError> {
            let path = metadata.join(format!("{}.json", keel_tuf::store::percent_encode(role)));
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let envelope: Value =
                        serde_json::from_slice(&bytes).map_err(|e| metadata_error(role, e))?;
                    let signed_by: Vec<String> = envelope
                        .get("signatures")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.get("keyid").and_then(Value::as_str).map(str::to_owned))
                        .collect();
                    let signed = envelope
                        .get("signed")
                        .cloned()
                        .ok_or_else(|| metadata_error(role, "no signed section"))?;
                    let expected = match role {
                        "snapshot" => keys.snapshot.key_id(),
                        "timestamp" => keys.timestamp.key_id(),
                        _ => keys.targets.key_id(),
                    };
                    // Re-sign when the key that signed it is no longer the online key.
                    let dirty = !signed_by.contains(&expected);
                    Ok(Some(RoleState { signed, dirty }))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_error(&path, e)),
            }
        };
        let mut targets = match read("targets")? {
            Some(state) => state,
            None => {
                let mut signed = json!({"_type": "targets", "spec_version": SPEC_VERSION, "version": 0, "expires": format_expires(0), "targets": {}});
                let layout = bin_layout(config.bins)?;
                if !layout.is_empty() {
                    let roles: Vec<Value> = layout
                        .iter()
                        .map(|(name, prefixes)| {
                            json!({"name": name, "keyids": [], "threshold": 1, "terminating": true, "path_hash_prefixes": prefixes})
                        })
                        .collect();
                    signed["delegations"] = json!({"keys": {}, "roles": roles});
                }
                RoleState {
                    signed,
                    dirty: true,
                }
            }
        };
        let mut bins = BTreeMap::new();
        let bin_names: Vec<String> = targets
            .signed
            .pointer("/delegations/roles")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|role| role.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect();
        for name in &bin_names {
            let state = match read(name)? {
                Some(state) => state,
                None => RoleState {
                    signed: json!({"_type": "targets", "spec_version": SPEC_VERSION, "version": 0, "expires": format_expires(0), "targets": {}}),
                    dirty: true,
                },
            };
            bins.insert(name.clone(), state);
        }
        // The bins are delegated to the current targets key; rewrite the delegation if it changed.
        if let Some(delegations) = targets.signed.get_mut("delegations") {
            let public = keys.targets.public();
            let keyid = public.key_id().to_string();
            let current: Vec<String> = delegations
                .pointer("/roles/0/keyids")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect();
            if current != [keyid.clone()] {
                delegations["keys"] = json!({ keyid.clone(): public.value });
                for role in delegations
                    .get_mut("roles")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    role["keyids"] = json!([keyid]);
                }
                targets.dirty = true;
                for state in bins.values_mut() {
                    state.dirty = true;
                }
            }
        }
        let (snapshot, timestamp) = (read("snapshot")?, read("timestamp")?);
        Ok(Repository {
            dir: dir.to_path_buf(),
            keys,
            config,
            root,
            targets,
            bins,
            snapshot,
            timestamp,
        })
    }

    /// The metadata directory (serve it as the metadata base URL).
    pub fn metadata_dir(&self) -> PathBuf {
        self.dir.join("metadata")
    }

    /// The targets directory (serve it as the target base URL).
    pub fn targets_dir(&self) -> PathBuf {
        self.dir.join("targets")
    }

    /// True if the root uses consistent snapshots (roots made here always do).
    pub fn consistent_snapshot(&self) -> bool {
        self.root
            .get("consistent_snapshot")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    fn bin_for(&self, name: &str) -> Option<String> {
        let digest = hex::encode(Sha256::digest(name.as_bytes()));
        let roles = self
            .targets
            .signed
            .pointer("/delegations/roles")?
            .as_array()?;
        roles.iter().find_map(|role| {
            let prefixes = role.get("path_hash_prefixes")?.as_array()?;
            prefixes
                .iter()
                .any(|p| p.as_str().is_some_and(|p| digest.starts_with(p)))
                .then(|| role.get("name").and_then(Value::as_str).map(str::to_owned))
                .flatten()
        })
    }

    fn role_for_target_mut(&mut self, name: &str) -> &mut RoleState {
        match self.bin_for(name) {
            Some(bin) if self.bins.contains_key(&bin) => {
                self.bins.get_mut(&bin).expect("bin exists")
            }
            _ => &mut self.targets,
        }
    }

    /// Adds or replaces a target (metadata only; the server serves the bytes under `SHA256.name`).
    pub fn add_target(&mut self, name: &str, entry: TargetEntry) -> Result<(), RepoError> {
        check_target_name(name)?;
        if !entry.hashes.contains_key("sha256") {
            return Err(metadata_error(name, "targets need a sha256 hash"));
        }
        let state = self.role_for_target_mut(name);
        state.signed["targets"][name] = entry.to_value();
        state.dirty = true;
        Ok(())
    }

    /// Adds a file as target `name` and copies it to `targets/` as `SHA256.name` (consistent snapshot layout).
    pub fn add_target_file(&mut self, name: &str, path: &Path) -> Result<TargetEntry, RepoError> {
        check_target_name(name)?;
        let entry = TargetEntry::from_file(path)?;
        let stored = self.target_path(name, &entry);
        if let Some(parent) = stored.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
        }
        std::fs::copy(path, &stored).map_err(|e| io_error(&stored, e))?;
        self.add_target(name, entry.clone())?;
        Ok(entry)
    }

    /// Where a target's bytes live under `targets/` (`dir/SHA256.file`).
    pub fn target_path(&self, name: &str, entry: &TargetEntry) -> PathBuf {
        let digest = entry.hashes.get("sha256").cloned().unwrap_or_default();
        let file = match name.rsplit_once('/') {
            Some((dir, file)) => format!("{dir}/{digest}.{file}"),
            None => format!("{digest}.{name}"),
        };
        self.targets_dir().join(file)
    }

    /// Removes a target; returns whether it existed.
    pub fn remove_target(&mut self, name: &str) -> bool {
        let state = self.role_for_target_mut(name);
        let removed = state
            .signed
            .get_mut("targets")
            .and_then(Value::as_object_mut)
            .and_then(|t| t.remove(name))
            .is_some();
        state.dirty |= removed;
        removed
    }

    /// The current entry of a target, if listed.
    pub fn target(&self, name: &str) -> Option<TargetEntry> {
        let state = match self.bin_for(name) {
            Some(bin) => self.bins.get(&bin).unwrap_or(&self.targets),
            None => &self.targets,
        };
        let value = state.signed.get("targets")?.get(name)?;
        let hashes = value
            .get("hashes")?
            .as_object()?
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect();
        Some(TargetEntry {
            length: value.get("length")?.as_u64()?,
            hashes,
            custom: value.get("custom").cloned(),
        })
    }

    /// Signs and writes every changed role, then a new snapshot and timestamp (if anything changed or they are
    /// missing). Files are written bins → targets → snapshot → timestamp, so a client never sees a timestamp
    /// that points at metadata not yet written. Returns the roles written.
    pub fn publish(&mut self, now: i64) -> Result<Vec<String>, RepoError> {
        let mut written = Vec::new();
        let metadata = self.metadata_dir();
        let bin_names: Vec<String> = self.bins.keys().cloned().collect();
        for name in bin_names {
            let state = self.bins.get_mut(&name).expect("bin exists");
            if state.dirty {
                let bytes = sign_role(
                    state,
                    now + self.config.targets_lifetime,
                    &self.keys.targets,
                )?;
                write_versioned(&metadata, &name, state.version(), &bytes)?;
                written.push(name);
            }
        }
        if self.targets.dirty {
            let bytes = sign_role(
                &mut self.targets,
                now + self.config.targets_lifetime,
                &self.keys.targets,
            )?;
            write_versioned(&metadata, "targets", self.targets.version(), &bytes)?;
            written.push("targets".to_string());
        }
        let snapshot_dirty = !written.is_empty() || self.snapshot.as_ref().is_none_or(|s| s.dirty);
        if snapshot_dirty {
            let mut meta = Map::new();
            for (name, state) in std::iter::once(("targets", &self.targets))
                .chain(self.bins.iter().map(|(n, s)| (n.as_str(), s)))
            {
                let path = metadata.join(format!(
                    "{}.{}.json",
                    state.version(),
                    keel_tuf::store::percent_encode(name)
                ));
                let bytes = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
                meta.insert(format!("{name}.json"), meta_entry(state.version(), &bytes));
            }
            let mut state = self.snapshot.take().unwrap_or(RoleState {
                signed: json!({"_type": "snapshot", "spec_version": SPEC_VERSION, "version": 0, "expires": format_expires(0)}),
                dirty: true,
            });
            state.signed["meta"] = Value::Object(meta);
            let bytes = sign_role(
                &mut state,
                now + self.config.snapshot_lifetime,
                &self.keys.snapshot,
            )?;
            write_versioned(&metadata, "snapshot", state.version(), &bytes)?;
            self.snapshot = Some(state);
            written.push("snapshot".to_string());
        }
        let timestamp_dirty = snapshot_dirty || self.timestamp.as_ref().is_none_or(|t| t.dirty);
        if timestamp_dirty {
            let snapshot = self
                .snapshot
                .as_ref()
                .expect("snapshot written above or loaded");
            let path = metadata.join(format!("{}.snapshot.json", snapshot.version()));
            let bytes = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
            let mut state = self.timestamp.take().unwrap_or(RoleState {
                signed: json!({"_type": "timestamp", "spec_version": SPEC_VERSION, "version": 0, "expires": format_expires(0)}),
                dirty: true,
            });
            state.signed["meta"] = json!({"snapshot.json": meta_entry(snapshot.version(), &bytes)});
            let bytes = sign_role(
                &mut state,
                now + self.config.timestamp_lifetime,
                &self.keys.timestamp,
            )?;
            write_file(&metadata.join("timestamp.json"), &bytes)?;
            self.timestamp = Some(state);
            written.push("timestamp".to_string());
        }
        Ok(written)
    }

    /// Re-signs every role that expires within half its lifetime (timestamp: 12 h of 1 day by default) and
    /// publishes. Call it periodically (the server does every few minutes).
    pub fn refresh_expiring(&mut self, now: i64) -> Result<RefreshReport, RepoError> {
        let targets_margin = self.config.targets_lifetime / 2;
        for state in self
            .bins
            .values_mut()
            .chain(std::iter::once(&mut self.targets))
        {
            if state.expires() - now < targets_margin {
                state.dirty = true;
            }
        }
        if let Some(state) = &mut self.snapshot {
            if state.expires() - now < self.config.snapshot_lifetime / 2 {
                state.dirty = true;
            }
        }
        if let Some(state) = &mut self.timestamp {
            if state.expires() - now < self.config.timestamp_lifetime / 2 {
                state.dirty = true;
            }
        }
        let resigned = self.publish(now)?;
        let root_expires = self
            .root
            .get("expires")
            .and_then(Value::as_str)
            .and_then(keel_tuf::time::parse_expires)
            .unwrap_or(i64::MIN);
        Ok(RefreshReport {
            resigned,
            root_expires_soon: root_expires - now < self.config.root_warning,
        })
    }

    /// Names of the hashed bins.
    pub fn bin_names(&self) -> Vec<String> {
        self.bins.keys().cloned().collect()
    }
}

fn sign_role(state: &mut RoleState, expires: i64, key: &SigningKey) -> Result<Vec<u8>, RepoError> {
    let version = state.version() + 1;
    state.signed["version"] = json!(version);
    state.signed["expires"] = json!(format_expires(expires));
    state.dirty = false;
    sign_metadata(&state.signed, &[key])
}

fn write_versioned(
    metadata: &Path,
    role: &str,
    version: u64,
    bytes: &[u8],
) -> Result<(), RepoError> {
    let encoded = keel_tuf::store::percent_encode(role);
    write_file(&metadata.join(format!("{version}.{encoded}.json")), bytes)?;
    write_file(&metadata.join(format!("{encoded}.json")), bytes)
}

fn meta_entry(version: u64, bytes: &[u8]) -> Value {
    json!({"version": version, "length": bytes.len(), "hashes": {"sha256": hex::encode(Sha256::digest(bytes))}})
}
