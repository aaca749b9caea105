//! Public keys in the securesystemslib JSON format and signature verification.
//!
//! Supported (keytype / scheme):
//! * `ed25519` / `ed25519`: `keyval.public` is the hex of the 32-byte key, signatures are hex of 64 bytes.
//! * `ecdsa` or `ecdsa-sha2-nistp256` / `ecdsa-sha2-nistp256`: `keyval.public` is a PEM SubjectPublicKeyInfo,
//!   signatures are hex of a DER `ECDSA-Sig-Value` over SHA-256.
//! * `rsa` / `rsassa-pss-sha256`: PEM SubjectPublicKeyInfo, RSASSA-PSS with SHA-256 and MGF1-SHA-256.
//!
//! A key of any other type still parses (python-tuf does the same), so one unknown key in a root does not make
//! the whole root unusable; it simply never verifies a signature.

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A public key as listed in root or in a targets role's delegations.
#[derive(Clone)]
pub struct PublicKey {
    /// `keytype` as written in the metadata.
    pub keytype: String,
    /// `scheme` as written in the metadata.
    pub scheme: String,
    material: KeyMaterial,
}

#[derive(Clone)]
enum KeyMaterial {
    Ed25519(ed25519_dalek::VerifyingKey),
    EcdsaP256(p256::ecdsa::VerifyingKey),
    RsaPss(rsa::RsaPublicKey),
    /// Unknown type or scheme, or key material that does not decode; the reason is kept for diagnostics.
    Unusable(String),
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.material {
            KeyMaterial::Unusable(reason) => reason.as_str(),
            _ => "usable",
        };
        write!(f, "PublicKey({}/{}: {state})", self.keytype, self.scheme)
    }
}

impl PublicKey {
    /// Reads a key from its JSON object (`{"keytype", "scheme", "keyval": {"public"}}`).
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let field = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("key has no string {name:?}"))
        };
        let keytype = field("keytype")?;
        let scheme = field("scheme")?;
        let public = value
            .get("keyval")
            .and_then(|keyval| keyval.get("public"))
            .and_then(Value::as_str)
            .ok_or("key has no string keyval.public")?;
        let material = match decode_material(&keytype, &scheme, public) {
            Ok(material) => material,
            Err(reason) => KeyMaterial::Unusable(reason),
        };
        Ok(PublicKey {
            keytype,
            scheme,
            material,
        })
    }

    /// True when this key can verify signatures (known type and scheme, valid key material).
    pub fn is_usable(&self) -> bool {
        !matches!(self.material, KeyMaterial::Unusable(_))
    }

    /// Verifies a hex-encoded signature over `message`. Any malformed input simply does not verify.
    pub fn verify(&self, signature_hex: &str, message: &[u8]) -> bool {
        let Ok(signature) = hex::decode(signature_hex) else {
            return false;
        };
        match &self.material {
            KeyMaterial::Ed25519(key) => match ed25519_dalek::Signature::from_slice(&signature) {
                Ok(sig) => key.verify_strict(message, &sig).is_ok(),
                Err(_) => false,
            },
            KeyMaterial::EcdsaP256(key) => {
                use p256::ecdsa::signature::Verifier;
                match p256::ecdsa::DerSignature::from_bytes(&signature) {
                    Ok(sig) => key.verify(message, &sig).is_ok(),
                    Err(_) => false,
                }
            }
            KeyMaterial::RsaPss(key) => verify_rsa_pss(key, &signature, message),
            KeyMaterial::Unusable(_) => false,
        }
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        PublicKey::from_value(&value).map_err(serde::de::Error::custom)
    }
}

fn decode_material(keytype: &str, scheme: &str, public: &str) -> Result<KeyMaterial, String> {
    match (keytype, scheme) {
        ("ed25519", "ed25519") => {
            let bytes = hex::decode(public).map_err(|e| format!("ed25519 key is not hex: {e}"))?;
            let array: [u8; 32] = bytes
                .try_into()
                .map_err(|_| "ed25519 key is not 32 bytes".to_string())?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&array)
                .map_err(|e| format!("bad ed25519 key: {e}"))?;
            Ok(KeyMaterial::Ed25519(key))
        }
        ("ecdsa" | "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256") => {
            use p256::pkcs8::DecodePublicKey;
            let key = p256::ecdsa::VerifyingKey::from_public_key_pem(public)
                .map_err(|e| format!("bad ecdsa P-256 public key PEM: {e}"))?;
            Ok(KeyMaterial::EcdsaP256(key))
        }
        ("rsa", "rsassa-pss-sha256") => {
            use rsa::pkcs8::DecodePublicKey;
            let key = rsa::RsaPublicKey::from_public_key_pem(public)
                .map_err(|e| format!("bad RSA public key PEM: {e}"))?;
            Ok(KeyMaterial::RsaPss(key))
        }
        _ => Err(format!(
            "unsupported key type {keytype:?} with scheme {scheme:?}"
        )),
    }
}

/// securesystemslib signs with a salt as long as the digest and verifies with automatic salt length; older
/// signers used the maximum salt length. Both are accepted.
fn verify_rsa_pss(key: &rsa::RsaPublicKey, signature: &[u8], message: &[u8]) -> bool {
    use rsa::traits::PublicKeyParts;
    let digest = Sha256::digest(message);
    let modulus_bits = key.n().bits();
    let em_len = modulus_bits.saturating_sub(1).div_ceil(8);
    let max_salt = em_len.saturating_sub(32 + 2);
    let mut salt_lengths = vec![32usize];
    if max_salt != 32 && max_salt > 0 {
        salt_lengths.push(max_salt);
    }
    salt_lengths.into_iter().any(|salt_len| {
        let scheme = rsa::Pss::new_with_salt::<Sha256>(salt_len);
        key.verify(scheme, &digest, signature).is_ok()
    })
}

/// The key ID TUF specifies: hex SHA-256 of the canonical JSON of the key object. Key IDs in metadata are
/// labels (TAP 12) and are never recomputed by the verifier; repositories use this to name new keys.
pub fn key_id(key_value: &Value) -> Result<String, crate::canonical::CanonicalError> {
    Ok(hex::encode(Sha256::digest(crate::canonical::encode(
        key_value,
    )?)))
}
