use crate::algorithms::{oid, oid_name, signature_family, DigestAlg, PublicKey};
use crate::sign::parse_certificates;
use crate::{SignError, VerifyError};
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo as CmsSignerInfo};
use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier};
use x509_cert::Certificate;

/// Which extendedKeyUsage the signer certificate must carry, like SWUpdate's `--cert-purpose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertPurpose {
    /// SWUpdate's default (OpenSSL `smimesign`): if the certificate has extendedKeyUsage, it must include
    /// emailProtection (also required of CA certificates in the chain that carry the extension).
    #[default]
    EmailProtection,
    /// SWUpdate `--cert-purpose codesign`: the signer certificate must have extendedKeyUsage codeSigning
    /// (CA certificates only if they carry the extension).
    CodeSigning,
    /// No extendedKeyUsage requirement.
    Any,
}

impl CertPurpose {
    fn eku(self) -> Option<(ObjectIdentifier, &'static str)> {
        match self {
            CertPurpose::EmailProtection => Some((oid::KP_EMAIL_PROTECTION, "emailProtection")),
            CertPurpose::CodeSigning => Some((oid::KP_CODE_SIGNING, "codeSigning")),
            CertPurpose::Any => None,
        }
    }
}

/// Who signed: returned by a successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerInfo {
    /// Signer certificate subject (RFC 4514, e.g. `CN=release signer,O=Example`).
    pub subject: String,
    /// Signer certificate issuer (RFC 4514).
    pub issuer: String,
    /// Signer certificate serial number, lowercase hex of its DER integer bytes.
    pub serial_hex: String,
    /// e.g. `sha256`.
    pub digest_algorithm: String,
    /// e.g. `rsaEncryption`, `ecdsa-with-SHA256`.
    pub signature_algorithm: String,
}

/// Longest certificate chain followed from the signer to a trust anchor (signer included).
const MAX_CHAIN_LEN: usize = 8;

/// Checks that `cert` may sign for `purpose` under the rules [`Verifier`] applies to a signer
/// (keyUsage digitalSignature or nonRepudiation if present; the purpose's extendedKeyUsage), so a
/// bundle is not signed with a certificate its verifiers will refuse.
pub fn check_signer_certificate(
    cert: &Certificate,
    purpose: CertPurpose,
) -> Result<(), VerifyError> {
    let entry = CertEntry::new(cert.clone()).map_err(VerifyError::Malformed)?;
    signer_usage(&entry, purpose)
}

fn signer_usage(cert: &CertEntry, purpose: CertPurpose) -> Result<(), VerifyError> {
    if let Some(ku) = cert.extension::<KeyUsage>(oid::KEY_USAGE)? {
        // OpenSSL accepts digitalSignature or nonRepudiation for S/MIME signing.
        if !(ku.digital_signature() || ku.non_repudiation()) {
            return Err(VerifyError::KeyUsage {
                subject: cert.subject.clone(),
            });
        }
    }
    let Some((eku_oid, eku_name)) = purpose.eku() else {
        return Ok(());
    };
    let eku = cert.extension::<ExtendedKeyUsage>(oid::EXT_KEY_USAGE)?;
    let ok = match eku {
        Some(list) => list.0.contains(&eku_oid),
        // SWUpdate's codesign purpose requires the extension; smimesign accepts its absence.
        None => purpose != CertPurpose::CodeSigning,
    };
    if ok {
        Ok(())
    } else {
        Err(VerifyError::ExtendedKeyUsage {
            subject: cert.subject.clone(),
            purpose: eku_name,
        })
    }
}

/// A certificate with what verification needs precomputed.
#[derive(Clone)]
struct CertEntry {
    cert: Certificate,
    der: Vec<u8>,
    subject: String,
}

impl CertEntry {
    fn new(cert: Certificate) -> Result<CertEntry, String> {
        let der = cert.to_der().map_err(|e| e.to_string())?;
        let subject = name_string(&cert.tbs_certificate.subject);
        Ok(CertEntry { cert, der, subject })
    }

    fn issuer(&self) -> String {
        name_string(&self.cert.tbs_certificate.issuer)
    }

    fn extension<T: for<'a> Decode<'a>>(
        &self,
        ext_oid: ObjectIdentifier,
    ) -> Result<Option<T>, VerifyError> {
        let Some(exts) = &self.cert.tbs_certificate.extensions else {
            return Ok(None);
        };
        let mut found = exts.iter().filter(|e| e.extn_id == ext_oid);
        let Some(ext) = found.next() else {
            return Ok(None);
        };
        if found.next().is_some() {
            return Err(VerifyError::Malformed(format!(
                "certificate {} has extension {} twice",
                self.subject, ext_oid
            )));
        }
        T::from_der(ext.extn_value.as_bytes())
            .map(Some)
            .map_err(|e| {
                VerifyError::Malformed(format!(
                    "certificate {} extension {}: {e}",
                    self.subject, ext_oid
                ))
            })
    }

    fn public_key(&self) -> Result<PublicKey, VerifyError> {
        PublicKey::from_spki(&self.cert.tbs_certificate.subject_public_key_info)
            .map_err(|e| VerifyError::Unsupported(format!("certificate {}: {e}", self.subject)))
    }

    /// Does `issuer`'s key verify this certificate's signature?
    fn signed_by(&self, issuer: &CertEntry) -> Result<bool, VerifyError> {
        let alg = &self.cert.signature_algorithm.oid;
        let (family, digest) = signature_family(alg)
            .and_then(|(f, d)| d.map(|d| (f, d)))
            .ok_or_else(|| {
                VerifyError::Unsupported(format!(
                    "certificate {} is signed with {}",
                    self.subject,
                    oid_name(alg)
                ))
            })?;
        let key = issuer.public_key()?;
        if key.family() != family {
            return Ok(false);
        }
        let tbs =
            self.cert.tbs_certificate.to_der().map_err(|e| {
                VerifyError::Malformed(format!("certificate {}: {e}", self.subject))
            })?;
        let Some(signature) = self.cert.signature.as_bytes() else {
            return Ok(false);
        };
        Ok(key.verify_prehash(digest, &digest.digest(&tbs), signature))
    }
}

/// Trust anchors plus verification policy.
#[derive(Clone)]
pub struct Verifier {
    trusted: Vec<CertEntry>,
    purpose: CertPurpose,
    now: Option<u64>,
    signer_name: Option<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field(
                "trusted",
                &self
                    .trusted
                    .iter()
                    .map(|c| c.subject.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("purpose", &self.purpose)
            .field("now", &self.now)
            .field("signer_name", &self.signer_name)
            .finish()
    }
}

impl Verifier {
    /// Trusted certificates (PEM, one or more): the signer certificate itself (like `swupdate -k`) or CA
    /// certificates. Every listed certificate is a trust anchor, also when it is not self-signed.
    pub fn from_pem(trusted_pem: &[u8]) -> Result<Verifier, SignError> {
        let certs = parse_certificates(trusted_pem)?;
        if certs.is_empty() {
            return Err(SignError::Certificate(
                "no CERTIFICATE block found in the trusted certificates".into(),
            ));
        }
        let trusted = certs
            .into_iter()
            .map(CertEntry::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(SignError::Certificate)?;
        Ok(Verifier {
            trusted,
            purpose: CertPurpose::default(),
            now: None,
            signer_name: None,
        })
    }

    /// Which extendedKeyUsage to require (default: emailProtection, like SWUpdate).
    pub fn with_purpose(mut self, p: CertPurpose) -> Self {
        self.purpose = p;
        self
    }

    /// Check every certificate's validity period against `now` (unix seconds); `None` (default) skips it.
    pub fn at_time(mut self, now: Option<u64>) -> Self {
        self.now = now;
        self
    }

    /// Require the signer certificate's commonName to be exactly `name`, like SWUpdate's
    /// `--forced-signer-name`: every CN in the subject must equal it, and there must be at least one.
    /// `None` (default) accepts any name.
    pub fn with_signer_name(mut self, name: Option<String>) -> Self {
        self.signer_name = name.filter(|n| !n.is_empty());
        self
    }

    /// Verify a detached CMS signature (DER) over `content`: every SignerInfo must verify (signature,
    /// messageDigest) and chain to a trusted certificate. Returns the first signer.
    pub fn verify_detached(
        &self,
        content: &[u8],
        cms_der: &[u8],
    ) -> Result<SignerInfo, VerifyError> {
        let content_info = ContentInfo::from_der(cms_der)
            .map_err(|e| VerifyError::Malformed(format!("not a DER CMS ContentInfo: {e}")))?;
        if content_info.content_type != oid::ID_SIGNED_DATA {
            return Err(VerifyError::Unsupported(format!(
                "CMS content type is {}, expected signedData",
                content_info.content_type
            )));
        }
        let signed_data: SignedData = content_info
            .content
            .decode_as()
            .map_err(|e| VerifyError::Malformed(format!("SignedData: {e}")))?;
        if signed_data.encap_content_info.econtent.is_some() {
            return Err(VerifyError::Unsupported(
                "signature embeds its content; a detached signature (openssl cms -sign without -nodetach) is expected"
                    .into(),
            ));
        }

        let mut embedded = Vec::new();
        if let Some(set) = &signed_data.certificates {
            for choice in set.0.iter() {
                if let CertificateChoices::Certificate(cert) = choice {
                    embedded.push(CertEntry::new(cert.clone()).map_err(VerifyError::Malformed)?);
                }
            }
        }

        let mut first = None;
        for signer in signed_data.signer_infos.0.iter() {
            let info = self.verify_signer(content, &signed_data, signer, &embedded)?;
            first.get_or_insert(info);
        }
        first.ok_or_else(|| VerifyError::Malformed("SignedData has no SignerInfo".into()))
    }

    fn verify_signer(
        &self,
        content: &[u8],
        signed_data: &SignedData,
        signer: &CmsSignerInfo,
        embedded: &[CertEntry],
    ) -> Result<SignerInfo, VerifyError> {
        let signer_cert = find_signer(&signer.sid, embedded)
            .or_else(|| find_signer(&signer.sid, &self.trusted))
            .ok_or_else(|| VerifyError::SignerCertificateMissing(describe_sid(&signer.sid)))?;

        let digest_alg = DigestAlg::from_oid(&signer.digest_alg.oid).ok_or_else(|| {
            VerifyError::Unsupported(format!(
                "digest algorithm {}",
                oid_name(&signer.digest_alg.oid)
            ))
        })?;
        let sig_oid = &signer.signature_algorithm.oid;
        let (family, _) = signature_family(sig_oid).ok_or_else(|| {
            VerifyError::Unsupported(format!("signature algorithm {}", oid_name(sig_oid)))
        })?;
        let key = signer_cert.public_key()?;
        if key.family() != family {
            return Err(VerifyError::Malformed(format!(
                "signature algorithm {} does not fit the signer certificate's key",
                oid_name(sig_oid)
            )));
        }

        let content_digest = digest_alg.digest(content);
        let signed_digest = match &signer.signed_attrs {
            Some(attrs) => {
                let message_digest =
                    single_attribute(attrs, oid::ID_MESSAGE_DIGEST, "messageDigest")?
                        .decode_as::<OctetString>()
                        .map_err(|e| {
                            VerifyError::Malformed(format!("messageDigest attribute: {e}"))
                        })?;
                let content_type = single_attribute(attrs, oid::ID_CONTENT_TYPE, "contentType")?
                    .decode_as::<ObjectIdentifier>()
                    .map_err(|e| VerifyError::Malformed(format!("contentType attribute: {e}")))?;
                if content_type != signed_data.encap_content_info.econtent_type {
                    return Err(VerifyError::Malformed(
                        "contentType attribute differs from the encapsulated content type".into(),
                    ));
                }
                let attrs_der = attrs
                    .to_der()
                    .map_err(|e| VerifyError::Malformed(format!("signed attributes: {e}")))?;
                // Signature first: a flipped content byte with a good signature is a content mismatch.
                if !key.verify_prehash(
                    digest_alg,
                    &digest_alg.digest(&attrs_der),
                    signer.signature.as_bytes(),
                ) {
                    return Err(VerifyError::SignatureMismatch);
                }
                if message_digest.as_bytes() != content_digest.as_slice() {
                    return Err(VerifyError::DigestMismatch);
                }
                true
            }
            None => key.verify_prehash(digest_alg, &content_digest, signer.signature.as_bytes()),
        };
        if !signed_digest {
            return Err(VerifyError::SignatureMismatch);
        }

        if let Some(expected) = &self.signer_name {
            let names = common_names(&signer_cert.cert.tbs_certificate.subject);
            if names.is_empty()
                || names
                    .iter()
                    .any(|cn| cn.as_deref() != Some(expected.as_str()))
            {
                return Err(VerifyError::SignerName {
                    expected: expected.clone(),
                    subject: signer_cert.subject.clone(),
                });
            }
        }

        self.verify_chain(signer_cert, embedded)?;

        let tbs = &signer_cert.cert.tbs_certificate;
        Ok(SignerInfo {
            subject: signer_cert.subject.clone(),
            issuer: signer_cert.issuer(),
            serial_hex: hex(tbs.serial_number.as_bytes()),
            digest_algorithm: digest_alg.name().to_string(),
            signature_algorithm: oid_name(sig_oid),
        })
    }

    /// Build a path signer -> (embedded intermediates) -> trusted certificate and check each link.
    fn verify_chain(&self, signer: &CertEntry, embedded: &[CertEntry]) -> Result<(), VerifyError> {
        let mut path: Vec<&CertEntry> = vec![signer];
        while let Some(&current) = path.last() {
            if self.trusted.iter().any(|t| t.der == current.der) {
                break; // reached a trust anchor
            }
            if path.len() >= MAX_CHAIN_LEN {
                return Err(VerifyError::ChainTooLong(MAX_CHAIN_LEN));
            }
            let issuer_name = &current.cert.tbs_certificate.issuer;
            let mut name_matched = None;
            let mut next = None;
            // Trusted issuers first, then intermediates shipped in the signature.
            for candidate in self.trusted.iter().chain(embedded.iter()) {
                if &candidate.cert.tbs_certificate.subject != issuer_name
                    || path.iter().any(|p| p.der == candidate.der)
                {
                    continue;
                }
                name_matched.get_or_insert(candidate);
                if current.signed_by(candidate)? {
                    next = Some(candidate);
                    break;
                }
            }
            match (next, name_matched) {
                (Some(issuer), _) => path.push(issuer),
                (None, Some(issuer)) => {
                    return Err(VerifyError::ChainSignature {
                        subject: current.subject.clone(),
                        issuer: issuer.subject.clone(),
                    })
                }
                (None, None) => {
                    return Err(VerifyError::Untrusted {
                        subject: current.subject.clone(),
                        issuer: current.issuer(),
                    })
                }
            }
        }

        for (depth, cert) in path.iter().enumerate() {
            self.check_validity(cert)?;
            check_critical_extensions(cert)?;
            if depth == 0 {
                self.check_signer_usage(cert)?;
            } else {
                let child = path
                    .get(depth - 1)
                    .map(|c| c.subject.clone())
                    .unwrap_or_default();
                self.check_ca_usage(cert, &child, depth - 1)?;
            }
        }
        Ok(())
    }

    fn check_validity(&self, cert: &CertEntry) -> Result<(), VerifyError> {
        let Some(now) = self.now else { return Ok(()) };
        let validity = &cert.cert.tbs_certificate.validity;
        let not_before = validity.not_before.to_unix_duration().as_secs();
        let not_after = validity.not_after.to_unix_duration().as_secs();
        if now < not_before {
            return Err(VerifyError::NotYetValid {
                subject: cert.subject.clone(),
                not_before: validity.not_before.to_string(),
                not_before_unix: not_before,
                now,
            });
        }
        if now > not_after {
            return Err(VerifyError::Expired {
                subject: cert.subject.clone(),
                not_after: validity.not_after.to_string(),
                not_after_unix: not_after,
                now,
            });
        }
        Ok(())
    }

    /// OpenSSL `smimesign` / SWUpdate `codesign` rules for the signer (leaf) certificate.
    fn check_signer_usage(&self, cert: &CertEntry) -> Result<(), VerifyError> {
        signer_usage(cert, self.purpose)
    }

    /// An issuing certificate must be a CA, allowed to sign certificates and, if it restricts extended
    /// key usage, allow the purpose. `below` = number of intermediate CAs between it and the signer.
    fn check_ca_usage(
        &self,
        cert: &CertEntry,
        child: &str,
        below: usize,
    ) -> Result<(), VerifyError> {
        let not_ca = || VerifyError::NotCa {
            subject: cert.subject.clone(),
            child: child.to_string(),
        };
        match cert.extension::<BasicConstraints>(oid::BASIC_CONSTRAINTS)? {
            Some(bc) if bc.ca => {
                if let Some(max) = bc.path_len_constraint {
                    if below > usize::from(max) {
                        return Err(not_ca());
                    }
                }
            }
            Some(_) => return Err(not_ca()),
            // Version 1 certificates predate basicConstraints; OpenSSL accepts self-signed ones as CAs.
            None if cert.cert.tbs_certificate.version == x509_cert::Version::V1 => {}
            None => return Err(not_ca()),
        }
        if let Some(ku) = cert.extension::<KeyUsage>(oid::KEY_USAGE)? {
            if !ku.key_cert_sign() {
                return Err(not_ca());
            }
        }
        if let Some((eku_oid, eku_name)) = self.purpose.eku() {
            if let Some(list) = cert.extension::<ExtendedKeyUsage>(oid::EXT_KEY_USAGE)? {
                if !list.0.contains(&eku_oid) {
                    return Err(VerifyError::ExtendedKeyUsage {
                        subject: cert.subject.clone(),
                        purpose: eku_name,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Extensions whose meaning we enforce or that do not restrict signature use; any other critical extension
/// makes the certificate unusable (RFC 5280 4.2), as in OpenSSL.
fn check_critical_extensions(cert: &CertEntry) -> Result<(), VerifyError> {
    const UNDERSTOOD: [&str; 6] = [
        "2.5.29.15", // keyUsage
        "2.5.29.19", // basicConstraints
        "2.5.29.37", // extendedKeyUsage
        "2.5.29.14", // subjectKeyIdentifier
        "2.5.29.35", // authorityKeyIdentifier
        "2.5.29.17", // subjectAltName
    ];
    let Some(exts) = &cert.cert.tbs_certificate.extensions else {
        return Ok(());
    };
    for ext in exts.iter().filter(|e| e.critical) {
        let id = ext.extn_id.to_string();
        if !UNDERSTOOD.contains(&id.as_str()) {
            return Err(VerifyError::Unsupported(format!(
                "certificate {} has unsupported critical extension {id}",
                cert.subject
            )));
        }
    }
    Ok(())
}

/// Every commonName in `name`, as text (`None` for a CN whose string type we do not decode).
fn common_names(name: &x509_cert::name::Name) -> Vec<Option<String>> {
    use der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == oid::COMMON_NAME)
        .map(|atv| {
            atv.value
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_string())
                .or_else(|_| {
                    atv.value
                        .decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                })
                .or_else(|_| {
                    atv.value
                        .decode_as::<Ia5StringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                })
                .ok()
        })
        .collect()
}

fn find_signer<'a>(sid: &SignerIdentifier, certs: &'a [CertEntry]) -> Option<&'a CertEntry> {
    certs.iter().find(|c| match sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => {
            c.cert.tbs_certificate.issuer == ias.issuer
                && c.cert.tbs_certificate.serial_number == ias.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => c
            .extension::<SubjectKeyIdentifier>(oid::SUBJECT_KEY_IDENTIFIER)
            .ok()
            .flatten()
            .is_some_and(|own| own.0 == ski.0),
    })
}

fn describe_sid(sid: &SignerIdentifier) -> String {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => {
            format!(
                "issuer {}, serial {}",
                name_string(&ias.issuer),
                hex(ias.serial_number.as_bytes())
            )
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => {
            format!("subjectKeyIdentifier {}", hex(ski.0.as_bytes()))
        }
    }
}

/// The only value of the only attribute `attr_oid` (RFC 5652 11: exactly one each).
fn single_attribute<'a>(
    attrs: &'a x509_cert::attr::Attributes,
    attr_oid: ObjectIdentifier,
    name: &str,
) -> Result<&'a der::asn1::Any, VerifyError> {
    let mut matching = attrs.iter().filter(|a| a.oid == attr_oid);
    let attr = matching
        .next()
        .ok_or_else(|| VerifyError::Malformed(format!("signed attributes lack {name}")))?;
    if matching.next().is_some() {
        return Err(VerifyError::Malformed(format!(
            "signed attributes contain {name} twice"
        )));
    }
    let mut values = attr.values.iter();
    match (values.next(), values.next()) {
        (Some(v), None) => Ok(v),
        _ => Err(VerifyError::Malformed(format!(
            "{name} attribute must have exactly one value"
        ))),
    }
}

/// Distinguished name in certificate order, e.g. `CN=release signer,O=Example` (RFC 4514 escaping per
/// attribute, but not RFC 4514's reversed order, so it reads like `openssl x509 -subject`).
pub(crate) fn name_string(name: &x509_cert::name::Name) -> String {
    name.0
        .iter()
        .map(|rdn| rdn.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

use hex::encode as hex;
