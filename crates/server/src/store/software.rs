//! Software modules, their artifacts, and distribution sets (modules installed together).

use super::{now_ms, Store, Target};
use serde::Serialize;

/// A software module: one versioned piece of software (hawkBit's `SoftwareModule`), holding
/// artifacts. Unique per tenant by type, name and version.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct SoftwareModule {
    /// Row id.
    pub id: i64,
    /// The tenant the module belongs to.
    #[serde(skip)]
    pub tenant_id: i64,
    /// hawkBit module type, e.g. `os` or `application`; devices see it as `part`.
    #[serde(rename = "type")]
    pub module_type: String,
    /// Module name.
    pub name: String,
    /// Module version (free text).
    pub version: String,
    /// When it was created (ms since 1970).
    #[serde(rename = "createdAt")]
    pub created_at: i64,
}

/// A file of a software module, stored content-addressed by its SHA-256.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Artifact {
    /// Row id.
    pub id: i64,
    /// The module it belongs to.
    #[serde(rename = "moduleId")]
    pub module_id: i64,
    /// File name as uploaded; unique within the module, used in download URLs.
    pub filename: String,
    /// SHA-256 of the content, lower-case hex (also its name in the artifact store).
    pub sha256: String,
    /// SHA-1 of the content, lower-case hex (hawkBit clients check it).
    pub sha1: String,
    /// MD5 of the content, lower-case hex (hawkBit clients check it).
    pub md5: String,
    /// Size in bytes.
    pub size: i64,
    /// When it was uploaded (ms since 1970).
    #[serde(rename = "createdAt")]
    pub created_at: i64,
}

/// A distribution set: the modules a device should run, installed together.
/// Unique per tenant by name and version.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct DistributionSet {
    /// Row id: what assignments and rollouts refer to.
    pub id: i64,
    /// The tenant the set belongs to.
    #[serde(skip)]
    pub tenant_id: i64,
    /// Set name.
    pub name: String,
    /// Set version (free text).
    pub version: String,
    /// When it was created (ms since 1970).
    #[serde(rename = "createdAt")]
    pub created_at: i64,
}

impl Store {
    /// Creates a module; fails with a unique-constraint error if type, name and version are taken.
    pub async fn create_module(
        &self,
        tenant_id: i64,
        module_type: &str,
        name: &str,
        version: &str,
    ) -> Result<SoftwareModule, sqlx::Error> {
        sqlx::query_as(
            "INSERT INTO software_modules (tenant_id, module_type, name, version, created_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING id, tenant_id, module_type, name, version, created_at",
        )
        .bind(tenant_id)
        .bind(module_type)
        .bind(name)
        .bind(version)
        .bind(now_ms())
        .fetch_one(&self.write)
        .await
    }

    /// The tenant's module with this id.
    pub async fn module(
        &self,
        tenant_id: i64,
        id: i64,
    ) -> Result<Option<SoftwareModule>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, tenant_id, module_type, name, version, created_at FROM software_modules \
             WHERE id = $1 AND tenant_id = $2",
        )
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(&self.read)
        .await
    }

    /// Every module of the tenant, oldest first.
    pub async fn modules(&self, tenant_id: i64) -> Result<Vec<SoftwareModule>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, tenant_id, module_type, name, version, created_at FROM software_modules \
             WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await
    }

    /// Records an artifact whose content is already in the artifact store; fails with a
    /// unique-constraint error if the module already has a file of that name.
    pub async fn create_artifact(
        &self,
        module_id: i64,
        filename: &str,
        sha256: &str,
        sha1: &str,
        md5: &str,
        size: i64,
    ) -> Result<Artifact, sqlx::Error> {
        sqlx::query_as(
            "INSERT INTO artifacts (module_id, filename, sha256, sha1, md5, size, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             RETURNING id, module_id, filename, sha256, sha1, md5, size, created_at",
        )
        .bind(module_id)
        .bind(filename)
        .bind(sha256)
        .bind(sha1)
        .bind(md5)
        .bind(size)
        .bind(now_ms())
        .fetch_one(&self.write)
        .await
    }

    /// The module's artifacts, oldest first.
    pub async fn artifacts(&self, module_id: i64) -> Result<Vec<Artifact>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, module_id, filename, sha256, sha1, md5, size, created_at FROM artifacts \
             WHERE module_id = $1 ORDER BY id",
        )
        .bind(module_id)
        .fetch_all(&self.read)
        .await
    }

    /// The module's artifact named `filename`.
    pub async fn artifact_by_name(
        &self,
        module_id: i64,
        filename: &str,
    ) -> Result<Option<Artifact>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, module_id, filename, sha256, sha1, md5, size, created_at FROM artifacts \
             WHERE module_id = $1 AND filename = $2",
        )
        .bind(module_id)
        .bind(filename)
        .fetch_optional(&self.read)
        .await
    }

    /// Creates a set holding `module_ids` (callers check they are the tenant's), in one
    /// transaction;
    /// fails with a unique-constraint error if name and version are taken.
    pub async fn create_distribution_set(
        &self,
        tenant_id: i64,
        name: &str,
        version: &str,
        module_ids: &[i64],
    ) -> Result<DistributionSet, sqlx::Error> {
        let mut tx = self.begin().await?;
        let set: DistributionSet = sqlx::query_as(
            "INSERT INTO distribution_sets (tenant_id, name, version, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id, tenant_id, name, version, created_at",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(version)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        for module_id in module_ids {
            sqlx::query("INSERT INTO distribution_set_modules (ds_id, module_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(set.id)
                .bind(module_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(set)
    }

    /// The tenant's set with this id.
    pub async fn distribution_set(
        &self,
        tenant_id: i64,
        id: i64,
    ) -> Result<Option<DistributionSet>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, tenant_id, name, version, created_at FROM distribution_sets WHERE id = $1 AND tenant_id = $2",
        )
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(&self.read)
        .await
    }

    /// Every set of the tenant, oldest first.
    pub async fn distribution_sets(
        &self,
        tenant_id: i64,
    ) -> Result<Vec<DistributionSet>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, tenant_id, name, version, created_at FROM distribution_sets WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await
    }

    /// The set's modules, by id.
    pub async fn set_modules(&self, ds_id: i64) -> Result<Vec<SoftwareModule>, sqlx::Error> {
        sqlx::query_as(
            "SELECT m.id, m.tenant_id, m.module_type, m.name, m.version, m.created_at FROM software_modules m \
             JOIN distribution_set_modules d ON d.module_id = m.id WHERE d.ds_id = $1 ORDER BY m.id",
        )
        .bind(ds_id)
        .fetch_all(&self.read)
        .await
    }

    /// Whether `module_id` belongs to an open action of the target or to the action it has installed.
    pub async fn module_visible_to_target(
        &self,
        target: &Target,
        module_id: i64,
    ) -> Result<bool, sqlx::Error> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM actions a JOIN distribution_set_modules d ON d.ds_id = a.ds_id \
             WHERE a.target_id = $1 AND d.module_id = $2 AND (a.active = 1 OR a.id = $3)",
        )
        .bind(target.id)
        .bind(module_id)
        .bind(target.installed_action_id.unwrap_or(-1))
        .fetch_one(&self.read)
        .await?;
        Ok(count > 0)
    }
}
