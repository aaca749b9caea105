//! Actions (one distribution set assigned to one target) and their status history.

use super::{for_update, now_ms, ActionStatus, Store, Target, Tx};
use serde::Serialize;

/// One assignment of a distribution set to a target: what the device is told to install.
/// Served as the management API's `Action`.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Action {
    /// Row id: the `actionId` in DDI and management URLs.
    pub id: i64,
    /// The tenant the action belongs to.
    #[serde(skip)]
    pub tenant_id: i64,
    /// The target (device) the set is assigned to.
    #[serde(skip)]
    pub target_id: i64,
    /// The distribution set to install.
    #[serde(rename = "distributionSetId")]
    pub ds_id: i64,
    /// The rollout that created the action; `None` for a direct assignment.
    #[serde(rename = "rolloutId")]
    pub rollout_id: Option<i64>,
    /// The rollout group that created the action; `None` for a direct assignment.
    #[serde(rename = "rolloutGroupId")]
    pub rollout_group_id: Option<i64>,
    /// `soft`, `forced`, `timeforced` or `downloadonly` (hawkBit's action types).
    #[serde(rename = "type")]
    pub action_type: String,
    /// For `timeforced`: when the action becomes forced (ms since 1970).
    pub forcetime: Option<i64>,
    /// Maintenance window: Quartz-style cron of the window starts (see [`MaintenanceWindow`]).
    #[serde(skip)]
    pub mw_schedule: Option<String>,
    /// Maintenance window: how long each window lasts, in seconds.
    #[serde(skip)]
    pub mw_duration_secs: Option<i64>,
    /// Maintenance window: the schedule's time zone, `±HH:MM` or `Z`.
    #[serde(skip)]
    pub mw_timezone: Option<String>,
    /// The current status: the latest transition, not every history entry.
    pub status: ActionStatus,
    /// 1 while open (the device must still handle it), 0 once closed; JSON `true`/`false`.
    #[serde(serialize_with = "as_bool")]
    pub active: i64,
    /// When the action was created (ms since 1970).
    #[serde(rename = "createdAt")]
    pub created_at: i64,
    /// When status or `active` last changed (ms since 1970).
    #[serde(rename = "updatedAt")]
    pub updated_at: i64,
}

fn as_bool<S: serde::Serializer>(value: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bool(*value != 0)
}

/// One entry of an action's status history: a device report or a transition of the server's own.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct ActionStatusEntry {
    /// Row id; entries of one action are in id order.
    pub id: i64,
    /// The action the entry belongs to.
    #[serde(skip)]
    pub action_id: i64,
    /// The status reported.
    pub status: ActionStatus,
    /// The messages as a JSON array of strings (the management API decodes it).
    #[serde(skip)]
    pub messages: String,
    /// The device's result code (DDI feedback `code`), if it sent one.
    pub code: Option<i64>,
    /// Progress: steps done (DDI `progress.cnt`), if sent.
    #[serde(rename = "progressCnt")]
    pub progress_cnt: Option<i64>,
    /// Progress: steps in all (DDI `progress.of`), if sent.
    #[serde(rename = "progressOf")]
    pub progress_of: Option<i64>,
    /// When the device says it happened (its `timestamp`, ms since 1970), else when it was stored.
    #[serde(rename = "reportedAt")]
    pub reported_at: i64,
    /// When the server stored the entry (ms since 1970, server clock).
    #[serde(rename = "createdAt")]
    pub created_at: i64,
}

/// What an action's maintenance window is, as given by the operator (hawkBit's format).
#[derive(Debug, Clone)]
pub struct MaintenanceWindow {
    /// Quartz-style cron of the window starts (seconds first, `?` allowed, 1 = Sunday).
    pub schedule: String,
    /// How long each window lasts, in seconds.
    pub duration_secs: i64,
    /// The schedule's time zone: `±HH:MM` or `Z`.
    pub timezone: String,
}

/// A new action to create.
#[derive(Debug, Clone)]
pub struct NewAction {
    /// `soft`, `forced`, `timeforced` or `downloadonly`.
    pub action_type: String,
    /// For `timeforced`: when the action becomes forced (ms since 1970).
    pub forcetime: Option<i64>,
    /// When the device may install; `None`: at any time.
    pub maintenance: Option<MaintenanceWindow>,
}

/// A status entry to append to an action's history.
#[derive(Debug, Clone)]
pub struct NewStatus {
    /// The status to record (and, depending on the [`Transition`], to move the action to).
    pub status: ActionStatus,
    /// Free-text lines (DDI `status.details`), stored as a JSON array.
    pub messages: Vec<String>,
    /// The device's result code, if any.
    pub code: Option<i64>,
    /// Progress: steps done, if any.
    pub progress_cnt: Option<i64>,
    /// Progress: steps in all, if any.
    pub progress_of: Option<i64>,
    /// When the device says it happened (ms since 1970); `None`: now.
    pub reported_at: Option<i64>,
}

impl NewStatus {
    /// An entry of keel-server's own (no code, no progress), reported now.
    pub fn message(status: ActionStatus, message: impl Into<String>) -> NewStatus {
        NewStatus {
            status,
            messages: vec![message.into()],
            code: None,
            progress_cnt: None,
            progress_of: None,
            reported_at: None,
        }
    }
}

/// How a status report changes the action itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Only the history grows.
    None,
    /// The action stays open with this status (unless it is being canceled: the device must still
    /// learn about the cancel).
    Open(ActionStatus),
    /// The action stays open with this status, whatever it was.
    Force(ActionStatus),
    /// The action closes with this status; `installed` marks the target as running the set.
    Close {
        /// The status the action closes with.
        status: ActionStatus,
        /// Whether the target now runs the action's distribution set.
        installed: bool,
    },
}

pub(super) const ACTION_COLUMNS: &str =
    "id, tenant_id, target_id, ds_id, rollout_id, rollout_group_id, action_type, forcetime, \
     mw_schedule, mw_duration_secs, mw_timezone, status, active, created_at, updated_at";

impl Store {
    /// The action with this id, of any tenant (callers check the tenant).
    pub async fn action(&self, id: i64) -> Result<Option<Action>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await
    }

    /// The device's oldest open action: the one it must handle first.
    pub async fn current_action(&self, target_id: i64) -> Result<Option<Action>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE target_id = $1 AND active = 1 ORDER BY id LIMIT 1"
        ))
        .bind(target_id)
        .fetch_optional(&self.read)
        .await
    }

    /// Every action of the target, oldest first.
    pub async fn target_actions(&self, target_id: i64) -> Result<Vec<Action>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE target_id = $1 ORDER BY id"
        ))
        .bind(target_id)
        .fetch_all(&self.read)
        .await
    }

    /// The action's status history, oldest first.
    pub async fn action_history(
        &self,
        action_id: i64,
    ) -> Result<Vec<ActionStatusEntry>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, action_id, status, messages, code, progress_cnt, progress_of, reported_at, created_at \
             FROM action_status WHERE action_id = $1 ORDER BY id",
        )
        .bind(action_id)
        .fetch_all(&self.read)
        .await
    }

    /// Creates an action for a target inside `tx`. Open actions of the target are superseded: they
    /// become `canceling` so the device is told to stop them first (hawkBit without multi-assignment).
    /// Rollouts create their actions a group at a time (`Store::start_group`), not through this.
    pub async fn create_action_in(
        tx: &mut Tx<'_>,
        target: &Target,
        ds_id: i64,
        new: &NewAction,
    ) -> Result<Action, sqlx::Error> {
        let now = now_ms();
        // Assignments to one target from several replicas queue on the target's row, so each one
        // sees (and supersedes) the open actions the others committed.
        let lock = for_update(tx);
        if !lock.is_empty() {
            sqlx::query(&format!("SELECT id FROM targets WHERE id = $1{lock}"))
                .bind(target.id)
                .fetch_optional(&mut **tx)
                .await?;
        }
        let superseded: Vec<i64> = sqlx::query_scalar(
            "UPDATE actions SET status = 'canceling', updated_at = $1 \
             WHERE target_id = $2 AND active = 1 AND status <> 'canceling' RETURNING id",
        )
        .bind(now)
        .bind(target.id)
        .fetch_all(&mut **tx)
        .await?;
        for action_id in superseded {
            Self::insert_status_in(
                tx,
                action_id,
                &NewStatus::message(
                    ActionStatus::Canceling,
                    "keel-server: superseded by a new assignment",
                ),
            )
            .await?;
        }
        let mw = new.maintenance.as_ref();
        let action: Action = sqlx::query_as(&format!(
            "INSERT INTO actions (tenant_id, target_id, ds_id, action_type, forcetime, \
             mw_schedule, mw_duration_secs, mw_timezone, status, active, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'running', 1, $9, $9) RETURNING {ACTION_COLUMNS}"
        ))
        .bind(target.tenant_id)
        .bind(target.id)
        .bind(ds_id)
        .bind(&new.action_type)
        .bind(new.forcetime)
        .bind(mw.map(|m| m.schedule.clone()))
        .bind(mw.map(|m| m.duration_secs))
        .bind(mw.map(|m| m.timezone.clone()))
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
        Self::insert_status_in(
            tx,
            action.id,
            &NewStatus::message(ActionStatus::Running, "keel-server: assignment created"),
        )
        .await?;
        Ok(action)
    }

    pub(super) async fn insert_status_in(
        tx: &mut Tx<'_>,
        action_id: i64,
        status: &NewStatus,
    ) -> Result<(), sqlx::Error> {
        let now = now_ms();
        let messages = serde_json::to_string(&status.messages).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO action_status (action_id, status, messages, code, progress_cnt, progress_of, reported_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(action_id)
        .bind(status.status)
        .bind(messages)
        .bind(status.code)
        .bind(status.progress_cnt)
        .bind(status.progress_of)
        .bind(status.reported_at.unwrap_or(now))
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Cancels one action: `canceling` (device must confirm) or, with `force`, closed immediately.
    /// `by` names who canceled it, in the action's status history.
    pub async fn cancel_action(
        &self,
        action_id: i64,
        force: bool,
        by: &str,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let lock = for_update(&tx);
        let active: Option<i64> =
            sqlx::query_scalar(&format!("SELECT active FROM actions WHERE id = $1{lock}"))
                .bind(action_id)
                .fetch_optional(&mut *tx)
                .await?;
        if active != Some(1) {
            return Ok(false);
        }
        let (status, active) = if force {
            (ActionStatus::Canceled, 0)
        } else {
            (ActionStatus::Canceling, 1)
        };
        sqlx::query("UPDATE actions SET status = $1, active = $2, updated_at = $3 WHERE id = $4")
            .bind(status)
            .bind(active)
            .bind(now_ms())
            .bind(action_id)
            .execute(&mut *tx)
            .await?;
        Self::insert_status_in(
            &mut tx,
            action_id,
            &NewStatus::message(status, format!("keel-server: {status} by {by}")),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
