//! keel-server: the fleet server.
//!
//! - Device API compatible with Eclipse hawkBit DDI under `/{tenant}/controller/v1/{controllerId}`
//!   (see docs/ddi.md), so SWUpdate suricatta, rauc-hawkbit-updater and `keel-agent run` work.
//! - Management REST API under `/rest/v1` with viewer/operator/admin tokens (docs/management-api.md),
//!   OpenAPI document at `/rest/v1/openapi.json`.
//! - Rollouts in groups with success/error thresholds, advanced by a scheduler whose state lives only
//!   in the database.
//! - SQLite (WAL, synchronous=FULL) and content-addressed artifact files in one data directory, or
//!   PostgreSQL (`--database-url postgres://...`) with the same schema and behaviour, and artifacts
//!   on S3-compatible object storage (`--object-store-url s3://bucket/prefix`) (docs/scale-out.md).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// The OpenAPI document (openapi.rs) is one large `json!` literal per schema table.
#![recursion_limit = "256"]

pub mod admin;
pub mod artifacts;
pub mod audit;
pub mod auth;
pub mod dashboard;
pub mod ddi;
pub mod error;
pub mod extract;
pub mod mgmt;
pub mod openapi;
pub mod paging;
pub mod scheduler;
pub mod serve;
pub mod storage_s3;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod tuf;
pub mod variants;

use anyhow::Context;
use axum::http::HeaderMap;
use axum::Router;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// Server configuration (command line flags or environment variables).
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "keel-server",
    version,
    about = "keel fleet server: hawkBit DDI device API, management API, rollouts"
)]
pub struct Config {
    /// Directory for the database (keel.db) and artifact files; created if missing.
    #[arg(long, env = "KEEL_DATA_DIR")]
    pub data_dir: PathBuf,
    /// PostgreSQL database to use instead of SQLite in the data directory, e.g.
    /// `postgres://keel:secret@db.example/keel` or `postgres://keel@localhost/keel?host=/run/postgresql`.
    #[arg(long, env = "KEEL_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "KEEL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Base URL devices use to reach this server (for absolute links). Default: http://<Host header>.
    #[arg(long, env = "KEEL_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Poll interval suggested to devices, HH:MM:SS (below 24:00:00).
    #[arg(long, env = "KEEL_POLL_INTERVAL", default_value = "00:05:00", value_parser = parse_poll_interval)]
    pub poll_interval: u32,
    /// Create the tenant `default` at start-up if it does not exist.
    #[arg(long, env = "KEEL_CREATE_DEFAULT_TENANT")]
    pub create_default_tenant: bool,
    /// Largest accepted artifact upload in bytes.
    #[arg(long, env = "KEEL_MAX_ARTIFACT_BYTES", default_value_t = 8 << 30)]
    pub max_artifact_bytes: u64,
    /// How often the rollout scheduler runs, in milliseconds.
    #[arg(long, env = "KEEL_SCHEDULER_INTERVAL_MS", default_value_t = 1000)]
    pub scheduler_interval_ms: u64,
    /// How often last-poll times are written to the database, in milliseconds.
    #[arg(long, env = "KEEL_POLL_FLUSH_INTERVAL_MS", default_value_t = 5000)]
    pub poll_flush_interval_ms: u64,
    /// Artifacts on S3-compatible object storage instead of `DATA_DIR/artifacts`:
    /// `s3://bucket[/prefix]` (the bucket must exist). Several replicas share artifacts this way.
    #[arg(long, env = "KEEL_OBJECT_STORE_URL")]
    pub object_store_url: Option<String>,
    /// S3 endpoint for non-AWS servers (Garage, MinIO, Ceph RGW, ...), e.g. `http://127.0.0.1:3900`.
    /// Default: AWS for the region. Plain `http://` is allowed for loopback endpoints only, unless
    /// `--s3-allow-http`.
    #[arg(long, env = "KEEL_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region (Garage's default is `garage`).
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// S3 access key id. Without one, the usual AWS sources apply (web identity, ECS/EC2 roles).
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// S3 session token (temporary credentials).
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true)]
    pub s3_session_token: Option<String>,
    /// Allow plain-HTTP S3 endpoints that are not loopback addresses.
    #[arg(long, env = "KEEL_S3_ALLOW_HTTP")]
    pub s3_allow_http: bool,
    /// Address buckets as `bucket.endpoint` instead of `endpoint/bucket`.
    #[arg(long, env = "KEEL_S3_VIRTUAL_HOSTED_STYLE")]
    pub s3_virtual_hosted_style: bool,
    /// Answer device downloads with a 302 redirect to a pre-signed S3 URL (after the device's
    /// authentication and access checks) instead of streaming the bytes through keel-server.
    #[arg(long, env = "KEEL_S3_PRESIGN_DOWNLOADS")]
    pub s3_presign_downloads: bool,
    /// Validity of a pre-signed download URL in seconds (a resumed download after that gets a
    /// fresh one from keel-server).
    #[arg(long, env = "KEEL_S3_PRESIGN_EXPIRY_SECS", default_value_t = 3600)]
    pub s3_presign_expiry_secs: u64,
    /// Endpoint devices reach S3 at, for pre-signed URLs, if it differs from `--s3-endpoint`.
    #[arg(long, env = "KEEL_S3_PUBLIC_ENDPOINT")]
    pub s3_public_endpoint: Option<String>,
    /// Largest artifact moved into place with one server-side copy (S3 allows 5 GiB); larger
    /// ones are streamed over. Lowered only by tests.
    #[arg(long, env = "KEEL_S3_MAX_COPY_BYTES", default_value_t = storage_s3::MAX_COPY_BYTES, hide = true)]
    pub s3_max_copy_bytes: u64,
    /// An administration command instead of serving (creates cross-tenant credentials).
    #[command(subcommand)]
    pub command: Option<admin::Command>,
    /// Time a client has to send a request's headers, in milliseconds; also how long an idle
    /// keep-alive connection stays open.
    #[arg(long, env = "KEEL_HEADER_READ_TIMEOUT_MS", default_value_t = 20_000)]
    pub header_read_timeout_ms: u64,
    /// Longest pause while receiving a request body, in milliseconds; a stalled upload is dropped.
    #[arg(long, env = "KEEL_BODY_READ_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_read_timeout_ms: u64,
    /// Open connections at most (keep the file descriptor limit above it); more get a 503.
    #[arg(long, env = "KEEL_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Longest time, in milliseconds, a request refused for too many failed authentications
    /// (`429`) is held before it is answered; 0 answers at once.
    #[arg(long, env = "KEEL_THROTTLE_HOLD_MS", default_value_t = 1000)]
    pub throttle_hold_ms: u64,
    /// Serve HTTPS with this PEM certificate chain (server certificate first); re-read on
    /// SIGHUP. Needs `--tls-key`.
    #[arg(long, env = "KEEL_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`; re-read on SIGHUP.
    #[arg(long, env = "KEEL_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Ask devices for a client certificate issued by a CA in this PEM file: a device whose
    /// certificate's subject has CN = its controller id and O = its tenant is authenticated
    /// without a token (docs/security.md, "TLS"). Needs `--tls-cert`.
    #[arg(long, env = "KEEL_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Turns off the throttling of failed logins and bad tokens (benchmarks only).
    #[arg(long, env = "KEEL_NO_AUTH_THROTTLE", hide = true)]
    pub no_auth_throttle: bool,
}

impl Config {
    /// A configuration with defaults for `data_dir`, listening on an ephemeral loopback port.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            database_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            poll_interval: 300,
            create_default_tenant: true,
            max_artifact_bytes: 8 << 30,
            scheduler_interval_ms: 1000,
            poll_flush_interval_ms: 5000,
            object_store_url: None,
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_session_token: None,
            s3_allow_http: false,
            s3_virtual_hosted_style: false,
            s3_presign_downloads: false,
            s3_presign_expiry_secs: 3600,
            s3_public_endpoint: None,
            s3_max_copy_bytes: storage_s3::MAX_COPY_BYTES,
            command: None,
            header_read_timeout_ms: 20_000,
            body_read_timeout_ms: 30_000,
            max_connections: 4096,
            throttle_hold_ms: 1000,
            no_auth_throttle: false,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
        }
    }
}

/// Parses `HH:MM:SS` into seconds; hawkBit clients parse exactly this format.
pub fn parse_poll_interval(text: &str) -> Result<u32, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let [h, m, s] = parts.as_slice() else {
        return Err(format!("expected HH:MM:SS, got {text:?}"));
    };
    let field = |v: &str, max: u32| -> Result<u32, String> {
        let n: u32 = v
            .parse()
            .map_err(|_| format!("expected HH:MM:SS, got {text:?}"))?;
        if v.len() != 2 || n > max {
            return Err(format!("expected HH:MM:SS below 24:00:00, got {text:?}"));
        }
        Ok(n)
    };
    let secs = field(h, 23)? * 3600 + field(m, 59)? * 60 + field(s, 59)?;
    if secs == 0 {
        return Err("poll interval must be at least 00:00:01".into());
    }
    Ok(secs)
}

/// Formats seconds as `HH:MM:SS` (DDI `sleep`), capped at 23:59:59.
pub fn format_poll_interval(secs: u32) -> String {
    let secs = secs.min(23 * 3600 + 59 * 60 + 59);
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Shared state of all handlers.
pub struct AppState {
    /// The database.
    pub store: store::Store,
    /// Where artifact files are stored.
    pub files: artifacts::ArtifactStore,
    /// The command-line configuration the server started with.
    pub config: Config,
    /// Last poll time and address per target, flushed to the database in batches (hawkBit does the
    /// same): losing a few seconds of "last seen" on a crash is harmless, an fsync per poll is not.
    pub polls: Mutex<HashMap<i64, (i64, String)>>,
    /// The audit log's writer (audit.rs).
    pub audit: audit::AuditLog,
}

impl AppState {
    /// The base of absolute links handed to devices.
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.config.public_url {
            return url.trim_end_matches('/').to_string();
        }
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
            .map(str::to_string)
            .unwrap_or_else(|| self.config.listen.to_string());
        let scheme = if self.config.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{host}")
    }
}

/// A bound, initialised server that has not started serving yet.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
    /// The cross-tenant admin token, if this start created it (first start of a data
    /// directory); it is written to `DATA_DIR/admin.token` and never printed.
    pub created_admin_token: Option<String>,
}

impl Server {
    /// Opens the data directory (database, migrations, artifact store), creates the first admin
    /// token and the default tenant if asked, and binds the listener.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let store = store::Store::open(&config.data_dir, config.database_url.as_deref())
            .await
            .context("opening database")?;
        let files = artifacts::ArtifactStore::open(&config)
            .await
            .context("opening artifact store")?;
        let mut created_admin_token = None;
        if store.api_token_count().await? == 0 {
            let token = auth::generate_token();
            store
                .create_api_token("admin", &auth::hash_token(&token), "admin", None)
                .await?;
            write_secret(&config.data_dir.join("admin.token"), &token)?;
            created_admin_token = Some(token);
        }
        if config.create_default_tenant && store.tenant_by_name("default").await?.is_none() {
            if let Err(err) = store.create_tenant("default").await {
                // Another replica starting at the same moment may have created it first.
                if store.tenant_by_name("default").await?.is_none() {
                    return Err(err.into());
                }
            }
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let audit = audit::AuditLog::start(store.clone());
        let state = Arc::new(AppState {
            audit,
            store,
            files,
            config,
            polls: Mutex::new(HashMap::new()),
        });
        Ok(Server {
            listener,
            state,
            created_admin_token,
        })
    }

    /// The address the listener is bound to (with the real port when `--listen` asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The state every handler shares (tests use it to reach the store).
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves; background tasks stop with it.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let scheduler = tokio::spawn(scheduler::run(state.clone(), stop_rx.clone()));
        let flusher = tokio::spawn(flush_polls_loop(state.clone(), stop_rx));
        let app = router(state.clone());
        let limits = serve::Limits::from_config(&state.config);
        let tls = match (&state.config.tls_cert, &state.config.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(tls::Tls::load(tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: state.config.tls_client_ca.clone(),
            })?)),
            _ => None,
        };
        if let Some(tls) = &tls {
            tokio::spawn(reload_on_sighup(tls.clone()));
        }
        serve::serve(self.listener, app, limits, tls, shutdown).await?;
        let _ = stop_tx.send(true);
        let _ = scheduler.await;
        let _ = flusher.await;
        flush_polls(&state).await;
        state.store.close().await;
        Ok(())
    }
}

/// Re-reads the TLS files on every SIGHUP (certificate renewal without a restart).
async fn reload_on_sighup(tls: Arc<tls::Tls>) {
    let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP: TLS files are read at start only");
        return;
    };
    while hangup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
            Err(err) => tracing::error!(
                "SIGHUP: TLS files not reloaded, the previous ones stay in use: {err:#}"
            ),
        }
    }
}

pub(crate) fn write_secret(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// Every route the server serves (DDI, management API, TUF, dashboard) behind the throttle guard.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(
            ddi::routes().route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                audit::device,
            )),
        )
        .merge(mgmt::api(&state))
        .merge(tuf::routes())
        .merge(dashboard::router())
        .layer(axum::middleware::from_fn_with_state(
            throttle::Guard::for_config(&state.config),
            throttle::scope,
        ))
        .with_state(state)
}

async fn flush_polls(state: &AppState) {
    let batch: Vec<store::Poll> = {
        let Ok(mut polls) = state.polls.lock() else {
            return;
        };
        polls
            .drain()
            .map(|(target_id, (at, address))| store::Poll {
                target_id,
                at,
                address,
            })
            .collect()
    };
    if let Err(err) = state.store.record_polls(&batch).await {
        tracing::warn!("writing last-poll times: {err}");
    }
}

async fn flush_polls_loop(state: Arc<AppState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let period = Duration::from_millis(state.config.poll_flush_interval_ms.max(100));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => flush_polls(&state).await,
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_interval_format() {
        assert_eq!(parse_poll_interval("00:05:00"), Ok(300));
        assert_eq!(parse_poll_interval("23:59:59"), Ok(86399));
        assert!(parse_poll_interval("24:00:00").is_err());
        assert!(parse_poll_interval("5:00").is_err());
        assert!(parse_poll_interval("00:00:00").is_err());
        assert!(parse_poll_interval("00:60:00").is_err());
        assert_eq!(format_poll_interval(300), "00:05:00");
        assert_eq!(format_poll_interval(3661), "01:01:01");
        assert_eq!(format_poll_interval(100_000), "23:59:59");
    }
}
