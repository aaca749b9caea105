//! Artifacts on S3-compatible object storage (AWS S3, Garage, MinIO, Ceph RGW, SeaweedFS, ...),
//! through the `object_store` crate.
//!
//! Layout under `s3://bucket/prefix`: `prefix/artifacts/<sha256>` (the artifact, immutable),
//! `prefix/tmp/upload-<random>` (an upload in progress), `prefix/<namespace>/...` (named objects).
//!
//! An upload streams to a temporary key while it is hashed (one PUT below 8 MiB, above that a
//! multipart upload of 8 MiB parts, at most 4 in flight, so a server holds at most ~40 MiB of
//! an upload in memory), then the object is copied server-side to `artifacts/<sha256>` and the
//! temporary key deleted; only then is the artifact row written to the database. A crash leaves:
//! - during the upload: an incomplete multipart upload (invisible to readers; an
//!   `AbortIncompleteMultipartUpload` lifecycle rule on the bucket reclaims its parts) or a
//!   complete object under `tmp/`, which the next start of any replica deletes once it is a day
//!   old (a day, not at once, because other replicas may be uploading right now);
//! - after the copy, before the database row: an unreferenced `artifacts/<sha256>` object, which
//!   is the right content for its name, so a later upload of the same bytes simply reuses it.
//!
//! S3 copies objects of at most 5 GiB in one request (`CopyObject`); a larger artifact is
//! streamed from the temporary key into a multipart upload of the final key instead.

use crate::artifacts::{body_error, ByteStream, Hashes, StorageError, Stored};
use crate::error::ApiError;
use anyhow::Context;
use axum::body::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Size of one multipart upload part (S3's minimum is 5 MiB) and of the single-PUT threshold.
const PART_BYTES: usize = 8 << 20;
/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
/// The largest object S3 copies with one `CopyObject` request.
pub const MAX_COPY_BYTES: u64 = 5 << 30;
/// Age after which a leftover temporary upload object is deleted at start-up.
const STALE_UPLOAD: Duration = Duration::from_secs(24 * 3600);

/// Artifacts and other objects in an S3-compatible bucket under a prefix (`--object-store-url`,
/// docs/scale-out.md): `prefix/artifacts/<sha256>`, uploads in progress under `prefix/tmp/`.
pub struct S3Files {
    store: Arc<AmazonS3>,
    /// Signs download URLs; differs from `store` when devices reach S3 at another endpoint.
    signer: Option<AmazonS3>,
    prefix: String,
    presign_expiry: Duration,
    max_copy_bytes: u64,
    /// What to call the store in logs: `s3://bucket/prefix`.
    url: String,
}

/// `s3://bucket/prefix` → (bucket, prefix without surrounding slashes).
pub fn parse_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("s3://")
        .with_context(|| format!("object store URL {url:?}: expected s3://bucket[/prefix]"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    anyhow::ensure!(
        !bucket.is_empty(),
        "object store URL {url:?}: expected s3://bucket[/prefix]"
    );
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

/// Whether `endpoint` is a loopback address, where plain HTTP is allowed without asking.
fn is_loopback_endpoint(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn unavailable(err: object_store::Error) -> StorageError {
    match err {
        object_store::Error::NotFound { path, .. } => StorageError::Missing(path),
        other => StorageError::Unavailable(other.to_string()),
    }
}

fn builder(config: &crate::Config, bucket: &str, endpoint: Option<&str>) -> AmazonS3Builder {
    // Standard AWS_* variables (web identity, container credentials, ...) first; our flags win.
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_region(&config.s3_region)
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                // A download to a slow device may take hours; only stalls count.
                .with_timeout_disabled()
                .with_read_timeout(Duration::from_secs(60))
                .with_allow_http(
                    config.s3_allow_http || endpoint.is_some_and(is_loopback_endpoint),
                ),
        )
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 3,
            retry_timeout: Duration::from_secs(15),
        });
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(key) = &config.s3_access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &config.s3_secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    if let Some(token) = &config.s3_session_token {
        builder = builder.with_token(token);
    }
    builder.with_virtual_hosted_style_request(config.s3_virtual_hosted_style)
}

impl S3Files {
    /// Connects to the bucket of `url` and checks that it answers (listing `tmp/`, whose stale
    /// uploads it deletes on the way).
    pub async fn open(url: &str, config: &crate::Config) -> anyhow::Result<S3Files> {
        // TLS with ring, installed as the process default once (reqwest picks it up).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (bucket, prefix) = parse_url(url)?;
        let endpoint = config.s3_endpoint.as_deref();
        let store = builder(config, &bucket, endpoint)
            .build()
            .with_context(|| format!("object store {url}"))?;
        let signer = if config.s3_presign_downloads {
            Some(match &config.s3_public_endpoint {
                Some(public) => builder(config, &bucket, Some(public))
                    .build()
                    .with_context(|| format!("object store {url} at {public}"))?,
                None => store.clone(),
            })
        } else {
            None
        };
        let files = S3Files {
            store: Arc::new(store),
            signer,
            prefix,
            presign_expiry: Duration::from_secs(config.s3_presign_expiry_secs.max(1)),
            max_copy_bytes: config.s3_max_copy_bytes.min(MAX_COPY_BYTES),
            url: url.to_string(),
        };
        files
            .sweep_stale_uploads()
            .await
            .with_context(|| format!("object store {url}"))?;
        Ok(files)
    }

    fn key(&self, relative: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(relative)
        } else {
            ObjectPath::from(format!("{}/{relative}", self.prefix))
        }
    }

    fn artifact_key(&self, sha256: &str) -> ObjectPath {
        self.key(&format!("artifacts/{sha256}"))
    }

    async fn sweep_stale_uploads(&self) -> Result<(), StorageError> {
        let mut listing = self.store.list(Some(&self.key("tmp")));
        let now = chrono::Utc::now();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(unavailable)?;
            let age = now
                .signed_duration_since(meta.last_modified)
                .to_std()
                .unwrap_or_default();
            if age > STALE_UPLOAD {
                tracing::info!("{}: deleting stale upload {}", self.url, meta.location);
                self.store
                    .delete(&meta.location)
                    .await
                    .map_err(unavailable)?;
            }
        }
        Ok(())
    }

    /// Streams an upload to a temporary object while hashing it, then moves it to
    /// `artifacts/<sha256>` (kept if that already exists). More than `max_bytes` is a 413; the
    /// storage unreachable is a 503; the temporary object is deleted in every case.
    pub async fn ingest<S, E>(&self, mut body: S, max_bytes: u64) -> Result<Stored, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let tmp = self.key(&format!("tmp/upload-{}", crate::auth::generate_token()));
        let mut writer = BufWriter::with_capacity(self.store.clone(), tmp.clone(), PART_BYTES)
            .with_max_concurrency(PARTS_IN_FLIGHT);
        let mut hashes = Hashes::new(max_bytes);
        let streamed: Result<(), ApiError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(body_error)?;
                hashes.update(&chunk)?;
                writer
                    .put(chunk)
                    .await
                    .map_err(|e| ApiError::from(unavailable(e)))?;
            }
            Ok(())
        }
        .await;
        if let Err(err) = streamed {
            if let Err(abort) = writer.abort().await {
                tracing::warn!("{}: aborting upload {tmp}: {abort}", self.url);
            }
            return Err(err);
        }
        let stored = match hashes.finish() {
            Ok(stored) => stored,
            Err(err) => {
                let _ = writer.abort().await;
                return Err(err);
            }
        };
        let result = async {
            writer
                .shutdown()
                .await
                .map_err(|e| StorageError::Unavailable(format!("completing upload {tmp}: {e}")))?;
            self.move_to_artifact(&tmp, &stored).await
        }
        .await;
        // The temporary object is garbage whatever happened (if it exists at all).
        if let Err(err) = self.store.delete(&tmp).await {
            if !matches!(err, object_store::Error::NotFound { .. }) {
                tracing::warn!("{}: deleting {tmp}: {err}", self.url);
            }
        }
        result?;
        Ok(stored)
    }

    /// Makes the completed upload `tmp` the artifact `artifacts/<sha256>`.
    async fn move_to_artifact(
        &self,
        tmp: &ObjectPath,
        stored: &Stored,
    ) -> Result<(), StorageError> {
        let target = self.artifact_key(&stored.sha256);
        if self.contains(&stored.sha256).await? {
            // Same content already stored (content addressing deduplicates).
            return Ok(());
        }
        if stored.size <= self.max_copy_bytes {
            return self.store.copy(tmp, &target).await.map_err(unavailable);
        }
        // Too large for one CopyObject: stream it over into a multipart upload of the target.
        let mut source = self
            .store
            .get(tmp)
            .await
            .map_err(unavailable)?
            .into_stream();
        let mut writer = BufWriter::with_capacity(self.store.clone(), target.clone(), PART_BYTES)
            .with_max_concurrency(PARTS_IN_FLIGHT);
        let copied: Result<(), object_store::Error> = async {
            while let Some(chunk) = source.next().await {
                writer.put(chunk?).await?;
            }
            Ok(())
        }
        .await;
        if let Err(err) = copied {
            let _ = writer.abort().await;
            return Err(unavailable(err));
        }
        writer
            .shutdown()
            .await
            .map_err(|e| StorageError::Unavailable(format!("completing copy to {target}: {e}")))
    }

    /// Whether `artifacts/<sha256>` exists.
    pub async fn contains(&self, sha256: &str) -> Result<bool, StorageError> {
        match self.store.head(&self.artifact_key(sha256)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(unavailable(err)),
        }
    }

    /// `length` bytes of the artifact from byte `start` (a ranged GET).
    pub async fn read(
        &self,
        sha256: &str,
        start: u64,
        length: u64,
    ) -> Result<ByteStream, StorageError> {
        let end = start
            .checked_add(length)
            .ok_or_else(|| StorageError::Unavailable("range overflows".into()))?;
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..end)),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&self.artifact_key(sha256), options)
            .await
            .map_err(unavailable)?;
        Ok(result
            .into_stream()
            .map_err(|err| std::io::Error::other(err.to_string()))
            .boxed())
    }

    /// A pre-signed GET URL for the artifact, valid for `--s3-presign-expiry-secs`; `None` unless
    /// `--s3-presign-downloads` is set.
    pub async fn presigned_download_url(
        &self,
        sha256: &str,
    ) -> Result<Option<String>, StorageError> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let url = signer
            .signed_url(
                axum::http::Method::GET,
                &self.artifact_key(sha256),
                self.presign_expiry,
            )
            .await
            .map_err(unavailable)?;
        Ok(Some(url.to_string()))
    }

    /// Writes the object `key` (under the prefix), replacing it.
    pub async fn put_object(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&self.key(key), PutPayload::from(bytes))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The object `key` (under the prefix); `None` if it does not exist.
    pub async fn get_object(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        match self.store.get(&self.key(key)).await {
            Ok(result) => Ok(Some(result.bytes().await.map_err(unavailable)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(unavailable(err)),
        }
    }

    /// Deletes the object `key` (under the prefix); a missing object is no error.
    pub async fn delete_object(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&self.key(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(unavailable(err)),
        }
    }

    /// The keys below `prefix`, relative to the bucket prefix (as `get_object` takes them).
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut listing = self.store.list(Some(&self.key(prefix)));
        let mut keys = Vec::new();
        while let Some(meta) = listing.next().await {
            let location = meta.map_err(unavailable)?.location.to_string();
            if let Some(key) = location.strip_prefix(&strip) {
                keys.push(key.to_string());
            }
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("s3://bucket").unwrap(),
            ("bucket".into(), "".into())
        );
        assert_eq!(
            parse_url("s3://bucket/a/b/").unwrap(),
            ("bucket".into(), "a/b".into())
        );
        assert!(parse_url("s3:///x").is_err());
        assert!(parse_url("gs://bucket").is_err());
    }

    #[test]
    fn loopback_endpoints() {
        assert!(is_loopback_endpoint("http://127.0.0.1:9000"));
        assert!(is_loopback_endpoint("http://localhost:9000/"));
        assert!(is_loopback_endpoint("http://[::1]:9000"));
        assert!(!is_loopback_endpoint("http://10.0.0.1:9000"));
        assert!(!is_loopback_endpoint("http://localhost.example.com"));
        assert!(!is_loopback_endpoint("https://127.0.0.1:9000"));
    }
}
