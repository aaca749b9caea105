//! HTTPS served by keel-server itself (`--tls-cert`, `--tls-key`, docs/security.md "TLS"):
//! rustls with the certificate chain and key re-read on SIGHUP (a renewed certificate takes
//! effect without a restart; a broken one is refused and the old one kept), and, with
//! `--tls-client-ca`, devices authenticated by a client certificate that CA issued: its subject's
//! CN is the controller id and its O the tenant, as hawkBit maps `X-Ssl-Client-Cn` behind a proxy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Where the server's TLS material lives; read at start and on every reload.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM: the server certificate followed by its intermediates.
    pub cert: PathBuf,
    /// PEM: the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: CA certificates whose client certificates authenticate devices (optional).
    pub client_ca: Option<PathBuf>,
}

/// The live TLS configuration, swapped atomically by [`Tls::reload`].
pub struct Tls {
    files: TlsFiles,
    config: ArcSwap<ServerConfig>,
}

/// The verified subject of a client certificate, for the connection it came on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject's common name: the controller id.
    pub common_name: String,
    /// The subject's organisation: the tenant.
    pub organization: Option<String>,
}

tokio::task_local! {
    /// The client certificate of the connection the current request came on (set by serve.rs
    /// around each TLS connection; absent on plain HTTP or without a certificate).
    pub static CLIENT_IDENTITY: Option<ClientIdentity>;
}

/// The current request's verified client certificate subject, if any.
pub fn client_identity() -> Option<ClientIdentity> {
    CLIENT_IDENTITY.try_with(|id| id.clone()).ok().flatten()
}

impl Tls {
    /// Loads the files; fails with the file and the reason.
    pub fn load(files: TlsFiles) -> anyhow::Result<Tls> {
        let config = build(&files)?;
        Ok(Tls {
            files,
            config: ArcSwap::from_pointee(config),
        })
    }

    /// Re-reads the files; on error the current configuration stays in use.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = build(&self.files)?;
        self.config.store(Arc::new(config));
        Ok(())
    }

    /// An acceptor for the next connection, with the configuration current now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a PEM certificate file", path.display()))?;
    if certs.is_empty() {
        bail!(
            "{}: no certificate in it (expected PEM `BEGIN CERTIFICATE` blocks)",
            path.display()
        );
    }
    Ok(certs)
}

fn build(files: &TlsFiles) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("{}: no PEM private key in it", files.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(path)? {
                roots.add(cert).with_context(|| {
                    format!("{}: a certificate that is no usable CA", path.display())
                })?;
            }
            // Optional: devices with a token and no certificate keep working.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .with_context(|| format!("client CA {}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).with_context(|| {
        format!(
            "{} and {} do not make a usable certificate and key pair",
            files.cert.display(),
            files.key.display()
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

const OID_CN: x509_cert::der::asn1::ObjectIdentifier =
    x509_cert::der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
const OID_O: x509_cert::der::asn1::ObjectIdentifier =
    x509_cert::der::asn1::ObjectIdentifier::new_unwrap("2.5.4.10");

/// The subject (CN, O) of a verified client certificate; `None` if it has no CN.
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<ClientIdentity> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    let mut common_name = None;
    let mut organization = None;
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            let text = text_of(&atv.value);
            if atv.oid == OID_CN {
                common_name = text;
            } else if atv.oid == OID_O {
                organization = text;
            }
        }
    }
    Some(ClientIdentity {
        common_name: common_name?,
        organization,
    })
}

fn text_of(value: &x509_cert::der::Any) -> Option<String> {
    use x509_cert::der::asn1::{PrintableStringRef, Utf8StringRef};
    use x509_cert::der::{Tag, Tagged};
    match value.tag() {
        Tag::Utf8String => Utf8StringRef::try_from(value)
            .ok()
            .map(|s| s.as_str().to_string()),
        Tag::PrintableString => PrintableStringRef::try_from(value)
            .ok()
            .map(|s| s.as_str().to_string()),
        _ => None,
    }
}
