//! Targets (devices), their tags, attributes and last polls.

use super::{now_ms, Store};

/// A target: one device, known to the server by its controller id.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Target {
    /// Row id.
    pub id: i64,
    /// The tenant the device belongs to.
    pub tenant_id: i64,
    /// The device's id in DDI URLs (`/{tenant}/controller/v1/{controllerId}`); unique per tenant.
    pub controller_id: String,
    /// Display name; the controller id unless the operator gave one.
    pub name: String,
    /// sha256 hex of the device's security token (DDI `TargetToken` auth); `None`: none set.
    pub token_hash: Option<String>,
    /// The attributes the device sent (DDI `configData`), as JSON object text.
    pub attributes: String,
    /// 1 if the device is asked to send its attributes (DDI `_links.configData`), else 0.
    pub request_attributes: i64,
    /// When the device last polled (ms since 1970); `None`: never. Written in batches, so it lags.
    pub last_poll_at: Option<i64>,
    /// The device's IP address at its last poll, as seen by the server.
    pub address: Option<String>,
    /// The latest action that finished with the set installed (DDI `installedBase`).
    pub installed_action_id: Option<i64>,
    /// When it was registered (ms since 1970).
    pub created_at: i64,
}

/// A target's latest poll (`Store::record_polls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    /// The target that polled.
    pub target_id: i64,
    /// Milliseconds since 1970.
    pub at: i64,
    /// The device's IP address as seen by the server.
    pub address: String,
}

pub(super) const TARGET_COLUMNS: &str =
    "id, tenant_id, controller_id, name, token_hash, attributes, request_attributes, \
     last_poll_at, address, installed_action_id, created_at";

impl Store {
    /// The tenant's target with this controller id.
    pub async fn target(
        &self,
        tenant_id: i64,
        controller_id: &str,
    ) -> Result<Option<Target>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {TARGET_COLUMNS} FROM targets WHERE tenant_id = $1 AND controller_id = $2"
        ))
        .bind(tenant_id)
        .bind(controller_id)
        .fetch_optional(&self.read)
        .await
    }

    /// The target with this row id, of any tenant (callers check the tenant).
    pub async fn target_by_id(&self, id: i64) -> Result<Option<Target>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {TARGET_COLUMNS} FROM targets WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await
    }

    /// Every target of the tenant, or only those tagged `tag`, oldest first.
    pub async fn targets(
        &self,
        tenant_id: i64,
        tag: Option<&str>,
    ) -> Result<Vec<Target>, sqlx::Error> {
        match tag {
            Some(tag) => {
                sqlx::query_as(&format!(
                    "SELECT {TARGET_COLUMNS} FROM targets WHERE tenant_id = $1 AND id IN \
                     (SELECT target_id FROM target_tags WHERE tag = $2) ORDER BY id"
                ))
                .bind(tenant_id)
                .bind(tag)
                .fetch_all(&self.read)
                .await
            }
            None => {
                sqlx::query_as(&format!(
                    "SELECT {TARGET_COLUMNS} FROM targets WHERE tenant_id = $1 ORDER BY id"
                ))
                .bind(tenant_id)
                .fetch_all(&self.read)
                .await
            }
        }
    }

    /// Creates a target with its tags, in one transaction; fails with a unique-constraint error if
    /// the
    /// controller id is taken in the tenant.
    pub async fn create_target(
        &self,
        tenant_id: i64,
        controller_id: &str,
        name: &str,
        token_hash: Option<&str>,
        tags: &[String],
    ) -> Result<Target, sqlx::Error> {
        let mut tx = self.begin().await?;
        let target: Target = sqlx::query_as(&format!(
            "INSERT INTO targets (tenant_id, controller_id, name, token_hash, created_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING {TARGET_COLUMNS}"
        ))
        .bind(tenant_id)
        .bind(controller_id)
        .bind(name)
        .bind(token_hash)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        for tag in tags {
            sqlx::query(
                "INSERT INTO target_tags (target_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(target.id)
            .bind(tag)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(target)
    }

    /// Registers a device that polled with the gateway token; a concurrent registration wins silently.
    pub async fn register_target(
        &self,
        tenant_id: i64,
        controller_id: &str,
    ) -> Result<Target, sqlx::Error> {
        sqlx::query(
            "INSERT INTO targets (tenant_id, controller_id, name, created_at) VALUES ($1, $2, $2, $3) \
             ON CONFLICT (tenant_id, controller_id) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(controller_id)
        .bind(now_ms())
        .execute(&self.write)
        .await?;
        sqlx::query_as(&format!(
            "SELECT {TARGET_COLUMNS} FROM targets WHERE tenant_id = $1 AND controller_id = $2"
        ))
        .bind(tenant_id)
        .bind(controller_id)
        .fetch_one(&self.write)
        .await
    }

    /// Sets the device's security token, given as its sha256 hex.
    pub async fn set_target_token(
        &self,
        target_id: i64,
        token_hash: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE targets SET token_hash = $1 WHERE id = $2")
            .bind(token_hash)
            .bind(target_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Deletes the target with its tags, group memberships, actions and their histories, in one
    /// transaction.
    pub async fn delete_target(&self, target_id: i64) -> Result<(), sqlx::Error> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM target_tags WHERE target_id = $1")
            .bind(target_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM rollout_group_targets WHERE target_id = $1")
            .bind(target_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM action_status WHERE action_id IN (SELECT id FROM actions WHERE target_id = $1)")
            .bind(target_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM actions WHERE target_id = $1")
            .bind(target_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM targets WHERE id = $1")
            .bind(target_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// The target's tags, sorted.
    pub async fn target_tags(&self, target_id: i64) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT tag FROM target_tags WHERE target_id = $1 ORDER BY tag")
            .bind(target_id)
            .fetch_all(&self.read)
            .await
    }

    /// Replaces the target's tags, in one transaction.
    pub async fn set_target_tags(
        &self,
        target_id: i64,
        tags: &[String],
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM target_tags WHERE target_id = $1")
            .bind(target_id)
            .execute(&mut *tx)
            .await?;
        for tag in tags {
            sqlx::query(
                "INSERT INTO target_tags (target_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(target_id)
            .bind(tag)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Replaces the device-owned attributes (JSON object text) and clears the "please send" flag.
    pub async fn set_target_attributes(
        &self,
        target_id: i64,
        attributes_json: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE targets SET attributes = $1, request_attributes = 0 WHERE id = $2")
            .bind(attributes_json)
            .bind(target_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Asks the device to send its attributes at its next poll (DDI `_links.configData`).
    pub async fn request_target_attributes(&self, target_id: i64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE targets SET request_attributes = 1 WHERE id = $1")
            .bind(target_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Writes a batch of last-poll times (collected in memory between flushes).
    pub async fn record_polls(&self, polls: &[Poll]) -> Result<(), sqlx::Error> {
        if polls.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for poll in polls {
            sqlx::query("UPDATE targets SET last_poll_at = $1, address = $2 WHERE id = $3")
                .bind(poll.at)
                .bind(&poll.address)
                .bind(poll.target_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
}
