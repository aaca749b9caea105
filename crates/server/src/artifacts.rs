//! Artifact storage: content-addressed by SHA-256, on the local file system (the default) or on
//! S3-compatible object storage (`--object-store-url s3://bucket/prefix`, docs/scale-out.md).
//!
//! Local files live under `DATA_DIR/artifacts/<sha256>`, written crash-safely (temp file in
//! `DATA_DIR/tmp`, fsync, rename, fsync of the directory). On S3 the same layout sits under the
//! URL's prefix: `<prefix>/artifacts/<sha256>`, uploads staged under `<prefix>/tmp/` (see
//! [`crate::storage_s3`]). Either way an artifact's key appears only once its whole content is
//! stored, so a reader never sees a partial artifact, and the database row that names it is
//! written after that.
//!
//! Besides artifacts the store keeps small named objects ([`ArtifactStore::put_object`] and
//! friends) that every replica of keel-server must see, such as repository metadata.

use crate::error::ApiError;
use crate::storage_s3::S3Files;
use axum::body::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// A stream of artifact bytes for a response body.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Where artifact files live: the data directory's `artifacts/` or S3-compatible object storage
/// (docs/scale-out.md). Files are named by their SHA-256, so equal uploads share one file.
#[derive(Clone)]
pub struct ArtifactStore {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Local(LocalFiles),
    S3(Arc<S3Files>),
}

/// What was stored: the file's identity and hashes.
#[derive(Debug, Clone)]
pub struct Stored {
    /// SHA-256 of the content, lower-case hex: the file's name in the store.
    pub sha256: String,
    /// SHA-1 of the content, lower-case hex.
    pub sha1: String,
    /// MD5 of the content, lower-case hex.
    pub md5: String,
    /// Size in bytes.
    pub size: u64,
}

/// Failures of the storage itself (not of the request).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object storage could not be reached or refused the request (after retries).
    #[error("object storage unavailable: {0}")]
    Unavailable(String),
    /// An object the database refers to is not in the storage.
    #[error("object {0} is missing from the artifact storage")]
    Missing(String),
    /// A key for other objects (TUF, variants) is not `namespace/name` of safe segments, or
    /// reaches into `artifacts/` or `tmp/`: a bug, answered 500.
    #[error("invalid object key {0:?}: expected namespace/name with [A-Za-z0-9._-] segments, not in artifacts/ or tmp/")]
    InvalidKey(String),
    /// A local file operation failed: 500.
    #[error("artifact storage: {0}")]
    Io(#[from] std::io::Error),
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> ApiError {
        match err {
            StorageError::Unavailable(message) => ApiError::Unavailable(message),
            StorageError::Io(err) => ApiError::Io(err),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// SHA-256, SHA-1 and MD5 of an upload, computed while it streams through.
pub(crate) struct Hashes {
    sha256: Sha256,
    sha1: Sha1,
    md5: Md5,
    size: u64,
    max_bytes: u64,
}

impl Hashes {
    pub(crate) fn new(max_bytes: u64) -> Hashes {
        Hashes {
            sha256: Sha256::new(),
            sha1: Sha1::new(),
            md5: Md5::new(),
            size: 0,
            max_bytes,
        }
    }

    /// Hashes one chunk of the body; refuses a body growing past the size limit.
    pub(crate) fn update(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        let max_bytes = self.max_bytes;
        self.size = self
            .size
            .checked_add(chunk.len() as u64)
            .filter(|total| *total <= max_bytes)
            .ok_or_else(|| {
                ApiError::PayloadTooLarge(format!("artifact larger than {max_bytes} bytes"))
            })?;
        self.sha256.update(chunk);
        self.sha1.update(chunk);
        self.md5.update(chunk);
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<Stored, ApiError> {
        if self.size == 0 {
            return Err(ApiError::bad_request("empty artifact"));
        }
        Ok(Stored {
            sha256: hex::encode(self.sha256.finalize()),
            sha1: hex::encode(self.sha1.finalize()),
            md5: hex::encode(self.md5.finalize()),
            size: self.size,
        })
    }
}

/// The error for a body chunk that could not be read from the client.
pub(crate) fn body_error(err: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("reading upload body: {err}"))
}

/// Checks a key of [`ArtifactStore::put_object`]: `namespace/…/name`, at least two segments of
/// `[A-Za-z0-9._-]` (no `.`/`..`), and not inside the artifact layout (`artifacts/`, `tmp/`).
/// Two segments at least, so a local key can never name a file of the data directory itself
/// (`keel.db`, `admin.token`).
pub fn check_object_key(key: &str) -> Result<(), StorageError> {
    let segments: Vec<&str> = key.split('/').collect();
    let valid_segment = |s: &&str| {
        !s.is_empty()
            && *s != "."
            && *s != ".."
            && s.len() <= 255
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if segments.len() < 2
        || !segments.iter().all(valid_segment)
        || matches!(segments[0], "artifacts" | "tmp")
    {
        return Err(StorageError::InvalidKey(key.to_string()));
    }
    Ok(())
}

impl ArtifactStore {
    /// The store `config` selects: S3 with `object_store_url`, else files in the data directory.
    pub async fn open(config: &crate::Config) -> anyhow::Result<ArtifactStore> {
        match &config.object_store_url {
            Some(url) => Ok(ArtifactStore {
                backend: Backend::S3(Arc::new(S3Files::open(url, config).await?)),
            }),
            None => Ok(ArtifactStore::open_local(&config.data_dir)?),
        }
    }

    /// Files under `DATA_DIR/artifacts`; removes leftovers of uploads a crash interrupted.
    pub fn open_local(data_dir: &Path) -> std::io::Result<ArtifactStore> {
        Ok(ArtifactStore {
            backend: Backend::Local(LocalFiles::open(data_dir)?),
        })
    }

    /// `"local"` or `"s3"`.
    pub fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Local(_) => "local",
            Backend::S3(_) => "s3",
        }
    }

    /// Streams `body` into the store while computing SHA-256, SHA-1 and MD5; refuses more than
    /// `max_bytes`. The artifact is stored under its SHA-256 once complete; nothing is left behind
    /// when the body fails, is too large or the storage fails.
    pub async fn ingest<S, E>(&self, body: S, max_bytes: u64) -> Result<Stored, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        match &self.backend {
            Backend::Local(files) => files.ingest(body, max_bytes).await,
            Backend::S3(s3) => s3.ingest(body, max_bytes).await,
        }
    }

    /// `length` bytes of the artifact `sha256` from byte `start` on (the caller checked them
    /// against the artifact's size).
    pub async fn read(
        &self,
        sha256: &str,
        start: u64,
        length: u64,
    ) -> Result<ByteStream, StorageError> {
        match &self.backend {
            Backend::Local(files) => files.read(sha256, start, length).await,
            Backend::S3(s3) => s3.read(sha256, start, length).await,
        }
    }

    /// Whether the artifact `sha256` is stored.
    pub async fn contains(&self, sha256: &str) -> Result<bool, StorageError> {
        match &self.backend {
            Backend::Local(files) => Ok(tokio::fs::try_exists(files.path(sha256)).await?),
            Backend::S3(s3) => s3.contains(sha256).await,
        }
    }

    /// A pre-signed GET URL of the artifact for devices to download from the object storage
    /// directly, if the store is S3 and `--s3-presign-downloads` is on; `None` otherwise.
    pub async fn presigned_download_url(
        &self,
        sha256: &str,
    ) -> Result<Option<String>, StorageError> {
        match &self.backend {
            Backend::Local(_) => Ok(None),
            Backend::S3(s3) => s3.presigned_download_url(sha256).await,
        }
    }

    /// Stores a small named object (`namespace/name`, see [`check_object_key`]), replacing it
    /// atomically: readers see the old or the new bytes, never a mix. Durable when this returns.
    /// Locally the key is a path under the data directory (`tuf/x/y.json` is
    /// `DATA_DIR/tuf/x/y.json`); on S3 a key under the URL's prefix.
    pub async fn put_object(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        check_object_key(key)?;
        match &self.backend {
            Backend::Local(files) => files.put_object(key, &bytes).await,
            Backend::S3(s3) => s3.put_object(key, bytes).await,
        }
    }

    /// The bytes of a named object, `None` if it does not exist.
    pub async fn get_object(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        check_object_key(key)?;
        match &self.backend {
            Backend::Local(files) => match tokio::fs::read(files.data_dir.join(key)).await {
                Ok(bytes) => Ok(Some(Bytes::from(bytes))),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(err) => Err(err.into()),
            },
            Backend::S3(s3) => s3.get_object(key).await,
        }
    }

    /// Deletes a named object; deleting a missing one is not an error.
    pub async fn delete_object(&self, key: &str) -> Result<(), StorageError> {
        check_object_key(key)?;
        match &self.backend {
            Backend::Local(files) => match tokio::fs::remove_file(files.data_dir.join(key)).await {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err.into()),
                _ => Ok(()),
            },
            Backend::S3(s3) => s3.delete_object(key).await,
        }
    }

    /// The keys of the named objects under `prefix` (a namespace, e.g. `tuf/default`), sorted.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        check_object_key(&format!("{}/x", prefix.trim_end_matches('/')))?;
        let prefix = prefix.trim_end_matches('/');
        let mut keys = match &self.backend {
            Backend::Local(files) => files.list_objects(prefix).await?,
            Backend::S3(s3) => s3.list_objects(prefix).await?,
        };
        keys.sort();
        Ok(keys)
    }
}

/// Artifacts as files in the data directory.
#[derive(Clone)]
struct LocalFiles {
    data_dir: PathBuf,
    files: PathBuf,
    tmp: PathBuf,
}

impl LocalFiles {
    fn open(data_dir: &Path) -> std::io::Result<LocalFiles> {
        let files = data_dir.join("artifacts");
        let tmp = data_dir.join("tmp");
        std::fs::create_dir_all(&files)?;
        std::fs::create_dir_all(&tmp)?;
        // Leftovers of uploads interrupted by a crash are garbage: nothing references them.
        for entry in std::fs::read_dir(&tmp)? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(LocalFiles {
            data_dir: data_dir.to_path_buf(),
            files,
            tmp,
        })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.files.join(sha256)
    }

    fn tmp_path(&self, what: &str) -> PathBuf {
        self.tmp
            .join(format!("{what}-{}", crate::auth::generate_token()))
    }

    async fn ingest<S, E>(&self, mut body: S, max_bytes: u64) -> Result<Stored, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let tmp_path = self.tmp_path("upload");
        // Also when the request is dropped mid-upload (the client went away).
        let mut cleanup = crate::serve::RemoveOnDrop(Some(tmp_path.clone()));
        let result = self.ingest_to(&tmp_path, &mut body, max_bytes).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp_path).await;
        }
        cleanup.0 = None;
        result
    }

    async fn ingest_to<S, E>(
        &self,
        tmp_path: &Path,
        body: &mut S,
        max_bytes: u64,
    ) -> Result<Stored, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut file = tokio::fs::File::create(tmp_path).await?;
        let mut hashes = Hashes::new(max_bytes);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(body_error)?;
            hashes.update(&chunk)?;
            file.write_all(&chunk).await?;
        }
        let stored = hashes.finish()?;
        file.sync_all().await?;
        drop(file);
        let final_path = self.path(&stored.sha256);
        if tokio::fs::try_exists(&final_path).await? {
            // Same content already stored (content addressing deduplicates).
            tokio::fs::remove_file(tmp_path).await?;
        } else {
            tokio::fs::rename(tmp_path, &final_path).await?;
            tokio::fs::File::open(&self.files).await?.sync_all().await?;
        }
        Ok(stored)
    }

    async fn read(
        &self,
        sha256: &str,
        start: u64,
        length: u64,
    ) -> Result<ByteStream, StorageError> {
        let mut file = match tokio::fs::File::open(self.path(sha256)).await {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::Missing(format!("artifacts/{sha256}")))
            }
            Err(err) => return Err(err.into()),
        };
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start)).await?;
        }
        Ok(tokio_util::io::ReaderStream::with_capacity(file.take(length), 64 * 1024).boxed())
    }

    async fn put_object(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.data_dir.join(key);
        let parent = path
            .parent()
            .ok_or_else(|| StorageError::InvalidKey(key.to_string()))?;
        tokio::fs::create_dir_all(parent).await?;
        let tmp_path = self.tmp_path("object");
        let write = async {
            let mut file = tokio::fs::File::create(&tmp_path).await?;
            file.write_all(bytes).await?;
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&tmp_path, &path).await?;
            tokio::fs::File::open(parent).await?.sync_all().await
        };
        let result = write.await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp_path).await;
        }
        Ok(result?)
    }

    async fn list_objects(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        let mut pending = vec![prefix.to_string()];
        while let Some(dir) = pending.pop() {
            let mut entries = match tokio::fs::read_dir(self.data_dir.join(&dir)).await {
                Ok(entries) => entries,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err.into()),
            };
            while let Some(entry) = entries.next_entry().await? {
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let key = format!("{dir}/{name}");
                if entry.file_type().await?.is_dir() {
                    pending.push(key);
                } else if check_object_key(&key).is_ok() {
                    keys.push(key);
                }
            }
        }
        Ok(keys)
    }
}

/// A parsed single-range request, inclusive bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte, 0-based.
    pub start: u64,
    /// Last byte, inclusive (`end < size`).
    pub end: u64,
}

/// Parses an RFC 9110 `Range` header against a file of `size` bytes.
/// `Ok(None)`: serve the whole file (no header, other unit, or several ranges, which we may ignore).
/// `Err(())`: the range cannot be satisfied (416).
#[allow(clippy::result_unit_err)]
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<ByteRange>, ()> {
    let Some(header) = header else {
        return Ok(None);
    };
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        // Suffix range: the last N bytes.
        let Ok(n) = last.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || size == 0 {
            return Err(());
        }
        ByteRange {
            start: size.saturating_sub(n),
            end: size - 1,
        }
    } else {
        let Ok(start) = first.parse::<u64>() else {
            return Ok(None);
        };
        if start >= size {
            return Err(());
        }
        let end = if last.is_empty() {
            size - 1
        } else {
            let Ok(end) = last.parse::<u64>() else {
                return Ok(None);
            };
            if end < start {
                return Ok(None);
            }
            end.min(size - 1)
        };
        ByteRange { start, end }
    };
    Ok(Some(range))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(
            parse_range(Some("bytes=0-3"), 10),
            Ok(Some(ByteRange { start: 0, end: 3 }))
        );
        assert_eq!(
            parse_range(Some("bytes=4-"), 10),
            Ok(Some(ByteRange { start: 4, end: 9 }))
        );
        assert_eq!(
            parse_range(Some("bytes=-3"), 10),
            Ok(Some(ByteRange { start: 7, end: 9 }))
        );
        assert_eq!(
            parse_range(Some("bytes=-30"), 10),
            Ok(Some(ByteRange { start: 0, end: 9 }))
        );
        assert_eq!(
            parse_range(Some("bytes=5-100"), 10),
            Ok(Some(ByteRange { start: 5, end: 9 }))
        );
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=-0"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=x-1"), 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Ok(None));
        assert_eq!(
            parse_range(Some("bytes=18446744073709551615-"), 10),
            Err(())
        );
        assert_eq!(parse_range(Some("bytes=0-"), 0), Err(()));
    }

    /// Random headers over the grammar's alphabet: never a panic, and every accepted range lies
    /// inside the file.
    #[test]
    fn random_headers_never_escape_the_file() {
        let alphabet = b"bytes=-0123456789, x";
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let len = (next() % 16) as usize;
            let mut header = String::from(if next() % 2 == 0 { "bytes=" } else { "" });
            for _ in 0..len {
                header.push(char::from(
                    alphabet[(next() % alphabet.len() as u64) as usize],
                ));
            }
            let size = next() % 1000;
            if let Ok(Some(range)) = parse_range(Some(&header), size) {
                assert!(
                    range.start <= range.end && range.end < size,
                    "{header:?} size {size}: {range:?}"
                );
            }
        }
    }
}
