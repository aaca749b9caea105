use thiserror::Error;

/// Errors while loading a signing key/certificate or producing a signature.
#[derive(Debug, Error)]
pub enum SignError {
    #[error("certificate PEM: {0}")]
    Certificate(String),
    #[error("private key PEM: {0}")]
    Key(String),
    #[error("private key does not match the signer certificate's public key")]
    KeyCertMismatch,
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("DER encoding failed: {0}")]
    Encoding(String),
}

/// Errors while verifying a detached CMS signature.
#[derive(Debug, Error)]
pub enum VerifyError {
    #[error("CMS signature is malformed: {0}")]
    Malformed(String),
    #[error("CMS signature uses an unsupported feature: {0}")]
    Unsupported(String),
    #[error("CMS signature does not contain the signer certificate ({0})")]
    SignerCertificateMissing(String),
    #[error("signature does not match content (its messageDigest attribute differs from the content digest)")]
    DigestMismatch,
    #[error("signature does not match content")]
    SignatureMismatch,
    #[error("signer certificate not trusted: issuer {issuer} (subject {subject}) is not among the trusted certificates")]
    Untrusted { subject: String, issuer: String },
    #[error("certificate chain broken: signature of certificate {subject} does not verify with issuer {issuer}'s key")]
    ChainSignature { subject: String, issuer: String },
    #[error("certificate expired: {subject} was valid until {not_after} (unix {not_after_unix}), now is unix {now}")]
    Expired {
        subject: String,
        not_after: String,
        not_after_unix: u64,
        now: u64,
    },
    #[error("certificate not yet valid: {subject} is valid from {not_before} (unix {not_before_unix}), now is unix {now}")]
    NotYetValid {
        subject: String,
        not_before: String,
        not_before_unix: u64,
        now: u64,
    },
    #[error("certificate {subject} lacks keyUsage digitalSignature")]
    KeyUsage { subject: String },
    #[error("certificate {subject} lacks extendedKeyUsage {purpose}")]
    ExtendedKeyUsage {
        subject: String,
        purpose: &'static str,
    },
    #[error("certificate {subject} is not a CA but is used to issue {child}")]
    NotCa { subject: String, child: String },
    #[error("signer certificate {subject} does not have the required common name \"{expected}\"")]
    SignerName { expected: String, subject: String },
    #[error("certificate chain too long (more than {0} certificates)")]
    ChainTooLong(usize),
}
