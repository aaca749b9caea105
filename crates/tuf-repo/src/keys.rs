//! Signing keys (ed25519, ECDSA P-256) stored as PKCS#8 PEM, and their public form in the securesystemslib
//! JSON key format.

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use serde_json::{json, Value};

use crate::RepoError;

/// A private key that signs metadata.
#[derive(Clone)]
pub enum SigningKey {
    /// keytype/scheme `ed25519`.
    Ed25519(ed25519_dalek::SigningKey),
    /// keytype `ecdsa`, scheme `ecdsa-sha2-nistp256`.
    EcdsaP256(p256::ecdsa::SigningKey),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public().key_id())
    }
}

/// A public key in the securesystemslib JSON format together with its key ID.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicKeyJson {
    /// `{"keytype", "scheme", "keyval": {"public"}}`.
    pub value: Value,
    keyid: String,
}

impl PublicKeyJson {
    /// Wraps a key object; its ID is the SHA-256 of its canonical JSON.
    pub fn new(value: Value) -> Result<Self, RepoError> {
        keel_tuf::keys::PublicKey::from_value(&value).map_err(RepoError::Key)?;
        let keyid = keel_tuf::keys::key_id(&value).map_err(|e| RepoError::Key(e.to_string()))?;
        Ok(PublicKeyJson { value, keyid })
    }

    /// Wraps a key object listed under the key ID `keyid` (IDs are labels: TAP 12).
    pub fn with_key_id(value: Value, keyid: &str) -> Result<Self, RepoError> {
        keel_tuf::keys::PublicKey::from_value(&value).map_err(RepoError::Key)?;
        Ok(PublicKeyJson {
            value,
            keyid: keyid.to_string(),
        })
    }

    /// The key ID.
    pub fn key_id(&self) -> &str {
        &self.keyid
    }

    /// Reads a public key from PEM: an ed25519 or P-256 SubjectPublicKeyInfo, or a private key (PKCS#8) whose
    /// public half is taken.
    pub fn from_pem(text: &str) -> Result<Self, RepoError> {
        if text.contains("PRIVATE KEY") {
            return Ok(SigningKey::from_pkcs8_pem(text)?.public());
        }
        if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_pem(text) {
            return Ok(ed25519_public(&key));
        }
        if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_pem(text) {
            return ecdsa_public(&key);
        }
        Err(RepoError::Key(
            "not an ed25519 or P-256 public key (SubjectPublicKeyInfo PEM)".into(),
        ))
    }
}

fn ed25519_public(key: &ed25519_dalek::VerifyingKey) -> PublicKeyJson {
    let value = json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": hex::encode(key.as_bytes())}});
    PublicKeyJson::new(value).expect("ed25519 key JSON is well formed")
}

fn ecdsa_public(key: &p256::ecdsa::VerifyingKey) -> Result<PublicKeyJson, RepoError> {
    let pem = key
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .map_err(|e| RepoError::Key(e.to_string()))?;
    let value =
        json!({"keytype": "ecdsa", "scheme": "ecdsa-sha2-nistp256", "keyval": {"public": pem}});
    PublicKeyJson::new(value)
}

impl SigningKey {
    /// A new random ed25519 key.
    pub fn generate_ed25519() -> Self {
        SigningKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng))
    }

    /// An ed25519 key from a fixed 32-byte seed (test vectors; ed25519 signatures are deterministic).
    pub fn ed25519_from_seed(seed: [u8; 32]) -> Self {
        SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// A new random ECDSA P-256 key.
    pub fn generate_ecdsa_p256() -> Self {
        SigningKey::EcdsaP256(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng))
    }

    /// Reads a PKCS#8 PEM private key (`openssl genpkey -algorithm ed25519` or `-algorithm EC` with P-256).
    pub fn from_pkcs8_pem(text: &str) -> Result<Self, RepoError> {
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(text) {
            return Ok(SigningKey::Ed25519(key));
        }
        if let Ok(key) = p256::ecdsa::SigningKey::from_pkcs8_pem(text) {
            return Ok(SigningKey::EcdsaP256(key));
        }
        Err(RepoError::Key(
            "not an ed25519 or P-256 PKCS#8 PEM private key".into(),
        ))
    }

    /// The PKCS#8 PEM of this key.
    pub fn to_pkcs8_pem(&self) -> Result<String, RepoError> {
        let pem = match self {
            SigningKey::Ed25519(key) => key.to_pkcs8_pem(p256::pkcs8::LineEnding::LF),
            SigningKey::EcdsaP256(key) => key.to_pkcs8_pem(p256::pkcs8::LineEnding::LF),
        };
        pem.map(|secret| secret.to_string())
            .map_err(|e| RepoError::Key(e.to_string()))
    }

    /// The SubjectPublicKeyInfo PEM of the public half.
    pub fn public_pem(&self) -> Result<String, RepoError> {
        let pem = match self {
            SigningKey::Ed25519(key) => key
                .verifying_key()
                .to_public_key_pem(p256::pkcs8::LineEnding::LF),
            SigningKey::EcdsaP256(key) => key
                .verifying_key()
                .to_public_key_pem(p256::pkcs8::LineEnding::LF),
        };
        pem.map_err(|e| RepoError::Key(e.to_string()))
    }

    /// The public key in JSON form.
    pub fn public(&self) -> PublicKeyJson {
        match self {
            SigningKey::Ed25519(key) => ed25519_public(&key.verifying_key()),
            SigningKey::EcdsaP256(key) => {
                ecdsa_public(key.verifying_key()).expect("P-256 public key encodes as PEM")
            }
        }
    }

    /// The key ID.
    pub fn key_id(&self) -> String {
        self.public().key_id().to_string()
    }

    /// Signs `message`; returns the hex signature (ECDSA: DER).
    pub fn sign_hex(&self, message: &[u8]) -> String {
        use ed25519_dalek::Signer;
        match self {
            SigningKey::Ed25519(key) => hex::encode(key.sign(message).to_bytes()),
            SigningKey::EcdsaP256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                hex::encode(signature.to_der().as_bytes())
            }
        }
    }
}
