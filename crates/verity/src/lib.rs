//! dm-verity hash trees in the format `veritysetup format` writes (cryptsetup's "verity
//! superblock version 1", hash type 1), so a release build can compute a root filesystem's root
//! hash without device-mapper, loop devices or root, and bind it into the signed UKI.
//!
//! * [`Superblock`]: the 512-byte header at the start of the hash device (parse and write).
//! * [`Geometry`]: where each level of the tree lies on the hash device.
//! * [`format`]: stream a data image once and write superblock + hash tree; returns the root hash.
//! * [`verify`]: check a data image against a hash device and a root hash, naming the first
//!   block that does not match.
//!
//! Only SHA-256 is supported (what CIP images and systemd-veritysetup use by default). The
//! format is documented in `docs/verity.md` with test vectors that `veritysetup` reproduces.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod format;
mod geometry;
mod stream;
mod superblock;
mod verify;

pub use error::{Error, Result};
pub use format::{format, Formatted, Params};
pub use geometry::Geometry;
pub use superblock::{Superblock, SUPERBLOCK_SIZE};
pub use verify::{verify, Verified};

/// Size of a SHA-256 digest, the only hash this crate builds trees with.
pub const DIGEST_SIZE: usize = 32;
/// The hash algorithm name as veritysetup writes it into the superblock.
pub const ALGORITHM: &str = "sha256";
/// veritysetup's default data and hash block size.
pub const DEFAULT_BLOCK_SIZE: u32 = 4096;

use sha2::{Digest, Sha256};

/// Hash type 1 ("normal", not Chrome OS): `sha256(salt || block)`.
fn salted_digest(salt: &[u8], block: &[u8]) -> [u8; DIGEST_SIZE] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}
