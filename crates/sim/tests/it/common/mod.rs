//! Test fixtures: a signing PKI made with openssl, an AES key, bundles made with keel-bundle,
//! and simulated devices.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use keel_agent::config::Detect;
use keel_sim::{DeviceSpec, Loader, SimDevice};

pub const ROOTFS_SIZE: u64 = 256 * 1024;
pub const KERNEL_SIZE: u64 = 64 * 1024;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
    pub aes_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (scripts/setup-debian.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = format!("{name}.key.pem");
    let cert = format!("{name}.cert.pem");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "3650",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-addext",
            "extendedKeyUsage=emailProtection",
            "-addext",
            "keyUsage=digitalSignature",
        ],
    );
    (dir.join(cert), dir.join(key))
}

/// Deterministic pseudo-random bytes (an "image").
pub fn image(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
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
        let (cert, key) = make_cert(dir.path(), "keel-release");
        let (rogue_cert, rogue_key) = make_cert(dir.path(), "rogue");
        let aes_key = dir.path().join("aes.key");
        std::fs::write(
            &aes_key,
            "6f7c1d2e3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f 00112233445566778899aabbccddeeff\n",
        )
        .unwrap();
        Fixture {
            dir,
            cert,
            key,
            rogue_cert,
            rogue_key,
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
            trusted_certs: self.cert.clone(),
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
        let work = tempfile::tempdir_in(self.dir.path()).unwrap();
        let mut manifest = format!("[software]\nversion = \"{version}\"\n{extra}\n");
        for img in images {
            std::fs::write(work.path().join(img.name), img.data).unwrap();
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
        let spec = keel_bundle::BundleSpec::from_manifest_str(&manifest, work.path()).unwrap();
        let (cert, key) = if rogue {
            (&self.rogue_cert, &self.rogue_key)
        } else {
            (&self.cert, &self.key)
        };
        let signer = keel_sign::Signer::from_pem(
            &std::fs::read(cert).unwrap(),
            &std::fs::read(key).unwrap(),
        )
        .unwrap();
        let aes =
            keel_sign::aes::AesKey::parse_keyfile(&std::fs::read_to_string(&self.aes_key).unwrap())
                .unwrap();
        let options = keel_bundle::CreateOptions {
            signer: Some(signer),
            aes_key: Some(aes),
            source_date_epoch: Some(1_700_000_000),
        };
        let mut out = Vec::new();
        keel_bundle::create(&spec, &options, &mut out).unwrap();
        out
    }

    /// A signed bundle from raw manifest text (entries written by the caller) and member files.
    pub fn bundle_manifest(&self, manifest: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
        let work = tempfile::tempdir_in(self.dir.path()).unwrap();
        for (name, data) in files {
            std::fs::write(work.path().join(name), data).unwrap();
        }
        let spec = keel_bundle::BundleSpec::from_manifest_str(manifest, work.path()).unwrap();
        let signer = keel_sign::Signer::from_pem(
            &std::fs::read(&self.cert).unwrap(),
            &std::fs::read(&self.key).unwrap(),
        )
        .unwrap();
        let options = keel_bundle::CreateOptions {
            signer: Some(signer),
            aes_key: None,
            source_date_epoch: None,
        };
        let mut out = Vec::new();
        keel_bundle::create(&spec, &options, &mut out).unwrap();
        out
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
