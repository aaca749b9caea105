//! Reader of the dm-log-writes log format, as QEMU's `blklogwrites` block driver writes it
//! (the format of Linux `drivers/md/dm-log-writes.c`, read by xfstests' `replay-log`).
//!
//! Layout (all integers little-endian), in units of the log's sector size `S`:
//!
//! - sector 0: superblock `{ magic u64 = 0x6a736677736872, version u64 = 1, nr_entries u64,
//!   sectorsize u32 }`;
//! - from sector 1, `nr_entries` entries, each one sector holding
//!   `{ sector u64, nr_sectors u64, flags u64, data_len u64 }` (a mark's text follows the
//!   header inside that sector), followed by `nr_sectors` sectors of written data unless the
//!   entry is a discard.
//!
//! `sector` and `nr_sectors` count sectors of size `S` on the recorded disk. Flags: FLUSH 1,
//! FUA 2, DISCARD 4, MARK 8, METADATA 16. QEMU logs a guest flush as an entry with FLUSH and no
//! data, a "write zeroes" as a write whose data are zeros, and never sets FUA (the block layer
//! turns a FUA write into a write followed by a flush).

use std::fmt;

/// Superblock magic.
pub const MAGIC: u64 = 0x006a_7366_7773_6872;
/// The only version there is.
pub const VERSION: u64 = 1;
/// Entry flag: a flush (cache barrier); everything logged before it is durable.
pub const FLAG_FLUSH: u64 = 1;
/// Entry flag: forced unit access (this write is durable on completion).
pub const FLAG_FUA: u64 = 2;
/// Entry flag: discard (no data follow).
pub const FLAG_DISCARD: u64 = 4;
/// Entry flag: a mark (user text, no disk change).
pub const FLAG_MARK: u64 = 8;
/// Entry flag: the write carried file system metadata (informational).
pub const FLAG_METADATA: u64 = 16;
const KNOWN_FLAGS: u64 = FLAG_FLUSH | FLAG_FUA | FLAG_DISCARD | FLAG_MARK | FLAG_METADATA;
const HEADER_LEN: usize = 32;

/// What is wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogError {
    /// Byte offset in the log where the problem is.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed write log at byte {}: {}",
            self.offset, self.reason
        )
    }
}

impl std::error::Error for LogError {}

/// One logged request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log (0-based).
    pub index: usize,
    /// First sector written (in units of [`Log::sector_size`]).
    pub sector: u64,
    /// Number of sectors.
    pub nr_sectors: u64,
    /// Flags (`FLAG_*`).
    pub flags: u64,
    /// Byte offset of the data in the log (meaningful when the entry carries data).
    pub data_offset: usize,
    /// A mark's text (empty otherwise).
    pub mark: String,
}

impl Entry {
    /// A flush or FUA request: a point where the device promised durability.
    pub fn is_barrier(&self) -> bool {
        self.flags & (FLAG_FLUSH | FLAG_FUA) != 0
    }

    /// A request that changes disk content with data in the log.
    pub fn is_write(&self) -> bool {
        self.nr_sectors > 0 && self.flags & (FLAG_DISCARD | FLAG_MARK) == 0
    }
}

/// A parsed log; entries borrow nothing, data are read through [`Log::data`].
#[derive(Debug, Clone)]
pub struct Log {
    /// Sector size of the log and of the entries' sector numbers.
    pub sector_size: u32,
    /// The entries, in log order.
    pub entries: Vec<Entry>,
    bytes: Vec<u8>,
}

fn le_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let slice = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(slice.try_into().ok()?))
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let slice = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(slice.try_into().ok()?))
}

impl Log {
    /// Parses a whole log. Never panics: every inconsistency (bad magic, unknown flags, data
    /// running past the end, absurd sizes) is an error naming the byte offset.
    pub fn parse(bytes: Vec<u8>) -> Result<Log, LogError> {
        let err = |offset: usize, reason: String| LogError {
            offset: offset as u64,
            reason,
        };
        let magic = le_u64(&bytes, 0).ok_or_else(|| {
            err(
                0,
                format!(
                    "{} bytes, too short for the superblock (is this a blklogwrites log?)",
                    bytes.len()
                ),
            )
        })?;
        if magic != MAGIC {
            return Err(err(
                0,
                format!("superblock magic {magic:#x}, expected {MAGIC:#x}"),
            ));
        }
        let version = le_u64(&bytes, 8).ok_or_else(|| err(8, "truncated superblock".into()))?;
        if version != VERSION {
            return Err(err(8, format!("version {version}, only 1 is known")));
        }
        let nr_entries =
            le_u64(&bytes, 16).ok_or_else(|| err(16, "truncated superblock".into()))?;
        let sector_size =
            le_u32(&bytes, 24).ok_or_else(|| err(24, "truncated superblock".into()))?;
        if !sector_size.is_power_of_two() || !(512..=65536).contains(&sector_size) {
            return Err(err(
                24,
                format!("sector size {sector_size} (a power of two 512..=65536 expected)"),
            ));
        }
        let s = sector_size as usize;
        let mut entries = Vec::new();
        let mut pos = s;
        for index in 0..nr_entries {
            let index = usize::try_from(index).map_err(|_| err(16, "too many entries".into()))?;
            let header = bytes.get(pos..pos + s).ok_or_else(|| {
                err(
                    pos,
                    format!(
                        "entry {index} of {nr_entries} missing (log truncated after {} bytes)",
                        bytes.len()
                    ),
                )
            })?;
            let sector = le_u64(header, 0).unwrap_or(0);
            let nr_sectors = le_u64(header, 8).unwrap_or(0);
            let flags = le_u64(header, 16).unwrap_or(0);
            let data_len = le_u64(header, 24).unwrap_or(0);
            if flags & !KNOWN_FLAGS != 0 {
                return Err(err(
                    pos + 16,
                    format!("entry {index}: unknown flags {flags:#x}"),
                ));
            }
            let mark = if flags & FLAG_MARK != 0 {
                let len = usize::try_from(data_len)
                    .ok()
                    .filter(|l| *l <= s - HEADER_LEN)
                    .ok_or_else(|| {
                        err(
                            pos + 24,
                            format!("entry {index}: mark of {data_len} bytes does not fit"),
                        )
                    })?;
                String::from_utf8_lossy(&header[HEADER_LEN..HEADER_LEN + len]).into_owned()
            } else {
                String::new()
            };
            pos += s;
            let data_offset = pos;
            if flags & FLAG_DISCARD == 0 && flags & FLAG_MARK == 0 {
                let len = nr_sectors
                    .checked_mul(sector_size as u64)
                    .and_then(|l| usize::try_from(l).ok())
                    .filter(|l| data_offset.checked_add(*l).is_some_and(|e| e <= bytes.len()))
                    .ok_or_else(|| {
                        err(
                            data_offset,
                            format!(
                                "entry {index}: {nr_sectors} data sectors run past the end of the log ({} bytes)",
                                bytes.len()
                            ),
                        )
                    })?;
                pos += len;
            }
            entries.push(Entry {
                index,
                sector,
                nr_sectors,
                flags,
                data_offset,
                mark,
            });
        }
        Ok(Log {
            sector_size,
            entries,
            bytes,
        })
    }

    /// The data of entry `entry` (empty for flushes, discards, marks).
    pub fn data(&self, entry: &Entry) -> &[u8] {
        if !entry.is_write() {
            return &[];
        }
        let len = entry.nr_sectors as usize * self.sector_size as usize;
        self.bytes
            .get(entry.data_offset..entry.data_offset + len)
            .unwrap_or(&[])
    }
}

/// Builds a log in the format [`Log::parse`] reads (for tests and tools).
#[derive(Debug, Clone)]
pub struct LogWriter {
    sector_size: usize,
    body: Vec<u8>,
    count: u64,
}

impl LogWriter {
    /// An empty log with 512-byte sectors.
    pub fn new() -> LogWriter {
        LogWriter {
            sector_size: 512,
            body: Vec::new(),
            count: 0,
        }
    }

    fn header(&mut self, sector: u64, nr_sectors: u64, flags: u64, mark: &[u8]) {
        let mut h = vec![0u8; self.sector_size];
        h[0..8].copy_from_slice(&sector.to_le_bytes());
        h[8..16].copy_from_slice(&nr_sectors.to_le_bytes());
        h[16..24].copy_from_slice(&flags.to_le_bytes());
        h[24..32].copy_from_slice(&(mark.len() as u64).to_le_bytes());
        h[HEADER_LEN..HEADER_LEN + mark.len()].copy_from_slice(mark);
        self.body.extend_from_slice(&h);
        self.count += 1;
    }

    /// Logs a write of `data` (a whole number of sectors) at `sector`.
    pub fn write(&mut self, sector: u64, data: &[u8]) -> &mut LogWriter {
        let n = data.len().div_ceil(self.sector_size);
        self.header(sector, n as u64, 0, &[]);
        self.body.extend_from_slice(data);
        self.body
            .resize(self.body.len() + n * self.sector_size - data.len(), 0);
        self
    }

    /// Logs a flush.
    pub fn flush(&mut self) -> &mut LogWriter {
        self.header(0, 0, FLAG_FLUSH, &[]);
        self
    }

    /// Logs a mark with `text`.
    pub fn mark(&mut self, text: &str) -> &mut LogWriter {
        self.header(0, 0, FLAG_MARK, text.as_bytes());
        self
    }

    /// The log's bytes.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.sector_size];
        out[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        out[8..16].copy_from_slice(&VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&self.count.to_le_bytes());
        out[24..28].copy_from_slice(&(self.sector_size as u32).to_le_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

impl Default for LogWriter {
    fn default() -> Self {
        LogWriter::new()
    }
}
