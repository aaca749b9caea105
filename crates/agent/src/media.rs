//! Updates from removable media (`keel-agent media MOUNTPOINT`, run by `keel-media@.service`
//! when a USB stick or SD card is inserted; docs/agent.md "Updates from local media").
//!
//! Bundles live in [`MEDIA_DIR`] at the medium's root. Each one's signed sw-description is read
//! and verified, and its plan checked against this device (hardware compatibility, targets),
//! before any byte is written; of those that pass and were never installed here, the one with
//! the highest `software.version` is installed. A release is identified by the sha256 of its
//! signed sw-description, remembered in the state file, so re-inserting the stick does nothing.
//! Every run's outcome is kept as [`MediaResult`] (shown by `status`, reported to the server as
//! a DDI attribute at the next contact).

use std::cmp::Ordering;
use std::fs::File;
use std::path::{Path, PathBuf};

use keel_formats::swu::SwuReader;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::install::plan::{Plan, PlanContext};
use crate::install::{InstallError, InstallOptions};
use crate::{Agent, AgentError};

/// The directory on the medium that holds bundles (`*.swu`).
pub const MEDIA_DIR: &str = "keel-updates";
/// How many installed releases the state file remembers.
pub const MEDIA_HISTORY: usize = 32;

/// How a `media` run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MediaOutcome {
    /// A bundle was installed and activated; it boots next.
    Installed,
    /// No bundle on the medium is new, valid and compatible: nothing was written.
    NothingNew,
    /// The install of the chosen bundle failed; the active slot is untouched.
    Failed,
}

impl std::fmt::Display for MediaOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MediaOutcome::Installed => "installed",
            MediaOutcome::NothingNew => "nothing new",
            MediaOutcome::Failed => "failed",
        })
    }
}

/// The outcome of the last `media` run, kept in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaResult {
    /// How it ended.
    pub outcome: MediaOutcome,
    /// The bundle installed or attempted (path on the medium), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// Its `software.version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// What happened, with every bundle passed over and why.
    pub message: String,
    /// When (seconds since the Unix epoch).
    pub at: u64,
}

struct Candidate {
    path: PathBuf,
    version: Option<String>,
    id: String,
}

/// Compares versions as SWUpdate does for `major.minor.revision.build`: numeric parts as
/// numbers, others as text; a missing part is lower.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut left = a.split(['.', '-']);
    let mut right = b.split(['.', '-']);
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

impl Agent {
    /// Installs the newest valid, compatible, not yet installed bundle of `medium`
    /// (its [`MEDIA_DIR`]), records the outcome in the state file and returns it. Errors only
    /// when the agent itself cannot work (state, bootloader, a slot on trial); a bad bundle is
    /// an outcome, not an error.
    pub fn update_from_media(
        &mut self,
        medium: &Path,
        options: InstallOptions<'_>,
    ) -> Result<MediaResult, AgentError> {
        // Refuses, as any install does, while a slot is on trial or an install runs.
        let (state, booted, target) = self.preflight()?;
        let dir = medium.join(MEDIA_DIR);
        let mut passed_over = Vec::new();
        let mut candidates = Vec::new();
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "swu") && p.is_file())
                .collect(),
            Err(err) => {
                let message = format!(
                    "no bundle directory {} on the medium ({err})",
                    dir.display()
                );
                return self.record_media(
                    media_result(MediaOutcome::NothingNew, None, None, message),
                    None,
                );
            }
        };
        files.sort();
        for path in files {
            let name = path.display().to_string();
            match self.check_media_bundle(&path, booted, target) {
                Ok(c) => candidates.push(c),
                Err(reason) => passed_over.push(format!("{name}: {reason}")),
            }
        }
        candidates.sort_by(|a, b| match (&a.version, &b.version) {
            (Some(x), Some(y)) => compare_versions(x, y),
            (x, y) => x.is_some().cmp(&y.is_some()),
        });
        // Only the newest valid release counts: older ones on the same stick are never a reason
        // to downgrade, and the newest one is installed once.
        let running = state
            .slots
            .get(&booted)
            .and_then(|r| r.values().find_map(|i| i.version.clone()));
        let newest = candidates.pop();
        passed_over.extend(
            candidates
                .iter()
                .map(|c| format!("{}: older", c.path.display())),
        );
        let chosen = match newest {
            Some(c) if state.media_installed.contains(&c.id) => {
                passed_over.push(format!("{}: already installed", c.path.display()));
                None
            }
            Some(c) => match (&c.version, &running) {
                (Some(v), Some(r)) if compare_versions(v, r) != Ordering::Greater => {
                    passed_over.push(format!(
                        "{}: version {v} is not newer than the running {r}",
                        c.path.display()
                    ));
                    None
                }
                _ => Some(c),
            },
            None => None,
        };
        let Some(chosen) = chosen else {
            let message = if passed_over.is_empty() {
                format!("no .swu bundle in {}", dir.display())
            } else {
                format!("no new valid bundle: {}", passed_over.join("; "))
            };
            return self.record_media(
                media_result(MediaOutcome::NothingNew, None, None, message),
                None,
            );
        };
        let bundle = chosen.path.display().to_string();
        let result = File::open(&chosen.path)
            .map_err(|e| e.to_string())
            .and_then(|file| self.install(file, options).map_err(|e| e.to_string()));
        let others = if passed_over.is_empty() {
            String::new()
        } else {
            format!(" (passed over: {})", passed_over.join("; "))
        };
        match result {
            Ok(report) => {
                let message = format!(
                    "installed {bundle} into slot {}, which boots next{others}",
                    report.target
                );
                let result = media_result(
                    MediaOutcome::Installed,
                    Some(bundle),
                    chosen.version,
                    message,
                );
                self.record_media(result, Some(chosen.id))
            }
            Err(err) => {
                let message = format!("installing {bundle} failed: {err}{others}");
                let result =
                    media_result(MediaOutcome::Failed, Some(bundle), chosen.version, message);
                self.record_media(result, None)
            }
        }
    }

    /// Verifies a bundle's signed description and plans it for this device, reading only the
    /// start of the file.
    fn check_media_bundle(
        &self,
        path: &Path,
        booted: crate::SlotId,
        target: crate::SlotId,
    ) -> Result<Candidate, String> {
        let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        let mut swu = SwuReader::new(file);
        let (desc, _signer, raw) = self
            .verified_description_bytes(&mut swu)
            .map_err(|e: InstallError| e.to_string())?;
        let plan = Plan::new(
            &desc,
            PlanContext {
                slots: &self.config.slots,
                booted,
                target,
                hardware_revision: self.config.hardware_revision.as_deref(),
            },
        )
        .map_err(|e| e.to_string())?;
        Ok(Candidate {
            path: path.to_path_buf(),
            version: plan.version,
            id: hex::encode(Sha256::digest(&raw)),
        })
    }

    /// Keeps `result` as the last media run and, for an install, remembers the release
    /// `installed` (sha256 of its sw-description): one state-file write.
    fn record_media(
        &self,
        result: MediaResult,
        installed: Option<String>,
    ) -> Result<MediaResult, AgentError> {
        let mut state = self.load_state()?;
        if let Some(id) = installed {
            state.media_installed.retain(|known| *known != id);
            state.media_installed.push(id);
            let excess = state.media_installed.len().saturating_sub(MEDIA_HISTORY);
            state.media_installed.drain(..excess);
        }
        state.last_media = Some(result.clone());
        self.store_state(&state)?;
        Ok(result)
    }
}

fn media_result(
    outcome: MediaOutcome,
    bundle: Option<String>,
    version: Option<String>,
    message: String,
) -> MediaResult {
    MediaResult {
        outcome,
        bundle,
        version,
        message,
        at: crate::state::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::compare_versions;
    use std::cmp::Ordering::*;

    #[test]
    fn versions_compare_numerically_part_by_part() {
        assert_eq!(compare_versions("1.10.0", "1.9.9"), Greater);
        assert_eq!(compare_versions("2.0", "2.0.1"), Less);
        assert_eq!(compare_versions("2026.05", "2026.05"), Equal);
        assert_eq!(compare_versions("1.0-rc2", "1.0-rc1"), Greater);
    }
}
