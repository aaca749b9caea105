//! A TUF repository per tenant (docs/tuf.md), built on `keel-tuf-repo`.
//!
//! The database (table `tuf_metadata`) holds the authoritative copy of every tenant's metadata, so
//! replicas need no shared directory. Each replica keeps a local working copy in
//! `DATA_DIR/tuf/<tenant>/metadata/` for `keel_tuf_repo::Repository` (which works on files), and the
//! online private keys next to it: `online.pem` for targets, snapshot and timestamp, or
//! `targets.pem`, `snapshot.pem`, `timestamp.pem` (a deployment secret every replica is given, like
//! a TLS key). A tenant has a TUF repository once its `root.json` is in the database, or a local
//! `metadata/root.json` (the output of the offline `keel tuf init`) waits to be imported.
//!
//! Every change runs under the database lease `tuf:<tenant>` ([`with_repository`]):
//! 1. import: a local repository the database does not know yet, or root versions newer than the
//!    database's (an operator dropped a `keel tuf rotate-root` result into one replica's directory;
//!    each must be signed by its predecessor's root keys and its own), is uploaded;
//! 2. materialize: every stored file that differs from the local copy is written to it (atomically);
//!    unversioned files that are not stored are removed, so the repository opens on exactly the
//!    database's state;
//! 3. the work runs on the local copy (sign, publish);
//! 4. every role file it changed (`N.<role>.json` and `<role>.json`, `timestamp.json`) is uploaded in
//!    one transaction, each only if the stored copy is still the one it was built on, before the
//!    lease is released. A writer that stalled past its lease therefore fails (and retries from the
//!    new state) instead of storing a second, different version N;
//! 5. versions no client can still need are pruned (`prune`; docs/tuf.md, "Pruning old
//!    versions"): never roots, and a snapshot (with what it lists) only once the snapshot that
//!    replaced it has been stored longer than a timestamp stays valid, plus an hour.
//!
//! * Every artifact uploaded becomes the target `<module name>/<module version>/<filename>` with its length
//!   and sha256 ([`keel_tuf::artifact_target_name`]), in hashed bins, published at once.
//! * Devices read the metadata from the database with their DDI credentials at
//!   `GET /{tenant}/controller/v1/{controllerId}/tuf/{file}`. Serving `timestamp.json` takes the
//!   writer lease and re-signs whatever is about to expire only when the stored timestamp has less
//!   than half its lifetime left (at once if it expired, else at most once a second per replica),
//!   and once a minute per replica otherwise (which picks up new roots and replaced keys).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use keel_tuf_repo::{OnlineKeys, RepoConfig, RepoError, Repository, SigningKey, TargetEntry};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::store::{Store, TufFileWrite};
use crate::AppState;

/// Where a tenant's local working copy and online keys live.
pub fn tenant_dir(state: &AppState, tenant: &str) -> PathBuf {
    state
        .config
        .data_dir
        .join("tuf")
        .join(keel_tuf::store::percent_encode(tenant))
}

/// True if the tenant has a TUF repository: its root is in the database, or a local
/// `metadata/root.json` waits to be imported (it is imported now).
pub async fn enabled(state: &AppState, tenant: &str) -> ApiResult<bool> {
    if state.store.tuf_has_root(tenant).await? {
        return Ok(true);
    }
    let dir = tenant_dir(state, tenant);
    if !dir.join("metadata").join("root.json").is_file() {
        return Ok(false);
    }
    with_local_copy(&state.store, &dir, tenant, |_| Ok(())).await?;
    Ok(true)
}

/// The stored bytes of a metadata file (`root.json`, `3.snapshot.json`, ...), if any.
pub async fn stored_file(state: &AppState, tenant: &str, name: &str) -> ApiResult<Option<Vec<u8>>> {
    Ok(state.store.tuf_file(tenant, name).await?)
}

fn read_key(path: &Path) -> Result<SigningKey, ApiError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ApiError::Internal(format!("TUF key {}: {e}", path.display())))?;
    SigningKey::from_pkcs8_pem(&text)
        .map_err(|e| ApiError::Internal(format!("TUF key {}: {e}", path.display())))
}

fn online_keys(dir: &Path) -> Result<OnlineKeys, ApiError> {
    let shared = dir.join("online.pem");
    let key = |role: &str| {
        let specific = dir.join(format!("{role}.pem"));
        read_key(if specific.is_file() {
            &specific
        } else {
            &shared
        })
    };
    Ok(OnlineKeys {
        targets: key("targets")?,
        snapshot: key("snapshot")?,
        timestamp: key("timestamp")?,
    })
}

/// What this process knows about one local working copy.
#[derive(Default)]
struct LocalCopy {
    /// sha256 of the versioned files (`N.<role>.json`, never rewritten once signed) known to be
    /// on disk, so the working copy is not re-hashed on every change; filled on first use.
    /// Unversioned files are hashed every time (few, and rewritten by each publish). Held for
    /// the whole of a change, it also queues this process's writers of one tenant.
    versioned: tokio::sync::Mutex<HashMap<String, String>>,
    /// When serving `timestamp.json` last started a refresh.
    last_refresh: Mutex<Option<Instant>>,
}

fn local_copy(dir: &Path) -> Arc<LocalCopy> {
    static COPIES: OnceLock<Mutex<HashMap<PathBuf, Arc<LocalCopy>>>> = OnceLock::new();
    let mut copies = COPIES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    copies.entry(dir.to_path_buf()).or_default().clone()
}

/// How long a TUF writer may hold the repository's database lock before another replica may
/// take it (a writer that died); signing a publish takes milliseconds.
const WRITER_LEASE_MS: i64 = 60_000;

/// How often serving `timestamp.json` runs a refresh although the stored timestamp is fresh: it
/// imports new roots dropped into this replica's directory and re-signs with replaced keys.
const PERIODIC_REFRESH: Duration = Duration::from_secs(60);

/// How often a change is retried when another writer stored a newer state first.
const ATTEMPTS: usize = 3;

/// Runs `work` on the tenant's repository (opened with this replica's online keys) under the
/// writer lease `tuf:<tenant>`, with the local working copy brought up to date from the database
/// first, and whatever it signed stored in the database before the lease is released.
pub async fn with_repository<T: Send + 'static>(
    store: &Store,
    dir: &Path,
    tenant: &str,
    work: impl Fn(&mut Repository) -> Result<T, RepoError> + Send + Sync + 'static,
) -> ApiResult<T> {
    with_local_copy(store, dir, tenant, move |dir| {
        let mut repository = Repository::open(dir, online_keys(dir)?, RepoConfig::default())
            .map_err(|e| ApiError::Internal(format!("TUF repository: {e}")))?;
        work(&mut repository).map_err(|e| ApiError::Internal(format!("TUF repository: {e}")))
    })
    .await
}

/// [`with_repository`] for work on the working copy's directory (blocking code, run off the
/// async threads). It runs as a task of its own, so a caller that goes away (a device that hung
/// up) never leaves the lease held until it expires.
async fn with_local_copy<T: Send + 'static>(
    store: &Store,
    dir: &Path,
    tenant: &str,
    work: impl Fn(&Path) -> ApiResult<T> + Send + Sync + 'static,
) -> ApiResult<T> {
    let (store, dir, tenant) = (store.clone(), dir.to_path_buf(), tenant.to_string());
    tokio::spawn(async move { locked_change(&store, &dir, &tenant, work).await })
        .await
        .map_err(|e| ApiError::Internal(format!("TUF task: {e}")))?
}

async fn locked_change<T: Send + 'static>(
    store: &Store,
    dir: &Path,
    tenant: &str,
    work: impl Fn(&Path) -> ApiResult<T> + Send + Sync + 'static,
) -> ApiResult<T> {
    let work = Arc::new(work);
    let copy = local_copy(dir);
    let mut versioned = copy.versioned.lock().await;
    let lease = format!("tuf:{tenant}");
    for _ in 0..ATTEMPTS {
        let holder = crate::auth::generate_token();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !store
            .acquire_lease(&lease, &holder, WRITER_LEASE_MS)
            .await?
        {
            if Instant::now() > deadline {
                return Err(ApiError::Internal(
                    "TUF repository: another replica holds the writer lock".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let result = sync_and_run(store, dir, tenant, &mut versioned, work.clone()).await;
        if let Err(e) = store.release_lease(&lease, &holder).await {
            tracing::warn!("TUF repository: releasing the writer lock: {e}");
        }
        match result {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {
                tracing::warn!("TUF repository of {tenant}: another writer stored a newer state first; retrying");
            }
            Err(e) => {
                // The working copy may hold files this attempt wrote: hash them again next time.
                versioned.clear();
                return Err(e);
            }
        }
    }
    Err(ApiError::Internal(format!(
        "TUF repository of {tenant}: other writers kept storing newer states"
    )))
}

async fn blocking<T: Send + 'static>(
    task: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(task)
        .await
        .map_err(|e| ApiError::Internal(format!("TUF task: {e}")))?
}

/// One attempt under the lease: import, materialize, work, upload. `None` if the upload found
/// that another writer stored a newer state first.
async fn sync_and_run<T: Send + 'static>(
    store: &Store,
    dir: &Path,
    tenant: &str,
    versioned: &mut HashMap<String, String>,
    work: Arc<impl Fn(&Path) -> ApiResult<T> + Send + Sync + 'static>,
) -> ApiResult<Option<T>> {
    let metadata = dir.join("metadata");
    let listing = store.tuf_listing(tenant).await?;
    let mut snapshots_stored_at: BTreeMap<u64, i64> = listing
        .iter()
        .filter_map(|file| Some((snapshot_version(&file.name)?, file.stored_at)))
        .collect();
    let mut stored: BTreeMap<String, String> = listing
        .into_iter()
        .map(|file| (file.name, file.sha256))
        .collect();

    // 1. Import what only the local directory has.
    let scan_dir = metadata.clone();
    let scan_stored = stored.clone();
    let candidates = blocking(move || import_candidates(&scan_dir, &scan_stored)).await?;
    let imports = match candidates {
        Import::Nothing => Vec::new(),
        Import::Repository(files) => {
            let root = files
                .iter()
                .find(|f| f.name == "root.json")
                .ok_or_else(|| ApiError::Internal("TUF import: no root.json".into()))?;
            keel_tuf::trusted::TrustedMetadataSet::new(&root.bytes, keel_tuf::time::system_now())
                .map_err(|e| {
                ApiError::Internal(format!(
                    "TUF import of {}: root.json: {e}",
                    metadata.display()
                ))
            })?;
            files
        }
        Import::NewRoots(roots) => {
            let trusted = store.tuf_file(tenant, "root.json").await?.ok_or_else(|| {
                ApiError::Internal("TUF: root.json is listed but not stored".into())
            })?;
            verified_root_chain(tenant, &trusted, roots, stored.get("root.json").cloned())
        }
    };
    if !imports.is_empty() {
        if !store.put_tuf_files(tenant, &imports).await? {
            return Ok(None);
        }
        tracing::info!(
            "TUF repository of {tenant}: imported {} from {}",
            imports
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            metadata.display()
        );
        for file in imports {
            stored.insert(file.name, file.sha256);
        }
    }

    // 2. Bring the working copy up to date.
    let plan_dir = metadata.clone();
    let plan_stored = stored.clone();
    let mut cache = std::mem::take(versioned);
    let (missing, cache_back) = blocking(move || {
        let missing = stale_local_files(&plan_dir, &plan_stored, &mut cache)?;
        Ok((missing, cache))
    })
    .await?;
    *versioned = cache_back;
    // Forget versioned files that were pruned (step 3 removes them from the working copy).
    versioned.retain(|name, _| stored.contains_key(name));
    let mut fetched = Vec::with_capacity(missing.len());
    for name in missing {
        let bytes = store
            .tuf_file(tenant, &name)
            .await?
            .ok_or_else(|| ApiError::Internal(format!("TUF: {name} is listed but not stored")))?;
        fetched.push((name, bytes));
    }

    // 3. The work, and 4. what it changed.
    let work_dir = dir.to_path_buf();
    let work_stored = stored.clone();
    let (value, uploads, written) = blocking(move || {
        let metadata = work_dir.join("metadata");
        let mut written = Vec::new();
        for (name, bytes) in fetched {
            write_file(&metadata.join(&name), &bytes)?;
            written.push((name, sha256_hex(&bytes)));
        }
        remove_unstored(&metadata, &work_stored)?;
        let value = work(&work_dir)?;
        let uploads = changed_role_files(&metadata, &work_stored)?;
        Ok((value, uploads, written))
    })
    .await?;
    for (name, sha256) in written {
        if is_versioned(&name) {
            versioned.insert(name, sha256);
        }
    }
    if !uploads.is_empty() && !store.put_tuf_files(tenant, &uploads).await? {
        return Ok(None);
    }
    let uploaded_at = crate::store::now_ms();
    for file in uploads {
        if is_versioned(&file.name) {
            versioned.insert(file.name.clone(), file.sha256.clone());
        }
        if let Some(version) = snapshot_version(&file.name) {
            snapshots_stored_at.insert(version, uploaded_at);
        }
        stored.insert(file.name, file.sha256);
    }

    // 5. Prune versions no client can still need (still under the lease).
    if let Err(e) = prune(
        store,
        &metadata,
        tenant,
        &stored,
        &snapshots_stored_at,
        versioned,
    )
    .await
    {
        tracing::warn!("TUF repository of {tenant}: pruning old metadata versions: {e}");
    }
    Ok(Some(value))
}

/// How long after a snapshot was replaced it (and every role version it lists) is kept: a client
/// may have fetched a timestamp pointing at it until the moment it was replaced, and accepts that
/// timestamp until it expires, one timestamp lifetime later; plus an hour for clocks that differ
/// between replicas and devices.
pub fn prune_grace_secs() -> i64 {
    RepoConfig::default().timestamp_lifetime + 3600
}

/// Most metadata files one prune run deletes (a repository with a long history, e.g. one that
/// predates pruning, is trimmed over several changes).
const PRUNE_BATCH: usize = 500;

/// The oldest snapshot version some client may still need, given when each stored snapshot
/// version was stored: the newest (current) one, and, going back, every version whose successor
/// was stored at or after `cutoff` (ms). `None` if no snapshot is stored.
fn oldest_needed_snapshot(stored_at: &BTreeMap<u64, i64>, cutoff: i64) -> Option<u64> {
    let mut versions = stored_at.iter().rev();
    let (mut oldest, mut successor_stored_at) = versions.next().map(|(v, at)| (*v, *at))?;
    for (version, at) in versions {
        if successor_stored_at < cutoff {
            break;
        }
        oldest = *version;
        successor_stored_at = *at;
    }
    Some(oldest)
}

/// The stored files one prune run deletes, oldest first, at most `limit`: snapshot versions below
/// `oldest_snapshot`, and versions of the other roles below the version that snapshot (its
/// `meta`) lists for them. A newer snapshot never lists an older role version (versions only grow,
/// and each is published with a snapshot listing it), so every version a kept snapshot lists is
/// kept. Root versions, unversioned files, and roles the snapshot does not list are kept. Role
/// files go before snapshots, so a run cut short by `limit` leaves old snapshots, which make the
/// next run resume.
fn prune_candidates(
    stored: &BTreeMap<String, String>,
    oldest_snapshot: u64,
    oldest_snapshot_bytes: &[u8],
    limit: usize,
) -> ApiResult<Vec<String>> {
    let snapshot: Value = serde_json::from_slice(oldest_snapshot_bytes)
        .map_err(|e| ApiError::Internal(format!("TUF {oldest_snapshot}.snapshot.json: {e}")))?;
    let meta = snapshot
        .pointer("/signed/meta")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            ApiError::Internal(format!("TUF {oldest_snapshot}.snapshot.json: no meta"))
        })?;
    // `N.<encoded role>.json` → the oldest version kept.
    let mut keep_from: HashMap<String, u64> = HashMap::new();
    for (file, entry) in meta {
        let (Some(role), Some(version)) = (
            file.strip_suffix(".json"),
            entry.get("version").and_then(Value::as_u64),
        ) else {
            continue;
        };
        keep_from.insert(
            format!("{}.json", keel_tuf::store::percent_encode(role)),
            version,
        );
    }
    keep_from.insert("snapshot.json".into(), oldest_snapshot);
    let mut candidates: Vec<(bool, u64, &String)> = stored
        .keys()
        .filter_map(|name| {
            let (version, rest) = name.split_once('.')?;
            let version: u64 = version.parse().ok()?;
            if rest == "root.json" || version >= *keep_from.get(rest)? {
                return None;
            }
            Some((rest == "snapshot.json", version, name))
        })
        .collect();
    candidates.sort();
    Ok(candidates
        .into_iter()
        .take(limit)
        .map(|(_, _, name)| name.clone())
        .collect())
}

/// Deletes, from the database and the working copy, the metadata versions no client can need
/// any more (docs/tuf.md, "Pruning old versions"): costs nothing unless there are some.
async fn prune(
    store: &Store,
    metadata: &Path,
    tenant: &str,
    stored: &BTreeMap<String, String>,
    snapshots_stored_at: &BTreeMap<u64, i64>,
    versioned: &mut HashMap<String, String>,
) -> ApiResult<()> {
    let cutoff = crate::store::now_ms().saturating_sub(prune_grace_secs().saturating_mul(1000));
    let Some(oldest) = oldest_needed_snapshot(snapshots_stored_at, cutoff) else {
        return Ok(());
    };
    if snapshots_stored_at.range(..oldest).next().is_none() {
        return Ok(());
    }
    let Some(snapshot_sha256) = stored.get("snapshot.json") else {
        return Ok(());
    };
    let name = format!("{oldest}.snapshot.json");
    let bytes = store
        .tuf_file(tenant, &name)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("TUF: {name} is listed but not stored")))?;
    let names = prune_candidates(stored, oldest, &bytes, PRUNE_BATCH)?;
    if names.is_empty()
        || !store
            .prune_tuf_files(tenant, snapshot_sha256, &names)
            .await?
    {
        return Ok(());
    }
    tracing::info!(
        "TUF repository of {tenant}: pruned {} old metadata versions (kept snapshot {oldest} and newer)",
        names.len()
    );
    for name in &names {
        versioned.remove(name);
    }
    let metadata = metadata.to_path_buf();
    blocking(move || {
        for name in names {
            match std::fs::remove_file(metadata.join(&name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    })
    .await
}

/// What the local directory has that the database does not.
enum Import {
    Nothing,
    /// The database has no repository for the tenant: every local metadata file.
    Repository(Vec<TufFileWrite>),
    /// Root versions newer than the database's newest `N.root.json`, in version order.
    NewRoots(Vec<(u64, Vec<u8>)>),
}

fn import_candidates(metadata: &Path, stored: &BTreeMap<String, String>) -> ApiResult<Import> {
    let names = local_names(metadata)?;
    if !stored.contains_key("root.json") {
        if !names.iter().any(|n| n == "root.json") {
            return Ok(Import::Nothing);
        }
        let mut files = Vec::new();
        for name in names {
            let bytes = read_file(&metadata.join(&name))?;
            files.push(TufFileWrite {
                sha256: sha256_hex(&bytes),
                replaces: stored.get(&name).cloned(),
                name,
                bytes,
            });
        }
        return Ok(Import::Repository(files));
    }
    let newest = stored
        .keys()
        .filter_map(|n| root_version(n))
        .max()
        .unwrap_or(0);
    let mut roots: Vec<(u64, Vec<u8>)> = Vec::new();
    for name in names {
        if let Some(version) = root_version(&name).filter(|v| *v > newest) {
            roots.push((version, read_file(&metadata.join(&name))?));
        }
    }
    if roots.is_empty() {
        return Ok(Import::Nothing);
    }
    roots.sort_by_key(|(version, _)| *version);
    Ok(Import::NewRoots(roots))
}

/// The new roots that extend the stored chain (each signed by a threshold of its predecessor's
/// root keys and of its own, as clients check), plus `root.json` = the newest of them.
fn verified_root_chain(
    tenant: &str,
    trusted: &[u8],
    roots: Vec<(u64, Vec<u8>)>,
    stored_root: Option<String>,
) -> Vec<TufFileWrite> {
    let mut chain =
        match keel_tuf::trusted::TrustedMetadataSet::new(trusted, keel_tuf::time::system_now()) {
            Ok(chain) => chain,
            Err(e) => {
                tracing::error!("TUF repository of {tenant}: the stored root does not verify: {e}");
                return Vec::new();
            }
        };
    let mut files = Vec::new();
    let mut newest = None;
    let trusted_version = chain.root().version;
    for (version, bytes) in roots {
        if version <= trusted_version {
            continue;
        }
        if let Err(e) = chain.update_root(&bytes) {
            tracing::error!(
                "TUF repository of {tenant}: not importing {version}.root.json (nor later roots): {e}"
            );
            break;
        }
        files.push(TufFileWrite {
            name: format!("{version}.root.json"),
            sha256: sha256_hex(&bytes),
            bytes: bytes.clone(),
            replaces: None,
        });
        newest = Some(bytes);
    }
    if let Some(bytes) = newest {
        files.push(TufFileWrite {
            name: "root.json".into(),
            sha256: sha256_hex(&bytes),
            bytes,
            replaces: stored_root,
        });
    }
    files
}

/// Names of the stored files whose local copy is missing or differs.
fn stale_local_files(
    metadata: &Path,
    stored: &BTreeMap<String, String>,
    versioned: &mut HashMap<String, String>,
) -> ApiResult<Vec<String>> {
    let mut stale = Vec::new();
    for (name, sha256) in stored {
        if !safe_name(name) {
            tracing::warn!("TUF: ignoring stored metadata file {name:?}");
            continue;
        }
        let known = is_versioned(name) && versioned.get(name) == Some(sha256);
        if known {
            continue;
        }
        let local = match std::fs::read(metadata.join(name)) {
            Ok(bytes) => Some(sha256_hex(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        if local.as_ref() == Some(sha256) {
            if is_versioned(name) {
                versioned.insert(name.clone(), sha256.clone());
            }
        } else {
            stale.push(name.clone());
        }
    }
    Ok(stale)
}

/// Removes local files the database does not have (left by a writer that failed before storing
/// them, or versions another replica pruned), so the repository opens on exactly the stored
/// state. Root versions stay: a newer one is an operator's rotation waiting to be imported.
fn remove_unstored(metadata: &Path, stored: &BTreeMap<String, String>) -> ApiResult<()> {
    if !stored.contains_key("root.json") {
        return Ok(());
    }
    for name in local_names(metadata)? {
        if root_version(&name).is_none() && !stored.contains_key(&name) {
            std::fs::remove_file(metadata.join(&name))?;
        }
    }
    Ok(())
}

/// The files of every role whose unversioned file the work changed: `N.<role>.json` (replacing
/// nothing) and `<role>.json` (replacing the stored copy), or `timestamp.json` alone.
fn changed_role_files(
    metadata: &Path,
    stored: &BTreeMap<String, String>,
) -> ApiResult<Vec<TufFileWrite>> {
    let mut roles = vec!["targets".to_string()];
    if let Ok(bytes) = std::fs::read(metadata.join("targets.json")) {
        let targets: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::Internal(format!("TUF targets.json: {e}")))?;
        roles.extend(
            targets
                .pointer("/signed/delegations/roles")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|role| role.get("name").and_then(Value::as_str).map(str::to_owned)),
        );
    }
    roles.extend(["snapshot".to_string(), "timestamp".to_string()]);
    let mut files = Vec::new();
    for role in roles {
        let encoded = keel_tuf::store::percent_encode(&role);
        let name = format!("{encoded}.json");
        let bytes = match std::fs::read(metadata.join(&name)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        let sha256 = sha256_hex(&bytes);
        if stored.get(&name) == Some(&sha256) {
            continue;
        }
        if role != "timestamp" {
            let version = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.pointer("/signed/version").and_then(Value::as_u64))
                .ok_or_else(|| ApiError::Internal(format!("TUF {name}: no version")))?;
            let versioned_name = format!("{version}.{encoded}.json");
            let versioned_bytes = read_file(&metadata.join(&versioned_name))?;
            files.push(TufFileWrite {
                name: versioned_name,
                sha256: sha256_hex(&versioned_bytes),
                bytes: versioned_bytes,
                replaces: None,
            });
        }
        files.push(TufFileWrite {
            replaces: stored.get(&name).cloned(),
            name,
            sha256,
            bytes,
        });
    }
    Ok(files)
}

/// Metadata file names in a local directory (regular `*.json` files; temporary files start with `.`).
fn local_names(metadata: &Path) -> ApiResult<Vec<String>> {
    let entries = match std::fs::read_dir(metadata) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        if let Some(name) = entry.file_name().to_str().filter(|n| safe_name(n)) {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// A plain metadata file name: `*.json`, no path separators, not hidden.
fn safe_name(name: &str) -> bool {
    name.ends_with(".json") && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

/// `N.<role>.json` (signed once, never rewritten) as opposed to `<role>.json`.
fn is_versioned(name: &str) -> bool {
    name.split_once('.').is_some_and(|(version, _)| {
        !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit())
    })
}

fn root_version(name: &str) -> Option<u64> {
    name.strip_suffix(".root.json")?.parse().ok()
}

fn snapshot_version(name: &str) -> Option<u64> {
    name.strip_suffix(".snapshot.json")?.parse().ok()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn read_file(path: &Path) -> ApiResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| ApiError::Internal(format!("{}: {e}", path.display())))
}

fn write_file(path: &Path, bytes: &[u8]) -> ApiResult<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    keel_tuf::store::write_atomically(path, bytes)
        .map_err(|e| ApiError::Internal(format!("{}: {e}", path.display())))
}

/// Makes an uploaded artifact a TUF target of its tenant (no-op for tenants without a repository).
pub async fn add_artifact(
    state: &AppState,
    tenant: &str,
    module_name: &str,
    module_version: &str,
    filename: &str,
    sha256: &str,
    size: u64,
) -> ApiResult<()> {
    if !enabled(state, tenant).await? {
        return Ok(());
    }
    let name = keel_tuf::artifact_target_name(module_name, module_version, filename);
    let entry = TargetEntry {
        length: size,
        hashes: [("sha256".to_string(), sha256.to_string())].into(),
        custom: None,
    };
    let dir = tenant_dir(state, tenant);
    with_repository(&state.store, &dir, tenant, move |repository| {
        repository.add_target(&name, entry.clone())?;
        repository.publish(keel_tuf::time::system_now())?;
        Ok(())
    })
    .await
}

/// Re-signs what is about to expire (the timestamp first of all) and warns about an expiring root.
pub async fn refresh(state: &AppState, tenant: &str) -> ApiResult<()> {
    let dir = tenant_dir(state, tenant);
    let report = with_repository(&state.store, &dir, tenant, |repository| {
        repository.refresh_expiring(keel_tuf::time::system_now())
    })
    .await?;
    if report.root_expires_soon {
        tracing::warn!("TUF root of {tenant} expires soon: run `keel tuf rotate-root` offline");
    }
    Ok(())
}

/// Seconds until a stored `timestamp.json` expires (`i64::MIN` if it cannot be read).
fn time_left(timestamp: &[u8]) -> i64 {
    serde_json::from_slice::<Value>(timestamp)
        .ok()
        .and_then(|v| {
            v.pointer("/signed/expires")
                .and_then(Value::as_str)
                .and_then(keel_tuf::time::parse_expires)
        })
        .map_or(i64::MIN, |expires| {
            expires.saturating_sub(keel_tuf::time::system_now())
        })
}

/// Least time between two refreshes started by serving a timestamp that is valid but has less
/// than half its lifetime left: a burst of device fetches then runs one refresh, not one each.
const EXPIRING_REFRESH: Duration = Duration::from_secs(1);

/// The route serving a tenant's TUF metadata files to devices (docs/tuf.md).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route(
        "/{tenant}/controller/v1/{controller_id}/tuf/{file}",
        get(metadata),
    )
}

async fn metadata(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath((tenant, controller_id, file)): ApiPath<(String, String, String)>,
) -> ApiResult<Response> {
    crate::auth::device(&state.store, &headers, &tenant, &controller_id, false).await?;
    if !safe_name(&file) {
        return Err(ApiError::NotFound("TUF metadata not found".into()));
    }
    let mut bytes = state.store.tuf_file(&tenant, &file).await?;
    if file == "timestamp.json" {
        let copy = local_copy(&tenant_dir(&state, &tenant));
        let left = bytes.as_deref().map_or(i64::MIN, time_left);
        // Missing or expired: refresh now. Expiring: at most once a second. Otherwise once a
        // minute (new roots, replaced keys).
        let due = {
            let mut last = copy
                .last_refresh
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let since = last.map_or(Duration::MAX, |at| at.elapsed());
            let due = left <= 0
                || (left < RepoConfig::default().timestamp_lifetime / 2
                    && since >= EXPIRING_REFRESH)
                || since >= PERIODIC_REFRESH;
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due && enabled(&state, &tenant).await? {
            match refresh(&state, &tenant).await {
                Ok(()) => bytes = state.store.tuf_file(&tenant, &file).await?,
                // The stored timestamp is still valid: serve it, a later fetch tries again.
                Err(e) if left > 0 => {
                    tracing::error!("TUF repository of {tenant}: re-signing failed: {e}")
                }
                Err(e) => return Err(e),
            }
        }
    } else if bytes.is_none() && enabled(&state, &tenant).await? {
        // A root installed in this replica's directory may just have been imported.
        bytes = state.store.tuf_file(&tenant, &file).await?;
    }
    match bytes {
        Some(bytes) => Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response()),
        None => Err(ApiError::NotFound("TUF metadata not found".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_are_kept_until_their_successor_is_older_than_the_cutoff() {
        let cutoff = 1_000;
        // Stored at 100, 200 (both old), 1500, 1600: 2 was replaced at 1500, after the cutoff.
        let times = BTreeMap::from([(1, 100), (2, 200), (3, 1_500), (4, 1_600)]);
        assert_eq!(oldest_needed_snapshot(&times, cutoff), Some(2));
        // Only the current one, long ago: nothing older is needed.
        let times = BTreeMap::from([(5, 100), (6, 200)]);
        assert_eq!(oldest_needed_snapshot(&times, cutoff), Some(6));
        assert_eq!(oldest_needed_snapshot(&BTreeMap::new(), cutoff), None);
    }

    #[test]
    fn candidates_are_old_role_versions_first_then_old_snapshots_never_roots() {
        let snapshot = serde_json::json!({"signed": {"meta": {
            "targets.json": {"version": 2},
            "bin-0.json": {"version": 3},
        }}});
        let stored: BTreeMap<String, String> = [
            "1.root.json",
            "2.root.json",
            "root.json",
            "1.targets.json",
            "2.targets.json",
            "targets.json",
            "1.bin-0.json",
            "2.bin-0.json",
            "3.bin-0.json",
            "4.bin-0.json",
            "bin-0.json",
            "1.bin-1.json",
            "3.snapshot.json",
            "4.snapshot.json",
            "5.snapshot.json",
            "snapshot.json",
            "timestamp.json",
        ]
        .iter()
        .map(|name| (name.to_string(), String::new()))
        .collect();
        let bytes = serde_json::to_vec(&snapshot).unwrap();
        let all = prune_candidates(&stored, 5, &bytes, 100).unwrap();
        assert_eq!(
            all,
            [
                "1.bin-0.json",
                "1.targets.json",
                "2.bin-0.json",
                "3.snapshot.json",
                "4.snapshot.json"
            ]
        );
        // A bounded run deletes role files first: the old snapshots left make the next run go on.
        assert_eq!(
            prune_candidates(&stored, 5, &bytes, 2).unwrap(),
            ["1.bin-0.json", "1.targets.json"]
        );
    }
}
