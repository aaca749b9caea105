//! Signed `.swu` bundles made with keel-bundle from a TOML manifest and in-memory member files.

use keel_sign::aes::AesKey;

use crate::pki::Identity;

/// A bundle to build: manifest text, the files its entries name, and the create options.
pub struct BundleBuilder<'a> {
    manifest: String,
    files: Vec<(&'a str, &'a [u8])>,
    aes_key: Option<AesKey>,
    source_date_epoch: Option<u64>,
}

impl<'a> BundleBuilder<'a> {
    /// A bundle from the keel-bundle TOML `manifest`; no encryption, no SOURCE_DATE_EPOCH.
    pub fn new(manifest: &str) -> Self {
        BundleBuilder {
            manifest: manifest.to_string(),
            files: Vec::new(),
            aes_key: None,
            source_date_epoch: None,
        }
    }

    /// A member file the manifest names (written next to the manifest before building).
    pub fn file(mut self, name: &'a str, data: &'a [u8]) -> Self {
        self.files.push((name, data));
        self
    }

    /// Several member files.
    pub fn files(mut self, files: &[(&'a str, &'a [u8])]) -> Self {
        self.files.extend_from_slice(files);
        self
    }

    /// Encrypts the entries marked `encrypted = true` with `key`.
    pub fn aes_key(mut self, key: AesKey) -> Self {
        self.aes_key = Some(key);
        self
    }

    /// SOURCE_DATE_EPOCH (reproducible mtimes and CMS signingTime).
    pub fn source_date_epoch(mut self, epoch: u64) -> Self {
        self.source_date_epoch = Some(epoch);
        self
    }

    /// The bundle, signed by `signer`.
    pub fn sign(self, signer: &Identity) -> Vec<u8> {
        let work = tempfile::tempdir().unwrap();
        for (name, data) in &self.files {
            let path = work.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(path, data).unwrap();
        }
        let spec = keel_bundle::BundleSpec::from_manifest_str(&self.manifest, work.path()).unwrap();
        let options = keel_bundle::CreateOptions {
            signer: Some(signer.signer()),
            aes_key: self.aes_key,
            source_date_epoch: self.source_date_epoch,
        };
        let mut out = Vec::new();
        keel_bundle::create(&spec, &options, &mut out).unwrap();
        out
    }
}

/// A signed bundle of `manifest` and `files`, without encryption or SOURCE_DATE_EPOCH.
pub fn signed_bundle(signer: &Identity, manifest: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    BundleBuilder::new(manifest).files(files).sign(signer)
}
