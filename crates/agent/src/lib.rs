//! The device agent: streaming A/B install, bootloader state machine, confirm and rollback.
//!
//! * [`config`]: the TOML configuration (slots, bootloader, trust).
//! * [`Agent`]: status, confirm, install ([`install`]) and post-reboot reconciliation.
//! * [`bootloader`]: EFI Boot Guard, U-Boot and GRUB backends over `keel-bootenv`.
//! * [`source`]: bundle sources (file, stdin, resumable HTTP); [`ddi`]: the hawkBit client.
//!
//! docs/agent.md describes the configuration, commands, state machine and state file.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod bootloader;
pub mod chunks;
pub mod config;
pub mod ddi;
pub mod install;
pub mod io;
pub mod media;
pub mod reconcile;
pub mod source;
pub mod state;
pub mod tuf;

pub use agent::{Agent, AgentError, ConfirmOutcome, Status};
pub use config::{Config, SlotId};
pub use install::{InstallError, InstallOptions, InstallReport};
pub use io::Environment;
