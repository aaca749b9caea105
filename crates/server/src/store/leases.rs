//! Leases (migrations/0200_replicas.sql): which replica runs a singleton job.

use super::{now_ms, Store};

/// Who holds a lease, and until when (ms since 1970, the holder's clock).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Lease {
    /// Who holds it: a name unique to one process (`scheduler::holder_id`: host, pid, random part).
    pub holder: String,
    /// When the lease ends unless renewed (ms since 1970, the holder's clock).
    pub expires_at: i64,
}

impl Store {
    /// Takes the lease `name` for `holder` until `ttl_ms` from now, or renews it if `holder`
    /// already holds it; a lease held by another holder is taken over only once it has expired.
    /// Returns whether `holder` holds the lease now. One conditional upsert, so of two replicas
    /// trying at once exactly one wins.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(now.saturating_add(ttl_ms))
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Gives the lease up (if `holder` holds it), so another replica takes over at once.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Who holds the lease `name`, if anyone ever took it (an expired lease is still returned).
    pub async fn lease(&self, name: &str) -> Result<Option<Lease>, sqlx::Error> {
        sqlx::query_as("SELECT holder, expires_at FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await
    }
}
