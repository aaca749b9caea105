//! The dynamic (chunk) path on the device: `keel-chunked` images (docs/delta-format.md).
//!
//! The `.swu` member of such an image is the chunk index (`.kidx`) of the new image; the
//! compressed chunks live in a *pack* outside the bundle (a server artifact of the same software
//! module, or a file next to the `.swu`). The installer reuses the chunks the booted slot already
//! holds (and those a half-written target slot holds after an interrupted install), fetches the
//! rest from the pack — one HTTP Range request per run of adjacent chunks — and verifies every
//! chunk and the whole image against the signed index before anything is activated.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_delta::chunk::{ChunkFetcher, ChunkRequest};

use crate::io::{Environment, SharedStorage};

/// sw-description image `type` of a chunk-indexed image.
pub use keel_formats::swdesc::KEEL_CHUNKED_TYPE as CHUNKED_TYPE;

/// Largest chunk index accepted (40 bytes per chunk: 64 MiB ≈ 1.6 M chunks, a 100 GiB image at
/// 64 KiB chunks).
pub const MAX_INDEX_SIZE: u64 = 64 * 1024 * 1024;

/// Attempts per Range request (a broken connection is retried; a wrong answer is not).
const RANGE_ATTEMPTS: u32 = 4;

/// Where the packs of `keel-chunked` images come from.
#[derive(Debug, Clone, Default)]
pub enum PackSource {
    /// No pack available: a `keel-chunked` image fails to install.
    #[default]
    None,
    /// `<dir>/<pack name>`: the pack next to a `.swu` file.
    Dir(PathBuf),
    /// One explicit pack file (`--pack`), whatever the image calls it.
    File(PathBuf),
    /// One explicit pack URL (`--pack-url`).
    Url(String),
    /// `<base><pack name>`: the pack next to a `.swu` URL (base ends with `/`).
    UrlBase(String),
    /// From a DDI deployment: pack file name → download URL; sent with the DDI credentials.
    Named {
        /// Pack file name (the image's `pack` property) → its artifact's download URL.
        urls: BTreeMap<String, String>,
        /// Headers sent with every pack request (the DDI `Authorization`).
        headers: Vec<(String, String)>,
    },
}

/// A pack name from sw-description: a plain file name, nothing path-like.
pub fn valid_pack_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\\')
        && !name.chars().any(char::is_control)
}

impl PackSource {
    /// The pack source to use next to a bundle given as `spec` (a path, URL or `-`).
    pub fn beside(spec: &str) -> PackSource {
        if spec == "-" {
            return PackSource::None;
        }
        if spec.starts_with("http://") || spec.starts_with("https://") {
            let path_end = spec.find(['?', '#']).unwrap_or(spec.len());
            return match spec[..path_end].rfind('/') {
                Some(slash) if slash > spec.find("://").map_or(0, |p| p + 2) => {
                    PackSource::UrlBase(spec[..=slash].to_string())
                }
                _ => PackSource::None,
            };
        }
        let dir = Path::new(spec)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        PackSource::Dir(dir.to_path_buf())
    }

    /// Opens the pack called `name`.
    pub fn open(&self, name: &str, http: &ureq::Agent) -> Result<Pack, String> {
        if !valid_pack_name(name) {
            return Err(format!("pack name {name:?} is not a plain file name"));
        }
        // Opened at the first read: an install that needs no chunk needs no pack.
        let file = |path: PathBuf| -> Result<Pack, String> {
            Ok(Pack::new(PackInner::File { path, file: None }))
        };
        let url = |url: String, headers: Vec<(String, String)>| {
            Pack::new(PackInner::Http {
                http: http.clone(),
                url,
                headers,
            })
        };
        match self {
            PackSource::None => Err(format!(
                "pack {name} needed, but no pack location is known (give --pack or --pack-url)"
            )),
            PackSource::Dir(dir) => file(dir.join(name)),
            PackSource::File(path) => file(path.clone()),
            PackSource::Url(u) => Ok(url(u.clone(), Vec::new())),
            PackSource::UrlBase(base) => Ok(url(format!("{base}{name}"), Vec::new())),
            PackSource::Named { urls, headers } => match urls.get(name) {
                Some(u) => Ok(url(u.clone(), headers.clone())),
                None => Err(format!(
                    "pack {name} is not an artifact of the deployment ({})",
                    urls.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
            },
        }
    }
}

enum PackInner {
    File {
        path: PathBuf,
        file: Option<File>,
    },
    Http {
        http: ureq::Agent,
        url: String,
        headers: Vec<(String, String)>,
    },
}

/// An open pack: a [`ChunkFetcher`] that reads runs of adjacent chunks with one positioned read
/// or one HTTP Range request each, and counts what it transferred.
pub struct Pack {
    inner: PackInner,
    /// Compressed bytes read from the pack.
    pub bytes: u64,
    /// Reads / HTTP requests made.
    pub requests: u64,
}

impl Pack {
    fn new(inner: PackInner) -> Pack {
        Pack {
            inner,
            bytes: 0,
            requests: 0,
        }
    }

    fn read_range(&mut self, start: u64, len: u64) -> io::Result<Vec<u8>> {
        let size = usize::try_from(len).map_err(|_| io::Error::other("range too large"))?;
        self.requests += 1;
        let data = match &mut self.inner {
            PackInner::File { path, file } => {
                let f = match file {
                    Some(f) => f,
                    None => file.insert(File::open(&*path).map_err(|e| {
                        io::Error::new(e.kind(), format!("pack {}: {e}", path.display()))
                    })?),
                };
                let mut buf = vec![0u8; size];
                f.read_exact_at(&mut buf, start).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "pack {} bytes {start}..{}: {e}",
                            path.display(),
                            start + len
                        ),
                    )
                })?;
                buf
            }
            PackInner::Http { http, url, headers } => {
                http_range(http, url, headers, start, len, size)?
            }
        };
        self.bytes += len;
        Ok(data)
    }
}

/// One `Range: bytes=start-end` GET; only a `206` with exactly that range is accepted (a `200`
/// would be the whole pack). Broken connections are retried with back-off.
fn http_range(
    http: &ureq::Agent,
    url: &str,
    headers: &[(String, String)],
    start: u64,
    len: u64,
    size: usize,
) -> io::Result<Vec<u8>> {
    let end = start + len - 1;
    let mut backoff = Duration::from_millis(500);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut request = http
            .get(url)
            .header("Range", &format!("bytes={start}-{end}"));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let failure = match request.call() {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let content_range = response
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                if status != 206 || !content_range.starts_with(&format!("bytes {start}-{end}/")) {
                    // Not retried: the server does not serve this range.
                    return Err(io::Error::other(format!(
                        "GET {url} bytes {start}-{end}: status {status}, Content-Range {content_range:?} (a pack needs HTTP range support)"
                    )));
                }
                match response
                    .body_mut()
                    .with_config()
                    .limit(len + 1)
                    .read_to_vec()
                {
                    Ok(body) if body.len() == size => return Ok(body),
                    Ok(body) => format!("{} of {len} bytes", body.len()),
                    Err(e) => e.to_string(),
                }
            }
            Err(ureq::Error::StatusCode(status)) => {
                return Err(io::Error::other(format!(
                    "GET {url} bytes {start}-{end}: status {status}"
                )))
            }
            Err(e) => e.to_string(),
        };
        if attempt >= RANGE_ATTEMPTS {
            return Err(io::Error::other(format!(
                "GET {url} bytes {start}-{end}: {failure} (after {attempt} attempts)"
            )));
        }
        std::thread::sleep(backoff);
        backoff *= 2;
    }
}

impl ChunkFetcher for Pack {
    fn fetch(&mut self, chunks: &[ChunkRequest]) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::with_capacity(chunks.len());
        let mut i = 0;
        while i < chunks.len() {
            // A run of chunks that sit back to back in the pack: one read.
            let start = chunks[i].pack_offset;
            let mut end = start + u64::from(chunks[i].comp_len);
            let mut j = i + 1;
            while j < chunks.len() && chunks[j].pack_offset == end {
                end += u64::from(chunks[j].comp_len);
                j += 1;
            }
            let data = self.read_range(start, end - start)?;
            let mut at = 0usize;
            for c in &chunks[i..j] {
                let n = c.comp_len as usize;
                out.push(data.get(at..at + n).unwrap_or_default().to_vec());
                at += n;
            }
            i = j;
        }
        Ok(out)
    }
}

/// A slot target opened for positioned reads and writes (what chunk assembly needs), through
/// a plain file descriptor on real systems or the storage layer in the simulator.
pub struct SlotFile {
    inner: SlotInner,
    path: PathBuf,
    len: u64,
    pos: u64,
}

enum SlotInner {
    Os(File),
    Generic(SharedStorage),
}

impl SlotFile {
    /// Opens the target at `path` for reading and writing; its length is fixed at open. Reads
    /// and writes go through the file descriptor where the environment allows direct slot I/O,
    /// else through `storage`.
    pub fn open(storage: &SharedStorage, env: Environment, path: &Path) -> io::Result<SlotFile> {
        let len = storage.metadata(path)?.len;
        let inner = if env.direct_slot_io() {
            SlotInner::Os(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)?,
            )
        } else {
            SlotInner::Generic(storage.clone())
        };
        Ok(SlotFile {
            inner,
            path: path.to_path_buf(),
            len,
            pos: 0,
        })
    }

    /// Flushes the target to stable storage (fsync).
    pub fn sync(&mut self) -> io::Result<()> {
        match &mut self.inner {
            SlotInner::Os(f) => f.sync_all(),
            SlotInner::Generic(storage) => storage.sync(&self.path),
        }
    }
}

impl Read for SlotFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.len.saturating_sub(self.pos);
        let n = buf
            .len()
            .min(usize::try_from(available).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        let dest = buf.get_mut(..n).unwrap_or_default();
        match &mut self.inner {
            SlotInner::Os(f) => f.read_exact_at(dest, self.pos)?,
            SlotInner::Generic(storage) => {
                let data = storage.read_at(&self.path, self.pos, n)?;
                if data.len() != n {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                }
                dest.copy_from_slice(&data);
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for SlotFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            SlotInner::Os(f) => f.write_all_at(data, self.pos)?,
            SlotInner::Generic(storage) => storage.write_at(&self.path, self.pos, data)?,
        }
        self.pos += data.len() as u64;
        self.len = self.len.max(self.pos);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for SlotFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::other("seek out of range"))?;
        Ok(self.pos)
    }
}

/// Sequential reader over a slot (the seed scan), in large positioned reads.
pub struct SlotStream {
    storage: SharedStorage,
    path: PathBuf,
    pos: u64,
    len: u64,
}

impl SlotStream {
    /// Opens `path` for sequential reads from its start; fails if its size cannot be read.
    pub fn open(storage: SharedStorage, path: &Path) -> io::Result<SlotStream> {
        let len = storage.metadata(path)?.len;
        Ok(SlotStream {
            storage,
            path: path.to_path_buf(),
            pos: 0,
            len,
        })
    }
}

impl Read for SlotStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(1 << 20)
            .min(usize::try_from(self.len.saturating_sub(self.pos)).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        let data = self.storage.read_at(&self.path, self.pos, n)?;
        let n = data.len().min(n);
        buf.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(data.get(..n).unwrap_or_default());
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_beside_the_bundle() {
        assert!(
            matches!(PackSource::beside("/srv/u/x.swu"), PackSource::Dir(d) if d == Path::new("/srv/u"))
        );
        assert!(matches!(PackSource::beside("x.swu"), PackSource::Dir(d) if d == Path::new(".")));
        assert!(matches!(PackSource::beside("-"), PackSource::None));
        assert!(
            matches!(PackSource::beside("https://h/a/b.swu?x=1"), PackSource::UrlBase(b) if b == "https://h/a/")
        );
        assert!(!valid_pack_name("../etc/passwd"));
        assert!(!valid_pack_name(""));
        assert!(valid_pack_name("rootfs.kpack"));
    }
}
