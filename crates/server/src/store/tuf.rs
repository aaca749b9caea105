//! TUF metadata of each tenant's repository (table `tuf_metadata`, see crate::tuf).

use super::{for_update, now_ms, Store};

/// One TUF metadata file to store (`Store::put_tuf_files`).
#[derive(Debug, Clone)]
pub struct TufFileWrite {
    /// File name in the repository, e.g. `root.json`, `3.root.json` or `timestamp.json`.
    pub name: String,
    /// sha256 hex of `bytes`.
    pub sha256: String,
    /// The signed metadata file, exactly as served.
    pub bytes: Vec<u8>,
    /// The sha256 the stored copy must still have (`None`: the file must not exist yet, or
    /// already hold exactly these bytes). A writer that lost the lease (stalled past it) and
    /// signed from an outdated copy fails here instead of overwriting what another signed.
    pub replaces: Option<String>,
}

/// A stored TUF metadata file's name and digest (`Store::tuf_files`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TufFileDigest {
    /// File name in the repository.
    pub name: String,
    /// sha256 hex of the stored bytes.
    pub sha256: String,
}

/// A stored TUF metadata file, without its bytes (`Store::tuf_listing`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TufFileInfo {
    /// File name in the repository.
    pub name: String,
    /// sha256 hex of the stored bytes.
    pub sha256: String,
    /// When this content was stored (ms since 1970, the storing replica's clock).
    pub stored_at: i64,
}

/// TUF metadata of each tenant's repository (table `tuf_metadata`, see crate::tuf).
impl Store {
    /// Name and sha256 of every metadata file of `tenant`, by name.
    pub async fn tuf_files(&self, tenant: &str) -> Result<Vec<TufFileDigest>, sqlx::Error> {
        sqlx::query_as("SELECT name, sha256 FROM tuf_metadata WHERE tenant = $1 ORDER BY name")
            .bind(tenant)
            .fetch_all(&self.read)
            .await
    }

    /// Name, sha256 and time stored of every metadata file of `tenant`, by name.
    pub async fn tuf_listing(&self, tenant: &str) -> Result<Vec<TufFileInfo>, sqlx::Error> {
        sqlx::query_as(
            "SELECT name, sha256, stored_at FROM tuf_metadata WHERE tenant = $1 ORDER BY name",
        )
        .bind(tenant)
        .fetch_all(&self.read)
        .await
    }

    /// The bytes of one metadata file, if stored.
    pub async fn tuf_file(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        sqlx::query_scalar("SELECT bytes FROM tuf_metadata WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .fetch_optional(&self.read)
            .await
    }

    /// True if `tenant` has a TUF repository in the database (its `root.json` is stored).
    pub async fn tuf_has_root(&self, tenant: &str) -> Result<bool, sqlx::Error> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM tuf_metadata WHERE tenant = $1 AND name = 'root.json'",
        )
        .bind(tenant)
        .fetch_optional(&self.read)
        .await?;
        Ok(found.is_some())
    }

    /// Stores `files` in one transaction, each only if the stored copy is still the one it
    /// replaces (`TufFileWrite::replaces`). Returns false, and stores nothing, if any is not.
    pub async fn put_tuf_files(
        &self,
        tenant: &str,
        files: &[TufFileWrite],
    ) -> Result<bool, sqlx::Error> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        for file in files {
            let stored = match &file.replaces {
                Some(previous) => {
                    sqlx::query(
                        "UPDATE tuf_metadata SET sha256 = $3, bytes = $4, stored_at = $6 \
                         WHERE tenant = $1 AND name = $2 AND sha256 = $5",
                    )
                    .bind(tenant)
                    .bind(&file.name)
                    .bind(&file.sha256)
                    .bind(&file.bytes)
                    .bind(previous)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1
                }
                None => {
                    let inserted = sqlx::query(
                        "INSERT INTO tuf_metadata (tenant, name, sha256, bytes, stored_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, name) DO NOTHING",
                    )
                    .bind(tenant)
                    .bind(&file.name)
                    .bind(&file.sha256)
                    .bind(&file.bytes)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    inserted || {
                        let existing: Option<String> = sqlx::query_scalar(
                            "SELECT sha256 FROM tuf_metadata WHERE tenant = $1 AND name = $2",
                        )
                        .bind(tenant)
                        .bind(&file.name)
                        .fetch_optional(&mut *tx)
                        .await?;
                        existing.as_deref() == Some(file.sha256.as_str())
                    }
                }
            };
            if !stored {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes the metadata files `names` of `tenant` in one transaction, if `snapshot.json` is
    /// still stored with sha256 `snapshot` (the state the names were chosen on; a writer that
    /// stalled past its lease deletes nothing). Root versions (`N.root.json`, `root.json`) are
    /// never deleted. Returns false, and deletes nothing, if the snapshot changed.
    pub async fn prune_tuf_files(
        &self,
        tenant: &str,
        snapshot: &str,
        names: &[String],
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let lock = for_update(&tx);
        let current: Option<String> = sqlx::query_scalar(&format!(
            "SELECT sha256 FROM tuf_metadata WHERE tenant = $1 AND name = 'snapshot.json'{lock}"
        ))
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
        if current.as_deref() != Some(snapshot) {
            tx.rollback().await?;
            return Ok(false);
        }
        for name in names.iter().filter(|n| !n.ends_with("root.json")) {
            sqlx::query("DELETE FROM tuf_metadata WHERE tenant = $1 AND name = $2")
                .bind(tenant)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
