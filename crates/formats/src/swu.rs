//! The `.swu` bundle: a cpio archive with `sw-description` first, its signature
//! `sw-description.sig` directly after (when signed), then the images in any order.
//!
//! [`SwuReader`] streams: [`SwuReader::read_description`] returns the (small, bounded)
//! description and signature bytes; [`SwuReader::next_member`] then yields each further member
//! with a `Read` of exactly its bytes, never buffering an image. Verifying the signature and the
//! per-image sha256 is the caller's job (`keel-bundle`, `keel-agent`): this layer only enforces the
//! container rules and the cpio checksums.

use std::io::{self, Read, Write};

use thiserror::Error;

use crate::cpio::{
    Checksum, CpioError, CpioHeader, CpioReader, CpioWriter, MemberSpec, MODE_REGULAR_0644,
};

/// Name of the description member.
pub const DESCRIPTION_NAME: &str = "sw-description";
/// Name of the signature member.
pub const SIGNATURE_NAME: &str = "sw-description.sig";
/// Bound on the description member (SWUpdate's encrypted-to-many-devices descriptions reach a
/// few MiB).
pub const MAX_DESCRIPTION_SIZE: u32 = 16 * 1024 * 1024;
/// Bound on the signature member (a CMS blob with a certificate chain is a few KiB).
pub const MAX_SIGNATURE_SIZE: u32 = 1024 * 1024;
/// SWUpdate rejects a name whose size including the NUL is 256 or more, so names have at most
/// 254 bytes.
pub const MAX_NAME_LEN: u32 = 256;

/// Errors of [`SwuReader`] and [`SwuWriter`]: the container rules of a `.swu` on top of the
/// cpio errors.
#[derive(Debug, Error)]
pub enum SwuError {
    /// The cpio layer failed: I/O, truncation, bad header, checksum mismatch, bad member name
    /// (including names of 255 bytes or more, SWUpdate's limit).
    #[error(transparent)]
    Cpio(#[from] CpioError),
    /// The first member of the archive is not `sw-description`.
    #[error("bundle: first member must be sw-description, found {found:?} (offset {offset})")]
    DescriptionNotFirst {
        /// Name of the first member.
        found: String,
        /// Offset of its header (normally 0).
        offset: u64,
    },
    /// The archive holds only the trailer.
    #[error("bundle: archive is empty (no sw-description)")]
    Empty,
    /// `sw-description` is over [`MAX_DESCRIPTION_SIZE`] or `sw-description.sig` over
    /// [`MAX_SIGNATURE_SIZE`]; refused before reading it into memory.
    #[error("bundle: member {name:?} is {size} bytes, over the {max}-byte limit")]
    MemberTooLarge {
        /// Name of the member.
        name: String,
        /// Its size from the cpio header, in bytes.
        size: u32,
        /// The bound that applies to it, in bytes.
        max: u32,
    },
    /// `sw-description` or `sw-description.sig` occurs anywhere but at its fixed position
    /// (member 1 and 2), when reading or writing.
    #[error("bundle: {name:?} appears again at offset {offset}; it may only be member {position}")]
    Misplaced {
        /// The member name (`sw-description` or `sw-description.sig`).
        name: String,
        /// Archive offset of the offending header (reading) or where it would have been written.
        offset: u64,
        /// The only allowed position, for the message (`"1"`, `"2"`, `"1 or 2"`).
        position: &'static str,
    },
    /// [`SwuReader::next_member`] was called before [`SwuReader::read_description`], or
    /// [`SwuWriter::append_image`] before [`SwuWriter::write_description`].
    #[error("bundle: read_description must be called first")]
    DescriptionNotRead,
    /// An `io::Error` converted with `?` by code writing a bundle around this writer (the
    /// reader and writer themselves report I/O through [`SwuError::Cpio`]).
    #[error("bundle: I/O error writing the bundle: {0}")]
    Io(#[from] io::Error),
}

/// The description and signature read from the start of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptionMembers {
    /// The raw `sw-description` bytes (what the signature covers).
    pub description: Vec<u8>,
    /// The raw `sw-description.sig` bytes, if the second member is the signature.
    pub signature: Option<Vec<u8>>,
}

/// Streaming reader of a `.swu`. See the module documentation.
pub struct SwuReader<R: Read> {
    cpio: CpioReader<R>,
    pending: Option<CpioHeader>,
    description_read: bool,
}

/// One image member: its header fields and a `Read` of exactly its bytes. Reading to the end
/// verifies the cpio checksum (an error naming the member otherwise).
pub struct SwuMember<'a, R: Read> {
    /// Member name: the `filename` that sw-description entries refer to.
    pub name: String,
    /// Data size in bytes, from the cpio header (below 4 GiB).
    pub size: u64,
    /// Offset of the member's cpio header in the bundle.
    pub offset: u64,
    data: crate::cpio::MemberData<'a, R>,
}

impl<R: Read> Read for SwuMember<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.data.read(buf)
    }
}

impl<R: Read> SwuReader<R> {
    /// A reader of the bundle starting at the current position of `inner`; member names are
    /// bounded to 254 bytes as SWUpdate bounds them.
    pub fn new(inner: R) -> Self {
        SwuReader {
            cpio: CpioReader::new(inner).with_max_name_len(MAX_NAME_LEN - 1),
            pending: None,
            description_read: false,
        }
    }

    fn read_small(&mut self, header: &CpioHeader, max: u32) -> Result<Vec<u8>, SwuError> {
        if header.size > max {
            return Err(SwuError::MemberTooLarge {
                name: header.name.clone(),
                size: header.size,
                max,
            });
        }
        let mut data = Vec::with_capacity(header.size as usize);
        let offset = self.cpio.offset();
        self.cpio
            .data()
            .read_to_end(&mut data)
            .map_err(|e| CpioError::from_io(e, offset))?;
        Ok(data)
    }

    /// Reads `sw-description` (must be the first member) and `sw-description.sig` if it is the
    /// second member.
    pub fn read_description(&mut self) -> Result<DescriptionMembers, SwuError> {
        let first = self.cpio.next_header()?.ok_or(SwuError::Empty)?;
        if first.name != DESCRIPTION_NAME {
            return Err(SwuError::DescriptionNotFirst {
                found: first.name,
                offset: first.offset,
            });
        }
        let description = self.read_small(&first, MAX_DESCRIPTION_SIZE)?;
        let signature = match self.cpio.next_header()? {
            Some(h) if h.name == SIGNATURE_NAME => Some(self.read_small(&h, MAX_SIGNATURE_SIZE)?),
            other => {
                self.pending = other;
                None
            }
        };
        self.description_read = true;
        Ok(DescriptionMembers {
            description,
            signature,
        })
    }

    /// The next member after the description (and signature); `None` after the trailer. A
    /// second `sw-description` or a misplaced `sw-description.sig` is an error.
    pub fn next_member(&mut self) -> Result<Option<SwuMember<'_, R>>, SwuError> {
        if !self.description_read {
            return Err(SwuError::DescriptionNotRead);
        }
        let header = match self.pending.take() {
            Some(h) => h,
            None => match self.cpio.next_header()? {
                Some(h) => h,
                None => return Ok(None),
            },
        };
        let position = match header.name.as_str() {
            DESCRIPTION_NAME => Some("1"),
            SIGNATURE_NAME => Some("2"),
            _ => None,
        };
        if let Some(position) = position {
            return Err(SwuError::Misplaced {
                name: header.name,
                offset: header.offset,
                position,
            });
        }
        Ok(Some(SwuMember {
            name: header.name,
            size: u64::from(header.size),
            offset: header.offset,
            data: self.cpio.data(),
        }))
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.cpio.offset()
    }

    /// Gives back the underlying reader, positioned wherever reading stopped.
    pub fn into_inner(self) -> R {
        self.cpio.into_inner()
    }

    /// The underlying reader, e.g. to read the padding after the trailer.
    pub fn get_mut(&mut self) -> &mut R {
        self.cpio.get_mut()
    }
}

/// Writer of a `.swu`: [`SwuWriter::write_description`] first, then [`SwuWriter::append_image`]
/// per image, then [`SwuWriter::finish`]. All members get mode 0644, uid/gid 0, the writer's
/// mtime and inode = index, so output depends only on the inputs.
pub struct SwuWriter<W: Write> {
    cpio: CpioWriter<W>,
    description_written: bool,
}

impl<W: Write> SwuWriter<W> {
    /// `mtime`: unix seconds stamped on every member (e.g. `SOURCE_DATE_EPOCH`, else 0).
    pub fn new(inner: W, mtime: u32) -> Self {
        SwuWriter {
            cpio: CpioWriter::new(inner).with_mtime(mtime),
            description_written: false,
        }
    }

    /// Writes `sw-description` and, if given, `sw-description.sig`.
    pub fn write_description(
        &mut self,
        description: &[u8],
        signature: Option<&[u8]>,
    ) -> Result<(), SwuError> {
        if self.description_written {
            return Err(SwuError::Misplaced {
                name: DESCRIPTION_NAME.into(),
                offset: self.cpio.offset(),
                position: "1",
            });
        }
        self.cpio
            .append_bytes(DESCRIPTION_NAME, MODE_REGULAR_0644, description)?;
        if let Some(sig) = signature {
            self.cpio
                .append_bytes(SIGNATURE_NAME, MODE_REGULAR_0644, sig)?;
        }
        self.description_written = true;
        Ok(())
    }

    /// Streams one image of `size` bytes whose 070702 checksum is `check` (see
    /// [`crate::cpio::Checksum`]); fails if `data` yields other bytes.
    pub fn append_image<R: Read>(
        &mut self,
        name: &str,
        size: u64,
        check: u32,
        data: R,
    ) -> Result<(), SwuError> {
        if !self.description_written {
            return Err(SwuError::DescriptionNotRead);
        }
        if name == DESCRIPTION_NAME || name == SIGNATURE_NAME {
            return Err(SwuError::Misplaced {
                name: name.into(),
                offset: self.cpio.offset(),
                position: "1 or 2",
            });
        }
        if name.len() + 1 >= MAX_NAME_LEN as usize {
            return Err(CpioError::BadName {
                name: name.into(),
                reason: "255 bytes or longer (SWUpdate's limit)",
            }
            .into());
        }
        self.cpio.append(
            &MemberSpec {
                name,
                mode: MODE_REGULAR_0644,
                size,
                check,
            },
            data,
        )?;
        Ok(())
    }

    /// Appends an image held in memory.
    pub fn append_image_bytes(&mut self, name: &str, data: &[u8]) -> Result<(), SwuError> {
        self.append_image(name, data.len() as u64, Checksum::of(data), data)
    }

    /// Bytes written so far.
    pub fn offset(&self) -> u64 {
        self.cpio.offset()
    }

    /// Writes the trailer and returns the inner writer.
    pub fn finish(self) -> Result<W, SwuError> {
        Ok(self.cpio.finish()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_enforced_both_ways() {
        let mut w = SwuWriter::new(Vec::new(), 0);
        assert!(w.append_image_bytes("a", b"x").is_err());
        w.write_description(b"software = {};", Some(b"SIG"))
            .unwrap();
        w.append_image_bytes("a.img", b"hello").unwrap();
        w.append_image_bytes("b.img", b"").unwrap();
        assert!(w.append_image_bytes(SIGNATURE_NAME, b"").is_err());
        // SWUpdate's name buffer: 254 bytes + NUL fit, 255 do not.
        assert!(w.append_image_bytes(&"n".repeat(255), b"").is_err());
        let bytes = w.finish().unwrap();

        let mut r = SwuReader::new(&bytes[..]);
        assert!(matches!(r.next_member(), Err(SwuError::DescriptionNotRead)));
        let d = r.read_description().unwrap();
        assert_eq!(d.description, b"software = {};");
        assert_eq!(d.signature.as_deref(), Some(&b"SIG"[..]));
        let mut m = r.next_member().unwrap().unwrap();
        assert_eq!((m.name.as_str(), m.size), ("a.img", 5));
        let mut data = String::new();
        m.read_to_string(&mut data).unwrap();
        assert_eq!(data, "hello");
        assert_eq!(r.next_member().unwrap().unwrap().name, "b.img");
        assert!(r.next_member().unwrap().is_none());

        let mut w = SwuWriter::new(Vec::new(), 0);
        w.write_description(b"d", None).unwrap();
        w.append_image_bytes(&"n".repeat(254), b"x").unwrap();
        let bytes = w.finish().unwrap();
        let mut r = SwuReader::new(&bytes[..]);
        r.read_description().unwrap();
        assert_eq!(r.next_member().unwrap().unwrap().name.len(), 254);

        // Unsigned bundle: the first image comes back from next_member.
        let mut w = SwuWriter::new(Vec::new(), 0);
        w.write_description(b"d", None).unwrap();
        w.append_image_bytes("a.img", b"hello").unwrap();
        let bytes = w.finish().unwrap();
        let mut r = SwuReader::new(&bytes[..]);
        assert_eq!(r.read_description().unwrap().signature, None);
        assert_eq!(r.next_member().unwrap().unwrap().name, "a.img");
    }

    #[test]
    fn description_must_be_first_and_signature_second() {
        let mut c = CpioWriter::new(Vec::new());
        c.append_bytes("a.img", MODE_REGULAR_0644, b"x").unwrap();
        c.append_bytes(DESCRIPTION_NAME, MODE_REGULAR_0644, b"d")
            .unwrap();
        let bytes = c.finish().unwrap();
        let err = SwuReader::new(&bytes[..]).read_description().unwrap_err();
        assert!(err.to_string().contains("\"a.img\""), "{err}");

        let mut c = CpioWriter::new(Vec::new());
        c.append_bytes(DESCRIPTION_NAME, MODE_REGULAR_0644, b"d")
            .unwrap();
        c.append_bytes("a.img", MODE_REGULAR_0644, b"x").unwrap();
        c.append_bytes(SIGNATURE_NAME, MODE_REGULAR_0644, b"s")
            .unwrap();
        let bytes = c.finish().unwrap();
        let mut r = SwuReader::new(&bytes[..]);
        assert_eq!(r.read_description().unwrap().signature, None);
        r.next_member().unwrap().unwrap();
        assert!(matches!(r.next_member(), Err(SwuError::Misplaced { .. })));
    }
}
