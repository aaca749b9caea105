//! Bundle variants (migrations/0300_artifact_variants.sql, 0600, crate::variants): how an
//! uploaded bundle was classified (full, delta, chunked).

use super::Store;

impl Store {
    /// Records how the artifact's bundle was classified (one row per artifact).
    pub async fn set_artifact_variant(
        &self,
        artifact_id: i64,
        variant: &crate::variants::Variant,
    ) -> Result<(), sqlx::Error> {
        let list = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO artifact_variants (artifact_id, variant, sources, packs, zstd_frames) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(artifact_id)
        .bind(&variant.variant)
        .bind(list(&variant.sources))
        .bind(list(&variant.packs))
        .bind(list(&variant.zstd_frames))
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Artifact id → variant, for the classified bundles of a module.
    pub async fn artifact_variants(
        &self,
        module_id: i64,
    ) -> Result<std::collections::BTreeMap<i64, crate::variants::Variant>, sqlx::Error> {
        let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(
            "SELECT v.artifact_id, v.variant, v.sources, v.packs, v.zstd_frames FROM artifact_variants v \
             JOIN artifacts a ON a.id = v.artifact_id WHERE a.module_id = $1",
        )
        .bind(module_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, variant, sources, packs, zstd_frames)| {
                let variant = crate::variants::Variant {
                    variant,
                    sources: serde_json::from_str(&sources).unwrap_or_default(),
                    packs: serde_json::from_str(&packs).unwrap_or_default(),
                    zstd_frames: serde_json::from_str(&zstd_frames).unwrap_or_default(),
                };
                (id, variant)
            })
            .collect())
    }
}
