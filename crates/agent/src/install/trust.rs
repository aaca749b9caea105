//! Step 1 of an install: the description and its signature, checked before anything is
//! written; and the AES key of encrypted images.

use std::io::Read;

use keel_formats::swdesc::SwDescription;
use keel_formats::swu::SwuReader;
use keel_sign::aes::AesKey;
use keel_sign::{SignerInfo, Verifier};

use super::error::{InstallError, KeyError, TrustError};
use crate::agent::Agent;

impl Agent {
    /// Read `sw-description` and its signature from the start of the bundle and verify them.
    pub(super) fn verified_description<R: Read>(
        &self,
        swu: &mut SwuReader<R>,
    ) -> Result<(SwDescription, SignerInfo), InstallError> {
        self.verified_description_bytes(swu)
            .map(|(desc, signer, _)| (desc, signer))
    }

    /// As `verified_description`, also returning the signed sw-description's bytes (the
    /// identity of a release: `media` never installs the same one twice).
    pub(crate) fn verified_description_bytes<R: Read>(
        &self,
        swu: &mut SwuReader<R>,
    ) -> Result<(SwDescription, SignerInfo, Vec<u8>), InstallError> {
        let members = swu.read_description()?;
        let signature = members.signature.as_deref().ok_or(InstallError::Unsigned)?;
        let signer = self
            .verifier()?
            .verify_detached(&members.description, signature)
            .map_err(InstallError::Signature)?;
        let desc = SwDescription::parse(&members.description)?;
        Ok((desc, signer, members.description))
    }

    fn verifier(&self) -> Result<Verifier, InstallError> {
        let path = &self.config.trusted_certs;
        let trust = |source| InstallError::Trust {
            path: path.display().to_string(),
            source,
        };
        let pem = std::fs::read(path).map_err(|e| trust(TrustError::Read(e)))?;
        Verifier::from_pem(&pem).map_err(|e| trust(TrustError::Pem(e)))
    }

    pub(super) fn aes_key(&self) -> Result<AesKey, KeyError> {
        let path = self
            .config
            .aes_key
            .as_ref()
            .ok_or(KeyError::NotConfigured)?;
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        AesKey::parse_keyfile(&text).map_err(|source| KeyError::Parse {
            path: path.display().to_string(),
            source,
        })
    }
}
