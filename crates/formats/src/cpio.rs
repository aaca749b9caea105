//! Streaming cpio in the two "new ASCII" formats SWUpdate accepts.
//!
//! * `070701` ("newc"): no data checksum.
//! * `070702` ("crc"): header field `check` = low 32 bits of the sum of all data bytes (as unsigned
//!   bytes). Despite the name this is not a CRC; GNU cpio and SWUpdate compute it the same way.
//!
//! Layout of one member: 110-byte ASCII header (magic + 13 fields of 8 hex digits), the name
//! including its NUL terminator, padding to a multiple of 4 (counted from the archive start), the
//! data, padding to a multiple of 4. The archive ends with a member named `TRAILER!!!`; GNU cpio
//! then pads the archive to a multiple of 512 bytes, which [`CpioWriter::finish`] does too.
//!
//! [`CpioReader`] never buffers member data: call [`CpioReader::next_header`], then read exactly
//! that member's bytes through [`CpioReader::data`] (or let the next `next_header` skip them).
//! The 070702 checksum is verified when the last data byte has been read (the read that reaches
//! the end returns an error if it does not match) and also when unread data is skipped.
//!
//! [`CpioWriter`] writes 070702 with fixed metadata (uid/gid 0, inode = member index, one mtime
//! for all members) so that archives are byte-reproducible. Because the checksum precedes the
//! data, the caller passes it in ([`Checksum`] computes it during a first pass over the data);
//! the writer re-checks size and checksum while copying and fails if the data changed.

use std::io::{self, Read, Write};

use thiserror::Error;

/// Magic of the newc format (no checksum).
pub const MAGIC_NEWC: &[u8; 6] = b"070701";
/// Magic of the crc format (byte-sum checksum).
pub const MAGIC_CRC: &[u8; 6] = b"070702";
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 110;
/// Name of the end-of-archive member.
pub const TRAILER_NAME: &str = "TRAILER!!!";
/// Largest member the format can describe: the size field has 8 hex digits.
pub const MAX_MEMBER_SIZE: u64 = u32::MAX as u64;
/// Default bound for a member name (including its NUL), far above SWUpdate's 255.
pub const DEFAULT_MAX_NAME_LEN: u32 = 4096;
/// Regular file, rw-r--r--.
pub const MODE_REGULAR_0644: u32 = 0o100644;

/// Header bytes for a message: quoted text when printable ASCII, else hex bytes (`16 03 01 …`),
/// never Rust escapes.
fn shown(bytes: &[u8]) -> String {
    if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("\"{}\"", String::from_utf8_lossy(bytes))
    } else {
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("bytes {}", hex.join(" "))
    }
}

/// Errors of the cpio reader and writer. Offsets are byte offsets from the archive start.
#[derive(Debug, Error)]
pub enum CpioError {
    /// Reading from or writing to the underlying stream failed (other than `Interrupted`, which
    /// is retried).
    #[error("cpio: I/O error at offset {offset}: {source}")]
    Io {
        /// Archive offset at which the failing read or write started.
        offset: u64,
        /// The error of the underlying reader or writer.
        #[source]
        source: io::Error,
    },
    /// The input ended inside a header, a name, member data or padding.
    #[error("cpio: archive truncated at offset {offset} while reading {what}")]
    Truncated {
        /// Offset at which the input ended (bytes consumed so far).
        offset: u64,
        /// The part being read, for the message (e.g. `a member header`, `data of member "x"`).
        what: String,
    },
    /// The first 6 bytes of a header are neither `070701` nor `070702` (e.g. not a cpio file,
    /// or an `odc`/binary cpio, which SWUpdate does not accept either).
    #[error("cpio: bad magic {} at offset {offset} (expected \"070701\" or \"070702\"; not a .swu / cpio newc archive?)", shown(found))]
    BadMagic {
        /// Offset of the header.
        offset: u64,
        /// The 6 bytes found instead of a magic.
        found: Vec<u8>,
    },
    /// One of the 13 header fields is not exactly 8 hexadecimal digits.
    #[error(
        "cpio: header field {field} at offset {offset} is not 8 hex digits: {}",
        shown(found)
    )]
    BadHexField {
        /// Name of the field as in the cpio(5) header layout (`filesize`, `namesize`, `check`, ...).
        field: &'static str,
        /// Offset of the field itself (not of the header).
        offset: u64,
        /// The 8 bytes found.
        found: Vec<u8>,
    },
    /// A header's `namesize` is 0 or above the reader's bound
    /// ([`CpioReader::with_max_name_len`]).
    #[error(
        "cpio: name size {size} at offset {offset} is invalid (must be 1..={max} including NUL)"
    )]
    BadNameSize {
        /// Offset of the header.
        offset: u64,
        /// The `namesize` field (name length including its NUL).
        size: u32,
        /// The largest `namesize` accepted.
        max: u32,
    },
    /// The name's last byte is not NUL, or the name contains a NUL before its end (a C reader
    /// such as SWUpdate would see a shorter name).
    #[error("cpio: name at offset {offset} is not NUL-terminated")]
    NameNotTerminated {
        /// Offset of the header.
        offset: u64,
    },
    /// The member name is not valid UTF-8.
    #[error("cpio: name at offset {offset} is not valid UTF-8")]
    NameNotUtf8 {
        /// Offset of the header.
        offset: u64,
    },
    /// A `070702` member's data does not sum to the header's `check` field (detected when its
    /// last byte is read or when the rest is skipped).
    #[error("cpio: checksum mismatch in member {name:?} (header at offset {offset}): header says {expected:#010x}, data sums to {actual:#010x}")]
    Checksum {
        /// Name of the member.
        name: String,
        /// Offset of the member's header.
        offset: u64,
        /// The header's `check` field.
        expected: u32,
        /// The byte sum of the data actually read.
        actual: u32,
    },
    /// A member to write is larger than [`MAX_MEMBER_SIZE`] (the 8-hex-digit size field).
    #[error(
        "cpio: member {name:?} is {size} bytes, over the cpio limit of 4 GiB - 1 ({max} bytes)"
    )]
    TooLarge {
        /// Name of the member.
        name: String,
        /// Its size in bytes.
        size: u64,
        /// The limit, [`MAX_MEMBER_SIZE`].
        max: u64,
    },
    /// A member name to write is empty, contains a NUL, is `TRAILER!!!` or is too long.
    #[error("cpio: member name {name:?} is invalid: {reason}")]
    BadName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks (`"empty"`, `"contains NUL"`, ...).
        reason: &'static str,
    },
    /// The data source of [`CpioWriter::append`] yielded more or fewer bytes than
    /// [`MemberSpec::size`] announced.
    #[error("cpio: member {name:?}: expected {expected} bytes of data, the source gave {actual}")]
    SizeMismatch {
        /// Name of the member.
        name: String,
        /// The announced size in bytes.
        expected: u64,
        /// Bytes the source yielded (counting stops at the first byte over `expected`).
        actual: u64,
    },
    /// The data copied by [`CpioWriter::append`] does not sum to [`MemberSpec::check`]: the
    /// source changed since the checksum pass. The header already written is then wrong, so the
    /// archive must be discarded.
    #[error("cpio: member {name:?}: data checksum {actual:#010x} differs from the announced {expected:#010x} (source changed between passes?)")]
    ChecksumChanged {
        /// Name of the member.
        name: String,
        /// The checksum announced in the header.
        expected: u32,
        /// The byte sum of the data actually copied.
        actual: u32,
    },
    /// A member was appended, or [`CpioWriter::finish`] called, after the trailer was written.
    #[error("cpio: archive already finished")]
    Finished,
}

impl CpioError {
    /// Wraps this error for returning through `std::io::Read`/`Write`.
    pub fn into_io(self) -> io::Error {
        let kind = match &self {
            CpioError::Io { source, .. } => source.kind(),
            CpioError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, self)
    }

    /// Recovers a `CpioError` from an `io::Error` produced by [`CpioError::into_io`], or wraps a
    /// plain I/O error.
    pub fn from_io(err: io::Error, offset: u64) -> CpioError {
        if err.get_ref().is_some_and(|e| e.is::<CpioError>()) {
            match err.into_inner().map(|e| e.downcast::<CpioError>()) {
                Some(Ok(inner)) => return *inner,
                Some(Err(other)) => {
                    return CpioError::Io {
                        offset,
                        source: io::Error::other(other),
                    }
                }
                None => unreachable!("get_ref was Some"),
            }
        }
        CpioError::Io {
            offset,
            source: err,
        }
    }
}

/// The two header formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpioFormat {
    /// `070701`, no checksum.
    Newc,
    /// `070702`, byte-sum checksum.
    Crc,
}

/// A parsed member header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioHeader {
    /// Which of the two formats the header's magic announced.
    pub format: CpioFormat,
    /// Inode number (keel writes the member index, 1-based; not checked on reading).
    pub ino: u32,
    /// File type and permission bits as in `st_mode` (keel writes [`MODE_REGULAR_0644`]).
    pub mode: u32,
    /// Owner user id (0 in archives keel writes).
    pub uid: u32,
    /// Owner group id (0 in archives keel writes).
    pub gid: u32,
    /// Number of hard links (1 in archives keel writes).
    pub nlink: u32,
    /// Modification time, unix seconds (`SOURCE_DATE_EPOCH` or 0 in archives keel writes).
    pub mtime: u32,
    /// Data size in bytes.
    pub size: u32,
    /// Major number of the device holding the file (0 in archives keel writes).
    pub dev_major: u32,
    /// Minor number of the device holding the file (0 in archives keel writes).
    pub dev_minor: u32,
    /// Major number for a device-special member (0 for regular files).
    pub rdev_major: u32,
    /// Minor number for a device-special member (0 for regular files).
    pub rdev_minor: u32,
    /// Checksum field (meaningful for [`CpioFormat::Crc`] only).
    pub check: u32,
    /// Member name without the NUL terminator.
    pub name: String,
    /// Offset of this header from the archive start.
    pub offset: u64,
}

impl CpioHeader {
    /// Whether this is the end-of-archive marker.
    pub fn is_trailer(&self) -> bool {
        self.name == TRAILER_NAME
    }
}

/// The 070702 checksum: wrapping sum of all data bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum(u32);

impl Checksum {
    /// The checksum of no data (0).
    pub fn new() -> Self {
        Checksum(0)
    }
    /// Adds `data`, the next bytes of the member, to the sum; call in data order over all bytes.
    pub fn update(&mut self, data: &[u8]) {
        // Summing in u64 chunks first keeps this fast for multi-GiB images.
        let mut acc: u64 = 0;
        for chunk in data.chunks(1 << 20) {
            acc = acc.wrapping_add(chunk.iter().map(|&b| u64::from(b)).sum::<u64>());
        }
        self.0 = self.0.wrapping_add(acc as u32);
    }
    /// The sum so far, as written to the header's `check` field.
    pub fn value(&self) -> u32 {
        self.0
    }
    /// Checksum of a byte slice.
    pub fn of(data: &[u8]) -> u32 {
        let mut c = Checksum::new();
        c.update(data);
        c.value()
    }
}

fn pad4(offset: u64) -> u64 {
    (4 - (offset % 4)) % 4
}

fn parse_hex8(bytes: &[u8], field: &'static str, offset: u64) -> Result<u32, CpioError> {
    let bad = || CpioError::BadHexField {
        field,
        offset,
        found: bytes.to_vec(),
    };
    if bytes.len() != 8 {
        return Err(bad());
    }
    let mut value: u32 = 0;
    for &b in bytes {
        let digit = (b as char).to_digit(16).ok_or_else(bad)?;
        value = (value << 4) | digit;
    }
    Ok(value)
}

/// State of the member whose data is being read.
#[derive(Debug)]
struct Current {
    name: String,
    header_offset: u64,
    remaining: u64,
    format: CpioFormat,
    expected_check: u32,
    sum: Checksum,
    verified: bool,
}

/// Streaming cpio reader (070701 and 070702). See the module documentation.
pub struct CpioReader<R: Read> {
    inner: R,
    offset: u64,
    max_name_len: u32,
    current: Option<Current>,
    done: bool,
}

impl<R: Read> CpioReader<R> {
    /// A reader of the archive starting at the current position of `inner` (offsets count from
    /// there), bounding names by [`DEFAULT_MAX_NAME_LEN`].
    pub fn new(inner: R) -> Self {
        CpioReader {
            inner,
            offset: 0,
            max_name_len: DEFAULT_MAX_NAME_LEN,
            current: None,
            done: false,
        }
    }

    /// Bound for a member name length including its NUL (default [`DEFAULT_MAX_NAME_LEN`]).
    pub fn with_max_name_len(mut self, max: u32) -> Self {
        self.max_name_len = max.max(1);
        self
    }

    /// Bytes consumed from the underlying reader so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The underlying reader (positioned wherever reading stopped).
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The underlying reader, e.g. to read what follows the trailer.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    fn read_exact_tracked(&mut self, buf: &mut [u8], what: &str) -> Result<(), CpioError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => {
                    return Err(CpioError::Truncated {
                        offset: self.offset,
                        what: what.to_string(),
                    });
                }
                Ok(n) => {
                    filled += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(CpioError::Io {
                        offset: self.offset,
                        source: e,
                    })
                }
            }
        }
        Ok(())
    }

    fn skip_padding(&mut self, what: &str) -> Result<(), CpioError> {
        let n = pad4(self.offset) as usize;
        let mut pad = [0u8; 3];
        self.read_exact_tracked(&mut pad[..n], what)
    }

    /// Reads the next member header, skipping (and checksum-verifying) any unread data of the
    /// previous member. Returns `None` at the `TRAILER!!!` member (and on every call after it).
    pub fn next_header(&mut self) -> Result<Option<CpioHeader>, CpioError> {
        if self.done {
            return Ok(None);
        }
        self.skip_data()?;
        self.current = None;

        let header_offset = self.offset;
        let mut raw = [0u8; HEADER_LEN];
        self.read_exact_tracked(&mut raw, "a member header")?;
        let format = match &raw[..6] {
            m if m == MAGIC_NEWC => CpioFormat::Newc,
            m if m == MAGIC_CRC => CpioFormat::Crc,
            m => {
                return Err(CpioError::BadMagic {
                    offset: header_offset,
                    found: m.to_vec(),
                })
            }
        };
        const FIELDS: [&str; 13] = [
            "ino",
            "mode",
            "uid",
            "gid",
            "nlink",
            "mtime",
            "filesize",
            "devmajor",
            "devminor",
            "rdevmajor",
            "rdevminor",
            "namesize",
            "check",
        ];
        let mut values = [0u32; 13];
        for (i, field) in FIELDS.iter().enumerate() {
            let start = 6 + i * 8;
            values[i] = parse_hex8(&raw[start..start + 8], field, header_offset + start as u64)?;
        }
        let namesize = values[11];
        if namesize == 0 || namesize > self.max_name_len {
            return Err(CpioError::BadNameSize {
                offset: header_offset,
                size: namesize,
                max: self.max_name_len,
            });
        }
        let mut name = vec![0u8; namesize as usize];
        self.read_exact_tracked(&mut name, "a member name")?;
        if name.pop() != Some(0) {
            return Err(CpioError::NameNotTerminated {
                offset: header_offset,
            });
        }
        // Embedded NULs end the name for C readers (SWUpdate); reject rather than disagree.
        if name.contains(&0) {
            return Err(CpioError::NameNotTerminated {
                offset: header_offset,
            });
        }
        let name = String::from_utf8(name).map_err(|_| CpioError::NameNotUtf8 {
            offset: header_offset,
        })?;
        self.skip_padding("name padding")?;

        let header = CpioHeader {
            format,
            ino: values[0],
            mode: values[1],
            uid: values[2],
            gid: values[3],
            nlink: values[4],
            mtime: values[5],
            size: values[6],
            dev_major: values[7],
            dev_minor: values[8],
            rdev_major: values[9],
            rdev_minor: values[10],
            check: values[12],
            name,
            offset: header_offset,
        };
        if header.is_trailer() {
            self.done = true;
            return Ok(None);
        }
        self.current = Some(Current {
            name: header.name.clone(),
            header_offset,
            remaining: u64::from(header.size),
            format,
            expected_check: header.check,
            sum: Checksum::new(),
            verified: false,
        });
        if header.size == 0 {
            self.finish_member()?;
        }
        Ok(Some(header))
    }

    /// A `Read` of the current member's remaining data; it ends exactly at the member's end.
    pub fn data(&mut self) -> MemberData<'_, R> {
        MemberData { reader: self }
    }

    /// Skips the rest of the current member's data (verifying its checksum). Returns the number
    /// of bytes skipped.
    pub fn skip_data(&mut self) -> Result<u64, CpioError> {
        let mut skipped = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.read_member(&mut buf)?;
            if n == 0 {
                return Ok(skipped);
            }
            skipped += n as u64;
        }
    }

    fn finish_member(&mut self) -> Result<(), CpioError> {
        let Some(cur) = self.current.as_mut() else {
            return Ok(());
        };
        if cur.verified {
            return Ok(());
        }
        cur.verified = true;
        if cur.format == CpioFormat::Crc && cur.sum.value() != cur.expected_check {
            return Err(CpioError::Checksum {
                name: cur.name.clone(),
                offset: cur.header_offset,
                expected: cur.expected_check,
                actual: cur.sum.value(),
            });
        }
        let name = cur.name.clone();
        self.skip_padding(&format!("data padding of {name:?}"))
    }

    fn read_member(&mut self, buf: &mut [u8]) -> Result<usize, CpioError> {
        let Some(cur) = self.current.as_mut() else {
            return Ok(0);
        };
        if cur.remaining == 0 {
            self.finish_member()?;
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(cur.remaining).unwrap_or(usize::MAX));
        let n = loop {
            match self.inner.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(CpioError::Io {
                        offset: self.offset,
                        source: e,
                    })
                }
            }
        };
        if n == 0 && want > 0 {
            let what = format!("data of member {:?}", cur.name);
            return Err(CpioError::Truncated {
                offset: self.offset,
                what,
            });
        }
        cur.remaining -= n as u64;
        cur.sum.update(&buf[..n]);
        self.offset += n as u64;
        if cur.remaining == 0 {
            self.finish_member()?;
        }
        Ok(n)
    }
}

/// Reader of one member's data, from [`CpioReader::data`]. Errors (truncation, checksum) come
/// back as `io::Error` wrapping a [`CpioError`]; use [`CpioError::from_io`] to get it back.
pub struct MemberData<'a, R: Read> {
    reader: &'a mut CpioReader<R>,
}

impl<R: Read> MemberData<'_, R> {
    /// Bytes of this member not read yet.
    pub fn remaining(&self) -> u64 {
        self.reader.current.as_ref().map_or(0, |c| c.remaining)
    }
}

impl<R: Read> Read for MemberData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read_member(buf).map_err(CpioError::into_io)
    }
}

/// Options of one member written by [`CpioWriter`].
#[derive(Debug, Clone)]
pub struct MemberSpec<'a> {
    /// Member name: non-empty, no NUL, not `TRAILER!!!`, at most 4095 bytes.
    pub name: &'a str,
    /// File type and permission bits for the header (usually [`MODE_REGULAR_0644`]).
    pub mode: u32,
    /// Exact data size in bytes, at most [`MAX_MEMBER_SIZE`].
    pub size: u64,
    /// The 070702 checksum of the data ([`Checksum`]); verified while copying.
    pub check: u32,
}

/// Streaming 070702 writer with reproducible metadata. See the module documentation.
pub struct CpioWriter<W: Write> {
    inner: W,
    offset: u64,
    mtime: u32,
    next_ino: u32,
    finished: bool,
}

impl<W: Write> CpioWriter<W> {
    /// A writer stamping every member with mtime 0.
    pub fn new(inner: W) -> Self {
        CpioWriter {
            inner,
            offset: 0,
            mtime: 0,
            next_ino: 1,
            finished: false,
        }
    }

    /// The mtime (unix seconds) written into every member header (e.g. `SOURCE_DATE_EPOCH`).
    pub fn with_mtime(mut self, mtime: u32) -> Self {
        self.mtime = mtime;
        self
    }

    /// Bytes written so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), CpioError> {
        self.inner
            .write_all(bytes)
            .map_err(|source| CpioError::Io {
                offset: self.offset,
                source,
            })?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn put_header(
        &mut self,
        name: &str,
        ino: u32,
        mode: u32,
        size: u32,
        check: u32,
    ) -> Result<(), CpioError> {
        let namesize = u32::try_from(name.len() + 1)
            .ok()
            .filter(|&n| n <= DEFAULT_MAX_NAME_LEN)
            .ok_or_else(|| CpioError::BadName {
                name: name.to_string(),
                reason: "too long",
            })?;
        let mtime = if name == TRAILER_NAME { 0 } else { self.mtime };
        let header = encode_header(ino, mode, mtime, size, namesize, check);
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        let pad = pad4(self.offset) as usize;
        self.put(&[0u8; 3][..pad])
    }

    /// Appends a member whose data is streamed from `data`, which must yield exactly
    /// `spec.size` bytes summing to `spec.check`.
    pub fn append<R: Read>(&mut self, spec: &MemberSpec<'_>, mut data: R) -> Result<(), CpioError> {
        if self.finished {
            return Err(CpioError::Finished);
        }
        validate_name(spec.name)?;
        if spec.size > MAX_MEMBER_SIZE {
            return Err(CpioError::TooLarge {
                name: spec.name.to_string(),
                size: spec.size,
                max: MAX_MEMBER_SIZE,
            });
        }
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1);
        self.put_header(spec.name, ino, spec.mode, spec.size as u32, spec.check)?;

        let mut buf = vec![0u8; 256 * 1024];
        let mut copied = 0u64;
        let mut sum = Checksum::new();
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(CpioError::Io {
                        offset: self.offset,
                        source: e,
                    })
                }
            };
            copied += n as u64;
            if copied > spec.size {
                return Err(CpioError::SizeMismatch {
                    name: spec.name.to_string(),
                    expected: spec.size,
                    actual: copied,
                });
            }
            sum.update(&buf[..n]);
            self.put(&buf[..n])?;
        }
        if copied != spec.size {
            return Err(CpioError::SizeMismatch {
                name: spec.name.to_string(),
                expected: spec.size,
                actual: copied,
            });
        }
        if sum.value() != spec.check {
            return Err(CpioError::ChecksumChanged {
                name: spec.name.to_string(),
                expected: spec.check,
                actual: sum.value(),
            });
        }
        let pad = pad4(self.offset) as usize;
        self.put(&[0u8; 3][..pad])
    }

    /// Appends a member from memory (checksum computed here).
    pub fn append_bytes(&mut self, name: &str, mode: u32, data: &[u8]) -> Result<(), CpioError> {
        let spec = MemberSpec {
            name,
            mode,
            size: data.len() as u64,
            check: Checksum::of(data),
        };
        self.append(&spec, data)
    }

    /// Writes the `TRAILER!!!` member, pads the archive to a multiple of 512 bytes like GNU cpio,
    /// flushes and returns the inner writer.
    pub fn finish(mut self) -> Result<W, CpioError> {
        if self.finished {
            return Err(CpioError::Finished);
        }
        self.finished = true;
        self.put_header(TRAILER_NAME, 0, 0, 0, 0)?;
        let pad = ((512 - (self.offset % 512)) % 512) as usize;
        self.put(&vec![0u8; pad])?;
        self.inner.flush().map_err(|source| CpioError::Io {
            offset: self.offset,
            source,
        })?;
        Ok(self.inner)
    }
}

fn validate_name(name: &str) -> Result<(), CpioError> {
    let bad = |reason| {
        Err(CpioError::BadName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.contains('\0') {
        return bad("contains NUL");
    }
    if name == TRAILER_NAME {
        return bad("reserved for the end-of-archive marker");
    }
    Ok(())
}

/// The 110-byte 070702 header text for the given fields (nlink 1, uid/gid/devices 0).
pub fn encode_header(
    ino: u32,
    mode: u32,
    mtime: u32,
    size: u32,
    namesize: u32,
    check: u32,
) -> String {
    let nlink = 1u32;
    let fields = [
        ino, mode, 0, 0, nlink, mtime, size, 0, 0, 0, 0, namesize, check,
    ];
    let mut s = String::with_capacity(HEADER_LEN);
    s.push_str("070702");
    for f in fields {
        s.push_str(&format!("{f:08X}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new());
        for (name, data) in members {
            w.append_bytes(name, MODE_REGULAR_0644, data).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn roundtrip_and_alignment() {
        let bytes = archive(&[("a", b"hello"), ("bb", b""), ("ccc", &[0xffu8; 1000])]);
        assert_eq!(bytes.len() % 512, 0);
        let mut r = CpioReader::new(&bytes[..]);
        let h = r.next_header().unwrap().unwrap();
        assert_eq!(
            (h.name.as_str(), h.size, h.check),
            ("a", 5, Checksum::of(b"hello"))
        );
        let mut data = Vec::new();
        r.data().read_to_end(&mut data).unwrap();
        assert_eq!(data, b"hello");
        assert_eq!(r.next_header().unwrap().unwrap().name, "bb");
        let h = r.next_header().unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.check), ("ccc", 255_000));
        // Unread data is skipped (and verified) by the next call.
        assert!(r.next_header().unwrap().is_none());
        assert!(r.next_header().unwrap().is_none());
    }

    #[test]
    fn header_test_vector() {
        // Documented in docs/swu-format.md.
        let bytes = archive(&[("sw-description", b"hello\n")]);
        let header = std::str::from_utf8(&bytes[..HEADER_LEN]).unwrap();
        assert_eq!(
            header,
            "07070200000001000081A4000000000000000000000001000000000000000600000000000000000000000000000000\
0000000F0000021E"
        );
        // 110 + 15 name bytes = 125 -> 3 bytes padding, then data at 128.
        assert_eq!(&bytes[110..125], b"sw-description\0");
        assert_eq!(&bytes[128..134], b"hello\n");
    }

    #[test]
    fn checksum_mismatch_is_reported_with_name() {
        let mut bytes = archive(&[("img", b"abcdef")]);
        let pos = bytes.windows(6).position(|w| w == b"abcdef").unwrap();
        bytes[pos] ^= 1;
        let mut r = CpioReader::new(&bytes[..]);
        r.next_header().unwrap();
        let err = r.data().read_to_end(&mut Vec::new()).unwrap_err();
        let err = CpioError::from_io(err, 0);
        assert!(
            matches!(&err, CpioError::Checksum { name, .. } if name == "img"),
            "{err}"
        );
        // Skipping verifies too.
        let mut r = CpioReader::new(&bytes[..]);
        r.next_header().unwrap();
        assert!(matches!(r.next_header(), Err(CpioError::Checksum { .. })));
    }

    #[test]
    fn newc_is_not_checksummed() {
        let mut bytes = archive(&[("img", b"abcdef")]);
        bytes[5] = b'1';
        let pos = bytes.windows(6).position(|w| w == b"abcdef").unwrap();
        bytes[pos] ^= 1;
        let mut r = CpioReader::new(&bytes[..]);
        assert_eq!(r.next_header().unwrap().unwrap().format, CpioFormat::Newc);
        r.data().read_to_end(&mut Vec::new()).unwrap();
    }

    #[test]
    fn malformed_headers_are_errors() {
        let good = archive(&[("img", b"abcdef")]);
        let mut bad_magic = good.clone();
        bad_magic[0] = b'1';
        assert!(matches!(
            CpioReader::new(&bad_magic[..]).next_header(),
            Err(CpioError::BadMagic { .. })
        ));
        // A TLS record (someone saved an HTTPS error page): hex bytes, not `\u{16}` escapes.
        let mut tls = good.clone();
        tls[..6].copy_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x5a, 0x01]);
        let message = CpioReader::new(&tls[..])
            .next_header()
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("cpio: bad magic bytes 16 03 01 00 5a 01 at offset 0"),
            "{message}"
        );
        let message = CpioReader::new(&bad_magic[..])
            .next_header()
            .unwrap_err()
            .to_string();
        assert!(message.contains("bad magic \"170702\""), "{message}");
        let mut bad_hex = good.clone();
        bad_hex[20] = b'g';
        assert!(matches!(
            CpioReader::new(&bad_hex[..]).next_header(),
            Err(CpioError::BadHexField { field: "mode", .. })
        ));
        let truncated = &good[..144];
        let mut r = CpioReader::new(truncated);
        r.next_header().unwrap();
        assert!(matches!(r.next_header(), Err(CpioError::Truncated { .. })));
        let mut r = CpioReader::new(&good[..120]);
        r.next_header().unwrap();
        let err = CpioError::from_io(r.data().read_to_end(&mut Vec::new()).unwrap_err(), 0);
        assert!(matches!(err, CpioError::Truncated { .. }), "{err}");
        let mut r = CpioReader::new(&good[..]).with_max_name_len(3);
        assert!(matches!(
            r.next_header(),
            Err(CpioError::BadNameSize { size: 4, .. })
        ));
    }

    #[test]
    fn writer_rejects_changed_data_and_oversize() {
        let mut w = CpioWriter::new(Vec::new());
        let spec = MemberSpec {
            name: "x",
            mode: MODE_REGULAR_0644,
            size: 3,
            check: 1,
        };
        assert!(matches!(
            w.append(&spec, &b"abc"[..]),
            Err(CpioError::ChecksumChanged { .. })
        ));
        let spec = MemberSpec {
            name: "x",
            mode: MODE_REGULAR_0644,
            size: 4,
            check: 0,
        };
        assert!(matches!(
            w.append(&spec, &b"abc"[..]),
            Err(CpioError::SizeMismatch { .. })
        ));
        let spec = MemberSpec {
            name: "big",
            mode: MODE_REGULAR_0644,
            size: MAX_MEMBER_SIZE + 1,
            check: 0,
        };
        let err = w.append(&spec, io::empty()).unwrap_err();
        assert!(
            err.to_string().contains("big") && err.to_string().contains("4 GiB"),
            "{err}"
        );
    }
}
