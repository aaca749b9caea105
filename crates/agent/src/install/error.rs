//! What can stop an install. Each error keeps the error it came from as its `source()` (the
//! signature check's `VerifyError`, the delta decoder's `DeltaError`, I/O errors), and its label
//! says what was wrong: the bundle (cpio structure), sw-description, an image, the device.

use std::io;
use std::process::ExitStatus;

use keel_formats::swdesc::ParseError;
use keel_formats::swu::SwuError;

use crate::agent::AgentError;
use crate::bootloader::BootError;
use crate::config::SlotId;

/// Why an install stopped. Anything before activation leaves the target slot unbootable and is
/// recorded as the last result `failed`.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The agent refused to start (lock held, booted slot undetectable or still on trial, an
    /// install already running), or the state file or environment could not be read or written.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// Reading or writing the bootloader environment failed.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// The bundle is not a valid cpio archive (bad header, checksum, truncation, read error).
    #[error("bundle: {0}")]
    Bundle(#[from] SwuError),
    /// The bundle's members break a rule of the install itself (the cpio reader allows it).
    #[error("bundle: {0}")]
    Structure(#[from] StructureError),
    /// sw-description does not parse.
    #[error("sw-description: {0}")]
    Description(#[from] ParseError),
    /// The bundle has no `sw-description.sig` member; nothing was written.
    #[error(
        "bundle is not signed (no sw-description.sig); keel-agent installs signed bundles only"
    )]
    Unsigned,
    /// The CMS signature of sw-description does not verify against `trusted_certs`; nothing was
    /// written.
    #[error("sw-description signature rejected: {0}")]
    Signature(#[source] keel_sign::VerifyError),
    /// The `trusted_certs` file cannot be used; nothing was written.
    #[error("trust anchors {path}: {source}")]
    Trust {
        /// The `trusted_certs` file.
        path: String,
        /// Why it cannot be used.
        source: TrustError,
    },
    /// Encrypted images need a key that could not be loaded.
    #[error("AES key: {0}")]
    Key(#[from] KeyError),
    /// The description cannot be installed on this device (see [`PlanError`]).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A member's SHA-256 (over the bytes stored in the bundle) differs from sw-description; the
    /// slot is left unbootable.
    #[error("image {name}: sha256 mismatch: bundle has {actual}, sw-description says {expected}")]
    HashMismatch {
        /// The image's name in sw-description.
        name: String,
        /// The sha256 in sw-description (hex).
        expected: String,
        /// The sha256 of the member's bytes (hex).
        actual: String,
    },
    /// Reading, decoding or applying one image failed.
    #[error("image {name}: {source}")]
    Image {
        /// The image's name in sw-description.
        name: String,
        /// What failed.
        source: ImageError,
    },
    /// Writing or syncing a target of the inactive slot failed (or saving the chunk index kept
    /// in the state directory).
    #[error("writing {path}: {source}")]
    Write {
        /// The target being written.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// `verify_after_write`: the target read back from the device (cache dropped) after its
    /// fsync does not hash to the image written; the slot is not activated.
    #[error("verify_after_write: {path} read back after fsync has sha256 {actual}, but {expected} was written: the storage did not keep what it acknowledged; the slot was not activated (check the flash device, then install again)")]
    ReadBackMismatch {
        /// The target.
        path: String,
        /// The sha256 of the image written (hex).
        expected: String,
        /// The sha256 of the bytes read back (hex).
        actual: String,
    },
    /// `verify_after_write`: reading the target back failed.
    #[error("verify_after_write: reading {path} back after fsync: {source}")]
    ReadBack {
        /// The target.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Images of sw-description that no member of the bundle carried (comma-separated names).
    #[error("image(s) listed in sw-description but missing from the bundle: {0}")]
    Missing(String),
    /// A pre- or post-install script failed to run or exited non-zero.
    #[error("script {name} ({stage}) failed: {source}")]
    Script {
        /// The script's name in sw-description.
        name: String,
        /// `preinst` or `postinst`.
        stage: &'static str,
        /// What went wrong.
        source: ScriptError,
    },
}

impl InstallError {
    pub(crate) fn image(name: &str, source: impl Into<ImageError>) -> InstallError {
        InstallError::Image {
            name: name.to_string(),
            source: source.into(),
        }
    }

    pub(crate) fn write(path: &std::path::Path, source: io::Error) -> InstallError {
        InstallError::Write {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Why the description cannot be installed here; found before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Resolving the selection or the `software` group failed.
    #[error("sw-description: {0}")]
    Description(#[from] ParseError),
    /// The hardware compatibility list of sw-description does not name `hardware_revision`.
    #[error("bundle not for this device: {0}")]
    Incompatible(String),
    /// An image's `device` is a path of the booted slot.
    #[error("refusing to write the active slot: image {image} targets {device}, which belongs to the booted slot {booted}")]
    ActiveSlot {
        /// The image's name in sw-description.
        image: String,
        /// Its `device`.
        device: String,
        /// The slot that runs.
        booted: SlotId,
    },
    /// Activating a slot nothing was written to would boot whatever it held before.
    #[error("sw-description: no images for slot {target}{}", selection_hint(.selection))]
    NoImages {
        /// The target slot.
        target: SlotId,
        /// The selection used for it, if any.
        selection: Option<String>,
    },
    /// Anything else the agent does not support or that contradicts itself.
    #[error("sw-description: {0}")]
    Unsupported(String),
}

fn selection_hint(selection: &Option<String>) -> String {
    match selection {
        Some(sel) => format!(" in selection {sel}"),
        None => " (is a selection needed?)".to_string(),
    }
}

/// A rule about the bundle's members (not about sw-description).
#[derive(Debug, thiserror::Error)]
pub enum StructureError {
    /// A member name occurs twice.
    #[error("member {0} appears twice")]
    Duplicate(String),
    /// More than this many bytes follow the cpio trailer.
    #[error("more than {0} bytes after the cpio trailer")]
    Trailing(u64),
    /// Reading the rest of the bundle failed (a verifying source reports its hash here).
    #[error("reading the end of the bundle: {0}")]
    End(#[source] io::Error),
}

/// Reading or applying one member.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading the member from the source failed.
    #[error("{0}")]
    Read(#[source] io::Error),
    /// An image's `ivt` property is not 32 hex digits.
    #[error("ivt {0:?} is not 32 hex digits")]
    Ivt(String),
    /// zstd decompression failed (corrupt or truncated frame).
    #[error("zstd: {0}")]
    Zstd(#[source] io::Error),
    /// Applying a `keel-delta` failed (wrong seed, corrupt delta, zstd version mismatch, result
    /// hash mismatch).
    #[error("delta: {0}")]
    Delta(#[source] keel_delta::DeltaError),
    /// Reading a `keel-chunked` image's chunk index member failed.
    #[error("chunk index: {0}")]
    IndexRead(#[source] io::Error),
    /// A `keel-chunked` image's chunk index does not parse.
    #[error("chunk index: {0}")]
    Index(#[source] keel_delta::DeltaError),
    /// Assembling a `keel-chunked` image failed (a chunk or the image hash does not verify, the
    /// pack is short or unreadable).
    #[error("{kind}: {0}", kind = crate::chunks::CHUNKED_TYPE)]
    Chunked(#[source] keel_delta::DeltaError),
    /// The plan gave a delta or chunked image no seed (it always does).
    #[error("no seed slot")]
    NoSeed,
    /// The seed (the same target of the booted slot) could not be opened or read.
    #[error("seed {path}: {source}")]
    Seed {
        /// The seed target.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Scanning the seed slot target for the chunks it holds failed.
    #[error("scanning seed {path}: {source}")]
    SeedScan {
        /// The seed target.
        path: String,
        /// What failed.
        source: keel_delta::DeltaError,
    },
    /// The pack of a chunked image cannot be opened.
    #[error("{0}")]
    Pack(String),
    /// The index and the signed properties of a chunked image disagree, or one is missing.
    #[error("{0}")]
    Properties(String),
}

impl From<io::Error> for ImageError {
    fn from(e: io::Error) -> ImageError {
        ImageError::Read(e)
    }
}

/// The trust anchors (`trusted_certs`) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file could not be read.
    #[error("{0}")]
    Read(#[source] io::Error),
    /// The file holds no usable PEM certificate.
    #[error("{0}")]
    Pem(#[source] keel_sign::SignError),
}

/// The AES key of encrypted images cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The bundle has encrypted images but no `aes_key` is configured.
    #[error("the bundle has encrypted images but no aes_key is configured")]
    NotConfigured,
    /// The `aes_key` file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The key file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The key file is not `<64 hex key> <32 hex iv>`.
    #[error("{path}: {source}")]
    Parse {
        /// The key file.
        path: String,
        /// The parse error.
        source: keel_sign::aes::KeyFileError,
    },
}

/// A pre- or post-install script failed.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// A script of the description was not among the bundle's members before its stage.
    #[error("script member not found before it had to run")]
    NotInBundle,
    /// Spawning the shell or feeding it the script failed.
    #[error("{0}")]
    Io(#[source] io::Error),
    /// The script exited non-zero (or was killed by a signal).
    #[error("{0}")]
    Exit(ExitStatus),
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn the_cause_stays_reachable_as_source() {
        let err = InstallError::Signature(keel_sign::VerifyError::SignatureMismatch);
        assert_eq!(
            err.to_string(),
            "sw-description signature rejected: signature does not match content"
        );
        let source = err
            .source()
            .and_then(|s| s.downcast_ref::<keel_sign::VerifyError>());
        assert!(matches!(
            source,
            Some(keel_sign::VerifyError::SignatureMismatch)
        ));

        let err = InstallError::image(
            "rootfs.delta",
            ImageError::Delta(keel_delta::DeltaError::BadMagic),
        );
        assert_eq!(
            err.to_string(),
            "image rootfs.delta: delta: not a keel delta (bad magic)"
        );
        let delta = err
            .source()
            .and_then(Error::source)
            .and_then(|s| s.downcast_ref::<keel_delta::DeltaError>());
        assert!(matches!(delta, Some(keel_delta::DeltaError::BadMagic)));
    }

    #[test]
    fn bundle_structure_is_not_labelled_sw_description() {
        let err = InstallError::from(StructureError::Duplicate("rootfs.img".into()));
        assert_eq!(err.to_string(), "bundle: member rootfs.img appears twice");
        let err = InstallError::from(StructureError::Trailing(65536));
        assert_eq!(
            err.to_string(),
            "bundle: more than 65536 bytes after the cpio trailer"
        );
    }
}
