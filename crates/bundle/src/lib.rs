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
#![warn(missing_docs)]

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
    /// Reading an image, manifest or bundle, or writing the output or an extracted member
    /// failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The TOML manifest does not parse or breaks a rule of docs/swu-format.md (no
    /// `[software]`, an entry with `source` but no `filename`, `delta-from` with `chunked`, ...).
    #[error("manifest {path}: {message}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// sw-description does not parse or resolve.
    #[error(transparent)]
    Description(#[from] ParseError),
    /// The container is damaged or out of order (cpio error, checksum, member order), or
    /// writing it failed.
    #[error(transparent)]
    Swu(#[from] SwuError),
    /// Signing sw-description failed (unusable key or certificate).
    #[error("signing sw-description: {0}")]
    Sign(#[from] keel_sign::SignError),
    /// The signature does not verify against the trusted certificates, or the signer
    /// certificate is refused (purpose, validity, chain).
    #[error("signature check of sw-description failed: {0}")]
    Signature(keel_sign::VerifyError),
    /// A certificate was given to check against, but the bundle has no `sw-description.sig`.
    #[error("bundle is not signed (no sw-description.sig after sw-description) but a certificate was given")]
    Unsigned,
    /// The AES key file is malformed.
    #[error("AES key file: {0}")]
    KeyFile(#[from] keel_sign::KeyFileError),
    /// An entry says `encrypted = true` but [`CreateOptions::aes_key`] is not set.
    #[error("image {name:?} is marked encrypted but no AES key file was given")]
    NoAesKey {
        /// The member name.
        name: String,
    },
    /// An image (after encryption padding) would exceed the cpio member limit of 4 GiB - 1
    /// bytes; checked before any data is read.
    #[error("image {name:?} ({path}) would be {size} bytes in the bundle, over the cpio limit of 4 GiB - 1 (4294967295) bytes per member")]
    TooLarge {
        /// The member name.
        name: String,
        /// The image file.
        path: PathBuf,
        /// Its size as stored in the bundle, in bytes.
        size: u64,
    },
    /// The source of an image is a directory, device or other non-regular file.
    #[error("image {name:?}: {path} is not a regular file")]
    NotAFile {
        /// The member name.
        name: String,
        /// The path that is not a regular file.
        path: PathBuf,
    },
    /// A `sha256` written in the manifest for an unencrypted image differs from the file's.
    #[error(
        "image {name:?}: sha256 in the manifest ({expected}) does not match the file ({actual})"
    )]
    ManifestHashMismatch {
        /// The member name.
        name: String,
        /// The sha256 the manifest gives, lower-case hex.
        expected: String,
        /// The sha256 of the file, lower-case hex.
        actual: String,
    },
    /// Entries naming the same member disagree on `encrypted`, `ivt` or `sha256`, or an entry
    /// has an invalid `ivt` or a `properties` that is not a group.
    #[error("entries for {name:?} disagree: {reason}")]
    ConflictingEntries {
        /// The member name.
        name: String,
        /// What disagrees.
        reason: String,
    },
    /// A `filename` is not a plain file name SWUpdate can handle ([`check_member_name`]).
    #[error("invalid member name {name:?}: {reason}")]
    BadMemberName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// An image's size or content changed between the hashing pass and the writing pass: the
    /// output is inconsistent and must be discarded.
    #[error("image {name:?} changed while the bundle was written ({detail})")]
    SourceChanged {
        /// The member name.
        name: String,
        /// What differed (size or checksum).
        detail: String,
    },
    /// Decrypting a member failed. Not returned at present: [`scan`] records a failed
    /// decryption as [`MemberStatus::DecryptFailed`] instead.
    #[error("member {name:?}: decryption failed: {source}")]
    Decrypt {
        /// The member name.
        name: String,
        /// The error of the decrypting stream (bad length or padding: wrong key).
        #[source]
        source: io::Error,
    },
    /// Computing a `delta-from` (`.kdelta`) or `chunked` (`.kidx` and pack) member failed.
    #[error("computing member {member:?}: {message}")]
    Derive {
        /// The member being computed.
        member: String,
        /// The delta or chunking error.
        message: String,
    },
    /// [`verify`] or [`extract`] found problems: hash mismatches, missing, unreferenced or
    /// duplicate members, disagreeing entries, bad keel-delta/keel-chunked properties.
    #[error("bundle verification failed: {}", problems.join("; "))]
    Verification {
        /// Every problem, as a sentence naming the member or entry ([`Report::problems`]).
        problems: Vec<String>,
    },
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
