//! Test PKI made with the real `openssl` command line (keel-testkit), plus what only the
//! keel-sign tests need: extension sets a release signer must not have, and `openssl cms -verify`.
#![allow(dead_code)]

use std::path::Path;

pub use keel_testkit::openssl::{openssl, openssl_status};
pub use keel_testkit::pki::{Identity, KeyKind, Pki, EXT_CA, EXT_SIGNER, EXT_SIGNER_CODESIGN};

/// Extension sets used only by these tests.
pub const EXT_SIGNER_NO_DIGSIG: &str =
    "keyUsage = critical, keyEncipherment\nextendedKeyUsage = emailProtection\n";
pub const EXT_NOT_CA: &str =
    "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n";

/// The certificates of these tests: subject `/CN=name/O=keel test`, exactly the extensions `ext`.
pub trait SignPki {
    /// Self-signed certificate for a new `kind` key.
    fn self_signed(&self, name: &str, kind: KeyKind, ext: &str, days: u32) -> Identity;
    /// Certificate for a new `kind` key, issued by `issuer`.
    fn issue(&self, name: &str, kind: KeyKind, issuer: &Identity, ext: &str, days: u32)
        -> Identity;
    /// `openssl cms -verify` of a detached DER signature, as SWUpdate calls it (CMS_BINARY, purpose).
    fn openssl_verify(
        &self,
        content: &Path,
        sig: &Path,
        ca_file: &Path,
        purpose: &str,
    ) -> (bool, String);
}

impl SignPki for Pki {
    fn self_signed(&self, name: &str, kind: KeyKind, ext: &str, days: u32) -> Identity {
        self.cert(name)
            .key_kind(kind)
            .ext(ext)
            .days(days)
            .subject(&format!("/CN={name}/O=keel test"))
            .self_signed()
    }

    fn issue(
        &self,
        name: &str,
        kind: KeyKind,
        issuer: &Identity,
        ext: &str,
        days: u32,
    ) -> Identity {
        self.cert(name)
            .key_kind(kind)
            .ext(ext)
            .days(days)
            .subject(&format!("/CN={name}/O=keel test"))
            .issued_by(issuer)
    }

    fn openssl_verify(
        &self,
        content: &Path,
        sig: &Path,
        ca_file: &Path,
        purpose: &str,
    ) -> (bool, String) {
        openssl_status(
            self.dir(),
            &[
                "cms",
                "-verify",
                "-binary",
                "-inform",
                "DER",
                "-in",
                sig.to_str().unwrap(),
                "-content",
                content.to_str().unwrap(),
                "-CAfile",
                ca_file.to_str().unwrap(),
                "-purpose",
                purpose,
                "-out",
                "/dev/null",
            ],
        )
    }
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
