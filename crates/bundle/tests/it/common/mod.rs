//! Helpers shared by the bundle integration tests: certificates from the real `openssl` (keel-testkit),
//! bundles built through the library, and byte surgery on cpio archives.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use keel_bundle::{BundleSpec, CreateOptions};
use keel_sign::aes::AesKey;
pub use keel_testkit::pki::{Identity, KeyKind, Pki, EXT_CA, EXT_SIGNER};

pub use keel_testkit::cmd::{run, run_ok};

/// A self-signed release signer (keyUsage digitalSignature, extendedKeyUsage emailProtection:
/// what `swupdate -k` accepts by default) for `/CN=name` in `dir`, made by openssl.
pub fn test_cert(dir: &Path, name: &str, kind: KeyKind) -> Identity {
    Pki::in_dir(dir).cert(name).key_kind(kind).self_signed()
}

/// Deterministic pseudo-random bytes (keel-testkit's test image generator).
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    keel_testkit::data::image(u64::from(seed), len)
}

/// A fixed AES key file (`swupdate -K` format) written to `dir`.
pub fn aes_keyfile(dir: &Path) -> (PathBuf, AesKey) {
    let key = AesKey {
        key: *b"0123456789abcdef0123456789ABCDEF",
        iv: *b"fedcba9876543210",
    };
    let path = dir.join("aes.key");
    std::fs::write(&path, key.to_keyfile()).unwrap();
    (path, key)
}

/// Builds a bundle from manifest text (written into `dir/keel.toml`).
pub fn build(dir: &Path, manifest: &str, options: &CreateOptions) -> Vec<u8> {
    let path = dir.join("keel.toml");
    std::fs::write(&path, manifest).unwrap();
    let spec = BundleSpec::from_manifest(&path).unwrap();
    let mut out = Vec::new();
    keel_bundle::create(&spec, options, &mut out).unwrap();
    out
}

/// Offset of a member's data and its header, found by parsing the archive.
pub struct MemberLoc {
    pub header: usize,
    pub data: usize,
    pub size: usize,
}

pub fn locate(bundle: &[u8], name: &str) -> MemberLoc {
    let mut pos = 0usize;
    loop {
        let hdr = &bundle[pos..pos + 110];
        let field = |i: usize| {
            usize::from_str_radix(
                std::str::from_utf8(&hdr[6 + i * 8..14 + i * 8]).unwrap(),
                16,
            )
            .unwrap()
        };
        let size = field(6);
        let namesize = field(11);
        let n = std::str::from_utf8(&bundle[pos + 110..pos + 110 + namesize - 1]).unwrap();
        let data = (pos + 110 + namesize + 3) & !3;
        if n == name {
            return MemberLoc {
                header: pos,
                data,
                size,
            };
        }
        assert_ne!(n, "TRAILER!!!", "member {name} not found");
        pos = (data + size + 3) & !3;
    }
}

/// Rewrites the 070702 checksum field of the member at `loc` to match its (modified) data, the
/// way an attacker who changes a member would.
pub fn fix_checksum(bundle: &mut [u8], loc: &MemberLoc) {
    let sum = bundle[loc.data..loc.data + loc.size]
        .iter()
        .fold(0u32, |a, &b| a.wrapping_add(u32::from(b)));
    let text = format!("{sum:08X}");
    bundle[loc.header + 102..loc.header + 110].copy_from_slice(text.as_bytes());
}

/// A CA (EC P-256) and a leaf signer (RSA) it issued, made by openssl.
pub struct TestChain {
    pub ca: PathBuf,
    pub leaf: Identity,
}

impl TestChain {
    pub fn new(dir: &Path) -> TestChain {
        let pki = Pki::in_dir(dir);
        let ca = pki
            .cert("ca")
            .subject("/CN=keel test CA")
            .ext(EXT_CA)
            .self_signed();
        let leaf = pki
            .cert("leaf")
            .key_kind(KeyKind::Rsa2048)
            .subject("/CN=release signer")
            .ext(&format!("{EXT_SIGNER}basicConstraints = CA:FALSE\n"))
            .days(365)
            .issued_by(&ca);
        TestChain { ca: ca.cert, leaf }
    }
}
