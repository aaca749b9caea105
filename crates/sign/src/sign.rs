use crate::SignError;

/// A signing key and its X.509 certificate (plus optional intermediate certificates).
pub struct Signer {
    _private: (),
}

impl Signer {
    /// `cert_pem`: signer certificate, optionally followed by intermediate certificates.
    /// `key_pem`: RSA (PKCS#1 or PKCS#8) or EC P-256 / P-384 (SEC1 or PKCS#8) private key.
    pub fn from_pem(_cert_pem: &[u8], _key_pem: &[u8]) -> Result<Signer, SignError> {
        Err(SignError::Signing("not implemented yet".into()))
    }

    /// Detached CMS SignedData (DER) over `content` with SHA-256. Deterministic.
    /// `signing_time` (unix seconds) adds a signingTime signed attribute; `None` omits it.
    pub fn sign_detached(&self, _content: &[u8], _signing_time: Option<u64>) -> Result<Vec<u8>, SignError> {
        Err(SignError::Signing("not implemented yet".into()))
    }
}
