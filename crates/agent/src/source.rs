//! Where a bundle comes from: a file, stdin, or HTTP(S) with resume on broken connections.
//!
//! The HTTP reader is a plain `Read`: when the connection breaks mid-body it reconnects with
//! `Range: bytes=<offset>-` (and `If-Range` with the first response's validator), so the
//! install pipeline never notices, and no byte is buffered beyond the current read.

use std::fs::File;
use std::io::{self, Read};
use std::time::Duration;

/// Why a bundle source could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The bundle file could not be opened.
    #[error("opening {path}: {source}")]
    File {
        /// The file as given.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The first request failed or was not answered `200`. (Failures after the body started,
    /// such as a resume that cannot continue, surface as I/O errors of the reader.)
    #[error("HTTP GET {url}: {message}")]
    Http {
        /// The URL requested.
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// Open a bundle source: `-` is stdin, `http://`/`https://` a URL, anything else a file path.
pub fn open(
    spec: &str,
    tls: &crate::config::TlsConfig,
) -> Result<Box<dyn Read + Send>, SourceError> {
    if spec == "-" {
        return Ok(Box::new(io::stdin()));
    }
    if spec.starts_with("http://") || spec.starts_with("https://") {
        let http = http_agent(tls).map_err(|message| SourceError::Http {
            url: spec.to_string(),
            message,
        })?;
        let reader = HttpReader::open(http, spec, Vec::new(), ResumePolicy::default())?;
        return Ok(Box::new(reader));
    }
    let file = File::open(spec).map_err(|source| SourceError::File {
        path: spec.to_string(),
        source,
    })?;
    Ok(Box::new(file))
}

/// A blocking HTTP agent with connect/read timeouts suited to slow field links, trusting the
/// servers and presenting the client certificate `[tls]` names. Fails, naming the file, when a
/// PEM file cannot be read or holds nothing usable.
pub fn http_agent(tls: &crate::config::TlsConfig) -> Result<ureq::Agent, String> {
    use ureq::tls::{ClientCert, PrivateKey, RootCerts};
    let mut builder = ureq::tls::TlsConfig::builder();
    if let Some(path) = &tls.ca_file {
        let certs = pem_certificates(path)?;
        builder = builder.root_certs(RootCerts::new_with_certs(&certs));
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        let chain = pem_certificates(cert)?;
        let pem = std::fs::read(key)
            .map_err(|e| format!("reading [tls] client_key {}: {e}", key.display()))?;
        let key = PrivateKey::from_pem(&pem).map_err(|e| {
            format!(
                "[tls] client_key {}: no usable PEM private key ({e})",
                key.display()
            )
        })?;
        builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    let config = ureq::Agent::config_builder()
        .tls_config(builder.build())
        .timeout_connect(Some(Duration::from_secs(30)))
        // A stalled connection counts as broken and is resumed.
        .timeout_recv_body(Some(Duration::from_secs(60)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build();
    Ok(config.into())
}

fn pem_certificates(
    path: &std::path::Path,
) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    use ureq::tls::PemItem;
    let pem = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => return Err(format!("{}: not a PEM file ({e})", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (expected PEM `BEGIN CERTIFICATE` blocks)",
            path.display()
        ));
    }
    Ok(certs)
}

/// How hard [`HttpReader`] tries to resume.
#[derive(Debug, Clone, Copy)]
pub struct ResumePolicy {
    /// Consecutive failed attempts (without a single new byte) before giving up.
    pub max_attempts: u32,
    /// First back-off; doubled per consecutive failure, capped at `max_backoff`.
    pub initial_backoff: Duration,
    /// Cap of the doubling back-off between resume attempts.
    pub max_backoff: Duration,
}

impl Default for ResumePolicy {
    fn default() -> Self {
        ResumePolicy {
            max_attempts: 8,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// A `Read` over an HTTP resource that survives broken connections.
pub struct HttpReader {
    agent: ureq::Agent,
    url: String,
    headers: Vec<(String, String)>,
    policy: ResumePolicy,
    body: Option<Box<dyn Read + Send>>,
    offset: u64,
    total: Option<u64>,
    validator: Option<String>,
    resumes: u32,
}

impl HttpReader {
    /// Send the first request (so HTTP errors show up before the install starts).
    pub fn open(
        agent: ureq::Agent,
        url: &str,
        headers: Vec<(String, String)>,
        policy: ResumePolicy,
    ) -> Result<HttpReader, SourceError> {
        let mut reader = HttpReader {
            agent,
            url: url.to_string(),
            headers,
            policy,
            body: None,
            offset: 0,
            total: None,
            validator: None,
            resumes: 0,
        };
        reader.connect().map_err(|e| SourceError::Http {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        Ok(reader)
    }

    /// Bytes delivered so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Total size if the server said.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// How many times the download was resumed.
    pub fn resumes(&self) -> u32 {
        self.resumes
    }

    fn connect(&mut self) -> io::Result<()> {
        let mut request = self.agent.get(&self.url);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if self.offset > 0 {
            request = request.header("Range", &format!("bytes={}-", self.offset));
            if let Some(validator) = &self.validator {
                request = request.header("If-Range", validator);
            }
        }
        let response = request.call().map_err(io::Error::other)?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        if self.offset == 0 {
            if status != 200 {
                return Err(io::Error::other(format!("unexpected status {status}")));
            }
            self.total = header("content-length").and_then(|v| v.parse().ok());
            self.validator = header("etag").or_else(|| header("last-modified"));
        } else if status == 206 {
            let range = header("content-range").unwrap_or_default();
            let expected = format!("bytes {}-", self.offset);
            if !range.starts_with(&expected) {
                return Err(io::Error::other(format!(
                    "resume at {} got Content-Range {range:?}",
                    self.offset
                )));
            }
        } else {
            // 200 to a Range request: the resource changed (If-Range) or ranges are not
            // supported. Mixing two versions of a bundle would be caught by the hashes, but
            // it would waste the whole download: fail clearly instead.
            return Err(io::Error::other(format!(
                "server answered {status} to a resume request at byte {}: resource changed or no range support",
                self.offset
            )));
        }
        let reader = response.into_body().into_reader();
        self.body = Some(Box::new(reader));
        Ok(())
    }
}

impl Read for HttpReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut failures = 0u32;
        let mut backoff = self.policy.initial_backoff;
        loop {
            if let Some(body) = &mut self.body {
                match body.read(buf) {
                    Ok(0) => {
                        // A clean end before Content-Length is a broken connection too.
                        match self.total {
                            Some(total) if self.offset < total => {}
                            _ => return Ok(0),
                        }
                    }
                    Ok(n) => {
                        self.offset += n as u64;
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {}
                }
                self.body = None;
            }
            if let Some(total) = self.total {
                if self.offset >= total {
                    return Ok(0);
                }
            }
            failures += 1;
            if failures > self.policy.max_attempts {
                return Err(io::Error::other(format!(
                    "download of {} broke at byte {} and could not be resumed after {} attempts",
                    self.url, self.offset, self.policy.max_attempts
                )));
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(self.policy.max_backoff);
            self.resumes += 1;
            match self.connect() {
                Ok(()) => {}
                Err(e) if failures >= self.policy.max_attempts => {
                    return Err(io::Error::other(format!(
                        "resuming {} at byte {}: {e}",
                        self.url, self.offset
                    )))
                }
                Err(_) => {}
            }
        }
    }
}
