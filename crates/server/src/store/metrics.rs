//! Counts for `/metrics`: actions and rollouts by status, over every tenant.

use super::Store;

impl Store {
    /// (status, number) of every action of every tenant.
    pub async fn action_status_counts(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as("SELECT status, COUNT(*) FROM actions GROUP BY status")
            .fetch_all(&self.read)
            .await
    }

    /// (status, number) of every rollout of every tenant.
    pub async fn rollout_status_counts(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as("SELECT status, COUNT(*) FROM rollouts GROUP BY status")
            .fetch_all(&self.read)
            .await
    }
}
