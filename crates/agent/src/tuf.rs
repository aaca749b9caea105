//! TUF enforcement for DDI installs (docs/tuf.md).
//!
//! With a `[tuf]` section the agent installs a DDI artifact only if it is a current TUF target of the
//! tenant's repository: before downloading, metadata is refreshed (keel-tuf: root chain, timestamp, snapshot,
//! targets and hashed bins, loaded lazily) and the target `<module name>/<module version>/<filename>` must exist
//! with the length and sha256 the deployment announces; while installing, the stream passes through a
//! [`VerifyingReader`], and the installer reads the bundle to its end before activating, so a byte that differs
//! from the TUF record fails the install before the bootloader is touched.

use std::io::Read;
use std::path::{Path, PathBuf};

use keel_tuf::{FetchError, Fetcher, TargetInfo, TimePolicy, Updater, UpdaterConfig};
use serde::Deserialize;

pub use keel_tuf::VerifyingReader;

/// `[tuf]` in the agent configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TufConfig {
    /// The initial trusted `root.json`, shipped in the image (later roots are fetched and kept in the state
    /// directory).
    pub root: PathBuf,
    /// Base URL of the metadata. Default: the DDI controller URL + `/tuf/` (keel-server serves it there with
    /// the device's DDI credentials).
    #[serde(default)]
    pub metadata_url: Option<String>,
    /// Lowest believable time in seconds since 1970 (e.g. the image build time): for devices without a
    /// battery-backed clock, metadata is never checked against an earlier time.
    #[serde(default)]
    pub build_time: Option<i64>,
    /// Where the trusted metadata is kept (exact bytes, atomic writes). Default: `<state_dir>/tuf`.
    #[serde(default)]
    pub metadata_dir: Option<PathBuf>,
}

/// Why an artifact was refused.
#[derive(Debug, thiserror::Error)]
pub enum TufError {
    /// keel-tuf refused: storing the initial root, refreshing the metadata (fetch, signature,
    /// expiry, rollback), or the target is not in the repository.
    #[error("TUF: {0}")]
    Tuf(#[from] keel_tuf::Error),
    /// The initial `root.json` could not be read.
    #[error("TUF: initial root {path}: {source}")]
    Root {
        /// The `root` file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The deployment's size or sha256 of the artifact differs from the TUF target.
    #[error("TUF: target {name}: {what} in the deployment ({announced}) differs from the TUF record ({recorded})")]
    Mismatch {
        /// The TUF target path (`<module name>/<module version>/<filename>`).
        name: String,
        /// `size` or `sha256`.
        what: &'static str,
        /// The value in the deployment.
        announced: String,
        /// The value in the TUF record.
        recorded: String,
    },
}

/// Fetches metadata with the agent's HTTP client and DDI credentials.
pub struct AgentFetcher {
    http: ureq::Agent,
    headers: Vec<(String, String)>,
}

impl AgentFetcher {
    /// A fetcher that sends `headers` (the DDI `Authorization`) with every request through `http`.
    pub fn new(http: ureq::Agent, headers: Vec<(String, String)>) -> Self {
        AgentFetcher { http, headers }
    }
}

impl Fetcher for AgentFetcher {
    fn open(&self, url: &str) -> Result<Box<dyn Read + '_>, FetchError> {
        let mut request = self.http.get(url);
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        match request.call() {
            Ok(response) => Ok(Box::new(response.into_body().into_reader())),
            Err(ureq::Error::StatusCode(403 | 404)) => Err(FetchError::NotFound {
                url: url.to_string(),
            }),
            Err(ureq::Error::StatusCode(status)) => Err(FetchError::Status {
                url: url.to_string(),
                status,
            }),
            Err(e) => Err(FetchError::Transport {
                url: url.to_string(),
                message: e.to_string(),
            }),
        }
    }
}

/// Refreshes the TUF metadata kept in the metadata directory and returns the record of target `name`, checked
/// against the length and sha256 the deployment announced.
pub fn check_target(
    config: &TufConfig,
    state_dir: &Path,
    metadata_url: &str,
    fetcher: AgentFetcher,
    name: &str,
    announced_size: Option<u64>,
    announced_sha256: Option<&str>,
) -> Result<TargetInfo, TufError> {
    let metadata_dir = config
        .metadata_dir
        .clone()
        .unwrap_or_else(|| state_dir.join("tuf"));
    if !metadata_dir.join("root.json").is_file() {
        let root = std::fs::read(&config.root).map_err(|source| TufError::Root {
            path: config.root.display().to_string(),
            source,
        })?;
        keel_tuf::init_trusted_root(&metadata_dir, &root)?;
    }
    let time = TimePolicy {
        build_time_floor: config.build_time.unwrap_or(i64::MIN),
        floor_file: Some(metadata_dir.join("time-floor")),
        fixed_now: None,
    };
    let mut updater = Updater::new(
        &metadata_dir,
        metadata_url,
        None,
        fetcher,
        UpdaterConfig::default(),
        time,
    )?;
    updater.refresh()?;
    let info = updater.require_target(name)?;
    if let Some(size) = announced_size.filter(|size| *size != info.file.length) {
        return Err(TufError::Mismatch {
            name: name.to_string(),
            what: "size",
            announced: size.to_string(),
            recorded: info.file.length.to_string(),
        });
    }
    let recorded = info
        .file
        .hashes
        .0
        .iter()
        .find(|(algorithm, _)| algorithm == "sha256");
    if let (Some(announced), Some((_, recorded))) = (announced_sha256, recorded) {
        if !announced.eq_ignore_ascii_case(recorded) {
            return Err(TufError::Mismatch {
                name: name.to_string(),
                what: "sha256",
                announced: announced.to_string(),
                recorded: recorded.clone(),
            });
        }
    }
    Ok(info)
}

/// For a DDI deployment and its chosen `.swu` artifact: `Ok(None)` without a `[tuf]` section; otherwise the
/// artifact's TUF record (refreshed metadata; target `<chunk name>/<chunk version>/<filename>`, matching the
/// announced size and sha256), or why the artifact is refused. Called before anything is downloaded.
pub fn target_for_deployment(
    agent: &crate::Agent,
    http: &ureq::Agent,
    headers: &[(String, String)],
    controller_base: &str,
    deployment: &serde_json::Value,
    artifact: &serde_json::Value,
) -> Result<Option<TargetInfo>, TufError> {
    let Some(config) = &agent.config.tuf else {
        return Ok(None);
    };
    let filename = artifact["filename"].as_str().unwrap_or_default();
    let chunk = deployment["deployment"]["chunks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|chunk| {
            chunk["artifacts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a == artifact)
        });
    let (name, version) = chunk
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default(),
                c["version"].as_str().unwrap_or_default(),
            )
        })
        .unwrap_or_default();
    let target = keel_tuf::artifact_target_name(name, version, filename);
    let metadata_url = config
        .metadata_url
        .clone()
        .unwrap_or_else(|| format!("{}/tuf/", controller_base.trim_end_matches('/')));
    let fetcher = AgentFetcher::new(http.clone(), headers.to_vec());
    check_target(
        config,
        &agent.config.state_dir,
        &metadata_url,
        fetcher,
        &target,
        artifact["size"].as_u64(),
        artifact["hashes"]["sha256"].as_str(),
    )
    .map(Some)
}

/// The download stream, passed through a [`VerifyingReader`] when there is a TUF record.
pub fn verified_stream<'a, R: Read + 'a>(
    reader: R,
    target: Option<TargetInfo>,
) -> Result<Box<dyn Read + 'a>, TufError> {
    match target {
        Some(info) => Ok(Box::new(VerifyingReader::new(reader, info)?)),
        None => Ok(Box::new(reader)),
    }
}
