//! TUF helpers shared by the repository tests (tuf_prune, tuf_replicas): a keel-tuf fetcher that
//! sends a device's DDI credentials, and the versions stored per role.

use keel_tuf::fetch::{FetchError, Fetcher};
use keel_tuf::time::TimePolicy;
use keel_tuf::updater::{Updater, UpdaterConfig};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// Fetches with a device's DDI credentials (keel-agent sends the same header).
pub struct DeviceFetcher {
    pub token: String,
    pub runtime: tokio::runtime::Handle,
}

impl Fetcher for DeviceFetcher {
    fn open(&self, url: &str) -> Result<Box<dyn Read + '_>, FetchError> {
        let result = self.runtime.block_on(async {
            let response = reqwest::Client::new()
                .get(url)
                .header("Authorization", format!("TargetToken {}", self.token))
                .send()
                .await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.bytes().await?))
        });
        match result {
            Ok((status, bytes)) if status.is_success() => Ok(Box::new(std::io::Cursor::new(bytes))),
            Ok((status, _)) if status == 404 || status == 403 => Err(FetchError::NotFound {
                url: url.to_string(),
            }),
            Ok((status, _)) => Err(FetchError::Status {
                url: url.to_string(),
                status: status.as_u16(),
            }),
            Err(e) => Err(FetchError::Transport {
                url: url.to_string(),
                message: e.to_string(),
            }),
        }
    }
}

/// Versions stored per role (`snapshot.json`, `root.json`, `bin-3.json`, ...), ascending, from
/// metadata file names (`N.<role>.json`; unversioned names are skipped).
pub fn versions(names: impl IntoIterator<Item = impl AsRef<str>>) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for name in names {
        if let Some((version, role)) = name.as_ref().split_once('.') {
            if let Ok(version) = version.parse() {
                out.entry(role.to_string()).or_default().push(version);
            }
        }
    }
    for list in out.values_mut() {
        list.sort();
    }
    out
}

/// Refreshes the device's trusted metadata in `dir` from `url` with keel-tuf's `Updater`:
/// (trusted root version, name → sha256 of the `names` listed as targets).
pub fn refresh_blocking(
    dir: &Path,
    url: &str,
    fetcher: DeviceFetcher,
    names: &[String],
) -> (u64, BTreeMap<String, String>) {
    let mut updater = Updater::new(
        dir,
        url,
        None,
        fetcher,
        UpdaterConfig::default(),
        TimePolicy::default(),
    )
    .unwrap();
    updater
        .refresh()
        .unwrap_or_else(|e| panic!("refresh from {url}: {e}"));
    let mut found = BTreeMap::new();
    for name in names {
        if let Some(info) = updater.get_target_info(name).unwrap() {
            let sha256 = info
                .file
                .hashes
                .0
                .iter()
                .find(|(algorithm, _)| algorithm == "sha256");
            found.insert(name.clone(), sha256.expect("a sha256").1.clone());
        }
    }
    (updater.trusted().root().version, found)
}
