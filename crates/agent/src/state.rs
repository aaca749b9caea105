//! The agent's persistent state file (`<state_dir>/state.json`), replaced atomically
//! (temp + fsync + rename + directory fsync) on every change.
//!
//! It records the transaction in flight (so a result can be reported after the reboot, and an
//! interrupted install is noticed), the last final result, and the DDI action whose install was
//! interrupted before activation (installed again while the server still offers it).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::SlotId;
use crate::io::{replace_atomic, Storage};

/// `format` of the state file this agent writes; [`AgentState::load`] refuses any other.
pub const STATE_FORMAT: u32 = 1;

/// The contents of `state.json`: the transaction in flight, the last result, what each slot
/// holds, and an interrupted DDI action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// File format version, [`STATE_FORMAT`].
    pub format: u32,
    /// The update in flight, if any.
    #[serde(default)]
    pub transaction: Option<Transaction>,
    /// The outcome of the last finished transaction.
    #[serde(default)]
    pub last_result: Option<LastResult>,
    /// What the agent wrote into each slot's targets (slot → target name → image); a target is
    /// forgotten when an install starts writing it. Reported to the server (docs/agent.md).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slots: BTreeMap<SlotId, BTreeMap<String, SlotImage>>,
    /// A DDI action whose install was interrupted before activation (power loss, crash,
    /// kill). The action stays open on the server and is installed again when offered again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<InterruptedAction>,
    /// sha256 of the signed sw-description of every release installed from removable media
    /// (newest last, at most [`crate::media::MEDIA_HISTORY`]): never installed twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media_installed: Vec<String>,
    /// The outcome of the last `media` run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_media: Option<crate::media::MediaResult>,
}

/// An install of a DDI action that was cut off before the bootloader was switched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterruptedAction {
    /// The DDI action whose install was interrupted.
    pub action_id: String,
    /// Interrupted attempts of this action so far (1, 2, ...).
    pub attempts: u32,
    /// The slot that was being written (never activated; the booted slot is unchanged).
    pub target_slot: SlotId,
    /// sw-description `software.version` of the bundle being installed.
    #[serde(default)]
    pub version: Option<String>,
    /// Why the last attempt counts as interrupted.
    pub message: String,
    /// When the last attempt was found interrupted (seconds since the Unix epoch).
    pub interrupted_at: u64,
    /// Set once the server accepted the `proceeding` feedback about the last interruption.
    #[serde(default)]
    pub reported: bool,
}

/// What [`AgentState::interrupt`] did with an interrupted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    /// No DDI action: recorded as a failed result (a manual install).
    Failed,
    /// Attempt `attempt` of at most `limit` was interrupted; the action stays open.
    Retry {
        /// The interrupted attempt's number (1, 2, ...).
        attempt: u32,
        /// `max_interrupted_attempts`.
        limit: u32,
    },
    /// The action's `limit`-th attempt was interrupted: recorded as a failed result.
    GaveUp {
        /// Interrupted attempts in all (the limit).
        attempts: u32,
    },
}

/// An image the agent wrote and verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotImage {
    /// sha256 of the image bytes as written (lower-case hex).
    pub sha256: String,
    /// Image size in bytes (the slot may be larger).
    pub size: u64,
    /// sw-description `software.version` of the bundle that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// How far an update got. The phase is written *before* the step it names starts, so after a
/// power cut the agent knows which step may be incomplete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Images are being written into the target slot; the target is not bootable.
    Installing,
    /// All images verified and synced; the bootloader switch is being written.
    Activating,
    /// The bootloader will boot the target next (INSTALLED), or is testing it (TESTING).
    Activated,
}

impl Phase {
    /// The word `status --json` uses too.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Installing => "installing",
            Phase::Activating => "activating",
            Phase::Activated => "activated",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An update in flight, from the first write to its final result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// How far it got; written before the step it names starts.
    pub phase: Phase,
    /// The slot that was booted when the install started.
    pub from_slot: SlotId,
    /// The slot being written and activated.
    pub target_slot: SlotId,
    /// sw-description `software.version` of the bundle.
    #[serde(default)]
    pub version: Option<String>,
    /// The server's action id (DDI), reported after the reboot.
    #[serde(default)]
    pub action_id: Option<String>,
    /// When the install started (seconds since the Unix epoch).
    pub started_at: u64,
    /// `/proc/sys/kernel/random/boot_id` when the transaction started: tells "not rebooted
    /// yet" from "rebooted".
    #[serde(default)]
    pub boot_id: Option<String>,
}

/// The final result of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The new slot booted and was confirmed.
    Success,
    /// The new slot was activated but the bootloader fell back to the old slot.
    RolledBack,
    /// The install did not complete (error or power loss); the target was never activated.
    Failed,
}

impl Outcome {
    /// The words `status` and the DDI feedback use (JSON: `rolled_back`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::RolledBack => "rolled back",
            Outcome::Failed => "failed",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The final result of the last transaction, kept until the next one finishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastResult {
    /// How it ended.
    pub outcome: Outcome,
    /// The slot that was written.
    pub target_slot: SlotId,
    /// sw-description `software.version` of the bundle.
    #[serde(default)]
    pub version: Option<String>,
    /// The DDI action it belonged to, if any; its result is sent as `closed` feedback.
    #[serde(default)]
    pub action_id: Option<String>,
    /// What happened, for people (`status`, the DDI feedback details).
    pub message: String,
    /// When it ended (seconds since the Unix epoch).
    pub finished_at: u64,
    /// Set once the result was sent to the server (DDI feedback).
    #[serde(default)]
    pub reported: bool,
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file exists but could not be read.
    #[error("reading state file {path}: {source}")]
    Read {
        /// The state file.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        /// The state file.
        path: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The file was written by an agent with another [`STATE_FORMAT`].
    #[error("state file {path} has unsupported format {format}")]
    Format {
        /// The state file.
        path: String,
        /// The `format` found in it.
        format: u32,
    },
    /// Replacing the file atomically failed (write, fsync, rename or directory fsync).
    #[error("writing state file {path}: {source}")]
    Write {
        /// The state file.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

impl AgentState {
    /// Load the state; a missing file is the empty state.
    pub fn load(storage: &dyn Storage, path: &Path) -> Result<AgentState, StateError> {
        let bytes = match storage.read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(AgentState {
                    format: STATE_FORMAT,
                    ..Default::default()
                })
            }
            Err(source) => {
                return Err(StateError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let state: AgentState =
            serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
                path: path.display().to_string(),
                source,
            })?;
        if state.format != STATE_FORMAT {
            return Err(StateError::Format {
                path: path.display().to_string(),
                format: state.format,
            });
        }
        Ok(state)
    }

    /// Replaces the file at `path` atomically with this state (temp file, fsync, rename,
    /// directory fsync), with `format` set to [`STATE_FORMAT`].
    pub fn store(&self, storage: &dyn Storage, path: &Path) -> Result<(), StateError> {
        let mut copy = self.clone();
        copy.format = STATE_FORMAT;
        let mut bytes = serde_json::to_vec_pretty(&copy).expect("state serializes");
        bytes.push(b'\n');
        replace_atomic(storage, path, &bytes).map_err(|source| StateError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// End the transaction with `outcome`.
    pub fn finish(&mut self, outcome: Outcome, message: impl Into<String>) {
        if let Some(tx) = self.transaction.take() {
            if tx.action_id.is_some()
                && self.interrupted.as_ref().map(|i| &i.action_id) == tx.action_id.as_ref()
            {
                self.interrupted = None;
            }
            self.last_result = Some(LastResult {
                outcome,
                target_slot: tx.target_slot,
                version: tx.version,
                action_id: tx.action_id,
                message: message.into(),
                finished_at: now(),
                reported: false,
            });
        }
    }
}

impl AgentState {
    /// End a transaction that was interrupted before activation (`message` says how). An install
    /// of a DDI action is not a failure of the action until `limit` attempts of it were
    /// interrupted: the transaction is dropped and the attempt counted in `interrupted`, so the
    /// action (still open on the server) is installed again. Without an action id, or at the
    /// limit, the result is `failed`.
    pub fn interrupt(&mut self, message: &str, limit: u32) -> Interruption {
        let Some(action_id) = self.transaction.as_ref().and_then(|t| t.action_id.clone()) else {
            self.finish(Outcome::Failed, message);
            return Interruption::Failed;
        };
        let limit = limit.max(1);
        let attempt = self
            .interrupted
            .as_ref()
            .filter(|i| i.action_id == action_id)
            .map_or(0, |i| i.attempts)
            .saturating_add(1);
        if attempt >= limit {
            self.finish(
                Outcome::Failed,
                format!(
                    "install interrupted {} (power loss or crash) before the target slot was \
                     activated; giving up after {limit} attempt{} (last: {message})",
                    match attempt {
                        1 => "once".to_string(),
                        n => format!("{n} times"),
                    },
                    if limit == 1 { "" } else { "s" }
                ),
            );
            self.interrupted = None;
            return Interruption::GaveUp { attempts: attempt };
        }
        let Some(tx) = self.transaction.take() else {
            return Interruption::Failed;
        };
        self.interrupted = Some(InterruptedAction {
            action_id,
            attempts: attempt,
            target_slot: tx.target_slot,
            version: tx.version,
            message: message.to_string(),
            interrupted_at: now(),
            reported: false,
        });
        Interruption::Retry { attempt, limit }
    }
}

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installing(action_id: Option<&str>) -> Transaction {
        Transaction {
            phase: Phase::Installing,
            from_slot: SlotId::A,
            target_slot: SlotId::B,
            version: Some("2.0".into()),
            action_id: action_id.map(str::to_string),
            started_at: 0,
            boot_id: None,
        }
    }

    #[test]
    fn phases_and_outcomes_display_as_words() {
        let phases = [Phase::Installing, Phase::Activating, Phase::Activated];
        let texts: Vec<String> = phases.iter().map(ToString::to_string).collect();
        assert_eq!(texts, ["installing", "activating", "activated"]);
        for phase in phases {
            // The same word as the state file and `status --json`.
            assert_eq!(
                serde_json::to_string(&phase).unwrap(),
                format!("\"{phase}\"")
            );
        }
        let outcomes = [Outcome::Success, Outcome::RolledBack, Outcome::Failed];
        let texts: Vec<String> = outcomes.iter().map(ToString::to_string).collect();
        assert_eq!(texts, ["success", "rolled back", "failed"]);
    }

    #[test]
    fn interrupted_ddi_installs_are_counted_until_the_limit() {
        let mut state = AgentState::default();
        for attempt in 1..3 {
            state.transaction = Some(installing(Some("17")));
            assert_eq!(
                state.interrupt("cut", 3),
                Interruption::Retry { attempt, limit: 3 }
            );
            assert_eq!(state.transaction, None);
            assert_eq!(state.last_result, None);
            let record = state.interrupted.clone().unwrap();
            assert_eq!(
                (record.action_id.as_str(), record.attempts),
                ("17", attempt)
            );
            assert_eq!(record.target_slot, SlotId::B);
        }
        state.transaction = Some(installing(Some("17")));
        assert_eq!(
            state.interrupt("cut", 3),
            Interruption::GaveUp { attempts: 3 }
        );
        assert_eq!(state.interrupted, None);
        let result = state.last_result.unwrap();
        assert_eq!(result.outcome, Outcome::Failed);
        assert_eq!(result.action_id.as_deref(), Some("17"));
        assert!(
            result.message.contains("interrupted 3 times"),
            "{}",
            result.message
        );
    }

    #[test]
    fn another_action_starts_counting_afresh_and_a_manual_install_fails() {
        let mut state = AgentState {
            transaction: Some(installing(Some("17"))),
            ..Default::default()
        };
        state.interrupt("cut", 3);
        state.transaction = Some(installing(Some("18")));
        assert_eq!(
            state.interrupt("cut", 3),
            Interruption::Retry {
                attempt: 1,
                limit: 3
            }
        );
        assert_eq!(state.interrupted.as_ref().unwrap().action_id, "18");

        state.transaction = Some(installing(None));
        assert_eq!(state.interrupt("cut", 3), Interruption::Failed);
        assert_eq!(state.last_result.as_ref().unwrap().outcome, Outcome::Failed);
        // The open action's record is not the manual install's to clear.
        assert_eq!(state.interrupted.as_ref().unwrap().action_id, "18");
    }

    #[test]
    fn a_final_result_of_the_action_clears_its_record() {
        let mut state = AgentState {
            transaction: Some(installing(Some("17"))),
            ..Default::default()
        };
        state.interrupt("cut", 3);
        state.transaction = Some(installing(Some("17")));
        state.finish(Outcome::Success, "confirmed");
        assert_eq!(state.interrupted, None);
        // A limit of 1: the first interruption already closes the action.
        state.transaction = Some(installing(Some("19")));
        assert_eq!(
            state.interrupt("cut", 1),
            Interruption::GaveUp { attempts: 1 }
        );
    }
}
