use crate::algorithms::{oid, PublicKey};
use crate::pem::parse_blocks;
use crate::SignError;
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier,
    SignerInfo as CmsSignerInfo, SignerInfos,
};
use der::asn1::{Any, GeneralizedTime, OctetString, SetOfVec, UtcTime};
use der::{Decode, Encode};
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, EncodePublicKey, SubjectPublicKeyInfoOwned};
use x509_cert::attr::Attribute;
use x509_cert::Certificate;

enum SigningKey {
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

/// A signing key and its X.509 certificate (plus optional intermediate certificates).
pub struct Signer {
    key: SigningKey,
    cert: Certificate,
    chain: Vec<Certificate>,
}

impl std::fmt::Debug for Signer {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("subject", &self.subject())
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// `cert_pem`: signer certificate, optionally followed by intermediate certificates.
    /// `key_pem`: RSA (PKCS#1 or PKCS#8) or EC P-256 / P-384 (SEC1 or PKCS#8) private key, unencrypted.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Signer, SignError> {
        let mut certs = parse_certificates(cert_pem)?.into_iter();
        let cert = certs
            .next()
            .ok_or_else(|| SignError::Certificate("no CERTIFICATE block found".into()))?;
        let chain: Vec<Certificate> = certs.collect();
        let key = parse_private_key(key_pem)?;

        let cert_key = PublicKey::from_spki(&cert.tbs_certificate.subject_public_key_info)
            .map_err(|e| SignError::Certificate(format!("signer certificate public key: {e}")))?;
        if cert_key != key.public_key()? {
            return Err(SignError::KeyCertMismatch);
        }
        Ok(Signer { key, cert, chain })
    }

    /// Refuses a signer certificate that verifiers requiring `purpose` would reject (keyUsage,
    /// extendedKeyUsage): check before signing, not after shipping.
    pub fn check_purpose(&self, purpose: crate::CertPurpose) -> Result<(), crate::VerifyError> {
        crate::verify::check_signer_certificate(&self.cert, purpose)
    }

    /// Subject of the signer certificate (RFC 4514 string).
    pub fn subject(&self) -> String {
        crate::verify::name_string(&self.cert.tbs_certificate.subject)
    }

    /// Detached CMS SignedData (DER) over `content` with SHA-256, like
    /// `openssl cms -sign -binary -outform DER -nosmimecap`. Deterministic (RSA PKCS#1 v1.5, ECDSA RFC 6979).
    /// Signed attributes: contentType, signingTime (only when `signing_time` is given, unix seconds), messageDigest.
    pub fn sign_detached(
        &self,
        content: &[u8],
        signing_time: Option<u64>,
    ) -> Result<Vec<u8>, SignError> {
        let enc = |e: der::Error| SignError::Encoding(e.to_string());
        let sha256 = AlgorithmIdentifierOwned {
            oid: oid::SHA256,
            parameters: None,
        };

        let mut attrs = SetOfVec::new();
        attrs
            .insert(attribute(oid::ID_CONTENT_TYPE, &oid::ID_DATA)?)
            .map_err(enc)?;
        if let Some(secs) = signing_time {
            let duration = std::time::Duration::from_secs(secs);
            // RFC 5652 11.3: UTCTime for 1950..2049, GeneralizedTime otherwise.
            let value = match UtcTime::from_unix_duration(duration) {
                Ok(t) => Any::encode_from(&t),
                Err(_) => {
                    Any::encode_from(&GeneralizedTime::from_unix_duration(duration).map_err(
                        |e| SignError::Signing(format!("signing time {secs} out of range: {e}")),
                    )?)
                }
            }
            .map_err(enc)?;
            attrs
                .insert(Attribute {
                    oid: oid::ID_SIGNING_TIME,
                    values: SetOfVec::try_from(vec![value]).map_err(enc)?,
                })
                .map_err(enc)?;
        }
        let digest = Sha256::digest(content);
        attrs
            .insert(attribute(
                oid::ID_MESSAGE_DIGEST,
                &OctetString::new(digest.as_slice()).map_err(enc)?,
            )?)
            .map_err(enc)?;

        // The signature covers the DER of the attributes as a SET OF (RFC 5652 5.4).
        let attrs_digest = Sha256::digest(attrs.to_der().map_err(enc)?);
        let (signature_algorithm, signature) = self.key.sign_prehash(&attrs_digest)?;

        let signer_info = CmsSignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: self.cert.tbs_certificate.issuer.clone(),
                serial_number: self.cert.tbs_certificate.serial_number.clone(),
            }),
            digest_alg: sha256.clone(),
            signed_attrs: Some(attrs),
            signature_algorithm,
            signature: OctetString::new(signature).map_err(enc)?,
            unsigned_attrs: None,
        };

        let mut certificates = SetOfVec::new();
        for cert in std::iter::once(&self.cert).chain(self.chain.iter()) {
            certificates
                .insert(CertificateChoices::Certificate(cert.clone()))
                .map_err(enc)?;
        }
        let signed_data = SignedData {
            version: CmsVersion::V1,
            digest_algorithms: SetOfVec::try_from(vec![sha256]).map_err(enc)?,
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: oid::ID_DATA,
                econtent: None,
            },
            certificates: Some(CertificateSet(certificates)),
            crls: None,
            signer_infos: SignerInfos(SetOfVec::try_from(vec![signer_info]).map_err(enc)?),
        };
        let content_info = ContentInfo {
            content_type: oid::ID_SIGNED_DATA,
            content: Any::encode_from(&signed_data).map_err(enc)?,
        };
        content_info.to_der().map_err(enc)
    }
}

fn attribute<T: der::EncodeValue + der::Tagged>(
    oid: der::asn1::ObjectIdentifier,
    value: &T,
) -> Result<Attribute, SignError> {
    let enc = |e: der::Error| SignError::Encoding(e.to_string());
    let any = Any::encode_from(value).map_err(enc)?;
    Ok(Attribute {
        oid,
        values: SetOfVec::try_from(vec![any]).map_err(enc)?,
    })
}

/// All certificates in a PEM file, in order.
pub(crate) fn parse_certificates(pem: &[u8]) -> Result<Vec<Certificate>, SignError> {
    let blocks = parse_blocks(pem).map_err(SignError::Certificate)?;
    let mut certs = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        match block.label.as_str() {
            "CERTIFICATE" | "TRUSTED CERTIFICATE" | "X509 CERTIFICATE" => {
                let cert = Certificate::from_der(&block.der).map_err(|e| {
                    SignError::Certificate(format!(
                        "certificate #{} is not valid X.509 DER: {e}",
                        index + 1
                    ))
                })?;
                certs.push(cert);
            }
            other => {
                return Err(SignError::Certificate(format!(
                    "PEM block #{} is \"{other}\", expected CERTIFICATE",
                    index + 1
                )))
            }
        }
    }
    Ok(certs)
}

fn parse_private_key(pem: &[u8]) -> Result<SigningKey, SignError> {
    use pkcs8::DecodePrivateKey;
    use rsa::pkcs1::DecodeRsaPrivateKey;

    let blocks = parse_blocks(pem).map_err(SignError::Key)?;
    // `openssl ecparam -genkey` writes an "EC PARAMETERS" block before the key.
    let mut keys = blocks.iter().filter(|b| b.label != "EC PARAMETERS");
    let block = keys
        .next()
        .ok_or_else(|| SignError::Key("no private key PEM block found".into()))?;
    if keys.next().is_some() {
        return Err(SignError::Key("more than one private key PEM block".into()));
    }
    match block.label.as_str() {
        "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_der(&block.der)
            .map(|k| SigningKey::Rsa(Box::new(k)))
            .map_err(|e| SignError::Key(format!("RSA PKCS#1 key: {e}"))),
        "EC PRIVATE KEY" => parse_sec1_key(&block.der),
        "PRIVATE KEY" => {
            let info = pkcs8::PrivateKeyInfo::from_der(&block.der)
                .map_err(|e| SignError::Key(format!("PKCS#8 key: {e}")))?;
            match info.algorithm.oid {
                oid::RSA_ENCRYPTION => rsa::RsaPrivateKey::from_pkcs8_der(&block.der)
                    .map(|k| SigningKey::Rsa(Box::new(k)))
                    .map_err(|e| SignError::Key(format!("RSA PKCS#8 key: {e}"))),
                oid::ID_EC_PUBLIC_KEY => {
                    let curve = info
                        .algorithm
                        .parameters_oid()
                        .map_err(|e| SignError::Key(format!("EC PKCS#8 key without named curve: {e}")))?;
                    match curve {
                        oid::SECP256R1 => p256::ecdsa::SigningKey::from_pkcs8_der(&block.der)
                            .map(SigningKey::P256)
                            .map_err(|e| SignError::Key(format!("P-256 PKCS#8 key: {e}"))),
                        oid::SECP384R1 => p384::ecdsa::SigningKey::from_pkcs8_der(&block.der)
                            .map(SigningKey::P384)
                            .map_err(|e| SignError::Key(format!("P-384 PKCS#8 key: {e}"))),
                        other => Err(SignError::Key(format!(
                            "unsupported EC curve {} (P-256 and P-384 are supported)",
                            crate::algorithms::oid_name(&other)
                        ))),
                    }
                }
                other => Err(SignError::Key(format!(
                    "unsupported key algorithm {} (RSA and EC are supported)",
                    crate::algorithms::oid_name(&other)
                ))),
            }
        }
        "ENCRYPTED PRIVATE KEY" => Err(SignError::Key(
            "encrypted private keys are not supported; decrypt with `openssl pkey -in KEY -out PLAIN`".into(),
        )),
        other => Err(SignError::Key(format!("PEM block is \"{other}\", expected a private key"))),
    }
}

fn parse_sec1_key(der_bytes: &[u8]) -> Result<SigningKey, SignError> {
    let key = sec1::EcPrivateKey::from_der(der_bytes)
        .map_err(|e| SignError::Key(format!("SEC1 EC key: {e}")))?;
    let curve = key
        .parameters
        .and_then(|p| p.named_curve())
        .ok_or_else(|| SignError::Key("SEC1 EC key does not name its curve".into()))?;
    match curve {
        oid::SECP256R1 => p256::ecdsa::SigningKey::from_slice(key.private_key)
            .map(SigningKey::P256)
            .map_err(|_| SignError::Key("P-256 SEC1 key scalar is invalid".into())),
        oid::SECP384R1 => p384::ecdsa::SigningKey::from_slice(key.private_key)
            .map(SigningKey::P384)
            .map_err(|_| SignError::Key("P-384 SEC1 key scalar is invalid".into())),
        other => Err(SignError::Key(format!(
            "unsupported EC curve {} (P-256 and P-384 are supported)",
            crate::algorithms::oid_name(&other)
        ))),
    }
}

impl SigningKey {
    fn public_key(&self) -> Result<PublicKey, SignError> {
        let spki_der = match self {
            SigningKey::Rsa(k) => k.to_public_key().to_public_key_der(),
            SigningKey::P256(k) => k.verifying_key().to_public_key_der(),
            SigningKey::P384(k) => k.verifying_key().to_public_key_der(),
        }
        .map_err(|e| SignError::Encoding(e.to_string()))?;
        let spki = SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes())
            .map_err(|e| SignError::Encoding(e.to_string()))?;
        PublicKey::from_spki(&spki).map_err(SignError::Key)
    }

    /// Sign a SHA-256 digest; returns the CMS signatureAlgorithm and the signature bytes.
    fn sign_prehash(
        &self,
        digest: &[u8],
    ) -> Result<(AlgorithmIdentifierOwned, Vec<u8>), SignError> {
        use ecdsa::signature::hazmat::PrehashSigner;
        let failed = |e: &dyn std::fmt::Display| SignError::Signing(e.to_string());
        match self {
            SigningKey::Rsa(key) => {
                // Blinding (random) hides timing; PKCS#1 v1.5 output stays deterministic.
                let sig = key
                    .sign_with_rng(
                        &mut rsa::rand_core::OsRng,
                        rsa::Pkcs1v15Sign::new::<Sha256>(),
                        digest,
                    )
                    .map_err(|e| failed(&e))?;
                // Same as OpenSSL: rsaEncryption with NULL parameters.
                let alg = AlgorithmIdentifierOwned {
                    oid: oid::RSA_ENCRYPTION,
                    parameters: Some(der::asn1::Null.into()),
                };
                Ok((alg, sig))
            }
            SigningKey::P256(key) => {
                let sig: p256::ecdsa::Signature =
                    key.sign_prehash(digest).map_err(|e| failed(&e))?;
                let alg = AlgorithmIdentifierOwned {
                    oid: oid::ECDSA_WITH_SHA256,
                    parameters: None,
                };
                Ok((alg, sig.to_der().as_bytes().to_vec()))
            }
            SigningKey::P384(key) => {
                let sig: p384::ecdsa::Signature =
                    key.sign_prehash(digest).map_err(|e| failed(&e))?;
                let alg = AlgorithmIdentifierOwned {
                    oid: oid::ECDSA_WITH_SHA256,
                    parameters: None,
                };
                Ok((alg, sig.to_der().as_bytes().to_vec()))
            }
        }
    }
}
