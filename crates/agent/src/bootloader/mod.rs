//! Bootloader backends: how the agent makes a slot unbootable while it is written, switches to
//! it after verification, confirms it, and sees a fallback.
//!
//! All backends follow the same transaction, each with a single durable env commit per step:
//! 1. `begin_install(target)`: the target slot is made unbootable *before* its first byte is
//!    written (EBG: its config copy gets `in_progress=1`; U-Boot: slot variable back to the
//!    booted slot; GRUB: `<target>_OK=0`).
//! 2. `activate(target)`: after every image was verified and fsynced, one env commit makes the
//!    loader boot the target once as a test (EBG: higher revision, `ustate=INSTALLED`,
//!    `in_progress=0`; U-Boot: slot variable, `upgrade_available=1`, `bootcount=0`; GRUB:
//!    `ORDER`, `<target>_OK=1`, `<target>_TRY=0`).
//! 3. `confirm(booted)`: after a healthy test boot (EBG: `ustate=OK`; U-Boot:
//!    `upgrade_available=0`, `bootcount=0`; GRUB: `<slot>_TRY=0`).
//!
//! A failed or unconfirmed test boot is undone by the bootloader itself; [`BootView`] shows it.

mod ebg;
mod grub;
mod uboot;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{BootloaderConfig, Config, SlotId};
use crate::io::SharedStorage;

pub use ebg::EbgBootloader;
pub use grub::GrubBootloader;
pub use uboot::{parse_count as parse_uboot_count, UbootBootloader};

/// SWUpdate/EFI Boot Guard update states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UState {
    /// Running in its good state; no trial pending.
    Ok,
    /// A new slot is activated and waits for its first (test) boot.
    Installed,
    /// The new slot is on its test boot and needs `confirm`, else the bootloader falls back.
    Testing,
    /// The bootloader fell back from an unconfirmed test boot.
    Failed,
    /// The environment does not say (an unrecognised EFI Boot Guard `ustate` value).
    Unknown,
}

impl UState {
    /// The upper-case word SWUpdate and `bg_printenv` use: `OK`, `INSTALLED`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            UState::Ok => "OK",
            UState::Installed => "INSTALLED",
            UState::Testing => "TESTING",
            UState::Failed => "FAILED",
            UState::Unknown => "UNKNOWN",
        }
    }
}

/// The bootloader's own word (as in `status --json`).
impl std::fmt::Display for UState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the bootloader environment says right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootView {
    /// The slot the bootloader will pick on the next boot (before it updates its own state).
    pub next_boot: Option<SlotId>,
    /// The slot that was booted, as far as the environment can tell.
    pub booted: Option<SlotId>,
    /// Update state of the environment that controls the next boot.
    pub ustate: UState,
    /// A slot the bootloader marked failed (it fell back from a test boot).
    pub failed: Option<SlotId>,
    /// Backend-specific values (revisions, counters, variables) for `status`.
    pub details: BTreeMap<String, String>,
}

/// Reading, parsing or writing a bootloader environment failed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// An environment cannot be read or written (I/O, CRC, format, `fw_env.config`).
    #[error("bootloader environment: {0}")]
    Env(#[from] keel_bootenv::EnvError),
    /// The environment is readable but not in a state the agent can work with (no EFI Boot Guard
    /// copy names the booted slot, an update would overwrite the booted copy, `activate` without
    /// `begin_install`).
    #[error("bootloader environment: {0}")]
    Invalid(String),
}

/// One bootloader backend.
pub trait Bootloader: Send {
    /// `ebg`, `uboot` or `grub` (as in `status`).
    fn kind(&self) -> &'static str;
    /// Reads the environment as it is now.
    fn view(&self) -> Result<BootView, BootError>;
    /// Refine a view once the booted slot is known (GRUB's variables alone cannot tell
    /// INSTALLED from OK).
    fn view_for(&self, _booted: SlotId, view: BootView) -> BootView {
        view
    }
    /// Make `target` unbootable before writing it (durable when this returns).
    fn begin_install(&mut self, booted: SlotId, target: SlotId) -> Result<(), BootError>;
    /// Switch to `target` for one test boot, with the sw-description `bootenv` variables
    /// (durable when this returns).
    fn activate(
        &mut self,
        booted: SlotId,
        target: SlotId,
        vars: &[(String, String)],
    ) -> Result<(), BootError>;
    /// Mark the booted slot good. Idempotent.
    fn confirm(&mut self, booted: SlotId) -> Result<(), BootError>;
    /// The agent saw that the loader fell back from `failed`: make sure it is never tried
    /// again (GRUB/RAUC scheme: `_OK=0`; EBG and U-Boot already recorded it).
    fn mark_failed(&mut self, _booted: SlotId, _failed: SlotId) -> Result<(), BootError> {
        Ok(())
    }
}

/// Build the backend the configuration names.
pub fn from_config(
    config: &Config,
    storage: SharedStorage,
) -> Result<Box<dyn Bootloader>, BootError> {
    Ok(match &config.bootloader {
        BootloaderConfig::Ebg { env, watchdog_sec } => Box::new(EbgBootloader::new(
            storage,
            env.clone(),
            *watchdog_sec,
            [
                (
                    config.slots.a.kernelfile.clone(),
                    config.slots.a.kernelparams.clone(),
                ),
                (
                    config.slots.b.kernelfile.clone(),
                    config.slots.b.kernelparams.clone(),
                ),
            ],
        )),
        BootloaderConfig::Uboot {
            fw_env_config,
            slot_var,
            slot_values,
            bootlimit,
        } => Box::new(UbootBootloader::open(
            storage,
            fw_env_config,
            slot_var.clone(),
            slot_values.clone(),
            *bootlimit,
        )?),
        BootloaderConfig::Grub { grubenv } => {
            Box::new(GrubBootloader::new(storage, grubenv.clone()))
        }
    })
}
