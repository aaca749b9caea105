//! The agent's persistent state file (`<state_dir>/state.json`), replaced atomically
//! (temp + fsync + rename + directory fsync) on every change.
//!
//! It records the transaction in flight (so a result can be reported after the reboot, and an
//! interrupted install is reported as failed) and the last final result.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::SlotId;
use crate::io::{replace_atomic, Storage};

pub const STATE_FORMAT: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub phase: Phase,
    pub from_slot: SlotId,
    pub target_slot: SlotId,
    #[serde(default)]
    pub version: Option<String>,
    /// The server's action id (DDI), reported after the reboot.
    #[serde(default)]
    pub action_id: Option<String>,
    pub started_at: u64,
    /// `/proc/sys/kernel/random/boot_id` when the transaction started: tells "not rebooted
    /// yet" from "rebooted".
    #[serde(default)]
    pub boot_id: Option<String>,
}

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
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::RolledBack => "rolled back",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastResult {
    pub outcome: Outcome,
    pub target_slot: SlotId,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub action_id: Option<String>,
    pub message: String,
    pub finished_at: u64,
    /// Set once the result was sent to the server (DDI feedback).
    #[serde(default)]
    pub reported: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading state file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        path: String,
        source: serde_json::Error,
    },
    #[error("state file {path} has unsupported format {format}")]
    Format { path: String, format: u32 },
    #[error("writing state file {path}: {source}")]
    Write {
        path: String,
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

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
