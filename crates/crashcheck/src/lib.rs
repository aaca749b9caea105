//! Crash-consistency replay of recorded guest disk writes (docs/crash-consistency.md).
//!
//! [`wlog`] reads the dm-log-writes log QEMU's `blklogwrites` driver records, [`disk`] replays
//! it onto an overlay of the base image with undo and incremental per-slot trackers, and
//! [`replay`] generates the crash states (every barrier, prefixes, omissions, random
//! subsets/orders with torn and garbage sectors). The `keel-crashcheck` binary checks each
//! state against the EFI Boot Guard loader model, `fsck.vfat`, `bg_printenv` and a restarted
//! `keel-agent`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod disk;
pub mod replay;
pub mod wlog;
