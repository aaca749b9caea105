//! The one reader stack every image member goes through:
//!
//! ```text
//! member ─▶ HashingReader (sha256 of the stored bytes) ─▶ AES-CBC decrypt ─▶ zstd decompress
//!        ─▶ raw copy | delta apply (seeded by the booted slot) | chunk index (then assembly)
//! ```
//!
//! and the one [`Progress`] path all three writers report through.

use std::io::{self, Read, Write};
use std::path::Path;

use keel_formats::swdesc::hex;
use keel_sign::aes::{AesKey, DecryptReader};
use sha2::{Digest, Sha256};

use super::error::{ImageError, InstallError, KeyError};
use super::members::{check_hash, Writer};
use super::plan::{ImageKind, PlannedImage};
use crate::chunks::MAX_INDEX_SIZE;
use crate::io::{ChunkedSlot, SlotReader, SlotWriter};
use crate::state::SlotImage;

/// Image bytes written so far of the image bytes announced so far (members seen).
pub(super) struct Progress<'a> {
    done: u64,
    total: u64,
    report: Option<&'a mut dyn FnMut(u64, u64)>,
}

impl<'a> Progress<'a> {
    pub fn new(report: Option<&'a mut dyn FnMut(u64, u64)>) -> Progress<'a> {
        Progress {
            done: 0,
            total: 0,
            report,
        }
    }

    /// An image member of `size` stored bytes starts.
    pub fn announce(&mut self, size: u64) {
        self.total += size;
    }

    /// `bytes` more image bytes are written.
    pub fn advance(&mut self, bytes: u64) {
        self.done = self.done.saturating_add(bytes);
        if let Some(report) = self.report.as_mut() {
            report(self.done, self.total);
        }
    }
}

/// `io::Write` into a hasher (for `io::copy`).
struct HashWriter<'h>(&'h mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Passes bytes through while hashing them.
pub(super) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The hash of everything read.
    pub fn finish(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(data) = buf.get(..n) {
            self.hasher.update(data);
        }
        Ok(n)
    }
}

/// Reads a small member (script, chunk index) into memory, refusing more than `limit` bytes.
pub(super) fn read_small(mut reader: impl Read, limit: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.by_ref().take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(io::Error::other(format!("larger than {limit} bytes")));
    }
    Ok(out)
}

/// Fill `buf` as far as the reader allows; returns the byte count (0 only at the end).
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else {
            break;
        };
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

pub(super) fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The stored bytes decoded as `decode` says: decrypted, then decompressed.
fn decoded<'r>(
    stored: &'r mut dyn Read,
    image: &PlannedImage,
    key: Option<&AesKey>,
) -> Result<Box<dyn Read + 'r>, InstallError> {
    let image_err = |e| InstallError::image(&image.name, e);
    let mut reader: Box<dyn Read + 'r> = Box::new(stored);
    if let Some(ivt) = &image.decode.encrypted {
        let key = key.ok_or(KeyError::NotConfigured)?;
        let iv = match ivt {
            Some(ivt) => {
                parse_hex::<16>(ivt).ok_or_else(|| image_err(ImageError::Ivt(ivt.clone())))?
            }
            None => key.iv,
        };
        reader = Box::new(DecryptReader::new(reader, &key.key, &iv));
    }
    if image.decode.zstd {
        let decoder =
            zstd::stream::read::Decoder::new(reader).map_err(|e| image_err(ImageError::Zstd(e)))?;
        reader = Box::new(decoder);
    }
    Ok(reader)
}

/// What the writer of an image leaves once the member is read: a slot to sync, or a chunk
/// index to assemble from (only after the index's hash is checked).
enum Pending {
    Slot(SlotWriter, SlotImage),
    Index(Vec<u8>),
}

impl Writer<'_, '_> {
    /// Write one image member into its target; returns what the target holds and the bytes written.
    pub(super) fn image(
        &mut self,
        image: &PlannedImage,
        member: &mut dyn Read,
    ) -> Result<(SlotImage, u64), InstallError> {
        let name = image.name.as_str();
        let image_err = |e: ImageError| InstallError::image(name, e);
        let mut stored = HashingReader::new(member);
        let pending = {
            let mut reader = decoded(&mut stored, image, self.key)?;
            match image.kind {
                ImageKind::Raw => self.write_raw(image, &mut reader)?,
                ImageKind::Delta => self.write_delta(image, &mut reader)?,
                ImageKind::Chunked => Pending::Index(
                    read_small(&mut reader, MAX_INDEX_SIZE)
                        .map_err(|e| image_err(ImageError::IndexRead(e)))?,
                ),
            }
        };
        // Drain anything the decrypter did not need (a well-formed member has nothing left).
        io::copy(&mut stored, &mut io::sink()).map_err(|e| image_err(ImageError::Read(e)))?;
        check_hash(name, &image.sha256, stored.finish())?;
        match pending {
            Pending::Slot(mut slot, record) => {
                slot.sync()
                    .map_err(|e| InstallError::write(&image.target, e))?;
                self.verify_after_write(&image.target, &record)?;
                Ok((record, slot.written()))
            }
            Pending::Index(index) => {
                let record = self.write_chunked(image, &index)?;
                self.verify_after_write(&image.target, &record)?;
                self.progress.advance(record.size);
                let size = record.size;
                Ok((record, size))
            }
        }
    }

    /// With `verify_after_write`: drop the target's cached pages (it was just fsynced) and hash
    /// the `record.size` bytes written, read back from the device; they must hash to
    /// `record.sha256`. Off: nothing.
    fn verify_after_write(&self, target: &Path, record: &SlotImage) -> Result<(), InstallError> {
        if !self.agent.config.verify_after_write {
            return Ok(());
        }
        let read_err = |source| InstallError::ReadBack {
            path: target.display().to_string(),
            source,
        };
        self.agent.storage.drop_cache(target).map_err(read_err)?;
        let stream = crate::chunks::SlotStream::open(self.agent.storage.clone(), target)
            .map_err(read_err)?;
        let mut limited = stream.take(record.size);
        let mut hasher = Sha256::new();
        let copied = io::copy(&mut limited, &mut HashWriter(&mut hasher)).map_err(read_err)?;
        if copied != record.size {
            return Err(read_err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{copied} of {} bytes", record.size),
            )));
        }
        let digest: [u8; 32] = hasher.finalize().into();
        let actual = hex(&digest);
        if actual != record.sha256 {
            return Err(InstallError::ReadBackMismatch {
                path: target.display().to_string(),
                expected: record.sha256.clone(),
                actual,
            });
        }
        Ok(())
    }

    fn open_slot(&self, image: &PlannedImage) -> Result<SlotWriter, InstallError> {
        SlotWriter::open(&self.agent.storage, self.agent.env, &image.target)
            .map_err(|e| InstallError::write(&image.target, e))
    }

    /// The decoded member is the image: copied in `chunk_size` writes.
    fn write_raw(
        &mut self,
        image: &PlannedImage,
        reader: &mut dyn Read,
    ) -> Result<Pending, InstallError> {
        let mut slot = self.open_slot(image)?;
        let mut buf = vec![0u8; self.chunk_size];
        // The stored bytes' hash is the image's unless they are transformed.
        let mut output_hash = image.decode.transforms().then(Sha256::new);
        loop {
            let n = read_full(reader, &mut buf).map_err(|e| InstallError::image(&image.name, e))?;
            if n == 0 {
                break;
            }
            let data = buf.get(..n).unwrap_or_default();
            if let Some(h) = output_hash.as_mut() {
                h.update(data);
            }
            slot.write_all(data)
                .map_err(|e| InstallError::write(&image.target, e))?;
            self.progress.advance(n as u64);
        }
        let record = SlotImage {
            sha256: hex(&output_hash.map_or(image.sha256, |h| h.finalize().into())),
            size: slot.written(),
            version: None,
        };
        Ok(Pending::Slot(slot, record))
    }

    /// The decoded member is a keel delta against the same target of the booted slot.
    fn write_delta(
        &mut self,
        image: &PlannedImage,
        reader: &mut dyn Read,
    ) -> Result<Pending, InstallError> {
        let mut slot = self.open_slot(image)?;
        let seed_path = image
            .seed
            .as_deref()
            .ok_or_else(|| InstallError::image(&image.name, ImageError::NoSeed))?;
        let mut seed = SlotReader::new(self.agent.storage.clone(), seed_path);
        let mut sink = ChunkedSlot::new(&mut slot, self.chunk_size);
        let report = keel_delta::apply(&mut seed, reader, &mut sink)
            .map_err(|e| InstallError::image(&image.name, ImageError::Delta(e)))?;
        sink.finish()
            .map_err(|e| InstallError::write(&image.target, e))?;
        self.progress.advance(slot.written());
        let record = SlotImage {
            sha256: hex(&report.target_sha256),
            size: report.target_size,
            version: None,
        };
        Ok(Pending::Slot(slot, record))
    }
}
