//! Bootloader environments written natively: EFI Boot Guard `BGENV.DAT` ([`ebg`]), U-Boot
//! environments, single and redundant ([`uboot`]), and GRUB `grubenv` ([`grub`]).
//!
//! Byte layouts, the EBG update state machine and test vectors are documented in
//! `docs/bootenv.md`. Every read and write goes through [`storage::Storage`] so that a
//! simulator can cut the power at any write/fsync boundary ([`storage::SimStorage`]).
//!
//! All parsers of on-disk bytes ([`ebg::BgEnv::parse`], [`uboot::decode_copy`],
//! [`grub::GrubEnv::parse`]) return [`EnvError`] on bad input and never panic.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod crc;
pub mod ebg;
mod error;
pub mod grub;
pub mod storage;
pub mod uboot;

pub use error::{EnvError, Result};

/// The operations an update agent needs from any bootloader environment.
///
/// Changes made with [`BootEnv::set`] and [`BootEnv::unset`] are staged in memory;
/// [`BootEnv::commit`] makes them durable in one power-safe step (what "power-safe" means
/// per format is documented on each implementation).
pub trait BootEnv {
    /// Current value of `key` (staged changes included).
    fn get(&self, key: &str) -> Option<String>;
    /// Stages `key = value`.
    fn set(&mut self, key: &str, value: &str) -> Result<()>;
    /// Stages the removal of `key` (no error if absent).
    fn unset(&mut self, key: &str) -> Result<()>;
    /// Writes staged changes durably. A no-op if nothing is staged.
    fn commit(&mut self) -> Result<()>;
    /// All variables as (key, value), staged changes included.
    fn vars(&self) -> Vec<(String, String)>;
}
