//! Tenants and management API tokens.

use super::{now_ms, Store};

/// A tenant: a separate set of devices, software, rollouts and tokens.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Tenant {
    /// Row id, referenced by every tenant-owned row.
    pub id: i64,
    /// The name in DDI URLs and `X-Keel-Tenant`; unique without regard to case.
    pub name: String,
    /// sha256 hex of the tenant's gateway token (DDI `GatewayToken` auth); `None`: disabled.
    pub gateway_token_hash: Option<String>,
}

/// Who a management API token is: its name, role and the tenant it is bound to (`None`: a
/// cross-tenant token).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenIdentity {
    /// The token's name, as given at creation (shown in the audit log).
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// The tenant the token is bound to; `None` for a cross-tenant token.
    pub tenant_id: Option<i64>,
}

/// A management API token as listed (never its secret).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiTokenRow {
    /// Row id (the `id` of `DELETE /rest/v1/tokens/{id}`).
    pub id: i64,
    /// The token's name, as given at creation.
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// When the token was created (ms since 1970).
    pub created_at: i64,
}

impl Store {
    /// The tenant named `name`, compared without regard to ASCII case: hawkBit deployments and
    /// SWUpdate configurations often write `DEFAULT` for keel's `default`.
    pub async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, name, gateway_token_hash FROM tenants WHERE lower(name) = lower($1)",
        )
        .bind(name)
        .fetch_optional(&self.read)
        .await
    }

    /// The tenant with this row id.
    pub async fn tenant_by_id(&self, id: i64) -> Result<Option<Tenant>, sqlx::Error> {
        sqlx::query_as("SELECT id, name, gateway_token_hash FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await
    }

    /// Every tenant, in creation order.
    pub async fn tenants(&self) -> Result<Vec<Tenant>, sqlx::Error> {
        sqlx::query_as("SELECT id, name, gateway_token_hash FROM tenants ORDER BY id")
            .fetch_all(&self.read)
            .await
    }

    /// Creates a tenant; fails with a unique-constraint error if the name is taken (in any case).
    pub async fn create_tenant(&self, name: &str) -> Result<Tenant, sqlx::Error> {
        sqlx::query_as("INSERT INTO tenants (name, created_at) VALUES ($1, $2) RETURNING id, name, gateway_token_hash")
            .bind(name)
            .bind(now_ms())
            .fetch_one(&self.write)
            .await
    }

    /// Sets or (`None`) removes the tenant's gateway token, given as its sha256 hex.
    pub async fn set_gateway_token(
        &self,
        tenant_id: i64,
        token_hash: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE tenants SET gateway_token_hash = $1 WHERE id = $2")
            .bind(token_hash)
            .bind(tenant_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// How many management API tokens exist, over all tenants (0 on the very first start).
    pub async fn api_token_count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens")
            .fetch_one(&self.read)
            .await
    }

    /// Stores a token's hash. `tenant_id = None` makes a cross-tenant token: only the command
    /// line and the first start create those (docs/security.md).
    pub async fn create_api_token(
        &self,
        name: &str,
        token_hash: &str,
        role: &str,
        tenant_id: Option<i64>,
    ) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("INSERT INTO api_tokens (name, token_hash, role, tenant_id, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id")
            .bind(name)
            .bind(token_hash)
            .bind(role)
            .bind(tenant_id)
            .bind(now_ms())
            .fetch_one(&self.write)
            .await
    }

    /// Who an API token is, by its hash.
    pub async fn api_token_identity(
        &self,
        token_hash: &str,
    ) -> Result<Option<TokenIdentity>, sqlx::Error> {
        sqlx::query_as("SELECT name, role, tenant_id FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.read)
            .await
    }

    /// Deletes a token of `tenant_id`; a token of another tenant (or a cross-tenant one) is left
    /// alone and reported as not found.
    pub async fn delete_api_token(&self, tenant_id: i64, id: i64) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(tenant_id)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
