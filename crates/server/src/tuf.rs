//! A TUF repository per tenant (docs/tuf.md), built on `keel-tuf-repo`.
//!
//! Layout: `DATA_DIR/tuf/<tenant>/metadata/` (root versions from the offline `keel tuf init` /
//! `rotate-root`, and everything the server signs) and the online private keys next to it:
//! `online.pem` for targets, snapshot and timestamp, or `targets.pem`, `snapshot.pem`, `timestamp.pem`.
//! A tenant without `metadata/root.json` has no TUF repository.
//!
//! * Every artifact uploaded becomes the target `<module name>/<module version>/<filename>` with its length
//!   and sha256 ([`keel_tuf::artifact_target_name`]), in hashed bins, published at once.
//! * Devices read the metadata with their DDI credentials from
//!   `GET /{tenant}/controller/v1/{controllerId}/tuf/{file}`; serving `timestamp.json` first re-signs
//!   whatever is about to expire, so metadata stays fresh while devices poll.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use keel_tuf_repo::{OnlineKeys, RepoConfig, Repository, SigningKey, TargetEntry};

use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::store::Store;
use crate::AppState;

/// Where a tenant's repository lives.
pub fn tenant_dir(state: &AppState, tenant: &str) -> PathBuf {
    state
        .config
        .data_dir
        .join("tuf")
        .join(keel_tuf::store::percent_encode(tenant))
}

/// True if the tenant has a TUF repository (a root was installed).
pub fn enabled(dir: &Path) -> bool {
    dir.join("metadata").join("root.json").is_file()
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

/// One lock per repository directory: publishing is read-modify-write of the metadata files.
fn lock_for(dir: &Path) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    locks.entry(dir.to_path_buf()).or_default().clone()
}

/// How long a TUF writer may hold the repository's database lock before another replica may
/// take it (a writer that died); signing a publish takes milliseconds.
const WRITER_LEASE_MS: i64 = 60_000;

/// Runs `work` on the tenant's repository under its lock, off the async threads.
///
/// Writers are serialised across processes too: replicas that share the repository directory
/// take the database lease `tuf:<directory>` (table `leases`) around the read-modify-write of the
/// metadata, so two replicas never sign conflicting versions.
async fn with_repository<T: Send + 'static>(
    store: &Store,
    dir: PathBuf,
    work: impl FnOnce(&mut Repository) -> Result<T, keel_tuf_repo::RepoError> + Send + 'static,
) -> ApiResult<T> {
    let lease = format!("tuf:{}", dir.display());
    let holder = crate::auth::generate_token();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !store
        .acquire_lease(&lease, &holder, WRITER_LEASE_MS)
        .await?
    {
        if std::time::Instant::now() > deadline {
            return Err(ApiError::Internal(
                "TUF repository: another replica holds the writer lock".into(),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let result = with_local_repository(dir, work).await;
    if let Err(e) = store.release_lease(&lease, &holder).await {
        tracing::warn!("TUF repository: releasing the writer lock: {e}");
    }
    result
}

async fn with_local_repository<T: Send + 'static>(
    dir: PathBuf,
    work: impl FnOnce(&mut Repository) -> Result<T, keel_tuf_repo::RepoError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(move || {
        let lock = lock_for(&dir);
        let _guard = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut repository = Repository::open(&dir, online_keys(&dir)?, RepoConfig::default())
            .map_err(|e| ApiError::Internal(format!("TUF repository: {e}")))?;
        work(&mut repository).map_err(|e| ApiError::Internal(format!("TUF repository: {e}")))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("TUF task: {e}")))?
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
    let dir = tenant_dir(state, tenant);
    if !enabled(&dir) {
        return Ok(());
    }
    let name = keel_tuf::artifact_target_name(module_name, module_version, filename);
    let entry = TargetEntry {
        length: size,
        hashes: [("sha256".to_string(), sha256.to_string())].into(),
        custom: None,
    };
    with_repository(&state.store, dir, move |repository| {
        repository.add_target(&name, entry)?;
        repository.publish(keel_tuf::time::system_now())?;
        Ok(())
    })
    .await
}

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
    let dir = tenant_dir(&state, &tenant);
    let well_formed = file.ends_with(".json")
        && !file.starts_with('.')
        && !file.contains('/')
        && !file.contains('\\');
    if !enabled(&dir) || !well_formed {
        return Err(ApiError::NotFound("TUF metadata not found".into()));
    }
    if file == "timestamp.json" {
        with_repository(&state.store, dir.clone(), |repository| {
            let report = repository.refresh_expiring(keel_tuf::time::system_now())?;
            if report.root_expires_soon {
                tracing::warn!("TUF root expires soon: run `keel tuf rotate-root` offline");
            }
            Ok(())
        })
        .await?;
    }
    match tokio::fs::read(dir.join("metadata").join(&file)).await {
        Ok(bytes) => Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(ApiError::NotFound("TUF metadata not found".into()))
        }
        Err(e) => Err(e.into()),
    }
}
