//! Rollouts: one distribution set assigned to many targets, group after group.

use super::{for_update, now_ms, ActionStatus, GroupStatus, NewStatus, RolloutStatus, Store, Tx};
use serde::Serialize;
use sqlx::Any;

/// A rollout: one distribution set assigned to many targets, group after group, under the
/// scheduler's threshold rules. Served as the management API's `Rollout`.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Rollout {
    /// Row id.
    pub id: i64,
    /// The tenant the rollout belongs to.
    #[serde(skip)]
    pub tenant_id: i64,
    /// Operator-given name (not unique).
    pub name: String,
    /// The distribution set every target gets.
    #[serde(rename = "distributionSetId")]
    pub ds_id: i64,
    /// The action type of every action it creates: `soft`, `forced`, `timeforced` or
    /// `downloadonly`.
    #[serde(rename = "type")]
    pub action_type: String,
    /// Where the rollout is.
    pub status: RolloutStatus,
    /// Percent of the latest group that must finish before the next group starts.
    #[serde(rename = "successThreshold")]
    pub success_threshold: i64,
    /// Percent of a group that may fail; above it the rollout halts.
    #[serde(rename = "errorThreshold")]
    pub error_threshold: i64,
    /// Why it was halted or canceled (and by whom); `None` otherwise.
    #[serde(rename = "statusReason")]
    pub status_reason: Option<String>,
    /// When it was created (ms since 1970).
    #[serde(rename = "createdAt")]
    pub created_at: i64,
    /// When its status last changed (ms since 1970).
    #[serde(rename = "updatedAt")]
    pub updated_at: i64,
}

/// One group of a rollout: a fixed set of targets started together.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct RolloutGroup {
    /// Row id (actions point to it as `rollout_group_id`).
    pub id: i64,
    /// The rollout it belongs to.
    #[serde(skip)]
    pub rollout_id: i64,
    /// 0-based order within the rollout: groups start in this order.
    pub position: i64,
    /// Operator-given name.
    pub name: String,
    /// Where the group is.
    pub status: GroupStatus,
}

/// How the targets of one rollout group stand, from their actions (`Store::group_counts`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct GroupCounts {
    /// Targets in the group.
    pub total: i64,
    /// Targets whose action has not been created yet (group not started).
    pub scheduled: i64,
    /// Targets whose action is open.
    pub running: i64,
    /// Targets whose action closed `finished`.
    pub finished: i64,
    /// Targets whose action closed `error`.
    pub error: i64,
    /// Targets whose action closed any other way (canceled).
    pub canceled: i64,
}

/// A rollout to create (status `ready`).
#[derive(Debug, Clone)]
pub struct NewRollout {
    /// Operator-given name.
    pub name: String,
    /// The distribution set to roll out.
    pub ds_id: i64,
    /// `soft`, `forced`, `timeforced` or `downloadonly`.
    pub action_type: String,
    /// Percent of a group that must succeed before the next group starts.
    pub success_threshold: i64,
    /// Percent of a group that may fail; above it the rollout halts.
    pub error_threshold: i64,
    /// In the order they run.
    pub groups: Vec<NewGroup>,
}

/// One group of a new rollout.
#[derive(Debug, Clone)]
pub struct NewGroup {
    /// Operator-given name.
    pub name: String,
    /// The group's targets (row ids); a duplicate within the group is stored once.
    pub target_ids: Vec<i64>,
}

pub(super) const ROLLOUT_COLUMNS: &str =
    "id, tenant_id, name, ds_id, action_type, status, success_threshold, error_threshold, \
     status_reason, created_at, updated_at";

impl Store {
    /// Creates a rollout in `ready` with all its groups `scheduled`, in one transaction.
    /// Nothing is assigned until it is started.
    pub async fn create_rollout(
        &self,
        tenant_id: i64,
        new: &NewRollout,
    ) -> Result<Rollout, sqlx::Error> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let rollout: Rollout = sqlx::query_as(&format!(
            "INSERT INTO rollouts (tenant_id, name, ds_id, action_type, status, success_threshold, error_threshold, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, 'ready', $5, $6, $7, $7) \
             RETURNING {ROLLOUT_COLUMNS}"
        ))
        .bind(tenant_id)
        .bind(&new.name)
        .bind(new.ds_id)
        .bind(&new.action_type)
        .bind(new.success_threshold)
        .bind(new.error_threshold)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        for (position, group) in new.groups.iter().enumerate() {
            let group_id: i64 = sqlx::query_scalar(
                "INSERT INTO rollout_groups (rollout_id, position, name, status) VALUES ($1, $2, $3, 'scheduled') RETURNING id",
            )
            .bind(rollout.id)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(&group.name)
            .fetch_one(&mut *tx)
            .await?;
            for target_id in &group.target_ids {
                sqlx::query("INSERT INTO rollout_group_targets (group_id, target_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(group_id)
                    .bind(target_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(rollout)
    }

    /// The tenant's rollout with this id.
    pub async fn rollout(&self, tenant_id: i64, id: i64) -> Result<Option<Rollout>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE id = $1 AND tenant_id = $2"
        ))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(&self.read)
        .await
    }

    /// Every rollout of the tenant, oldest first.
    pub async fn rollouts(&self, tenant_id: i64) -> Result<Vec<Rollout>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE tenant_id = $1 ORDER BY id"
        ))
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await
    }

    /// The rollout's groups, in the order they run.
    pub async fn rollout_groups(&self, rollout_id: i64) -> Result<Vec<RolloutGroup>, sqlx::Error> {
        sqlx::query_as("SELECT id, rollout_id, position, name, status FROM rollout_groups WHERE rollout_id = $1 ORDER BY position")
            .bind(rollout_id)
            .fetch_all(&self.read)
            .await
    }

    /// Counts the group's targets by the state of their action.
    pub async fn group_counts(&self, group_id: i64) -> Result<GroupCounts, sqlx::Error> {
        Self::group_counts_on(&self.read, group_id).await
    }

    async fn group_counts_on<'e, E>(executor: E, group_id: i64) -> Result<GroupCounts, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = Any> + Copy,
    {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM rollout_group_targets WHERE group_id = $1")
                .bind(group_id)
                .fetch_one(executor)
                .await?;
        let rows: Vec<(ActionStatus, i64, i64)> = sqlx::query_as(
            "SELECT status, active, COUNT(*) FROM actions WHERE rollout_group_id = $1 GROUP BY status, active",
        )
        .bind(group_id)
        .fetch_all(executor)
        .await?;
        let mut counts = GroupCounts {
            total,
            ..Default::default()
        };
        let mut with_action = 0;
        for (status, active, n) in rows {
            with_action += n;
            match (status, active) {
                (ActionStatus::Finished, 0) => counts.finished += n,
                (ActionStatus::Error, 0) => counts.error += n,
                (_, 0) => counts.canceled += n,
                _ => counts.running += n,
            }
        }
        counts.scheduled = (total - with_action).max(0);
        Ok(counts)
    }

    /// Moves the rollout to `to` if its status is one of `from`, with `reason` as its status
    /// reason.
    /// Returns whether it changed: `false` if the rollout is missing or in another status.
    pub async fn set_rollout_status(
        &self,
        rollout_id: i64,
        from: &[RolloutStatus],
        to: RolloutStatus,
        reason: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let changed = Self::set_rollout_status_in(&mut tx, rollout_id, from, to, reason).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn set_rollout_status_in(
        tx: &mut Tx<'_>,
        rollout_id: i64,
        from: &[RolloutStatus],
        to: RolloutStatus,
        reason: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        let lock = for_update(tx);
        let status: Option<RolloutStatus> =
            sqlx::query_scalar(&format!("SELECT status FROM rollouts WHERE id = $1{lock}"))
                .bind(rollout_id)
                .fetch_optional(&mut **tx)
                .await?;
        match status {
            Some(status) if from.contains(&status) => {
                sqlx::query("UPDATE rollouts SET status = $1, status_reason = $2, updated_at = $3 WHERE id = $4")
                    .bind(to)
                    .bind(reason)
                    .bind(now_ms())
                    .bind(rollout_id)
                    .execute(&mut **tx)
                    .await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Starts a scheduled group: creates one action per target, in one transaction with the group's
    /// status change, so a crash leaves either no actions or all of them. The status change is
    /// conditional (`scheduled` → `running`), so of two schedulers starting the same group only
    /// one creates actions (the other waits for its commit, then changes no row); the unique
    /// index on (group, target) backs this up. Set-based SQL: a group of 100 000 devices is a few
    /// statements, not 300 000.
    pub async fn start_group(&self, rollout: &Rollout, group_id: i64) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE rollout_groups SET status = 'running' WHERE id = $1 AND status = 'scheduled'",
        )
        .bind(group_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let now = now_ms();
        // The group's targets, locked in id order (as single assignments lock them).
        let lock = for_update(&tx);
        if !lock.is_empty() {
            sqlx::query(&format!(
                "SELECT id FROM targets WHERE id IN (SELECT target_id FROM rollout_group_targets \
                 WHERE group_id = $1) ORDER BY id{lock}"
            ))
            .bind(group_id)
            .fetch_all(&mut *tx)
            .await?;
        }
        let superseded: Vec<i64> = sqlx::query_scalar(
            "UPDATE actions SET status = 'canceling', updated_at = $1 \
             WHERE active = 1 AND status <> 'canceling' \
             AND target_id IN (SELECT target_id FROM rollout_group_targets WHERE group_id = $2) \
             RETURNING id",
        )
        .bind(now)
        .bind(group_id)
        .fetch_all(&mut *tx)
        .await?;
        for action_id in superseded {
            Self::insert_status_in(
                &mut tx,
                action_id,
                &NewStatus::message(
                    ActionStatus::Canceling,
                    "keel-server: superseded by a new assignment",
                ),
            )
            .await?;
        }
        sqlx::query(
            "INSERT INTO actions (tenant_id, target_id, ds_id, rollout_id, rollout_group_id, action_type, \
             status, active, created_at, updated_at) \
             SELECT t.tenant_id, t.id, $1, $2, $3, $4, 'running', 1, $5, $5 FROM targets t \
             JOIN rollout_group_targets g ON g.target_id = t.id WHERE g.group_id = $3 ORDER BY t.id",
        )
        .bind(rollout.ds_id)
        .bind(rollout.id)
        .bind(group_id)
        .bind(&rollout.action_type)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let created = serde_json::to_string(&["keel-server: assignment created"])
            .unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO action_status (action_id, status, messages, reported_at, created_at) \
             SELECT id, 'running', $1, $2, $2 FROM actions WHERE rollout_group_id = $3 ORDER BY id",
        )
        .bind(created)
        .bind(now)
        .bind(group_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Moves the group from `from` to `to`; returns `false` (and changes nothing) if it was not in
    /// `from`.
    pub async fn set_group_status(
        &self,
        group_id: i64,
        from: GroupStatus,
        to: GroupStatus,
    ) -> Result<bool, sqlx::Error> {
        let done =
            sqlx::query("UPDATE rollout_groups SET status = $1 WHERE id = $2 AND status = $3")
                .bind(to)
                .bind(group_id)
                .bind(from)
                .execute(&self.write)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Halts a rollout because a group crossed its error threshold.
    pub async fn halt_rollout(
        &self,
        rollout_id: i64,
        group_id: i64,
        reason: &str,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let changed = Self::set_rollout_status_in(
            &mut tx,
            rollout_id,
            &[RolloutStatus::Running],
            RolloutStatus::Halted,
            Some(reason),
        )
        .await?;
        if changed {
            sqlx::query("UPDATE rollout_groups SET status = 'error' WHERE id = $1")
                .bind(group_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Cancels a rollout: groups not started never start, open actions are told to cancel.
    /// `by` names who canceled it (the token or dashboard user), for the rollout's status reason.
    pub async fn cancel_rollout(&self, rollout_id: i64, by: &str) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let reason = format!("canceled by {by}");
        let changed = Self::set_rollout_status_in(
            &mut tx,
            rollout_id,
            &[
                RolloutStatus::Ready,
                RolloutStatus::Running,
                RolloutStatus::Paused,
                RolloutStatus::Halted,
            ],
            RolloutStatus::Canceled,
            Some(&reason),
        )
        .await?;
        if changed {
            sqlx::query("UPDATE rollout_groups SET status = 'canceled' WHERE rollout_id = $1 AND status = 'scheduled'")
                .bind(rollout_id)
                .execute(&mut *tx)
                .await?;
            let open: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM actions WHERE rollout_id = $1 AND active = 1 AND status <> 'canceling'",
            )
            .bind(rollout_id)
            .fetch_all(&mut *tx)
            .await?;
            for action_id in open {
                sqlx::query(
                    "UPDATE actions SET status = 'canceling', updated_at = $1 WHERE id = $2",
                )
                .bind(now_ms())
                .bind(action_id)
                .execute(&mut *tx)
                .await?;
                Self::insert_status_in(
                    &mut tx,
                    action_id,
                    &NewStatus::message(ActionStatus::Canceling, "keel-server: rollout canceled"),
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Every rollout in `running`, of all tenants: the scheduler's work list.
    pub async fn running_rollouts(&self) -> Result<Vec<Rollout>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE status = 'running' ORDER BY id"
        ))
        .fetch_all(&self.read)
        .await
    }
}
