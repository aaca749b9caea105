//! Dashboard accounts and login sessions (migrations/0100_dashboard_users.sql).

use super::{now_ms, Store};

/// A dashboard login session as stored (see `dashboard::Sessions`).
#[derive(Debug, Clone)]
pub struct DashboardSession {
    /// sha256 hex of the session id (the cookie value).
    pub id_hash: String,
    /// The session's management API token, encrypted with a key derived from the session id.
    pub token_sealed: String,
    /// sha256 hex of that token (as in `api_tokens`).
    pub token_hash: String,
    /// The token was minted for a password login (deleted at logout or when pruned).
    pub minted: bool,
    /// The session's CSRF token, required on every POST (form field `csrf` or `X-CSRF-Token`).
    pub csrf: String,
    /// Name of the tenant the session acts on.
    pub tenant: String,
    /// When the session was last used (ms since 1970); idle sessions are pruned.
    pub last_used_at: i64,
}

type SessionRow = (String, String, String, i64, String, String, i64);

impl DashboardSession {
    fn from_row(row: SessionRow) -> DashboardSession {
        let (id_hash, token_sealed, token_hash, minted, csrf, tenant, last_used_at) = row;
        DashboardSession {
            id_hash,
            token_sealed,
            token_hash,
            minted: minted != 0,
            csrf,
            tenant,
            last_used_at,
        }
    }
}

/// A dashboard account (`tenant_id = None`: cross-tenant).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DashboardUser {
    /// Row id.
    pub id: i64,
    /// The tenant the account belongs to; `None` for a cross-tenant account (command line only).
    pub tenant_id: Option<i64>,
    /// Login name, unique per tenant.
    pub name: String,
    /// argon2id PHC string (`dashboard::hash_password`); never the password.
    pub password_hash: String,
    /// `viewer`, `operator` or `admin`: the role of the tokens minted for its logins.
    pub role: String,
    /// When the account was created (ms since 1970).
    pub created_at: i64,
}

/// The management API token minted for a password login, stored with its session.
#[derive(Debug, Clone, Copy)]
pub struct MintedToken<'a> {
    /// `DASHBOARD_SESSION_TOKEN_PREFIX` and the user's name.
    pub name: &'a str,
    /// The user's role (`viewer`, `operator` or `admin`).
    pub role: &'a str,
    /// The tenant the token acts on.
    pub tenant_id: i64,
}

/// Name prefix of the API tokens minted for password logins to the dashboard.
pub const DASHBOARD_SESSION_TOKEN_PREFIX: &str = "dashboard-session:";

impl Store {
    /// Creates a dashboard account in `tenant_id` (`None`: cross-tenant, command line only).
    pub async fn create_dashboard_user(
        &self,
        tenant_id: Option<i64>,
        name: &str,
        password_hash: &str,
        role: &str,
    ) -> Result<i64, sqlx::Error> {
        let mut tx = self.begin().await?;
        // UNIQUE (tenant_id, name) does not hold for NULL tenant ids: check cross-tenant names here.
        if tenant_id.is_none() {
            let taken: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM dashboard_users WHERE tenant_id IS NULL AND name = $1",
            )
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            if taken.is_some() {
                return Err(sqlx::Error::Protocol(format!(
                    "a cross-tenant dashboard user {name:?} already exists"
                )));
            }
        }
        let id = sqlx::query_scalar(
            "INSERT INTO dashboard_users (tenant_id, name, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(password_hash)
        .bind(role)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The account `name` may log in to tenant `tenant_id` with: the tenant's own account of that
    /// name, else a cross-tenant one.
    pub async fn dashboard_user(
        &self,
        tenant_id: i64,
        name: &str,
    ) -> Result<Option<DashboardUser>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, tenant_id, name, password_hash, role, created_at FROM dashboard_users \
             WHERE name = $1 AND (tenant_id = $2 OR tenant_id IS NULL) \
             ORDER BY tenant_id IS NULL LIMIT 1",
        )
        .bind(name)
        .bind(tenant_id)
        .fetch_optional(&self.read)
        .await
    }

    /// The dashboard accounts of `tenant_id` (cross-tenant ones are managed from the command line).
    pub async fn dashboard_users(&self, tenant_id: i64) -> Result<Vec<DashboardUser>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, tenant_id, name, password_hash, role, created_at FROM dashboard_users \
             WHERE tenant_id = $1 ORDER BY name",
        )
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await
    }

    /// Deletes an account of `tenant_id` and the session tokens of its logins there (which ends
    /// those sessions). Accounts of other tenants are not found.
    pub async fn delete_dashboard_user(
        &self,
        tenant_id: i64,
        id: i64,
    ) -> Result<Option<String>, sqlx::Error> {
        let mut tx = self.begin().await?;
        let name: Option<String> = sqlx::query_scalar(
            "DELETE FROM dashboard_users WHERE id = $1 AND tenant_id = $2 RETURNING name",
        )
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(name) = &name {
            sqlx::query("DELETE FROM api_tokens WHERE name = $1 AND tenant_id = $2")
                .bind(format!("{DASHBOARD_SESSION_TOKEN_PREFIX}{name}"))
                .bind(tenant_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(name)
    }

    /// Stores a dashboard session (migrations/0200_replicas.sql). With `mint`, the session's API
    /// token (`session.token_hash`) is created in the same transaction, so a concurrent
    /// [`Store::prune_dashboard_sessions`] on another replica never sees the token without its session.
    pub async fn create_dashboard_session(
        &self,
        session: &DashboardSession,
        mint: Option<MintedToken<'_>>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.begin().await?;
        if let Some(MintedToken {
            name,
            role,
            tenant_id,
        }) = mint
        {
            sqlx::query(
                "INSERT INTO api_tokens (name, token_hash, role, tenant_id, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(name)
            .bind(&session.token_hash)
            .bind(role)
            .bind(tenant_id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO dashboard_sessions (id_hash, token_sealed, token_hash, minted, csrf, tenant, last_used_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&session.id_hash)
        .bind(&session.token_sealed)
        .bind(&session.token_hash)
        .bind(i64::from(session.minted))
        .bind(&session.csrf)
        .bind(&session.tenant)
        .bind(session.last_used_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// The session whose id hashes to `id_hash`, expired or not (the caller checks).
    pub async fn dashboard_session(
        &self,
        id_hash: &str,
    ) -> Result<Option<DashboardSession>, sqlx::Error> {
        let row: Option<SessionRow> = sqlx::query_as(
            "SELECT id_hash, token_sealed, token_hash, minted, csrf, tenant, last_used_at \
             FROM dashboard_sessions WHERE id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(DashboardSession::from_row))
    }

    /// Records a use of the session at `at` (ms since 1970); never moves `last_used_at` backwards.
    pub async fn touch_dashboard_session(&self, id_hash: &str, at: i64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE dashboard_sessions SET last_used_at = $1 WHERE id_hash = $2 AND last_used_at < $1")
            .bind(at)
            .bind(id_hash)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Ends a session; returns it if it existed.
    pub async fn delete_dashboard_session(
        &self,
        id_hash: &str,
    ) -> Result<Option<DashboardSession>, sqlx::Error> {
        let row: Option<SessionRow> = sqlx::query_as(
            "DELETE FROM dashboard_sessions WHERE id_hash = $1 \
             RETURNING id_hash, token_sealed, token_hash, minted, csrf, tenant, last_used_at",
        )
        .bind(id_hash)
        .fetch_optional(&self.write)
        .await?;
        Ok(row.map(DashboardSession::from_row))
    }

    /// Deletes sessions last used before `idle_before` and the password-login tokens that no
    /// session refers to any more (sessions that ended without logout). Returns the tokens deleted.
    pub async fn prune_dashboard_sessions(&self, idle_before: i64) -> Result<u64, sqlx::Error> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM dashboard_sessions WHERE last_used_at < $1")
            .bind(idle_before)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query(
            "DELETE FROM api_tokens WHERE name LIKE $1 AND token_hash NOT IN \
             (SELECT token_hash FROM dashboard_sessions WHERE minted = 1)",
        )
        .bind(format!("{DASHBOARD_SESSION_TOKEN_PREFIX}%"))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Deletes the API token with this sha256 hex hash; no error if there is none.
    pub async fn delete_api_token_by_hash(&self, token_hash: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.write)
            .await?;
        Ok(())
    }
}
