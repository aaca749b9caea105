//! `swupdate -K` key files and streaming AES-256-CBC with PKCS#7 padding
//! (byte-identical to `openssl enc -aes-256-cbc -K <key> -iv <iv>`).

use std::io::{self, Read, Write};
use thiserror::Error;

/// Errors parsing a `swupdate -K` key file.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyFileError {
    #[error("key file is empty: expected \"<64 hex key> <32 hex iv>\"")]
    Empty,
    #[error("key file has no IV: expected \"<64 hex key> <32 hex iv>\"")]
    MissingIv,
    #[error("key file has {0} fields, expected 2 (\"<64 hex key> <32 hex iv>\")")]
    TooManyFields(usize),
    #[error("key file {field} has {len} hex digits, expected {expected} (AES-256 key / 128-bit IV)")]
    WrongLength { field: &'static str, len: usize, expected: usize },
    #[error("key file {field} has a non-hex character at position {position}")]
    NotHex { field: &'static str, position: usize },
}

/// AES-256 key and IV as in a `swupdate -K` key file.
#[derive(Clone, PartialEq, Eq)]
pub struct AesKey {
    pub key: [u8; 32],
    pub iv: [u8; 16],
}

impl std::fmt::Debug for AesKey {
    // Never print key material into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AesKey").finish_non_exhaustive()
    }
}

impl AesKey {
    /// Parse "<64 hex key> <32 hex iv>" (whitespace separated, trailing newline ok).
    pub fn parse_keyfile(_text: &str) -> Result<AesKey, KeyFileError> {
        Err(KeyFileError::Empty)
    }

    /// The key file text: lowercase hex key, a space, lowercase hex IV, newline.
    pub fn to_keyfile(&self) -> String {
        String::new()
    }
}

/// Size of the ciphertext for `plain_len` bytes of plaintext (PKCS#7 always adds 1..=16 bytes).
pub fn encrypted_len(plain_len: u64) -> u64 {
    (plain_len / 16 + 1) * 16
}

/// Encrypts everything written to it into `inner`; call [`EncryptWriter::finish`] to write the final padded block.
pub struct EncryptWriter<W: Write> {
    inner: W,
}

impl<W: Write> EncryptWriter<W> {
    pub fn new(inner: W, _key: &[u8; 32], _iv: &[u8; 16]) -> Self {
        EncryptWriter { inner }
    }
    pub fn finish(self) -> io::Result<W> {
        Ok(self.inner)
    }
}

impl<W: Write> Write for EncryptWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts everything written to it into `inner`; [`DecryptWriter::finish`] checks length and padding.
pub struct DecryptWriter<W: Write> {
    inner: W,
}

impl<W: Write> DecryptWriter<W> {
    pub fn new(inner: W, _key: &[u8; 32], _iv: &[u8; 16]) -> Self {
        DecryptWriter { inner }
    }
    pub fn finish(self) -> io::Result<W> {
        Ok(self.inner)
    }
}

impl<W: Write> Write for DecryptWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads ciphertext from `inner` and yields plaintext; errors at end of stream on bad padding/length.
pub struct DecryptReader<R: Read> {
    inner: R,
}

impl<R: Read> DecryptReader<R> {
    pub fn new(inner: R, _key: &[u8; 32], _iv: &[u8; 16]) -> Self {
        DecryptReader { inner }
    }
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Ok(0)
    }
}
