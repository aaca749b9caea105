//! Object identifiers, digests and public-key signature checks shared by signing and verification.

use der::asn1::ObjectIdentifier as Oid;
use der::Decode;
use rsa::pkcs1v15::Pkcs1v15Sign;
use sha2::{Digest, Sha256, Sha384, Sha512};
use spki::SubjectPublicKeyInfoOwned;

pub(crate) mod oid {
    use der::asn1::ObjectIdentifier as Oid;
    pub const ID_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.1");
    pub const ID_SIGNED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.2");
    pub const ID_CONTENT_TYPE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.3");
    pub const ID_MESSAGE_DIGEST: Oid = Oid::new_unwrap("1.2.840.113549.1.9.4");
    pub const ID_SIGNING_TIME: Oid = Oid::new_unwrap("1.2.840.113549.1.9.5");
    pub const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
    pub const SHA256_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.11");
    pub const SHA384_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.12");
    pub const SHA512_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.13");
    pub const ID_EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
    pub const ECDSA_WITH_SHA256: Oid = Oid::new_unwrap("1.2.840.10045.4.3.2");
    pub const ECDSA_WITH_SHA384: Oid = Oid::new_unwrap("1.2.840.10045.4.3.3");
    pub const ECDSA_WITH_SHA512: Oid = Oid::new_unwrap("1.2.840.10045.4.3.4");
    pub const SECP256R1: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
    pub const SECP384R1: Oid = Oid::new_unwrap("1.3.132.0.34");
    pub const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
    pub const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
    pub const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");
    pub const COMMON_NAME: Oid = Oid::new_unwrap("2.5.4.3");
    pub const KEY_USAGE: Oid = Oid::new_unwrap("2.5.29.15");
    pub const BASIC_CONSTRAINTS: Oid = Oid::new_unwrap("2.5.29.19");
    pub const EXT_KEY_USAGE: Oid = Oid::new_unwrap("2.5.29.37");
    pub const SUBJECT_KEY_IDENTIFIER: Oid = Oid::new_unwrap("2.5.29.14");
    pub const KP_CODE_SIGNING: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.3");
    pub const KP_EMAIL_PROTECTION: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.4");
}

/// Readable name of an algorithm OID for messages and [`crate::SignerInfo`].
pub(crate) fn oid_name(o: &Oid) -> String {
    let name = match *o {
        oid::RSA_ENCRYPTION => "rsaEncryption",
        oid::SHA256_WITH_RSA => "sha256WithRSAEncryption",
        oid::SHA384_WITH_RSA => "sha384WithRSAEncryption",
        oid::SHA512_WITH_RSA => "sha512WithRSAEncryption",
        oid::ID_EC_PUBLIC_KEY => "id-ecPublicKey",
        oid::ECDSA_WITH_SHA256 => "ecdsa-with-SHA256",
        oid::ECDSA_WITH_SHA384 => "ecdsa-with-SHA384",
        oid::ECDSA_WITH_SHA512 => "ecdsa-with-SHA512",
        oid::SHA256 => "sha256",
        oid::SHA384 => "sha384",
        oid::SHA512 => "sha512",
        oid::SECP256R1 => "prime256v1",
        oid::SECP384R1 => "secp384r1",
        _ => return o.to_string(),
    };
    name.to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DigestAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlg {
    pub fn from_oid(o: &Oid) -> Option<DigestAlg> {
        match *o {
            oid::SHA256 => Some(DigestAlg::Sha256),
            oid::SHA384 => Some(DigestAlg::Sha384),
            oid::SHA512 => Some(DigestAlg::Sha512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DigestAlg::Sha256 => "sha256",
            DigestAlg::Sha384 => "sha384",
            DigestAlg::Sha512 => "sha512",
        }
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            DigestAlg::Sha256 => Sha256::digest(data).to_vec(),
            DigestAlg::Sha384 => Sha384::digest(data).to_vec(),
            DigestAlg::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn pkcs1v15(self) -> Pkcs1v15Sign {
        match self {
            DigestAlg::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
            DigestAlg::Sha384 => Pkcs1v15Sign::new::<Sha384>(),
            DigestAlg::Sha512 => Pkcs1v15Sign::new::<Sha512>(),
        }
    }
}

/// Key family a signature algorithm OID belongs to, and the digest it names (if it names one).
pub(crate) fn signature_family(o: &Oid) -> Option<(KeyFamily, Option<DigestAlg>)> {
    Some(match *o {
        oid::RSA_ENCRYPTION => (KeyFamily::Rsa, None),
        oid::SHA256_WITH_RSA => (KeyFamily::Rsa, Some(DigestAlg::Sha256)),
        oid::SHA384_WITH_RSA => (KeyFamily::Rsa, Some(DigestAlg::Sha384)),
        oid::SHA512_WITH_RSA => (KeyFamily::Rsa, Some(DigestAlg::Sha512)),
        oid::ID_EC_PUBLIC_KEY => (KeyFamily::Ec, None),
        oid::ECDSA_WITH_SHA256 => (KeyFamily::Ec, Some(DigestAlg::Sha256)),
        oid::ECDSA_WITH_SHA384 => (KeyFamily::Ec, Some(DigestAlg::Sha384)),
        oid::ECDSA_WITH_SHA512 => (KeyFamily::Ec, Some(DigestAlg::Sha512)),
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyFamily {
    Rsa,
    Ec,
}

/// Largest RSA modulus accepted (bits): bounds the cost of one verification on untrusted input.
const MAX_RSA_BITS: usize = 8192;
/// Smallest RSA modulus accepted (bits): 1024-bit RSA is factorable by well-funded attackers (NIST SP 800-131A).
/// Stricter than OpenSSL's CMS verification, which has no minimum by default.
pub(crate) const MIN_RSA_BITS: usize = 2048;

/// A public key from a certificate.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum PublicKey {
    Rsa(rsa::RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

impl PublicKey {
    pub fn from_spki(spki: &SubjectPublicKeyInfoOwned) -> Result<PublicKey, String> {
        let key_bytes = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| "public key BIT STRING has unused bits".to_string())?;
        match spki.algorithm.oid {
            oid::RSA_ENCRYPTION => {
                let pk = rsa::pkcs1::RsaPublicKey::from_der(key_bytes)
                    .map_err(|e| format!("RSA public key: {e}"))?;
                let n = rsa::BigUint::from_bytes_be(pk.modulus.as_bytes());
                let e = rsa::BigUint::from_bytes_be(pk.public_exponent.as_bytes());
                if n.bits() < MIN_RSA_BITS {
                    return Err(format!(
                        "RSA key of {} bits is too small (at least {MIN_RSA_BITS} bits required)",
                        n.bits()
                    ));
                }
                rsa::RsaPublicKey::new_with_max_size(n, e, MAX_RSA_BITS)
                    .map(PublicKey::Rsa)
                    .map_err(|e| format!("RSA public key: {e}"))
            }
            oid::ID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .ok_or_else(|| "EC public key without curve parameters".to_string())?
                    .decode_as::<Oid>()
                    .map_err(|e| format!("EC public key curve is not a named curve: {e}"))?;
                match curve {
                    oid::SECP256R1 => p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                        .map(PublicKey::P256)
                        .map_err(|_| "P-256 public key point is invalid".to_string()),
                    oid::SECP384R1 => p384::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                        .map(PublicKey::P384)
                        .map_err(|_| "P-384 public key point is invalid".to_string()),
                    other => Err(format!("unsupported EC curve {}", oid_name(&other))),
                }
            }
            other => Err(format!(
                "unsupported public key algorithm {}",
                oid_name(&other)
            )),
        }
    }

    pub fn family(&self) -> KeyFamily {
        match self {
            PublicKey::Rsa(_) => KeyFamily::Rsa,
            PublicKey::P256(_) | PublicKey::P384(_) => KeyFamily::Ec,
        }
    }

    /// Check `signature` over a message whose `digest_alg` hash is `digest`.
    /// RSA: PKCS#1 v1.5. ECDSA: DER-encoded (r, s), as CMS and X.509 carry it.
    pub fn verify_prehash(&self, digest_alg: DigestAlg, digest: &[u8], signature: &[u8]) -> bool {
        use ecdsa::signature::hazmat::PrehashVerifier;
        match self {
            PublicKey::Rsa(key) => key.verify(digest_alg.pkcs1v15(), digest, signature).is_ok(),
            PublicKey::P256(key) => match p256::ecdsa::Signature::from_der(signature) {
                Ok(sig) => key.verify_prehash(digest, &sig).is_ok(),
                Err(_) => false,
            },
            PublicKey::P384(key) => match p384::ecdsa::Signature::from_der(signature) {
                Ok(sig) => key.verify_prehash(digest, &sig).is_ok(),
                Err(_) => false,
            },
        }
    }
}
