//! Test PKI made with the real `openssl` command line in a temp dir (throwaway keys and certificates).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Run `openssl` with `args` in `dir`; panics (test failure) if openssl is missing or fails.
pub fn openssl(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run `openssl`, return whether it succeeded and its stderr.
pub fn openssl_status(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (apt-get install openssl)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Too small: only for rejection tests.
    Rsa1024,
    Rsa2048,
    Rsa3072,
    P256,
    P384,
}

impl KeyKind {
    pub const ALL: [KeyKind; 4] = [
        KeyKind::Rsa2048,
        KeyKind::Rsa3072,
        KeyKind::P256,
        KeyKind::P384,
    ];

    fn genpkey_args(self) -> Vec<&'static str> {
        match self {
            KeyKind::Rsa1024 => vec!["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
            KeyKind::Rsa2048 => vec!["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            KeyKind::Rsa3072 => vec!["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
            KeyKind::P256 => vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            KeyKind::P384 => vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        }
    }

    pub fn is_rsa(self) -> bool {
        matches!(self, KeyKind::Rsa1024 | KeyKind::Rsa2048 | KeyKind::Rsa3072)
    }
}

/// Extension sets used by the tests.
pub const EXT_SIGNER: &str =
    "keyUsage = critical, digitalSignature\nextendedKeyUsage = emailProtection\n\
     subjectKeyIdentifier = hash\n";
pub const EXT_SIGNER_CODESIGN: &str =
    "keyUsage = critical, digitalSignature\nextendedKeyUsage = codeSigning\n\
     subjectKeyIdentifier = hash\n";
pub const EXT_SIGNER_NO_DIGSIG: &str =
    "keyUsage = critical, keyEncipherment\nextendedKeyUsage = emailProtection\n";
pub const EXT_CA: &str =
    "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
     subjectKeyIdentifier = hash\n";
pub const EXT_NOT_CA: &str =
    "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n";

/// A key and certificate on disk.
#[derive(Debug, Clone)]
pub struct Identity {
    pub key: PathBuf,
    pub cert: PathBuf,
    pub subject: String,
}

impl Identity {
    pub fn key_pem(&self) -> Vec<u8> {
        std::fs::read(&self.key).unwrap()
    }
    pub fn cert_pem(&self) -> Vec<u8> {
        std::fs::read(&self.cert).unwrap()
    }
}

pub struct Pki {
    pub dir: tempfile::TempDir,
    serial: std::cell::Cell<u32>,
}

impl Pki {
    pub fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().unwrap(),
            serial: std::cell::Cell::new(1000),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self, name: &str, ext: &str) -> String {
        let file = format!("{name}.cnf");
        std::fs::write(
            self.path(&file),
            format!("[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n[ext]\n{ext}"),
        )
        .unwrap();
        file
    }

    pub fn key(&self, name: &str, kind: KeyKind) -> PathBuf {
        let file = format!("{name}.key");
        let mut args = vec!["genpkey"];
        args.extend(kind.genpkey_args());
        args.extend(["-out", &file]);
        openssl(self.dir.path(), &args);
        self.path(&file)
    }

    /// Self-signed certificate with exactly the extensions `ext`.
    pub fn self_signed(&self, name: &str, kind: KeyKind, ext: &str, days: u32) -> Identity {
        let key = self.key(name, kind);
        let cnf = self.config(name, ext);
        let cert = format!("{name}.pem");
        let subject = format!("/CN={name}/O=keel test");
        let days = days.to_string();
        openssl(
            self.dir.path(),
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &subject,
                "-days",
                &days,
                "-config",
                &cnf,
                "-extensions",
                "ext",
                "-sha256",
                "-out",
                &cert,
            ],
        );
        Identity {
            key,
            cert: self.path(&cert),
            subject: format!("CN={name},O=keel test"),
        }
    }

    /// Certificate for a new `kind` key, issued by `issuer` with extensions `ext`.
    pub fn issue(
        &self,
        name: &str,
        kind: KeyKind,
        issuer: &Identity,
        ext: &str,
        days: u32,
    ) -> Identity {
        let key = self.key(name, kind);
        let cnf = self.config(name, ext);
        let csr = format!("{name}.csr");
        let cert = format!("{name}.pem");
        let subject = format!("/CN={name}/O=keel test");
        openssl(
            self.dir.path(),
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &subject,
                "-config",
                &cnf,
                "-out",
                &csr,
            ],
        );
        let serial = self.serial.get() + 1;
        self.serial.set(serial);
        let serial = serial.to_string();
        let days = days.to_string();
        let ca_cert = issuer.cert.to_str().unwrap();
        let ca_key = issuer.key.to_str().unwrap();
        openssl(
            self.dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                ca_cert,
                "-CAkey",
                ca_key,
                "-set_serial",
                &serial,
                "-days",
                &days,
                "-extfile",
                &cnf,
                "-extensions",
                "ext",
                "-sha256",
                "-out",
                &cert,
            ],
        );
        Identity {
            key,
            cert: self.path(&cert),
            subject: format!("CN={name},O=keel test"),
        }
    }

    pub fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    /// `openssl cms -verify` of a detached DER signature, as SWUpdate calls it (CMS_BINARY, purpose).
    pub fn openssl_verify(
        &self,
        content: &Path,
        sig: &Path,
        ca_file: &Path,
        purpose: &str,
    ) -> (bool, String) {
        openssl_status(
            self.dir.path(),
            &[
                "cms",
                "-verify",
                "-binary",
                "-inform",
                "DER",
                "-in",
                sig.to_str().unwrap(),
                "-content",
                content.to_str().unwrap(),
                "-CAfile",
                ca_file.to_str().unwrap(),
                "-purpose",
                purpose,
                "-out",
                "/dev/null",
            ],
        )
    }
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
