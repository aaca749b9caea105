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
//!
//! One file per part of the schema; each adds its own `impl Store` block:
//! `tenants` (tenants, API tokens), `targets`, `software` (modules, artifacts, distribution sets),
//! `actions`, `reports` (the group commit of device reports), `rollouts`, `leases`, `dashboard`
//! (the dashboard's fleet queries), `accounts` (dashboard users and sessions), `variants`, `tuf`,
//! `audit` and `listings` (the management API's list pages). `status` holds the status enums,
//! stored as their text.

mod accounts;
mod actions;
mod audit;
mod dashboard;
mod leases;
mod listings;
mod metrics;
mod reports;
mod rollouts;
mod software;
mod status;
mod targets;
mod tenants;
mod tuf;
mod variants;

pub use accounts::{DashboardSession, DashboardUser, MintedToken, DASHBOARD_SESSION_TOKEN_PREFIX};
pub use actions::{Action, ActionStatusEntry, MaintenanceWindow, NewAction, NewStatus, Transition};
pub use audit::{AuditFilter, AuditRecord};
pub use dashboard::{
    AttributeFilter, DeviceFilter, DeviceRow, FleetCounts, StateCount, VersionCount,
};
pub use leases::Lease;
pub use listings::{
    ACTION_LISTING, ARTIFACT_LISTING, MODULE_LISTING, ROLLOUT_LISTING, SET_LISTING, TARGET_LISTING,
    TENANT_LISTING, TOKEN_LISTING,
};
pub use rollouts::{GroupCounts, NewGroup, NewRollout, Rollout, RolloutGroup};
pub use software::{Artifact, DistributionSet, SoftwareModule};
pub use status::{ActionStatus, GroupStatus, RolloutStatus, UnknownStatus, UpdateStatus};
pub use targets::{Poll, Target};
pub use tenants::{ApiTokenRow, Tenant, TokenIdentity};
pub use tuf::{TufFileDigest, TufFileInfo, TufFileWrite};

use reports::{commit_reports, ReportJob, REPORT_BATCH};
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Executor, Transaction};
use std::path::Path;
use std::time::Duration;

/// A write transaction on either backend (`Store::begin`).
pub type Tx<'a> = Transaction<'a, Any>;

/// One page of a list and how many rows match in all (for the pager).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The rows of this page, in the requested order.
    pub rows: Vec<T>,
    /// How many rows match the filter, over all pages.
    pub total: i64,
}

/// The database (SQLite or PostgreSQL, one schema): every query of keel-server goes through it.
/// Cheap to clone; reads and writes use separate pools.
#[derive(Clone)]
pub struct Store {
    read: AnyPool,
    write: AnyPool,
    /// Device status reports, committed in groups by `commit_reports` (see `report`).
    reports: tokio::sync::mpsc::Sender<ReportJob>,
}

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

/// Now, in milliseconds since 1970: the unit of every timestamp column.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

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

    /// Closes both pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Starts a transaction on the write pool.
    pub async fn begin(&self) -> Result<Tx<'static>, sqlx::Error> {
        self.write.begin().await
    }
}
