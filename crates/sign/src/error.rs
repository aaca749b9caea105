use thiserror::Error;

/// Errors while loading a signing key/certificate or producing a signature.
#[derive(Debug, Error)]
pub enum SignError {
    /// The certificate PEM does not parse, has no `CERTIFICATE` block, a block of another type,
    /// a certificate that is not X.509 DER, or a public key of an unsupported type.
    #[error("certificate PEM: {0}")]
    Certificate(String),
    /// The private key PEM is missing, encrypted, holds more than one key, or is not an RSA or
    /// P-256/P-384 EC key in PKCS#1, PKCS#8 or SEC1 form.
    #[error("private key PEM: {0}")]
    Key(String),
    /// The private key is not the one of the signer certificate's public key.
    #[error("private key does not match the signer certificate's public key")]
    KeyCertMismatch,
    /// The signature could not be produced (e.g. a signing time the ASN.1 time types cannot
    /// express).
    #[error("signing failed: {0}")]
    Signing(String),
    /// DER encoding of the CMS structure or a key failed.
    #[error("DER encoding failed: {0}")]
    Encoding(String),
}

/// Errors while verifying a detached CMS signature.
#[derive(Debug, Error)]
pub enum VerifyError {
    /// The signature or a certificate in it does not parse as DER CMS / X.509, or the
    /// SignedData has no SignerInfo.
    #[error("CMS signature is malformed: {0}")]
    Malformed(String),
    /// The signature is well-formed but uses something this verifier (like SWUpdate) does not
    /// accept: not SignedData, embedded content instead of detached, an unknown digest or
    /// signature algorithm, an unknown critical certificate extension, ...
    #[error("CMS signature uses an unsupported feature: {0}")]
    Unsupported(String),
    /// The certificate the SignerInfo names is neither embedded in the signature nor among the
    /// trusted certificates; carries how the SignerInfo identifies it (issuer and serial, or
    /// subjectKeyIdentifier).
    #[error("CMS signature does not contain the signer certificate ({0})")]
    SignerCertificateMissing(String),
    /// The signed attributes' messageDigest is not the digest of the content: the content
    /// (`sw-description`) was changed after signing.
    #[error("signature does not match content (its messageDigest attribute differs from the content digest)")]
    DigestMismatch,
    /// The signature value does not verify with the signer certificate's key.
    #[error("signature does not match content")]
    SignatureMismatch,
    /// No certificate path leads from the signer to a trusted certificate: the issuer of the
    /// last certificate reached is neither trusted nor embedded.
    #[error("signer certificate not trusted: issuer {issuer} (subject {subject}) is not among the trusted certificates")]
    Untrusted {
        /// Subject of the last certificate of the path (RFC 4514).
        subject: String,
        /// Its issuer, which could not be found (RFC 4514).
        issuer: String,
    },
    /// A certificate with the issuer's name was found but its key does not verify the
    /// certificate's signature.
    #[error("certificate chain broken: signature of certificate {subject} does not verify with issuer {issuer}'s key")]
    ChainSignature {
        /// Subject of the certificate whose signature fails (RFC 4514).
        subject: String,
        /// Subject of the candidate issuer (RFC 4514).
        issuer: String,
    },
    /// A certificate of the path expired before the verification time
    /// ([`crate::Verifier::at_time`]; not checked without one).
    #[error("certificate expired: {subject} was valid until {not_after} (unix {not_after_unix}), now is unix {now}")]
    Expired {
        /// Subject of the expired certificate (RFC 4514).
        subject: String,
        /// Its notAfter, as text.
        not_after: String,
        /// Its notAfter, unix seconds.
        not_after_unix: u64,
        /// The verification time, unix seconds.
        now: u64,
    },
    /// A certificate of the path is not valid yet at the verification time (often a device
    /// clock that was reset).
    #[error("certificate not yet valid: {subject} is valid from {not_before} (unix {not_before_unix}), now is unix {now}")]
    NotYetValid {
        /// Subject of the certificate (RFC 4514).
        subject: String,
        /// Its notBefore, as text.
        not_before: String,
        /// Its notBefore, unix seconds.
        not_before_unix: u64,
        /// The verification time, unix seconds.
        now: u64,
    },
    /// The signer certificate has a keyUsage extension without digitalSignature (or
    /// nonRepudiation).
    #[error("certificate {subject} lacks keyUsage digitalSignature")]
    KeyUsage {
        /// Subject of the signer certificate (RFC 4514).
        subject: String,
    },
    /// The signer certificate (or a CA restricting extended key usage) does not allow the
    /// required [`crate::CertPurpose`].
    #[error("certificate {subject} lacks extendedKeyUsage {purpose}")]
    ExtendedKeyUsage {
        /// Subject of the certificate (RFC 4514).
        subject: String,
        /// The required extendedKeyUsage (`emailProtection`, `codeSigning`).
        purpose: &'static str,
    },
    /// A certificate that issues another one in the path is not allowed to: no CA
    /// basicConstraints (except v1 certificates), pathLenConstraint exceeded, or keyUsage
    /// without keyCertSign.
    #[error("certificate {subject} is not a CA but is used to issue {child}")]
    NotCa {
        /// Subject of the issuing certificate (RFC 4514).
        subject: String,
        /// Subject of the certificate it issued (RFC 4514).
        child: String,
    },
    /// The verifier requires a signer common name and the signer certificate has no CN, or one
    /// that differs.
    #[error("signer certificate {subject} does not have the required common name \"{expected}\"")]
    SignerName {
        /// The required common name.
        expected: String,
        /// Subject of the signer certificate (RFC 4514).
        subject: String,
    },
    /// The path from the signer to a trusted certificate would be longer than the limit
    /// (8 certificates, signer included); carries the limit.
    #[error("certificate chain too long (more than {0} certificates)")]
    ChainTooLong(usize),
}
