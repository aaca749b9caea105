//! Artifact files: content-addressed by SHA-256 under `DATA_DIR/artifacts`, written crash-safely
//! (temp file in `DATA_DIR/tmp`, fsync, rename, fsync of the directory).

use crate::error::ApiError;
use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

#[derive(Clone)]
pub struct ArtifactStore {
    files: PathBuf,
    tmp: PathBuf,
}

/// What was stored: the file's identity and hashes.
#[derive(Debug, Clone)]
pub struct Stored {
    pub sha256: String,
    pub sha1: String,
    pub md5: String,
    pub size: u64,
}

impl ArtifactStore {
    pub fn open(data_dir: &Path) -> std::io::Result<ArtifactStore> {
        let files = data_dir.join("artifacts");
        let tmp = data_dir.join("tmp");
        std::fs::create_dir_all(&files)?;
        std::fs::create_dir_all(&tmp)?;
        // Leftovers of uploads interrupted by a crash are garbage: nothing references them.
        for entry in std::fs::read_dir(&tmp)? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(ArtifactStore { files, tmp })
    }

    pub fn path(&self, sha256: &str) -> PathBuf {
        self.files.join(sha256)
    }

    /// Streams `body` to disk while computing SHA-256, SHA-1 and MD5; refuses more than `max_bytes`.
    pub async fn ingest<S, E>(&self, mut body: S, max_bytes: u64) -> Result<Stored, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let tmp_path = self
            .tmp
            .join(format!("upload-{}", crate::auth::generate_token()));
        let result = self.ingest_to(&tmp_path, &mut body, max_bytes).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp_path).await;
        }
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
        let (mut sha256, mut sha1, mut md5) = (Sha256::new(), Sha1::new(), Md5::new());
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("reading upload body: {e}")))?;
            size = size
                .checked_add(chunk.len() as u64)
                .filter(|total| *total <= max_bytes)
                .ok_or_else(|| {
                    ApiError::PayloadTooLarge(format!("artifact larger than {max_bytes} bytes"))
                })?;
            sha256.update(&chunk);
            sha1.update(&chunk);
            md5.update(&chunk);
            file.write_all(&chunk).await?;
        }
        if size == 0 {
            return Err(ApiError::bad_request("empty artifact"));
        }
        file.sync_all().await?;
        drop(file);
        let stored = Stored {
            sha256: hex::encode(sha256.finalize()),
            sha1: hex::encode(sha1.finalize()),
            md5: hex::encode(md5.finalize()),
            size,
        };
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
}

/// A parsed single-range request, inclusive bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
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
