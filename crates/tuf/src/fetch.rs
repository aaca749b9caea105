//! Fetching bytes by URL. The agent implements `Fetcher` with its own blocking HTTP client; this module has a
//! local-file fetcher and (feature `http`) a ureq-based one.

use std::io::Read;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server says the file does not exist (HTTP 403/404, or no such local file): for root this ends the
    /// rotation chain.
    #[error("{url}: not found")]
    NotFound {
        /// The URL (or path) asked for.
        url: String,
    },
    /// The server answered with another error status.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL asked for.
        url: String,
        /// The HTTP status code received.
        status: u16,
    },
    /// More bytes than allowed.
    #[error("{url}: more than {limit} bytes")]
    TooLarge {
        /// The URL asked for.
        url: String,
        /// The most bytes the caller accepted.
        limit: u64,
    },
    /// Transport or I/O failure.
    #[error("{url}: {message}")]
    Transport {
        /// The URL asked for (for a target being verified: its name).
        url: String,
        /// The underlying error, as text.
        message: String,
    },
}

/// A source of bytes by URL.
pub trait Fetcher {
    /// Opens `url` for streaming.
    fn open(&self, url: &str) -> Result<Box<dyn Read + '_>, FetchError>;

    /// Reads the whole of `url`, refusing more than `max_length` bytes.
    fn fetch(&self, url: &str, max_length: u64) -> Result<Vec<u8>, FetchError> {
        let reader = self.open(url)?;
        let mut data = Vec::new();
        reader
            .take(max_length.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| FetchError::Transport {
                url: url.to_string(),
                message: e.to_string(),
            })?;
        if data.len() as u64 > max_length {
            return Err(FetchError::TooLarge {
                url: url.to_string(),
                limit: max_length,
            });
        }
        Ok(data)
    }
}

/// Reads `file://` URLs (or plain paths) from the local file system, e.g. a repository on a USB stick.
#[derive(Debug, Default, Clone)]
pub struct FileFetcher;

impl Fetcher for FileFetcher {
    fn open(&self, url: &str) -> Result<Box<dyn Read + '_>, FetchError> {
        let path = url.strip_prefix("file://").unwrap_or(url);
        let path = percent_decode(path);
        match std::fs::File::open(&path) {
            Ok(file) => Ok(Box::new(file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FetchError::NotFound {
                url: url.to_string(),
            }),
            Err(e) => Err(FetchError::Transport {
                url: url.to_string(),
                message: e.to_string(),
            }),
        }
    }
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// A blocking HTTP(S) fetcher (ureq, rustls).
#[cfg(feature = "http")]
#[derive(Debug, Clone)]
pub struct HttpFetcher {
    agent: ureq::Agent,
}

#[cfg(feature = "http")]
impl Default for HttpFetcher {
    fn default() -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(300)))
            .http_status_as_error(false)
            .build();
        HttpFetcher {
            agent: config.into(),
        }
    }
}

#[cfg(feature = "http")]
impl Fetcher for HttpFetcher {
    fn open(&self, url: &str) -> Result<Box<dyn Read + '_>, FetchError> {
        let response = self
            .agent
            .get(url)
            .call()
            .map_err(|e| FetchError::Transport {
                url: url.to_string(),
                message: e.to_string(),
            })?;
        let status = response.status().as_u16();
        if status == 403 || status == 404 {
            return Err(FetchError::NotFound {
                url: url.to_string(),
            });
        }
        if status != 200 {
            return Err(FetchError::Status {
                url: url.to_string(),
                status,
            });
        }
        Ok(Box::new(response.into_body().into_reader()))
    }
}
