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

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error("bundle: {0}")]
    Bundle(#[from] SwuError),
    /// The bundle's members break a rule of the install itself (the cpio reader allows it).
    #[error("bundle: {0}")]
    Structure(#[from] StructureError),
    #[error("sw-description: {0}")]
    Description(#[from] ParseError),
    #[error(
        "bundle is not signed (no sw-description.sig); keel-agent installs signed bundles only"
    )]
    Unsigned,
    #[error("sw-description signature rejected: {0}")]
    Signature(#[source] keel_sign::VerifyError),
    #[error("trust anchors {path}: {source}")]
    Trust { path: String, source: TrustError },
    #[error("AES key: {0}")]
    Key(#[from] KeyError),
    /// The description cannot be installed on this device (see [`PlanError`]).
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("image {name}: sha256 mismatch: bundle has {actual}, sw-description says {expected}")]
    HashMismatch {
        name: String,
        expected: String,
        actual: String,
    },
    #[error("image {name}: {source}")]
    Image { name: String, source: ImageError },
    #[error("writing {path}: {source}")]
    Write { path: String, source: io::Error },
    #[error("image(s) listed in sw-description but missing from the bundle: {0}")]
    Missing(String),
    #[error("script {name} ({stage}) failed: {source}")]
    Script {
        name: String,
        stage: &'static str,
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
    #[error("bundle not for this device: {0}")]
    Incompatible(String),
    #[error("refusing to write the active slot: image {image} targets {device}, which belongs to the booted slot {booted}")]
    ActiveSlot {
        image: String,
        device: String,
        booted: SlotId,
    },
    /// Activating a slot nothing was written to would boot whatever it held before.
    #[error("sw-description: no images for slot {target}{}", selection_hint(.selection))]
    NoImages {
        target: SlotId,
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
    #[error("member {0} appears twice")]
    Duplicate(String),
    #[error("more than {0} bytes after the cpio trailer")]
    Trailing(u64),
    /// Reading the rest of the bundle failed (a verifying source reports its hash here).
    #[error("reading the end of the bundle: {0}")]
    End(#[source] io::Error),
}

/// Reading or applying one member.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0}")]
    Read(#[source] io::Error),
    #[error("ivt {0:?} is not 32 hex digits")]
    Ivt(String),
    #[error("zstd: {0}")]
    Zstd(#[source] io::Error),
    #[error("delta: {0}")]
    Delta(#[source] keel_delta::DeltaError),
    #[error("chunk index: {0}")]
    IndexRead(#[source] io::Error),
    #[error("chunk index: {0}")]
    Index(#[source] keel_delta::DeltaError),
    #[error("{kind}: {0}", kind = crate::chunks::CHUNKED_TYPE)]
    Chunked(#[source] keel_delta::DeltaError),
    /// The plan gave a delta or chunked image no seed (it always does).
    #[error("no seed slot")]
    NoSeed,
    #[error("seed {path}: {source}")]
    Seed { path: String, source: io::Error },
    #[error("scanning seed {path}: {source}")]
    SeedScan {
        path: String,
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
    #[error("{0}")]
    Read(#[source] io::Error),
    #[error("{0}")]
    Pem(#[source] keel_sign::SignError),
}

/// The AES key of encrypted images cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the bundle has encrypted images but no aes_key is configured")]
    NotConfigured,
    #[error("{path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: keel_sign::aes::KeyFileError,
    },
}

/// A pre- or post-install script failed.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("script member not found before it had to run")]
    NotInBundle,
    #[error("{0}")]
    Io(#[source] io::Error),
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
