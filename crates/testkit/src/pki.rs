//! Signing identities made with the real `openssl`: keys, self-signed or CA-issued certificates
//! with exactly the extensions a test asks for. [`EXT_SIGNER`] is what keel-sign and SWUpdate
//! require of a release signer (keyUsage digitalSignature, extendedKeyUsage emailProtection).
//!
//! ```no_run
//! use keel_testkit::pki::{KeyKind, Pki, EXT_CA};
//! let pki = Pki::new();
//! let signer = pki.signer("release"); // P-256, self-signed, EXT_SIGNER
//! let ca = pki.cert("ca").ext(EXT_CA).self_signed();
//! let leaf = pki.cert("leaf").key_kind(KeyKind::Rsa2048).issued_by(&ca);
//! ```

use std::cell::Cell;
use std::path::{Path, PathBuf};

use crate::openssl::openssl;

/// The key types the suites sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Too small: only for rejection tests.
    Rsa1024,
    /// RSA 2048.
    Rsa2048,
    /// RSA 3072.
    Rsa3072,
    /// ECDSA P-256 (prime256v1).
    P256,
    /// ECDSA P-384.
    P384,
}

impl KeyKind {
    /// Every kind a release signer may use (not [`KeyKind::Rsa1024`]).
    pub const ALL: [KeyKind; 4] = [
        KeyKind::Rsa2048,
        KeyKind::Rsa3072,
        KeyKind::P256,
        KeyKind::P384,
    ];

    fn genpkey_args(self) -> [&'static str; 4] {
        match self {
            KeyKind::Rsa1024 => ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
            KeyKind::Rsa2048 => ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            KeyKind::Rsa3072 => ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
            KeyKind::P256 => ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            KeyKind::P384 => ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        }
    }

    /// True for the RSA kinds.
    pub fn is_rsa(self) -> bool {
        matches!(self, KeyKind::Rsa1024 | KeyKind::Rsa2048 | KeyKind::Rsa3072)
    }
}

/// A release signer: what keel-sign and `swupdate -k` accept.
pub const EXT_SIGNER: &str =
    "keyUsage = critical, digitalSignature\nextendedKeyUsage = emailProtection\n\
     subjectKeyIdentifier = hash\n";
/// A code-signing certificate: the wrong extendedKeyUsage for a release signer.
pub const EXT_SIGNER_CODESIGN: &str =
    "keyUsage = critical, digitalSignature\nextendedKeyUsage = codeSigning\n\
     subjectKeyIdentifier = hash\n";
/// A CA.
pub const EXT_CA: &str =
    "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
     subjectKeyIdentifier = hash\n";

/// A private key and its certificate on disk (PEM).
#[derive(Debug, Clone)]
pub struct Identity {
    /// The PKCS#8 private key.
    pub key: PathBuf,
    /// The certificate.
    pub cert: PathBuf,
    /// The subject as keel-sign prints it (`CN=name,O=org`).
    pub subject: String,
}

impl Identity {
    /// The key file's contents.
    pub fn key_pem(&self) -> Vec<u8> {
        std::fs::read(&self.key).unwrap()
    }

    /// The certificate file's contents.
    pub fn cert_pem(&self) -> Vec<u8> {
        std::fs::read(&self.cert).unwrap()
    }

    /// A keel-sign signer for this identity.
    #[cfg(feature = "sign")]
    pub fn signer(&self) -> keel_sign::Signer {
        keel_sign::Signer::from_pem(&self.cert_pem(), &self.key_pem()).unwrap()
    }

    /// A keel-sign verifier trusting this certificate.
    #[cfg(feature = "sign")]
    pub fn verifier(&self) -> keel_sign::Verifier {
        keel_sign::Verifier::from_pem(&self.cert_pem()).unwrap()
    }
}

/// A directory where keys and certificates are made: its own temporary directory
/// ([`Pki::new`]) or one of the test's ([`Pki::in_dir`]).
pub struct Pki {
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    serial: Cell<u32>,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    /// A PKI in a new temporary directory (deleted on drop).
    pub fn new() -> Pki {
        let temp = tempfile::tempdir().unwrap();
        Pki {
            dir: temp.path().to_path_buf(),
            _temp: Some(temp),
            serial: Cell::new(1000),
        }
    }

    /// A PKI writing its files into `dir` (which the caller keeps).
    pub fn in_dir(dir: &Path) -> Pki {
        Pki {
            dir: dir.to_path_buf(),
            _temp: None,
            serial: Cell::new(1000),
        }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `data` to `name` in the directory; returns its path.
    pub fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, data).unwrap();
        path
    }

    /// A new `kind` private key in the file `file` (PKCS#8 PEM).
    pub fn key(&self, file: &str, kind: KeyKind) -> PathBuf {
        let mut args = vec!["genpkey"];
        args.extend(kind.genpkey_args());
        args.extend(["-out", file]);
        openssl(&self.dir, &args);
        self.path(file)
    }

    /// A certificate to make for a new key: P-256, subject `/CN=name`, [`EXT_SIGNER`],
    /// 3650 days, files `name.pem` and `name.key`, unless the builder says otherwise.
    pub fn cert(&self, name: &str) -> CertBuilder<'_> {
        CertBuilder {
            pki: self,
            name: name.to_string(),
            kind: KeyKind::P256,
            ext: EXT_SIGNER.to_string(),
            days: 3650,
            subject: format!("/CN={name}"),
            cert_file: format!("{name}.pem"),
            key_file: format!("{name}.key"),
        }
    }

    /// The usual release signer: a self-signed P-256 [`EXT_SIGNER`] certificate for `/CN=name`.
    pub fn signer(&self, name: &str) -> Identity {
        self.cert(name).self_signed()
    }
}

/// Options of one certificate; made by [`CertBuilder::self_signed`] or [`CertBuilder::issued_by`].
pub struct CertBuilder<'a> {
    pki: &'a Pki,
    name: String,
    kind: KeyKind,
    ext: String,
    days: u32,
    subject: String,
    cert_file: String,
    key_file: String,
}

impl CertBuilder<'_> {
    /// The key type.
    pub fn key_kind(mut self, kind: KeyKind) -> Self {
        self.kind = kind;
        self
    }

    /// Exactly these X.509v3 extensions (openssl config lines, e.g. [`EXT_CA`]).
    pub fn ext(mut self, ext: &str) -> Self {
        self.ext = ext.to_string();
        self
    }

    /// Validity from now on.
    pub fn days(mut self, days: u32) -> Self {
        self.days = days;
        self
    }

    /// The subject in openssl's form (`/CN=name/O=org`).
    pub fn subject(mut self, subject: &str) -> Self {
        self.subject = subject.to_string();
        self
    }

    /// The certificate's and the key's file names in the PKI directory.
    pub fn files(mut self, cert: &str, key: &str) -> Self {
        self.cert_file = cert.to_string();
        self.key_file = key.to_string();
        self
    }

    fn config(&self) -> String {
        let file = format!("{}.cnf", self.name);
        self.pki.write(
            &file,
            format!(
                "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n[ext]\n{}",
                self.ext
            )
            .as_bytes(),
        );
        file
    }

    fn identity(&self) -> Identity {
        Identity {
            key: self.pki.path(&self.key_file),
            cert: self.pki.path(&self.cert_file),
            subject: self.subject.trim_start_matches('/').replace('/', ","),
        }
    }

    /// A self-signed certificate.
    pub fn self_signed(self) -> Identity {
        self.pki.key(&self.key_file, self.kind);
        let cnf = self.config();
        let days = self.days.to_string();
        openssl(
            &self.pki.dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                &self.key_file,
                "-subj",
                &self.subject,
                "-days",
                &days,
                "-config",
                &cnf,
                "-extensions",
                "ext",
                "-sha256",
                "-out",
                &self.cert_file,
            ],
        );
        self.identity()
    }

    /// A certificate issued by `issuer` (a CA made here or elsewhere).
    pub fn issued_by(self, issuer: &Identity) -> Identity {
        self.pki.key(&self.key_file, self.kind);
        let cnf = self.config();
        let csr = format!("{}.csr", self.name);
        openssl(
            &self.pki.dir,
            &[
                "req",
                "-new",
                "-key",
                &self.key_file,
                "-subj",
                &self.subject,
                "-config",
                &cnf,
                "-out",
                &csr,
            ],
        );
        let serial = self.pki.serial.get() + 1;
        self.pki.serial.set(serial);
        let serial = serial.to_string();
        let days = self.days.to_string();
        openssl(
            &self.pki.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                issuer.cert.to_str().unwrap(),
                "-CAkey",
                issuer.key.to_str().unwrap(),
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
                &self.cert_file,
            ],
        );
        self.identity()
    }
}
