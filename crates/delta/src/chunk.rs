//! Dynamic delta path: content-defined chunk indexes (FastCDC 2020), chunk stores and packs,
//! and the device-side assembly that reuses chunks of the seed and of a half-written target.
//!
//! Index layout (little endian, see docs/delta-format.md):
//! ```text
//! 0  magic "KEELCIDX"     8  version u16 = 1   10 hash u8 = 1 (sha256)   11 compression u8 = 1 (zstd)
//! 12 min u32  16 avg u32  20 max u32           24 image_size u64         32 image_sha256 [32]
//! 64 chunk_count u64      72 entries: chunk_count × (len u32, comp_len u32, sha256 [32])
//! end: crc32 of everything before it (u32)
//! ```
//! A chunk's offset is the sum of the lengths before it. The *pack* of an image is the
//! concatenation of the compressed chunks in index order, each distinct chunk once (at its first
//! occurrence), so a device can compute every chunk's pack offset from the index alone and fetch
//! runs of missing chunks with one HTTP Range each.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::apply::SeedRead;
use crate::{hex, sha256, DeltaError};

/// First 8 bytes of every chunk index (`.kidx`).
pub const INDEX_MAGIC: [u8; 8] = *b"KEELCIDX";
const INDEX_VERSION: u16 = 1;
const HASH_SHA256: u8 = 1;
const COMPRESSION_ZSTD: u8 = 1;
const INDEX_HEADER_LEN: usize = 72;
const ENTRY_LEN: usize = 40;

/// The fixed-size start of a chunk index (72 bytes): what a reader needs without the entries,
/// e.g. the image a bundle member's index describes, from the member's first bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkIndexHeader {
    /// The FastCDC limits the image was chunked with (a seed must be chunked the same way).
    pub params: ChunkParams,
    /// Size of the image in bytes (the sum of the chunk lengths).
    pub image_size: u64,
    /// sha256 of the whole image (the `target-sha256` of a `keel-chunked` entry).
    pub image_sha256: [u8; 32],
    /// Number of 40-byte entries following the header (not checked against the data here).
    pub chunk_count: u64,
}

impl ChunkIndexHeader {
    /// Bytes [`ChunkIndexHeader::parse`] reads.
    pub const LEN: usize = INDEX_HEADER_LEN;

    /// Parses and checks the header at the start of `b` (magic, version, algorithms, chunker
    /// limits). The entries and the index CRC are checked only by [`ChunkIndex::from_bytes`].
    pub fn parse(b: &[u8]) -> Result<ChunkIndexHeader, DeltaError> {
        let b = b
            .get(..INDEX_HEADER_LEN)
            .ok_or(DeltaError::Truncated("chunk index header"))?;
        if b[0..8] != INDEX_MAGIC {
            return Err(DeltaError::BadMagic);
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != INDEX_VERSION {
            return Err(DeltaError::UnsupportedVersion(version));
        }
        if b[10] != HASH_SHA256 || b[11] != COMPRESSION_ZSTD {
            return Err(DeltaError::Corrupt(format!(
                "chunk index: unknown hash {} or compression {}",
                b[10], b[11]
            )));
        }
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let params = ChunkParams {
            min: u32_at(12),
            avg: u32_at(16),
            max: u32_at(20),
        };
        params.validate()?;
        Ok(ChunkIndexHeader {
            params,
            image_size: u64_at(24),
            image_sha256: b[32..64].try_into().expect("32 bytes"),
            chunk_count: u64_at(64),
        })
    }
}

/// FastCDC 2020 size limits (min/avg/max chunk size in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkParams {
    /// Smallest chunk in bytes (except the image's last chunk, which may be shorter).
    pub min: u32,
    /// Target average chunk size in bytes.
    pub avg: u32,
    /// Largest chunk in bytes; also the decoder's chunk buffer size.
    pub max: u32,
}

impl Default for ChunkParams {
    /// casync's default sizes: 16/64/256 KiB.
    fn default() -> Self {
        ChunkParams {
            min: 16 << 10,
            avg: 64 << 10,
            max: 256 << 10,
        }
    }
}

impl ChunkParams {
    /// Average size `avg` with casync's ratios (min = avg/4, max = 4·avg).
    pub fn with_average(avg: u32) -> Self {
        ChunkParams {
            min: avg / 4,
            avg,
            max: avg.saturating_mul(4),
        }
    }

    /// Checks the limits of the fastcdc crate (which would panic otherwise).
    pub fn validate(&self) -> Result<(), DeltaError> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max)
            && self.min <= self.avg
            && self.avg <= self.max;
        if ok {
            Ok(())
        } else {
            Err(DeltaError::Corrupt(format!(
                "unsupported chunk sizes {self:?}"
            )))
        }
    }
}

/// One chunk of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkEntry {
    /// Offset of the chunk in the image, in bytes (not stored: the sum of the lengths before it).
    pub offset: u64,
    /// Uncompressed length in bytes, 1..=[`ChunkParams::max`].
    pub len: u32,
    /// Size of the chunk's zstd frame in the store / pack.
    pub comp_len: u32,
    /// sha256 of the uncompressed chunk.
    pub id: [u8; 32],
}

/// The chunk index of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkIndex {
    /// The FastCDC limits the image was chunked with.
    pub params: ChunkParams,
    /// Size of the image in bytes; equals the sum of the chunk lengths.
    pub image_size: u64,
    /// sha256 of the whole image, checked by [`assemble`] at the end.
    pub image_sha256: [u8; 32],
    /// Every chunk in image order, repeated content included (the pack holds it once).
    pub chunks: Vec<ChunkEntry>,
}

fn chunk_error(id: &[u8; 32], reason: impl Into<String>) -> DeltaError {
    DeltaError::Chunk {
        id: hex(id),
        reason: reason.into(),
    }
}

impl ChunkIndex {
    /// Chunks `image`, compresses every chunk with zstd at `level` and hands each *distinct*
    /// chunk (first occurrence, in image order = pack order) to `store`.
    pub fn build(
        image: impl Read,
        params: ChunkParams,
        level: i32,
        mut store: impl FnMut(&ChunkEntry, &[u8]) -> io::Result<()>,
    ) -> Result<ChunkIndex, DeltaError> {
        params.validate()?;
        let mut compressor = zstd::bulk::Compressor::new(level)?;
        compressor.set_parameter(zstd::stream::raw::CParameter::ChecksumFlag(false))?;
        let mut image_hash = Sha256::new();
        let mut seen: HashMap<[u8; 32], u32> = HashMap::new();
        let mut chunks = Vec::new();
        let mut size = 0u64;
        for chunk in fastcdc::v2020::StreamCDC::new(image, params.min, params.avg, params.max) {
            let chunk = chunk.map_err(|e| match e {
                fastcdc::v2020::Error::IoError(io) => DeltaError::Io(io),
                other => DeltaError::Corrupt(format!("chunker: {other:?}")),
            })?;
            image_hash.update(&chunk.data);
            let id = sha256(&chunk.data);
            let len = chunk.length as u32;
            let comp_len = match seen.get(&id) {
                Some(&c) => c,
                None => {
                    let comp = compressor.compress(&chunk.data)?;
                    let entry = ChunkEntry {
                        offset: chunk.offset,
                        len,
                        comp_len: comp.len() as u32,
                        id,
                    };
                    store(&entry, &comp)?;
                    seen.insert(id, entry.comp_len);
                    entry.comp_len
                }
            };
            chunks.push(ChunkEntry {
                offset: chunk.offset,
                len,
                comp_len,
                id,
            });
            size += u64::from(len);
        }
        Ok(ChunkIndex {
            params,
            image_size: size,
            image_sha256: image_hash.finalize().into(),
            chunks,
        })
    }

    /// The `.kidx` encoding (72-byte header, 40 bytes per chunk, CRC-32 of everything before it),
    /// which [`ChunkIndex::from_bytes`] reads back.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(INDEX_HEADER_LEN + ENTRY_LEN * self.chunks.len() + 4);
        b.extend_from_slice(&INDEX_MAGIC);
        b.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        b.push(HASH_SHA256);
        b.push(COMPRESSION_ZSTD);
        for v in [self.params.min, self.params.avg, self.params.max] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.image_size.to_le_bytes());
        b.extend_from_slice(&self.image_sha256);
        b.extend_from_slice(&(self.chunks.len() as u64).to_le_bytes());
        for c in &self.chunks {
            b.extend_from_slice(&c.len.to_le_bytes());
            b.extend_from_slice(&c.comp_len.to_le_bytes());
            b.extend_from_slice(&c.id);
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses an index (untrusted bytes: every field is checked).
    pub fn from_bytes(b: &[u8]) -> Result<ChunkIndex, DeltaError> {
        let bad = |what: &str| DeltaError::Corrupt(format!("chunk index: {what}"));
        if b.len() < INDEX_HEADER_LEN + 4 {
            return Err(DeltaError::Truncated("chunk index header"));
        }
        let ChunkIndexHeader {
            params,
            image_size,
            image_sha256,
            chunk_count: count,
        } = ChunkIndexHeader::parse(b)?;
        let expected_len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(ENTRY_LEN))
            .and_then(|l| l.checked_add(INDEX_HEADER_LEN + 4))
            .ok_or_else(|| bad("chunk count overflows"))?;
        if expected_len != b.len() {
            return Err(bad(&format!(
                "{} bytes, chunk count {count} needs {expected_len}",
                b.len()
            )));
        }
        let body = b.len() - 4;
        if crc32fast::hash(&b[..body]).to_le_bytes() != b[body..] {
            return Err(DeltaError::HeaderChecksum("chunk index"));
        }
        let mut chunks = Vec::with_capacity(count as usize);
        let mut offset = 0u64;
        for e in b[INDEX_HEADER_LEN..body].chunks_exact(ENTRY_LEN) {
            let len = u32::from_le_bytes(e[0..4].try_into().expect("4 bytes"));
            let comp_len = u32::from_le_bytes(e[4..8].try_into().expect("4 bytes"));
            let id: [u8; 32] = e[8..40].try_into().expect("32 bytes");
            if len == 0 || len > params.max {
                return Err(bad(&format!(
                    "chunk length {len} outside 1..={}",
                    params.max
                )));
            }
            if u64::from(comp_len) > crate::format::compressed_limit(len.into()) || comp_len == 0 {
                return Err(bad(&format!(
                    "compressed length {comp_len} impossible for a {len}-byte chunk"
                )));
            }
            chunks.push(ChunkEntry {
                offset,
                len,
                comp_len,
                id,
            });
            offset = offset
                .checked_add(u64::from(len))
                .ok_or_else(|| bad("offsets overflow"))?;
        }
        if offset != image_size {
            return Err(bad(&format!(
                "chunks cover {offset} bytes, image_size is {image_size}"
            )));
        }
        Ok(ChunkIndex {
            params,
            image_size,
            image_sha256,
            chunks,
        })
    }

    /// Pack offset of every distinct chunk id.
    pub fn pack_offsets(&self) -> HashMap<[u8; 32], u64> {
        let mut map = HashMap::new();
        let mut at = 0u64;
        for c in &self.chunks {
            map.entry(c.id).or_insert_with(|| {
                let here = at;
                at += u64::from(c.comp_len);
                here
            });
        }
        map
    }
}

/// Writes chunks to a casync-style store directory: `<root>/<4 hex>/<64 hex>.cacnk`.
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// A store rooted at `root`; nothing is created until [`DirStore::put`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirStore { root: root.into() }
    }

    /// Where the chunk with sha256 `id` is (or would be) stored: `<root>/<first 4 hex>/<64
    /// hex>.cacnk`.
    pub fn chunk_path(&self, id: &[u8; 32]) -> PathBuf {
        let h = hex(id);
        self.root.join(&h[..4]).join(format!("{h}.cacnk"))
    }

    /// Stores a compressed chunk unless present (atomic rename, safe for concurrent writers).
    pub fn put(&self, id: &[u8; 32], compressed: &[u8]) -> io::Result<()> {
        let path = self.chunk_path(id);
        if path.exists() {
            return Ok(());
        }
        let dir = path.parent().expect("chunk path has a parent");
        fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{}.tmp{}", hex(id), std::process::id()));
        fs::write(&tmp, compressed)?;
        fs::rename(tmp, path)
    }
}

/// A chunk the device must fetch: its id and where it sits in the image's pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRequest {
    /// sha256 of the uncompressed chunk (names it in a store).
    pub id: [u8; 32],
    /// Offset of its zstd frame in the pack, in bytes ([`ChunkIndex::pack_offsets`]).
    pub pack_offset: u64,
    /// Size of its zstd frame in bytes: the Range length to fetch.
    pub comp_len: u32,
}

/// Fetches compressed chunks (the agent implements this with HTTP Range requests on the pack,
/// merging adjacent requests, or per-chunk GETs on a store).
pub trait ChunkFetcher {
    /// Returns the compressed bytes of `chunks`, in order. Content is verified by the caller.
    fn fetch(&mut self, chunks: &[ChunkRequest]) -> io::Result<Vec<Vec<u8>>>;
}

impl ChunkFetcher for DirStore {
    fn fetch(&mut self, chunks: &[ChunkRequest]) -> io::Result<Vec<Vec<u8>>> {
        chunks
            .iter()
            .map(|c| fs::read(self.chunk_path(&c.id)))
            .collect()
    }
}

/// Reads chunks from a pack through positioned reads (a local file, or any [`SeedRead`]).
pub struct PackReader<R> {
    /// The pack: the image's compressed chunks in index order, each distinct one once.
    pub pack: R,
    /// Bytes read, for accounting.
    pub bytes_read: u64,
}

impl<R: SeedRead> ChunkFetcher for PackReader<R> {
    fn fetch(&mut self, chunks: &[ChunkRequest]) -> io::Result<Vec<Vec<u8>>> {
        chunks
            .iter()
            .map(|c| {
                let mut buf = vec![0u8; c.comp_len as usize];
                self.pack.read_exact_at(c.pack_offset, &mut buf)?;
                self.bytes_read += u64::from(c.comp_len);
                Ok(buf)
            })
            .collect()
    }
}

/// Where chunks of the seed are: id → (offset, len).
#[derive(Debug, Default, Clone)]
pub struct SeedChunks {
    map: HashMap<[u8; 32], (u64, u32)>,
}

impl SeedChunks {
    /// Chunks and hashes the seed with the target index's parameters (one sequential read).
    pub fn scan(seed: impl Read, params: ChunkParams) -> Result<SeedChunks, DeltaError> {
        params.validate()?;
        let mut map = HashMap::new();
        for chunk in fastcdc::v2020::StreamCDC::new(seed, params.min, params.avg, params.max) {
            let chunk = chunk.map_err(|e| match e {
                fastcdc::v2020::Error::IoError(io) => DeltaError::Io(io),
                other => DeltaError::Corrupt(format!("chunker: {other:?}")),
            })?;
            map.entry(sha256(&chunk.data))
                .or_insert((chunk.offset, chunk.length as u32));
        }
        Ok(SeedChunks { map })
    }

    /// Uses the stored index of the installed image (no scan; chunks are re-hashed when used).
    pub fn from_index(index: &ChunkIndex) -> SeedChunks {
        let mut map = HashMap::new();
        for c in &index.chunks {
            map.entry(c.id).or_insert((c.offset, c.len));
        }
        SeedChunks { map }
    }

    /// Number of distinct chunk ids known in the seed.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no seed chunk is known (e.g. an empty seed): everything will be fetched.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Where each target chunk comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkSource {
    /// The seed holds a chunk of that id and length; it is re-hashed before use and fetched
    /// instead if it changed.
    Seed {
        /// Offset of the chunk in the seed, in bytes.
        offset: u64,
    },
    /// Same content as an earlier target chunk that will be fetched (no second download).
    Earlier {
        /// Offset in the target where that earlier chunk is written, in bytes.
        target_offset: u64,
    },
    /// Neither seed nor earlier target has it: download it from the pack or store.
    Fetch(ChunkRequest),
}

/// The download plan of one image against one seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Where each chunk of the index comes from, in index order (same length as
    /// [`ChunkIndex::chunks`]).
    pub sources: Vec<ChunkSource>,
    /// Number of [`ChunkSource::Fetch`] chunks (each distinct id once).
    pub fetch_chunks: u64,
    /// Compressed bytes to download (excluding the index).
    pub fetch_bytes: u64,
    /// Uncompressed bytes to be taken from the seed (if it still matches when assembling).
    pub seed_bytes: u64,
}

/// Decides, for every chunk of `index`, whether it comes from the seed or must be fetched.
pub fn plan(index: &ChunkIndex, seed: &SeedChunks) -> Plan {
    let pack = index.pack_offsets();
    let mut fetched: HashMap<[u8; 32], u64> = HashMap::new();
    let (mut fetch_chunks, mut fetch_bytes, mut seed_bytes) = (0, 0, 0);
    let sources = index
        .chunks
        .iter()
        .map(|c| {
            if let Some(&(offset, len)) = seed.map.get(&c.id) {
                if len == c.len {
                    seed_bytes += u64::from(c.len);
                    return ChunkSource::Seed { offset };
                }
            }
            if let Some(&target_offset) = fetched.get(&c.id) {
                return ChunkSource::Earlier { target_offset };
            }
            fetched.insert(c.id, c.offset);
            fetch_chunks += 1;
            fetch_bytes += u64::from(c.comp_len);
            ChunkSource::Fetch(ChunkRequest {
                id: c.id,
                pack_offset: pack[&c.id],
                comp_len: c.comp_len,
            })
        })
        .collect();
    Plan {
        sources,
        fetch_chunks,
        fetch_bytes,
        seed_bytes,
    }
}

/// What [`assemble`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssembleReport {
    /// Chunks in the index.
    pub chunks: u64,
    /// Chunks copied from the seed after their hash checked out.
    pub from_seed: u64,
    /// Chunks already present in the target (resumed assembly): not rewritten.
    pub already_in_target: u64,
    /// Chunks copied from an earlier position of the target (repeated content).
    pub from_earlier: u64,
    /// Chunks downloaded through the [`ChunkFetcher`] (including seed or earlier chunks that no
    /// longer matched).
    pub fetched_chunks: u64,
    /// Compressed bytes downloaded.
    pub fetched_bytes: u64,
    /// Seed chunks whose content no longer matched the index (fetched instead).
    pub seed_mismatches: u64,
}

/// Compressed bytes requested per [`ChunkFetcher::fetch`] call at most.
const FETCH_BATCH: u64 = 8 << 20;

/// Writes the image described by `index` into `out` (the inactive slot), reusing seed chunks,
/// skipping chunks `out` already holds (an interrupted earlier run), and fetching the rest in
/// batches of adjacent chunks. Every chunk is verified by sha256 and the whole image against
/// `index.image_sha256`. Memory: one batch (≤ 8 MiB) plus one chunk.
pub fn assemble<O: Read + Write + Seek>(
    index: &ChunkIndex,
    plan: &Plan,
    seed: &mut impl SeedRead,
    fetcher: &mut impl ChunkFetcher,
    out: &mut O,
) -> Result<AssembleReport, DeltaError> {
    if plan.sources.len() != index.chunks.len() {
        return Err(DeltaError::Corrupt(
            "plan does not belong to this index".into(),
        ));
    }
    let mut report = AssembleReport {
        chunks: index.chunks.len() as u64,
        ..Default::default()
    };
    let mut image_hash = Sha256::new();
    let mut buf = vec![0u8; index.params.max as usize];
    let mut decompressor = zstd::bulk::Decompressor::new()?;
    let pack = index.pack_offsets();
    let mut i = 0usize;
    while i < index.chunks.len() {
        let c = index.chunks[i];
        let n = c.len as usize;
        // A resumed run: keep what is already correct in the target.
        if read_at_opt(out, c.offset, &mut buf[..n])? && sha256(&buf[..n]) == c.id {
            image_hash.update(&buf[..n]);
            report.already_in_target += 1;
            i += 1;
            continue;
        }
        let local = match plan.sources[i] {
            ChunkSource::Seed { offset } => {
                let ok =
                    seed.read_exact_at(offset, &mut buf[..n]).is_ok() && sha256(&buf[..n]) == c.id;
                if !ok {
                    report.seed_mismatches += 1;
                }
                report.from_seed += u64::from(ok);
                ok
            }
            ChunkSource::Earlier { target_offset } => {
                let ok =
                    read_at_opt(out, target_offset, &mut buf[..n])? && sha256(&buf[..n]) == c.id;
                report.from_earlier += u64::from(ok);
                ok
            }
            ChunkSource::Fetch(_) => false,
        };
        if local {
            write_at(out, c.offset, &buf[..n])?;
            image_hash.update(&buf[..n]);
            i += 1;
            continue;
        }
        // Fetch this chunk and the following run of chunks that also need fetching.
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        let mut j = i;
        while j < index.chunks.len() && (batch.is_empty() || bytes < FETCH_BATCH) {
            let cj = index.chunks[j];
            let needs_fetch = j == i || matches!(plan.sources[j], ChunkSource::Fetch(_));
            if !needs_fetch {
                break;
            }
            batch.push(ChunkRequest {
                id: cj.id,
                pack_offset: pack.get(&cj.id).copied().unwrap_or(0),
                comp_len: cj.comp_len,
            });
            bytes += u64::from(cj.comp_len);
            j += 1;
        }
        let data = fetcher.fetch(&batch)?;
        if data.len() != batch.len() {
            return Err(DeltaError::Corrupt(format!(
                "fetcher returned {} of {} chunks",
                data.len(),
                batch.len()
            )));
        }
        for (k, compressed) in data.iter().enumerate() {
            let ck = index.chunks[i + k];
            let len = ck.len as usize;
            let mut out_buf = std::mem::take(&mut buf);
            out_buf.clear();
            let got = decompressor
                .decompress_to_buffer(&compressed[..], &mut out_buf)
                .map_err(|e| chunk_error(&ck.id, format!("does not decompress: {e}")));
            let result = got.and_then(|got| {
                if got != len || sha256(&out_buf[..len]) != ck.id {
                    Err(chunk_error(&ck.id, "content does not match its id"))
                } else {
                    Ok(())
                }
            });
            out_buf.resize(index.params.max as usize, 0);
            buf = out_buf;
            result?;
            write_at(out, ck.offset, &buf[..len])?;
            image_hash.update(&buf[..len]);
            report.fetched_chunks += 1;
            report.fetched_bytes += compressed.len() as u64;
        }
        i = j;
    }
    out.flush()?;
    let actual: [u8; 32] = image_hash.finalize().into();
    if actual != index.image_sha256 {
        return Err(DeltaError::TargetHashMismatch {
            expected: hex(&index.image_sha256),
            actual: hex(&actual),
        });
    }
    Ok(report)
}

/// Reads `buf.len()` bytes at `offset` if `out` is that long and readable; `false` if it is
/// shorter or the read fails. The caller then writes the chunk: a sector left unreadable (EIO)
/// by a power cut in the middle of the previous attempt is rewritten instead of failing this
/// attempt and every later one; a target that cannot be written fails at that write.
fn read_at_opt<O: Read + Seek>(
    out: &mut O,
    offset: u64,
    buf: &mut [u8],
) -> Result<bool, DeltaError> {
    out.seek(SeekFrom::Start(offset))?;
    Ok(out.read_exact(buf).is_ok())
}

fn write_at<O: Write + Seek>(out: &mut O, offset: u64, data: &[u8]) -> Result<(), DeltaError> {
    out.seek(SeekFrom::Start(offset))?;
    out.write_all(data)?;
    Ok(())
}

/// Writes the pack of `index` (distinct compressed chunks in index order) from a store.
pub fn write_pack(
    index: &ChunkIndex,
    store: &mut impl ChunkFetcher,
    mut out: impl Write,
) -> Result<u64, DeltaError> {
    let offsets = index.pack_offsets();
    let mut firsts: Vec<(u64, &ChunkEntry)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for c in &index.chunks {
        if seen.insert(c.id) {
            firsts.push((offsets[&c.id], c));
        }
    }
    let mut written = 0u64;
    for (pack_offset, c) in firsts {
        let data = store.fetch(&[ChunkRequest {
            id: c.id,
            pack_offset,
            comp_len: c.comp_len,
        }])?;
        let data = data
            .into_iter()
            .next()
            .ok_or_else(|| chunk_error(&c.id, "missing from store"))?;
        if data.len() != c.comp_len as usize {
            return Err(chunk_error(&c.id, "stored size differs from the index"));
        }
        out.write_all(&data)?;
        written += data.len() as u64;
    }
    out.flush()?;
    Ok(written)
}

/// Convenience: path of a chunk in a store rooted at `root`.
pub fn store_path(root: &Path, id: &[u8; 32]) -> PathBuf {
    DirStore::new(root).chunk_path(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target whose bytes 512..1024 are unreadable (EIO), as a sector a power cut left
    /// half-programmed.
    struct BadSector(io::Cursor<Vec<u8>>);

    impl Read for BadSector {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let pos = self.0.position();
            if pos < 1024 && pos + buf.len() as u64 > 512 {
                return Err(io::Error::other("EIO"));
            }
            self.0.read(buf)
        }
    }

    impl Seek for BadSector {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.0.seek(to)
        }
    }

    #[test]
    fn an_unreadable_target_range_is_not_kept_but_rewritten() {
        let mut target = BadSector(io::Cursor::new(vec![7u8; 2048]));
        let mut buf = [0u8; 256];
        assert!(read_at_opt(&mut target, 0, &mut buf).unwrap());
        assert!(!read_at_opt(&mut target, 600, &mut buf).unwrap());
        // Past the end: shorter target.
        assert!(!read_at_opt(&mut target, 1900, &mut buf).unwrap());
    }
}
