//! `swupdate -K` key files and streaming AES-256-CBC with PKCS#7 padding, byte-identical to
//! `openssl enc -aes-256-cbc -K <key hex> -iv <iv hex>` (what SWUpdate decrypts for `encrypted = true` images).
//!
//! All streams use constant memory (one 64 KiB work buffer) whatever the image size.

use cbc::cipher::inout::InOutBuf;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use std::io::{self, Read, Write};
use thiserror::Error;

const BLOCK: usize = 16;
/// Bytes processed per cipher call; a multiple of the block size.
const CHUNK: usize = 64 * 1024;

type Encryptor = cbc::Encryptor<aes::Aes256>;
type Decryptor = cbc::Decryptor<aes::Aes256>;

/// Errors parsing a `swupdate -K` key file.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyFileError {
    /// The file holds nothing but whitespace.
    #[error("key file is empty: expected \"<64 hex key> <32 hex iv>\"")]
    Empty,
    /// The file holds one field (a key) and no IV.
    #[error("key file has a key but no IV: expected \"<64 hex key> <32 hex iv>\"")]
    MissingIv,
    /// The file holds more than two whitespace-separated fields; carries how many.
    #[error("key file has {0} fields, expected 2 (\"<64 hex key> <32 hex iv>\")")]
    TooManyFields(usize),
    /// The key is not 64 hex digits (AES-256; AES-128/192 keys are refused) or the IV not 32.
    #[error("key file {field} has {len} hex digits, expected {expected} ({what})")]
    WrongLength {
        /// Which field: `"key"` or `"IV"`.
        field: &'static str,
        /// Its length in characters.
        len: usize,
        /// The required number of hex digits (64 or 32).
        expected: usize,
        /// What the field must be, for the message (`"AES-256 key"`, `"128-bit IV"`).
        what: &'static str,
    },
    /// A field contains a character that is not a hex digit.
    #[error("key file {field} has a non-hex character at position {position}")]
    NotHex {
        /// Which field: `"key"` or `"IV"`.
        field: &'static str,
        /// 0-based character index of the first offending character within the field.
        position: usize,
    },
}

/// AES-256 key and IV as in a `swupdate -K` key file.
#[derive(Clone, PartialEq, Eq)]
pub struct AesKey {
    /// The AES-256 key (first field of the key file).
    pub key: [u8; 32],
    /// The key file's CBC IV (second field), used for images whose entry has no `ivt`; bundles
    /// keel creates give every encrypted image its own `ivt` (docs/swu-format.md).
    pub iv: [u8; 16],
}

impl std::fmt::Debug for AesKey {
    // Never print key material into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AesKey").finish_non_exhaustive()
    }
}

impl AesKey {
    /// Parse "<64 hex key> <32 hex iv>" (any whitespace between and around, hex in either case).
    /// Only AES-256 keys: SWUpdate also accepts 32/48 hex digit AES-128/192 keys, keel does not.
    pub fn parse_keyfile(text: &str) -> Result<AesKey, KeyFileError> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let (key_hex, iv_hex) = match fields.as_slice() {
            [] => return Err(KeyFileError::Empty),
            [_] => return Err(KeyFileError::MissingIv),
            [k, i] => (*k, *i),
            more => return Err(KeyFileError::TooManyFields(more.len())),
        };
        let mut key = [0u8; 32];
        let mut iv = [0u8; 16];
        decode_hex(key_hex, &mut key, "key", "AES-256 key")?;
        decode_hex(iv_hex, &mut iv, "IV", "128-bit IV")?;
        Ok(AesKey { key, iv })
    }

    /// The key file text: lowercase hex key, a space, lowercase hex IV, newline.
    pub fn to_keyfile(&self) -> String {
        format!("{} {}\n", hex::encode(self.key), hex::encode(self.iv))
    }
}

fn decode_hex(
    text: &str,
    out: &mut [u8],
    field: &'static str,
    what: &'static str,
) -> Result<(), KeyFileError> {
    let expected = out.len() * 2;
    if let Some(position) = text.chars().position(|c| !c.is_ascii_hexdigit()) {
        return Err(KeyFileError::NotHex { field, position });
    }
    if text.len() != expected {
        return Err(KeyFileError::WrongLength {
            field,
            len: text.len(),
            expected,
            what,
        });
    }
    // Checked above: ASCII hex digits of the right length, so this cannot fail.
    hex::decode_to_slice(text, out).map_err(|_| KeyFileError::NotHex { field, position: 0 })?;
    Ok(())
}

/// Size of the ciphertext for `plain_len` bytes of plaintext (PKCS#7 always adds 1..=16 bytes).
pub fn encrypted_len(plain_len: u64) -> u64 {
    (plain_len / BLOCK as u64 + 1) * BLOCK as u64
}

fn bad_data(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn encrypt_in_place(cipher: &mut Encryptor, buf: &mut [u8]) {
    let (blocks, tail) = InOutBuf::from(buf).into_chunks();
    debug_assert!(tail.is_empty());
    cipher.encrypt_blocks_inout_mut(blocks);
}

fn decrypt_in_place(cipher: &mut Decryptor, buf: &mut [u8]) {
    let (blocks, tail) = InOutBuf::from(buf).into_chunks();
    debug_assert!(tail.is_empty());
    cipher.decrypt_blocks_inout_mut(blocks);
}

/// Length of the plaintext in the decrypted final block after removing PKCS#7 padding.
fn unpad(last_block: &[u8]) -> io::Result<usize> {
    let pad = usize::from(
        *last_block
            .last()
            .ok_or_else(|| bad_data("AES-CBC: empty final block"))?,
    );
    if pad == 0 || pad > BLOCK || pad > last_block.len() {
        return Err(bad_data(
            "AES-CBC: bad padding (wrong key/IV or corrupted data)",
        ));
    }
    let (data, padding) = last_block.split_at(last_block.len() - pad);
    if padding.iter().any(|&b| usize::from(b) != pad) {
        return Err(bad_data(
            "AES-CBC: bad padding (wrong key/IV or corrupted data)",
        ));
    }
    Ok(data.len())
}

/// Encrypts everything written to it into `inner`. [`EncryptWriter::finish`] must be called to write the
/// final padded block; dropping the writer without it loses the last 1..=16 bytes.
pub struct EncryptWriter<W: Write> {
    inner: W,
    cipher: Encryptor,
    /// Plaintext not yet encrypted (less than one block between calls), then work space.
    buf: Vec<u8>,
}

impl<W: Write> EncryptWriter<W> {
    /// A writer encrypting into `inner` with AES-256-CBC under `key` and `iv`.
    pub fn new(inner: W, key: &[u8; 32], iv: &[u8; 16]) -> Self {
        EncryptWriter {
            inner,
            cipher: Encryptor::new(key.into(), iv.into()),
            buf: Vec::with_capacity(CHUNK),
        }
    }

    /// Pad, encrypt and write the final block; returns the inner writer (flushed).
    pub fn finish(mut self) -> io::Result<W> {
        let pad = BLOCK - self.buf.len() % BLOCK;
        self.buf.resize(self.buf.len() + pad, pad as u8);
        encrypt_in_place(&mut self.cipher, &mut self.buf);
        self.inner.write_all(&self.buf)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for EncryptWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let take = (CHUNK - self.buf.len()).min(rest.len());
            let (now, later) = rest.split_at(take);
            self.buf.extend_from_slice(now);
            rest = later;
            let full = self.buf.len() - self.buf.len() % BLOCK;
            if self.buf.len() == CHUNK || (rest.is_empty() && full > 0) {
                encrypt_in_place(&mut self.cipher, &mut self.buf[..full]);
                self.inner.write_all(&self.buf[..full])?;
                self.buf.drain(..full);
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts everything written to it into `inner`. [`DecryptWriter::finish`] checks the total length and
/// the PKCS#7 padding and writes the last plaintext bytes.
pub struct DecryptWriter<W: Write> {
    inner: W,
    cipher: Decryptor,
    /// Ciphertext not yet decrypted: the last full block is always held back until more data or `finish`.
    buf: Vec<u8>,
    total: u64,
}

impl<W: Write> DecryptWriter<W> {
    /// A writer decrypting AES-256-CBC ciphertext under `key` and `iv` into `inner`.
    pub fn new(inner: W, key: &[u8; 32], iv: &[u8; 16]) -> Self {
        DecryptWriter {
            inner,
            cipher: Decryptor::new(key.into(), iv.into()),
            buf: Vec::with_capacity(CHUNK + BLOCK),
            total: 0,
        }
    }

    /// Check length and padding, write the final plaintext bytes, return the inner writer (flushed).
    pub fn finish(mut self) -> io::Result<W> {
        if self.total == 0 {
            return Err(bad_data(
                "AES-CBC: ciphertext is empty (at least one block expected)",
            ));
        }
        if !self.buf.len().is_multiple_of(BLOCK) {
            return Err(bad_data(&format!(
                "AES-CBC: ciphertext length {} is not a multiple of 16 (truncated?)",
                self.total
            )));
        }
        decrypt_in_place(&mut self.cipher, &mut self.buf);
        let keep = self.buf.len() - BLOCK + unpad(&self.buf[self.buf.len() - BLOCK..])?;
        self.inner.write_all(&self.buf[..keep])?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for DecryptWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let take = (CHUNK + BLOCK - self.buf.len()).min(rest.len());
            let (now, later) = rest.split_at(take);
            self.buf.extend_from_slice(now);
            rest = later;
            // Decrypt all full blocks except one that might be the last (padded) one.
            let ready = self.buf.len().saturating_sub(1) / BLOCK * BLOCK;
            if ready > 0 && (self.buf.len() == CHUNK + BLOCK || rest.is_empty()) {
                decrypt_in_place(&mut self.cipher, &mut self.buf[..ready]);
                self.inner.write_all(&self.buf[..ready])?;
                self.buf.drain(..ready);
            }
        }
        self.total = self.total.saturating_add(data.len() as u64);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads ciphertext from `inner` and yields plaintext. The end of the plaintext is only known at the end of
/// the ciphertext: a bad length or padding is reported as an `InvalidData` error by the last `read`.
pub struct DecryptReader<R: Read> {
    inner: R,
    cipher: Decryptor,
    /// buf[..plain_end] decrypted (buf[plain_pos..plain_end] not yet returned); buf[plain_end..] ciphertext.
    buf: Vec<u8>,
    plain_pos: usize,
    plain_end: usize,
    total: u64,
    state: ReaderState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ReaderState {
    Reading,
    Done,
    Failed,
}

impl<R: Read> DecryptReader<R> {
    /// A reader of the plaintext of the AES-256-CBC ciphertext `inner` under `key` and `iv`.
    pub fn new(inner: R, key: &[u8; 32], iv: &[u8; 16]) -> Self {
        DecryptReader {
            inner,
            cipher: Decryptor::new(key.into(), iv.into()),
            buf: Vec::with_capacity(CHUNK + BLOCK),
            plain_pos: 0,
            plain_end: 0,
            total: 0,
            state: ReaderState::Reading,
        }
    }

    /// Gives back the ciphertext reader, positioned after the ciphertext read so far (which may
    /// run ahead of the plaintext returned).
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Read more ciphertext and decrypt what is safe to decrypt; at end of input check and strip padding.
    fn refill(&mut self) -> io::Result<()> {
        // Drop returned plaintext, keep held-back ciphertext.
        self.buf.drain(..self.plain_end);
        self.plain_pos = 0;
        self.plain_end = 0;
        let mut eof = false;
        while self.buf.len() < CHUNK + BLOCK {
            let start = self.buf.len();
            self.buf.resize(CHUNK + BLOCK, 0);
            let n = match self.inner.read(&mut self.buf[start..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    self.buf.truncate(start);
                    continue;
                }
                Err(e) => {
                    self.buf.truncate(start);
                    return Err(e);
                }
            };
            self.buf.truncate(start + n);
            self.total = self.total.saturating_add(n as u64);
            if n == 0 {
                eof = true;
                break;
            }
            if self.buf.len() > BLOCK {
                break; // something to hand out already
            }
        }
        if eof {
            self.state = ReaderState::Done;
            if self.total == 0 {
                return Err(bad_data(
                    "AES-CBC: ciphertext is empty (at least one block expected)",
                ));
            }
            if !self.buf.len().is_multiple_of(BLOCK) || self.buf.is_empty() {
                return Err(bad_data(&format!(
                    "AES-CBC: ciphertext length {} is not a multiple of 16 (truncated?)",
                    self.total
                )));
            }
            decrypt_in_place(&mut self.cipher, &mut self.buf);
            let last = self.buf.len() - BLOCK;
            self.plain_end = last + unpad(&self.buf[last..])?;
        } else {
            let ready = self.buf.len().saturating_sub(1) / BLOCK * BLOCK;
            decrypt_in_place(&mut self.cipher, &mut self.buf[..ready]);
            self.plain_end = ready;
        }
        Ok(())
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.plain_pos == self.plain_end {
            match self.state {
                ReaderState::Done => return Ok(0),
                ReaderState::Failed => return Err(bad_data("AES-CBC: stream already failed")),
                ReaderState::Reading => {
                    if let Err(e) = self.refill() {
                        if e.kind() == io::ErrorKind::InvalidData {
                            self.state = ReaderState::Failed;
                        }
                        return Err(e);
                    }
                }
            }
        }
        let n = out.len().min(self.plain_end - self.plain_pos);
        out[..n].copy_from_slice(&self.buf[self.plain_pos..self.plain_pos + n]);
        self.plain_pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const IV: [u8; 16] = [9; 16];

    fn encrypt(data: &[u8], write_size: usize) -> Vec<u8> {
        let mut w = EncryptWriter::new(Vec::new(), &KEY, &IV);
        for chunk in data.chunks(write_size.max(1)) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn roundtrip_all_paths_and_write_sizes() {
        for len in [
            0usize,
            1,
            15,
            16,
            17,
            31,
            32,
            33,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK + 5,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let reference = encrypt(&data, len.max(1));
            assert_eq!(reference.len() as u64, encrypted_len(len as u64));
            for write_size in [1usize, 7, 16, 4096, CHUNK + 3] {
                assert_eq!(
                    encrypt(&data, write_size),
                    reference,
                    "len {len} write {write_size}"
                );
                let mut d = DecryptWriter::new(Vec::new(), &KEY, &IV);
                for chunk in reference.chunks(write_size) {
                    d.write_all(chunk).unwrap();
                }
                assert_eq!(d.finish().unwrap(), data, "len {len} write {write_size}");
            }
            for read_size in [1usize, 5, 16, 1000, CHUNK * 2] {
                let mut r = DecryptReader::new(&reference[..], &KEY, &IV);
                let mut out = Vec::new();
                let mut buf = vec![0u8; read_size];
                loop {
                    let n = r.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&buf[..n]);
                }
                assert_eq!(out, data, "len {len} read {read_size}");
            }
        }
    }

    /// A reader that returns `Interrupted` and short reads between the real data.
    struct Flaky<'a> {
        data: &'a [u8],
        calls: usize,
    }

    impl Read for Flaky<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(3) {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "signal"));
            }
            let n = buf.len().min(self.data.len()).min(5);
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn reader_survives_interrupted_and_short_reads() {
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let ct = encrypt(&data, 100);
        let mut out = Vec::new();
        DecryptReader::new(
            Flaky {
                data: &ct,
                calls: 0,
            },
            &KEY,
            &IV,
        )
        .read_to_end(&mut out)
        .unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn rejects_bad_lengths_and_padding() {
        let ct = encrypt(b"hello world", 4);
        for bad in [&ct[..0], &ct[..15], &ct[..ct.len() - 1]] {
            let mut d = DecryptWriter::new(Vec::new(), &KEY, &IV);
            d.write_all(bad).unwrap();
            assert_eq!(d.finish().unwrap_err().kind(), io::ErrorKind::InvalidData);
            let mut out = Vec::new();
            let err = DecryptReader::new(bad, &KEY, &IV)
                .read_to_end(&mut out)
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        }
        let wrong_key = [8u8; 32];
        let mut d = DecryptWriter::new(Vec::new(), &wrong_key, &IV);
        d.write_all(&ct).unwrap();
        let err = d.finish().unwrap_err();
        assert!(err.to_string().contains("bad padding"), "{err}");
    }

    #[test]
    fn keyfile_roundtrip_and_errors() {
        let k = AesKey {
            key: [0xab; 32],
            iv: [0x01; 16],
        };
        let text = k.to_keyfile();
        assert_eq!(text, format!("{} {}\n", "ab".repeat(32), "01".repeat(16)));
        assert_eq!(AesKey::parse_keyfile(&text).unwrap(), k);
        assert_eq!(AesKey::parse_keyfile(&text.to_uppercase()).unwrap(), k);
        assert_eq!(
            AesKey::parse_keyfile(&format!(
                "  {}\n\t{}  \r\n",
                "ab".repeat(32),
                "01".repeat(16)
            ))
            .unwrap(),
            k
        );
        assert_eq!(
            AesKey::parse_keyfile(" \n").unwrap_err(),
            KeyFileError::Empty
        );
        assert_eq!(
            AesKey::parse_keyfile(&"ab".repeat(32)).unwrap_err(),
            KeyFileError::MissingIv
        );
        assert_eq!(
            AesKey::parse_keyfile("a b c").unwrap_err(),
            KeyFileError::TooManyFields(3)
        );
        assert!(matches!(
            AesKey::parse_keyfile(&format!("{} {}", "ab".repeat(16), "01".repeat(16))),
            Err(KeyFileError::WrongLength {
                field: "key",
                len: 32,
                expected: 64,
                ..
            })
        ));
        assert!(matches!(
            AesKey::parse_keyfile(&format!("{} {}", "ab".repeat(32), "01".repeat(15))),
            Err(KeyFileError::WrongLength {
                field: "IV",
                len: 30,
                expected: 32,
                ..
            })
        ));
        assert_eq!(
            AesKey::parse_keyfile(&format!("{}g {}", "ab".repeat(31), "01".repeat(16)))
                .unwrap_err(),
            KeyFileError::NotHex {
                field: "key",
                position: 62
            }
        );
        assert!(
            format!("{k:?}").find("ab").is_none(),
            "Debug must not print the key"
        );
    }
}
