//! Building, verifying and inspecting signed, optionally encrypted, reproducible .swu bundles.
//!
//! * [`BundleSpec`]: what to build, from a TOML manifest ([`BundleSpec::from_manifest`]) or an
//!   existing `sw-description` plus an image directory ([`BundleSpec::from_sw_description`]).
//! * [`create`]: streams every image twice (hash, then write; a third pass derives the IV of
//!   encrypted images), fills `sha256` (and `ivt`) into the description, signs it, writes
//!   `sw-description`, `sw-description.sig`, then the scripts, then the images, each in manifest order.
//! * [`scan`] / [`verify`] / [`inspect`] / [`extract`]: read a bundle once, checking the CMS
//!   signature, every image hash, missing/extra/duplicate members and the cpio checksums.
//!
//! Hashes follow SWUpdate: `sha256` covers the bytes stored in the bundle, i.e. the ciphertext
//! for encrypted images (SWUpdate hashes its input before decrypting, `core/cpio_utils.c`).
#![forbid(unsafe_code)]

mod create;
mod manifest;
mod scan;

use std::io;
use std::path::PathBuf;

use keel_formats::swdesc::ParseError;
use keel_formats::swu::SwuError;
use thiserror::Error;

pub use create::{
    create, create_with_packs, CreateOptions, CreateReport, CreatedMember, CHUNK_LEVEL,
};
pub use manifest::{BundleSpec, Derivation, CHUNKED_TYPE, DELTA_TYPE};
pub use scan::{
    delta_zstd_frames, extract, inspect, scan, verify, EntryReport, MemberReport, MemberStatus,
    Report, ScanOptions, SignatureReport, ZSTD_FRAMES_PROPERTY,
};

/// Errors of bundle creation and verification. Messages name the file, member or entry at fault.
#[derive(Debug, Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error(transparent)]
    Description(#[from] ParseError),
    #[error(transparent)]
    Swu(#[from] SwuError),
    #[error("signing sw-description: {0}")]
    Sign(#[from] keel_sign::SignError),
    #[error("signature check of sw-description failed: {0}")]
    Signature(keel_sign::VerifyError),
    #[error("bundle is not signed (no sw-description.sig after sw-description) but a certificate was given")]
    Unsigned,
    #[error("AES key file: {0}")]
    KeyFile(#[from] keel_sign::KeyFileError),
    #[error("image {name:?} is marked encrypted but no AES key file was given")]
    NoAesKey { name: String },
    #[error("image {name:?} ({path}) would be {size} bytes in the bundle, over the cpio limit of 4 GiB - 1 (4294967295) bytes per member")]
    TooLarge {
        name: String,
        path: PathBuf,
        size: u64,
    },
    #[error("image {name:?}: {path} is not a regular file")]
    NotAFile { name: String, path: PathBuf },
    #[error(
        "image {name:?}: sha256 in the manifest ({expected}) does not match the file ({actual})"
    )]
    ManifestHashMismatch {
        name: String,
        expected: String,
        actual: String,
    },
    #[error("entries for {name:?} disagree: {reason}")]
    ConflictingEntries { name: String, reason: String },
    #[error("invalid member name {name:?}: {reason}")]
    BadMemberName { name: String, reason: &'static str },
    #[error("image {name:?} changed while the bundle was written ({detail})")]
    SourceChanged { name: String, detail: String },
    #[error("member {name:?}: decryption failed: {source}")]
    Decrypt {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("computing member {member:?}: {message}")]
    Derive { member: String, message: String },
    #[error("bundle verification failed: {}", problems.join("; "))]
    Verification { problems: Vec<String> },
}

impl BundleError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        BundleError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Validates a bundle member name: a plain file name SWUpdate can handle.
pub fn check_member_name(name: &str) -> Result<(), BundleError> {
    let bad = |reason| {
        Err(BundleError::BadMemberName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name == "." || name == ".." {
        return bad("empty or a directory name");
    }
    if name.contains('/') || name.contains('\\') || name.contains('\0') {
        return bad("must be a plain file name without '/'");
    }
    if name == keel_formats::swu::DESCRIPTION_NAME || name == keel_formats::swu::SIGNATURE_NAME {
        return bad("reserved for the description and its signature");
    }
    if name.len() + 1 >= keel_formats::swu::MAX_NAME_LEN as usize {
        return bad("255 bytes or longer (SWUpdate's limit)");
    }
    Ok(())
}

/// `SOURCE_DATE_EPOCH` from the environment, if set to a valid number.
pub fn source_date_epoch() -> Option<u64> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
}
