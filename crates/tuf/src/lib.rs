//! keel-tuf: a strict, synchronous TUF client for the device (TUF specification 1.0.x).
//!
//! * [`trusted::TrustedMetadataSet`] verifies metadata bytes in the order the specification requires
//!   (root chain → timestamp → snapshot → targets → delegated targets), modelled on python-tuf.
//! * [`updater::Updater`] drives it over a [`fetch::Fetcher`] and a [`store::MetadataStore`] that persists the
//!   exact bytes received, atomically.
//! * [`canonical`] is securesystemslib's canonical JSON; [`keys`] verifies ed25519, ecdsa-sha2-nistp256 and
//!   rsassa-pss-sha256 signatures with keys in the securesystemslib JSON format.
//! * [`time::TimePolicy`] is the trusted-time policy for devices without a real-time clock.
//!
//! No async runtime, no server dependencies; see docs/tuf.md.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod canonical;
pub mod error;
pub mod fetch;
pub mod keys;
pub mod metadata;
pub mod store;
pub mod time;
pub mod trusted;
pub mod updater;

pub use error::Error;
#[cfg(feature = "http")]
pub use fetch::HttpFetcher;
pub use fetch::{FetchError, Fetcher, FileFetcher};
pub use store::MetadataStore;
pub use time::TimePolicy;
pub use trusted::TrustedMetadataSet;
pub use updater::{init_trusted_root, TargetInfo, Updater, UpdaterConfig, VerifyingReader};

/// The TUF target name of a hawkBit/DDI artifact: `<module name>/<module version>/<filename>`, each part
/// percent-encoded (RFC 3986 unreserved characters kept), so the server (which adds the target on upload) and
/// the agent (which reads the DDI deployment's chunk name, version and artifact filename) agree.
pub fn artifact_target_name(module_name: &str, module_version: &str, filename: &str) -> String {
    use store::percent_encode;
    format!(
        "{}/{}/{}",
        percent_encode(module_name),
        percent_encode(module_version),
        percent_encode(filename)
    )
}
