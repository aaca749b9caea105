//! Dashboard queries: paginated, computed in SQL so pages stay fast with large fleets.

use super::actions::ACTION_COLUMNS;
use super::{Action, Page, Store, UpdateStatus};

/// A device row of the dashboard's fleet list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceRow {
    /// The device's controller id.
    pub controller_id: String,
    /// Display name.
    pub name: String,
    /// When it last polled (ms since 1970); `None`: never.
    pub last_poll_at: Option<i64>,
    /// Its update state, computed from its actions (`DEVICE_STATE_SQL`).
    pub state: UpdateStatus,
    /// `<set name> <set version>` of the installed distribution set.
    pub installed: Option<String>,
}

/// Filters of the fleet list; empty strings mean "no filter".
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    /// Substring of the controller id or name.
    pub search: String,
    /// Only devices with this tag (exact match).
    pub tag: String,
    /// Only devices with this attribute value.
    pub attribute: Option<AttributeFilter>,
    /// An update state's text (`UpdateStatus::as_str`); any other text matches no device.
    pub state: String,
}

/// The device attribute `key` equals `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeFilter {
    /// Attribute name, as the device sent it in `configData`.
    pub key: String,
    /// The value it must have (exact match).
    pub value: String,
}

/// Escapes `%`, `_` and `\` for `LIKE ... ESCAPE '\'`.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The update state of target `t`, as a SQL expression (mirrors the management API's `updateStatus`).
pub(super) const DEVICE_STATE_SQL: &str = "CASE \
     WHEN EXISTS (SELECT 1 FROM actions a WHERE a.target_id = t.id AND a.active = 1) THEN 'pending' \
     WHEN (SELECT a.status FROM actions a WHERE a.target_id = t.id ORDER BY a.id DESC LIMIT 1) = 'error' THEN 'error' \
     WHEN t.installed_action_id IS NOT NULL THEN 'in_sync' \
     WHEN t.last_poll_at IS NOT NULL THEN 'registered' \
     ELSE 'unknown' END";

const DEVICE_INSTALLED_SQL: &str = "(SELECT d.name || ' ' || d.version FROM actions a \
     JOIN distribution_sets d ON d.id = a.ds_id WHERE a.id = t.installed_action_id)";

impl Store {
    /// One page of the fleet list (ordered by controller id) and the number of matching devices.
    pub async fn device_page(
        &self,
        tenant_id: i64,
        filter: &DeviceFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Page<DeviceRow>, sqlx::Error> {
        let search = if filter.search.is_empty() {
            String::new()
        } else {
            format!("%{}%", like_escape(&filter.search))
        };
        // Attributes are stored as compact JSON, so `"key":"value"` appears verbatim in the text.
        // Matching is ASCII case-insensitive on both backends (SQLite's LIKE is, PostgreSQL's is
        // not; LOWER on both sides makes them agree).
        let attribute = match &filter.attribute {
            Some(AttributeFilter { key, value }) => {
                let key = serde_json::to_string(key).unwrap_or_default();
                let value = serde_json::to_string(value).unwrap_or_default();
                format!("%{}%", like_escape(&format!("{key}:{value}")))
            }
            None => String::new(),
        };
        let inner = format!(
            "SELECT t.controller_id, t.name, t.last_poll_at, {DEVICE_STATE_SQL} AS state, \
             {DEVICE_INSTALLED_SQL} AS installed FROM targets t WHERE t.tenant_id = $1 \
             AND ($2 = '' OR LOWER(t.controller_id) LIKE LOWER($2) ESCAPE '\\' OR LOWER(t.name) LIKE LOWER($2) ESCAPE '\\') \
             AND ($3 = '' OR t.id IN (SELECT target_id FROM target_tags WHERE tag = $3)) \
             AND ($4 = '' OR LOWER(t.attributes) LIKE LOWER($4) ESCAPE '\\')"
        );
        let rows: Vec<DeviceRow> = sqlx::query_as(&format!(
            "SELECT controller_id, name, last_poll_at, state, installed FROM ({inner}) AS f \
             WHERE ($5 = '' OR state = $5) ORDER BY controller_id LIMIT $6 OFFSET $7"
        ))
        .bind(tenant_id)
        .bind(&search)
        .bind(&filter.tag)
        .bind(&attribute)
        .bind(&filter.state)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.read)
        .await?;
        let total: i64 = if filter.state.is_empty() {
            // Without a state filter the expensive state expression is not needed for the count.
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM targets t WHERE t.tenant_id = $1 \
                 AND ($2 = '' OR LOWER(t.controller_id) LIKE LOWER($2) ESCAPE '\\' OR LOWER(t.name) LIKE LOWER($2) ESCAPE '\\') \
                 AND ($3 = '' OR t.id IN (SELECT target_id FROM target_tags WHERE tag = $3)) \
                 AND ($4 = '' OR LOWER(t.attributes) LIKE LOWER($4) ESCAPE '\\')",
            )
            .bind(tenant_id)
            .bind(&search)
            .bind(&filter.tag)
            .bind(&attribute)
            .fetch_one(&self.read)
            .await?
        } else {
            sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM ({inner}) AS f WHERE state = $5"
            ))
            .bind(tenant_id)
            .bind(&search)
            .bind(&filter.tag)
            .bind(&attribute)
            .bind(&filter.state)
            .fetch_one(&self.read)
            .await?
        };
        Ok(Page { rows, total })
    }

    /// Fleet-wide counts for the overview: by update state, by installed set, by last-seen age.
    /// `now` and the age limits are in milliseconds.
    pub async fn fleet_counts(&self, tenant_id: i64, now: i64) -> Result<FleetCounts, sqlx::Error> {
        let by_state: Vec<StateCount> = sqlx::query_as(&format!(
            "SELECT state, COUNT(*) AS count FROM (SELECT {DEVICE_STATE_SQL} AS state FROM targets t \
             WHERE t.tenant_id = $1) AS f GROUP BY state ORDER BY state"
        ))
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await?;
        let by_version: Vec<VersionCount> = sqlx::query_as(
            "SELECT d.name || ' ' || d.version AS installed, COUNT(*) AS count FROM targets t \
             LEFT JOIN actions a ON a.id = t.installed_action_id \
             LEFT JOIN distribution_sets d ON d.id = a.ds_id \
             WHERE t.tenant_id = $1 GROUP BY d.id, d.name, d.version ORDER BY COUNT(*) DESC",
        )
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await?;
        let hour = 3_600_000;
        let (total, last_hour, last_day, never): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), \
             COALESCE(SUM(CASE WHEN last_poll_at >= $2 THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN last_poll_at >= $3 THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN last_poll_at IS NULL THEN 1 ELSE 0 END), 0) \
             FROM targets WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .bind(now - hour)
        .bind(now - 24 * hour)
        .fetch_one(&self.read)
        .await?;
        Ok(FleetCounts {
            total,
            by_state,
            by_version,
            seen_last_hour: last_hour,
            seen_last_day: last_day,
            never_seen: never,
        })
    }

    /// The most recent actions of a target (newest first), at most `limit`.
    pub async fn recent_target_actions(
        &self,
        target_id: i64,
        limit: i64,
    ) -> Result<Vec<Action>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE target_id = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(target_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await
    }

    /// Devices of a rollout group whose action ended in `error`, at most `limit`.
    pub async fn group_failed_devices(
        &self,
        group_id: i64,
        limit: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT t.controller_id FROM actions a JOIN targets t ON t.id = a.target_id \
             WHERE a.rollout_group_id = $1 AND a.status = 'error' AND a.active = 0 \
             ORDER BY t.controller_id LIMIT $2",
        )
        .bind(group_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await
    }
}

/// What the dashboard's fleet overview shows.
#[derive(Debug, Clone, Default)]
pub struct FleetCounts {
    /// Devices of the tenant.
    pub total: i64,
    /// By update state, in the order of the state's name.
    pub by_state: Vec<StateCount>,
    /// By installed set, the most common first.
    pub by_version: Vec<VersionCount>,
    /// Devices that polled within the last hour.
    pub seen_last_hour: i64,
    /// Devices that polled within the last 24 hours.
    pub seen_last_day: i64,
    /// Devices that never polled.
    pub never_seen: i64,
}

/// How many devices are in one update state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StateCount {
    /// The update state.
    pub state: UpdateStatus,
    /// Devices in it.
    pub count: i64,
}

/// How many devices run one distribution set.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct VersionCount {
    /// `<set name> <set version>`; `None`: nothing installed through keel yet.
    pub installed: Option<String>,
    /// Devices running it.
    pub count: i64,
}
