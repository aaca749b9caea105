//! CMS (PKCS#7) detached signatures and AES-256-CBC image encryption, compatible with SWUpdate.
//!
//! * [`Signer`] makes what `openssl cms -sign -binary -outform DER -nosmimecap` makes (detached
//!   SignedData, SHA-256), which `swupdate -k cert.pem` accepts for `sw-description.sig`.
//! * [`Verifier`] checks such signatures the way SWUpdate's CMS verifier does.
//! * [`aes`] is the `swupdate -K` key file and streaming AES-256-CBC.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod aes;
mod algorithms;
mod error;
mod pem;
mod sign;
mod verify;

pub use aes::KeyFileError;
pub use error::{SignError, VerifyError};
pub use sign::Signer;
pub use verify::{CertPurpose, SignerInfo, Verifier};
