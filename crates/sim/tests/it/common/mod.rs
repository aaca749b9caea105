//! Test fixtures: a release signer and a rogue one, an AES key, bundles (keel-testkit), and
//! simulated devices.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use keel_agent::config::Detect;
use keel_sim::{DeviceSpec, Loader, SimDevice};
use keel_testkit::bundle::{signed_bundle, BundleBuilder};
pub use keel_testkit::data::image;
use keel_testkit::pki::{Identity, Pki};

pub const ROOTFS_SIZE: u64 = 256 * 1024;
pub const KERNEL_SIZE: u64 = 64 * 1024;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    /// The release signer the devices trust.
    pub signer: Identity,
    /// A well-formed signer the devices do not trust.
    pub rogue: Identity,
    pub aes_key: PathBuf,
}

/// One image of a bundle.
pub struct Img<'a> {
    pub name: &'a str,
    pub device: &'a str,
    pub data: &'a [u8],
    pub encrypted: bool,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::in_dir(dir.path());
        let signer = pki.signer("keel-release");
        let rogue = pki.signer("rogue");
        let aes_key = dir.path().join("aes.key");
        std::fs::write(
            &aes_key,
            "6f7c1d2e3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f 00112233445566778899aabbccddeeff\n",
        )
        .unwrap();
        Fixture {
            dir,
            signer,
            rogue,
            aes_key,
        }
    }

    pub fn spec(&self, loader: Loader) -> DeviceSpec {
        let mut factory = BTreeMap::new();
        factory.insert("rootfs".to_string(), image(1, ROOTFS_SIZE as usize));
        factory.insert("kernel".to_string(), image(2, 40_000));
        DeviceSpec {
            loader,
            targets: vec![
                ("rootfs".into(), ROOTFS_SIZE),
                ("kernel".into(), KERNEL_SIZE),
            ],
            factory,
            trusted_certs: self.signer.cert.clone(),
            aes_key: Some(self.aes_key.clone()),
            hardware_revision: None,
            detect: Detect::Auto,
        }
    }

    pub fn device(&self, loader: Loader) -> SimDevice {
        let device = SimDevice::new(self.spec(loader)).unwrap();
        if loader == Loader::Grub {
            // RAUC's grub.cfg puts the booted slot on trial (`A_TRY=1`) at every boot and the
            // system marks it good: an install is refused while it is on trial.
            device.agent().unwrap().confirm(None).unwrap();
        }
        device
    }

    /// A signed bundle made by keel-bundle from a TOML manifest.
    pub fn bundle_with(
        &self,
        version: &str,
        images: &[Img<'_>],
        extra: &str,
        rogue: bool,
    ) -> Vec<u8> {
        let mut manifest = format!("[software]\nversion = \"{version}\"\n{extra}\n");
        for img in images {
            manifest.push_str(&format!(
                "[[software.images]]\nfilename = \"{}\"\ndevice = \"{}\"\ntype = \"raw\"\n{}\n",
                img.name,
                img.device,
                if img.encrypted {
                    "encrypted = true\n"
                } else {
                    ""
                }
            ));
        }
        let aes =
            keel_sign::aes::AesKey::parse_keyfile(&std::fs::read_to_string(&self.aes_key).unwrap())
                .unwrap();
        let files: Vec<(&str, &[u8])> = images.iter().map(|img| (img.name, img.data)).collect();
        BundleBuilder::new(&manifest)
            .files(&files)
            .aes_key(aes)
            .source_date_epoch(1_700_000_000)
            .sign(if rogue { &self.rogue } else { &self.signer })
    }

    /// A signed bundle from raw manifest text (entries written by the caller) and member files.
    pub fn bundle_manifest(&self, manifest: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
        signed_bundle(&self.signer, manifest, files)
    }

    /// The standard update: new rootfs and kernel for slot targets.
    pub fn update(&self, version: &str, seed: u64, encrypted: bool) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let rootfs = image(seed, ROOTFS_SIZE as usize - 4096);
        let kernel = image(seed + 1000, 50_000);
        let bundle = self.bundle_with(
            version,
            &[
                Img {
                    name: "rootfs.img",
                    device: "rootfs",
                    data: &rootfs,
                    encrypted,
                },
                Img {
                    name: "linux.efi",
                    device: "kernel",
                    data: &kernel,
                    encrypted,
                },
            ],
            "",
            false,
        );
        (bundle, rootfs, kernel)
    }
}

/// True if `slot` holds exactly `data` at its start.
pub fn starts_with(contents: &[u8], data: &[u8]) -> bool {
    contents.len() >= data.len() && &contents[..data.len()] == data
}
