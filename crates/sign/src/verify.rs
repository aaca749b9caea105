use crate::{SignError, VerifyError};

/// Which extendedKeyUsage the signer certificate must carry (when it has the extension at all),
/// like SWUpdate's `--cert-purpose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertPurpose {
    /// id-kp-emailProtection (SWUpdate's default, `smimesign`).
    #[default]
    EmailProtection,
    /// id-kp-codeSigning (`--cert-purpose codesign`).
    CodeSigning,
    /// No extendedKeyUsage requirement.
    Any,
}

/// Who signed: returned by a successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerInfo {
    pub subject: String,
    pub issuer: String,
    pub serial_hex: String,
    pub digest_algorithm: String,
    pub signature_algorithm: String,
}

/// Trust anchors plus verification policy.
pub struct Verifier {
    purpose: CertPurpose,
    now: Option<u64>,
}

impl Verifier {
    /// Trusted certificates (PEM, one or more): the signer certificate itself or CA certificates.
    pub fn from_pem(_trusted_pem: &[u8]) -> Result<Verifier, SignError> {
        Ok(Verifier { purpose: CertPurpose::default(), now: None })
    }

    pub fn with_purpose(mut self, p: CertPurpose) -> Self {
        self.purpose = p;
        self
    }

    /// Check validity periods against `now` (unix seconds); `None` skips the check.
    pub fn at_time(mut self, now: Option<u64>) -> Self {
        self.now = now;
        self
    }

    /// Verify a detached CMS signature over `content`.
    pub fn verify_detached(&self, _content: &[u8], _cms_der: &[u8]) -> Result<SignerInfo, VerifyError> {
        Err(VerifyError::Unsupported("not implemented yet".into()))
    }
}
