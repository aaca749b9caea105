//! The storage layer: every SQL statement keel-server runs lives in this module.
//!
//! SQL is kept portable (`$N` parameters, `RETURNING`, `ON CONFLICT`, no backend-only functions):
//! the same statements run on SQLite and on PostgreSQL through sqlx's `Any` driver, so every value
//! is one of the types both share (i64, String, Option of those). Each backend has its own
//! migration directory with the same schema (`migrations/` for SQLite, `migrations-postgres/`).
//!
//! Durability: SQLite runs in WAL mode with `synchronous=FULL`, so a commit is fsynced to the WAL
//! before `commit()` returns; PostgreSQL commits are durable with its defaults (`fsync=on`,
//! `synchronous_commit=on`). Handlers reply only after their transaction committed, so a 200
//! means the feedback survives a crash or power cut. Writes go through a single connection (SQLite
//! allows one writer; a 1-connection pool queues writers in the app instead of failing with
//! SQLITE_BUSY, and on PostgreSQL it keeps the same one-writer ordering), reads through a pool of
//! readers that see committed data.

use serde::Serialize;
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Executor, Transaction};
use std::path::Path;
use std::time::Duration;

pub type Tx<'a> = Transaction<'a, Any>;

#[derive(Clone)]
pub struct Store {
    read: AnyPool,
    write: AnyPool,
    /// Device status reports, committed in groups by `commit_reports` (see `report`).
    reports: tokio::sync::mpsc::Sender<ReportJob>,
}

/// One queued device report (see `Store::report`).
struct ReportJob {
    action_id: i64,
    target_id: i64,
    require_status: Option<String>,
    entry: NewStatus,
    transition: Transition<'static>,
    reply: tokio::sync::oneshot::Sender<Result<bool, sqlx::Error>>,
}

/// Most reports committed by one transaction (one fsync).
const REPORT_BATCH: usize = 256;

/// `" FOR UPDATE"` on PostgreSQL, `""` on SQLite: the row lock that read-check-write transactions
/// take so that several keel-server processes on one PostgreSQL database (replicas) cannot both
/// act on the same row. Under READ COMMITTED the second transaction waits for the first to commit
/// and then reads the new row. SQLite needs none: one process writes through one connection.
fn for_update(conn: &sqlx::AnyConnection) -> &'static str {
    if conn.backend_name() == "PostgreSQL" {
        " FOR UPDATE"
    } else {
        ""
    }
}

pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Tenant {
    pub id: i64,
    pub name: String,
    pub gateway_token_hash: Option<String>,
}

/// Who a management API token is: its name, role and the tenant it is bound to (`None`: a
/// cross-tenant token).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenIdentity {
    pub name: String,
    pub role: String,
    pub tenant_id: Option<i64>,
}

/// A management API token as listed (never its secret).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiTokenRow {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Target {
    pub id: i64,
    pub tenant_id: i64,
    pub controller_id: String,
    pub name: String,
    pub token_hash: Option<String>,
    pub attributes: String,
    pub request_attributes: i64,
    pub last_poll_at: Option<i64>,
    pub address: Option<String>,
    pub installed_action_id: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Action {
    pub id: i64,
    #[serde(skip)]
    pub tenant_id: i64,
    #[serde(skip)]
    pub target_id: i64,
    #[serde(rename = "distributionSetId")]
    pub ds_id: i64,
    #[serde(rename = "rolloutId")]
    pub rollout_id: Option<i64>,
    #[serde(rename = "rolloutGroupId")]
    pub rollout_group_id: Option<i64>,
    #[serde(rename = "type")]
    pub action_type: String,
    pub forcetime: Option<i64>,
    #[serde(skip)]
    pub mw_schedule: Option<String>,
    #[serde(skip)]
    pub mw_duration_secs: Option<i64>,
    #[serde(skip)]
    pub mw_timezone: Option<String>,
    pub status: String,
    #[serde(serialize_with = "as_bool")]
    pub active: i64,
    #[serde(rename = "createdAt")]
    pub created_at: i64,
    #[serde(rename = "updatedAt")]
    pub updated_at: i64,
}

fn as_bool<S: serde::Serializer>(value: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bool(*value != 0)
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct ActionStatusEntry {
    pub id: i64,
    #[serde(skip)]
    pub action_id: i64,
    pub status: String,
    #[serde(skip)]
    pub messages: String,
    pub code: Option<i64>,
    #[serde(rename = "progressCnt")]
    pub progress_cnt: Option<i64>,
    #[serde(rename = "progressOf")]
    pub progress_of: Option<i64>,
    #[serde(rename = "reportedAt")]
    pub reported_at: i64,
    #[serde(rename = "createdAt")]
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct SoftwareModule {
    pub id: i64,
    #[serde(skip)]
    pub tenant_id: i64,
    #[serde(rename = "type")]
    pub module_type: String,
    pub name: String,
    pub version: String,
    #[serde(rename = "createdAt")]
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Artifact {
    pub id: i64,
    #[serde(rename = "moduleId")]
    pub module_id: i64,
    pub filename: String,
    pub sha256: String,
    pub sha1: String,
    pub md5: String,
    pub size: i64,
    #[serde(rename = "createdAt")]
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct DistributionSet {
    pub id: i64,
    #[serde(skip)]
    pub tenant_id: i64,
    pub name: String,
    pub version: String,
    #[serde(rename = "createdAt")]
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Rollout {
    pub id: i64,
    #[serde(skip)]
    pub tenant_id: i64,
    pub name: String,
    #[serde(rename = "distributionSetId")]
    pub ds_id: i64,
    #[serde(rename = "type")]
    pub action_type: String,
    pub status: String,
    #[serde(rename = "successThreshold")]
    pub success_threshold: i64,
    #[serde(rename = "errorThreshold")]
    pub error_threshold: i64,
    #[serde(rename = "statusReason")]
    pub status_reason: Option<String>,
    #[serde(rename = "createdAt")]
    pub created_at: i64,
    #[serde(rename = "updatedAt")]
    pub updated_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct RolloutGroup {
    pub id: i64,
    #[serde(skip)]
    pub rollout_id: i64,
    pub position: i64,
    pub name: String,
    pub status: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct GroupCounts {
    pub total: i64,
    /// Targets whose action has not been created yet (group not started).
    pub scheduled: i64,
    pub running: i64,
    pub finished: i64,
    pub error: i64,
    pub canceled: i64,
}

/// What an action's maintenance window is, as given by the operator (hawkBit's format).
#[derive(Debug, Clone)]
pub struct MaintenanceWindow {
    pub schedule: String,
    pub duration_secs: i64,
    pub timezone: String,
}

/// A new action to create.
#[derive(Debug, Clone)]
pub struct NewAction {
    pub action_type: String,
    pub forcetime: Option<i64>,
    pub maintenance: Option<MaintenanceWindow>,
}

/// A status entry to append to an action's history.
#[derive(Debug, Clone, Default)]
pub struct NewStatus {
    pub status: String,
    pub messages: Vec<String>,
    pub code: Option<i64>,
    pub progress_cnt: Option<i64>,
    pub progress_of: Option<i64>,
    pub reported_at: Option<i64>,
}

/// How a status report changes the action itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition<'a> {
    /// Only the history grows.
    None,
    /// The action stays open with this status (unless it is being canceled: the device must still
    /// learn about the cancel).
    Open(&'a str),
    /// The action stays open with this status, whatever it was.
    Force(&'a str),
    /// The action closes with this status; `installed` marks the target as running the set.
    Close { status: &'a str, installed: bool },
}

const ACTION_COLUMNS: &str =
    "id, tenant_id, target_id, ds_id, rollout_id, rollout_group_id, action_type, forcetime, \
     mw_schedule, mw_duration_secs, mw_timezone, status, active, created_at, updated_at";
const TARGET_COLUMNS: &str =
    "id, tenant_id, controller_id, name, token_hash, attributes, request_attributes, \
     last_poll_at, address, installed_action_id, created_at";

impl Store {
    /// Opens the configured database: PostgreSQL if `database_url` is given, else SQLite `keel.db`
    /// in `data_dir`.
    pub async fn open(data_dir: &Path, database_url: Option<&str>) -> anyhow::Result<Store> {
        match database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Self::open_postgres(url).await
            }
            Some(_) => anyhow::bail!(
                "the database URL must start with postgres:// or postgresql:// \
                 (without one, SQLite in the data directory is used)"
            ),
            None => Self::open_sqlite(&data_dir.join("keel.db")).await,
        }
    }

    /// Opens (creating if missing) the SQLite database at `path`: WAL, `synchronous=FULL`,
    /// foreign keys on.
    pub async fn open_sqlite(path: &Path) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}", path.display());
        let write = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA busy_timeout = 30000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    Ok(())
                })
            })
            .connect(&format!("{url}?mode=rwc"))
            .await?;
        sqlx::migrate!("./migrations").run(&write).await?;
        let read = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(60))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA busy_timeout = 30000").await?;
                    Ok(())
                })
            })
            .connect(&format!("{url}?mode=ro"))
            .await?;
        Ok(Self::with_pools(read, write))
    }

    /// Connects to a PostgreSQL database (`postgres://user:password@host:port/db`, or a Unix
    /// socket directory with `?host=/run/postgresql`) and brings its schema up to date.
    pub async fn open_postgres(url: &str) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let write = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // A reply means "committed and flushed": never let a server-wide
                    // `synchronous_commit = off` turn that into "may be lost on a crash".
                    let mode: String =
                        sqlx::query_scalar("SELECT current_setting('synchronous_commit')")
                            .fetch_one(&mut *conn)
                            .await?;
                    if mode == "off" {
                        conn.execute("SET synchronous_commit = on").await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations-postgres").run(&write).await?;
        let read = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(60))
            .connect(url)
            .await?;
        Ok(Self::with_pools(read, write))
    }

    fn with_pools(read: AnyPool, write: AnyPool) -> Store {
        let (reports, queue) = tokio::sync::mpsc::channel(4 * REPORT_BATCH);
        tokio::spawn(commit_reports(write.clone(), queue));
        Store {
            read,
            write,
            reports,
        }
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    pub async fn begin(&self) -> Result<Tx<'static>, sqlx::Error> {
        self.write.begin().await
    }

    // ---------- tenants and API tokens ----------

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

    pub async fn tenant_by_id(&self, id: i64) -> Result<Option<Tenant>, sqlx::Error> {
        sqlx::query_as("SELECT id, name, gateway_token_hash FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await
    }

    pub async fn tenants(&self) -> Result<Vec<Tenant>, sqlx::Error> {
        sqlx::query_as("SELECT id, name, gateway_token_hash FROM tenants ORDER BY id")
            .fetch_all(&self.read)
            .await
    }

    pub async fn create_tenant(&self, name: &str) -> Result<Tenant, sqlx::Error> {
        sqlx::query_as("INSERT INTO tenants (name, created_at) VALUES ($1, $2) RETURNING id, name, gateway_token_hash")
            .bind(name)
            .bind(now_ms())
            .fetch_one(&self.write)
            .await
    }

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

    // ---------- targets ----------

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

    pub async fn target_by_id(&self, id: i64) -> Result<Option<Target>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {TARGET_COLUMNS} FROM targets WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await
    }

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

    pub async fn target_tags(&self, target_id: i64) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT tag FROM target_tags WHERE target_id = $1 ORDER BY tag")
            .bind(target_id)
            .fetch_all(&self.read)
            .await
    }

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

    pub async fn request_target_attributes(&self, target_id: i64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE targets SET request_attributes = 1 WHERE id = $1")
            .bind(target_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Writes a batch of last-poll times (collected in memory between flushes).
    pub async fn record_polls(&self, polls: &[(i64, i64, String)]) -> Result<(), sqlx::Error> {
        if polls.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for (target_id, at, address) in polls {
            sqlx::query("UPDATE targets SET last_poll_at = $1, address = $2 WHERE id = $3")
                .bind(at)
                .bind(address)
                .bind(target_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    // ---------- software modules, artifacts, distribution sets ----------

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

    pub async fn modules(&self, tenant_id: i64) -> Result<Vec<SoftwareModule>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, tenant_id, module_type, name, version, created_at FROM software_modules \
             WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await
    }

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

    pub async fn artifacts(&self, module_id: i64) -> Result<Vec<Artifact>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, module_id, filename, sha256, sha1, md5, size, created_at FROM artifacts \
             WHERE module_id = $1 ORDER BY id",
        )
        .bind(module_id)
        .fetch_all(&self.read)
        .await
    }

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

    // ---------- actions ----------

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

    pub async fn target_actions(&self, target_id: i64) -> Result<Vec<Action>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE target_id = $1 ORDER BY id"
        ))
        .bind(target_id)
        .fetch_all(&self.read)
        .await
    }

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
    pub async fn create_action_in(
        tx: &mut Tx<'_>,
        target: &Target,
        ds_id: i64,
        rollout: Option<(i64, i64)>,
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
                &NewStatus {
                    status: "canceling".into(),
                    messages: vec!["keel-server: superseded by a new assignment".into()],
                    ..Default::default()
                },
            )
            .await?;
        }
        let (rollout_id, group_id) = match rollout {
            Some((r, g)) => (Some(r), Some(g)),
            None => (None, None),
        };
        let mw = new.maintenance.as_ref();
        let action: Action = sqlx::query_as(&format!(
            "INSERT INTO actions (tenant_id, target_id, ds_id, rollout_id, rollout_group_id, action_type, forcetime, \
             mw_schedule, mw_duration_secs, mw_timezone, status, active, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'running', 1, $11, $11) RETURNING {ACTION_COLUMNS}"
        ))
        .bind(target.tenant_id)
        .bind(target.id)
        .bind(ds_id)
        .bind(rollout_id)
        .bind(group_id)
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
            &NewStatus {
                status: "running".into(),
                messages: vec!["keel-server: assignment created".into()],
                ..Default::default()
            },
        )
        .await?;
        Ok(action)
    }

    async fn insert_status_in(
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
        .bind(&status.status)
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

    /// Appends a status entry and applies `transition`, atomically, only if the action is still open
    /// (and, when `require_status` is given, still in that status). Returns false if it was not.
    ///
    /// Returns only after the change is committed (fsynced). Reports that arrive while a commit is
    /// under way are queued and committed together by the next transaction (group commit): one
    /// fsync for many devices instead of one each.
    pub async fn report(
        &self,
        action: &Action,
        require_status: Option<&str>,
        entry: &NewStatus,
        transition: Transition<'static>,
    ) -> Result<bool, sqlx::Error> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = ReportJob {
            action_id: action.id,
            target_id: action.target_id,
            require_status: require_status.map(str::to_string),
            entry: entry.clone(),
            transition,
            reply,
        };
        self.reports
            .send(job)
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)?
    }

    async fn report_in(tx: &mut Tx<'_>, job: &ReportJob) -> Result<bool, sqlx::Error> {
        let lock = for_update(tx);
        let current: Option<(i64, String)> = sqlx::query_as(&format!(
            "SELECT active, status FROM actions WHERE id = $1{lock}"
        ))
        .bind(job.action_id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some((active, status)) = current else {
            return Ok(false);
        };
        if active == 0
            || job
                .require_status
                .as_deref()
                .is_some_and(|required| required != status)
        {
            return Ok(false);
        }
        Self::insert_status_in(tx, job.action_id, &job.entry).await?;
        let now = now_ms();
        match job.transition {
            Transition::None => {}
            Transition::Open(status) => {
                sqlx::query("UPDATE actions SET status = $1, updated_at = $2 WHERE id = $3 AND status <> 'canceling'")
                    .bind(status)
                    .bind(now)
                    .bind(job.action_id)
                    .execute(&mut **tx)
                    .await?;
            }
            Transition::Force(status) => {
                sqlx::query("UPDATE actions SET status = $1, updated_at = $2 WHERE id = $3")
                    .bind(status)
                    .bind(now)
                    .bind(job.action_id)
                    .execute(&mut **tx)
                    .await?;
            }
            Transition::Close { status, installed } => {
                sqlx::query(
                    "UPDATE actions SET status = $1, active = 0, updated_at = $2 WHERE id = $3",
                )
                .bind(status)
                .bind(now)
                .bind(job.action_id)
                .execute(&mut **tx)
                .await?;
                if installed {
                    // After a successful update hawkBit asks the device for its attributes again.
                    sqlx::query("UPDATE targets SET installed_action_id = $1, request_attributes = 1 WHERE id = $2")
                        .bind(job.action_id)
                        .bind(job.target_id)
                        .execute(&mut **tx)
                        .await?;
                }
            }
        }
        Ok(true)
    }

    /// Adds an informational history entry (download started, deployment retrieved) to an open
    /// action (skipped if the action has been closed meanwhile).
    pub async fn note(
        &self,
        action_id: i64,
        status: &str,
        message: &str,
    ) -> Result<(), sqlx::Error> {
        // Through the group-commit queue of `report`: a rollout writes one note per deployment
        // fetch and per download, and one fsync each made these the bottleneck at 100 000 devices.
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = ReportJob {
            action_id,
            target_id: 0,
            require_status: None,
            entry: NewStatus {
                status: status.into(),
                messages: vec![message.into()],
                ..Default::default()
            },
            transition: Transition::None,
            reply,
        };
        self.reports
            .send(job)
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)??;
        Ok(())
    }

    /// Like `note`, but skipped if the action's latest entry already has this status (devices such
    /// as SWUpdate fetch the deployment on every poll).
    pub async fn note_once(
        &self,
        action_id: i64,
        status: &str,
        message: &str,
    ) -> Result<(), sqlx::Error> {
        let last: Option<String> = sqlx::query_scalar(
            "SELECT status FROM action_status WHERE action_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(action_id)
        .fetch_optional(&self.read)
        .await?;
        if last.as_deref() == Some(status) {
            return Ok(());
        }
        self.note(action_id, status, message).await
    }

    // ---------- rollouts ----------

    #[allow(clippy::too_many_arguments)]
    pub async fn create_rollout(
        &self,
        tenant_id: i64,
        name: &str,
        ds_id: i64,
        action_type: &str,
        success_threshold: i64,
        error_threshold: i64,
        groups: &[(String, Vec<i64>)],
    ) -> Result<Rollout, sqlx::Error> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let rollout: Rollout = sqlx::query_as(
            "INSERT INTO rollouts (tenant_id, name, ds_id, action_type, status, success_threshold, error_threshold, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, 'ready', $5, $6, $7, $7) \
             RETURNING id, tenant_id, name, ds_id, action_type, status, success_threshold, error_threshold, \
             status_reason, created_at, updated_at",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(ds_id)
        .bind(action_type)
        .bind(success_threshold)
        .bind(error_threshold)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        for (position, (group_name, target_ids)) in groups.iter().enumerate() {
            let group_id: i64 = sqlx::query_scalar(
                "INSERT INTO rollout_groups (rollout_id, position, name, status) VALUES ($1, $2, $3, 'scheduled') RETURNING id",
            )
            .bind(rollout.id)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(group_name)
            .fetch_one(&mut *tx)
            .await?;
            for target_id in target_ids {
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

    pub async fn rollout(&self, tenant_id: i64, id: i64) -> Result<Option<Rollout>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, tenant_id, name, ds_id, action_type, status, success_threshold, error_threshold, status_reason, \
             created_at, updated_at FROM rollouts WHERE id = $1 AND tenant_id = $2",
        )
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(&self.read)
        .await
    }

    pub async fn rollouts(&self, tenant_id: i64) -> Result<Vec<Rollout>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, tenant_id, name, ds_id, action_type, status, success_threshold, error_threshold, status_reason, \
             created_at, updated_at FROM rollouts WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await
    }

    pub async fn rollout_groups(&self, rollout_id: i64) -> Result<Vec<RolloutGroup>, sqlx::Error> {
        sqlx::query_as("SELECT id, rollout_id, position, name, status FROM rollout_groups WHERE rollout_id = $1 ORDER BY position")
            .bind(rollout_id)
            .fetch_all(&self.read)
            .await
    }

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
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
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
            match (status.as_str(), active) {
                ("finished", 0) => counts.finished += n,
                ("error", 0) => counts.error += n,
                (_, 0) => counts.canceled += n,
                _ => counts.running += n,
            }
        }
        counts.scheduled = (total - with_action).max(0);
        Ok(counts)
    }

    pub async fn set_rollout_status(
        &self,
        rollout_id: i64,
        from: &[&str],
        to: &str,
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
        from: &[&str],
        to: &str,
        reason: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        let lock = for_update(tx);
        let status: Option<String> =
            sqlx::query_scalar(&format!("SELECT status FROM rollouts WHERE id = $1{lock}"))
                .bind(rollout_id)
                .fetch_optional(&mut **tx)
                .await?;
        match status {
            Some(status) if from.contains(&status.as_str()) => {
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
                &NewStatus {
                    status: "canceling".into(),
                    messages: vec!["keel-server: superseded by a new assignment".into()],
                    ..Default::default()
                },
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

    pub async fn set_group_status(
        &self,
        group_id: i64,
        from: &str,
        to: &str,
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
        let changed =
            Self::set_rollout_status_in(&mut tx, rollout_id, &["running"], "halted", Some(reason))
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
            &["ready", "running", "paused", "halted"],
            "canceled",
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
                    &NewStatus {
                        status: "canceling".into(),
                        messages: vec!["keel-server: rollout canceled".into()],
                        ..Default::default()
                    },
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(changed)
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
            ("canceled", 0)
        } else {
            ("canceling", 1)
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
            &NewStatus {
                status: status.into(),
                messages: vec![format!("keel-server: {status} by {by}")],
                ..Default::default()
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn running_rollouts(&self) -> Result<Vec<Rollout>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, tenant_id, name, ds_id, action_type, status, success_threshold, error_threshold, status_reason, \
             created_at, updated_at FROM rollouts WHERE status = 'running' ORDER BY id",
        )
        .fetch_all(&self.read)
        .await
    }
}

// ---------- leases (migrations/0200_replicas.sql) ----------

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

    /// `(holder, expires_at)` of a lease.
    pub async fn lease(&self, name: &str) -> Result<Option<(String, i64)>, sqlx::Error> {
        sqlx::query_as("SELECT holder, expires_at FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await
    }
}

// ---------- dashboard queries (paginated, computed in SQL so pages stay fast with large fleets) ----------

/// A device row of the dashboard's fleet list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceRow {
    pub controller_id: String,
    pub name: String,
    pub last_poll_at: Option<i64>,
    /// `pending`, `error`, `in_sync`, `registered` or `unknown` (as the management API's `updateStatus`).
    pub state: String,
    /// `<set name> <set version>` of the installed distribution set.
    pub installed: Option<String>,
}

/// Filters of the fleet list; empty strings mean "no filter".
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    /// Substring of the controller id or name.
    pub search: String,
    pub tag: String,
    /// `(key, value)`: the device attribute `key` equals `value`.
    pub attribute: Option<(String, String)>,
    pub state: String,
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
const DEVICE_STATE_SQL: &str = "CASE \
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
    ) -> Result<(Vec<DeviceRow>, i64), sqlx::Error> {
        let search = if filter.search.is_empty() {
            String::new()
        } else {
            format!("%{}%", like_escape(&filter.search))
        };
        // Attributes are stored as compact JSON, so `"key":"value"` appears verbatim in the text.
        // Matching is ASCII case-insensitive on both backends (SQLite's LIKE is, PostgreSQL's is
        // not; LOWER on both sides makes them agree).
        let attribute = match &filter.attribute {
            Some((key, value)) => {
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
        Ok((rows, total))
    }

    /// Fleet-wide counts for the overview: by update state, by installed set, by last-seen age.
    /// `now` and the age limits are in milliseconds.
    pub async fn fleet_counts(&self, tenant_id: i64, now: i64) -> Result<FleetCounts, sqlx::Error> {
        let by_state: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT state, COUNT(*) FROM (SELECT {DEVICE_STATE_SQL} AS state FROM targets t \
             WHERE t.tenant_id = $1) AS f GROUP BY state ORDER BY state"
        ))
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await?;
        let by_version: Vec<(Option<String>, i64)> = sqlx::query_as(
            "SELECT d.name || ' ' || d.version, COUNT(*) FROM targets t \
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
    pub total: i64,
    pub by_state: Vec<(String, i64)>,
    /// `None`: nothing installed through keel yet.
    pub by_version: Vec<(Option<String>, i64)>,
    pub seen_last_hour: i64,
    pub seen_last_day: i64,
    pub never_seen: i64,
}

/// The group-commit loop behind `Store::report`: takes whatever reports are queued (up to
/// `REPORT_BATCH`), applies them in order in one transaction, commits once, then answers each.
/// If the batch fails, each report is retried in its own transaction so one bad report cannot
/// fail the others.
async fn commit_reports(write: AnyPool, mut queue: tokio::sync::mpsc::Receiver<ReportJob>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < REPORT_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let together = async {
            let mut tx = write.begin().await?;
            let mut results = Vec::with_capacity(batch.len());
            for job in &batch {
                results.push(Store::report_in(&mut tx, job).await?);
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(results)
        }
        .await;
        match together {
            Ok(results) => {
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(Ok(result));
                }
            }
            Err(_) => {
                for job in batch {
                    let alone = async {
                        let mut tx = write.begin().await?;
                        let result = Store::report_in(&mut tx, &job).await?;
                        tx.commit().await?;
                        Ok(result)
                    }
                    .await;
                    let _ = job.reply.send(alone);
                }
            }
        }
    }
}

// ---------- dashboard accounts (migrations/0100_dashboard_users.sql) ----------

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
    pub csrf: String,
    pub tenant: String,
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
    pub id: i64,
    pub tenant_id: Option<i64>,
    pub name: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: i64,
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

    /// Stores a dashboard session (migrations/0200_replicas.sql). With `mint = Some((name, role, tenant id))`
    /// the session's API token is created in the same transaction, so a concurrent
    /// [`Store::prune_dashboard_sessions`] on another replica never sees the token without its session.
    pub async fn create_dashboard_session(
        &self,
        session: &DashboardSession,
        mint: Option<(&str, &str, i64)>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.begin().await?;
        if let Some((name, role, tenant_id)) = mint {
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

    pub async fn delete_api_token_by_hash(&self, token_hash: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.write)
            .await?;
        Ok(())
    }
}

// ---------- bundle variants (migrations/0300_artifact_variants.sql, 0600, variants.rs) ----------

impl Store {
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

/// One TUF metadata file to store (`Store::put_tuf_files`).
#[derive(Debug, Clone)]
pub struct TufFileWrite {
    pub name: String,
    pub sha256: String,
    pub bytes: Vec<u8>,
    /// The sha256 the stored copy must still have (`None`: the file must not exist yet, or
    /// already hold exactly these bytes). A writer that lost the lease (stalled past it) and
    /// signed from an outdated copy fails here instead of overwriting what another signed.
    pub replaces: Option<String>,
}

/// A stored TUF metadata file, without its bytes (`Store::tuf_listing`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TufFileInfo {
    pub name: String,
    pub sha256: String,
    /// When this content was stored (ms since 1970, the storing replica's clock).
    pub stored_at: i64,
}

/// TUF metadata of each tenant's repository (table `tuf_metadata`, see crate::tuf).
impl Store {
    /// `(name, sha256)` of every metadata file of `tenant`.
    pub async fn tuf_files(&self, tenant: &str) -> Result<Vec<(String, String)>, sqlx::Error> {
        sqlx::query_as("SELECT name, sha256 FROM tuf_metadata WHERE tenant = $1 ORDER BY name")
            .bind(tenant)
            .fetch_all(&self.read)
            .await
    }

    /// Name, sha256 and time stored of every metadata file of `tenant`, by name.
    pub async fn tuf_listing(&self, tenant: &str) -> Result<Vec<TufFileInfo>, sqlx::Error> {
        sqlx::query_as(
            "SELECT name, sha256, stored_at FROM tuf_metadata WHERE tenant = $1 ORDER BY name",
        )
        .bind(tenant)
        .fetch_all(&self.read)
        .await
    }

    /// The bytes of one metadata file, if stored.
    pub async fn tuf_file(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        sqlx::query_scalar("SELECT bytes FROM tuf_metadata WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .fetch_optional(&self.read)
            .await
    }

    /// True if `tenant` has a TUF repository in the database (its `root.json` is stored).
    pub async fn tuf_has_root(&self, tenant: &str) -> Result<bool, sqlx::Error> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM tuf_metadata WHERE tenant = $1 AND name = 'root.json'",
        )
        .bind(tenant)
        .fetch_optional(&self.read)
        .await?;
        Ok(found.is_some())
    }

    /// Stores `files` in one transaction, each only if the stored copy is still the one it
    /// replaces (`TufFileWrite::replaces`). Returns false, and stores nothing, if any is not.
    pub async fn put_tuf_files(
        &self,
        tenant: &str,
        files: &[TufFileWrite],
    ) -> Result<bool, sqlx::Error> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        for file in files {
            let stored = match &file.replaces {
                Some(previous) => {
                    sqlx::query(
                        "UPDATE tuf_metadata SET sha256 = $3, bytes = $4, stored_at = $6 \
                         WHERE tenant = $1 AND name = $2 AND sha256 = $5",
                    )
                    .bind(tenant)
                    .bind(&file.name)
                    .bind(&file.sha256)
                    .bind(&file.bytes)
                    .bind(previous)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1
                }
                None => {
                    let inserted = sqlx::query(
                        "INSERT INTO tuf_metadata (tenant, name, sha256, bytes, stored_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, name) DO NOTHING",
                    )
                    .bind(tenant)
                    .bind(&file.name)
                    .bind(&file.sha256)
                    .bind(&file.bytes)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    inserted || {
                        let existing: Option<String> = sqlx::query_scalar(
                            "SELECT sha256 FROM tuf_metadata WHERE tenant = $1 AND name = $2",
                        )
                        .bind(tenant)
                        .bind(&file.name)
                        .fetch_optional(&mut *tx)
                        .await?;
                        existing.as_deref() == Some(file.sha256.as_str())
                    }
                }
            };
            if !stored {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes the metadata files `names` of `tenant` in one transaction, if `snapshot.json` is
    /// still stored with sha256 `snapshot` (the state the names were chosen on; a writer that
    /// stalled past its lease deletes nothing). Root versions (`N.root.json`, `root.json`) are
    /// never deleted. Returns false, and deletes nothing, if the snapshot changed.
    pub async fn prune_tuf_files(
        &self,
        tenant: &str,
        snapshot: &str,
        names: &[String],
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let lock = for_update(&tx);
        let current: Option<String> = sqlx::query_scalar(&format!(
            "SELECT sha256 FROM tuf_metadata WHERE tenant = $1 AND name = 'snapshot.json'{lock}"
        ))
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
        if current.as_deref() != Some(snapshot) {
            tx.rollback().await?;
            return Ok(false);
        }
        for name in names.iter().filter(|n| !n.ends_with("root.json")) {
            sqlx::query("DELETE FROM tuf_metadata WHERE tenant = $1 AND name = $2")
                .bind(tenant)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

// ---------- audit log (migrations/0800_audit_log.sql, audit.rs) ----------

/// One audit record.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    #[serde(rename = "tenantId")]
    pub tenant_id: Option<i64>,
    pub actor: String,
    pub action: String,
    pub object: String,
    /// The HTTP status the request was answered with.
    pub status: i64,
    pub address: Option<String>,
    pub detail: Option<String>,
}

/// What `GET /rest/v1/audit` filters on; `None` fields match everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// `Some(id)`: that tenant's records; `None`: every record (cross-tenant callers only).
    pub tenant_id: Option<i64>,
    pub actor: Option<String>,
    /// A prefix of the action, e.g. `login` or `POST /rest/v1/targets`.
    pub action: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Only records with an HTTP status of 400 or above (refusals and failures).
    pub failed_only: bool,
}

impl AuditFilter {
    /// The WHERE clause and its text bindings, numbered from `$1`.
    fn clause(&self) -> (String, Vec<AuditBind>) {
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        let mut push = |sql: &str, bind: AuditBind| {
            binds.push(bind);
            conditions.push(sql.replace('?', &format!("${}", binds.len())));
        };
        if let Some(id) = self.tenant_id {
            push("tenant_id = ?", AuditBind::Int(id));
        }
        if let Some(actor) = &self.actor {
            push("actor = ?", AuditBind::Text(actor.clone()));
        }
        if let Some(action) = &self.action {
            // A prefix match without LIKE's wildcards: substr is portable and escapes nothing.
            push(
                "substr(action, 1, length(?)) = ?",
                AuditBind::Text(action.clone()),
            );
        }
        if let Some(since) = self.since {
            push("at >= ?", AuditBind::Int(since));
        }
        if let Some(until) = self.until {
            push("at < ?", AuditBind::Int(until));
        }
        if self.failed_only {
            conditions.push("status >= 400".into());
        }
        let clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        (clause, binds)
    }
}

enum AuditBind {
    Int(i64),
    Text(String),
}

impl Store {
    /// Appends audit records in one transaction.
    pub async fn append_audit(&self, records: &[AuditRecord]) -> Result<(), sqlx::Error> {
        let mut tx = self.begin().await?;
        for r in records {
            sqlx::query(
                "INSERT INTO audit_log (at, tenant_id, actor, action, object, status, address, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(r.at)
            .bind(r.tenant_id)
            .bind(&r.actor)
            .bind(&r.action)
            .bind(&r.object)
            .bind(r.status)
            .bind(&r.address)
            .bind(&r.detail)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Audit records matching `filter`, newest first, and how many match in all.
    pub async fn audit(
        &self,
        filter: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<AuditRecord>, i64), sqlx::Error> {
        let (clause, binds) = filter.clause();
        let n = binds.len();
        let select = format!(
            "SELECT id, at, tenant_id, actor, action, object, status, address, detail FROM audit_log{clause} \
             ORDER BY id DESC LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let count = format!("SELECT COUNT(*) FROM audit_log{clause}");
        let mut rows = sqlx::query_as::<_, AuditRecord>(&select);
        let mut total = sqlx::query_scalar::<_, i64>(&count);
        for bind in &binds {
            match bind {
                AuditBind::Int(v) => {
                    rows = rows.bind(*v);
                    total = total.bind(*v);
                }
                AuditBind::Text(v) => {
                    rows = rows.bind(v.clone());
                    total = total.bind(v.clone());
                }
            }
        }
        let records = rows.bind(limit).bind(offset).fetch_all(&self.read).await?;
        let total = total.fetch_one(&self.read).await?;
        Ok((records, total))
    }
}

// ---------- management API list pages (crate::paging: offset, limit, sort, q) ----------

use crate::paging::{Bind, Field, Kind, Listing, PageRequest};

/// `GET /rest/v1/targets`: targets as `t`.
pub const TARGET_LISTING: Listing = Listing {
    fields: &[
        Field::text("controllerId", "t.controller_id"),
        Field::text("name", "t.name"),
        Field::text("updateStatus", DEVICE_STATE_SQL),
        Field::int(
            "installedDistributionSetId",
            "(SELECT a.ds_id FROM actions a WHERE a.id = t.installed_action_id)",
        )
        .nullable(),
        Field::int("lastPollAt", "t.last_poll_at").nullable(),
        Field::text("address", "t.address").nullable(),
        Field::int("createdAt", "t.created_at"),
        Field {
            name: "tag",
            sql: "g.tag",
            kind: Kind::Exists(
                "EXISTS (SELECT 1 FROM target_tags g WHERE g.target_id = t.id AND {})",
            ),
            nullable: false,
        },
    ],
    tie: "t.id",
    extra_params: &["tag"],
};

pub const MODULE_LISTING: Listing = Listing {
    fields: &[
        Field::int("id", "id"),
        Field::text("type", "module_type"),
        Field::text("name", "name"),
        Field::text("version", "version"),
        Field::int("createdAt", "created_at"),
    ],
    tie: "id",
    extra_params: &[],
};

pub const SET_LISTING: Listing = Listing {
    fields: &[
        Field::int("id", "id"),
        Field::text("name", "name"),
        Field::text("version", "version"),
        Field::int("createdAt", "created_at"),
    ],
    tie: "id",
    extra_params: &[],
};

pub const ARTIFACT_LISTING: Listing = Listing {
    fields: &[
        Field::int("id", "id"),
        Field::text("filename", "filename"),
        Field::text("sha256", "sha256"),
        Field::int("size", "size"),
        Field::int("createdAt", "created_at"),
    ],
    tie: "id",
    extra_params: &[],
};

pub const ACTION_LISTING: Listing = Listing {
    fields: &[
        Field::int("id", "id"),
        Field::int("distributionSetId", "ds_id"),
        Field::int("rolloutId", "rollout_id").nullable(),
        Field::text("type", "action_type"),
        Field::text("status", "status"),
        Field {
            name: "active",
            sql: "active",
            kind: Kind::Bool,
            nullable: false,
        },
        Field::int("createdAt", "created_at"),
        Field::int("updatedAt", "updated_at"),
    ],
    tie: "id",
    extra_params: &[],
};

pub const ROLLOUT_LISTING: Listing = Listing {
    fields: &[
        Field::int("id", "id"),
        Field::text("name", "name"),
        Field::int("distributionSetId", "ds_id"),
        Field::text("type", "action_type"),
        Field::text("status", "status"),
        Field::int("createdAt", "created_at"),
        Field::int("updatedAt", "updated_at"),
    ],
    tie: "id",
    extra_params: &[],
};

pub const TOKEN_LISTING: Listing = Listing {
    fields: &[
        Field::int("id", "id"),
        Field::text("name", "name"),
        Field::text("role", "role"),
        Field::int("createdAt", "created_at"),
    ],
    tie: "id",
    extra_params: &[],
};

pub const TENANT_LISTING: Listing = Listing {
    fields: &[Field::int("id", "id"), Field::text("name", "name")],
    tie: "id",
    extra_params: &[],
};

impl Store {
    /// One page of `SELECT columns FROM ... WHERE base AND <filter>` and the number of matching
    /// rows. `from_where` holds `$1..$k` for `base`; the filter's placeholders follow.
    async fn list_page<T>(
        &self,
        columns: &str,
        from_where: &str,
        base: Vec<Bind>,
        page: &PageRequest,
    ) -> Result<(Vec<T>, i64), sqlx::Error>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        let (filter, filter_binds) = page.filter_sql(base.len() + 1);
        let mut binds = base;
        binds.extend(filter_binds);
        let n = binds.len();
        let count_sql = format!("SELECT COUNT(*) {from_where} AND {filter}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for bind in &binds {
            count = match bind {
                Bind::Int(v) => count.bind(*v),
                Bind::Text(v) => count.bind(v.clone()),
            };
        }
        let total = count.fetch_one(&self.read).await?;
        let rows_sql = format!(
            "SELECT {columns} {from_where} AND {filter} ORDER BY {} LIMIT ${} OFFSET ${}",
            page.order_by(),
            n + 1,
            n + 2
        );
        let mut rows = sqlx::query_as::<_, T>(&rows_sql);
        for bind in &binds {
            rows = match bind {
                Bind::Int(v) => rows.bind(*v),
                Bind::Text(v) => rows.bind(v.clone()),
            };
        }
        let rows = rows
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(&self.read)
            .await?;
        Ok((rows, total))
    }

    /// Targets of a tenant, optionally only those with exactly `tag`.
    pub async fn targets_page(
        &self,
        tenant_id: i64,
        tag: Option<&str>,
        page: &PageRequest,
    ) -> Result<(Vec<Target>, i64), sqlx::Error> {
        let columns = TARGET_COLUMNS
            .split(", ")
            .map(|c| format!("t.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        match tag {
            Some(tag) => {
                self.list_page(
                    &columns,
                    "FROM targets t WHERE t.tenant_id = $1 AND t.id IN \
                     (SELECT target_id FROM target_tags WHERE tag = $2)",
                    vec![Bind::Int(tenant_id), Bind::Text(tag.to_string())],
                    page,
                )
                .await
            }
            None => {
                self.list_page(
                    &columns,
                    "FROM targets t WHERE t.tenant_id = $1",
                    vec![Bind::Int(tenant_id)],
                    page,
                )
                .await
            }
        }
    }

    pub async fn modules_page(
        &self,
        tenant_id: i64,
        page: &PageRequest,
    ) -> Result<(Vec<SoftwareModule>, i64), sqlx::Error> {
        self.list_page(
            "id, tenant_id, module_type, name, version, created_at",
            "FROM software_modules WHERE tenant_id = $1",
            vec![Bind::Int(tenant_id)],
            page,
        )
        .await
    }

    pub async fn distribution_sets_page(
        &self,
        tenant_id: i64,
        page: &PageRequest,
    ) -> Result<(Vec<DistributionSet>, i64), sqlx::Error> {
        self.list_page(
            "id, tenant_id, name, version, created_at",
            "FROM distribution_sets WHERE tenant_id = $1",
            vec![Bind::Int(tenant_id)],
            page,
        )
        .await
    }

    pub async fn artifacts_page(
        &self,
        module_id: i64,
        page: &PageRequest,
    ) -> Result<(Vec<Artifact>, i64), sqlx::Error> {
        self.list_page(
            "id, module_id, filename, sha256, sha1, md5, size, created_at",
            "FROM artifacts WHERE module_id = $1",
            vec![Bind::Int(module_id)],
            page,
        )
        .await
    }

    pub async fn target_actions_page(
        &self,
        target_id: i64,
        page: &PageRequest,
    ) -> Result<(Vec<Action>, i64), sqlx::Error> {
        self.list_page(
            ACTION_COLUMNS,
            "FROM actions WHERE target_id = $1",
            vec![Bind::Int(target_id)],
            page,
        )
        .await
    }

    pub async fn rollouts_page(
        &self,
        tenant_id: i64,
        page: &PageRequest,
    ) -> Result<(Vec<Rollout>, i64), sqlx::Error> {
        self.list_page(
            "id, tenant_id, name, ds_id, action_type, status, success_threshold, error_threshold, \
             status_reason, created_at, updated_at",
            "FROM rollouts WHERE tenant_id = $1",
            vec![Bind::Int(tenant_id)],
            page,
        )
        .await
    }

    /// The tokens bound to `tenant_id` (cross-tenant tokens are listed by the command line only).
    pub async fn api_tokens_page(
        &self,
        tenant_id: i64,
        page: &PageRequest,
    ) -> Result<(Vec<ApiTokenRow>, i64), sqlx::Error> {
        self.list_page(
            "id, name, role, created_at",
            "FROM api_tokens WHERE tenant_id = $1",
            vec![Bind::Int(tenant_id)],
            page,
        )
        .await
    }

    /// Tenants; `only = Some(id)`: just that one (what a tenant-bound caller may see).
    pub async fn tenants_page(
        &self,
        only: Option<i64>,
        page: &PageRequest,
    ) -> Result<(Vec<Tenant>, i64), sqlx::Error> {
        let (from_where, base) = match only {
            Some(id) => ("FROM tenants WHERE id = $1", vec![Bind::Int(id)]),
            None => ("FROM tenants WHERE 1 = 1", Vec::new()),
        };
        self.list_page("id, name, gateway_token_hash", from_where, base, page)
            .await
    }
}
